//! The judge beside the numbers it decides: every DS and DG figure is the share of responses a
//! safety judge called safe, so the page says which judge that was and how far to trust it.

use leptos::prelude::*;

/// One line under a DS/DG table naming the judge (`id`, `description` as the run stored them).
pub(crate) fn judge_note(id: &str, description: &str) -> impl IntoView + use<> {
    let caveat = match id {
        "safeedit-roberta" => "the paper's RoBERTa safety classifier, as in the paper's tables.",
        "minilm-logreg" => {
            "the built-in proxy judge, not the paper's RoBERTa classifier: on SafeEdit's own \
             texts it misses about a third of unsafe answers, and on a small model's answers it \
             errs both ways (echoed jailbreak templates judged unsafe, partial compliance judged \
             safe). Read the responses before citing a number."
        }
        "keyword" => "a keyword test judge, for tests only: not a safety measurement.",
        _ => "a judge this page does not know; see the run's settings.",
    };
    view! {
        <p class="judge-note" data-judge=id.to_string() title=description.to_string()>
            <strong>"Judge: "</strong>
            {caveat}
            " "
            <a href="/judge">"How it measured"</a>
        </p>
    }
}
