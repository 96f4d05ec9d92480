//! Retention on every store: finished records removed whole (record,
//! history, keys) and only as read, the feed telling what was removed, ids
//! starting afresh, runs that archive and skip, and history pruned from the
//! feed's old end with consumers behind told — tried the way things break:
//! a writer racing the removal, a re-created id, a consumer behind the
//! pruned range, pruning while writers write.

use super::{Harness, feed_of};
use machine_core::prelude::*;
use machine_core::retention::{Archive, ArchiveError, Archived, Terminal};
use machine_core::store::{Change, Commit, Cursor, Origin, Record, Remembered, Remove, Store, Write};
use machine_core::testing::{Fault, FaultyStore, Op, Schedule};
use machine_core::{Request, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Ticket {
    #[state(initial)]
    New,
    Open {
        notes: u32,
    },
    #[state(terminal)]
    Closed {
        notes: u32,
    },
    #[state(terminal)]
    Spam,
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Ticket)]
pub(crate) enum TicketCommand {
    #[command(from(New), to(Open))]
    Open,
    /// A note keeps the ticket where it is, open or closed, at a new version.
    #[command(from(Open, Closed), to(Open, Closed))]
    Note,
    #[command(from(Open), to(Closed))]
    Close,
    #[command(from(Closed), to(Open))]
    Reopen,
    #[command(from(New, Open), to(Spam))]
    Flag,
}

pub(crate) struct Tickets;

impl Machine for Tickets {
    type State = Ticket;
    type Command = TicketCommand;
    type Deps = ();
    type Error = std::convert::Infallible;
    const NAME: &'static str = "Ticket";

    fn transition((): &(), command: &TicketCommand, state: &Ticket) -> Result<Ticket, Self::Error> {
        Ok(match (command, state) {
            (TicketCommand::Note, Ticket::Open { notes }) => Ticket::Open { notes: notes + 1 },
            (TicketCommand::Note, Ticket::Closed { notes }) => Ticket::Closed { notes: notes + 1 },
            (TicketCommand::Close, Ticket::Open { notes }) => Ticket::Closed { notes: *notes },
            (TicketCommand::Reopen, Ticket::Closed { notes }) => Ticket::Open { notes: *notes },
            (TicketCommand::Flag, _) => Ticket::Spam,
            _ => Ticket::Open { notes: 0 },
        })
    }
}

const T: &str = Tickets::NAME;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Sends `commands` to `id`, in order.
async fn send<St: Store>(runner: &Runner<Tickets, St>, id: &str, commands: &[TicketCommand]) -> u64 {
    let mut version = 0;
    for command in commands {
        version = runner.handle(id, command).await.unwrap_or_else(|e| panic!("{id} {command:?}: {e}")).version;
    }
    version
}

/// The feed entries of record `id`, once the feed holds `count` changes.
async fn feed_entries(store: &impl Harness, count: usize, id: &str) -> Vec<Change> {
    feed_of(store, count).await.into_iter().filter(|change| &*change.id == id).collect()
}

