//! `hailo-clip pull [ORG/]NAME`: an Immich model from the Hub (and with `--hef` its Model
//! Zoo HEFs and the Hailo text files), installed as one model directory.
//!
//! * Only the files the model needs (Immich's layout; never `rknpu/`, `armnn/`).
//! * Staged in `.NAME.pull-COMMIT/` beside the destination, which a re-run continues; moved
//!   into place only when every file is verified, by an atomic exchange with the old
//!   directory (renameat2 RENAME_EXCHANGE), so a failure leaves an existing destination as
//!   it was and no half model at a new one.
//!   Where the file system refuses the exchange, the old directory is renamed aside first.
//! * A record (`hailo-clip-pull.json`) makes a re-pull of the same commit a no-op when every
//!   installed file still has its recorded sha256; a file missing or changed is fetched
//!   again (HEFs too, from the recorded Model Zoo). With the Hub unreachable (or
//!   `HF_HUB_OFFLINE=1`) a pull of an installed model verifies its files and succeeds,
//!   saying so, unless it asks for HEFs the installed model does not have.
//! * One pull at a time per destination: a lock file beside it (`.NAME.pull.lock`).

use std::path::{Path, PathBuf};

use super::hub::{Hub, HubFile, HubSettings};
use super::transfer::{verify, Check, Expect, Fetched, Progress};
use super::zoo::{self, Arch, Zoo};
use super::FetchError;
use crate::model::immich;
use crate::model::record::{PullRecord, RecordFile, ZooRecord, RECORD_FILE};

/// Where a pull's HEFs and Hailo text files go inside the model directory.
pub fn hailo_dir(model_dir: &Path, arch: Arch) -> PathBuf {
    model_dir.join("hailo").join(arch.as_str())
}

#[derive(Debug, Clone)]
pub struct HefRequest {
    pub arch: Arch,
    pub zoo_version: String,
    pub zoo_url: String,
}

#[derive(Debug, Clone)]
pub struct PullRequest {
    /// `ORG/NAME`.
    pub repo: String,
    /// NAME: the model's name and its Immich name.
    pub name: String,
    pub revision: String,
    pub to: PathBuf,
    pub hef: Option<HefRequest>,
}

impl PullRequest {
    /// `[ORG/]NAME`: NAME alone is `immich-app/NAME`.
    pub fn parse_repo(spec: &str) -> Result<(String, String), FetchError> {
        let spec = spec.trim().trim_matches('/');
        let (org, name) = match spec.split_once('/') {
            Some((org, name)) => (org, name),
            None => ("immich-app", spec),
        };
        let ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !ok(org) || !ok(name) {
            return Err(FetchError::Refused(format!(
                "{spec:?} is not a model name: expected NAME (e.g. ViT-B-32__openai) or ORG/NAME"
            )));
        }
        Ok((format!("{org}/{name}"), name.to_string()))
    }
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Installed {
        commit: String,
        fetched_bytes: u64,
    },
    AlreadyInstalled {
        commit: String,
    },
    /// The Hub could not be asked; the installed files were verified.
    VerifiedOffline {
        commit: String,
        why: String,
    },
}

