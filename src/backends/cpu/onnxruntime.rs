//! The ONNX Runtime engine for the CPU backend (crate `ort`, `load-dynamic`): the same
//! model files as tract, run by a `libonnxruntime.so` found at start-up, never downloaded.
//!
//! Where the library comes from, first found wins: `cpu.onnxruntime_library`, the
//! `ORT_DYLIB_PATH` environment variable, the cache `scripts/fetch-onnxruntime.sh` fills
//! (`~/.cache/hailo-clip/onnxruntime/`), `<binary>/../lib/hailo-clip/` (install.sh), and the
//! system library directories (Debian/Pi OS trixie's `libonnxruntime`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ndarray::Array2;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;

use super::{CpuLoadError, CpuLoadProblem, Feed};
use crate::encoder::EncoderError;

/// The loaded library: its file and version, for the log and /health.
#[derive(Debug, Clone, PartialEq)]
pub struct Library {
    pub path: PathBuf,
    pub version: String,
}

/// Candidate library files, in the order they are tried.
pub fn candidates(configured: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = configured {
        out.push(p.to_path_buf());
        return out;
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(PathBuf::from(p));
        return out;
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(cache) = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
    {
        dirs.push(cache.join("hailo-clip/onnxruntime"));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("../lib/hailo-clip"));
    }
    for d in [
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/local/lib",
        "/usr/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            })
            .collect();
        // The most specific name (libonnxruntime.so.1.32.0) is the real file.
        found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        out.extend(found.into_iter().take(1));
    }
    out
}

/// The process's ONNX Runtime: the library and the environment every session lives in.
struct Runtime {
    library: Library,
    environment: ort::environment::Environment,
}

static LOADED: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// Loads ONNX Runtime once per process; later calls get the first outcome.
pub fn load(configured: Option<&Path>) -> Result<Library, String> {
    runtime(configured).map(|r| r.library.clone())
}

fn runtime(configured: Option<&Path>) -> Result<&'static Runtime, String> {
    LOADED
        .get_or_init(|| {
            let tried = candidates(configured);
            if tried.is_empty() {
                return Err(
                    "no libonnxruntime.so found (set cpu.onnxruntime_library or ORT_DYLIB_PATH, or run scripts/fetch-onnxruntime.sh)"
                        .to_string(),
                );
            }
            let mut errors = Vec::new();
            for path in tried {
                match ort::init_from(&path) {
                    Ok(builder) => {
                        let environment = builder
                            .with_name("hailo-clip")
                            .build()
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                        let version = build_version(ort::info())
                            .or_else(|| file_version(&path))
                            .unwrap_or_else(|| "unknown".into());
                        // A library that loads may still refuse the options every session
                        // is built with (a runtime older than a setting): found out here,
                        // where `auto` can still choose tract, not when the model loads.
                        probe(&environment).map_err(|e| {
                            format!(
                                "ONNX Runtime {version} at {} loaded but cannot run a session: {e}",
                                path.display()
                            )
                        })?;
                        return Ok(Runtime {
                            library: Library { path, version },
                            environment,
                        });
                    }
                    Err(e) => errors.push(format!("{}: {e}", path.display())),
                }
            }
            Err(errors.join("; "))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The options every session is built with.
fn session_builder(
    environment: &ort::environment::Environment,
    threads: usize,
) -> ort::Result<ort::session::builder::SessionBuilder> {
    Session::builder(environment)
        // `All` (ORT_ENABLE_ALL) is the level every runtime since 1.0 takes; `Level3` is
        // ORT_ENABLE_LAYOUT, which runtimes before 1.23 refuse ("graph_optimization_level
        // is not valid").
        .and_then(|b| {
            b.with_optimization_level(GraphOptimizationLevel::All)
                .map_err(Into::into)
        })
        .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
        .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
        // Idle ONNX Runtime threads would otherwise spin, taking the cores that decode
        // and resize the next images (a Pi has four; this box two).
        .and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into))
}

