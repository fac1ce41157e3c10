// HailoRT test double (hailo-clip): VDevice, with the creation, model loading and device
// id calls the shim makes. See fake_hailort.cpp for how the fake device is controlled.
#ifndef HAILO_CLIP_FAKE_VDEVICE_HPP
#define HAILO_CLIP_FAKE_VDEVICE_HPP

#include "hailo/expected.hpp"
#include "hailo/hailort.h"

#include <memory>
#include <string>
#include <vector>

namespace hailort
{

class InferModel;

namespace fake
{
struct DeviceFaults;
} // namespace fake

class VDevice
{
public:
    virtual ~VDevice() = default;
    VDevice(const VDevice &) = delete;
    VDevice &operator=(const VDevice &) = delete;

    static Expected<std::shared_ptr<VDevice>> create_shared(const hailo_vdevice_params_t &params);

    virtual Expected<std::shared_ptr<InferModel>> create_infer_model(const std::string &hef_path,
        const std::string &name = "");

    virtual Expected<std::vector<std::string>> get_physical_devices_ids() const;

    virtual hailo_status dma_map(void *address, size_t size, hailo_dma_buffer_direction_t direction);
    virtual hailo_status dma_unmap(void *address, size_t size, hailo_dma_buffer_direction_t direction);

private:
    VDevice(std::string device_id, bool dma_mappable, std::shared_ptr<fake::DeviceFaults> faults)
        : m_device_id(std::move(device_id)), m_dma_mappable(dma_mappable), m_faults(std::move(faults)) {}
    std::string m_device_id;
    bool m_dma_mappable;
    std::shared_ptr<fake::DeviceFaults> m_faults;  // null: no fault scheduled
};

} // namespace hailort

#endif
