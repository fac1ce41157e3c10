//! An ONNX file's signature (the names, element types and shapes of its graph's inputs and
//! outputs) and where its external data lives, read without loading its weights.
//!
//! A model directory is described before any engine loads it (which layout, which inputs the
//! text graph takes, whether its batch is fixed at 1), and a ViT-L export is a gigabyte of
//! initializers: so this walks the protobuf's fields and skips every one but the graph's
//! `input` and `output` value infos, which it decodes with tract's generated ONNX types.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb::{tensor_proto::DataType, type_proto, StringStringEntryProto, ValueInfoProto};

/// An element type the encoders feed or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    F32,
    U8,
    I32,
    I64,
    /// Any other ONNX data type, by its number.
    Other(i32),
}

/// One graph input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSig {
    pub name: String,
    pub elem: Elem,
    /// Each dimension: its fixed size, or None when symbolic or unknown.
    pub dims: Vec<Option<i64>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GraphSig {
    pub inputs: Vec<TensorSig>,
    pub outputs: Vec<TensorSig>,
}

impl GraphSig {
    pub fn input(&self, name: &str) -> Option<&TensorSig> {
        self.inputs.iter().find(|t| t.name == name)
    }
    pub fn output(&self, name: &str) -> Option<&TensorSig> {
        self.outputs.iter().find(|t| t.name == name)
    }
    pub fn input_names(&self) -> Vec<String> {
        self.inputs.iter().map(|t| t.name.clone()).collect()
    }
}

/// Protobuf field numbers (onnx.proto3): ModelProto.graph, GraphProto.input/output.
const MODEL_GRAPH: u64 = 7;
const GRAPH_INPUT: u64 = 11;
const GRAPH_OUTPUT: u64 = 12;
/// A value info is a name and a type: a few hundred bytes. Anything much larger under these
/// field numbers is not an ONNX model.
const MAX_VALUE_INFO: u64 = 1 << 20;

/// Reads the graph signature of the ONNX file at `path`.
pub fn signature(path: &Path) -> Result<GraphSig, String> {
    let (mut reader, len) = open(path)?;
    let mut sig = GraphSig::default();
    let mut found_graph = false;
    walk(&mut reader, len, &mut |reader, field, size| {
        if field != MODEL_GRAPH {
            return Ok(false);
        }
        found_graph = true;
        walk(reader, size, &mut |reader, field, size| {
            if field != GRAPH_INPUT && field != GRAPH_OUTPUT {
                return Ok(false);
            }
            if size > MAX_VALUE_INFO {
                return Err(format!("a graph {} of {size} bytes", field_name(field)));
            }
            let mut bytes = vec![0; size as usize];
            reader.read_exact(&mut bytes).map_err(|e| e.to_string())?;
            let info = ValueInfoProto::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
            let list = if field == GRAPH_INPUT {
                &mut sig.inputs
            } else {
                &mut sig.outputs
            };
            list.push(tensor_sig(info));
            Ok(true)
        })?;
        Ok(true)
    })
    .map_err(|e| format!("not an ONNX model: {e}"))?;
    if !found_graph {
        return Err("not an ONNX model: it has no graph".into());
    }
    Ok(sig)
}

/// One tensor whose bytes are stored outside the graph (ONNX external data), checked: its
/// file resolves (symlinks included) inside the graph's directory, and its byte range is
/// the tensor's size and lies within that file.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalData {
    pub tensor: String,
    /// The location, canonical.
    pub file: PathBuf,
    pub offset: u64,
    pub length: u64,
}

impl ExternalData {
    /// The tensor's bytes, and nothing else of the file.
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::OpenOptionsExt;
        // The path is canonical, so a link put in its place since the check is refused.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.file)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = vec![0; usize::try_from(self.length).map_err(std::io::Error::other)?];
        file.read_exact(&mut bytes)?;
        Ok(bytes)
    }
}

