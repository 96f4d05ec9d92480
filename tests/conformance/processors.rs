//! Processors on every store: checkpoints compared and set, one instance
//! per name delivering while its lease stands and another taking over after
//! it expires, resuming from the checkpoint after a crash, handler errors
//! backed off then parked and re-driven, undecodable entries parked, lag
//! and batches.

use super::Harness;
use machine_core::StoreError;
use machine_core::prelude::*;
use machine_core::process::{Entry, Handler, Processor, Progress, Redriven, Stepped};
use machine_core::retry::ManualClock;
use machine_core::store::{Checkpoints, Commit, Cursor, DeadLetter, Feed, Origin, Store, Write};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Tally {
    #[state(initial)]
    Zero,
    Counting {
        n: u64,
    },
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Tally)]
pub(crate) enum TallyCommand {
    #[command(from(Zero, Counting), to(Counting))]
    Add { n: u64 },
}

pub(crate) struct Tallies;

impl Machine for Tallies {
    type State = Tally;
    type Command = TallyCommand;
    type Deps = ();
    type Error = std::convert::Infallible;
    const NAME: &'static str = "Tally";

    fn transition((): &(), TallyCommand::Add { n }: &TallyCommand, state: &Tally) -> Result<Tally, Self::Error> {
        Ok(match state {
            Tally::Zero => Tally::Counting { n: *n },
            Tally::Counting { n: total } => Tally::Counting { n: total + n },
        })
    }
}

const LEASE: Duration = Duration::from_secs(30);

/// A runner whose clock is `now` and whose waits take no time.
fn runner<St: Store>(store: St, now: &Arc<AtomicU64>, waits: &ManualClock) -> Runner<Tallies, St> {
    let clock = Arc::clone(now);
    Runner::new(store, ()).clock(move || clock.load(Ordering::SeqCst)).retry_clock(waits.clone())
}

/// What handlers saw, and which ids they refuse.
#[derive(Clone, Default)]
struct Seen {
    log: Arc<Mutex<Vec<(String, u64)>>>,
    failing: Arc<Mutex<HashSet<String>>>,
}

impl Seen {
    fn log(&self) -> Vec<(String, u64)> {
        self.log.lock().unwrap().clone()
    }

    fn fail(&self, id: &str, failing: bool) {
        let mut ids = self.failing.lock().unwrap();
        if failing {
            ids.insert(id.to_owned());
        } else {
            ids.remove(id);
        }
    }

    /// A closure handler that records, or refuses the failing ids.
    fn handler(&self) -> impl Handler<Tallies> + use<> {
        let seen = self.clone();
        move |entry: Entry<Tallies>| {
            let seen = seen.clone();
            async move {
                if seen.failing.lock().unwrap().contains(&entry.id) {
                    return Err(format!("{} is refused", entry.id));
                }
                assert!(entry.command.is_some() && entry.origin == Origin::Command);
                seen.log.lock().unwrap().push((entry.id.clone(), entry.version));
                Ok(())
            }
        }
    }
}

/// Commands `Add` to `records` records `rounds` times each, round by round.
async fn write_tallies<St: Store>(runner: &Runner<Tallies, St>, records: u64, rounds: u64) -> Vec<(String, u64)> {
    let mut written = Vec::new();
    for round in 1..=rounds {
        for n in 0..records {
            let id = format!("t-{n:02}");
            runner.handle(&id, &TallyCommand::Add { n }).await.unwrap();
            written.push((id, round));
        }
    }
    written
}

