//! The daemon under a service manager: the sd_notify conversation (STATUS while loading,
//! READY=1 only after warm-up, WATCHDOG=1, STOPPING=1) read from a real NOTIFY_SOCKET, and
//! SIGTERM letting in-flight requests finish before a clean exit.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;

fn get_status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path).map(|(status, _)| status)
}

#[test]
fn sd_notify_ready_only_after_warm_up_then_watchdog_and_stopping() {
    let socket_path =
        std::env::temp_dir().join(format!("hailo-clip-notify-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let port = free_port();
    let mut child = spawn_serve(
        port,
        &[
            ("NOTIFY_SOCKET", socket_path.display().to_string()),
            ("WATCHDOG_USEC", "400000".into()),
        ],
    );
    let mut messages: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    // Collect until two watchdog pings have arrived after READY.
    while messages.iter().filter(|m| m.contains("WATCHDOG=1")).count() < 2 {
        assert!(Instant::now() < deadline, "messages so far: {messages:?}");
        let n = socket.recv(&mut buf).unwrap();
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        if msg.contains("READY=1") {
            // READY means ready: /health must already answer 200.
            assert_eq!(get_status(port, "/health"), Some(200));
        }
        messages.push(msg);
    }
    let ready = messages
        .iter()
        .position(|m| m.contains("READY=1"))
        .expect("READY=1 sent");
    let loading = messages
        .iter()
        .position(|m| m.contains("STATUS=loading encoders"))
        .expect("loading status");
    let warming = messages
        .iter()
        .position(|m| m.contains("STATUS=warming up"))
        .expect("warm-up status");
    assert!(loading < warming && warming < ready, "{messages:?}");
    assert!(messages[ready].contains("STATUS=ready: serving on http://127.0.0.1:"));
    assert!(
        messages
            .iter()
            .position(|m| m.contains("WATCHDOG=1"))
            .unwrap()
            > ready
    );

    sigterm(&child);
    let n = socket.recv(&mut buf).unwrap();
    let mut last = String::from_utf8_lossy(&buf[..n]).to_string();
    while last.contains("WATCHDOG=1") {
        let n = socket.recv(&mut buf).unwrap();
        last = String::from_utf8_lossy(&buf[..n]).to_string();
    }
    assert!(last.contains("STOPPING=1"), "{last}");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let _ = std::fs::remove_file(&socket_path);
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let port = free_port();
    let mut child = spawn_serve(port, &[]);
    wait_ready(port);
    let image = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(fixture("images/rocket.jpg")).unwrap());
    // Twelve requests of 100 new prompts each: one worker needs well over a second for
    // them, so SIGTERM lands while most are queued or running.
    let requests = 12;
    let handles: Vec<_> = (0..requests)
        .map(|r| {
            let prompts: Vec<String> = (0..100)
                .map(|i| format!("request {r} prompt {i}"))
                .collect();
            let body = serde_json::json!({"image": image, "prompts": prompts, "template": "{}"})
                .to_string();
            std::thread::spawn(move || {
                let result = http_post_json(port, "/v1/classify", &body);
                (result, Instant::now())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let killed_at = Instant::now();
    sigterm(&child);
    let mut finished_after_kill = 0;
    for h in handles {
        let ((status, body), done) = h.join().unwrap();
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["classifications"].as_array().unwrap().len(), 100);
        if done > killed_at {
            finished_after_kill += 1;
        }
    }
    assert!(
        finished_after_kill > 0,
        "every request finished before SIGTERM; the test proved nothing"
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // After the exit nothing listens.
    assert_eq!(get_status(port, "/health"), None);
    let log = stderr_log(&mut child);
    assert!(
        log.contains("shutting down: no new connections, finishing in-flight requests"),
        "{log}"
    );
    assert!(log.contains("encoders released"), "{log}");
}

#[test]
fn failed_start_leaves_the_reason_as_status_and_never_says_ready() {
    let socket_path = std::env::temp_dir().join(format!(
        "hailo-clip-notify-fail-{}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let out = hailo_clip()
        .env("NOTIFY_SOCKET", &socket_path)
        .args([
            "--model-dir",
            "/nonexistent/model",
            "serve",
            "--port",
            &free_port().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    socket.set_nonblocking(true).unwrap();
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(
        !messages.iter().any(|m| m.contains("READY=1")),
        "{messages:?}"
    );
    let last = messages.last().unwrap();
    assert!(last.contains("STOPPING=1"), "{messages:?}");
    assert!(
        last.contains("STATUS=failed: model directory /nonexistent/model does not exist"),
        "{last}"
    );
    let _ = std::fs::remove_file(&socket_path);
}

/// The watchdog checks what a client sees: with every connection slot taken by requests in
/// progress, /health cannot be reached, so the pings stop (and systemd would restart the
/// daemon); once the slots free up, they resume.
#[test]
fn watchdog_pings_stop_while_the_listener_cannot_answer() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let port = free_port();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("server:\n  port: {port}\n  max_connections: 2\n  body_timeout_ms: 60000\n"),
    )
    .unwrap();
    let mut child = hailo_clip()
        .env("HAILO_CLIP_CONFIG", &config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .arg("--model-dir")
        .arg(tiny_model_dir())
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 4096];
    // Reads messages for `wait`, returning how many were watchdog pings.
    let mut pings_during = |wait: Duration| {
        let until = Instant::now() + wait;
        let mut pings = 0;
        while Instant::now() < until {
            if let Ok(n) = socket.recv(&mut buf) {
                pings += String::from_utf8_lossy(&buf[..n])
                    .matches("WATCHDOG=1")
                    .count();
            }
        }
        pings
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while pings_during(Duration::from_millis(200)) == 0 {
        assert!(Instant::now() < deadline, "no watchdog ping after start-up");
    }
    // Two requests whose bodies never come take both slots.
    let stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"POST /v1/embed/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{").unwrap();
            s
        })
        .collect();
    // A ping already on its way may still arrive; after that, none.
    pings_during(Duration::from_millis(500));
    assert_eq!(
        pings_during(Duration::from_millis(1500)),
        0,
        "pinged while unreachable"
    );
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pings_during(Duration::from_millis(200)) == 0 {
        assert!(Instant::now() < deadline, "pings did not resume");
    }
    sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let log = stderr_log(&mut child);
    assert!(
        log.contains("/health does not answer: withholding the watchdog ping"),
        "{log}"
    );
}

/// Socket activation as systemd does it (sd_listen_fds(3)): the listening socket at fd 3,
/// `LISTEN_FDS=1` and `LISTEN_PID` the daemon's own pid (a shell that `exec`s the daemon
/// keeps its pid). The daemon serves on the socket it was handed, binds nothing itself, and
/// a connection made before it started waits in the socket's backlog and is answered.
#[test]
fn socket_activation_serves_on_the_listener_it_is_handed() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Connected before the daemon exists: the kernel queues it.
    let mut early = TcpStream::connect(("127.0.0.1", port)).unwrap();
    early
        .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let fd = listener.as_raw_fd();
    let daemon = hailo_clip();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
        .arg(daemon.get_program())
        .args(daemon.get_args())
        .arg("--model-dir")
        .arg(tiny_model_dir())
        // A port that is not the socket's: the daemon must not bind it.
        .args(["serve", "--port", &free_port().to_string()])
        .envs(daemon.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .env_remove("HAILO_CLIP_MODEL_DIR")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: dup2 and fcntl are async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec: clear it in any case.
            if libc::dup2(fd, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(listener);
    early
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut answer = String::new();
    if let Err(e) = early.read_to_string(&mut answer) {
        let _ = child.kill();
        panic!(
            "the early connection: {e}; daemon log:\n{}",
            stderr_log(&mut child)
        );
    }
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("pong"), "{answer}");
    wait_ready(port);
    sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let log = stderr_log(&mut child);
    assert!(
        log.contains(&format!(
            "listening on http://127.0.0.1:{port} (socket from systemd;"
        )),
        "{log}"
    );
    // The config's own address does not count under socket activation, and the log says so.
    assert!(
        log.contains(&format!(
            "systemd handed over the socket on 127.0.0.1:{port}: server.host and server.port"
        )) && log.contains("are ignored"),
        "{log}"
    );
}
