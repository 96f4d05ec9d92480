//! etcd's limits as typed errors: too many operations in one transaction,
//! a request too large, and a feed cursor older than a compaction, both as
//! the store refuses them before sending and as the server refuses them.
//!
//! Runs its own one-member etcd (ports 23797/23807, a temporary data dir)
//! with low limits, so compacting it disturbs no other test. Needs the
//! `etcd` binary (Debian's etcd-server); gated like every etcd test.

mod conformance;

use conformance::{M, write};
use machine_core::StoreError;
use machine_core::store::{Commit, Cursor, Etcd, EtcdError, Feed, Store, Write};
use std::time::Duration;

const ENDPOINT: &str = "http://127.0.0.1:23797";

/// A one-member etcd with `--max-txn-ops 16 --max-request-bytes 65536`,
/// killed and deleted when dropped.
struct Member {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Member {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(conformance::unique("machine-etcd-limits"));
        let child = std::process::Command::new("etcd")
            .args(["--name", "limits", "--data-dir"])
            .arg(&dir)
            .args(["--listen-client-urls", ENDPOINT, "--advertise-client-urls", ENDPOINT])
            .args(["--listen-peer-urls", "http://127.0.0.1:23807"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:23807"])
            .args(["--initial-cluster", "limits=http://127.0.0.1:23807"])
            .args(["--max-txn-ops", "16", "--max-request-bytes", "65536"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start etcd (Debian's etcd-server)");
        let member = Self { child, dir };
        for _ in 0..100 {
            if let Ok(store) = Etcd::options().timeout(Duration::from_secs(1)).connect(&[ENDPOINT]).await
                && store.load(M, "ping").await.is_ok()
            {
                return member;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the limits member did not start");
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The typed etcd error behind a store error.
fn etcd_error(error: &StoreError) -> &EtcdError {
    std::error::Error::source(error).and_then(|s| s.downcast_ref::<EtcdError>()).expect("an EtcdError source")
}

/// Creates each of `ids` with `state`, in one commit.
fn writes<'a>(ids: &'a [String], state: &str) -> Commit<'a> {
    let writes = ids.iter().map(|id| Write { state: state.to_owned(), ..write(id, 0, "0") }).collect();
    Commit { writes, checks: vec![], keys: vec![] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(etcd_tests), ignore = "set ETCD_ENDPOINTS to run the etcd tests")]
async fn limits_are_typed_errors_and_write_nothing() {
    let _ = conformance::etcd_endpoints(); // fails under CI=true without the cluster, like every etcd test
    let _member = Member::start().await;
    let connect =
        |options: machine_core::store::EtcdOptions| async move { options.connect(&[ENDPOINT]).await.unwrap() };

    let ten: Vec<String> = (0..10).map(|n| format!("id-{n}")).collect();
    let one = &ten[..1];
    // Refused before sending: the configured limits.
    let store = connect(Etcd::options().prefix("local/").max_txn_ops(16).max_request_bytes(65_536)).await;
    let error = store.commit(writes(&ten, "1")).await.unwrap_err();
    assert!(matches!(etcd_error(&error), EtcdError::TooManyOperations { limit: Some(16), .. }), "{error:?}");
    assert!(!error.is_retryable());
    assert_eq!(
        error.to_string(),
        "store backend error: a commit of 31 operations exceeds etcd's limit of 16 per transaction"
    );
    let big = "7".repeat(70_000);
    let error = store.commit(writes(one, &big)).await.unwrap_err();
    assert!(matches!(etcd_error(&error), EtcdError::RequestTooLarge { limit: Some(65_536), .. }), "{error:?}");
    assert!(!error.is_retryable());

    // Refused by the server, whose limits are lower than the store was told.
    let store = connect(Etcd::options().prefix("server/")).await;
    let error = store.commit(writes(&ten, "1")).await.unwrap_err();
    assert!(matches!(etcd_error(&error), EtcdError::TooManyOperations { limit: None, .. }), "{error:?}");
    assert!(!error.to_string().contains("etcdserver"), "no server text: {error}");
    let error = store.commit(writes(one, &big)).await.unwrap_err();
    assert!(matches!(etcd_error(&error), EtcdError::RequestTooLarge { limit: None, .. }), "{error:?}");
    assert!(!error.to_string().contains("etcdserver"), "no server text: {error}");
    assert_eq!(store.load(M, "id-0").await.unwrap(), None, "nothing of a refused commit was written");

    // A feed cursor from before a compaction.
    for n in 0..3 {
        store.commit(Commit::write(write("fed", n, "1"))).await.unwrap();
    }
    let first = store.changes(Cursor::START, 1).await.unwrap()[0].cursor;
    for n in 3..6 {
        store.commit(Commit::write(write("fed", n, "1"))).await.unwrap();
    }
    let revision = store.client().clone().get("x", None).await.unwrap().header().unwrap().revision();
    store.client().clone().compact(revision, None).await.unwrap();
    let error = store.changes(first, 10).await.unwrap_err();
    match &error {
        StoreError::FeedCompacted { after, oldest } => {
            assert_eq!((*after, oldest.tx), (first, u64::try_from(revision).unwrap()));
        }
        other => panic!("{other:?}"),
    }
    assert!(!error.is_retryable());
    assert_eq!(store.history(M, "fed").await.unwrap().len(), 6, "history outlives compaction");
}
