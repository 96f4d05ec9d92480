//! Conformance cases for rows no store writes: planted behind the store's
//! back (see [`Harness`]), each must read as `StoreError::Corrupt` naming its
//! record, stay as it is, and leave every other record readable.

use super::{CounterCommand, Counters, Harness, M, Raw, feed_of, version, write};
use machine_core::StoreError;
use machine_core::prelude::*;
use machine_core::store::{Check, Commit, Cursor};

/// Record rows as no store writes them: `(column, value)`.
const BAD_RECORDS: &[(&str, Raw)] = &[
    ("version", Raw::Int(0)),
    ("version", Raw::Int(-7)),
    ("version", Raw::Real(1.5)),
    // Not '1': SQLite's INTEGER affinity stores that as the integer 1.
    ("version", Raw::Text("one")),
    ("version", Raw::Blob(b"\x01")),
    ("version", Raw::Null),
    ("kind", Raw::Blob(b"Open")),
    ("state", Raw::Blob(b"1")),
    ("state", Raw::BadText(b"\xff\xfe")),
    ("state", Raw::Null),
    ("updated_at", Raw::Real(0.5)),
    ("updated_at", Raw::Text("yesterday")),
    ("updated_at", Raw::Int(-1)),
];

/// History rows as no store writes them: `(column, value)`.
const BAD_HISTORY: &[(&str, Raw)] = &[
    ("version", Raw::Int(0)),
    ("version", Raw::Int(-2)),
    ("version", Raw::Real(2.5)),
    ("version", Raw::Text("two")),
    ("command", Raw::Blob(b"null")),
    ("kind", Raw::Blob(b"Open")),
    ("state", Raw::Blob(b"1")),
    ("state", Raw::BadText(b"\xc3\x28")),
    ("origin", Raw::Text("teleported")),
    ("origin", Raw::Blob(b"command")),
    ("at", Raw::Real(0.5)),
    ("at", Raw::Text("noon")),
    ("at", Raw::Int(-1)),
];

/// Whether `error` is the `Corrupt` error of record `(M, id)` about `column`.
fn names(error: &StoreError, id: &str, column: &str) -> bool {
    matches!(error, StoreError::Corrupt { machine, id: got, reason }
        if machine == M && got == id && reason.contains(&format!("stored {column} ")))
        && !error.is_retryable()
        && error.to_string().starts_with(&format!("corrupt record {M} {id:?}: "))
}

pub(crate) async fn corrupt_records_are_named_and_left_untouched(store: impl Harness) {
    let runner = Runner::<Counters, _>::new(store.clone(), ());
    runner.handle("good", &CounterCommand::Increment).await.unwrap();
    let mut planted = 0;
    for (n, &(column, value)) in BAD_RECORDS.iter().enumerate() {
        let id = format!("bad-{n}"); // sorts before "good", so it is in the first page
        if !store.plant_record(M, &id, column, value).await {
            eprintln!("skipped: this store cannot hold a record whose {column} is {value:?}");
            continue;
        }
        planted += 1;
        let rows = store.raw_rows(M, &id).await;
        let case = format!("{column} = {value:?}");
        let loaded = store.load(M, &id).await.unwrap_err();
        assert!(names(&loaded, &id, column), "{case}: {loaded:?}");
        // A page holding the row fails naming it; later pages are unaffected.
        let page = store.by_kind(M, "Open", None, 100).await;
        if column == "kind" {
            let ids: Vec<_> = page.unwrap().into_iter().map(|l| l.id).collect();
            assert_eq!(ids, ["good"], "{case}: a kind that is not text matches no kind");
        } else {
            let error = page.unwrap_err();
            assert!(names(&error, &id, column), "{case}: {error:?}");
        }
        let next: Vec<_> = store.by_kind(M, "Open", Some(&id), 100).await.unwrap().into_iter().map(|l| l.id).collect();
        assert_eq!(next, ["good"], "{case}");
        // The runner stops at once instead of retrying a write that cannot land.
        let handled = runner.handle(&id, &CounterCommand::Increment).await.unwrap_err();
        assert!(matches!(&handled, Error::Store(e) if names(e, &id, column)), "{case}: {handled:?}");
        assert!(!handled.is_retryable(), "{case}");
        if column == "version" {
            for expected in [0, 1] {
                let error = store.commit(Commit::write(write(&id, expected, "2"))).await.unwrap_err();
                assert!(names(&error, &id, column), "{case}, write expecting {expected}: {error:?}");
            }
            let check = Check { machine: M, id: &id, expected: 0 };
            let error =
                store.commit(Commit { writes: vec![write("other", 0, "1")], checks: vec![check], keys: vec![] }).await;
            assert!(names(&error.unwrap_err(), &id, column), "{case}: read check");
            assert_eq!(store.load(M, "other").await.unwrap(), None, "{case}: nothing of the commit applied");
        }
        assert_eq!(store.raw_rows(M, &id).await, rows, "{case}: the row is left as it was");
        assert_eq!(version(&store, "good").await, 1, "{case}: the neighbour still loads");
        store.remove_rows(M, &id).await;
    }
    eprintln!("{planted} of {} corrupt records planted", BAD_RECORDS.len());
    assert_eq!(runner.handle("good", &CounterCommand::Increment).await.unwrap().version, 2);
}

pub(crate) async fn corrupt_history_entries_are_named_and_left_untouched(store: impl Harness) {
    store.commit(Commit::write(write("good", 0, "1"))).await.unwrap();
    let clean = feed_of(&store, 1).await;
    let mut planted = 0;
    for (n, &(column, value)) in BAD_HISTORY.iter().enumerate() {
        let id = format!("bad-{n}");
        if !store.plant_history(M, &id, column, value).await {
            eprintln!("skipped: this store cannot hold a history entry whose {column} is {value:?}");
            continue;
        }
        planted += 1;
        let rows = store.raw_rows(M, &id).await;
        let case = format!("{column} = {value:?}");
        let error = store.history(M, &id).await.unwrap_err();
        assert!(names(&error, &id, column), "{case}: {error:?}");
        assert!(error.to_string().contains("history entry "), "{case}: the entry's cursor is named: {error}");
        // The feed cannot skip a change, so the page holding it fails naming
        // it; the pages before it still read.
        let mut feed = store.changes(Cursor::START, 1000).await;
        for _ in 0..100 {
            if feed.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            feed = store.changes(Cursor::START, 1000).await;
        }
        let error = feed.unwrap_err();
        assert!(names(&error, &id, column), "{case}: {error:?}");
        let before = u32::try_from(clean.len()).unwrap();
        assert_eq!(store.changes(Cursor::START, before).await.unwrap(), clean, "{case}");
        assert_eq!(store.history(M, "good").await.unwrap().len(), 1, "{case}: other histories still read");
        assert_eq!(version(&store, "good").await, 1, "{case}");
        assert_eq!(store.raw_rows(M, &id).await, rows, "{case}: the row is left as it was");
        store.remove_rows(M, &id).await;
    }
    eprintln!("{planted} of {} corrupt history entries planted", BAD_HISTORY.len());
    assert_eq!(store.changes(Cursor::START, 1000).await.unwrap(), clean, "readable again once the rows are gone");
}
