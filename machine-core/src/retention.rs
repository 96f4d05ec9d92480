//! Keeping a store from growing forever: finished records removed, with
//! their history and idempotency keys, optionally archived first; old
//! history pruned. Each through the store's own guarantees: a record is
//! removed whole or not at all, only if it is still as it was read, and
//! the change feed says what was removed; pruning takes the feed's oldest
//! entries only, and a consumer behind them is told, never silently
//! skipped.
//!
//! - [`Runner::remove`](crate::Runner::remove) removes one record in a
//!   `#[state(terminal)]` state: a request handler's `DELETE`.
//! - [`Runner::remove_terminal`](crate::Runner::remove_terminal) removes
//!   every terminal record a [`Terminal`] names (finished before a time, of
//!   some kinds), handing each to an [`Archive`] first if given one: a
//!   periodic job.
//! - [`Store::prune_history`](crate::store::Store::prune_history) deletes
//!   history entries older than a bound, store-wide, in batches.
//! - [`Store::remove`](crate::store::Store::remove) is the conditional
//!   removal all of them rest on, for tools.
//!
//! `docs/stores.md` ("Retention") says how each store does it and why.

pub use crate::runner::retention::{Archive, ArchiveError, Archived, NoArchive, Progress, Removed, Terminal};
