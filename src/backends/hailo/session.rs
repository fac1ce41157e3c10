//! The Hailo device and the models configured on it, kept across device faults. Both
//! encoders run their jobs through one session; when HailoRT reports a fault of the device
//! as a whole, the session refuses new jobs at once, tears the models and the VDevice down on
//! a thread with a time limit, backs off (1 s doubling to 60 s), opens the device again,
//! configures the same models (and maps their buffers) again, and then waits for the service
//! to rerun its warm-up and self-test before it serves. After `hailo.recovery_max_seconds`
//! it gives up, and the daemon exits for systemd to restart it.
//!
//! How faults surface (hailort v5.2.0; v4.23.0 for Hailo-8), and what is one:
//! * the device side closed the link: `HAILO_COMMUNICATION_CLOSED` for every pending and new
//!   request (hrpc/client.cpp; hrpc/raw_connection_internal/pcie/hailo_session_internal.cpp);
//! * the host lost the device (PCIe reset, removal): `HAILO_DEVICE_NOT_CONNECTED` on 5.x,
//!   `HAILO_DRIVER_OPERATION_FAILED` on 4.23, and waits in flight time out
//!   (vdma/driver/os/posix/linux/driver_os_specific.cpp); every driver error is one too:
//!   `HAILO_DRIVER_TIMEOUT`, `HAILO_DRIVER_INVALID_RESPONSE`, `HAILO_DRIVER_INVALID_IOCTL`,
//!   `HAILO_DRIVER_INTERRUPTED`, `HAILO_DRIVER_WAIT_CANCELED` (a driver that answers
//!   nonsense or not at all is recovered by re-opening, or, failing that, by a restart);
//! * a hang: `HAILO_TIMEOUT` (hrpc requests time out after 10 s,
//!   `HAILO_REQUEST_TIMEOUT_SECONDS`), a fault after 3 in a row; `HAILO_STREAM_ABORT`
//!   likewise after 3 in a row.
//!
//! On Hailo-10H a failed `run_async`, even a queue timeout, shuts that configured model down
//! for good (configured_infer_model_hrpc_client.cpp): the shim waits with
//! `wait_for_async_ready` before each `run_async` and configures a model anew after a failure.
//! The other jobs on that model then end `HAILO_STREAM_ABORT`, often before the call whose
//! failure shut it down has returned and declared its fault. Such a job is told apart by
//! what happened, not by a wait of a guessed length: it waits for every call that was
//! running when it failed to end (each ends within its own `hailo.timeout_ms`), and is part
//! of a recovery when a fault was declared since it started.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use super::device::{open_device, HailoDevice, HailoLoadError};
use super::ffi::{HailoError, Identity, Model, Monitor};
use super::layout;
use crate::config::HailoConfig;
use crate::encoder::{DeviceHealth, DeviceRecovery, DeviceStatus, EncoderError, EncoderErrorKind};

// HailoRT's status numbers (hailort.h; the same in 4.23 and 5.2 where both have them).
const HAILO_TIMEOUT: i32 = 4;
const HAILO_DRIVER_OPERATION_FAILED: i32 = 36;
const HAILO_COMMUNICATION_CLOSED: i32 = 62;
const HAILO_STREAM_ABORT: i32 = 63;
const HAILO_DRIVER_INVALID_RESPONSE: i32 = 85;
const HAILO_DRIVER_INVALID_IOCTL: i32 = 86;
const HAILO_DRIVER_TIMEOUT: i32 = 87;
const HAILO_DRIVER_INTERRUPTED: i32 = 88;
const HAILO_DRIVER_WAIT_CANCELED: i32 = 90;
const HAILO_DEVICE_NOT_CONNECTED: i32 = 96;

