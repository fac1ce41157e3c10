//! One file over HTTP: streamed to a `.part` file and hashed as it arrives, resumed with
//! `Range: bytes=N-` where a transfer was cut (a 206 continues, a 200 starts over), retried
//! with backoff, and accepted only when its size and hash are what the listing said.
//!
//! Redirects are followed here, not by the client, so that the token goes only to the host
//! it was given for (the Hub answers a large file with a 302 to its CDN on another host) and
//! the first response's headers can be checked (`X-Repo-Commit`, `X-Linked-Size`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{hex, FetchError};

/// What a file must be.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    /// Its name in messages (a path in the repository, or a HEF's name).
    pub name: String,
    pub size: Option<u64>,
    pub check: Check,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// The Hub's LFS hash of the file.
    Sha256(String),
    /// git's blob id: sha1 of `blob <size>\0` and the content (the Hub's `blobId`).
    GitBlobSha1(String),
    /// S3's ETag of a single-part upload: the MD5 of the content.
    Md5(String),
    /// Size only (a multipart ETag is no content hash).
    SizeOnly,
}

/// A fetched file: where it is, its size, and its sha256 for the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// How a transfer is shown: a bar on a terminal, a line per file otherwise.
pub trait Progress: Sync {
    fn start(&self, name: &str, total: Option<u64>, already: u64);
    fn advance(&self, bytes: u64);
    fn finish(&self, name: &str, size: u64, elapsed: Duration, resumed_from: u64);
    fn note(&self, message: &str);
}

/// The HTTP side: one agent, the token and the origin it may be sent to, retry policy.
pub struct Http {
    agent: ureq::Agent,
    token: Option<String>,
    /// `scheme://host:port` the token belongs to.
    token_origin: Option<String>,
    pub retries: u32,
    pub backoff: Duration,
}

