//! `hailo-clip doctor`: the troubleshooting checklist as code. Each check reads the real
//! system (device node, users and groups, HailoRT library, driver, model files, config,
//! port, the running service, memory, temperature, other device users) and says PASS, WARN
//! or FAIL with the fix.
//!
//! Every path is read below a root directory (normally `/`), so tests run the same checks
//! on fake /dev, /sys, /proc and /etc trees.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backends::hailo::{assets::TextAssets, layout};
use crate::config::{BackendChoice, Config, TextEncoderChoice};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
    pub fix: Option<String>,
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        outcome: Outcome::Pass,
        detail: detail.into(),
        fix: None,
    }
}
fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    with_fix(Outcome::Warn, name, detail.into(), fix.into())
}
fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    with_fix(Outcome::Fail, name, detail.into(), fix.into())
}
fn with_fix(outcome: Outcome, name: &'static str, detail: String, fix: String) -> Check {
    Check {
        name,
        outcome,
        detail,
        fix: Some(fix),
    }
}

/// Where the checks look, and what they compare against.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Prefix for every system path (`/` on a real system).
    pub root: PathBuf,
    /// The account the systemd unit runs as.
    pub service_user: String,
    /// The unit's MemoryMax, for the headroom check.
    pub memory_max_bytes: u64,
    /// `vcgencmd`, if the machine has it (Raspberry Pi firmware tool).
    pub vcgencmd: Option<PathBuf>,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            root: PathBuf::from("/"),
            service_user: "hailo-clip".into(),
            memory_max_bytes: 3 << 30,
            vcgencmd: ["/usr/bin/vcgencmd", "/opt/vc/bin/vcgencmd"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists()),
        }
    }
}

impl Environment {
    /// A system path under the root.
    fn path(&self, absolute: &Path) -> PathBuf {
        layout::under(&self.root, absolute)
    }

    /// The device node the daemon would use (`hailo.device_path`, `auto` resolved here),
    /// or for `auto` with none present the name to show in messages.
    fn device_node(&self, config: &Config) -> PathBuf {
        layout::device_node(&config.hailo.device_path, &self.root)
            .unwrap_or_else(|| PathBuf::from(layout::AUTO_NODES))
    }
}

/// Runs every check. `config` is the loaded config or the error loading it; `origin`
/// names where it came from.
pub fn run(config: Result<Config, String>, origin: &str, env: &Environment) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = match config {
        Ok(c) => {
            checks.push(pass(
                "config",
                format!("{origin} is valid (backend: {})", c.backend.as_str()),
            ));
            c
        }
        Err(e) => {
            checks.push(fail(
                "config",
                e,
                format!("fix the named key in {origin}, then check with: hailo-clip --config {origin} check-config"),
            ));
            // Go on with the defaults so the other checks still say something useful.
            Config::default()
        }
    };
    let wants_hailo = config.backend != BackendChoice::Cpu;
    let device = check_device_node(&config, env);
    let device_present = device.outcome == Outcome::Pass && wants_hailo;
    checks.push(device);
    let (access, membership) = check_device_access(&config, env);
    checks.push(access);
    checks.push(membership);
    let library = hailort_library(env);
    checks.push(check_library(&config, library.as_ref()));
    checks.push(check_driver(&config, env, library.as_ref()));
    checks.extend(check_models(&config, device_present));
    if let Some(socket) = check_socket_unit(&config, env) {
        checks.push(socket);
    }
    let (port, health, running) = check_port_and_service(&config);
    checks.push(port);
    checks.push(health);
    checks.push(check_memory(env));
    checks.push(check_temperature(env));
    if wants_hailo {
        let node_exists = env.device_node(&config).exists();
        checks.push(check_device_health(&config, running.as_ref(), node_exists));
    }
    checks.push(check_device_users(&config, env));
    checks
}

/// Prints the checks and returns whether none failed.
pub fn report(checks: &[Check], out: &mut impl Write) -> std::io::Result<bool> {
    for c in checks {
        writeln!(out, "{}  {:<16} {}", c.outcome.label(), c.name, c.detail)?;
        if let Some(fix) = &c.fix {
            writeln!(out, "      {:<16} fix: {fix}", "")?;
        }
    }
    let count = |o| checks.iter().filter(|c| c.outcome == o).count();
    let failed = count(Outcome::Fail);
    writeln!(
        out,
        "{} passed, {} warnings, {} failed",
        count(Outcome::Pass),
        count(Outcome::Warn),
        failed
    )?;
    Ok(failed == 0)
}

