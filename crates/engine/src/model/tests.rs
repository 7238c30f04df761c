use burn::tensor::{Tensor, TensorData};

use super::*;
use crate::TestBackend;

type B = TestBackend;

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

#[test]
fn rms_norm_matches_closed_form() {
    let device = Default::default();
    let x = Tensor::<B, 3>::from_data(
        TensorData::new(vec![1.0f32, 2.0, 3.0, -4.0], [1, 1, 4]),
        &device,
    );
    let w = Tensor::<B, 1>::from_data(TensorData::new(vec![1.0f32, 0.5, 2.0, 1.0], [4]), &device);
    let y = values(RmsNorm::new(w, 1e-5).forward(x));
    let rms = ((1.0f32 + 4.0 + 9.0 + 16.0) / 4.0 + 1e-5).sqrt();
    let expected = [1.0 / rms, 0.5 * 2.0 / rms, 2.0 * 3.0 / rms, -4.0 / rms];
    for (a, b) in y.iter().zip(expected) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

#[test]
fn hidden_states_follow_hf_semantics() {
    let device = Default::default();
    let config = LlamaConfig::tiny();
    let model = config.init::<B>(&device);
    let batch = Batch::single(&[5, 17, 99, 3], &device);
    let opts = ForwardOptions {
        logits: Logits::All,
        hidden_states: true,
        mlp_activation: Some(1),
    };
    let out = model.forward(&batch, None, &opts);
    assert_eq!(out.hidden_states.len(), config.n_layers + 1);
    for h in &out.hidden_states {
        assert_eq!(h.dims(), [1, 4, config.d_model]);
    }
    // The first is the embedding of the tokens.
    let embed = values(model.embed_tokens.val().narrow(0, 5, 1));
    assert_eq!(values(out.hidden_states[0].clone().narrow(1, 0, 1)), embed);
    // The last is final-normed: the logits are the head applied to it.
    let logits = values(out.logits.unwrap());
    let from_last = values(model.head(out.hidden_states[config.n_layers].clone()));
    assert!(max_rel_diff(&logits, &from_last) < 1e-6);
    assert_eq!(out.mlp_activation.unwrap().dims(), [1, 4, config.d_ff]);
}

#[test]
fn causal_mask_hides_future_tokens() {
    let device = Default::default();
    let model = LlamaConfig::tiny().init::<B>(&device);
    let a = model.logits(&Batch::single(&[1, 2, 3, 4], &device));
    let b = model.logits(&Batch::single(&[1, 2, 3, 200], &device));
    // Positions 0..3 cannot see the last token.
    let (a3, b3) = (
        values(a.clone().narrow(1, 0, 3)),
        values(b.clone().narrow(1, 0, 3)),
    );
    assert!(max_rel_diff(&a3, &b3) < 1e-6);
    assert!(max_rel_diff(&values(a.narrow(1, 3, 1)), &values(b.narrow(1, 3, 1))) > 1e-3);
}

#[test]
fn left_padded_batch_matches_unpadded_rows() {
    let device = Default::default();
    let model = LlamaConfig::tiny().init::<B>(&device);
    let rows = vec![vec![3u32, 44, 12, 9, 100, 7], vec![8u32, 250, 31]];
    let batch = Batch::padded(&rows, 256, PaddingSide::Left, &device);
    let padded = model.logits(&batch);
    for (i, row) in rows.iter().enumerate() {
        let alone = values(model.logits(&Batch::single(row, &device)));
        let pad = 6 - row.len();
        let got = values(padded.clone().narrow(0, i, 1).narrow(1, pad, row.len()));
        assert!(max_rel_diff(&got, &alone) < 1e-5, "row {i}");
    }
}

#[test]
fn right_padded_batch_matches_unpadded_rows() {
    let device = Default::default();
    let model = LlamaConfig::tiny().init::<B>(&device);
    let rows = vec![vec![3u32, 44], vec![8u32, 250, 31, 5]];
    let padded = model.logits(&Batch::padded(&rows, 256, PaddingSide::Right, &device));
    for (i, row) in rows.iter().enumerate() {
        let alone = values(model.logits(&Batch::single(row, &device)));
        let got = values(padded.clone().narrow(0, i, 1).narrow(1, 0, row.len()));
        assert!(max_rel_diff(&got, &alone) < 1e-5, "row {i}");
    }
}

#[test]
fn kv_cache_steps_match_full_forward() {
    let device = Default::default();
    let model = LlamaConfig::tiny().init::<B>(&device);
    let tokens = [9u32, 18, 27, 36, 45, 54];
    let full = model.logits(&Batch::single(&tokens, &device));
    let mut cache = KvCache::new(model.n_layers());
    let opts = ForwardOptions {
        logits: Logits::Last,
        ..Default::default()
    };
    model.forward(
        &Batch::single(&tokens[..3], &device),
        Some(&mut cache),
        &opts,
    );
    assert_eq!(cache.len(), 3);
    for (i, &t) in tokens.iter().enumerate().skip(3) {
        let step = Batch::step(&[t], vec![i], vec![vec![true; i + 1]], &device);
        let got = values(
            model
                .forward(&step, Some(&mut cache), &opts)
                .logits
                .unwrap(),
        );
        let want = values(full.clone().narrow(1, i, 1));
        assert!(max_rel_diff(&got, &want) < 1e-5, "step {i}");
    }
}

#[test]
fn gqa_equals_explicitly_repeated_heads() {
    // A model with n_kv_heads = 2 must equal the same model with the K/V heads duplicated
    // into n_kv_heads = 4 (plain multi-head attention).
    let device = Default::default();
    let gqa_config = LlamaConfig::tiny();
    let gqa = gqa_config.init::<B>(&device);
    let mha_config = LlamaConfig {
        n_kv_heads: 4,
        ..LlamaConfig::tiny()
    };
    let hd = gqa_config.head_dim;
    let dup = |w: Tensor<B, 2>| {
        let heads: Vec<_> = (0..2).map(|h| w.clone().narrow(0, h * hd, hd)).collect();
        Tensor::cat(
            vec![
                heads[0].clone(),
                heads[0].clone(),
                heads[1].clone(),
                heads[1].clone(),
            ],
            0,
        )
    };
    struct Copy<'a> {
        from: &'a Llama<B>,
        dup: &'a dyn Fn(Tensor<B, 2>) -> Tensor<B, 2>,
    }
    impl ParamSource<B> for Copy<'_> {
        fn vector(&mut self, id: WeightId, _: usize) -> Result<Tensor<B, 1>> {
            Ok(self.from.vector(id).unwrap())
        }
        fn matrix(&mut self, id: WeightId, _: [usize; 2]) -> Result<Tensor<B, 2>> {
            let w = self.from.matrix(id).unwrap();
            Ok(match id {
                WeightId::Layer {
                    param: LayerParam::KProj | LayerParam::VProj,
                    ..
                } => (self.dup)(w),
                _ => w,
            })
        }
    }
    let mha = mha_config
        .build(&mut Copy {
            from: &gqa,
            dup: &dup,
        })
        .unwrap();
    let batch = Batch::single(&[4, 8, 15, 16, 23, 42], &device);
    let a = values(gqa.logits(&batch));
    let b = values(mha.logits(&batch));
    assert!(max_rel_diff(&a, &b) < 1e-5);
}

