//! General performance after an edit (docs/method.md §General performance): KQA (TriviaQA,
//! OpenCompass `triviaqa_gen_2121ce`), CSum (XSum ROUGE-1 F, OpenCompass `Xsum_gen_31397e`), and
//! the offline knowledge proxy (SafeEdit's `knowledge constrain` questions, ROUGE-1 F against the
//! reference answer; docs/method.md §General performance).
//!
//! The scorers reproduce OpenCompass's post-processing (`general_postprocess`,
//! `TriviaQAEvaluator`, the `Xsum` post-processor) and `rouge_score`'s default tokenizer and
//! ROUGE-N (no stemmer, as HF `evaluate`'s `rouge` uses it). One deliberate difference: HF
//! `evaluate` aggregates with a bootstrap resample whose `mid` estimates the mean F; we report
//! the mean itself, which is deterministic.
//!
//! ```
//! use safeedit_core::general::{rouge_n, triviaqa_correct};
//!
//! assert!(triviaqa_correct("The answer is Paris.", &["Paris".to_string()]));
//! let s = rouge_n("the cat sat", "the cat sat down", 1);
//! assert!((s.fmeasure - 6.0 / 7.0).abs() < 1e-12);
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The general-performance tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneralTask {
    /// TriviaQA accuracy (the paper's KQA); needs the user's TriviaQA file.
    Kqa,
    /// XSum ROUGE-1 F (the paper's CSum).
    Csum,
    /// Knowledge proxy: ROUGE-1 F of answers to SafeEdit's knowledge-constrain questions.
    Knowledge,
}

impl GeneralTask {
    /// All tasks.
    pub const ALL: [GeneralTask; 3] = [GeneralTask::Kqa, GeneralTask::Csum, GeneralTask::Knowledge];

    /// Short name (`kqa`, `csum`, `knowledge`), used in file names.
    pub fn name(self) -> &'static str {
        match self {
            GeneralTask::Kqa => "kqa",
            GeneralTask::Csum => "csum",
            GeneralTask::Knowledge => "knowledge",
        }
    }

    /// The metric's column name in tables.
    pub fn metric(self) -> &'static str {
        match self {
            GeneralTask::Kqa => "KQA",
            GeneralTask::Csum => "CSum",
            GeneralTask::Knowledge => "KQA-proxy",
        }
    }

    /// The user turn for one item (OpenCompass's HUMAN prompt; the knowledge proxy asks the
    /// question as is).
    pub fn prompt(self, item: &GeneralItem) -> String {
        match self {
            GeneralTask::Kqa => format!(
                "Answer these questions, your answer should be as simple as possible, start your \
                 answer with the prompt 'The answer is '.\nQ: {}?",
                item.input
            ),
            // Full-width colon, as in the OpenCompass config.
            GeneralTask::Csum => format!(
                "Document\u{ff1a}{}\nBased on the previous text, provide a brief single summary:",
                item.input
            ),
            GeneralTask::Knowledge => item.input.clone(),
        }
    }

    /// Text that opens the model's turn (OpenCompass's BOT prompt), if any.
    pub fn answer_prefix(self) -> Option<&'static str> {
        match self {
            GeneralTask::Kqa => Some("A:"),
            GeneralTask::Csum | GeneralTask::Knowledge => None,
        }
    }

    /// Default generation length: OpenCompass's `max_out_len` 50 for TriviaQA; CSum keeps only
    /// the first line, which rarely needs more than 64 tokens; knowledge answers are longer.
    pub fn default_max_new_tokens(self) -> usize {
        match self {
            GeneralTask::Kqa => 50,
            GeneralTask::Csum => 64,
            GeneralTask::Knowledge => 128,
        }
    }

    /// Scores one response against the item's references (0–1): TriviaQA correctness, or
    /// ROUGE-1 F of the post-processed prediction.
    pub fn score(self, response: &str, item: &GeneralItem) -> ItemScore {
        match self {
            GeneralTask::Kqa => {
                let prediction = triviaqa_prediction(response);
                let correct = contains_an_alias(&prediction, &item.references);
                ItemScore {
                    prediction,
                    score: if correct { 1.0 } else { 0.0 },
                }
            }
            GeneralTask::Csum => {
                let prediction = xsum_postprocess(response);
                let score = rouge_best(&prediction, &item.references);
                ItemScore { prediction, score }
            }
            GeneralTask::Knowledge => {
                let prediction = response.trim().to_string();
                let score = rouge_best(&prediction, &item.references);
                ItemScore { prediction, score }
            }
        }
    }
}

