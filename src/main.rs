//! The `hailo-clip` command: `serve` runs the daemon; `classify`, `embed` and `selftest`
//! run one job through the same service path and exit; `check-config`, `check-model` and
//! `check-text-assets` answer what install.sh asks about a config and model files, with the
//! loaders the daemon uses; `doctor` runs the troubleshooting checklist;
//! `export-text-assets` writes the Hailo text path's files from a model directory's text
//! graph or a Hugging Face checkpoint; `pull` fetches a model (src/fetch/).

use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;

use hailo_clip::config::{self, Config, ConfigSource};
use hailo_clip::daemon;
use hailo_clip::service::{ClassifyRequest, Service};

#[derive(Parser)]
#[command(
    name = "hailo-clip",
    version,
    about = "CLIP zero-shot image classification daemon"
)]
struct Cli {
    /// Config file [default: /etc/hailo/hailo-clip.yaml, built-in defaults if absent]
    #[arg(long, global = true, env = "HAILO_CLIP_CONFIG")]
    config: Option<PathBuf>,
    /// Model directory, overriding model.dir from the config
    #[arg(long, global = true, env = "HAILO_CLIP_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP daemon
    Serve {
        /// Address to bind, overriding server.host
        #[arg(long)]
        host: Option<IpAddr>,
        /// Port to bind, overriding server.port
        #[arg(long)]
        port: Option<u16>,
    },
    /// Classify one image against prompts, without a server
    Classify {
        /// Image file (JPEG, PNG, WebP)
        image: PathBuf,
        /// Prompts to score, e.g. cat dog "a red car"
        #[arg(required = true)]
        prompts: Vec<String>,
        /// Print the API's JSON response instead of a table
        #[arg(long)]
        json: bool,
        /// Keep only the best K prompts
        #[arg(long)]
        top_k: Option<usize>,
        /// Drop prompts scoring below this (0..1)
        #[arg(long)]
        threshold: Option<f32>,
        /// Prompt template(s) with one {} (repeat to ensemble) [default: classify.default_template]
        #[arg(long)]
        template: Vec<String>,
    },
    /// Print L2-normalized embeddings as JSON, one line per input
    Embed {
        #[command(subcommand)]
        what: EmbedWhat,
    },
    /// Validate the config file and print the effective configuration
    CheckConfig {
        /// Print only this key's effective value (dotted, e.g. model.dir or server.port)
        #[arg(long, value_name = "KEY")]
        get: Option<String>,
    },
    /// Check a CPU model directory: its files and manifest, then load both encoders on
    /// the CPU engine and run the warm-up and the self-test (exit 1 with the reason)
    CheckModel {
        dir: PathBuf,
        /// Print only this manifest field (e.g. name, random_weights) after the file
        /// checks, without loading the encoders
        #[arg(long, value_name = "FIELD")]
        get: Option<String>,
    },
    /// Check the Hailo text encoder's files (clip_tokenizer.json, token_embedding_lut.npy,
    /// text_projection.npy) in DIR, flat or in hailo-apps' layout; a pull's MODEL/hailo/ARCH
    /// with MODEL's tokenizer and set-up (exit 1 with the reason)
    CheckTextAssets { dir: PathBuf },
    /// Run the known-answer self-test (photos in assets/selftest/ against fixed labels)
    /// through the configured backend; print a table; exit 1 when an answer is wrong
    Selftest,
    /// Run the troubleshooting checklist: device, groups, HailoRT, driver, models, config,
    /// port, service health, memory, temperature, other device users (exit 1 on any FAIL)
    Doctor {
        /// The account the service runs as
        #[arg(long, default_value = "hailo-clip")]
        user: String,
    },
    /// Write clip_tokenizer.json, token_embedding_lut.npy and text_projection.npy (the
    /// Hailo text encoder's files) from the model directory's text encoder graph (the
    /// global --model-dir, or model.dir), or from a Hugging Face CLIP checkpoint (--hf-dir)
    ExportTextAssets {
        /// Directory of a Hugging Face checkpoint (model.safetensors + tokenizer.json)
        #[arg(long)]
        hf_dir: Option<PathBuf>,
        /// Directory to write into, e.g. /usr/local/hailo/resources (hailo.resources_dir)
        #[arg(long)]
        out: PathBuf,
    },
    /// Fetch a model from the Hugging Face Hub: Immich's ONNX export of NAME
    /// (immich-app/NAME), verified and installed whole; with --hef also its Model Zoo HEFs
    /// and the Hailo text files. Honours HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE.
    Pull {
        /// [ORG/]NAME, e.g. ViT-B-32__openai (NAME alone is immich-app/NAME)
        model: String,
        /// Branch, tag or commit [default: main]
        #[arg(long, default_value = "main")]
        revision: String,
        /// The model directory to install into [default: /usr/local/share/hailo-clip/models/NAME]
        #[arg(long)]
        to: Option<PathBuf>,
        /// Also fetch the Model Zoo HEFs that are this model's twin, into TO/hailo/ARCH/
        #[arg(long)]
        hef: bool,
        /// The Hailo chip: hailo10h, hailo8, hailo8l [default: the device's]
        #[arg(long, requires = "hef")]
        arch: Option<String>,
        /// The Model Zoo version, e.g. v5.2.0 [default: the one of the installed HailoRT]
        #[arg(long, requires = "hef")]
        zoo_version: Option<String>,
        /// The HailoRT version to match instead of the installed library's (X.Y.Z; 5.x means
        /// hailo10h unless --arch says otherwise)
        #[arg(long, requires = "hef", conflicts_with = "zoo_version")]
        hailort_version: Option<String>,
    },
    /// Download one file (e.g. a model tarball) over HTTP(S) into FILE: through FILE.part,
    /// resumed when an earlier run left one, retried, and moved into place only when whole
    /// (and, with --sha256, when its hash matches). install.sh's --model-url uses it.
    Download {
        url: String,
        /// Where to put it
        #[arg(long)]
        to: PathBuf,
        /// The file's expected sha256 (hex)
        #[arg(long)]
        sha256: Option<String>,
    },
}