pub(crate) async fn a_terminal_record_is_removed_whole(store: impl Harness) {
    use TicketCommand::{Close, Note, Open};
    let runner = Runner::<Tickets, _>::new(store.clone(), ());
    runner.handle_with("t-1", &Open, Request::new().key("k-open")).await.unwrap();
    send(&runner, "t-1", &[Note, Close]).await;
    send(&runner, "t-open", &[Open]).await;

    let open = runner.remove("t-open").await.unwrap_err();
    assert!(matches!(&open, Error::NotTerminal { id: Some(id), state: "Open", .. } if id == "t-open"), "{open:?}");
    assert_eq!(runner.get("t-open").await.unwrap().unwrap().version, 1, "a refused removal leaves it");
    let missing = runner.remove("nobody").await.unwrap_err();
    assert!(matches!(&missing, Error::NotFound { id, .. } if id == "nobody"), "{missing:?}");

    let removed = runner.remove("t-1").await.unwrap();
    assert_eq!((removed.state, removed.version), (Ticket::Closed { notes: 1 }, 3));
    assert!(runner.get("t-1").await.unwrap().is_none());
    assert!(store.history(T, "t-1").await.unwrap().is_empty(), "its history goes with it");
    assert!(store.history_page(T, "t-1", 0, 10).await.unwrap().is_empty());
    assert!(store.recall(T, "t-1", "k-open").await.unwrap().is_none(), "so do its keys");
    assert_eq!(runner.count(TicketKind::Closed).await.unwrap(), 0);
    assert!(runner.list(TicketKind::Closed, None, 10).await.unwrap().records.is_empty());
    assert!(store.records(T, None, 10).await.unwrap().iter().all(|listed| listed.id != "t-1"));
    let again = runner.remove("t-1").await.unwrap_err();
    assert!(matches!(again, Error::NotFound { .. }), "{again:?}");

    // The feed keeps the record's changes and says it was removed, with
    // the version and state removed.
    let entries = feed_entries(&store, 5, "t-1").await;
    let summary: Vec<_> = entries.iter().map(|c| (c.version, c.origin, &*c.kind)).collect();
    assert_eq!(
        summary,
        [
            (1, Origin::Command, "Open"),
            (2, Origin::Command, "Open"),
            (3, Origin::Command, "Closed"),
            (3, Origin::Removal, "Closed")
        ]
    );
    let removal = &entries[3];
    assert_eq!(json(&removal.after), json("{\"Closed\":{\"notes\":1}}"));
    assert_eq!(json(&removal.command), serde_json::Value::Null);
    assert_eq!((removal.before.as_deref(), removal.kind_before.as_deref(), removal.schema_before), (None, None, None));
    assert!(entries[2].cursor < removal.cursor && removal.at >= entries[2].at);
    assert_eq!(json(entries[2].before.as_deref().unwrap()), json("{\"Open\":{\"notes\":1}}"));
}

pub(crate) async fn removal_is_conditional_on_version_and_kind(store: impl Harness) {
    use TicketCommand::{Close, Note, Open};
    let runner = Runner::<Tickets, _>::new(store.clone(), ());
    send(&runner, "t", &[Open, Close, Note]).await;
    let remove = |expected, kind| Remove { machine: T, id: "t", expected, kind };
    let stale = store.remove(remove(2, "Closed")).await.unwrap_err();
    assert_eq!(stale.conflict().map(|c| (c.attempted, c.current)), Some((3, 3)), "{stale:?}");
    let other_kind = store.remove(remove(3, "Open")).await.unwrap_err();
    assert_eq!(other_kind.conflict().map(|c| c.current), Some(3), "{other_kind:?}");
    let absent = store.remove(Remove { id: "never", ..remove(1, "Closed") }).await.unwrap_err();
    assert_eq!(absent.conflict().map(|c| c.current), Some(0), "{absent:?}");
    assert_eq!(store.history(T, "t").await.unwrap().len(), 3, "a refused removal removes nothing");
    for bad in ["", "nul\0"] {
        let refused = store.remove(Remove { id: bad, ..remove(1, "Closed") }).await;
        assert!(matches!(refused, Err(StoreError::InvalidKey { .. })), "{bad:?}: {refused:?}");
    }
    store.remove(remove(3, "Closed")).await.unwrap();
    assert_eq!(store.load(T, "t").await.unwrap(), None);
}

