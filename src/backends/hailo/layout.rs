//! Where a Raspberry Pi keeps the Hailo things hailo-clip needs: the device node, the
//! kernel driver's version, and the resource files in either of the two layouts found on
//! Pis. In every build, so `doctor` and the start-up errors use the same rules.
//!
//! * Device node: driver 5.2 and older create `/dev/hailoN` (class `hailo_chardev`);
//!   driver 5.3 creates `/dev/h1x-N` (class `hailo1x`) and ships no udev rule, so the node
//!   keeps root's group unless the installer adds one (hailort-drivers,
//!   `linux/pcie/src/pcie.c`).
//! * Driver version: `/sys/module/hailo1x_pci/version` (Hailo-10H) or
//!   `/sys/module/hailo_pci/version` (Hailo-8); HailoRT refuses a driver whose version differs
//!   from the library's, to the patch (`HAILO_INVALID_DRIVER_VERSION`,
//!   hailort `libhailort/src/vdma/driver/hailort_driver.cpp`).
//! * Resources: hailo-clip's flat folder (`<dir>/<file>`, what `export-text-assets` and
//!   install.sh write) or hailo-apps' layout (`<dir>/models/hailo10h/*.hef`,
//!   `<dir>/json/clip_tokenizer.json`, `<dir>/npy/*.npy`), so a Pi that already has
//!   hailo-apps' resources needs no copy. The flat file wins when both exist.

use std::path::{Path, PathBuf};

use crate::config::DevicePath;

/// Device node name prefixes, in the order `device_path: auto` tries them.
const NODE_PREFIXES: [&str; 2] = ["hailo", "h1x-"];

/// Kernel modules whose `version` names the driver, Hailo-10H's first.
pub const DRIVER_MODULES: [&str; 2] = ["hailo1x_pci", "hailo_pci"];

/// The sub-folder of hailo-apps' `models/` for this accelerator.
const HAILO_APPS_ARCH: &str = "hailo10h";

/// `root` joined with an absolute system path (`root` is `/` outside tests).
pub fn under(root: &Path, absolute: &Path) -> PathBuf {
    root.join(absolute.strip_prefix("/").unwrap_or(absolute))
}

/// The device node to use: the configured path as it is, or for `auto` the first existing
/// `/dev/hailoN`, then `/dev/h1x-N` (lowest N first). `None` when `auto` finds none.
pub fn device_node(config: &DevicePath, root: &Path) -> Option<PathBuf> {
    match config {
        DevicePath::Exact(path) => Some(path.clone()),
        DevicePath::Auto => {
            let dev = under(root, Path::new("/dev"));
            let names: Vec<String> = std::fs::read_dir(&dev)
                .ok()?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            NODE_PREFIXES.iter().find_map(|prefix| {
                names
                    .iter()
                    .filter_map(|name| {
                        let n: u32 = name.strip_prefix(prefix)?.parse().ok()?;
                        Some((n, name))
                    })
                    .min()
                    .map(|(_, name)| Path::new("/dev").join(name))
            })
        }
    }
}

/// What `device_path: auto` looked for, for messages.
pub const AUTO_NODES: &str = "/dev/hailoN (driver 5.2) or /dev/h1x-N (driver 5.3)";

/// The loaded Hailo driver module and its version, read from `/sys/module/*/version`.
pub fn driver_version(root: &Path) -> Option<(&'static str, String)> {
    DRIVER_MODULES.iter().find_map(|module| {
        let path = under(root, Path::new(&format!("/sys/module/{module}/version")));
        let version = std::fs::read_to_string(path).ok()?.trim().to_string();
        (!version.is_empty()).then_some((*module, version))
    })
}

/// The PCI address of the device behind `node` (`/dev/hailo0` or `/dev/h1x-0`), from sysfs:
/// driver 5.2 and older publish it as `/sys/class/hailo_chardev/hailoN/board_location`
/// (where HailoRT v5.2.0 reads it, vdma/driver/os/posix/linux/driver_os_specific.cpp),
/// driver 5.3 as `/sys/class/hailo1x/h1x-N/device_id` (hailort-drivers v5.3.0,
/// linux/pcie/src/sysfs.c).
pub fn pci_address(root: &Path, node: &Path) -> Option<String> {
    let name = node.file_name()?.to_str()?;
    ["hailo_chardev/{}/board_location", "hailo1x/{}/device_id"]
        .iter()
        .find_map(|pattern| {
            let path = format!("/sys/class/{}", pattern.replace("{}", name));
            let text = std::fs::read_to_string(under(root, Path::new(&path))).ok()?;
            let text = text.trim();
            (!text.is_empty()).then(|| text.to_string())
        })
}

