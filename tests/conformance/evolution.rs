//! Schema evolution on every store: schema versions kept with records,
//! history and feed; rows an older release wrote (`tests/fixtures`) read
//! through the current room machine (`docs/snippets/rooms.rs`); records
//! of a newer schema refused and left alone; unreadable history entries
//! returned in place; and the batch rewrite.

use super::Harness;
use machine_core::evolution::{Payload, Rewrite};
use machine_core::store::{Commit, Cursor, Origin, Store, Write};
use machine_core::{DecodeError, Error, Runner, UnreadableEntry};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The room machine of the docs, at schema version 3.
#[allow(unreachable_pub, missing_docs, clippy::unnecessary_wraps, clippy::needless_pass_by_value)]
pub(crate) mod machine {
    include!("../../docs/snippets/rooms.rs");
}

use machine::rooms::{Room, RoomCommand, Rooms};

/// Rows releases 1.0 and 2.0 wrote.
const FIXTURES: &str = include_str!("../fixtures/rooms-1.0.json");

/// What the current code reads from them; regenerate with
/// `BLESS_FIXTURES=1 cargo test -p machine-workspace --all-features --test stores memory::fixtures`
/// after a deliberate change of the machine *with* its migration.
const EXPECTED: &str = "tests/fixtures/rooms-1.0.expected.json";

fn write<'a>(id: &'a str, expected: u64, kind: &'a str, state: &str, command: &'a str, schema: u32) -> Write<'a> {
    Write {
        machine: "Room",
        id,
        expected,
        kind,
        state: state.to_owned(),
        command,
        origin: Origin::Command,
        schema,
        due: None,
    }
}

/// Commits the fixture rows into `store`, in order, as the older releases did.
pub(crate) async fn load_fixtures(store: &impl Store) {
    let fixtures: Value = serde_json::from_str(FIXTURES).expect("fixtures are JSON");
    for record in fixtures["records"].as_array().expect("records") {
        let id = record["id"].as_str().expect("id");
        for (expected, row) in (0_u64..).zip(record["writes"].as_array().expect("writes")) {
            let command = row["command"].to_string();
            let schema = u32::try_from(row["schema"].as_u64().expect("schema")).expect("u32");
            let kind = row["kind"].as_str().expect("kind");
            let origin = Origin::parse(row["origin"].as_str().expect("origin")).expect("a known origin");
            let write = Write { origin, ..write(id, expected, kind, &row["state"].to_string(), &command, schema) };
            store.commit(Commit::write(write)).await.expect("fixture row");
        }
    }
}

/// The ids the fixtures hold.
pub(crate) const FIXTURE_IDS: [&str; 4] = ["r1", "r2", "r3", "r9"];

/// Every fixture record and history entry as the current code decodes it,
/// encoded again: what [`EXPECTED`] holds.
async fn read_through_current_code<St: Store>(runner: &Runner<Rooms, St>) -> Value {
    let mut read = serde_json::Map::new();
    for id in FIXTURE_IDS {
        let current = runner.get(id).await.unwrap_or_else(|e| panic!("{id}: {e}")).expect("written");
        let history: Vec<Value> = runner
            .history(id)
            .await
            .expect("history")
            .into_iter()
            .map(|entry| {
                let entry = entry.unwrap_or_else(|unreadable| panic!("{id}: {unreadable}"));
                json!({
                    "version": entry.version,
                    "schema": entry.schema,
                    "origin": entry.origin.as_str(),
                    "command": entry.command,
                    "before": entry.before,
                    "state": entry.state,
                })
            })
            .collect();
        read.insert(id.to_owned(), json!({ "version": current.version, "state": current.state, "history": history }));
    }
    Value::Object(read)
}

