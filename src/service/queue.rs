//! The bounded work queue and the worker threads that own the encoders.
//!
//! Requests never call an encoder directly: they put a job on a bounded queue
//! (`performance.max_queue_size`) and wait for its reply. A full queue is refused at once
//! (the HTTP layer answers 503 + Retry-After) instead of piling up latency. Each worker takes
//! one job and then every job of the same kind already waiting, up to the batch limit, into
//! one inference. A job whose deadline has passed is dropped unrun.
//!
//! On a device that runs one job at a time (a Hailo: [`ImageEncoder::serial_device`]) one
//! worker at a time gathers the next job: it keeps taking what arrives while another
//! worker's job is on the device, and, once the device is free, while the clients that job
//! answered are sending their next image (a few milliseconds for a closed-loop client; 10
//! ms at most), so that 8 clients in a loop make jobs of 8, not 6 + 2. A full batch is
//! submitted at once, behind the running job, so the device never waits for the host. A
//! lone request finds the device free, and its own answer was the last: it goes at once.
//! With `hailo.jobs_in_flight: auto` there are two workers: one job running, one forming or
//! queued behind it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use image::RgbImage;
use ndarray::Array2;
use tokio::sync::oneshot;

use crate::config::PerformanceConfig;
use crate::encoder::{EncoderError, EncoderErrorKind, ImageEncoder, TextEncoder};
use crate::metrics::Metrics;

/// Why a job produced no embeddings.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum JobError {
    #[error("the work queue is full ({0} jobs waiting)")]
    QueueFull(usize),
    #[error("the request deadline passed before the job ran")]
    Expired,
    #[error("the service is shutting down")]
    Closed,
    #[error(transparent)]
    Encoder(#[from] EncoderError),
}

type Reply<T> = oneshot::Sender<Result<T, JobError>>;

/// One request's input, the time its answer is no use after, and where the answer goes.
struct Request<I, O> {
    input: I,
    deadline: Instant,
    reply: Reply<O>,
}

impl<I, O> Request<I, O> {
    /// The input and the reply, unless the deadline passed or the caller gave up, in which
    /// case the job is answered `Expired` here.
    fn live(self, now: Instant) -> Option<(I, Reply<O>)> {
        if self.deadline <= now || self.reply.is_closed() {
            let _ = self.reply.send(Err(JobError::Expired));
            return None;
        }
        Some((self.input, self.reply))
    }
}

enum Job {
    Image(Request<RgbImage, Vec<f32>>),
    /// Token ids, one sequence a text.
    Texts(Request<Vec<Vec<u32>>, Array2<f32>>),
}

impl Job {
    fn into_image(self) -> Option<Request<RgbImage, Vec<f32>>> {
        match self {
            Job::Image(request) => Some(request),
            Job::Texts(_) => None,
        }
    }
    fn into_texts(self) -> Option<Request<Vec<Vec<u32>>, Array2<f32>>> {
        match self {
            Job::Texts(request) => Some(request),
            Job::Image(_) => None,
        }
    }
}

/// What /health and the watchdog read from the workers. Counts and durations per encoder
/// are metrics (`observe`), not kept twice here.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub workers_alive: AtomicUsize,
    /// False after an inference failed, true again after one succeeds.
    pub last_inference_ok: AtomicBool,
    /// Inference calls finished, either way: the watchdog's sign of progress.
    pub batches_done: AtomicU64,
}

pub struct WorkQueue {
    sender: Mutex<Option<Sender<Job>>>,
    /// The workers' serial device, for its count of images queued.
    device: Arc<DeviceTurns>,
    /// The workers' held jobs (see [`Worker`]), for the depth.
    held: Receiver<Job>,
    capacity: usize,
    stats: Arc<QueueStats>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    worker_count: usize,
    /// Images of admitted requests still being decoded (see [`IncomingImage`]).
    incoming_images: Arc<AtomicUsize>,
}

/// The workers' view of a device that runs one job at a time: how many of them have a job
/// on it, a signal each time one ends, which worker gathers the next job, and how many of
/// the clients the last job answered have sent their next image.
struct DeviceTurns {
    busy: AtomicUsize,
    freed: Sender<()>,
    on_freed: Receiver<()>,
    /// Held by the worker gathering the next job: one at a time, so that the images of the
    /// clients coming back go into one job, not into two halves.
    gather: Mutex<()>,
    /// Images queued so far.
    arrivals: AtomicUsize,
    /// Images the last job that left the device answered, `arrivals` then, and when.
    answered: AtomicUsize,
    arrivals_then: AtomicUsize,
    answered_at: Mutex<Option<Instant>>,
}

