//! SQLite's fast path holds the write lock from the load to the commit. These
//! are the ways it could leave the lock taken or make others wait: a refused
//! command, a panicking transition, a future dropped mid-transaction, a slow
//! async transition, a second process on the file — each followed by a
//! writer that must get the lock at once.

use machine_core::prelude::*;
use machine_core::store::{Sqlite, Store};
use machine_core::{AsyncMachine, Error};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Tally {
    #[state(initial)]
    Counting(u32),
}

#[derive(Command, Clone, Debug, Serialize, Deserialize)]
#[command(state = Tally)]
enum Step {
    #[command(from(Counting), to(Counting))]
    Add,
    #[command(from(Counting), to(Counting))]
    Refuse,
    #[command(from(Counting), to(Counting))]
    Panic,
    /// Waits until told (async machine only).
    #[command(from(Counting), to(Counting))]
    Wait,
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

fn next(step: &Step, Tally::Counting(n): &Tally) -> Result<Tally, Refused> {
    match step {
        Step::Refuse => Err(Refused),
        Step::Panic => panic!("a bug in the transition"),
        Step::Add | Step::Wait => Ok(Tally::Counting(n + 1)),
    }
}

/// A sync machine: the runner holds SQLite's write lock across it.
struct Quick;

impl Machine for Quick {
    type State = Tally;
    type Command = Step;
    type Deps = ();
    type Error = Refused;

    fn transition((): &(), step: &Step, state: &Tally) -> Result<Tally, Refused> {
        next(step, state)
    }
}

/// An async machine that claims to be quick, so a dropped future can leave
/// the fast path mid-transaction.
struct Claims;

impl AsyncMachine for Claims {
    type State = Tally;
    type Command = Step;
    type Deps = tokio::sync::Notify;
    type Error = Refused;
    const QUICK: bool = true;

    async fn transition(release: &tokio::sync::Notify, step: &Step, state: &Tally) -> Result<Tally, Refused> {
        if matches!(step, Step::Wait) {
            release.notified().await;
        }
        next(step, state)
    }
}

/// A slow async machine (not quick): it must not hold the lock while it waits.
struct Slow;

impl AsyncMachine for Slow {
    type State = Tally;
    type Command = Step;
    type Deps = tokio::sync::Notify;
    type Error = Refused;