/// Which layout a resource was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// An absolute path from the config.
    Configured,
    /// `<dir>/<file>`.
    Flat,
    /// hailo-apps: `<dir>/models/hailo10h/`, `<dir>/json/`, `<dir>/npy/`.
    HailoApps,
}

impl Layout {
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Configured => "configured path",
            Layout::Flat => "flat layout",
            Layout::HailoApps => "hailo-apps layout",
        }
    }
}

/// A resource file that exists, and the layout it was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub layout: Layout,
}

/// No candidate exists; names every place looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_missing(.0))]
pub struct NotFound(pub Vec<PathBuf>);

fn describe_missing(candidates: &[PathBuf]) -> String {
    match candidates {
        [one] => format!("{} does not exist", one.display()),
        many => format!(
            "none of {} exists",
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn first_existing(candidates: Vec<(PathBuf, Layout)>) -> Result<Found, NotFound> {
    candidates
        .iter()
        .find(|(path, _)| path.is_file())
        .map(|(path, layout)| Found {
            path: path.clone(),
            layout: *layout,
        })
        .ok_or_else(|| NotFound(candidates.into_iter().map(|(p, _)| p).collect()))
}

/// A HEF named in the config: absolute as it is; otherwise `<dir>/<name>`, then
/// `<dir>/models/hailo10h/<name>`.
pub fn hef(dir: &Path, name: &Path) -> Result<Found, NotFound> {
    if name.is_absolute() {
        return first_existing(vec![(name.to_path_buf(), Layout::Configured)]);
    }
    first_existing(vec![
        (dir.join(name), Layout::Flat),
        (
            dir.join("models").join(HAILO_APPS_ARCH).join(name),
            Layout::HailoApps,
        ),
    ])
}

/// A text-path file: `<dir>/<file>`, then hailo-apps' `<dir>/json/<file>` for JSON and
/// `<dir>/npy/<file>` for arrays.
pub fn text_asset(dir: &Path, file: &str) -> Result<Found, NotFound> {
    let sub = if file.ends_with(".npy") {
        "npy"
    } else {
        "json"
    };
    first_existing(vec![
        (dir.join(file), Layout::Flat),
        (dir.join(sub).join(file), Layout::HailoApps),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }

    #[test]
    fn auto_device_prefers_hailo_n_then_h1x_lowest_first() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("dev")).unwrap();
        assert_eq!(device_node(&DevicePath::Auto, r), None);
        touch(&r.join("dev/h1x-1"));
        touch(&r.join("dev/h1x-0"));
        touch(&r.join("dev/hailo_other"));
        assert_eq!(
            device_node(&DevicePath::Auto, r),
            Some(PathBuf::from("/dev/h1x-0"))
        );
        touch(&r.join("dev/hailo2"));
        assert_eq!(
            device_node(&DevicePath::Auto, r),
            Some(PathBuf::from("/dev/hailo2"))
        );
        let exact = DevicePath::Exact("/dev/h1x-7".into());
        assert_eq!(device_node(&exact, r), Some(PathBuf::from("/dev/h1x-7")));
    }

    #[test]
    fn driver_version_is_read_from_sysfs() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(driver_version(root.path()), None);
        let file = root.path().join("sys/module/hailo1x_pci/version");
        touch(&file);
        std::fs::write(&file, "5.1.1\n").unwrap();
        assert_eq!(
            driver_version(root.path()),
            Some(("hailo1x_pci", "5.1.1".to_string()))
        );
    }

    #[test]
    fn resources_in_either_layout_flat_first() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let name = Path::new("clip.hef");
        let err = hef(d, name).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "none of {}, {} exists",
                d.join("clip.hef").display(),
                d.join("models/hailo10h/clip.hef").display()
            )
        );
        touch(&d.join("models/hailo10h/clip.hef"));
        touch(&d.join("json/clip_tokenizer.json"));
        touch(&d.join("npy/text_projection.npy"));
        assert_eq!(hef(d, name).unwrap().layout, Layout::HailoApps);
        assert_eq!(
            text_asset(d, "clip_tokenizer.json").unwrap().path,
            d.join("json/clip_tokenizer.json")
        );
        assert_eq!(
            text_asset(d, "text_projection.npy").unwrap().layout,
            Layout::HailoApps
        );
        touch(&d.join("clip.hef"));
        assert_eq!(hef(d, name).unwrap().layout, Layout::Flat);
        let absolute = d.join("models/hailo10h/clip.hef");
        assert_eq!(hef(d, &absolute).unwrap().layout, Layout::Configured);
    }
}