impl std::str::FromStr for GeneralTask {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GeneralTask::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown task `{s}` (kqa, csum, knowledge)"))
    }
}

fn rouge_best(prediction: &str, references: &[String]) -> f64 {
    references
        .iter()
        .map(|r| rouge_n(prediction, r, 1).fmeasure)
        .fold(0.0, f64::max)
}

/// One evaluation item: a question or document and its reference answers or summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneralItem {
    /// Stable id (the dataset's id, or the 0-based line/record index).
    pub id: String,
    /// The question (TriviaQA, knowledge) or document (XSum).
    pub input: String,
    /// Gold aliases (TriviaQA) or the reference summary / answer.
    pub references: Vec<String>,
}

/// A scored response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemScore {
    /// The post-processed prediction that was scored.
    pub prediction: String,
    /// 1/0 for KQA; ROUGE-1 F for CSum and the knowledge proxy.
    pub score: f64,
}

/// One line of a general-task run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneralItemResult {
    /// The item's id.
    pub id: String,
    /// The raw response.
    pub response: String,
    /// The prediction after the task's post-processing.
    pub prediction: String,
    /// The item's score (0–1).
    pub score: f64,
}

/// The task score: `100 × mean(score)`.
pub fn task_score(results: &[GeneralItemResult]) -> Option<f64> {
    (!results.is_empty())
        .then(|| 100.0 * results.iter().map(|r| r.score).sum::<f64>() / results.len() as f64)
}

// --- OpenCompass post-processing ------------------------------------------------------------

