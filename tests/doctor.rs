//! `hailo-clip doctor` on fake /dev, /sys, /proc and /etc trees: every check, healthy and
//! broken, plus the port and service checks against a real server on loopback.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use hailo_clip::config::{BackendChoice, Config};
use hailo_clip::doctor::{self, Check, Environment, Outcome};

struct FakeSystem {
    root: tempfile::TempDir,
}

impl FakeSystem {
    /// A Pi with a Hailo-10H, HailoRT 5.2.0, the service user in the device's group.
    fn healthy() -> FakeSystem {
        let fake = FakeSystem { root: scratch() };
        fake.write("dev/hailo0", "");
        std::fs::set_permissions(
            fake.path("dev/hailo0"),
            std::fs::Permissions::from_mode(0o660),
        )
        .unwrap();
        // The device's group is whatever group the file got; call it "hailo".
        let gid = std::fs::metadata(fake.path("dev/hailo0")).unwrap().gid();
        fake.write("etc/passwd", "root:x:0:0::/root:/bin/sh\nhailo-clip:x:999:999::/var/lib/hailo-clip:/usr/sbin/nologin\n");
        fake.write(
            "etc/group",
            &format!("hailo-clip:x:999:\nhailo:x:{gid}:pi,hailo-clip\n"),
        );
        fake.write("usr/lib/libhailort.so.5.2.0", "");
        fake.write("sys/module/hailo1x_pci/version", "5.2.0\n");
        fake.write(
            "proc/meminfo",
            "MemTotal:  8000000 kB\nMemAvailable:  6000000 kB\n",
        );
        fake.write("sys/class/thermal/thermal_zone0/temp", "52100\n");
        fake.write("proc/4242/comm", "hailo-clip\n");
        std::fs::create_dir_all(fake.path("proc/4242/fd")).unwrap();
        std::os::unix::fs::symlink("/dev/hailo0", fake.path("proc/4242/fd/7")).unwrap();
        fake
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn env(&self) -> Environment {
        Environment {
            root: self.root.path().to_path_buf(),
            service_user: "hailo-clip".into(),
            memory_max_bytes: 3 << 30,
            vcgencmd: None,
        }
    }

    /// A fake `vcgencmd get_throttled` printing `value`.
    fn vcgencmd(&self, value: &str) -> PathBuf {
        let p = self.path("usr/bin/vcgencmd");
        self.write(
            "usr/bin/vcgencmd",
            &format!("#!/bin/sh\necho throttled={value}\n"),
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
}

fn config(backend: BackendChoice, resources: &Path) -> Config {
    let mut c = tiny_config();
    c.backend = backend;
    c.hailo.resources_dir = resources.to_path_buf();
    c.server.port = free_port();
    c
}

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
}

fn outcome(checks: &[Check], name: &str) -> Outcome {
    find(checks, name).outcome
}

#[test]
fn doctor_healthy_device_side_passes() {
    let fake = FakeSystem::healthy();
    let mut env = fake.env();
    env.vcgencmd = Some(fake.vcgencmd("0x0"));
    let c = config(BackendChoice::Hailo, &fake.path("resources"));
    let checks = doctor::run(Ok(c), "test.yaml", &env);
    for name in [
        "config",
        "device node",
        "device access",
        "group membership",
        "HailoRT library",
        "driver",
        "memory",
        "temperature",
        "device users",
        "port",
    ] {
        assert_eq!(
            outcome(&checks, name),
            Outcome::Pass,
            "{:?}",
            find(&checks, name)
        );
    }
    assert!(find(&checks, "HailoRT library")
        .detail
        .contains("libhailort 5.2.0"));
    assert!(find(&checks, "driver")
        .detail
        .contains("hailo1x_pci 5.2.0 matches libhailort 5.2.0"));
    assert!(find(&checks, "group membership")
        .detail
        .contains("hailo-clip is in group hailo"));
    assert_eq!(
        find(&checks, "temperature").detail,
        "52.1 °C, not throttled"
    );
    assert_eq!(
        find(&checks, "memory").detail,
        "5859 MiB available; MemoryMax 3072 MiB"
    );
    assert!(find(&checks, "device users")
        .detail
        .contains("only hailo-clip holds /dev/hailo0"));
    // The bundled model is random: a warning, not a pass.
    assert_eq!(outcome(&checks, "CPU model"), Outcome::Warn);
    // No HEFs in the resources dir: with backend hailo that fails, naming the file.
    let hailo = find(&checks, "Hailo models");
    assert_eq!(hailo.outcome, Outcome::Fail);
    assert!(
        hailo.detail.contains("clip_vit_b_32_image_encoder.hef"),
        "{}",
        hailo.detail
    );
    // Nothing is serving on the port.
    assert_eq!(outcome(&checks, "service"), Outcome::Fail);
    let mut out = Vec::new();
    assert!(!doctor::report(&checks, &mut out).unwrap());
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("FAIL  service"), "{text}");
    assert!(
        text.contains("fix: sudo systemctl start hailo-clip"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("2 failed"), "{text}");
}

#[test]
fn doctor_missing_device_depends_on_backend() {
    let fake = FakeSystem::healthy();
    std::fs::remove_file(fake.path("dev/hailo0")).unwrap();
    std::fs::remove_file(fake.path("sys/module/hailo1x_pci/version")).unwrap();
    std::fs::remove_file(fake.path("usr/lib/libhailort.so.5.2.0")).unwrap();
    let res = fake.path("resources");
    let hailo = doctor::run(Ok(config(BackendChoice::Hailo, &res)), "t", &fake.env());
    let auto = doctor::run(Ok(config(BackendChoice::Auto, &res)), "t", &fake.env());
    let cpu = doctor::run(Ok(config(BackendChoice::Cpu, &res)), "t", &fake.env());
    for name in ["device node", "HailoRT library", "driver"] {
        assert_eq!(outcome(&hailo, name), Outcome::Fail, "{name}");
        assert_eq!(outcome(&auto, name), Outcome::Warn, "{name}");
        assert_eq!(outcome(&cpu, name), Outcome::Pass, "{name}");
    }
    assert_eq!(
        find(&hailo, "device node").detail,
        "/dev/hailoN (driver 5.2) or /dev/h1x-N (driver 5.3) is missing"
    );
    assert!(find(&hailo, "device node")
        .fix
        .as_ref()
        .unwrap()
        .contains("lspci"));
    assert!(find(&auto, "device node")
        .detail
        .contains("backend: auto will use the CPU"));
    // auto without a device needs the CPU model; a bad model dir then fails.
    let mut c = config(BackendChoice::Auto, &res);
    c.model.dir = "/nonexistent/model".into();
    let checks = doctor::run(Ok(c), "t", &fake.env());
    assert_eq!(outcome(&checks, "CPU model"), Outcome::Fail);
    assert!(find(&checks, "CPU model")
        .detail
        .contains("/nonexistent/model does not exist"));
}

#[test]
fn doctor_group_access_driver_and_heat_problems() {
    let fake = FakeSystem::healthy();
    let gid = std::fs::metadata(fake.path("dev/hailo0")).unwrap().gid();
    fake.write(
        "etc/group",
        &format!("hailo-clip:x:999:\nhailo:x:{gid}:pi\n"),
    );
    fake.write("sys/module/hailo1x_pci/version", "4.23.0\n");
    fake.write("sys/class/thermal/thermal_zone1/temp", "86000\n");
    fake.write("proc/77/comm", "python3\n");
    std::fs::create_dir_all(fake.path("proc/77/fd")).unwrap();
    std::os::unix::fs::symlink("/dev/hailo0", fake.path("proc/77/fd/3")).unwrap();
    let checks = doctor::run(
        Ok(config(BackendChoice::Hailo, &fake.path("r"))),
        "t",
        &fake.env(),
    );
    assert_eq!(outcome(&checks, "device access"), Outcome::Fail);
    let membership = find(&checks, "group membership");
    assert_eq!(membership.outcome, Outcome::Fail);
    assert_eq!(
        membership.fix.as_deref(),
        Some("sudo usermod -aG hailo hailo-clip && sudo systemctl restart hailo-clip")
    );
    let driver = find(&checks, "driver");
    assert_eq!(driver.outcome, Outcome::Fail);
    assert_eq!(
        driver.detail,
        "hailo1x_pci 4.23.0 does not match libhailort 5.2.0: HailoRT refuses to run unless both are the same version, to the patch (HAILO_INVALID_DRIVER_VERSION)"
    );
    assert_eq!(find(&checks, "temperature").outcome, Outcome::Fail);
    assert_eq!(
        find(&checks, "temperature").detail,
        "86.0 °C: the CPU is throttling"
    );
    let users = find(&checks, "device users");
    assert_eq!(users.outcome, Outcome::Warn);
    assert_eq!(users.detail, "pid 77 (python3) also hold /dev/hailo0");

    // World-writable device: access passes without the group.
    std::fs::set_permissions(
        fake.path("dev/hailo0"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let checks = doctor::run(
        Ok(config(BackendChoice::Hailo, &fake.path("r"))),
        "t",
        &fake.env(),
    );
    assert_eq!(outcome(&checks, "device access"), Outcome::Pass);
    assert_eq!(outcome(&checks, "group membership"), Outcome::Pass);

    // No such user at all.
    fake.write("etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    let checks = doctor::run(
        Ok(config(BackendChoice::Hailo, &fake.path("r"))),
        "t",
        &fake.env(),
    );
    assert_eq!(
        find(&checks, "device access").detail,
        "service user hailo-clip does not exist"
    );
}

#[test]
fn doctor_throttling_memory_and_bad_config() {
    let fake = FakeSystem::healthy();
    let mut env = fake.env();
    env.vcgencmd = Some(fake.vcgencmd("0x50005"));
    fake.write("proc/meminfo", "MemAvailable:  300000 kB\n");
    let checks = doctor::run(
        Err("config file /etc/x.yaml: key `server.prot`: unknown field".into()),
        "/etc/x.yaml",
        &env,
    );
    let config = find(&checks, "config");
    assert_eq!(config.outcome, Outcome::Fail);
    assert!(config.detail.contains("server.prot"));
    let temp = find(&checks, "temperature");
    assert_eq!(temp.outcome, Outcome::Warn);
    assert_eq!(temp.detail, "vcgencmd reports: under-voltage, throttled");
    let mem = find(&checks, "memory");
    assert_eq!(mem.outcome, Outcome::Warn);
    assert!(
        mem.detail.starts_with("only 292 MiB available"),
        "{}",
        mem.detail
    );
    // The service's own cgroup near its MemoryMax fails.
    fake.write("proc/meminfo", "MemAvailable:  6000000 kB\n");
    fake.write(
        "sys/fs/cgroup/system.slice/hailo-clip.service/memory.current",
        &format!("{}\n", 2900u64 << 20),
    );
    fake.write(
        "sys/fs/cgroup/system.slice/hailo-clip.service/memory.max",
        &format!("{}\n", 3072u64 << 20),
    );
    let checks = doctor::run(Ok(tiny_config()), "t", &env);
    assert_eq!(
        find(&checks, "memory").detail,
        "hailo-clip uses 2900 MiB of its 3072 MiB MemoryMax"
    );
    assert_eq!(outcome(&checks, "memory"), Outcome::Fail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_port_and_service_against_real_listeners() {
    let fake = FakeSystem::healthy();
    let c = config(BackendChoice::Cpu, &fake.path("r"));
    // Another program on the port.
    let squatter = std::net::TcpListener::bind((c.server.host, c.server.port)).unwrap();
    let env = fake.env();
    let (c2, env2) = (c.clone(), env.clone());
    let checks = tokio::task::spawn_blocking(move || {
        // The squatter accepts but never answers HTTP; drop it after a moment.
        doctor::run(Ok(c2), "t", &env2)
    });
    let _ = squatter.accept();
    drop(squatter);
    let checks = checks.await.unwrap();
    assert_eq!(outcome(&checks, "port"), Outcome::Fail);
    assert!(find(&checks, "port")
        .fix
        .as_ref()
        .unwrap()
        .contains("ss -ltnp"));

    // hailo-clip itself on the port: the port check passes and /health is read.
    let (image, text) = tiny_encoders(&c);
    let service = service_with(&c, image, text).await;
    let app = hailo_clip::http::router(ready_state(service), c.limits.max_body_bytes);
    let listener = tokio::net::TcpListener::bind((c.server.host, c.server.port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let checks = tokio::task::spawn_blocking(move || doctor::run(Ok(c), "t", &env))
        .await
        .unwrap();
    assert_eq!(
        find(&checks, "port")
            .detail
            .split(' ')
            .skip(1)
            .collect::<Vec<_>>()
            .join(" "),
        "is bound by hailo-clip"
    );
    let svc = find(&checks, "service");
    assert_eq!(svc.outcome, Outcome::Warn, "{svc:?}");
    assert!(
        svc.detail
            .contains("is ready: model clip-tiny-random, backend cpu, text encoder on cpu, self-test skipped (random weights)"),
        "{}",
        svc.detail
    );
    assert!(svc.detail.contains("RANDOM weights"));
}

/// Driver 5.3 names the node /dev/h1x-0; a patch-level driver/library difference fails;
/// with hailo.text_encoder: auto and no text HEF the text encoder runs on the CPU.
#[test]
fn doctor_h1x_node_patch_mismatch_and_text_encoder_on_the_cpu() {
    let fake = FakeSystem::healthy();
    std::fs::rename(fake.path("dev/hailo0"), fake.path("dev/h1x-0")).unwrap();
    std::fs::remove_file(fake.path("proc/4242/fd/7")).unwrap();
    std::os::unix::fs::symlink("/dev/h1x-0", fake.path("proc/4242/fd/7")).unwrap();
    fake.write("sys/module/hailo1x_pci/version", "5.2.1\n");
    let res = fake.path("resources");
    fake.write("resources/clip_vit_b_32_image_encoder.hef", "HEF image");
    let checks = doctor::run(Ok(config(BackendChoice::Auto, &res)), "t", &fake.env());
    let node = find(&checks, "device node");
    assert_eq!(node.outcome, Outcome::Pass, "{node:?}");
    assert_eq!(node.detail, "/dev/h1x-0 is present");
    assert_eq!(outcome(&checks, "device access"), Outcome::Pass);
    assert!(find(&checks, "device users")
        .detail
        .contains("only hailo-clip holds /dev/h1x-0"));
    let driver = find(&checks, "driver");
    assert_eq!(driver.outcome, Outcome::Fail);
    assert!(
        driver
            .detail
            .starts_with("hailo1x_pci 5.2.1 does not match libhailort 5.2.0"),
        "{}",
        driver.detail
    );
    let models = find(&checks, "Hailo models");
    assert_eq!(models.outcome, Outcome::Pass, "{models:?}");
    let text = find(&checks, "text encoder");
    assert_eq!(text.outcome, Outcome::Warn, "{text:?}");
    assert!(
        text.detail.starts_with("on the CPU from ")
            && text.detail.contains("clip_vit_b_32_text_encoder.hef"),
        "{}",
        text.detail
    );
    // The CPU model is now needed, so it is checked (the bundled one warns: random).
    assert_eq!(outcome(&checks, "CPU model"), Outcome::Warn);
}

/// Under socket activation the daemon listens where systemd's socket unit says: doctor
/// names it, and warns when server.host/server.port say otherwise (they are ignored).
#[test]
fn doctor_says_where_the_socket_unit_listens() {
    let fake = FakeSystem::healthy();
    let c = config(BackendChoice::Cpu, &fake.path("resources"));
    let checks = doctor::run(Ok(c.clone()), "t", &fake.env());
    assert!(
        checks.iter().all(|c| c.name != "socket"),
        "no socket unit, no check"
    );
    fake.write(
        "etc/systemd/system/hailo-clip.socket",
        &format!(
            "[Socket]\nListenStream={}:{}\n",
            c.server.host, c.server.port
        ),
    );
    let checks = doctor::run(Ok(c.clone()), "t", &fake.env());
    assert_eq!(outcome(&checks, "socket"), Outcome::Pass);
    assert!(find(&checks, "socket")
        .detail
        .contains("server.host/server.port are ignored under systemd"));
    fake.write(
        "etc/systemd/system/hailo-clip.socket",
        "[Socket]\nListenStream=192.168.1.10:5000\n",
    );
    let checks = doctor::run(Ok(c.clone()), "t", &fake.env());
    assert_eq!(outcome(&checks, "socket"), Outcome::Warn);
    let socket = find(&checks, "socket");
    assert!(
        socket.detail.contains("listens on 192.168.1.10:5000")
            && socket.detail.contains(&format!(
                "({}:{}) are ignored",
                c.server.host, c.server.port
            )),
        "{}",
        socket.detail
    );
    // Two listeners: the daemon takes exactly one socket, so it would not start.
    fake.write(
        "etc/systemd/system/hailo-clip.socket",
        "[Socket]\nListenStream=127.0.0.1:5000\nListenStream=[::1]:5000\n",
    );
    let checks = doctor::run(Ok(c.clone()), "t", &fake.env());
    assert_eq!(outcome(&checks, "socket"), Outcome::Fail);
    assert!(find(&checks, "socket")
        .detail
        .contains("has 2 ListenStream= lines"));
}
