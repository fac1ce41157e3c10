// HailoRT test double for hailo-clip: implements the subset of HailoRT's C++ API declared
// in include/hailo/, so src/backends/hailo/shim.cpp compiles and runs against it unchanged
// (cargo feature `hailo-fake`). No accelerator is involved: a "HEF" is a small text file
// naming its streams and a transform, and outputs are a deterministic function of inputs,
// so tests can compute every expected embedding themselves.
//
// Fake HEF (one directive per line, `#` comments):
//   hailo-clip-fake-hef 1                      first line, always
//   transform image_channel_means | text_rows | text_causal_mean | onnx FILE
//   input  NAME H W F TYPE ORDER [ZP SCALE]...  TYPE uint8|uint16|float32, ORDER nhwc|nc|nhw|nchw
//   output NAME H W F TYPE ORDER [ZP SCALE]...  (no ZP SCALE pair means zp 0, scale 1)
//   queue_size N                                optional: async queue size in frames (default:
//                                               batch size); wait_for_async_ready waits for room
//   control PATH                                optional: fault file read on every run_async
//   log PATH                                    optional: one line per run_async,
//       "frames=N in_flight=J mapped=M" (J: this model's jobs submitted and not completed,
//       this one included; M: input and output buffers inside a dma_map'ed range), and one
//       per completion, "done frames=N", with " input-changed" when an input buffer no
//       longer holds what it held at run_async (its owner reused it before the callback)
//   device_cost FIXED_MS FRAME_MS [SWITCH_MS]   optional: cost the model's work as the device
//       does. Every model with the directive shares the one device (in this process), which
//       runs one hardware batch at a time, as HailoRT's scheduler drives it (hailort v5.2.0
//       libhailort/src/vdevice/scheduler/): when the device is idle it turns to the next
//       model, round robin, that has frames waiting (scheduler_oracle.cpp,
//       choose_next_model_to_run) and takes up to the configured batch size of them, oldest
//       first, across jobs (scheduler.cpp, switch_core_op: frames_count = min(frames ready,
//       burst size), and ConfiguredInferModel::run_async hands each binding over as its own
//       frame, infer_model.cpp). A batch of n frames costs FIXED_MS + n * FRAME_MS, plus
//       SWITCH_MS when the previous batch was another model's or of another size (both make
//       the scheduler call set_core_op). A job completes when its last frame has. Without
//       the directive, a job completes at once (or after the control file's delay), in
//       parallel with others.
//   The log (above) also gets "batch frames=N" when the device runs a batch of this model.
// Exactly one input and one output.
//
// Transforms, computed in double on the input elements as numbers (uint8/uint16 values as
// they are, float32 as it is), written to the output in its host format: float32 as is,
// uint8/uint16 quantized with the first quant info, q = clamp(llround(v / scale + zp)).
//   image_channel_means: c = F of the input, mean[k] = (sum of channel k) / (H * W),
//       out[j] = mean[j % c] / 255.0 * ((j % 5) + 1) - (j % 2)
//   text_rows: rows R = H * W, columns C = F (same for input and output),
//       out[t][k] = in[t][(k + 1) % C] + 0.01 * t + 0.5 * in[R - 1][k]
//       (the last term reads the padding row, so tests can see what padding was used)
//   text_causal_mean: like a causal attention layer, each row depends on every token so far:
//       out[t][k] = (in[0][k] + ... + in[t][k]) / (t + 1)
//   onnx FILE: runs the float32 ONNX graph FILE (relative to the HEF's directory) on each
//       frame, through the runner the process registered with hailo_fake_set_onnx_runner
//       (the binary built with `hailo-fake` registers its own CPU engine). What the graph
//       gets is what the device would compute on: a uint8/uint16 input is dequantized with
//       its quant info (a float32 buffer the host hands over for such an input is quantized
//       first, as HailoRT does on the host); what it returns goes back through the output's
//       quantization the same way. scripts/make_double_hefs.py writes such HEFs from a
//       model directory, each graph the part of the model the Model Zoo's HEF computes.
//
// Faults:
//   device: when the VDevice is created with a device id, the id is a path to a file
//     holding "ok" or the name of the status creation returns (HAILO_DEVICE_IN_USE, ...);
//     a missing file is HAILO_INVALID_ARGUMENT, as HailoRT says of an unknown id.
//     "ok no-dma-map" opens a device whose dma_map returns HAILO_NOT_IMPLEMENTED.
//     Without a device id the fake device "fake-hailo10h:0" is always there.
//     multi_process_service = true is refused (on Hailo-10H it must stay false).
//     "ok fault KIND EVERY_S" opens a device that faults EVERY_S seconds after it was
//     created (so a fault never piles onto a recovery: the next one comes EVERY_S after
//     the re-created device), as HailoRT v5.2.0 reports each fault:
//       communication_closed  the device side closed the link (hrpc/client.cpp): every job
//                             in flight completes with HAILO_COMMUNICATION_CLOSED and every
//                             new run_async fails with it, until the VDevice is re-created
//       device_not_connected  the host lost the device (a PCIe reset): new run_async calls
//                             fail with HAILO_DEVICE_NOT_CONNECTED, jobs in flight never
//                             complete (their waits time out), and the next 2 VDevice
//                             creations fail with HAILO_DEVICE_NOT_CONNECTED
//       timeout               the device hangs: no job completes, run_async accepts jobs
//                             until the queue is full, until the VDevice is re-created
//       device_in_use         as communication_closed, then the next creation fails with
//                             HAILO_DEVICE_IN_USE (hailort_server waits up to 5 s for the
//                             old session to end, hailort_server.cpp)
//     The file is read at every creation, and at every job: a new EVERY_S (same KIND) seen
//     at a job counts from that moment, one seen at a creation from the creation.
//     Each fault appends "fault KIND" and each creation "open STATUS" to DEVICE_ID.log.
//
// Device health (Device::create(id), a handle beside the VDevice, as on a Hailo-10H):
//   identify: firmware 5.2.0, architecture HAILO10H, board "hailo10h-double", serial
//     "HLDBL0000000001", product "HAILO-10H TEST DOUBLE".
//   The device file's later lines script the rest, read at every call:
//     temperature TS0 TS1      get_chip_temperature (default 45.5 46.0)
//     nnc_utilization PCT      query_performance_stats' nnc_utilization (default 0)
//     throttling STATE         a THROTTLING_STATE_CHANGE_EVENT notification with STATE
//                              (hailo_hw_throttling_state_t) whenever it changes while
//                              a handle is open (none for the state it opened in)
//     temperature_alarms N     a HEALTH_MONITOR_TEMPERATURE_ALARM notification per increase
//     overcurrent_alarms N     a HEALTH_MONITOR_OVERCURRENT_ALARM notification per increase
//   Without a device id, the defaults and no notifications.
//   run: the control file holds "ok", "delay MS" (completion comes MS later; shutdown
//     aborts it with HAILO_STREAM_ABORT) or "status NAME" (run_async fails with that status
//     and, as in HailoRT, the configured model shuts down).

#include "hailo/hailort.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

