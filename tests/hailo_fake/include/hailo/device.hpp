// HailoRT test double (hailo-clip): Device, the physical device's handle, with the
// identity, temperature, performance and notification calls the shim makes. See
// fake_hailort.cpp ("Device health") for the values it reports.
#ifndef HAILO_CLIP_FAKE_DEVICE_HPP
#define HAILO_CLIP_FAKE_DEVICE_HPP

#include "hailo/expected.hpp"
#include "hailo/hailort.h"

#include <functional>
#include <memory>
#include <string>

namespace hailort
{

namespace fake
{
struct DeviceHealth;
} // namespace fake

class Device;
using NotificationCallback = std::function<void(Device &device, const hailo_notification_t &notification, void *opaque)>;

class Device
{
public:
    virtual ~Device();
    Device(const Device &) = delete;
    Device &operator=(const Device &) = delete;

    static Expected<std::unique_ptr<Device>> create();
    static Expected<std::unique_ptr<Device>> create(const std::string &device_id);

    virtual Expected<hailo_device_identity_t> identify();
    virtual Expected<hailo_chip_temperature_info_t> get_chip_temperature();
    virtual Expected<hailo_performance_stats_t> query_performance_stats();
    virtual hailo_status set_notification_callback(const NotificationCallback &func, hailo_notification_id_t notification_id,
        void *opaque);
    virtual hailo_status remove_notification_callback(hailo_notification_id_t notification_id);

private:
    explicit Device(std::shared_ptr<fake::DeviceHealth> health) : m_health(std::move(health)) {}
    std::shared_ptr<fake::DeviceHealth> m_health;
};

} // namespace hailort

#endif
