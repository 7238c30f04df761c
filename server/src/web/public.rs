//! What visitors see of the server's files: records name a model, data file or folder by its
//! absolute path on the server (kept in the database and the server's log for the operator);
//! pages and downloads show only its last component (the model's file name, beside its
//! checksum).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The keys whose values are server paths.
const PATH_KEYS: [&str; 9] = [
    "model_path",
    "model",
    "source",
    "base_source",
    "data",
    "out",
    "judge_dir",
    "safeedit_dir",
    "edit_data",
];

/// `path`'s last component when it is an absolute path (`/srv/models/x.gguf` -> `x.gguf`).
pub fn file_name(path: &str) -> Option<String> {
    let absolute = path.starts_with('/')
        || path.starts_with("~/")
        || (path.len() > 2 && path.as_bytes()[1] == b':' && path.as_bytes()[2] == b'\\');
    if !absolute {
        return None;
    }
    path.trim_end_matches(['/', '\\'])
        .rsplit(['/', '\\'])
        .next()
        .filter(|name| !name.is_empty())
        .map(str::to_string)
}

/// `value` with every server path under a [path key](PATH_KEYS) cut to its last component,
/// at any depth (the run description inside a record too).
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                match item {
                    Value::String(text) if PATH_KEYS.contains(&key.as_str()) => {
                        if let Some(name) = file_name(text) {
                            *text = name;
                        }
                    }
                    // A judge's one-line description can name its folder ("… from /srv/x").
                    Value::String(text) if key == "description" => {
                        *text = text
                            .split(' ')
                            .map(|word| file_name(word).unwrap_or_else(|| word.to_string()))
                            .collect::<Vec<_>>()
                            .join(" ");
                    }
                    other => redact(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// A record as visitors see it (see the module's documentation). A record that would not read
/// back after the cut is returned as it was.
pub fn record<T: Serialize + DeserializeOwned>(record: T) -> T {
    let Ok(mut value) = serde_json::to_value(&record) else {
        return record;
    };
    redact(&mut value);
    serde_json::from_value(value).unwrap_or(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_become_file_names_and_nothing_else_changes() {
        assert_eq!(
            file_name("/home/alice/models/x.gguf").as_deref(),
            Some("x.gguf")
        );
        assert_eq!(
            file_name("/srv/models/SmolLM2/").as_deref(),
            Some("SmolLM2")
        );
        assert_eq!(file_name("tiny"), None);
        assert_eq!(file_name("test-sample"), None);
        let shown = record(serde_json::json!({
            "model_path": "/home/alice/models/x.gguf",
            "model": "SmolLM2",
            "run": {"data": "/data/safeedit/SafeEdit_test.json", "model": "/m/y"},
            "outcome": {"comparisons": [{"edited": "/bin/sh is a shell", "model": "tiny"}]},
            "judge": {"description": "classifier from /srv/judges/roberta-safeedit, 2 labels"},
        }));
        assert_eq!(
            shown,
            serde_json::json!({
                "model_path": "x.gguf",
                "model": "SmolLM2",
                "run": {"data": "SafeEdit_test.json", "model": "y"},
                "outcome": {"comparisons": [{"edited": "/bin/sh is a shell", "model": "tiny"}]},
                "judge": {"description": "classifier from roberta-safeedit, 2 labels"},
            })
        );
    }
}