namespace
{

struct StatusName {
    hailo_status status;
    const char *name;
};

const StatusName STATUS_NAMES[] = {
    {HAILO_SUCCESS, "HAILO_SUCCESS"},
    {HAILO_UNINITIALIZED, "HAILO_UNINITIALIZED"},
    {HAILO_INVALID_ARGUMENT, "HAILO_INVALID_ARGUMENT"},
    {HAILO_OUT_OF_HOST_MEMORY, "HAILO_OUT_OF_HOST_MEMORY"},
    {HAILO_TIMEOUT, "HAILO_TIMEOUT"},
    {HAILO_INVALID_OPERATION, "HAILO_INVALID_OPERATION"},
    {HAILO_INTERNAL_FAILURE, "HAILO_INTERNAL_FAILURE"},
    {HAILO_OPEN_FILE_FAILURE, "HAILO_OPEN_FILE_FAILURE"},
    {HAILO_FILE_OPERATION_FAILURE, "HAILO_FILE_OPERATION_FAILURE"},
    {HAILO_INVALID_HEF, "HAILO_INVALID_HEF"},
    {HAILO_PCIE_NOT_SUPPORTED_ON_PLATFORM, "HAILO_PCIE_NOT_SUPPORTED_ON_PLATFORM"},
    {HAILO_NOT_FOUND, "HAILO_NOT_FOUND"},
    {HAILO_STREAM_ABORT, "HAILO_STREAM_ABORT"},
    {HAILO_DRIVER_NOT_INSTALLED, "HAILO_DRIVER_NOT_INSTALLED"},
    {HAILO_DEVICE_IN_USE, "HAILO_DEVICE_IN_USE"},
    {HAILO_INVALID_DRIVER_VERSION, "HAILO_INVALID_DRIVER_VERSION"},
    {HAILO_OUT_OF_PHYSICAL_DEVICES, "HAILO_OUT_OF_PHYSICAL_DEVICES"},
    {HAILO_HEF_FILE_CORRUPTED, "HAILO_HEF_FILE_CORRUPTED"},
    {HAILO_HEF_NOT_SUPPORTED, "HAILO_HEF_NOT_SUPPORTED"},
    {HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE, "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE"},
    {HAILO_DRIVER_OPERATION_FAILED, "HAILO_DRIVER_OPERATION_FAILED"},
    {HAILO_COMMUNICATION_CLOSED, "HAILO_COMMUNICATION_CLOSED"},
    {HAILO_DRIVER_INVALID_RESPONSE, "HAILO_DRIVER_INVALID_RESPONSE"},
    {HAILO_DRIVER_INVALID_IOCTL, "HAILO_DRIVER_INVALID_IOCTL"},
    {HAILO_DRIVER_TIMEOUT, "HAILO_DRIVER_TIMEOUT"},
    {HAILO_DRIVER_INTERRUPTED, "HAILO_DRIVER_INTERRUPTED"},
    {HAILO_DRIVER_WAIT_CANCELED, "HAILO_DRIVER_WAIT_CANCELED"},
    {HAILO_CONNECTION_REFUSED, "HAILO_CONNECTION_REFUSED"},
    {HAILO_DEVICE_NOT_CONNECTED, "HAILO_DEVICE_NOT_CONNECTED"},
    {HAILO_DEVICE_TEMPORARILY_UNAVAILABLE, "HAILO_DEVICE_TEMPORARILY_UNAVAILABLE"},
};

bool status_from_name(const std::string &name, hailo_status *out)
{
    for (const auto &entry : STATUS_NAMES) {
        if (name == entry.name) {
            *out = entry.status;
            return true;
        }
    }
    return false;
}

std::string trim(const std::string &text)
{
    const auto begin = text.find_first_not_of(" \t\r\n");
    if (begin == std::string::npos) {
        return "";
    }
    return text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
}

// The first line of a file, trimmed; false when it cannot be opened.
bool read_first_line(const std::string &path, std::string *line)
{
    std::ifstream file(path);
    if (!file) {
        return false;
    }
    std::getline(file, *line);
    *line = trim(*line);
    return true;
}

// A device file's "ok fault KIND EVERY_S" (see "Faults" above); false for any other line.
bool parse_fault_line(const std::string &state, std::string *kind, double *every_s)
{
    std::istringstream words(state);
    std::string ok;
    std::string fault;
    return (words >> ok >> fault >> *kind >> *every_s) && ok == "ok" && fault == "fault" && *every_s > 0.0 &&
        (*kind == "communication_closed" || *kind == "device_not_connected" || *kind == "timeout" ||
         *kind == "device_in_use");
}

size_t element_bytes(hailo_format_type_t type)
{
    switch (type) {
    case HAILO_FORMAT_TYPE_UINT16:
        return 2;
    case HAILO_FORMAT_TYPE_FLOAT32:
        return 4;
    default:
        return 1;
    }
}

} // namespace

// The double's hook for `transform onnx`: a function that runs the ONNX graph at `path` on
// `input` (float32, the graph's one input, its element count) into `output`; 0 on success,
// else non-zero with a message in `error`. Registered by the process (the binary built with
// the `hailo-fake` feature registers its CPU engine), never by the shim.
extern "C" {
typedef int (*hailo_fake_onnx_runner)(const char *path, const float *input, size_t input_len, float *output,
    size_t output_len, char *error, size_t error_len);
void hailo_fake_set_onnx_runner(hailo_fake_onnx_runner runner);
}

namespace {
std::atomic<hailo_fake_onnx_runner> &onnx_runner()
{
    static std::atomic<hailo_fake_onnx_runner> runner{nullptr};
    return runner;
}
} // namespace

extern "C" void hailo_fake_set_onnx_runner(hailo_fake_onnx_runner runner)
{
    onnx_runner().store(runner);
}

namespace hailort
{
namespace fake
{

struct StreamSpec {
    std::string name;
    hailo_3d_image_shape_t shape{};
    hailo_format_t native{};
    hailo_format_t user{};
    std::vector<hailo_quant_info_t> quant;

    size_t elements() const { return size_t(shape.height) * shape.width * shape.features; }
    hailo_format_type_t user_type() const { return user.type == HAILO_FORMAT_TYPE_AUTO ? native.type : user.type; }
    size_t frame_size() const { return elements() * element_bytes(user_type()); }
};

struct ModelSpec {
    std::string path;
    std::string transform;
    // transform onnx: the graph's path, resolved against the HEF's directory.
    std::string onnx;
    std::vector<std::shared_ptr<StreamSpec>> inputs;
    std::vector<std::shared_ptr<StreamSpec>> outputs;
    std::vector<std::string> input_names;
    std::vector<std::string> output_names;
    size_t queue_size = 0;
    std::string control;
    std::string log;
    // The device's scheduled fault, if any (set by create_infer_model).
    std::shared_ptr<DeviceFaults> faults;
    // device_cost; paced is false without it.
    bool paced = false;
    double fixed_ms = 0.0;
    double frame_ms = 0.0;
    double switch_ms = 0.0;
};

using Clock = std::chrono::steady_clock;

// A scheduled fault of one fake device (see "Faults" above). One per device id, kept across
// VDevice creations, so that failures on re-open can be counted.
struct DeviceFaults {
    std::string id;
    std::string kind;
    double every_s = 0.0;
    std::mutex mutex;
    Clock::time_point healthy_since{};  // the last creation
    bool triggered = false;             // the current VDevice has faulted
    int failing_opens = 0;              // creations still to fail, and with what
    hailo_status open_status = HAILO_SUCCESS;

    // When the current device faults (under the lock).
    Clock::time_point fault_at() const
    {
        return healthy_since + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(every_s));
    }

    // A new EVERY_S for the same kind written to the device file while the device runs:
    // the period counts from now (under the lock). A test warms the device up first, then
    // schedules its fault, however slow the machine.
    void reread()
    {
        std::string state;
        std::string new_kind;
        double new_every_s = 0.0;
        if (read_first_line(id, &state) && parse_fault_line(state, &new_kind, &new_every_s) &&
            new_kind == kind && new_every_s != every_s) {
            every_s = new_every_s;
            healthy_since = Clock::now();
        }
    }

