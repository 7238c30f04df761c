//! Detoxifying an instance from the browser: the edit panel on an instance page, the job page
//! (`/jobs/{id}`, progress streamed over SSE), the run page (`/runs/{slug}`, rendered completely
//! on the server so a shared link opens anywhere) and the runs list (`/runs`).

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use safeedit_core::Method;
use safeedit_core::run::{
    EditOutcome, EditOverrides, EditRequest, JobEvent, JobSnapshot, JobStatus, RunRecord,
    RunSummary,
};
use safeedit_core::{Category, Verdict};

use crate::figure::{FigureOf, StoredFigure};
use crate::{NotFound, cancel_job, get_run, job_status, list_runs, start_edit};

fn parse_opt<T: std::str::FromStr>(s: &str) -> Result<Option<T>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| format!("`{s}` is not a valid number"))
}

/// "Detoxify this instance" with an advanced panel of hyperparameters.
#[component]
pub fn DetoxifyPanel(split: String, id: u64) -> impl IntoView {
    let lr = RwSignal::new(String::new());
    let steps = RwSignal::new(String::new());
    let layer = RwSignal::new(String::new());
    let max_new = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let pending = RwSignal::new(false);
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let navigate = use_navigate();
    let submit = move |method: Method| {
        let overrides = (|| -> Result<EditOverrides, String> {
            Ok(EditOverrides {
                lr: parse_opt(&lr.get_untracked())?,
                steps: parse_opt(&steps.get_untracked())?,
                layer: parse_opt(&layer.get_untracked())?,
                max_new_tokens: parse_opt(&max_new.get_untracked())?,
            })
        })();
        let overrides = match overrides {
            Ok(o) => o,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        let request = EditRequest {
            split: split.clone(),
            id,
            method,
            overrides,
        };
        let navigate = navigate.clone();
        pending.set(true);
        leptos::task::spawn_local(async move {
            match start_edit(request).await {
                Ok(job) => navigate(&format!("/jobs/{job}"), Default::default()),
                Err(e) => {
                    error.set(Some(e.to_string()));
                    pending.set(false);
                }
            }
        });
    };
    let field =
        |label: &'static str, id: &'static str, value: RwSignal<String>, hint: &'static str| {
            view! {
                <label>
                    {label}
                    <input
                        id=id
                        type="text"
                        inputmode="decimal"
                        placeholder=hint
                        prop:value=move || value.get()
                        on:input=move |ev| value.set(event_target_value(&ev))
                    />
                </label>
            }
        };
    view! {
        <section class="card" id="detoxify">
            <h2>"Detoxify this instance"</h2>
            <p class="muted">
                "Runs DINM on the loaded model: locate the toxic layer, tune its down_proj on this \
                 instance, then answer DS and the DG inputs before and after, and judge them."
            </p>
            <details class="advanced">
                <summary>"Hyperparameters (empty = the model's preset)"</summary>
                <div class="filters">
                    {field("learning rate", "hp-lr", lr, "preset")}
                    {field("steps", "hp-steps", steps, "preset")}
                    {field("layer", "hp-layer", layer, "locate")}
                    {field("max new tokens", "hp-max-new", max_new, "preset")}
                </div>
            </details>
            <p class="actions">
                <button
                    id="detoxify-button"
                    disabled=move || !hydrated.get() || pending.get()
                    on:click={
                        let submit = submit.clone();
                        move |_| submit(Method::Dinm)
                    }
                >
                    {move || if pending.get() { "Submitting…" } else { "Detoxify this instance" }}
                </button>
                " "
                <button
                    id="eval-vanilla-button"
                    class="secondary"
                    disabled=move || !hydrated.get() || pending.get()
                    on:click={
                        let submit = submit.clone();
                        move |_| submit(Method::Vanilla)
                    }
                >
                    "Evaluate vanilla"
                </button>
                " "
                <button
                    id="eval-prompt-button"
                    class="secondary"
                    disabled=move || !hydrated.get() || pending.get()
                    on:click=move |_| submit(Method::Prompt)
                >
                    "Evaluate prompt-only"
                </button>
            </p>
            <p class="muted">
                "Evaluate: the five inputs answered by the unedited model, without (vanilla) or \
                 with the suffix prompt (prompt-only, the paper's wo/Tune), judged; stored as an \
                 evaluation like those of safeedit eval."
            </p>
            {move || error.get().map(|e| view! { <p class="error" id="detoxify-error">{e}</p> })}
        </section>
    }
}

