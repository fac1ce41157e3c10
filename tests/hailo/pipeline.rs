//! Several jobs in flight on the double's costed device (`device_cost`): the image encoder keeps
//! `hailo.jobs_in_flight` jobs submitted and returns every result in order; a job whose
//! collector timed out keeps its buffers until its completion (the double logs
//! "input-changed" if its input was overwritten before then); buffers are DMA-mapped once
//! where the device offers it, and work unmapped where it does not.
use std::time::{Duration, Instant};

use crate::common::hailo::*;
use crate::common::scratch;
use hailo_clip::backends::hailo::ffi::{Device, HailoErrorKind};
use hailo_clip::backends::hailo::{open_device, HailoImageEncoder, HailoSession};
use hailo_clip::config::JobsInFlight;
use hailo_clip::encoder::{Encoder, ImageEncoder};
use image::RgbImage;

/// The double's log lines: (frames, jobs in flight, mapped buffers) per submission, and
/// the completion lines as written.
fn read_log(path: &std::path::Path) -> (Vec<(usize, usize, usize)>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut submitted = Vec::new();
    let mut done = Vec::new();
    for line in text.lines() {
        if line.starts_with("batch") {
            continue;
        }
        if line.starts_with("done") {
            done.push(line.to_string());
            continue;
        }
        let field = |name: &str| -> usize {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                .parse()
                .unwrap()
        };
        submitted.push((field("frames="), field("in_flight="), field("mapped=")));
    }
    (submitted, done)
}

fn distinct_images(n: usize) -> Vec<RgbImage> {
    (0..n)
        .map(|i| {
            RgbImage::from_fn(IMAGE_SIZE, IMAGE_SIZE, |x, y| {
                image::Rgb([(i * 20) as u8, (x * 7 + y) as u8, (255 - i * 9) as u8])
            })
        })
        .collect()
}

#[test]
fn hailo_jobs_overlap_on_the_paced_device_and_results_stay_in_order() {
    let dir = scratch();
    let log = dir.path().join("device.log");
    image_hef(
        dir.path(),
        IMAGE_OUT_FLOAT,
        &format!("queue_size 16\ndevice_cost 10 5\nlog {}\n", log.display()),
    );
    let mut config = config(dir.path());
    config.hailo.batch_size = 2;
    config.hailo.jobs_in_flight = JobsInFlight::Count(4);
    let device = open_device(&config.hailo).unwrap();
    let session = HailoSession::new(&config.hailo, device);
    let encoder = HailoImageEncoder::load(&session, &config.hailo).unwrap();
    assert_eq!(encoder.jobs_in_flight(), 4);
    let images = distinct_images(12);
    let started = Instant::now();
    let rows = encoder.encode_images(&images).unwrap();
    let elapsed = started.elapsed();
    for (i, image) in images.iter().enumerate() {
        let expected = expected_image(image, None);
        let got = rows.row(i).to_vec();
        assert_eq!(got, expected, "row {i} is not image {i}'s embedding");
    }
    let (submitted, done) = read_log(&log);
    assert_eq!(submitted.len(), 6, "12 images in jobs of 2");
    let most = submitted.iter().map(|s| s.1).max().unwrap();
    println!(
        "jobs in flight at submission: {:?}; 12 frames in {elapsed:?}",
        submitted.iter().map(|s| s.1).collect::<Vec<_>>()
    );
    // Up to 4 at once, never more; how many overlap depends on how fast this host submits
    // against the device's 20 ms jobs, so only "more than one" is required.
    assert!((2..=4).contains(&most), "jobs in flight: {submitted:?}");
    // Every buffer of a job (2 frames, an input and an output each) was mapped in advance.
    assert!(submitted.iter().all(|s| s.2 == 4), "{submitted:?}");
    assert_eq!(done.len(), 6);
    assert!(done.iter().all(|l| l == "done frames=2"), "{done:?}");
    // The device runs one batch of at most 2 frames at a time, each 10 + 2 x 5 ms: 12
    // frames cannot take less than 6 x 20 ms. What came back came from the costed double.
    assert!(elapsed >= Duration::from_millis(120), "{elapsed:?}");
}