    // When the current device faults, for a job being submitted: the file is read once a job.
    Clock::time_point next_fault()
    {
        std::lock_guard<std::mutex> lock(mutex);
        reread();
        return fault_at();
    }

    // Whether the current device has faulted by now; the first to see it records it.
    bool faulted()
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (triggered) {
            return true;
        }
        if (Clock::now() < fault_at()) {
            return false;
        }
        triggered = true;
        if (kind == "device_not_connected") {
            failing_opens = 2;
            open_status = HAILO_DEVICE_NOT_CONNECTED;
        } else if (kind == "device_in_use") {
            failing_opens = 1;
            open_status = HAILO_DEVICE_IN_USE;
        }
        log("fault " + kind);
        return true;
    }

    // The status run_async and completions get once faulted; HAILO_TIMEOUT means a hang.
    hailo_status status() const
    {
        if (kind == "device_not_connected") {
            return HAILO_DEVICE_NOT_CONNECTED;
        }
        if (kind == "timeout") {
            return HAILO_TIMEOUT;
        }
        return HAILO_COMMUNICATION_CLOSED;
    }

    // A creation of the device: fails while failures are due, else the device is healthy.
    hailo_status open()
    {
        std::lock_guard<std::mutex> lock(mutex);
        hailo_status status = HAILO_SUCCESS;
        if (failing_opens > 0) {
            failing_opens--;
            status = open_status;
        } else {
            triggered = false;
            healthy_since = Clock::now();
        }
        log(std::string("open ") + (status == HAILO_SUCCESS ? "ok" : std::to_string(int(status))));
        return status;
    }

    void log(const std::string &line);
};

std::shared_ptr<DeviceFaults> device_faults(const std::string &id, const std::string &kind, double every_s)
{
    static std::mutex mutex;
    static std::map<std::string, std::shared_ptr<DeviceFaults>> all;
    std::lock_guard<std::mutex> lock(mutex);
    auto &faults = all[id];
    if (!faults || faults->kind != kind) {
        faults = std::make_shared<DeviceFaults>();
        faults->id = id;
        faults->kind = kind;
    }
    // A new period applies from this creation on; failures still due on re-open stay due.
    std::lock_guard<std::mutex> faults_lock(faults->mutex);
    faults->every_s = every_s;
    return faults;
}

// A job of a paced model, as the device sees it: frames taken into batches and done.
struct PacedJob {
    size_t frames = 0;
    size_t started = 0;
    size_t done = 0;
    bool aborted = false;
};

// A paced model configured on the device: its cost and its jobs not yet done, oldest first.
struct Network {
    uint64_t id = 0;
    double fixed_ms = 0.0;
    double frame_ms = 0.0;
    double switch_ms = 0.0;
    size_t burst = 1;
    std::string log;
    std::deque<std::shared_ptr<PacedJob>> jobs;

    bool waiting() const
    {
        return std::any_of(jobs.begin(), jobs.end(), [](const auto &j) { return j->started < j->frames; });
    }
};

// The one device every paced model shares (see device_cost above). Its thread runs for the
// life of the process; the device is never destroyed, so nothing waits on it at exit.
struct Device {
    std::mutex mutex;
    std::condition_variable work;      // frames were queued
    std::condition_variable finished;  // frames were done, or jobs aborted
    std::vector<std::shared_ptr<Network>> networks;  // in configuration order
    size_t next = 0;                   // round robin
    uint64_t next_id = 1;
    uint64_t last_network = 0;
    size_t last_batch = 0;
    Clock::time_point busy_until{};

    Device()
    {
        std::thread([this] { run(); }).detach();
    }

    std::shared_ptr<Network> attach(const ModelSpec &spec, size_t burst)
    {
        auto network = std::make_shared<Network>();
        network->fixed_ms = spec.fixed_ms;
        network->frame_ms = spec.frame_ms;
        network->switch_ms = spec.switch_ms;
        network->burst = std::max<size_t>(1, burst);
        network->log = spec.log;
        std::lock_guard<std::mutex> lock(mutex);
        network->id = next_id++;
        networks.push_back(network);
        return network;
    }

    // The model is shut down: its jobs end aborted, and it takes no more device time.
    void detach(const std::shared_ptr<Network> &network)
    {
        {
            std::lock_guard<std::mutex> lock(mutex);
            for (auto &job : network->jobs) {
                job->aborted = true;
            }
            network->jobs.clear();
            networks.erase(std::remove(networks.begin(), networks.end(), network), networks.end());
        }
        finished.notify_all();
    }

    std::shared_ptr<PacedJob> submit(const std::shared_ptr<Network> &network, size_t frames)
    {
        auto job = std::make_shared<PacedJob>();
        job->frames = frames;
        {
            std::lock_guard<std::mutex> lock(mutex);
            network->jobs.push_back(job);
        }
        work.notify_all();
        return job;
    }

    enum class Wait { done, aborted, deadline };

    // Waits until `job` is done or aborted, or `deadline` passes.
    Wait wait(const std::shared_ptr<PacedJob> &job, Clock::time_point deadline)
    {
        std::unique_lock<std::mutex> lock(mutex);
        const bool ended = finished.wait_until(lock, deadline, [&] { return job->aborted || job->done == job->frames; });
        if (!ended) {
            return Wait::deadline;
        }
        return job->aborted ? Wait::aborted : Wait::done;
    }

private:
    void run();
};

Device &device()
{
    static Device *device = new Device();  // never destroyed: its thread outlives main
    return *device;
}
// Address ranges dma_map'ed on any fake device.
struct DmaMaps {
    std::mutex mutex;
    std::vector<std::pair<const uint8_t *, size_t>> ranges;

    bool covers(const MemoryView &view)
    {
        std::lock_guard<std::mutex> lock(mutex);
        for (const auto &range : ranges) {
            if (view.data() >= range.first && view.data() + view.size() <= range.first + range.second) {
                return true;
            }
        }
        return false;
    }
};

DmaMaps &dma_maps()
{
    static DmaMaps maps;
    return maps;
}

void append_log(const std::string &path, const std::string &line)
{
    static std::mutex mutex;
    std::lock_guard<std::mutex> lock(mutex);
    std::ofstream log(path, std::ios::app);
    log << line << "\n";
}

void Device::run()
{
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
        work.wait(lock, [&] {
            return std::any_of(networks.begin(), networks.end(), [](const auto &n) { return n->waiting(); });
        });
        // The next model with frames waiting, round robin.
        std::shared_ptr<Network> network;
        for (size_t k = 0; k < networks.size() && !network; k++) {
            const size_t i = (next + k) % networks.size();
            if (networks[i]->waiting()) {
                network = networks[i];
                next = i + 1;
            }
        }
        std::vector<std::pair<std::shared_ptr<PacedJob>, size_t>> taken;
        size_t frames = 0;
        for (auto &job : network->jobs) {
            if (frames == network->burst) {
                break;
            }
            const size_t take = std::min(job->frames - job->started, network->burst - frames);
            if (take > 0) {
                job->started += take;
                frames += take;
                taken.emplace_back(job, take);
            }
        }
        double cost_ms = network->fixed_ms + double(frames) * network->frame_ms;
        if (network->id != last_network || frames != last_batch) {
            cost_ms += network->switch_ms;
        }
        last_network = network->id;
        last_batch = frames;
        if (!network->log.empty()) {
            append_log(network->log, "batch frames=" + std::to_string(frames));
        }
        // A batch starts where the last one ended, or now when the device was idle. This thread
        // waking late (the host's scheduler) starts the next batch late by as much, as if the
        // device had idled, and lets frames that came meanwhile join it: the double errs slow
        // by the host's wake-up latency, never fast.
        busy_until = std::max(busy_until, Clock::now()) +
            std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(cost_ms));
        const auto until = busy_until;
        lock.unlock();
        std::this_thread::sleep_until(until);
        lock.lock();
        for (auto &entry : taken) {
            entry.first->done += entry.second;
        }
        auto &jobs = network->jobs;
        while (!jobs.empty() && jobs.front()->done == jobs.front()->frames) {
            jobs.pop_front();
        }
        finished.notify_all();
    }
}