/// Python's `\s` for `str` patterns: Unicode whitespace plus the ASCII separators 0x1c–0x1f.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `\w` for `str` patterns: alphanumerics and `_`.
fn is_py_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// OpenCompass `general_postprocess`: cut at the first newline, period or comma; drop
/// punctuation (`[^\w\s]`); drop the words a / an / the (any case); collapse whitespace; strip.
pub fn general_postprocess(text: &str) -> String {
    let truncated = text.split(['\n', '.', ',']).next().unwrap_or("");
    let kept: String = truncated
        .chars()
        .filter(|&c| is_py_word(c) || is_py_space(c))
        .collect();
    // Only word characters and whitespace are left, so `\b(a|an|the)\b` matches whole runs of
    // word characters.
    let mut out = String::with_capacity(kept.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if !matches!(word.to_lowercase().as_str(), "a" | "an" | "the") {
            out.push_str(word);
        }
        word.clear();
    };
    for c in kept.chars() {
        if is_py_word(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out.split(is_py_space)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `TriviaQAEvaluator`'s prediction: the first line, lowercased, the text after the last
/// `answer is`, then after the last `a:`, then after the last `answer:`, stripped and
/// [`general_postprocess`]ed.
pub fn triviaqa_prediction(response: &str) -> String {
    let first = py_strip(response)
        .split('\n')
        .next()
        .unwrap_or("")
        .to_lowercase();
    let mut p = first.as_str();
    for marker in ["answer is", "a:", "answer:"] {
        p = p.rsplit(marker).next().unwrap_or(p);
    }
    general_postprocess(py_strip(p))
}

/// Whether a response answers correctly: some post-processed, lowercased gold alias is
/// contained in the prediction (OpenCompass's current rule; an older one used equality).
pub fn triviaqa_correct(response: &str, answers: &[String]) -> bool {
    contains_an_alias(&triviaqa_prediction(response), answers)
}

fn contains_an_alias(prediction: &str, answers: &[String]) -> bool {
    answers
        .iter()
        .any(|a| prediction.contains(&general_postprocess(a).to_lowercase()))
}

/// OpenCompass's `Xsum` post-processor: the first line of the stripped text, stripped.
pub fn xsum_postprocess(response: &str) -> String {
    py_strip(py_strip(response).split('\n').next().unwrap_or("")).to_string()
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

// --- ROUGE (rouge_score's DefaultTokenizer, no stemmer) --------------------------------------

/// `rouge_score`'s default tokenization: lowercase, every run of characters outside `[a-z0-9]`
/// is a separator.
pub fn rouge_tokenize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Precision, recall and F of one ROUGE comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RougeScore {
    /// Overlap / prediction n-grams.
    pub precision: f64,
    /// Overlap / reference n-grams.
    pub recall: f64,
    /// Harmonic mean (0 when both are 0).
    pub fmeasure: f64,
}

/// ROUGE-N of a prediction against a target, as `rouge_scorer.RougeScorer(["rougeN"])`.
pub fn rouge_n(prediction: &str, target: &str, n: usize) -> RougeScore {
    use std::collections::HashMap;
    let grams = |tokens: &[String]| -> HashMap<Vec<String>, usize> {
        let mut counts = HashMap::new();
        if n > 0 && tokens.len() >= n {
            for w in tokens.windows(n) {
                *counts.entry(w.to_vec()).or_insert(0) += 1;
            }
        }
        counts
    };
    let p = grams(&rouge_tokenize(prediction));
    let t = grams(&rouge_tokenize(target));
    let overlap: usize = t
        .iter()
        .map(|(g, &c)| c.min(p.get(g).copied().unwrap_or(0)))
        .sum();
    let p_total: usize = p.values().sum();
    let t_total: usize = t.values().sum();
    let precision = overlap as f64 / p_total.max(1) as f64;
    let recall = overlap as f64 / t_total.max(1) as f64;
    let fmeasure = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    RougeScore {
        precision,
        recall,
        fmeasure,
    }
}

// --- Loaders ---------------------------------------------------------------------------------

/// Why a general-task data file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: {message}")]
pub struct GeneralDataError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn data_error(path: &Path, line: usize, message: impl Into<String>) -> GeneralDataError {
    GeneralDataError {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// OpenCompass XSum JSONL (`id`, `dialogue`, `summary`); blank lines are skipped.
pub fn parse_xsum_jsonl(text: &str, path: &Path) -> Result<Vec<GeneralItem>, GeneralDataError> {
    #[derive(Deserialize)]
    struct Row {
        id: serde_json::Value,
        dialogue: String,
        summary: String,
    }
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Row =
            serde_json::from_str(line).map_err(|e| data_error(path, i + 1, e.to_string()))?;
        let id = match row.id {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        items.push(GeneralItem {
            id,
            input: row.dialogue,
            references: vec![row.summary],
        });
    }
    Ok(items)
}

/// TriviaQA in either OpenCompass layout: `trivia-dev.qa.csv` (tab-separated `question`, then
/// a Python list literal of aliases) or JSONL with `question` and `answer` (a list of aliases
/// or one string). The id is the 0-based row index.
pub fn parse_triviaqa(text: &str, path: &Path) -> Result<Vec<GeneralItem>, GeneralDataError> {
    let jsonl = path
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "json");
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (question, answers) = if jsonl {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| data_error(path, i + 1, e.to_string()))?;
            let question = v
                .get("question")
                .and_then(|q| q.as_str())
                .ok_or_else(|| data_error(path, i + 1, "missing string field `question`"))?;
            let answers = match v.get("answer") {
                Some(serde_json::Value::String(s)) => vec![s.clone()],
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| data_error(path, i + 1, "`answer` must hold strings"))?,
                _ => {
                    return Err(data_error(
                        path,
                        i + 1,
                        "missing field `answer` (a string or a list of strings)",
                    ));
                }
            };
            (question.to_string(), answers)
        } else {
            let fields = split_tsv(line).map_err(|m| data_error(path, i + 1, m))?;
            if fields.len() != 2 {
                return Err(data_error(
                    path,
                    i + 1,
                    format!(
                        "expected 2 tab-separated fields (question, answers), found {}",
                        fields.len()
                    ),
                ));
            }
            let answers = parse_python_str_list(&fields[1])
                .map_err(|m| data_error(path, i + 1, format!("answers: {m}")))?;
            (fields[0].clone(), answers)
        };
        if answers.is_empty() {
            return Err(data_error(path, i + 1, "no gold answers"));
        }
        items.push(GeneralItem {
            id: items.len().to_string(),
            input: question,
            references: answers,
        });
    }
    Ok(items)
}

/// One line of Python `csv.reader(delimiter='\t')`: fields may be quoted with `"` (doubled
/// inside).
fn split_tsv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("unterminated quoted field".into()),
                }
            }
            // csv keeps anything after the closing quote up to the delimiter.
            while let Some(&c) = chars.peek() {
                if c == '\t' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '\t' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
        match chars.next() {
            Some('\t') => continue,
            _ => return Ok(fields),
        }
    }
}

