//! Loading and checking the two HEFs on the device ([`super::device`]), and the encoders
//! that run them. Both HEFs are configured once at start-up and kept (HailoRT's scheduler interleaves
//! the two models, and other processes in the same group, on the device). Each encoder
//! keeps up to `hailo.jobs_in_flight` jobs submitted: a call with more frames than one job
//! takes submits the next job before collecting the first, and concurrent calls (the
//! service runs that many workers) submit beside each other, so the device works on one job
//! while the host prepares the next. Each call collects its own jobs in order.
//!
//! Image path: the service hands over uint8 RGB squares of the HEF's input size, which is
//! an NHWC uint8 frame as it is (CLIP's normalization is folded into the HEF).
//! Text path, as hailo-apps does it for CLIP: pad the ids to 77 with 0, look each id up in
//! the token-embedding table, feed the [77, hidden] f32 frame to the HEF (which adds the
//! positional embedding), take the output row at the first EOT, multiply by the text
//! projection. SigLIP's the same way with its own set-up ([`super::assets::TextSetup`]):
//! 64 ids padded with its pad token, the last row pooled, its head's bias added. A text HEF
//! whose output is already the one pooled embedding (the head inside it, as the Model Zoo's
//! SigLIP text encoders end: their postprocessing only L2-normalizes) is used as it is.
//! Outputs are dequantized here (qp_scale, qp_zp) when HailoRT hands over
//! uint8/uint16, and asked of HailoRT as f32 when quantization is per channel.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use image::RgbImage;
use ndarray::{Array2, ArrayView1};

use super::assets::{TextAssets, TextFrame, TokenTable};
use super::device::{HailoDevice, HailoLoadError};
use super::ffi::{Direction, ElementType, HailoError, HailoErrorKind, Job, Model, StreamInfo};
use super::layout;
use super::session::{HailoSession, Network};
use crate::config::HailoConfig;
use crate::encoder::{
    DeviceRecovery, Encoder, EncoderError, EncoderErrorKind, EncoderInfo, ImageEncoder, TextEncoder,
};
use crate::preprocess::{Interpolation, ResizeMode};
use crate::tokenize::{pad, TextTokenizer};

fn hef_error(path: &Path, kind: HailoErrorKind, message: impl Into<String>) -> HailoLoadError {
    HailoLoadError::Hef {
        path: path.to_path_buf(),
        kind,
        message: message.into(),
    }
}

fn shape_error(path: &Path, message: String) -> HailoLoadError {
    hef_error(path, HailoErrorKind::ShapeMismatch, message)
}

fn describe(stream: &StreamInfo) -> String {
    format!(
        "'{}' {}x{}x{} {:?} {:?}",
        stream.name, stream.height, stream.width, stream.features, stream.element, stream.order
    )
}

/// Finds a configured HEF, flat or in hailo-apps' `models/hailo10h/` (see [`layout`]).
fn locate_hef(config: &HailoConfig, name: &Path) -> Result<PathBuf, HailoLoadError> {
    match layout::hef(&config.resources_dir, name) {
        Ok(found) => {
            tracing::info!("HEF {} ({})", found.path.display(), found.layout.describe());
            Ok(found.path)
        }
        Err(missing) => Err(hef_error(
            &config.resource(name),
            HailoErrorKind::InvalidHef,
            format!("not found: {missing}"),
        )),
    }
}

/// Loads a HEF with one input and one output into a model.
fn load_model(device: &HailoDevice, path: &Path) -> Result<Model, HailoLoadError> {
    if let Err(e) = std::fs::File::open(path) {
        return Err(hef_error(
            path,
            HailoErrorKind::InvalidHef,
            format!("cannot read: {e}"),
        ));
    }
    let model = device.device.load_model(path).map_err(|e| {
        hef_error(
            path,
            e.kind,
            format!("not loadable on this device and HailoRT: {}", e.message),
        )
    })?;
    if model.inputs().len() != 1 || model.outputs().len() != 1 {
        return Err(shape_error(
            path,
            format!(
                "has {} inputs and {} outputs; a CLIP encoder HEF has one of each",
                model.inputs().len(),
                model.outputs().len()
            ),
        ));
    }
    Ok(model)
}

/// How the output's bytes become f32.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OutputFormat {
    element: ElementType,
    qp_zp: f32,
    qp_scale: f32,
}