void DeviceFaults::log(const std::string &line)
{
    append_log(id + ".log", line);
}

// FNV-1a over every 61st byte and the last: enough to tell one image or text frame from
// another, cheap enough not to load the host in a benchmark.
uint64_t checksum(const MemoryView &view)
{
    uint64_t hash = 1469598103934665603ULL;
    for (size_t i = 0; i < view.size(); i += 61) {
        hash = (hash ^ view.data()[i]) * 1099511628211ULL;
    }
    if (view.size() > 0) {
        hash = (hash ^ view.data()[view.size() - 1]) * 1099511628211ULL;
    }
    return hash;
}

struct BufferSlot {
    MemoryView view;
    bool set = false;
};

struct JobState {
    std::mutex mutex;
    std::condition_variable done_cv;
    bool done = false;
};

// A configured model: formats frozen at configure time, a queue of in-flight requests,
// each completed by its own thread after the control file's delay.
struct Pipeline {
    std::shared_ptr<ModelSpec> spec;
    StreamSpec input;
    StreamSpec output;
    size_t queue_size = 1;
    std::shared_ptr<Network> network;  // on the paced device; null when not paced

    std::mutex mutex;
    std::condition_variable changed;
    size_t pending = 0;  // frames
    size_t jobs_in_flight = 0;
    bool stopped = false;

    struct Worker {
        std::thread thread;
        std::shared_ptr<std::atomic<bool>> finished;
    };
    std::vector<Worker> workers;

    ~Pipeline() { stop(); }

    void stop()
    {
        {
            std::lock_guard<std::mutex> lock(mutex);
            stopped = true;
        }
        changed.notify_all();
        if (network) {
            device().detach(network);
        }
        for (auto &worker : workers) {
            worker.thread.join();
        }
        workers.clear();
    }

    void reap_finished()
    {
        auto done = std::partition(workers.begin(), workers.end(),
            [](const Worker &w) { return !w.finished->load(); });
        for (auto it = done; it != workers.end(); ++it) {
            it->thread.join();
        }
        workers.erase(done, workers.end());
    }

    std::vector<double> read_input(const uint8_t *data) const
    {
        std::vector<double> values(input.elements());
        for (size_t i = 0; i < values.size(); i++) {
            switch (input.user_type()) {
            case HAILO_FORMAT_TYPE_UINT16: {
                uint16_t v;
                std::memcpy(&v, data + 2 * i, 2);
                values[i] = v;
                break;
            }
            case HAILO_FORMAT_TYPE_FLOAT32: {
                float v;
                std::memcpy(&v, data + 4 * i, 4);
                values[i] = v;
                break;
            }
            default:
                values[i] = data[i];
            }
        }
        return values;
    }

    // What the device holds of a host value of `stream`: itself for a float32 stream; for a
    // uint8/uint16 one the level HailoRT quantizes it to (a host buffer already in that
    // type holds the level), dequantized, as the network computes on it.
    static double on_device(const StreamSpec &stream, double host_value, bool host_is_level)
    {
        if (stream.native.type == HAILO_FORMAT_TYPE_FLOAT32 || stream.quant.empty()) {
            return host_value;
        }
        const hailo_quant_info_t q = stream.quant.front();
        const double max = stream.native.type == HAILO_FORMAT_TYPE_UINT16 ? 65535.0 : 255.0;
        const double level = host_is_level ? host_value
            : std::min(max, std::max(0.0, double(std::llround(host_value / q.qp_scale + q.qp_zp))));
        return (level - q.qp_zp) * q.qp_scale;
    }

    std::vector<double> run_onnx(const std::vector<double> &in) const
    {
        std::vector<float> graph_in(in.size());
        const bool levels = input.user_type() != HAILO_FORMAT_TYPE_FLOAT32;
        for (size_t i = 0; i < in.size(); i++) {
            graph_in[i] = static_cast<float>(on_device(input, in[i], levels));
        }
        std::vector<float> graph_out(output.elements());
        char error[512] = {0};
        const auto runner = ::onnx_runner().load();
        const int rc = runner == nullptr ? -1
            : runner(spec->onnx.c_str(), graph_in.data(), graph_in.size(), graph_out.data(), graph_out.size(),
                  error, sizeof(error));
        if (rc != 0) {
            // A broken test set-up, not a device state: say what and stop.
            std::fprintf(stderr, "fake HailoRT: transform onnx %s: %s\n", spec->onnx.c_str(),
                runner == nullptr ? "no ONNX runner registered (hailo_fake_set_onnx_runner)" : error);
            std::abort();
        }
        std::vector<double> out(graph_out.size());
        const bool output_quantized = output.native.type != HAILO_FORMAT_TYPE_FLOAT32 && !output.quant.empty();
        for (size_t i = 0; i < out.size(); i++) {
            // Quantized by the device; a float32 host buffer then gets it dequantized.
            out[i] = output_quantized && output.user_type() == HAILO_FORMAT_TYPE_FLOAT32
                ? on_device(output, graph_out[i], false) : graph_out[i];
        }
        return out;
    }

    void write_output(const std::vector<double> &values, uint8_t *data) const
    {
        const auto type = output.user_type();
        const hailo_quant_info_t q = output.quant.front();
        for (size_t i = 0; i < values.size(); i++) {
            if (type == HAILO_FORMAT_TYPE_FLOAT32) {
                const float v = static_cast<float>(values[i]);
                std::memcpy(data + 4 * i, &v, 4);
                continue;
            }
            const double max = type == HAILO_FORMAT_TYPE_UINT16 ? 65535.0 : 255.0;
            const double level = std::min(max, std::max(0.0, double(std::llround(values[i] / q.qp_scale + q.qp_zp))));
            if (type == HAILO_FORMAT_TYPE_UINT16) {
                const uint16_t v = static_cast<uint16_t>(level);
                std::memcpy(data + 2 * i, &v, 2);
            } else {
                data[i] = static_cast<uint8_t>(level);
            }
        }
    }

    std::vector<double> transform(const std::vector<double> &in) const
    {
        std::vector<double> out(output.elements());
        if (spec->transform == "onnx") {
            return run_onnx(in);
        }
        if (spec->transform == "image_channel_means") {
            const size_t channels = input.shape.features;
            const size_t pixels = size_t(input.shape.height) * input.shape.width;
            std::vector<double> mean(channels, 0.0);
            for (size_t p = 0; p < pixels; p++) {
                for (size_t k = 0; k < channels; k++) {
                    mean[k] += in[p * channels + k];
                }
            }
            for (auto &m : mean) {
                m /= double(pixels);
            }
            for (size_t j = 0; j < out.size(); j++) {
                out[j] = mean[j % channels] / 255.0 * double((j % 5) + 1) - double(j % 2);
            }
        } else if (spec->transform == "text_causal_mean") {
            const size_t rows = size_t(input.shape.height) * input.shape.width;
            const size_t cols = input.shape.features;
            for (size_t k = 0; k < cols; k++) {
                double sum = 0.0;
                for (size_t t = 0; t < rows; t++) {
                    sum += in[t * cols + k];
                    out[t * cols + k] = sum / double(t + 1);
                }
            }
        } else {
            const size_t rows = size_t(input.shape.height) * input.shape.width;
            const size_t cols = input.shape.features;
            for (size_t t = 0; t < rows; t++) {
                for (size_t k = 0; k < cols; k++) {
                    out[t * cols + k] = in[t * cols + (k + 1) % cols] + 0.01 * double(t) + 0.5 * in[(rows - 1) * cols + k];
                }
            }
        }
        return out;
    }
};

} // namespace fake

