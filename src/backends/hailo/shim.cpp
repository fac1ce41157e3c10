// hailo-clip's only C++ file: a narrow C ABI over HailoRT's C++ InferModel API, for the
// Rust side in ffi.rs.
//
// Why C++ at all: on Hailo-10H a VDevice is an RPC client whose configure() returns
// HAILO_NOT_IMPLEMENTED, so HailoRT's C API (configure, vstreams, hailo_infer) cannot run
// inference there. Only InferModel can, and it exists in HailoRT 4.x too, so this one file
// serves Hailo-8/8L (4.x) and Hailo-10H (5.x). It uses only API present in both lines.
//
// Contract: every function returns an HC_* code and, on failure, fills `hc_error` with the
// HailoRT status and a message. No C++ exception crosses the boundary. Handles are created
// and released only here; the Rust side owns them and releases each exactly once.

#include <hailo/hailort.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

extern "C" {

// Outcome codes; ffi.rs maps them to typed errors.
enum {
    HC_OK = 0,
    HC_DEVICE_NOT_FOUND = 1,
    HC_DEVICE_BUSY = 2,
    HC_TIMEOUT = 3,
    HC_INVALID_HEF = 4,
    HC_SHAPE_MISMATCH = 5,
    HC_FAILED = 6,
    HC_DRIVER_VERSION = 7,
};

// Host-side element types (the subset of hailo_format_type_t the daemon handles).
enum { HC_FORMAT_OTHER = 0, HC_FORMAT_UINT8 = 1, HC_FORMAT_UINT16 = 2, HC_FORMAT_FLOAT32 = 3 };

// Host-side element orders the daemon reads row-major; anything else is OTHER.
enum { HC_ORDER_OTHER = 0, HC_ORDER_NHWC = 1, HC_ORDER_NC = 2, HC_ORDER_NHW = 3 };

enum { HC_INPUT = 0, HC_OUTPUT = 1 };

typedef struct hc_error {
    int32_t hailo_status;
    char message[512];
} hc_error;

typedef struct hc_stream_info {
    char name[256];
    uint32_t height;
    uint32_t width;
    uint32_t features;
    int32_t format;
    int32_t order;
    size_t frame_size;
    // HailoRT gives one quant info per tensor, or one per feature for per-channel
    // quantization; the first is reported, with the count so the caller can tell.
    size_t quant_count;
    float qp_zp;
    float qp_scale;
} hc_stream_info;

typedef struct hc_vdevice hc_vdevice;
typedef struct hc_model hc_model;

}  // extern "C"

