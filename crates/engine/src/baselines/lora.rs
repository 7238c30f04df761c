//! LoRA for SFT / DPO (Hu et al. 2021, as the PEFT library does it): each targeted projection
//! `W [out, in]` of every layer is trained as `W + (α / r) · B A` with `A [r, in]` drawn from
//! U(−1/√in, 1/√in) (PEFT's Kaiming-uniform with a = √5) and `B [out, r]` zero, so training starts
//! exactly at the base model. Only A and B get gradients and optimiser state: for a 7B model that
//! is a few million numbers instead of seven billion. No dropout on the adapter input (PEFT's
//! `lora_dropout` 0).
//!
//! Adapters are saved in PEFT's format (`adapter_model.safetensors` with
//! `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` names, and
//! `adapter_config.json`) in the model directory's `adapter/` subfolder
//! (`PeftModel.from_pretrained(base, DIR/adapter)`), and the trained model is written merged
//! beside it, so every tool here (and transformers) loads DIR as a plain model.

use std::path::Path;

use burn::config::Config;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use crate::error::{EngineError, Result};
use crate::model::Llama;
use crate::names::{LayerParam, WeightId};
use crate::weights::{RawTensor, SafetensorsStore, SaveDtype, write_safetensors};

/// The subfolder of a trained model directory holding the adapters. Not the model directory
/// itself: transformers applies an `adapter_config.json` it finds beside a model's weights, which
/// would add the update twice to the merged weights.
pub const ADAPTER_DIR: &str = "adapter";
/// The adapter file, PEFT's name.
pub const ADAPTER_FILE: &str = "adapter_model.safetensors";
/// The adapter description, PEFT's name.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";

/// LoRA hyperparameters.
#[derive(Config, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank r of every adapter.
    #[config(default = 8)]
    pub rank: usize,
    /// α: the update is scaled by α / r.
    #[config(default = 16.0)]
    pub alpha: f64,
    /// Targeted projections by module name (`q_proj`, `k_proj`, `v_proj`, `o_proj`,
    /// `gate_proj`, `up_proj`, `down_proj`); PEFT's default for LLaMA-family models is q and v.
    #[config(default = "vec![\"q_proj\".to_string(), \"v_proj\".to_string()]")]
    pub targets: Vec<String>,
    /// Seed of A's initialisation.
    #[config(default = 0)]
    pub seed: u64,
}

impl LoraConfig {
    /// α / r.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// The targeted projections, checked.
    pub fn params(&self) -> Result<Vec<LayerParam>> {
        if self.rank == 0 {
            return Err(EngineError::InvalidInput(
                "LoRA rank must be at least 1".into(),
            ));
        }
        if self.targets.is_empty() {
            return Err(EngineError::InvalidInput(
                "LoRA needs at least one target module".into(),
            ));
        }
        self.targets
            .iter()
            .map(|name| {
                module_param(name).ok_or_else(|| {
                    EngineError::InvalidInput(format!(
                        "LoRA target `{name}`: not a projection (q_proj, k_proj, v_proj, o_proj, \
                         gate_proj, up_proj, down_proj)"
                    ))
                })
            })
            .collect()
    }
}

/// The module name of a projection (`q_proj`), `None` for norms.
pub fn module_name(param: LayerParam) -> Option<&'static str> {
    Some(match param {
        LayerParam::QProj => "q_proj",
        LayerParam::KProj => "k_proj",
        LayerParam::VProj => "v_proj",
        LayerParam::OProj => "o_proj",
        LayerParam::GateProj => "gate_proj",
        LayerParam::UpProj => "up_proj",
        LayerParam::DownProj => "down_proj",
        LayerParam::InputNorm | LayerParam::PostAttentionNorm => return None,
    })
}

fn module_param(name: &str) -> Option<LayerParam> {
    LayerParam::ALL
        .iter()
        .copied()
        .find(|&p| module_name(p) == Some(name))
}

/// One adapter: the weight it modifies and its two factors.
#[derive(Debug, Clone)]
pub struct Adapter<B: Backend> {
    /// The modified weight.
    pub id: WeightId,
    /// `[r, in]`.
    pub a: Tensor<B, 2>,
    /// `[out, r]`.
    pub b: Tensor<B, 2>,
}

impl<B: Backend> Adapter<B> {
    /// PEFT's tensor name prefix, e.g. `base_model.model.model.layers.3.self_attn.q_proj`.
    pub fn peft_prefix(&self) -> String {
        let name = self.id.hf_name();
        format!(
            "base_model.model.{}",
            name.strip_suffix(".weight").unwrap_or(&name)
        )
    }
}