/// A missing device is a failure only when the config insists on Hailo.
fn missing(config: &Config, name: &'static str, detail: String, fix: &str) -> Check {
    match config.backend {
        BackendChoice::Hailo => fail(name, detail, fix),
        BackendChoice::Auto => warn(
            name,
            format!("{detail}; backend: auto will use the CPU"),
            fix,
        ),
        BackendChoice::Cpu => pass(name, format!("{detail} (not needed: backend: cpu)")),
    }
}

const DRIVER_FIX: &str = "install the Hailo PCIe driver and HailoRT (Raspberry Pi OS, Hailo-10H: sudo apt install dkms hailo-h10-all), reboot, and check that `lspci | grep -i hailo` lists the card";

fn check_device_node(config: &Config, env: &Environment) -> Check {
    let device = &env.device_node(config);
    match std::fs::metadata(env.path(device)) {
        Ok(m) if m.file_type().is_char_device() => pass("device node", format!("{} is a character device", device.display())),
        Ok(_) if env.root != Path::new("/") => pass("device node", format!("{} is present", device.display())),
        Ok(_) => fail(
            "device node",
            format!("{} exists but is not a character device", device.display()),
            "remove the stray file and reload the driver (sudo modprobe -r hailo1x_pci hailo_pci; sudo modprobe hailo1x_pci)",
        ),
        Err(_) => missing(config, "device node", format!("{} is missing", device.display()), DRIVER_FIX),
    }
}

/// A user from `etc/passwd`: name → (uid, primary gid).
fn passwd_entry(env: &Environment, user: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(env.path(Path::new("/etc/passwd"))).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Groups from `etc/group`: (name, gid, members).
fn groups(env: &Environment) -> Vec<(String, u32, Vec<String>)> {
    let text = std::fs::read_to_string(env.path(Path::new("/etc/group"))).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4).then(|| {
                let members = f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(String::from)
                    .collect();
                Some((f[0].to_string(), f[2].parse().ok()?, members))
            })?
        })
        .collect()
}

fn check_device_access(config: &Config, env: &Environment) -> (Check, Check) {
    let device = &env.device_node(config);
    let user = &env.service_user;
    let Some((uid, primary_gid)) = passwd_entry(env, user) else {
        let fix = "run install.sh, which creates the user; or: sudo useradd --system --no-create-home hailo-clip";
        let detail = format!("service user {user} does not exist");
        return (
            missing(config, "device access", detail.clone(), fix),
            missing(config, "group membership", detail, fix),
        );
    };
    let all_groups = groups(env);
    let member_of: Vec<u32> = all_groups
        .iter()
        .filter(|(_, gid, members)| *gid == primary_gid || members.contains(user))
        .map(|(_, gid, _)| *gid)
        .collect();
    let Ok(meta) = std::fs::metadata(env.path(device)) else {
        let detail = format!(
            "{} is missing, so its access cannot be checked",
            device.display()
        );
        return (
            missing(config, "device access", detail.clone(), DRIVER_FIX),
            missing(config, "group membership", detail, DRIVER_FIX),
        );
    };
    let mode = meta.mode();
    let group_name = all_groups
        .iter()
        .find(|(_, gid, _)| *gid == meta.gid())
        .map_or_else(|| meta.gid().to_string(), |(n, _, _)| n.clone());
    let in_group = member_of.contains(&meta.gid());
    let rw = |shift: u32| (mode >> shift) & 0o6 == 0o6;
    let can_use = (meta.uid() == uid && rw(6)) || (in_group && rw(3)) || rw(0);
    let access = if can_use {
        pass(
            "device access",
            format!(
                "{user} can read and write {} (mode {:o}, group {group_name})",
                device.display(),
                mode & 0o777
            ),
        )
    } else {
        fail(
            "device access",
            format!("{user} cannot read and write {} (mode {:o}, group {group_name})", device.display(), mode & 0o777),
            format!("sudo usermod -aG {group_name} {user} (and make the group read-write: a udev rule with MODE=\"0660\", GROUP=\"{group_name}\")"),
        )
    };
    let membership = if in_group {
        pass(
            "group membership",
            format!(
                "{user} is in group {group_name}, which owns {}",
                device.display()
            ),
        )
    } else if rw(0) {
        pass(
            "group membership",
            format!(
                "{user} is not in group {group_name}, but {} is open to all users",
                device.display()
            ),
        )
    } else {
        fail(
            "group membership",
            format!(
                "{user} is not in group {group_name}, which owns {}",
                device.display()
            ),
            format!("sudo usermod -aG {group_name} {user} && sudo systemctl restart hailo-clip"),
        )
    };
    (access, membership)
}

