//! Checkpoints: safetensors files whose tensor names are the layer names (`conv1.weight`,
//! `conv1.bias`, …, `fc3.weight`) in PyTorch layouts (conv `[out, in, k, k]`, linear
//! `[out, in]`), with the model kind in the file's metadata (`"model": "alexnet"`).
//!
//! dfdx also walks `Dropout`'s probability as a scalar; it is kept, as dfdx writes it: an
//! `F64` tensor of shape `[]` named `drop1.p`, `drop2.p`. Loading restores it (a file without
//! it keeps the model's value); `tools/torch_roundtrip.py` ignores these entries.
//!
//! [`load`] checks the whole header against the model before touching it: a truncated file,
//! a missing, misshapen, mistyped or unexpected tensor is an error naming the first tensor
//! (in the model's order) that does not fit — never a panic.

use crate::models::ModelKind;
use dfdx::nn::tensor_collection::{
    ScalarOptions, TensorOptions, TensorVisitor, ViewTensorMut, ViewTensorName, ViewTensorRef,
};
use dfdx::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Metadata key holding the model kind.
pub const MODEL_KEY: &str = "model";

/// What went wrong with a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (shown in the message, so not chained as a `source`).
        cause: std::io::Error,
    },
    /// The file is not a readable safetensors file.
    #[error("{path}: not a safetensors checkpoint: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A tensor does not fit the model.
    #[error("{path}: tensor `{name}` does not fit the {model} model: {reason}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The model being loaded.
        model: String,
        /// The first tensor that does not fit.
        name: String,
        /// Why.
        reason: String,
    },
}

/// One entry of a checkpoint: name, dtype (`F32`, `F64`), shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Dotted name (`conv1.weight`).
    pub name: String,
    /// Safetensors dtype.
    pub dtype: String,
    /// Shape (`[]` for scalars).
    pub shape: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A parsed checkpoint: header, metadata and the data section.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    path: PathBuf,
    entries: BTreeMap<String, Entry>,
    /// The `__metadata__` map.
    pub metadata: BTreeMap<String, String>,
    data: Vec<u8>,
}

struct Collect(Vec<(TensorSpec, Vec<u8>)>);

impl TensorVisitor<f32, Cpu> for Collect {
    type Viewer = (ViewTensorRef, ViewTensorName);
    type Err = std::convert::Infallible;
    type E2 = f32;
    type D2 = Cpu;

    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, f32, Cpu>,
        (t, name): (&Tensor<S, f32, Cpu>, String),
    ) -> Result<Option<Tensor<S, f32, Cpu>>, Self::Err> {
        let bytes = t.as_vec().iter().flat_map(|x| x.to_le_bytes()).collect();
        self.0.push((
            TensorSpec {
                name,
                dtype: "F32".into(),
                shape: t.shape().concrete().into_iter().collect(),
            },
            bytes,
        ));
        Ok(None)
    }

    fn visit_scalar<N: num_traits::NumCast>(
        &mut self,
        _: ScalarOptions<N>,
        (n, name): (&N, String),
    ) -> Result<Option<N>, Self::Err> {
        let v = n.to_f64().unwrap_or(f64::NAN);
        self.0.push((
            TensorSpec {
                name,
                dtype: "F64".into(),
                shape: vec![],
            },
            v.to_le_bytes().to_vec(),
        ));
        Ok(None)
    }
}

fn collect<M: TensorCollection<f32, Cpu>>(model: &M) -> Vec<(TensorSpec, Vec<u8>)> {
    let mut c = Collect(Vec::new());
    let r = M::iter_tensors(&mut RecursiveWalker {
        m: (model, String::new()),
        f: &mut c,
    });
    match r {
        Ok(_) => c.0,
        Err(e) => match e {},
    }
}

/// The tensors a model's checkpoint holds, in the model's order.
pub fn expected<M: TensorCollection<f32, Cpu>>(model: &M) -> Vec<TensorSpec> {
    collect(model).into_iter().map(|(s, _)| s).collect()
}

/// Serialises `model` as safetensors bytes with `metadata`.
pub fn to_bytes<M: TensorCollection<f32, Cpu>>(model: &M, metadata: &BTreeMap<String, String>) -> Vec<u8> {
    encode(&collect(model), metadata)
}

