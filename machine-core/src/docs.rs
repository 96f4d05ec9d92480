//! The repository's Markdown, compiled as doctests: every ```rust block of
//! `README.md` and `docs/*.md` is a doctest of one of these modules, so
//! `cargo test --workspace --all-features` fails when a snippet no longer
//! compiles (or, unless it is `no_run`, no longer runs). The modules exist
//! only under `cfg(doctest)`, which rustdoc sets while collecting doctests:
//! normal builds, `cargo doc` and `cargo package` never read these files.
//!
//! Snippets that need a whole machine include one from `docs/snippets/` in a
//! hidden line (`# include!("snippets/order.rs");`); rustdoc resolves the
//! path relative to the Markdown file, so the line also reads right on
//! GitHub, where hidden lines show.

#[doc = include_str!("../../README.md")]
mod readme {}

#[doc = include_str!("../../docs/guide.md")]
mod guide {}

#[doc = include_str!("../../docs/decisions.md")]
mod decisions {}

#[doc = include_str!("../../docs/request-handlers.md")]
mod request_handlers {}
#[doc = include_str!("../../docs/evolution.md")]
mod evolution {}

#[doc = include_str!("../../docs/living-machines.md")]
mod living_machines {}

#[doc = include_str!("../../docs/retry-patterns.md")]
mod retry_patterns {}

#[doc = include_str!("../../docs/performance.md")]
mod performance {}

#[doc = include_str!("../../docs/retry-contention.md")]
mod retry_contention {}

#[cfg(all(feature = "sqlite", feature = "postgres"))]
#[doc = include_str!("../../docs/stores.md")]
mod stores {}

#[cfg(feature = "testing")]
#[doc = include_str!("../../docs/testing.md")]
mod testing {}

#[cfg(feature = "observe")]
#[doc = include_str!("../../docs/observability.md")]
mod observability {}