/// The HailoRT shared library found under the usual library directories: (path, version).
fn hailort_library(env: &Environment) -> Option<(PathBuf, String)> {
    let dirs = [
        "/usr/lib",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/local/lib",
        "/lib",
    ];
    let mut found: Vec<(PathBuf, String)> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(env.path(Path::new(d))).ok())
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let version = name.strip_prefix("libhailort.so.")?.to_string();
            (version.split('.').count() == 3).then(|| (e.path(), version))
        })
        .collect();
    found.sort_by(|a, b| a.1.cmp(&b.1));
    found.pop()
}

fn check_library(config: &Config, library: Option<&(PathBuf, String)>) -> Check {
    match library {
        Some((path, version)) => {
            let line = if version.starts_with("5.") { "5.x: Hailo-10H" } else { "4.x: Hailo-8/8L; Hailo-10H needs 5.x" };
            pass("HailoRT library", format!("libhailort {version} at {} ({line})", path.display()))
        }
        None => missing(
            config,
            "HailoRT library",
            "libhailort.so not found".into(),
            "install HailoRT 5.x (Raspberry Pi OS, Hailo-10H: sudo apt install dkms hailo-h10-all), then rebuild hailo-clip with --features hailo",
        ),
    }
}

fn check_driver(config: &Config, env: &Environment, library: Option<&(PathBuf, String)>) -> Check {
    // HailoRT refuses a driver whose version differs from the library's, to the patch
    // (HAILO_INVALID_DRIVER_VERSION), so the whole version must match.
    match (layout::driver_version(&env.root), library) {
        (Some((module, version)), Some((_, lib))) if version == *lib => pass(
            "driver",
            format!("{module} {version} matches libhailort {lib} (firmware: `hailortcli fw-control identify` shows it)"),
        ),
        (Some((module, version)), Some((_, lib))) => fail(
            "driver",
            format!("{module} {version} does not match libhailort {lib}: HailoRT refuses to run unless both are the same version, to the patch (HAILO_INVALID_DRIVER_VERSION)"),
            "install the driver and HailoRT of the same version (sudo apt install --reinstall hailo-h10-all pulls matching ones) and reboot",
        ),
        (Some((module, version)), None) => missing(
            config,
            "driver",
            format!("{module} {version} loaded, but no HailoRT library to match it against"),
            "install HailoRT of the same version as the driver",
        ),
        (None, _) => missing(config, "driver", "no Hailo PCIe driver module loaded".into(), DRIVER_FIX),
    }
}

fn check_models(config: &Config, hailo_device_present: bool) -> Vec<Check> {
    let mut checks = Vec::new();
    let on_hailo = config.backend == BackendChoice::Hailo
        || (config.backend == BackendChoice::Auto && hailo_device_present);
    let hailo = on_hailo.then(|| hailo_files(config));
    let text_on_cpu = match (&hailo, config.hailo.text_encoder) {
        (None, _) => true,
        (Some(_), TextEncoderChoice::Cpu) => true,
        (Some(_), TextEncoderChoice::Hailo) => false,
        (Some(files), TextEncoderChoice::Auto) => files.text.is_err(),
    };
    let dir = &config.model.dir;
    let cpu = crate::model::ModelDir::open(dir)
        .map_err(|e| e.to_string())
        .and_then(|m| m.load_tokenizer().map(|_| m).map_err(|e| e.to_string()));
    const EXPORT_FIX: &str = "get a real model with `sudo hailo-clip pull ViT-B-32__openai` (README \"Getting a real model\") and point model.dir at it";
    checks.push(match cpu {
        Ok(m) if m.manifest.random_weights => warn(
            "CPU model",
            format!(
                "{} is {}, a test model with RANDOM weights: its scores are meaningless",
                dir.display(),
                m.manifest.name
            ),
            EXPORT_FIX,
        ),
        Ok(m) => pass(
            "CPU model",
            format!(
                "{} ({}, {}-dim, {} layout)",
                dir.display(),
                m.manifest.name,
                m.manifest.embedding_dim,
                match m.layout {
                    crate::model::Layout::Flat => "flat",
                    crate::model::Layout::Immich => "Immich's",
                }
            ),
        ),
        Err(e) if text_on_cpu => fail("CPU model", e, EXPORT_FIX),
        Err(e) => pass("CPU model", format!("not needed with Hailo present ({e})")),
    });
    if config.backend != BackendChoice::Cpu {
        let files = hailo.unwrap_or_else(|| hailo_files(config));
        checks.push(check_hailo_models(config, &files, on_hailo));
        if on_hailo {
            checks.push(check_text_encoder(config, &files));
        }
    }
    checks
}