/// Writes plain `f32` tensors `(name, shape, values)` as a safetensors file (e.g. an input
/// batch and its logits for `tools/torch_roundtrip.py`).
///
/// # Panics
/// When a tensor's values do not fill its shape.
pub fn write_tensors(
    path: &Path,
    tensors: &[(&str, Vec<usize>, Vec<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let t: Vec<(TensorSpec, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, v)| {
            assert_eq!(
                shape.iter().product::<usize>(),
                v.len(),
                "{name}: values do not fill the shape"
            );
            (
                TensorSpec {
                    name: name.to_string(),
                    dtype: "F32".into(),
                    shape: shape.clone(),
                },
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    std::fs::write(path, encode(&t, metadata)).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        cause: source,
    })
}

fn encode(tensors: &[(TensorSpec, Vec<u8>)], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::to_value(metadata).expect("string map"),
    );
    let mut offset = 0usize;
    for (spec, bytes) in tensors {
        header.insert(spec.name.clone(), serde_json::json!({"dtype": spec.dtype, "shape": spec.shape, "data_offsets": [offset, offset + bytes.len()]}));
        offset += bytes.len();
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(header)).expect("json");
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for (_, bytes) in tensors {
        out.extend_from_slice(bytes);
    }
    out
}

/// Metadata key holding the initialisation scheme the weights started from (`paddle`,
/// `pytorch`), when known.
pub const INIT_KEY: &str = "init";

/// Saves `model` of kind `kind` to `path` (written to a temporary file, then renamed, so an
/// existing checkpoint is replaced only by a complete one).
pub fn save<M: TensorCollection<f32, Cpu>>(model: &M, kind: ModelKind, path: &Path) -> Result<(), CheckpointError> {
    save_with(model, kind, &[], path)
}

/// [`save`] with further metadata entries (`(key, value)`, e.g. [`INIT_KEY`]).
pub fn save_with<M: TensorCollection<f32, Cpu>>(
    model: &M,
    kind: ModelKind,
    extra: &[(&str, &str)],
    path: &Path,
) -> Result<(), CheckpointError> {
    let mut meta: BTreeMap<String, String> = extra.iter().map(|&(k, v)| (k.to_string(), v.to_string())).collect();
    meta.insert(MODEL_KEY.to_string(), kind.name().to_string());
    meta.insert(
        "producer".to_string(),
        format!("palm-cnn {}", env!("CARGO_PKG_VERSION")),
    );
    let bytes = to_bytes(model, &meta);
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        cause: source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

impl Checkpoint {
    /// Reads and parses a checkpoint file (header and data).
    pub fn read(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            cause: source,
        })?;
        Self::parse(path, bytes)
    }

    /// Parses safetensors bytes; `path` is used in messages. A truncated data section is not
    /// an error here (see [`Checkpoint::check`]), a truncated header is.
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, CheckpointError> {
        let fmt = |reason: String| CheckpointError::Format {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() < 8 {
            return Err(fmt(format!(
                "{} bytes, shorter than the 8-byte header length",
                bytes.len()
            )));
        }
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        if n > (bytes.len() - 8) as u64 {
            return Err(fmt(format!(
                "header of {n} bytes but the file has {} (truncated?)",
                bytes.len()
            )));
        }
        let n = n as usize;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| fmt(format!("header is not JSON: {e}")))?;
        let mut entries = BTreeMap::new();
        let mut metadata = BTreeMap::new();
        for (name, v) in header {
            if name == "__metadata__" {
                metadata = serde_json::from_value(v).map_err(|e| fmt(format!("bad __metadata__: {e}")))?;
                continue;
            }
            let bad = |what: &str| fmt(format!("entry `{name}`: {what}"));
            let dtype = v
                .get("dtype")
                .and_then(|d| d.as_str())
                .ok_or_else(|| bad("no dtype"))?
                .to_string();
            let shape: Vec<usize> = v
                .get("shape")
                .and_then(|s| serde_json::from_value(s.clone()).ok())
                .ok_or_else(|| bad("no shape"))?;
            let offs: [usize; 2] = v
                .get("data_offsets")
                .and_then(|s| serde_json::from_value(s.clone()).ok())
                .ok_or_else(|| bad("no data_offsets"))?;
            if offs[1] < offs[0] {
                return Err(bad("data_offsets decrease"));
            }
            entries.insert(
                name,
                Entry {
                    dtype,
                    shape,
                    start: offs[0],
                    end: offs[1],
                },
            );
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            entries,
            metadata,
            data: bytes[8 + n..].to_vec(),
        })
    }

    /// The model kind recorded in the metadata.
    pub fn model_kind(&self) -> Result<ModelKind, CheckpointError> {
        let name = self.metadata.get(MODEL_KEY).ok_or_else(|| CheckpointError::Format {
            path: self.path.clone(),
            reason: "no `model` in the metadata; which model is it?".into(),
        })?;
        name.parse().map_err(|reason| CheckpointError::Format {
            path: self.path.clone(),
            reason,
        })
    }

    /// Tensor names in the file.
    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// Checks every expected tensor against the file, in order, then that the file holds no
    /// others. Scalars (`F64`, shape `[]`) may be missing.
    pub fn check(&self, model: &str, expected: &[TensorSpec]) -> Result<(), CheckpointError> {
        let mismatch = |name: &str, reason: String| CheckpointError::Mismatch {
            path: self.path.clone(),
            model: model.to_string(),
            name: name.to_string(),
            reason,
        };
        for spec in expected {
            let Some(e) = self.entries.get(&spec.name) else {
                if spec.shape.is_empty() {
                    continue;
                }
                return Err(mismatch(&spec.name, "missing from the file".into()));
            };
            if e.dtype != spec.dtype {
                return Err(mismatch(
                    &spec.name,
                    format!("dtype {} in the file, expected {}", e.dtype, spec.dtype),
                ));
            }
            if e.shape != spec.shape {
                return Err(mismatch(
                    &spec.name,
                    format!("shape {:?} in the file, expected {:?}", e.shape, spec.shape),
                ));
            }
            let size = if spec.dtype == "F64" { 8 } else { 4 };
            let want = spec.shape.iter().product::<usize>() * size;
            if e.end - e.start != want {
                return Err(mismatch(
                    &spec.name,
                    format!("{} data bytes for {} expected", e.end - e.start, want),
                ));
            }
            if e.end > self.data.len() {
                return Err(mismatch(
                    &spec.name,
                    format!(
                        "data ends at byte {} but the file has {} data bytes (truncated)",
                        e.end,
                        self.data.len()
                    ),
                ));
            }
        }
        if let Some(extra) = self.entries.keys().find(|k| !expected.iter().any(|s| &s.name == *k)) {
            return Err(mismatch(extra, "not a tensor of this model".into()));
        }
        Ok(())
    }

    /// The `F32` tensor `name`: its shape and values.
    pub fn f32_tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), CheckpointError> {
        let fmt = |reason: String| CheckpointError::Format {
            path: self.path.clone(),
            reason,
        };
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| fmt(format!("no tensor `{name}`")))?;
        if e.dtype != "F32" {
            return Err(fmt(format!("tensor `{name}` is {}, not F32", e.dtype)));
        }
        let bytes = self
            .data
            .get(e.start..e.end)
            .ok_or_else(|| fmt(format!("tensor `{name}` is truncated")))?;
        if bytes.len() != 4 * e.shape.iter().product::<usize>() {
            return Err(fmt(format!(
                "tensor `{name}`: {} bytes do not fill {:?}",
                bytes.len(),
                e.shape
            )));
        }
        let values = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        Ok((e.shape.clone(), values))
    }

    /// Copies the file's tensors into `model` after [`Checkpoint::check`].
    pub fn load_into<M: TensorCollection<f32, Cpu>>(
        &self,
        model: &mut M,
        kind: ModelKind,
    ) -> Result<(), CheckpointError> {
        self.check(kind.name(), &expected(model))?;
        let mut v = Loader(self);
        let r = M::iter_tensors(&mut RecursiveWalker {
            m: (model, String::new()),
            f: &mut v,
        });
        match r {
            Ok(_) => Ok(()),
            Err(e) => match e {},
        }
    }
}

