//! Reads that ride out a leader election: a read that finds the cluster
//! unavailable (no leader yet, a member lost) is sent again within the
//! store's read budget, as etcd's own clients do. Only reads: a commit
//! that was sent and not answered may have been applied, so it is the
//! caller's to load again ([`EtcdError::Ambiguous`]).

use super::Etcd;
use super::error::{EtcdError, Sent, classify};
use crate::error::StoreError;
use etcd_client::{GetOptions, GetResponse, Txn, TxnOp, TxnResponse};
use std::future::Future;
use std::time::Duration;

/// The first wait before a read is sent again; it doubles up to
/// [`LONGEST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(25);
const LONGEST_WAIT: Duration = Duration::from_millis(400);

impl Etcd {
    /// `key` (with `options`: a range, a limit, a revision), read again
    /// while the cluster is unavailable.
    pub(super) async fn get(
        &self,
        key: impl Into<Vec<u8>>,
        options: Option<GetOptions>,
    ) -> Result<GetResponse, StoreError> {
        let key = key.into();
        self.again(|| {
            let (mut kv, key, options) = (self.kv(), key.clone(), options.clone());
            async move { kv.get(key, options).await.map_err(|error| classify(error, Sent::Read).into()) }
        })
        .await
    }

    /// Several gets in one transaction (one revision), read again while
    /// the cluster is unavailable.
    pub(super) async fn get_all(&self, gets: Vec<TxnOp>) -> Result<TxnResponse, StoreError> {
        let txn = Txn::new().and_then(gets);
        self.again(|| {
            let (mut kv, txn) = (self.kv(), txn.clone());
            async move { kv.txn(txn).await.map_err(|error| classify(error, Sent::Read).into()) }
        })
        .await
    }

    /// Runs `read` until it succeeds, fails for another reason than the
    /// cluster being unavailable, or the next try would start after the
    /// read budget ([`EtcdOptions::read_retry`](super::EtcdOptions::read_retry)).
    pub(super) async fn again<T, F>(&self, mut read: impl FnMut() -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let budget = self.inner.options.read_retry;
        let started = tokio::time::Instant::now();
        let mut wait = FIRST_WAIT;
        loop {
            match read().await {
                Err(error) if unavailable(&error) && started.elapsed() + wait <= budget => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(LONGEST_WAIT);
                }
                done => return done,
            }
        }
    }
}

/// Whether `error` says no member could serve a read.
fn unavailable(error: &StoreError) -> bool {
    match error {
        StoreError::Backend { source, .. } => {
            matches!(source.downcast_ref::<EtcdError>(), Some(EtcdError::Unavailable { .. }))
        }
        _ => false,
    }
}
