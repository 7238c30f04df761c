//! [`LayerDelta`]: a change to one decoder layer's `down_proj`, what DINM and FT-L produce; it
//! applies to a loaded model (a working copy, the base untouched) and exports to safetensors.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::loader::LanguageModel;
use crate::names::{LayerParam, WeightId};
use crate::weights::RawTensor;

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
}

fn apply_down_proj_delta<B: Backend>(
    lm: &LanguageModel<B>,
    layer: usize,
    delta: &Tensor<B, 2>,
) -> LanguageModel<B> {
    let id = WeightId::layer(layer, LayerParam::DownProj);
    let original = lm.model.matrix(id).expect("the edited layer exists");
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