pub(crate) async fn a_removed_id_starts_afresh(store: impl Harness) {
    use TicketCommand::{Close, Note, Open};
    let runner = Runner::<Tickets, _>::new(store.clone(), ());
    runner.handle_with("t", &Open, Request::new().key("k")).await.unwrap();
    send(&runner, "t", &[Note, Close]).await;
    runner.remove("t").await.unwrap();

    // The key went with the record: the same request runs again.
    let reborn = runner.handle_with("t", &Open, Request::new().key("k")).await.unwrap();
    assert_eq!((reborn.version, reborn.replayed), (1, false));
    let history = runner.history("t").await.unwrap();
    assert_eq!(history.len(), 1);
    assert!(history[0].as_ref().unwrap().before.is_none(), "nothing of the removed record's history");
    send(&runner, "t", &[Close]).await;
    let second = runner.remove("t").await.unwrap();
    assert_eq!((second.state, second.version), (Ticket::Closed { notes: 0 }, 2));

    // In the feed, each removed incarnation's entries chain to their own.
    let entries = feed_entries(&store, 7, "t").await;
    let summary: Vec<_> =
        entries.iter().map(|c| (c.version, c.origin, c.before.as_deref().map(json), json(&c.after))).collect();
    let (open0, open1) = (json("{\"Open\":{\"notes\":0}}"), json("{\"Open\":{\"notes\":1}}"));
    let (closed0, closed1) = (json("{\"Closed\":{\"notes\":0}}"), json("{\"Closed\":{\"notes\":1}}"));
    assert_eq!(
        summary,
        [
            (1, Origin::Command, None, open0.clone()),
            (2, Origin::Command, Some(open0.clone()), open1.clone()),
            (3, Origin::Command, Some(open1), closed1.clone()),
            (3, Origin::Removal, None, closed1),
            (1, Origin::Command, None, open0.clone()),
            (2, Origin::Command, Some(open0), closed0.clone()),
            (2, Origin::Removal, None, closed0),
        ]
    );
    assert!(entries.windows(2).all(|w| w[0].cursor < w[1].cursor));
}

/// A store that, at the first removal it forwards, first commits `write` to
/// the record: a writer that got there between the remover's load and its
/// removal.
#[derive(Clone)]
struct Interloper<S> {
    inner: S,
    armed: Arc<AtomicBool>,
    state: &'static str,
    kind: &'static str,
}

impl<S: Store + Clone> Store for Interloper<S> {
    async fn load(&self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.inner.load(machine, id).await
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        self.inner.commit(commit).await
    }

    async fn history(&self, machine: &str, id: &str) -> Result<Vec<Change>, StoreError> {
        self.inner.history(machine, id).await
    }

    async fn recall(&self, machine: &str, id: &str, key: &str) -> Result<Option<Remembered>, StoreError> {
        self.inner.recall(machine, id, key).await
    }

    async fn remove(&self, remove: Remove<'_>) -> Result<(), StoreError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            let write = Write {
                machine: remove.machine,
                id: remove.id,
                expected: remove.expected,
                kind: self.kind,
                state: self.state.to_owned(),
                command: "\"Note\"",
                origin: Origin::Command,
                schema: 1,
                due: None,
            };
            self.inner.commit(Commit::write(write)).await?;
        }
        self.inner.remove(remove).await
    }
}