/// [`EXPECTED`], or, with `BLESS_FIXTURES` set, `read` written to it.
fn expected(read: &Value) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(EXPECTED);
    if std::env::var_os("BLESS_FIXTURES").is_some() {
        let text = serde_json::to_string_pretty(read).expect("JSON") + "\n";
        std::fs::write(&path, text).expect("write the expected reading");
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("the expected reading is JSON")
}

/// The rows an older release wrote read through the current code, records
/// and histories, exactly as expected: a change of the room machine that
/// breaks them without a migration fails here.
pub(crate) async fn fixtures_of_older_releases_read_through_the_current_code(store: impl Harness) {
    load_fixtures(&store).await;
    let runner = Runner::<Rooms, _>::new(store.clone(), ());
    let read = read_through_current_code(&runner).await;
    assert_eq!(read, expected(&read), "the fixtures no longer read as they did: add a migration");
    // The rows themselves are untouched by reading.
    assert_eq!(store.load("Room", "r1").await.unwrap().unwrap().schema, 1);
    // And the current code carries on from them.
    let out = runner.handle("r9", &RoomCommand::Book { nights: 2 }).await.unwrap();
    let booked = Room::Booked { guest: "eve".into(), nights: 2, channel: "direct".into() };
    assert_eq!((out.state, out.version), (booked, 2));
    let record = store.load("Room", "r9").await.unwrap().unwrap();
    assert_eq!((record.schema, &*record.kind), (3, "Booked"), "writes store the current version");
    let retired = runner.handle("r2", &RoomCommand::Retired { command: "Extend".into() }).await;
    assert!(matches!(retired, Err(Error::Rejected(_))), "a retired command is refused: {retired:?}");
}

/// Schema versions go in with every write and come back out of records,
/// history (with the version of the state before), the feed and listings.
pub(crate) async fn schema_versions_round_trip_through_every_read(store: impl Harness) {
    for (expected, schema) in [(0, 1), (1, 2), (2, 7)] {
        let state = format!("{schema}");
        store.commit(Commit::write(write("s", expected, "Open", &state, "null", schema))).await.unwrap();
    }
    assert_eq!(store.load("Room", "s").await.unwrap().unwrap().schema, 7);
    let history = store.history("Room", "s").await.unwrap();
    let schemas: Vec<_> = history.iter().map(|c| (c.version, c.schema, c.schema_before)).collect();
    assert_eq!(schemas, [(1, 1, None), (2, 2, Some(1)), (3, 7, Some(2))]);
    let feed = super::feed_of(&store, 3).await;
    let feed: Vec<_> = feed.iter().filter(|c| &*c.id == "s").map(|c| (c.schema, c.schema_before)).collect();
    assert_eq!(feed, [(1, None), (2, Some(1)), (7, Some(2))]);
    let listed = store.by_kind("Room", "Open", None, 10).await.unwrap();
    assert_eq!(listed.iter().map(|l| l.record.schema).collect::<Vec<_>>(), [7]);
    let listed = store.records("Room", None, 10).await.unwrap();
    assert_eq!(listed.iter().map(|l| l.record.schema).collect::<Vec<_>>(), [7]);
    let _: Vec<_> = store.changes(Cursor::START, 1).await.unwrap();
}

/// [`Query::records`] pages through one machine's records by id, whatever
/// their kind (also kinds the code no longer has).
pub(crate) async fn every_record_of_a_machine_is_listed_in_pages(store: impl Harness) {
    for (id, kind) in [("b", "Held"), ("a", "Free"), ("d", "Gone"), ("c", "Held"), ("e", "Booked")] {
        store.commit(Commit::write(write(id, 0, kind, "1", "null", 1))).await.unwrap();
    }
    let other = Write { machine: "Other", ..write("aa", 0, "Free", "1", "null", 1) };
    store.commit(Commit::write(other)).await.unwrap();
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.records("Room", after.as_deref(), 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        pages.push(page.iter().map(|l| (l.id.clone(), l.record.kind.to_string())).collect::<Vec<_>>());
    }
    let owned =
        |page: &[(&str, &str)]| page.iter().map(|(i, k)| ((*i).to_owned(), (*k).to_owned())).collect::<Vec<_>>();
    assert_eq!(
        pages,
        [owned(&[("a", "Free"), ("b", "Held")]), owned(&[("c", "Held"), ("d", "Gone")]), owned(&[("e", "Booked")])]
    );
    assert!(store.records("Room", None, 0).await.unwrap().is_empty());
    assert!(store.records("Nothing", None, 10).await.unwrap().is_empty());
}