impl DeviceTurns {
    fn new() -> DeviceTurns {
        // One pending signal is enough: a waiting worker only needs to look again.
        let (freed, on_freed) = crossbeam_channel::bounded(1);
        DeviceTurns {
            busy: AtomicUsize::new(0),
            freed,
            on_freed,
            gather: Mutex::new(()),
            arrivals: AtomicUsize::new(0),
            answered: AtomicUsize::new(0),
            arrivals_then: AtomicUsize::new(0),
            answered_at: Mutex::new(None),
        }
    }

    fn busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }

    /// Counts an image queued.
    fn arrived(&self) {
        self.arrivals.fetch_add(1, Ordering::SeqCst);
    }

    /// The last job answered `images` images (before it leaves the device).
    fn answered(&self, images: usize) {
        self.arrivals_then
            .store(self.arrivals.load(Ordering::SeqCst), Ordering::SeqCst);
        self.answered.store(images, Ordering::SeqCst);
        *self.answered_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Whether clients the last job answered may still send their next image: a
    /// closed-loop client (Immich's smart search, most services) sends it a few
    /// milliseconds after its answer. Not once as many images came as were answered (a
    /// lone client's next image is already here), nor once `window` has passed since the
    /// answers went out (those clients are not coming back soon).
    fn returning(&self, window: Duration) -> bool {
        let recent = self
            .answered_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < window);
        let since =
            self.arrivals.load(Ordering::SeqCst) - self.arrivals_then.load(Ordering::SeqCst);
        recent && self.answered.load(Ordering::SeqCst) > since
    }

    /// Counts a job on the device until the guard drops.
    fn enter(self: &Arc<Self>) -> OnDevice {
        self.busy.fetch_add(1, Ordering::SeqCst);
        OnDevice(self.clone())
    }
}

/// A worker's job on the serial device; dropping it signals that the device is free.
struct OnDevice(Arc<DeviceTurns>);

impl Drop for OnDevice {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        let _ = self.0.freed.try_send(());
    }
}

/// How long a worker waiting for the device looks again even without a signal.
const DEVICE_POLL: Duration = Duration::from_millis(50);

#[derive(Clone)]
struct Worker {
    receiver: Receiver<Job>,
    /// Jobs of the other kind a worker met while gathering a batch, oldest first: shared,
    /// so that whichever worker is free next takes them (an idle one at once), ahead of
    /// the queue.
    held: (Sender<Job>, Receiver<Job>),
    device: Arc<DeviceTurns>,
    image: Arc<dyn ImageEncoder>,
    text: Arc<dyn TextEncoder>,
    max_batch: usize,
    /// `performance.batch_wait_ms`.
    batch_wait: Duration,
    incoming_images: Arc<AtomicUsize>,
    stats: Arc<QueueStats>,
    metrics: Arc<Metrics>,
}

/// How long after its answers a job's clients count as coming back with their next image
/// (at most `performance.batch_wait_ms`): on loopback or a LAN a closed-loop client's next
/// request comes within a few milliseconds; a part batch waits no longer than this for them.
const RETURN_WINDOW: Duration = Duration::from_millis(10);

/// How often a worker waiting for images on their way checks whether any still are.
const BATCH_POLL: Duration = Duration::from_millis(1);

/// An image on its way to the queue: see [`WorkQueue::image_incoming`].
pub struct IncomingImage(Arc<AtomicUsize>);

