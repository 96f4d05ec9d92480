//! The store conformance suite, written once: every function takes a fresh
//! store through a [`Harness`] and checks one guarantee of the `Store`,
//! `Feed` and `Query` traits. `tests/stores.rs` runs it against each store.

#![allow(dead_code)] // each test binary uses the part it needs

mod boundary;
mod corrupt;
pub(crate) mod evolution;
mod outbox;
mod processors;
mod recovery;
mod retention;
mod timers;

#[allow(unused_imports)] // as for dead code: not every test binary runs these
pub(crate) use boundary::{
    a_decision_key_commits_once, a_lost_reply_is_replayed_when_the_request_comes_again,
    a_repeated_key_returns_the_first_outcome_and_applies_once, concurrent_calls_with_one_key_apply_once,
    creates_and_updates_are_checked, expired_keys_are_forgotten_and_standing_ones_kept, history_is_read_by_pages,
    keys_expire_after_the_retention, records_are_listed_typed_and_counted_by_kind,
};
#[allow(unused_imports)]
pub(crate) use corrupt::{
    corrupt_history_entries_are_named_and_left_untouched, corrupt_records_are_named_and_left_untouched,
};
#[allow(unused_imports)]
pub(crate) use evolution::{
    an_unreadable_history_entry_leaves_the_others_readable, every_record_of_a_machine_is_listed_in_pages,
    fixtures_of_older_releases_read_through_the_current_code, migrate_rewrites_old_records_through_the_pipeline,
    newer_schema_records_are_refused_and_never_overwritten, schema_versions_round_trip_through_every_read,
};
#[allow(unused_imports)]
pub(crate) use outbox::{
    an_outbox_applies_each_callback_once_however_often_delivered, an_outbox_ignores_changes_that_stay_in_the_kind,
    an_outbox_whose_work_keeps_failing_parks_the_entry,
};
#[allow(unused_imports)]
pub(crate) use processors::{
    a_failing_handler_backs_off_then_parks_and_is_redriven, a_lease_given_up_is_free_at_once_early_on_the_clock,
    a_processor_resumes_from_its_checkpoint_after_a_crash, an_undecodable_entry_is_parked_not_fatal,
    batches_are_configurable, checkpoints_are_compared_and_set, lag_counts_the_changes_behind_the_head,
    one_instance_per_name_delivers_while_its_lease_stands,
};
#[allow(unused_imports)]
pub(crate) use recovery::{
    an_unreadable_failed_record_does_not_stop_recovery, concurrent_recoveries_replay_each_failure_once,
    failures_are_replayed_after_their_backoff_then_left,
};
#[allow(unused_imports)]
pub(crate) use retention::{TicketCommand, Tickets};
#[allow(unused_imports)]
pub(crate) use retention::{
    a_lost_removal_reply_is_not_found_when_asked_again, a_removed_id_starts_afresh,
    a_removed_record_stays_in_the_feed_until_pruned, a_terminal_record_is_removed_whole,
    a_writer_racing_the_removal_wins_or_loses_whole, finished_records_are_removed_by_a_run,
    pruning_takes_the_oldest_history_and_tells_consumers_behind, pruning_while_writing_never_skips_silently,
    removal_is_conditional_on_version_and_kind,
};
#[allow(unused_imports)]
pub(crate) use timers::{
    a_record_that_moved_on_is_not_fired, a_refused_timer_is_disarmed_not_retried_for_ever,
    coalesced_fires_race_commands_and_fire_once, due_times_are_stored_indexed_and_cleared,
    fire_judges_the_state_it_loads, two_sweepers_fire_each_due_state_once,
};

use machine_core::prelude::*;
use machine_core::store::{Change, Check, Commit, Cursor, Feed, Origin, Query, Store, Write};
use machine_core::store::{Etcd, Postgres, Sqlite};
use machine_core::{StoreError, VersionConflict};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// What a test needs from a store beyond the traits: writing raw rows, as a
/// bug, an operator or an old version of the program might have left them.
pub(crate) trait Harness: Store + Feed + Query + Clone {
    /// Writes record `(machine, id)` directly, bypassing the store's checks;
    /// `false` when the store cannot hold such a row (e.g. invalid JSON in a
    /// `jsonb` column, versions it does not support).
    fn raw_record(&self, machine: &str, id: &str, version: u64, state: &str) -> impl Future<Output = bool> + Send;