/// The files of the repository the model needs: Immich's layout, and the ONNX external
/// data beside each graph (files directly in `visual/` or `textual/` named `*.onnx_data` or
/// `*.onnx.data`); nothing in sub-folders (rknpu/, armnn/), no README.
pub fn wanted(files: &[HubFile]) -> Result<Vec<HubFile>, String> {
    let mut out = Vec::new();
    for required in immich::FILES {
        match files.iter().find(|f| f.path == required) {
            Some(f) => out.push(f.clone()),
            None => {
                return Err(format!(
                    "it has no {required}: not an Immich CLIP export (its files: {})",
                    files
                        .iter()
                        .map(|f| f.path.as_str())
                        .filter(|p| p.matches('/').count() <= 1)
                        .take(20)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
    }
    for f in files {
        if is_external_data(&f.path) && !out.iter().any(|o| o.path == f.path) {
            out.push(f.clone());
        }
    }
    Ok(out)
}

/// `visual/NAME.onnx_data` or `textual/NAME.onnx.data`: a plain file name, no `..`, nothing
/// hidden, directly beside a graph (where ModelDir's check lets a graph's external data be).
fn is_external_data(path: &str) -> bool {
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["visual" | "textual", name] => {
            !name.starts_with('.') && (name.ends_with(".onnx_data") || name.ends_with(".onnx.data"))
        }
        _ => false,
    }
}

/// A file the model needs that the listing gives no size for cannot be verified.
fn check_sizes(listing: &super::hub::Listing) -> Result<(), String> {
    match listing
        .without_size
        .iter()
        .find(|p| immich::FILES.contains(&p.as_str()) || is_external_data(p))
    {
        Some(p) => Err(format!(
            "the listing gives no size for {p}, so it cannot be verified"
        )),
        None => Ok(()),
    }
}

/// The destination must be new, empty, or a model directory: the exchange moves whatever is
/// there away and deletes it.
fn check_destination(to: &Path) -> Result<(), FetchError> {
    match std::fs::read_dir(to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FetchError::disk("reading", to, e)),
        Ok(mut entries) => {
            if entries.next().is_none() || to.join(RECORD_FILE).is_file() || immich::looks_like(to)
            {
                Ok(())
            } else {
                Err(FetchError::Refused(format!(
                    "{} exists and is not a model directory; pull replaces its destination whole, so give --to a new or empty directory",
                    to.display()
                )))
            }
        }
    }
}

fn staging_dir(to: &Path, commit: &str) -> Result<PathBuf, FetchError> {
    let name = to
        .file_name()
        .ok_or_else(|| FetchError::Refused(format!("{} has no directory name", to.display())))?;
    let parent = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(parent.join(format!(
        ".{}.pull-{}",
        name.to_string_lossy(),
        &commit[..commit.len().min(12)]
    )))
}

/// An earlier run's staging for another commit holds nothing this one can resume.
fn remove_stale_staging(to: &Path, keep: &Path) {
    let (Some(parent), Some(name)) = (keep.parent(), to.file_name()) else {
        return;
    };
    let prefix = format!(".{}.pull-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path != keep && entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Verifies every file the record lists (size and sha256).
pub fn verify_installed(dir: &Path, record: &PullRecord) -> Result<(), FetchError> {
    for f in record.files.iter().chain(&record.hefs) {
        verify(
            &dir.join(&f.path),
            &Expect {
                name: f.path.clone(),
                size: Some(f.size),
                check: Check::Sha256(f.sha256.clone()),
            },
        )?;
    }
    Ok(())
}

/// Whether the record already covers this request (same repo and commit, HEFs as asked),
/// and every file it lists is there with its sha256.
fn satisfied(
    dir: &Path,
    record: &PullRecord,
    repo: &str,
    commit: &str,
    hef: &Option<HefRequest>,
) -> bool {
    let hef_ok = hef.as_ref().is_none_or(|h| has_hefs(record, h));
    record.repo == repo
        && record.commit == commit
        && hef_ok
        && verify_installed(dir, record).is_ok()
}

/// Whether the record has the HEFs `hef` asks for.
fn has_hefs(record: &PullRecord, hef: &HefRequest) -> bool {
    !record.hefs.is_empty()
        && record
            .zoo
            .as_ref()
            .is_some_and(|z| z.version == hef.zoo_version && z.arch == hef.arch.as_str())
}

/// The HEFs an earlier `--hef` pull installed, asked for again from the Model Zoo it
/// recorded: a re-pull without `--hef` keeps them, fetching any that went missing.
fn recorded_hefs(record: &PullRecord) -> Option<HefRequest> {
    let zoo = record.zoo.as_ref().filter(|_| !record.hefs.is_empty())?;
    Some(HefRequest {
        arch: Arch::parse(&zoo.arch)?,
        zoo_version: zoo.version.clone(),
        zoo_url: zoo.base_url.clone(),
    })
}

/// Held while a pull stages and installs into `to`: a second pull into the same
/// destination would remove the first one's staging. The lock file (`.NAME.pull.lock`
/// beside the destination) is removed when the pull ends.
struct PullLock {
    /// Holds the lock until dropped.
    _file: std::fs::File,
    path: PathBuf,
}

impl PullLock {
    fn take(to: &Path) -> Result<PullLock, FetchError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let name = to.file_name().ok_or_else(|| {
            FetchError::Refused(format!("{} has no directory name", to.display()))
        })?;
        let parent = to
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| FetchError::disk("creating", parent, e))?;
        let path = parent.join(format!(".{}.pull.lock", name.to_string_lossy()));
        loop {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| FetchError::disk("opening", &path, e))?;
            // SAFETY: flock on a descriptor this function owns; released when it is closed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Err(FetchError::Refused(format!(
                        "another `hailo-clip pull` is installing into {} (it holds {}): wait for it to finish",
                        to.display(),
                        path.display()
                    )));
                }
                return Err(FetchError::disk("locking", &path, e));
            }
            // The pull that held it may have removed the file between our open and our
            // lock: then this lock is on a file nobody else sees, so take the new one.
            let held = file
                .metadata()
                .map_err(|e| FetchError::disk("reading", &path, e))?;
            match std::fs::metadata(&path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(PullLock { _file: file, path })
                }
                _ => continue,
            }
        }
    }
}

