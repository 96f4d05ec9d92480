//! Runs the conformance suite (`tests/conformance`) against every store:
//! memory, SQLite (a temporary file), PostgreSQL (`DATABASE_URL`, a fresh
//! schema per test) and etcd (`ETCD_ENDPOINTS`, a fresh key prefix per
//! test). Built without `DATABASE_URL` or `ETCD_ENDPOINTS` those tests are
//! ignored, with the reason beside each and a count in the summary (see the
//! root `build.rs`); under `CI=true` they fail instead.

mod conformance;
mod upgrade;

use conformance::{
    Harness, M, Raw, database_url, drop_schema, etcd, etcd_endpoints, postgres, remove_prefix, remove_sqlite, sqlite,
    unique,
};
use machine_core::store::{Commit, Etcd, Memory, Origin, Postgres, Sqlite, Store, Write};
use sqlx::{AssertSqlSafe, Connection};

/// Binds a [`Raw`] value as the next parameter of a query.
macro_rules! bind_raw {
    ($query:expr, $raw:expr) => {
        match $raw {
            Raw::Int(value) => $query.bind(value),
            Raw::Real(value) => $query.bind(value),
            Raw::Text(value) => $query.bind(value),
            Raw::BadText(value) | Raw::Blob(value) => $query.bind(value),
            Raw::Null => $query.bind(None::<String>),
        }
    };
}

/// The columns a test may plant into; anything else is a test bug.
fn plantable(column: &str) -> bool {
    ["version", "kind", "state", "updated_at", "command", "origin", "at"].contains(&column)
}

impl Harness for Memory {
    async fn raw_record(&self, machine: &str, id: &str, version: u64, state: &str) -> bool {
        // The memory store has no back door: only version 1 can be planted.
        version == 1 && {
            let write = Write {
                machine,
                id,
                expected: 0,
                kind: "Open",
                state: state.to_owned(),
                command: "null",
                origin: Origin::Command,
                schema: 1,
                due: None,
            };
            self.commit(Commit::write(write)).await.is_ok()
        }
    }

    // Nothing but the store itself writes the memory store's rows.
    async fn plant_record(&self, _: &str, _: &str, _: &str, _: Raw) -> bool {
        false
    }

    async fn plant_history(&self, _: &str, _: &str, _: &str, _: Raw) -> bool {
        false
    }

    async fn raw_rows(&self, machine: &str, id: &str) -> Vec<String> {
        let record = self.load(machine, id).await.ok().flatten().map(|r| format!("{r:?}"));
        let history = self.history(machine, id).await.unwrap_or_default().into_iter().map(|c| format!("{c:?}"));
        record.into_iter().chain(history).collect()
    }

    async fn remove_rows(&self, _: &str, _: &str) {}
}