/// What the Hailo backend would find: the image HEF, and the text HEF with its files.
struct HailoFiles {
    image: Result<layout::Found, String>,
    text: Result<layout::Found, String>,
}

fn hailo_files(config: &Config) -> HailoFiles {
    let h = &crate::backends::hailo::pulled::settings(config).0;
    let hef = |name: &Path| {
        let found = layout::hef(&h.resources_dir, name).map_err(|e| e.to_string())?;
        let mut head = [0u8; 4];
        std::fs::File::open(&found.path)
            .and_then(|mut f| f.read_exact(&mut head))
            .map_err(|e| format!("{}: {e}", found.path.display()))?;
        Ok(found)
    };
    let text = hef(&h.text_hef).and_then(|found| {
        let model =
            crate::backends::hailo::pulled::text_model(config, h).map_err(|e| e.to_string())?;
        TextAssets::load(&h.resources_dir, model.as_ref())
            .map(|_| found)
            .map_err(|e| e.to_string())
    });
    HailoFiles {
        image: hef(&h.image_hef),
        text,
    }
}

const HEF_FIX: &str = "get the HEFs compiled for hailo10h matching your HailoRT version (install.sh --models hailo10h) and write the text files with: hailo-clip export-text-assets --hf-dir HF_DIR --out DIR";

fn check_hailo_models(config: &Config, files: &HailoFiles, on_hailo: bool) -> Check {
    let mut problems = Vec::new();
    if let Err(e) = &files.image {
        problems.push(format!("image HEF: {e}"));
    }
    // With text_encoder: auto a missing text HEF is the text encoder check's business.
    if let (Err(e), TextEncoderChoice::Hailo) = (&files.text, config.hailo.text_encoder) {
        problems.push(format!("text encoder on the device: {e}"));
    }
    let found = |f: &Result<layout::Found, String>| {
        f.as_ref().map_or_else(
            |_| "missing".to_string(),
            |f| format!("{} ({})", f.path.display(), f.layout.describe()),
        )
    };
    if problems.is_empty() {
        pass(
            "Hailo models",
            format!(
                "image HEF {}; text HEF and files {}",
                found(&files.image),
                found(&files.text)
            ),
        )
    } else if on_hailo {
        fail("Hailo models", problems.join("; "), HEF_FIX)
    } else {
        warn("Hailo models", problems.join("; "), HEF_FIX)
    }
}

/// Where the text encoder will run beside images on the device, and why.
fn check_text_encoder(config: &Config, files: &HailoFiles) -> Check {
    match (config.hailo.text_encoder, &files.text) {
        (TextEncoderChoice::Cpu, _) => pass(
            "text encoder",
            format!("on the CPU from {} (hailo.text_encoder: cpu)", config.model.dir.display()),
        ),
        (_, Ok(found)) => pass(
            "text encoder",
            format!("on the device: {} and its text files are present", found.path.display()),
        ),
        (TextEncoderChoice::Hailo, Err(e)) => fail("text encoder", format!("hailo.text_encoder: hailo, but {e}"), HEF_FIX),
        (TextEncoderChoice::Auto, Err(e)) => warn(
            "text encoder",
            format!(
                "on the CPU from {} (hailo.text_encoder: auto and the device cannot run it: {e})",
                config.model.dir.display()
            ),
            "for text on the device, get the hailo10h text HEF (Model Zoo 5.2 or later: install.sh --models hailo10h with HailoRT 5.2+) and its text files",
        ),
    }
}

