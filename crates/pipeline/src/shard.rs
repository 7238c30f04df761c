//! Sharded evaluation (docs/slurm/README.md): `eval --shard K/N` evaluates every N-th instance
//! starting at the K-th, in its own folder `OUT/shard-K-of-N`, and `eval-merge` joins the N
//! folders into the run one process would have written. Dealing instances out in turn (not in
//! blocks) gives every shard its share of every category and of the long inputs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{PipelineError, Result};

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which shard, 1..=count.
    pub index: usize,
    /// How many shards the run is split into.
    pub count: usize,
}

/// The environment variables `--shard auto` reads.
pub const SLURM_TASK_ID: &str = "SLURM_ARRAY_TASK_ID";
/// Slurm: the array's lowest task id.
pub const SLURM_TASK_MIN: &str = "SLURM_ARRAY_TASK_MIN";
/// Slurm: the array's step (`--array=0-9:2`).
pub const SLURM_TASK_STEP: &str = "SLURM_ARRAY_TASK_STEP";
/// Slurm: how many tasks the array has.
pub const SLURM_TASK_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";
/// Kubernetes indexed jobs: this pod's 0-based index.
pub const K8S_INDEX: &str = "JOB_COMPLETION_INDEX";

fn invalid(message: String) -> PipelineError {
    PipelineError::Invalid(format!("--shard: {message}"))
}