impl OutputFormat {
    /// Keeps a per-tensor quantized uint8/uint16 output as HailoRT hands it over (dequantized
    /// here); anything else is asked of HailoRT as f32.
    fn choose(model: &mut Model, path: &Path) -> Result<OutputFormat, HailoLoadError> {
        let stream = model.outputs()[0].clone();
        if !stream.order.is_row_major() {
            return Err(shape_error(
                path,
                format!("output {} is not in a row-major order", describe(&stream)),
            ));
        }
        let keep = match stream.element {
            ElementType::Uint8 | ElementType::Uint16 => stream.quant_count == 1,
            ElementType::Float32 => true,
            ElementType::Other => false,
        };
        if !keep {
            model
                .set_format(Direction::Output, 0, ElementType::Float32, false)
                .map_err(|e| hef_error(path, e.kind, e.message))?;
        }
        let stream = &model.outputs()[0];
        if stream.element == ElementType::Other
            || stream.frame_size != stream.elements() * stream.element.size()
        {
            return Err(shape_error(
                path,
                format!(
                    "output {} has an unexpected frame size {}",
                    describe(stream),
                    stream.frame_size
                ),
            ));
        }
        Ok(OutputFormat {
            element: stream.element,
            qp_zp: stream.qp_zp,
            qp_scale: stream.qp_scale,
        })
    }

    fn decode(&self, bytes: &[u8]) -> Vec<f32> {
        let dequantize = |q: f32| (q - self.qp_zp) * self.qp_scale;
        match self.element {
            ElementType::Uint8 => bytes.iter().map(|&q| dequantize(f32::from(q))).collect(),
            ElementType::Uint16 => bytes
                .chunks_exact(2)
                .map(|b| dequantize(f32::from(u16::from_le_bytes([b[0], b[1]]))))
                .collect(),
            ElementType::Float32 | ElementType::Other => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        }
    }
}

fn configure(
    model: &mut Model,
    path: &Path,
    config: &HailoConfig,
) -> Result<usize, HailoLoadError> {
    model
        .configure(config.batch_size, config.jobs_in_flight.requested())
        .map_err(|e| {
            hef_error(
                path,
                e.kind,
                format!("cannot be configured on the device: {}", e.message),
            )
        })
}

fn encoder_error(hef: &Path, e: HailoError) -> EncoderError {
    let kind = match e.kind {
        HailoErrorKind::DeviceBusy => EncoderErrorKind::Busy,
        HailoErrorKind::Timeout => EncoderErrorKind::Timeout,
        _ => EncoderErrorKind::Failed,
    };
    EncoderError {
        kind,
        message: format!("{}: {}", hef.display(), e.message),
    }
}

