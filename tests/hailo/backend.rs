//! The Hailo backend end to end through `backends::load`, on the HailoRT test double
//! (`cargo test --features hailo-fake --test hailo`): exact embeddings through the text path (LUT,
//! padding with 0, EOT row, projection, uint16 dequantization) and the image path (uint8
//! NHWC, uint8 dequantization, f32 for per-channel quantization), batching, start-up
//! errors, busy and timeout faults and recovery, and text on the CPU beside images on Hailo.
use crate::common::hailo::*;
use crate::common::scratch;
use hailo_clip::backends::{self, Encoders};
use hailo_clip::config::{BackendChoice, Config, DevicePath, TextEncoderChoice};
use hailo_clip::encoder::{Backend, EncoderError, EncoderErrorKind};
use hailo_clip::tokenize::EOT_ID;

fn load(config: &Config) -> Encoders {
    backends::load(config).unwrap_or_else(|e| panic!("load failed: {e}"))
}

fn load_err(config: &Config) -> String {
    match backends::load(config) {
        Ok(e) => panic!("load succeeded with backend {}", e.backend),
        Err(e) => e.to_string(),
    }
}

/// A scratch dir with both fake HEFs and a config for them.
fn setup(image_output: &str, image_extra: &str, text_extra: &str) -> (tempfile::TempDir, Config) {
    let dir = scratch();
    image_hef(dir.path(), image_output, image_extra);
    text_hef(dir.path(), text_extra);
    let config = config(dir.path());
    (dir, config)
}

#[test]
fn hailo_text_embedding_is_exact_through_lut_eot_row_and_projection() {
    let (_dir, config) = setup(IMAGE_OUT_UINT8, "", "");
    let encoders = load(&config);
    assert_eq!(encoders.backend, Backend::Hailo);
    assert_eq!(encoders.model.name, "clip-vit-base-patch32");
    assert_eq!(encoders.model.logit_scale, 100.0);
    // Ids from the golden rows: BOS, "a"-ish ids, EOT; a 77-long sequence ends in EOT at 76,
    // so the padding row is EOT's own row rather than LUT[0].
    let short = vec![49406, 320, 1929, EOT_ID];
    let single = vec![49406, EOT_ID];
    let mut full = vec![49406];
    full.extend(std::iter::repeat_n(320, 75));
    full.push(EOT_ID);
    let texts = vec![short, single, full];
    let rows = encoders.text.encode_texts(&texts).unwrap();
    assert_eq!(rows.dim(), (3, DIM));
    for (ids, row) in texts.iter().zip(rows.rows()) {
        assert_close(row.as_slice().unwrap(), &expected_text(ids), 1e-5);
    }
    // The tokenizer is the exported clip_tokenizer.json, and the service-facing path agrees.
    let ids = encoders.tokenizer.encode("a photo of a cat").unwrap();
    let row = encoders
        .text
        .encode_texts(std::slice::from_ref(&ids))
        .unwrap();
    let eot = ids.len() - 1;
    assert_eq!(ids[eot], EOT_ID);
    assert!(row.iter().all(|v| v.is_finite()));
}

#[test]
fn hailo_image_embedding_is_exact_with_uint8_dequantization() {
    let (_dir, config) = setup(IMAGE_OUT_UINT8, "", "");
    let encoders = load(&config);
    assert_eq!(encoders.image.input_size(), IMAGE_SIZE);
    assert_eq!(encoders.image.embedding_dim(), DIM);
    let images = vec![test_image(1), test_image(2), test_image(3)];
    let rows = encoders.image.encode_images(&images).unwrap();
    for (image, row) in images.iter().zip(rows.rows()) {
        assert_eq!(row.to_vec(), expected_image(image, Some(IMAGE_QUANT)));
    }
}

#[test]
fn hailo_image_float_output_and_per_channel_quantization_come_as_f32() {
    for output in [IMAGE_OUT_FLOAT, IMAGE_OUT_PER_CHANNEL] {
        let (_dir, config) = setup(output, "", "");
        let encoders = load(&config);
        let image = test_image(7);
        let rows = encoders
            .image
            .encode_images(std::slice::from_ref(&image))
            .unwrap();
        assert_eq!(
            rows.row(0).to_vec(),
            expected_image(&image, None),
            "{output}"
        );
    }
}