impl Shard {
    /// Shard `index` of `count`, checked.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index == 0 || index > count {
            return Err(invalid(format!(
                "shard {index} of {count} does not exist (K/N needs 1 <= K <= N)"
            )));
        }
        Ok(Self { index, count })
    }

    /// Parses `K/N`, `auto` (a Slurm array task: its position in the array and the array's
    /// size) or `auto/N` (the index from Slurm or from a Kubernetes indexed job's
    /// `JOB_COMPLETION_INDEX`, N given), reading the environment through `env`.
    pub fn parse_with(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let text = text.trim();
        let (first, count) = match text.split_once('/') {
            Some((first, count)) => {
                let count = count
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| invalid(format!("`{text}`: N in K/N must be a whole number")))?;
                (first.trim(), Some(count))
            }
            None => (text, None),
        };
        if first != "auto" {
            let Some(count) = count else {
                return Err(invalid(format!(
                    "`{text}`: expected K/N (e.g. 2/8), auto or auto/N"
                )));
            };
            let index = first
                .parse::<usize>()
                .map_err(|_| invalid(format!("`{text}`: K in K/N must be a whole number")))?;
            return Self::new(index, count);
        }
        let number = |name: &str| -> Result<Option<usize>> {
            match env(name) {
                None => Ok(None),
                Some(value) => value
                    .trim()
                    .parse::<usize>()
                    .map(Some)
                    .map_err(|_| invalid(format!("{name}=`{value}` is not a whole number"))),
            }
        };
        if let Some(id) = number(SLURM_TASK_ID)? {
            let min = number(SLURM_TASK_MIN)?.unwrap_or(0);
            let step = number(SLURM_TASK_STEP)?.unwrap_or(1).max(1);
            if id < min || (id - min) % step != 0 {
                return Err(invalid(format!(
                    "{SLURM_TASK_ID}={id} is not in the array ({SLURM_TASK_MIN}={min}, step {step})"
                )));
            }
            let index = (id - min) / step + 1;
            let count = match (count, number(SLURM_TASK_COUNT)?) {
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => {
                    return Err(invalid(format!(
                        "auto: {SLURM_TASK_COUNT} is not set; give the count as auto/N"
                    )));
                }
            };
            return Self::new(index, count);
        }
        if let Some(index) = number(K8S_INDEX)? {
            let Some(count) = count else {
                return Err(invalid(format!(
                    "auto: {K8S_INDEX} gives the index but not the count; use auto/N with N \
                     the job's completions"
                )));
            };
            return Self::new(index + 1, count);
        }
        Err(invalid(format!(
            "auto: neither {SLURM_TASK_ID} (a Slurm array task) nor {K8S_INDEX} (a Kubernetes \
             indexed job) is set; outside those give the shard as K/N"
        )))
    }

    /// [`Self::parse_with`] on this process's environment.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_with(text, |name| std::env::var(name).ok())
    }

    /// Whether the item at `position` (0-based, in dataset order) is this shard's.
    pub fn takes(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }

    /// This shard's items, in their order.
    pub fn select<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items
            .iter()
            .enumerate()
            .filter(|(i, _)| self.takes(*i))
            .map(|(_, item)| item.clone())
            .collect()
    }

    /// The shard's folder under a run's `--out`.
    pub fn folder(&self, out: &Path) -> PathBuf {
        out.join(self.folder_name())
    }

    /// `shard-K-of-N`.
    pub fn folder_name(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }

    /// Reads `shard-K-of-N`.
    pub fn from_folder_name(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("shard-")?;
        let (index, count) = rest.split_once("-of-")?;
        Self::new(index.parse().ok()?, count.parse().ok()?).ok()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Puts shards' items back in dataset order: `parts[k]` holds shard k+1's items in order, as
/// [`Shard::select`] dealt them. `None` when the sizes do not fit that dealing.
pub fn interleave<T>(parts: Vec<Vec<T>>) -> Option<Vec<T>> {
    let count = parts.len();
    let total: usize = parts.iter().map(Vec::len).sum();
    for (k, part) in parts.iter().enumerate() {
        // Shard k+1 gets the positions k, k + count, ... below total.
        if part.len() != (total + count - 1 - k) / count {
            return None;
        }
    }
    let mut iters: Vec<_> = parts.into_iter().map(Vec::into_iter).collect();
    let mut merged = Vec::with_capacity(total);
    for position in 0..total {
        merged.push(iters[position % count].next()?);
    }
    Some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn shards_are_parsed_from_the_flag_or_the_scheduler() {
        let none = env(&[]);
        assert_eq!(
            Shard::parse_with("2/4", &none).unwrap(),
            Shard { index: 2, count: 4 }
        );
        for (bad, needle) in [
            ("0/4", "shard 0 of 4 does not exist"),
            ("5/4", "shard 5 of 4 does not exist"),
            ("3", "expected K/N"),
            ("a/4", "K in K/N"),
            ("1/x", "N in K/N"),
            ("auto", "neither SLURM_ARRAY_TASK_ID"),
        ] {
            let err = Shard::parse_with(bad, &none).unwrap_err().to_string();
            assert!(
                err.contains(needle) && err.contains("--shard"),
                "{bad}: {err}"
            );
        }
        // Slurm arrays may start anywhere and step: --array=0-3 and --array=10-16:2.
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            Shard::parse_with("auto", slurm).unwrap(),
            Shard { index: 1, count: 4 }
        );
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "14"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            Shard::parse_with("auto", stepped).unwrap(),
            Shard { index: 3, count: 4 }
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2")]);
        assert_eq!(
            Shard::parse_with("auto/3", &k8s).unwrap(),
            Shard { index: 3, count: 3 }
        );
        let err = Shard::parse_with("auto", &k8s).unwrap_err().to_string();
        assert!(err.contains("auto/N"), "{err}");
        let wrong = env(&[("SLURM_ARRAY_TASK_ID", "x")]);
        let err = Shard::parse_with("auto", wrong).unwrap_err().to_string();
        assert!(err.contains("SLURM_ARRAY_TASK_ID=`x`"), "{err}");
    }

    #[test]
    fn dealt_items_interleave_back_into_dataset_order() {
        let items: Vec<u32> = (0..11).collect();
        for count in 1..=5 {
            let parts: Vec<Vec<u32>> = (1..=count)
                .map(|k| Shard::new(k, count).unwrap().select(&items))
                .collect();
            assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 11);
            assert_eq!(interleave(parts).unwrap(), items, "{count} shards");
        }
        // A shard short of an item does not fit the dealing.
        assert_eq!(interleave(vec![vec![0, 2], vec![]]), None);
        let shard = Shard::new(2, 3).unwrap();
        assert_eq!(Shard::from_folder_name(&shard.folder_name()), Some(shard));
        assert_eq!(Shard::from_folder_name("shard-4-of-3"), None);
    }
}