/// Protobuf field numbers (onnx.proto3) on the way to every tensor a graph holds.
mod field {
    pub const GRAPH_NODE: u64 = 1;
    pub const GRAPH_INITIALIZER: u64 = 5;
    pub const GRAPH_SPARSE_INITIALIZER: u64 = 15;
    pub const NODE_ATTRIBUTE: u64 = 5;
    pub const ATTRIBUTE_T: u64 = 5;
    pub const ATTRIBUTE_G: u64 = 6;
    pub const ATTRIBUTE_TENSORS: u64 = 10;
    pub const ATTRIBUTE_GRAPHS: u64 = 11;
    pub const ATTRIBUTE_SPARSE_TENSOR: u64 = 22;
    pub const ATTRIBUTE_SPARSE_TENSORS: u64 = 23;
    pub const SPARSE_VALUES: u64 = 1;
    pub const SPARSE_INDICES: u64 = 2;
    pub const TENSOR_DIMS: u64 = 1;
    pub const TENSOR_DATA_TYPE: u64 = 2;
    pub const TENSOR_NAME: u64 = 8;
    pub const TENSOR_EXTERNAL_DATA: u64 = 13;
    pub const TENSOR_DATA_LOCATION: u64 = 14;
}

/// Subgraphs nest (If, Loop, Scan); deeper than this is not a model.
const MAX_GRAPH_DEPTH: usize = 16;

/// Every tensor of the graph at `path` (initializers, constants, subgraphs') stored as
/// external data, each checked as [`ExternalData`] says. A location outside the graph's
/// directory, an absolute one, one through a link that leads out, a device or a range past
/// the file's end is an error naming the tensor and the location: engines (tract, ONNX
/// Runtime) and the Hailo export read these files, and a downloaded graph must not make
/// them read anything else.
pub fn external_data(path: &Path) -> Result<Vec<ExternalData>, String> {
    let (mut reader, len) = open(path)?;
    let mut found = Vec::new();
    walk_external(&mut reader, len, path, &mut found)?;
    Ok(found)
}

/// Checks every external tensor the walk meets; Err only for a refused one. A file that is
/// not a protobuf this reads (garbage, a truncated file) no engine reads either: loading it
/// names the file in the engine's own words, so here it is let through.
fn walk_external(
    reader: &mut Reader,
    len: u64,
    path: &Path,
    found: &mut Vec<ExternalData>,
) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let root = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut refused = None;
    let walked = walk(reader, len, &mut |reader, field, size| {
        if field != MODEL_GRAPH {
            return Ok(false);
        }
        graph_tensors(reader, size, 0, &mut |reader, size| {
            if let Some(tensor) = tensor_header(reader, size)? {
                match check_external(&root, tensor) {
                    Ok(data) => found.push(data),
                    Err(why) => {
                        refused = Some(why.clone());
                        return Err(why);
                    }
                }
            }
            Ok(())
        })?;
        Ok(true)
    });
    match (refused, walked) {
        (Some(why), _) => Err(why),
        (None, _) => Ok(()),
    }
}

type OnTensor<'a> = dyn FnMut(&mut Reader, u64) -> Result<(), String> + 'a;

