//! Where records live: one small async trait, shaped for multi-record commits
//! with read checks and an appended history, and the stores that implement it.
//!
//! A store moves JSON and versions, never typed states: the
//! [`Runner`](crate::Runner) encodes and decodes, so a store knows nothing of
//! user machines and one store can hold any number of them.

mod key;
mod memory;
mod record;

pub use key::{MAX_KEY_LEN, validate_id, validate_machine};
pub use memory::Memory;
pub use record::{Change, Check, Commit, Record, Write};

use crate::error::StoreError;
use std::future::Future;

/// A place that keeps versioned records and their history.
///
/// Every implementation gives the same guarantees, which the conformance tests
/// check:
/// - [`commit`](Store::commit) is all or nothing: every [`Write`] and [`Check`]
///   must find the version it expects, or nothing is written and the first
///   mismatch is returned as [`StoreError::Conflict`]. Writes to one record
///   within a commit apply in order (the second expects the first's version).
/// - a write stores version `expected + 1`; `expected == 0` creates the record.
/// - each write appends one [`Change`] to the history in the same commit.
/// - ids and machine names are validated ([`validate_id`]), never spliced into
///   queries, and stored verbatim.
pub trait Store: Send + Sync + 'static {
    /// The record `(machine, id)`, or `None` if it was never written.
    fn load(&self, machine: &str, id: &str) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// Applies `commit` atomically (see the trait docs).
    fn commit(&self, commit: Commit<'_>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The changes of record `(machine, id)`, oldest first.
    fn history(&self, machine: &str, id: &str) -> impl Future<Output = Result<Vec<Change>, StoreError>> + Send;
}