#[derive(Subcommand)]
enum EmbedWhat {
    /// Embed image files
    Image {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Embed texts (no template applied)
    Text {
        #[arg(required = true)]
        texts: Vec<String>,
    },
}

/// Logs to the journal when systemd connected our stderr to it (JOURNAL_STREAM is set),
/// with proper priorities and fields; to stderr as plain text otherwise.
fn init_logging(level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("hailo_clip={level},tower_http=warn,{level}"))
    });
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(journald) => {
                let _ = tracing_subscriber::registry()
                    .with(filter)
                    .with(journald.with_syslog_identifier("hailo-clip".into()))
                    .try_init();
                return;
            }
            Err(e) => eprintln!("journald unavailable ({e}); logging to stderr"),
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn load_config(cli: &Cli) -> anyhow::Result<(Config, ConfigSource)> {
    let (mut config, source) = config::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.model_dir {
        config.model.dir = dir.clone();
    }
    config.model.find_default();
    Ok((config, source))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Loads and warms up the service for a one-shot command.
async fn one_shot_service(config: &Config) -> anyhow::Result<Service> {
    let (service, _, _) = daemon::load_service(config).await?;
    Ok(service)
}

fn read_file(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

fn print_export(summary: hailo_clip::backends::hailo::assets::ExportSummary) -> anyhow::Result<()> {
    for file in &summary.files {
        println!("wrote {}", file.display());
    }
    println!(
        "vocabulary {}, text hidden size {}, embedding size {}",
        summary.vocabulary, summary.hidden, summary.embedding
    );
    if let Some(scale) = summary.logit_scale {
        println!("checkpoint logit scale {scale} (hailo.logit_scale)");
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Needs no config: it only converts files.
    if let Command::Pull {
        model,
        revision,
        to,
        hef,
        arch,
        zoo_version,
        hailort_version,
    } = &cli.command
    {
        let request = hailo_clip::fetch::command::pull_request(
            model,
            revision,
            to.as_deref(),
            *hef,
            arch.as_deref(),
            zoo_version.as_deref(),
            hailort_version.as_deref(),
        )?;
        return hailo_clip::fetch::command::run_pull(&request);
    }
    if let Command::Download { url, to, sha256 } = &cli.command {
        return hailo_clip::fetch::command::run_download(url, to, sha256.as_deref());
    }
    if let Command::ExportTextAssets { hf_dir, out } = &cli.command {
        use hailo_clip::backends::hailo::assets;
        // A checkpoint needs no config; without one, the model directory's text graph.
        let summary = match hf_dir {
            Some(dir) => assets::export(dir, out)?,
            None => {
                let (config, _) = load_config(&cli)?;
                assets::export_from_onnx(
                    &hailo_clip::model::ModelDir::open(&config.model.dir)?,
                    out,
                )?
            }
        };
        return print_export(summary);
    }
    if let Command::CheckTextAssets { dir } = &cli.command {
        // A pull's `MODEL/hailo/ARCH/`: the files are that model's, read with its set-up.
        let model = dir
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == "hailo"))
            .and_then(Path::parent)
            .map(hailo_clip::model::ModelDir::open)
            .transpose()?;
        let assets = hailo_clip::backends::hailo::assets::TextAssets::load(dir, model.as_ref())?;
        println!(
            "text assets in {}: ok (token-embedding table [{}, {}], projection {:?}{}, context {}, pooling {:?})",
            dir.display(),
            assets.lut.rows(),
            assets.lut.cols(),
            assets.projection.shape(),
            if assets.bias.is_some() { " with a bias" } else { "" },
            assets.setup.frame.context,
            assets.setup.frame.pooling
        );
        return Ok(());
    }
    // Reports a broken config as one of its checks instead of stopping at it.
    if let Command::Doctor { user } = &cli.command {
        return doctor(&cli, user);
    }
    let (mut config, source) = load_config(&cli)?;
    match cli.command {
        Command::Serve { host, port } => {
            if let Some(h) = host {
                config.server.host = h;
            }
            if let Some(p) = port {
                config.server.port = p;
            }
            config.validate()?;
            init_logging(&config.logging.level);
            match &source {
                ConfigSource::File(p) => tracing::info!("config: {}", p.display()),
                ConfigSource::Defaults => tracing::info!(
                    "config: {} not found, using built-in defaults",
                    config::DEFAULT_CONFIG_PATH
                ),
            }
            runtime()?.block_on(daemon::run(config))
        }
        Command::Classify {
            image,
            prompts,
            json,
            top_k,
            threshold,
            template,
        } => {
            init_logging("warn");
            let bytes = read_file(&image)?;
            let rt = runtime()?;
            let result = rt.block_on(async {
                let service = one_shot_service(&config).await?;
                let result = service
                    .classify(ClassifyRequest {
                        image: bytes,
                        prompts,
                        top_k,
                        threshold,
                        templates: (!template.is_empty()).then_some(template),
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: {e}", image.display()));
                service.shutdown();
                result
            })?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer(&mut out, &result)?;
                writeln!(out)?;
            } else {
                let width = result
                    .classifications
                    .iter()
                    .map(|c| c.text.chars().count())
                    .max()
                    .unwrap_or(4);
                writeln!(
                    out,
                    "{:>4}  {:<width$}  {:>8}  {:>10}",
                    "rank", "text", "score", "similarity"
                )?;
                for c in &result.classifications {
                    writeln!(
                        out,
                        "{:>4}  {:<width$}  {:>8.4}  {:>10.4}",
                        c.rank, c.text, c.score, c.similarity
                    )?;
                }
                let scoring = match result.scoring {
                    hailo_clip::encoder::Scoring::Softmax => {
                        "scores share 1 among the prompts (softmax)"
                    }
                    hailo_clip::encoder::Scoring::Sigmoid => {
                        "each score is that prompt's own probability (sigmoid)"
                    }
                };
                writeln!(
                    out,
                    "model {} · {scoring} · {:.1} ms",
                    result.model, result.inference_time_ms
                )?;
            }
            Ok(())
        }
        Command::Embed { what } => {
            init_logging("warn");
            let rt = runtime()?;
            rt.block_on(async {
                let service = one_shot_service(&config).await?;
                let model = service.model().name.clone();
                let mut out = std::io::stdout().lock();
                let result: anyhow::Result<()> = async {
                    match what {
                        EmbedWhat::Image { files } => {
                            for file in files {
                                let embedding = service
                                    .embed_image(read_file(&file)?)
                                    .await
                                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                                let line = json!({"input": file, "embedding": embedding, "dimension": embedding.len(), "model": model});
                                writeln!(out, "{line}")?;
                            }
                        }
                        EmbedWhat::Text { texts } => {
                            let embeddings = service.embed_texts(&texts).await?;
                            for (text, embedding) in texts.iter().zip(embeddings) {
                                let line = json!({"input": text, "embedding": embedding, "dimension": embedding.len(), "model": model});
                                writeln!(out, "{line}")?;
                            }
                        }
                    }
                    Ok(())
                }
                .await;
                service.shutdown();
                result
            })
        }
        Command::Selftest => {
            init_logging("warn");
            let rt = runtime()?;
            let passed = rt.block_on(async {
                let service = one_shot_service(&config).await?;
                let warmed = service.warm_up().await;
                let outcome = service.selftest();
                service.shutdown();
                warmed.map_err(|e| anyhow::anyhow!("warm-up failed: {e}"))?;
                print_selftest(&service, &outcome)
            })?;
            if passed {
                Ok(())
            } else {
                anyhow::bail!(
                    "the self-test failed: the model's answers are wrong (see the table above)"
                )
            }
        }
        Command::CheckConfig { get: Some(key) } => {
            println!("{}", get_key(&config, &key, "config key")?);
            Ok(())
        }
        Command::CheckConfig { get: None } => {
            match &source {
                ConfigSource::File(p) => println!("# config {} is valid", p.display()),
                ConfigSource::Defaults => println!(
                    "# {} not found: built-in defaults are in force",
                    config::DEFAULT_CONFIG_PATH
                ),
            }
            print!("{}", serde_yaml_ng::to_string(&config)?);
            Ok(())
        }
        Command::CheckModel { dir, get } => check_model(config, &dir, get.as_deref()),
        Command::ExportTextAssets { .. }
        | Command::Pull { .. }
        | Command::Download { .. }
        | Command::Doctor { .. }
        | Command::CheckTextAssets { .. } => {
            unreachable!("handled before the config is loaded")
        }
    }
}

/// The value at dotted `key` in `value`'s serialized form: a scalar as plain text (what a
/// shell script wants), anything else as YAML.
fn get_key(value: &impl serde::Serialize, key: &str, what: &str) -> anyhow::Result<String> {
    let mut node = serde_json::to_value(value)?;
    for part in key.split('.') {
        node = match node {
            serde_json::Value::Object(mut map) => map.remove(part),
            _ => None,
        }
        .ok_or_else(|| anyhow::anyhow!("no {what} {key}"))?;
    }
    Ok(match node {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        serde_json::Value::Bool(_) | serde_json::Value::Number(_) => node.to_string(),
        other => serde_yaml_ng::to_string(&other)?.trim_end().to_string(),
    })
}

/// `check-model`: what install.sh asks before it puts a model directory in place.
fn check_model(mut config: Config, dir: &std::path::Path, get: Option<&str>) -> anyhow::Result<()> {
    let model = hailo_clip::model::ModelDir::open(dir)?;
    if let Some(field) = get {
        println!("{}", get_key(&model.manifest, field, "manifest field")?);
        return Ok(());
    }
    init_logging("warn");
    config.backend = config::BackendChoice::Cpu;
    config.model.dir = dir.to_path_buf();
    let rt = runtime()?;
    let service = rt.block_on(one_shot_service(&config))?;
    let warmed = rt.block_on(service.warm_up());
    let outcome = service.selftest();
    service.shutdown();
    warmed.map_err(|e| anyhow::anyhow!("{}: the warm-up inference failed: {e}", dir.display()))?;
    let manifest = &model.manifest;
    println!(
        "model {} in {}: loads and runs ({} px images, {}-dim embeddings, {})",
        manifest.name,
        dir.display(),
        manifest.image_size,
        manifest.embedding_dim,
        service.image_encoder().engine.unwrap_or("cpu")
    );
    let image = service.image_encoder();
    println!(
        "engine: {}{} ({})",
        image.engine.unwrap_or("cpu"),
        image
            .engine_library
            .as_deref()
            .map(|l| format!(" {l}"))
            .unwrap_or_default(),
        image.reason
    );
    if manifest.random_weights {
        println!("random weights: its scores are meaningless (a test model)");
    }
    let enforced = config.selftest.enforce;
    println!("self-test {}", outcome.summary(enforced));
    if let (hailo_clip::service::selftest::SelfTestOutcome::Ran(report), true) =
        (&outcome, enforced)
    {
        if !report.passed() {
            anyhow::bail!("{}: {}", dir.display(), report.failure_detail());
        }
    }
    Ok(())
}

/// Prints the self-test table; true unless it ran and failed.
fn print_selftest(
    service: &Service,
    outcome: &hailo_clip::service::selftest::SelfTestOutcome,
) -> anyhow::Result<bool> {
    use hailo_clip::service::selftest::SelfTestOutcome;
    let mut out = std::io::stdout().lock();
    let model = service.model();
    writeln!(
        out,
        "model {} · image encoder on {} · text encoder on {}",
        model.name,
        service.image_encoder().backend,
        service.text_encoder().backend
    )?;
    let SelfTestOutcome::Ran(report) = outcome else {
        writeln!(out, "self-test {}", outcome.summary(true))?;
        return Ok(true);
    };
    writeln!(
        out,
        "{:<14} {:<14} {:<14} {:>6} {:>7}  result",
        "photo", "expected", "got", "score", "margin"
    )?;
    for r in &report.results {
        writeln!(
            out,
            "{:<14} {:<14} {:<14} {:>6.3} {:>7.3}  {}",
            r.photo,
            r.expected,
            r.got,
            r.score,
            r.margin,
            if r.passed { "ok" } else { "WRONG" }
        )?;
    }
    if report.passed() {
        writeln!(
            out,
            "self-test passed: {} photos, smallest margin {:.3} (selftest.min_margin {})",
            report.results.len(),
            report.smallest_margin(),
            report.min_margin
        )?;
    } else {
        writeln!(out, "{}", report.failure_detail())?;
    }
    Ok(report.passed())
}

fn doctor(cli: &Cli, user: &str) -> anyhow::Result<()> {
    let (loaded, origin) = match load_config(cli) {
        Ok((c, ConfigSource::File(p))) => (Ok(c), p.display().to_string()),
        Ok((c, ConfigSource::Defaults)) => (
            Ok(c),
            format!(
                "built-in defaults ({} not found)",
                config::DEFAULT_CONFIG_PATH
            ),
        ),
        Err(e) => (
            Err(e.to_string()),
            cli.config
                .clone()
                .unwrap_or_else(|| config::DEFAULT_CONFIG_PATH.into())
                .display()
                .to_string(),
        ),
    };
    let env = hailo_clip::doctor::Environment {
        service_user: user.to_string(),
        ..Default::default()
    };
    let checks = hailo_clip::doctor::run(loaded, &origin, &env);
    if hailo_clip::doctor::report(&checks, &mut std::io::stdout().lock())? {
        Ok(())
    } else {
        anyhow::bail!("doctor found problems: see the FAIL lines above")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", daemon::report(&e));
            ExitCode::FAILURE
        }
    }
}