#[test]
fn build_reports_wrong_shapes_from_source() {
    struct Bad;
    impl ParamSource<B> for Bad {
        fn vector(&mut self, _: WeightId, len: usize) -> Result<Tensor<B, 1>> {
            Ok(Tensor::ones([len], &Default::default()))
        }
        fn matrix(&mut self, id: WeightId, _: [usize; 2]) -> Result<Tensor<B, 2>> {
            Err(EngineError::MissingTensor {
                path: "x".into(),
                tensor: id.hf_name(),
            })
        }
    }
    let err = LlamaConfig::tiny().build::<B>(&mut Bad).unwrap_err();
    assert!(
        err.to_string().contains("model.embed_tokens.weight"),
        "{err}"
    );
}

#[test]
fn tiny_parameter_count() {
    let c = LlamaConfig::tiny();
    let model = c.init::<B>(&Default::default());
    let per_layer = 2 * c.d_model
        + c.d_model * c.n_heads * c.head_dim * 2
        + 2 * c.d_model * c.n_kv_heads * c.head_dim
        + 3 * c.d_model * c.d_ff;
    let expected =
        c.vocab_size * c.d_model + c.n_layers * per_layer + c.d_model + c.vocab_size * c.d_model;
    assert_eq!(model.num_params(), expected);
}

#[test]
fn split_at_down_proj_reproduces_the_full_forward() {
    let device = Default::default();
    let model = LlamaConfig::tiny().init::<B>(&device);
    let tokens = [7u32, 70, 170, 17, 27, 77, 177];
    let batch = Batch::single(&tokens, &device);
    for layer in 0..model.n_layers() {
        let id = WeightId::layer(layer, LayerParam::DownProj);
        // A different down_proj at `layer`: the split path must equal the edited model's forward.
        let edited_weight = model.matrix(id).unwrap() * 1.5 + 0.01;
        let edited = model.with_down_proj(layer, edited_weight.clone());
        let full = values(edited.logits(&batch).narrow(1, 2, 5));
        let (resid_mid, act) = model.split_at_down_proj(&batch, layer);
        let split = model.logits_from_down_proj(resid_mid, act, edited_weight, layer, &batch, 2..7);
        assert!(max_rel_diff(&values(split), &full) < 1e-5, "layer {layer}");
        // The base model is untouched.
        assert_ne!(
            values(model.matrix(id).unwrap()),
            values(edited.matrix(id).unwrap())
        );
    }
}