/// A record written by a newer schema version than the code is refused
/// with a typed error and never written over: not by a command, not by a
/// decision, not by the batch rewrite.
pub(crate) async fn newer_schema_records_are_refused_and_never_overwritten(store: impl Harness) {
    let future = r#"{"Reserved":{"guest":"zoe","channel":"app","loyalty":"gold"}}"#;
    store.commit(Commit::write(write("future", 0, "Reserved", future, r#"{"Reserve":{}}"#, 4))).await.unwrap();
    let before = store.raw_rows("Room", "future").await;
    let runner = Runner::<Rooms, _>::new(store.clone(), ());

    let error = runner.handle("future", &RoomCommand::Release).await.unwrap_err();
    let Error::Decode(decode) = &error else { panic!("not a decode error: {error:?}") };
    assert!(decode.is_newer(), "{decode:?}");
    assert_eq!(
        (decode.id.as_str(), decode.version, decode.what, decode.schema, decode.current),
        ("future", 1, Payload::State, 4, 3)
    );
    assert_eq!(
        error.to_string(),
        "cannot decode the state of Room \"future\" at version 1: it was stored by schema version 4, newer than \
         this code's 3; it is left as it is"
    );
    assert!(matches!(runner.get("future").await, Err(Error::Decode(d)) if d.is_newer()));
    let history = runner.history("future").await.unwrap();
    assert!(matches!(&history[..], [Err(UnreadableEntry { error, .. })] if error.is_newer()), "{history:?}");

    let key = machine_core::decision::Key::<Rooms>::new("future");
    let decided = machine_core::decision::Decision::new(&store)
        .read(&key)
        .attempt(|draft| {
            draft.apply(&key, &(), &RoomCommand::Release)?;
            Ok(machine_core::decision::Verdict::Commit(()))
        })
        .await;
    assert!(matches!(&decided, Err(Error::Decode(d)) if d.is_newer()), "{decided:?}");

    let migrated = runner.migrate(Rewrite::default()).await.unwrap();
    assert_eq!((migrated.progress.scanned, migrated.progress.rewritten, migrated.progress.failed), (1, 0, 1));
    assert!(matches!(&migrated.failures[..], [(id, Error::Decode(d))] if id == "future" && d.is_newer()));
    assert_eq!(store.raw_rows("Room", "future").await, before, "nothing wrote over it");
}

/// One entry that does not decode, mid-history, is returned in its place
/// with its raw JSON and why; the entries around it still read.
pub(crate) async fn an_unreadable_history_entry_leaves_the_others_readable(store: impl Harness) {
    let reserved = r#"{"Reserved":{"guest":"ada","channel":"web"}}"#;
    let reserve = r#"{"Reserve":{"guest":"ada","channel":"web"}}"#;
    let rows = [
        ("Reserved", reserved, reserve),
        // A command no version of the machine ever had (written by hand).
        ("Reserved", reserved, r#"{"Teleport":{"to":"Mars"}}"#),
        ("Booked", r#"{"Booked":{"guest":"ada","nights":2,"channel":"web"}}"#, r#"{"Book":{"nights":2}}"#),
        // A state of a shape nothing knows, then a good entry after it.
        ("Booked", r#"{"Booked":{"guest":"ada","nights":"two"}}"#, r#"{"Book":{"nights":2}}"#),
        ("Free", r#""Free""#, r#""Release""#),
    ];
    for (expected, (kind, state, command)) in (0_u64..).zip(rows) {
        store.commit(Commit::write(write("h", expected, kind, state, command, 3))).await.unwrap();
    }
    let runner = Runner::<Rooms, _>::new(store.clone(), ());
    let history = runner.history("h").await.unwrap();
    let read: Vec<Result<u64, (u64, Payload)>> =
        history.iter().map(|e| e.as_ref().map(|e| e.version).map_err(|u| (u.change.version, u.error.what))).collect();
    assert_eq!(
        read,
        [Ok(1), Err((2, Payload::Command)), Ok(3), Err((4, Payload::State)), Err((5, Payload::StateBefore))],
        "each entry on its own; the one after a bad state has a bad state before"
    );
    let Err(unreadable) = &history[1] else { unreachable!() };
    let raw: Value = serde_json::from_str(&unreadable.change.command).unwrap();
    assert_eq!(raw, json!({ "Teleport": { "to": "Mars" } }), "its raw JSON");
    let DecodeError { machine, id, schema, .. } = &unreadable.error;
    assert_eq!((*machine, id.as_str(), *schema), ("Room", "h", 3));
    let message = unreadable.to_string();
    assert!(
        message.contains("cannot decode the command of Room \"h\" at version 2: unknown variant `Teleport`"),
        "{message}"
    );
    assert_eq!(runner.get("h").await.unwrap().map(|v| v.state), Some(Room::Free), "the record itself reads");
}

/// The batch rewrite: old records are rewritten at the current version
/// through the pipeline (version + 1, a migration entry without command),
/// paged, with progress; current ones are left alone; a second run finds
/// nothing to do; every entry still reads.
pub(crate) async fn migrate_rewrites_old_records_through_the_pipeline(store: impl Harness) {
    load_fixtures(&store).await;
    let runner = Runner::<Rooms, _>::new(store.clone(), ());
    runner.handle("new", &RoomCommand::Reserve { guest: "fay".into(), channel: "app".into() }).await.unwrap();
    let before = read_through_current_code(&runner).await;
    let reports = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&reports);
    let rewrite = Rewrite::default().page(2).progress(move |p| seen.lock().unwrap().push(p.clone()));
    let migrated = runner.migrate(rewrite).await.unwrap();
    assert!(migrated.failures.is_empty(), "{:?}", migrated.failures);
    let totals: Vec<_> =
        reports.lock().unwrap().iter().map(|p| (p.scanned, p.rewritten, p.last_id.clone().unwrap())).collect();
    assert_eq!(totals, [(2, 1, "r1".into()), (4, 3, "r3".into()), (5, 4, "r9".into())], "paged, by id");

    for id in FIXTURE_IDS {
        let old = &before[id];
        let record = store.load("Room", id).await.unwrap().unwrap();
        assert_eq!((record.version, record.schema), (old["version"].as_u64().unwrap() + 1, 3), "{id}");
        let history = runner.history(id).await.unwrap();
        let last = history.last().unwrap().as_ref().unwrap();
        assert_eq!((last.origin, last.command.as_ref(), last.schema), (Origin::Migration, None, 3), "{id}");
        assert_eq!(json!(last.state), old["state"], "{id}: the same state");
        let earlier: Vec<Value> =
            history[..history.len() - 1].iter().map(|e| json!(e.as_ref().unwrap().state)).collect();
        let old_states: Vec<Value> = old["history"].as_array().unwrap().iter().map(|e| e["state"].clone()).collect();
        assert_eq!(earlier, old_states, "{id}: the history before is as it was");
    }
    assert_eq!(store.load("Room", "new").await.unwrap().unwrap().version, 1, "a current record is not rewritten");
    let again = runner.migrate(Rewrite::default()).await.unwrap();
    assert_eq!((again.progress.scanned, again.progress.rewritten), (5, 0), "nothing left to do");
}