/// Every driver error (hailort.h): each is a fault of the device.
const DRIVER_ERRORS: [(i32, &str); 6] = [
    (
        HAILO_DRIVER_OPERATION_FAILED,
        "HAILO_DRIVER_OPERATION_FAILED",
    ),
    (
        HAILO_DRIVER_INVALID_RESPONSE,
        "HAILO_DRIVER_INVALID_RESPONSE",
    ),
    (HAILO_DRIVER_INVALID_IOCTL, "HAILO_DRIVER_INVALID_IOCTL"),
    (HAILO_DRIVER_TIMEOUT, "HAILO_DRIVER_TIMEOUT"),
    (HAILO_DRIVER_INTERRUPTED, "HAILO_DRIVER_INTERRUPTED"),
    (HAILO_DRIVER_WAIT_CANCELED, "HAILO_DRIVER_WAIT_CANCELED"),
];
/// Timeouts (or stream aborts) in a row that make a fault of the device.
const IN_A_ROW: u32 = 3;
/// Back-off between attempts to open the device again.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest the teardown of the old models and VDevice may take before it is left to finish
/// on its own: on Hailo-10H each hrpc destructor can block for its 10 s request timeout.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(30);
/// How often the chip's temperature is read.
const TEMPERATURE_EVERY: Duration = Duration::from_secs(10);
/// How often the NN core's utilization is read: `query_performance_stats` takes 200 ms or
/// more on the device.
const UTILIZATION_EVERY: Duration = Duration::from_secs(30);
const HAILO_NOT_IMPLEMENTED: i32 = 7;

/// Which model of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Network {
    Image,
    Text,
}

/// How the session opens the device and configures a model again, the same way as at start.
pub(super) type Configure =
    Box<dyn Fn(&HailoDevice) -> Result<Model, HailoLoadError> + Send + Sync>;

struct Live {
    // Field order is drop order: the models before the device they run on.
    image: Option<Model>,
    text: Option<Model>,
    device: HailoDevice,
}

impl Live {
    fn model(&self, network: Network) -> Option<&Model> {
        match network {
            Network::Image => self.image.as_ref(),
            Network::Text => self.text.as_ref(),
        }
    }
}

/// What the health poller knows of the device.
#[derive(Default)]
struct Health {
    monitor: Option<Arc<Monitor>>,
    identity: Option<Identity>,
    pci_address: Option<String>,
    temperature_c: Option<[f32; 2]>,
    nnc_utilization: Option<f32>,
    /// False once the device said it has no performance stats (Hailo-8).
    utilization_supported: bool,
    /// Alarms counted by monitors closed before (a recovery opens a new one).
    alarms_before: (u64, u64),
    /// The last throttling state a closed monitor was told: a new monitor knows none until
    /// the chip changes state, and the chip is as throttled as it was.
    throttling_before: Option<u16>,
    /// The alarm total last seen, and when it last grew.
    alarms_seen: u64,
    last_alarm_at: Option<Instant>,
}

#[derive(Debug, Clone)]
enum Phase {
    Serving,
    /// Torn down or being re-created: jobs are refused.
    Down {
        since: Instant,
    },
    /// Re-created; jobs run (the service's check), requests are not admitted yet.
    Check {
        since: Instant,
    },
    GaveUp,
}

pub struct HailoSession {
    /// This session, for the recovery thread it starts.
    me: Weak<HailoSession>,
    config: HailoConfig,
    live: RwLock<Option<Live>>,
    phase: Mutex<Phase>,
    last_fault: Mutex<Option<String>>,
    recoveries: AtomicU64,
    timeouts_in_a_row: AtomicU32,
    aborts_in_a_row: AtomicU32,
    configure_image: Mutex<Option<Configure>>,
    configure_text: Mutex<Option<Configure>>,
    last_fault_status: Mutex<Option<&'static str>>,
    health: Mutex<Health>,
    /// Faults declared so far: a job that sees it change while it ran was part of one.
    faults: AtomicU64,
    /// The calls running on the models, by ticket, and a signal when one ends.
    calls: Mutex<Calls>,
    call_ended: Condvar,
}

#[derive(Default)]
struct Calls {
    next: u64,
    running: BTreeSet<u64>,
}

/// A running call's ticket; ending it (dropping) signals the calls waiting on it.
struct Ticket<'a> {
    session: &'a HailoSession,
    id: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut calls = self.session.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.running.remove(&self.id);
        self.session.call_ended.notify_all();
    }
}