/// Builds a session with [`session_builder`]'s options on a one-node graph (Identity of a
/// float) and runs it once.
fn probe(environment: &ort::environment::Environment) -> Result<(), String> {
    use prost::Message;
    use tract_onnx::pb::{
        tensor_shape_proto::{dimension::Value, Dimension},
        type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto,
        TypeProto, ValueInfoProto,
    };
    let value = |name: &str| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: vec![Dimension {
                        value: Some(Value::DimValue(1)),
                        ..Default::default()
                    }],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            name: "probe".into(),
            node: vec![NodeProto {
                op_type: "Identity".into(),
                input: vec!["x".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            input: vec![value("x")],
            output: vec![value("y")],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut session = session_builder(environment, 1)
        .and_then(|mut b| b.commit_from_memory(&model.encode_to_vec()))
        .map_err(|e| e.to_string())?;
    let x = Tensor::from_array((vec![1usize], vec![0.5f32])).map_err(|e| e.to_string())?;
    let outputs = session
        .run(ort::inputs!["x" => x])
        .map_err(|e| e.to_string())?;
    let (_, y) = outputs["y"]
        .try_extract_tensor::<f32>()
        .map_err(|e| e.to_string())?;
    if y != [0.5] {
        return Err(format!("Identity of 0.5 gave {y:?}"));
    }
    Ok(())
}

/// "1.32.0" from ONNX Runtime's build string (`git-branch=rel-1.32.0, ...`).
fn build_version(info: &str) -> Option<String> {
    let start = info.find("rel-")? + 4;
    let rest = &info[start..];
    Some(rest.split([',', ' ']).next()?.to_string())
}

/// "1.32.0" from a versioned library file name (`libonnxruntime.so.1.32.0`).
fn file_version(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let version = name.strip_prefix("libonnxruntime.so.")?;
    version
        .split('.')
        .all(|part| part.parse::<u32>().is_ok())
        .then(|| version.to_string())
}

/// One ONNX encoder under ONNX Runtime. `Session::run` takes `&mut`, so runs are serialized
/// per encoder (the service's workers already do one batch at a time).
pub struct OrtRunner {
    session: Mutex<Session>,
    output: String,
    path: PathBuf,
}

impl OrtRunner {
    /// Loads the graph at `path`, whose inputs must be exactly `inputs` (in any order).
    pub fn load(
        path: &Path,
        inputs: &[&str],
        output: &str,
        threads: usize,
    ) -> Result<OrtRunner, CpuLoadError> {
        let err = |problem: CpuLoadProblem| CpuLoadError {
            path: path.to_path_buf(),
            problem,
        };
        let runtime = runtime(None).map_err(|e| err(CpuLoadProblem::RuntimeNotLoaded(e)))?;
        let session = session_builder(&runtime.environment, threads)
            .and_then(|mut b| b.commit_from_file(path))
            .map_err(|e| err(CpuLoadProblem::OnnxRuntime(e)))?;
        let mut found: Vec<String> = session.inputs().iter().map(|o| o.name().into()).collect();
        let mut expected: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        found.sort();
        expected.sort();
        if found != expected {
            return Err(err(CpuLoadProblem::Inputs {
                expected: expected.join(", "),
                found,
            }));
        }
        if !session.outputs().iter().any(|o| o.name() == output) {
            return Err(err(CpuLoadProblem::Outputs {
                expected: output.into(),
                found: session.outputs().iter().map(|o| o.name().into()).collect(),
            }));
        }
        Ok(OrtRunner {
            session: Mutex::new(session),
            output: output.to_string(),
            path: path.to_path_buf(),
        })
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> EncoderError {
        EncoderError::failed(format!("{}: {what}: {e}", self.path.display()))
    }

    /// Runs one batch of `batch` rows; each feed is one named input.
    pub fn run(
        &self,
        feeds: Vec<(String, Feed)>,
        batch: usize,
        expected_dim: usize,
    ) -> Result<Array2<f32>, EncoderError> {
        fn value<T>(array: ndarray::ArrayD<T>) -> Result<ort::value::DynValue, ort::Error>
        where
            T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static,
        {
            let shape = array.shape().to_vec();
            let data = array
                .as_standard_layout()
                .into_owned()
                .into_raw_vec_and_offset()
                .0;
            Ok(Tensor::from_array((shape, data))?.into_dyn())
        }
        let mut inputs = Vec::with_capacity(feeds.len());
        for (name, feed) in feeds {
            let v = match feed {
                Feed::F32(a) => value(a),
                Feed::U8(a) => value(a),
                Feed::I32(a) => value(a),
                Feed::I64(a) => value(a),
            }
            .map_err(|e| self.fail("input tensor", e))?;
            inputs.push((name, v));
        }
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(inputs)
            .map_err(|e| self.fail("inference failed", e))?;
        let (shape, values) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| self.fail("output is not f32", e))?;
        let dims: Vec<i64> = shape.iter().copied().collect();
        if dims != [batch as i64, expected_dim as i64] {
            return Err(EncoderError::failed(format!(
                "{}: output shape {dims:?}, expected [{batch}, {expected_dim}]",
                self.path.display()
            )));
        }
        Array2::from_shape_vec((batch, expected_dim), values.to_vec())
            .map_err(|e| self.fail("output", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_the_build_string() {
        assert_eq!(
            build_version(
                "ORT Build Info: git-branch=rel-1.32.0, git-commit-id=abc, build type=Release"
            ),
            Some("1.32.0".into())
        );
        assert_eq!(build_version("nothing"), None);
        assert_eq!(
            file_version(Path::new("/x/libonnxruntime.so.1.32.0")),
            Some("1.32.0".into())
        );
        assert_eq!(file_version(Path::new("/x/libonnxruntime.so")), None);
    }

    #[test]
    fn a_configured_library_is_the_only_candidate() {
        assert_eq!(
            candidates(Some(Path::new("/x/libonnxruntime.so"))),
            vec![PathBuf::from("/x/libonnxruntime.so")]
        );
    }
}