#[test]
fn hailo_concurrent_calls_share_the_device_each_with_its_own_results() {
    let dir = scratch();
    let log = dir.path().join("device.log");
    image_hef(
        dir.path(),
        IMAGE_OUT_FLOAT,
        &format!("queue_size 8\ndevice_cost 30 10\nlog {}\n", log.display()),
    );
    let mut config = config(dir.path());
    config.hailo.batch_size = 1;
    let device = open_device(&config.hailo).unwrap();
    let session = HailoSession::new(&config.hailo, device);
    let encoder = HailoImageEncoder::load(&session, &config.hailo).unwrap();
    // auto: one job on the device and one behind it (config::AUTO_JOBS_IN_FLIGHT), jobs
    // of one frame.
    assert_eq!(encoder.jobs_in_flight(), 2);
    let images = distinct_images(8);
    std::thread::scope(|scope| {
        let calls: Vec<_> = images
            .iter()
            .map(|image| {
                let encoder = &encoder;
                scope.spawn(move || encoder.encode_images(std::slice::from_ref(image)).unwrap())
            })
            .collect();
        for (image, call) in images.iter().zip(calls) {
            assert_eq!(
                call.join().unwrap().row(0).to_vec(),
                expected_image(image, None)
            );
        }
    });
    let (submitted, _) = read_log(&log);
    let most = submitted.iter().map(|s| s.1).max().unwrap();
    println!(
        "jobs in flight at submission: {:?}",
        submitted.iter().map(|s| s.1).collect::<Vec<_>>()
    );
    assert!(
        most > 1,
        "calls from several threads overlap on the device: {submitted:?}"
    );
}

#[test]
fn hailo_timed_out_job_keeps_its_buffers_until_its_completion() {
    let dir = scratch();
    let log = dir.path().join("device.log");
    let hef = image_hef(
        dir.path(),
        IMAGE_OUT_FLOAT,
        &format!("device_cost 300 0\nlog {}\n", log.display()),
    );
    let device = Device::open("SHARED", None).unwrap();
    let mut model = device.load_model(&hef).unwrap();
    // One job slot: the next job can only use the timed-out job's buffers.
    model.configure(1, 1).unwrap();
    assert_eq!(model.jobs(), 1);
    let frame_in = model.inputs()[0].frame_size;
    let frame_out = model.outputs()[0].frame_size;
    let mut output = vec![0u8; frame_out];
    let err = model
        .run(
            1,
            &[&vec![3u8; frame_in]],
            &mut [&mut output],
            Duration::from_millis(30),
        )
        .unwrap_err();
    assert_eq!(err.kind, HailoErrorKind::Timeout, "{}", err.message);
    // The next job waits for the slot until the device is done with the first (300 ms
    // after it was submitted), then runs in the same buffers.
    let started = Instant::now();
    let image = RgbImage::from_pixel(IMAGE_SIZE, IMAGE_SIZE, image::Rgb([90, 90, 90]));
    model
        .run(
            1,
            &[image.as_raw()],
            &mut [&mut output],
            Duration::from_secs(5),
        )
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(output, expected_image_bytes(&image));
    let (submitted, done) = read_log(&log);
    assert_eq!(submitted.len(), 2);
    assert_eq!(
        done,
        vec!["done frames=1", "done frames=1"],
        "the first job's input was overwritten before its completion"
    );
    assert!(
        waited >= Duration::from_millis(200),
        "the second job did not wait for the slot: {waited:?}"
    );
}