/// Every adapter of a model.
#[derive(Debug, Clone)]
pub struct LoraAdapters<B: Backend> {
    /// The hyperparameters.
    pub config: LoraConfig,
    /// One per targeted projection per layer, layer-major.
    pub adapters: Vec<Adapter<B>>,
}

impl<B: Backend> LoraAdapters<B> {
    /// Fresh adapters for `model`: A uniform in ±1/√in (seeded), B zero.
    pub fn init(model: &Llama<B>, config: LoraConfig, device: &B::Device) -> Result<Self> {
        let params = config.params()?;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut adapters = Vec::new();
        for layer in 0..model.layers.len() {
            for &param in &params {
                let id = WeightId::layer(layer, param);
                let w = model
                    .matrix(id)
                    .ok_or_else(|| EngineError::InvalidInput(format!("no weight {id}")))?;
                let [out, input] = w.dims();
                let bound = 1.0 / (input as f32).sqrt();
                let a: Vec<f32> = (0..config.rank * input)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                adapters.push(Adapter {
                    id,
                    a: Tensor::from_data(TensorData::new(a, [config.rank, input]), device),
                    b: Tensor::zeros([out, config.rank], device),
                });
            }
        }
        Ok(Self { config, adapters })
    }

    /// `(α / r) · B A` of one adapter, `[out, in]`.
    pub fn delta(&self, adapter: &Adapter<B>) -> Tensor<B, 2> {
        adapter.b.clone().matmul(adapter.a.clone()) * self.config.scale()
    }

    /// The model with every adapter merged into its weight.
    pub fn merged(&self, model: &Llama<B>) -> Llama<B> {
        let mut merged = model.clone();
        for adapter in &self.adapters {
            let w = model
                .matrix_f32(adapter.id)
                .expect("adapter targets a matrix");
            merged = merged.with_matrix(adapter.id, w + self.delta(adapter));
        }
        merged
    }

    /// Trained numbers (A and B of every adapter).
    pub fn num_params(&self) -> usize {
        self.adapters
            .iter()
            .map(|a| a.a.shape().num_elements() + a.b.shape().num_elements())
            .sum()
    }

    /// The tensors in optimiser order (A then B, adapter by adapter).
    pub fn tensors(&self) -> Vec<Tensor<B, 2>> {
        self.adapters
            .iter()
            .flat_map(|a| [a.a.clone(), a.b.clone()])
            .collect()
    }

    /// Replaces the tensors (same order as [`LoraAdapters::tensors`]).
    pub fn set_tensors(&mut self, tensors: Vec<Tensor<B, 2>>) {
        let mut it = tensors.into_iter();
        for adapter in &mut self.adapters {
            adapter.a = it.next().expect("A");
            adapter.b = it.next().expect("B");
        }
    }