/// Parses a Python list of string literals, e.g. `['Paris', "Paris, France"]`, with the common
/// escapes (`\\ \' \" \n \t \r \xNN \uNNNN`).
pub(crate) fn parse_python_str_list(text: &str) -> Result<Vec<String>, String> {
    let mut chars = text.trim().chars().peekable();
    if chars.next() != Some('[') {
        return Err("expected a Python list starting with `[`".into());
    }
    let mut out = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            Some(']') => break,
            Some(q @ ('\'' | '"')) => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string literal".into()),
                        Some(c) if c == q => break,
                        Some('\\') => match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('r') => s.push('\r'),
                            Some('x') => s.push(hex_char(&mut chars, 2)?),
                            Some('u') => s.push(hex_char(&mut chars, 4)?),
                            Some('U') => s.push(hex_char(&mut chars, 8)?),
                            Some(c @ ('\\' | '\'' | '"')) => s.push(c),
                            Some(c) => {
                                s.push('\\');
                                s.push(c);
                            }
                            None => return Err("dangling backslash".into()),
                        },
                        Some(c) => s.push(c),
                    }
                }
                out.push(s);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                match chars.next() {
                    Some(',') => continue,
                    Some(']') => break,
                    other => return Err(format!("expected `,` or `]`, found {other:?}")),
                }
            }
            other => return Err(format!("expected a string literal, found {other:?}")),
        }
    }
    Ok(out)
}

fn hex_char(chars: &mut impl Iterator<Item = char>, n: usize) -> Result<char, String> {
    let hex: String = chars.take(n).collect();
    u32::from_str_radix(&hex, 16)
        .ok()
        .and_then(char::from_u32)
        .ok_or_else(|| format!("bad escape \\x/u{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postprocess_cuts_strips_articles_and_punctuation() {
        assert_eq!(
            general_postprocess("The Eiffel Tower, Paris"),
            "Eiffel Tower"
        );
        assert_eq!(
            general_postprocess("  an   apple's  core!  "),
            "apples core"
        );
        assert_eq!(
            general_postprocess("Theatre at the THE end"),
            "Theatre at end"
        );
        assert_eq!(general_postprocess("Washington D.C."), "Washington D");
    }

    #[test]
    fn triviaqa_takes_the_text_after_the_last_marker_on_the_first_line() {
        assert_eq!(
            triviaqa_prediction(" The answer is Mount Everest.\nQ: next?"),
            "mount everest"
        );
        assert!(triviaqa_correct(
            "A: The answer is the Beatles",
            &["The Beatles".into()]
        ));
        assert!(!triviaqa_correct(
            "I don't know\nThe answer is Paris",
            &["Paris".into()]
        ));
    }

    #[test]
    fn tsv_and_python_lists_parse_with_quotes_and_escapes() {
        let text = "Who wrote Hamlet\t['William Shakespeare', \"Shakespeare's\", 'W\\'s']\n";
        let items = parse_triviaqa(text, Path::new("trivia-dev.qa.csv")).unwrap();
        assert_eq!(
            items[0].references,
            vec!["William Shakespeare", "Shakespeare's", "W's"]
        );
        let bad = parse_triviaqa("q\t['a'\n", Path::new("x.csv")).unwrap_err();
        assert_eq!(bad.line, 1);
        assert!(bad.to_string().contains("x.csv:1"), "{bad}");
    }

    #[test]
    fn rouge_matches_hand_counts() {
        let s = rouge_n("The cat, the cat!", "the cat sat on the mat", 1);
        // prediction {the:2, cat:2}, target {the:2, cat:1, sat, on, mat}: overlap 3.
        assert!((s.precision - 0.75).abs() < 1e-12);
        assert!((s.recall - 0.5).abs() < 1e-12);
        assert_eq!(rouge_n("", "anything", 1).fmeasure, 0.0);
        assert_eq!(
            rouge_tokenize("Don't STOP-me 42x"),
            ["don", "t", "stop", "me", "42x"]
        );
    }
}