impl Drop for PullLock {
    fn drop(&mut self) {
        // Removed while still locked, so no other pull can have locked this file.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs a pull.
pub fn pull(
    request: &PullRequest,
    settings: HubSettings,
    progress: &dyn Progress,
) -> Result<Outcome, FetchError> {
    let to = &request.to;
    let installed = if to.join(RECORD_FILE).is_file() {
        PullRecord::read(to).map_err(|e| FetchError::Refused(e.to_string()))?
    } else {
        None
    };
    let offline = |why: String, record: &PullRecord| -> Result<Outcome, FetchError> {
        if let Some(h) = request.hef.as_ref().filter(|h| !has_hefs(record, h)) {
            return Err(FetchError::Refused(format!(
                "{why}; the model installed in {} has no {} HEFs of Model Zoo {}, and they are fetched only with the Hub's model",
                to.display(),
                h.arch.as_str(),
                h.zoo_version
            )));
        }
        verify_installed(to, record)?;
        Ok(Outcome::VerifiedOffline {
            commit: record.commit.clone(),
            why,
        })
    };
    if settings.offline {
        return match &installed {
            Some(record) if record.repo == request.repo => {
                offline("HF_HUB_OFFLINE is set".into(), record)
            }
            _ => Err(FetchError::Refused(format!(
                "HF_HUB_OFFLINE is set and {} is not installed in {}",
                request.repo,
                to.display()
            ))),
        };
    }
    check_destination(to)?;
    // A model with no twin fails before anything is fetched.
    if let Some(h) = &request.hef {
        zoo::twin(&request.name, h.arch, &h.zoo_version)?;
    }
    let hub = Hub::new(settings);
    let listing = match hub.list(&request.repo, &request.revision) {
        Ok(l) => l,
        Err(e) if e.is_unreachable() => {
            return match &installed {
                Some(record) if record.repo == request.repo => offline(e.to_string(), record),
                _ => Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let commit = listing.commit.clone();
    if let Some(record) = &installed {
        if satisfied(to, record, &request.repo, &commit, &request.hef) {
            return Ok(Outcome::AlreadyInstalled { commit });
        }
    }
    // Taken only to change something: a no-op re-pull leaves the parent untouched.
    let _lock = PullLock::take(to)?;
    let files = check_sizes(&listing)
        .and_then(|()| wanted(&listing.files))
        .map_err(|why| FetchError::Refused(format!("{} at {commit}: {why}", request.repo)))?;

    let staging = staging_dir(to, &commit)?;
    remove_stale_staging(to, &staging);
    std::fs::create_dir_all(&staging).map_err(|e| FetchError::disk("creating", &staging, e))?;
    let mut fetched_bytes = 0;
    let mut records = Vec::new();
    for file in &files {
        let dest = staging.join(&file.path);
        let expect = file.expect();
        let reused = reuse(&dest, to, installed.as_ref(), file, &expect)?;
        let got = match reused {
            Some(f) => f,
            None => {
                let url = hub.file_url(&request.repo, &commit, &file.path);
                let check =
                    |reply: &super::transfer::Reply| hub.check_headers(reply, &commit, file);
                let f = hub.http.download(
                    &url,
                    &dest,
                    &expect,
                    progress,
                    &check,
                    &hub.unreachable_fn(),
                )?;
                fetched_bytes += f.size;
                f
            }
        };
        records.push(RecordFile {
            path: file.path.clone(),
            size: got.size,
            sha256: got.sha256,
        });
    }

    let hef = request
        .hef
        .clone()
        .or_else(|| installed.as_ref().and_then(recorded_hefs));
    let (hefs, zoo_record) = match &hef {
        Some(h) => {
            let (hefs, bytes) = pull_hefs(request, h, &staging, to, installed.as_ref(), progress)?;
            fetched_bytes += bytes;
            (
                hefs,
                Some(ZooRecord {
                    version: h.zoo_version.clone(),
                    arch: h.arch.as_str().into(),
                    base_url: h.zoo_url.clone(),
                }),
            )
        }
        None => (Vec::new(), None),
    };

    let record = PullRecord {
        format_version: 1,
        name: request.name.clone(),
        repo: request.repo.clone(),
        revision: request.revision.clone(),
        commit: commit.clone(),
        endpoint: hub.settings.endpoint.clone(),
        files: records,
        hefs,
        zoo: zoo_record,
    };
    let record_path = staging.join(RECORD_FILE);
    let json = serde_json::to_string_pretty(&record).expect("a record serializes");
    std::fs::write(&record_path, json + "\n")
        .map_err(|e| FetchError::disk("writing", &record_path, e))?;
    // The staged directory must read as the model it is before it replaces anything.
    crate::model::ModelDir::open(&staging).map_err(|e| {
        FetchError::Refused(format!(
            "the pulled files are not a model hailo-clip can serve: {e}"
        ))
    })?;
    install(&staging, to, progress, exchange)?;
    Ok(Outcome::Installed {
        commit,
        fetched_bytes,
    })
}

/// A verified copy of `file` already at hand: staged by an earlier run, or installed in the
/// destination with the same hash (hard-linked, or copied across file systems).
fn reuse(
    dest: &Path,
    to: &Path,
    installed: Option<&PullRecord>,
    file: &HubFile,
    expect: &Expect,
) -> Result<Option<Fetched>, FetchError> {
    if dest.is_file() {
        if let Ok(sha256) = verify(dest, expect) {
            return Ok(Some(Fetched {
                path: dest.to_path_buf(),
                size: file.size,
                sha256,
            }));
        }
        std::fs::remove_file(dest).map_err(|e| FetchError::disk("removing", dest, e))?;
    }
    let Some(record) = installed else {
        return Ok(None);
    };
    let Some(old) = record.files.iter().find(|f| f.path == file.path) else {
        return Ok(None);
    };
    let same = old.size == file.size
        && match &expect.check {
            Check::Sha256(sha) => sha.eq_ignore_ascii_case(&old.sha256),
            _ => true,
        };
    if !same {
        return Ok(None);
    }
    // An installed file that is gone or unreadable is fetched again.
    if link_or_copy(&to.join(&file.path), dest).is_err() {
        let _ = std::fs::remove_file(dest);
        return Ok(None);
    }
    match verify(dest, expect) {
        Ok(sha256) => Ok(Some(Fetched {
            path: dest.to_path_buf(),
            size: file.size,
            sha256,
        })),
        Err(_) => {
            let _ = std::fs::remove_file(dest);
            Ok(None)
        }
    }
}

fn link_or_copy(from: &Path, to: &Path) -> Result<(), FetchError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| FetchError::disk("creating", parent, e))?;
    }
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| FetchError::disk("copying", to, e))
}

fn pull_hefs(
    request: &PullRequest,
    h: &HefRequest,
    staging: &Path,
    to: &Path,
    installed: Option<&PullRecord>,
    progress: &dyn Progress,
) -> Result<(Vec<RecordFile>, u64), FetchError> {
    let twin = zoo::twin(&request.name, h.arch, &h.zoo_version)?;
    let zoo = Zoo::new(&h.zoo_url);
    let rel_dir = format!("hailo/{}", h.arch.as_str());
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut hefs = vec![twin.image.clone()];
    hefs.extend(twin.text.clone());
    for hef in &hefs {
        let rel = format!("{rel_dir}/{hef}.hef");
        let dest = staging.join(&rel);
        let previous = installed
            .filter(|r| {
                r.zoo
                    .as_ref()
                    .is_some_and(|z| z.version == h.zoo_version && z.arch == h.arch.as_str())
            })
            .and_then(|r| r.hefs.iter().find(|f| f.path == rel));
        // An installed HEF of this Zoo version that still has its recorded sha256 is kept
        // without asking the Zoo (which may be unreachable while the Hub is not).
        if let Some(old) = previous {
            let recorded = Expect {
                name: format!("{hef}.hef"),
                size: Some(old.size),
                check: Check::Sha256(old.sha256.clone()),
            };
            if !dest.is_file()
                && link_or_copy(&to.join(&rel), &dest).is_ok()
                && verify(&dest, &recorded).is_ok()
            {
                out.push(old.clone());
                continue;
            }
        }
        let expect = zoo.expect(&h.zoo_version, h.arch, hef)?;
        let mut got = None;
        if dest.is_file() {
            got = verify(&dest, &expect).ok();
        }
        let sha256 = match got {
            Some(sha) => sha,
            None => {
                let _ = std::fs::remove_file(&dest);
                let url = zoo.url(&h.zoo_version, h.arch, hef);
                let f = zoo.http.download(
                    &url,
                    &dest,
                    &expect,
                    progress,
                    &|_| Ok(()),
                    &zoo.unreachable_fn(),
                )?;
                bytes += f.size;
                f.sha256
            }
        };
        let size = std::fs::metadata(&dest)
            .map_err(|e| FetchError::disk("reading", &dest, e))?
            .len();
        out.push(RecordFile {
            path: rel,
            size,
            sha256,
        });
    }
    if twin.text.is_some() {
        // The text HEF takes token embeddings: its tokenizer, lookup table and projection
        // come from the pulled text encoder's graph.
        let model = crate::model::ModelDir::open(staging)
            .map_err(|e| FetchError::Refused(e.to_string()))?;
        let out_dir = staging.join(&rel_dir);
        let summary = crate::backends::hailo::assets::export_from_onnx(&model, &out_dir)
            .map_err(|e| FetchError::Refused(format!("writing the Hailo text files: {e}")))?;
        for path in summary.files {
            let expect = Expect {
                name: path.display().to_string(),
                size: None,
                check: Check::SizeOnly,
            };
            let sha256 = verify(&path, &expect)?;
            let size = std::fs::metadata(&path)
                .map_err(|e| FetchError::disk("reading", &path, e))?
                .len();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            out.push(RecordFile {
                path: format!("{rel_dir}/{name}"),
                size,
                sha256,
            });
        }
    }
    Ok((out, bytes))
}

/// Moves the verified staging directory into place: an atomic exchange with an existing
/// destination (the old one is then removed), or a rename to a new one. Where the file
/// system refuses the exchange (EINVAL: it has no RENAME_EXCHANGE), the old directory is
/// renamed aside, the new one into place, and the old one back should that fail. The model
/// is installed once the new directory is in place: an old one that cannot be removed is
/// said, not failed.
fn install(
    staging: &Path,
    to: &Path,
    progress: &dyn Progress,
    exchange: fn(&Path, &Path) -> std::io::Result<()>,
) -> Result<(), FetchError> {
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| FetchError::disk("creating", parent, e))?;
    }
    if !to.exists() {
        return std::fs::rename(staging, to)
            .map_err(|e| FetchError::disk("moving into place", to, e));
    }
    let old = match exchange(staging, to) {
        // `staging` now holds the old model.
        Ok(()) => staging.to_path_buf(),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
            let mut aside = staging.as_os_str().to_owned();
            aside.push(".old");
            let aside = PathBuf::from(aside);
            let _ = std::fs::remove_dir_all(&aside);
            std::fs::rename(to, &aside).map_err(|e| FetchError::disk("moving aside", to, e))?;
            if let Err(e) = std::fs::rename(staging, to) {
                let _ = std::fs::rename(&aside, to);
                return Err(FetchError::disk("moving into place", to, e));
            }
            aside
        }
        Err(e) => return Err(FetchError::disk("replacing", to, e)),
    };
    if let Err(e) = std::fs::remove_dir_all(&old) {
        progress.note(&format!(
            "installed; the replaced model is left in {} ({}): remove it by hand",
            old.display(),
            FetchError::disk("removing", &old, e)
        ));
    }
    Ok(())
}

