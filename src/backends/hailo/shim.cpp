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
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
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

// One frame's buffer of one stream.
typedef struct hc_slice {
    const uint8_t *data;
    size_t len;
} hc_slice;

typedef struct hc_mut_slice {
    uint8_t *data;
    size_t len;
} hc_mut_slice;

typedef struct hc_vdevice hc_vdevice;
typedef struct hc_model hc_model;
typedef struct hc_monitor hc_monitor;

// What Device::identify says, as NUL-terminated strings.
typedef struct hc_identity {
    uint32_t fw_major;
    uint32_t fw_minor;
    uint32_t fw_revision;
    int32_t architecture;  // hailo_device_architecture_t
    char board_name[64];
    char serial_number[64];
    char product_name[64];
} hc_identity;

// What the device's notifications said so far.
typedef struct hc_device_events {
    int32_t throttling_state;  // hailo_hw_throttling_state_t; -1 until a notification came
    uint64_t throttling_changes;
    uint64_t temperature_alarms;
    uint64_t overcurrent_alarms;
    int32_t throttling_subscribed;  // 0 when this HailoRT has no throttling notification
} hc_device_events;

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

    static size_t rounded(size_t size) { return ((size + kPage - 1) / kPage) * kPage; }

    explicit PageBuffer(size_t size) : m_size(size)
    {
        m_data = static_cast<uint8_t *>(std::aligned_alloc(kPage, rounded(size)));
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

// One job's buffers, allocated once and reused: up to max_frames frames of every input and
// output (frame-major: frame f, stream i at f * streams + i).
struct JobSlot {
    enum class State {
        Free,       // in the pool
        Claimed,    // a submitter fills it
        Running,    // submitted; HailoRT owns the buffers until the callback
        Done,       // the callback ran; the collector copies the outputs out
        Abandoned,  // its collector gave up (a timeout); the callback frees it
    };
    std::vector<std::unique_ptr<PageBuffer>> inputs;
    std::vector<std::unique_ptr<PageBuffer>> outputs;
    State state = State::Free;
    hailo_status status = HAILO_SUCCESS;
    size_t frames = 0;
};

// A model's job slots. Completion callbacks hold the pool, so the buffers of a job whose
// collector timed out, or whose model was released, live until HailoRT is done with them.
// The pool holds the device, whose DMA mappings of the buffers it undoes last.
struct SlotPool {
    std::shared_ptr<DeviceHolder> holder;
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<JobSlot> slots;
    struct Mapping {
        void *address;
        size_t size;
        hailo_dma_buffer_direction_t direction;
    };
    std::vector<Mapping> mappings;

    ~SlotPool()
    {
        for (const auto &m : mappings) {
            holder->device->dma_unmap(m.address, m.size, m.direction);
        }
    }

    // Maps a buffer for DMA where HailoRT offers it; an unmapped buffer works as well,
    // HailoRT maps it for each transfer instead.
    bool map(PageBuffer &buffer, hailo_dma_buffer_direction_t direction)
    {
        const size_t rounded = PageBuffer::rounded(buffer.size());
        if (holder->device->dma_map(buffer.data(), rounded, direction) != HAILO_SUCCESS) {
            return false;
        }
        mappings.push_back(Mapping{buffer.data(), rounded, direction});
        return true;
    }
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

// A handle on the physical device beside the VDevice, for its health: on Hailo-10H one hrpc
// connection serves requests one at a time, so inference never waits behind these.
struct hc_monitor {
    std::atomic<int32_t> throttling_state{-1};
    std::atomic<uint64_t> throttling_changes{0};
    std::atomic<uint64_t> temperature_alarms{0};
    std::atomic<uint64_t> overcurrent_alarms{0};
    bool throttling_subscribed = false;
    // Last member, destroyed first: its notification callbacks write the counters above.
    std::unique_ptr<hailort::Device> device;
};

struct hc_model {
    std::shared_ptr<DeviceHolder> holder;  // first member: the device outlives the model
    std::string hef_path;
    std::shared_ptr<hailort::InferModel> model;
    std::vector<std::string> inputs;
    std::vector<std::string> outputs;
    uint16_t batch_size = 0;
    // Set by hc_model_configure and kept: a pipeline replaced after a failure has the same.
    std::vector<size_t> input_frame_sizes;
    std::vector<size_t> output_frame_sizes;
    size_t max_frames = 0;
    size_t jobs_in_flight = 0;  // asked for by hc_model_configure; 0: the async queue size
    size_t max_jobs = 1;        // the most jobs_in_flight may come to
    // Made by the first hc_model_configure; kept across reconfigurations.
    std::shared_ptr<SlotPool> pool;
    // Serializes submissions and the pipeline's replacement: jobs run concurrently, but
    // each is handed to HailoRT by one thread at a time.
    std::mutex submit_mutex;
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
    if (m->pool) {
        // A pipeline replaced after a failure: frame sizes, batch and buffers stay as they
        // were (collectors read them without the submit lock).
        m->configured = std::make_unique<hailort::ConfiguredInferModel>(configured.release());
        return HC_OK;
    }
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
    const size_t jobs = std::min(m->max_jobs,
                                 std::max<size_t>(1, m->jobs_in_flight > 0 ? m->jobs_in_flight : queue.value()));
    auto pool = std::make_shared<SlotPool>();
    pool->holder = m->holder;
    pool->slots.resize(jobs);
    for (auto &slot : pool->slots) {
        for (size_t f = 0; f < m->max_frames; f++) {
            for (size_t size : m->input_frame_sizes) {
                slot.inputs.push_back(std::make_unique<PageBuffer>(size));
                pool->map(*slot.inputs.back(), HAILO_DMA_BUFFER_DIRECTION_H2D);
            }
            for (size_t size : m->output_frame_sizes) {
                slot.outputs.push_back(std::make_unique<PageBuffer>(size));
                pool->map(*slot.outputs.back(), HAILO_DMA_BUFFER_DIRECTION_D2H);
            }
        }
    }
    m->pool = std::move(pool);
    m->configured = std::make_unique<hailort::ConfiguredInferModel>(configured.release());
    return HC_OK;
}

// Returns a claimed slot to the pool (a submission that did not happen).
void release_slot(SlotPool &pool, size_t index)
{
    {
        std::lock_guard<std::mutex> lock(pool.mutex);
        pool.slots[index].state = JobSlot::State::Free;
    }
    pool.changed.notify_all();
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

// Configures the model for batches of up to `batch_size` frames, with `jobs_in_flight`
// jobs submitted at once (0: HailoRT's async queue size), at most `max_jobs`.
// `max_frames` receives the most frames one job takes (the batch size, capped by HailoRT's
// queue), `jobs` the jobs kept in flight. The buffers of every job are allocated here, once.
int32_t hc_model_configure(hc_model *model, uint16_t batch_size, size_t jobs_in_flight, size_t max_jobs,
                           size_t *max_frames, size_t *jobs, hc_error *err)
{
    return guarded(err, [&]() -> int32_t {
        std::lock_guard<std::mutex> submit_lock(model->submit_mutex);
        if (model->pool) {
            return reject(err, HC_FAILED, "hc_model_configure may run once");
        }
        model->batch_size = batch_size;
        model->jobs_in_flight = jobs_in_flight;
        model->max_jobs = std::max<size_t>(1, max_jobs);
        auto code = configure(model, err);
        if (code == HC_OK) {
            *max_frames = model->max_frames;
            *jobs = model->pool->slots.size();
        }
        return code;
    });
}

// Number of input and output buffers of a model that HailoRT DMA-mapped in advance (0
// where it does not offer mapping).
size_t hc_model_mapped_buffers(hc_model *model)
{
    if (!model->pool) {
        return 0;
    }
    std::lock_guard<std::mutex> lock(model->pool->mutex);
    return model->pool->mappings.size();
}

// Submits `frames` frames as one job and returns at once. `inputs` holds frames × the
// model's inputs (frame-major), each exactly its stream's frame size; they are copied into
// the job's own buffers. Waits at most `timeout_ms` for a free job slot and for room in
// HailoRT's queue. `job` receives the handle hc_model_collect or hc_model_abandon takes,
// exactly once.
int32_t hc_model_submit(hc_model *model, size_t frames, const hc_slice *inputs, size_t input_count,
                        uint32_t timeout_ms, size_t *job, hc_error *err)
{
    return guarded(err, [&]() -> int32_t {
        const Deadline deadline(timeout_ms);
        if (!model->pool) {
            return reject(err, HC_FAILED, "hc_model_submit before hc_model_configure");
        }
        if (frames == 0 || frames > model->max_frames) {
            return reject(err, HC_SHAPE_MISMATCH,
                          "a job takes 1 to " + std::to_string(model->max_frames) + " frames, got " +
                              std::to_string(frames));
        }
        if (input_count != model->inputs.size()) {
            return reject(err, HC_SHAPE_MISMATCH, "wrong number of input buffers");
        }
        for (size_t k = 0; k < frames * input_count; k++) {
            const size_t i = k % input_count;
            if (inputs[k].len != model->input_frame_sizes[i]) {
                return reject(err, HC_SHAPE_MISMATCH,
                              "input " + model->inputs[i] + ": " + std::to_string(inputs[k].len) +
                                  " bytes for a frame of " + std::to_string(model->input_frame_sizes[i]));
            }
        }
        SlotPool &pool = *model->pool;
        size_t index = 0;
        {
            std::unique_lock<std::mutex> lock(pool.mutex);
            auto free_slot = [&] {
                for (index = 0; index < pool.slots.size(); index++) {
                    if (pool.slots[index].state == JobSlot::State::Free) {
                        return true;
                    }
                }
                return false;
            };
            if (!pool.changed.wait_for(lock, deadline.remaining(), free_slot)) {
                return report(err, HC_TIMEOUT, HAILO_TIMEOUT,
                              "no job slot of " + model->hef_path + " came free within " +
                                  std::to_string(timeout_ms) + " ms");
            }
            pool.slots[index].state = JobSlot::State::Claimed;
        }
        JobSlot &slot = pool.slots[index];
        for (size_t k = 0; k < frames * input_count; k++) {
            std::memcpy(slot.inputs[k]->data(), inputs[k].data, inputs[k].len);
        }
        slot.frames = frames;

        std::lock_guard<std::mutex> submit_lock(model->submit_mutex);
        if (!model->configured) {
            auto code = configure(model, err);
            if (code != HC_OK) {
                release_slot(pool, index);
                return code;
            }
        }
        const size_t output_count = model->outputs.size();
        std::vector<hailort::ConfiguredInferModel::Bindings> bindings;
        for (size_t f = 0; f < frames; f++) {
            auto binding = model->configured->create_bindings();
            if (!binding) {
                release_slot(pool, index);
                return fail(err, binding.status(), Stage::Run, "create_bindings");
            }
            for (size_t i = 0; i < input_count; i++) {
                auto &buffer = *slot.inputs[f * input_count + i];
                auto stream = binding->input(model->inputs[i]);
                auto status = stream ? stream->set_buffer(hailort::MemoryView(buffer.data(), buffer.size()))
                                     : stream.status();
                if (status != HAILO_SUCCESS) {
                    release_slot(pool, index);
                    return fail(err, status, Stage::Run, "bindings input " + model->inputs[i]);
                }
            }
            for (size_t o = 0; o < output_count; o++) {
                auto &buffer = *slot.outputs[f * output_count + o];
                auto stream = binding->output(model->outputs[o]);
                auto status = stream ? stream->set_buffer(hailort::MemoryView(buffer.data(), buffer.size()))
                                     : stream.status();
                if (status != HAILO_SUCCESS) {
                    release_slot(pool, index);
                    return fail(err, status, Stage::Run, "bindings output " + model->outputs[o]);
                }
            }
            bindings.push_back(binding.release());
        }
        auto status = model->configured->wait_for_async_ready(deadline.remaining(), static_cast<uint32_t>(frames));
        if (status != HAILO_SUCCESS) {
            release_slot(pool, index);
            if (status != HAILO_TIMEOUT) {
                drop_pipeline(model);
            }
            return fail(err, status, Stage::Run, "wait_for_async_ready(" + model->hef_path + ")");
        }
        {
            std::lock_guard<std::mutex> lock(pool.mutex);
            slot.state = JobSlot::State::Running;
        }
        std::shared_ptr<SlotPool> keep = model->pool;
        auto submitted = model->configured->run_async(bindings, [keep, index](const hailort::AsyncInferCompletionInfo &info) {
            {
                std::lock_guard<std::mutex> lock(keep->mutex);
                JobSlot &done = keep->slots[index];
                done.status = info.status;
                done.state = done.state == JobSlot::State::Abandoned ? JobSlot::State::Free : JobSlot::State::Done;
            }
            keep->changed.notify_all();
        });
        if (!submitted) {
            // HailoRT ran no callback for a job it refused.
            release_slot(pool, index);
            drop_pipeline(model);
            return fail(err, submitted.status(), Stage::Run, "run_async(" + model->hef_path + ")");
        }
        // The callback, not this handle, tells of completion: a handle destroyed without a
        // wait would block on the job.
        submitted->detach();
        *job = index;
        return HC_OK;
    });
}

// Waits at most `timeout_ms` for job `job` and copies its outputs into `outputs` (frames ×
// the model's outputs, frame-major, each exactly its stream's frame size). On a timeout the
// job is abandoned: it finishes on the device, its buffers live until then, and its slot
// comes free with its callback. A device error fails this job and stops the pipeline, as
// HailoRT does; the next submission configures a new one.
int32_t hc_model_collect(hc_model *model, size_t job, const hc_mut_slice *outputs, size_t output_count,
                         uint32_t timeout_ms, hc_error *err)
{
    return guarded(err, [&]() -> int32_t {
        if (!model->pool || job >= model->pool->slots.size()) {
            return reject(err, HC_FAILED, "hc_model_collect of an unknown job");
        }
        SlotPool &pool = *model->pool;
        std::unique_lock<std::mutex> lock(pool.mutex);
        JobSlot &slot = pool.slots[job];
        if (slot.state != JobSlot::State::Running && slot.state != JobSlot::State::Done) {
            return reject(err, HC_FAILED, "hc_model_collect of a job not in flight");
        }
        const bool done = pool.changed.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                                [&] { return slot.state == JobSlot::State::Done; });
        if (!done) {
            slot.state = JobSlot::State::Abandoned;
            return report(err, HC_TIMEOUT, HAILO_TIMEOUT,
                          "inference on " + model->hef_path + " did not finish within " + std::to_string(timeout_ms) +
                              " ms");
        }
        const hailo_status status = slot.status;
        int32_t code = HC_OK;
        if (status != HAILO_SUCCESS) {
            code = fail(err, status, Stage::Run, "inference on " + model->hef_path);
        } else if (output_count != model->outputs.size()) {
            code = reject(err, HC_SHAPE_MISMATCH, "wrong number of output buffers");
        } else {
            for (size_t k = 0; k < slot.frames * output_count; k++) {
                if (outputs[k].len != model->output_frame_sizes[k % output_count]) {
                    code = reject(err, HC_SHAPE_MISMATCH,
                                  "output " + model->outputs[k % output_count] + ": " +
                                      std::to_string(outputs[k].len) + " bytes for a frame of " +
                                      std::to_string(model->output_frame_sizes[k % output_count]));
                    break;
                }
            }
            for (size_t k = 0; code == HC_OK && k < slot.frames * output_count; k++) {
                std::memcpy(outputs[k].data, slot.outputs[k]->data(), outputs[k].len);
            }
        }
        slot.state = JobSlot::State::Free;
        lock.unlock();
        pool.changed.notify_all();
        if (status != HAILO_SUCCESS) {
            std::lock_guard<std::mutex> submit_lock(model->submit_mutex);
            drop_pipeline(model);
        }
        return code;
    });
}

// Gives up on job `job` without its outputs (its request failed otherwise): its slot comes
// free with its callback, or now if that already ran.
void hc_model_abandon(hc_model *model, size_t job)
{
    if (!model->pool || job >= model->pool->slots.size()) {
        return;
    }
    SlotPool &pool = *model->pool;
    {
        std::lock_guard<std::mutex> lock(pool.mutex);
        JobSlot &slot = pool.slots[job];
        if (slot.state == JobSlot::State::Done) {
            slot.state = JobSlot::State::Free;
        } else if (slot.state == JobSlot::State::Running) {
            slot.state = JobSlot::State::Abandoned;
        }
    }
    pool.changed.notify_all();
}

// Notification ids by number (hailort.h): the throttling event is 5.x only, so it is not
// named here, and registering it fails on a HailoRT without it.
const int NOTIFICATION_TEMPERATURE_ALARM = 1;
const int NOTIFICATION_OVERCURRENT_ALARM = 3;
const int NOTIFICATION_THROTTLING_STATE_CHANGE = 14;

// Opens the physical device `device_id` (null: the first) for its health, and subscribes to
// its alarm and throttling notifications where HailoRT offers them.
int32_t hc_monitor_open(const char *device_id, hc_monitor **out, hc_error *err)
{
    return guarded(err, [&]() -> int32_t {
        auto device = device_id != nullptr ? hailort::Device::create(device_id) : hailort::Device::create();
        if (!device) {
            return fail(err, device.status(), Stage::Device, "Device::create");
        }
        auto monitor = std::make_unique<hc_monitor>();
        monitor->device = device.release();
        hc_monitor *m = monitor.get();
        auto subscribe = [&](int id, std::function<void(const hailo_notification_t &)> on) {
            return m->device->set_notification_callback(
                       [on](hailort::Device &, const hailo_notification_t &n, void *) { on(n); },
                       static_cast<hailo_notification_id_t>(id), nullptr) == HAILO_SUCCESS;
        };
        subscribe(NOTIFICATION_TEMPERATURE_ALARM, [m](const hailo_notification_t &) { m->temperature_alarms++; });
        subscribe(NOTIFICATION_OVERCURRENT_ALARM, [m](const hailo_notification_t &) { m->overcurrent_alarms++; });
        m->throttling_subscribed = subscribe(NOTIFICATION_THROTTLING_STATE_CHANGE, [m](const hailo_notification_t &n) {
            // hailo_throttling_state_change_message_t: a uint16_t new_state at the body's start.
            uint16_t state = 0;
            std::memcpy(&state, &n.body, sizeof(state));
            m->throttling_state = state;
            m->throttling_changes++;
        });
        *out = monitor.release();
        return HC_OK;
    });
}

void hc_monitor_release(hc_monitor *monitor)
{
    delete monitor;
}

int32_t hc_monitor_identify(hc_monitor *monitor, hc_identity *out, hc_error *err)
{
    return guarded(err, [&]() -> int32_t {
        auto identity = monitor->device->identify();
        if (!identity) {
            return fail(err, identity.status(), Stage::Run, "Device::identify");
        }
        const auto &id = identity.value();
        out->fw_major = id.fw_version.major;
        out->fw_minor = id.fw_version.minor;
        out->fw_revision = id.fw_version.revision;
        out->architecture = static_cast<int32_t>(id.device_architecture);
        auto copy = [](char *to, size_t capacity, const char *from, size_t length, size_t max) {
            const size_t n = std::min({length, max, capacity - 1});
            std::memcpy(to, from, n);
            to[n] = '\0';
        };
        copy(out->board_name, sizeof(out->board_name), id.board_name, id.board_name_length, sizeof(id.board_name));
        copy(out->serial_number, sizeof(out->serial_number), id.serial_number, id.serial_number_length,
             sizeof(id.serial_number));
        copy(out->product_name, sizeof(out->product_name), id.product_name, id.product_name_length,
             sizeof(id.product_name));
        return HC_OK;
    });
}

int32_t hc_monitor_temperature(hc_monitor *monitor, float *ts0, float *ts1, hc_error *err)
{
    return guarded(err, [&]() -> int32_t {
        auto info = monitor->device->get_chip_temperature();
        if (!info) {
            return fail(err, info.status(), Stage::Run, "Device::get_chip_temperature");
        }
        *ts0 = info->ts0_temperature;
        *ts1 = info->ts1_temperature;
        return HC_OK;
    });
}

// NN-core utilization in percent (query_performance_stats; a Hailo-10H only).
int32_t hc_monitor_nnc_utilization(hc_monitor *monitor, float *percent, hc_error *err)
{
    return guarded(err, [&]() -> int32_t {
        auto stats = monitor->device->query_performance_stats();
        if (!stats) {
            return fail(err, stats.status(), Stage::Run, "Device::query_performance_stats");
        }
        *percent = stats->nnc_utilization;
        return HC_OK;
    });
}

void hc_monitor_events(const hc_monitor *monitor, hc_device_events *out)
{
    out->throttling_state = monitor->throttling_state.load();
    out->throttling_changes = monitor->throttling_changes.load();
    out->temperature_alarms = monitor->temperature_alarms.load();
    out->overcurrent_alarms = monitor->overcurrent_alarms.load();
    out->throttling_subscribed = monitor->throttling_subscribed ? 1 : 0;
}

}  // extern "C"
