//! Runs the conformance suite (`tests/conformance`) against every store:
//! memory, SQLite (a temporary file) and PostgreSQL (`DATABASE_URL`, a fresh
//! schema per test). Built without `DATABASE_URL` the PostgreSQL tests are
//! ignored, with the reason beside each and a count in the summary (see the
//! root `build.rs`); under `CI=true` they fail instead.

mod conformance;

use conformance::{Harness, M, database_url, drop_schema, postgres, remove_sqlite, sqlite, unique};
use machine_core::store::{Commit, Memory, Postgres, Sqlite, Store, Write};

impl Harness for Memory {
    async fn raw_record(&self, machine: &str, id: &str, version: u64, state: &str) -> bool {
        // The memory store has no back door: only version 1 can be planted.
        version == 1 && {
            let write = Write { machine, id, expected: 0, kind: "Open", state: state.to_owned(), command: "null" };
            self.commit(Commit::write(write)).await.is_ok()
        }
    }
}

impl Harness for Sqlite {
    async fn raw_record(&self, machine: &str, id: &str, version: u64, state: &str) -> bool {
        sqlx::query("INSERT OR REPLACE INTO machine_records (machine, id, version, kind, state, updated_at) VALUES (?, ?, ?, 'Open', ?, 0)")
            .bind(machine)
            .bind(id)
            .bind(i64::try_from(version).unwrap_or(i64::MAX))
            .bind(state)
            .execute(self.pool())
            .await
            .is_ok()
    }
}

impl Harness for Postgres {
    async fn raw_record(&self, machine: &str, id: &str, version: u64, state: &str) -> bool {
        let sql = format!(
            "INSERT INTO {}.machine_records (machine, id, version, kind, state) VALUES ($1, $2, $3, 'Open', $4::jsonb)
             ON CONFLICT (machine, id) DO UPDATE SET version = excluded.version, state = excluded.state",
            self.schema()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(machine)
            .bind(id)
            .bind(i64::try_from(version).unwrap_or(i64::MAX))
            .bind(state)
            .execute(self.pool())
            .await
            .is_ok()
    }
}

/// One `#[tokio::test]` per conformance case and store.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::conformance::$case(machine_core::store::Memory::new()).await;
            })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, path) = super::sqlite().await;
                super::conformance::$case(store.clone()).await;
                store.pool().close().await;
                super::remove_sqlite(&path);
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
            async fn $case() {
                let store = super::postgres().await;
                super::conformance::$case(store.clone()).await;
                super::drop_schema(&store).await;
            })*
        }
    };
}

conformance!(
    create_and_update,
    stale_and_duplicate_writes_conflict,
    multi_record_commits_are_all_or_nothing,
    read_checks_guard_the_commit,
    history_is_ordered_with_states_before_and_after,
    the_feed_is_ordered_and_resumable,
    records_are_listed_by_kind_in_pages,
    ids_are_validated_and_stored_verbatim,
    versions_at_the_limit_are_typed_errors,
    corrupt_rows_are_decode_errors_and_harm_no_other_record,
    no_lost_updates_with_32_writers,
);

// ---------------------------------------------------------------------------
// Several OS processes on one database: this test binary runs itself four
// times as workers (see `worker_process`).

const PROCESSES: usize = 4;
const WRITERS_PER_PROCESS: usize = 8;
const INCREMENTS_PER_WRITER: usize = 25;

/// Spawns the worker processes against `target` and waits for all of them.
fn run_workers(target: &str) {
    let exe = std::env::current_exe().expect("test binary path");
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--exact", "worker_process", "--nocapture", "--test-threads=1"])
                .env("MACHINE_WORKER_TARGET", target)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn worker process")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("worker exit").success(), "a worker process failed");
    }
}

/// The worker role: a no-op in a normal test run; with
/// `MACHINE_WORKER_TARGET` set (by `run_workers`) it increments the shared
/// record from this process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process() {
    let Ok(target) = std::env::var("MACHINE_WORKER_TARGET") else { return };
    if let Some(path) = target.strip_prefix("sqlite:") {
        let store = Sqlite::open(path).await.expect("open shared file");
        conformance::increment_concurrently(store, "shared", WRITERS_PER_PROCESS, INCREMENTS_PER_WRITER).await;
    } else if let Some((schema, url)) = target.strip_prefix("postgres:").and_then(|rest| rest.split_once('|')) {
        let store = Postgres::options().schema(schema).max_connections(4).connect(url).await.expect("connect");
        conformance::increment_concurrently(store, "shared", WRITERS_PER_PROCESS, INCREMENTS_PER_WRITER).await;
    } else {
        panic!("unknown worker target {target:?}");
    }
}

const TOTAL: u64 = (PROCESSES * WRITERS_PER_PROCESS * INCREMENTS_PER_WRITER) as u64;

async fn assert_exact(store: &impl machine_core::store::Store) {
    let record = store.load(M, "shared").await.unwrap().expect("written");
    assert_eq!(record.version, TOTAL, "every increment from every process landed exactly once");
    let counter: conformance::Counter = serde_json::from_str(&record.state).unwrap();
    assert_eq!(counter, conformance::Counter::Open(TOTAL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_lose_no_update_on_one_sqlite_file() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("machine-procs")));
    let store = Sqlite::open(&path).await.unwrap(); // creates the schema before the workers race
    run_workers(&format!("sqlite:{}", path.display()));
    assert_exact(&store).await;
    store.pool().close().await;
    remove_sqlite(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn four_processes_lose_no_update_on_postgres() {
    let url = database_url();
    let schema = unique("mctest");
    let store = Postgres::options().schema(schema.clone()).connect(&url).await.unwrap();
    run_workers(&format!("postgres:{schema}|{url}"));
    assert_exact(&store).await;
    drop_schema(&store).await;
}