// ---- VDevice ---------------------------------------------------------------------------

Expected<std::shared_ptr<VDevice>> VDevice::create_shared(const hailo_vdevice_params_t &params)
{
    if (params.multi_process_service || params.group_id == nullptr) {
        return make_unexpected(HAILO_INVALID_OPERATION);
    }
    std::string device_id = "fake-hailo10h:0";
    if (params.device_ids != nullptr && params.device_count > 0) {
        device_id.assign(params.device_ids[0].id, strnlen(params.device_ids[0].id, HAILO_MAX_DEVICE_ID_LENGTH));
        std::string state;
        if (!read_first_line(device_id, &state)) {
            return make_unexpected(HAILO_INVALID_ARGUMENT);
        }
        if (state == "ok no-dma-map") {
            return std::shared_ptr<VDevice>(new VDevice(device_id, false, nullptr));
        }
        std::string kind;
        double every_s = 0.0;
        if (parse_fault_line(state, &kind, &every_s)) {
            auto faults = fake::device_faults(device_id, kind, every_s);
            const auto status = faults->open();
            if (status != HAILO_SUCCESS) {
                return make_unexpected(status);
            }
            return std::shared_ptr<VDevice>(new VDevice(device_id, true, faults));
        }
        if (state != "ok") {
            hailo_status status;
            return make_unexpected(status_from_name(state, &status) ? status : HAILO_INVALID_ARGUMENT);
        }
    }
    return std::shared_ptr<VDevice>(new VDevice(device_id, true, nullptr));
}

hailo_status VDevice::dma_map(void *address, size_t size, hailo_dma_buffer_direction_t)
{
    if (!m_dma_mappable) {
        return HAILO_NOT_IMPLEMENTED;
    }
    if (address == nullptr || size == 0) {
        return HAILO_INVALID_ARGUMENT;
    }
    auto &maps = fake::dma_maps();
    std::lock_guard<std::mutex> lock(maps.mutex);
    maps.ranges.emplace_back(static_cast<const uint8_t *>(address), size);
    return HAILO_SUCCESS;
}

hailo_status VDevice::dma_unmap(void *address, size_t size, hailo_dma_buffer_direction_t)
{
    auto &maps = fake::dma_maps();
    std::lock_guard<std::mutex> lock(maps.mutex);
    const auto it = std::find(maps.ranges.begin(), maps.ranges.end(),
        std::make_pair(static_cast<const uint8_t *>(address), size));
    if (it == maps.ranges.end()) {
        return HAILO_NOT_FOUND;
    }
    maps.ranges.erase(it);
    return HAILO_SUCCESS;
}

Expected<std::vector<std::string>> VDevice::get_physical_devices_ids() const
{
    return std::vector<std::string>{m_device_id};
}

namespace
{

bool parse_stream(std::istringstream &words, fake::StreamSpec *stream)
{
    std::string type;
    std::string order;
    if (!(words >> stream->name >> stream->shape.height >> stream->shape.width >> stream->shape.features >> type >> order)) {
        return false;
    }
    if (type == "uint8") {
        stream->native.type = HAILO_FORMAT_TYPE_UINT8;
    } else if (type == "uint16") {
        stream->native.type = HAILO_FORMAT_TYPE_UINT16;
    } else if (type == "float32") {
        stream->native.type = HAILO_FORMAT_TYPE_FLOAT32;
    } else {
        return false;
    }
    if (order == "nhwc") {
        stream->native.order = HAILO_FORMAT_ORDER_NHWC;
    } else if (order == "nc") {
        stream->native.order = HAILO_FORMAT_ORDER_NC;
    } else if (order == "nhw") {
        stream->native.order = HAILO_FORMAT_ORDER_NHW;
    } else if (order == "nchw") {
        stream->native.order = HAILO_FORMAT_ORDER_NCHW;
    } else {
        return false;
    }
    stream->native.flags = HAILO_FORMAT_FLAGS_NONE;
    stream->user = stream->native;
    float zp;
    float scale;
    while (words >> zp >> scale) {
        stream->quant.push_back(hailo_quant_info_t{zp, scale, 0.0f, 0.0f});
    }
    if (stream->quant.empty()) {
        stream->quant.push_back(hailo_quant_info_t{0.0f, 1.0f, 0.0f, 0.0f});
    }
    return stream->elements() > 0;
}

Expected<std::shared_ptr<fake::ModelSpec>> parse_hef(const std::string &path)
{
    std::ifstream file(path);
    if (!file) {
        return make_unexpected(HAILO_OPEN_FILE_FAILURE);
    }
    std::string line;
    if (!std::getline(file, line) || trim(line) != "hailo-clip-fake-hef 1") {
        return make_unexpected(HAILO_INVALID_HEF);
    }
    auto spec = std::make_shared<fake::ModelSpec>();
    spec->path = path;
    while (std::getline(file, line)) {
        line = trim(line.substr(0, line.find('#')));
        if (line.empty()) {
            continue;
        }
        std::istringstream words(line);
        std::string key;
        words >> key;
        if (key == "input" || key == "output") {
            auto stream = std::make_shared<fake::StreamSpec>();
            if (!parse_stream(words, stream.get())) {
                return make_unexpected(HAILO_HEF_FILE_CORRUPTED);
            }
            (key == "input" ? spec->inputs : spec->outputs).push_back(stream);
            (key == "input" ? spec->input_names : spec->output_names).push_back(stream->name);
        } else if (key == "transform") {
            words >> spec->transform;
            if (spec->transform == "onnx") {
                std::string file;
                if (!(words >> file)) {
                    return make_unexpected(HAILO_HEF_FILE_CORRUPTED);
                }
                const auto slash = path.rfind('/');
                spec->onnx = (file.front() == '/' || slash == std::string::npos) ? file : path.substr(0, slash + 1) + file;
            }
        } else if (key == "queue_size") {
            words >> spec->queue_size;
        } else if (key == "control") {
            words >> spec->control;
        } else if (key == "log") {
            words >> spec->log;
        } else if (key == "device_cost") {
            if (!(words >> spec->fixed_ms >> spec->frame_ms) || spec->fixed_ms < 0.0 || spec->frame_ms < 0.0) {
                return make_unexpected(HAILO_HEF_FILE_CORRUPTED);
            }
            if (!(words >> spec->switch_ms)) {
                spec->switch_ms = 0.0;
            } else if (spec->switch_ms < 0.0) {
                return make_unexpected(HAILO_HEF_FILE_CORRUPTED);
            }
            spec->paced = true;
        } else {
            return make_unexpected(HAILO_HEF_FILE_CORRUPTED);
        }
    }
    if (spec->inputs.size() != 1 || spec->outputs.size() != 1) {
        return make_unexpected(HAILO_HEF_FILE_CORRUPTED);
    }
    const auto &in = *spec->inputs[0];
    const auto &out = *spec->outputs[0];
    if (spec->transform == "text_rows" || spec->transform == "text_causal_mean") {
        if (size_t(in.shape.height) * in.shape.width != size_t(out.shape.height) * out.shape.width ||
            in.shape.features != out.shape.features) {
            return make_unexpected(HAILO_HEF_FILE_CORRUPTED);
        }
    } else if (spec->transform != "image_channel_means" && spec->transform != "onnx") {
        return make_unexpected(HAILO_HEF_FILE_CORRUPTED);
    }
    return spec;
}

} // namespace