    /// Writes record `(machine, id)` as the store would at version 1 (kind
    /// `Open`, state `1`), then stores `value` in `column` behind the store's
    /// back, bypassing every check that can be bypassed; `false` (and nothing
    /// written) when the store cannot hold such a row.
    fn plant_record(&self, machine: &str, id: &str, column: &str, value: Raw) -> impl Future<Output = bool> + Send;

    /// Likewise for one history row of version 1 (command `null`, origin
    /// `command`, kind `Open`, state `1`) with `value` stored in `column`.
    fn plant_history(&self, machine: &str, id: &str, column: &str, value: Raw) -> impl Future<Output = bool> + Send;

    /// Every stored row of record `(machine, id)`, record and history, as
    /// exact text, to show that nothing rewrote them.
    fn raw_rows(&self, machine: &str, id: &str) -> impl Future<Output = Vec<String>> + Send;

    /// Deletes every row of record `(machine, id)`.
    fn remove_rows(&self, machine: &str, id: &str) -> impl Future<Output = ()> + Send;

    /// Whether [`Store::prune_history`] shortens the feed (a cursor behind
    /// what it deleted gets `FeedCompacted`), or leaves the feed whole
    /// (etcd, whose feed is its revision history until the cluster compacts).
    /// Either way no cursor ever silently skips a change.
    fn prunes_the_feed(&self) -> bool {
        true
    }
}

/// A value as another program might have stored it in a column.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Raw {
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Valid text.
    Text(&'static str),
    /// Bytes stored as text although they are not UTF-8.
    BadText(&'static [u8]),
    /// Bytes.
    Blob(&'static [u8]),
    /// SQL NULL.
    Null,
}

impl Raw {
    /// SQLite's name for the storage class the value must end up in
    /// (`typeof`): a harness refuses a plant that type affinity converted.
    pub(crate) fn storage_class(self) -> &'static str {
        match self {
            Self::Int(_) => "integer",
            Self::Real(_) => "real",
            Self::Text(_) | Self::BadText(_) => "text",
            Self::Blob(_) => "blob",
            Self::Null => "null",
        }
    }
}

pub(crate) const M: &str = "Conformance";

/// Why the PostgreSQL tests are ignored when they are: the reason `cargo test`
/// prints beside each of them.
pub(crate) const SKIPPED: &str = "set DATABASE_URL to run the PostgreSQL tests";

/// The server URL. Every PostgreSQL test is marked
/// `#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL …")]`, and the
/// root package's `build.rs` sets `postgres_tests` when `DATABASE_URL` (or
/// `CI=true`) was set at build time, so without a URL those tests are reported
/// as ignored and counted, never passed. A test that runs anyway (under
/// `CI=true`, with `--include-ignored`, or a binary started without the
/// variable it was built with) fails here instead of passing silently.
pub(crate) fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("CI=true but DATABASE_URL is not set: the PostgreSQL tests must run in CI")
        }
        _ => panic!("DATABASE_URL is not set: {SKIPPED} (without it they are ignored)"),
    }
}

/// Why the etcd tests are ignored when they are.
pub(crate) const SKIPPED_ETCD: &str = "set ETCD_ENDPOINTS to run the etcd tests";

/// The etcd cluster's client URLs, from `ETCD_ENDPOINTS` (comma-separated;
/// `scripts/etcd-cluster.sh start` prints it). As with [`database_url`], the
/// etcd tests are marked `#[cfg_attr(not(etcd_tests), ignore = "…")]` and a
/// test that runs without the variable (under `CI=true`) fails here.
pub(crate) fn etcd_endpoints() -> Vec<String> {
    match std::env::var("ETCD_ENDPOINTS") {
        Ok(urls) if !urls.trim().is_empty() => urls.split(',').map(|url| url.trim().to_owned()).collect(),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("CI=true but ETCD_ENDPOINTS is not set: the etcd tests must run in CI")
        }
        _ => panic!("ETCD_ENDPOINTS is not set: {SKIPPED_ETCD} (without it they are ignored)"),
    }
}

