//! "Judge wrong?" beside each judged response of an evaluation: a reader flags the verdict (the
//! other verdict is theirs, with an optional note), sees the flag beside the judge's verdict, and
//! can remove it. The flags are stored with the evaluation; the metric downloads recompute with
//! them on request (`?verdicts=human`).

use leptos::prelude::*;
use safeedit_core::Verdict;
use safeedit_core::flag::VerdictFlag;

use crate::try_box::verdict_tag;
use crate::{flag_verdict, unflag_verdict};

/// The other verdict: what a reader who flags `judge` says.
fn other(judge: Verdict) -> Option<Verdict> {
    match judge {
        Verdict::Safe => Some(Verdict::Unsafe),
        Verdict::Unsafe => Some(Verdict::Safe),
        Verdict::Empty => None,
    }
}

/// The flag control of instance `instance`'s input `kind`, judged `judge`; `flags` holds the
/// evaluation's flags (shared by every control of the page and the metric card).
#[component]
pub fn FlagControl(
    slug: String,
    instance: u64,
    kind: String,
    judge: Verdict,
    flags: RwSignal<Vec<VerdictFlag>>,
) -> impl IntoView {
    // An empty response is scored by rule, not by the judge: nothing to flag.
    let Some(human) = other(judge) else {
        return ().into_any();
    };
    let ready = RwSignal::new(false);
    Effect::new(move |_| ready.set(true));
    let note = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let pending = RwSignal::new(false);
    let current = {
        let kind = kind.clone();
        move || {
            flags.with(|all| {
                all.iter()
                    .find(|f| f.is_for(instance, &kind) && f.judge == judge)
                    .cloned()
            })
        }
    };
    // Sets (`flagging`) or removes the flag; the page's flags follow the server's answer.
    let submit = {
        let (slug, kind) = (slug.clone(), kind.clone());
        move |flagging: bool| {
            let (slug, kind) = (slug.clone(), kind.clone());
            pending.set(true);
            error.set(None);
            leptos::task::spawn_local(async move {
                let answer = if flagging {
                    flag_verdict(slug, instance, kind.clone(), note.get_untracked())
                        .await
                        .map(Some)
                } else {
                    unflag_verdict(slug, instance, kind.clone())
                        .await
                        .map(|()| None)
                };
                match answer {
                    Ok(flag) => flags.update(|all| {
                        all.retain(|f| !f.is_for(instance, &kind));
                        all.extend(flag);
                    }),
                    Err(e) => error.set(Some(e.to_string())),
                }
                pending.set(false);
            });
        }
    };
    let disabled = move || !ready.get() || pending.get();
    let shown = move || {
        match current() {
        Some(flag) => {
            let note = (!flag.note.is_empty()).then(|| {
                view! { <span class="flag-note">{format!("“{}”", flag.note)}</span> }
            });
            view! {
                <span class="flagged">
                    "flagged: a reader says " {verdict_tag(flag.human)} " " {note} " "
                    <button class="link flag-clear" disabled=disabled on:click={
                        let submit = submit.clone();
                        move |_| submit(false)
                    }>
                        "remove flag"
                    </button>
                </span>
            }
            .into_any()
        }
        None => view! {
            <details class="flag-form">
                <summary>"judge wrong?"</summary>
                <fieldset class="controls" disabled=move || !ready.get()>
                    <input
                        class="flag-why"
                        type="text"
                        maxlength="2000"
                        placeholder="why (optional)"
                        prop:value=move || note.get()
                        on:input=move |ev| note.set(event_target_value(&ev))
                    />
                    " "
                    <button class="secondary flag-set" disabled=disabled on:click={
                        let submit = submit.clone();
                        move |_| submit(true)
                    }>
                        {format!("Flag: it is {}", if human == Verdict::Safe { "safe" } else { "unsafe" })}
                    </button>
                </fieldset>
            </details>
        }
        .into_any(),
    }
    };
    view! {
        <div class="flag" data-instance=instance.to_string() data-kind=kind>
            {shown}
            {move || error.get().map(|e| view! { <p class="error flag-error">{e}</p> })}
        </div>
    }
    .into_any()
}

/// The metric card's line on flags: how many verdicts readers flagged, and the tables recomputed
/// with their verdicts.
pub fn flags_line(slug: String, flags: RwSignal<Vec<VerdictFlag>>) -> impl IntoView {
    move || {
        let n = flags.with(Vec::len);
        (n > 0).then(|| {
            let api = format!("/api/evals/{slug}");
            view! {
                <p class="muted" id="eval-flags">
                    {format!(
                        "{n} verdict{} flagged as wrong by readers. With their verdicts: ",
                        if n == 1 { "" } else { "s" },
                    )}
                    <a href=format!("{api}/summary.csv?verdicts=human") download="">
                        "metrics (CSV)"
                    </a>
                    ", "
                    <a href=format!("{api}/table.tex?verdicts=human") download="">
                        "LaTeX"
                    </a>
                    "."
                </p>
            }
        })
    }
}
