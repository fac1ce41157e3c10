//! A soak through device faults, against the daemon binary on the double's scheduled faults
//! (x86_64 only: time-bound, so scripts/test-aarch64.sh skips it by name under qemu). For
//! each kind, 16 clients send images for 20 s while the device faults 8 s after each time it
//! was created: every answer is 200 with the right embedding, 503 `device_recovering` with
//! Retry-After, or 504 `device_timeout`; no connection is reset and no other status comes;
//! /health comes back to 200 after each recovery, and the recoveries are counted. Prints
//! the counts and the time from the fault to healthy again, for the record.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::common::hailo::*;
use crate::common::{free_port, hailo_clip, http_get, scratch, sigterm};

const CLIENTS: usize = 16;
const SOAK: Duration = Duration::from_secs(20);
const FAULT_EVERY_S: u32 = 8;

#[derive(Debug, Default)]
struct Counts {
    ok: usize,
    recovering: usize,
    device_timeout: usize,
    wrong_embedding: usize,
    no_retry_after: usize,
    other: Vec<String>,
    resets: Vec<String>,
}

fn request(seed: u8) -> String {
    let mut out = std::io::Cursor::new(Vec::new());
    test_image(seed)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    serde_json::json!({"image": base64::engine::general_purpose::STANDARD.encode(out.into_inner())})
        .to_string()
}

fn soak(kind: &str) {
    let dir = scratch();
    image_hef(dir.path(), IMAGE_OUT_FLOAT, "");
    text_hef(dir.path(), "");
    let device = DeviceFile::new(&format!("ok fault {kind} {FAULT_EVERY_S}"));
    let log = std::path::PathBuf::from(format!("{}.log", device.id()));
    let port = free_port();
    let mut config = config(dir.path());
    config.server.port = port;
    config.hailo.device_id = Some(device.id());
    config.hailo.timeout_ms = 1_000;
    config.hailo.recovery_max_seconds = 60;
    config.performance.max_queue_size = 64;
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    // The log goes to a file: a pipe nobody reads during the soak would fill and stop it.
    let log_path = dir.path().join("daemon.log");
    let daemon_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut daemon = hailo_clip()
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(http_get(port, "/health"), Some((200, _))) {
        if Instant::now() > deadline || daemon.try_wait().unwrap().is_some() {
            let _ = daemon.kill();
            panic!("the daemon never became ready:\n{}", daemon_log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let counts = Arc::new(Mutex::new(Counts::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    // /health every 100 ms: how long each spell of not-200 lasted.
    let poller = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut spells = Vec::new();
            let mut down_since: Option<Instant> = None;
            while !stop.load(Ordering::SeqCst) {
                let ok = matches!(http_get(port, "/health"), Some((200, _)));
                match (ok, down_since) {
                    (false, None) => down_since = Some(Instant::now()),
                    (true, Some(since)) => {
                        spells.push(since.elapsed());
                        down_since = None;
                    }
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // Stopped right after the daemon was seen healthy again.
            if let Some(since) = down_since {
                spells.push(since.elapsed());
            }
            spells
        })
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (agent, counts) = (agent.clone(), counts.clone());
            std::thread::spawn(move || {
                let seed = c as u8 + 1;
                let (body, expected) = (
                    request(seed),
                    unit(&expected_image(&test_image(seed), None)),
                );
                while started.elapsed() < SOAK {
                    let response = agent
                        .post(format!("http://127.0.0.1:{port}/v1/embed/image"))
                        .header("content-type", "application/json")
                        .send(&body);
                    let mut counts = counts.lock().unwrap();
                    let mut response = match response {
                        Ok(r) => r,
                        Err(e) => {
                            counts.resets.push(e.to_string());
                            continue;
                        }
                    };
                    let status = response.status().as_u16();
                    let retry_after = response.headers().contains_key("retry-after");
                    let text = response.body_mut().read_to_string().unwrap_or_default();
                    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    let code = json["error"]["code"].as_str().unwrap_or("").to_string();
                    match (status, code.as_str()) {
                        (200, _) => {
                            let got = crate::common::floats(&json["embedding"]);
                            if got.len() == expected.len()
                                && got.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-5)
                            {
                                counts.ok += 1;
                            } else {
                                counts.wrong_embedding += 1;
                            }
                        }
                        (503, "device_recovering") => {
                            counts.recovering += 1;
                            counts.no_retry_after += usize::from(!retry_after);
                            drop(counts);
                            // As a client told to come back later would.
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        (504, "device_timeout") => counts.device_timeout += 1,
                        _ => counts.other.push(format!("{status} {text}")),
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    // The last fault may still be in recovery: wait for healthy, then stop polling.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = http_get(port, "/health");
        if matches!(health, Some((200, _))) {
            break;
        }
        if Instant::now() > deadline || daemon.try_wait().unwrap().is_some() {
            let _ = daemon.kill();
            panic!("not healthy after the soak: {health:?}\n{}", daemon_log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let spells = poller.join().unwrap();
    let (_, health) = http_get(port, "/health").unwrap();
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    sigterm(&daemon);
    let _ = daemon.wait();
    let faults = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("fault "))
        .count();
    let _ = std::fs::remove_file(&log);
    let counts = counts.lock().unwrap();
    println!(
        "soak {kind}: {CLIENTS} clients, {} s, a fault every {FAULT_EVERY_S} s: {} faults, {} recoveries; \
         200: {}, 503 device_recovering: {}, 504 device_timeout: {}, wrong: {}, other: {}, resets: {}; \
         fault to healthy (from /health): {:?}",
        SOAK.as_secs(),
        faults,
        health["device"]["recoveries"],
        counts.ok,
        counts.recovering,
        counts.device_timeout,
        counts.wrong_embedding,
        counts.other.len(),
        counts.resets.len(),
        spells
    );
    assert_eq!(counts.wrong_embedding, 0);
    assert!(
        counts.other.is_empty(),
        "{:?}",
        &counts.other[..counts.other.len().min(5)]
    );
    assert!(counts.resets.is_empty(), "{:?}", counts.resets);
    assert_eq!(counts.no_retry_after, 0);
    assert!(counts.ok > 0 && counts.recovering > 0, "{counts:?}");
    assert!(faults >= 1, "no fault in {} s", SOAK.as_secs());
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["device"]["recoveries"], faults as u64, "{health}");
    assert_eq!(spells.len(), faults, "{spells:?}");
}

#[test]
fn hailo_soak_through_closed_links() {
    soak("communication_closed");
}

#[test]
fn hailo_soak_through_lost_devices() {
    soak("device_not_connected");
}

#[test]
fn hailo_soak_through_hangs() {
    soak("timeout");
}

#[test]
fn hailo_soak_through_a_device_still_in_use() {
    soak("device_in_use");
}
