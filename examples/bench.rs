//! Benchmark: prints encoder latency by batch size and thread count, text-encoder latency,
//! and classify latency with cached prompts as the prompt count grows.
//!
//!     cargo run --release --example bench -- --model-dir DIR [--iterations N]
//!
//! Figures are medians over N runs (default 10) on this machine; peak memory is VmHWM.

use std::sync::Arc;
use std::time::Instant;

use hailo_clip::backends::cpu::{executor, CpuImageEncoder, CpuTextEncoder};
use hailo_clip::config::Config;
use hailo_clip::encoder::{ImageEncoder, TextEncoder};
use hailo_clip::manifest::ModelDir;
use hailo_clip::preprocess::{decode_rgb, resize_square};
use hailo_clip::service::{ClassifyRequest, ModelInfo, Service};
use hailo_clip::tokenize::ClipTokenizer;

fn median_ms(iterations: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let model_dir = arg("--model-dir").unwrap_or_else(|| "assets/models/clip-tiny-random".into());
    let iterations: usize = arg("--iterations").map_or(10, |v| v.parse().expect("--iterations N"));
    let dir = ModelDir::open(std::path::Path::new(&model_dir))?;
    let m = dir.manifest.clone();
    println!(
        "model {} ({}), dim {}, image {}px, {} iterations",
        m.name, model_dir, m.embedding_dim, m.image_size, iterations
    );

    let photo = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/images/chelsea.png"
    ))?;
    let t = Instant::now();
    let rgb = decode_rgb(&photo, u64::MAX)?;
    let square = resize_square(&rgb, m.image_size, m.resize)?;
    println!(
        "decode + resize + crop (451x300 PNG): {:.2} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let prep = median_ms(iterations, || {
        let rgb = decode_rgb(&photo, u64::MAX).unwrap();
        resize_square(&rgb, m.image_size, m.resize).unwrap();
    });
    println!("decode + resize + crop, median: {prep:.2} ms");

    for threads in [1, 2] {
        let image = CpuImageEncoder::load(&dir, executor(threads))?;
        image.encode_images(std::slice::from_ref(&square))?; // first run allocates
        for batch in [1, 4, 8] {
            let images = vec![square.clone(); batch];
            let ms = median_ms(iterations, || {
                image.encode_images(&images).unwrap();
            });
            println!("image encoder, {threads} thread(s), batch {batch}: {ms:.2} ms/batch, {:.2} ms/image", ms / batch as f64);
        }
    }

    let tokenizer = ClipTokenizer::from_file(&dir.tokenizer(), m.context_length)?;
    let text = CpuTextEncoder::load(&dir, executor(2))?;
    for batch in [1, 8] {
        let ids: Vec<Vec<u32>> = (0..batch)
            .map(|i| {
                tokenizer
                    .encode(&format!("a photo of a thing number {i}"))
                    .unwrap()
            })
            .collect();
        text.encode_texts(&ids)?;
        let ms = median_ms(iterations, || {
            text.encode_texts(&ids).unwrap();
        });
        println!("text encoder, 2 threads, batch {batch}: {ms:.2} ms/batch");
    }

    // Classify through the service with every prompt already cached: the latency must not
    // grow with the number of prompts (no text inference happens).
    let mut config = Config::default();
    config.model.dir = dir.root.clone();
    let image: Arc<dyn ImageEncoder> = Arc::new(CpuImageEncoder::load(&dir, executor(2))?);
    let text: Arc<dyn TextEncoder> = Arc::new(text);
    let info = ModelInfo {
        name: m.name.clone(),
        embedding_dim: m.embedding_dim,
        logit_scale: m.logit_scale,
        random_weights: m.random_weights,
        immich_model: m.immich_model.clone(),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let service =
        Service::start(image, text, tokenizer, info, &config).map_err(anyhow::Error::msg)?;
    rt.block_on(service.warm_up())?;
    for prompts in [1usize, 10, 100] {
        let list: Vec<String> = (0..prompts).map(|i| format!("object {i}")).collect();
        let req = ClassifyRequest {
            image: photo.clone(),
            prompts: list,
            ..Default::default()
        };
        rt.block_on(service.classify(req.clone()))?; // fills the cache
        let ms = median_ms(iterations, || {
            rt.block_on(service.classify(req.clone())).unwrap();
        });
        let (hits, misses) = service.text_cache().stats();
        println!("classify, {prompts:>3} cached prompts: {ms:.2} ms (text cache: {hits} hits, {misses} misses so far)");
    }
    service.shutdown();
    println!("peak memory (VmHWM): {:.0} MiB", peak_rss_mib());
    Ok(())
}