/// A store under a fresh key prefix of the test cluster.
pub(crate) async fn etcd() -> Etcd {
    let prefix = format!("{}/", unique("mctest"));
    Etcd::options().prefix(prefix).connect(&etcd_endpoints()).await.expect("connect to ETCD_ENDPOINTS")
}

/// Deletes every key of a test store.
pub(crate) async fn remove_prefix(store: &Etcd) {
    let options = etcd_client::DeleteOptions::new().with_prefix();
    store.client().clone().delete(store.prefix(), Some(options)).await.expect("remove the test prefix");
}

pub(crate) fn write<'a>(id: &'a str, expected: u64, state: &str) -> Write<'a> {
    Write {
        machine: M,
        id,
        expected,
        kind: "Open",
        state: state.to_owned(),
        command: "{\"cmd\":1}",
        origin: Origin::Command,
        schema: 1,
        due: None,
    }
}

pub(crate) async fn version(store: &impl Store, id: &str) -> u64 {
    store.load(M, id).await.unwrap().map_or(0, |r| r.version)
}

pub(crate) async fn create_and_update(store: impl Harness) {
    assert_eq!(store.load(M, "a").await.unwrap(), None);
    store.commit(Commit::write(write("a", 0, "{\"n\":1}"))).await.unwrap();
    store.commit(Commit::write(write("a", 1, "{\"n\":2}"))).await.unwrap();
    let record = store.load(M, "a").await.unwrap().unwrap();
    assert_eq!(record.version, 2);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&record.state).unwrap(), serde_json::json!({"n": 2}));
    assert_eq!(&*record.kind, "Open");
    assert!(record.updated_at > 1_600_000_000_000, "milliseconds since the epoch: {}", record.updated_at);
}

pub(crate) async fn stale_and_duplicate_writes_conflict(store: impl Harness) {
    store.commit(Commit::write(write("a", 0, "1"))).await.unwrap();
    store.commit(Commit::write(write("a", 1, "2"))).await.unwrap();
    let stale = store.commit(Commit::write(write("a", 1, "3"))).await.unwrap_err();
    assert_eq!(stale.conflict(), Some(&VersionConflict::new(M, "a", 2, 2)), "{stale:?}");
    let duplicate = store.commit(Commit::write(write("a", 0, "3"))).await.unwrap_err();
    assert_eq!(duplicate.conflict(), Some(&VersionConflict::new(M, "a", 1, 2)), "{duplicate:?}");
    let ahead = store.commit(Commit::write(write("b", 5, "1"))).await.unwrap_err();
    assert_eq!(ahead.conflict(), Some(&VersionConflict::new(M, "b", 6, 0)), "{ahead:?}");
    assert_eq!(version(&store, "a").await, 2);
    assert_eq!(store.history(M, "a").await.unwrap().len(), 2, "losers write no history");
}

pub(crate) async fn multi_record_commits_are_all_or_nothing(store: impl Harness) {
    for id in ["a", "b", "c"] {
        store.commit(Commit::write(write(id, 0, "0"))).await.unwrap();
    }
    let stale = Commit { writes: vec![write("a", 1, "1"), write("b", 7, "1")], checks: vec![], keys: vec![] };
    assert!(store.commit(stale).await.unwrap_err().conflict().is_some());
    assert_eq!((version(&store, "a").await, version(&store, "b").await), (1, 1), "nothing applied");
    assert_eq!(store.history(M, "a").await.unwrap().len(), 1);

    let both = Commit {
        writes: vec![write("a", 1, "1"), write("b", 1, "1"), write("a", 2, "2")],
        checks: vec![],
        keys: vec![],
    };
    store.commit(both).await.unwrap();
    assert_eq!((version(&store, "a").await, version(&store, "b").await), (3, 2));
}