impl HailoSession {
    /// A session on an open device, with no model yet (the encoders' loaders add theirs).
    pub fn new(config: &HailoConfig, device: HailoDevice) -> Arc<HailoSession> {
        Arc::new_cyclic(|me| HailoSession {
            me: me.clone(),
            config: config.clone(),
            live: RwLock::new(Some(Live {
                image: None,
                text: None,
                device,
            })),
            phase: Mutex::new(Phase::Serving),
            last_fault: Mutex::new(None),
            recoveries: AtomicU64::new(0),
            timeouts_in_a_row: AtomicU32::new(0),
            aborts_in_a_row: AtomicU32::new(0),
            configure_image: Mutex::new(None),
            configure_text: Mutex::new(None),
            last_fault_status: Mutex::new(None),
            health: Mutex::new(Health {
                utilization_supported: true,
                ..Health::default()
            }),
            faults: AtomicU64::new(0),
            calls: Mutex::new(Calls::default()),
            call_ended: Condvar::new(),
        })
    }

    /// Reads the device's identity and temperature now, then polls them on a thread of
    /// its own for as long as the session lives.
    pub fn watch_health(self: &Arc<Self>) {
        self.poll_health(true);
        let session = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("hailo-health".into())
            .spawn(move || {
                let mut last_utilization = Instant::now();
                loop {
                    std::thread::sleep(TEMPERATURE_EVERY);
                    let Some(session) = session.upgrade() else {
                        return;
                    };
                    let utilization = last_utilization.elapsed() >= UTILIZATION_EVERY;
                    if utilization {
                        last_utilization = Instant::now();
                    }
                    session.poll_health(utilization);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the Hailo health poller: {e}");
        }
    }

    /// One poll: opens the monitor handle if there is none (at start, after a recovery),
    /// reads the identity with it, then the temperature (and the utilization). Skipped while
    /// the device is being recovered.
    fn poll_health(&self, utilization: bool) {
        if self.is_down() {
            return;
        }
        let monitor = {
            let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
            health.monitor.clone()
        };
        let monitor = match monitor {
            Some(monitor) => monitor,
            None => match Monitor::open(self.config.device_id.as_deref()) {
                Ok(monitor) => {
                    let monitor = Arc::new(monitor);
                    let identity = monitor.identify();
                    let pci_address = self
                        .live
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .as_ref()
                        .and_then(|l| layout::pci_address(Path::new("/"), l.device.node()));
                    let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
                    match identity {
                        Ok(identity) => {
                            tracing::info!(
                                "Hailo device: {} {} (board {}), serial {}, firmware {}{}",
                                identity.product_name,
                                identity.architecture,
                                identity.board_name,
                                identity.serial_number,
                                identity.firmware_version,
                                pci_address
                                    .as_deref()
                                    .map(|a| format!(", PCI {a}"))
                                    .unwrap_or_default()
                            );
                            health.identity = Some(identity);
                        }
                        Err(e) => tracing::warn!("cannot read the Hailo device's identity: {e}"),
                    }
                    health.pci_address = pci_address;
                    health.monitor = Some(monitor.clone());
                    monitor
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot open the Hailo device for its health (temperature, identity): {e}"
                    );
                    return;
                }
            },
        };
        let temperature = monitor.temperature();
        let nnc = (utilization
            && self
                .health
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .utilization_supported)
            .then(|| monitor.nnc_utilization());
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        match temperature {
            Ok(t) => health.temperature_c = Some(t),
            Err(e) => {
                tracing::warn!("cannot read the Hailo chip's temperature: {e}");
                health.temperature_c = None;
            }
        }
        match nnc {
            Some(Ok(percent)) if percent >= 0.0 => health.nnc_utilization = Some(percent),
            Some(Err(e)) if e.hailo_status == HAILO_NOT_IMPLEMENTED => {
                health.utilization_supported = false;
                health.nnc_utilization = None;
            }
            Some(_) => health.nnc_utilization = None,
            None => {}
        }
    }

    /// The health as of now: the poller's readings and the notifications' counters.
    fn health_now(&self) -> DeviceHealth {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let events = health
            .monitor
            .as_ref()
            .map(|m| m.events())
            .unwrap_or_default();
        let temperature_alarms = health.alarms_before.0 + events.temperature_alarms;
        let overcurrent_alarms = health.alarms_before.1 + events.overcurrent_alarms;
        if temperature_alarms + overcurrent_alarms > health.alarms_seen {
            health.alarms_seen = temperature_alarms + overcurrent_alarms;
            health.last_alarm_at = Some(Instant::now());
        }
        let identity = health.identity.clone();
        DeviceHealth {
            firmware_version: identity.as_ref().map(|i| i.firmware_version.clone()),
            architecture: identity.as_ref().map(|i| i.architecture.clone()),
            serial_number: identity.as_ref().map(|i| i.serial_number.clone()),
            product_name: identity.as_ref().map(|i| i.product_name.clone()),
            board_name: identity.as_ref().map(|i| i.board_name.clone()),
            pci_address: health.pci_address.clone(),
            temperature_c: health.temperature_c,
            nnc_utilization: health.nnc_utilization,
            throttling_state: events.throttling_state.or(health.throttling_before),
            temperature_alarms,
            overcurrent_alarms,
            last_alarm_ago: health.last_alarm_at.map(|t| t.elapsed()),
        }
    }

    /// Closes the monitor handle (a recovery re-creates the device), keeping its counts.
    fn close_monitor(&self) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(monitor) = health.monitor.take() {
            let events = monitor.events();
            health.alarms_before.0 += events.temperature_alarms;
            health.alarms_before.1 += events.overcurrent_alarms;
            health.throttling_before = events.throttling_state.or(health.throttling_before);
        }
        health.temperature_c = None;
        health.nnc_utilization = None;
    }