    async fn transition(release: &tokio::sync::Notify, step: &Step, state: &Tally) -> Result<Tally, Refused> {
        if matches!(step, Step::Wait) {
            release.notified().await;
        }
        next(step, state)
    }
}

async fn file_store(name: &str) -> (Sqlite, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("machine-writer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("w.db");
    (Sqlite::open(&path).await.unwrap(), path)
}

/// Another process's view of the file: a fresh store on the same path must
/// take the write lock and write within a second.
async fn another_process_writes(path: &std::path::Path, id: &str) {
    let other = Sqlite::open(path).await.unwrap();
    let runner = Runner::<Quick, _>::new(other, ());
    let wrote = tokio::time::timeout(Duration::from_secs(2), runner.handle(id, &Step::Add)).await;
    assert!(wrote.expect("the write lock was left taken").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_panicking_command_releases_the_write_lock() {
    let (store, path) = file_store("refused").await;
    let runner = Runner::<Quick, _>::new(store, ());
    runner.handle("t", &Step::Add).await.unwrap();
    assert!(matches!(runner.handle("t", &Step::Refuse).await, Err(Error::Rejected(Refused))));
    another_process_writes(&path, "t").await;
    assert!(matches!(runner.handle("t", &Step::Panic).await, Err(Error::Panicked { .. })));
    another_process_writes(&path, "t").await;
    // And this process goes on writing through the same runner.
    let out = runner.handle("t", &Step::Add).await.unwrap();
    assert_eq!((out.state, out.version), (Tally::Counting(4), 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_dropped_inside_the_transaction_rolls_it_back() {
    let (store, path) = file_store("dropped").await;
    let release = Arc::new(tokio::sync::Notify::new());
    let runner = Runner::<Claims, _>::new(store, release.clone());
    runner.handle("t", &Step::Add).await.unwrap();
    // The transition waits with the write lock held; the caller gives up.
    let gave_up = tokio::time::timeout(Duration::from_millis(100), runner.handle("t", &Step::Wait)).await;
    assert!(gave_up.is_err(), "the transition was still waiting");
    another_process_writes(&path, "t").await;
    // Nothing of the dropped command was written; this process still writes.
    let out = runner.handle("t", &Step::Add).await.unwrap();
    assert_eq!((out.state, out.version), (Tally::Counting(3), 3));
    assert_eq!(runner.store().history("Tally", "t").await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_async_transition_does_not_hold_the_lock() {
    let (store, _path) = file_store("slow").await;
    let release = Arc::new(tokio::sync::Notify::new());
    let slow = Runner::<Slow, _>::new(store.clone(), release.clone());
    let quick = Runner::<Quick, _>::new(store, ());
    let waiting = tokio::spawn({
        let slow = slow.clone();
        async move { slow.handle("slow", &Step::Wait).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Others write while the slow transition waits.
    for _ in 0..5 {
        let wrote = tokio::time::timeout(Duration::from_secs(2), quick.handle("other", &Step::Add)).await;
        assert!(wrote.expect("blocked by a slow transition").is_ok());
    }
    release.notify_one();
    assert_eq!(waiting.await.unwrap().unwrap().version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_in_one_process_queue_without_a_lost_update() {
    let (store, path) = file_store("queue").await;
    let runner = Runner::<Quick, _>::new(store, ());
    let attempts = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (runner, attempts) = (runner.clone(), attempts.clone());
            tokio::spawn(async move {
                for _ in 0..20 {
                    let out = runner.handle("hot", &Step::Add).await.unwrap();
                    attempts.fetch_add(out.attempts, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // A second process writes the same record meanwhile.
    let other = Runner::<Quick, _>::new(Sqlite::open(&path).await.unwrap(), ());
    for _ in 0..20 {
        other.handle("hot", &Step::Add).await.unwrap();
    }
    for task in tasks {
        task.await.unwrap();
    }
    let out = runner.get("hot").await.unwrap().unwrap();
    assert_eq!((out.state, out.version), (Tally::Counting(340), 340));
    // Within the process nobody lost a race: one attempt per command.
    assert_eq!(attempts.load(Ordering::Relaxed), 320);
}

/// The writers keep a connection of their own between writes. Closing the
/// pool must still finish (that connection is outside it) and must end the
/// writes too: nothing is written through a store whose pool is closed.
/// `Sqlite::close` closes that connection as well: no descriptor of this
/// process points at the file afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_pool_ends_the_writers_connection_too() {
    let (store, path) = file_store("closed").await;
    let runner = Runner::<Quick, _>::new(store.clone(), ());
    runner.handle("t", &Step::Add).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(2), store.pool().close()).await;
    assert!(closed.is_ok(), "the pool waited for the writers' connection");
    let after = runner.handle("t", &Step::Add).await;
    assert!(matches!(after, Err(Error::Store(_))), "wrote through a closed pool: {after:?}");
    let reopened = Runner::<Quick, _>::new(Sqlite::open(&path).await.unwrap(), ());
    assert_eq!(reopened.get("t").await.unwrap().unwrap().version, 1);

    reopened.handle("t", &Step::Add).await.unwrap();
    assert!(open_descriptors(&path) > 0, "the writers keep a connection");
    tokio::time::timeout(Duration::from_secs(2), reopened.store().close()).await.expect("close finishes");
    assert_eq!(open_descriptors(&path), 0, "the store still holds the file open");
}

/// Descriptors of this process open on `path` (Linux).
fn open_descriptors(path: &std::path::Path) -> usize {
    let path = path.canonicalize().unwrap();
    let fds = std::fs::read_dir("/proc/self/fd").unwrap();
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok()).filter(|target| *target == path).count()
}

/// Readers and writers share the pool: with the writers' own connection out
/// of it, reads still get theirs and see every write, and with a pool of
/// one connection (which the writers must give back after every write; for
/// an in-memory database the only one that sees its data) nothing waits for
/// ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_interleave_whatever_the_pool_size() {
    for connections in [0, 1, 2] {
        let dir = std::env::temp_dir().join(format!("machine-writer-{}-pool{connections}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = match connections {
            0 => Sqlite::memory().await.unwrap(),
            n => Sqlite::options().max_connections(n).open(dir.join("w.db")).await.unwrap(),
        };
        let runner = Runner::<Quick, _>::new(store.clone(), ());
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let runner = runner.clone();
                tokio::spawn(async move {
                    for _ in 0..25 {
                        runner.handle(&format!("w-{writer}"), &Step::Add).await.unwrap();
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..4)
            .map(|reader| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..25 {
                        store.load("Tally", &format!("w-{reader}")).await.unwrap();
                    }
                })
            })
            .collect();
        let all = async {
            for task in writers.into_iter().chain(readers) {
                task.await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(20), all).await.expect("a reader or writer waited for ever");
        for writer in 0..4 {
            let read = store.load("Tally", &format!("w-{writer}")).await.unwrap();
            assert_eq!(read.map(|record| record.version), Some(25), "pool of {connections}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A write that fails inside its transaction (here: a history row left by
/// someone who deleted the record row by hand collides with the new first
/// version) is rolled back and reported, and the store goes on working:
/// on an in-memory database, closing the connection to roll back would
/// have lost every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failing_inside_its_transaction_keeps_an_in_memory_database() {
    let store = Sqlite::memory().await.unwrap();
    let runner = Runner::<Quick, _>::new(store.clone(), ());
    runner.handle("kept", &Step::Add).await.unwrap();
    runner.handle("orphan", &Step::Add).await.unwrap();
    sqlx::query("DELETE FROM machine_records WHERE id = 'orphan'").execute(store.pool()).await.unwrap();
    let failed = runner.handle("orphan", &Step::Add).await;
    assert!(matches!(failed, Err(Error::Store(_))), "{failed:?}");
    assert_eq!(runner.get("kept").await.unwrap().unwrap().version, 1, "the database survived");
    assert_eq!(runner.get("orphan").await.unwrap(), None, "the failed write was rolled back");
    assert_eq!(runner.handle("kept", &Step::Add).await.unwrap().version, 2, "and still takes writes");
}
