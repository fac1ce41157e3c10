//! An ONNX file's signature: the names, element types and shapes of its graph's inputs and
//! outputs, read without loading its weights.
//!
//! A model directory is described before any engine loads it (which layout, which inputs the
//! text graph takes, whether its batch is fixed at 1), and a ViT-L export is a gigabyte of
//! initializers: so this walks the protobuf's fields and skips every one but the graph's
//! `input` and `output` value infos, which it decodes with tract's generated ONNX types.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use prost::Message;
use tract_onnx::pb::{tensor_proto::DataType, type_proto, ValueInfoProto};

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
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut reader = BufReader::with_capacity(64 * 1024, file);
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

type Visit<'a, R> = dyn FnMut(&mut R, u64, u64) -> Result<bool, String> + 'a;

/// Walks the fields of a message `len` bytes long at the reader's position. Length-delimited
/// fields go to `visit` (field number, length), which reads the field and answers true, or
/// answers false to have it skipped; other wire types are skipped here.
fn walk<R: Read + Seek>(reader: &mut R, len: u64, visit: &mut Visit<'_, R>) -> Result<(), String> {
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
                varint(reader)?;
            }
            1 => skip(reader, 8)?,
            5 => skip(reader, 4)?,
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

fn skip<R: Seek>(reader: &mut R, n: u64) -> Result<(), String> {
    let n = i64::try_from(n).map_err(|_| "a field too large".to_string())?;
    reader
        .seek(SeekFrom::Current(n))
        .map(|_| ())
        .map_err(|e| e.to_string())
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