/// Calls `on_tensor` at every TensorProto of a GraphProto, nested graphs included.
fn graph_tensors(
    reader: &mut Reader,
    len: u64,
    depth: usize,
    on_tensor: &mut OnTensor<'_>,
) -> Result<(), String> {
    if depth > MAX_GRAPH_DEPTH {
        return Err(format!("subgraphs nested deeper than {MAX_GRAPH_DEPTH}"));
    }
    walk(reader, len, &mut |reader, f, size| match f {
        field::GRAPH_INITIALIZER => on_tensor(reader, size).map(|_| true),
        field::GRAPH_SPARSE_INITIALIZER => sparse_tensors(reader, size, on_tensor).map(|_| true),
        field::GRAPH_NODE => {
            walk(reader, size, &mut |reader, f, size| {
                if f != field::NODE_ATTRIBUTE {
                    return Ok(false);
                }
                walk(reader, size, &mut |reader, f, size| match f {
                    field::ATTRIBUTE_T | field::ATTRIBUTE_TENSORS => {
                        on_tensor(reader, size).map(|_| true)
                    }
                    field::ATTRIBUTE_SPARSE_TENSOR | field::ATTRIBUTE_SPARSE_TENSORS => {
                        sparse_tensors(reader, size, on_tensor).map(|_| true)
                    }
                    field::ATTRIBUTE_G | field::ATTRIBUTE_GRAPHS => {
                        graph_tensors(reader, size, depth + 1, on_tensor).map(|_| true)
                    }
                    _ => Ok(false),
                })?;
                Ok(true)
            })?;
            Ok(true)
        }
        _ => Ok(false),
    })
}

fn sparse_tensors(
    reader: &mut Reader,
    len: u64,
    on_tensor: &mut OnTensor<'_>,
) -> Result<(), String> {
    walk(reader, len, &mut |reader, f, size| match f {
        field::SPARSE_VALUES | field::SPARSE_INDICES => on_tensor(reader, size).map(|_| true),
        _ => Ok(false),
    })
}

/// What a tensor says of its external data: everything but its values.
struct TensorHeader {
    name: String,
    dims: Vec<u64>,
    data_type: i32,
    entries: Vec<(String, String)>,
}

/// The TensorProto at the reader, when its data is external.
fn tensor_header(reader: &mut Reader, len: u64) -> Result<Option<TensorHeader>, String> {
    let mut header = TensorHeader {
        name: String::new(),
        dims: Vec::new(),
        data_type: 0,
        entries: Vec::new(),
    };
    let mut external = false;
    let small = |reader: &mut Reader, size: u64| -> Result<Vec<u8>, String> {
        if size > MAX_VALUE_INFO {
            return Err(format!("a tensor field of {size} bytes"));
        }
        let mut bytes = vec![0; size as usize];
        reader.read_exact(&mut bytes).map_err(|e| e.to_string())?;
        Ok(bytes)
    };
    let mut varints = Vec::new();
    walk_all(
        reader,
        len,
        &mut |reader, f, size| match f {
            field::TENSOR_NAME => {
                header.name = String::from_utf8_lossy(&small(reader, size)?).into_owned();
                Ok(true)
            }
            field::TENSOR_EXTERNAL_DATA => {
                let entry = StringStringEntryProto::decode(small(reader, size)?.as_slice())
                    .map_err(|e| e.to_string())?;
                header.entries.push((entry.key, entry.value));
                Ok(true)
            }
            field::TENSOR_DIMS => {
                // Packed dims.
                let end = reader.stream_position().map_err(|e| e.to_string())? + size;
                while reader.stream_position().map_err(|e| e.to_string())? < end {
                    header.dims.push(varint(reader)?);
                }
                Ok(true)
            }
            _ => Ok(false),
        },
        &mut |f, value| varints.push((f, value)),
    )?;
    for (f, value) in varints {
        match f {
            field::TENSOR_DIMS => header.dims.push(value),
            field::TENSOR_DATA_TYPE => header.data_type = value as i32,
            field::TENSOR_DATA_LOCATION => external |= value == 1,
            _ => {}
        }
    }
    external |= !header.entries.is_empty();
    Ok(external.then_some(header))
}

/// Bytes per element of an ONNX data type with a fixed size, in eighths (int4 is half a byte).
fn element_eighths(data_type: i32) -> Option<u64> {
    use DataType as D;
    Some(match DataType::try_from(data_type).ok()? {
        D::Bool | D::Uint8 | D::Int8 => 8,
        D::Float16 | D::Bfloat16 | D::Uint16 | D::Int16 => 16,
        D::Float | D::Int32 | D::Uint32 => 32,
        D::Double | D::Int64 | D::Uint64 | D::Complex64 => 64,
        D::Complex128 => 128,
        _ => return None,
    })
}

