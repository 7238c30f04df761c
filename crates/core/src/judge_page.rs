//! What the Judge page (`/judge`) and `GET /api/judge` show: which judge this server scores
//! with, how the built-in judge was measured (its held-out accuracy and confusion matrices), which
//! judges scored the stored evaluations, and the verdicts readers flagged as wrong, with the
//! responses: the judge's known mistakes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::eval::InstanceResult;
use crate::flag::VerdictFlag;
use crate::judge::{JudgeInfo, JudgeReport, Verdict};
use crate::run::EvalRecord;

/// The judge that scores this server's new evaluations and tries (it is loaded at first use,
/// so its weights' checksum is known only from the runs it scored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeInUse {
    /// `minilm-logreg` (built in) or `safeedit-roberta` (the paper's classifier from a folder).
    pub id: String,
    /// One line saying what it is.
    pub description: String,
}

/// One judge (by id and version) and the stored evaluations it scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeUsage {
    /// The judge as the evaluations recorded it.
    pub judge: JudgeInfo,
    /// How many stored evaluations it scored.
    pub evaluations: usize,
    /// Their instances, summed (each has five judged inputs).
    pub instances: usize,
    /// The newest of them.
    pub latest: String,
    /// Readers' flags on its verdicts that still apply.
    pub flags: usize,
}

/// A reader's flag with the response it is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlaggedVerdict {
    /// The evaluation.
    pub slug: String,
    /// Its method (`vanilla`, `dinm`, …).
    pub method: String,
    /// Its model's name.
    pub model: String,
    /// The id of the judge that scored it.
    pub judge: String,
    /// The flag.
    pub flag: VerdictFlag,
    /// The text the model was given.
    pub input: String,
    /// The response the flag is about.
    pub response: String,
    /// Whether the stored response still carries the verdict the flag was set against (a
    /// re-scored evaluation can leave a flag behind; such flags change no table).
    pub applies: bool,
}

/// The Judge page's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgePage {
    /// The judge new runs are scored with.
    pub in_use: JudgeInUse,
    /// The built-in judge's stored report.
    pub built_in: JudgeReport,
    /// Every judge that scored a stored evaluation, the newest evaluation's first.
    pub usage: Vec<JudgeUsage>,
    /// Readers' flags, newest first.
    pub flags: Vec<FlaggedVerdict>,
}

impl JudgePage {
    /// Assembles the page from the stored evaluations (`evals`, newest first), every flag with
    /// its evaluation's slug, and the instances of the flagged evaluations by slug. Flags of an
    /// evaluation no longer stored are left out.
    pub fn build(
        in_use: JudgeInUse,
        built_in: JudgeReport,
        evals: &[EvalRecord],
        flags: Vec<(String, VerdictFlag)>,
        instances: &HashMap<String, Vec<InstanceResult>>,
    ) -> Self {
        let by_slug: HashMap<&str, &EvalRecord> =
            evals.iter().map(|e| (e.slug.as_str(), e)).collect();
        let mut flagged: Vec<FlaggedVerdict> = flags
            .into_iter()
            .filter_map(|(slug, flag)| {
                let eval = by_slug.get(slug.as_str())?;
                let input = instances
                    .get(&slug)
                    .and_then(|rs| rs.iter().find(|r| r.id == flag.instance))
                    .and_then(|r| r.inputs.iter().find(|i| i.kind == flag.kind));
                Some(FlaggedVerdict {
                    method: eval.method.clone(),
                    model: eval.model.clone(),
                    judge: judge_of(eval).id,
                    input: input.map(|i| i.input.clone()).unwrap_or_default(),
                    response: input.map(|i| i.response.clone()).unwrap_or_default(),
                    applies: input.is_some_and(|i| i.verdict == flag.judge),
                    slug,
                    flag,
                })
            })
            .collect();
        flagged.sort_by(|a, b| {
            (&b.flag.flagged_at, &a.slug, a.flag.instance, &a.flag.kind).cmp(&(
                &a.flag.flagged_at,
                &b.slug,
                b.flag.instance,
                &b.flag.kind,
            ))
        });
        let mut usage: Vec<JudgeUsage> = Vec::new();
        for eval in evals {
            let judge = judge_of(eval);
            let flags = flagged
                .iter()
                .filter(|f| f.applies && f.slug == eval.slug)
                .count();
            match usage
                .iter_mut()
                .find(|u| u.judge.id == judge.id && u.judge.version == judge.version)
            {
                Some(u) => {
                    u.evaluations += 1;
                    u.instances += eval.instances;
                    u.flags += flags;
                }
                None => usage.push(JudgeUsage {
                    judge,
                    evaluations: 1,
                    instances: eval.instances,
                    latest: eval.slug.clone(),
                    flags,
                }),
            }
        }
        JudgePage {
            in_use,
            built_in,
            usage,
            flags: flagged,
        }
    }

    /// Applying flags where the judge said unsafe and the reader safe (false alarms), and where
    /// the judge said safe and the reader unsafe (misses).
    pub fn mistakes(&self) -> (usize, usize) {
        let count = |judge: Verdict| {
            self.flags
                .iter()
                .filter(|f| f.applies && f.flag.judge == judge)
                .count()
        };
        (count(Verdict::Unsafe), count(Verdict::Safe))
    }
}

