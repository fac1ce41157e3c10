//! The only FFI in hailo-clip: the `extern "C"` declarations of shim.cpp and safe owners
//! of its handles.
//!
//! [`Device`] owns a HailoRT VDevice and [`Model`] one InferModel with its configured
//! pipeline; each releases its handle in `Drop`, exactly once. The shim keeps the VDevice
//! alive while any model of it exists, so dropping order does not matter. Every failure
//! comes back as a [`HailoError`] whose [`HailoErrorKind`] says what went wrong in terms the
//! daemon acts on (device not found, busy, timeout, invalid HEF, shape mismatch).

use std::ffi::{c_char, CString};
use std::path::Path;
use std::ptr::{self, NonNull};
use std::time::Duration;

use crate::config::MAX_JOBS_IN_FLIGHT;

#[repr(C)]
struct RawError {
    hailo_status: i32,
    message: [c_char; 512],
}

impl RawError {
    fn new() -> Self {
        RawError {
            hailo_status: 0,
            message: [0; 512],
        }
    }
}

#[repr(C)]
struct RawStreamInfo {
    name: [c_char; 256],
    height: u32,
    width: u32,
    features: u32,
    format: i32,
    order: i32,
    frame_size: usize,
    quant_count: usize,
    qp_zp: f32,
    qp_scale: f32,
}

#[repr(C)]
struct RawDevice {
    _opaque: [u8; 0],
}

#[repr(C)]
struct RawMonitor {
    _opaque: [u8; 0],
}

#[repr(C)]
struct RawIdentity {
    fw_major: u32,
    fw_minor: u32,
    fw_revision: u32,
    architecture: i32,
    board_name: [c_char; 64],
    serial_number: [c_char; 64],
    product_name: [c_char; 64],
}

#[repr(C)]
#[derive(Default)]
struct RawEvents {
    throttling_state: i32,
    throttling_changes: u64,
    temperature_alarms: u64,
    overcurrent_alarms: u64,
    throttling_subscribed: i32,
}

#[repr(C)]
struct RawModel {
    _opaque: [u8; 0],
}

const HC_OK: i32 = 0;
const HC_DEVICE_NOT_FOUND: i32 = 1;
const HC_DEVICE_BUSY: i32 = 2;
const HC_TIMEOUT: i32 = 3;
const HC_INVALID_HEF: i32 = 4;
const HC_SHAPE_MISMATCH: i32 = 5;
const HC_DRIVER_VERSION: i32 = 7;

const HC_INPUT: i32 = 0;
const HC_OUTPUT: i32 = 1;

extern "C" {
    fn hc_library_version(
        major: *mut u32,
        minor: *mut u32,
        revision: *mut u32,
        err: *mut RawError,
    ) -> i32;
    fn hc_vdevice_create(
        group_id: *const c_char,
        device_id: *const c_char,
        id_out: *mut c_char,
        id_len: usize,
        out: *mut *mut RawDevice,
        err: *mut RawError,
    ) -> i32;
    fn hc_vdevice_release(device: *mut RawDevice);
    fn hc_monitor_open(
        device_id: *const c_char,
        out: *mut *mut RawMonitor,
        err: *mut RawError,
    ) -> i32;
    fn hc_monitor_release(monitor: *mut RawMonitor);
    fn hc_monitor_identify(
        monitor: *mut RawMonitor,
        out: *mut RawIdentity,
        err: *mut RawError,
    ) -> i32;
    fn hc_monitor_temperature(
        monitor: *mut RawMonitor,
        ts0: *mut f32,
        ts1: *mut f32,
        err: *mut RawError,
    ) -> i32;
    fn hc_monitor_nnc_utilization(
        monitor: *mut RawMonitor,
        percent: *mut f32,
        err: *mut RawError,
    ) -> i32;
    fn hc_monitor_events(monitor: *const RawMonitor, out: *mut RawEvents);
    fn hc_model_load(
        device: *mut RawDevice,
        hef_path: *const c_char,
        out: *mut *mut RawModel,
        err: *mut RawError,
    ) -> i32;
    fn hc_model_release(model: *mut RawModel);
    fn hc_model_counts(model: *const RawModel, inputs: *mut usize, outputs: *mut usize);
    fn hc_model_stream(
        model: *mut RawModel,
        direction: i32,
        index: usize,
        info: *mut RawStreamInfo,
        err: *mut RawError,
    ) -> i32;
    fn hc_model_set_format(
        model: *mut RawModel,
        direction: i32,
        index: usize,
        format: i32,
        nhwc: i32,
        err: *mut RawError,
    ) -> i32;
    fn hc_model_configure(
        model: *mut RawModel,
        batch_size: u16,
        jobs_in_flight: usize,
        max_jobs: usize,
        max_frames: *mut usize,
        jobs: *mut usize,
        err: *mut RawError,
    ) -> i32;
    fn hc_model_mapped_buffers(model: *mut RawModel) -> usize;
    fn hc_model_submit(
        model: *mut RawModel,
        frames: usize,
        inputs: *const RawSlice,
        input_count: usize,
        timeout_ms: u32,
        job: *mut usize,
        err: *mut RawError,
    ) -> i32;
    fn hc_model_collect(
        model: *mut RawModel,
        job: usize,
        outputs: *const RawMutSlice,
        output_count: usize,
        timeout_ms: u32,
        err: *mut RawError,
    ) -> i32;
    fn hc_model_abandon(model: *mut RawModel, job: usize);
}