/// The part of a URL a credential belongs to.
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, Some(p)),
        _ => (authority, None),
    };
    let port = port
        .map(str::to_string)
        .unwrap_or_else(|| if scheme == "https" { "443" } else { "80" }.into());
    Some(format!(
        "{}://{}:{port}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    ))
}

/// `location` resolved against `base` (absolute, absolute-path or relative).
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    let authority = rest.split('/').next().unwrap_or("");
    if let Some(stripped) = location.strip_prefix("//") {
        return format!("{scheme}://{stripped}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let dir = path.rsplit_once('/').map_or(authority, |(d, _)| d);
    format!("{scheme}://{dir}/{location}")
}

/// A response and the URL it came from, after redirects.
pub struct Reply {
    pub url: String,
    /// Headers of the first response (before any redirect): where the Hub puts its own.
    pub first_headers: ureq::http::HeaderMap,
    pub response: ureq::http::Response<ureq::Body>,
}

impl Reply {
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        header(self.response.headers(), name)
    }
    pub fn first_header(&self, name: &str) -> Option<String> {
        header(&self.first_headers, name)
    }
}

pub fn header(headers: &ureq::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

const MAX_REDIRECTS: usize = 5;

impl Http {
    pub fn new(token: Option<String>, token_origin: Option<String>) -> Http {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_resolve(Some(Duration::from_secs(15)))
            .timeout_send_request(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .user_agent(concat!("hailo-clip/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Http {
            agent,
            token,
            token_origin,
            retries: 5,
            backoff: Duration::from_secs(1),
        }
    }

    /// GET `url`, following redirects; `headers` go with every hop, the token only to its
    /// origin. `body_time` bounds the receipt of the body.
    pub fn get(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body_time: Duration,
    ) -> Result<Reply, ureq::Error> {
        let mut url = url.to_string();
        let mut first_headers = None;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.agent.get(&url);
            for (k, v) in headers {
                request = request.header(*k, v);
            }
            if let (Some(token), Some(o)) = (&self.token, &self.token_origin) {
                if origin(&url).as_deref() == Some(o.as_str()) {
                    request = request.header("Authorization", format!("Bearer {token}"));
                }
            }
            let response = request
                .config()
                .timeout_recv_body(Some(body_time))
                .build()
                .call()?;
            if first_headers.is_none() {
                first_headers = Some(response.headers().clone());
            }
            let status = response.status().as_u16();
            if (300..400).contains(&status) && status != 304 {
                if let Some(location) = header(response.headers(), "location") {
                    url = resolve(&url, &location);
                    continue;
                }
            }
            return Ok(Reply {
                url,
                first_headers: first_headers.unwrap_or_default(),
                response,
            });
        }
        Err(ureq::Error::TooManyRedirects)
    }

    /// Fetches `url` into `dest` (through `dest.part`), resuming a `.part` left by an earlier
    /// run, verifying `expect`. `check_first` looks at each first response (the Hub checks its
    /// commit and size headers there); `unreachable` words a network failure, naming the
    /// server and the setting that points at it.
    pub fn download(
        &self,
        url: &str,
        dest: &Path,
        expect: &Expect,
        progress: &dyn Progress,
        check_first: &dyn Fn(&Reply) -> Result<(), FetchError>,
        unreachable: &dyn Fn(String) -> FetchError,
    ) -> Result<Fetched, FetchError> {
        let part = part_path(dest);
        if let Some(parent) = part.parent() {
            std::fs::create_dir_all(parent).map_err(|e| FetchError::disk("creating", parent, e))?;
        }
        let mut attempt = 0u32;
        let mut last_error: Option<FetchError> = None;
        loop {
            if attempt > self.retries {
                return Err(last_error.unwrap_or_else(|| unreachable("gave up".into())));
            }
            if attempt > 0 {
                let wait = self.backoff * 2u32.saturating_pow(attempt - 1).min(16);
                if let Some(e) = &last_error {
                    progress.note(&format!(
                        "{}: {e}; retrying in {:.0} s ({attempt}/{})",
                        expect.name,
                        wait.as_secs_f64(),
                        self.retries
                    ));
                }
                std::thread::sleep(wait);
            }
            attempt += 1;
            match self.attempt(url, &part, expect, progress, check_first, unreachable) {
                Ok(Some(done)) => {
                    // The body is all here, hashed as it streamed (a `.part` an earlier run
                    // left complete is hashed from the disk).
                    let fetched_size = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
                    let verified = match done {
                        Complete::Hashed(hashes) => hashes.check(expect, fetched_size),
                        Complete::OnDisk => verify(&part, expect),
                    };
                    match verified {
                        Ok(sha256) => {
                            std::fs::rename(&part, dest)
                                .map_err(|e| FetchError::disk("moving into place", dest, e))?;
                            return Ok(Fetched {
                                path: dest.to_path_buf(),
                                size: fetched_size,
                                sha256,
                            });
                        }
                        Err(e) => {
                            // A corrupt file is not resumed: it starts over, once.
                            let _ = std::fs::remove_file(&part);
                            if matches!(e, FetchError::Mismatch { .. }) && attempt >= 2 {
                                return Err(e);
                            }
                            last_error = Some(e);
                        }
                    }
                }
                Ok(None) => {}
                Err(Attempt::Retry(e)) => last_error = Some(e),
                Err(Attempt::Fatal(e)) => return Err(e),
            }
        }
    }

    /// One request: Ok(Some(how)) when the body is complete, Ok(None) to go again at once.
    fn attempt(
        &self,
        url: &str,
        part: &Path,
        expect: &Expect,
        progress: &dyn Progress,
        check_first: &dyn Fn(&Reply) -> Result<(), FetchError>,
        unreachable: &dyn Fn(String) -> FetchError,
    ) -> Result<Option<Complete>, Attempt> {
        let fatal = Attempt::Fatal;
        let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if let Some(size) = expect.size {
            if have > size {
                truncate(part).map_err(fatal)?;
                have = 0;
            }
            if have == size {
                return Ok(Some(Complete::OnDisk));
            }
        }
        let mut headers = vec![("Accept-Encoding", "identity".to_string())];
        if have > 0 {
            headers.push(("Range", format!("bytes={have}-")));
        }
        // A transfer slower than 100 kB/s on average is cut and resumed.
        let body_time = Duration::from_secs(
            120 + expect.size.unwrap_or(1 << 30).saturating_sub(have) / 100_000,
        );
        let mut reply = match self.get(url, &headers, body_time) {
            Ok(r) => r,
            Err(e) => return Err(Attempt::Retry(unreachable(e.to_string()))),
        };
        check_first(&reply).map_err(fatal)?;
        let status = reply.status();
        let start = match status {
            200 => 0,
            206 => {
                let from = reply
                    .header("content-range")
                    .and_then(|r| content_range_start(&r));
                if from != Some(have) {
                    // Not where this file ends: start over.
                    truncate(part).map_err(fatal)?;
                    return Ok(None);
                }
                have
            }
            416 => {
                // Nothing past what is here: the file may be complete; verify it.
                return Ok(Some(Complete::OnDisk));
            }
            408 | 429 | 500..=599 => {
                return Err(Attempt::Retry(FetchError::Http {
                    url: reply.url.clone(),
                    status,
                    detail: String::new(),
                }))
            }
            _ => {
                return Err(fatal(FetchError::Http {
                    url: reply.url.clone(),
                    status,
                    detail: error_detail(&mut reply),
                }))
            }
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(part)
            .map_err(|e| fatal(FetchError::disk("writing", part, e)))?;
        file.set_len(start)
            .map_err(|e| fatal(FetchError::disk("writing", part, e)))?;
        // A resumed file's first bytes are hashed from the disk, the rest as they arrive.
        let mut hashes = Hashes::new(&expect.check, expect.size);
        if start > 0 {
            file.seek(SeekFrom::Start(0))
                .map_err(|e| fatal(FetchError::disk("reading", part, e)))?;
            let mut head = (&mut file).take(start);
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = head
                    .read(&mut buf)
                    .map_err(|e| fatal(FetchError::disk("reading", part, e)))?;
                if n == 0 {
                    break;
                }
                hashes.update(&buf[..n]);
            }
        }
        file.seek(SeekFrom::Start(start))
            .map_err(|e| fatal(FetchError::disk("writing", part, e)))?;
        let began = Instant::now();
        progress.start(&expect.name, expect.size, start);
        let mut reader = reply.response.into_body().into_reader();
        // The body is hashed on a second thread while this one receives and writes, so the
        // hashing costs no time on the wire; chunks go round between the two, a few at most.
        let (full_tx, full_rx) = crossbeam_channel::bounded::<(Vec<u8>, usize)>(CHUNKS);
        let (free_tx, free_rx) = crossbeam_channel::bounded::<Vec<u8>>(CHUNKS);
        for _ in 0..CHUNKS {
            free_tx
                .send(vec![0u8; CHUNK])
                .expect("room for every chunk");
        }
        let (received, hashes) = std::thread::scope(|scope| {
            let hasher = scope.spawn(move || {
                let mut hashes = hashes;
                for (chunk, n) in full_rx {
                    hashes.update(&chunk[..n]);
                    // The receiver may have finished: then nobody needs the chunk back.
                    let _ = free_tx.send(chunk);
                }
                hashes
            });
            let received = (|| -> Result<u64, Attempt> {
                let mut written = start;
                let mut synced = start;
                loop {
                    let mut chunk = free_rx.recv().expect("the hasher hands chunks back");
                    let n = match reader.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) => {
                            return Err(Attempt::Retry(unreachable(format!(
                                "the transfer of {} was cut after {written} bytes: {e}",
                                expect.name
                            ))));
                        }
                    };
                    if expect.size.is_some_and(|size| written + n as u64 > size) {
                        return Err(fatal(FetchError::Mismatch {
                            file: expect.name.clone(),
                            what: "size",
                            expected: expect.size.unwrap_or(0).to_string(),
                            actual: format!("more than {}", written + n as u64 - 1),
                        }));
                    }
                    file.write_all(&chunk[..n])
                        .map_err(|e| fatal(FetchError::disk("writing", part, e)))?;
                    written += n as u64;
                    full_tx
                        .send((chunk, n))
                        .expect("the hasher runs until the sender goes");
                    progress.advance(n as u64);
                    if written - synced >= WRITEBACK_STEP {
                        start_writeback(&file, synced, written - synced);
                        synced = written;
                    }
                }
                Ok(written)
            })();
            drop(full_tx);
            (
                received,
                hasher.join().expect("the hash thread does not panic"),
            )
        });
        let written = match received {
            Ok(w) => w,
            Err(e) => {
                file.flush().ok();
                return Err(e);
            }
        };
        file.sync_all()
            .map_err(|e| fatal(FetchError::disk("writing", part, e)))?;
        if let Some(size) = expect.size {
            if written < size {
                return Err(Attempt::Retry(unreachable(format!(
                    "the transfer of {} ended after {written} of {size} bytes",
                    expect.name
                ))));
            }
        }
        progress.finish(&expect.name, written, began.elapsed(), start);
        Ok(Some(Complete::Hashed(Box::new(hashes))))
    }
}

enum Attempt {
    Retry(FetchError),
    Fatal(FetchError),
}

/// Chunks a body is received in, and how many go round between receiver and hasher.
const CHUNK: usize = 256 * 1024;
const CHUNKS: usize = 8;
/// Written bytes handed to the disk as they come, so the fsync at the end has little left.
const WRITEBACK_STEP: u64 = 16 << 20;

/// Starts writing `len` bytes at `offset` of `file` back to the disk, without waiting
/// (Linux's sync_file_range): the final fsync then finds them on their way.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor of an open file, and a range within it; the call reads
    // nothing of ours and failing only leaves the work to the fsync.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// How a complete body is to be verified.
enum Complete {
    /// Hashed while it streamed.
    Hashed(Box<Hashes>),
    /// Already whole on the disk: hash the file.
    OnDisk,
}

/// The hashes a file is checked by, fed as its bytes go by: always sha256 (for the record),
/// and the listing's own where it is another.
struct Hashes {
    sha256: Sha256,
    sha1: Option<Sha1>,
    md5: Option<Md5>,
}

impl Hashes {
    fn new(check: &Check, size: Option<u64>) -> Hashes {
        let sha1 = match (check, size) {
            (Check::GitBlobSha1(_), Some(size)) => {
                let mut h = Sha1::new();
                h.update(format!("blob {size}\0").as_bytes());
                Some(h)
            }
            _ => None,
        };
        Hashes {
            sha256: Sha256::new(),
            sha1,
            md5: matches!(check, Check::Md5(_)).then(Md5::new),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(h) = &mut self.sha1 {
            h.update(bytes);
        }
        if let Some(h) = &mut self.md5 {
            h.update(bytes);
        }
    }

    /// Checks size and hash against `expect`; answers the sha256.
    fn check(self, expect: &Expect, size: u64) -> Result<String, FetchError> {
        let mismatch = |what, expected: String, actual: String| FetchError::Mismatch {
            file: expect.name.clone(),
            what,
            expected,
            actual,
        };
        if let Some(want) = expect.size {
            if size != want {
                return Err(mismatch("size", want.to_string(), size.to_string()));
            }
        }
        let sha256 = hex(&self.sha256.finalize());
        let (what, got) = match (&expect.check, self.sha1, self.md5) {
            (Check::Sha256(_), _, _) => ("sha256", sha256.clone()),
            (Check::GitBlobSha1(_), Some(h), _) => ("git blob sha1", hex(&h.finalize())),
            (Check::Md5(_), _, Some(h)) => ("MD5 (S3 ETag)", hex(&h.finalize())),
            _ => return Ok(sha256),
        };
        let want = match &expect.check {
            Check::Sha256(w) | Check::GitBlobSha1(w) | Check::Md5(w) => w,
            Check::SizeOnly => return Ok(sha256),
        };
        if want.eq_ignore_ascii_case(&got) {
            Ok(sha256)
        } else {
            Err(mismatch(what, want.to_lowercase(), got))
        }
    }
}

/// The server's words for an error, short.
fn error_detail(reply: &mut Reply) -> String {
    let mut detail = reply
        .header("x-error-message")
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    if detail.is_empty() {
        if let Ok(text) = reply
            .response
            .body_mut()
            .with_config()
            .limit(2048)
            .read_to_string()
        {
            let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if !text.is_empty() {
                detail = format!(": {}", text.chars().take(200).collect::<String>());
            }
        }
    }
    detail
}

fn content_range_start(value: &str) -> Option<u64> {
    // "bytes START-END/TOTAL"
    value
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

fn truncate(path: &Path) -> Result<(), FetchError> {
    match OpenOptions::new().write(true).open(path) {
        Ok(f) => f
            .set_len(0)
            .map_err(|e| FetchError::disk("writing", path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FetchError::disk("writing", path, e)),
    }
}

/// Hashes the file at `path` and checks it against `expect`; answers its sha256.
pub fn verify(path: &Path, expect: &Expect) -> Result<String, FetchError> {
    let mut file = File::open(path).map_err(|e| FetchError::disk("reading", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| FetchError::disk("reading", path, e))?
        .len();
    if let Some(want) = expect.size {
        if size != want {
            return Err(FetchError::Mismatch {
                file: expect.name.clone(),
                what: "size",
                expected: want.to_string(),
                actual: size.to_string(),
            });
        }
    }
    let mut hashes = Hashes::new(&expect.check, Some(size));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| FetchError::disk("reading", path, e))?;
        if n == 0 {
            break;
        }
        hashes.update(&buf[..n]);
    }
    hashes.check(expect, size)
}

/// The progress of a pull on a terminal: one bar per file (indicatif).
pub struct Bar {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Bar {
    pub fn new() -> Bar {
        Bar {
            bar: std::sync::Mutex::new(None),
        }
    }
}

impl Default for Bar {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Bar {
    fn start(&self, name: &str, total: Option<u64>, already: u64) {
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::no_length(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:32!} {bar:30} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta:>4}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(name.to_string());
        bar.set_position(already);
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }
    fn advance(&self, bytes: u64) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            bar.inc(bytes);
        }
    }
    fn finish(&self, _name: &str, _size: u64, _elapsed: Duration, _resumed_from: u64) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish();
        }
    }
    fn note(&self, message: &str) {
        match &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }
}

