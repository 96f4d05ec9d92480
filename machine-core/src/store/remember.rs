//! Idempotency keys as stores keep them: written in the same commit as the
//! change they name, so a request sent again finds the outcome of the first
//! instead of applying its command twice.

use std::sync::Arc;

/// An idempotency key to store with a [`Commit`](super::Commit): the caller's
/// key, a fingerprint of what it asked for, and the outcome to hand back when
/// the key comes again.
///
/// A store writes it in the same transaction as the commit's writes, and
/// refuses the whole commit with [`StoreError::Conflict`](crate::StoreError::Conflict)
/// when `(machine, id, key)` is already stored and has not expired at `at`:
/// two requests with one key then commit once, and the loser's retry finds
/// the winner's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remember<'a> {
    /// The machine of the record the key belongs to.
    pub machine: &'a str,
    /// The record's id.
    pub id: &'a str,
    /// The caller's key.
    pub key: &'a str,
    /// A hash of the request (the command's JSON), so the same key with
    /// another request can be told apart.
    pub fingerprint: u64,
    /// The record's version after the keyed change.
    pub version: u64,
    /// The kind of the state the keyed change wrote (`None` when the key
    /// names no state: a decision's).
    pub kind: Option<&'a str>,
    /// That state as JSON.
    pub state: Option<String>,
    /// When the key was written, in milliseconds since the Unix epoch.
    pub at: u64,
    /// From when on the key is forgotten, in the same unit.
    pub expires_at: u64,
}

/// An idempotency key as stored (see [`Store::recall`](super::Store::recall)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    /// The request's fingerprint ([`Remember::fingerprint`]).
    pub fingerprint: u64,
    /// The record's version after the keyed change.
    pub version: u64,
    /// The kind of the state it wrote.
    pub kind: Option<Arc<str>>,
    /// That state as JSON.
    pub state: Option<Arc<str>>,
    /// When it was written, in milliseconds since the Unix epoch.
    pub at: u64,
    /// From when on it is forgotten: a key read after this is as good as
    /// absent, and a commit may store the key anew.
    pub expires_at: u64,
}

impl Remembered {
    /// Whether the key still stands at `now` (milliseconds since the epoch).
    #[must_use]
    pub fn live(&self, now: u64) -> bool {
        now < self.expires_at
    }
}