/// Runs `jobs` (each job's frames, one input buffer a frame: every HEF here has one input)
/// through `model`, keeping up to its job count submitted, and hands each job's output
/// frames to `take` in order with the job's number. A job left uncollected after an error
/// is abandoned when `pending` drops. Each job submitted is counted in
/// `hailo_clip_device_jobs_total{network, frames}`, on the recorder of the calling thread
/// (the service's workers run encoders under theirs).
fn pipeline<'a, J: AsRef<[&'a [u8]]>>(
    model: &Model,
    network: &'static str,
    timeout: Duration,
    jobs: impl Iterator<Item = J>,
    mut take: impl FnMut(usize, &[u8]),
) -> Result<(), HailoError> {
    let frame_out = model.outputs()[0].frame_size;
    let mut output = vec![0u8; model.max_frames() * frame_out];
    let mut pending: VecDeque<(Job<'_>, usize)> = VecDeque::with_capacity(model.jobs());
    let mut done = 0;
    let mut collect_next = |pending: &mut VecDeque<(Job<'_>, usize)>| {
        let (job, frames) = pending.pop_front().expect("a pending job");
        let out = &mut output[..frames * frame_out];
        let mut buffers: Vec<&mut [u8]> = out.chunks_exact_mut(frame_out).collect();
        job.collect(&mut buffers, timeout)?;
        take(done, out);
        done += 1;
        Ok::<(), HailoError>(())
    };
    for job in jobs {
        let inputs = job.as_ref();
        if pending.len() >= model.jobs().max(1) {
            collect_next(&mut pending)?;
        }
        let job = model.submit(inputs.len(), inputs, timeout)?;
        metrics::counter!("hailo_clip_device_jobs_total", "network" => network, "frames" => inputs.len().to_string())
            .increment(1);
        pending.push_back((job, inputs.len()));
    }
    while !pending.is_empty() {
        collect_next(&mut pending)?;
    }
    Ok(())
}

/// What the image HEF is once configured; a re-created device must give the same.
#[derive(Debug, Clone, PartialEq)]
struct ImageFacts {
    size: u32,
    dim: usize,
    max_frames: usize,
    output: OutputFormat,
}

/// Loads, checks and configures the image HEF on `device`.
fn configure_image(
    device: &HailoDevice,
    config: &HailoConfig,
    path: &Path,
) -> Result<(Model, ImageFacts), HailoLoadError> {
    let mut model = load_model(device, path)?;
    let input = model.inputs()[0].clone();
    if input.height != input.width || input.features != 3 || input.height == 0 {
        return Err(shape_error(
            path,
            format!(
                "input {} is not a square RGB image (H×W×3)",
                describe(&input)
            ),
        ));
    }
    model
        .set_format(Direction::Input, 0, ElementType::Uint8, true)
        .map_err(|e| hef_error(path, e.kind, e.message))?;
    let output = OutputFormat::choose(&mut model, path)?;
    let dim = model.outputs()[0].elements();
    let max_frames = configure(&mut model, path, config)?;
    let input = &model.inputs()[0];
    if input.frame_size != input.elements() {
        return Err(shape_error(
            path,
            format!("input {} does not take uint8 NHWC frames", describe(input)),
        ));
    }
    let facts = ImageFacts {
        size: input.height,
        dim,
        max_frames,
        output,
    };
    Ok((model, facts))
}

/// The check a re-created device's model must pass: the same facts as at start.
/// Configures the HEF at `path` on the session's device with `configure`, says what it is,
/// and keeps it on the session with a recipe that configures it again after a fault (and
/// checks it is what it was). The HEF's facts, its jobs in flight and the encoder's info.
fn add_to_session<F: Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static>(
    session: &HailoSession,
    network: Network,
    path: &Path,
    configure: impl Fn(&HailoDevice) -> Result<(Model, F), HailoLoadError> + Send + Sync + 'static,
    max_frames: impl Fn(&F) -> usize,
) -> Result<(F, usize, EncoderInfo), HailoLoadError> {
    let (model, facts) = session.with_device(&configure)?;
    let what = match network {
        Network::Image => "image",
        Network::Text => "text",
    };
    tracing::info!(
        hef = %path.display(),
        input = %describe(&model.inputs()[0]),
        output = %describe(&model.outputs()[0]),
        max_frames = max_frames(&facts),
        jobs_in_flight = model.jobs(),
        dma_mapped_buffers = model.mapped_buffers(),
        "{what} encoder HEF configured"
    );
    let jobs = model.jobs();
    let info = session.with_device(|device| device.info(path));
    let (first, path) = (facts.clone(), path.to_path_buf());
    let recipe = Box::new(move |device: &HailoDevice| {
        let (model, facts) = configure(device)?;
        same_facts(&path, &first, &facts)?;
        Ok(model)
    });
    session.add(network, model, recipe);
    Ok((facts, jobs, info))
}

fn same_facts<F: PartialEq + std::fmt::Debug>(
    path: &Path,
    first: &F,
    now: &F,
) -> Result<(), HailoLoadError> {
    if first == now {
        Ok(())
    } else {
        Err(shape_error(
            path,
            format!("changed since start-up: configured as {now:?}, was {first:?}"),
        ))
    }
}

pub struct HailoImageEncoder {
    session: Arc<HailoSession>,
    path: PathBuf,
    facts: ImageFacts,
    jobs: usize,
    resize: ResizeMode,
    interpolation: Interpolation,
    timeout: Duration,
    info: EncoderInfo,
}

impl HailoImageEncoder {
    pub fn load(
        session: &Arc<HailoSession>,
        config: &HailoConfig,
    ) -> Result<HailoImageEncoder, HailoLoadError> {
        let path = locate_hef(config, &config.image_hef)?;
        let configure = {
            let (config, path) = (config.clone(), path.clone());
            move |device: &HailoDevice| configure_image(device, &config, &path)
        };
        let (facts, jobs, info) =
            add_to_session(session, Network::Image, &path, configure, |f| f.max_frames)?;
        Ok(HailoImageEncoder {
            session: session.clone(),
            path,
            facts,
            jobs,
            resize: config.resize,
            interpolation: config.interpolation,
            timeout: Duration::from_millis(config.timeout_ms),
            info,
        })
    }
}

impl Encoder for HailoImageEncoder {
    fn embedding_dim(&self) -> usize {
        self.facts.dim
    }
    fn max_batch(&self) -> usize {
        self.facts.max_frames
    }
    fn info(&self) -> EncoderInfo {
        self.info.clone()
    }
    fn jobs_in_flight(&self) -> usize {
        self.jobs
    }
    fn serial_device(&self) -> bool {
        true
    }
    fn device(&self) -> Option<Arc<dyn DeviceRecovery>> {
        Some(self.session.clone())
    }
}

impl ImageEncoder for HailoImageEncoder {
    fn input_size(&self) -> u32 {
        self.facts.size
    }
    fn resize_mode(&self) -> ResizeMode {
        self.resize
    }
    fn interpolation(&self) -> Interpolation {
        self.interpolation
    }
    fn encode_images(&self, images: &[RgbImage]) -> Result<Array2<f32>, EncoderError> {
        let (size, max_frames) = (self.facts.size, self.facts.max_frames);
        if let Some(image) = images.iter().find(|i| i.dimensions() != (size, size)) {
            return Err(EncoderError::failed(format!(
                "{}: image is {:?}, the HEF takes {size}x{size}",
                self.path.display(),
                image.dimensions(),
            )));
        }
        let mut rows = Array2::<f32>::zeros((images.len(), self.facts.dim));
        self.session.run(
            Network::Image,
            |model| {
                let frame_out = model.outputs()[0].frame_size;
                // Each image's pixels are its frame as they are (uint8 NHWC).
                let jobs = images.chunks(max_frames).map(|chunk| {
                    chunk
                        .iter()
                        .map(|i| i.as_raw().as_slice())
                        .collect::<Vec<_>>()
                });
                pipeline(model, "image", self.timeout, jobs, |job, output| {
                    for (i, frame) in output.chunks_exact(frame_out).enumerate() {
                        rows.row_mut(job * max_frames + i)
                            .assign(&ArrayView1::from(&self.facts.output.decode(frame)));
                    }
                })
            },
            |e| encoder_error(&self.path, e),
        )?;
        Ok(rows)
    }
}

/// What the text HEF gives per text.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TextOutput {
    /// The last hidden states, one row per position: the host pools and projects.
    States,
    /// The embedding, pooled and projected inside the HEF.
    Embedding,
}

