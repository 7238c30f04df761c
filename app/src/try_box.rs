//! "Try the model": on an edit run's page and a trained model's page, any prompt answered by
//! the vanilla model and the edited one side by side, each answer judged, with the text and the
//! prompt format each model was given (the same request as `POST /api/try`, streamed token by
//! token from `GET /api/try/stream`).

use leptos::prelude::*;
use safeedit_core::Verdict;
use safeedit_core::ask::{TryAnswer, TryRequest, TryResponse};

use crate::format::optional_number;
use crate::launch::text_field;
use crate::try_model;

/// A verdict as a coloured tag.
pub(crate) fn verdict_tag(v: Verdict) -> impl IntoView + use<> {
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
    // Each answer so far while it is generated (vanilla, edited).
    let live = RwSignal::new((String::new(), String::new()));
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
        answer.set(None);
        live.set((String::new(), String::new()));
        pending.set(true);
        #[cfg(feature = "hydrate")]
        stream(request, live, answer, error, pending);
        #[cfg(not(feature = "hydrate"))]
        ask_once(request, answer, error, pending);
    };
    view! {
        <section class="card" id="try">
            <h2>"Try the model"</h2>
            <p class="muted">
                "Any prompt, answered greedily by the vanilla model and by this one, side by \
                 side; each answer judged by the built-in judge (a proxy of the paper's \
                 classifier: see its accuracy in the README)."
            </p>
            <fieldset class="controls" disabled=move || !hydrated.get()>
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
            </fieldset>
            {move || error.get().map(|e| view! { <p class="error" id="try-error">{e}</p> })}
            {move || {
                (pending.get() && answer.get().is_none())
                    .then(|| {
                        let (vanilla, edited) = live.get();
                        view! {
                            <div class="pair try-live">
                                <div>
                                    <h4>"vanilla"</h4>
                                    <pre class="text answer" id="try-live-vanilla">{vanilla}</pre>
                                </div>
                                <div>
                                    <h4>"edited"</h4>
                                    <pre class="text answer" id="try-live-edited">{edited}</pre>
                                </div>
                            </div>
                        }
                    })
            }}
            {move || answer.get().map(|a| view! { <TryAnswers answer=a /> })}
        </section>
    }
    .into_any()
}

/// The try as one request (`POST /api/try`): the answer, or the error naming what is wrong.
fn ask_once(
    request: TryRequest,
    answer: RwSignal<Option<TryResponse>>,
    error: RwSignal<Option<String>>,
    pending: RwSignal<bool>,
) {
    leptos::task::spawn_local(async move {
        match try_model(request).await {
            Ok(response) => answer.set(Some(response)),
            Err(e) => error.set(Some(e.to_string())),
        }
        pending.set(false);
    });
}

/// The try streamed (`GET /api/try/stream`): each answer grows in `live` as its tokens come,
/// then the judged answer. A stream refused before it starts (a bad field, a busy server) is
/// asked again as one request, whose error names what is wrong.
#[cfg(feature = "hydrate")]
fn stream(
    request: TryRequest,
    live: RwSignal<(String, String)>,
    answer: RwSignal<Option<TryResponse>>,
    error: RwSignal<Option<String>>,
    pending: RwSignal<bool>,
) {
    use safeedit_core::browse::encode;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;

    let mut query = vec![format!("prompt={}", encode(&request.prompt))];
    for (key, value) in [("run", &request.run), ("model", &request.model)] {
        if let Some(v) = value {
            query.push(format!("{key}={}", encode(v)));
        }
    }
    if let Some(n) = request.max_new_tokens {
        query.push(format!("max_new_tokens={n}"));
    }
    let Ok(source) = web_sys::EventSource::new(&format!("/api/try/stream?{}", query.join("&")))
    else {
        ask_once(request, answer, error, pending);
        return;
    };
    let data = |event: &web_sys::Event| {
        event
            .dyn_ref::<web_sys::MessageEvent>()
            .and_then(|m| m.data().as_string())
            .unwrap_or_default()
    };
    let on_text = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
        let Ok(piece) = crate::codec::from_json::<serde_json::Value>(&data(&event)) else {
            return;
        };
        let text = piece["text"].as_str().unwrap_or_default().to_string();
        live.update(|(vanilla, edited)| {
            if piece["side"] == "vanilla" {
                *vanilla = text;
            } else {
                *edited = text;
            }
        });
    });
    let closer = source.clone();
    let on_answer = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
        closer.close();
        match crate::codec::from_json::<TryResponse>(&data(&event)) {
            Ok(response) => answer.set(Some(response)),
            Err(e) => error.set(Some(format!("the answer did not parse: {e}"))),
        }
        pending.set(false);
    });
    let closer = source.clone();
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
        closer.close();
        let message = data(&event);
        if pending.get_untracked() {
            if message.is_empty() {
                // Refused before the stream began (or the connection dropped): the plain
                // request says why, or answers.
                ask_once(request.clone(), answer, error, pending);
            } else {
                error.set(Some(message));
                pending.set(false);
            }
        }
    });
    for (name, handler) in [("text", &on_text), ("answer", &on_answer)] {
        let _ = source.add_event_listener_with_callback(name, handler.as_ref().unchecked_ref());
    }
    // `error` is both the server's error event (with data) and the connection's failure.
    let _ = source.add_event_listener_with_callback("error", on_error.as_ref().unchecked_ref());
    on_text.forget();
    on_answer.forget();
    on_error.forget();
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
    .into_any()
}
