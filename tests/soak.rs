//! The living-machines soak test, on memory, SQLite and PostgreSQL: 1,000
//! records with timers, two sweepers and a processor running while 8
//! writers work, the processor killed mid-batch (its task aborted while it
//! hangs inside the handler, after the handler's effect was applied but
//! before the batch was checkpointed) and restarted twice.
//!
//! Time is a manual clock the test moves: a ticker advances it while the
//! writers work, each restart moves it past the dead instance's lease (so
//! every hold then due fires at once, under the writers), and the end moves
//! it past every deadline. Then it checks, record by record:
//!
//! - every timer fired exactly once per due state: the `Origin::Timer`
//!   entries of each history are the due states entered minus those a
//!   writer's command left, each fired from a due state no earlier than its
//!   deadline, no record is left due, and the sweepers' `fired` totals
//!   agree with the histories;
//! - every change was delivered to the processor at least once;
//! - the handler's effect (booking a settled hold, `Confirmed` or `Lapsed`,
//!   in a ledger record, sent with `Request::new().key(&entry.key())`) is in
//!   the ledger exactly once per settling change, although the entries of
//!   each killed batch came again (and their effects were replayed);
//! - nothing was lost: the commands the writers had acknowledged are the
//!   history's command entries, version for version, each history is a
//!   chain of valid transitions, and the final state is its last.
//!
//! PostgreSQL runs in a fresh schema of `DATABASE_URL`, dropped afterwards.

#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

use machine_core::prelude::*;
use machine_core::process::{Entry, Handler, Processor, Progress};
use machine_core::store::{Checkpoints, Cursor, Memory, Origin, Postgres, Query, Sqlite, Store};
use machine_core::timers::{Deadline, Sweeper, Swept};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

const RECORDS: u64 = 1_000;
const WRITERS: u64 = 8;
/// Commands each writer sends.
const OPS: u64 = 600;
/// When the manual clock starts, in milliseconds.
const START: u64 = 1_000_000;
/// How far the ticker moves the clock each millisecond or so of real time.
const TICK: u64 = 5;
/// A reminded hold lapses this long after its deadline.
const GRACE: u64 = 500;
/// The processor's lease.
const LEASE: Duration = Duration::from_secs(20);
/// The processor's batch.
const BATCH: u32 = 100;
/// Effect-causing entries an armed trap lets through before it hangs.
const TRAP: u64 = 25;
const NAME: &str = "soak";

// ---------------------------------------------------------------------------
// The machines: holds with two timers, and the ledger the processor books to.

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Slot {
    #[state(initial)]
    Free,
    Held {
        #[state(due)]
        until: Deadline,
    },
    /// The guest was reminded at `reminded_at`; the hold lapses at `until`.
    Reminded {
        #[state(due)]
        until: Deadline,
        reminded_at: u64,
    },
    Confirmed,
    /// Lapsed at `lapsed_at`, having been due at `until`.
    Lapsed {
        until: u64,
        lapsed_at: u64,
    },
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Slot)]
enum SlotCommand {
    #[command(from(Free, Confirmed, Lapsed), to(Held))]
    Hold { until: Deadline },
    #[command(from(Held, Reminded), to(Confirmed))]
    Confirm,
    #[command(from(Held, Reminded), to(Free))]
    Release,
    #[command(timer, from(Held), to(Reminded))]
    Remind,
    #[command(timer, from(Reminded), to(Lapsed))]
    Lapse,
}

struct Slots;

impl Machine for Slots {
    type State = Slot;
    type Command = SlotCommand;
    /// The manual clock: timers write when they fired.
    type Deps = AtomicU64;
    type Error = NotDeclared;
    const NAME: &'static str = "Slot";

    fn transition(now: &AtomicU64, command: &SlotCommand, state: &Slot) -> Result<Slot, NotDeclared> {
        let now = now.load(Ordering::SeqCst);
        Ok(match (command, state) {
            (SlotCommand::Hold { until }, _) => Slot::Held { until: *until },
            (SlotCommand::Confirm, _) => Slot::Confirmed,
            (SlotCommand::Release, _) => Slot::Free,
            (SlotCommand::Remind, Slot::Held { until }) => {
                Slot::Reminded { until: Deadline::from_millis(until.as_millis() + GRACE), reminded_at: now }
            }
            (SlotCommand::Lapse, Slot::Reminded { until, .. }) => {
                Slot::Lapsed { until: until.as_millis(), lapsed_at: now }
            }
            (command, state) => {
                return Err(NotDeclared { command: command.kind().as_str(), state: state.kind().as_str() });
            }
        })
    }
}