impl Drop for IncomingImage {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Decrements the live-worker count however the worker thread ends.
struct AliveGuard(Arc<QueueStats>);
impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.workers_alive.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WorkQueue {
    /// `performance.worker_threads` workers (at least as many as an encoder keeps jobs in
    /// flight) over a queue of `max_queue_size` jobs, taking up to `max_batch_size` images
    /// at once.
    pub fn start(
        image: Arc<dyn ImageEncoder>,
        text: Arc<dyn TextEncoder>,
        performance: &PerformanceConfig,
        metrics: Arc<Metrics>,
    ) -> WorkQueue {
        // An encoder that keeps several jobs on a device gets a worker for each, so that
        // as many batches are submitted at once.
        let (workers, capacity, max_batch) = (
            performance
                .worker_threads
                .max(image.jobs_in_flight())
                .max(text.jobs_in_flight()),
            performance.max_queue_size,
            performance.max_batch_size,
        );
        let (sender, receiver) = crossbeam_channel::bounded(capacity);
        let stats = Arc::new(QueueStats::default());
        let incoming_images = Arc::new(AtomicUsize::new(0));
        let held = crossbeam_channel::unbounded();
        let device = Arc::new(DeviceTurns::new());
        let worker = Worker {
            receiver,
            held: held.clone(),
            device: device.clone(),
            image,
            text,
            max_batch,
            batch_wait: Duration::from_millis(performance.batch_wait_ms),
            incoming_images: incoming_images.clone(),
            stats: stats.clone(),
            metrics,
        };
        let handles = (0..workers)
            .map(|i| {
                let worker = worker.clone();
                stats.workers_alive.fetch_add(1, Ordering::SeqCst);
                std::thread::Builder::new()
                    .name(format!("clip-worker-{i}"))
                    .spawn(move || worker.run())
                    .expect("spawning a worker thread")
            })
            .collect();
        WorkQueue {
            sender: Mutex::new(Some(sender)),
            device,
            held: held.1,
            capacity,
            stats,
            workers: Mutex::new(handles),
            worker_count: workers,
            incoming_images,
        }
    }

    pub fn stats(&self) -> &QueueStats {
        &self.stats
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn worker_count(&self) -> usize {
        self.worker_count
    }

    /// Jobs waiting (not counting the ones being run), held ones included.
    pub fn depth(&self) -> usize {
        self.held.len()
            + self
                .sender
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map_or(0, |s| s.len())
    }

    fn submit(&self, job: Job) -> Result<(), JobError> {
        let guard = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let sender = guard.as_ref().ok_or(JobError::Closed)?;
        sender.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => JobError::QueueFull(self.capacity),
            TrySendError::Disconnected(_) => JobError::Closed,
        })
    }

    /// Counts an image whose request was admitted and which is still being decoded, until
    /// the returned guard is given to [`encode_image`](Self::encode_image) or dropped.
    pub fn image_incoming(&self) -> IncomingImage {
        self.incoming_images.fetch_add(1, Ordering::SeqCst);
        IncomingImage(self.incoming_images.clone())
    }

    pub async fn encode_image(
        &self,
        image: RgbImage,
        deadline: Instant,
        incoming: IncomingImage,
    ) -> Result<Vec<f32>, JobError> {
        // Counted before it is queued, so that a worker that takes it sees it arrived.
        self.device.arrived();
        let answer = self.queue(image, deadline, Job::Image)?;
        // Queued: a worker gathering a batch now finds it, so it is no longer on its way.
        drop(incoming);
        answer.await.unwrap_or(Err(JobError::Closed))
    }

    pub async fn encode_texts(
        &self,
        token_ids: Vec<Vec<u32>>,
        deadline: Instant,
    ) -> Result<Array2<f32>, JobError> {
        let answer = self.queue(token_ids, deadline, Job::Texts)?;
        answer.await.unwrap_or(Err(JobError::Closed))
    }

    /// Queues `input` as the job `kind` makes of it; the receiver gets the answer.
    fn queue<I, O>(
        &self,
        input: I,
        deadline: Instant,
        kind: fn(Request<I, O>) -> Job,
    ) -> Result<oneshot::Receiver<Result<O, JobError>>, JobError> {
        let (reply, answer) = oneshot::channel();
        self.submit(kind(Request {
            input,
            deadline,
            reply,
        }))?;
        Ok(answer)
    }

    /// Stops taking jobs, lets the workers finish what is queued, and joins them, so the
    /// encoders (and any device they hold) are released when this returns.
    pub fn shutdown(&self) {
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        let handles: Vec<_> = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for handle in handles {
            let _ = handle.join();
        }
    }
}