/// One frame of one input stream (shim.cpp's `hc_slice`).
#[repr(C)]
struct RawSlice {
    data: *const u8,
    len: usize,
}

/// One frame of one output stream (shim.cpp's `hc_mut_slice`).
#[repr(C)]
struct RawMutSlice {
    data: *mut u8,
    len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HailoErrorKind {
    /// No usable device (absent, driver missing, unknown device id).
    DeviceNotFound,
    /// Another process holds the device; retrying later can succeed.
    DeviceBusy,
    /// The device did not finish in time.
    Timeout,
    /// The HEF is unreadable, corrupt, or compiled for another device or HailoRT.
    InvalidHef,
    /// Buffers or streams do not have the shape the model needs.
    ShapeMismatch,
    /// libhailort and the kernel driver are not the same version (HailoRT refuses to run).
    DriverVersion,
    /// Anything else HailoRT reported.
    Failed,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct HailoError {
    pub kind: HailoErrorKind,
    /// The HailoRT status behind the error (0 when the shim itself refused).
    pub hailo_status: i32,
    pub message: String,
}

impl HailoError {
    fn from_raw(code: i32, raw: &RawError) -> HailoError {
        let kind = match code {
            HC_DEVICE_NOT_FOUND => HailoErrorKind::DeviceNotFound,
            HC_DEVICE_BUSY => HailoErrorKind::DeviceBusy,
            HC_TIMEOUT => HailoErrorKind::Timeout,
            HC_INVALID_HEF => HailoErrorKind::InvalidHef,
            HC_SHAPE_MISMATCH => HailoErrorKind::ShapeMismatch,
            HC_DRIVER_VERSION => HailoErrorKind::DriverVersion,
            _ => HailoErrorKind::Failed,
        };
        HailoError {
            kind,
            hailo_status: raw.hailo_status,
            message: c_text(&raw.message),
        }
    }

    fn shape(message: String) -> HailoError {
        HailoError {
            kind: HailoErrorKind::ShapeMismatch,
            hailo_status: 0,
            message,
        }
    }

    fn invalid_argument(message: String) -> HailoError {
        HailoError {
            kind: HailoErrorKind::Failed,
            hailo_status: 0,
            message,
        }
    }
}

fn c_text(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn c_string(what: &str, text: &str) -> Result<CString, HailoError> {
    CString::new(text)
        .map_err(|_| HailoError::invalid_argument(format!("{what} {text:?} contains a NUL byte")))
}

/// Calls a shim function with a fresh error record and turns its code into a Result.
fn check(call: impl FnOnce(*mut RawError) -> i32) -> Result<(), HailoError> {
    let mut raw = RawError::new();
    match call(&mut raw) {
        HC_OK => Ok(()),
        code => Err(HailoError::from_raw(code, &raw)),
    }
}

/// The version of the HailoRT library this process runs, e.g. "5.2.0".
pub fn library_version() -> Result<String, HailoError> {
    let (mut major, mut minor, mut revision) = (0, 0, 0);
    // SAFETY: the pointers are valid for writes for the duration of the call.
    check(|err| unsafe { hc_library_version(&mut major, &mut minor, &mut revision, err) })?;
    Ok(format!("{major}.{minor}.{revision}"))
}

/// A HailoRT virtual device.
#[derive(Debug)]
pub struct Device {
    raw: NonNull<RawDevice>,
    id: String,
}

impl Device {
    /// Opens a VDevice in scheduler group `group_id`, on the device with `device_id` or,
    /// without one, the first free device.
    pub fn open(group_id: &str, device_id: Option<&str>) -> Result<Device, HailoError> {
        #[cfg(feature = "hailo-fake")]
        test_double::register();
        let group = c_string("group id", group_id)?;
        let id = device_id.map(|id| c_string("device id", id)).transpose()?;
        let mut raw = ptr::null_mut();
        let mut id_out = [0 as c_char; 128];
        // SAFETY: strings are NUL-terminated and outlive the call; id_out has id_len bytes.
        check(|err| unsafe {
            hc_vdevice_create(
                group.as_ptr(),
                id.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
                id_out.as_mut_ptr(),
                id_out.len(),
                &mut raw,
                err,
            )
        })?;
        let raw = NonNull::new(raw).expect("hc_vdevice_create succeeded without a handle");
        Ok(Device {
            raw,
            id: c_text(&id_out),
        })
    }

    /// The physical device's id (its PCIe address on a Pi).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Loads a HEF into an unconfigured model.
    pub fn load_model(&self, hef: &Path) -> Result<Model, HailoError> {
        let path = c_string("HEF path", &hef.to_string_lossy())?;
        let mut raw = ptr::null_mut();
        // SAFETY: the device handle is live; the path outlives the call.
        check(|err| unsafe { hc_model_load(self.raw.as_ptr(), path.as_ptr(), &mut raw, err) })?;
        let raw = NonNull::new(raw).expect("hc_model_load succeeded without a handle");
        let mut model = Model {
            raw,
            inputs: Vec::new(),
            outputs: Vec::new(),
            max_frames: 0,
            jobs: 0,
        };
        model.refresh_streams()?;
        Ok(model)
    }
}

/// What `Device::identify` says of the physical device.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// e.g. "5.2.0"
    pub firmware_version: String,
    /// e.g. "HAILO10H" (hailo_device_architecture_t)
    pub architecture: String,
    pub board_name: String,
    pub serial_number: String,
    pub product_name: String,
}

/// What the device's notifications said so far.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DeviceEvents {
    /// hailo_hw_throttling_state_t; None until a notification came (or this HailoRT has no
    /// throttling notification: see `throttling_subscribed`).
    pub throttling_state: Option<u16>,
    pub throttling_changes: u64,
    pub temperature_alarms: u64,
    pub overcurrent_alarms: u64,
    pub throttling_subscribed: bool,
}

/// A handle on the physical device beside the VDevice, for its health (identity,
/// temperature, utilization, alarm and throttling notifications): on Hailo-10H one hrpc
/// connection serves requests one at a time, so inference never waits behind these calls.
#[derive(Debug)]
pub struct Monitor {
    raw: NonNull<RawMonitor>,
}

impl Monitor {
    /// Opens the physical device `device_id` (None: the first).
    pub fn open(device_id: Option<&str>) -> Result<Monitor, HailoError> {
        let id = device_id.map(|id| c_string("device id", id)).transpose()?;
        let mut raw = ptr::null_mut();
        // SAFETY: the id is NUL-terminated and outlives the call; `raw` is valid for writes.
        check(|err| unsafe {
            hc_monitor_open(
                id.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
                &mut raw,
                err,
            )
        })?;
        let raw = NonNull::new(raw).expect("hc_monitor_open succeeded without a handle");
        Ok(Monitor { raw })
    }

