//! 64 concurrent worst-case images, 40 MP 16-bit RGBA PNGs (320 MB each once decoded, 570 MB
//! at the decoder's peak), against the daemon with its default limits: the decode memory
//! budget keeps the daemon's peak RSS far below the unit's MemoryMax (3 GiB). Past the 32
//! admitted at once (performance.max_queue_size) requests get 503 queue_full at once; the
//! admitted ones wait for budget or get 503 decode_memory_busy; none fails otherwise, and
//! the process lives.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageBuffer, ImageEncoder, Rgba};

/// A 8000×5000 (40 MP, the default limit) 16-bit RGBA PNG; one colour, so it is small.
fn worst_case_png() -> Vec<u8> {
    let image: ImageBuffer<Rgba<u16>, Vec<u16>> =
        ImageBuffer::from_pixel(8000, 5000, Rgba([9000, 30000, 12000, 65535]));
    let raw: &[u8] = bytemuck_cast(image.as_raw());
    let mut png = Vec::new();
    PngEncoder::new_with_quality(&mut png, CompressionType::Default, FilterType::NoFilter)
        .write_image(raw, 8000, 5000, image::ExtendedColorType::Rgba16)
        .unwrap();
    png
}

/// The u16 samples as native-endian bytes, which is what the encoder takes for Rgba16.
fn bytemuck_cast(samples: &[u16]) -> &[u8] {
    // SAFETY: u8 has no alignment or validity requirements; the length covers the same memory.
    unsafe { std::slice::from_raw_parts(samples.as_ptr().cast(), std::mem::size_of_val(samples)) }
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

fn post_image(port: u16, png: &[u8]) -> (u16, String) {
    let head = b"--B\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\n";
    let tail = b"\r\n--B--\r\n";
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "POST /v1/embed/image HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        head.len() + png.len() + tail.len()
    )
    .unwrap();
    s.write_all(head).unwrap();
    s.write_all(png).unwrap();
    s.write_all(tail).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        response.split("\r\n\r\n").nth(1).unwrap_or("").into(),
    )
}

#[test]
fn sixty_four_worst_case_images_stay_within_the_memory_budget() {
    let png = std::sync::Arc::new(worst_case_png());
    assert!(png.len() < 16 << 20, "{} bytes", png.len());
    let port = free_port();
    let mut child = spawn_serve(port, &[]);
    wait_ready(port);
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let png = png.clone();
            std::thread::spawn(move || post_image(port, &png))
        })
        .collect();
    let answers: Vec<(u16, String)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    for (status, body) in &answers {
        assert!(
            *status == 200
                || (*status == 503
                    && (body.contains("\"decode_memory_busy\"")
                        || body.contains("\"queue_full\""))),
            "{status} {body}"
        );
    }
    assert!(ok >= 1, "no image got through: {:?}", answers[0]);
    let peak = peak_rss_mib(child.id());
    eprintln!(
        "64 worst-case images: {ok} embedded, {} refused with 503; daemon peak RSS {peak} MiB",
        64 - ok
    );
    // Budget 1024 MiB + the tiny model and runtime; MemoryMax is 3072 MiB.
    assert!(peak < 1536, "peak RSS {peak} MiB");
    sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