/// Runs `insert` (binding machine and id), then stores `value` in
/// `table.column` of that row, all in one transaction on a connection
/// that ignores CHECK constraints, as another program might; rolls back
/// unless the value kept its storage class.
async fn plant_sqlite(
    store: &Sqlite,
    insert: &str,
    table: &str,
    machine: &str,
    id: &str,
    column: &str,
    value: Raw,
) -> bool {
    assert!(plantable(column), "{column}");
    let Ok(mut conn) = store.pool().acquire().await else { return false };
    let expression = if matches!(value, Raw::BadText(_)) { "CAST(? AS TEXT)" } else { "?" };
    let update = format!("UPDATE {table} SET {column} = {expression} WHERE machine = ? AND id = ?");
    let class = format!("SELECT typeof({column}) FROM {table} WHERE machine = ? AND id = ?");
    let planted = async {
        sqlx::raw_sql("PRAGMA ignore_check_constraints = ON").execute(&mut *conn).await?;
        let mut tx = conn.begin().await?;
        sqlx::query(AssertSqlSafe(insert.to_owned())).bind(machine).bind(id).execute(&mut *tx).await?;
        bind_raw!(sqlx::query(AssertSqlSafe(update)), value).bind(machine).bind(id).execute(&mut *tx).await?;
        let stored: String =
            sqlx::query_scalar(AssertSqlSafe(class)).bind(machine).bind(id).fetch_one(&mut *tx).await?;
        if stored != value.storage_class() {
            return Ok(false);
        }
        tx.commit().await?;
        Ok::<_, sqlx::Error>(true)
    }
    .await
    .unwrap_or(false);
    // Back in the pool, the connection must check constraints again.
    sqlx::raw_sql("PRAGMA ignore_check_constraints = OFF").execute(&mut *conn).await.expect("reset pragma");
    planted
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

    async fn plant_record(&self, machine: &str, id: &str, column: &str, value: Raw) -> bool {
        let insert = "INSERT OR REPLACE INTO machine_records (machine, id, version, kind, state, updated_at)
                      VALUES (?, ?, 1, 'Open', '1', 0)";
        plant_sqlite(self, insert, "machine_records", machine, id, column, value).await
    }

    async fn plant_history(&self, machine: &str, id: &str, column: &str, value: Raw) -> bool {
        let insert = "INSERT INTO machine_history (machine, id, version, command, origin, kind, state, at)
                      VALUES (?, ?, 1, 'null', 'command', 'Open', '1', 0)";
        plant_sqlite(self, insert, "machine_history", machine, id, column, value).await
    }

    async fn raw_rows(&self, machine: &str, id: &str) -> Vec<String> {
        // Storage class and bytes of every column: exact, and readable even
        // when the text is not UTF-8.
        let exact = |columns: &[&str]| {
            columns.iter().map(|c| format!("typeof({c}) || ':' || hex({c})")).collect::<Vec<_>>().join(" || '|' || ")
        };
        let sql = format!(
            "SELECT 'record ' || {} FROM machine_records WHERE machine = ?1 AND id = ?2
             UNION ALL SELECT * FROM (SELECT 'history ' || seq || ' ' || {} FROM machine_history
                                      WHERE machine = ?1 AND id = ?2 ORDER BY seq)",
            exact(&["version", "kind", "state", "updated_at"]),
            exact(&["version", "command", "origin", "kind", "state", "at"]),
        );
        sqlx::query_scalar(AssertSqlSafe(sql)).bind(machine).bind(id).fetch_all(self.pool()).await.expect("raw rows")
    }

    async fn remove_rows(&self, machine: &str, id: &str) {
        for table in ["machine_records", "machine_history"] {
            let sql = format!("DELETE FROM {table} WHERE machine = ? AND id = ?");
            sqlx::query(AssertSqlSafe(sql)).bind(machine).bind(id).execute(self.pool()).await.expect("remove rows");
        }
    }
}

/// Runs `insert` (binding machine and id) and stores `value` in `column`
/// of that row, in one transaction: `false` and nothing written when the
/// column's type or a constraint refuses it, or when PostgreSQL converted the
/// value to the column's type (1.5 into a `bigint` is rounded to 2: a valid
/// value, not a corrupt one).
async fn plant_postgres(
    store: &Postgres,
    insert: String,
    table: &str,
    machine: &str,
    id: &str,
    column: &str,
    value: Raw,
) -> bool {
    assert!(plantable(column), "{column}");
    // Typed parameters, so the server converts or refuses instead of reading
    // one type's bytes as another's.
    let (parameter, text) = match value {
        Raw::Int(v) => ("$3::int8", v.to_string()),
        Raw::Real(v) => ("$3::float8", v.to_string()),
        Raw::Text(v) => ("$3::text", v.to_owned()),
        // No column is bytea or nullable, and text is always valid UTF-8.
        Raw::BadText(_) | Raw::Blob(_) | Raw::Null => return false,
    };
    let schema = store.schema();
    let update = format!("UPDATE {schema}.{table} SET {column} = {parameter} WHERE machine = $1 AND id = $2");
    let stored = format!("SELECT {column}::text FROM {schema}.{table} WHERE machine = $1 AND id = $2");
    async {
        let mut tx = store.pool().begin().await?;
        sqlx::query(AssertSqlSafe(insert)).bind(machine).bind(id).execute(&mut *tx).await?;
        bind_raw!(sqlx::query(AssertSqlSafe(update)).bind(machine).bind(id), value).execute(&mut *tx).await?;
        let kept: String = sqlx::query_scalar(AssertSqlSafe(stored)).bind(machine).bind(id).fetch_one(&mut *tx).await?;
        if kept != text {
            return Ok(false);
        }
        tx.commit().await?;
        Ok::<_, sqlx::Error>(true)
    }
    .await
    .unwrap_or(false)
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

    async fn plant_record(&self, machine: &str, id: &str, column: &str, value: Raw) -> bool {
        let insert = format!(
            "INSERT INTO {}.machine_records (machine, id, version, kind, state) VALUES ($1, $2, 1, 'Open', '1')",
            self.schema()
        );
        plant_postgres(self, insert, "machine_records", machine, id, column, value).await
    }

    async fn plant_history(&self, machine: &str, id: &str, column: &str, value: Raw) -> bool {
        let insert = format!(
            "INSERT INTO {}.machine_history (machine, id, version, command, origin, kind, state)
             VALUES ($1, $2, 1, 'null', 'command', 'Open', '1')",
            self.schema()
        );
        plant_postgres(self, insert, "machine_history", machine, id, column, value).await
    }

    async fn raw_rows(&self, machine: &str, id: &str) -> Vec<String> {
        let sql = format!(
            "SELECT 'record ' || r::text FROM {0}.machine_records r WHERE machine = $1 AND id = $2
             UNION ALL SELECT * FROM (SELECT 'history ' || h::text FROM {0}.machine_history h
                                      WHERE machine = $1 AND id = $2 ORDER BY seq) AS entries",
            self.schema()
        );
        sqlx::query_scalar(AssertSqlSafe(sql)).bind(machine).bind(id).fetch_all(self.pool()).await.expect("raw rows")
    }

    async fn remove_rows(&self, machine: &str, id: &str) {
        for table in ["machine_records", "machine_history"] {
            let sql = format!("DELETE FROM {}.{table} WHERE machine = $1 AND id = $2", self.schema());
            sqlx::query(AssertSqlSafe(sql)).bind(machine).bind(id).execute(self.pool()).await.expect("remove rows");
        }
    }
}