/// The progress of a pull in a journal or CI log: one line per file.
pub struct Lines;

impl Progress for Lines {
    fn start(&self, _name: &str, _total: Option<u64>, _already: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self, name: &str, size: u64, elapsed: Duration, resumed_from: u64) {
        let fetched = size - resumed_from;
        let secs = elapsed.as_secs_f64().max(1e-3);
        let resumed = if resumed_from > 0 {
            format!(", resumed at {resumed_from} bytes")
        } else {
            String::new()
        };
        eprintln!(
            "fetched {name}: {:.1} MB in {secs:.1} s ({:.1} MB/s{resumed})",
            size as f64 / 1e6,
            fetched as f64 / 1e6 / secs
        );
    }
    fn note(&self, message: &str) {
        eprintln!("{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_redirect_targets() {
        assert_eq!(
            origin("https://huggingface.co/api/models/x").as_deref(),
            Some("https://huggingface.co:443")
        );
        assert_eq!(
            origin("http://127.0.0.1:8080/a?b").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_ne!(
            origin("http://localhost:8080/a"),
            origin("http://127.0.0.1:8080/a")
        );
        assert_eq!(
            resolve("https://hf.co/a/b/c", "https://cdn.example/x"),
            "https://cdn.example/x"
        );
        assert_eq!(resolve("https://hf.co/a/b/c", "/d/e"), "https://hf.co/d/e");
        assert_eq!(resolve("https://hf.co/a/b/c", "d"), "https://hf.co/a/b/d");
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
    }

    #[test]
    fn verify_names_the_file_and_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello\n").unwrap();
        // git hash-object of "hello\n".
        let blob = Expect {
            name: "f".into(),
            size: Some(6),
            check: Check::GitBlobSha1("ce013625030ba8dba906f756967f9e9ca394464a".into()),
        };
        verify(&path, &blob).unwrap();
        let wrong = Expect {
            check: Check::Sha256("00".repeat(32)),
            ..blob
        };
        let err = verify(&path, &wrong).unwrap_err().to_string();
        assert!(
            err.contains("f: sha256 mismatch")
                && err.contains(&"00".repeat(32))
                && err.contains("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"),
            "{err}"
        );
    }
}