/// The frame count of each job the double's log shows submitted, in order.
fn submitted_frames(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .next()
                .filter(|w| w.starts_with("frames="))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn hailo_batches_up_to_the_batch_size() {
    let dir = scratch();
    let log = dir.path().join("runs.log");
    image_hef(
        dir.path(),
        IMAGE_OUT_UINT8,
        &format!("log {}\n", log.display()),
    );
    text_hef(
        dir.path(),
        &format!("log {}\n", dir.path().join("text.log").display()),
    );
    let mut config = config(dir.path());
    config.hailo.batch_size = 2;
    let encoders = load(&config);
    assert_eq!(encoders.image.max_batch(), 2);
    assert_eq!(encoders.text.max_batch(), 2);
    let images: Vec<_> = (0..5).map(test_image).collect();
    let rows = encoders.image.encode_images(&images).unwrap();
    for (image, row) in images.iter().zip(rows.rows()) {
        assert_eq!(row.to_vec(), expected_image(image, Some(IMAGE_QUANT)));
    }
    assert_eq!(submitted_frames(&log), ["frames=2", "frames=2", "frames=1"]);
    let texts = vec![vec![49406, EOT_ID]; 3];
    encoders.text.encode_texts(&texts).unwrap();
    assert_eq!(
        submitted_frames(&dir.path().join("text.log")),
        ["frames=2", "frames=1"]
    );

    // HailoRT's async queue caps a batch: 4 asked, a queue of 3.
    image_hef(dir.path(), IMAGE_OUT_UINT8, "queue_size 3\n");
    config.hailo.batch_size = 4;
    assert_eq!(load(&config).image.max_batch(), 3);
}

/// Both fake HEFs, the image HEF's runs steered by a control file holding `fault`; the
/// scratch dir, the control file and a config for them.
fn faulty_image_hef(fault: &str) -> (tempfile::TempDir, std::path::PathBuf, Config) {
    let dir = scratch();
    let control = dir.path().join("control");
    std::fs::write(&control, fault).unwrap();
    image_hef(
        dir.path(),
        IMAGE_OUT_UINT8,
        &format!("control {}\n", control.display()),
    );
    text_hef(dir.path(), "");
    let config = config(dir.path());
    (dir, control, config)
}

/// One image through the image encoder.
fn encode_one(encoders: &Encoders, image: &image::RgbImage) -> Result<Vec<f32>, EncoderError> {
    let rows = encoders.image.encode_images(std::slice::from_ref(image))?;
    Ok(rows.row(0).to_vec())
}

#[test]
fn hailo_busy_run_is_a_busy_error_and_the_next_run_recovers() {
    let (_dir, control, mut config) = faulty_image_hef("status HAILO_DEVICE_IN_USE");
    config.hailo.text_encoder = TextEncoderChoice::Hailo;
    let encoders = load(&config);
    let image = test_image(4);
    let err = encode_one(&encoders, &image).unwrap_err();
    assert_eq!(err.kind, EncoderErrorKind::Busy, "{}", err.message);
    assert!(
        err.message.contains("HAILO_DEVICE_IN_USE") && err.message.contains("image.hef"),
        "{}",
        err.message
    );
    // HailoRT shut the pipeline down; the next run configures a new one.
    std::fs::write(&control, "ok").unwrap();
    assert_eq!(
        encode_one(&encoders, &image).unwrap(),
        expected_image(&image, Some(IMAGE_QUANT))
    );
}

#[test]
fn hailo_slow_device_is_a_timeout_and_later_runs_are_unaffected() {
    let (_dir, control, mut config) = faulty_image_hef("delay 1500");
    config.hailo.timeout_ms = 100;
    let encoders = load(&config);
    let (first, second) = (test_image(5), test_image(6));
    let started = std::time::Instant::now();
    let err = encode_one(&encoders, &first).unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1000),
        "the timeout did not cut the wait short"
    );
    assert_eq!(err.kind, EncoderErrorKind::Timeout, "{}", err.message);
    assert!(err.message.contains("HAILO_TIMEOUT"), "{}", err.message);
    // The timed-out run still owns its buffers; a new run gets its own result.
    std::fs::write(&control, "ok").unwrap();
    assert_eq!(
        encode_one(&encoders, &second).unwrap(),
        expected_image(&second, Some(IMAGE_QUANT))
    );
}

