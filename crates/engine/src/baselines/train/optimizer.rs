//! Full-model optimisers with PyTorch's update rules (RMSprop, AdamW) and the module visitors
//! that accumulate gradients into, and apply updates from, flattened per-parameter tensors.

use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use super::config::OptimizerKind;
use crate::error::{EngineError, Result};
use crate::model::Llama;
use crate::weights::{RawTensor, SafetensorsStore};

/// Per-parameter optimiser state, flattened.
#[derive(Debug, Clone)]
pub(super) struct Moments<B: Backend> {
    /// AdamW's first moment.
    first: Option<Tensor<B, 1>>,
    /// Second moment (both optimisers).
    second: Tensor<B, 1>,
}

/// RMSprop / AdamW over every parameter of a model, PyTorch's update rules.
#[derive(Debug, Clone)]
pub(super) struct FullOptimizer<B: Backend> {
    kind: OptimizerKind,
    weight_decay: f64,
    states: Vec<Moments<B>>,
    /// Updates done (AdamW's bias correction).
    pub(super) t: usize,
}

const RMS_ALPHA: f64 = 0.99;
const EPS: f64 = 1e-8;
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;

impl<B: Backend> FullOptimizer<B> {
    pub(super) fn new(kind: OptimizerKind, weight_decay: f64) -> Self {
        Self {
            kind,
            weight_decay,
            states: Vec::new(),
            t: 0,
        }
    }

    pub(super) fn update(
        &mut self,
        index: usize,
        w: Tensor<B, 1>,
        g: Tensor<B, 1>,
        lr: f64,
    ) -> Tensor<B, 1> {
        if index == self.states.len() {
            self.states.push(Moments {
                first: (self.kind == OptimizerKind::AdamW).then(|| g.zeros_like()),
                second: g.zeros_like(),
            });
        }
        let state = &mut self.states[index];
        match self.kind {
            OptimizerKind::RmsProp => {
                let g = if self.weight_decay > 0.0 {
                    g + w.clone() * self.weight_decay
                } else {
                    g
                };
                let v = state.second.clone() * RMS_ALPHA + g.clone().square() * (1.0 - RMS_ALPHA);
                state.second = v.clone();
                w - g / (v.sqrt() + EPS) * lr
            }
            OptimizerKind::AdamW => {
                let t = self.t as i32;
                let w = w * (1.0 - lr * self.weight_decay);
                let m = state.first.clone().expect("AdamW keeps a first moment") * BETA1
                    + g.clone() * (1.0 - BETA1);
                let v = state.second.clone() * BETA2 + g.square() * (1.0 - BETA2);
                state.first = Some(m.clone());
                state.second = v.clone();
                let c1 = 1.0 - BETA1.powi(t);
                let c2 = (1.0 - BETA2.powi(t)).sqrt();
                w - m / (v.sqrt() / c2 + EPS) * (lr / c1)
            }
        }
    }

    pub(super) fn tensors(&self) -> Vec<(String, RawTensor)> {
        let raw = |t: &Tensor<B, 1>| RawTensor {
            shape: t.dims().to_vec(),
            data: t.to_data().convert::<f32>().to_vec().expect("f32"),
        };
        let mut out = Vec::new();
        for (i, s) in self.states.iter().enumerate() {
            out.push((format!("{i}.second"), raw(&s.second)));
            if let Some(m) = &s.first {
                out.push((format!("{i}.first"), raw(m)));
            }
        }
        out
    }

    pub(super) fn load(&mut self, path: &Path, n_params: usize, device: &B::Device) -> Result<()> {
        let store = SafetensorsStore::open(path)?;
        let get = |name: String| -> Result<Option<Tensor<B, 1>>> {
            Ok(store.load_name(&name)?.map(|t| {
                let n = t.data.len();
                Tensor::from_data(TensorData::new(t.data, [n]), device)
            }))
        };
        self.states = (0..n_params)
            .map(|i| {
                let second = get(format!("{i}.second"))?.ok_or_else(|| {
                    EngineError::format(path, "optimizer state", format!("`{i}.second` missing"))
                })?;
                let first = get(format!("{i}.first"))?;
                if (self.kind == OptimizerKind::AdamW) != first.is_some() {
                    return Err(EngineError::format(
                        path,
                        "optimizer state",
                        format!("`{i}.first` does not match the {:?} optimiser", self.kind),
                    ));
                }
                Ok(Moments { first, second })
            })
            .collect::<Result<_>>()?;
        Ok(())
    }
}

/// Adds every parameter's gradient (flattened) into `acc`, in visiting order.
pub(super) struct Accumulate<'a, AD: AutodiffBackend> {
    pub(super) grads: &'a mut AD::Gradients,
    pub(super) acc: &'a mut Vec<Tensor<AD::InnerBackend, 1>>,
    pub(super) index: usize,
}

impl<AD: AutodiffBackend> ModuleVisitor<AD> for Accumulate<'_, AD> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AD, D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        let grad = value
            .grad_remove(self.grads)
            .map(|g| g.reshape([n]))
            .unwrap_or_else(|| Tensor::zeros([n], &value.device()));
        if self.index == self.acc.len() {
            self.acc.push(grad);
        } else {
            self.acc[self.index] = self.acc[self.index].clone() + grad;
        }
        self.index += 1;
    }
}

/// Applies one optimiser update to every parameter, in visiting order.
pub(super) struct Apply<'a, AD: AutodiffBackend> {
    pub(super) grads: &'a [Tensor<AD::InnerBackend, 1>],
    pub(super) optimizer: &'a mut FullOptimizer<AD::InnerBackend>,
    pub(super) scale: f64,
    pub(super) lr: f64,
    pub(super) index: usize,
}

impl<AD: AutodiffBackend> ModuleMapper<AD> for Apply<'_, AD> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<AD, D>>) -> Param<Tensor<AD, D>> {
        let (id, tensor, mapper) = param.consume();
        let dims = tensor.dims();
        let n = tensor.shape().num_elements();
        let w = tensor.inner().reshape([n]);
        let g = self.grads[self.index].clone() * self.scale;
        let w = self.optimizer.update(self.index, w, g, self.lr);
        self.index += 1;
        let value = Tensor::<AD, D>::from_inner(w.reshape(dims)).require_grad();
        Param::from_mapped_value(id, value, mapper)
    }
}

/// Marks every parameter as trained (loaders build them without gradient tracking).
pub(super) struct RequireGrad;

impl<B: AutodiffBackend> ModuleMapper<B> for RequireGrad {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.set_require_grad(true)
    }
}

pub(super) fn trainable<AD: AutodiffBackend>(model: &Llama<AD::InnerBackend>) -> Llama<AD> {
    model.clone().train::<AD>().map(&mut RequireGrad)
}

/// Counts parameter tensors (the optimiser's state length).
pub(super) struct CountParams(pub(super) usize);

impl<B: Backend> ModuleVisitor<B> for CountParams {
    fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<B, D>>) {
        self.0 += 1;
    }
}
