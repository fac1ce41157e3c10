//! Opening the Hailo device: the device node checked first, then a VDevice in the
//! configured scheduler group; and the load error every part of the backend reports. Below
//! both the session (which re-opens the device after a fault) and the engine (which
//! configures the HEFs on it).

use std::path::{Path, PathBuf};

use super::assets::AssetError;
use super::ffi::{self, HailoError, HailoErrorKind};
use super::layout;
use crate::config::HailoConfig;
use crate::encoder::{Backend, EncoderInfo, HailoInfo};

#[derive(Debug, thiserror::Error)]
pub enum HailoLoadError {
    #[error("no Hailo device: {} does not exist (is the Hailo PCIe driver loaded? see `ls /dev/hailo* /dev/h1x-*`)", .0.display())]
    NoDevice(PathBuf),
    #[error("no Hailo device: hailo.device_path is auto and there is no {} (is the Hailo PCIe driver loaded? see `ls /dev/hailo* /dev/h1x-*`)", layout::AUTO_NODES)]
    NoDeviceNode,
    #[error("{}", describe_device_error(.0))]
    Device(HailoError),
    #[error("{}", describe_driver_mismatch(library.as_deref(), driver.as_ref()))]
    DriverVersion {
        /// libhailort's version, when HailoRT could tell it.
        library: Option<String>,
        /// The loaded driver module and its version, from /sys/module.
        driver: Option<(&'static str, String)>,
    },
    #[error("HEF {}: {message}", path.display())]
    Hef {
        path: PathBuf,
        kind: HailoErrorKind,
        message: String,
    },
    #[error(transparent)]
    Assets(#[from] AssetError),
}

fn describe_device_error(e: &HailoError) -> String {
    match e.kind {
        HailoErrorKind::DeviceBusy => format!(
            "the Hailo device is busy: another process holds it ({}); stop it, or have both use the same hailo.group_id",
            e.message
        ),
        HailoErrorKind::DeviceNotFound => format!("no usable Hailo device ({})", e.message),
        _ => format!("cannot open the Hailo device ({})", e.message),
    }
}

fn describe_driver_mismatch(
    library: Option<&str>,
    driver: Option<&(&'static str, String)>,
) -> String {
    let library = library.map_or_else(|| "libhailort".to_string(), |v| format!("libhailort {v}"));
    let driver = match driver {
        Some((module, version)) => {
            format!("the Hailo driver {module} {version} (/sys/module/{module}/version)")
        }
        None => format!(
            "the Hailo driver (its version is unreadable: no /sys/module/{{{}}}/version)",
            layout::DRIVER_MODULES.join(",")
        ),
    };
    format!(
        "HailoRT refuses the device (HAILO_INVALID_DRIVER_VERSION): {library} and {driver} differ, \
         and HailoRT runs only when both are the same version, to the patch; install matching \
         versions (Raspberry Pi OS: sudo apt install --reinstall hailo-h10-all pulls a matching \
         driver and library) and reboot; `hailo-clip doctor` compares them"
    )
}

/// An open Hailo device and the HailoRT version driving it.
pub struct HailoDevice {
    pub(super) device: ffi::Device,
    hailort_version: String,
    /// The device node checked before HailoRT was asked (`/dev/hailo0`, `/dev/h1x-0`).
    node: PathBuf,
}

impl HailoDevice {
    pub fn id(&self) -> &str {
        self.device.id()
    }

    pub fn hailort_version(&self) -> &str {
        &self.hailort_version
    }

    pub fn node(&self) -> &Path {
        &self.node
    }

    pub(crate) fn info(&self, hef: &Path) -> EncoderInfo {
        EncoderInfo {
            backend: Backend::Hailo,
            source: hef.display().to_string(),
            reason: String::new(),
            engine: None,
            engine_library: None,
            hailo: Some(HailoInfo {
                device_id: self.id().to_string(),
                hailort_version: self.hailort_version.clone(),
                hef: hef
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                test_double: cfg!(feature = "hailo-fake"),
            }),
        }
    }
}

/// Checks for the device node, then opens a VDevice in the configured scheduler group.
/// `device_path: auto` looks for `/dev/hailoN` and `/dev/h1x-N` (see [`layout`]).
pub fn open_device(config: &HailoConfig) -> Result<HailoDevice, HailoLoadError> {
    let root = Path::new("/");
    let node =
        layout::device_node(&config.device_path, root).ok_or(HailoLoadError::NoDeviceNode)?;
    if !node.exists() {
        return Err(HailoLoadError::NoDevice(node));
    }
    let device = ffi::Device::open(&config.group_id, config.device_id.as_deref()).map_err(|e| {
        if e.kind == HailoErrorKind::DriverVersion {
            HailoLoadError::DriverVersion {
                library: ffi::library_version().ok(),
                driver: layout::driver_version(root),
            }
        } else {
            HailoLoadError::Device(e)
        }
    })?;
    tracing::info!("Hailo device node {}", node.display());
    let hailort_version = ffi::library_version().map_err(HailoLoadError::Device)?;
    Ok(HailoDevice {
        device,
        hailort_version,
        node,
    })
}
