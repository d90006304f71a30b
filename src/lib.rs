//! `exp`: run LLM prompt experiments and keep every run as immutable, content-addressed history.
//!
//! The library never prints, never exits and never reads the terminal: it returns data and typed
//! errors, and the `exp` binary (`src/cli/`) decides how they look. The compiler holds it to
//! that (`print_stdout`, `print_stderr`); tests/architecture.rs holds the modules to their
//! layers (docs/DEVELOPING.md).
#![deny(clippy::print_stdout, clippy::print_stderr)]
pub mod diff;
pub mod display;
pub mod error;
pub mod eval;
pub mod history;
pub mod import;
pub mod progress;
pub mod provenance;
pub mod remote;
pub mod runfiles;
pub mod stats;
pub mod store;
pub mod view;