    pub fn identify(&self) -> Result<Identity, HailoError> {
        let mut raw = RawIdentity {
            fw_major: 0,
            fw_minor: 0,
            fw_revision: 0,
            architecture: -1,
            board_name: [0; 64],
            serial_number: [0; 64],
            product_name: [0; 64],
        };
        // SAFETY: the handle is live; `raw` is valid for writes.
        check(|err| unsafe { hc_monitor_identify(self.raw.as_ptr(), &mut raw, err) })?;
        // hailo_device_architecture_t (hailort.h), in its order.
        const ARCHITECTURES: [&str; 8] = [
            "HAILO8_A0",
            "HAILO8",
            "HAILO8L",
            "HAILO15H",
            "HAILO15L",
            "HAILO15M",
            "HAILO10H",
            "HAILO12L",
        ];
        Ok(Identity {
            firmware_version: format!("{}.{}.{}", raw.fw_major, raw.fw_minor, raw.fw_revision),
            architecture: usize::try_from(raw.architecture)
                .ok()
                .and_then(|i| ARCHITECTURES.get(i))
                .map_or_else(
                    || format!("unknown ({})", raw.architecture),
                    |a| a.to_string(),
                ),
            board_name: c_text(&raw.board_name),
            serial_number: c_text(&raw.serial_number),
            product_name: c_text(&raw.product_name),
        })
    }