pub(crate) async fn a_writer_racing_the_removal_wins_or_loses_whole(store: impl Harness) {
    use TicketCommand::{Close, Note, Open};
    // The writer keeps it closed: the removal conflicts, loads again, and
    // removes the version the writer wrote.
    let interloper = |state, kind| Interloper { inner: store.clone(), armed: Arc::default(), state, kind };
    let closed = interloper("{\"Closed\":{\"notes\":9}}", "Closed");
    let runner = Runner::<Tickets, _>::new(closed.clone(), ());
    send(&runner, "kept-closed", &[Open, Close]).await;
    closed.armed.store(true, Ordering::SeqCst);
    let removed = runner.remove("kept-closed").await.unwrap();
    assert_eq!((removed.state, removed.version), (Ticket::Closed { notes: 9 }, 3), "the writer's version went");
    assert!(store.history(T, "kept-closed").await.unwrap().is_empty());

    // The writer reopens it: the removal loses, and the record is whole.
    let reopened = interloper("{\"Open\":{\"notes\":0}}", "Open");
    let runner = Runner::<Tickets, _>::new(reopened.clone(), ());
    send(&runner, "reopened", &[Open, Close]).await;
    reopened.armed.store(true, Ordering::SeqCst);
    let refused = runner.remove("reopened").await.unwrap_err();
    assert!(matches!(refused, Error::NotTerminal { state: "Open", .. }), "{refused:?}");
    let history = store.history(T, "reopened").await.unwrap();
    assert_eq!(history.iter().map(|c| c.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(store.load(T, "reopened").await.unwrap().unwrap().version, 3);

    // Real writers noting a closed ticket while it is removed: every note
    // lands before the removal or is refused after it (a note cannot create
    // a ticket), and the removal takes the last version written.
    let runner = Runner::<Tickets, _>::new(store.clone(), ()).retry(Retry::fixed(Duration::ZERO).max_attempts(1000));
    send(&runner, "hot", &[Open, Close]).await;
    let landed = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (runner, landed) = (runner.clone(), Arc::clone(&landed));
            tokio::spawn(async move {
                let mut highest = 0;
                for _ in 0..25 {
                    match runner.handle("hot", &Note).await {
                        Ok(out) => {
                            landed.fetch_add(1, Ordering::SeqCst);
                            highest = highest.max(out.version);
                        }
                        Err(Error::NotAllowed { state: "New", .. }) => break,
                        Err(other) => panic!("{other}"),
                    }
                }
                highest
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Spawned, as a service would: the removal's future is `Send`.
    let job = runner.clone();
    let removed = tokio::spawn(async move { job.remove("hot").await }).await.unwrap().unwrap();
    let mut highest = 0;
    for writer in writers {
        highest = highest.max(writer.await.unwrap());
    }
    let notes = landed.load(Ordering::SeqCst);
    assert_eq!(removed.version, 2 + notes, "every note landed before the removal, none after");
    assert_eq!(removed.state, Ticket::Closed { notes: u32::try_from(notes).unwrap() });
    assert_eq!(highest.max(2), removed.version, "no writer saw a version the removal did not take");
    assert!(store.load(T, "hot").await.unwrap().is_none());
    assert!(store.history(T, "hot").await.unwrap().is_empty());
    // Four entries of the first ticket, three of the second, then these.
    let entries = feed_entries(&store, 4 + 3 + usize::try_from(removed.version).unwrap() + 1, "hot").await;
    let versions: Vec<_> = entries.iter().map(|c| (c.version, c.origin)).collect();
    let mut expected: Vec<_> = (1..=removed.version).map(|version| (version, Origin::Command)).collect();
    expected.push((removed.version, Origin::Removal));
    assert_eq!(versions, expected, "the feed has every note, then the removal");
}

pub(crate) async fn a_lost_removal_reply_is_not_found_when_asked_again(store: impl Harness) {
    use TicketCommand::{Close, Open};
    let faulty = FaultyStore::new(store.clone()).fault(Op::Remove, Fault::LostReply, Schedule::calls([1]));
    let runner = Runner::<Tickets, _>::new(faulty, ());
    send(&runner, "t", &[Open, Close]).await;
    let lost = runner.remove("t").await.unwrap_err();
    assert!(lost.is_retryable(), "an unknown outcome: {lost:?}");
    let again = runner.remove("t").await.unwrap_err();
    assert!(matches!(again, Error::NotFound { .. }), "it was removed: {again:?}");
    assert_eq!(runner.store().calls(Op::Remove), 1, "a missing record is not sent a removal");

    // A removal that loses a race is retried by the policy, like a command.
    let faulty = FaultyStore::new(store).fault(Op::Remove, Fault::Conflict, Schedule::calls([1, 2]));
    let runner = Runner::<Tickets, _>::new(faulty, ()).retry(Retry::fixed(Duration::ZERO));
    send(&runner, "u", &[Open, Close]).await;
    assert_eq!(runner.remove("u").await.unwrap().version, 2);
    assert_eq!(runner.store().calls(Op::Remove), 3);
    assert!(runner.get("u").await.unwrap().is_none());
}

/// An archive that keeps what it is given, refuses `refuse`, and notes
/// `meddle` on its way (a writer getting in after the archive read it).
struct Shelf<St> {
    kept: Mutex<Vec<Archived<TicketCommand, Ticket>>>,
    refuse: &'static str,
    meddle: Option<(&'static str, Runner<Tickets, St>)>,
}

impl<St: Store> Archive<Tickets> for Shelf<St> {
    async fn archive(&self, record: &Archived<TicketCommand, Ticket>) -> Result<(), ArchiveError> {
        if record.id == self.refuse {
            return Err("the shelf is full".into());
        }
        if let Some((id, runner)) = &self.meddle
            && record.id == *id
        {
            runner.handle(id, &TicketCommand::Note).await?;
        }
        self.kept.lock().unwrap().push(record.clone());
        Ok(())
    }
}

pub(crate) async fn finished_records_are_removed_by_a_run(store: impl Harness) {
    use TicketCommand::{Close, Flag, Note, Open};
    let runner = Runner::<Tickets, _>::new(store.clone(), ());
    for id in ["c-1", "c-2", "c-3"] {
        send(&runner, id, &[Open, Close]).await;
    }
    send(&runner, "s-1", &[Flag]).await;
    send(&runner, "o-1", &[Open]).await;
    let listed = store.records(T, None, 100).await.unwrap();
    let bound = listed.iter().map(|l| l.record.updated_at).max().unwrap() + 1;
    tokio::time::sleep(Duration::from_millis(20)).await;
    send(&runner, "c-4", &[Open, Close]).await;
    assert!(store.load(T, "c-4").await.unwrap().unwrap().updated_at > bound);

    // A kind that is not terminal fails the run before it does anything.
    let not_terminal = runner.remove_terminal(Terminal::default().kind(TicketKind::Open)).await.unwrap_err();
    assert!(matches!(not_terminal, Error::NotTerminal { id: None, state: "Open", .. }), "{not_terminal:?}");

    let reports = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&reports);
    let terminal = Terminal::default()
        .finished_before(bound)
        .page(2)
        .progress(move |progress| seen.lock().unwrap().push(progress.clone()));
    let done = runner.remove_terminal(terminal).await.unwrap();
    assert!(done.failures.is_empty(), "{:?}", done.failures);
    let progress = &done.progress;
    assert_eq!((progress.scanned, progress.removed, progress.skipped, progress.failed), (5, 4, 1, 0));
    assert_eq!(progress.last_id.as_deref(), Some("s-1"));
    assert_eq!(reports.lock().unwrap().len(), 3, "one report per page");
    let left: Vec<String> = store.records(T, None, 100).await.unwrap().into_iter().map(|l| l.id).collect();
    assert_eq!(left, ["c-4", "o-1"], "the recent and the open stay");

    // One kind at a time, each with its own retention.
    send(&runner, "s-2", &[Flag]).await;
    let spam = runner.remove_terminal(Terminal::default().kind(TicketKind::Spam)).await.unwrap();
    assert_eq!((spam.progress.scanned, spam.progress.removed), (1, 1));
    assert!(store.load(T, "c-4").await.unwrap().is_some());

    // Archived first: the whole history, exactly what is removed.
    for id in ["a-1", "a-2", "a-3", "a-moved"] {
        send(&runner, id, &[Open, Note, Close]).await;
    }
    let shelf = Arc::new(Shelf { kept: Mutex::default(), refuse: "a-3", meddle: Some(("a-moved", runner.clone())) });
    let terminal = Terminal::default().after("a-0").page(10).archive(ArcShelf(Arc::clone(&shelf)));
    // Spawned, as a periodic job would be: the run's future is `Send`.
    let job = runner.clone();
    let done = tokio::spawn(async move { job.remove_terminal(terminal).await }).await.unwrap().unwrap();
    let progress = &done.progress;
    assert_eq!((progress.scanned, progress.removed, progress.skipped, progress.failed), (5, 3, 1, 1), "{progress:?}");
    assert_eq!(done.failures.len(), 1);
    let (id, error) = &done.failures[0];
    assert_eq!(id, "a-3");
    assert!(matches!(error, Error::Archive { version: 3, .. }), "{error:?}");
    assert!(error.to_string().contains("the shelf is full"), "{error}");
    assert_eq!(store.load(T, "a-3").await.unwrap().unwrap().version, 3, "a refused record stays");
    let moved = store.load(T, "a-moved").await.unwrap().unwrap();
    assert_eq!(moved.version, 4, "written to after it was archived: it stays");
    let kept = shelf.kept.lock().unwrap().clone();
    let names: Vec<_> = kept.iter().map(|a| (a.id.as_str(), a.version)).collect();
    assert_eq!(names, [("a-1", 3), ("a-2", 3), ("a-moved", 3), ("c-4", 2)]);
    for archived in &kept {
        let versions: Vec<_> = archived.history.iter().map(|item| item.as_ref().unwrap().version).collect();
        assert_eq!(versions, (1..=archived.version).collect::<Vec<_>>(), "{}", archived.id);
        assert!(archived.updated_at > 0);
    }
    assert_eq!(kept[0].state, Ticket::Closed { notes: 1 });
    // The next run archives the moved one at its new version and removes it.
    let shelf = Arc::new(Shelf::<machine_core::store::Memory> { kept: Mutex::default(), refuse: "", meddle: None });
    let done = runner.remove_terminal(Terminal::default().archive(ArcShelf(Arc::clone(&shelf)))).await.unwrap();
    assert_eq!((done.progress.removed, done.progress.failed), (2, 0), "a-3 and a-moved");
    let names: Vec<_> = shelf.kept.lock().unwrap().iter().map(|a| (a.id.clone(), a.version)).collect();
    assert_eq!(names, [("a-3".to_owned(), 3), ("a-moved".to_owned(), 4)]);
    let left: Vec<String> = store.records(T, None, 100).await.unwrap().into_iter().map(|l| l.id).collect();
    assert_eq!(left, ["o-1"]);
}

/// A shared [`Shelf`], so the test keeps a handle on what it kept.
struct ArcShelf<St>(Arc<Shelf<St>>);

impl<St: Store> Archive<Tickets> for ArcShelf<St> {
    async fn archive(&self, record: &Archived<TicketCommand, Ticket>) -> Result<(), ArchiveError> {
        self.0.archive(record).await
    }
}

/// Writes `count` versions of `id` (state `{"n":version}`), raw.
async fn raw_versions(store: &impl Store, id: &str, from: u64, count: u64) {
    for expected in from..from + count {
        let write = Write {
            machine: T,
            id,
            expected,
            kind: "Open",
            state: format!("{{\"n\":{}}}", expected + 1),
            command: "null",
            origin: Origin::Command,
            schema: 1,
            due: None,
        };
        store.commit(Commit::write(write)).await.unwrap();
    }
}

/// The predecessor of the oldest position a compacted feed holds: where a
/// consumer told `FeedCompacted` resumes.
fn resume_point(error: &StoreError) -> Cursor {
    match error {
        StoreError::FeedCompacted { oldest, .. } => Cursor { seq: oldest.seq.saturating_sub(1), ..*oldest },
        other => panic!("not FeedCompacted: {other:?}"),
    }
}

pub(crate) async fn pruning_takes_the_oldest_history_and_tells_consumers_behind(store: impl Harness) {
    raw_versions(&store, "p-1", 0, 3).await;
    raw_versions(&store, "p-2", 0, 2).await;
    let old = feed_of(&store, 5).await;
    let bound = old.iter().map(|c| c.at).max().unwrap() + 1;
    tokio::time::sleep(Duration::from_millis(20)).await;
    raw_versions(&store, "p-1", 3, 1).await;
    raw_versions(&store, "p-3", 0, 1).await;
    let all = feed_of(&store, 7).await;
    assert!(all[5..].iter().all(|c| c.at >= bound), "the new entries are younger than the bound");

    assert_eq!(store.prune_history(bound, 0).await.unwrap(), 0);
    assert_eq!(store.prune_history(bound, 2).await.unwrap(), 2, "a limit is a limit");
    assert_eq!(store.prune_history(bound, 100).await.unwrap(), 3);
    assert_eq!(store.prune_history(bound, 100).await.unwrap(), 0, "nothing younger than the bound goes");

    // Records stay; their past goes.
    assert_eq!(store.load(T, "p-2").await.unwrap().unwrap().version, 2);
    assert!(store.history(T, "p-2").await.unwrap().is_empty());
    // The oldest kept entry's state before is the pruned entry's state: the
    // memory store keeps it with the entry, the others read it from the
    // entry before, which is gone.
    let p1 = store.history(T, "p-1").await.unwrap();
    assert_eq!(p1.iter().map(|c| c.version).collect::<Vec<_>>(), [4]);
    assert!(p1[0].before.as_deref().is_none_or(|before| json(before) == json("{\"n\":3}")), "{p1:?}");
    let page = store.history_page(T, "p-1", 0, 10).await.unwrap();
    assert_eq!(page.iter().map(|c| c.version).collect::<Vec<_>>(), [4]);
    assert_eq!(store.history(T, "p-3").await.unwrap().len(), 1);

    if !store.prunes_the_feed() {
        // The feed is whole: a consumer behind reads every change still.
        assert_eq!(positions(&store.changes(Cursor::START, 10).await.unwrap()), positions(&all));
        return;
    }
    // A consumer behind what was pruned is told, wherever it stands.
    for behind in [Cursor::START, old[1].cursor, old[3].cursor] {
        match store.changes(behind, 10).await {
            Err(error @ StoreError::FeedCompacted { after, .. }) => {
                assert_eq!(after, behind);
                let resumed = store.changes(resume_point(&error), 10).await.unwrap();
                assert_eq!(positions(&resumed), positions(&all[5..]), "resuming reads what is kept");
            }
            other => panic!("a cursor behind the pruned range must be refused: {other:?}"),
        }
    }
    // One at the last change pruned or after reads on, missing nothing.
    assert_eq!(positions(&store.changes(old[4].cursor, 10).await.unwrap()), positions(&all[5..]));
    assert_eq!(store.changes(all[5].cursor, 10).await.unwrap(), all[6..]);
}

/// Where each change is and what it wrote (not the state before, which a
/// store may no longer know once its predecessor is pruned).
fn positions(changes: &[Change]) -> Vec<(Cursor, String, u64, String)> {
    changes.iter().map(|c| (c.cursor, c.id.to_string(), c.version, c.after.to_string())).collect()
}

pub(crate) async fn a_removed_record_stays_in_the_feed_until_pruned(store: impl Harness) {
    use TicketCommand::{Close, Open};
    let runner = Runner::<Tickets, _>::new(store.clone(), ());
    send(&runner, "r", &[Open, Close]).await;
    send(&runner, "live", &[Open]).await;
    runner.remove("r").await.unwrap();
    // A consumer that had read nothing yet misses nothing of it.
    let feed = feed_of(&store, 4).await;
    let summary: Vec<_> = feed.iter().map(|c| (&*c.id, c.version, c.origin)).collect();
    assert_eq!(
        summary,
        [("r", 1, Origin::Command), ("r", 2, Origin::Command), ("live", 1, Origin::Command), ("r", 2, Origin::Removal)]
    );
    // Pruned by age like the rest.
    let bound = feed.iter().map(|c| c.at).max().unwrap() + 1;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // etcd deleted the removed record's history keys with it (its feed
    // keeps them as revisions), so only the live entry and the removal's
    // are left for pruning there.
    let kept = if store.prunes_the_feed() { 4 } else { 2 };
    assert_eq!(store.prune_history(bound, 100).await.unwrap(), kept);
    if store.prunes_the_feed() {
        let error = store.changes(Cursor::START, 10).await.unwrap_err();
        assert!(matches!(error, StoreError::FeedCompacted { .. }), "{error:?}");
    } else {
        assert_eq!(positions(&store.changes(Cursor::START, 10).await.unwrap()), positions(&feed));
    }
    assert!(store.changes(feed[3].cursor, 10).await.unwrap().is_empty());
    assert_eq!(runner.get("live").await.unwrap().unwrap().version, 1, "a record outlives its history");
    assert!(runner.history("live").await.unwrap().is_empty());
    // And the live record goes on writing from where it is.
    assert_eq!(send(&runner, "live", &[TicketCommand::Close]).await, 2);
    let history = store.history(T, "live").await.unwrap();
    assert_eq!(history.iter().map(|c| c.version).collect::<Vec<_>>(), [2]);
}

pub(crate) async fn pruning_while_writing_never_skips_silently(store: impl Harness) {
    const WRITERS: usize = 3;
    const WRITES: u64 = 40;
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("w-{n}");
                for expected in 0..WRITES {
                    raw_versions(&store, &id, expected, 1).await;
                    if expected % 8 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            })
        })
        .collect();
    let pruner = {
        let (store, done) = (store.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            let mut pruned = 0;
            while !done.load(Ordering::SeqCst) {
                pruned += store.prune_history(now_ms().saturating_sub(3), 7).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            pruned
        })
    };
    // The consumer: within each stretch between two `FeedCompacted`, every
    // record's versions must follow one another.
    let consumer = {
        let (store, done) = (store.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            let mut cursor = Cursor::START;
            let mut last: HashMap<String, u64> = HashMap::new();
            let (mut read, mut compacted) = (0_u64, 0_u64);
            loop {
                let finished = done.load(Ordering::SeqCst);
                match store.changes(cursor, 5).await {
                    Ok(page) => {
                        for change in &page {
                            assert!(change.cursor > cursor);
                            if let Some(previous) = last.insert(change.id.to_string(), change.version) {
                                assert_eq!(change.version, previous + 1, "{} skipped silently", change.id);
                            }
                            cursor = change.cursor;
                            read += 1;
                        }
                        if page.is_empty() && finished {
                            return (read, compacted);
                        }
                        // Slower than the writers, so the pruner overtakes it.
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                    Err(error @ StoreError::FeedCompacted { .. }) => {
                        compacted += 1;
                        cursor = resume_point(&error);
                        last.clear();
                    }
                    Err(other) => panic!("{other}"),
                }
            }
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    // Let the feed settle (PostgreSQL's lags behind open transactions).
    tokio::time::sleep(Duration::from_millis(50)).await;
    done.store(true, Ordering::SeqCst);
    let pruned_entries = pruner.await.unwrap();
    let (read, compacted) = consumer.await.unwrap();
    eprintln!("pruned {pruned_entries}, read {read}, told of compaction {compacted} times");
    for n in 0..WRITERS {
        assert_eq!(store.load(T, &format!("w-{n}")).await.unwrap().unwrap().version, WRITES, "no write lost");
    }
    // Everything left is pruned by a bound past it; what remains is a feed
    // with no entries and a cursor behind it refused.
    let everything = now_ms() + 1_000;
    while store.prune_history(everything, 1_000).await.unwrap() > 0 {}
    let feed = store.changes(Cursor::START, 10).await;
    if store.prunes_the_feed() {
        assert!(matches!(feed, Err(StoreError::FeedCompacted { .. })), "{feed:?}");
    } else {
        assert_eq!((compacted, feed.map(|page| page.len()).ok()), (0, Some(10)), "the feed is whole");
    }
}
