//! The HailoRT shim through its safe Rust owners (backends::hailo::ffi) on the test double:
//! stream descriptions, format changes, buffer checks, handle lifetimes, and a run that
//! times out while the device still writes into its buffers. Run under valgrind or
//! AddressSanitizer to check the memory side (see docs/HAILO.md).
use std::time::Duration;

use crate::common::hailo::*;
use crate::common::scratch;
use hailo_clip::backends::hailo::ffi::{
    self, Device, Direction, ElementOrder, ElementType, HailoErrorKind,
};

const LONG: Duration = Duration::from_secs(5);

#[test]
fn hailo_ffi_describes_streams_and_converts_formats() {
    let dir = scratch();
    let hef = text_hef(dir.path(), "");
    assert_eq!(ffi::library_version().unwrap(), "5.2.0");
    let device = Device::open("SHARED", None).unwrap();
    assert_eq!(device.id(), "fake-hailo10h:0");
    let mut model = device.load_model(&hef).unwrap();
    let input = model.inputs()[0].clone();
    assert_eq!(
        (
            input.name.as_str(),
            input.height,
            input.width,
            input.features
        ),
        ("tokens", 1, 77, 32)
    );
    assert_eq!(
        (input.element, input.order, input.frame_size),
        (ElementType::Uint16, ElementOrder::Nhwc, 77 * 32 * 2)
    );
    let output = &model.outputs()[0];
    assert_eq!(
        (output.quant_count, output.qp_zp, output.qp_scale),
        (1, 32768.0, 0.0001)
    );
    model
        .set_format(Direction::Input, 0, ElementType::Float32, false)
        .unwrap();
    assert_eq!(model.inputs()[0].element, ElementType::Float32);
    assert_eq!(model.inputs()[0].frame_size, 77 * 32 * 4);
    assert_eq!(model.max_frames(), 0);
    assert_eq!(model.configure(3, 0).unwrap(), 3);
    let err = model
        .set_format(Direction::Input, 0, ElementType::Uint8, false)
        .unwrap_err();
    assert_eq!(err.kind, HailoErrorKind::Failed);
    assert!(err.message.contains("before configure"), "{}", err.message);
}

#[test]
fn hailo_ffi_checks_buffers_and_frame_counts() {
    let dir = scratch();
    let hef = image_hef(dir.path(), IMAGE_OUT_FLOAT, "");
    let device = Device::open("SHARED", None).unwrap();
    let mut model = device.load_model(&hef).unwrap();
    let frame_in = model.inputs()[0].frame_size;
    let frame_out = model.outputs()[0].frame_size;
    let input = vec![7u8; 2 * frame_in];
    let mut output = vec![0u8; 2 * frame_out];

    let err = model
        .run(
            1,
            &[&input[..frame_in]],
            &mut [&mut output[..frame_out]],
            LONG,
        )
        .unwrap_err();
    assert!(
        err.message.contains("before hc_model_configure"),
        "{}",
        err.message
    );

    model.configure(2, 0).unwrap();
    for frames in [0, 3] {
        let err = model
            .run(frames, &[&input], &mut [&mut output], LONG)
            .unwrap_err();
        assert_eq!(err.kind, HailoErrorKind::ShapeMismatch, "{}", err.message);
    }
    let err = model
        .run(2, &[&input[1..]], &mut [&mut output], LONG)
        .unwrap_err();
    assert_eq!(err.kind, HailoErrorKind::ShapeMismatch);
    assert!(err.message.contains("input images"), "{}", err.message);
    let err = model
        .run(2, &[&input], &mut [&mut output[1..]], LONG)
        .unwrap_err();
    assert_eq!(err.kind, HailoErrorKind::ShapeMismatch);
    let err = model.run(2, &[], &mut [&mut output], LONG).unwrap_err();
    assert_eq!(err.kind, HailoErrorKind::ShapeMismatch);

    model.run(2, &[&input], &mut [&mut output], LONG).unwrap();
    let grey = image::RgbImage::from_pixel(IMAGE_SIZE, IMAGE_SIZE, image::Rgb([7, 7, 7]));
    let expected = expected_image_bytes(&grey);
    assert_eq!(&output[..frame_out], &expected[..]);
    assert_eq!(&output[frame_out..], &expected[..]);
}