Expected<std::shared_ptr<InferModel>> VDevice::create_infer_model(const std::string &hef_path, const std::string &)
{
    auto spec = parse_hef(hef_path);
    if (!spec) {
        return make_unexpected(spec.status());
    }
    (*spec)->faults = m_faults;
    return std::shared_ptr<InferModel>(new InferModel(spec.release()));
}

// ---- InferModel ------------------------------------------------------------------------

const std::string InferModel::InferStream::name() const
{
    return m_spec->name;
}

hailo_3d_image_shape_t InferModel::InferStream::shape() const
{
    return m_spec->shape;
}

hailo_format_t InferModel::InferStream::format() const
{
    hailo_format_t format = m_spec->user;
    format.type = m_spec->user_type();
    return format;
}

size_t InferModel::InferStream::get_frame_size() const
{
    return m_spec->frame_size();
}

void InferModel::InferStream::set_format_type(hailo_format_type_t type)
{
    m_spec->user.type = type;
}

void InferModel::InferStream::set_format_order(hailo_format_order_t order)
{
    m_spec->user.order = order;
}

std::vector<hailo_quant_info_t> InferModel::InferStream::get_quant_infos() const
{
    return m_spec->quant;
}

void InferModel::set_batch_size(uint16_t batch_size)
{
    m_batch_size = batch_size;
}

Expected<ConfiguredInferModel> InferModel::configure()
{
    auto pipeline = std::make_shared<fake::Pipeline>();
    pipeline->spec = m_spec;
    pipeline->input = *m_spec->inputs[0];
    pipeline->output = *m_spec->outputs[0];
    const size_t batch = std::max<size_t>(1, m_batch_size);
    pipeline->queue_size = m_spec->queue_size > 0 ? m_spec->queue_size : batch;
    if (m_spec->paced) {
        // The scheduler's burst is the batch size set on the model (scheduled_core_op_state.cpp,
        // get_burst_size).
        pipeline->network = fake::device().attach(*m_spec, batch);
    }
    return ConfiguredInferModel(pipeline);
}

Expected<InferModel::InferStream> InferModel::input(const std::string &name)
{
    for (const auto &stream : m_spec->inputs) {
        if (stream->name == name) {
            return InferStream(stream);
        }
    }
    return make_unexpected(HAILO_NOT_FOUND);
}

Expected<InferModel::InferStream> InferModel::output(const std::string &name)
{
    for (const auto &stream : m_spec->outputs) {
        if (stream->name == name) {
            return InferStream(stream);
        }
    }
    return make_unexpected(HAILO_NOT_FOUND);
}

const std::vector<std::string> &InferModel::get_input_names() const
{
    return m_spec->input_names;
}

const std::vector<std::string> &InferModel::get_output_names() const
{
    return m_spec->output_names;
}

// ---- ConfiguredInferModel --------------------------------------------------------------

hailo_status ConfiguredInferModel::Bindings::InferStream::set_buffer(MemoryView view)
{
    m_slot->view = view;
    m_slot->set = true;
    return HAILO_SUCCESS;
}

Expected<MemoryView> ConfiguredInferModel::Bindings::InferStream::get_buffer() const
{
    if (!m_slot->set) {
        return make_unexpected(HAILO_INVALID_OPERATION);
    }
    return m_slot->view;
}

// Copies are deep, as in HailoRT: the copy has its own buffer slots, holding the same views.
ConfiguredInferModel::Bindings::Bindings(const Bindings &other)
{
    *this = other;
}

ConfiguredInferModel::Bindings &ConfiguredInferModel::Bindings::operator=(const Bindings &other)
{
    if (this == &other) {
        return *this;
    }
    m_inputs.clear();
    m_outputs.clear();
    for (const auto &entry : other.m_inputs) {
        m_inputs.emplace(entry.first, InferStream(std::make_shared<fake::BufferSlot>(*entry.second.m_slot)));
    }
    for (const auto &entry : other.m_outputs) {
        m_outputs.emplace(entry.first, InferStream(std::make_shared<fake::BufferSlot>(*entry.second.m_slot)));
    }
    return *this;
}

Expected<ConfiguredInferModel::Bindings::InferStream> ConfiguredInferModel::Bindings::input(const std::string &name)
{
    auto it = m_inputs.find(name);
    if (it == m_inputs.end()) {
        return make_unexpected(HAILO_NOT_FOUND);
    }
    return it->second;
}

Expected<ConfiguredInferModel::Bindings::InferStream> ConfiguredInferModel::Bindings::output(const std::string &name)
{
    auto it = m_outputs.find(name);
    if (it == m_outputs.end()) {
        return make_unexpected(HAILO_NOT_FOUND);
    }
    return it->second;
}

Expected<ConfiguredInferModel::Bindings> ConfiguredInferModel::create_bindings()
{
    Bindings bindings;
    bindings.m_inputs.emplace(m_pimpl->input.name, Bindings::InferStream(std::make_shared<fake::BufferSlot>()));
    bindings.m_outputs.emplace(m_pimpl->output.name, Bindings::InferStream(std::make_shared<fake::BufferSlot>()));
    return bindings;
}

hailo_status ConfiguredInferModel::wait_for_async_ready(std::chrono::milliseconds timeout, uint32_t frames_count)
{
    auto &p = *m_pimpl;
    const auto &faults = p.spec->faults;
    if (faults && faults->faulted() && faults->status() != HAILO_TIMEOUT) {
        return faults->status();
    }
    std::unique_lock<std::mutex> lock(p.mutex);
    const bool ready = p.changed.wait_for(lock, timeout,
        [&] { return p.stopped || p.pending + frames_count <= p.queue_size; });
    if (p.stopped) {
        return HAILO_INVALID_OPERATION;
    }
    return ready ? HAILO_SUCCESS : HAILO_TIMEOUT;
}

Expected<size_t> ConfiguredInferModel::get_async_queue_size() const
{
    return m_pimpl->queue_size;
}

hailo_status ConfiguredInferModel::shutdown()
{
    m_pimpl->stop();
    return HAILO_SUCCESS;
}

