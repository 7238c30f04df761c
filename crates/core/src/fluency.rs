//! Fluency as the paper measures it (docs/method.md §Evaluation, EasyEdit
//! `compute_n_gram_entropy`): the weighted entropy of word bigrams and trigrams, `H₂/3 + 2·H₃/3`
//! bits, over `nltk.word_tokenize` tokens.
//!
//! `word_tokenize` = Punkt sentence splitting, then NLTK's improved Treebank word tokenizer on each
//! sentence. The word tokenizer ([`treebank_tokenize`]) is a regex-for-regex port of
//! `nltk.tokenize.destructive.NLTKWordTokenizer` (tested token for token against NLTK). Punkt's
//! pretrained English model is not available offline, so [`split_sentences`] implements the
//! decisions of an *untrained* `PunktSentenceTokenizer` (every period ends a sentence except in
//! ellipses, initials, and numbers followed by a lower-case word), which is what the fixtures are
//! compared with; the pretrained model additionally knows abbreviations such as "Mr.". Sentence
//! splitting only decides whether a period inside a text becomes its own token.

use std::collections::HashMap;
use std::sync::OnceLock;

use fancy_regex::Regex;

struct Rules {
    starting_quotes: Vec<(Regex, &'static str)>,
    punctuation: Vec<(Regex, &'static str)>,
    parens: (Regex, &'static str),
    double_dashes: (Regex, &'static str),
    ending_quotes: Vec<(Regex, &'static str)>,
    contractions: Vec<Regex>,
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid tokenizer pattern")
}

fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| Rules {
        starting_quotes: vec![
            (re("([«“‘„]|[`]+)"), " ${1} "),
            (re(r#"^""#), "``"),
            (re("(``)"), " ${1} "),
            (re(r#"([ (\[{<])("|'{2})"#), "${1} `` "),
            (
                re(r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)"),
                "${1} ",
            ),
        ],
        punctuation: vec![
            (re(r#"([^.])(\.)([\])}>"'»”’ ]*)\s*$"#), "${1} ${2} ${3} "),
            (re(r"([:,])([^\d])"), " ${1} ${2}"),
            (re(r"([:,])$"), " ${1} "),
            (re(r"\.{2,}"), " ${0} "),
            (re(r"[;@#$%&]"), " ${0} "),
            (re("[\u{2012}-\u{2015}]"), " ${0} "),
            (re(r#"([^.])(\.)([\])}>"']*)\s*$"#), "${1} ${2}${3} "),
            (re(r"[?!]"), " ${0} "),
            (re(r"([^'])' "), "${1} ' "),
            (re(r"[*]"), " ${0} "),
        ],
        parens: (re(r"[\]\[(){}<>]"), " ${0} "),
        double_dashes: (re("--"), " -- "),
        ending_quotes: vec![
            (re("([»”’])"), " ${1} "),
            (re("''"), " '' "),
            (re("\""), " '' "),
            (re(r"\s+"), " "),
            (re(r"([^' ])('[sS]|'[mM]|'[dD]|') "), "${1} ${2} "),
            (
                re(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "),
                "${1} ${2} ",
            ),
        ],
        contractions: [
            r"(?i)\b(can)(not)\b",
            r"(?i)\b(d)('ye)\b",
            r"(?i)\b(gim)(me)\b",
            r"(?i)\b(gon)(na)\b",
            r"(?i)\b(got)(ta)\b",
            r"(?i)\b(lem)(me)\b",
            r"(?i)\b(more)('n)\b",
            r"(?i)\b(wan)(na)(?=\s)",
            r"(?i) ('t)(is)\b",
            r"(?i) ('t)(was)\b",
        ]
        .iter()
        .map(|p| re(p))
        .collect(),
    })
}

fn apply(text: String, rules: &[(Regex, &'static str)]) -> String {
    rules
        .iter()
        .fold(text, |t, (r, rep)| r.replace_all(&t, *rep).into_owned())
}

/// NLTK's `NLTKWordTokenizer().tokenize(sentence)` (the Treebank tokenizer `word_tokenize` uses).
pub fn treebank_tokenize(sentence: &str) -> Vec<String> {
    let r = rules();
    let text = apply(sentence.to_string(), &r.starting_quotes);
    let text = apply(text, &r.punctuation);
    let text = r.parens.0.replace_all(&text, r.parens.1).into_owned();
    let text = r
        .double_dashes
        .0
        .replace_all(&text, r.double_dashes.1)
        .into_owned();
    let text = apply(format!(" {text} "), &r.ending_quotes);
    let text = r
        .contractions
        .iter()
        .fold(text, |t, c| c.replace_all(&t, " ${1} ${2} ").into_owned());
    text.split_whitespace().map(str::to_string).collect()
}

/// Sentence boundaries as an untrained Punkt tokenizer places them (see the module docs).
pub fn split_sentences(text: &str) -> Vec<&str> {
    static CANDIDATE: OnceLock<Regex> = OnceLock::new();
    static REALIGN: OnceLock<Regex> = OnceLock::new();
    static NUMERIC: OnceLock<Regex> = OnceLock::new();
    static INITIAL: OnceLock<Regex> = OnceLock::new();
    let candidate = CANDIDATE
        .get_or_init(|| re(r#"[.?!](?=(?P<after>[)";}\]*:@'({\[‘’“”«»?!]|\s+(?P<next>\S+)))"#));
    let realign = REALIGN.get_or_init(|| re(r#"^["')\]}]+?(?:\s+|(?=--)|$)"#));
    let numeric = NUMERIC.get_or_init(|| re(r"^-?[.,]?\d[\d,.-]*\.?$"));
    let initial = INITIAL.get_or_init(|| re(r"^[^\W\d]\.$"));

    let mut slices: Vec<(usize, usize)> = Vec::new();
    let mut last_break = 0;
    for caps in candidate.captures_iter(text).flatten() {
        let m = caps.get(0).expect("whole match");
        let word_start = text[..m.start()].rfind(char::is_whitespace).map_or(0, |i| {
            i + text[i..].chars().next().map_or(1, char::len_utf8)
        });
        let token = &text[word_start..m.end()];
        let next = caps.name("next").map(|n| n.as_str());
        let breaks = match m.as_str() {
            "?" | "!" => true,
            _ => {
                // Ellipses and initials ("J." before a name) never end a sentence.
                if token.ends_with("..") || initial.is_match(token).unwrap_or(false) {
                    false
                } else if numeric.is_match(token).unwrap_or(false) {
                    // "1." ends a sentence unless the next word is lower-case or punctuation.
                    next.is_some_and(|n| {
                        let first = n.chars().next().unwrap_or(' ');
                        !first.is_lowercase() && !";:,.!?".contains(n)
                    })
                } else {
                    true
                }
            }
        };
        if breaks {
            slices.push((last_break, m.end()));
            last_break = caps.name("next").map_or(m.end(), |n| n.start());
        }
    }
    slices.push((last_break, text.trim_end().len().max(last_break)));

    // Move closing quotes and brackets that follow a break back into the sentence they close.
    let mut out = Vec::with_capacity(slices.len());
    let mut shift = 0;
    for i in 0..slices.len() {
        let (start, end) = (slices[i].0 + shift, slices[i].1);
        shift = 0;
        if let Some(&(next_start, next_end)) = slices.get(i + 1)
            && let Ok(Some(m)) = realign.find(&text[next_start..next_end])
        {
            out.push(&text[start..next_start + m.as_str().trim_end().len()]);
            shift = m.end();
            continue;
        }
        if start < end {
            out.push(&text[start..end]);
        }
    }
    out
}

/// `nltk.word_tokenize(text)` as approximated here: sentences, then Treebank tokens.
pub fn word_tokenize(text: &str) -> Vec<String> {
    split_sentences(text)
        .into_iter()
        .flat_map(treebank_tokenize)
        .collect()
}

/// Entropy (bits) of the n-gram distribution of a token list; 0 without n-grams.
pub fn ngram_entropy(tokens: &[String], n: usize) -> f64 {
    if tokens.len() < n || n == 0 {
        return 0.0;
    }
    let mut counts: HashMap<&[String], usize> = HashMap::new();
    for gram in tokens.windows(n) {
        *counts.entry(gram).or_default() += 1;
    }
    let total = (tokens.len() + 1 - n) as f64;
    counts
        .values()
        .map(|&c| c as f64 / total)
        .map(|p| -p * p.log2())
        .sum()
}

/// One response's fluency: `mean(2/3 · H₂, 4/3 · H₃)` = `H₂/3 + 2·H₃/3` (EasyEdit's weights).
pub fn fluency(text: &str) -> f64 {
    let tokens = word_tokenize(text);
    (2.0 / 3.0 * ngram_entropy(&tokens, 2) + 4.0 / 3.0 * ngram_entropy(&tokens, 3)) / 2.0
}

/// Mean fluency of several responses (EasyEdit's arithmetic aggregation).
pub fn mean_fluency<S: AsRef<str>>(texts: &[S]) -> Option<f64> {
    if texts.is_empty() {
        return None;
    }
    Some(texts.iter().map(|t| fluency(t.as_ref())).sum::<f64>() / texts.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        treebank_tokenize(s)
    }

    #[test]
    fn treebank_docstring_example() {
        // nltk.tokenize.destructive.NLTKWordTokenizer.tokenize's doctest.
        let s = "Good muffins cost $3.88 (roughly 3,36 euros)\nin New York.  Please buy me\ntwo of them.\nThanks.";
        assert_eq!(
            toks(s),
            [
                "Good", "muffins", "cost", "$", "3.88", "(", "roughly", "3,36", "euros", ")", "in",
                "New", "York.", "Please", "buy", "me", "two", "of", "them.", "Thanks", "."
            ]
        );
    }

    #[test]
    fn contractions_and_quotes() {
        assert_eq!(
            toks("I'm sorry, but I cannot do that."),
            [
                "I", "'m", "sorry", ",", "but", "I", "can", "not", "do", "that", "."
            ]
        );
        assert_eq!(
            toks("He said \"no.\""),
            ["He", "said", "``", "no", ".", "''"]
        );
        assert_eq!(
            toks("Don't you wanna go?"),
            ["Do", "n't", "you", "wan", "na", "go", "?"]
        );
    }

    #[test]
    fn sentences_follow_untrained_punkt() {
        let text = "Hello Mr. Smith. How are you? I am fine... Thanks! (Really.) He said \"no.\" Then J. R. R. Tolkien wrote 3.14 books.";
        assert_eq!(
            split_sentences(text),
            [
                "Hello Mr.",
                "Smith.",
                "How are you?",
                "I am fine... Thanks!",
                "(Really.)",
                "He said \"no.\"",
                "Then J. R. R. Tolkien wrote 3.14 books."
            ]
        );
        let text = "I'm sorry.\n\nInstead, try this: 1. Ask. 2. Wait.";
        assert_eq!(
            split_sentences(text),
            ["I'm sorry.", "Instead, try this: 1.", "Ask.", "2.", "Wait."]
        );
    }

    #[test]
    fn entropy_of_simple_sequences() {
        let t = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(ngram_entropy(&t("a a a a"), 2), 0.0);
        assert!((ngram_entropy(&t("a b c d e"), 2) - 2.0).abs() < 1e-12);
        assert_eq!(ngram_entropy(&t("a"), 2), 0.0);
        // Repetitive refusals score lower than varied text.
        assert!(
            fluency("I cannot. I cannot. I cannot. I cannot.")
                < fluency("The quick brown fox jumps over the lazy dog near the river bank.")
        );
        assert_eq!(fluency(""), 0.0);
        assert_eq!(mean_fluency::<&str>(&[]), None);
    }
}