namespace {

// The VDevice and the storage its params point into. HailoRT keeps a copy of
// hailo_vdevice_params_t, whose group_id and device_ids are pointers, so those must live
// as long as the device does, and every model keeps the device alive.
struct DeviceHolder {
    std::string group_id;
    hailo_device_id_t device_id{};
    std::string physical_id;
    // Declared last so it is destroyed first, while the strings above are still valid.
    std::shared_ptr<hailort::VDevice> device;
};

// Where a status came from: the same HailoRT status means different things at each stage
// (HAILO_INVALID_ARGUMENT at device creation is a device id no scan found).
enum class Stage { Device, Load, Run };

int32_t classify(hailo_status status, Stage stage)
{
    switch (status) {
    case HAILO_SUCCESS:
        return HC_OK;
    case HAILO_TIMEOUT:
        return HC_TIMEOUT;
    // A Hailo-10H with every device taken returns OUT_OF_PHYSICAL_DEVICES; a device asked
    // for by id that another process holds returns DEVICE_IN_USE.
    case HAILO_DEVICE_IN_USE:
    case HAILO_OUT_OF_PHYSICAL_DEVICES:
        return HC_DEVICE_BUSY;
    // libhailort and the kernel driver differ, even by a patch release
    // (libhailort/src/vdma/driver/hailort_driver.cpp checks major, minor and revision).
    case HAILO_INVALID_DRIVER_VERSION:
        return HC_DRIVER_VERSION;
    case HAILO_DRIVER_NOT_INSTALLED:
    case HAILO_PCIE_NOT_SUPPORTED_ON_PLATFORM:
        return HC_DEVICE_NOT_FOUND;
    case HAILO_INVALID_HEF:
    case HAILO_HEF_FILE_CORRUPTED:
    case HAILO_HEF_NOT_SUPPORTED:
    case HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE:
        return HC_INVALID_HEF;
    case HAILO_OPEN_FILE_FAILURE:
    case HAILO_FILE_OPERATION_FAILURE:
        return stage == Stage::Load ? HC_INVALID_HEF : HC_FAILED;
    case HAILO_INVALID_ARGUMENT:
    case HAILO_NOT_FOUND:
        return stage == Stage::Device ? HC_DEVICE_NOT_FOUND : HC_FAILED;
    default:
        return HC_FAILED;
    }
}

int32_t report(hc_error *err, int32_t code, hailo_status status, const std::string &what)
{
    if (err != nullptr) {
        const char *name = hailo_get_status_message(status);
        err->hailo_status = static_cast<int32_t>(status);
        std::snprintf(err->message, sizeof(err->message), "%s: %s (%d)", what.c_str(),
                      name != nullptr ? name : "unknown HailoRT status", static_cast<int>(status));
    }
    return code;
}

int32_t fail(hc_error *err, hailo_status status, Stage stage, const std::string &what)
{
    return report(err, classify(status, stage), status, what);
}

// A failure of the shim's own checks (no HailoRT status behind it).
int32_t reject(hc_error *err, int32_t code, const std::string &what)
{
    if (err != nullptr) {
        err->hailo_status = static_cast<int32_t>(HAILO_SUCCESS);
        std::snprintf(err->message, sizeof(err->message), "%s", what.c_str());
    }
    return code;
}

// Runs `body`, turning any C++ exception (allocation failure, mostly) into HC_FAILED.
template <typename F>
int32_t guarded(hc_error *err, F &&body)
{
    try {
        return body();
    } catch (const std::exception &e) {
        return reject(err, HC_FAILED, std::string("C++ exception in the HailoRT shim: ") + e.what());
    } catch (...) {
        return reject(err, HC_FAILED, "unknown C++ exception in the HailoRT shim");
    }
}

hailo_format_type_t to_hailo_format(int32_t format)
{
    switch (format) {
    case HC_FORMAT_UINT8:
        return HAILO_FORMAT_TYPE_UINT8;
    case HC_FORMAT_UINT16:
        return HAILO_FORMAT_TYPE_UINT16;
    default:
        return HAILO_FORMAT_TYPE_FLOAT32;
    }
}

int32_t from_hailo_format(hailo_format_type_t type)
{
    switch (type) {
    case HAILO_FORMAT_TYPE_UINT8:
        return HC_FORMAT_UINT8;
    case HAILO_FORMAT_TYPE_UINT16:
        return HC_FORMAT_UINT16;
    case HAILO_FORMAT_TYPE_FLOAT32:
        return HC_FORMAT_FLOAT32;
    default:
        return HC_FORMAT_OTHER;
    }
}

int32_t from_hailo_order(hailo_format_order_t order)
{
    switch (order) {
    case HAILO_FORMAT_ORDER_NHWC:
        return HC_ORDER_NHWC;
    case HAILO_FORMAT_ORDER_NC:
        return HC_ORDER_NC;
    case HAILO_FORMAT_ORDER_NHW:
        return HC_ORDER_NHW;
    default:
        return HC_ORDER_OTHER;
    }
}

// A page-aligned buffer: HailoRT maps user buffers for DMA and asks for page alignment,
// with output allocations rounded up to whole pages.
class PageBuffer {
public:
    static constexpr size_t kPage = 4096;

