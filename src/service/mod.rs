//! The service core, between HTTP and the encoders: validates requests, applies prompt
//! templates, serves prompt embeddings from the cache, sends the rest through the bounded
//! queue, and turns similarities into ranked scores.
//!
//! Everything here is independent of HTTP so the one-shot CLI commands run the very same
//! path as the daemon.

pub mod cache;
pub mod inflight;
pub mod queue;
pub mod selftest;
/// Templates live below the service (the config holds one); re-exported where they are used.
pub use crate::template as templates;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;
use ndarray::{Array1, Array2};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::config::{Config, LimitsConfig, SelfTestConfig};
pub use crate::encoder::ModelInfo;
use crate::encoder::{
    Backend, DeviceRecovery, DeviceStatus, EncoderError, EncoderErrorKind, EncoderInfo,
    ImageEncoder, TextEncoder,
};
use crate::metrics::{thread_cpu_time, Metrics};
use crate::preprocess::{decode_cost, PreprocessError, SquareInput};
use crate::similarity::{
    cosine, ensemble, l2_normalize, sigmoid_scaled, softmax_scaled, UnusableEmbedding,
};
use crate::tokenize::TextTokenizer;
use cache::{Embedding, TextCache};
use queue::{JobError, WorkQueue};
use selftest::{PhotoResult, SelfTestOutcome, SelfTestReport, SelfTestSet};

