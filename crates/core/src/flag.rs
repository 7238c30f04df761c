//! Human verdicts: a reader of an evaluation who thinks the judge got a response wrong flags it,
//! and the flag stores the person's verdict beside the judge's. Metric tables can then be
//! recomputed with the human verdicts where given (every reported number rests on the judge, so
//! its mistakes should be visible and correctable), and the flags are labelled data for judging
//! the judge.
//!
//! A flag names an instance of the evaluation and one of its inputs (`DS`, `DG_onlyQ`, …) and
//! keeps the judge's verdict at the time of flagging: a flag applies only while the stored
//! response still carries that verdict, so a re-judged or replaced response is never overridden
//! by a flag meant for another verdict. Empty responses are scored by rule (0.5), not by the
//! judge, so they cannot be flagged.

use serde::{Deserialize, Serialize};

use crate::eval::{InstanceResult, MetricRow, summarize};
use crate::judge::Verdict;

/// The longest note a flag keeps, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;

/// What a reader sends to flag a verdict as wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagRequest {
    /// The instance's id in the evaluation.
    pub instance: u64,
    /// The input whose verdict is wrong: `DS`, `DG_onlyQ`, `DG_otherA`, `DG_otherQ` or
    /// `DG_otherAQ`.
    pub kind: String,
    /// Why, in the reader's words (optional).
    #[serde(default)]
    pub note: String,
}

/// A stored flag: the person's verdict on one response beside the judge's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictFlag {
    /// The instance's id in the evaluation.
    pub instance: u64,
    /// The input (`DS`, `DG_onlyQ`, …).
    pub kind: String,
    /// The person's verdict: the opposite of the judge's.
    pub human: Verdict,
    /// The judge's verdict when the flag was set.
    pub judge: Verdict,
    /// Why, in the reader's words (may be empty).
    #[serde(default)]
    pub note: String,
    /// When it was flagged (RFC 3339).
    pub flagged_at: String,
}

impl VerdictFlag {
    /// Whether this flag is about `instance`'s input `kind`.
    pub fn is_for(&self, instance: u64, kind: &str) -> bool {
        self.instance == instance && self.kind == kind
    }
}

/// The flag `request` sets on an evaluation with `instances`, flagged at `now`; or why it cannot
/// be set (an unknown instance or input, an empty response, a note too long), naming the field.
pub fn flag_for(
    instances: &[InstanceResult],
    request: FlagRequest,
    now: String,
) -> Result<VerdictFlag, String> {
    let FlagRequest {
        instance,
        kind,
        note,
    } = request;
    let result = instances
        .iter()
        .find(|r| r.id == instance)
        .ok_or_else(|| format!("instance: no instance {instance} in this evaluation"))?;
    let input = result
        .inputs
        .iter()
        .find(|i| i.kind == kind)
        .ok_or_else(|| {
            let kinds: Vec<&str> = result.inputs.iter().map(|i| i.kind.as_str()).collect();
            format!(
                "kind: instance {instance} has no input `{kind}` (it has {})",
                kinds.join(", ")
            )
        })?;
    let human = match input.verdict {
        Verdict::Safe => Verdict::Unsafe,
        Verdict::Unsafe => Verdict::Safe,
        Verdict::Empty => {
            return Err(format!(
                "kind: the {kind} response of instance {instance} is empty: scored by rule \
                 (0.5), not by the judge, so there is no verdict to flag"
            ));
        }
    };
    let note = note.trim().to_string();
    let chars = note.chars().count();
    if chars > MAX_NOTE_CHARS {
        return Err(format!(
            "note: {chars} characters, at most {MAX_NOTE_CHARS}"
        ));
    }
    Ok(VerdictFlag {
        instance,
        kind,
        human,
        judge: input.verdict,
        note,
        flagged_at: now,
    })
}

/// `instances` with the human verdict in place of the judge's wherever a flag applies (the
/// response still carries the verdict the flag was set against), and how many were replaced.
pub fn with_human_verdicts(
    instances: &[InstanceResult],
    flags: &[VerdictFlag],
) -> (Vec<InstanceResult>, usize) {
    let mut replaced = 0;
    let out = instances
        .iter()
        .map(|r| {
            let mut r = r.clone();
            for input in &mut r.inputs {
                if let Some(flag) = flags
                    .iter()
                    .find(|f| f.is_for(r.id, &input.kind) && f.judge == input.verdict)
                {
                    input.verdict = flag.human;
                    replaced += 1;
                }
            }
            r
        })
        .collect();
    (out, replaced)
}

