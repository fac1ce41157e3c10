//! The Hailo files `hailo-clip pull NAME --hef` put in the model directory
//! (`model.dir/hailo/ARCH/`: the HEFs and the text path's files), so that `model.dir` alone
//! is enough for the Hailo backend. They win over the `hailo.*` defaults; `hailo.*` keys set
//! in the YAML win over them. The model's name, Immich name and logit scale follow the
//! model directory the same way.

use std::path::{Path, PathBuf};

use crate::config::{Config, HailoConfig};
use crate::model::record::PullRecord;
use crate::model::ModelDir;

/// The architecture folder a pull left: the record's, else the only one there.
fn arch_dir(model_dir: &Path) -> Option<PathBuf> {
    if let Ok(Some(record)) = PullRecord::read(model_dir) {
        if let Some(zoo) = record.zoo {
            let dir = model_dir.join("hailo").join(zoo.arch);
            return dir.is_dir().then_some(dir);
        }
    }
    let dirs: Vec<PathBuf> = std::fs::read_dir(model_dir.join("hailo"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    match dirs.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// The HEFs in `dir`: (image, text), by the Model Zoo's names (a text encoder's has `text`).
fn hefs(dir: &Path) -> (Option<PathBuf>, Option<PathBuf>) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| PathBuf::from(e.file_name()))
                .filter(|n| n.extension().is_some_and(|x| x == "hef"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let is_text = |n: &PathBuf| n.to_string_lossy().contains("text");
    (
        names.iter().find(|n| !is_text(n)).cloned(),
        names.iter().find(|n| is_text(n)).cloned(),
    )
}

/// The text path's files are `model.dir`'s own when a pull put them there: the model
/// directory then gives the tokenizer and how the host pads and pools (see
/// [`super::assets::TextSetup::of_model`]). None for files elsewhere (hailo-apps' CLIP ones).
pub fn text_model(
    config: &Config,
    hailo: &HailoConfig,
) -> Result<Option<ModelDir>, crate::model::ModelDirError> {
    if hailo.resources_dir.starts_with(&config.model.dir) {
        ModelDir::open(&config.model.dir).map(Some)
    } else {
        Ok(None)
    }
}

/// The Hailo settings to run with, and what was taken from where (for the log); None when
/// the model directory holds no pulled Hailo files.
pub fn settings(config: &Config) -> (HailoConfig, Option<String>) {
    let mut hailo = config.hailo.clone();
    let model_dir = &config.model.dir;
    let Some(dir) = arch_dir(model_dir) else {
        return (hailo, None);
    };
    let explicit = |key: &str| config.hailo_keys_set.iter().any(|k| k == key);
    let mut used = Vec::new();
    let mut kept = Vec::new();
    let mut take = |key: &'static str, set: &mut dyn FnMut(), value: String| {
        if explicit(key) {
            kept.push(key);
        } else {
            set();
            used.push(format!("{key} {value}"));
        }
    };
    let (image, text) = hefs(&dir);
    take(
        "resources_dir",
        &mut || hailo.resources_dir = dir.clone(),
        dir.display().to_string(),
    );
    if let Some(image) = image {
        let shown = image.display().to_string();
        take("image_hef", &mut || hailo.image_hef = image.clone(), shown);
    }
    // No text HEF there (hailo10h before Model Zoo v5.2.0): none is looked for, and with
    // hailo.text_encoder: auto the text encoder runs on the CPU from model.dir.
    let text_name = text.unwrap_or_else(|| PathBuf::from("(none pulled)"));
    let shown = text_name.display().to_string();
    take(
        "text_hef",
        &mut || hailo.text_hef = text_name.clone(),
        shown,
    );
    if let Ok(model) = ModelDir::open(model_dir) {
        // The HEF is this model's: its images are brought to it as the model's own
        // preprocessing does, as on the CPU engine.
        let resize = model.manifest.resize;
        take(
            "resize",
            &mut || hailo.resize = resize,
            format!("{resize:?}"),
        );
        hailo.interpolation = model.image.interpolation;
        let name = model.manifest.name.clone();
        take(
            "model_name",
            &mut || hailo.model_name = name.clone(),
            name.clone(),
        );
        let immich = model.manifest.immich_model.clone().unwrap_or(name);
        take(
            "immich_model",
            &mut || hailo.immich_model = immich.clone(),
            immich.clone(),
        );
        let scale = config
            .model
            .logit_scale
            .unwrap_or(model.manifest.logit_scale);
        take(
            "logit_scale",
            &mut || hailo.logit_scale = scale,
            scale.to_string(),
        );
    }
    let mut said = format!(
        "Hailo files from model.dir ({}): {}",
        dir.display(),
        used.join(", ")
    );
    if !kept.is_empty() {
        said.push_str(&format!(
            "; set in the config, so kept: hailo.{}",
            kept.join(", hailo.")
        ));
    }
    (hailo, Some(said))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulled_files_win_over_defaults_and_the_yaml_wins_over_them() {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("m");
        let arch = model.join("hailo/hailo10h");
        std::fs::create_dir_all(&arch).unwrap();
        std::fs::write(arch.join("clip_vit_b_32_image_encoder.hef"), b"x").unwrap();
        let mut config = Config::default();
        config.model.dir = model.clone();
        let (h, said) = settings(&config);
        assert_eq!(h.resources_dir, arch);
        assert_eq!(
            h.image_hef,
            PathBuf::from("clip_vit_b_32_image_encoder.hef")
        );
        assert_eq!(h.text_hef, PathBuf::from("(none pulled)"));
        assert!(said.unwrap().contains("resources_dir"));

        let config = Config::from_yaml(
            &format!(
                "model:\n  dir: {}\nhailo:\n  image_hef: /opt/mine.hef\n",
                model.display()
            ),
            Path::new("t.yaml"),
        )
        .unwrap();
        let (h, said) = settings(&config);
        assert_eq!(h.image_hef, PathBuf::from("/opt/mine.hef"));
        assert_eq!(h.resources_dir, arch);
        assert!(said.unwrap().contains("kept: hailo.image_hef"));

        // Nothing pulled: the config as it is.
        let mut config = Config::default();
        config.model.dir = tmp.path().join("none");
        assert_eq!(settings(&config), (config.hailo.clone(), None));
    }
}
