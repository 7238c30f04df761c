//! DINM: Detoxifying with Intraoperative Neural Monitoring (Wang et al., *Detoxifying Large
//! Language Models via Knowledge Editing*, ACL 2024, arXiv 2403.14472), following the reference
//! implementation in zjunlp/EasyEdit (`easyeditor/editors/safety_editor.py`,
//! `easyeditor/models/dinm/dinm_main.py`) as specified in docs/method.md §The edit.
//!
//! - [`locate`]: the toxic layer, from the hidden-state distance between the safe and the unsafe
//!   response (docs/method.md §Location).
//! - [`edit`]: tuning that layer's `down_proj` on the instance (docs/method.md §The edit).
//! - [`config`]: hyperparameters with EasyEdit's presets, and flags for where the paper and the
//!   release differ (docs/method.md §Paper, release and the flags).

pub mod config;
pub mod edit;
pub mod locate;

/// The edit's result type, re-exported where it was first defined.
pub use crate::delta::LayerDelta;
pub use config::{DinmConfig, FamilyPresets, ModelFamily, SUFFIX_SYSTEM_PROMPT, random_layer};
pub use edit::{
    DinmEdit, DinmEvent, EditTokens, StepLoss, dinm_edit, dinm_edit_stoppable, edit_tokens,
    with_suffix,
};
pub use locate::{LocateResult, locate_toxic_layer};