/// A plain HTTP GET of /health: (status, body).
fn get_health(addr: SocketAddr) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        response.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    ))
}

/// Where systemd's socket unit listens, when there is one: under socket activation the
/// daemon listens there, and `server.host`/`server.port` are ignored.
fn check_socket_unit(config: &Config, env: &Environment) -> Option<Check> {
    let unit = [
        "/etc/systemd/system/hailo-clip.socket",
        "/lib/systemd/system/hailo-clip.socket",
    ]
    .iter()
    .map(|p| env.path(Path::new(p)))
    .find(|p| p.exists())?;
    let text = std::fs::read_to_string(&unit).unwrap_or_default();
    let listen: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ListenStream="))
        .map(str::trim)
        .collect();
    let configured = SocketAddr::new(config.server.host, config.server.port);
    Some(match listen.as_slice() {
        [one] if one.parse::<SocketAddr>().ok() == Some(configured) => pass(
            "socket",
            format!(
                "{} listens on {one} (socket activation): the daemon listens there, and server.host/server.port are ignored under systemd (they say the same)",
                unit.display()
            ),
        ),
        [one] => warn(
            "socket",
            format!(
                "{} listens on {one} (socket activation): the daemon listens there, and server.host/server.port ({configured}) are ignored under systemd",
                unit.display()
            ),
            format!("set ListenStream={configured} in {} (or run install.sh again), then: sudo systemctl daemon-reload && sudo systemctl restart hailo-clip.socket hailo-clip", unit.display()),
        ),
        _ => fail(
            "socket",
            format!("{} has {} ListenStream= lines; hailo-clip takes exactly one", unit.display(), listen.len()),
            "keep one ListenStream=ADDRESS:PORT",
        ),
    })
}

/// The port, the service, and the running daemon's /health when it is hailo-clip's.
fn check_port_and_service(config: &Config) -> (Check, Check, Option<serde_json::Value>) {
    let addr = SocketAddr::new(config.server.host, config.server.port);
    let free = TcpListener::bind(addr).is_ok();
    let health = get_health(addr);
    let ours = health
        .as_ref()
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(body).ok())
        .filter(|v| v["service"] == "hailo-clip");
    let port = match (free, &ours) {
        (true, _) => pass("port", format!("{addr} is free for hailo-clip")),
        (false, Some(_)) => pass("port", format!("{addr} is bound by hailo-clip")),
        (false, None) => fail(
            "port",
            format!("{addr} is held by another process"),
            format!(
                "find it with: sudo ss -ltnp 'sport = :{}'; stop it or set server.port",
                config.server.port
            ),
        ),
    };
    let running = ours.clone();
    let service = match (health, ours) {
        (Some((200, _)), Some(v)) => {
            let detail = format!(
                "http://{addr}/health is ready: model {}, backend {}, text encoder on {}, self-test {}",
                v["model"].as_str().unwrap_or("?"),
                v["backend"].as_str().unwrap_or("?"),
                v["text_encoder"]["backend"].as_str().unwrap_or("?"),
                v["selftest"].as_str().unwrap_or("?")
            );
            if v.get("warning").is_some() {
                warn("service", format!("{detail}; {}", v["warning"].as_str().unwrap_or("")), "install a real model")
            } else {
                pass("service", detail)
            }
        }
        (Some((status, _)), Some(v)) => fail(
            "service",
            format!(
                "http://{addr}/health answers {status}: status {}, {}",
                v["status"].as_str().unwrap_or("?"),
                v["detail"].as_str().unwrap_or("no detail")
            ),
            "wait if it is starting; otherwise read the log: journalctl -u hailo-clip -n 50",
        ),
        (Some((status, _)), None) => fail("service", format!("http://{addr}/health answers {status} but is not hailo-clip"), "set server.port to a free port"),
        (None, _) => fail(
            "service",
            format!("nothing answers on http://{addr}"),
            "sudo systemctl start hailo-clip; if it does not stay up: journalctl -u hailo-clip -n 50",
        ),
    };
    (port, service, running)
}