#[test]
fn hailo_ffi_models_outlive_their_device_handle() {
    let dir = scratch();
    let hef = image_hef(dir.path(), IMAGE_OUT_UINT8, "");
    let device = Device::open("SHARED", None).unwrap();
    let mut model = device.load_model(&hef).unwrap();
    drop(device);
    model.configure(1, 0).unwrap();
    let frame_in = model.inputs()[0].frame_size;
    let mut output = vec![0u8; model.outputs()[0].frame_size];
    model
        .run(1, &[&vec![1u8; frame_in]], &mut [&mut output], LONG)
        .unwrap();
}

#[test]
fn hailo_ffi_timed_out_run_keeps_its_buffers_until_the_device_is_done() {
    let dir = scratch();
    let control = dir.path().join("control");
    std::fs::write(&control, "delay 300").unwrap();
    let hef = image_hef(
        dir.path(),
        IMAGE_OUT_UINT8,
        &format!("control {}\n", control.display()),
    );
    let device = Device::open("SHARED", None).unwrap();
    let mut model = device.load_model(&hef).unwrap();
    model.configure(2, 0).unwrap();
    let frame_in = model.inputs()[0].frame_size;
    let frame_out = model.outputs()[0].frame_size;
    {
        // Caller buffers that are gone by the time the device finishes.
        let input = vec![3u8; frame_in];
        let mut output = vec![0u8; frame_out];
        let err = model
            .run(1, &[&input], &mut [&mut output], Duration::from_millis(20))
            .unwrap_err();
        assert_eq!(err.kind, HailoErrorKind::Timeout, "{}", err.message);
        assert!(
            output.iter().all(|&b| b == 0),
            "a timed-out run must not write the caller's buffer"
        );
    }
    // Another run queues beside the slow one and gets its own result.
    std::fs::write(&control, "ok").unwrap();
    let mut output = vec![0u8; frame_out];
    model
        .run(1, &[&vec![200u8; frame_in]], &mut [&mut output], LONG)
        .unwrap();
    let image = image::RgbImage::from_pixel(IMAGE_SIZE, IMAGE_SIZE, image::Rgb([200, 200, 200]));
    let expected: Vec<u8> = expected_image(&image, None)
        .iter()
        .map(|&v| {
            ((f64::from(v) / f64::from(IMAGE_QUANT.scale) + f64::from(IMAGE_QUANT.zp))
                .round()
                .clamp(0.0, 255.0)) as u8
        })
        .collect();
    assert_eq!(output, expected);
    // Let the slow run finish in the background, then start another slow one and release
    // the model while it is in flight: the pipeline aborts it.
    std::thread::sleep(Duration::from_millis(400));
    std::fs::write(&control, "delay 5000").unwrap();
    let err = model
        .run(
            1,
            &[&vec![1u8; frame_in]],
            &mut [&mut output],
            Duration::from_millis(20),
        )
        .unwrap_err();
    assert_eq!(err.kind, HailoErrorKind::Timeout);
    let started = std::time::Instant::now();
    drop(model);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "releasing the model waited for the slow run"
    );
}

#[test]
fn hailo_ffi_rejects_nul_bytes_and_unknown_devices() {
    let err = Device::open("SHA\0RED", None).unwrap_err();
    assert!(err.message.contains("NUL"), "{}", err.message);
    let err = Device::open("SHARED", Some("/tmp/no-such-fake-device")).unwrap_err();
    assert_eq!(err.kind, HailoErrorKind::DeviceNotFound, "{}", err.message);
    let err = Device::open("SHARED", Some("0123456789012345678901234567890123")).unwrap_err();
    assert_eq!(err.kind, HailoErrorKind::DeviceNotFound, "{}", err.message);
}