    /// The chip's two temperature sensors, in °C.
    pub fn temperature(&self) -> Result<[f32; 2], HailoError> {
        let (mut ts0, mut ts1) = (0.0, 0.0);
        // SAFETY: the handle is live; the pointers are valid for writes.
        check(|err| unsafe { hc_monitor_temperature(self.raw.as_ptr(), &mut ts0, &mut ts1, err) })?;
        Ok([ts0, ts1])
    }

    /// NN-core utilization in percent (a Hailo-10H; HAILO_NOT_IMPLEMENTED elsewhere).
    pub fn nnc_utilization(&self) -> Result<f32, HailoError> {
        let mut percent = 0.0;
        // SAFETY: the handle is live; the pointer is valid for writes.
        check(|err| unsafe { hc_monitor_nnc_utilization(self.raw.as_ptr(), &mut percent, err) })?;
        Ok(percent)
    }

    pub fn events(&self) -> DeviceEvents {
        let mut raw = RawEvents::default();
        // SAFETY: the handle is live; `raw` is valid for writes.
        unsafe { hc_monitor_events(self.raw.as_ptr(), &mut raw) };
        DeviceEvents {
            throttling_state: u16::try_from(raw.throttling_state).ok(),
            throttling_changes: raw.throttling_changes,
            temperature_alarms: raw.temperature_alarms,
            overcurrent_alarms: raw.overcurrent_alarms,
            throttling_subscribed: raw.throttling_subscribed != 0,
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        // SAFETY: the handle came from hc_monitor_open and is released only here.
        unsafe { hc_monitor_release(self.raw.as_ptr()) }
    }
}

// SAFETY: the shim's hc_monitor owns a hailort::Device, whose calls HailoRT allows from any
// thread; its counters are atomics written by HailoRT's notification thread.
unsafe impl Send for Monitor {}
unsafe impl Sync for Monitor {}

// SAFETY: the handle owns a shared_ptr to HailoRT's VDevice, whose calls used here
// (create_infer_model, and its release) HailoRT allows from any thread; the session drops
// a device on its teardown thread and loads models under a lock.
unsafe impl Send for Device {}
unsafe impl Sync for Device {}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: the handle came from hc_vdevice_create and is released only here.
        unsafe { hc_vdevice_release(self.raw.as_ptr()) }
    }
}

/// Host-side element type of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    Uint8,
    Uint16,
    Float32,
    /// A type the daemon does not read (reported so errors can name it).
    Other,
}

impl ElementType {
    fn from_raw(raw: i32) -> ElementType {
        match raw {
            1 => ElementType::Uint8,
            2 => ElementType::Uint16,
            3 => ElementType::Float32,
            _ => ElementType::Other,
        }
    }