struct Loader<'c>(&'c Checkpoint);

impl TensorVisitor<f32, Cpu> for Loader<'_> {
    type Viewer = (ViewTensorMut, ViewTensorName);
    type Err = std::convert::Infallible;
    type E2 = f32;
    type D2 = Cpu;

    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, f32, Cpu>,
        (t, name): (&mut Tensor<S, f32, Cpu>, String),
    ) -> Result<Option<Tensor<S, f32, Cpu>>, Self::Err> {
        let e = &self.0.entries[&name];
        let v: Vec<f32> = self.0.data[e.start..e.end]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        t.copy_from(&v);
        Ok(None)
    }

    fn visit_scalar<N: num_traits::NumCast>(
        &mut self,
        _: ScalarOptions<N>,
        (n, name): (&mut N, String),
    ) -> Result<Option<N>, Self::Err> {
        if let Some(e) = self.0.entries.get(&name) {
            let v = f64::from_le_bytes(self.0.data[e.start..e.end].try_into().expect("8 bytes"));
            if let Some(x) = N::from(v) {
                *n = x;
            }
        }
        Ok(None)
    }
}

/// Reads `path` and loads it into `model` of kind `kind`, checking the recorded kind too.
pub fn load<M: TensorCollection<f32, Cpu>>(model: &mut M, kind: ModelKind, path: &Path) -> Result<(), CheckpointError> {
    Checkpoint::read(path)?.load_checked(model, kind)
}