/// The changes whose effect is booked: a hold settled, by a guest or a timer.
fn settles(state: &Slot) -> bool {
    matches!(state, Slot::Confirmed | Slot::Lapsed { .. })
}

fn is_due(state: &Slot) -> bool {
    matches!(state, Slot::Held { .. } | Slot::Reminded { .. })
}

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Ledger {
    #[state(initial)]
    Empty,
    /// The versions of the slot's settling changes booked, in order.
    Booked { versions: Vec<u64> },
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Ledger)]
enum LedgerCommand {
    #[command(from(Empty, Booked), to(Booked))]
    Book { version: u64 },
}

struct Ledgers;

impl Machine for Ledgers {
    type State = Ledger;
    type Command = LedgerCommand;
    type Deps = ();
    type Error = std::convert::Infallible;
    const NAME: &'static str = "Ledger";

    fn transition(
        (): &(),
        LedgerCommand::Book { version }: &LedgerCommand,
        state: &Ledger,
    ) -> Result<Ledger, Self::Error> {
        let mut versions = match state {
            Ledger::Empty => Vec::new(),
            Ledger::Booked { versions } => versions.clone(),
        };
        versions.push(*version);
        Ok(Ledger::Booked { versions })
    }
}

fn slot(n: u64) -> String {
    format!("slot-{n:04}")
}

fn ledger(id: &str) -> String {
    format!("ledger-{id}")
}

/// A small deterministic generator (xorshift), one per writer.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

// ---------------------------------------------------------------------------
// The handler: book settling changes with the entry's key, and a trap that
// hangs it (after the effect, before the batch is checkpointed) for a kill.

#[derive(Default)]
struct Shared {
    /// How many times each (id, version) was delivered.
    delivered: Mutex<HashMap<(String, u64), u32>>,
    /// Effects the ledger replayed instead of applying (a redelivery).
    replays: AtomicU64,
    /// Effects applied.
    applied: AtomicU64,
    /// When nonzero, the effect-causing entries left before the handler hangs.
    trap: AtomicU64,
    trapped: Notify,
    /// Whether the handler passes the entry's key (the test that the test can fail turns it off).
    keyed: AtomicBool,
}

struct Effects<St> {
    ledger: Runner<Ledgers, St>,
    shared: Arc<Shared>,
}

impl<St: Store> Handler<Slots> for Effects<St> {
    type Error = String;

    async fn handle(&self, entry: &Entry<Slots>) -> Result<(), String> {
        if settles(&entry.after) {
            let key = entry.key();
            let request =
                if self.shared.keyed.load(Ordering::SeqCst) { Request::new().key(&key) } else { Request::new() };
            let book = LedgerCommand::Book { version: entry.version };
            let out = self.ledger.handle_with(&ledger(&entry.id), &book, request).await.map_err(|e| e.to_string())?;
            let counter = if out.replayed { &self.shared.replays } else { &self.shared.applied };
            counter.fetch_add(1, Ordering::SeqCst);
            let trap = &self.shared.trap;
            if trap.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)) == Ok(1) {
                // The effect is applied; the entry is not acknowledged and
                // its batch never checkpointed: the kill lands here.
                self.shared.trapped.notify_one();
                std::future::pending::<()>().await;
            }
        }
        *self.shared.delivered.lock().unwrap().entry((entry.id.clone(), entry.version)).or_default() += 1;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The run.

/// What the writers were told, per record: (version, command) acknowledged.
type Acked = BTreeMap<String, Vec<(u64, SlotCommand)>>;

struct Totals {
    acked: Acked,
    refused: u64,
    gave_up: u64,
}