/// What the text HEF is once configured; a re-created device must give the same.
#[derive(Debug, Clone, PartialEq)]
struct TextFacts {
    max_frames: usize,
    output: OutputFormat,
    kind: TextOutput,
}

/// Loads, checks and configures the text HEF on `device` for `context` token embeddings of
/// width `hidden` and a projection `hidden` × `embedding`.
fn configure_text(
    device: &HailoDevice,
    config: &HailoConfig,
    path: &Path,
    context: usize,
    hidden: usize,
    embedding: usize,
    fixed_pooling: bool,
) -> Result<(Model, TextFacts), HailoLoadError> {
    let mut model = load_model(device, path)?;
    let input = model.inputs()[0].clone();
    if input.elements() != context * hidden || !input.order.is_row_major() {
        return Err(shape_error(
            path,
            format!(
                "input {} does not take {context} token embeddings of {hidden} (the model's context length and the width of the token-embedding table)",
                describe(&input)
            ),
        ));
    }
    model
        .set_format(Direction::Input, 0, ElementType::Float32, false)
        .map_err(|e| hef_error(path, e.kind, e.message))?;
    let output_stream = model.outputs()[0].clone();
    let kind = if output_stream.elements() == context * hidden {
        TextOutput::States
    } else if output_stream.elements() == embedding && fixed_pooling {
        TextOutput::Embedding
    } else {
        let one_embedding = if fixed_pooling {
            format!(" nor one embedding of {embedding} (the columns of the text projection)")
        } else {
            String::new()
        };
        return Err(shape_error(
            path,
            format!(
                "output {} is not {context} rows of {hidden} (the rows of the text projection){one_embedding}",
                describe(&output_stream),
            ),
        ));
    };
    let output = OutputFormat::choose(&mut model, path)?;
    let max_frames = configure(&mut model, path, config)?;
    let input = &model.inputs()[0];
    if input.frame_size != input.elements() * 4 {
        return Err(shape_error(
            path,
            format!("input {} does not take f32 frames", describe(input)),
        ));
    }
    Ok((
        model,
        TextFacts {
            max_frames,
            output,
            kind,
        },
    ))
}

pub struct HailoTextEncoder {
    session: Arc<HailoSession>,
    path: PathBuf,
    frame: TextFrame,
    /// vocabulary × hidden, read by row
    lut: TokenTable,
    /// hidden × embedding
    projection: Array2<f32>,
    bias: Option<ndarray::Array1<f32>>,
    /// The pad token's row, read once: most of a SigLIP frame is padding.
    pad_row: Vec<u8>,
    facts: TextFacts,
    jobs: usize,
    timeout: Duration,
    info: EncoderInfo,
}