    fn to_raw(self) -> i32 {
        match self {
            ElementType::Uint8 => 1,
            ElementType::Uint16 => 2,
            ElementType::Float32 | ElementType::Other => 3,
        }
    }

    pub fn size(self) -> usize {
        match self {
            ElementType::Uint8 | ElementType::Other => 1,
            ElementType::Uint16 => 2,
            ElementType::Float32 => 4,
        }
    }
}

/// Host-side element order of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementOrder {
    Nhwc,
    Nc,
    Nhw,
    /// Any other order (planar, hardware-specific, NMS, ...).
    Other,
}

impl ElementOrder {
    fn from_raw(raw: i32) -> ElementOrder {
        match raw {
            1 => ElementOrder::Nhwc,
            2 => ElementOrder::Nc,
            3 => ElementOrder::Nhw,
            _ => ElementOrder::Other,
        }
    }

    /// Whether a frame is laid out features-last, row after row: how the daemon reads it.
    pub fn is_row_major(self) -> bool {
        !matches!(self, ElementOrder::Other)
    }
}

/// One input or output of a model, as HailoRT describes it on the host side.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    pub name: String,
    pub height: u32,
    pub width: u32,
    pub features: u32,
    pub element: ElementType,
    pub order: ElementOrder,
    pub frame_size: usize,
    /// 1 for per-tensor quantization; more for per-channel.
    pub quant_count: usize,
    pub qp_zp: f32,
    pub qp_scale: f32,
}

impl StreamInfo {
    pub fn elements(&self) -> usize {
        self.height as usize * self.width as usize * self.features as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

impl Direction {
    fn raw(self) -> i32 {
        match self {
            Direction::Input => HC_INPUT,
            Direction::Output => HC_OUTPUT,
        }
    }
}

/// A HEF loaded on a device: set formats, configure once, then run batches.
#[derive(Debug)]
pub struct Model {
    raw: NonNull<RawModel>,
    inputs: Vec<StreamInfo>,
    outputs: Vec<StreamInfo>,
    max_frames: usize,
    jobs: usize,
}

// SAFETY: the shim keeps no thread-affine state. What changes the model's streams or
// pipeline set-up takes &mut self; submit, collect and abandon (&self) lock inside the shim
// (its job-slot pool and its submission lock), so threads may call them at once.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

/// Milliseconds for the shim, saturating.
fn millis(timeout: Duration) -> u32 {
    u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX)
}

impl Model {
    pub fn inputs(&self) -> &[StreamInfo] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[StreamInfo] {
        &self.outputs
    }

    /// The most frames one [`run`](Self::run) takes; 0 before [`configure`](Self::configure).
    /// Most frames one job takes (0 before [`configure`](Self::configure)).
    pub fn max_frames(&self) -> usize {
        self.max_frames
    }

    /// Jobs kept submitted at once (0 before [`configure`](Self::configure)).
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    /// Job buffers HailoRT DMA-mapped in advance; 0 where it offers no mapping.
    pub fn mapped_buffers(&self) -> usize {
        // SAFETY: the handle is live.
        unsafe { hc_model_mapped_buffers(self.raw.as_ptr()) }
    }

