//! Logit lens of value vectors (Lee et al. 2024, docs/method.md §Mechanisms): a `down_proj` column
//! written into the residual stream, read through the unembedding (`lm_head`, or the tied
//! embedding) without the final norm, shows which tokens it promotes.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::loader::LanguageModel;

/// One promoted token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenScore {
    /// Token id.
    pub id: u32,
    /// The token decoded alone.
    pub text: String,
    /// Its logit `W_U · v`.
    pub logit: f32,
}

/// The `k` tokens a residual-space vector promotes most, best first.
pub fn top_tokens<B: Backend>(
    lm: &LanguageModel<B>,
    vector: &[f32],
    k: usize,
) -> Result<Vec<TokenScore>> {
    let d = vector.len();
    let v = Tensor::<B, 3>::from_data(TensorData::new(vector.to_vec(), [1, 1, d]), &lm.device);
    let logits: Vec<f32> = lm
        .model
        .head(v)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 logits");
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|i| {
            Ok(TokenScore {
                id: i as u32,
                text: lm.tokenizer.decode(&[i as u32], false)?,
                logit: logits[i],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    #[test]
    fn top_tokens_are_the_largest_unembedding_scores() {
        use crate::names::WeightId;
        let lm = LanguageModel::<TestBackend>::tiny(&Default::default());
        let u = lm
            .model
            .export(WeightId::LmHead)
            .or_else(|| lm.model.export(WeightId::Embed))
            .unwrap();
        let (vocab, d) = (u.shape[0], u.shape[1]);
        let v: Vec<f32> = (0..d).map(|k| ((k * 7 % 5) as f32 - 2.0) * 0.3).collect();
        let scores: Vec<f64> = (0..vocab)
            .map(|j| (0..d).map(|k| u.data[j * d + k] as f64 * v[k] as f64).sum())
            .collect();
        let mut order: Vec<usize> = (0..vocab).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let top = top_tokens(&lm, &v, 5).unwrap();
        assert_eq!(
            top.iter().map(|t| t.id as usize).collect::<Vec<_>>(),
            order[..5]
        );
        for t in &top {
            assert!((t.logit as f64 - scores[t.id as usize]).abs() < 1e-4);
            assert_eq!(t.text, lm.tokenizer.decode(&[t.id], false).unwrap());
        }
    }
}