/// The etcd store's keys, as its module docs lay them out.
fn etcd_key(store: &Etcd, space: &str, parts: &[&str]) -> Vec<u8> {
    format!("{}{space}/{}", store.prefix(), parts.join("\0")).into_bytes()
}

fn etcd_history_key(store: &Etcd, machine: &str, id: &str, version: u64) -> Vec<u8> {
    etcd_key(store, "h", &[machine, id, &format!("{version:020}")])
}

/// A stored value: a JSON header with `value` in `column` (unless the column
/// is `state`), then the state. `None` when etcd's bytes cannot express it
/// (a blob is just bytes here).
fn etcd_value(mut header: serde_json::Value, column: &str, value: Raw) -> Option<Vec<u8>> {
    let mut state: Option<Vec<u8>> = Some(b"1".to_vec());
    if column == "state" {
        state = match value {
            Raw::Text(text) => Some(text.as_bytes().to_vec()),
            Raw::BadText(bytes) => Some(bytes.to_vec()),
            Raw::Null => None,
            Raw::Int(_) | Raw::Real(_) | Raw::Blob(_) => return None,
        };
    } else {
        header[column] = match value {
            Raw::Int(v) => serde_json::json!(v),
            Raw::Real(v) => serde_json::json!(v),
            Raw::Text(text) => serde_json::json!(text),
            Raw::Null => serde_json::Value::Null,
            Raw::BadText(_) | Raw::Blob(_) => return None,
        };
    }
    let mut bytes = header.to_string().into_bytes();
    if let Some(state) = state {
        bytes.push(b'\n');
        bytes.extend(state);
    }
    Some(bytes)
}

/// Puts `pairs` in one transaction, with the feed's `head` when asked.
async fn etcd_put(store: &Etcd, pairs: Vec<(Vec<u8>, Vec<u8>)>, head: bool) -> bool {
    let mut ops: Vec<etcd_client::TxnOp> =
        pairs.into_iter().map(|(k, v)| etcd_client::TxnOp::put(k, v, None)).collect();
    if head {
        ops.push(etcd_client::TxnOp::put(format!("{}head", store.prefix()), "", None));
    }
    store.client().clone().txn(etcd_client::Txn::new().and_then(ops)).await.is_ok()
}

impl Harness for Etcd {
    async fn raw_record(&self, machine: &str, id: &str, version: u64, state: &str) -> bool {
        let header = serde_json::json!({"version": version, "kind": "Open", "updated_at": 0});
        let mut value = header.to_string().into_bytes();
        value.push(b'\n');
        value.extend_from_slice(state.as_bytes());
        let index = etcd_key(self, "k", &[machine, "Open", id]);
        etcd_put(self, vec![(etcd_key(self, "r", &[machine, id]), value), (index, Vec::new())], false).await
    }