async fn write<St: Query>(runner: Runner<Slots, St>, now: Arc<AtomicU64>, writer: u64, ops: Arc<AtomicU64>) -> Totals {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (writer + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut totals = Totals { acked: Acked::new(), refused: 0, gave_up: 0 };
    for _ in 0..OPS {
        let id = slot(rng.below(RECORDS));
        let current = runner.get(&id).await.expect("reads").map_or(Slot::Free, |found| found.state);
        let command = if is_due(&current) {
            if rng.below(10) < 7 { SlotCommand::Confirm } else { SlotCommand::Release }
        } else {
            let wait = 200 + rng.below(3_000);
            SlotCommand::Hold { until: Deadline::from_millis(now.load(Ordering::SeqCst) + wait) }
        };
        match runner.handle(&id, &command).await {
            Ok(out) => totals.acked.entry(id).or_default().push((out.version, command)),
            // A timer or another writer moved it first.
            Err(Error::NotAllowed { .. }) => totals.refused += 1,
            // Nothing committed: a conflict the policy gave up on.
            Err(Error::Thrashing { .. } | Error::RetriesExhausted { .. }) => totals.gave_up += 1,
            Err(other) => panic!("writer {writer} on {id}: {other}"),
        }
        ops.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    totals
}

/// One processor instance in a task of its own.
struct Instance {
    task: JoinHandle<Progress>,
    stop: oneshot::Sender<()>,
}

fn start<St: Checkpoints + Clone>(slots: &Runner<Slots, St>, shared: &Arc<Shared>, number: u32) -> Instance {
    let handler = Effects { ledger: Runner::new(slots.store().clone(), ()), shared: Arc::clone(shared) };
    let processor = Processor::new(NAME, slots.clone(), handler)
        .batch(BATCH)
        .lease(LEASE)
        .owner(format!("instance-{number}"))
        .every(Duration::from_millis(2));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        processor
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    Instance { task, stop }
}

/// Waits (real time) until `done` holds, or fails with `what`.
async fn until<F: Future<Output = bool>>(what: &str, limit: Duration, mut done: impl FnMut() -> F) {
    let began = Instant::now();
    while !done().await {
        assert!(began.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[expect(clippy::too_many_lines, reason = "one soak, phase after phase, then its checks")]
async fn soak<St: Query + Checkpoints + Clone>(name: &str, store: St, keyed: bool) {
    let began = Instant::now();
    let now = Arc::new(AtomicU64::new(START));
    let clock = Arc::clone(&now);
    let slots = Runner::<Slots, _>::new(store.clone(), Arc::clone(&now)).clock(move || clock.load(Ordering::SeqCst));
    let ledgers = Runner::<Ledgers, _>::new(store.clone(), ());
    let shared = Arc::new(Shared::default());
    shared.keyed.store(keyed, Ordering::SeqCst);

    // Every record starts held, due within 3 s of the clock.
    for n in 0..RECORDS {
        let until = Deadline::from_millis(START + 200 + (n * 7_919) % 3_000);
        slots.handle(&slot(n), &SlotCommand::Hold { until }).await.expect("seeds");
    }
    let mut seeded = Acked::new();
    for n in 0..RECORDS {
        let until = Deadline::from_millis(START + 200 + (n * 7_919) % 3_000);
        seeded.insert(slot(n), vec![(1, SlotCommand::Hold { until })]);
    }

    // The ticker, two sweepers and the first processor instance.
    let ticking = Arc::new(AtomicBool::new(true));
    let ticker = tokio::spawn({
        let (now, ticking) = (Arc::clone(&now), Arc::clone(&ticking));
        async move {
            while ticking.load(Ordering::SeqCst) {
                now.fetch_add(TICK, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let mut sweepers = Vec::new();
    for sweeper in [
        Sweeper::new(slots.clone()).page(50).every(Duration::from_millis(2)),
        Sweeper::new(slots.clone()).page(20).concurrency(4).every(Duration::from_millis(3)),
    ] {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sweeper.run(async {
            let _ = stopped.await;
        }));
        sweepers.push((stop, task));
    }
    let mut instance = start(&slots, &shared, 1);

    // The writers.
    let ops = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| tokio::spawn(write(slots.clone(), Arc::clone(&now), writer, Arc::clone(&ops))))
        .collect();

    // Two kills, a third and two thirds of the way through the writes.
    let mut killed = Vec::new();
    for (kill, share) in [(1_u32, 1_u64), (2, 2)] {
        let ops_ref = &ops;
        until("writers reach the kill", Duration::from_mins(1), || async move {
            ops_ref.load(Ordering::SeqCst) >= share * WRITERS * OPS / 3
        })
        .await;
        shared.trap.store(TRAP, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_mins(1), shared.trapped.notified()).await.expect("the trap is reached");
        instance.task.abort();
        assert!(instance.task.await.unwrap_err().is_cancelled(), "killed");
        drop(instance.stop);
        killed.push(ops.load(Ordering::SeqCst));
        // The next instance stands by until the dead one's lease expires.
        now.fetch_add(LEASE.as_millis() as u64 + 1_000, Ordering::SeqCst);
        instance = start(&slots, &shared, kill + 1);
    }

    let mut acked = seeded;
    let (mut refused, mut gave_up) = (0, 0);
    for writer in writers {
        let totals = writer.await.expect("writer");
        for (id, mut writes) in totals.acked {
            acked.entry(id).or_default().append(&mut writes);
        }
        refused += totals.refused;
        gave_up += totals.gave_up;
    }
    for writes in acked.values_mut() {
        writes.sort_by_key(|(version, _)| *version);
    }
    let writing = began.elapsed();

    // Past every deadline: the sweepers fire what is left.
    now.fetch_add(600_000, Ordering::SeqCst);
    let final_now = now.load(Ordering::SeqCst);
    let quiet = || async {
        let empty = store.due(Slots::NAME, final_now, None, 1_000).await.expect("due").is_empty();
        tokio::time::sleep(Duration::from_millis(20)).await;
        empty && store.due(Slots::NAME, final_now, None, 1_000).await.expect("due").is_empty()
    };
    until("every timer fires", Duration::from_mins(1), quiet).await;
    let mut swept = Swept::default();
    let add = |swept: &mut Swept, totals: Swept| {
        swept.fired += totals.fired;
        swept.skipped += totals.skipped;
        swept.refused += totals.refused;
        swept.failed += totals.failed;
        swept.retried += totals.retried;
    };
    for (stop, task) in sweepers {
        stop.send(()).expect("sweeper running");
        add(&mut swept, task.await.expect("sweeper"));
    }
    // The memory store's due page can come back empty while a fire moves a
    // record to its next due time (see the report): one more sweep, alone,
    // until it finds nothing.
    let mut last_sweeps = 0;
    loop {
        let totals = Sweeper::new(slots.clone()).sweep().await.expect("sweeps");
        add(&mut swept, totals);
        last_sweeps += totals.fired;
        if totals.fired == 0 && store.due(Slots::NAME, final_now, None, 1_000).await.expect("due").is_empty() {
            break;
        }
    }
    ticking.store(false, Ordering::SeqCst);
    ticker.await.expect("ticker");

    // The processor catches up with the head, then shuts down.
    until("the processor catches up", Duration::from_mins(1), || async {
        let cursor = store.checkpoint(NAME).await.expect("checkpoint").map_or(Cursor::START, |saved| saved.cursor);
        store.behind(cursor).await.expect("behind") == 0
    })
    .await;
    instance.stop.send(()).expect("processor running");
    let last = instance.task.await.expect("processor");
    assert!(store.dead_letters(NAME, None, 10).await.expect("dead letters").is_empty(), "nothing parked");

    // Record by record.
    let delivered = shared.delivered.lock().unwrap().clone();
    let (mut changes, mut timers, mut due_states, mut effects, mut commands) = (0, 0, 0, 0, 0);
    for n in 0..RECORDS {
        let id = slot(n);
        let history: Vec<_> =
            slots.history(&id).await.expect("history").into_iter().collect::<Result<_, _>>().expect("readable");
        let mut before: Option<Slot> = None;
        let (mut fired, mut entered, mut left_by_writer) = (0, 0, 0);
        let mut commanded = Vec::new();
        let mut settled = Vec::new();
        for (at, entry) in history.iter().enumerate() {
            assert_eq!(entry.version, at as u64 + 1, "{id}: versions in order");
            assert_eq!(entry.before, before, "{id} v{}: each change starts where the last ended", entry.version);
            let command = entry.command.clone().expect("a command");
            let from = entry.before.clone().unwrap_or(Slot::Free);
            match entry.origin {
                Origin::Command => {
                    assert!(
                        !matches!(command, SlotCommand::Remind | SlotCommand::Lapse),
                        "{id}: a writer fired a timer"
                    );
                    let expected = Slots::transition(&AtomicU64::new(0), &command, &from).expect("valid");
                    assert_eq!(entry.state, expected, "{id} v{}", entry.version);
                    left_by_writer += u32::from(is_due(&from));
                    commanded.push((entry.version, command));
                }
                Origin::Timer => {
                    fired += 1;
                    match (&command, &from, &entry.state) {
                        (SlotCommand::Remind, Slot::Held { until }, Slot::Reminded { until: next, reminded_at }) => {
                            assert!(*reminded_at >= until.as_millis(), "{id}: reminded before due");
                            assert_eq!(next.as_millis(), until.as_millis() + GRACE);
                        }
                        (SlotCommand::Lapse, Slot::Reminded { until, .. }, Slot::Lapsed { until: was, lapsed_at }) => {
                            assert!(*lapsed_at >= until.as_millis(), "{id}: lapsed before due");
                            assert_eq!(*was, until.as_millis());
                        }
                        other => panic!("{id} v{}: not a timer's change: {other:?}", entry.version),
                    }
                }
                other => panic!("{id}: unexpected origin {other:?}"),
            }
            entered += u32::from(is_due(&entry.state));
            if settles(&entry.state) {
                settled.push(entry.version);
            }
            assert!(
                delivered.contains_key(&(id.clone(), entry.version)),
                "{id} v{} was never delivered",
                entry.version
            );
            before = Some(entry.state.clone());
        }
        // Every due state entered was left once: by a writer, or by its timer.
        assert_eq!(
            fired,
            entered - left_by_writer,
            "{id}: timers fired once per due state not left by a writer: {:#?}",
            history.iter().map(|entry| (entry.version, entry.origin, &entry.command, &entry.state)).collect::<Vec<_>>()
        );
        let last = before.expect("seeded");
        assert!(!is_due(&last), "{id} is still due at the end: {last:?}");
        let current = slots.get(&id).await.expect("get").expect("exists");
        assert_eq!((current.state, current.version), (last, history.len() as u64), "{id}: the final state is the last");
        assert_eq!(commanded, acked.remove(&id).unwrap_or_default(), "{id}: exactly the acknowledged writes");
        let booked = match ledgers.get(&ledger(&id)).await.expect("ledger") {
            Some(found) => match found.state {
                Ledger::Booked { versions } => versions,
                Ledger::Empty => Vec::new(),
            },
            None => Vec::new(),
        };
        assert_eq!(booked, settled, "{id}: each settling change booked exactly once");
        changes += history.len();
        timers += u64::from(fired);
        due_states += u64::from(entered);
        effects += booked.len();
        commands += commanded.len();
    }
    assert!(acked.is_empty(), "acknowledged writes to records never seen: {:?}", acked.keys());
    assert_eq!(delivered.len(), changes, "nothing but the slots' changes delivered");
    assert_eq!(swept.fired, timers, "the sweepers' totals agree with the histories: {swept:?}");
    assert_eq!((swept.refused, swept.failed), (0, 0), "{swept:?}");
    let redelivered: u64 = delivered.values().map(|&times| u64::from(times - 1)).sum();
    let replays = shared.replays.load(Ordering::SeqCst);
    assert!(replays >= 2, "each kill left an applied effect to replay: {replays}");
    assert_eq!(shared.applied.load(Ordering::SeqCst), effects as u64, "applied once each");
    eprintln!(
        "{name}: {RECORDS} records, {WRITERS} writers: {commands} acknowledged writes ({refused} refused, \
         {gave_up} given up), {changes} changes, {due_states} due states, {timers} timers fired \
         ({} skipped, {} retried, {last_sweeps} by the last sweep), {} deliveries ({redelivered} again after kills at {killed:?} writes, \
         last instance {last:?}), {effects} effects ({replays} replayed); writing {writing:.1?}, in all {:.1?}",
        swept.skipped,
        swept.retried,
        delivered.values().map(|&times| u64::from(times)).sum::<u64>(),
        began.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_memory() {
    soak("memory", Memory::new(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_sqlite() {
    let path = std::env::temp_dir().join(format!("machine-soak-{}.db", std::process::id()));
    let store = Sqlite::open(&path).await.expect("open sqlite");
    soak("sqlite", store.clone(), true).await;
    store.pool().close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn soak_postgres() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL is set: the PostgreSQL tests were built with it");
    let schema = format!("mcsoak_{}", std::process::id());
    let store = Postgres::options().schema(&schema).max_connections(16).connect(&url).await.expect("connect");
    soak("postgres", store.clone(), true).await;
    let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(store.pool()).await.expect("drop the schema");
}

/// The test can fail: without the idempotency key, a redelivered entry
/// books its effect twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "booked exactly once")]
async fn soak_without_the_key_books_twice() {
    soak("memory, no key", Memory::new(), false).await;
}
