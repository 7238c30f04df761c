//! Sharded evaluation (docs/slurm/README.md): `eval --shard K/N` evaluates every N-th instance
//! starting at the K-th, in its own folder `OUT/shard-K-of-N`, and `eval-merge` joins the N
//! folders into the run one process would have written. Dealing instances out in turn (not in
//! blocks) gives every shard its share of every category and of the long inputs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::eval::EvalSummary;
use crate::progress::Progress;
use crate::publish::Database;
use crate::run_dir;
use crate::test_all::TestAllSummary;
use crate::{PipelineError, Result, bail};

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

/// What a shard's `run.json` says about it (key `shard`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Which shard, 1..=count.
    pub index: usize,
    /// How many shards.
    pub count: usize,
    /// Items in the whole run: instances, or for test_ALL editing instances.
    pub instances: usize,
    /// This shard's items (instance ids), in dataset order.
    pub ids: Vec<u64>,
}

/// Joining shards: their folders (or folders holding `shard-K-of-N` folders) and where the
/// joined run goes.
#[derive(Debug, Clone)]
pub struct MergePlan {
    /// Shard folders, or folders that hold them.
    pub shards: Vec<PathBuf>,
    /// The joined run's folder.
    pub out: PathBuf,
    /// Where the joined run is stored (`None`: files only).
    pub database: Option<Database>,
}

/// A shard folder and what its `run.json` says.
pub(crate) struct ShardFolder {
    pub(crate) dir: PathBuf,
    pub(crate) info: serde_json::Value,
    pub(crate) shard: ShardInfo,
}

impl ShardFolder {
    /// The joined run's description: the shard's, without `shard`.
    pub(crate) fn merged_info(&self) -> serde_json::Value {
        let mut info = self.info.clone();
        if let Some(object) = info.as_object_mut() {
            object.remove("shard");
        }
        info
    }
}

/// What `eval-merge` joined.
#[derive(Debug, Clone)]
pub enum Merged {
    /// A per-instance evaluation.
    Eval(EvalSummary),
    /// A test_ALL run.
    TestAll(TestAllSummary),
}

/// Joins the shards of one run (`eval --shard`, or `eval --test-all --shard`) into the run one
/// process would have written, after checking that they are every shard of one run: the same
/// settings on the same model (checksum; the model's path may differ between machines), each
/// shard once.
pub fn merge(plan: &MergePlan, progress: &mut dyn Progress) -> Result<Merged> {
    let shards = checked(&plan.shards)?;
    if shards[0].info["protocol"] == "test_all" {
        crate::test_all::merge_shards(&shards, plan, progress).map(Merged::TestAll)
    } else {
        crate::eval::merge_shards(&shards, plan, progress).map(Merged::Eval)
    }
}

/// Shard folders named directly, or found one level below the folders named.
fn shard_folders(paths: &[PathBuf]) -> Result<Vec<ShardFolder>> {
    let mut dirs = Vec::new();
    for path in paths {
        if path.join("run.json").is_file() {
            dirs.push(path.clone());
            continue;
        }
        let entries = std::fs::read_dir(path).map_err(|e| PipelineError::io(path, e))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(Shard::from_folder_name)
                    .is_some()
                    && p.join("run.json").is_file()
            })
            .collect();
        if found.is_empty() {
            bail!(
                "{}: neither a shard folder (no run.json) nor a folder holding shard-K-of-N folders",
                path.display()
            );
        }
        found.sort();
        dirs.extend(found);
    }
    dirs.into_iter()
        .map(|dir| {
            let path = dir.join("run.json");
            let info: serde_json::Value = run_dir::read_json(&path)?;
            let shard: ShardInfo = match info.get("shard") {
                Some(value) if !value.is_null() => serde_json::from_value(value.clone())
                    .map_err(|e| PipelineError::file(&path, format!("`shard`: {e}")))?,
                _ => {
                    return Err(PipelineError::file(
                        &path,
                        "not a shard's run (no `shard`: it was not run with --shard)",
                    ));
                }
            };
            Ok(ShardFolder { dir, info, shard })
        })
        .collect()
}

/// The keys shards on different machines may differ in: the shard itself and where the model
/// file lies (its checksum must agree).
const PER_SHARD_KEYS: [&str; 2] = ["shard", "model"];

/// The shards `paths` name, in shard order, checked to be every shard of one run.
fn checked(paths: &[PathBuf]) -> Result<Vec<ShardFolder>> {
    let folders = shard_folders(paths)?;
    let Some(first) = folders.first() else {
        bail!("eval-merge: name the shard folders (or the --out the shards were given)");
    };
    let count = first.shard.count;
    let mut by_index: Vec<Option<usize>> = vec![None; count];
    for (i, folder) in folders.iter().enumerate() {
        let (a, b) = (&first.info, &folder.info);
        let keys: BTreeSet<&String> = a
            .as_object()
            .into_iter()
            .chain(b.as_object())
            .flat_map(|o| o.keys())
            .collect();
        for key in keys {
            if PER_SHARD_KEYS.contains(&key.as_str()) || a.get(key) == b.get(key) {
                continue;
            }
            bail!(
                "{} and {} are not shards of one run: `{key}` differs ({} vs {})",
                first.dir.display(),
                folder.dir.display(),
                a.get(key).unwrap_or(&serde_json::Value::Null),
                b.get(key).unwrap_or(&serde_json::Value::Null)
            );
        }
        let s = &folder.shard;
        if s.count != count || s.instances != first.shard.instances {
            bail!(
                "{} is shard {}/{} of {} items, {} shard {}/{} of {}: not one run",
                folder.dir.display(),
                s.index,
                s.count,
                s.instances,
                first.dir.display(),
                first.shard.index,
                count,
                first.shard.instances
            );
        }
        let Some(slot) = by_index.get_mut(s.index.wrapping_sub(1)) else {
            bail!(
                "{}: shard {}/{count} does not exist",
                folder.dir.display(),
                s.index
            );
        };
        if let Some(other) = slot {
            bail!(
                "shard {}/{count} is given twice: {} and {}",
                s.index,
                folders[*other].dir.display(),
                folder.dir.display()
            );
        }
        *slot = Some(i);
    }
    let missing: Vec<String> = (1..=count)
        .filter(|k| by_index[k - 1].is_none())
        .map(|k| format!("{k}/{count}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "shard(s) {} missing: no folder given holds them (run them, then merge)",
            missing.join(", ")
        );
    }
    let mut folders: Vec<Option<ShardFolder>> = folders.into_iter().map(Some).collect();
    Ok(by_index
        .into_iter()
        .map(|i| {
            folders[i.expect("checked above")]
                .take()
                .expect("each once")
        })
        .collect())
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