fn check_external(root: &Path, tensor: TensorHeader) -> Result<ExternalData, String> {
    let name = &tensor.name;
    let get = |key: &str| {
        tensor
            .entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let number = |key: &str| -> Result<Option<u64>, String> {
        get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    format!("tensor {name}: external data {key} {v:?} is not a number")
                })
            })
            .transpose()
    };
    let location = get("location")
        .filter(|l| !l.is_empty())
        .ok_or_else(|| format!("tensor {name}: external data without a location"))?;
    let outside = |why: &str| {
        format!(
            "tensor {name}: external data location {location:?} {why}; it must name a file in {} (the graph's directory)",
            root.display()
        )
    };
    let relative = Path::new(location);
    if relative.is_absolute() {
        return Err(outside("is absolute"));
    }
    let file = root
        .join(relative)
        .canonicalize()
        .map_err(|e| outside(&format!("cannot be resolved ({e})")))?;
    if !file.starts_with(root) {
        return Err(outside(&format!("resolves to {}", file.display())));
    }
    let meta = std::fs::metadata(&file).map_err(|e| outside(&e.to_string()))?;
    if !meta.is_file() {
        return Err(outside("is not a regular file"));
    }
    let offset = number("offset")?.unwrap_or(0);
    let elements = tensor
        .dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("tensor {name}: dims {:?} overflow", tensor.dims))?;
    let size = element_eighths(tensor.data_type)
        .and_then(|e| elements.checked_mul(e))
        .map(|bits| bits.div_ceil(8));
    let length = match (number("length")?, size) {
        (Some(given), Some(size)) if given != size => {
            return Err(format!(
                "tensor {name}: external data length {given} is not the tensor's {size} bytes"
            ))
        }
        (Some(given), _) => given,
        (None, Some(size)) => size,
        (None, None) => {
            return Err(format!(
                "tensor {name}: external data of data type {} without a length",
                tensor.data_type
            ))
        }
    };
    if offset
        .checked_add(length)
        .is_none_or(|end| end > meta.len())
    {
        return Err(format!(
            "tensor {name}: external data bytes {offset}..{} lie past the end of {} ({} bytes)",
            offset.saturating_add(length),
            file.display(),
            meta.len()
        ));
    }
    Ok(ExternalData {
        tensor: tensor.name,
        file,
        offset,
        length,
    })
}

fn open(path: &Path) -> Result<(Reader, u64), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    Ok((BufReader::with_capacity(64 * 1024, file), len))
}

fn field_name(field: u64) -> &'static str {
    if field == GRAPH_INPUT {
        "input"
    } else {
        "output"
    }
}