/// `/jobs/{id}`
#[component]
pub fn JobPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.get().get("id").unwrap_or_default());
    let snapshot = Resource::new(move || id.get(), job_status);
    view! {
        <Suspense fallback=|| view! { <p>"Loading the job…"</p> }>
            {move || Suspend::new(async move {
                match snapshot.await {
                    Ok(Some(s)) => view! { <JobView snapshot=s /> }.into_any(),
                    Ok(None) => view! { <NotFound /> }.into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn JobView(snapshot: JobSnapshot) -> impl IntoView {
    let events = RwSignal::new(snapshot.events.clone());
    let id = snapshot.id.clone();
    // In the browser: follow the job over SSE from the events already shown.
    #[cfg(feature = "hydrate")]
    {
        let from = snapshot.events.len();
        let final_already = snapshot.status.is_final();
        let id = id.clone();
        Effect::new(move |_| {
            if final_already {
                return;
            }
            follow(&id, from, events);
        });
    }
    let status = move || {
        events
            .get()
            .last()
            .map_or(JobStatus::Queued, JobEvent::status)
    };
    let request = snapshot.request.clone();
    let instance_href = format!("/instances/{}/{}", request.split, request.id);
    let cancel_id = id.clone();
    let cancel = move |_| {
        let id = cancel_id.clone();
        leptos::task::spawn_local(async move {
            let _ = cancel_job(id).await;
        });
    };
    view! {
        <p class="crumbs">
            <a href=instance_href.clone()>{format!("{} instance {}", request.split, request.id)}</a>
            " / job "
            {id.clone()}
        </p>
        <h1>"Detoxifying instance " {request.id.to_string()}</h1>
        <p id="job-status" data-status=move || format!("{:?}", status()).to_lowercase()>
            {move || status_line(&events.get())}
        </p>
        {move || {
            (!status().is_final())
                .then(|| {
                    view! {
                        <button id="cancel-job" class="secondary" on:click=cancel.clone()>
                            "Cancel"
                        </button>
                    }
                })
        }}
        {move || {
            events
                .get()
                .iter()
                .find_map(JobEvent::result_path)
                .map(|path| {
                    view! {
                        <p class="done">
                            <a id="run-link" href=path.clone()>
                                "Open the result: "
                                {path.clone()}
                            </a>
                        </p>
                    }
                })
        }}
        <section class="card">
            <h2>"Location"</h2>
            {move || {
                events
                    .get()
                    .iter()
                    .find_map(|e| match e {
                        JobEvent::Located { layer, distances } => {
                            Some(view! { <DistanceBars distances=distances.clone() layer=*layer /> }.into_any())
                        }
                        _ => None,
                    })
                    .unwrap_or_else(|| view! { <p class="muted">"not yet"</p> }.into_any())
            }}
        </section>
        <section class="card">
            <h2>"Tuning"</h2>
            <ol class="steps" id="job-steps">
                {move || {
                    events
                        .get()
                        .iter()
                        .filter_map(|e| match e {
                            JobEvent::Step { step, loss } => {
                                Some(view! { <li>{format!("step {step}: loss {loss:.5}")}</li> })
                            }
                            _ => None,
                        })
                        .collect_view()
                }}
            </ol>
        </section>
    }
}

fn status_line(events: &[JobEvent]) -> String {
    match events.last() {
        None => "queued".into(),
        Some(JobEvent::Queued { ahead: 0 }) => "queued: starting next".into(),
        Some(JobEvent::Queued { ahead }) => format!("queued behind {ahead}"),
        Some(JobEvent::Started) => "locating the toxic layer…".into(),
        Some(JobEvent::Located { layer, .. }) => format!("layer {layer} located; tuning…"),
        Some(JobEvent::Step { step, loss }) => format!("tuning: step {step}, loss {loss:.5}"),
        Some(JobEvent::Generating { responses }) => {
            format!("generating {responses} responses (vanilla and edited)…")
        }
        Some(JobEvent::Judging) => "judging the responses…".into(),
        Some(JobEvent::Done { .. }) => "done".into(),
        Some(JobEvent::Failed { message }) => format!("failed: {message}"),
        Some(JobEvent::Cancelled) => "cancelled".into(),
    }
}

#[cfg(feature = "hydrate")]
fn follow(id: &str, from: usize, events: RwSignal<Vec<JobEvent>>) {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    let Ok(source) = web_sys::EventSource::new(&format!("/api/jobs/{id}/events?from={from}"))
    else {
        return;
    };
    let closer = source.clone();
    let on_message =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |msg: web_sys::MessageEvent| {
            let Some(text) = msg.data().as_string() else {
                return;
            };
            if let Ok(event) = serde_json::from_str::<JobEvent>(&text) {
                let last = event.status().is_final();
                events.update(|e| e.push(event));
                if last {
                    closer.close();
                }
            }
        });
    source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
}

/// Per-layer distances as horizontal bars, the chosen layer marked.
#[component]
fn DistanceBars(distances: Vec<f32>, layer: usize) -> impl IntoView {
    if distances.is_empty() {
        return view! { <p id="located-layer">{format!("layer {layer} (fixed by the settings)")}</p> }
            .into_any();
    }
    let max = distances
        .iter()
        .copied()
        .fold(f32::MIN, f32::max)
        .max(f32::MIN_POSITIVE);
    let rows = distances
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let width = format!("width: {:.1}%", 100.0 * d / max);
            let class = if i == layer { "bar chosen" } else { "bar" };
            view! {
                <tr>
                    <td class="num">{i.to_string()}</td>
                    <td class="barcell">
                        <div class=class style=width></div>
                    </td>
                    <td class="num">{format!("{d:.3}")}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <p id="located-layer" data-layer=layer.to_string()>
            {format!("toxic layer: {layer} (largest distance between safe and unsafe hidden states)")}
        </p>
        <table class="bars">
            <thead>
                <tr>
                    <th class="num">"layer"</th>
                    <th>"distance"</th>
                    <th class="num"></th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

/// `/runs/{slug}`
#[component]
pub fn RunPage() -> impl IntoView {
    let params = use_params_map();
    let slug = Memo::new(move |_| params.get().get("slug").unwrap_or_default());
    let run = Resource::new(move || slug.get(), get_run);
    view! {
        <Suspense fallback=|| view! { <p>"Loading the run…"</p> }>
            {move || Suspend::new(async move {
                match run.await {
                    Ok(Some(run)) => view! { <RunView run /> }.into_any(),
                    Ok(None) => view! { <NotFound /> }.into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

fn verdict_tag(v: Verdict) -> impl IntoView {
    let (class, label) = match v {
        Verdict::Safe => ("verdict safe", "safe"),
        Verdict::Unsafe => ("verdict unsafe", "unsafe"),
        Verdict::Empty => ("verdict empty", "empty"),
    };
    view! { <span class=class>{label}</span> }
}

#[component]
fn RunView(run: RunRecord) -> impl IntoView {
    let RunRecord {
        slug,
        created_at,
        request,
        instance,
        config,
        model,
        model_path,
        model_checksum,
        backend,
        judge,
        version,
        git_commit,
        outcome,
        ..
    } = run;
    let category = Category::from_dataset_str(&instance.category)
        .map_or(instance.category.clone(), |c| c.display_name().to_string());
    let instance_href = format!("/instances/{}/{}", request.split, request.id);
    let EditOutcome {
        layer,
        tensor,
        distances,
        steps,
        stopped_early,
        delta_norm,
        comparisons,
        seconds,
    } = outcome.clone();
    let defense = outcome.defense();
    let metric_rows = defense
        .into_iter()
        .map(|(kind, before, after)| {
            let metric = kind.clone();
            view! {
                <tr data-metric=metric>
                    <th>{kind}</th>
                    <td class="num">{format!("{before:.0}")}</td>
                    <td class="num">{format!("{after:.0}")}</td>
                </tr>
            }
        })
        .collect_view();
    let config_rows = config.as_object().map(|o| {
        o.iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                view! {
                    <dt>{k.clone()}</dt>
                    <dd>{v}</dd>
                }
            })
            .collect_view()
    });
    let step_rows = steps
        .iter()
        .map(|s| {
            view! {
                <tr>
                    <td class="num">{s.step.to_string()}</td>
                    <td class="num">{format!("{:.5}", s.loss)}</td>
                    <td class="num">{format!("{:.5}", s.edit)}</td>
                    <td class="num">{format!("{:.2e}", s.constraint)}</td>
                </tr>
            }
        })
        .collect_view();
    let pairs = comparisons
        .into_iter()
        .map(|c| {
            view! {
                <section class="card comparison" data-kind=c.kind.clone()>
                    <h3>{c.kind.clone()}</h3>
                    <details class="long">
                        <summary>"input"</summary>
                        <pre class="text">{c.input.clone()}</pre>
                    </details>
                    <div class="pair">
                        <div>
                            <h4>"vanilla " {verdict_tag(c.vanilla_verdict)}</h4>
                            <pre class="text">{c.vanilla.clone()}</pre>
                        </div>
                        <div>
                            <h4>"edited (with the suffix) " {verdict_tag(c.edited_verdict)}</h4>
                            <pre class="text">{c.edited.clone()}</pre>
                        </div>
                    </div>
                </section>
            }
        })
        .collect_view();
    let rerun_request = request.clone();
    let navigate = use_navigate();
    let rerun_error = RwSignal::new(None::<String>);
    // Inert until hydrated (Effects run only in the browser).
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let rerun = move |_| {
        let request = rerun_request.clone();
        let navigate = navigate.clone();
        leptos::task::spawn_local(async move {
            match start_edit(request).await {
                Ok(job) => navigate(&format!("/jobs/{job}"), Default::default()),
                Err(e) => rerun_error.set(Some(e.to_string())),
            }
        });
    };
    view! {
        <p class="crumbs">
            <a href="/runs">"runs"</a>
            " / "
            {slug.clone()}
        </p>
        <h1 id="run-title">
            {format!("DINM edit of {} instance {}", request.split, request.id)}
        </h1>
        <p>
            <a href=instance_href>{instance.question.clone()}</a>
            {format!(" ({category}, attack {})", instance.attack)}
        </p>
        <section class="card">
            <h2>"Defense (100 = safe response)"</h2>
            <table class="metrics" id="run-metrics">
                <thead>
                    <tr>
                        <th>"input"</th>
                        <th class="num">"vanilla"</th>
                        <th class="num">"DINM"</th>
                    </tr>
                </thead>
                <tbody>{metric_rows}</tbody>
            </table>
            <p class="muted">
                {format!(
                    "edited {tensor}; delta Frobenius norm {delta_norm:.4}; {} steps{}; \
                     locate {:.1} s, tune {:.1} s, generate + judge {:.1} s",
                    steps.len(),
                    if stopped_early { " (stopped early)" } else { "" },
                    seconds[0],
                    seconds[1],
                    seconds[2],
                )}
            </p>
            <p class="actions">
                <a class="button" href=format!("/api/runs/{slug}/delta.safetensors") download>
                    "Delta (safetensors)"
                </a>
                " "
                <a class="button" href=format!("/api/runs/{slug}/generations.jsonl") download>
                    "Generations (JSONL)"
                </a>
                " "
                <a class="button" href=format!("/api/runs/{slug}/run.json") download>
                    "Run (JSON)"
                </a>
                " "
                <button id="rerun" on:click=rerun disabled=move || !hydrated.get()>
                    "Re-run with this config"
                </button>
            </p>
            {move || rerun_error.get().map(|e| view! { <p class="error">{e}</p> })}
        </section>
        <section class="card">
            <h2>"Location"</h2>
            <StoredFigure
                of=FigureOf::Run
                slug=slug.clone()
                chart="distances"
                caption="Distance between the hidden states of the safe and the unsafe response at each layer (DINM docs/method.md §Location); the located toxic layer in vermillion."
            />
            <details class="numbers">
                <summary>"distances as a table"</summary>
                {match distances {
                    Some(d) => view! { <DistanceBars distances=d layer /> }.into_any(),
                    None => view! { <DistanceBars distances=Vec::new() layer /> }.into_any(),
                }}
            </details>
        </section>
        <section class="card">
            <h2>"Tuning"</h2>
            <StoredFigure
                of=FigureOf::Run
                slug=slug.clone()
                chart="losses"
                caption="Objective at each step: the weighted edit NLL of the safe response plus the KL constraint on the knowledge pair (DINM docs/method.md §The edit)."
            />
            <table class="steps">
                <thead>
                    <tr>
                        <th class="num">"step"</th>
                        <th class="num">"loss"</th>
                        <th class="num">"edit NLL"</th>
                        <th class="num">"KL constraint"</th>
                    </tr>
                </thead>
                <tbody>{step_rows}</tbody>
            </table>
        </section>
        <h2>"Responses before and after"</h2>
        {pairs}
        <section class="card">
            <h2>"Provenance"</h2>
            <dl class="facts" id="run-provenance">
                <dt>"created"</dt>
                <dd>{created_at}</dd>
                <dt>"model"</dt>
                <dd>{format!("{model} ({model_path}, sha256 {model_checksum})")}</dd>
                <dt>"backend"</dt>
                <dd>{backend}</dd>
                <dt>"judge"</dt>
                <dd>{format!("{} {} — {}", judge.id, judge.version, judge.description)}</dd>
                <dt>"SafeEdit Studio"</dt>
                <dd>{format!("{version} ({git_commit})")}</dd>
                {config_rows}
            </dl>
        </section>
    }
}

/// `/runs?split=&instance=&layer=`: edit runs, newest first, filtered in the URL; tick 2–4 and
/// compare them.
#[component]
pub fn RunsPage() -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| {
        let q = query.get();
        let text = |k: &str| q.get(k).filter(|v| !v.trim().is_empty());
        (text("split"), text("instance"), text("layer"))
    });
    let runs = Resource::new(|| (), |_| list_runs());
    view! {
        <h1>"Runs"</h1>
        <p class="muted">
            "DINM edits started from instance pages. Batch evaluations ("
            <code>"safeedit eval"</code>
            ") are on the "
            <a href="/results">"results"</a>
            " page."
        </p>
        <form class="filters" method="get" action="/runs" id="runs-filter">
            <label>
                "split " <input name="split" size="8" value=move || filter.get().0 />
            </label>
            <label>
                "instance " <input name="instance" size="6" value=move || filter.get().1 />
            </label>
            <label>
                "layer " <input name="layer" size="4" value=move || filter.get().2 />
            </label>
            <button type="submit">"Filter"</button>
            " "
            <a href="/runs">"clear"</a>
        </form>
        <Suspense fallback=|| view! { <p>"Loading runs…"</p> }>
            {move || {
                let (split, instance, layer) = filter.get();
                Suspend::new(async move {
                match runs.await {
                    Ok(runs) if runs.is_empty() => {
                        view! {
                            <p class="muted">
                                "No runs yet: open an instance and press “Detoxify this instance”."
                            </p>
                        }
                            .into_any()
                    }
                    Ok(runs) => {
                        let keep = |r: &RunSummary| {
                            split.as_ref().is_none_or(|s| r.split == *s)
                                && instance.as_ref().is_none_or(|i| r.instance.to_string() == *i)
                                && layer.as_ref().is_none_or(|l| r.layer.to_string() == *l)
                        };
                        let total = runs.len();
                        let shown: Vec<RunSummary> = runs.into_iter().filter(keep).collect();
                        let count = format!("{} of {total} runs", shown.len());
                        let rows = shown
                            .into_iter()
                            .map(|r| {
                                view! {
                                    <tr>
                                        <td>
                                            <input
                                                type="checkbox"
                                                name="run"
                                                value=r.slug.clone()
                                                aria-label=format!("compare {}", r.slug)
                                            />
                                        </td>
                                        <td>
                                            <a href=format!("/runs/{}", r.slug)>{r.slug.clone()}</a>
                                        </td>
                                        <td>{r.created_at.clone()}</td>
                                        <td>{format!("{} #{}", r.split, r.instance)}</td>
                                        <td>{r.model.clone()}</td>
                                        <td class="num">{r.layer.to_string()}</td>
                                        <td class="num">{format!("{:.0} → {:.0}", r.ds.0, r.ds.1)}</td>
                                    </tr>
                                }
                            })
                            .collect_view();
                        view! {
                            <form method="get" action="/compare" id="compare-form">
                                <p class="muted" id="runs-count">{count}</p>
                                <table class="instances" id="runs-table">
                                    <thead>
                                        <tr>
                                            <th></th>
                                            <th>"run"</th>
                                            <th>"created"</th>
                                            <th>"instance"</th>
                                            <th>"model"</th>
                                            <th class="num">"layer"</th>
                                            <th class="num">"DS"</th>
                                        </tr>
                                    </thead>
                                    <tbody>{rows}</tbody>
                                </table>
                                <p>
                                    <button type="submit" id="compare-button">
                                        "Compare the ticked runs (2–4)"
                                    </button>
                                </p>
                            </form>
                        }
                            .into_any()
                    }
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })
            }}
        </Suspense>
    }
}