impl Checkpoint {
    /// [`Checkpoint::load_into`] after checking that the model kind recorded in the metadata,
    /// when there is one, is `kind`.
    pub fn load_checked<M: TensorCollection<f32, Cpu>>(
        &self,
        model: &mut M,
        kind: ModelKind,
    ) -> Result<(), CheckpointError> {
        if let Ok(recorded) = self.model_kind() {
            if recorded != kind {
                return Err(CheckpointError::Format {
                    path: self.path.clone(),
                    reason: format!("it holds a {recorded} model, not {kind}"),
                });
            }
        }
        self.load_into(model, kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::LeNetMnist;

    #[test]
    fn names_and_layouts_follow_pytorch() {
        let dev = Cpu::default();
        let m = dev.build_module::<LeNetMnist, f32>();
        let e = expected(&m);
        let first: Vec<(&str, &[usize])> = e
            .iter()
            .take(2)
            .map(|s| (s.name.as_str(), s.shape.as_slice()))
            .collect();
        assert_eq!(
            first,
            vec![("conv1.weight", &[6, 1, 5, 5][..]), ("conv1.bias", &[6][..])]
        );
        let fc2 = e.iter().find(|s| s.name == "fc2.weight").unwrap();
        assert_eq!(fc2.shape, vec![10, 64]);
    }

    #[test]
    fn roundtrip_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let dev = Cpu::seed_from_u64(1);
        let a = dev.build_module::<LeNetMnist, f32>();
        save(&a, ModelKind::LeNetMnist, &path).unwrap();
        let mut b = Cpu::seed_from_u64(2).build_module::<LeNetMnist, f32>();
        assert_ne!(a.fc2.weight.as_vec(), b.fc2.weight.as_vec());
        load(&mut b, ModelKind::LeNetMnist, &path).unwrap();
        assert_eq!(a.fc2.weight.as_vec(), b.fc2.weight.as_vec());
        assert_eq!(a.conv1.weight.as_vec(), b.conv1.weight.as_vec());
        assert_eq!(
            Checkpoint::read(&path).unwrap().model_kind().unwrap(),
            ModelKind::LeNetMnist
        );

        // A checkpoint of another model: the first misfit is named.
        let ck = Checkpoint::read(&path).unwrap();
        let mut palm = dev.build_module::<crate::models::LeNetPalm, f32>();
        let err = ck.load_into(&mut palm, ModelKind::LeNetPalm).unwrap_err().to_string();
        assert!(err.contains("`conv1.weight`") && err.contains("[6, 1, 5, 5]"), "{err}");
        // The kind recorded in the file is checked by `load`.
        let err = load(&mut palm, ModelKind::LeNetPalm, &path).unwrap_err().to_string();
        assert!(err.contains("lenet-mnist"), "{err}");

        // Cut the file 100 bytes short: fc2.bias (40 bytes) and the end of fc2.weight are
        // gone; fc2.weight comes first in the model's order.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        let err = load(&mut b, ModelKind::LeNetMnist, &path).unwrap_err().to_string();
        assert!(err.contains("`fc2.weight`") && err.contains("truncated"), "{err}");
        // Cut inside the header.
        std::fs::write(&path, &bytes[..20]).unwrap();
        let err = load(&mut b, ModelKind::LeNetMnist, &path).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