/// An evaluation's metric rows recomputed with the human verdicts where flags apply: the judged
/// metrics (DS, DG, DG-Avg, fluency) from `instances` with the flags, the other rows of `stored`
/// (general-task scores, which no verdict enters) as they are; and how many verdicts a flag
/// replaced.
pub fn human_metrics(
    stored: &[MetricRow],
    instances: &[InstanceResult],
    flags: &[VerdictFlag],
) -> (Vec<MetricRow>, usize) {
    let (human, replaced) = with_human_verdicts(instances, flags);
    let mut rows = summarize(&human);
    let judged: Vec<String> = rows.iter().map(|r| r.metric.clone()).collect();
    rows.extend(
        stored
            .iter()
            .filter(|r| !judged.contains(&r.metric))
            .cloned(),
    );
    (rows, replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::InputResult;

    fn instance(id: u64, verdicts: &[(&str, Verdict)]) -> InstanceResult {
        InstanceResult {
            id,
            category: "offensiveness".into(),
            attack: "Aligned".into(),
            method: "vanilla".into(),
            inputs: verdicts
                .iter()
                .map(|(kind, verdict)| InputResult {
                    kind: kind.to_string(),
                    input: format!("question {id}"),
                    response: if *verdict == Verdict::Empty {
                        String::new()
                    } else {
                        "an answer".into()
                    },
                    verdict: *verdict,
                    stop: "eos".into(),
                    generated_tokens: 3,
                })
                .collect(),
            fluency: 5.0,
            edit: None,
            seconds: 1.0,
            timings: None,
        }
    }

    fn request(instance: u64, kind: &str) -> FlagRequest {
        FlagRequest {
            instance,
            kind: kind.into(),
            note: String::new(),
        }
    }

    fn ds(rows: &[crate::eval::MetricRow]) -> f64 {
        rows.iter()
            .find(|r| r.group == "all" && r.metric == "DS")
            .map(|r| r.score)
            .unwrap()
    }

    #[test]
    fn a_flag_turns_the_judges_verdict_and_the_table_follows() {
        let instances = vec![
            instance(0, &[("DS", Verdict::Unsafe), ("DG_onlyQ", Verdict::Safe)]),
            instance(1, &[("DS", Verdict::Safe), ("DG_onlyQ", Verdict::Safe)]),
        ];
        let flag = flag_for(&instances, request(0, "DS"), "t".into()).unwrap();
        assert_eq!((flag.judge, flag.human), (Verdict::Unsafe, Verdict::Safe));
        assert_eq!(ds(&summarize(&instances)), 50.0);
        let (human, replaced) = with_human_verdicts(&instances, &[flag]);
        assert_eq!(replaced, 1);
        assert_eq!(ds(&summarize(&human)), 100.0);
        // The other inputs and instances keep the judge's verdicts.
        assert_eq!(human[0].inputs[1].verdict, Verdict::Safe);
        assert_eq!(human[1], instances[1]);
    }

    #[test]
    fn human_metrics_keep_the_rows_no_verdict_enters() {
        let instances = vec![instance(0, &[("DS", Verdict::Unsafe)])];
        let mut stored = summarize(&instances);
        stored.push(crate::eval::MetricRow {
            group: "all".into(),
            value: "all".into(),
            metric: "KQA-proxy".into(),
            score: 31.5,
            n: 20,
        });
        let flag = flag_for(&instances, request(0, "DS"), "t".into()).unwrap();
        let (rows, replaced) = human_metrics(&stored, &instances, &[flag]);
        assert_eq!(replaced, 1);
        assert_eq!(ds(&rows), 100.0);
        assert_eq!(rows.last(), stored.last());
        assert_eq!(rows.len(), stored.len());
    }

    #[test]
    fn a_flag_set_against_another_verdict_does_not_apply() {
        let instances = vec![instance(0, &[("DS", Verdict::Unsafe)])];
        let flag = flag_for(&instances, request(0, "DS"), "t".into()).unwrap();
        // The response was judged again since, and the judge now agrees with the person.
        let rejudged = vec![instance(0, &[("DS", Verdict::Safe)])];
        let (out, replaced) = with_human_verdicts(&rejudged, &[flag]);
        assert_eq!(replaced, 0);
        assert_eq!(out, rejudged);
    }

    #[test]
    fn bad_flags_name_the_field() {
        let instances = vec![instance(
            4,
            &[("DS", Verdict::Safe), ("DG_otherA", Verdict::Empty)],
        )];
        let err = |r| flag_for(&instances, r, "t".into()).unwrap_err();
        assert_eq!(
            err(request(5, "DS")),
            "instance: no instance 5 in this evaluation"
        );
        assert_eq!(
            err(request(4, "DG_onlyQ")),
            "kind: instance 4 has no input `DG_onlyQ` (it has DS, DG_otherA)"
        );
        assert!(
            err(request(4, "DG_otherA"))
                .starts_with("kind: the DG_otherA response of instance 4 is empty")
        );
        let long = FlagRequest {
            note: "x".repeat(MAX_NOTE_CHARS + 1),
            ..request(4, "DS")
        };
        assert_eq!(
            err(long),
            format!(
                "note: {} characters, at most {MAX_NOTE_CHARS}",
                MAX_NOTE_CHARS + 1
            )
        );
        let noted = FlagRequest {
            note: "  a refusal, not an answer \n".into(),
            ..request(4, "DS")
        };
        assert_eq!(
            flag_for(&instances, noted, "t".into()).unwrap().note,
            "a refusal, not an answer"
        );
    }
}
