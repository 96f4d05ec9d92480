//! What change-feed processors keep in the store they read: a checkpoint
//! per processor name (the cursor it has processed up to, and the lease
//! that lets one instance at a time deliver), and the entries its handler
//! gave up on, parked as dead letters until someone re-drives them.
//!
//! Kept in the same store as the feed, so a processor needs nothing else
//! to resume after a crash, and every instance of a service sees the same
//! lease.

use super::Feed;
use super::record::Cursor;
use crate::error::StoreError;
use std::future::Future;

/// A processor's stored position and lease
/// ([`Checkpoints::checkpoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last change the processor has processed (delivered or parked):
    /// it resumes after this one.
    pub cursor: Cursor,
    /// The instance that holds (or last held) the lease.
    pub owner: String,
    /// Until when the lease stands, in milliseconds since the Unix epoch by
    /// the holder's clock; after it any instance may take the lease over.
    pub lease_until: u64,
    /// Grows by one on every save: what a save compares, so two instances
    /// can never both believe they hold the lease.
    pub version: u64,
}

/// A feed entry a processor's handler gave up on (or could not decode),
/// kept until it is re-driven ([`Checkpoints::park`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The processor's name.
    pub processor: String,
    /// Where the entry is in the feed.
    pub cursor: Cursor,
    /// The entry's machine.
    pub machine: String,
    /// The entry's record id.
    pub id: String,
    /// The record version the entry wrote.
    pub version: u64,
    /// Why it was parked: the handler's last error, or why it could not be
    /// decoded.
    pub error: String,
    /// How many times the handler ran on it (0: it could not be decoded).
    pub attempts: u32,
    /// When it was parked, in milliseconds since the Unix epoch.
    pub parked_at: u64,
}

/// Processor checkpoints, leases and dead letters, stored beside the feed
/// they belong to: what a [`process::Processor`](crate::process::Processor)
/// needs from its store.
///
/// Every method has a default that fails with [`StoreError::Unsupported`],
/// so a store of your own still compiles; this crate's memory, SQLite,
/// PostgreSQL and etcd stores implement them all.
pub trait Checkpoints: Feed {
    /// The checkpoint of processor `name`, or `None` if it never saved one.
    fn checkpoint(&self, name: &str) -> impl Future<Output = Result<Option<Checkpoint>, StoreError>> + Send {
        let _ = name;
        std::future::ready(Err(StoreError::Unsupported { what: "processor checkpoints" }))
    }

    /// Saves processor `name`'s checkpoint if it is still at
    /// `expected_version` (0: there must be none yet), as version
    /// `expected_version + 1`: a compare-and-set. Returns whether it saved;
    /// `false` means another instance saved in between (took the lease
    /// over), and nothing was written.
    fn save_checkpoint(
        &self,
        name: &str,
        expected_version: u64,
        cursor: Cursor,
        owner: &str,
        lease_until: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = (name, expected_version, cursor, owner, lease_until);
        std::future::ready(Err(StoreError::Unsupported { what: "processor checkpoints" }))
    }

    /// Parks `letter`, replacing a dead letter of the same processor and
    /// cursor (the same entry parked again).
    fn park(&self, letter: &DeadLetter) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = letter;
        std::future::ready(Err(StoreError::Unsupported { what: "dead letters" }))
    }

    /// Up to `limit` dead letters of `processor` with cursors after `after`
    /// (all when `None`), in cursor order: pass the last cursor of a page
    /// to get the next.
    fn dead_letters(
        &self,
        processor: &str,
        after: Option<Cursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send {
        let _ = (processor, after, limit);
        std::future::ready(Err(StoreError::Unsupported { what: "dead letters" }))
    }

    /// Removes `processor`'s dead letter at `cursor`; returns whether there
    /// was one.
    fn unpark(&self, processor: &str, cursor: Cursor) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = (processor, cursor);
        std::future::ready(Err(StoreError::Unsupported { what: "dead letters" }))
    }
}
