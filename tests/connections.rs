//! The daemon against hostile connections, as an attacker on the same network would try it:
//! a flood of idle and half-sent connections under a 1024 open-file limit, a stalled request
//! body, bodies trickled a byte at a time (cut off by their deadline while honest requests
//! are served), the receiving budget, and SIGTERM while a request hangs. Exact outcomes:
//! status codes, closed sockets, the exit code.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `hailo-clip serve` on the tiny model with `yaml` as its config, under an open-file limit
/// of `nofile` (soft and hard, as `ulimit -n` sets it).
fn serve(dir: &Path, yaml: &str, nofile: u64) -> (Child, u16) {
    let port = free_port();
    let config = dir.join("config.yaml");
    std::fs::write(&config, format!("server:\n  port: {port}\n{yaml}")).unwrap();
    let mut cmd = hailo_clip();
    cmd.env("HAILO_CLIP_CONFIG", &config)
        .arg("--model-dir")
        .arg(tiny_model_dir())
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            rlimit::Resource::NOFILE.set(nofile, nofile)?;
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    wait_ready(port);
    (child, port)
}

/// Raises this test process's own open-file limit, for the attacking side.
fn raise_own_limit() {
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    rlimit::Resource::NOFILE.set(hard, hard).unwrap();
    assert!(
        hard >= 2_200,
        "the test needs 2,200 open files; the hard limit is {hard}"
    );
}

/// GET /health on a fresh connection, answered within `within`: (status, body).
fn health_within(port: u16, within: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("/health did not answer within {within:?}: {e}"));
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        response.split("\r\n\r\n").nth(1).unwrap_or("").into(),
    )
}

/// Whether the server closed `s` (EOF or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408 or 400 the server sent before closing
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn flood_of_idle_and_half_open_connections_under_ulimit_1024() {
    raise_own_limit();
    let dir = tempfile::tempdir().unwrap();
    // Default settings but a 2 s header timeout, to see the flood closed within the test.
    let (mut child, port) = serve(dir.path(), "  header_timeout_ms: 2000\n", 1024);
    let mut flood = Vec::new();
    for i in 0..2000 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        if i % 2 == 1 {
            // Half a request line, never finished.
            s.write_all(b"GET /health HTTP/1.1\r\nHost: lo").unwrap();
        }
        flood.push(s);
    }
    // With 2,000 connections open or queued, /health still answers at once.
    for _ in 0..3 {
        let (status, body) = health_within(port, Duration::from_secs(1));
        assert_eq!(status, 200, "{body}");
    }
    // Every flood connection is closed within the header timeout (plus margin): evicted to
    // make room, or timed out.
    let started = Instant::now();
    let mut open = 0;
    for s in &mut flood {
        let left = Duration::from_secs(4)
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(10));
        if !closed_within(s, left) {
            open += 1;
        }
    }
    assert_eq!(open, 0, "{open} flood connections still open after 4 s");
    let (status, _) = health_within(port, Duration::from_secs(1));
    assert_eq!(status, 200);
    sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let log = stderr_log(&mut child);
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(
        log.contains("at most 512 connections, open-file limit 1024"),
        "{log}"
    );
}

#[test]
fn stalled_body_is_408_with_the_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = serve(dir.path(), "  body_timeout_ms: 500\n", 1024);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(
        b"POST /v1/embed/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"text\": ",
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408 "), "{response}");
    assert!(
        response.contains(r#"{"error":{"code":"body_timeout","message":"the request body did not arrive whole within server.body_timeout_ms"}}"#),
        "{response}"
    );
    sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn sigterm_drain_has_a_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = serve(
        dir.path(),
        "  body_timeout_ms: 60000\n  shutdown_timeout_ms: 300\n",
        1024,
    );
    // A request in flight that would hang for a minute: its body never comes.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(
        b"POST /v1/embed/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    sigterm(&child);
    let status = child.wait().unwrap();
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(closed_within(&mut s, Duration::from_secs(1)));
    let log = stderr_log(&mut child);
    assert!(
        log.contains(
            "connections still open after server.shutdown_timeout_ms (300 ms): closing them"
        ),
        "{log}"
    );
    // Bounded by the drain deadline, not the minute the body would take.
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// Opens a connection that promises `length` bytes of classify body and sends one byte of
/// it every `every`, until the server closes it; returns when and with what it was closed.
fn trickle(port: u16, length: usize, every: Duration, started: Instant) -> (Duration, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(every)).unwrap();
    let mut response = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if s.write_all(b" ").is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
        if started.elapsed() > Duration::from_secs(40) {
            break;
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&response).into_owned(),
    )
}

