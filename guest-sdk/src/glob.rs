//! Glob patterns for names in settings (tools, models, pipelines, agents):
//! the dialect of `arbiter-glob`, the one the host matches a manifest's
//! scope with, so a pattern means the same in a scope and in a policy's
//! settings.
//!
//! `*` matches any run of characters (`**` too), `?` exactly one, `\`
//! makes the next character literal; everything else matches itself,
//! case-sensitively. Every string is a valid pattern. See
//! `docs/authoring.md#glob-patterns`.

pub use arbiter_glob::{any_matches, escape, matches};
