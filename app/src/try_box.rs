//! "Try the model": on an edit run's page and a trained model's page, any prompt answered by
//! the vanilla model and the edited one side by side, each answer judged, with the text and the
//! prompt format each model was given (the same request as `POST /api/try`).

use leptos::prelude::*;
use safeedit_core::Verdict;
use safeedit_core::ask::{TryAnswer, TryRequest, TryResponse};

use crate::format::optional_number;
use crate::launch::text_field;
use crate::try_model;

/// A verdict as a coloured tag.
pub(crate) fn verdict_tag(v: Verdict) -> impl IntoView {
    let (class, label) = match v {
        Verdict::Safe => ("verdict safe", "safe"),
        Verdict::Unsafe => ("verdict unsafe", "unsafe"),
        Verdict::Empty => ("verdict empty", "empty"),
    };
    view! { <span class=class>{label}</span> }
}

/// The prompt box for the edit run `run` or the trained model `model`.
#[component]
pub fn TryBox(run: Option<String>, model: Option<String>) -> impl IntoView {
    let prompt = RwSignal::new(String::new());
    let max_new = RwSignal::new("64".to_string());
    let answer = RwSignal::new(None::<TryResponse>);
    let error = RwSignal::new(None::<String>);
    let pending = RwSignal::new(false);
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let submit = move |_| {
        let max_new_tokens = match optional_number("max new tokens", &max_new.get_untracked()) {
            Ok(n) => n,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        let request = TryRequest {
            run: run.clone(),
            model: model.clone(),
            prompt: prompt.get_untracked(),
            max_new_tokens,
        };
        error.set(None);
        pending.set(true);
        leptos::task::spawn_local(async move {
            match try_model(request).await {
                Ok(response) => answer.set(Some(response)),
                Err(e) => error.set(Some(e.to_string())),
            }
            pending.set(false);
        });
    };
    view! {
        <section class="card" id="try">
            <h2>"Try the model"</h2>
            <p class="muted">
                "Any prompt, answered greedily by the vanilla model and by this one, side by \
                 side; each answer judged by the built-in judge (a proxy of the paper's \
                 classifier: see its accuracy in the README)."
            </p>
            <textarea
                id="try-prompt"
                rows="3"
                placeholder="Ask something the model should refuse, or something it should still answer"
                prop:value=move || prompt.get()
                on:input=move |ev| prompt.set(event_target_value(&ev))
            ></textarea>
            <div class="filters">{text_field("max new tokens", "try-max-new", max_new, "128")}</div>
            <p class="actions">
                <button
                    id="try-button"
                    disabled=move || !hydrated.get() || pending.get()
                    on:click=submit
                >
                    {move || if pending.get() { "Answering…" } else { "Ask both models" }}
                </button>
            </p>
            {move || error.get().map(|e| view! { <p class="error" id="try-error">{e}</p> })}
            {move || answer.get().map(|a| view! { <TryAnswers answer=a /> })}
        </section>
    }
    .into_any()
}

#[component]
fn TryAnswers(answer: TryResponse) -> impl IntoView {
    let side = |id: &'static str, a: TryAnswer| {
        let cut = a
            .truncated
            .then(|| format!(" — cut at the limit of {} tokens", a.tokens));
        view! {
            <div id=id data-verdict=format!("{:?}", a.verdict).to_lowercase()>
                <h4>{a.model.clone()} " " {verdict_tag(a.verdict)}</h4>
                <pre class="text answer">{a.text.clone()}</pre>
                <p class="muted">
                    {format!("{} tokens, {}", a.tokens, a.prompt_format)}
                    {cut}
                </p>
                <details class="long">
                    <summary>"what it was given"</summary>
                    <pre class="text">{a.input.clone()}</pre>
                </details>
            </div>
        }
    };
    view! {
        <div class="pair" id="try-answers">
            {side("try-vanilla", answer.vanilla)} {side("try-edited", answer.edited)}
        </div>
        <p class="muted">
            {format!(
                "greedy, at most {} new tokens; judged by {}; {:.1} s",
                answer.max_new_tokens,
                answer.judge,
                answer.seconds,
            )}
        </p>
    }
}