    async fn plant_record(&self, machine: &str, id: &str, column: &str, value: Raw) -> bool {
        assert!(plantable(column), "{column}");
        let header = serde_json::json!({"version": 1, "kind": "Open", "updated_at": 0});
        let Some(value) = etcd_value(header, column, value) else { return false };
        let index = etcd_key(self, "k", &[machine, "Open", id]);
        etcd_put(self, vec![(etcd_key(self, "r", &[machine, id]), value), (index, Vec::new())], false).await
    }

    async fn plant_history(&self, machine: &str, id: &str, column: &str, value: Raw) -> bool {
        assert!(plantable(column), "{column}");
        let header = serde_json::json!({"version": 1, "command": "null", "origin": "command", "kind": "Open", "at": 0, "pos": 1});
        let Some(value) = etcd_value(header, column, value) else { return false };
        etcd_put(self, vec![(etcd_history_key(self, machine, id, 1), value)], true).await
    }

    async fn raw_rows(&self, machine: &str, id: &str) -> Vec<String> {
        let mut client = self.client().clone();
        let record = client.get(etcd_key(self, "r", &[machine, id]), None).await.expect("raw record");
        let history_prefix = etcd_history_key(self, machine, id, 0);
        let history_prefix = &history_prefix[..history_prefix.len() - 20];
        let options = etcd_client::GetOptions::new().with_prefix();
        let history = client.get(history_prefix, Some(options)).await.expect("raw history");
        record
            .kvs()
            .iter()
            .chain(history.kvs())
            .map(|kv| format!("{:?} @{} = {:?}", kv.key(), kv.mod_revision(), kv.value()))
            .collect()
    }

    async fn remove_rows(&self, machine: &str, id: &str) {
        let mut client = self.client().clone();
        let history_prefix = etcd_history_key(self, machine, id, 0);
        let history_prefix = history_prefix[..history_prefix.len() - 20].to_vec();
        for key in [etcd_key(self, "r", &[machine, id]), etcd_key(self, "k", &[machine, "Open", id])] {
            client.delete(key, None).await.expect("remove record");
        }
        client.delete(history_prefix, Some(etcd_client::DeleteOptions::new().with_prefix())).await.expect("remove");
    }