impl HailoTextEncoder {
    /// Loads the text HEF and the text assets from `hailo.resources_dir` (with `model`'s
    /// tokenizer and set-up when they are that model directory's own); returns the tokenizer
    /// too, since it is one of those assets.
    pub fn load(
        session: &Arc<HailoSession>,
        config: &HailoConfig,
        model: Option<&crate::model::ModelDir>,
    ) -> Result<(HailoTextEncoder, TextTokenizer), HailoLoadError> {
        let TextAssets {
            setup,
            lut,
            projection,
            bias,
        } = TextAssets::load(&config.resources_dir, model)?;
        let frame = setup.frame;
        let (context, hidden, embedding) = (frame.context, lut.cols(), projection.ncols());
        let fixed_pooling = frame.pooling == super::assets::Pooling::Last;
        let path = locate_hef(config, &config.text_hef)?;
        let configure = {
            let (config, path) = (config.clone(), path.clone());
            move |device: &HailoDevice| {
                configure_text(
                    device,
                    &config,
                    &path,
                    context,
                    hidden,
                    embedding,
                    fixed_pooling,
                )
            }
        };
        let mut pad_row = Vec::new();
        lut.append_row(frame.pad_id, &mut pad_row)
            .map_err(|message| super::assets::AssetError::Invalid {
                path: lut.path().to_path_buf(),
                message,
            })?;
        let (facts, jobs, info) =
            add_to_session(session, Network::Text, &path, configure, |f| f.max_frames)?;
        let encoder = HailoTextEncoder {
            session: session.clone(),
            path,
            frame,
            lut,
            projection,
            bias,
            pad_row,
            facts,
            jobs,
            timeout: Duration::from_millis(config.timeout_ms),
            info,
        };
        Ok((encoder, setup.tokenizer))
    }

    /// The [context, hidden] f32 frame of one text, and the row its embedding is pooled from.
    fn embed_tokens(&self, ids: &[u32], frame: &mut Vec<u8>) -> Result<usize, EncoderError> {
        if ids.is_empty() {
            return Err(EncoderError::failed("a text with no token ids".to_string()));
        }
        let padded = pad(ids, self.frame.context, self.frame.pad_id);
        let kept = ids.len().min(self.frame.context);
        for &id in &padded[..kept] {
            self.lut
                .append_row(id, frame)
                .map_err(EncoderError::failed)?;
        }
        for _ in kept..padded.len() {
            frame.extend_from_slice(&self.pad_row);
        }
        Ok(self.frame.pooled_row(&padded))
    }
}

impl Encoder for HailoTextEncoder {
    fn embedding_dim(&self) -> usize {
        self.projection.ncols()
    }
    fn max_batch(&self) -> usize {
        self.facts.max_frames
    }
    fn info(&self) -> EncoderInfo {
        self.info.clone()
    }
    fn jobs_in_flight(&self) -> usize {
        self.jobs
    }
    fn serial_device(&self) -> bool {
        true
    }
}

impl TextEncoder for HailoTextEncoder {
    fn encode_texts(&self, token_ids: &[Vec<u32>]) -> Result<Array2<f32>, EncoderError> {
        let hidden = self.projection.nrows();
        let max_frames = self.facts.max_frames;
        let mut rows = Array2::<f32>::zeros((token_ids.len(), self.projection.ncols()));
        // Every text's [context, hidden] f32 frame, and the row its embedding is pooled from,
        // built before the first job is submitted so that the jobs can borrow them.
        let frame_in = self.frame.context * hidden * 4;
        let mut frames = Vec::with_capacity(token_ids.len() * frame_in);
        let eots = token_ids
            .iter()
            .map(|ids| self.embed_tokens(ids, &mut frames))
            .collect::<Result<Vec<_>, _>>()?;
        let chunks: Vec<&[u8]> = frames.chunks_exact(frame_in).collect();
        self.session.run(
            Network::Text,
            |model| {
                let frame_out = model.outputs()[0].frame_size;
                let jobs = chunks.chunks(max_frames);
                pipeline(model, "text", self.timeout, jobs, |job, output| {
                    for (i, frame) in output.chunks_exact(frame_out).enumerate() {
                        let row = job * max_frames + i;
                        let out = self.facts.output.decode(frame);
                        if self.facts.kind == TextOutput::Embedding {
                            rows.row_mut(row).assign(&ArrayView1::from(&out));
                            continue;
                        }
                        let at = eots[row];
                        let pooled = ArrayView1::from(&out[at * hidden..(at + 1) * hidden]);
                        let mut embedding = pooled.dot(&self.projection);
                        if let Some(bias) = &self.bias {
                            embedding += bias;
                        }
                        rows.row_mut(row).assign(&embedding);
                    }
                })
            },
            |e| encoder_error(&self.path, e),
        )?;
        Ok(rows)
    }
}
