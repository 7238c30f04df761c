//! Batches of token rows with padding, their positions and key masks, and the key/value cache.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::flex;
use super::int_tensor;
use super::layers::LayerCache;

/// Where padding goes in a batch of unequal rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingSide {
    /// Pads before the tokens (generation).
    Left,
    /// Pads after the tokens.
    Right,
}

/// Token rows ready for a forward pass.
#[derive(Debug, Clone)]
pub struct Batch<B: Backend> {
    /// `[batch, seq]` token ids (pads included).
    pub tokens: Tensor<B, 2, Int>,
    /// Rotary position of every token, `[batch][seq]`.
    pub positions: Vec<Vec<usize>>,
    /// Which keys may be attended to, `[batch][cached + seq]`: false for padding. Covers the
    /// key/value cache too when the batch extends one.
    pub key_mask: Vec<Vec<bool>>,
}

impl<B: Backend> Batch<B> {
    /// One unpadded row.
    pub fn single(tokens: &[u32], device: &B::Device) -> Self {
        Self::continuing(tokens, 0, device)
    }

    /// Rows padded to the longest with `pad_id`. Positions count from each row's first real
    /// token (as transformers' `generate` computes them from the attention mask), so a padded
    /// row gives the same outputs as the row alone.
    pub fn padded(rows: &[Vec<u32>], pad_id: u32, side: PaddingSide, device: &B::Device) -> Self {
        let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows.len() * seq);
        let mut positions = Vec::with_capacity(rows.len());
        let mut key_mask = Vec::with_capacity(rows.len());
        for row in rows {
            let pad = seq - row.len();
            let (mask, pos): (Vec<bool>, Vec<usize>) = match side {
                PaddingSide::Left => {
                    ids.extend(std::iter::repeat_n(pad_id as i64, pad));
                    ids.extend(row.iter().map(|&t| t as i64));
                    let mask = (0..seq).map(|i| i >= pad).collect();
                    // transformers fills pad positions with 1.
                    let pos = (0..seq)
                        .map(|i| if i >= pad { i - pad } else { 1 })
                        .collect();
                    (mask, pos)
                }
                PaddingSide::Right => {
                    ids.extend(row.iter().map(|&t| t as i64));
                    ids.extend(std::iter::repeat_n(pad_id as i64, pad));
                    (
                        (0..seq).map(|i| i < row.len()).collect(),
                        (0..seq).collect(),
                    )
                }
            };
            positions.push(pos);
            key_mask.push(mask);
        }
        Self {
            tokens: int_tensor(ids, [rows.len(), seq], device),
            positions,
            key_mask,
        }
    }

    /// The same batch with positions `0..seq` on every row, padding included: what a plain
    /// transformers forward without `position_ids` does (needed to reproduce reference code).
    pub fn with_absolute_positions(mut self) -> Self {
        for row in &mut self.positions {
            let seq = row.len();
            *row = (0..seq).collect();
        }
        self
    }

    /// One new token per row extending a cache: `positions[i]` is row i's next position and
    /// `key_mask` covers the cached keys plus the new one.
    pub fn step(
        tokens: &[u32],
        positions: Vec<usize>,
        key_mask: Vec<Vec<bool>>,
        device: &B::Device,
    ) -> Self {
        let ids = tokens.iter().map(|&t| t as i64).collect();
        Self {
            tokens: int_tensor(ids, [tokens.len(), 1], device),
            positions: positions.into_iter().map(|p| vec![p]).collect(),
            key_mask,
        }
    }

    /// One row continuing a cache of `cached` positions: `tokens` take positions
    /// `cached..cached + tokens.len()` and may attend to every cached key.
    pub fn continuing(tokens: &[u32], cached: usize, device: &B::Device) -> Self {
        let ids = tokens.iter().map(|&t| t as i64).collect();
        Self {
            tokens: int_tensor(ids, [1, tokens.len()], device),
            positions: vec![(cached..cached + tokens.len()).collect()],
            key_mask: vec![vec![true; cached + tokens.len()]],
        }
    }

    /// Number of rows.
    pub fn batch_size(&self) -> usize {
        self.positions.len()
    }

    /// Length of the new tokens.
    pub fn seq_len(&self) -> usize {
        self.positions.first().map_or(0, Vec::len)
    }

    /// Additive attention bias over keys: 0 for real tokens, the most negative finite f32 for
    /// padding (transformers' eager convention). `None` when nothing is masked.
    ///
    /// # Shapes
    /// - output: `[batch, 1, 1, keys]`
    pub fn pad_bias(&self, device: &B::Device) -> Option<Tensor<B, 4>> {
        if self.key_mask.iter().all(|row| row.iter().all(|&m| m)) {
            return None;
        }
        let keys = self.key_mask[0].len();
        let values: Vec<f32> = self
            .key_mask
            .iter()
            .flat_map(|row| row.iter().map(|&m| if m { 0.0 } else { f32::MIN }))
            .collect();
        Some(Tensor::from_data(
            TensorData::new(values, [self.key_mask.len(), 1, 1, keys]),
            device,
        ))
    }
}

