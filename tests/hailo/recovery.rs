//! Device faults survived without a restart, on the double's scheduled faults (a device file
//! "ok fault KIND EVERY_S", tests/hailo_fake/fake_hailort.cpp): after the fault, requests
//! get 503 `device_recovering` with Retry-After (or 504 `device_timeout` for jobs that timed
//! out), /health answers 503 `recovering` naming the fault, the device is re-created (through
//! the failures on re-open the double scripts), the service's check (warm-up, self-test)
//! hands it back, and /health is 200 again with one recovery counted and the right answers.
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{json, Value};

use crate::common::hailo::*;
use crate::common::scratch;
use hailo_clip::service::Service;

fn png_request(seed: u8) -> Value {
    let mut out = std::io::Cursor::new(Vec::new());
    test_image(seed)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    json!({"image": base64::engine::general_purpose::STANDARD.encode(out.into_inner())})
}

/// Recovers from one scheduled fault of `kind` and checks every answer on the way.
async fn survives(kind: &str, expect_opens_failed: usize) {
    let dir = scratch();
    image_hef(dir.path(), IMAGE_OUT_FLOAT, "");
    text_hef(dir.path(), "");
    // No fault while the service loads and warms up, however long that takes (qemu).
    let device = DeviceFile::new(&format!("ok fault {kind} 1000"));
    let log = std::path::PathBuf::from(format!("{}.log", device.id()));
    let mut config = config(dir.path());
    config.hailo.device_id = Some(device.id());
    config.hailo.timeout_ms = 500;
    let (app, service) = hailo_app(&config).await;
    let expected = unit(&expected_image(&test_image(7), None));
    assert_eq!(
        call(&app, "GET", "/health", None).await.status,
        StatusCode::OK
    );

    // The fault, a second from the double's next look at the file (tests/hailo_fake: a new
    // period counts from when a job sees it). Until then answers are right; then each
    // request is refused as recovering (or, on a hung device, times out first).
    device.set(&format!("ok fault {kind} 1"));
    let started = Instant::now();
    let mut timeouts = 0;
    let refused = loop {
        assert!(started.elapsed() < Duration::from_secs(20), "no fault came");
        let answer = call(&app, "POST", "/v1/embed/image", Some(png_request(7))).await;
        match answer.status {
            StatusCode::OK => {
                let got = crate::common::floats(&answer.body["embedding"]);
                assert!(got.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-5));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            StatusCode::GATEWAY_TIMEOUT => {
                assert_eq!(
                    answer.body["error"]["code"], "device_timeout",
                    "{}",
                    answer.body
                );
                timeouts += 1;
            }
            StatusCode::SERVICE_UNAVAILABLE => break answer,
            other => panic!("{other}: {}", answer.body),
        }
    };
    // Later re-creations fault only after 1000 s: this test sees one fault.
    device.set(&format!("ok fault {kind} 1000"));
    assert_eq!(
        refused.body["error"]["code"], "device_recovering",
        "{}",
        refused.body
    );
    assert_eq!(refused.retry_after.as_deref(), Some("5"));
    if kind == "timeout" {
        assert_eq!(timeouts, 3, "a hang is a fault after 3 timeouts in a row");
    }
    let health = call(&app, "GET", "/health", None).await;
    assert_eq!(
        health.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        health.body
    );
    assert_eq!(health.body["status"], "recovering", "{}", health.body);
    assert_eq!(health.body["device"]["recovering"], true, "{}", health.body);
    let fault = health.body["device"]["last_fault"]
        .as_str()
        .unwrap()
        .to_string();
    let status_name = match kind {
        "device_not_connected" => "HAILO_DEVICE_NOT_CONNECTED",
        "timeout" => "HAILO_TIMEOUT",
        _ => "HAILO_COMMUNICATION_CLOSED",
    };
    assert!(fault.contains(status_name), "{fault}");

    // The daemon's supervisor, by hand: check the device whenever it was re-created.
    let health = loop {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "not recovered: {}",
            call(&app, "GET", "/health", None).await.body
        );
        service.check_recovered_device().await;
        let health = call(&app, "GET", "/health", None).await;
        if health.status == StatusCode::OK {
            break health;
        }
        assert_eq!(health.body["status"], "recovering", "{}", health.body);
        let refused = call(&app, "POST", "/v1/embed/image", Some(png_request(7))).await;
        assert_eq!(
            refused.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            refused.body
        );
        assert_eq!(refused.body["error"]["code"], "device_recovering");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health.body["device"]["recoveries"], 1, "{}", health.body);
    assert_eq!(
        health.body["device"]["recovering"], false,
        "{}",
        health.body
    );
    let answer = call(&app, "POST", "/v1/embed/image", Some(png_request(7))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let got = crate::common::floats(&answer.body["embedding"]);
    assert!(got.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-5));
    // What the double saw: one fault, and the re-creations that failed before one held.
    let lines = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert_eq!(
        lines.lines().filter(|l| l.starts_with("fault ")).count(),
        1,
        "{lines}"
    );
    let failed_opens = lines
        .lines()
        .filter(|l| l.starts_with("open ") && *l != "open ok")
        .count();
    assert_eq!(failed_opens, expect_opens_failed, "{lines}");
    assert_service_counts_it(&service);
}

fn assert_service_counts_it(service: &Service) {
    let status = service.device_status().unwrap();
    assert_eq!(status.recoveries, 1);
    assert!(!status.recovering && !status.needs_check && !status.gave_up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_recovers_from_a_closed_link() {
    survives("communication_closed", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_recovers_from_a_lost_device_through_failed_reopens() {
    survives("device_not_connected", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_recovers_from_a_hang_after_three_timeouts() {
    survives("timeout", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_recovers_when_the_device_is_still_in_use_on_reopen() {
    survives("device_in_use", 1).await;
}

/// The chip does not announce a throttling state it is already in: a device re-created
/// after a fault knows none until the state changes, and the chip is as throttled as it
/// was. /health keeps the last state it was told ("heavy", degraded), not "unknown".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_throttling_is_kept_across_a_recovery() {
    let dir = scratch();
    image_hef(dir.path(), IMAGE_OUT_FLOAT, "");
    text_hef(dir.path(), "");
    let device = DeviceFile::new("ok fault communication_closed 1000");
    let mut config = config(dir.path());
    config.hailo.device_id = Some(device.id());
    config.hailo.timeout_ms = 500;
    let (app, service) = hailo_app(&config).await;
    device.set("ok fault communication_closed 1000\nthrottling 3");
    let started = Instant::now();
    loop {
        let health = call(&app, "GET", "/health", None).await;
        if health.body["device"]["throttling"] == "heavy" {
            assert_eq!(health.body["status"], "degraded", "{}", health.body);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            health.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A fault: the next job closes the link.
    device.set("ok fault communication_closed 1\nthrottling 3");
    loop {
        let answer = call(&app, "POST", "/v1/embed/image", Some(png_request(7))).await;
        if answer.status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no fault came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    device.set("ok fault communication_closed 1000\nthrottling 3");
    let health = loop {
        assert!(started.elapsed() < Duration::from_secs(60), "not recovered");
        service.check_recovered_device().await;
        let health = call(&app, "GET", "/health", None).await;
        if health.body["device"]["recoveries"] == 1 && health.body["device"]["recovering"] == false
        {
            break health;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        health.body["device"]["throttling"], "heavy",
        "{}",
        health.body
    );
    assert_eq!(health.body["status"], "degraded", "{}", health.body);
}