    explicit PageBuffer(size_t size) : m_size(size)
    {
        const size_t rounded = ((size + kPage - 1) / kPage) * kPage;
        m_data = static_cast<uint8_t *>(std::aligned_alloc(kPage, rounded));
        if (m_data == nullptr) {
            throw std::bad_alloc();
        }
    }
    ~PageBuffer() { std::free(m_data); }
    PageBuffer(const PageBuffer &) = delete;
    PageBuffer &operator=(const PageBuffer &) = delete;

    uint8_t *data() { return m_data; }
    size_t size() const { return m_size; }

private:
    size_t m_size;
    uint8_t *m_data;
};

// The buffers of one run and its completion status. The completion callback holds a
// reference, so when a run times out its buffers stay alive until HailoRT is done with them.
struct RunState {
    std::vector<std::unique_ptr<PageBuffer>> inputs;   // frame-major: frame f, input i at f * n + i
    std::vector<std::unique_ptr<PageBuffer>> outputs;  // likewise
    std::atomic<int> status{static_cast<int>(HAILO_SUCCESS)};
};

class Deadline {
public:
    explicit Deadline(uint32_t timeout_ms)
        : m_end(std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms))
    {
    }
    std::chrono::milliseconds remaining() const
    {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(m_end - std::chrono::steady_clock::now());
        return std::max(left, std::chrono::milliseconds(0));
    }

private:
    std::chrono::steady_clock::time_point m_end;
};

}  // namespace

struct hc_vdevice {
    std::shared_ptr<DeviceHolder> holder;
};

struct hc_model {
    std::shared_ptr<DeviceHolder> holder;  // first member: the device outlives the model
    std::string hef_path;
    std::shared_ptr<hailort::InferModel> model;
    std::vector<std::string> inputs;
    std::vector<std::string> outputs;
    uint16_t batch_size = 0;
    // Set by hc_model_configure; run() reconfigures with these after a failure.
    std::vector<size_t> input_frame_sizes;
    std::vector<size_t> output_frame_sizes;
    size_t max_frames = 0;
    // Null before configure and after a failure that stopped the pipeline (HailoRT shuts a
    // ConfiguredInferModel down when run_async fails). Last member: destroyed first.
    std::unique_ptr<hailort::ConfiguredInferModel> configured;
};

namespace {

// Looks up input or output `index` of `model` and hands it, with its name, to `body`.
template <typename F>
int32_t with_stream(hc_model *model, int32_t direction, size_t index, hc_error *err, F &&body)
{
    const auto &names = direction == HC_INPUT ? model->inputs : model->outputs;
    if (index >= names.size()) {
        return reject(err, HC_FAILED, "stream index out of range");
    }
    auto stream = direction == HC_INPUT ? model->model->input(names[index]) : model->model->output(names[index]);
    if (!stream) {
        return fail(err, stream.status(), Stage::Load, "stream " + names[index]);
    }
    return body(names[index], stream.value());
}

int32_t configure(hc_model *m, hc_error *err)
{
    m->model->set_batch_size(m->batch_size);
    auto configured = m->model->configure();
    if (!configured) {
        return fail(err, configured.status(), Stage::Run, "configure(" + m->hef_path + ")");
    }
    auto queue = configured->get_async_queue_size();
    if (!queue) {
        return fail(err, queue.status(), Stage::Run, "get_async_queue_size(" + m->hef_path + ")");
    }
    m->input_frame_sizes.clear();
    m->output_frame_sizes.clear();
    for (const auto &name : m->inputs) {
        auto stream = m->model->input(name);
        if (!stream) {
            return fail(err, stream.status(), Stage::Run, "input(" + name + ")");
        }
        m->input_frame_sizes.push_back(stream->get_frame_size());
    }
    for (const auto &name : m->outputs) {
        auto stream = m->model->output(name);
        if (!stream) {
            return fail(err, stream.status(), Stage::Run, "output(" + name + ")");
        }
        m->output_frame_sizes.push_back(stream->get_frame_size());
    }
    // wait_for_async_ready() with more frames than the queue holds can only time out.
    m->max_frames = std::max<size_t>(1, std::min<size_t>(m->batch_size, queue.value()));
    m->configured = std::make_unique<hailort::ConfiguredInferModel>(configured.release());
    return HC_OK;
}

// Drops a pipeline HailoRT has stopped; the next run configures a fresh one.
void drop_pipeline(hc_model *m)
{
    if (m->configured) {
        m->configured->shutdown();
        m->configured.reset();
    }
}

}  // namespace

