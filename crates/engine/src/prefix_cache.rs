//! Processed prompts kept for later generation calls on the same model: a prompt that begins
//! like a kept one (SafeEdit reuses a few dozen jailbreak templates across its instances)
//! continues that prompt's keys and values instead of computing its beginning again. Causal
//! attention makes a token's keys and values depend only on the tokens before it, so what is
//! taken is exactly what would be computed.
//!
//! A cache belongs to one set of weights: whoever keeps one across calls must drop it when the
//! model changes (an edited model is another model). Memory is bounded: the least recently used
//! prompts go first.

use burn::tensor::backend::Backend;

use crate::model::KvCache;

/// Shortest shared beginning worth taking from a kept prompt instead of computing it.
pub const MIN_SHARED_PREFIX: usize = 16;

/// One kept prompt.
#[derive(Debug, Clone)]
struct Kept<B: Backend> {
    tokens: Vec<u32>,
    cache: KvCache<B>,
    bytes: usize,
    last_used: u64,
}

/// Prompts processed by a model, with their keys and values, up to a memory budget.
#[derive(Debug, Clone)]
pub struct PrefixCache<B: Backend> {
    kept: Vec<Kept<B>>,
    budget_bytes: usize,
    bytes: usize,
    clock: u64,
}

impl<B: Backend> PrefixCache<B> {
    /// A cache keeping at most `budget_bytes` of keys and values (0 keeps nothing).
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            kept: Vec::new(),
            budget_bytes,
            bytes: 0,
            clock: 0,
        }
    }

    /// A cache without a memory bound (for the prompts of one call).
    pub fn unbounded() -> Self {
        Self::new(usize::MAX)
    }

    /// Prompts kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Memory the kept keys and values take, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The cache for the longest beginning of `prompt` a kept prompt shares, when it is worth
    /// taking (at least [`MIN_SHARED_PREFIX`] tokens), and that length. The last token of
    /// `prompt` is never taken: its logits start the answer. On equal lengths the prompt kept
    /// first is taken.
    pub fn take_prefix(&mut self, prompt: &[u32]) -> Option<(KvCache<B>, usize)> {
        let (index, shared) = self.longest_prefix(prompt)?;
        Some((self.take(index, shared), shared))
    }

    /// Which kept prompt [`Self::take_prefix`] would take from, and how many tokens.
    fn longest_prefix(&self, prompt: &[u32]) -> Option<(usize, usize)> {
        let (index, shared) = self
            .kept
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let same = k
                    .tokens
                    .iter()
                    .zip(prompt)
                    .take_while(|(a, b)| a == b)
                    .count();
                (i, same)
            })
            .max_by_key(|&(i, same)| (same, std::cmp::Reverse(i)))?;
        let shared = shared.min(prompt.len().saturating_sub(1));
        (shared >= MIN_SHARED_PREFIX).then_some((index, shared))
    }

    /// The first `shared` positions of kept prompt `index`, now the most recently used.
    fn take(&mut self, index: usize, shared: usize) -> KvCache<B> {
        self.clock += 1;
        let kept = &mut self.kept[index];
        kept.last_used = self.clock;
        kept.cache.prefix(shared)
    }

    /// [`Self::take_prefix`] from whichever of `self` and `other` shares more with `prompt`
    /// (`self` on a tie).
    pub fn take_prefix_either(
        &mut self,
        other: &mut Self,
        prompt: &[u32],
    ) -> Option<(KvCache<B>, usize)> {
        match (self.longest_prefix(prompt), other.longest_prefix(prompt)) {
            (Some((i, mine)), Some((_, theirs))) if mine >= theirs => {
                Some((self.take(i, mine), mine))
            }
            (_, Some((j, theirs))) => Some((other.take(j, theirs), theirs)),
            (Some((i, mine)), None) => Some((self.take(i, mine), mine)),
            (None, None) => None,
        }
    }

    /// Keeps `cache`, the keys and values of `tokens`, dropping the least recently used prompts
    /// beyond the budget. A prompt another kept one begins with adds nothing (that one serves
    /// it); a kept prompt this one begins with is replaced by it.
    pub fn keep(&mut self, tokens: &[u32], cache: &KvCache<B>) {
        if tokens.len() < MIN_SHARED_PREFIX || cache.len() != tokens.len() {
            return;
        }
        self.clock += 1;
        let clock = self.clock;
        if let Some(longer) = self.kept.iter_mut().find(|k| k.tokens.starts_with(tokens)) {
            longer.last_used = clock;
            return;
        }
        let bytes = cache.bytes();
        if bytes > self.budget_bytes {
            return;
        }
        let mut freed = 0;
        self.kept.retain(|k| {
            let covered = tokens.starts_with(&k.tokens);
            if covered {
                freed += k.bytes;
            }
            !covered
        });
        self.bytes -= freed;
        while self.bytes + bytes > self.budget_bytes {
            let oldest = self
                .kept
                .iter()
                .enumerate()
                .min_by_key(|(_, k)| k.last_used)
                .map(|(i, _)| i)
                .expect("the budget holds this prompt, so something kept is over it");
            self.bytes -= self.kept.remove(oldest).bytes;
        }
        self.bytes += bytes;
        self.kept.push(Kept {
            tokens: tokens.to_vec(),
            cache: cache.clone(),
            bytes,
            last_used: clock,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GenerationConfig;
    use crate::loader::LanguageModel;

    type B = crate::TestBackend;

    fn prompt(template: u32, question: u32, len: usize) -> Vec<u32> {
        let mut p: Vec<u32> = (0..len as u32)
            .map(|i| 3 + (template * 31 + i * 7) % 200)
            .collect();
        p.extend([200 + question, 201 + question, 202]);
        p
    }

    /// The keys and values of `tokens`, computed alone.
    fn processed(lm: &LanguageModel<B>, tokens: &[u32]) -> KvCache<B> {
        let mut cache = KvCache::new(lm.model.n_layers());
        let batch = crate::Batch::continuing(tokens, 0, &lm.device);
        lm.model
            .forward(&batch, Some(&mut cache), &Default::default());
        cache
    }

    #[test]
    fn prompts_kept_by_an_earlier_call_serve_a_later_one_with_the_same_answers() {
        let lm = LanguageModel::<B>::tiny(&Default::default());
        let config = GenerationConfig::greedy(8);
        let first = vec![prompt(1, 1, 40), prompt(2, 1, 30)];
        let later = vec![prompt(1, 5, 40), prompt(2, 6, 30), prompt(3, 1, 20)];
        let mut reuse = PrefixCache::new(usize::MAX);
        let (_, timings) = lm
            .generate_reusing(&first, &config, &mut reuse, &mut |_| true)
            .unwrap();
        assert_eq!(
            timings.shared_prompt_tokens, 0,
            "different templates share nothing"
        );
        assert_eq!(reuse.len(), 2);
        let (reused, timings) = lm
            .generate_reusing(&later, &config, &mut reuse, &mut |_| true)
            .unwrap();
        // Templates 1 and 2 come from the first call (40 and 30 tokens), the third is new.
        assert_eq!(timings.shared_prompt_tokens, 70);
        let (alone, alone_timings) = lm.generate(&later, &config).unwrap();
        assert_eq!(alone_timings.shared_prompt_tokens, 0);
        for (r, a) in reused.iter().zip(&alone) {
            assert_eq!(r.generated_ids, a.generated_ids);
            assert!(!a.generated_ids.is_empty());
        }
        assert_eq!(reuse.len(), 5);
    }

    #[test]
    fn the_budget_drops_the_least_recently_used_and_nested_prompts_are_kept_once() {
        let lm = LanguageModel::<B>::tiny(&Default::default());
        let [a, b, c] = [1, 2, 3].map(|t| prompt(t, 0, 30));
        let each = processed(&lm, &a).bytes();
        assert!(each > 0);
        let mut reuse = PrefixCache::<B>::new(2 * each);
        reuse.keep(&a, &processed(&lm, &a));
        reuse.keep(&b, &processed(&lm, &b));
        assert_eq!((reuse.len(), reuse.bytes()), (2, 2 * each));
        // Using `a` makes `b` the least recently used, so `c` pushes `b` out.
        let (taken, shared) = reuse.take_prefix(&prompt(1, 9, 30)).unwrap();
        assert_eq!((shared, taken.len()), (30, 30));
        reuse.keep(&c, &processed(&lm, &c));
        assert_eq!(reuse.len(), 2);
        assert!(reuse.take_prefix(&b).is_none(), "b was dropped");
        assert_eq!(
            reuse.take_prefix(&a).unwrap().1,
            a.len() - 1,
            "the last token is computed"
        );
        // A prompt a kept one begins with adds nothing; one that extends a kept one replaces it.
        reuse.keep(&a[..20], &processed(&lm, &a[..20]));
        assert_eq!(reuse.len(), 2);
        let longer: Vec<u32> = a.iter().copied().chain([7, 8, 9]).collect();
        reuse.keep(&longer, &processed(&lm, &longer));
        // `a` is replaced, and as `longer` takes more than `a` did, `c` (now the least recently
        // used) goes too.
        assert_eq!(reuse.len(), 1);
        assert!(reuse.bytes() > each && reuse.bytes() <= 2 * each);
        assert_eq!(reuse.take_prefix(&longer).unwrap().1, longer.len() - 1);
        assert!(reuse.take_prefix(&c).is_none());
        // Short beginnings are not worth taking; a zero budget keeps nothing.
        assert!(reuse.take_prefix(&a[..MIN_SHARED_PREFIX]).is_none());
        let mut none = PrefixCache::<B>::new(0);
        none.keep(&a, &processed(&lm, &a));
        assert!(none.is_empty());
    }
}
