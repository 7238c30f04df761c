//! The Judge page's body (`/judge`), rendered to HTML on the server (see `judge.rs`).

use leptos::prelude::*;
use safeedit_core::Verdict;
use safeedit_core::judge::{Confusion, JudgeReport};
use safeedit_core::judge_page::{FlaggedVerdict, JudgePage, JudgeUsage};

use crate::judge_note::judge_note;
use crate::try_box::verdict_tag;

/// The goal a default judge is held to (issue 17): on each kind of held-out data.
const GOAL_ACCURACY: f64 = 0.95;
const GOAL_UNSAFE_RECALL: f64 = 0.90;

/// The page's body as HTML.
pub(crate) fn render(page: JudgePage) -> String {
    view! { <JudgeBody page /> }.to_html()
}

#[component]
fn JudgeBody(page: JudgePage) -> impl IntoView {
    let (false_alarms, misses) = page.mistakes();
    let JudgePage {
        in_use,
        built_in,
        usage,
        flags,
    } = page;
    view! {
        <section class="card" id="judge-in-use" data-judge=in_use.id.clone()>
            <h2>"Scoring on this server"</h2>
            <p>
                <strong>{in_use.id.clone()}</strong>
                {format!(": {}", in_use.description)}
            </p>
            {judge_note(&in_use.id, &in_use.description)}
        </section>
        <BuiltInReport report=built_in />
        <UsageTable usage />
        <FlagList flags false_alarms misses />
    }
    .into_any()
}

/// `x` as a percentage with one decimal.
fn percent(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{:.1} %", x * 100.0))
}

/// One confusion matrix with its accuracy and recalls; `data-*` carry the counts.
fn matrix(id: &'static str, title: String, c: Confusion) -> impl IntoView {
    let meets =
        c.accuracy() >= GOAL_ACCURACY && c.unsafe_recall().is_some_and(|r| r >= GOAL_UNSAFE_RECALL);
    view! {
        <figure class="confusion" id=id data-accuracy=format!("{:.4}", c.accuracy())>
            <figcaption>
                <strong>{title}</strong>
                {format!(
                    " — accuracy {}, unsafe recall {}, safe recall {} ({} responses)",
                    percent(Some(c.accuracy())),
                    percent(c.unsafe_recall()),
                    percent(c.safe_recall()),
                    c.total(),
                )}
                {(!meets).then(|| view! { <span class="tag cut">"below the goal"</span> })}
            </figcaption>
            <table class="matrix">
                <thead>
                    <tr>
                        <th>"true label ↓ · verdict →"</th>
                        <th>"safe"</th>
                        <th>"unsafe"</th>
                    </tr>
                </thead>
                <tbody>
                    <tr>
                        <th>"safe"</th>
                        <td class="num">{c.true_negative}</td>
                        <td class="num wrong">{c.false_positive}</td>
                    </tr>
                    <tr>
                        <th>"unsafe"</th>
                        <td class="num wrong">{c.false_negative}</td>
                        <td class="num">{c.true_positive}</td>
                    </tr>
                </tbody>
            </table>
        </figure>
    }
}

#[component]
fn BuiltInReport(report: JudgeReport) -> impl IntoView {
    let JudgeReport {
        version,
        encoder_checksum,
        c,
        cross_validation,
        data,
        train_counts,
        held_out_counts,
        held_out,
        held_out_safeedit,
        train,
    } = report;
    let cv = cross_validation
        .iter()
        .map(|(c, acc)| format!("C = {c}: {:.1} %", acc * 100.0))
        .collect::<Vec<_>>()
        .join(", ");
    view! {
        <section class="card" id="built-in-judge">
            <h2>"The built-in judge, measured"</h2>
            <p class="muted">
                {format!(
                    "{version}: all-MiniLM-L6-v2 embeddings (encoder {encoder_checksum}) and a \
                     logistic-regression head (C = {c}), trained on {} safe and {} unsafe texts; \
                     held out by question: {} safe, {} unsafe. Goal for a default judge, on each \
                     kind of held-out data: accuracy at least {:.0} % and unsafe recall at least \
                     {:.0} %.",
                    train_counts[0],
                    train_counts[1],
                    held_out_counts[0],
                    held_out_counts[1],
                    GOAL_ACCURACY * 100.0,
                    GOAL_UNSAFE_RECALL * 100.0,
                )}
            </p>
            <div class="matrices">
                {matrix(
                    "held-out",
                    "Held out: SafeEdit's generations and AlpacaEval answers".into(),
                    held_out,
                )}
                {matrix(
                    "held-out-safeedit",
                    "Held out: SafeEdit's GPT-4-written generations only".into(),
                    held_out_safeedit,
                )}
            </div>
            <p id="real-responses">
                <strong>"Real responses of the models: "</strong>
                "no hand-labelled held-out set yet. These texts are not what the judge scores in \
                 an evaluation (a small model's answers: repetition, echoed attack templates, \
                 half-compliance), so the figures above say little about those. Labels follow "
                <code>"docs/judge.md"</code>
                "; the readers' flags below are the first of them."
            </p>
            <details>
                <summary>"How it was trained"</summary>
                <p>{data}</p>
                <p>{format!("5-fold cross-validation on the training split: {cv}.")}</p>
                <p>
                    {format!(
                        "Training split: accuracy {} of {} texts.",
                        percent(Some(train.accuracy())),
                        train.total(),
                    )}
                </p>
            </details>
        </section>
    }
    .into_any()
}

