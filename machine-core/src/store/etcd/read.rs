//! Reads that ride out a leader election: a read that fails because no
//! member can serve it (no leader yet, a member's connection refused or
//! reset) is sent again within the store's read budget, as etcd's own
//! clients do. Only reads: a commit that was sent and not answered may have
//! been applied, so it is the caller's to load again
//! ([`EtcdError::Ambiguous`]).

use super::Etcd;
use super::error::{EtcdError, Sent, classify};
use crate::error::StoreError;
use etcd_client::{GetOptions, GetResponse, Txn, TxnOp, TxnResponse};
use std::future::Future;
use std::time::Duration;

/// The first wait before a read is sent again; it doubles up to
/// [`LONGEST_WAIT`], each wait spread by ±10 % so that the readers an
/// election stopped do not all come back at once.
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

    /// Several gets (key and options each) in one transaction, so at one
    /// revision, read again while the cluster is unavailable. It takes
    /// keys, not operations, so that nothing but reads is ever sent twice.
    pub(super) async fn get_all(
        &self,
        gets: impl IntoIterator<Item = (Vec<u8>, Option<GetOptions>)>,
    ) -> Result<TxnResponse, StoreError> {
        let gets: Vec<TxnOp> = gets.into_iter().map(|(key, options)| TxnOp::get(key, options)).collect();
        let txn = Txn::new().and_then(gets);
        self.again(|| {
            let (mut kv, txn) = (self.kv(), txn.clone());
            async move { kv.txn(txn).await.map_err(|error| classify(error, Sent::Read).into()) }
        })
        .await
    }

    /// Runs `read` until it succeeds, fails for another reason than the
    /// cluster being unavailable, or the next try would start later than
    /// the read budget ([`EtcdOptions::read_retry`](super::EtcdOptions::read_retry))
    /// after the first. A try that waited out the request timeout (5 s by
    /// default, longer than the default budget) is therefore not repeated:
    /// a read takes at most the budget plus one timeout.
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
                    tokio::time::sleep(self.spread(wait)).await;
                    wait = (wait * 2).min(LONGEST_WAIT);
                }
                done => return done,
            }
        }
    }

    /// `wait` give or take up to a tenth.
    fn spread(&self, wait: Duration) -> Duration {
        let tenth = wait / 10;
        let nanos = u64::try_from(tenth.as_nanos()).unwrap_or(u64::MAX).saturating_mul(2);
        wait.saturating_sub(tenth) + Duration::from_nanos(self.inner.jitter.below(nanos))
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