/// Exchanges two paths atomically (renameat2 RENAME_EXCHANGE).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: two valid NUL-terminated paths; renameat2 reads them and nothing else.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> HubFile {
        HubFile {
            path: path.into(),
            size: 1,
            blob_id: None,
            lfs_sha256: None,
        }
    }

    #[test]
    fn only_the_files_the_model_needs() {
        let mut listing: Vec<HubFile> = immich::FILES.iter().map(|p| file(p)).collect();
        for extra in [
            "README.md",
            ".gitattributes",
            "visual/rknpu/rk3588/model.rknn",
            "visual/armnn/model.armnn",
            "textual/model.onnx_data",
        ] {
            listing.push(file(extra));
        }
        let got: Vec<String> = wanted(&listing)
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(got.len(), immich::FILES.len() + 1);
        assert!(got.contains(&"textual/model.onnx_data".to_string()));
        assert!(!got
            .iter()
            .any(|p| p.contains("rknpu") || p.contains("armnn") || p == "README.md"));
        let err = wanted(&listing[1..]).unwrap_err();
        assert!(err.contains("config.json"), "{err}");
    }

    fn model(dir: &Path, content: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), content).unwrap();
    }

    #[test]
    fn without_rename_exchange_the_old_model_is_moved_aside_then_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let (staging, to) = (tmp.path().join(".m.pull-abc"), tmp.path().join("m"));
        model(&staging, "new");
        model(&to, "old");
        let refuse = |_: &Path, _: &Path| Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        install(&staging, &to, &super::super::transfer::Lines, refuse).unwrap();
        assert_eq!(
            std::fs::read_to_string(to.join("config.json")).unwrap(),
            "new"
        );
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "neither the staging nor the old model is left"
        );
        // Any other refusal leaves the old model where it was.
        model(&staging, "newer");
        let other = |_: &Path, _: &Path| Err(std::io::Error::from_raw_os_error(libc::EIO));
        let err = install(&staging, &to, &super::super::transfer::Lines, other).unwrap_err();
        assert!(err.to_string().starts_with("replacing "), "{err}");
        assert_eq!(
            std::fs::read_to_string(to.join("config.json")).unwrap(),
            "new"
        );
    }

    #[test]
    fn an_old_model_that_cannot_be_removed_is_said_not_failed() {
        struct Notes(std::sync::Mutex<Vec<String>>);
        impl Progress for Notes {
            fn start(&self, _: &str, _: Option<u64>, _: u64) {}
            fn advance(&self, _: u64) {}
            fn finish(&self, _: &str, _: u64, _: std::time::Duration, _: u64) {}
            fn note(&self, message: &str) {
                self.0.lock().unwrap().push(message.into());
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        let (staging, to) = (tmp.path().join(".m.pull-abc"), tmp.path().join("m"));
        model(&staging, "new");
        model(&to, "old");
        // An exchange that swaps, then leaves in `staging` what cannot be removed (a file
        // where remove_dir_all expects a directory).
        let swap_to_a_file = |a: &Path, b: &Path| {
            exchange(a, b)?;
            std::fs::remove_dir_all(a)?;
            std::fs::write(a, "not a directory")
        };
        let notes = Notes(Default::default());
        install(&staging, &to, &notes, swap_to_a_file).unwrap();
        assert_eq!(
            std::fs::read_to_string(to.join("config.json")).unwrap(),
            "new"
        );
        let notes = notes.0.lock().unwrap();
        assert!(
            notes.len() == 1 && notes[0].starts_with("installed; the replaced model is left in "),
            "{notes:?}"
        );
    }

    #[test]
    fn a_needed_file_without_a_size_is_named() {
        let listing = |without_size: &[&str]| super::super::hub::Listing {
            commit: "0".repeat(40),
            files: Vec::new(),
            without_size: without_size.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            check_sizes(&listing(&["README.md", "rknpu/x.rknn"])),
            Ok(())
        );
        assert_eq!(
            check_sizes(&listing(&["README.md", "textual/model.onnx"])),
            Err(
                "the listing gives no size for textual/model.onnx, so it cannot be verified".into()
            )
        );
        assert!(check_sizes(&listing(&["visual/model.onnx_data"])).is_err());
    }

    #[test]
    fn external_data_names() {
        assert!(is_external_data("visual/model.onnx_data"));
        assert!(is_external_data("textual/model.onnx.data"));
        for bad in [
            "visual/.onnx_data",
            "visual/sub/x.onnx_data",
            "../x.onnx_data",
            "x.onnx_data",
        ] {
            assert!(!is_external_data(bad), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            PullRequest::parse_repo("ViT-B-32__openai").unwrap(),
            (
                "immich-app/ViT-B-32__openai".into(),
                "ViT-B-32__openai".into()
            )
        );
        assert_eq!(
            PullRequest::parse_repo("me/m").unwrap(),
            ("me/m".into(), "m".into())
        );
        assert!(PullRequest::parse_repo("../etc").is_err());
        assert!(PullRequest::parse_repo("a/b/c").is_err());
    }
}