    /// Writes `adapter_model.safetensors` and `adapter_config.json` (PEFT's layout) into `dir`
    /// (created when missing).
    pub fn save(&self, dir: &Path, base_model: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        let raw = |t: &Tensor<B, 2>| RawTensor {
            shape: t.dims().to_vec(),
            data: t.to_data().convert::<f32>().to_vec().expect("f32"),
        };
        let tensors: Vec<(String, RawTensor)> = self
            .adapters
            .iter()
            .flat_map(|a| {
                let prefix = a.peft_prefix();
                [
                    (format!("{prefix}.lora_A.weight"), raw(&a.a)),
                    (format!("{prefix}.lora_B.weight"), raw(&a.b)),
                ]
            })
            .collect();
        let mut metadata = std::collections::HashMap::new();
        metadata.insert("format".to_string(), "pt".to_string());
        let partial = dir.join(format!("{ADAPTER_FILE}.partial"));
        write_safetensors(&partial, &tensors, SaveDtype::F32, Some(metadata))?;
        let path = dir.join(ADAPTER_FILE);
        std::fs::rename(&partial, &path).map_err(|e| EngineError::io(&path, e))?;
        let config = json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.config.rank,
            "lora_alpha": self.config.alpha,
            "lora_dropout": 0.0,
            "target_modules": self.config.targets,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
        });
        let path = dir.join(ADAPTER_CONFIG_FILE);
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&config).expect("json") + "\n",
        )
        .map_err(|e| EngineError::io(&path, e))
    }

    /// Reads adapters saved by [`LoraAdapters::save`] for `model` (shapes are checked).
    pub fn load(
        dir: &Path,
        model: &Llama<B>,
        config: LoraConfig,
        device: &B::Device,
    ) -> Result<Self> {
        let path = dir.join(ADAPTER_FILE);
        let store = SafetensorsStore::open(&path)?;
        let mut adapters = Self::init(model, config, device)?;
        for adapter in &mut adapters.adapters {
            let prefix = adapter.peft_prefix();
            for (which, tensor) in [("lora_A", &mut adapter.a), ("lora_B", &mut adapter.b)] {
                let name = format!("{prefix}.{which}.weight");
                let raw = store.load_name(&name)?.ok_or_else(|| {
                    EngineError::format(&path, "LoRA adapter", format!("`{name}` missing"))
                })?;
                if raw.shape != tensor.dims().to_vec() {
                    return Err(EngineError::format(
                        &path,
                        "LoRA adapter",
                        format!(
                            "`{name}` has shape {:?}, expected {:?}",
                            raw.shape,
                            tensor.dims()
                        ),
                    ));
                }
                let dims = tensor.dims();
                *tensor = Tensor::from_data(TensorData::new(raw.data, dims), device);
            }
        }
        Ok(adapters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use crate::config::LlamaConfig;

    fn tiny_model(device: &burn::tensor::Device<TestBackend>) -> Llama<TestBackend> {
        LlamaConfig::tiny().init::<TestBackend>(device)
    }

    #[test]
    fn fresh_adapters_leave_the_model_unchanged_and_round_trip_in_peft_format() {
        let device = Default::default();
        let model = tiny_model(&device);
        let config = LoraConfig::new().with_rank(4);
        let mut lora = LoraAdapters::init(&model, config.clone(), &device).unwrap();
        assert_eq!(lora.adapters.len(), 2 * model.layers.len());
        let q = &lora.adapters[0];
        assert_eq!(q.id, WeightId::layer(0, LayerParam::QProj));
        assert_eq!(
            q.peft_prefix(),
            "base_model.model.model.layers.0.self_attn.q_proj"
        );
        let [out, input] = model.matrix(q.id).unwrap().dims();
        assert_eq!(q.a.dims(), [4, input]);
        assert_eq!(q.b.dims(), [out, 4]);
        let bound = 1.0 / (input as f32).sqrt();
        let a: Vec<f32> = q.a.to_data().to_vec().unwrap();
        assert!(a.iter().all(|v| v.abs() <= bound) && a.iter().any(|v| *v != 0.0));

        // B = 0: merging changes nothing.
        let merged = lora.merged(&model);
        let w = |m: &Llama<TestBackend>| -> Vec<f32> {
            m.matrix(WeightId::layer(1, LayerParam::VProj))
                .unwrap()
                .to_data()
                .to_vec()
                .unwrap()
        };
        assert_eq!(w(&merged), w(&model));

        // A non-zero B merges as W + (α / r) B A, and survives a save / load.
        let mut tensors = lora.tensors();
        let b = Tensor::<TestBackend, 2>::ones(tensors[3].dims(), &device) * 0.5;
        tensors[3] = b;
        lora.set_tensors(tensors);
        let adapter = &lora.adapters[1];
        assert_eq!(adapter.id, WeightId::layer(0, LayerParam::VProj));
        let expected = model.matrix(adapter.id).unwrap()
            + adapter.b.clone().matmul(adapter.a.clone()) * (16.0 / 4.0);
        let got = lora.merged(&model).matrix(adapter.id).unwrap();
        got.to_data()
            .assert_approx_eq::<f32>(&expected.to_data(), Default::default());
        let dir = std::env::temp_dir().join(format!("lora-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        lora.save(&dir, "tiny").unwrap();
        let back = LoraAdapters::load(&dir, &model, config.clone(), &device).unwrap();
        for (x, y) in lora.tensors().iter().zip(back.tensors()) {
            x.to_data().assert_eq(&y.to_data(), true);
        }
        let peft: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(ADAPTER_CONFIG_FILE)).unwrap())
                .unwrap();
        assert_eq!(peft["r"], 4);
        assert_eq!(peft["target_modules"], json!(["q_proj", "v_proj"]));
        // Another rank does not fit the saved tensors: a clear error, not a panic.
        let err = LoraAdapters::load(&dir, &model, config.with_rank(2), &device).unwrap_err();
        assert!(err.to_string().contains("has shape"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_targets_are_named() {
        let err = LoraConfig::new()
            .with_targets(vec!["q_proj".into(), "attn".into()])
            .params()
            .unwrap_err();
        assert!(err.to_string().contains("`attn`"), "{err}");
        assert!(LoraConfig::new().with_rank(0).params().is_err());
    }
}
