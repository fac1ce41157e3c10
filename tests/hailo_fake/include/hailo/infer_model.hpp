// HailoRT test double (hailo-clip): InferModel, ConfiguredInferModel (with Bindings) and
// AsyncInferJob, declaring the members the shim calls with the real classes' names and
// signatures. Private parts are the fake's own; see fake_hailort.cpp.
#ifndef HAILO_CLIP_FAKE_INFER_MODEL_HPP
#define HAILO_CLIP_FAKE_INFER_MODEL_HPP

#include "hailo/buffer.hpp"
#include "hailo/expected.hpp"
#include "hailo/hailort.h"
#include "hailo/vdevice.hpp"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace hailort
{

namespace fake
{
struct StreamSpec;
struct ModelSpec;
struct BufferSlot;
struct JobState;
struct Pipeline;
} // namespace fake

class AsyncInferJob
{
public:
    AsyncInferJob() : m_should_wait_in_dtor(false) {}
    virtual ~AsyncInferJob();

    AsyncInferJob(const AsyncInferJob &other) = delete;
    AsyncInferJob &operator=(const AsyncInferJob &other) = delete;
    AsyncInferJob(AsyncInferJob &&other);
    AsyncInferJob &operator=(AsyncInferJob &&other);

    hailo_status wait(std::chrono::milliseconds timeout);
    void detach();

private:
    friend class ConfiguredInferModel;
    explicit AsyncInferJob(std::shared_ptr<fake::JobState> state);
    std::shared_ptr<fake::JobState> m_state;
    bool m_should_wait_in_dtor;
};

struct AsyncInferCompletionInfo
{
    AsyncInferCompletionInfo(hailo_status _status) : status(_status) {}
    hailo_status status;
};

class ConfiguredInferModel
{
public:
    ConfiguredInferModel() = default;

    class Bindings
    {
    public:
        Bindings() = default;
        Bindings(const Bindings &other);
        Bindings &operator=(const Bindings &other);

        class InferStream
        {
        public:
            hailo_status set_buffer(MemoryView view);
            Expected<MemoryView> get_buffer() const;

        private:
            friend class Bindings;
            friend class ConfiguredInferModel;
            explicit InferStream(std::shared_ptr<fake::BufferSlot> slot) : m_slot(std::move(slot)) {}
            std::shared_ptr<fake::BufferSlot> m_slot;
        };

        Expected<InferStream> input(const std::string &name);
        Expected<InferStream> output(const std::string &name);

    private:
        friend class ConfiguredInferModel;
        std::map<std::string, InferStream> m_inputs;
        std::map<std::string, InferStream> m_outputs;
    };

    Expected<Bindings> create_bindings();
    hailo_status wait_for_async_ready(std::chrono::milliseconds timeout, uint32_t frames_count = 1);
    Expected<AsyncInferJob> run_async(const std::vector<Bindings> &bindings,
        std::function<void(const AsyncInferCompletionInfo &)> callback = [](const AsyncInferCompletionInfo &) {});
    Expected<size_t> get_async_queue_size() const;
    hailo_status shutdown();

private:
    friend class InferModel;
    explicit ConfiguredInferModel(std::shared_ptr<fake::Pipeline> pimpl) : m_pimpl(std::move(pimpl)) {}
    std::shared_ptr<fake::Pipeline> m_pimpl;
};

class InferModel
{
public:
    virtual ~InferModel() = default;

    class InferStream
    {
    public:
        const std::string name() const;
        hailo_3d_image_shape_t shape() const;
        hailo_format_t format() const;
        size_t get_frame_size() const;
        void set_format_type(hailo_format_type_t type);
        void set_format_order(hailo_format_order_t order);
        std::vector<hailo_quant_info_t> get_quant_infos() const;

    private:
        friend class InferModel;
        explicit InferStream(std::shared_ptr<fake::StreamSpec> spec) : m_spec(std::move(spec)) {}
        std::shared_ptr<fake::StreamSpec> m_spec;
    };

    virtual void set_batch_size(uint16_t batch_size);
    virtual Expected<ConfiguredInferModel> configure();
    virtual Expected<InferStream> input(const std::string &name);
    virtual Expected<InferStream> output(const std::string &name);
    virtual const std::vector<std::string> &get_input_names() const;
    virtual const std::vector<std::string> &get_output_names() const;

private:
    friend class VDevice;
    explicit InferModel(std::shared_ptr<fake::ModelSpec> spec) : m_spec(std::move(spec)) {}
    std::shared_ptr<fake::ModelSpec> m_spec;
    uint16_t m_batch_size = 0;
};

} // namespace hailort

#endif
