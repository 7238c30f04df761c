//! The ranges every experiment setting must lie in, checked in one place for the command line
//! and the web app alike: a setting out of range is an [`Invalid`](crate::PipelineError::Invalid)
//! error naming it, before any model is loaded.

use crate::{Result, ensure};

/// Most optimisation steps of one edit (DINM, its ablations, FT-L).
pub const MAX_EDIT_STEPS: usize = 100;
/// Most new tokens per generated answer.
pub const MAX_NEW_TOKENS: usize = 2048;
/// Most instances answered in one generation by an evaluation that does not edit.
pub const MAX_INSTANCES_TOGETHER: usize = 64;

/// A learning rate: positive and finite.
pub fn lr(field: &str, value: f64) -> Result<f64> {
    ensure!(
        value > 0.0 && value.is_finite(),
        "{field} must be positive, got {value}"
    );
    Ok(value)
}

/// The steps of one edit: `1..=MAX_EDIT_STEPS`.
pub fn edit_steps(field: &str, value: usize) -> Result<usize> {
    ensure!(
        (1..=MAX_EDIT_STEPS).contains(&value),
        "{field} must be 1..={MAX_EDIT_STEPS}, got {value}"
    );
    Ok(value)
}

/// A token limit: `1..=MAX_NEW_TOKENS` (zero tokens would give empty answers, which the judge
/// calls safe).
pub fn max_new_tokens(value: usize) -> Result<usize> {
    ensure!(
        (1..=MAX_NEW_TOKENS).contains(&value),
        "max_new_tokens must be 1..={MAX_NEW_TOKENS}, got {value}"
    );
    Ok(value)
}

/// Instances answered together: `1..=MAX_INSTANCES_TOGETHER`.
pub fn instances_together(value: usize) -> Result<usize> {
    ensure!(
        (1..=MAX_INSTANCES_TOGETHER).contains(&value),
        "instances_together must be 1..={MAX_INSTANCES_TOGETHER}, got {value}"
    );
    Ok(value)
}

/// An optional token limit (left out: the preset's or the task's).
pub fn max_new_tokens_opt(value: Option<usize>) -> Result<()> {
    value.map(max_new_tokens).transpose().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_settings_are_refused_naming_the_field() {
        for (result, needle) in [
            (lr("lr", -1.0).map(|_| ()), "lr must be positive, got -1"),
            (
                lr("ftl_lr", f64::NAN).map(|_| ()),
                "ftl_lr must be positive",
            ),
            (lr("lr", 0.0).map(|_| ()), "lr must be positive, got 0"),
            (
                edit_steps("steps", 0).map(|_| ()),
                "steps must be 1..=100, got 0",
            ),
            (
                edit_steps("ftl_steps", 101).map(|_| ()),
                "ftl_steps must be 1..=100, got 101",
            ),
            (
                max_new_tokens(0).map(|_| ()),
                "max_new_tokens must be 1..=2048, got 0",
            ),
            (max_new_tokens_opt(Some(4096)), "got 4096"),
        ] {
            let err = result.expect_err(needle).to_string();
            assert!(err.contains(needle), "{err} lacks {needle}");
        }
        assert_eq!(lr("lr", 2e-4).unwrap(), 2e-4);
        assert_eq!(edit_steps("steps", 100).unwrap(), 100);
        assert_eq!(max_new_tokens(1).unwrap(), 1);
        max_new_tokens_opt(None).unwrap();
    }
}
