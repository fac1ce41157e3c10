//! `hailo-clip-pull.json`: what `hailo-clip pull` installed in a model directory (the Hub
//! repository, the revision asked for and the commit it resolved to, each file's size and
//! hash, and the Model Zoo HEFs), so that a re-pull of the same commit is a no-op, an offline
//! re-pull can verify the files, and the model keeps its pulled name whatever the directory
//! is called.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ModelDirError;

pub const RECORD_FILE: &str = "hailo-clip-pull.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PullRecord {
    pub format_version: u32,
    /// The model's name: NAME of `pull [ORG/]NAME`, also its Immich name.
    pub name: String,
    /// `ORG/NAME` on the Hub.
    pub repo: String,
    /// The revision asked for (`main` unless `--revision`).
    pub revision: String,
    /// The commit it resolved to.
    pub commit: String,
    /// Where the files came from (`HF_ENDPOINT`), for the record only.
    pub endpoint: String,
    pub files: Vec<RecordFile>,
    /// HEFs fetched by `pull --hef`, under `hailo/ARCH/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hefs: Vec<RecordFile>,
    /// The Model Zoo version and architecture the HEFs are for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zoo: Option<ZooRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecordFile {
    /// Relative to the model directory, `/`-separated.
    pub path: String,
    pub size: u64,
    /// The file's sha256, hex: what the Hub lists for an LFS file, and what pull computed
    /// for every other.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZooRecord {
    pub version: String,
    pub arch: String,
    pub base_url: String,
}

impl PullRecord {
    /// The record in `dir`, None when there is none.
    pub fn read(dir: &Path) -> Result<Option<PullRecord>, ModelDirError> {
        let path = dir.join(RECORD_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ModelDirError::Unreadable { path, source }),
        };
        let record: PullRecord =
            serde_json::from_str(&text).map_err(|e| ModelDirError::Invalid {
                path: path.clone(),
                message: format!("not a pull record: {e}"),
            })?;
        if record.format_version != 1 || record.name.trim().is_empty() {
            return Err(ModelDirError::Invalid {
                path,
                message: format!(
                    "format_version {} with name {:?}: this build reads version 1 with a name",
                    record.format_version, record.name
                ),
            });
        }
        Ok(Some(record))
    }
}