    fn refresh_streams(&mut self) -> Result<(), HailoError> {
        let (mut inputs, mut outputs) = (0, 0);
        // SAFETY: the handle is live; the pointers are valid for writes.
        unsafe { hc_model_counts(self.raw.as_ptr(), &mut inputs, &mut outputs) };
        self.inputs = (0..inputs)
            .map(|i| self.stream(Direction::Input, i))
            .collect::<Result<_, _>>()?;
        self.outputs = (0..outputs)
            .map(|i| self.stream(Direction::Output, i))
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    fn stream(&self, direction: Direction, index: usize) -> Result<StreamInfo, HailoError> {
        let mut raw = RawStreamInfo {
            name: [0; 256],
            height: 0,
            width: 0,
            features: 0,
            format: 0,
            order: 0,
            frame_size: 0,
            quant_count: 0,
            qp_zp: 0.0,
            qp_scale: 0.0,
        };
        // SAFETY: the handle is live; `raw` is valid for writes.
        check(|err| unsafe {
            hc_model_stream(self.raw.as_ptr(), direction.raw(), index, &mut raw, err)
        })?;
        Ok(StreamInfo {
            name: c_text(&raw.name),
            height: raw.height,
            width: raw.width,
            features: raw.features,
            element: ElementType::from_raw(raw.format),
            order: ElementOrder::from_raw(raw.order),
            frame_size: raw.frame_size,
            quant_count: raw.quant_count,
            qp_zp: raw.qp_zp,
            qp_scale: raw.qp_scale,
        })
    }

    /// Sets a stream's host-side element type (and, with `nhwc`, its order to NHWC), so
    /// HailoRT converts between it and the device's format. Before [`configure`](Self::configure).
    pub fn set_format(
        &mut self,
        direction: Direction,
        index: usize,
        element: ElementType,
        nhwc: bool,
    ) -> Result<(), HailoError> {
        // SAFETY: the handle is live.
        check(|err| unsafe {
            hc_model_set_format(
                self.raw.as_ptr(),
                direction.raw(),
                index,
                element.to_raw(),
                i32::from(nhwc),
                err,
            )
        })?;
        self.refresh_streams()
    }

    /// Configures the model on the device, once, for jobs of up to `batch_size` frames with
    /// `jobs_in_flight` jobs submitted at once (0: HailoRT's async queue size), at most
    /// [`MAX_JOBS_IN_FLIGHT`], and allocates every job's buffers. Returns the most frames
    /// one job takes.
    pub fn configure(
        &mut self,
        batch_size: u16,
        jobs_in_flight: usize,
    ) -> Result<usize, HailoError> {
        let (mut max_frames, mut jobs) = (0, 0);
        // SAFETY: the handle is live; the out pointers are valid for writes.
        check(|err| unsafe {
            hc_model_configure(
                self.raw.as_ptr(),
                batch_size,
                jobs_in_flight,
                MAX_JOBS_IN_FLIGHT,
                &mut max_frames,
                &mut jobs,
                err,
            )
        })?;
        self.max_frames = max_frames;
        self.jobs = jobs;
        Ok(max_frames)
    }

    /// Submits `frames` frames as one job and returns without waiting for it. `inputs`
    /// holds each frame's buffer of each input, frame-major (frame f, input i at
    /// `f * inputs().len() + i`); the shim copies them into the job's own buffers. Waits at
    /// most `timeout` for a free job slot and room in HailoRT's queue.
    pub fn submit(
        &self,
        frames: usize,
        inputs: &[&[u8]],
        timeout: Duration,
    ) -> Result<Job<'_>, HailoError> {
        if inputs.len() != frames * self.inputs.len() {
            return Err(HailoError::shape(format!(
                "{} input buffers for {frames} frames of {} inputs",
                inputs.len(),
                self.inputs.len()
            )));
        }
        let slices: Vec<RawSlice> = inputs
            .iter()
            .map(|b| RawSlice {
                data: b.as_ptr(),
                len: b.len(),
            })
            .collect();
        let mut index = 0;
        // SAFETY: the handle is live; each slice is valid for its length for the duration
        // of the call, which copies them (the shim checks each length against its stream's
        // frame size first) and keeps no pointer to them.
        check(|err| unsafe {
            hc_model_submit(
                self.raw.as_ptr(),
                frames,
                slices.as_ptr(),
                self.inputs.len(),
                millis(timeout),
                &mut index,
                err,
            )
        })?;
        Ok(Job {
            model: self,
            index: Some(index),
            frames,
        })
    }