#[test]
fn hailo_text_on_cpu_beside_images_on_hailo() {
    let (_dir, mut config) = setup(IMAGE_OUT_UINT8, "", "");
    config.hailo.text_encoder = TextEncoderChoice::Cpu;
    let encoders = load(&config);
    assert_eq!(encoders.backend, Backend::Hailo);
    assert_eq!(encoders.text_reason, "hailo.text_encoder: cpu");
    assert_eq!(encoders.image.info().backend, Backend::Hailo);
    assert_eq!(encoders.text.info().backend, Backend::Cpu);
    assert!(encoders.text.info().source.ends_with("textual.onnx"));
    assert_eq!(encoders.model.name, "clip-tiny-random");
    // The CPU text encoder gives transformers' embeddings (parity is tested elsewhere).
    let ids = encoders.tokenizer.encode("a photo of a cat").unwrap();
    let rows = encoders.text.encode_texts(&[ids]).unwrap();
    let golden: ndarray::Array2<f32> = ndarray_npy::read_npy(golden("text_embeds.npy")).unwrap();
    assert_close(
        rows.row(0).as_slice().unwrap(),
        golden.row(0).as_slice().unwrap(),
        1e-4,
    );
}

#[test]
fn hailo_without_a_device_node_is_a_start_up_error_and_auto_takes_the_cpu() {
    let (_dir, mut config) = setup(IMAGE_OUT_UINT8, "", "");
    config.hailo.device_path = DevicePath::Exact("/nonexistent/hailo0".into());
    let err = load_err(&config);
    assert!(
        err.contains("backend: hailo was requested") && err.contains("/nonexistent/hailo0"),
        "{err}"
    );
    config.backend = BackendChoice::Auto;
    let encoders = load(&config);
    assert_eq!(encoders.backend, Backend::Cpu);
    assert!(
        encoders.reason.contains("Hailo is not usable")
            && encoders.reason.contains("/nonexistent/hailo0"),
        "{}",
        encoders.reason
    );
}

#[test]
fn hailo_auto_picks_the_device_when_it_is_usable() {
    let (_dir, mut config) = setup(IMAGE_OUT_UINT8, "", "");
    config.backend = BackendChoice::Auto;
    let encoders = load(&config);
    assert_eq!(encoders.backend, Backend::Hailo);
    assert!(
        encoders.reason.contains("fake-hailo10h:0") && encoders.reason.contains("HailoRT 5.2.0"),
        "{}",
        encoders.reason
    );
}

#[test]
fn hailo_busy_or_unknown_device_at_start_up() {
    let (_dir, mut config) = setup(IMAGE_OUT_UINT8, "", "");
    let device = DeviceFile::new("HAILO_OUT_OF_PHYSICAL_DEVICES");
    config.hailo.device_id = Some(device.id());
    let err = load_err(&config);
    assert!(
        err.contains("busy") && err.contains("HAILO_OUT_OF_PHYSICAL_DEVICES"),
        "{err}"
    );
    device.set("HAILO_DEVICE_IN_USE");
    assert!(load_err(&config).contains("busy"));

    config.backend = BackendChoice::Auto;
    let encoders = load(&config);
    assert_eq!(encoders.backend, Backend::Cpu);
    assert!(encoders.reason.contains("busy"), "{}", encoders.reason);

    config.backend = BackendChoice::Hailo;
    device.set("HAILO_DRIVER_NOT_INSTALLED");
    let err = load_err(&config);
    assert!(
        err.contains("no usable Hailo device") && err.contains("HAILO_DRIVER_NOT_INSTALLED"),
        "{err}"
    );
    config.hailo.device_id = Some("/tmp/no-such-hailo".into());
    let err = load_err(&config);
    assert!(
        err.contains("no usable Hailo device") && err.contains("HAILO_INVALID_ARGUMENT"),
        "{err}"
    );

    device.set("ok");
    config.hailo.device_id = Some(device.id());
    let encoders = load(&config);
    assert_eq!(encoders.image.info().hailo.unwrap().device_id, device.id());
}

#[test]
fn hailo_bad_hefs_are_start_up_errors_naming_the_file() {
    // (which HEF, its content or None for no file, what the error must say)
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("image.hef", Some("\x00\x01 not a HEF"), "HAILO_INVALID_HEF"),
        (
            "image.hef",
            Some("hailo-clip-fake-hef 1\ntransform image_channel_means\ninput x 16 16 3 int4 nhwc\n"),
            "HAILO_HEF_FILE_CORRUPTED",
        ),
        ("image.hef", None, "does not exist"),
        // An image input that is not a square RGB image.
        (
            "image.hef",
            Some("hailo-clip-fake-hef 1\ntransform image_channel_means\ninput x 16 8 3 uint8 nhwc\noutput y 1 1 32 uint8 nc\n"),
            "square RGB",
        ),
        // A text HEF whose width does not match the token-embedding table (32).
        (
            "text.hef",
            Some("hailo-clip-fake-hef 1\ntransform text_rows\ninput t 1 77 16 float32 nhwc\noutput s 1 77 16 float32 nhwc\n"),
            "77 token embeddings of 32",
        ),
    ];
    for (file, content, expected) in cases {
        let (dir, mut config) = setup(IMAGE_OUT_UINT8, "", "");
        // Explicit: the text HEF's errors are start-up errors, not a move to the CPU.
        config.hailo.text_encoder = TextEncoderChoice::Hailo;
        let path = dir.path().join(file);
        match content {
            Some(text) => std::fs::write(&path, text).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
        let err = load_err(&config);
        assert!(
            err.contains(&path.display().to_string()) && err.contains(expected),
            "{file} {content:?}: {err}"
        );
    }
}