/// Why a request failed; the HTTP layer maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is well-formed but asks for something invalid (422).
    #[error("{0}")]
    Invalid(String),
    /// Not JPEG, PNG or WebP.
    #[error(transparent)]
    UnsupportedImage(PreprocessError),
    /// More pixels than `limits.max_image_pixels`.
    #[error(transparent)]
    ImageTooLarge(PreprocessError),
    /// Recognized but not decodable.
    #[error(transparent)]
    UnreadableImage(PreprocessError),
    #[error("the work queue is full ({0} jobs waiting); retry shortly")]
    QueueFull(usize),
    #[error("{0} requests are already in progress (performance.max_queue_size); retry shortly")]
    Overloaded(usize),
    #[error("images being decoded hold the memory budget (limits.decode_memory_mb = {0} MiB); retry shortly")]
    DecodeMemoryBusy(u64),
    #[error("the accelerator is busy: {0}")]
    Busy(#[source] EncoderError),
    #[error("the request did not finish within {0} ms")]
    Timeout(u64),
    #[error("the accelerator did not answer in time: {0}")]
    DeviceTimeout(#[source] EncoderError),
    /// The device failed as a whole and is being re-created; nothing is admitted meanwhile.
    #[error("{0}; retry shortly")]
    DeviceRecovering(String),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("inference failed: {0}")]
    Inference(#[source] EncoderError),
    /// The encoder answered, but with a vector that cannot be normalized.
    #[error("inference failed: {what}: {source}")]
    UnusableEmbedding {
        what: &'static str,
        #[source]
        source: UnusableEmbedding,
    },
    /// A blocking task (decoding, tokenizing) panicked or was cancelled.
    #[error("{what} failed: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The warm-up prompt did not tokenize: the tokenizer files are broken.
    #[error("the warm-up prompt cannot be tokenized: {0}")]
    WarmUpTokenizer(#[source] crate::tokenize::TokenizerError),
}

/// Why [`Service::start`] refused its encoders.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("image encoder ({image}) gives {image_dim}-dim embeddings but text encoder ({text}) gives {text_dim}")]
    DimensionMismatch {
        image: String,
        image_dim: usize,
        text: String,
        text_dim: usize,
    },
}

impl From<PreprocessError> for ServiceError {
    fn from(e: PreprocessError) -> Self {
        match e {
            PreprocessError::UnsupportedFormat(_) => ServiceError::UnsupportedImage(e),
            PreprocessError::TooManyPixels { .. } => ServiceError::ImageTooLarge(e),
            PreprocessError::Corrupt(_) => ServiceError::UnreadableImage(e),
        }
    }
}

/// One classify request, however it arrived (JSON, multipart, CLI).
#[derive(Debug, Clone, Default)]
pub struct ClassifyRequest {
    pub image: Vec<u8>,
    pub prompts: Vec<String>,
    pub top_k: Option<usize>,
    pub threshold: Option<f32>,
    pub templates: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Classification {
    pub text: String,
    pub score: f32,
    pub similarity: f32,
    pub rank: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassifyResult {
    pub classifications: Vec<Classification>,
    pub scoring: crate::encoder::Scoring,
    pub model: String,
    pub inference_time_ms: f64,
}

/// A point-in-time view of the service for /health.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceHealth {
    pub warmed_up: bool,
    pub workers_alive: usize,
    pub workers: usize,
    pub last_inference_ok: bool,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    /// The self-test passed, was skipped, or failed with `selftest.enforce: false`.
    pub answers_trusted: bool,
    /// The device's recovery, where the encoders run on a device that recovers from faults.
    #[serde(skip)]
    pub device: Option<DeviceStatus>,
}

impl ServiceHealth {
    /// Ready means: warm-up inference succeeded, the self-test allows serving, every worker
    /// is running, and the most recent inference did not fail.
    pub fn ready(&self) -> bool {
        self.warmed_up
            && self.answers_trusted
            && self.workers_alive == self.workers
            && self.last_inference_ok
            && !self.recovering()
    }

    /// The device is being recovered after a fault: requests are refused until it passed
    /// its check.
    pub fn recovering(&self) -> bool {
        self.device.as_ref().is_some_and(|d| d.recovering)
    }
}

/// A request's place in the service, taken before any of its work starts and held until it
/// is answered.
pub type Admission = tokio::sync::OwnedSemaphorePermit;

pub struct Service {
    queue: WorkQueue,
    /// Shared with the blocking threads that tokenize.
    tokenizer: Arc<TextTokenizer>,
    /// Prompts being encoded now, so concurrent requests encode each once.
    inflight: inflight::InFlight,
    /// Requests in progress, at most `performance.max_queue_size`.
    admission: Arc<Semaphore>,
    cache: TextCache,
    model: ModelInfo,
    /// How an image becomes the image encoder's input.
    square_input: SquareInput,
    image_info: EncoderInfo,
    text_info: EncoderInfo,
    limits: LimitsConfig,
    default_template: String,
    timeout: Duration,
    /// Bounds concurrent decode/resize work, which runs outside the queue on the CPU.
    decode_permits: Semaphore,
    /// Bounds the memory decoding takes: one permit per MiB of `limits.decode_memory_mb`.
    decode_budget: Semaphore,
    warmed_up: std::sync::atomic::AtomicBool,
    selftest_config: SelfTestConfig,
    selftest: std::sync::Mutex<SelfTestOutcome>,
    metrics: Arc<Metrics>,
    /// The device the encoders run on, when it recovers from its own faults.
    device: Option<Arc<dyn DeviceRecovery>>,
}

impl Service {
    /// Starts the workers around already-loaded encoders. Not ready until [`warm_up`].
    pub fn start(
        image: Arc<dyn ImageEncoder>,
        text: Arc<dyn TextEncoder>,
        tokenizer: TextTokenizer,
        model: ModelInfo,
        config: &Config,
    ) -> Result<Service, StartError> {
        if image.embedding_dim() != text.embedding_dim() {
            return Err(StartError::DimensionMismatch {
                image: image.info().source,
                image_dim: image.embedding_dim(),
                text: text.info().source,
                text_dim: text.embedding_dim(),
            });
        }
        let perf = &config.performance;
        let decoders = std::thread::available_parallelism().map_or(2, |n| n.get());
        let metrics = Arc::new(Metrics::new());
        // Images always run on the device when anything does (hailo.text_encoder only moves text).
        let device = image.device();
        Ok(Service {
            device,
            square_input: SquareInput {
                size: image.input_size(),
                mode: image.resize_mode(),
                interpolation: image.interpolation(),
                jpeg_scaled_decode: perf.jpeg_scaled_decode,
            },
            image_info: image.info(),
            text_info: text.info(),
            queue: WorkQueue::start(image, text, perf, metrics.clone()),
            tokenizer: Arc::new(tokenizer),
            inflight: inflight::InFlight::default(),
            admission: Arc::new(Semaphore::new(perf.max_queue_size)),
            cache: TextCache::new(&model.name, config.text_cache.capacity),
            model,
            limits: config.limits.clone(),
            default_template: config.classify.default_template.as_str().to_string(),
            timeout: Duration::from_millis(perf.request_timeout_ms),
            decode_permits: Semaphore::new(decoders),
            decode_budget: Semaphore::new(
                usize::try_from(config.limits.decode_memory_mb).unwrap_or(usize::MAX >> 4),
            ),
            warmed_up: Default::default(),
            selftest_config: config.selftest.clone(),
            selftest: std::sync::Mutex::new(SelfTestOutcome::NotRun),
            metrics,
        })
    }

    /// Whether a request could be admitted now, without taking a place: what the HTTP layer
    /// asks before it receives a body, so that overload is refused before reading it.
    pub fn admission_available(&self) -> Result<(), ServiceError> {
        self.refuse_while_recovering()?;
        if self.admission.available_permits() == 0 {
            return Err(ServiceError::Overloaded(self.queue.capacity()));
        }
        Ok(())
    }

    /// A place for one request, or at once a 503 when `performance.max_queue_size`
    /// requests are in progress: overload is refused before its image is decoded.
    pub fn admit(&self) -> Result<Admission, ServiceError> {
        self.refuse_while_recovering()?;
        self.admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| ServiceError::Overloaded(self.queue.capacity()))
    }

    /// 503 `device_recovering` while the device is being recovered after a fault.
    fn refuse_while_recovering(&self) -> Result<(), ServiceError> {
        match self.device.as_ref().map(|d| d.status()) {
            Some(status) if status.recovering => Err(ServiceError::DeviceRecovering(format!(
                "the Hailo device is being recovered ({})",
                status.last_fault.as_deref().unwrap_or("after a fault")
            ))),
            _ => Ok(()),
        }
    }

    /// The device's recovery, when the encoders run on a device that recovers from faults.
    pub fn device_status(&self) -> Option<DeviceStatus> {
        self.device.as_ref().map(|d| d.status())
    }

    /// Checks a re-created device as at start (one image and one text inference, then the
    /// self-test where it runs at start) and hands it back to serving, or back to recovery.
    /// Does nothing unless the device waits for its check.
    pub async fn check_recovered_device(&self) {
        let Some(device) = &self.device else { return };
        if !device.status().needs_check {
            return;
        }
        let checked = async {
            self.warm_up_inference().await?;
            if self.model.random_weights || !self.selftest_config.enabled {
                return Ok(None);
            }
            let report = self.self_test(&SelfTestSet::bundled()).await?;
            Ok::<_, ServiceError>(
                (!report.passed() && self.selftest_config.enforce).then(|| report.failure_detail()),
            )
        };
        match checked.await {
            Ok(None) => device.verified(),
            Ok(Some(failure)) => device.check_failed(&failure),
            // A device fault during the check has already started the next recovery.
            Err(e) if device.status().recovering && !device.status().needs_check => {
                tracing::warn!("the re-created device failed its check: {e}")
            }
            Err(e) => device.check_failed(&e.to_string()),
        }
    }

    /// Records why each encoder runs where it runs (the loader's reasons), for /health.
    pub fn set_reasons(&mut self, image: &str, text: &str) {
        self.image_info.reason = image.to_string();
        self.text_info.reason = text.to_string();
    }

    pub fn model(&self) -> &ModelInfo {
        &self.model
    }
    pub fn image_encoder(&self) -> &EncoderInfo {
        &self.image_info
    }
    pub fn text_encoder(&self) -> &EncoderInfo {
        &self.text_info
    }
    pub fn queue(&self) -> &WorkQueue {
        &self.queue
    }
    pub fn text_cache(&self) -> &TextCache {
        &self.cache
    }
    /// CLIP tokens of `text` as the text encoder sees it (with its start and end tokens,
    /// truncated to the context length).
    pub fn count_tokens(&self, text: &str) -> Result<usize, ServiceError> {
        self.tokenizer
            .encode(text)
            .map(|ids| ids.len())
            .map_err(|e| ServiceError::Invalid(e.to_string()))
    }

    /// Tokens the text encoder reads at most (77 for CLIP, 64 for SigLIP).
    pub fn context_length(&self) -> usize {
        self.tokenizer.context_length()
    }

    /// The request limits in force.
    pub fn limits(&self) -> &LimitsConfig {
        &self.limits
    }
    /// The engine's metrics recorder (the daemon runs its upkeep).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The self-test's outcome so far.
    pub fn selftest(&self) -> SelfTestOutcome {
        self.selftest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn selftest_enforced(&self) -> bool {
        self.selftest_config.enforce
    }

    pub fn health(&self) -> ServiceHealth {
        let stats = self.queue.stats();
        ServiceHealth {
            warmed_up: self.warmed_up.load(Ordering::SeqCst),
            workers_alive: stats.workers_alive.load(Ordering::SeqCst),
            workers: self.queue.worker_count(),
            last_inference_ok: stats.last_inference_ok.load(Ordering::SeqCst),
            queue_depth: self.queue.depth(),
            queue_capacity: self.queue.capacity(),
            answers_trusted: self.selftest().allows_serving(self.selftest_config.enforce),
            device: self.device_status(),
        }
    }

    /// Runs one real image and one real text inference through the queue and checks the
    /// embeddings are usable, then the known-answer self-test (skipped for a model with
    /// random weights). Only after the first succeeds, and the second allows serving, does
    /// the service report ready; [`Service::selftest`] tells how the self-test went.
    pub async fn warm_up(&self) -> Result<(), ServiceError> {
        self.warm_up_inference().await?;
        let outcome = if self.model.random_weights {
            SelfTestOutcome::Skipped("random weights")
        } else if !self.selftest_config.enabled {
            SelfTestOutcome::Skipped("selftest.enabled is false")
        } else {
            SelfTestOutcome::Ran(self.self_test(&SelfTestSet::bundled()).await?)
        };
        *self.selftest.lock().unwrap_or_else(|p| p.into_inner()) = outcome;
        Ok(())
    }

    /// Classifies each photo of `set` against its labels through the request path and
    /// checks that the expected label wins by `selftest.min_margin`.
    pub async fn self_test(&self, set: &SelfTestSet) -> Result<SelfTestReport, ServiceError> {
        let min_margin = self.selftest_config.min_margin;
        let mut results = Vec::with_capacity(set.photos.len());
        for photo in &set.photos {
            let answer = self
                .classify(ClassifyRequest {
                    image: photo.bytes.clone(),
                    prompts: set.labels.clone(),
                    templates: Some(vec![set.template.clone()]),
                    ..Default::default()
                })
                .await?;
            let ranked = &answer.classifications;
            let expected_score = ranked
                .iter()
                .find(|c| c.text == photo.expected)
                .map_or(0.0, |c| c.score);
            let best_other = ranked
                .iter()
                .filter(|c| c.text != photo.expected)
                .map(|c| c.score)
                .fold(0.0, f32::max);
            let margin = expected_score - best_other;
            results.push(PhotoResult {
                photo: photo.name.clone(),
                expected: photo.expected.clone(),
                got: ranked[0].text.clone(),
                score: ranked[0].score,
                margin,
                passed: ranked[0].text == photo.expected && margin >= min_margin,
            });
        }
        Ok(SelfTestReport {
            results,
            min_margin,
            text_on_hailo: self.text_info.backend == crate::encoder::Backend::Hailo,
        })
    }

    async fn warm_up_inference(&self) -> Result<(), ServiceError> {
        let deadline = Instant::now() + self.timeout.max(Duration::from_secs(60));
        // A mid-grey square: a valid input whose embedding must be finite and non-zero.
        let image = RgbImage::from_pixel(
            self.square_input.size,
            self.square_input.size,
            image::Rgb([128, 128, 128]),
        );
        let incoming = self.queue.image_incoming();
        self.unit_image_embedding(image, deadline, incoming, "warm-up image")
            .await?;
        let ids = self
            .tokenizer
            .encode("a photo of a cat")
            .map_err(ServiceError::WarmUpTokenizer)?;
        let rows = self
            .queue
            .encode_texts(vec![ids], deadline)
            .await
            .map_err(|e| self.job_error(e))?;
        let mut text = rows.row(0).to_vec();
        l2_normalize(&mut text).map_err(unusable("warm-up text"))?;
        self.warmed_up.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    fn timeout_ms(&self) -> u64 {
        self.timeout.as_millis() as u64
    }

    /// Runs `work` against the request deadline.
    async fn with_deadline<T>(
        &self,
        deadline: Instant,
        work: impl std::future::Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, ServiceError> {
        tokio::time::timeout_at(deadline.into(), work)
            .await
            .unwrap_or(Err(ServiceError::Timeout(self.timeout_ms())))
    }

    /// Decodes and resizes an image off the async threads, a bounded number at a time and
    /// within the decode memory budget: the image's share (from its header) is taken before
    /// any pixel is decoded, waiting half the time left before `deadline` at most.
    async fn prepare_image(
        &self,
        bytes: Vec<u8>,
        deadline: Instant,
    ) -> Result<RgbImage, ServiceError> {
        let max_pixels = self.limits.max_image_pixels;
        let budget_mib = self.limits.decode_memory_mb;
        let cost_mib = decode_cost(&bytes, max_pixels)?
            .div_ceil(1 << 20)
            .clamp(1, budget_mib);
        // Wait at most half the time left, so the other half remains for decoding and
        // inference and a refusal is a prompt 503, not a 504 at the deadline.
        let wait = deadline.saturating_duration_since(Instant::now()) / 2;
        let _memory = tokio::time::timeout(wait, self.decode_budget.acquire_many(cost_mib as u32))
            .await
            .map_err(|_| ServiceError::DecodeMemoryBusy(budget_mib))?
            .map_err(|_| ServiceError::ShuttingDown)?;
        let _permit = self
            .decode_permits
            .acquire()
            .await
            .map_err(|_| ServiceError::ShuttingDown)?;
        let input = self.square_input;
        let (square, decode, resize) = tokio::task::spawn_blocking(move || {
            let started = thread_cpu_time();
            let rgb = input.decode(&bytes, max_pixels)?;
            let decoded = thread_cpu_time();
            let square = input.resize(&rgb)?;
            Ok::<_, ServiceError>((square, decoded - started, thread_cpu_time() - decoded))
        })
        .await
        .map_err(|source| ServiceError::Task {
            what: "image preparation",
            source,
        })??;
        // Host CPU per image, which bounds how fast a device can be fed (scripts/bench-hailo.sh).
        self.metrics.record(|| {
            metrics::histogram!("hailo_clip_image_decode_seconds").record(decode.as_secs_f64());
            metrics::histogram!("hailo_clip_image_resize_seconds").record(resize.as_secs_f64());
        });
        Ok(square)
    }

    async fn image_embedding(
        &self,
        bytes: Vec<u8>,
        deadline: Instant,
    ) -> Result<Vec<f32>, ServiceError> {
        // Counted while it is decoded, so that a worker gathering a batch waits for it
        // (performance.batch_wait_ms).
        let incoming = self.queue.image_incoming();
        let image = self.prepare_image(bytes, deadline).await?;
        self.unit_image_embedding(image, deadline, incoming, "image embedding")
            .await
    }

    /// The unit embedding of a prepared image; `what` names it in an error.
    async fn unit_image_embedding(
        &self,
        image: RgbImage,
        deadline: Instant,
        incoming: queue::IncomingImage,
        what: &'static str,
    ) -> Result<Vec<f32>, ServiceError> {
        let mut embedding = self
            .queue
            .encode_image(image, deadline, incoming)
            .await
            .map_err(|e| self.job_error(e))?;
        l2_normalize(&mut embedding).map_err(unusable(what))?;
        Ok(embedding)
    }

    /// Unit embeddings for `texts`, from the cache where possible; the misses go to the
    /// text encoder in one job.
    async fn text_embeddings(
        &self,
        texts: &[String],
        deadline: Instant,
    ) -> Result<Vec<Embedding>, ServiceError> {
        let mut found: Vec<Option<Embedding>> = texts.iter().map(|t| self.cache.get(t)).collect();
        let mut missing: Vec<String> = Vec::new();
        for (text, slot) in texts.iter().zip(&found) {
            if slot.is_none() && !missing.contains(text) {
                missing.push(text.clone());
            }
        }
        if missing.is_empty() {
            return Ok(found.into_iter().flatten().collect());
        }
        // Prompts another request is already encoding are waited for, not encoded again.
        let (mut claim, waits) = self.inflight.claim(&missing);
        let mut fresh: HashMap<String, Embedding> = HashMap::with_capacity(missing.len());
        if !claim.texts.is_empty() {
            let tokenizer = self.tokenizer.clone();
            let list = claim.texts.clone();
            let ids = tokio::task::spawn_blocking(move || {
                list.iter()
                    .map(|t| tokenizer.encode(t))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|source| ServiceError::Task {
                what: "tokenizing",
                source,
            })?
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
            let rows = self
                .queue
                .encode_texts(ids, deadline)
                .await
                .map_err(|e| self.job_error(e))?;
            for (text, row) in claim.texts.clone().iter().zip(rows.rows()) {
                let mut v = row.to_vec();
                l2_normalize(&mut v).map_err(unusable("text embedding"))?;
                let embedding: Embedding = Arc::from(v);
                self.cache.put(text, embedding.clone());
                claim.publish(text, embedding.clone());
                fresh.insert(text.clone(), embedding);
            }
        }
        drop(claim);
        for (text, slot) in waits {
            let embedding = match inflight::wait(slot).await {
                Some(e) => e,
                // The request encoding it gave up: encode it here.
                None => Box::pin(self.text_embeddings(std::slice::from_ref(&text), deadline))
                    .await?
                    .remove(0),
            };
            fresh.insert(text, embedding);
        }
        for (text, slot) in texts.iter().zip(found.iter_mut()) {
            if slot.is_none() {
                *slot = fresh.get(text).cloned();
            }
        }
        Ok(found
            .into_iter()
            .map(|e| e.expect("every slot filled above"))
            .collect())
    }

    fn validate_classify(&self, req: &ClassifyRequest) -> Result<Vec<String>, ServiceError> {
        let invalid = |m: String| Err(ServiceError::Invalid(m));
        if req.image.is_empty() {
            return invalid("image is empty".into());
        }
        if req.prompts.is_empty() {
            return invalid("prompts must contain at least one prompt".into());
        }
        if req.prompts.len() > self.limits.max_prompts {
            return invalid(format!(
                "{} prompts given; at most {} are allowed (limits.max_prompts)",
                req.prompts.len(),
                self.limits.max_prompts
            ));
        }
        for (i, p) in req.prompts.iter().enumerate() {
            if p.trim().is_empty() {
                return invalid(format!("prompts[{i}] is empty"));
            }
            let chars = p.chars().count();
            if chars > self.limits.max_prompt_chars {
                return invalid(format!(
                    "prompts[{i}] is {chars} characters; at most {} are allowed (limits.max_prompt_chars)",
                    self.limits.max_prompt_chars
                ));
            }
        }
        if req.top_k == Some(0) {
            return invalid("top_k must be at least 1".into());
        }
        if let Some(t) = req.threshold {
            if !(0.0..=1.0).contains(&t) {
                return invalid(format!("threshold must be between 0 and 1, got {t}"));
            }
        }
        let templates = match &req.templates {
            None => vec![self.default_template.clone()],
            Some(list) if list.is_empty() => return invalid("template list is empty".into()),
            Some(list) if list.len() > self.limits.max_templates => {
                return invalid(format!(
                    "{} templates given; at most {} are allowed (limits.max_templates)",
                    list.len(),
                    self.limits.max_templates
                ))
            }
            Some(list) => list.clone(),
        };
        for t in &templates {
            templates::check_template(t).map_err(ServiceError::Invalid)?;
        }
        Ok(templates)
    }

    pub async fn classify(&self, req: ClassifyRequest) -> Result<ClassifyResult, ServiceError> {
        let started = Instant::now();
        let deadline = self.deadline();
        let templates = self.validate_classify(&req)?;
        let texts: Vec<String> = req
            .prompts
            .iter()
            .flat_map(|p| templates.iter().map(move |t| templates::apply(t, p)))
            .collect();
        let ClassifyRequest {
            image,
            prompts,
            top_k,
            threshold,
            ..
        } = req;
        let (image, texts) = self
            .with_deadline(deadline, async {
                tokio::try_join!(
                    self.image_embedding(image, deadline),
                    self.text_embeddings(&texts, deadline)
                )
            })
            .await?;
        let dim = self.model.embedding_dim;
        let mut matrix = Array2::<f32>::zeros((prompts.len(), dim));
        for (i, per_prompt) in texts.chunks(templates.len()).enumerate() {
            let refs: Vec<&[f32]> = per_prompt.iter().map(|e| &e[..]).collect();
            let v = if refs.len() == 1 {
                refs[0].to_vec()
            } else {
                ensemble(&refs).map_err(unusable("prompt ensemble"))?
            };
            matrix.row_mut(i).assign(&Array1::from(v));
        }
        let sims = cosine(matrix.view(), Array1::from(image).view());
        let sims_slice = sims.as_slice().expect("contiguous");
        let scores = match self.model.logit_bias {
            Some(bias) => sigmoid_scaled(sims_slice, self.model.logit_scale, bias),
            None => softmax_scaled(sims_slice, self.model.logit_scale),
        };
        let mut ranked: Vec<Classification> = prompts
            .into_iter()
            .zip(scores.iter().zip(sims.iter()))
            .map(|(text, (&score, &similarity))| Classification {
                text,
                score,
                similarity,
                rank: 0,
            })
            .collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
        for (i, c) in ranked.iter_mut().enumerate() {
            c.rank = i + 1;
        }
        let threshold = threshold.unwrap_or(0.0);
        let classifications = ranked
            .into_iter()
            .take(top_k.unwrap_or(usize::MAX))
            .filter(|c| c.score >= threshold)
            .collect();
        Ok(ClassifyResult {
            classifications,
            scoring: self.model.scoring(),
            model: self.model.name.clone(),
            inference_time_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// The unit embedding of one image.
    pub async fn embed_image(&self, bytes: Vec<u8>) -> Result<Vec<f32>, ServiceError> {
        if bytes.is_empty() {
            return Err(ServiceError::Invalid("image is empty".into()));
        }
        let deadline = self.deadline();
        self.with_deadline(deadline, self.image_embedding(bytes, deadline))
            .await
    }

    /// Unit embeddings of raw texts (no template).
    pub async fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ServiceError> {
        if texts.is_empty() {
            return Err(ServiceError::Invalid(
                "text must contain at least one string".into(),
            ));
        }
        if texts.len() > self.limits.max_embed_texts {
            return Err(ServiceError::Invalid(format!(
                "{} texts given; at most {} are allowed (limits.max_embed_texts)",
                texts.len(),
                self.limits.max_embed_texts
            )));
        }
        for (i, t) in texts.iter().enumerate() {
            let chars = t.chars().count();
            if chars > self.limits.max_prompt_chars {
                return Err(ServiceError::Invalid(format!(
                    "text[{i}] is {chars} characters; at most {} are allowed (limits.max_prompt_chars)",
                    self.limits.max_prompt_chars
                )));
            }
        }
        let deadline = self.deadline();
        let embeddings = self
            .with_deadline(deadline, self.text_embeddings(texts, deadline))
            .await?;
        Ok(embeddings.into_iter().map(|e| e.to_vec()).collect())
    }

    /// The engine's metrics in Prometheus text format, with the gauges read now.
    pub fn render_metrics(&self, backend: Backend) -> String {
        let health = self.health();
        let (hits, misses) = self.cache.stats();
        self.metrics.record(|| {
            metrics::gauge!("hailo_clip_queue_depth").set(health.queue_depth as f64);
            metrics::gauge!("hailo_clip_queue_capacity").set(health.queue_capacity as f64);
            metrics::gauge!("hailo_clip_workers_alive").set(health.workers_alive as f64);
            metrics::gauge!("hailo_clip_ready").set(if health.ready() { 1.0 } else { 0.0 });
            metrics::counter!("hailo_clip_text_cache_hits_total").absolute(hits);
            metrics::counter!("hailo_clip_text_cache_misses_total").absolute(misses);
            metrics::gauge!("hailo_clip_text_cache_entries").set(self.cache.len() as f64);
            metrics::gauge!(
                "hailo_clip_info",
                "version" => env!("CARGO_PKG_VERSION"),
                "model" => self.model.name.clone(),
                "backend" => backend.as_str(),
                "image_encoder" => self.image_info.backend.as_str(),
                "text_encoder" => self.text_info.backend.as_str(),
                "random_weights" => self.model.random_weights.to_string()
            )
            .set(1.0);
            if let Some(device) = &health.device {
                record_device(device);
            }
        });
        self.metrics.render()
    }

    /// Stops the workers after the queued jobs, releasing the encoders.
    pub fn shutdown(&self) {
        self.queue.shutdown();
    }
}

impl Service {
    fn job_error(&self, e: JobError) -> ServiceError {
        match e {
            JobError::QueueFull(n) => ServiceError::QueueFull(n),
            JobError::Expired => ServiceError::Timeout(self.timeout_ms()),
            JobError::Closed => ServiceError::ShuttingDown,
            JobError::Encoder(e) => match e.kind {
                EncoderErrorKind::Busy => ServiceError::Busy(e),
                EncoderErrorKind::Timeout => ServiceError::DeviceTimeout(e),
                EncoderErrorKind::Recovering => ServiceError::DeviceRecovering(e.message),
                EncoderErrorKind::Failed => ServiceError::Inference(e),
            },
        }
    }
}

/// The device's gauges and counters, as of now (inside a recorder).
fn record_device(device: &DeviceStatus) {
    let h = &device.health;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    if h.serial_number.is_some() || h.pci_address.is_some() {
        metrics::gauge!(
            "hailo_clip_device_info",
            "firmware_version" => text(&h.firmware_version),
            "serial_number" => text(&h.serial_number),
            "product_name" => text(&h.product_name),
            "architecture" => text(&h.architecture),
            "pci_address" => text(&h.pci_address)
        )
        .set(1.0);
    }
    // NaN while there is no reading (a failed read, a recovery): never the last value as
    // if it were current.
    let [ts0, ts1] = h.temperature_c.map_or([f64::NAN; 2], |t| t.map(f64::from));
    metrics::gauge!("hailo_clip_device_temperature_celsius", "sensor" => "ts0").set(ts0);
    metrics::gauge!("hailo_clip_device_temperature_celsius", "sensor" => "ts1").set(ts1);
    // -1 until the device sent a throttling notification.
    metrics::gauge!("hailo_clip_device_throttling_state")
        .set(h.throttling_state.map_or(-1.0, f64::from));
    metrics::counter!("hailo_clip_device_alarms_total", "kind" => "temperature")
        .absolute(h.temperature_alarms);
    metrics::counter!("hailo_clip_device_alarms_total", "kind" => "overcurrent")
        .absolute(h.overcurrent_alarms);
    metrics::gauge!("hailo_clip_device_nnc_utilization_percent")
        .set(h.nnc_utilization.map_or(f64::NAN, f64::from));
    metrics::gauge!("hailo_clip_device_recovering").set(if device.recovering { 1.0 } else { 0.0 });
    metrics::counter!("hailo_clip_device_recoveries_total").absolute(device.recoveries);
    // 1 for the last fault's status, 0 for the others, once there was a fault.
    if let Some(last) = device.last_fault_status {
        for status in crate::encoder::DEVICE_FAULT_STATUSES {
            metrics::gauge!("hailo_clip_device_last_fault", "status" => *status)
                .set(if *status == last { 1.0 } else { 0.0 });
        }
    }
}

/// Maps an embedding that cannot be normalized to the error naming which one it was.
fn unusable(what: &'static str) -> impl Fn(UnusableEmbedding) -> ServiceError {
    move |source| ServiceError::UnusableEmbedding { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::DeviceHealth;

    /// A reading that is gone (unreadable, or the device being recovered) is NaN, not the
    /// last value as if it were current.
    #[test]
    fn device_gauges_without_a_reading_are_nan() {
        let metrics = Metrics::new();
        let reading = DeviceStatus {
            health: DeviceHealth {
                temperature_c: Some([51.5, 52.0]),
                nnc_utilization: Some(40.0),
                ..DeviceHealth::default()
            },
            ..DeviceStatus::default()
        };
        metrics.record(|| record_device(&reading));
        let text = metrics.render();
        for line in [
            r#"hailo_clip_device_temperature_celsius{sensor="ts1"} 52"#,
            "hailo_clip_device_nnc_utilization_percent 40",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        metrics.record(|| record_device(&DeviceStatus::default()));
        let text = metrics.render();
        for line in [
            r#"hailo_clip_device_temperature_celsius{sensor="ts0"} NaN"#,
            r#"hailo_clip_device_temperature_celsius{sensor="ts1"} NaN"#,
            "hailo_clip_device_nnc_utilization_percent NaN",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