pub(crate) async fn read_checks_guard_the_commit(store: impl Harness) {
    store.commit(Commit::write(write("read", 0, "0"))).await.unwrap();
    let checked = |expected| Check { machine: M, id: "read", expected };
    store.commit(Commit { writes: vec![write("w", 0, "1")], checks: vec![checked(1)], keys: vec![] }).await.unwrap();
    store.commit(Commit::write(write("read", 1, "1"))).await.unwrap();
    let error = store
        .commit(Commit { writes: vec![write("w", 1, "2")], checks: vec![checked(1)], keys: vec![] })
        .await
        .unwrap_err();
    assert_eq!(error.conflict(), Some(&VersionConflict::new(M, "read", 2, 2)));
    assert_eq!(version(&store, "w").await, 1);
    let absent = Check { machine: M, id: "never", expected: 0 };
    store.commit(Commit { writes: vec![write("w", 1, "2")], checks: vec![absent], keys: vec![] }).await.unwrap();
    assert_eq!(version(&store, "read").await, 2, "a check writes nothing");
}

pub(crate) async fn history_is_ordered_with_states_before_and_after(store: impl Harness) {
    for (expected, state) in [(0, "\"a\""), (1, "\"b\""), (2, "\"c\"")] {
        store.commit(Commit::write(write("h", expected, state))).await.unwrap();
    }
    let history = store.history(M, "h").await.unwrap();
    // Stores may normalise JSON text (PostgreSQL's jsonb does): compare values.
    let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    let summary: Vec<_> =
        history.iter().map(|c| (c.version, c.before.as_deref().map(json), json(&c.after), json(&c.command))).collect();
    let (a, b, c, cmd) = (json("\"a\""), json("\"b\""), json("\"c\""), json("{\"cmd\":1}"));
    assert_eq!(
        summary,
        [(1, None, a.clone(), cmd.clone()), (2, Some(a), b.clone(), cmd.clone()), (3, Some(b), c, cmd)]
    );
    assert!(history.windows(2).all(|w| w[0].cursor < w[1].cursor));
    assert!(store.history(M, "nobody").await.unwrap().is_empty());
}

pub(crate) async fn the_feed_is_ordered_and_resumable(store: impl Harness) {
    let mut expected = Vec::new();
    for round in 0..5_u64 {
        for id in ["x", "y", "z"] {
            store.commit(Commit::write(write(id, round, &round.to_string()))).await.unwrap();
            expected.push((id.to_owned(), round + 1));
        }
    }
    // Read in pages of 4, resuming from the last cursor each time, as a
    // consumer restarting after every page would.
    let mut cursor = Cursor::START;
    let mut seen = Vec::new();
    // PostgreSQL's feed holds back changes committed after a transaction
    // still open anywhere on the server (another test's, say) until it
    // ends: an empty page before the end is waited out, briefly.
    let mut waits = 0;
    loop {
        let page = store.changes(cursor, 4).await.unwrap();
        if page.is_empty() {
            if seen.len() >= expected.len() || waits == 200 {
                break;
            }
            waits += 1;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        }
        assert!(page.len() <= 4);
        assert!(page.windows(2).all(|w| w[0].cursor < w[1].cursor));
        assert!(page[0].cursor > cursor);
        cursor = page.last().unwrap().cursor;
        let resumed: Cursor = cursor.to_string().parse().unwrap();
        assert_eq!(resumed, cursor, "cursors survive a round trip through text");
        seen.extend(page.into_iter().map(|c| (c.id.to_string(), c.version)));
    }
    assert_eq!(seen, expected);
    let last = store.changes(Cursor::START, 100).await.unwrap().pop().unwrap();
    assert_eq!(last.before.as_deref().map(str::trim), Some("3"), "feed entries carry the state before");
}

pub(crate) async fn records_are_listed_by_kind_in_pages(store: impl Harness) {
    for (id, kind) in [("o-3", "Pending"), ("o-1", "Pending"), ("o-2", "Draft"), ("o-4", "Pending"), ("o-5", "Pending")]
    {
        store.commit(Commit::write(Write { kind, ..write(id, 0, "{}") })).await.unwrap();
    }
    let first = store.by_kind(M, "Pending", None, 2).await.unwrap();
    assert_eq!(first.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), ["o-1", "o-3"]);
    let next = store.by_kind(M, "Pending", Some("o-3"), 2).await.unwrap();
    assert_eq!(next.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), ["o-4", "o-5"]);
    assert!(store.by_kind(M, "Pending", Some("o-5"), 2).await.unwrap().is_empty());
    assert_eq!(store.by_kind(M, "Draft", None, 10).await.unwrap()[0].record.version, 1);
    assert!(store.by_kind("Other", "Pending", None, 10).await.unwrap().is_empty());
}