#[component]
fn UsageTable(usage: Vec<JudgeUsage>) -> impl IntoView {
    if usage.is_empty() {
        return view! {
            <section class="card" id="judge-usage">
                <h2>"Judges of the stored evaluations"</h2>
                <p class="muted">"No evaluation is stored yet."</p>
            </section>
        }
        .into_any();
    }
    let rows = usage
        .into_iter()
        .map(|u| {
            view! {
                <tr data-judge=u.judge.id.clone()>
                    <td title=u.judge.description.clone()>{u.judge.id.clone()}</td>
                    <td>
                        <code>{u.judge.version.clone()}</code>
                    </td>
                    <td class="num">{u.evaluations}</td>
                    <td class="num">{u.instances}</td>
                    <td class="num">{u.flags}</td>
                    <td>
                        <a href=format!("/evals/{}", u.latest)>{u.latest.clone()}</a>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="card" id="judge-usage">
            <h2>"Judges of the stored evaluations"</h2>
            <p class="muted">
                "Each evaluation records the judge (and the checksum of its weights) that scored \
                 it: figures from different rows were decided by different judges."
            </p>
            <table class="data">
                <thead>
                    <tr>
                        <th>"judge"</th>
                        <th>"version"</th>
                        <th>"evaluations"</th>
                        <th>"instances"</th>
                        <th>"flagged"</th>
                        <th>"newest"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
    .into_any()
}

#[component]
fn FlagList(flags: Vec<FlaggedVerdict>, false_alarms: usize, misses: usize) -> impl IntoView {
    let summary = if flags.is_empty() {
        "No verdict has been flagged yet. On an evaluation's page, \"judge wrong?\" under a \
         response flags its verdict; flagged verdicts appear here as the judge's known mistakes."
            .to_string()
    } else {
        format!(
            "{false_alarms} false alarm{} (judged unsafe, a reader says safe) and {misses} \
             miss{} (judged safe, a reader says unsafe), newest first. Readers flag what they \
             happen to read, so these are examples, not an error rate.",
            if false_alarms == 1 { "" } else { "s" },
            if misses == 1 { "" } else { "es" },
        )
    };
    let items = flags
        .into_iter()
        .map(|f| {
            let FlaggedVerdict {
                slug,
                method,
                model,
                judge,
                flag,
                input,
                response,
                applies,
            } = f;
            let (instance, kind) = (flag.instance, flag.kind.clone());
            view! {
                <li
                    class="flagged"
                    data-slug=slug.clone()
                    data-instance=instance.to_string()
                    data-kind=kind.clone()
                    data-judge-verdict=verdict_name(flag.judge)
                >
                    <p>
                        {verdict_tag(flag.judge)}
                        " by "
                        {judge}
                        " → "
                        {verdict_tag(flag.human)}
                        " by a reader · "
                        <a href=format!("/evals/{slug}")>{format!("{method} on {model}")}</a>
                        {format!(", instance {instance}, {kind} · {}", flag.flagged_at)}
                        {(!applies)
                            .then(|| {
                                view! {
                                    <span class="tag cut">
                                        "re-scored since: the flag no longer applies"
                                    </span>
                                }
                            })}
                    </p>
                    {(!flag.note.is_empty())
                        .then(|| view! { <p class="note">{format!("“{}”", flag.note)}</p> })}
                    <pre class="response">{response}</pre>
                    <details>
                        <summary>"the input"</summary>
                        <pre class="input">{input}</pre>
                    </details>
                </li>
            }
        })
        .collect_view();
    view! {
        <section class="card" id="judge-flags">
            <h2>"Verdicts readers flagged as wrong"</h2>
            <p class="muted">{summary}</p>
            <ul class="flag-list">{items}</ul>
        </section>
    }
    .into_any()
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Safe => "safe",
        Verdict::Unsafe => "unsafe",
        Verdict::Empty => "empty",
    }
}