    /// Runs `frames` frames as one job and waits for it: `inputs[i]` holds the frames of
    /// input `i` back to back, `outputs[o]` receives those of output `o`; their lengths must
    /// be `frames` times the stream's frame size.
    pub fn run(
        &self,
        frames: usize,
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
        timeout: Duration,
    ) -> Result<(), HailoError> {
        check_lengths(
            "input",
            &self.inputs,
            inputs.iter().map(|b| b.len()),
            frames,
        )?;
        check_lengths(
            "output",
            &self.outputs,
            outputs.iter().map(|b| b.len()),
            frames,
        )?;
        let frame_inputs: Vec<&[u8]> = (0..frames)
            .flat_map(|f| {
                inputs
                    .iter()
                    .zip(&self.inputs)
                    .map(move |(b, s)| &b[f * s.frame_size..(f + 1) * s.frame_size])
            })
            .collect();
        let job = self.submit(frames, &frame_inputs, timeout)?;
        let sizes: Vec<usize> = self.outputs.iter().map(|s| s.frame_size).collect();
        let mut frame_outputs: Vec<&mut [u8]> = Vec::with_capacity(frames * outputs.len());
        let mut rests: Vec<&mut [u8]> = outputs.iter_mut().map(|b| &mut **b).collect();
        for _ in 0..frames {
            for (rest, &size) in rests.iter_mut().zip(&sizes) {
                let (frame, tail) = std::mem::take(rest).split_at_mut(size);
                frame_outputs.push(frame);
                *rest = tail;
            }
        }
        job.collect(&mut frame_outputs, timeout)
    }
}

/// Checks that there is one buffer per stream, each `frames` times its frame size.
fn check_lengths(
    direction: &str,
    streams: &[StreamInfo],
    lens: impl ExactSizeIterator<Item = usize>,
    frames: usize,
) -> Result<(), HailoError> {
    if lens.len() != streams.len() {
        return Err(HailoError::shape(format!(
            "{} {direction} buffers for {} {direction}s",
            lens.len(),
            streams.len()
        )));
    }
    for (stream, len) in streams.iter().zip(lens) {
        if len != frames * stream.frame_size {
            return Err(HailoError::shape(format!(
                "{direction} {}: {len} bytes for {frames} frames of {}",
                stream.name, stream.frame_size
            )));
        }
    }
    Ok(())
}

/// A submitted job of a [`Model`]. [`collect`](Job::collect) takes its outputs; dropped
/// without that, the job is abandoned: it finishes on the device, and its buffers, which
/// the shim owns, come free with its completion.
#[derive(Debug)]
pub struct Job<'a> {
    model: &'a Model,
    index: Option<usize>,
    /// Frames submitted: the shim writes this many frames of every output.
    frames: usize,
}

impl Job<'_> {
    /// Waits at most `timeout` for the job and copies its outputs into `outputs` (each
    /// frame's buffer of each output, frame-major, each exactly the stream's frame size).
    pub fn collect(
        mut self,
        outputs: &mut [&mut [u8]],
        timeout: Duration,
    ) -> Result<(), HailoError> {
        if outputs.len() != self.frames * self.model.outputs.len() {
            // Checked here: the shim reads one buffer per frame and output.
            return Err(HailoError::shape(format!(
                "{} output buffers for {} frames of {} outputs",
                outputs.len(),
                self.frames,
                self.model.outputs.len()
            )));
        }
        let index = self.index.take().expect("a job is collected once");
        let slices: Vec<RawMutSlice> = outputs
            .iter_mut()
            .map(|b| RawMutSlice {
                data: b.as_mut_ptr(),
                len: b.len(),
            })
            .collect();
        // SAFETY: the handle is live; the job index came from hc_model_submit and is used
        // once; there is one slice per frame and output (checked above), each valid for
        // writes of its length, which the shim checks against the frame size before
        // copying, and no pointer is kept past the call.
        check(|err| unsafe {
            hc_model_collect(
                self.model.raw.as_ptr(),
                index,
                slices.as_ptr(),
                self.model.outputs.len(),
                millis(timeout),
                err,
            )
        })
    }
}

impl Drop for Job<'_> {
    fn drop(&mut self) {
        if let Some(index) = self.index {
            // SAFETY: the handle is live (the job borrows the model); the index is unused.
            unsafe { hc_model_abandon(self.model.raw.as_ptr(), index) }
        }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: the handle came from hc_model_load and is released only here.
        unsafe { hc_model_release(self.raw.as_ptr()) }
    }
}

