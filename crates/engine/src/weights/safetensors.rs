//! Hugging Face safetensors checkpoints: one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`. F32, F64, F16 and BF16 tensors are converted to f32 on load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ::safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorView};
use serde::Deserialize;

use super::{FloatKind, RawTensor, TensorStore, decode_floats, map_file};
use crate::error::{EngineError, Result};
use crate::names::WeightId;

/// File names looked for in a model directory.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

struct Shard {
    path: PathBuf,
    map: memmap2::Mmap,
    data_start: usize,
    metadata: Metadata,
}

/// A safetensors checkpoint (single file or shards).
pub struct SafetensorsStore {
    /// The file or index that names the checkpoint in errors.
    path: PathBuf,
    shards: Vec<Shard>,
    /// HF name -> shard index.
    names: HashMap<String, usize>,
}

impl std::fmt::Debug for SafetensorsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsStore")
            .field("path", &self.path)
            .field("shards", &self.shards.len())
            .field("tensors", &self.names.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct Index {
    weight_map: HashMap<String, String>,
}

impl SafetensorsStore {
    /// Opens `path`: a `.safetensors` file, or a directory holding `model.safetensors` or
    /// `model.safetensors.index.json` with its shards.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_file() {
            return Self::single(path);
        }
        let index = path.join(INDEX_FILE);
        if index.is_file() {
            return Self::sharded(&index);
        }
        let single = path.join(SINGLE_FILE);
        if single.is_file() {
            return Self::single(&single);
        }
        Err(EngineError::MissingFile {
            path: single,
            what: "model weights (model.safetensors or model.safetensors.index.json)",
        })
    }

    fn single(path: &Path) -> Result<Self> {
        let shard = Self::open_shard(path)?;
        let names = shard
            .metadata
            .tensors()
            .keys()
            .map(|name| (name.clone(), 0))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            shards: vec![shard],
            names,
        })
    }

    fn sharded(index_path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(index_path).map_err(|e| EngineError::io(index_path, e))?;
        let index: Index = serde_json::from_str(&text).map_err(|e| EngineError::Json {
            path: index_path.to_path_buf(),
            message: e.to_string(),
        })?;
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut files: Vec<&String> = index.weight_map.values().collect();
        files.sort();
        files.dedup();
        let mut shards = Vec::with_capacity(files.len());
        let mut shard_of = HashMap::new();
        for file in files {
            let shard_path = dir.join(file);
            if !shard_path.is_file() {
                return Err(EngineError::MissingFile {
                    path: shard_path,
                    what: "checkpoint shard listed in model.safetensors.index.json",
                });
            }
            shard_of.insert(file.clone(), shards.len());
            shards.push(Self::open_shard(&shard_path)?);
        }
        let names = index
            .weight_map
            .iter()
            .map(|(name, file)| (name.clone(), shard_of[file]))
            .collect();
        Ok(Self {
            path: index_path.to_path_buf(),
            shards,
            names,
        })
    }

    fn open_shard(path: &Path) -> Result<Shard> {
        let map = map_file(path)?;
        let (header_len, metadata) = SafeTensors::read_metadata(&map)
            .map_err(|e| EngineError::format(path, "safetensors", format!("bad header: {e}")))?;
        Ok(Shard {
            path: path.to_path_buf(),
            map,
            data_start: 8 + header_len,
            metadata,
        })
    }

    /// Names of every tensor in the checkpoint.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    /// A tensor by its stored name, converted to f32.
    pub fn load_name(&self, name: &str) -> Result<Option<RawTensor>> {
        let Some(&shard_index) = self.names.get(name) else {
            return Ok(None);
        };
        let shard = &self.shards[shard_index];
        let info = shard
            .metadata
            .info(name)
            .ok_or_else(|| EngineError::MissingTensor {
                path: shard.path.clone(),
                tensor: name.to_string(),
            })?;
        let kind = match info.dtype {
            Dtype::F32 => FloatKind::F32,
            Dtype::F64 => FloatKind::F64,
            Dtype::F16 => FloatKind::F16,
            Dtype::BF16 => FloatKind::Bf16,
            other => {
                return Err(EngineError::TensorDtype {
                    path: shard.path.clone(),
                    tensor: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        let (start, end) = info.data_offsets;
        let bytes = &shard.map[shard.data_start + start..shard.data_start + end];
        let n: usize = info.shape.iter().product();
        if bytes.len() != n * kind.size() {
            return Err(EngineError::format(
                &shard.path,
                "safetensors",
                format!("tensor `{name}` has {} bytes for {n} values", bytes.len()),
            ));
        }
        Ok(Some(RawTensor {
            shape: info.shape.clone(),
            data: decode_floats(bytes, kind),
        }))
    }
}

impl TensorStore for SafetensorsStore {
    fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self, id: WeightId) -> Result<Option<RawTensor>> {
        self.load_name(&id.hf_name())
    }
}

/// Storage precision for [`write_safetensors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveDtype {
    /// 32-bit floats (exact).
    F32,
    /// bfloat16 (what most 7B checkpoints use).
    Bf16,
    /// IEEE half precision.
    F16,
}

/// Writes tensors to a safetensors file (names as given, e.g. HF paths), with optional
/// string metadata in the header.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, RawTensor)],
    dtype: SaveDtype,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let bytes: Vec<u8> = match dtype {
                SaveDtype::F32 => t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                SaveDtype::Bf16 => t
                    .data
                    .iter()
                    .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                    .collect(),
                SaveDtype::F16 => t
                    .data
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
            };
            (name.clone(), t.shape.clone(), bytes)
        })
        .collect();
    let st_dtype = match dtype {
        SaveDtype::F32 => Dtype::F32,
        SaveDtype::Bf16 => Dtype::BF16,
        SaveDtype::F16 => Dtype::F16,
    };
    let views = encoded
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(st_dtype, shape.clone(), bytes)
                .map(|view| (name.as_str(), view))
                .map_err(|e| {
                    EngineError::format(path, "safetensors", format!("tensor `{name}`: {e}"))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    ::safetensors::serialize_to_file(views, metadata, path)
        .map_err(|e| EngineError::format(path, "safetensors", format!("writing: {e}")))
}
