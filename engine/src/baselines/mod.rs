//! The paper's baselines that need no training set (dinm_spec.md §4): FT-L and Self-Reminder.
//! DINM's ablations (wo/Location, wo/SyPrompt, wo/Tune) are DINM settings, see
//! [`crate::dinm::random_layer`] and [`crate::dinm::with_suffix`].

pub mod ftl;
pub mod self_reminder;

pub use ftl::{FtlConfig, FtlEdit, FtlTokens, ftl_edit, ftl_tokens};
pub use self_reminder::{SELF_REMINDER_SUFFIX, SELF_REMINDER_SYSTEM, self_reminder};