/// 64 connections trickle a byte every 2 s of the 1 MB classify body they promised. No
/// queue permit is held while a body arrives and each body has a deadline (10 s from its
/// headers): every trickler is cut off with 408 by then, and from 15 s on an honest
/// client's classify requests are answered.
#[test]
fn trickled_bodies_are_cut_at_their_deadline_and_cannot_starve_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = serve(dir.path(), "", 1024);
    let started = Instant::now();
    let tricklers: Vec<_> = (0..64)
        .map(|_| {
            std::thread::spawn(move || trickle(port, 1_000_000, Duration::from_secs(2), started))
        })
        .collect();
    let image = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        std::fs::read(fixture("images/chelsea.png")).unwrap(),
    );
    let body = format!(r#"{{"image": "{image}", "prompts": ["cat", "dog"]}}"#);
    let mut late = Vec::new();
    while started.elapsed() < Duration::from_secs(25) {
        let sent = started.elapsed();
        let (status, _) = http_post_json(port, "/v1/classify", &body);
        if sent >= Duration::from_secs(15) {
            late.push(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ok = late.iter().filter(|&&s| s == 200).count();
    println!(
        "honest client from 15 s on: {ok} of {} answered 200 ({late:?})",
        late.len()
    );
    assert!(late.len() >= 20, "{late:?}");
    assert!(
        ok * 100 >= late.len() * 95,
        "{ok} of {}: {late:?}",
        late.len()
    );
    for trickler in tricklers {
        let (closed_at, response) = trickler.join().unwrap();
        assert!(response.starts_with("HTTP/1.1 408 "), "{response}");
        assert!(response.contains(r#""code":"body_timeout""#), "{response}");
        // The deadline is 10 s from the headers; the first read that sees the close comes
        // at most one trickle period later.
        assert!(
            closed_at < Duration::from_secs(13),
            "closed at {closed_at:?}"
        );
    }
    sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// The receiving budget is its own limit, taken in 64 KiB steps as bytes arrive: with 1 MiB
/// of bodies at once, an upload that sent 700 000 bytes holds 704 KiB and a trickler that
/// promised 900 KB but sent one byte holds 64 KiB; a request that fits beside them is served;
/// an upload whose next step does not fit is answered 503 receiving_busy with Retry-After and
/// its connection closed; once the first upload is done, uploads are received again.
#[test]
fn bodies_being_received_have_their_own_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = serve(
        dir.path(),
        "limits:\n  receiving_mb: 1\n  max_body_bytes: 1048576\n",
        1024,
    );
    let upload = |sent: usize| {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .write_all(b"POST /v1/embed/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 900000\r\n\r\n{")
            .unwrap();
        stream.write_all(&vec![b' '; sent - 1]).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
    };
    let mut first = upload(700_000);
    let _trickler = upload(1);
    std::thread::sleep(Duration::from_millis(300));
    // 768 KiB held: a small request's step fits beside them.
    let (status, _) = http_post_json(port, "/v1/embed/text", r#"{"text": ["a cat"]}"#);
    assert_eq!(status, 200);
    // An upload past 256 KiB needs a fifth step, and only four are left.
    let mut third = upload(256 * 1024 + 1);
    let mut buf = [0u8; 4096];
    let n = third.read(&mut buf).unwrap();
    let response = String::from_utf8_lossy(&buf[..n]);
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    let lower = response.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1"), "{response}");
    assert!(lower.contains("connection: close"), "{response}");
    assert!(
        response.contains(r#""code":"receiving_busy""#),
        "{response}"
    );
    // The first upload finishes (a bad body, but received): its steps are free again.
    first.write_all(&vec![b' '; 200_000]).unwrap();
    let n = first.read(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let mut fourth = upload(512 * 1024);
    fourth
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        fourth.read(&mut buf).is_err(),
        "a fourth upload is received (no answer until its body is done)"
    );
    sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
