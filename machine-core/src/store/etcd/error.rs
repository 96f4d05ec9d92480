//! What can go wrong talking to etcd, as typed values: its limits, a feed
//! cursor behind a compaction, an outage, and a commit whose outcome is
//! unknown. Classified here once, so no caller ever parses a server's text.

use crate::error::StoreError;
use std::sync::Arc;

/// Why the etcd store failed, reached through [`StoreError::Backend`]'s
/// source (`error.source()` and `downcast_ref::<EtcdError>()`).
///
/// ```
/// use machine_core::StoreError;
/// use machine_core::store::EtcdError;
///
/// fn too_big(error: &StoreError) -> bool {
///     std::error::Error::source(error)
///         .and_then(|source| source.downcast_ref::<EtcdError>())
///         .is_some_and(|etcd| matches!(etcd, EtcdError::TooManyOperations { .. } | EtcdError::RequestTooLarge { .. }))
/// }
/// # let _ = too_big;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// The commit needs more operations in one transaction than the cluster
    /// allows (etcd's `--max-txn-ops`, 128 by default). Not retryable: split
    /// the decision or raise the server's limit and
    /// [`EtcdOptions::max_txn_ops`](super::EtcdOptions::max_txn_ops).
    #[error("a commit of {operations} operations exceeds etcd's limit of {} per transaction", limit_text(*limit))]
    TooManyOperations {
        /// The operations the commit needs.
        operations: usize,
        /// The limit, when known (`None`: the server refused with a limit
        /// lower than the one configured).
        limit: Option<usize>,
    },
    /// The request is larger than the cluster accepts (etcd's
    /// `--max-request-bytes`, 1.5 MiB by default). Not retryable.
    #[error("a request of about {bytes} bytes exceeds etcd's limit of {} bytes", limit_text(*limit))]
    RequestTooLarge {
        /// The request's approximate size.
        bytes: usize,
        /// The limit, when known.
        limit: Option<usize>,
    },
    /// The cluster's space quota is used up (etcd's `NOSPACE` alarm):
    /// writes fail until an operator compacts, defragments and disarms it.
    #[error("etcd's database is out of space (its quota is used up)")]
    NoSpace,
    /// A commit was sent but no answer came back (the member or leader was
    /// lost, the request timed out): it may or may not have been applied.
    /// Retryable: load again, and the new attempt sees whether it was.
    #[error("the commit's outcome is unknown: {reason}")]
    Ambiguous {
        /// What happened after the request was sent.
        reason: &'static str,
    },
    /// No member could serve a read, or the cluster has no leader. A read
    /// that failed this way at once has been tried again within the
    /// store's [`read_retry`](super::EtcdOptions::read_retry) budget
    /// before this is returned (not a read that waited out the timeout,
    /// nor connecting). Retryable.
    #[error("etcd is unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: &'static str,
    },
    /// Any other failure of the client or the server.
    #[error("etcd request failed: {source}")]
    Request {
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn limit_text(limit: Option<usize>) -> String {
    limit.map_or_else(|| "the cluster's".to_owned(), |limit| limit.to_string())
}

impl EtcdError {
    /// Whether the same operation may succeed when tried again.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Ambiguous { .. } | Self::Unavailable { .. })
    }
}

impl From<EtcdError> for StoreError {
    fn from(error: EtcdError) -> Self {
        let retryable = error.is_retryable();
        StoreError::Backend { source: Arc::new(error), retryable }
    }
}

/// What the failed request was, which decides how an outage reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sent {
    /// A read: failing it changed nothing.
    Read,
    /// A write: once sent, it may have been applied.
    Write {
        /// Its operations, for a limit error.
        operations: usize,
        /// Its approximate size, for a limit error.
        bytes: usize,
    },
}

// gRPC status codes (stable numbers of the protocol).
const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;
const INVALID_ARGUMENT: i32 = 3;
const DEADLINE_EXCEEDED: i32 = 4;
const RESOURCE_EXHAUSTED: i32 = 8;
const ABORTED: i32 = 10;
const OUT_OF_RANGE: i32 = 11;
const INTERNAL: i32 = 13;
const UNAVAILABLE: i32 = 14;

/// Classifies a client error once: limits, space, outages, ambiguity.
pub(super) fn classify(error: etcd_client::Error, sent: Sent) -> EtcdError {
    let (operations, bytes) = match sent {
        Sent::Read => (0, 0),
        Sent::Write { operations, bytes } => (operations, bytes),
    };
    let outage = |read: &'static str, write: &'static str| match sent {
        Sent::Read => EtcdError::Unavailable { reason: read },
        Sent::Write { .. } => EtcdError::Ambiguous { reason: write },
    };
    match &error {
        etcd_client::Error::GRpcStatus(status) => {
            let code = status.code() as i32;
            let message = status.message();
            match code {
                INVALID_ARGUMENT if message.contains("too many operations") => {
                    EtcdError::TooManyOperations { operations, limit: None }
                }
                INVALID_ARGUMENT | RESOURCE_EXHAUSTED
                    if message.contains("too large") || message.contains("larger than max") =>
                {
                    EtcdError::RequestTooLarge { bytes, limit: None }
                }
                RESOURCE_EXHAUSTED if message.contains("space exceeded") => EtcdError::NoSpace,
                OUT_OF_RANGE if message.contains("compacted") => EtcdError::Request { source: Box::new(error) },
                UNAVAILABLE | DEADLINE_EXCEEDED | CANCELLED | ABORTED | UNKNOWN | INTERNAL => outage(
                    "no member answered (lost connection, no leader, timeout)",
                    "the connection or the leader was lost, or the request timed out",
                ),
                _ => EtcdError::Request { source: Box::new(error) },
            }
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            outage("no member could be reached", "the connection was lost")
        }
        _ => EtcdError::Request { source: Box::new(error) },
    }
}

/// A client error as a store error.
pub(super) fn store_error(error: etcd_client::Error, sent: Sent) -> StoreError {
    classify(error, sent).into()
}
