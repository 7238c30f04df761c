//! The paper's baselines (docs/method.md §Baselines): FT-L and Self-Reminder, which need no
//! training set, and SFT / DPO ([`train`]), which fine-tune every parameter (or LoRA adapters,
//! [`lora`]) on SafeEdit pairs. DINM's ablations (wo/Location, wo/SyPrompt, wo/Tune) are DINM
//! settings, see [`crate::dinm::random_layer`] and [`crate::dinm::with_suffix`].

pub mod ftl;
pub mod lora;
pub mod self_reminder;
pub mod train;

pub use ftl::{FtlConfig, FtlEdit, FtlTokens, ftl_edit, ftl_edit_stoppable, ftl_tokens};
pub use lora::{LoraAdapters, LoraConfig};
pub use self_reminder::{SELF_REMINDER_SUFFIX, SELF_REMINDER_SYSTEM, self_reminder};
pub use train::{
    Objective, OptimizerKind, StepLog, TrainConfig, TrainExample, TrainedModelCard, Trainer,
    train_examples,
};