/// The Hailo chip beside the CPU's temperature: identity, temperature, throttling, alarms
/// and recoveries. From the running daemon's /health when one runs (a Hailo-8 cannot be
/// opened by two processes, and a second handle would only compete with inference);
/// otherwise by opening the device here.
fn check_device_health(
    config: &Config,
    running: Option<&serde_json::Value>,
    node_exists: bool,
) -> Check {
    if let Some(health) = running {
        let Some(d) = health.get("device").filter(|d| d.is_object()) else {
            return pass(
                "device",
                format!(
                    "the running service uses the {} backend: no Hailo device in use",
                    health["backend"].as_str().unwrap_or("?")
                ),
            );
        };
        let s = |key: &str| d[key].as_str().unwrap_or("?").to_string();
        let temperature = d["temperature_c"].as_f64().map_or_else(
            || "temperature unknown".to_string(),
            |t| format!("{t:.1} °C"),
        );
        let detail = format!(
            "{} {} (serial {}, firmware {}, PCI {}): {temperature}, throttling {}, {} temperature and {} overcurrent alarms, {} recoveries{} (from the running service)",
            s("product_name"),
            s("architecture"),
            s("serial_number"),
            s("firmware_version"),
            d["pci_address"].as_str().unwrap_or("unknown"),
            s("throttling"),
            d["temperature_alarms"].as_u64().unwrap_or(0),
            d["overcurrent_alarms"].as_u64().unwrap_or(0),
            d["recoveries"].as_u64().unwrap_or(0),
            d["last_fault"].as_str().map(|f| format!(", last fault: {f}")).unwrap_or_default(),
        );
        return match health["status"].as_str() {
            Some("recovering") => warn(
                "device",
                format!("being recovered after a fault; {detail}"),
                "wait; if it keeps failing: docs/HAILO.md, \"Device faults\" (a dropped PCIe link needs a reboot)",
            ),
            Some("degraded") => warn(
                "device",
                format!("{}; {detail}", health["detail"].as_str().unwrap_or("degraded")),
                "improve the cooling (a heatsink or fan on the M.2 card); check the power supply",
            ),
            _ => pass("device", detail),
        };
    }
    if !node_exists {
        return warn(
            "device",
            "no running service and no device node: the chip cannot be read",
            "see the device check above",
        );
    }
    read_device_here(config)
}

#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
fn read_device_here(config: &Config) -> Check {
    use crate::backends::hailo::ffi::Monitor;
    match Monitor::open(config.hailo.device_id.as_deref()) {
        Ok(monitor) => {
            let identity = monitor.identify();
            let temperature = monitor.temperature();
            let identity = identity.map_or_else(
                |e| format!("identity unreadable ({e})"),
                |i| {
                    format!(
                        "{} {} (serial {}, firmware {})",
                        i.product_name, i.architecture, i.serial_number, i.firmware_version
                    )
                },
            );
            let temperature = temperature.map_or_else(
                |e| format!("temperature unreadable ({e})"),
                |[a, b]| format!("{:.1} °C", a.max(b)),
            );
            pass(
                "device",
                format!("{identity}: {temperature} (read directly: no service is running)"),
            )
        }
        Err(e) => fail(
            "device",
            format!("no service is running, and the device cannot be opened: {e}"),
            "see the driver and device users checks",
        ),
    }
}