pub(crate) async fn ids_are_validated_and_stored_verbatim(store: impl Harness) {
    let longest = "é".repeat(256); // 512 bytes
    let hostile =
        ["'; drop table machine_records --", "quote\"d", "new\nline", "ключ-🔑", "\\back\\slash", "%_like_", &longest];
    for id in hostile {
        store.commit(Commit::write(write(id, 0, "1"))).await.unwrap();
        assert_eq!(version(&store, id).await, 1, "{id:?}");
        assert_eq!(&*store.history(M, id).await.unwrap()[0].id, id);
    }
    let listed: Vec<String> = store.by_kind(M, "Open", None, 100).await.unwrap().into_iter().map(|l| l.id).collect();
    let mut sorted: Vec<String> = hostile.iter().map(|s| (*s).to_owned()).collect();
    sorted.sort();
    assert_eq!(listed, sorted, "ids sort by bytes in every store");
    let too_long = "x".repeat(513);
    for bad in ["", "nul\0byte", too_long.as_str()] {
        assert!(matches!(store.load(M, bad).await, Err(StoreError::InvalidKey { what: "id", .. })), "{bad:?}");
        let refused = store.commit(Commit::write(write(bad, 0, "1"))).await;
        assert!(matches!(refused, Err(StoreError::InvalidKey { .. })), "{bad:?}: {refused:?}");
    }
    assert!(matches!(store.load("", "a").await, Err(StoreError::InvalidKey { what: "machine name", .. })));
}

pub(crate) async fn versions_at_the_limit_are_typed_errors(store: impl Harness) {
    let near_max = u64::try_from(i64::MAX).unwrap();
    if store.raw_record(M, "max", near_max, "\"x\"").await {
        let error = store.commit(Commit::write(write("max", near_max, "\"y\""))).await.unwrap_err();
        assert!(matches!(error, StoreError::VersionOverflow { version, .. } if version == near_max), "{error:?}");
        assert_eq!(version(&store, "max").await, near_max);
    }
    let beyond = store.commit(Commit::write(write("absent", u64::MAX, "\"y\""))).await.unwrap_err();
    assert!(matches!(beyond, StoreError::VersionOverflow { .. } | StoreError::Conflict(_)), "{beyond:?}");
    assert_eq!(version(&store, "absent").await, 0);
}

// ---------------------------------------------------------------------------
// Through the runner: decoding stored data, and concurrent writers.

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Counter {
    #[state(initial)]
    Missing,
    Open(u64),
}

#[derive(Command, Clone, Debug, Serialize, Deserialize)]
#[command(state = Counter)]
pub(crate) enum CounterCommand {
    #[command(from(Missing, Open), to(Open))]
    Increment,
}

pub(crate) struct Counters;

impl Machine for Counters {
    type State = Counter;
    type Command = CounterCommand;
    type Deps = ();
    type Error = std::convert::Infallible;
    const NAME: &'static str = M;

    fn transition((): &(), _: &CounterCommand, state: &Counter) -> Result<Counter, Self::Error> {
        Ok(Counter::Open(match state {
            Counter::Missing => 1,
            Counter::Open(n) => n + 1,
        }))
    }
}

pub(crate) async fn corrupt_rows_are_decode_errors_and_harm_no_other_record(store: impl Harness) {
    let runner = Runner::<Counters, _>::new(store.clone(), ());
    runner.handle("fine", &CounterCommand::Increment).await.unwrap();
    for (id, json) in [("bad-json", "{not json"), ("unknown-variant", "{\"Teleported\":3}")] {
        if !store.raw_record(M, id, 1, json).await {
            continue;
        }
        let error = runner.handle(id, &CounterCommand::Increment).await.unwrap_err();
        assert!(matches!(&error, Error::Decode(decode) if decode.id == id && decode.version == 1), "{error:?}");
        assert!(error.to_string().contains(&format!("{id:?} at version 1")), "{error}");
        assert_eq!(version(&store, id).await, 1, "nothing written over it");
    }
    assert_eq!(runner.handle("fine", &CounterCommand::Increment).await.unwrap().version, 2);
}