#[test]
fn hailo_without_dma_mapping_runs_on_unmapped_buffers() {
    let dir = scratch();
    let log = dir.path().join("device.log");
    let hef = image_hef(
        dir.path(),
        IMAGE_OUT_FLOAT,
        &format!("log {}\n", log.display()),
    );
    let plain = Device::open("SHARED", Some(&DeviceFile::new("ok no-dma-map").id())).unwrap();
    let mut model = plain.load_model(&hef).unwrap();
    model.configure(2, 3).unwrap();
    assert_eq!((model.jobs(), model.mapped_buffers()), (3, 0));
    let mapped_device = Device::open("SHARED", None).unwrap();
    let mut mapped = mapped_device.load_model(&hef).unwrap();
    mapped.configure(2, 3).unwrap();
    // 3 jobs of 2 frames, an input and an output buffer each.
    assert_eq!(mapped.mapped_buffers(), 12);
    let image = RgbImage::from_pixel(IMAGE_SIZE, IMAGE_SIZE, image::Rgb([1, 2, 3]));
    let mut output = vec![0u8; model.outputs()[0].frame_size];
    model
        .run(
            1,
            &[image.as_raw()],
            &mut [&mut output],
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(output, expected_image_bytes(&image));
    // A collect with the wrong number of output buffers is refused before the shim reads
    // them; the job is then abandoned and its slot comes back.
    let job = model
        .submit(1, &[image.as_raw()], Duration::from_secs(5))
        .unwrap();
    let err = job.collect(&mut [], Duration::from_secs(5)).unwrap_err();
    assert_eq!(err.kind, HailoErrorKind::ShapeMismatch, "{}", err.message);
    for _ in 0..3 {
        model
            .run(
                1,
                &[image.as_raw()],
                &mut [&mut output],
                Duration::from_secs(5),
            )
            .unwrap();
    }
    let (submitted, _) = read_log(&log);
    assert_eq!(submitted[0], (1, 1, 0));
    assert_eq!(submitted.len(), 5);
}

/// The double's device does what HailoRT's scheduler does (hailort v5.2.0 scheduler.cpp,
/// switch_core_op): an idle device starts on the frames that are there; frames that arrive
/// while it works wait, and the next batch takes all of them (up to the batch size), across
/// jobs. Each batch costs FIXED + n x FRAME.
#[test]
fn hailo_double_device_batches_frames_that_wait_as_the_scheduler_does() {
    let dir = scratch();
    let log = dir.path().join("device.log");
    let hef = image_hef(
        dir.path(),
        IMAGE_OUT_FLOAT,
        &format!("queue_size 8\ndevice_cost 200 10\nlog {}\n", log.display()),
    );
    let device = Device::open("SHARED", None).unwrap();
    let mut model = device.load_model(&hef).unwrap();
    model.configure(4, 4).unwrap();
    let images = distinct_images(4);
    let started = Instant::now();
    // A job of one frame finds the device idle and runs alone; three more submitted once
    // the device has started on it wait, and run as one batch.
    let submit = |image: &RgbImage| {
        model
            .submit(1, &[image.as_raw()], Duration::from_secs(5))
            .unwrap()
    };
    let mut jobs = vec![submit(&images[0])];
    let batch_started = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("batch frames=1")
    };
    while !batch_started() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the device never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    jobs.extend(images[1..].iter().map(submit));
    let frame_out = model.outputs()[0].frame_size;
    for (job, image) in jobs.into_iter().zip(&images) {
        let mut output = vec![0u8; frame_out];
        job.collect(&mut [&mut output], Duration::from_secs(5))
            .unwrap();
        assert_eq!(output, expected_image_bytes(image));
    }
    let took = started.elapsed();
    let text = std::fs::read_to_string(&log).unwrap();
    let batches: Vec<&str> = text.lines().filter(|l| l.starts_with("batch")).collect();
    assert_eq!(batches, ["batch frames=1", "batch frames=3"], "{text}");
    // 210 ms for the first batch and 230 for the second, back to back.
    assert!(took >= Duration::from_millis(440), "{took:?}");
}
