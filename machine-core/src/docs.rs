//! The repository's Markdown, compiled as doctests: every ```rust block of
//! `README.md` and `docs/*.md` is a doctest of one of these modules, so
//! `cargo test --workspace --all-features` fails when a snippet no longer
//! compiles (or, unless it is `no_run`, no longer runs). The modules exist
//! only under `cfg(doctest)`, which rustdoc sets while collecting doctests:
//! normal builds, `cargo doc` and `cargo package` never read these files.
//! Snippets that need the guide's order machine include
//! `docs/snippets/order.rs` in a hidden line.

#[doc = include_str!("../../README.md")]
mod readme {}

#[doc = include_str!("../../docs/guide.md")]
mod guide {}