/// Keys and values of every layer for the tokens processed so far.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerCache<B>>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `n_layers` layers.
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: (0..n_layers).map(|_| None).collect(),
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, LayerCache::len)
    }

    /// True before the first forward pass.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory the cached keys and values take, in bytes.
    pub fn bytes(&self) -> usize {
        self.layers.iter().flatten().map(LayerCache::bytes).sum()
    }

    /// The first `len` cached positions (all of them when there are fewer).
    pub fn prefix(&self, len: usize) -> Self {
        let layers = self
            .layers
            .iter()
            .map(|slot| slot.as_ref().map(|c| c.prefix(len)))
            .collect();
        Self { layers }
    }

    /// One-row caches of unequal lengths as one batch: each row's keys and values left-padded
    /// with zeros to the longest, and each row's key mask (false over the padding), with room
    /// for `room` more positions (the decoding steps to come write there in place). Decoding
    /// steps over it give every row what its own cache gives, as padded keys are masked out.
    pub fn stack_left_padded(rows: Vec<KvCache<B>>, room: usize) -> (Self, Vec<Vec<bool>>) {
        let longest = rows.iter().map(KvCache::len).max().unwrap_or(0);
        let key_mask = rows
            .iter()
            .map(|row| {
                let pad = longest - row.len();
                (0..longest).map(|i| i >= pad).collect()
            })
            .collect();
        let n_layers = rows.first().map_or(0, |row| row.layers.len());
        let mut keys: Vec<Vec<Tensor<B, 4>>> = vec![Vec::new(); n_layers];
        let mut values: Vec<Vec<Tensor<B, 4>>> = vec![Vec::new(); n_layers];
        for row in rows {
            for (layer, slot) in row.layers.into_iter().enumerate() {
                if let Some(cache) = slot {
                    keys[layer].push(cache.keys());
                    values[layer].push(cache.values());
                }
            }
        }
        // On the CPU backend each layer's buffer is written in one pass; otherwise each row is
        // padded, then the rows concatenated.
        let stack = |rows: Vec<Tensor<B, 4>>| {
            flex::stack_left_padded(&rows, longest, room).unwrap_or_else(|| {
                let padded = rows
                    .into_iter()
                    .map(|t| left_pad(t, longest, room))
                    .collect();
                Tensor::cat(padded, 0)
            })
        };
        let layers = keys
            .into_iter()
            .zip(values)
            .map(|(keys, values)| {
                (!keys.is_empty())
                    .then(|| LayerCache::with_room(stack(keys), stack(values), longest))
            })
            .collect();
        (Self { layers }, key_mask)
    }

    pub(crate) fn slot(&mut self, layer: usize) -> &mut Option<LayerCache<B>> {
        &mut self.layers[layer]
    }
}

/// `[batch, heads, len, dim]` with zeros before it along the sequence axis to `to` positions,
/// and `room` zero positions after them.
fn left_pad<B: Backend>(t: Tensor<B, 4>, to: usize, room: usize) -> Tensor<B, 4> {
    let [batch, heads, len, dim] = t.dims();
    let zeros = |n: usize| Tensor::zeros([batch, heads, n, dim], &t.device());
    let mut parts = Vec::with_capacity(3);
    if len < to {
        parts.push(zeros(to - len));
    }
    parts.push(t.clone());
    if room > 0 {
        parts.push(zeros(room));
    }
    if parts.len() == 1 {
        t
    } else {
        Tensor::cat(parts, 2)
    }
}
