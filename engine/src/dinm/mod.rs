//! DINM: Detoxifying with Intraoperative Neural Monitoring (Wang et al., *Detoxifying Large
//! Language Models via Knowledge Editing*, ACL 2024, arXiv 2403.14472), following the reference
//! implementation in zjunlp/EasyEdit (`easyeditor/editors/safety_editor.py`,
//! `easyeditor/models/dinm/dinm_main.py`) as specified in research/dinm_spec.md §2.
//!
//! - [`locate`]: the toxic layer, from the hidden-state distance between the safe and the unsafe
//!   response (§2.3).

pub mod locate;

pub use locate::{LocateResult, locate_toxic_layer};