#[test]
fn hailo_bad_text_assets_are_start_up_errors_naming_the_file() {
    let (dir, mut config) = setup(IMAGE_OUT_UINT8, "", "");
    config.hailo.text_encoder = TextEncoderChoice::Hailo;
    let resources = dir.path().join("resources");
    std::fs::create_dir(&resources).unwrap();
    for file in [
        "clip_tokenizer.json",
        "token_embedding_lut.npy",
        "text_projection.npy",
    ] {
        std::fs::copy(text_assets().join(file), resources.join(file)).unwrap();
    }
    config.hailo.resources_dir = resources.clone();
    load(&config);
    ndarray_npy::write_npy(
        resources.join("text_projection.npy"),
        &ndarray::Array2::<f64>::zeros((32, 32)),
    )
    .unwrap();
    let err = load_err(&config);
    assert!(
        err.contains("text_projection.npy") && err.contains("float32"),
        "{err}"
    );
    std::fs::remove_file(resources.join("token_embedding_lut.npy")).unwrap();
    let err = load_err(&config);
    assert!(
        err.contains("token_embedding_lut.npy") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn hailo_health_info_names_device_runtime_and_hef() {
    let (_dir, config) = setup(IMAGE_OUT_UINT8, "", "");
    let encoders = load(&config);
    let info = encoders.image.info();
    assert_eq!(info.backend, Backend::Hailo);
    let hailo = info.hailo.unwrap();
    assert_eq!(
        (
            hailo.device_id.as_str(),
            hailo.hailort_version.as_str(),
            hailo.hef.as_str()
        ),
        ("fake-hailo10h:0", "5.2.0", "image.hef")
    );
    assert_eq!(encoders.text.info().hailo.unwrap().hef, "text.hef");
}

/// HailoRT 5.1 on Pi OS: the Model Zoo has no hailo10h text HEF before 5.2.
#[test]
fn hailo_text_auto_without_a_text_hef_runs_text_on_the_cpu_and_explicit_hailo_is_strict() {
    let (dir, mut config) = setup(IMAGE_OUT_UINT8, "", "");
    let text_hef_path = dir.path().join("text.hef");
    std::fs::remove_file(&text_hef_path).unwrap();
    assert_eq!(
        config.hailo.text_encoder,
        TextEncoderChoice::Auto,
        "the default"
    );
    let encoders = load(&config);
    assert_eq!(encoders.backend, Backend::Hailo);
    assert_eq!(encoders.image.info().backend, Backend::Hailo);
    assert_eq!(encoders.text.info().backend, Backend::Cpu);
    assert!(
        encoders
            .text_reason
            .starts_with("hailo.text_encoder: auto and the text encoder cannot run on the device")
            && encoders
                .text_reason
                .contains(&text_hef_path.display().to_string())
            && encoders
                .text_reason
                .ends_with("so it runs on the CPU engine"),
        "{}",
        encoders.text_reason
    );
    // The CPU text encoder brings its own tokenizer and model facts (model.dir).
    assert_eq!(encoders.model.name, "clip-tiny-random");

    config.hailo.text_encoder = TextEncoderChoice::Hailo;
    let err = load_err(&config);
    assert!(
        err.contains(&text_hef_path.display().to_string()) && err.contains("does not exist"),
        "{err}"
    );

    // Neither a text HEF nor a CPU text model: both are named, with the two ways to get them.
    config.hailo.text_encoder = TextEncoderChoice::Auto;
    config.model.dir = dir.path().join("no-model");
    let err = load_err(&config);
    assert!(
        err.starts_with("no text encoder can run: on the Hailo device, ")
            && err.contains(&text_hef_path.display().to_string())
            && err.contains(&config.model.dir.display().to_string())
            && err.contains("--models hailo10h")
            && err.contains("--models cpu"),
        "{err}"
    );
    // The text HEF back: the device serves the text again, with the Hailo model facts.
    text_hef(dir.path(), "");
    let encoders = load(&config);
    assert_eq!(encoders.text.info().backend, Backend::Hailo);
    assert_eq!(
        encoders.text_reason,
        "hailo.text_encoder: auto and the text HEF and its files loaded"
    );
}

/// hailo-apps' resources: models/hailo10h/*.hef, json/clip_tokenizer.json, npy/*.npy.
#[test]
fn hailo_finds_resources_in_the_hailo_apps_layout() {
    let (dir, mut config) = setup(IMAGE_OUT_UINT8, "", "");
    let root = dir.path().join("resources");
    for (sub, file) in [
        ("json", "clip_tokenizer.json"),
        ("npy", "token_embedding_lut.npy"),
        ("npy", "text_projection.npy"),
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
        std::fs::copy(text_assets().join(file), root.join(sub).join(file)).unwrap();
    }
    let models = root.join("models/hailo10h");
    std::fs::create_dir_all(&models).unwrap();
    for name in [
        "clip_vit_b_32_image_encoder.hef",
        "clip_vit_b_32_text_encoder.hef",
    ] {
        let from = if name.contains("image") {
            "image.hef"
        } else {
            "text.hef"
        };
        std::fs::copy(dir.path().join(from), models.join(name)).unwrap();
    }
    config.hailo.resources_dir = root.clone();
    config.hailo.image_hef = "clip_vit_b_32_image_encoder.hef".into();
    config.hailo.text_hef = "clip_vit_b_32_text_encoder.hef".into();
    config.hailo.text_encoder = TextEncoderChoice::Hailo;
    let encoders = load(&config);
    assert_eq!(
        encoders.image.info().source,
        models
            .join("clip_vit_b_32_image_encoder.hef")
            .display()
            .to_string()
    );
    assert_eq!(
        encoders.text.info().source,
        models
            .join("clip_vit_b_32_text_encoder.hef")
            .display()
            .to_string()
    );
    // Same exact text path as with the flat layout.
    let ids = vec![49406, 320, EOT_ID];
    let rows = encoders
        .text
        .encode_texts(std::slice::from_ref(&ids))
        .unwrap();
    assert_close(rows.row(0).as_slice().unwrap(), &expected_text(&ids), 1e-5);
}

/// libhailort and the kernel driver differ (even by a patch): HailoRT refuses the device.
#[test]
fn hailo_driver_library_version_mismatch_is_a_clear_start_up_error() {
    let (_dir, mut config) = setup(IMAGE_OUT_UINT8, "", "");
    let device = DeviceFile::new("HAILO_INVALID_DRIVER_VERSION");
    config.hailo.device_id = Some(device.id());
    let err = load_err(&config);
    assert!(
        err.contains("HAILO_INVALID_DRIVER_VERSION")
            && err.contains("libhailort 5.2.0")
            && err.contains("the same version, to the patch")
            && err.contains("/sys/module/"),
        "{err}"
    );
    // backend: auto says the same as its reason for serving from the CPU.
    config.backend = BackendChoice::Auto;
    let encoders = load(&config);
    assert_eq!(encoders.backend, Backend::Cpu);
    assert!(
        encoders.reason.contains("HAILO_INVALID_DRIVER_VERSION"),
        "{}",
        encoders.reason
    );
}

/// A model directory as `pull NAME --hef` leaves it: Immich's layout, and in
/// `hailo/hailo10h/` the HEFs (fakes for the double) under the Model Zoo's names and the
/// text files read out of the pulled text graph.
fn pulled_model_dir(root: &std::path::Path, with_text_hef: bool) -> std::path::PathBuf {
    let model = root.join("ViT-B-32__openai");
    crate::common::standin::copy_dir(&crate::common::fixture("immich-tiny-random"), &model);
    let arch = model.join("hailo/hailo10h");
    std::fs::create_dir_all(&arch).unwrap();
    let image = image_hef(root, IMAGE_OUT_UINT8, "");
    std::fs::rename(image, arch.join("clip_vit_b_32_image_encoder.hef")).unwrap();
    if with_text_hef {
        let text = text_hef(root, "");
        std::fs::rename(text, arch.join("clip_vit_b_32_text_encoder.hef")).unwrap();
        let dir = hailo_clip::model::ModelDir::open(&model).unwrap();
        hailo_clip::backends::hailo::assets::export_from_onnx(&dir, &arch).unwrap();
    }
    model
}

/// Only what a user sets: model.dir, and the device for the double. No hailo.* file keys.
fn model_dir_config(root: &std::path::Path, model: &std::path::Path) -> Config {
    std::fs::write(root.join("hailo0"), "").unwrap();
    let mut config = Config {
        backend: BackendChoice::Hailo,
        ..Config::default()
    };
    config.model.dir = model.to_path_buf();
    config.hailo.device_path = DevicePath::Exact(root.join("hailo0"));
    config.selftest.enforce = false;
    config
}

#[test]
fn hailo_model_dir_alone_finds_the_pulled_hefs_and_text_files() {
    let dir = scratch();
    let model = pulled_model_dir(dir.path(), true);
    let config = model_dir_config(dir.path(), &model);
    let encoders = load(&config);
    let arch = model.join("hailo/hailo10h");
    assert_eq!(
        encoders.image.info().source,
        arch.join("clip_vit_b_32_image_encoder.hef")
            .display()
            .to_string()
    );
    assert_eq!(encoders.text.info().backend, Backend::Hailo);
    assert!(encoders
        .text
        .info()
        .source
        .ends_with("hailo/hailo10h/clip_vit_b_32_text_encoder.hef"));
    // The model's name and Immich name follow model.dir (its directory's name, with no pull
    // record), not the hailo.* defaults.
    assert_eq!(encoders.model.name, "ViT-B-32__openai");
    assert_eq!(
        encoders.model.immich_model.as_deref(),
        Some("ViT-B-32__openai")
    );
    assert_eq!(encoders.model.logit_scale, 100.0);
    // The text path runs on the exported files: the EOT row of the LUT through the double.
    let ids = encoders.tokenizer.encode("a photo of a cat").unwrap();
    assert_eq!(encoders.text.encode_texts(&[ids]).unwrap().ncols(), DIM);

    // A key set in the YAML wins over the pulled files.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let mine = image_hef(&other, IMAGE_OUT_UINT8, "");
    let yaml = format!(
        "backend: hailo\nmodel:\n  dir: {}\nhailo:\n  image_hef: {}\n  device_path: {}\nselftest:\n  enforce: false\n",
        model.display(),
        mine.display(),
        dir.path().join("hailo0").display()
    );
    let config = Config::from_yaml(&yaml, std::path::Path::new("t.yaml")).unwrap();
    let encoders = load(&config);
    assert_eq!(encoders.image.info().source, mine.display().to_string());
    assert!(encoders
        .text
        .info()
        .source
        .ends_with("hailo/hailo10h/clip_vit_b_32_text_encoder.hef"));
}

#[test]
fn hailo_without_a_pulled_text_hef_runs_text_on_the_cpu_from_the_same_pull() {
    // hailo10h before Model Zoo v5.2.0: the image HEF only.
    let dir = scratch();
    let model = pulled_model_dir(dir.path(), false);
    let config = model_dir_config(dir.path(), &model);
    let encoders = load(&config);
    assert_eq!(encoders.image.info().backend, Backend::Hailo);
    assert_eq!(encoders.text.info().backend, Backend::Cpu);
    assert_eq!(
        encoders.text.info().source,
        model.join("textual/model.onnx").display().to_string()
    );
    assert!(
        encoders.text_reason.contains("runs on the CPU engine"),
        "{}",
        encoders.text_reason
    );
}

#[test]
fn hailo_every_driver_error_is_a_device_fault() {
    let driver_errors: Vec<&str> = hailo_clip::encoder::DEVICE_FAULT_STATUSES
        .iter()
        .copied()
        .filter(|s| s.starts_with("HAILO_DRIVER_"))
        .collect();
    // hailort.h has six driver errors; the fault statuses list every one.
    assert_eq!(driver_errors.len(), 6, "{driver_errors:?}");
    for status in driver_errors {
        let (_dir, _control, config) = faulty_image_hef(&format!("status {status}"));
        let encoders = load(&config);
        let err = encode_one(&encoders, &test_image(4)).unwrap_err();
        assert_eq!(
            err.kind,
            EncoderErrorKind::Recovering,
            "{status}: {}",
            err.message
        );
        let device = encoders.image.device().unwrap().status();
        assert!(device.recovering, "{status}");
        assert_eq!(device.last_fault_status, Some(status));
        assert!(
            device.last_fault.as_deref().unwrap_or("").contains(status),
            "{status}: {:?}",
            device.last_fault
        );
    }
}
