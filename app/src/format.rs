//! Formatting shared by the pages that show metrics, and reading the forms' number fields.

use safeedit_core::Category;

/// A metric with two decimals, or a dash when there is none.
pub(crate) fn score(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2}"))
}

/// The label of a results slice: all instances, a category's display name, or an attack.
pub(crate) fn slice_label(group: &str, value: &str) -> String {
    match group {
        "all" => "all instances".into(),
        "category" => Category::from_dataset_str(value)
            .map_or(value.to_string(), |c| c.display_name().to_string()),
        _ => value.to_string(),
    }
}

/// A form's number field: `None` when empty, an error naming the field when it is not a number
/// of the field's type.
pub(crate) fn optional_number<T: std::str::FromStr>(
    field: &str,
    text: &str,
) -> Result<Option<T>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{field}: `{text}` is not a valid number"))
}
