//! Weight loading: a [`TensorStore`] answers "give me tensor X as f32" for a checkpoint
//! (GGUF file, safetensors file or sharded directory); [`StoreSource`] feeds those tensors to
//! [`LlamaConfig::build`](crate::LlamaConfig::build), checking every shape.

pub mod gguf;
pub mod safetensors;
mod source;

use std::fs::File;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::error::{EngineError, Result};
use crate::names::WeightId;

pub use gguf::{GgmlType, GgufFile, GgufStore, GgufValue};
pub use safetensors::{SafetensorsStore, SaveDtype, write_safetensors};
pub use source::{ParamSource, RandomInit, WeightDtype, WithDtype};

/// A tensor converted to f32 on the host, in row-major (PyTorch) order.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Shape, outermost dimension first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

/// Something that holds a model's tensors under HF names.
pub trait TensorStore {
    /// The file (or directory) errors should name.
    fn path(&self) -> &Path;
    /// The tensor, converted to f32, or `None` when the checkpoint lacks it.
    fn load(&self, id: WeightId) -> Result<Option<RawTensor>>;
}

/// Feeds a [`TensorStore`]'s tensors to the model builder, checking presence and shape.
pub struct StoreSource<'a, B: Backend> {
    store: &'a dyn TensorStore,
    device: &'a B::Device,
    on_tensor: Option<&'a mut dyn FnMut(WeightId)>,
}

impl<B: Backend> std::fmt::Debug for StoreSource<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSource")
            .field("path", &self.store.path())
            .finish()
    }
}

impl<'a, B: Backend> StoreSource<'a, B> {
    /// A source reading from `store` onto `device`.
    pub fn new(store: &'a dyn TensorStore, device: &'a B::Device) -> Self {
        Self {
            store,
            device,
            on_tensor: None,
        }
    }

    /// Calls `f` after every tensor is loaded (progress reporting).
    pub fn with_progress(mut self, f: &'a mut dyn FnMut(WeightId)) -> Self {
        self.on_tensor = Some(f);
        self
    }

    fn fetch(&mut self, id: WeightId, expected: &[usize]) -> Result<RawTensor> {
        let raw = self
            .store
            .load(id)?
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.store.path().to_path_buf(),
                tensor: id.hf_name(),
            })?;
        if raw.shape != expected {
            return Err(EngineError::TensorShape {
                path: self.store.path().to_path_buf(),
                tensor: id.hf_name(),
                expected: expected.to_vec(),
                found: raw.shape,
            });
        }
        if let Some(f) = self.on_tensor.as_deref_mut() {
            f(id);
        }
        Ok(raw)
    }
}

impl<B: Backend> ParamSource<B> for StoreSource<'_, B> {
    fn vector(&mut self, id: WeightId, len: usize) -> Result<Tensor<B, 1>> {
        let raw = self.fetch(id, &[len])?;
        Ok(Tensor::from_data(
            TensorData::new(raw.data, [len]),
            self.device,
        ))
    }

    fn matrix(&mut self, id: WeightId, shape: [usize; 2]) -> Result<Tensor<B, 2>> {
        let raw = self.fetch(id, &shape)?;
        Ok(Tensor::from_data(
            TensorData::new(raw.data, shape),
            self.device,
        ))
    }
}

/// A read-only memory map of a weights file.
pub(crate) fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
    // SAFETY: the map is read-only and private to this process. Checkpoint files are not
    // expected to change while loaded; if one is truncated concurrently the process may fault,
    // which is the accepted trade-off for not copying multi-GB checkpoints into memory.
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&file) };
    map.map_err(|e| EngineError::io(path, e))
}

/// Little-endian bytes to f32 values, for the numeric dtypes checkpoints use.
pub(crate) fn decode_floats(bytes: &[u8], dtype: FloatKind) -> Vec<f32> {
    match dtype {
        FloatKind::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        FloatKind::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        FloatKind::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        FloatKind::Bf16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    }
}

/// Float encodings shared by both file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FloatKind {
    F32,
    F64,
    F16,
    Bf16,
}

impl FloatKind {
    pub(crate) fn size(self) -> usize {
        match self {
            FloatKind::F32 => 4,
            FloatKind::F64 => 8,
            FloatKind::F16 | FloatKind::Bf16 => 2,
        }
    }
}
