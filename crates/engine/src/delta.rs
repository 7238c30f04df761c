//! [`LayerDelta`]: a change to one decoder layer's `down_proj`, what DINM and FT-L produce; it
//! applies to a loaded model (a working copy, the base untouched) and exports to safetensors.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::error::{EngineError, Result};
use crate::loader::LanguageModel;
use crate::names::{LayerParam, WeightId};
use crate::weights::RawTensor;
use crate::weights::safetensors::SafetensorsStore;

/// A change to one layer's `down_proj` (what DINM and FT-L produce).
#[derive(Debug, Clone)]
pub struct LayerDelta<B: Backend> {
    /// The changed decoder layer.
    pub layer: usize,
    /// `W_edited − W_original`, `[d_model, d_ff]`.
    pub delta: Tensor<B, 2>,
    /// Its Frobenius norm.
    pub norm: f64,
}

impl<B: Backend> LayerDelta<B> {
    /// The changed tensor's HF name.
    pub fn tensor_name(&self) -> String {
        WeightId::layer(self.layer, LayerParam::DownProj).hf_name()
    }

    /// A working copy of the model with the delta applied (`lm` is not changed).
    pub fn apply(&self, lm: &LanguageModel<B>) -> LanguageModel<B> {
        apply_down_proj_delta(lm, self.layer, &self.delta)
    }

    /// The delta on the host, for export.
    pub fn delta_raw(&self) -> RawTensor {
        raw(&self.delta)
    }

    /// Reads a delta saved as safetensors (one `model.layers.{L}.mlp.down_proj.weight` tensor,
    /// as edit runs save it) for `lm`, checking its layer and shape against the model.
    pub fn read(path: &Path, lm: &LanguageModel<B>, device: &B::Device) -> Result<Self> {
        let store = SafetensorsStore::open(path)?;
        let names: Vec<String> = store.tensor_names().map(str::to_string).collect();
        let [name] = names.as_slice() else {
            return Err(EngineError::Config {
                path: path.to_path_buf(),
                field: "tensors".into(),
                message: format!("a delta holds one down_proj tensor, found {}", names.len()),
            });
        };
        let layer = match WeightId::from_hf_name(name) {
            Some(WeightId::Layer {
                layer,
                param: LayerParam::DownProj,
            }) => layer,
            _ => {
                return Err(EngineError::Config {
                    path: path.to_path_buf(),
                    field: name.clone(),
                    message: "not a decoder layer's mlp.down_proj.weight".into(),
                });
            }
        };
        let expected = lm
            .model
            .matrix(WeightId::layer(layer, LayerParam::DownProj))
            .map(|m| m.dims().to_vec())
            .ok_or_else(|| EngineError::Config {
                path: path.to_path_buf(),
                field: name.clone(),
                message: format!("the model has no layer {layer}"),
            })?;
        let tensor = store
            .load_name(name)?
            .ok_or_else(|| EngineError::MissingTensor {
                path: path.to_path_buf(),
                tensor: name.clone(),
            })?;
        if tensor.shape != expected {
            return Err(EngineError::TensorShape {
                path: path.to_path_buf(),
                tensor: name.clone(),
                expected,
                found: tensor.shape,
            });
        }
        let norm = tensor
            .data
            .iter()
            .map(|v| f64::from(*v) * f64::from(*v))
            .sum::<f64>()
            .sqrt();
        let delta = Tensor::<B, 2>::from_data(
            TensorData::new(tensor.data, [expected[0], expected[1]]),
            device,
        );
        Ok(Self { layer, delta, norm })
    }
}

fn apply_down_proj_delta<B: Backend>(
    lm: &LanguageModel<B>,
    layer: usize,
    delta: &Tensor<B, 2>,
) -> LanguageModel<B> {
    let id = WeightId::layer(layer, LayerParam::DownProj);
    let original = lm.model.matrix_f32(id).expect("the edited layer exists");
    lm.with_model(lm.model.with_down_proj(layer, original + delta.clone()))
}

fn raw<B: Backend>(t: &Tensor<B, 2>) -> RawTensor {
    RawTensor {
        shape: t.dims().to_vec(),
        data: t
            .to_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32 delta"),
    }
}