fn tensor_sig(info: ValueInfoProto) -> TensorSig {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;
    let (elem, dims) = match info.r#type.and_then(|t| t.value) {
        Some(type_proto::Value::TensorType(t)) => {
            let elem = match DataType::try_from(t.elem_type) {
                Ok(DataType::Float) => Elem::F32,
                Ok(DataType::Uint8) => Elem::U8,
                Ok(DataType::Int32) => Elem::I32,
                Ok(DataType::Int64) => Elem::I64,
                _ => Elem::Other(t.elem_type),
            };
            let dims = t
                .shape
                .map(|s| {
                    s.dim
                        .into_iter()
                        .map(|d| match d.value {
                            Some(Dim::DimValue(v)) if v > 0 => Some(v),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            (elem, dims)
        }
        _ => (Elem::Other(0), Vec::new()),
    };
    TensorSig {
        name: info.name,
        elem,
        dims,
    }
}

type Reader = BufReader<File>;

type Visit<'a, R> = dyn FnMut(&mut R, u64, u64) -> Result<bool, String> + 'a;

/// Walks the fields of a message `len` bytes long at the reader's position. Length-delimited
/// fields go to `visit` (field number, length), which reads the field and answers true, or
/// answers false to have it skipped; other wire types are skipped here.
fn walk(reader: &mut Reader, len: u64, visit: &mut Visit<'_, Reader>) -> Result<(), String> {
    walk_all(reader, len, visit, &mut |_, _| {})
}

/// [`walk`], with each varint field's number and value also given to `varint_field`.
fn walk_all(
    reader: &mut Reader,
    len: u64,
    visit: &mut Visit<'_, Reader>,
    varint_field: &mut dyn FnMut(u64, u64),
) -> Result<(), String> {
    let start = reader.stream_position().map_err(|e| e.to_string())?;
    let end = start + len;
    loop {
        let pos = reader.stream_position().map_err(|e| e.to_string())?;
        if pos == end {
            return Ok(());
        }
        if pos > end {
            return Err("a field runs past its message".into());
        }
        let key = varint(reader)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let value = varint(reader)?;
                varint_field(field, value);
            }
            1 => skip(reader, 8)?,
            5 => skip(reader, 4)?,
            3 => skip_group(reader, field, end)?,
            2 => {
                let size = varint(reader)?;
                let here = reader.stream_position().map_err(|e| e.to_string())?;
                if here + size > end {
                    return Err(format!(
                        "field {field} of {size} bytes runs past its message"
                    ));
                }
                if !visit(reader, field, size)? {
                    skip(reader, size)?;
                } else if reader.stream_position().map_err(|e| e.to_string())? != here + size {
                    return Err(format!("field {field} was not read to its end"));
                }
            }
            other => return Err(format!("wire type {other} at byte {pos}")),
        }
    }
}

/// Skips a (deprecated) group's fields up to its end tag: any protobuf reader takes them
/// as unknown fields, so a walk that checks what engines will read must get past them.
fn skip_group(reader: &mut Reader, group: u64, end: u64) -> Result<(), String> {
    loop {
        if reader.stream_position().map_err(|e| e.to_string())? >= end {
            return Err(format!("group {group} has no end"));
        }
        let key = varint(reader)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(reader)?;
            }
            1 => skip(reader, 8)?,
            5 => skip(reader, 4)?,
            2 => {
                let size = varint(reader)?;
                skip(reader, size)?;
            }
            3 => skip_group(reader, field, end)?,
            4 if field == group => return Ok(()),
            other => return Err(format!("wire type {other} inside group {group}")),
        }
    }
}

/// Skips `n` bytes, keeping what the buffer holds (a graph's walk skips thousands of small
/// fields; a plain seek would drop the buffer at each).
fn skip(reader: &mut Reader, n: u64) -> Result<(), String> {
    let n = i64::try_from(n).map_err(|_| "a field too large".to_string())?;
    reader.seek_relative(n).map_err(|e| e.to_string())
}

fn varint<R: Read>(reader: &mut R) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8];
        reader
            .read_exact(&mut byte)
            .map_err(|_| "the file ends inside a field".to_string())?;
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a varint longer than 10 bytes".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_models_signatures() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/clip-tiny-random");
        let visual = signature(&dir.join("visual.onnx")).unwrap();
        assert_eq!(visual.input_names(), ["pixel_values"]);
        let pixels = visual.input("pixel_values").unwrap();
        assert_eq!(pixels.elem, Elem::F32);
        assert_eq!(pixels.dims, [None, Some(3), Some(224), Some(224)]);
        assert_eq!(visual.outputs[0].name, "image_embeds");
        let textual = signature(&dir.join("textual.onnx")).unwrap();
        let ids = textual.input("input_ids").unwrap();
        assert_eq!(ids.elem, Elem::I64);
        assert_eq!(ids.dims, [None, Some(77)]);
    }

    #[test]
    fn a_file_that_is_not_onnx_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.onnx");
        std::fs::write(&path, b"this is text, not a protobuf").unwrap();
        assert!(signature(&path)
            .unwrap_err()
            .starts_with("not an ONNX model"));
    }
}