Expected<AsyncInferJob> ConfiguredInferModel::run_async(const std::vector<Bindings> &bindings,
    std::function<void(const AsyncInferCompletionInfo &)> callback)
{
    auto &p = *m_pimpl;
    {
        std::lock_guard<std::mutex> lock(p.mutex);
        if (p.stopped) {
            return make_unexpected(HAILO_INVALID_OPERATION);
        }
    }
    // A faulted device: the call fails and, as in HailoRT, the configured model shuts down
    // (configured_infer_model_hrpc_client.cpp); a hung device takes the job and never ends it.
    const auto faults = p.spec->faults;
    if (faults && faults->faulted() && faults->status() != HAILO_TIMEOUT) {
        p.stop();
        return make_unexpected(faults->status());
    }
    long delay_ms = 0;
    std::string control;
    if (!p.spec->control.empty() && read_first_line(p.spec->control, &control) && !control.empty() && control != "ok") {
        std::istringstream words(control);
        std::string verb;
        std::string argument;
        words >> verb >> argument;
        hailo_status status = HAILO_INVALID_ARGUMENT;
        if (verb == "delay") {
            delay_ms = std::stol(argument);
        } else {
            if (verb != "status" || !status_from_name(argument, &status)) {
                status = HAILO_INVALID_ARGUMENT;
            }
            p.stop();
            return make_unexpected(status);
        }
    }
    for (const auto &binding : bindings) {
        auto in = binding.m_inputs.find(p.input.name);
        auto out = binding.m_outputs.find(p.output.name);
        if (in == binding.m_inputs.end() || out == binding.m_outputs.end() || !in->second.m_slot->set ||
            !out->second.m_slot->set || in->second.m_slot->view.size() != p.input.frame_size() ||
            out->second.m_slot->view.size() != p.output.frame_size()) {
            p.stop();
            return make_unexpected(HAILO_INVALID_OPERATION);
        }
    }
    struct Frame {
        MemoryView input;
        MemoryView output;
        uint64_t input_sum;
    };
    std::vector<Frame> frames;
    size_t mapped = 0;
    for (const auto &binding : bindings) {
        const auto input = binding.m_inputs.at(p.input.name).m_slot->view;
        const auto output = binding.m_outputs.at(p.output.name).m_slot->view;
        mapped += size_t(fake::dma_maps().covers(input)) + size_t(fake::dma_maps().covers(output));
        frames.push_back(Frame{input, output, fake::checksum(input)});
    }

    // When the job completes: after the control file's delay, and for a paced model when
    // the device has run its frames (see device_cost above).
    const auto done_at = fake::Clock::now() + std::chrono::milliseconds(delay_ms);
    // Far enough never to come, near enough for every wait_until to take it.
    const auto fault_at = faults ? faults->next_fault() : fake::Clock::now() + std::chrono::hours(24 * 365);
    std::shared_ptr<fake::PacedJob> paced;
    if (p.network) {
        paced = fake::device().submit(p.network, frames.size());
    }

    auto job = std::make_shared<fake::JobState>();
    auto finished = std::make_shared<std::atomic<bool>>(false);
    std::lock_guard<std::mutex> lock(p.mutex);
    p.reap_finished();
    p.pending += frames.size();
    p.jobs_in_flight++;
    if (!p.spec->log.empty()) {
        fake::append_log(p.spec->log, "frames=" + std::to_string(bindings.size()) + " in_flight=" +
            std::to_string(p.jobs_in_flight) + " mapped=" + std::to_string(mapped));
    }
    auto *pipeline = m_pimpl.get();  // workers are joined before the pipeline is destroyed
    p.workers.push_back(fake::Pipeline::Worker{std::thread([pipeline, frames, callback, job, finished, done_at, paced, faults, fault_at]() mutable {
        // The outputs, computed from the inputs as they are now (the device reads them when
        // the job starts) while the device's time runs, and written at completion: the
        // double's own arithmetic does not add to what a job costs.
        std::vector<std::vector<uint8_t>> outputs;
        outputs.reserve(frames.size());
        for (auto &frame : frames) {
            outputs.emplace_back(frame.output.size());
            pipeline->write_output(pipeline->transform(pipeline->read_input(frame.input.data())),
                outputs.back().data());
        }
        bool aborted;
        {
            std::unique_lock<std::mutex> wait_lock(pipeline->mutex);
            aborted = pipeline->changed.wait_until(wait_lock, std::min(done_at, fault_at),
                [pipeline] { return pipeline->stopped; });
        }
        bool faulted = !aborted && faults && faults->faulted();
        if (!aborted && !faulted && paced) {
            switch (fake::device().wait(paced, fault_at)) {
            case fake::Device::Wait::done:
                break;
            case fake::Device::Wait::aborted:
                aborted = true;
                break;
            case fake::Device::Wait::deadline:
                faulted = faults->faulted();
                break;
            }
        }
        hailo_status status = HAILO_SUCCESS;
        if (faulted) {
            status = faults->status();
            if (status != HAILO_COMMUNICATION_CLOSED) {
                // The device hangs or is gone: the job never completes on its own.
                std::unique_lock<std::mutex> wait_lock(pipeline->mutex);
                pipeline->changed.wait(wait_lock, [pipeline] { return pipeline->stopped; });
                aborted = true;
            }
        }
        bool changed = false;
        if (!aborted && !faulted) {
            for (size_t i = 0; i < frames.size(); i++) {
                changed = changed || fake::checksum(frames[i].input) != frames[i].input_sum;
                std::memcpy(frames[i].output.data(), outputs[i].data(), outputs[i].size());
            }
        }
        if (!pipeline->spec->log.empty()) {
            fake::append_log(pipeline->spec->log, "done frames=" + std::to_string(frames.size()) +
                (aborted ? " aborted" : "") + (changed ? " input-changed" : ""));
        }
        // As HailoRT does (configured_infer_model_hrpc_client.cpp, the wrapped callback): the
        // job leaves the queue before its callback runs, so a slot freed by the callback is
        // never counted twice.
        {
            std::lock_guard<std::mutex> pending_lock(pipeline->mutex);
            pipeline->pending -= frames.size();
            pipeline->jobs_in_flight--;
        }
        pipeline->changed.notify_all();
        callback(AsyncInferCompletionInfo(aborted ? HAILO_STREAM_ABORT : status));
        {
            std::lock_guard<std::mutex> job_lock(job->mutex);
            job->done = true;
        }
        job->done_cv.notify_all();
        finished->store(true);
    }), finished});
    return AsyncInferJob(job);
}

// ---- AsyncInferJob ---------------------------------------------------------------------

AsyncInferJob::AsyncInferJob(std::shared_ptr<fake::JobState> state) : m_state(std::move(state)), m_should_wait_in_dtor(true)
{
}

AsyncInferJob::AsyncInferJob(AsyncInferJob &&other)
    : m_state(std::move(other.m_state)), m_should_wait_in_dtor(std::exchange(other.m_should_wait_in_dtor, false))
{
}

AsyncInferJob &AsyncInferJob::operator=(AsyncInferJob &&other)
{
    m_state = std::move(other.m_state);
    m_should_wait_in_dtor = std::exchange(other.m_should_wait_in_dtor, false);
    return *this;
}

AsyncInferJob::~AsyncInferJob()
{
    if (m_should_wait_in_dtor) {
        wait(std::chrono::seconds(10));
    }
}

hailo_status AsyncInferJob::wait(std::chrono::milliseconds timeout)
{
    m_should_wait_in_dtor = false;
    if (!m_state) {
        return HAILO_SUCCESS;
    }
    std::unique_lock<std::mutex> lock(m_state->mutex);
    return m_state->done_cv.wait_for(lock, timeout, [this] { return m_state->done; }) ? HAILO_SUCCESS : HAILO_TIMEOUT;
}

void AsyncInferJob::detach()
{
    m_should_wait_in_dtor = false;
}

} // namespace hailort

// ---- Device ----------------------------------------------------------------------------