/// Waits (briefly, on PostgreSQL only ever) until the feed shows `count`
/// changes: its visibility horizon trails commits of other tests' running
/// transactions by a moment.
async fn visible(store: &impl Feed, count: u64) {
    for _ in 0..400 {
        if store.behind(Cursor::START).await.unwrap() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the feed never showed {count} changes");
}

fn processed(stepped: &Stepped) -> Progress {
    match stepped {
        Stepped::Processed { progress, .. } => *progress,
        other => panic!("not processed: {other:?}"),
    }
}

/// Steps until idle; what was processed in all.
async fn drain<St: Checkpoints, H: Handler<Tallies>>(processor: &Processor<Tallies, St, H>) -> Progress {
    let mut total = Progress::default();
    for _ in 0..1_000 {
        match processor.step().await.unwrap() {
            Stepped::Idle => return total,
            Stepped::Processed { progress, .. } => {
                total.read += progress.read;
                total.delivered += progress.delivered;
                total.parked += progress.parked;
            }
            other => panic!("{other:?}"),
        }
    }
    panic!("never idle");
}

pub(crate) async fn checkpoints_are_compared_and_set(store: impl Harness + Checkpoints) {
    assert_eq!(store.checkpoint("p").await.unwrap(), None);
    let at = |seq| Cursor { tx: 0, seq };
    assert!(store.save_checkpoint("p", 0, at(3), "a", 1_000).await.unwrap());
    assert!(!store.save_checkpoint("p", 0, at(4), "b", 2_000).await.unwrap(), "it exists already");
    let saved = store.checkpoint("p").await.unwrap().unwrap();
    assert_eq!((saved.cursor, saved.owner.as_str(), saved.lease_until, saved.version), (at(3), "a", 1_000, 1));
    assert!(store.save_checkpoint("p", 1, at(5), "b", 2_000).await.unwrap());
    assert!(!store.save_checkpoint("p", 1, at(6), "a", 3_000).await.unwrap(), "a stale version loses");
    let saved = store.checkpoint("p").await.unwrap().unwrap();
    assert_eq!((saved.cursor, saved.owner.as_str(), saved.version), (at(5), "b", 2));
    assert_eq!(store.checkpoint("other").await.unwrap(), None, "names are separate");
    assert!(matches!(store.checkpoint("").await, Err(StoreError::InvalidKey { what: "processor name", .. })));

    let letter = |seq, attempts| DeadLetter {
        processor: "p".into(),
        cursor: at(seq),
        machine: "Tally".into(),
        id: format!("id-{seq}"),
        version: 2,
        error: format!("failed {attempts} times"),
        attempts,
        parked_at: 5,
    };
    for seq in [12, 3, 9] {
        store.park(&letter(seq, 1)).await.unwrap();
    }
    store.park(&letter(9, 4)).await.unwrap();
    store.park(&DeadLetter { processor: "q".into(), ..letter(1, 1) }).await.unwrap();
    let all = store.dead_letters("p", None, 10).await.unwrap();
    assert_eq!(all, [letter(3, 1), letter(9, 4), letter(12, 1)], "in feed order, parked again in place");
    let page = store.dead_letters("p", Some(at(3)), 1).await.unwrap();
    assert_eq!(page, [letter(9, 4)]);
    assert!(store.dead_letters("p", Some(at(12)), 10).await.unwrap().is_empty());
    assert!(store.unpark("p", at(9)).await.unwrap());
    assert!(!store.unpark("p", at(9)).await.unwrap());
    assert_eq!(store.dead_letters("p", None, 10).await.unwrap(), [letter(3, 1), letter(12, 1)]);
    assert_eq!(store.dead_letters("q", None, 10).await.unwrap().len(), 1);
}

pub(crate) async fn lag_counts_the_changes_behind_the_head(store: impl Harness + Checkpoints) {
    let (now, waits) = (Arc::new(AtomicU64::new(1_000)), ManualClock::new());
    let runner = runner(store.clone(), &now, &waits);
    write_tallies(&runner, 3, 2).await;
    // A change of another machine counts too: the processor reads past it.
    let other = Write {
        machine: "Other",
        id: "o",
        expected: 0,
        kind: "Open",
        state: "1".into(),
        command: "null",
        origin: Origin::Command,
        schema: 1,
        due: None,
    };
    store.commit(Commit::write(other)).await.unwrap();
    visible(&store, 7).await;
    let feed = store.changes(Cursor::START, 100).await.unwrap();
    assert_eq!(feed.len(), 7);
    assert_eq!(store.behind(Cursor::START).await.unwrap(), 7);
    assert_eq!(store.behind(feed[2].cursor).await.unwrap(), 4);
    assert_eq!(store.behind(feed[6].cursor).await.unwrap(), 0);

    let seen = Seen::default();
    let processor = Processor::new("lag", runner, seen.handler()).batch(4);
    assert_eq!(processor.lag().await.unwrap(), 7, "no checkpoint: the whole feed");
    assert_eq!(processed(&processor.step().await.unwrap()).read, 4);
    assert_eq!(processor.lag().await.unwrap(), 3);
    let last = processed(&processor.step().await.unwrap());
    assert_eq!((last.read, last.delivered), (3, 2), "the other machine's change is read and passed over");
    assert_eq!(processor.lag().await.unwrap(), 0);
    assert_eq!(processor.checkpoint().await.unwrap().unwrap().cursor, feed[6].cursor);
}

pub(crate) async fn batches_are_configurable(store: impl Harness + Checkpoints) {
    let (now, waits) = (Arc::new(AtomicU64::new(1_000)), ManualClock::new());
    let runner = runner(store.clone(), &now, &waits);
    let written = write_tallies(&runner, 5, 2).await;
    visible(&store, 10).await;
    let seen = Seen::default();
    let processor = Processor::new("batches", runner, seen.handler()).batch(4);
    let mut reads = Vec::new();
    loop {
        match processor.step().await.unwrap() {
            Stepped::Processed { progress, more, .. } => reads.push((progress.read, more)),
            Stepped::Idle => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(reads, [(4, true), (4, true), (2, false)]);
    assert_eq!(seen.log(), written, "every change once, in feed order");

    // Run in a task of its own until shut down: it picks up new changes.
    let processor = Arc::new(processor.every(Duration::from_millis(1)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let processor = Arc::clone(&processor);
        async move {
            processor
                .run(async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    let runner = Runner::<Tallies, _>::new(store.clone(), ());
    write_tallies(&runner, 2, 1).await;
    visible(&store, 12).await;
    for _ in 0..400 {
        if seen.log().len() == 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();
    let total = running.await.unwrap();
    assert_eq!((total.read, total.delivered), (2, 2));
    assert_eq!(processor.lag().await.unwrap(), 0);
}

pub(crate) async fn a_processor_resumes_from_its_checkpoint_after_a_crash(store: impl Harness + Checkpoints) {
    let (now, waits) = (Arc::new(AtomicU64::new(1_000)), ManualClock::new());
    let runner = runner(store.clone(), &now, &waits);
    let written = write_tallies(&runner, 4, 5).await;
    visible(&store, 20).await;

    // The first instance handles one batch, then crashes inside the second:
    // the entry it hangs on, and the ones before it in that batch, were
    // never checkpointed.
    let seen = Seen::default();
    let reached = Arc::new(Notify::new());
    let hanging = Arc::new(AtomicBool::new(false));
    let first = {
        let (seen, reached, hanging) = (seen.clone(), Arc::clone(&reached), Arc::clone(&hanging));
        Processor::new("crash", runner.clone(), move |entry: Entry<Tallies>| {
            let (seen, reached, hanging) = (seen.clone(), Arc::clone(&reached), Arc::clone(&hanging));
            async move {
                if hanging.load(Ordering::SeqCst) && entry.id == "t-01" && entry.version == 3 {
                    reached.notify_one();
                    std::future::pending::<()>().await;
                }
                seen.log.lock().unwrap().push((entry.id.clone(), entry.version));
                Ok::<_, String>(())
            }
        })
        .batch(6)
        .owner("first")
    };
    assert_eq!(processed(&first.step().await.unwrap()).delivered, 6);
    let saved = first.checkpoint().await.unwrap().unwrap();
    hanging.store(true, Ordering::SeqCst);
    tokio::select! {
        stepped = first.step() => panic!("the step should hang: {stepped:?}"),
        () = reached.notified() => {}
    }
    drop(first); // the crash: its step future is gone mid-batch
    assert_eq!(seen.log().len(), 6 + 3, "three more were delivered before the crash");
    assert_eq!(store.checkpoint("crash").await.unwrap().unwrap(), saved, "but not checkpointed");

    // Another instance waits for the dead one's lease, then resumes from
    // the checkpoint: the three uncheckpointed entries come again, none is
    // skipped.
    let second = Processor::new("crash", runner, seen.handler()).batch(6).owner("second");
    assert!(matches!(second.step().await.unwrap(), Stepped::Standby { owner, .. } if owner == "first"));
    now.fetch_add(31_000, Ordering::SeqCst);
    let resumed = drain(&second).await;
    assert_eq!(resumed.delivered, 14);
    let log = seen.log();
    assert_eq!(log[9..], written[6..], "resumed right after the checkpoint");
    let delivered: BTreeSet<_> = log.iter().cloned().collect();
    assert_eq!(delivered, written.iter().cloned().collect::<BTreeSet<_>>(), "every change at least once");
    assert_eq!(log.len(), 23, "only the entries in flight came twice");
    assert_eq!(second.lag().await.unwrap(), 0);
}

/// A handler that, when armed, lets another instance ("thief") take the
/// lease over while it handles an entry: as if this instance had stalled
/// past its lease.
struct Stalling<St> {
    store: St,
    now: Arc<AtomicU64>,
    armed: Arc<AtomicBool>,
    seen: Seen,
}

impl<St: Checkpoints> Handler<Tallies> for Stalling<St> {
    type Error = String;

    async fn handle(&self, entry: &Entry<Tallies>) -> Result<(), String> {
        if self.armed.swap(false, Ordering::SeqCst) {
            let now = self.now.fetch_add(31_000, Ordering::SeqCst) + 31_000;
            let held = self.store.checkpoint("leased").await.map_err(|e| e.to_string())?.ok_or("no checkpoint")?;
            let taken = self.store.save_checkpoint("leased", held.version, held.cursor, "thief", now + 30_000).await;
            assert!(taken.unwrap(), "the expired lease is taken over");
        }
        self.seen.log.lock().unwrap().push((entry.id.clone(), entry.version));
        Ok(())
    }
}

pub(crate) async fn one_instance_per_name_delivers_while_its_lease_stands(store: impl Harness + Checkpoints) {
    let (now, waits) = (Arc::new(AtomicU64::new(1_000)), ManualClock::new());
    let runner = runner(store.clone(), &now, &waits);
    write_tallies(&runner, 2, 1).await;
    visible(&store, 2).await;
    let (seen_a, seen_b) = (Seen::default(), Seen::default());
    let armed = Arc::new(AtomicBool::new(false));
    let stalling =
        Stalling { store: store.clone(), now: Arc::clone(&now), armed: Arc::clone(&armed), seen: seen_a.clone() };
    let a = Processor::new("leased", runner.clone(), stalling).owner("a").lease(LEASE).batch(10);
    let b = Processor::new("leased", runner.clone(), seen_b.handler()).owner("b").lease(LEASE).batch(10);

    assert_eq!(processed(&a.step().await.unwrap()).delivered, 2);
    let standby = b.step().await.unwrap();
    assert_eq!(standby, Stepped::Standby { owner: "a".into(), lease_until: 31_000 });
    write_tallies(&runner, 2, 1).await;
    visible(&store, 4).await;
    now.fetch_add(29_000, Ordering::SeqCst); // 30,000: a's lease still stands
    assert!(matches!(b.step().await.unwrap(), Stepped::Standby { .. }), "b waits while a's lease stands");
    assert_eq!(processed(&a.step().await.unwrap()).delivered, 2, "a renews and goes on");
    assert!(seen_b.log().is_empty(), "b delivered nothing");

    // a stalls past its lease on the next entry; meanwhile its lease is
    // taken over: its checkpoint save fails and it stops.
    write_tallies(&runner, 2, 1).await;
    visible(&store, 6).await;
    armed.store(true, Ordering::SeqCst);
    let lost = a.step().await.unwrap();
    assert!(matches!(lost, Stepped::LostLease { .. }), "{lost:?}");
    let held = store.checkpoint("leased").await.unwrap().unwrap();
    assert_eq!(held.owner, "thief", "the old owner's save did not overwrite the new one's");
    assert!(matches!(a.step().await.unwrap(), Stepped::Standby { owner, .. } if owner == "thief"));

    // After the thief's lease expires in turn, b takes over from the
    // checkpoint the thief holds: the stalled batch comes again.
    now.fetch_add(31_000, Ordering::SeqCst);
    let taken = processed(&b.step().await.unwrap());
    assert_eq!(taken.delivered, 2);
    assert_eq!(seen_b.log(), [("t-00".to_owned(), 3), ("t-01".to_owned(), 3)]);
    let held = store.checkpoint("leased").await.unwrap().unwrap();
    assert_eq!(held.owner, "b");
    assert!(matches!(a.step().await.unwrap(), Stepped::Standby { owner, .. } if owner == "b"));

    // Giving the lease up on shutdown lets a take over at once.
    b.run(std::future::ready(())).await;
    assert!(matches!(a.step().await.unwrap(), Stepped::Idle));
    assert_eq!(store.checkpoint("leased").await.unwrap().unwrap().owner, "a");
}

/// A processor that stops gives its lease up at once, whatever the clock
/// reads: even less than one lease term after its epoch, as a test's
/// manual clock does.
pub(crate) async fn a_lease_given_up_is_free_at_once_early_on_the_clock(store: impl Harness + Checkpoints) {
    let (now, waits) = (Arc::new(AtomicU64::new(5_000)), ManualClock::new());
    let runner = runner(store.clone(), &now, &waits);
    write_tallies(&runner, 1, 1).await;
    visible(&store, 1).await;
    let (seen_a, seen_b) = (Seen::default(), Seen::default());
    let a = Processor::new("early", runner.clone(), seen_a.handler()).owner("a").lease(LEASE);
    let b = Processor::new("early", runner.clone(), seen_b.handler()).owner("b").lease(LEASE);
    assert_eq!(processed(&a.step().await.unwrap()).delivered, 1);
    assert!(matches!(b.step().await.unwrap(), Stepped::Standby { .. }), "a holds the lease");
    a.run(std::future::ready(())).await;
    assert!(seen_b.log().is_empty());
    let held = store.checkpoint("early").await.unwrap().unwrap();
    assert!(held.lease_until <= 5_000, "given up now, not at {}", held.lease_until);
    assert!(matches!(b.step().await.unwrap(), Stepped::Idle), "b takes over without waiting");
    assert_eq!(store.checkpoint("early").await.unwrap().unwrap().owner, "b");
}

pub(crate) async fn a_failing_handler_backs_off_then_parks_and_is_redriven(store: impl Harness + Checkpoints) {
    let (now, waits) = (Arc::new(AtomicU64::new(1_000)), ManualClock::new());
    let runner = runner(store.clone(), &now, &waits);
    write_tallies(&runner, 3, 1).await;
    visible(&store, 3).await;
    let seen = Seen::default();
    seen.fail("t-01", true);
    let retry = Retry::exponential(Duration::from_millis(10)).max_attempts(3);
    let processor = Processor::new("parking", runner, seen.handler()).retry(retry);
    let progress = processed(&processor.step().await.unwrap());
    assert_eq!((progress.read, progress.delivered, progress.parked), (3, 2, 1));
    assert_eq!(waits.sleeps(), [Duration::from_millis(10), Duration::from_millis(20)], "backed off between tries");
    assert_eq!(seen.log(), [("t-00".to_owned(), 1), ("t-02".to_owned(), 1)], "the processor moved on");
    assert_eq!(processor.lag().await.unwrap(), 0);

    let parked = processor.dead_letters(None, 10).await.unwrap();
    assert_eq!(parked.len(), 1);
    let letter = &parked[0];
    assert_eq!(
        (letter.processor.as_str(), letter.machine.as_str(), letter.id.as_str(), letter.version, letter.attempts),
        ("parking", "Tally", "t-01", 1, 3)
    );
    assert_eq!((letter.error.as_str(), letter.parked_at), ("t-01 is refused", 1_000));

    // Re-driven while the handler still fails: parked again, tries counted.
    now.store(2_000, Ordering::SeqCst);
    assert_eq!(
        processor.redrive(letter.cursor).await.unwrap(),
        Redriven::Failed { error: "t-01 is refused".into(), attempts: 6 }
    );
    let again = processor.dead_letters(None, 10).await.unwrap();
    assert_eq!((again.len(), again[0].attempts, again[0].parked_at), (1, 6, 2_000));
    seen.fail("t-01", false);
    assert_eq!(processor.redrive(letter.cursor).await.unwrap(), Redriven::Delivered);
    assert_eq!(seen.log().last(), Some(&("t-01".to_owned(), 1)));
    assert!(processor.dead_letters(None, 10).await.unwrap().is_empty());
    assert_eq!(processor.redrive(letter.cursor).await.unwrap(), Redriven::NotParked);
}

pub(crate) async fn an_undecodable_entry_is_parked_not_fatal(store: impl Harness + Checkpoints) {
    let (now, waits) = (Arc::new(AtomicU64::new(1_000)), ManualClock::new());
    let runner = runner(store.clone(), &now, &waits);
    runner.handle("good", &TallyCommand::Add { n: 1 }).await.unwrap();
    // A change of this machine that this code cannot read.
    let junk = Write {
        machine: "Tally",
        id: "junk",
        expected: 0,
        kind: "Counting",
        state: "{\"Vanished\":{}}".into(),
        command: "{\"Add\":{\"n\":1}}",
        origin: Origin::Command,
        schema: 1,
        due: None,
    };
    store.commit(Commit::write(junk)).await.unwrap();
    runner.handle("good", &TallyCommand::Add { n: 1 }).await.unwrap();
    visible(&store, 3).await;

    let seen = Seen::default();
    let processor = Processor::new("decoding", runner, seen.handler());
    let progress = processed(&processor.step().await.unwrap());
    assert_eq!((progress.delivered, progress.parked), (2, 1));
    assert_eq!(seen.log(), [("good".to_owned(), 1), ("good".to_owned(), 2)]);
    assert!(waits.sleeps().is_empty(), "an unreadable entry is not retried");
    let parked = processor.dead_letters(None, 10).await.unwrap();
    assert_eq!((parked.len(), parked[0].id.as_str(), parked[0].attempts), (1, "junk", 0));
    assert!(parked[0].error.contains("cannot decode the state of Tally \"junk\""), "{}", parked[0].error);
    // Re-driving it cannot help while the code cannot read it.
    let redriven = processor.redrive(parked[0].cursor).await.unwrap();
    assert!(matches!(redriven, Redriven::Failed { attempts: 0, .. }), "{redriven:?}");
}
