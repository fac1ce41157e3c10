//! The chip's health in view, on the double's scripted values (device file lines,
//! tests/hailo_fake/fake_hailort.cpp, "Device health"): identity, temperature and NN-core
//! utilization in /health's `device` and in /metrics; throttling from the device's
//! notifications, unknown until one comes; `degraded` (still 200, with a detail) while
//! throttled heavily or after an alarm, and back to `ok` when the throttling eases.
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::common::hailo::*;
use crate::common::scratch;

/// Polls /health until `done` holds (the double sends notifications every 50 ms).
async fn health_until(app: &axum::Router, done: impl Fn(&serde_json::Value) -> bool) -> Call {
    let started = Instant::now();
    loop {
        let health = call(app, "GET", "/health", None).await;
        if done(&health.body) {
            return health;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "/health never got there: {}",
            health.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hailo_health_shows_identity_temperature_throttling_and_alarms() {
    let dir = scratch();
    image_hef(dir.path(), IMAGE_OUT_FLOAT, "");
    text_hef(dir.path(), "");
    let device = DeviceFile::new("ok\ntemperature 61.5 63.25\nnnc_utilization 42.5");
    let mut config = config(dir.path());
    config.hailo.device_id = Some(device.id());
    let (app, _service) = hailo_app(&config).await;

    let health = call(&app, "GET", "/health", None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    assert_eq!(health.body["status"], "ok");
    let d = &health.body["device"];
    assert_eq!(d["temperature_c"], 63.25, "{d}");
    assert_eq!(d["nnc_utilization"], 42.5, "{d}");
    assert_eq!(d["throttling"], "unknown", "{d}");
    assert_eq!(d["firmware_version"], "5.2.0");
    assert_eq!(d["serial_number"], "HLDBL0000000001");
    assert_eq!(d["product_name"], "HAILO-10H TEST DOUBLE");
    assert_eq!(d["architecture"], "HAILO10H");
    assert_eq!(d["recoveries"], 0);
    assert_eq!(d["recovering"], false);
    assert_eq!(
        (
            d["temperature_alarms"].as_u64(),
            d["overcurrent_alarms"].as_u64()
        ),
        (Some(0), Some(0))
    );
    let metrics = metrics_text(&app).await;
    for line in [
        r#"hailo_clip_device_temperature_celsius{sensor="ts0"} 61.5"#,
        r#"hailo_clip_device_temperature_celsius{sensor="ts1"} 63.25"#,
        "hailo_clip_device_nnc_utilization_percent 42.5",
        "hailo_clip_device_throttling_state -1",
        "hailo_clip_device_recoveries_total 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    let info = metrics
        .lines()
        .find(|l| l.starts_with("hailo_clip_device_info{"))
        .unwrap_or_else(|| panic!("no hailo_clip_device_info in\n{metrics}"));
    assert!(
        info.contains(r#"serial_number="HLDBL0000000001""#)
            && info.contains(r#"architecture="HAILO10H""#)
            && info.ends_with(" 1"),
        "{info}"
    );

    // Heavy throttling: still serving, but degraded, saying why.
    device.set("ok\ntemperature 61.5 63.25\nthrottling 3");
    let health = health_until(&app, |b| b["device"]["throttling"] == "heavy").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "degraded", "{}", health.body);
    assert!(
        health.body["detail"]
            .as_str()
            .unwrap()
            .contains("throttled (heavy)"),
        "{}",
        health.body
    );
    // Light throttling is not degraded.
    device.set("ok\ntemperature 61.5 63.25\nthrottling 1");
    let health = health_until(&app, |b| b["device"]["throttling"] == "light").await;
    assert_eq!(health.body["status"], "ok", "{}", health.body);
    // An alarm: degraded for the next 10 minutes, counted.
    device.set(
        "ok\ntemperature 61.5 63.25\nthrottling 1\ntemperature_alarms 1\novercurrent_alarms 2",
    );
    let health = health_until(&app, |b| b["device"]["overcurrent_alarms"] == 2).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "degraded", "{}", health.body);
    assert_eq!(health.body["device"]["temperature_alarms"], 1);
    assert!(
        health.body["detail"]
            .as_str()
            .unwrap()
            .contains("raised an alarm"),
        "{}",
        health.body
    );
    let metrics = metrics_text(&app).await;
    for line in [
        r#"hailo_clip_device_alarms_total{kind="temperature"} 1"#,
        r#"hailo_clip_device_alarms_total{kind="overcurrent"} 2"#,
        "hailo_clip_device_throttling_state 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
}

/// `doctor`'s device check: from the running daemon's /health while one runs, from the
/// device itself when none does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hailo_doctor_reads_the_chip_from_the_service_or_the_device() {
    use hailo_clip::doctor::{self, Environment, Outcome};
    let dir = scratch();
    image_hef(dir.path(), IMAGE_OUT_FLOAT, "");
    text_hef(dir.path(), "");
    let device = DeviceFile::new("ok\ntemperature 61.5 63.25");
    let mut config = config(dir.path());
    config.hailo.device_id = Some(device.id());
    config.server.port = crate::common::free_port();
    let device_check = |config: hailo_clip::config::Config| async move {
        tokio::task::spawn_blocking(move || {
            doctor::run(Ok(config), "t", &Environment::default())
                .into_iter()
                .find(|c| c.name == "device")
                .expect("a device check")
        })
        .await
        .unwrap()
    };

    let (app, _service) = hailo_app(&config).await;
    let listener = tokio::net::TcpListener::bind((config.server.host, config.server.port))
        .await
        .unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let check = device_check(config.clone()).await;
    assert_eq!(check.outcome, Outcome::Pass, "{check:?}");
    assert!(
        check
            .detail
            .starts_with("HAILO-10H TEST DOUBLE HAILO10H (serial HLDBL0000000001, firmware 5.2.0")
            && check.detail.contains("63.2 °C, throttling unknown")
            && check.detail.ends_with("(from the running service)"),
        "{}",
        check.detail
    );

    server.abort();
    let _ = server.await;
    let check = device_check(config).await;
    assert_eq!(check.outcome, Outcome::Pass, "{check:?}");
    assert_eq!(
        check.detail,
        "HAILO-10H TEST DOUBLE HAILO10H (serial HLDBL0000000001, firmware 5.2.0): 63.2 °C (read directly: no service is running)"
    );
}