    /// The device, for the loaders.
    pub(super) fn with_device<T>(&self, f: impl FnOnce(&HailoDevice) -> T) -> T {
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        f(&live
            .as_ref()
            .expect("the device is open while loading")
            .device)
    }

    /// Keeps a configured model for the jobs, and how to configure it again for a recovery.
    pub(super) fn add(&self, network: Network, model: Model, recipe: Configure) {
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        let live = live.as_mut().expect("the device is open while loading");
        let (slot, recipes) = match network {
            Network::Image => (&mut live.image, &self.configure_image),
            Network::Text => (&mut live.text, &self.configure_text),
        };
        *slot = Some(model);
        *recipes.lock().unwrap_or_else(|p| p.into_inner()) = Some(recipe);
    }

    fn enter(&self) -> Ticket<'_> {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let id = calls.next;
        calls.next += 1;
        calls.running.insert(id);
        Ticket { session: self, id }
    }

    /// Ends `ticket`, then waits for every call that was running beside it to end (and so
    /// to have declared its fault, if it had one). Each ends within its own
    /// `hailo.timeout_ms`; the wait gives up after twice that.
    fn wait_for_the_others(&self, ticket: Ticket<'_>) {
        let others: Vec<u64> = {
            let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            calls
                .running
                .iter()
                .copied()
                .filter(|&id| id != ticket.id)
                .collect()
        };
        drop(ticket);
        let limit = Duration::from_millis(self.config.timeout_ms.max(1)) * 2;
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.call_ended.wait_timeout_while(calls, limit, |calls| {
            others.iter().any(|id| calls.running.contains(id))
        });
    }

    fn is_down(&self) -> bool {
        matches!(
            *self.phase.lock().unwrap_or_else(|p| p.into_inner()),
            Phase::Down { .. } | Phase::GaveUp
        )
    }

    fn refused(&self) -> EncoderError {
        let fault = self
            .last_fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        EncoderError {
            kind: EncoderErrorKind::Recovering,
            message: format!(
                "the Hailo device is being recovered ({})",
                fault.as_deref().unwrap_or("after a fault")
            ),
        }
    }

    /// Runs one call on `network`'s model, unless the device is down; a failure that is a
    /// fault of the device starts a recovery. `describe` turns HailoRT's error into the
    /// encoder's.
    pub(super) fn run<T>(
        &self,
        network: Network,
        call: impl FnOnce(&Model) -> Result<T, HailoError>,
        describe: impl FnOnce(HailoError) -> EncoderError,
    ) -> Result<T, EncoderError> {
        if self.is_down() {
            return Err(self.refused());
        }
        let faults_before = self.faults.load(Ordering::SeqCst);
        let ticket = self.enter();
        let result = {
            let live = self.live.read().unwrap_or_else(|p| p.into_inner());
            let Some(model) = live.as_ref().and_then(|l| l.model(network)) else {
                return Err(self.refused());
            };
            call(model)
        };
        match result {
            Ok(value) => {
                self.timeouts_in_a_row.store(0, Ordering::SeqCst);
                self.aborts_in_a_row.store(0, Ordering::SeqCst);
                Ok(value)
            }
            Err(e) => {
                let status = e.hailo_status;
                let mut error = describe(e);
                if status == HAILO_STREAM_ABORT {
                    // HailoRT aborts the jobs in flight when a failed run_async shuts the model
                    // down, before that call returns and can report its fault: this job is
                    // part of the recovery if one of the calls beside it declares one.
                    self.wait_for_the_others(ticket);
                }
                if self.is_down() || self.faults.load(Ordering::SeqCst) != faults_before {
                    // A job HailoRT aborted with the one that faulted (a failed run_async
                    // shuts the whole configured model down), or one that ran into the
                    // teardown: the device is being recovered, not this job's failure. Not
                    // counted towards another fault.
                    if status != HAILO_TIMEOUT {
                        error.kind = EncoderErrorKind::Recovering;
                    }
                } else if let Some(fault) = self.fault_of(status) {
                    tracing::error!("Hailo device fault: {fault}: {}", error.message);
                    *self
                        .last_fault_status
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(status_name(status));
                    self.start_recovery(fault);
                    if status != HAILO_TIMEOUT {
                        error.kind = EncoderErrorKind::Recovering;
                    }
                }
                Err(error)
            }
        }
    }

    /// Whether a failed call's HailoRT status is a fault of the device, in words.
    fn fault_of(&self, status: i32) -> Option<String> {
        let in_a_row = |counter: &AtomicU32| counter.fetch_add(1, Ordering::SeqCst) + 1 >= IN_A_ROW;
        if let Some((_, name)) = DRIVER_ERRORS.iter().find(|(s, _)| *s == status) {
            return Some(format!("a driver operation failed ({name})"));
        }
        match status {
            HAILO_COMMUNICATION_CLOSED => {
                Some("the device closed the link (HAILO_COMMUNICATION_CLOSED)".into())
            }
            HAILO_DEVICE_NOT_CONNECTED => {
                Some("the device is not connected (HAILO_DEVICE_NOT_CONNECTED)".into())
            }
            HAILO_TIMEOUT if in_a_row(&self.timeouts_in_a_row) => Some(format!(
                "{IN_A_ROW} jobs in a row timed out (HAILO_TIMEOUT)"
            )),
            HAILO_STREAM_ABORT if in_a_row(&self.aborts_in_a_row) => Some(format!(
                "{IN_A_ROW} jobs in a row were aborted (HAILO_STREAM_ABORT)"
            )),
            _ => None,
        }
    }

    /// Stops serving and recovers on a thread of its own, unless a recovery is under way.
    fn start_recovery(&self, fault: String) {
        {
            let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
            let since = match *phase {
                Phase::Serving => Instant::now(),
                // A fault during the check continues the same recovery (and its time limit).
                Phase::Check { since } => since,
                Phase::Down { .. } | Phase::GaveUp => return,
            };
            *phase = Phase::Down { since };
            self.faults.fetch_add(1, Ordering::SeqCst);
        }
        *self.last_fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(fault);
        self.timeouts_in_a_row.store(0, Ordering::SeqCst);
        self.aborts_in_a_row.store(0, Ordering::SeqCst);
        let Some(session) = self.me.upgrade() else {
            return;
        };
        std::thread::Builder::new()
            .name("hailo-recovery".into())
            .spawn(move || session.recover())
            .expect("spawning the recovery thread");
    }

    fn since(&self) -> Option<Instant> {
        match *self.phase.lock().unwrap_or_else(|p| p.into_inner()) {
            Phase::Down { since } | Phase::Check { since } => Some(since),
            Phase::Serving | Phase::GaveUp => None,
        }
    }

    fn recover(self: Arc<Self>) {
        let limit = Duration::from_secs(self.config.recovery_max_seconds);
        let since = self.since().unwrap_or_else(Instant::now);
        // Calls in flight end within hailo.timeout_ms; new ones are refused.
        let old = self.live.write().unwrap_or_else(|p| p.into_inner()).take();
        self.close_monitor();
        tear_down(old);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let left = limit.saturating_sub(since.elapsed());
            if left.is_zero() {
                tracing::error!(
                    "the Hailo device was not recovered within hailo.recovery_max_seconds ({} s)",
                    limit.as_secs()
                );
                *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = Phase::GaveUp;
                return;
            }
            std::thread::sleep(backoff.min(left));
            match self.reopen() {
                Ok(live) => {
                    *self.live.write().unwrap_or_else(|p| p.into_inner()) = Some(live);
                    *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = Phase::Check { since };
                    tracing::warn!(
                        "Hailo device re-created and its models configured after {:.1} s; checking it (warm-up, self-test)",
                        since.elapsed().as_secs_f64()
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        "Hailo device not back yet ({e}); next attempt in {} s",
                        (backoff * 2).min(MAX_BACKOFF).as_secs()
                    );
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Opens the device and configures every model as at start.
    fn reopen(&self) -> Result<Live, HailoLoadError> {
        let device = open_device(&self.config)?;
        let configure =
            |recipe: &Mutex<Option<Configure>>| -> Result<Option<Model>, HailoLoadError> {
                let recipe = recipe.lock().unwrap_or_else(|p| p.into_inner());
                recipe
                    .as_ref()
                    .map(|configure| configure(&device))
                    .transpose()
            };
        let image = configure(&self.configure_image)?;
        let text = configure(&self.configure_text)?;
        Ok(Live {
            image,
            text,
            device,
        })
    }
}

/// HailoRT's name of a fault's status.
fn status_name(status: i32) -> &'static str {
    if let Some((_, name)) = DRIVER_ERRORS.iter().find(|(s, _)| *s == status) {
        return name;
    }
    match status {
        HAILO_TIMEOUT => "HAILO_TIMEOUT",
        HAILO_COMMUNICATION_CLOSED => "HAILO_COMMUNICATION_CLOSED",
        HAILO_STREAM_ABORT => "HAILO_STREAM_ABORT",
        HAILO_DEVICE_NOT_CONNECTED => "HAILO_DEVICE_NOT_CONNECTED",
        _ => "other",
    }
}

/// Drops the old models and device on a thread, waiting at most [`TEARDOWN_LIMIT`]; past
/// it, the thread is left to finish alone (a destructor blocked on a dead link).
fn tear_down(old: Option<Live>) {
    let Some(old) = old else { return };
    let (done, finished) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("hailo-teardown".into())
        .spawn(move || {
            drop(old);
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => {
            if finished.recv_timeout(TEARDOWN_LIMIT).is_err() {
                tracing::error!(
                    "tearing down the old Hailo models and VDevice took over {} s; going on without waiting",
                    TEARDOWN_LIMIT.as_secs()
                );
            }
        }
        Err(e) => tracing::error!("cannot spawn the teardown thread: {e}"),
    }
}

impl DeviceRecovery for HailoSession {
    fn status(&self) -> DeviceStatus {
        let phase = self.phase.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (recovering, needs_check, since, gave_up) = match phase {
            Phase::Serving => (false, false, None, false),
            Phase::Down { since } => (true, false, Some(since), false),
            Phase::Check { since } => (true, true, Some(since), false),
            Phase::GaveUp => (true, false, None, true),
        };
        DeviceStatus {
            recovering,
            needs_check,
            recovering_for: since.map(|s| s.elapsed()),
            gave_up,
            recoveries: self.recoveries.load(Ordering::SeqCst),
            last_fault: self
                .last_fault
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            last_fault_status: *self
                .last_fault_status
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            health: self.health_now(),
        }
    }

    fn verified(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        if let Phase::Check { since } = *phase {
            *phase = Phase::Serving;
            self.timeouts_in_a_row.store(0, Ordering::SeqCst);
            self.aborts_in_a_row.store(0, Ordering::SeqCst);
            self.recoveries.fetch_add(1, Ordering::SeqCst);
            // The health poller opens a new monitor handle on its next round.
            tracing::warn!(
                "Hailo device recovered in {:.1} s: serving again",
                since.elapsed().as_secs_f64()
            );
        }
    }

    fn check_failed(&self, why: &str) {
        tracing::error!("the re-created Hailo device failed its check: {why}");
        self.start_recovery(format!("the re-created device failed its check: {why}"));
    }
}