#[cfg(not(any(feature = "hailo", feature = "hailo-fake")))]
fn read_device_here(_config: &Config) -> Check {
    warn(
        "device",
        "no service is running, and this binary was built without Hailo support, so it cannot read the chip",
        "start the service (sudo systemctl start hailo-clip) and run doctor again",
    )
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn check_memory(env: &Environment) -> Check {
    let meminfo = std::fs::read_to_string(env.path(Path::new("/proc/meminfo"))).unwrap_or_default();
    let available = meminfo
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|kib| kib * 1024);
    let cgroup = env.path(Path::new("/sys/fs/cgroup/system.slice/hailo-clip.service"));
    let current = read_u64(&cgroup.join("memory.current"));
    let limit = read_u64(&cgroup.join("memory.max")).unwrap_or(env.memory_max_bytes);
    let mib = |b: u64| b / (1 << 20);
    match (available, current) {
        (None, _) => warn(
            "memory",
            "cannot read MemAvailable from /proc/meminfo",
            "check /proc is mounted",
        ),
        (Some(_), Some(used)) if used * 10 > limit * 9 => fail(
            "memory",
            format!(
                "hailo-clip uses {} MiB of its {} MiB MemoryMax",
                mib(used),
                mib(limit)
            ),
            "lower performance.max_batch_size / worker_threads, or raise MemoryMax in the unit",
        ),
        (Some(avail), _) if avail < env.memory_max_bytes.min(1 << 30) => warn(
            "memory",
            format!(
                "only {} MiB available (the service may use up to {} MiB)",
                mib(avail),
                mib(limit)
            ),
            "stop other memory-heavy services, or lower performance.max_batch_size",
        ),
        (Some(avail), used) => pass(
            "memory",
            format!(
                "{} MiB available; MemoryMax {} MiB{}",
                mib(avail),
                mib(limit),
                used.map_or(String::new(), |u| format!(
                    ", hailo-clip uses {} MiB",
                    mib(u)
                ))
            ),
        ),
    }
}

fn check_temperature(env: &Environment) -> Check {
    let zones = std::fs::read_dir(env.path(Path::new("/sys/class/thermal")))
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default();
    let hottest = zones
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("thermal_zone"))
        })
        .filter_map(|p| {
            std::fs::read_to_string(p.join("temp"))
                .ok()?
                .trim()
                .parse::<i64>()
                .ok()
        })
        .max()
        .map(|milli| milli as f64 / 1000.0);
    let throttled = env.vcgencmd.as_ref().and_then(|cmd| {
        let out = std::process::Command::new(cmd)
            .arg("get_throttled")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        u64::from_str_radix(text.trim().strip_prefix("throttled=0x")?, 16).ok()
    });
    let mut now = Vec::new();
    if let Some(bits) = throttled {
        for (bit, what) in [
            (0, "under-voltage"),
            (1, "ARM frequency capped"),
            (2, "throttled"),
            (3, "soft temperature limit"),
        ] {
            if bits & (1 << bit) != 0 {
                now.push(what);
            }
        }
    }
    const COOLING: &str = "improve cooling (the Pi 5 active cooler), use the official 27 W power supply, and keep the case ventilated";
    match hottest {
        Some(t) if t >= 85.0 => fail(
            "temperature",
            format!("{t:.1} °C: the CPU is throttling"),
            COOLING,
        ),
        _ if !now.is_empty() => warn(
            "temperature",
            format!("vcgencmd reports: {}", now.join(", ")),
            COOLING,
        ),
        Some(t) if t >= 80.0 => warn(
            "temperature",
            format!("{t:.1} °C: close to the 85 °C throttling point"),
            COOLING,
        ),
        Some(t) => pass(
            "temperature",
            format!(
                "{t:.1} °C{}",
                throttled.map_or(String::new(), |_| ", not throttled".into())
            ),
        ),
        None => warn(
            "temperature",
            "no thermal sensor readable under /sys/class/thermal",
            "check that /sys is mounted",
        ),
    }
}

fn check_device_users(config: &Config, env: &Environment) -> Check {
    let device = env.device_node(config);
    let me = std::process::id().to_string();
    let mut holders = Vec::new();
    for entry in std::fs::read_dir(env.path(Path::new("/proc")))
        .into_iter()
        .flatten()
        .flatten()
    {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == me {
            continue;
        }
        let holds = std::fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == device));
        if holds {
            let comm = std::fs::read_to_string(entry.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string();
            holders.push((pid, comm));
        }
    }
    let others: Vec<String> = holders
        .iter()
        .filter(|(_, c)| c != "hailo-clip")
        .map(|(p, c)| format!("pid {p} ({c})"))
        .collect();
    if !others.is_empty() {
        warn(
            "device users",
            format!("{} also hold {}", others.join(", "), device.display()),
            format!(
                "processes sharing the device must use the same VDevice group id ({}); otherwise stop them or hailo-clip gets 503 device_busy",
                config.hailo.group_id
            ),
        )
    } else if holders.is_empty() {
        pass(
            "device users",
            format!("no process holds {}", device.display()),
        )
    } else {
        pass(
            "device users",
            format!("only hailo-clip holds {}", device.display()),
        )
    }
}
