//! The authoring guide (`docs/authoring.md`), included so that its Rust
//! snippets run as this crate's doc-tests and fail when the guide and the
//! API drift apart.
#![doc = include_str!("../../docs/authoring.md")]