/// The judge an evaluation recorded in its settings (`unknown` for records without one).
pub fn judge_of(eval: &EvalRecord) -> JudgeInfo {
    eval.run
        .get("judge")
        .and_then(|j| serde_json::from_value(j.clone()).ok())
        .unwrap_or_else(|| JudgeInfo {
            id: "unknown".into(),
            version: String::new(),
            description: "the evaluation did not record its judge".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::InputResult;
    use crate::judge::Confusion;

    fn report() -> JudgeReport {
        JudgeReport {
            version: "minilm-logreg/1".into(),
            encoder_checksum: "abc".into(),
            c: 100.0,
            cross_validation: vec![(1.0, 0.9)],
            data: "d".into(),
            train_counts: [2, 2],
            held_out_counts: [1, 1],
            held_out: Confusion::default(),
            held_out_safeedit: Confusion::default(),
            train: Confusion::default(),
        }
    }

    fn eval(slug: &str, judge: Option<(&str, &str)>, instances: usize) -> EvalRecord {
        let run = match judge {
            Some((id, version)) => serde_json::json!({
                "judge": {"id": id, "version": version, "description": "d"}
            }),
            None => serde_json::json!({}),
        };
        EvalRecord {
            slug: slug.into(),
            created_at: "2026-11-01T00:00:00Z".into(),
            updated_at: "2026-11-01T00:00:00Z".into(),
            method: "vanilla".into(),
            data: "test-sample".into(),
            model: "SmolLM2".into(),
            instances,
            run,
            metrics: vec![],
        }
    }

    fn instance(id: u64, verdict: Verdict) -> InstanceResult {
        InstanceResult {
            id,
            category: "offensiveness".into(),
            attack: "Aligned".into(),
            method: "vanilla".into(),
            inputs: vec![InputResult {
                kind: "DS".into(),
                input: format!("question {id}"),
                response: format!("answer {id}"),
                verdict,
                stop: "eos".into(),
                generated_tokens: 2,
            }],
            fluency: 5.0,
            edit: None,
            seconds: 1.0,
            timings: None,
        }
    }

    fn flag(instance: u64, judge: Verdict, at: &str) -> VerdictFlag {
        VerdictFlag {
            instance,
            kind: "DS".into(),
            human: if judge == Verdict::Safe {
                Verdict::Unsafe
            } else {
                Verdict::Safe
            },
            judge,
            note: String::new(),
            flagged_at: at.into(),
        }
    }

    #[test]
    fn the_page_groups_evaluations_by_judge_and_shows_flags_newest_first() {
        let evals = vec![
            eval("new", Some(("minilm-logreg", "v2")), 3),
            eval("mid", Some(("minilm-logreg", "v1")), 2),
            eval("old", Some(("minilm-logreg", "v2")), 4),
            eval("legacy", None, 1),
        ];
        let mut instances = HashMap::new();
        instances.insert(
            "new".to_string(),
            vec![instance(1, Verdict::Unsafe), instance(2, Verdict::Safe)],
        );
        // `old` was re-scored after the flag: its response now carries the other verdict.
        instances.insert("old".to_string(), vec![instance(7, Verdict::Safe)]);
        let flags = vec![
            (
                "new".to_string(),
                flag(1, Verdict::Unsafe, "2026-11-02T00:00:00Z"),
            ),
            (
                "new".to_string(),
                flag(2, Verdict::Safe, "2026-11-03T00:00:00Z"),
            ),
            (
                "old".to_string(),
                flag(7, Verdict::Unsafe, "2026-11-01T00:00:00Z"),
            ),
            (
                "gone".to_string(),
                flag(1, Verdict::Safe, "2026-11-04T00:00:00Z"),
            ),
        ];
        let in_use = JudgeInUse {
            id: "minilm-logreg".into(),
            description: "built in".into(),
        };
        let page = JudgePage::build(in_use, report(), &evals, flags, &instances);

        // Flags of a deleted evaluation are left out; the rest newest first, with the response.
        let order: Vec<(&str, u64)> = page
            .flags
            .iter()
            .map(|f| (f.slug.as_str(), f.flag.instance))
            .collect();
        assert_eq!(order, [("new", 2), ("new", 1), ("old", 7)]);
        assert_eq!(page.flags[0].response, "answer 2");
        assert_eq!(page.flags[0].judge, "minilm-logreg");
        assert!(page.flags[0].applies && page.flags[1].applies);
        assert!(!page.flags[2].applies, "a flag against an older verdict");
        // One false alarm (judge unsafe, reader safe) and one miss; the stale flag counts as
        // neither.
        assert_eq!(page.mistakes(), (1, 1));

        // Grouped by (id, version), in order of each group's newest evaluation.
        let usage: Vec<(&str, &str, usize, usize, &str, usize)> = page
            .usage
            .iter()
            .map(|u| {
                (
                    u.judge.id.as_str(),
                    u.judge.version.as_str(),
                    u.evaluations,
                    u.instances,
                    u.latest.as_str(),
                    u.flags,
                )
            })
            .collect();
        assert_eq!(
            usage,
            [
                ("minilm-logreg", "v2", 2, 7, "new", 2),
                ("minilm-logreg", "v1", 1, 2, "mid", 0),
                ("unknown", "", 1, 1, "legacy", 0),
            ]
        );
    }

    #[test]
    fn recall_needs_examples_of_the_class() {
        let c = Confusion {
            true_positive: 12,
            false_positive: 2,
            true_negative: 39,
            false_negative: 5,
        };
        assert!((c.unsafe_recall().unwrap() - 12.0 / 17.0).abs() < 1e-12);
        assert!((c.safe_recall().unwrap() - 39.0 / 41.0).abs() < 1e-12);
        assert!((c.accuracy() - 51.0 / 58.0).abs() < 1e-12);
        let none = Confusion::from_pairs([(false, false)]);
        assert_eq!(none.unsafe_recall(), None);
        assert_eq!(none.safe_recall(), Some(1.0));
    }
}