    fn prunes_the_feed(&self) -> bool {
        false
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

/// The same cases on etcd, in a module of their own: see the list below.
macro_rules! conformance_etcd {
    ($($case:ident),* $(,)?) => {
        mod etcd {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(etcd_tests), ignore = "set ETCD_ENDPOINTS to run the etcd tests")]
            async fn $case() {
                let store = super::etcd().await;
                super::conformance::$case(store.clone()).await;
                super::remove_prefix(&store).await;
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
    corrupt_records_are_named_and_left_untouched,
    corrupt_history_entries_are_named_and_left_untouched,
    origins_round_trip_through_history_and_the_feed,
    no_lost_updates_with_32_writers,
    a_repeated_key_returns_the_first_outcome_and_applies_once,
    a_lost_reply_is_replayed_when_the_request_comes_again,
    concurrent_calls_with_one_key_apply_once,
    keys_expire_after_the_retention,
    creates_and_updates_are_checked,
    a_decision_key_commits_once,
    records_are_listed_typed_and_counted_by_kind,
    history_is_read_by_pages,
    expired_keys_are_forgotten_and_standing_ones_kept,
    schema_versions_round_trip_through_every_read,
    every_record_of_a_machine_is_listed_in_pages,
    fixtures_of_older_releases_read_through_the_current_code,
    newer_schema_records_are_refused_and_never_overwritten,
    an_unreadable_history_entry_leaves_the_others_readable,
    migrate_rewrites_old_records_through_the_pipeline,
    due_times_are_stored_indexed_and_cleared,
    fire_judges_the_state_it_loads,
    two_sweepers_fire_each_due_state_once,
    a_refused_timer_is_disarmed_not_retried_for_ever,
    a_record_that_moved_on_is_not_fired,
    coalesced_fires_race_commands_and_fire_once,
    failures_are_replayed_after_their_backoff_then_left,
    an_unreadable_failed_record_does_not_stop_recovery,
    concurrent_recoveries_replay_each_failure_once,
    checkpoints_are_compared_and_set,
    lag_counts_the_changes_behind_the_head,
    batches_are_configurable,
    a_processor_resumes_from_its_checkpoint_after_a_crash,
    one_instance_per_name_delivers_while_its_lease_stands,
    a_lease_given_up_is_free_at_once_early_on_the_clock,
    a_failing_handler_backs_off_then_parks_and_is_redriven,
    an_undecodable_entry_is_parked_not_fatal,
    an_outbox_applies_each_callback_once_however_often_delivered,
    an_outbox_ignores_changes_that_stay_in_the_kind,
    an_outbox_whose_work_keeps_failing_parks_the_entry,
    a_terminal_record_is_removed_whole,
    removal_is_conditional_on_version_and_kind,
    a_removed_id_starts_afresh,
    a_writer_racing_the_removal_wins_or_loses_whole,
    a_lost_removal_reply_is_not_found_when_asked_again,
    finished_records_are_removed_by_a_run,
    pruning_takes_the_oldest_history_and_tells_consumers_behind,
    a_removed_record_stays_in_the_feed_until_pruned,
    pruning_while_writing_never_skips_silently,
);

// Every case but the 3,200 contended increments, which take two minutes on
// a 3-member cluster (a replicated commit is milliseconds, and 32 writers
// back off from one another); the same 32 writers with 10 increments each
// stand in for it.
conformance_etcd!(
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
    corrupt_records_are_named_and_left_untouched,
    corrupt_history_entries_are_named_and_left_untouched,
    origins_round_trip_through_history_and_the_feed,
    no_lost_updates_with_32_writers_briefly,
    a_repeated_key_returns_the_first_outcome_and_applies_once,
    a_lost_reply_is_replayed_when_the_request_comes_again,
    concurrent_calls_with_one_key_apply_once,
    keys_expire_after_the_retention,
    creates_and_updates_are_checked,
    a_decision_key_commits_once,
    records_are_listed_typed_and_counted_by_kind,
    history_is_read_by_pages,
    expired_keys_are_forgotten_and_standing_ones_kept,
    schema_versions_round_trip_through_every_read,
    every_record_of_a_machine_is_listed_in_pages,
    fixtures_of_older_releases_read_through_the_current_code,
    newer_schema_records_are_refused_and_never_overwritten,
    an_unreadable_history_entry_leaves_the_others_readable,
    migrate_rewrites_old_records_through_the_pipeline,
    a_terminal_record_is_removed_whole,
    removal_is_conditional_on_version_and_kind,
    a_removed_id_starts_afresh,
    a_writer_racing_the_removal_wins_or_loses_whole,
    a_lost_removal_reply_is_not_found_when_asked_again,
    finished_records_are_removed_by_a_run,
    pruning_takes_the_oldest_history_and_tells_consumers_behind,
    a_removed_record_stays_in_the_feed_until_pruned,
    pruning_while_writing_never_skips_silently,
    due_times_are_stored_indexed_and_cleared,
    fire_judges_the_state_it_loads,
    two_sweepers_fire_each_due_state_once,
    a_refused_timer_is_disarmed_not_retried_for_ever,
    a_record_that_moved_on_is_not_fired,
    coalesced_fires_race_commands_and_fire_once,
    failures_are_replayed_after_their_backoff_then_left,
    an_unreadable_failed_record_does_not_stop_recovery,
    concurrent_recoveries_replay_each_failure_once,
    checkpoints_are_compared_and_set,
    lag_counts_the_changes_behind_the_head,
    batches_are_configurable,
    a_processor_resumes_from_its_checkpoint_after_a_crash,
    one_instance_per_name_delivers_while_its_lease_stands,
    a_lease_given_up_is_free_at_once_early_on_the_clock,
    a_failing_handler_backs_off_then_parks_and_is_redriven,
    an_undecodable_entry_is_parked_not_fatal,
    an_outbox_applies_each_callback_once_however_often_delivered,
    an_outbox_ignores_changes_that_stay_in_the_kind,
    an_outbox_whose_work_keeps_failing_parks_the_entry,
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
    } else if let Some(prefix) = target.strip_prefix("etcd:") {
        let store = Etcd::options().prefix(prefix).connect(&etcd_endpoints()).await.expect("connect");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(etcd_tests), ignore = "set ETCD_ENDPOINTS to run the etcd tests")]
async fn four_processes_lose_no_update_on_etcd() {
    let store = etcd().await;
    run_workers(&format!("etcd:{}", store.prefix()));
    assert_exact(&store).await;
    remove_prefix(&store).await;
}