namespace hailort
{

namespace fake
{

// Every line of a file, trimmed ("" for a missing file).
std::vector<std::string> read_lines(const std::string &path)
{
    std::vector<std::string> lines;
    std::ifstream file(path);
    std::string line;
    while (std::getline(file, line)) {
        lines.push_back(trim(line));
    }
    return lines;
}

// The scripted values of a device file: "KEY VALUES..." lines after the first.
std::vector<double> scripted(const std::string &path, const std::string &key, std::vector<double> fallback)
{
    if (path.empty()) {
        return fallback;
    }
    const auto lines = read_lines(path);
    for (size_t i = 1; i < lines.size(); i++) {
        std::istringstream words(lines[i]);
        std::string word;
        words >> word;
        if (word != key) {
            continue;
        }
        std::vector<double> values;
        double value;
        while (words >> value) {
            values.push_back(value);
        }
        if (values.size() >= fallback.size()) {
            return values;
        }
    }
    return fallback;
}

struct DeviceHealth {
    std::string id;  // the device file; empty for the default device
    std::mutex mutex;
    std::condition_variable changed;
    std::map<int, std::pair<NotificationCallback, void *>> callbacks;
    std::thread watcher;
    bool stop = false;

    ~DeviceHealth()
    {
        {
            std::lock_guard<std::mutex> lock(mutex);
            stop = true;
        }
        changed.notify_all();
        if (watcher.joinable()) {
            watcher.join();
        }
    }

    // Sends notifications for what changed in the device file, every 50 ms.
    void watch(hailort::Device *device)
    {
        // The chip notifies a change of state, not the state it is in: a handle opened
        // while it is throttled hears nothing until the state changes.
        double throttling = scripted(id, "throttling", {-1.0})[0];
        double temperature_alarms = scripted(id, "temperature_alarms", {0.0})[0];
        double overcurrent_alarms = scripted(id, "overcurrent_alarms", {0.0})[0];
        uint32_t sequence = 0;
        std::unique_lock<std::mutex> lock(mutex);
        while (!stop) {
            lock.unlock();
            std::vector<hailo_notification_t> due;
            auto notification = [&](hailo_notification_id_t id_) {
                hailo_notification_t n{};
                n.id = id_;
                n.sequence = sequence++;
                return n;
            };
            const double state = scripted(id, "throttling", {-1.0})[0];
            if (state >= 0.0 && state != throttling) {
                auto n = notification(HAILO_NOTIFICATION_ID_THROTTLING_STATE_CHANGE_EVENT);
                n.body.throttling_state_change.new_state = static_cast<uint16_t>(state);
                due.push_back(n);
                throttling = state;
            }
            for (double now = scripted(id, "temperature_alarms", {0.0})[0]; temperature_alarms < now; temperature_alarms++) {
                due.push_back(notification(HAILO_NOTIFICATION_ID_HEALTH_MONITOR_TEMPERATURE_ALARM));
            }
            for (double now = scripted(id, "overcurrent_alarms", {0.0})[0]; overcurrent_alarms < now; overcurrent_alarms++) {
                due.push_back(notification(HAILO_NOTIFICATION_ID_HEALTH_MONITOR_OVERCURRENT_ALARM));
            }
            lock.lock();
            for (const auto &n : due) {
                auto it = callbacks.find(int(n.id));
                if (it != callbacks.end()) {
                    auto callback = it->second;
                    lock.unlock();
                    callback.first(*device, n, callback.second);
                    lock.lock();
                }
            }
            changed.wait_for(lock, std::chrono::milliseconds(50), [this] { return stop; });
        }
    }
};

} // namespace fake

Expected<std::unique_ptr<Device>> Device::create()
{
    return std::unique_ptr<Device>(new Device(std::make_shared<fake::DeviceHealth>()));
}

Expected<std::unique_ptr<Device>> Device::create(const std::string &device_id)
{
    std::string state;
    if (!read_first_line(device_id, &state)) {
        return make_unexpected(HAILO_INVALID_ARGUMENT);
    }
    if (state.rfind("ok", 0) != 0) {
        hailo_status status;
        return make_unexpected(status_from_name(state, &status) ? status : HAILO_INVALID_ARGUMENT);
    }
    auto health = std::make_shared<fake::DeviceHealth>();
    health->id = device_id;
    return std::unique_ptr<Device>(new Device(health));
}

Device::~Device()
{
    // The watcher calls back into this device: stop it first.
    {
        std::lock_guard<std::mutex> lock(m_health->mutex);
        m_health->stop = true;
    }
    m_health->changed.notify_all();
    if (m_health->watcher.joinable()) {
        m_health->watcher.join();
    }
}

Expected<hailo_device_identity_t> Device::identify()
{
    hailo_device_identity_t identity{};
    identity.fw_version = hailo_firmware_version_t{5, 2, 0};
    identity.device_architecture = HAILO_ARCH_HAILO10H;
    auto put = [](char *field, uint8_t *length, size_t capacity, const std::string &text) {
        const size_t n = std::min(capacity, text.size());
        std::memcpy(field, text.data(), n);
        *length = static_cast<uint8_t>(n);
    };
    put(identity.board_name, &identity.board_name_length, HAILO_MAX_BOARD_NAME_LENGTH, "hailo10h-double");
    put(identity.serial_number, &identity.serial_number_length, HAILO_MAX_SERIAL_NUMBER_LENGTH, "HLDBL0000000001");
    put(identity.product_name, &identity.product_name_length, HAILO_MAX_PRODUCT_NAME_LENGTH, "HAILO-10H TEST DOUBLE");
    return identity;
}

Expected<hailo_chip_temperature_info_t> Device::get_chip_temperature()
{
    const auto t = fake::scripted(m_health->id, "temperature", {45.5, 46.0});
    return hailo_chip_temperature_info_t{static_cast<float>(t[0]), static_cast<float>(t[1]), 1};
}

Expected<hailo_performance_stats_t> Device::query_performance_stats()
{
    hailo_performance_stats_t stats{};
    stats.cpu_utilization = -1.0f;
    stats.ram_size_total = -1;
    stats.ram_size_used = -1;
    stats.nnc_utilization = static_cast<float>(fake::scripted(m_health->id, "nnc_utilization", {0.0})[0]);
    stats.ddr_noc_total_transactions = -1;
    stats.dsp_utilization = -1;
    return stats;
}

hailo_status Device::set_notification_callback(const NotificationCallback &func, hailo_notification_id_t notification_id,
    void *opaque)
{
    std::lock_guard<std::mutex> lock(m_health->mutex);
    m_health->callbacks[int(notification_id)] = {func, opaque};
    if (!m_health->watcher.joinable() && !m_health->id.empty()) {
        auto *health = m_health.get();
        m_health->watcher = std::thread([health, this] { health->watch(this); });
    }
    return HAILO_SUCCESS;
}

hailo_status Device::remove_notification_callback(hailo_notification_id_t notification_id)
{
    std::lock_guard<std::mutex> lock(m_health->mutex);
    return m_health->callbacks.erase(int(notification_id)) > 0 ? HAILO_SUCCESS : HAILO_NOT_FOUND;
}

} // namespace hailort

// ---- C functions -----------------------------------------------------------------------

extern "C" {

hailo_status hailo_get_library_version(hailo_version_t *version)
{
    if (version == nullptr) {
        return HAILO_INVALID_ARGUMENT;
    }
    // The HailoRT release whose API this double models.
    *version = hailo_version_t{5, 2, 0};
    return HAILO_SUCCESS;
}

const char *hailo_get_status_message(hailo_status status)
{
    for (const auto &entry : STATUS_NAMES) {
        if (entry.status == status) {
            return entry.name;
        }
    }
    return nullptr;
}

hailo_status hailo_init_vdevice_params(hailo_vdevice_params_t *params)
{
    if (params == nullptr) {
        return HAILO_INVALID_ARGUMENT;
    }
    *params = hailo_vdevice_params_t{1, nullptr, HAILO_SCHEDULING_ALGORITHM_ROUND_ROBIN, "UNIQUE", false};
    return HAILO_SUCCESS;
}

} // extern "C"
