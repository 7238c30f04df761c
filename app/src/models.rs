//! `/models`: the loaded model and every model trained here (SFT, DPO), with the training form;
//! `/models/{name}`: one trained model's card, its loss curve, and what to do with it next.

use leptos::prelude::*;

use crate::codec::resource;
use leptos_meta::Title;
use safeedit_core::{ModelList, TrainPoint, TrainedModel, TrainedModelPage};

use crate::launch::TrainLauncher;
use crate::record_page::record_page;
use crate::share::CopyLink;
use crate::try_box::TryBox;
use crate::{get_trained_model, list_models};

/// `/models`
#[component]
pub fn ModelsPage() -> impl IntoView {
    let models = resource(|| (), |_| list_models());
    view! {
        <Title text="Models" />
        <h1>"Models"</h1>
        <p class="muted">
            "The loaded model runs vanilla and every editing method; the SFT and DPO baselines are \
             models trained from it here, which evaluations and analyses name."
        </p>
        <Suspense fallback=|| view! { <p>"Loading the models…"</p> }>
            {move || Suspend::new(async move {
                match models.await {
                    Ok(list) => view! { <ModelsView list /> }.into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
    .into_any()
}

#[component]
fn ModelsView(list: ModelList) -> impl IntoView {
    let ModelList { loaded, trained } = list;
    let empty = trained.is_empty();
    let rows = trained
        .into_iter()
        .map(|m| {
            let line = m.line();
            let loss = m.final_loss.map_or("–".into(), |l| format!("{l:.4}"));
            view! {
                <tr data-name=m.name.clone()>
                    <td>
                        <a href=format!("/models/{}", m.name)>{m.name.clone()}</a>
                    </td>
                    <td>{line}</td>
                    <td>{m.base.clone().unwrap_or(m.base_model.clone())}</td>
                    <td>{m.data.clone()}</td>
                    <td class="num">{loss}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="card">
            <h2>"Loaded"</h2>
            <p id="loaded-model">
                <strong>{loaded.name.clone()}</strong>
                {format!(
                    " — {}, {} layers, {}",
                    loaded.params_human(),
                    loaded.n_layers,
                    loaded.backend,
                )}
            </p>
        </section>
        <h2>"Trained here"</h2>
        {if empty {
            view! {
                <p class="muted" id="no-models">
                    "No trained models yet: train one below (or with "
                    <code>"safeedit train sft --out DIR"</code>
                    " into the server's models folder)."
                </p>
            }
                .into_any()
        } else {
            view! {
                <div class="scroll">
                    <table class="runs" id="trained-models">
                        <thead>
                            <tr>
                                <th>"model"</th>
                                <th>"training"</th>
                                <th>"from"</th>
                                <th>"data"</th>
                                <th class="num">"last loss"</th>
                            </tr>
                        </thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
            }
                .into_any()
        }}
        <TrainLauncher open=empty />
    }
    .into_any()
}

/// `/models/{name}`
#[component]
pub fn ModelPage() -> impl IntoView {
    record_page(
        "name",
        "Loading the model…",
        get_trained_model,
        |page| view! { <ModelView page /> },
    )
}

#[component]
fn ModelView(page: TrainedModelPage) -> impl IntoView {
    let TrainedModelPage { model, steps } = page;
    let TrainedModel {
        name,
        objective,
        base_model,
        base,
        data,
        n_examples,
        steps_done,
        total_steps,
        final_loss,
        lora_rank,
        prompt_format,
        settings,
        trained_at: _,
    } = model.clone();
    let settings = serde_json::to_string_pretty(&settings).unwrap_or_default();
    let from = match base {
        Some(base) => view! { <a href=format!("/models/{base}")>{base.clone()}</a> }.into_any(),
        None => view! { <span>{base_model}</span> }.into_any(),
    };
    let state = if model.finished() {
        "trained to the end".to_string()
    } else {
        format!("stopped at step {steps_done} of {total_steps} (not usable until finished)")
    };
    view! {
        <p class="crumbs">
            <a href="/models">"Models"</a>
            " / "
            {name.clone()}
        </p>
        <Title text=format!("{} model {name}", objective.to_uppercase()) />
        <h1 id="model-title">{format!("{} model {name}", objective.to_uppercase())}</h1>
        <p class="share"><CopyLink /></p>
        <section class="card">
            <h2>"Card"</h2>
            <table class="kv" id="model-card">
                <tbody>
                    <tr>
                        <th>"objective"</th>
                        <td>{objective.to_uppercase()}</td>
                    </tr>
                    <tr>
                        <th>"trained from"</th>
                        <td>{from}</td>
                    </tr>
                    <tr>
                        <th>"data"</th>
                        <td>{format!("{data}: {n_examples} pairs")}</td>
                    </tr>
                    <tr>
                        <th>"steps"</th>
                        <td id="model-steps">{format!("{steps_done} of {total_steps}: {state}")}</td>
                    </tr>
                    <tr>
                        <th>"last loss"</th>
                        <td>{final_loss.map_or("–".into(), |l| format!("{l:.4}"))}</td>
                    </tr>
                    <tr>
                        <th>"parameters trained"</th>
                        <td>
                            {lora_rank
                                .map_or("all (full fine-tuning)".into(), |r| format!("LoRA rank {r}"))}
                        </td>
                    </tr>
                    <tr>
                        <th>"prompt format"</th>
                        <td>{prompt_format.label()}</td>
                    </tr>
                </tbody>
            </table>
            <details>
                <summary>"Hyperparameters"</summary>
                <pre>{settings}</pre>
            </details>
        </section>
        <section class="card">
            <h2>"Loss"</h2>
            <LossCurve points=steps.iter().map(|s| (s.step, s.loss)).collect() />
            <p class="muted">{epochs_line(&steps)}</p>
        </section>
        <TryBox run=None model=Some(name.clone()) />
        <section class="card">
            <h2>"Use it"</h2>
            <p>
                "Evaluate it on Results ("
                <a href="/results">"Run an evaluation"</a>
                ", method " {name.clone()} "), compare its mechanisms with vanilla's and DINM's on "
                <a href="/mechanisms">"Mechanisms"</a>
                ", or start DPO from it on "
                <a href="/models">"Models"</a>
                ". From the JSON API: "
                <code>
                    {format!(
                        r#"{{"kind": "eval", "method": "{objective}", "model": "{name}", "split": "test"}}"#,
                    )}
                </code>
            </p>
        </section>
    }
    .into_any()
}

/// `epoch 0: mean loss 1.23; epoch 1: …` (a step's loss is noisy: batches differ in length).
fn epochs_line(steps: &[TrainPoint]) -> String {
    let epochs = steps.iter().map(|s| s.epoch).max().map_or(0, |e| e + 1);
    (0..epochs)
        .filter_map(|e| {
            let losses: Vec<f64> = steps
                .iter()
                .filter(|s| s.epoch == e)
                .map(|s| s.loss)
                .collect();
            (!losses.is_empty()).then(|| {
                format!(
                    "epoch {e}: mean loss {:.4}",
                    losses.iter().sum::<f64>() / losses.len() as f64
                )
            })
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Loss per step as a line (with points), the axes labelled with the range.
#[component]
pub(crate) fn LossCurve(points: Vec<(usize, f64)>) -> impl IntoView {
    if points.is_empty() {
        return view! { <p class="muted" id="loss-curve">"no steps yet"</p> }.into_any();
    }
    let (w, h, pad) = (480.0_f64, 160.0_f64, 36.0_f64);
    let last_step = points.iter().map(|p| p.0).max().unwrap_or(0).max(1) as f64;
    let first_step = points.iter().map(|p| p.0).min().unwrap_or(0) as f64;
    let (lo, hi) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let x = |s: usize| {
        let range = (last_step - first_step).max(1.0);
        pad + (s as f64 - first_step) / range * (w - 2.0 * pad)
    };
    let y = |l: f64| h - pad / 2.0 - (l - lo) / span * (h - pad);
    let line = points
        .iter()
        .map(|&(s, l)| format!("{:.1},{:.1}", x(s), y(l)))
        .collect::<Vec<_>>()
        .join(" ");
    let dots = points
        .iter()
        .map(|&(s, l)| {
            view! {
                <circle cx=format!("{:.1}", x(s)) cy=format!("{:.1}", y(l)) r="2.5">
                    <title>{format!("step {s}: loss {l:.4}")}</title>
                </circle>
            }
        })
        .collect_view();
    view! {
        <svg
            id="loss-curve"
            class="loss-curve"
            viewBox=format!("0 0 {w} {h}")
            role="img"
            data-steps=points.len().to_string()
        >
            <title>{format!("loss over {} steps", points.len())}</title>
            <line x1=pad y1=h - pad / 2.0 x2=w - pad y2=h - pad / 2.0 class="axis" />
            <line x1=pad y1=pad / 2.0 x2=pad y2=h - pad / 2.0 class="axis" />
            <text x=2 y=pad / 2.0 + 4.0>{format!("{hi:.3}")}</text>
            <text x=2 y=h - pad / 2.0>{format!("{lo:.3}")}</text>
            <text x=w - pad y=h - 2.0 text-anchor="end">{format!("step {}", last_step as usize)}</text>
            <polyline points=line class="loss" />
            {dots}
        </svg>
    }
    .into_any()
}