/// The HailoRT test double's `transform onnx` (tests/hailo_fake/fake_hailort.cpp): the double
/// runs a fake HEF's float32 ONNX graph on each frame by calling back into this process, and
/// this build answers with tract. Registered when a device is first opened; absent from a
/// build against the real HailoRT.
#[cfg(feature = "hailo-fake")]
mod test_double {
    use std::collections::HashMap;
    use std::ffi::{c_char, c_int, CStr};
    use std::sync::{Arc, Mutex, Once, OnceLock};

    use tract_onnx::prelude::*;

    type Runner = unsafe extern "C" fn(
        *const c_char,
        *const f32,
        usize,
        *mut f32,
        usize,
        *mut c_char,
        usize,
    ) -> c_int;

    extern "C" {
        fn hailo_fake_set_onnx_runner(runner: Runner);
    }

    pub fn register() {
        static ONCE: Once = Once::new();
        // SAFETY: `run` has the runner's signature and lives as long as the process.
        ONCE.call_once(|| unsafe { hailo_fake_set_onnx_runner(run) });
    }

    type Plan = Arc<TypedSimplePlan>;

    /// Each graph loaded once, with its input shape (fixed in the file).
    fn plan(path: &str) -> Result<(Plan, Vec<usize>), String> {
        static PLANS: OnceLock<Mutex<HashMap<String, (Plan, Vec<usize>)>>> = OnceLock::new();
        let plans = PLANS.get_or_init(Default::default);
        if let Some(found) = plans.lock().unwrap_or_else(|p| p.into_inner()).get(path) {
            return Ok(found.clone());
        }
        let plan = tract_onnx::onnx()
            .model_for_path(path)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| format!("{e:#}"))?;
        let shape = plan
            .model()
            .input_fact(0)
            .map_err(|e| format!("{e:#}"))?
            .shape
            .as_concrete()
            .ok_or("the graph's input shape is not fixed")?
            .to_vec();
        let loaded = (plan, shape);
        plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_string(), loaded.clone());
        Ok(loaded)
    }

    fn run_graph(path: &str, input: &[f32], output: &mut [f32]) -> Result<(), String> {
        let (plan, shape) = plan(path)?;
        if shape.iter().product::<usize>() != input.len() {
            return Err(format!(
                "the graph takes {shape:?}, the frame has {} values",
                input.len()
            ));
        }
        let tensor = Tensor::from_shape(&shape, input).map_err(|e| format!("{e:#}"))?;
        let outputs = plan
            .run(tvec!(tensor.into()))
            .map_err(|e| format!("{e:#}"))?;
        let values = outputs[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| format!("the graph's output: {e:#}"))?;
        if values.len() != output.len() {
            return Err(format!(
                "the graph gives {} values, the frame holds {}",
                values.len(),
                output.len()
            ));
        }
        for (out, value) in output.iter_mut().zip(values.iter()) {
            *out = *value;
        }
        Ok(())
    }

    /// The runner the double calls: 0, or 1 with the reason in `error`.
    unsafe extern "C" fn run(
        path: *const c_char,
        input: *const f32,
        input_len: usize,
        output: *mut f32,
        output_len: usize,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int {
        // SAFETY: the double passes a NUL-terminated path and buffers of the lengths given,
        // alive for the call.
        let result = std::panic::catch_unwind(|| unsafe {
            let path = CStr::from_ptr(path).to_string_lossy().into_owned();
            run_graph(
                &path,
                std::slice::from_raw_parts(input, input_len),
                std::slice::from_raw_parts_mut(output, output_len),
            )
        })
        .unwrap_or_else(|_| Err("the runner panicked".into()));
        match result {
            Ok(()) => 0,
            Err(message) => {
                let bytes = message.as_bytes();
                let n = bytes.len().min(error_len.saturating_sub(1));
                // SAFETY: `error` has `error_len` bytes; n + 1 of them are written.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr().cast(), error, n);
                    *error.add(n) = 0;
                }
                1
            }
        }
    }
}