impl Drop for WorkQueue {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Worker {
    fn run(self) {
        let _alive = AliveGuard(self.stats.clone());
        let image_limit = self.max_batch.min(self.image.max_batch()).max(1);
        let text_limit = self.max_batch.min(self.text.max_batch()).max(1);
        // Jobs of the other kind met while gathering a batch go to `held`: they run next,
        // on whichever worker is free first, and gathering goes on past them (on a busy
        // device, images keep filling the next image job while a prompt waits its turn,
        // and the other way round).
        let (hold, held) = self.held.clone();
        // Images in the last image batch: how many clients are sending at once. When those
        // answers go out, the clients' next images arrive a few milliseconds later.
        let mut last_image_batch = 1;
        let serial_device = self.image.serial_device() || self.text.serial_device();
        loop {
            // On a serial device one worker gathers at a time, from its first job to its
            // submission (see [`DeviceTurns::gather`]).
            let gathering =
                serial_device.then(|| self.device.gather.lock().unwrap_or_else(|p| p.into_inner()));
            let first = match held.try_recv() {
                Ok(job) => job,
                Err(_) => crossbeam_channel::select! {
                    recv(held) -> job => job.expect("every worker holds a sender of `held`"),
                    recv(self.receiver) -> job => match job.or_else(|_| held.try_recv()) {
                        Ok(job) => job,
                        // Shut down, and nothing held.
                        Err(_) => break,
                    },
                },
            };
            // One job, then every job of the same kind already waiting, up to the batch
            // limit: images from concurrent requests share an inference, and so do the
            // uncached prompts of concurrent requests.
            let images = matches!(first, Job::Image(_));
            let (limit, units): (usize, fn(&Job) -> usize) = if images {
                (image_limit, |_| 1)
            } else {
                (text_limit, |job| match job {
                    Job::Texts(texts) => texts.input.len(),
                    Job::Image(_) => 1,
                })
            };
            let mut size = units(&first);
            let mut batch = vec![first];
            // Held jobs of this kind first: they are older than anything still queued.
            let mut others = Vec::new();
            while size < limit {
                match held.try_recv() {
                    Ok(job) if matches!(job, Job::Image(_)) == images => {
                        size += units(&job);
                        batch.push(job);
                    }
                    Ok(job) => others.push(job),
                    Err(_) => break,
                }
            }
            for job in others {
                let _ = hold.send(job);
            }
            let serial = if images {
                self.image.serial_device()
            } else {
                self.text.serial_device()
            };
            // A part batch of images waits a little (performance.batch_wait_ms) while images
            // of admitted requests are still being decoded, or, on an engine that runs jobs
            // side by side (the CPU), until it is as large as the last one: one inference of
            // 8 images costs far less than 8 of one. A lone client has nothing on its way
            // and a last batch of 1, so it never waits. On a serial device the batch also
            // grows for as long as another job is on the device (see the module's doc), and,
            // once the device is free, while the clients the last job answered are sending
            // their next image (RETURN_WINDOW from their answers at most): with 8 clients in
            // a closed loop, the 6 the last job answered join the 2 already here.
            let wait_until = Instant::now() + self.batch_wait;
            let expected = if serial {
                1
            } else {
                last_image_batch.min(limit)
            };
            while size < limit {
                let job = match self.receiver.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => {
                        let soon = images
                            && Instant::now() < wait_until
                            && (size < expected || self.images_on_their_way());
                        let device_busy = serial && self.device.busy();
                        let returning = serial
                            && images
                            && !device_busy
                            && self.device.returning(self.batch_wait.min(RETURN_WINDOW));
                        if !soon && !device_busy && !returning {
                            break;
                        }
                        let poll = if soon || returning {
                            BATCH_POLL
                        } else {
                            DEVICE_POLL
                        };
                        match self.wait_for_job(poll) {
                            Some(job) => job,
                            None => continue,
                        }
                    }
                };
                if matches!(job, Job::Image(_)) == images {
                    size += units(&job);
                    batch.push(job);
                } else {
                    let _ = hold.send(job);
                }
            }
            // On the device before the next worker may gather: it then sees the device busy.
            let on_device = serial.then(|| self.device.enter());
            drop(gathering);
            if images {
                last_image_batch = batch.len();
                self.run_images(batch, on_device);
            } else {
                self.run_texts(batch, on_device);
            }
        }
    }

    /// The next job, or None when the device became free or `timeout` passed first.
    fn wait_for_job(&self, timeout: Duration) -> Option<Job> {
        crossbeam_channel::select! {
            recv(self.receiver) -> job => job.ok(),
            recv(self.device.on_freed) -> _ => None,
            default(timeout) => None,
        }
    }

    fn images_on_their_way(&self) -> bool {
        self.incoming_images.load(Ordering::SeqCst) > 0
    }

    fn record(&self, ok: bool) {
        self.stats.last_inference_ok.store(ok, Ordering::SeqCst);
    }