extern "C" {

int32_t hc_library_version(uint32_t *major, uint32_t *minor, uint32_t *revision, hc_error *err)
{
    return guarded(err, [&]() -> int32_t {
        hailo_version_t version{};
        auto status = hailo_get_library_version(&version);
        if (status != HAILO_SUCCESS) {
            return fail(err, status, Stage::Device, "hailo_get_library_version");
        }
        *major = version.major;
        *minor = version.minor;
        *revision = version.revision;
        return HC_OK;
    });
}

// Creates the VDevice. `device_id` may be null (the first free device). The id of the
// physical device is copied into `id_out` (NUL-terminated, truncated to `id_len`).
int32_t hc_vdevice_create(const char *group_id, const char *device_id, char *id_out, size_t id_len,
                          hc_vdevice **out, hc_error *err)
{
    return guarded(err, [&]() -> int32_t {
        auto holder = std::make_shared<DeviceHolder>();
        holder->group_id = group_id;
        hailo_vdevice_params_t params;
        auto status = hailo_init_vdevice_params(&params);
        if (status != HAILO_SUCCESS) {
            return fail(err, status, Stage::Device, "hailo_init_vdevice_params");
        }
        if (device_id != nullptr) {
            if (std::strlen(device_id) >= sizeof(holder->device_id.id)) {
                return reject(err, HC_DEVICE_NOT_FOUND,
                              std::string("device id '") + device_id + "' is longer than HailoRT allows");
            }
            std::strncpy(holder->device_id.id, device_id, sizeof(holder->device_id.id) - 1);
            params.device_ids = &holder->device_id;
            params.device_count = 1;
        }
        // "SHARED" lets other processes on the Pi use the same device. On Hailo-10H sharing
        // is built in and the multi-process service must stay off.
        params.group_id = holder->group_id.c_str();
        params.multi_process_service = false;
        auto device = hailort::VDevice::create_shared(params);
        if (!device) {
            return fail(err, device.status(), Stage::Device, "VDevice::create");
        }
        holder->device = device.release();
        auto ids = holder->device->get_physical_devices_ids();
        if (!ids) {
            return fail(err, ids.status(), Stage::Device, "get_physical_devices_ids");
        }
        holder->physical_id = ids->empty() ? std::string() : ids->front();
        std::snprintf(id_out, id_len, "%s", holder->physical_id.c_str());
        *out = new hc_vdevice{std::move(holder)};
        return HC_OK;
    });
}

void hc_vdevice_release(hc_vdevice *device)
{
    delete device;
}

int32_t hc_model_load(hc_vdevice *device, const char *hef_path, hc_model **out, hc_error *err)
{
    return guarded(err, [&]() -> int32_t {
        auto model = device->holder->device->create_infer_model(hef_path);
        if (!model) {
            return fail(err, model.status(), Stage::Load, std::string("create_infer_model(") + hef_path + ")");
        }
        auto handle = std::make_unique<hc_model>();
        handle->holder = device->holder;
        handle->hef_path = hef_path;
        handle->model = model.release();
        handle->inputs = handle->model->get_input_names();
        handle->outputs = handle->model->get_output_names();
        *out = handle.release();
        return HC_OK;
    });
}

void hc_model_release(hc_model *model)
{
    delete model;
}

void hc_model_counts(const hc_model *model, size_t *inputs, size_t *outputs)
{
    *inputs = model->inputs.size();
    *outputs = model->outputs.size();
}

int32_t hc_model_stream(hc_model *model, int32_t direction, size_t index, hc_stream_info *info, hc_error *err)
{
    return guarded(err, [&]() -> int32_t {
        return with_stream(model, direction, index, err, [&](const std::string &name, hailort::InferModel::InferStream &stream) {
            std::snprintf(info->name, sizeof(info->name), "%s", name.c_str());
            auto shape = stream.shape();
            info->height = shape.height;
            info->width = shape.width;
            info->features = shape.features;
            auto format = stream.format();
            info->format = from_hailo_format(format.type);
            info->order = from_hailo_order(format.order);
            info->frame_size = stream.get_frame_size();
            auto quant = stream.get_quant_infos();
            info->quant_count = quant.size();
            info->qp_zp = quant.empty() ? 0.0f : quant.front().qp_zp;
            info->qp_scale = quant.empty() ? 1.0f : quant.front().qp_scale;
            return HC_OK;
        });
    });
}

// Sets a stream's host-side element type (an HC_FORMAT_*), and for `nhwc` != 0 its order
// to NHWC. Only before hc_model_configure: a configured pipeline keeps its formats.
int32_t hc_model_set_format(hc_model *model, int32_t direction, size_t index, int32_t format, int32_t nhwc,
                            hc_error *err)
{
    return guarded(err, [&]() -> int32_t {
        if (model->configured) {
            return reject(err, HC_FAILED, "stream formats must be set before configure");
        }
        return with_stream(model, direction, index, err, [&](const std::string &, hailort::InferModel::InferStream &stream) {
            stream.set_format_type(to_hailo_format(format));
            if (nhwc != 0) {
                stream.set_format_order(HAILO_FORMAT_ORDER_NHWC);
            }
            return HC_OK;
        });
    });
}

// Configures the model for batches of up to `batch_size` frames. `max_frames` receives
// the most frames one hc_model_run takes (the batch size, capped by HailoRT's queue).
int32_t hc_model_configure(hc_model *model, uint16_t batch_size, size_t *max_frames, hc_error *err)
{
    return guarded(err, [&]() -> int32_t {
        drop_pipeline(model);
        model->batch_size = batch_size;
        auto code = configure(model, err);
        if (code == HC_OK) {
            *max_frames = model->max_frames;
        }
        return code;
    });
}

// Runs `frames` frames as one batch. `inputs[i]` holds the frames of input i back to
// back (`input_lens[i]` bytes, which must be frames × its frame size); likewise outputs.
// Returns HC_TIMEOUT when the whole run does not finish within `timeout_ms`.
int32_t hc_model_run(hc_model *model, size_t frames, const uint8_t *const *inputs, const size_t *input_lens,
                     size_t input_count, uint8_t *const *outputs, const size_t *output_lens, size_t output_count,
                     uint32_t timeout_ms, hc_error *err)
{
    return guarded(err, [&]() -> int32_t {
        const Deadline deadline(timeout_ms);
        if (!model->configured) {
            if (model->batch_size == 0) {
                return reject(err, HC_FAILED, "hc_model_run before hc_model_configure");
            }
            auto code = configure(model, err);
            if (code != HC_OK) {
                return code;
            }
        }
        if (frames == 0 || frames > model->max_frames) {
            return reject(err, HC_SHAPE_MISMATCH,
                          "a run takes 1 to " + std::to_string(model->max_frames) + " frames, got " +
                              std::to_string(frames));
        }
        if (input_count != model->inputs.size() || output_count != model->outputs.size()) {
            return reject(err, HC_SHAPE_MISMATCH, "wrong number of input or output buffers");
        }
        for (size_t i = 0; i < input_count; i++) {
            if (input_lens[i] != frames * model->input_frame_sizes[i]) {
                return reject(err, HC_SHAPE_MISMATCH,
                              "input " + model->inputs[i] + ": " + std::to_string(input_lens[i]) + " bytes for " +
                                  std::to_string(frames) + " frames of " +
                                  std::to_string(model->input_frame_sizes[i]));
            }
        }
        for (size_t o = 0; o < output_count; o++) {
            if (output_lens[o] != frames * model->output_frame_sizes[o]) {
                return reject(err, HC_SHAPE_MISMATCH,
                              "output " + model->outputs[o] + ": " + std::to_string(output_lens[o]) + " bytes for " +
                                  std::to_string(frames) + " frames of " +
                                  std::to_string(model->output_frame_sizes[o]));
            }
        }

        auto run = std::make_shared<RunState>();
        std::vector<hailort::ConfiguredInferModel::Bindings> bindings;
        for (size_t f = 0; f < frames; f++) {
            auto binding = model->configured->create_bindings();
            if (!binding) {
                return fail(err, binding.status(), Stage::Run, "create_bindings");
            }
            for (size_t i = 0; i < input_count; i++) {
                const size_t size = model->input_frame_sizes[i];
                run->inputs.push_back(std::make_unique<PageBuffer>(size));
                std::memcpy(run->inputs.back()->data(), inputs[i] + f * size, size);
                auto stream = binding->input(model->inputs[i]);
                if (!stream) {
                    return fail(err, stream.status(), Stage::Run, "bindings input " + model->inputs[i]);
                }
                auto status = stream->set_buffer(hailort::MemoryView(run->inputs.back()->data(), size));
                if (status != HAILO_SUCCESS) {
                    return fail(err, status, Stage::Run, "set_buffer " + model->inputs[i]);
                }
            }
            for (size_t o = 0; o < output_count; o++) {
                const size_t size = model->output_frame_sizes[o];
                run->outputs.push_back(std::make_unique<PageBuffer>(size));
                auto stream = binding->output(model->outputs[o]);
                if (!stream) {
                    return fail(err, stream.status(), Stage::Run, "bindings output " + model->outputs[o]);
                }
                auto status = stream->set_buffer(hailort::MemoryView(run->outputs.back()->data(), size));
                if (status != HAILO_SUCCESS) {
                    return fail(err, status, Stage::Run, "set_buffer " + model->outputs[o]);
                }
            }
            bindings.push_back(binding.release());
        }

        auto status = model->configured->wait_for_async_ready(deadline.remaining(), static_cast<uint32_t>(frames));
        if (status != HAILO_SUCCESS) {
            if (status != HAILO_TIMEOUT) {
                drop_pipeline(model);
            }
            return fail(err, status, Stage::Run, "wait_for_async_ready(" + model->hef_path + ")");
        }
        auto job = model->configured->run_async(bindings, [run](const hailort::AsyncInferCompletionInfo &info) {
            run->status.store(static_cast<int>(info.status));
        });
        if (!job) {
            drop_pipeline(model);
            return fail(err, job.status(), Stage::Run, "run_async(" + model->hef_path + ")");
        }
        // On a timeout the job is left running: its callback holds `run`, so the buffers
        // it writes stay valid, and a later run waits for its queue slot like any other.
        status = job->wait(deadline.remaining());
        if (status != HAILO_SUCCESS) {
            return fail(err, status, Stage::Run, "inference on " + model->hef_path);
        }
        status = static_cast<hailo_status>(run->status.load());
        if (status != HAILO_SUCCESS) {
            drop_pipeline(model);
            return fail(err, status, Stage::Run, "inference on " + model->hef_path);
        }
        for (size_t f = 0; f < frames; f++) {
            for (size_t o = 0; o < output_count; o++) {
                const size_t size = model->output_frame_sizes[o];
                std::memcpy(outputs[o] + f * size, run->outputs[f * output_count + o]->data(), size);
            }
        }
        return HC_OK;
    });
}

}  // extern "C"
