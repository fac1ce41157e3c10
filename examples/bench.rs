//! Benchmark harness (prints figures and ratios; not a timed test). In one run, on one model:
//!
//! 1. the raw image encoder at batch 1 and 8, on each CPU engine this machine has
//!    (ONNX Runtime when its library loads, and tract);
//! 2. the HTTP path: the daemon (`hailo-clip serve`, cpu.engine: onnxruntime when available)
//!    classifying with one cached prompt, from 1 client (latency) and 8 clients
//!    (throughput), and with 20 cached prompts; its peak RSS;
//! 3. the ratios against issue 10's targets.
//!
//!     cargo build --release && cargo run --release --example bench -- --model-dir DIR \
//!         [--binary target/release/hailo-clip] [--seconds 20] [--iterations 20]
//!
//! Each client sends a JSON classify of tests/fixtures/images/chelsea.png over loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hailo_clip::backends::cpu::{CpuImageEncoder, Engine};
use hailo_clip::encoder::ImageEncoder;
use hailo_clip::model::ModelDir;
use hailo_clip::preprocess::{decode_rgb, resize_square};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn time_ms(iterations: usize, mut f: impl FnMut()) -> Vec<f64> {
    let mut times: Vec<f64> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

fn status_field(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// One POST over a fresh loopback connection; the status code.
fn post(port: u16, body: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_daemon(binary: &Path, model: &Path, engine: &str, port: u16, work: &Path) -> Daemon {
    let config = work.join("bench.yaml");
    std::fs::write(
        &config,
        // Speed, not answers: a random test model in Immich's layout cannot say it is random
        // (its files have no such field), so its failed self-test must not keep it unready.
        format!("server:\n  port: {port}\ncpu:\n  engine: {engine}\nperformance:\n  inference_threads: 2\nselftest:\n  enforce: false\n"),
    )
    .expect("write config");
    let child = Command::new(binary)
        .env("HAILO_CLIP_CONFIG", &config)
        .env_remove("RUST_LOG")
        .arg("--model-dir")
        .arg(model)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            if r.starts_with("HTTP/1.1 200") {
                return Daemon(child);
            }
        }
        assert!(Instant::now() < deadline, "the daemon did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let model_dir = PathBuf::from(
        arg("--model-dir").unwrap_or_else(|| "assets/models/clip-tiny-random".into()),
    );
    let iterations: usize = arg("--iterations").map_or(20, |v| v.parse().expect("--iterations N"));
    let seconds: f64 = arg("--seconds").map_or(20.0, |v| v.parse().expect("--seconds S"));
    let binary = arg("--binary").map_or_else(
        || {
            std::env::current_exe()
                .expect("exe")
                .parent()
                .and_then(Path::parent)
                .expect("target dir")
                .join("hailo-clip")
        },
        PathBuf::from,
    );
    let dir = ModelDir::open(&model_dir)?;
    let m = dir.manifest.clone();
    let weights_mib = (std::fs::metadata(dir.visual())?.len()
        + std::fs::metadata(dir.textual())?.len()) as f64
        / (1 << 20) as f64;
    println!(
        "model {} ({}): dim {}, image {} px, weights {weights_mib:.0} MiB; {} cores",
        m.name,
        model_dir.display(),
        m.embedding_dim,
        m.image_size,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let photo = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/images/chelsea.png"
    ))?;
    let square = resize_square(&decode_rgb(&photo, u64::MAX)?, m.image_size, m.resize)?;

    // 1. Raw engines.
    let (engines, missing) = Engine::available(2);
    if let Some(e) = missing {
        println!("ONNX Runtime not available ({e}): tract only");
    }
    let mut raw = std::collections::HashMap::new();
    for (name, engine) in &engines {
        let encoder = CpuImageEncoder::load(&dir, engine)?;
        for batch in [1usize, 8] {
            let images = vec![square.clone(); batch];
            encoder.encode_images(&images)?; // first run allocates
            let times = time_ms(iterations, || {
                encoder.encode_images(&images).unwrap();
            });
            let p50 = percentile(&times, 0.5);
            let per_s = batch as f64 * 1000.0 / p50;
            println!("raw {name:<11} batch {batch}: p50 {p50:8.1} ms/batch, {per_s:6.2} images/s (2 threads)");
            raw.insert((*name, batch), (p50, per_s));
        }
    }
    let reference = if raw.contains_key(&("onnxruntime", 1)) {
        "onnxruntime"
    } else {
        "tract"
    };
    drop(engines);

    // 2. HTTP path, on the reference engine.
    let work = std::env::temp_dir().join(format!("hailo-clip-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let daemon = start_daemon(&binary, &model_dir, reference, port, &work);
    let image = base64::engine::general_purpose::STANDARD.encode(&photo);
    let one = format!(r#"{{"image": "{image}", "prompts": ["a cat"]}}"#);
    let twenty = {
        let prompts: Vec<String> = (0..20).map(|i| format!("\"object {i}\"")).collect();
        format!(
            r#"{{"image": "{image}", "prompts": [{}]}}"#,
            prompts.join(", ")
        )
    };
    assert_eq!(post(port, &one), 200);
    assert_eq!(post(port, &twenty), 200); // fills the cache
    let one_client = time_ms(iterations, || assert_eq!(post(port, &one), 200));
    let twenty_client = time_ms(iterations, || assert_eq!(post(port, &twenty), 200));
    let (p50_1, p50_20) = (
        percentile(&one_client, 0.5),
        percentile(&twenty_client, 0.5),
    );
    println!(
        "http 1 client, 1 cached prompt:   p50 {p50_1:8.1} ms, p95 {:8.1} ms",
        percentile(&one_client, 0.95)
    );
    println!("http 1 client, 20 cached prompts: p50 {p50_20:8.1} ms");
    let done = Arc::new(Mutex::new((0usize, 0usize)));
    let started = Instant::now();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (done, one) = (done.clone(), one.clone());
            std::thread::spawn(move || {
                while started.elapsed().as_secs_f64() < seconds {
                    let ok = post(port, &one) == 200;
                    let mut d = done.lock().unwrap();
                    if ok {
                        d.0 += 1
                    } else {
                        d.1 += 1
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let (ok, refused) = *done.lock().unwrap();
    let throughput = ok as f64 / started.elapsed().as_secs_f64();
    let peak = status_field(daemon.0.id(), "VmHWM:");
    println!("http 8 clients for {seconds:.0} s: {throughput:6.2} classify/s ({ok} answered 200, {refused} other)");
    println!("daemon peak RSS {peak:.0} MiB");
    drop(daemon);
    let _ = std::fs::remove_dir_all(&work);

    // 3. Ratios against the targets.
    let (raw1, _) = raw[&(reference, 1)];
    let (_, raw8) = raw[&(reference, 8)];
    println!("--- against raw {reference} on the same model, same run");
    println!(
        "throughput 8 clients / raw batch-8 images/s: {:.2} (target >= 0.95)",
        throughput / raw8
    );
    println!(
        "p50 1 client - raw batch-1 p50: {:+.1} ms (target <= +5 ms)",
        p50_1 - raw1
    );
    println!(
        "20 cached prompts / 1 prompt: {:.2} (target <= 1.15)",
        p50_20 / p50_1
    );
    println!(
        "peak RSS / (1.3 x weights + 150 MiB): {:.2} (target <= 1.00; {peak:.0} vs {:.0} MiB)",
        peak / (1.3 * weights_mib + 150.0),
        1.3 * weights_mib + 150.0
    );
    if let (Some(&(ort1, _)), Some(&(tract1, _))) =
        (raw.get(&("onnxruntime", 1)), raw.get(&("tract", 1)))
    {
        println!("tract / onnxruntime batch-1 latency: {:.2}", tract1 / ort1);
    }
    Ok(())
}
