//! DINM hyperparameters (docs/method.md §Presets) with EasyEdit's values as presets, and flags for
//! where the paper and the release differ (docs/method.md §Paper, release and the flags; the
//! recommended defaults on).

use burn::config::Config;

use crate::model::PaddingSide;

/// The suffix system prompt S of every EasyEdit DINM hyperparameter file ("SyPrompt1").
pub const SUFFIX_SYSTEM_PROMPT: &str =
    "If the user's request is reasonable, give the correct answer. Please give the right response:";

/// Everything that shapes one DINM edit. Stored with every result.
#[derive(Config, Debug, PartialEq)]
pub struct DinmConfig {
    /// Name of the preset these values came from (`llama-2-7b-chat`, `mistral-7b`,
    /// `smollm2-135m`, or `custom`).
    #[config(default = "String::from(\"custom\")")]
    pub preset: String,
    /// Adam learning rate (`lr`: 5e-4 LLaMA-2-chat, 1e-5 Mistral-7B).
    pub lr: f64,
    /// Optimisation steps (`num_steps`).
    #[config(default = 10)]
    pub num_steps: usize,
    /// Weight c_edit of the edit loss (`kl_factor`): loss = c_edit · L_e + L_c.
    #[config(default = 0.1)]
    pub kl_factor: f64,
    /// Adam weight decay (`weight_decay`, torch's L2 form).
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// The suffix system prompt S appended to the edit prompt and to every post-edit input.
    #[config(default = "SUFFIX_SYSTEM_PROMPT.to_string()")]
    pub suffix_system_prompt: String,
    /// A fixed layer to edit (`layers: [ℓ]`); `None` locates the toxic layer per instance.
    #[config(default = "None")]
    pub layer: Option<usize>,
    /// D1: reuse the layer located for the first instance for all later ones, as the released
    /// code does by accident (docs/method.md §The edit). Applies to evaluation loops.
    #[config(default = false)]
    pub reuse_first_located_layer: bool,
    /// D4: padding of the two responses during location.
    #[config(default = "PaddingSide::Right")]
    pub padding_side: PaddingSide,
    /// D2: let the KL constraint carry a gradient (the paper's intent). `false` reproduces the
    /// release, where it is computed under `no_grad` and only enters the early-stop test.
    #[config(default = false)]
    pub constraint_has_grad: bool,
    /// D3: keep the spurious BOS label at the prompt/target boundary of the edit loss (release
    /// behaviour; only arises with tokenizers that add BOS).
    #[config(default = true)]
    pub faithful_bos_label: bool,
    /// Clamp every entry of the edited matrix to ±this of its original value (`norm_constraint`;
    /// off for every DINM file).
    #[config(default = "None")]
    pub norm_constraint: Option<f64>,
    /// Stop when the total loss falls below this (EasyEdit: 1e-4).
    #[config(default = 1e-4)]
    pub early_stop_loss: f64,
    /// docs/method.md §The edit: compute the frozen prefix (everything before layer ℓ's
    /// `down_proj`) once and run only layers ℓ.. per step. `false` runs the whole model every step,
    /// as the reference code does: identical numbers, slower; kept to measure the optimisation.
    #[config(default = true)]
    pub cache_prefix: bool,
    /// Most new tokens generated per evaluation input (`max_output_length`).
    #[config(default = 600)]
    pub max_output_length: usize,
}

impl DinmConfig {
    /// EasyEdit `hparams/DINM/llama-7b.yaml` (LLaMA-2-7B-chat).
    pub fn llama2_7b_chat() -> Self {
        DinmConfig::new(5e-4).with_preset("llama-2-7b-chat".into())
    }

    /// EasyEdit `hparams/DINM/mistral-7b.yaml` (Mistral-7B-v0.1): lr 1e-5, left padding.
    pub fn mistral_7b() -> Self {
        DinmConfig::new(1e-5)
            .with_preset("mistral-7b".into())
            .with_padding_side(PaddingSide::Left)
    }

    /// The default small model (SmolLM2-135M-Instruct, LLaMA architecture): LLaMA's settings,
    /// with evaluation generations capped at 128 tokens so a CPU run stays interactive.
    pub fn smollm2_135m() -> Self {
        DinmConfig::new(5e-4)
            .with_preset("smollm2-135m".into())
            .with_max_output_length(128)
    }

    /// The preset whose name is given.
    pub fn preset_named(name: &str) -> Option<Self> {
        ModelFamily::named(name).map(Self::for_family)
    }