    /// One inference call: its batch size, duration and outcome, per encoder.
    fn observe(
        &self,
        encoder: &'static str,
        batch: usize,
        started: Instant,
        error: Option<EncoderErrorKind>,
    ) {
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.record(|| {
            metrics::histogram!("hailo_clip_inference_seconds", "encoder" => encoder).record(seconds);
            metrics::histogram!("hailo_clip_inference_batch_size", "encoder" => encoder).record(batch as f64);
            if let Some(kind) = error {
                let kind = match kind {
                    EncoderErrorKind::Busy => "busy",
                    EncoderErrorKind::Timeout => "timeout",
                    EncoderErrorKind::Recovering => "recovering",
                    EncoderErrorKind::Failed => "failed",
                };
                metrics::counter!("hailo_clip_inference_errors_total", "encoder" => encoder, "kind" => kind).increment(1);
            }
        });
    }

    /// One inference of `jobs`' images; `on_device` (a serial device's turn) is given up
    /// once every image is answered.
    fn run_images(&self, jobs: Vec<Job>, on_device: Option<OnDevice>) {
        let now = Instant::now();
        let mut images = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            if let Some((image, reply)) = job.into_image().and_then(|r| r.live(now)) {
                images.push(image);
                replies.push(reply);
            }
        }
        if images.is_empty() {
            return;
        }
        let started = Instant::now();
        // Under this queue's recorder, so that an encoder's own metrics (the Hailo jobs) land here.
        let result = self
            .metrics
            .record(|| guarded(|| self.image.encode_images(&images)));
        let answered = replies.len();
        self.observe(
            "image",
            images.len(),
            started,
            result.as_ref().err().map(|e| e.kind),
        );
        self.stats.batches_done.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(rows) if rows.nrows() == replies.len() => {
                self.record(true);
                for (reply, row) in replies.into_iter().zip(rows.rows()) {
                    let _ = reply.send(Ok(row.to_vec()));
                }
            }
            Ok(rows) => {
                self.record(false);
                let err = JobError::Encoder(EncoderError::failed(format!(
                    "image encoder returned {} rows for {} images",
                    rows.nrows(),
                    replies.len()
                )));
                replies.into_iter().for_each(|r| {
                    let _ = r.send(Err(err.clone()));
                });
            }
            Err(e) => {
                self.record(false);
                let err = JobError::from(e);
                replies.into_iter().for_each(|r| {
                    let _ = r.send(Err(err.clone()));
                });
            }
        }
        if on_device.is_some() {
            self.device.answered(answered);
        }
        drop(on_device);
    }

    /// The texts of several jobs as one inference (in chunks of the batch limit), each job
    /// answered with its own rows; `_on_device` (a serial device's turn) is held to the end.
    fn run_texts(&self, jobs: Vec<Job>, _on_device: Option<OnDevice>) {
        let now = Instant::now();
        let mut token_ids: Vec<Vec<u32>> = Vec::new();
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            if let Some((ids, reply)) = job.into_texts().and_then(|r| r.live(now)) {
                replies.push((token_ids.len()..token_ids.len() + ids.len(), reply));
                token_ids.extend(ids);
            }
        }
        if replies.is_empty() {
            return;
        }
        let chunk = self.max_batch.min(self.text.max_batch()).max(1);
        let dim = self.text.embedding_dim();
        let mut out = Array2::<f32>::zeros((token_ids.len(), dim));
        for (i, ids) in token_ids.chunks(chunk).enumerate() {
            let started = Instant::now();
            let result = self
                .metrics
                .record(|| guarded(|| self.text.encode_texts(ids)));
            self.observe(
                "text",
                ids.len(),
                started,
                result.as_ref().err().map(|e| e.kind),
            );
            self.stats.batches_done.fetch_add(1, Ordering::Relaxed);
            let failure = match result {
                Ok(rows) if rows.dim() == (ids.len(), dim) => {
                    out.slice_mut(ndarray::s![i * chunk..i * chunk + ids.len(), ..])
                        .assign(&rows);
                    continue;
                }
                Ok(rows) => JobError::Encoder(EncoderError::failed(format!(
                    "text encoder returned shape {:?} for {} texts",
                    rows.dim(),
                    ids.len()
                ))),
                Err(e) => e.into(),
            };
            self.record(false);
            for (_, reply) in replies {
                let _ = reply.send(Err(failure.clone()));
            }
            return;
        }
        self.record(true);
        for (rows, reply) in replies {
            let _ = reply.send(Ok(out.slice(ndarray::s![rows, ..]).to_owned()));
        }
    }
}

/// Runs an encoder call, turning a panic inside the engine into an error so one bad
/// inference does not take a worker (and the daemon's capacity) with it.
fn guarded<T>(f: impl FnOnce() -> Result<T, EncoderError>) -> Result<T, EncoderError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(EncoderError::failed(format!("encoder panicked: {what}")))
    })
}
