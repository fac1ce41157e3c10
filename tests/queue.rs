//! The work queue's workers share what one of them holds: a prompt met while a worker
//! gathers an image batch goes to whichever worker is free first, not to the one gathering.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hailo_clip::config::PerformanceConfig;
use hailo_clip::encoder::{Encoder, EncoderError, EncoderInfo, ImageEncoder, TextEncoder};
use hailo_clip::metrics::Metrics;
use hailo_clip::preprocess::ResizeMode;
use hailo_clip::service::queue::WorkQueue;
use image::RgbImage;
use ndarray::Array2;

fn info() -> EncoderInfo {
    EncoderInfo {
        backend: hailo_clip::encoder::Backend::Cpu,
        source: "test encoder".into(),
        reason: String::new(),
        engine: None,
        engine_library: None,
        hailo: None,
    }
}

struct Images;

impl Encoder for Images {
    fn embedding_dim(&self) -> usize {
        2
    }
    fn max_batch(&self) -> usize {
        8
    }
    fn info(&self) -> EncoderInfo {
        info()
    }
}

impl ImageEncoder for Images {
    fn input_size(&self) -> u32 {
        4
    }
    fn resize_mode(&self) -> ResizeMode {
        ResizeMode::ShortestEdgeCenterCrop
    }
    fn encode_images(&self, images: &[RgbImage]) -> Result<Array2<f32>, EncoderError> {
        Ok(Array2::ones((images.len(), 2)))
    }
}

/// Prompt [9] takes 600 ms; every other one none.
struct Texts;

impl Encoder for Texts {
    fn embedding_dim(&self) -> usize {
        2
    }
    fn max_batch(&self) -> usize {
        8
    }
    fn info(&self) -> EncoderInfo {
        info()
    }
}

impl TextEncoder for Texts {
    fn encode_texts(&self, token_ids: &[Vec<u32>]) -> Result<Array2<f32>, EncoderError> {
        if token_ids.iter().any(|ids| ids == &[9]) {
            std::thread::sleep(Duration::from_millis(600));
        }
        Ok(Array2::ones((token_ids.len(), 2)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_prompt_goes_to_the_worker_that_is_free_first() {
    let performance = PerformanceConfig {
        worker_threads: 2,
        batch_wait_ms: 1_000,
        max_batch_size: 8,
        ..PerformanceConfig::default()
    };
    let queue = Arc::new(WorkQueue::start(
        Arc::new(Images),
        Arc::new(Texts),
        &performance,
        Arc::new(Metrics::new()),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    // Worker B runs a slow prompt (600 ms).
    let slow = tokio::spawn({
        let queue = queue.clone();
        async move { queue.encode_texts(vec![vec![9]], deadline).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Worker A takes an image and gathers its batch for the whole batch_wait (1 s): another
    // image of an admitted request is still on its way.
    let on_its_way = queue.image_incoming();
    let image = tokio::spawn({
        let queue = queue.clone();
        async move {
            let incoming = queue.image_incoming();
            queue
                .encode_image(RgbImage::new(4, 4), deadline, incoming)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A prompt arrives: only A is reading the queue, so A meets it and holds it. B is free
    // at 600 ms, A's batch runs at 1.1 s: the prompt is answered first, by B.
    let prompt = queue.encode_texts(vec![vec![1, 2]], deadline).await;
    assert!(prompt.is_ok(), "{prompt:?}");
    assert!(
        !image.is_finished(),
        "the held prompt waited for the image batch of the worker that held it"
    );
    drop(on_its_way);
    assert!(image.await.unwrap().is_ok());
    assert!(slow.await.unwrap().is_ok());
}