/// `writers` tasks each increment one record `increments` times.
pub(crate) async fn increment_concurrently<St: Store + Clone>(store: St, id: &str, writers: usize, increments: usize) {
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let most = attempts.clone();
    let runner = Runner::<Counters, _>::new(store, ());
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (runner, id, most) = (runner.clone(), id.to_owned(), most.clone());
            tokio::spawn(async move {
                for _ in 0..increments {
                    let out = runner.handle(&id, &CounterCommand::Increment).await.expect("no lost or exhausted write");
                    most.fetch_max(out.attempts, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    eprintln!("most attempts for one increment: {}", attempts.load(std::sync::atomic::Ordering::Relaxed));
}

pub(crate) async fn no_lost_updates_with_32_writers(store: impl Harness) {
    no_lost_updates(store, 32, 100).await;
}

/// The same 32 writers with 10 increments each, for stores whose commits
/// take milliseconds (etcd's are replicated before they return).
pub(crate) async fn no_lost_updates_with_32_writers_briefly(store: impl Harness) {
    no_lost_updates(store, 32, 10).await;
}

async fn no_lost_updates(store: impl Harness, writers: usize, increments: usize) {
    increment_concurrently(store.clone(), "hot", writers, increments).await;
    let total = (writers * increments) as u64;
    let record = store.load(M, "hot").await.unwrap().unwrap();
    assert_eq!(record.version, total);
    assert_eq!(serde_json::from_str::<Counter>(&record.state).unwrap(), Counter::Open(total));
    assert_eq!(store.history(M, "hot").await.unwrap().len(), writers * increments);
}

pub(crate) async fn origins_round_trip_through_history_and_the_feed(store: impl Harness) {
    let recovery = |id, expected, state| Write { origin: Origin::Recovery, ..write(id, expected, state) };
    store.commit(Commit::write(write("o", 0, "1"))).await.unwrap();
    store.commit(Commit::write(recovery("o", 1, "2"))).await.unwrap();
    let mixed = Commit { writes: vec![write("o", 2, "3"), recovery("p", 0, "1")], checks: vec![], keys: vec![] };
    store.commit(mixed).await.unwrap();
    let history: Vec<_> = store.history(M, "o").await.unwrap().iter().map(|c| (c.version, c.origin)).collect();
    assert_eq!(history, [(1, Origin::Command), (2, Origin::Recovery), (3, Origin::Command)]);
    let feed: Vec<_> = feed_of(&store, 4).await.iter().map(|c| (c.id.to_string(), c.version, c.origin)).collect();
    let expected =
        [("o", 1, Origin::Command), ("o", 2, Origin::Recovery), ("o", 3, Origin::Command), ("p", 1, Origin::Recovery)];
    assert_eq!(feed, expected.map(|(id, version, origin)| (id.to_owned(), version, origin)));
}

/// The whole feed once it holds at least `count` changes. PostgreSQL's feed
/// holds back changes while any older transaction in the database is still
/// open (another test's, say), so it is asked again for a while.
pub(crate) async fn feed_of(store: &impl Harness, count: usize) -> Vec<Change> {
    for _ in 0..100 {
        let changes = store.changes(Cursor::START, 1000).await.unwrap();
        if changes.len() >= count {
            return changes;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the feed never showed {count} changes");
}

// ---------------------------------------------------------------------------
// Fresh stores for tests.

static UNIQUE: AtomicU32 = AtomicU32::new(0);

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), UNIQUE.fetch_add(1, Ordering::Relaxed))
}

/// A SQLite store in a new temporary file, and the file's path.
pub(crate) async fn sqlite() -> (Sqlite, PathBuf) {
    let path = std::env::temp_dir().join(format!("{}.db", unique("machine-test")));
    (Sqlite::open(&path).await.expect("open sqlite"), path)
}

/// Removes a test database with its WAL and shared-memory files.
pub(crate) fn remove_sqlite(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

/// A store in a fresh schema of the test database.
pub(crate) async fn postgres() -> Postgres {
    let url = database_url();
    let schema = unique("mctest");
    Postgres::options().schema(schema).max_connections(8).connect(&url).await.expect("connect to DATABASE_URL")
}

pub(crate) async fn drop_schema(store: &Postgres) {
    let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", store.schema());
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(store.pool()).await.expect("drop test schema");
}
