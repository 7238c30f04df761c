//! SafeEdit Studio core: the types shared by the engine, the server and the browser. Pure Rust,
//! compiles to WebAssembly (no burn, no tokio, no database).
//!
//! ```
//! use safeedit_core::PromptFormat;
//!
//! let format = PromptFormat::chat();
//! assert_eq!(format.label(), "chat template");
//! let json = serde_json::to_string(&format).unwrap();
//! assert_eq!(serde_json::from_str::<PromptFormat>(&json).unwrap(), format);
//! ```

mod model;

pub use model::{ModelSummary, PromptFormat};