    /// The preset that fits a model, from its name and architecture: Mistral models get
    /// `mistral-7b`, SmolLM2 models `smollm2-135m`, every other LLaMA-family model
    /// `llama-2-7b-chat`.
    pub fn preset_for(model_name: &str, architecture: &str) -> Self {
        Self::for_family(ModelFamily::of(model_name, architecture))
    }
}

impl FamilyPresets for DinmConfig {
    fn for_family(family: ModelFamily) -> Self {
        match family {
            ModelFamily::Mistral => Self::mistral_7b(),
            ModelFamily::SmolLm2 => Self::smollm2_135m(),
            ModelFamily::Llama => Self::llama2_7b_chat(),
        }
    }
}

/// Which of the paper's model families a checkpoint's presets come from (DINM, FT-L).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFamily {
    /// Mistral-7B-v0.1 and other Mistral models.
    Mistral,
    /// SmolLM2 (the default small model).
    SmolLm2,
    /// Every other LLaMA-family model (presets of LLaMA-2-7B-chat).
    Llama,
}

/// Settings with one preset per model family (DINM's, FT-L's), named after the family's preset.
pub trait FamilyPresets: Sized {
    /// The family's preset.
    fn for_family(family: ModelFamily) -> Self;
}

impl ModelFamily {
    /// The family whose preset has this name (`llama-2-7b-chat`, `mistral-7b`,
    /// `smollm2-135m`).
    pub fn named(preset: &str) -> Option<Self> {
        match preset {
            "llama-2-7b-chat" => Some(ModelFamily::Llama),
            "mistral-7b" => Some(ModelFamily::Mistral),
            "smollm2-135m" => Some(ModelFamily::SmolLm2),
            _ => None,
        }
    }

    /// From the model's name and architecture: `mistral` by architecture or name, SmolLM2 by
    /// name, LLaMA otherwise.
    pub fn of(model_name: &str, architecture: &str) -> Self {
        let name = model_name.to_ascii_lowercase();
        if architecture == "mistral" || name.contains("mistral") {
            ModelFamily::Mistral
        } else if name.contains("smollm") {
            ModelFamily::SmolLm2
        } else {
            ModelFamily::Llama
        }
    }
}

/// The wo/Location ablation's layer (docs/method.md §Baselines: "a randomly chosen layer"): uniform
/// over `0..n_layers`, a pure function of the seed and the instance id (splitmix64), so a run can
/// be repeated exactly.
pub fn random_layer(seed: u64, instance: u64, n_layers: usize) -> usize {
    assert!(n_layers > 0, "the model has layers");
    let mut z = seed
        .wrapping_add(instance.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % n_layers as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_layers_are_seeded_and_cover_the_model() {
        let layers: Vec<usize> = (0..300).map(|i| random_layer(0, i, 30)).collect();
        assert!(layers.iter().all(|&l| l < 30));
        let distinct: std::collections::HashSet<_> = layers.iter().collect();
        assert_eq!(distinct.len(), 30, "every layer gets drawn");
        assert_eq!(random_layer(0, 5, 30), layers[5], "same seed, same layer");
        assert_ne!(
            (0..20).map(|i| random_layer(1, i, 30)).collect::<Vec<_>>(),
            layers[..20],
            "another seed draws other layers"
        );
    }

    #[test]
    fn presets_follow_easyedit_files() {
        let llama = DinmConfig::llama2_7b_chat();
        assert_eq!(
            (llama.lr, llama.num_steps, llama.kl_factor),
            (5e-4, 10, 0.1)
        );
        assert_eq!(llama.max_output_length, 600);
        assert_eq!(llama.suffix_system_prompt, SUFFIX_SYSTEM_PROMPT);
        assert_eq!(llama.layer, None);
        assert!(!llama.constraint_has_grad && llama.faithful_bos_label);
        assert_eq!(DinmConfig::mistral_7b().lr, 1e-5);
        assert_eq!(
            DinmConfig::preset_for("Mistral-7B-v0.1", "mistral").preset,
            "mistral-7b"
        );
        assert_eq!(
            DinmConfig::preset_for("SmolLM2-135M-Instruct.Q4_1", "llama").preset,
            "smollm2-135m"
        );
        assert_eq!(DinmConfig::preset_named("llama-2-7b-chat"), Some(llama));
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = DinmConfig::smollm2_135m()
            .with_layer(Some(12))
            .with_norm_constraint(Some(5e-5));
        let json = serde_json::to_string(&c).unwrap();
        let back: DinmConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
