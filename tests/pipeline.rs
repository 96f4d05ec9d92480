//! One pipeline, every path alike: what used to differ between `handle`,
//! coalesced groups and decisions, each attacked on the path where it broke
//! (a decision writing nothing, a panicking transition in a shared worker,
//! a give-up inside a group, the policy's hooks, refusals racing a hold,
//! stored rows that lie about their kind).

mod conformance;

use machine_core::decision::{Decided, Decision, Key, Rejection, Verdict};
use machine_core::prelude::*;
use machine_core::retry::{Action, Attempt, Budget, Call, Finish, ManualClock, Policy, Refused};
use machine_core::store::{Change, Commit, Memory, Origin, Record, Store, Write};
use machine_core::testing::{FaultyStore, Schedule};
use machine_core::{Coalescing, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

// ---- an account, for decisions ------------------------------------------

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Account {
    #[state(initial)]
    Open { balance: i64 },
}

#[derive(Command, Clone, Debug, Serialize, Deserialize)]
#[command(state = Account)]
enum Money {
    #[command(from(Open), to(Open))]
    Add(i64),
}

struct Accounts;

impl Machine for Accounts {
    type State = Account;
    type Command = Money;
    type Deps = ();
    type Error = std::convert::Infallible;

    fn transition((): &(), Money::Add(n): &Money, Account::Open { balance }: &Account) -> Result<Account, Self::Error> {
        Ok(Account::Open { balance: balance + n })
    }
}

fn balance(state: &Account) -> i64 {
    let Account::Open { balance } = state;
    *balance
}

async fn open<St: Store>(store: &St, id: &str, amount: i64) {
    let key = Key::<Accounts>::new(id);
    let opened = Decision::new(store).read(&key).attempt(|draft| {
        draft.apply(&key, &(), &Money::Add(amount))?;
        Ok(Verdict::Commit(()))
    });
    assert!(opened.await.unwrap().is_committed());
}

async fn transfer<St: Store>(store: &St, from: &str, to: &str, amount: i64) -> Result<Decided<()>, Error<Rejection>> {
    let (from, to) = (Key::<Accounts>::new(from), Key::<Accounts>::new(to));
    Decision::new(store)
        .read(&from)
        .read(&to)
        .attempt(|draft| {
            draft.apply(&from, &(), &Money::Add(-amount))?;
            draft.apply(&to, &(), &Money::Add(amount))?;
            Ok(Verdict::Commit(()))
        })
        .await
}

/// A read-only decision: the sum of two accounts, writing nothing.
async fn total<St: Store>(store: &St, a: &str, b: &str) -> Result<Decided<i64>, Error<Rejection>> {
    let (a, b) = (Key::<Accounts>::new(a), Key::<Accounts>::new(b));
    Decision::new(store)
        .read(&a)
        .read(&b)
        .attempt(|draft| Ok(Verdict::Commit(balance(&draft.state(&a)?) + balance(&draft.state(&b)?))))
        .await
}

/// Memory, but the first load of `watched` is preceded by a transfer that
/// moves 100 from `a` to `b`: a read-only decision reading `a` then `b` sees
/// `a` before and `b` after it, a snapshot that never existed.
#[derive(Clone)]
struct TransferBetweenLoads {
    inner: Memory,
    armed: Arc<AtomicBool>,
}

impl Store for TransferBetweenLoads {
    async fn load(&self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        if id == "b" && self.armed.swap(false, Ordering::SeqCst) {
            let moved = transfer(&self.inner, "a", "b", 100).await.unwrap();
            assert!(moved.is_committed());
        }
        self.inner.load(machine, id).await
    }
    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        self.inner.commit(commit).await
    }
    async fn history(&self, machine: &str, id: &str) -> Result<Vec<Change>, StoreError> {
        self.inner.history(machine, id).await
    }
}

#[tokio::test]
async fn a_decision_that_writes_nothing_still_proves_its_snapshot() {
    let store = TransferBetweenLoads { inner: Memory::new(), armed: Arc::new(AtomicBool::new(false)) };
    open(&store, "a", 1000).await;
    open(&store, "b", 1000).await;
    store.armed.store(true, Ordering::SeqCst);
    // First attempt sees a = 1000 (old) and b = 1100 (new): 2100. The read
    // checks fail at commit, so it runs again on the consistent 900 + 1100.
    let decided = total(&store, "a", "b").await.unwrap();
    assert_eq!(decided, Decided::Unchanged { value: 2000, attempts: 2 });
    let versions: Vec<u64> =
        store.inner.history(Accounts::NAME, "a").await.unwrap().iter().map(|c| c.version).collect();
    assert_eq!(versions, [1, 2], "the read-only decision wrote nothing");
}

/// Transfers and read-only totals at once: every total is 2000.
async fn totals_are_consistent_under_transfers<St: Store + Clone>(store: St) {
    open(&store, "a", 1000).await;
    open(&store, "b", 1000).await;
    let movers: Vec<_> = (0..4_i64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 0..40 {
                    let (from, to) = if (task + round) % 2 == 0 { ("a", "b") } else { ("b", "a") };
                    transfer(&store, from, to, 10 + task).await.unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..40 {
                    match total(&store, "a", "b").await.unwrap() {
                        Decided::Unchanged { value, .. } => seen.push(value),
                        other => panic!("a read-only decision wrote or aborted: {other:?}"),
                    }
                }
                seen
            })
        })
        .collect();
    for mover in movers {
        mover.await.unwrap();
    }
    for reader in readers {
        let seen = reader.await.unwrap();
        assert!(seen.iter().all(|total| *total == 2000), "totals that never existed: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_only_totals_are_consistent_on_memory() {
    totals_are_consistent_under_transfers(Memory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_only_totals_are_consistent_on_sqlite() {
    let (store, path) = conformance::sqlite().await;
    totals_are_consistent_under_transfers(store).await;
    conformance::remove_sqlite(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn read_only_totals_are_consistent_on_postgres() {
    let store = conformance::postgres().await;
    totals_are_consistent_under_transfers(store.clone()).await;
    conformance::drop_schema(&store).await;
}

// ---- a counter whose transition can panic -------------------------------

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Tally {
    #[state(initial)]
    Zero,
    Counting(u64),
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Tally)]
enum Count {
    /// Adds `n`; the transition panics on 13 (a bug).
    #[command(from(Zero, Counting), to(Counting))]
    Add(u64),
}

struct Tallies;

impl Machine for Tallies {
    type State = Tally;
    type Command = Count;
    type Deps = ();
    type Error = std::convert::Infallible;

    fn transition((): &(), Count::Add(n): &Count, state: &Tally) -> Result<Tally, Self::Error> {
        assert!(*n != 13, "unlucky number");
        Ok(Tally::Counting(n + if let Tally::Counting(total) = state { *total } else { 0 }))
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future).await.unwrap_or_else(|_| panic!("{what} never finished"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_transition_does_not_wedge_a_coalesced_record() {
    let runner = Runner::<Tallies, _>::new(Memory::new(), ()).coalesce(Coalescing::default());
    let error = within("the panicking command", runner.handle("hot", &Count::Add(13))).await.unwrap_err();
    match &error {
        Error::Panicked { machine: "Tally", id: Some(id), command: "Add", message } => {
            assert_eq!((id.as_str(), message.as_str()), ("hot", "unlucky number"));
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert!(error.to_string().contains("Tally \"hot\" panicked: unlucky number"), "{error}");
    // The record's worker survived: later commands, alone and in a group, go through.
    let out = within("the next command", runner.handle("hot", &Count::Add(1))).await.unwrap();
    assert_eq!((out.state, out.version), (Tally::Counting(1), 1));
    let group: Vec<_> = [2, 13, 3, 13, 4]
        .into_iter()
        .map(|n| {
            let runner = runner.clone();
            tokio::spawn(async move { (n, runner.handle("hot", &Count::Add(n)).await) })
        })
        .collect();
    for task in group {
        let (n, result) = within("a grouped command", task).await.unwrap();
        match (n, result) {
            (13, Err(Error::Panicked { .. })) => {}
            (13, other) => panic!("13 should have panicked: {other:?}"),
            (n, result) => assert!(result.is_ok(), "{n}: {result:?}"),
        }
    }
    assert_eq!(runner.get("hot").await.unwrap().unwrap().state, Tally::Counting(10));
}

/// Memory, but the first commit panics, as a buggy store might.
#[derive(Clone)]
struct PanicsOnce {
    inner: Memory,
    armed: Arc<AtomicBool>,
}

impl Store for PanicsOnce {
    async fn load(&self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.inner.load(machine, id).await
    }
    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        assert!(!self.armed.swap(false, Ordering::SeqCst), "the store fell over");
        self.inner.commit(commit).await
    }
    async fn history(&self, machine: &str, id: &str) -> Result<Vec<Change>, StoreError> {
        self.inner.history(machine, id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_unwinds_frees_its_record_for_the_next_command() {
    let store = PanicsOnce { inner: Memory::new(), armed: Arc::new(AtomicBool::new(true)) };
    let runner = Runner::<Tallies, _>::new(store, ()).coalesce(Coalescing::default());
    let lost = within("the command whose worker died", runner.handle("hot", &Count::Add(1))).await.unwrap_err();
    assert!(matches!(lost, Error::Store(StoreError::Backend { retryable: true, .. })), "{lost:?}");
    assert!(lost.is_retryable());
    let out = within("the next command", runner.handle("hot", &Count::Add(2))).await.unwrap();
    assert_eq!((out.state, out.version), (Tally::Counting(2), 1), "the first command was never written");
}

#[tokio::test]
async fn a_panicking_transition_is_a_typed_error_on_every_path() {
    let runner = Runner::<Tallies, _>::new(Memory::new(), ());
    assert!(matches!(runner.handle("t", &Count::Add(13)).await, Err(Error::Panicked { .. })));
    assert_eq!(runner.get("t").await.unwrap(), None, "nothing written");
    let mut instance = Instance::<Tallies>::new(&(), Tally::initial());
    assert!(matches!(instance.handle(&Count::Add(13)), Err(Error::Panicked { id: None, .. })));
    assert_eq!(instance.state(), &Tally::Zero);
    let key = Key::<Tallies>::new("t");
    let decided = Decision::new(runner.store())
        .read(&key)
        .attempt(|draft| {
            draft.apply(&key, &(), &Count::Add(13))?;
            Ok(Verdict::Commit(()))
        })
        .await;
    assert!(matches!(decided, Err(Error::Panicked { .. })), "{decided:?}");
}

// ---- give-ups inside a group --------------------------------------------

/// The policy's own give-up errors, with and without coalescing: the same
/// variant, the conflict reachable, retryable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_callers_get_the_policys_own_give_up() {
    type Named = (&'static str, fn() -> Retry);
    let policies: [Named; 4] = [
        ("RetriesExhausted", || Retry::fixed(Duration::ZERO).max_attempts(3)),
        ("Thrashing", || Retry::fixed(Duration::ZERO).max_attempts(50).thrashing_after(3)),
        ("DeadlineExceeded", || Retry::fixed(Duration::from_millis(5)).deadline(Duration::from_millis(1))),
        ("BudgetExhausted", || Retry::fixed(Duration::ZERO).budget(Budget::new(0).min_per_second(0))),
    ];
    for (expected, policy) in policies {
        for coalesce in [false, true] {
            // Every commit conflicts, as if another process always won.
            let store = FaultyStore::new(Memory::new()).conflicts(Schedule::every(1));
            let mut runner = Runner::<Tallies, _>::new(store, ()).retry(policy());
            if coalesce {
                runner = runner.coalesce(Coalescing::default());
            }
            let error = runner.handle("hot", &Count::Add(1)).await.unwrap_err();
            let name = match &error {
                Error::RetriesExhausted { .. } => "RetriesExhausted",
                Error::Thrashing { .. } => "Thrashing",
                Error::DeadlineExceeded { .. } => "DeadlineExceeded",
                Error::BudgetExhausted { .. } => "BudgetExhausted",
                other => panic!("coalesce={coalesce}: {other:?}"),
            };
            assert_eq!(name, expected, "coalesce={coalesce}: {error}");
            assert!(error.conflict().is_some(), "coalesce={coalesce}: {error:?}");
            assert!(error.is_retryable());
        }
    }
}

/// An account whose transition takes 50 ms on the retry clock it is given,
/// as a call to a slow service would.
struct SlowAccounts;

impl machine_core::AsyncMachine for SlowAccounts {
    type State = Account;
    type Command = Money;
    type Deps = ManualClock;
    type Error = std::convert::Infallible;

    async fn transition(clock: &ManualClock, command: &Money, state: &Account) -> Result<Account, Self::Error> {
        clock.advance(Duration::from_millis(50));
        <Accounts as Machine>::transition(&(), command, state)
    }
}

/// The deadline counts from the first attempt's start, its own planning
/// included: the retry clock is started lazily, when an attempt first goes
/// the usual way (a held in-process attempt never needs it), and an
/// attempt that started it too late would lose this transition's 50 ms. A
/// first attempt that took longer than the deadline and lost its race is
/// not retried.
#[tokio::test]
async fn the_deadline_counts_the_first_attempts_own_time() {
    for coalesce in [false, true] {
        let clock = ManualClock::new();
        let store = FaultyStore::new(Memory::new()).conflicts(Schedule::every(1));
        let mut runner = Runner::<SlowAccounts, _>::new(store, clock.clone())
            .retry(Retry::fixed(Duration::ZERO).max_attempts(10).deadline(Duration::from_millis(10)))
            .retry_clock(clock.clone());
        if coalesce {
            runner = runner.coalesce(Coalescing::default());
        }
        let error = runner.handle("slow", &Money::Add(1)).await.unwrap_err();
        let Error::DeadlineExceeded { attempts, elapsed, .. } = error else { panic!("coalesce={coalesce}: {error:?}") };
        assert_eq!(attempts, 1, "coalesce={coalesce}: 50 ms spent in the first attempt");
        assert_eq!(elapsed, Duration::from_millis(50), "coalesce={coalesce}");
    }
}

// ---- the policy's hooks --------------------------------------------------

/// Counts the hooks, and refuses calls while `closed` is false.
#[derive(Debug, Default)]
struct Hooks {
    admitted: AtomicU32,
    finished: AtomicU32,
    committed: AtomicU32,
    refuse: AtomicBool,
}

impl Policy for Hooks {
    fn decide(&self, _: &Attempt<'_>) -> Action {
        Action::Retry(Duration::ZERO)
    }
    fn admit(&self, _: &Call<'_>) -> Result<(), Refused> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(Refused::new(Duration::from_secs(1)));
        }
        self.admitted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn finish(&self, _: &Call<'_>, ended: Finish) {
        self.finished.fetch_add(1, Ordering::SeqCst);
        if ended == Finish::Committed {
            self.committed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn decisions_are_admitted_and_finished_by_the_policy() {
    let store = Memory::new();
    let hooks = Arc::new(Hooks::default());
    let key = Key::<Accounts>::new("a");
    let decide = || {
        Decision::new(&store).read(&key).retry(Arc::clone(&hooks)).attempt(|draft| {
            draft.apply(&key, &(), &Money::Add(5))?;
            Ok(Verdict::Commit(()))
        })
    };
    assert!(decide().await.unwrap().is_committed());
    assert_eq!(hooks.admitted.load(Ordering::SeqCst), 1);
    assert_eq!((hooks.finished.load(Ordering::SeqCst), hooks.committed.load(Ordering::SeqCst)), (1, 1));
    hooks.refuse.store(true, Ordering::SeqCst);
    let refused = decide().await.unwrap_err();
    assert!(matches!(&refused, Error::CircuitOpen { machine: "Account", id, .. } if id == "a"), "{refused:?}");
    assert_eq!(store.load(Accounts::NAME, "a").await.unwrap().unwrap().version, 1, "the store was not touched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_and_single_calls_are_admitted_and_finished_once_each() {
    for coalesce in [false, true] {
        let hooks = Arc::new(Hooks::default());
        let mut runner = Runner::<Tallies, _>::new(Memory::new(), ()).retry(Arc::clone(&hooks));
        if coalesce {
            runner = runner.coalesce(Coalescing::default());
        }
        let calls: Vec<_> = (1..=8)
            .map(|n| {
                let runner = runner.clone();
                tokio::spawn(async move { runner.handle("hot", &Count::Add(n)).await.unwrap() })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        assert_eq!(hooks.admitted.load(Ordering::SeqCst), 8, "coalesce={coalesce}");
        assert_eq!(hooks.committed.load(Ordering::SeqCst), 8, "coalesce={coalesce}");
    }
}

// ---- refusals are not failures -------------------------------------------

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Room {
    #[state(initial)]
    Free,
    Held {
        guest: u32,
    },
    #[state(failure)]
    Failed(Failure<RoomCommand, Room, Fault>),
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Room)]
enum RoomCommand {
    /// Free → Held; a held room refuses; a down channel manager fails.
    #[command(from(Free, Held), to(Held))]
    Hold { guest: u32 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Fault {
    ChannelDown,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum RoomError {
    #[error("held by guest {0}")]
    Taken(u32),
    #[error("the channel manager is down")]
    ChannelDown,
}

struct Rooms;

impl Machine for Rooms {
    type State = Room;
    type Command = RoomCommand;
    type Deps = AtomicBool;
    type Error = RoomError;

    fn transition(
        down: &AtomicBool,
        RoomCommand::Hold { guest }: &RoomCommand,
        state: &Room,
    ) -> Result<Room, RoomError> {
        if down.load(Ordering::SeqCst) {
            return Err(RoomError::ChannelDown);
        }
        match state {
            Room::Held { guest: holder } => Err(RoomError::Taken(*holder)),
            _ => Ok(Room::Held { guest: *guest }),
        }
    }
}

impl RecordFailures for Rooms {
    fn failure(error: &RoomError) -> Option<Fault> {
        match error {
            RoomError::Taken(_) => None,
            RoomError::ChannelDown => Some(Fault::ChannelDown),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_guests_race_for_a_room_and_refusals_write_nothing() {
    for coalesce in [false, true] {
        let mut runner = Runner::<Rooms, _>::new(Memory::new(), AtomicBool::new(false)).record_failures();
        if coalesce {
            runner = runner.coalesce(Coalescing::default());
        }
        let guests: Vec<_> = (1..=16)
            .map(|guest| {
                let runner = runner.clone();
                tokio::spawn(async move { runner.handle("room-101", &RoomCommand::Hold { guest }).await })
            })
            .collect();
        let mut winners = Vec::new();
        for guest in guests {
            match guest.await.unwrap() {
                Ok(out) => winners.push(out),
                Err(Error::Rejected(RoomError::Taken(_))) => {}
                Err(other) => panic!("coalesce={coalesce}: a refusal became {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "coalesce={coalesce}");
        let stored = runner.get("room-101").await.unwrap().unwrap();
        assert_eq!((stored.state, stored.version), (winners[0].state.clone(), 1), "coalesce={coalesce}");
        let nothing = runner.recover("room-101").await.unwrap_err();
        assert!(matches!(nothing, Error::NotFailed { state: "Held", .. }), "{nothing:?}");
    }
}

#[tokio::test]
async fn a_chosen_failure_is_recorded_typed_and_recovered_as_its_own_entry() {
    let runner = Runner::<Rooms, _>::new(Memory::new(), AtomicBool::new(true)).record_failures().clock(|| 7);
    let error = runner.handle("room-7", &RoomCommand::Hold { guest: 3 }).await.unwrap_err();
    assert!(matches!(error, Error::FailureRecorded { source: RoomError::ChannelDown, version: 1, .. }), "{error:?}");
    assert!(error.to_string().contains("Room \"room-7\" failed"), "{error}");
    let failed = runner.get("room-7").await.unwrap().unwrap().state;
    let failure = failed.failure().expect("a failure state");
    assert_eq!((failure.error.clone(), failure.attempts, failure.failed_at), (Fault::ChannelDown, 1, 7));
    // Without record_failures the same fault is only returned.
    let plain = Runner::<Rooms, _>::new(Memory::new(), AtomicBool::new(true));
    assert!(matches!(plain.handle("r", &RoomCommand::Hold { guest: 1 }).await, Err(Error::Rejected(_))));
    assert_eq!(plain.get("r").await.unwrap(), None);

    runner.deps().store(false, Ordering::SeqCst);
    let recovered = runner.recover("room-7").await.unwrap();
    assert_eq!((recovered.state, recovered.version), (Room::Held { guest: 3 }, 2));
    let origins: Vec<Origin> = runner.history("room-7").await.unwrap().iter().flatten().map(|e| e.origin).collect();
    assert_eq!(origins, [Origin::Command, Origin::Recovery]);
}

// ---- stored rows that lie ------------------------------------------------

#[tokio::test]
async fn a_stored_kind_that_contradicts_the_state_is_corrupt_and_left_alone() {
    for coalesce in [false, true] {
        let store = Memory::new();
        let state = serde_json::to_string(&Room::Free).unwrap();
        let write = Write {
            machine: "Room",
            id: "liar",
            expected: 0,
            kind: "Held",
            state,
            command: "null",
            origin: Origin::Command,
            schema: 1,
            due: None,
        };
        store.commit(Commit::write(write)).await.unwrap();
        let mut runner = Runner::<Rooms, _>::new(store, AtomicBool::new(false));
        if coalesce {
            runner = runner.coalesce(Coalescing::default());
        }
        for error in [
            runner.get("liar").await.unwrap_err(),
            runner.handle("liar", &RoomCommand::Hold { guest: 1 }).await.unwrap_err(),
        ] {
            match &error {
                Error::Store(StoreError::Corrupt { machine, id, reason }) => {
                    assert_eq!((machine.as_str(), id.as_str()), ("Room", "liar"));
                    assert!(reason.contains("\"Held\"") && reason.contains("Free"), "{reason}");
                }
                other => panic!("coalesce={coalesce}: expected Corrupt, got {other:?}"),
            }
            assert!(!error.is_retryable());
        }
        let record = runner.store().load("Room", "liar").await.unwrap().unwrap();
        assert_eq!((record.version, &*record.kind), (1, "Held"), "the row is untouched");
    }
}

// ---- the memory store's typed values, read and written as JSON ----------

#[tokio::test]
async fn typed_values_in_memory_read_as_json_and_json_writes_read_typed() {
    let store = Memory::new();
    let runner = Runner::<Accounts, _>::new(store.clone(), ());
    runner.handle("mixed", &Money::Add(5)).await.unwrap();
    // Written typed by the runner, read as JSON through the store.
    let record = store.load(Accounts::NAME, "mixed").await.unwrap().unwrap();
    assert_eq!(serde_json::from_str::<Account>(&record.state).unwrap(), Account::Open { balance: 5 });
    assert_eq!(&*store.history(Accounts::NAME, "mixed").await.unwrap()[0].command, r#"{"Add":5}"#);
    // Written as JSON by someone else, then continued by the runner.
    let write = Write {
        machine: Accounts::NAME,
        id: "mixed",
        expected: 1,
        kind: "Open",
        state: r#"{"Open":{"balance":100}}"#.into(),
        command: r#"{"Add":95}"#,
        origin: Origin::Command,
        schema: 1,
        due: None,
    };
    store.commit(Commit::write(write.clone())).await.unwrap();
    let out = runner.handle("mixed", &Money::Add(1)).await.unwrap();
    assert_eq!((out.state, out.version), (Account::Open { balance: 101 }, 3));
    let got = runner.get("mixed").await.unwrap().unwrap();
    assert_eq!((got.state, got.version), (Account::Open { balance: 101 }, 3));
    let history: Vec<_> = runner.history("mixed").await.unwrap().iter().flatten().map(|e| e.version).collect();
    assert_eq!(history, [1, 2, 3]);
    // A JSON write that lies about its kind is still caught when the runner reads it.
    let lie = Write { expected: 3, kind: "Closed", state: r#"{"Open":{"balance":0}}"#.into(), ..write };
    store.commit(Commit::write(lie)).await.unwrap();
    assert!(matches!(runner.get("mixed").await, Err(Error::Store(StoreError::Corrupt { .. }))));
}

/// A command that counts its copies: the memory store is lent the caller's
/// command and copies it only into a history entry it keeps.
#[derive(Command, Debug, Serialize, Deserialize)]
#[command(state = Account)]
enum Counted {
    #[command(from(Open), to(Open))]
    Add(i64),
}

static COPIES: AtomicU32 = AtomicU32::new(0);

impl Clone for Counted {
    fn clone(&self) -> Self {
        COPIES.fetch_add(1, Ordering::SeqCst);
        let Self::Add(n) = self;
        Self::Add(*n)
    }
}

struct CountedAccounts;

impl Machine for CountedAccounts {
    type State = Account;
    type Command = Counted;
    type Deps = ();
    type Error = std::convert::Infallible;

    fn transition(
        (): &(),
        Counted::Add(n): &Counted,
        Account::Open { balance }: &Account,
    ) -> Result<Account, Self::Error> {
        Ok(Account::Open { balance: balance + n })
    }
}

#[tokio::test]
async fn the_memory_store_copies_a_command_only_into_history_it_keeps() {
    use machine_core::store::Retention;
    // The one test of this binary that sends `Counted`: the count is its own.
    let keeping = Runner::<CountedAccounts, _>::new(Memory::new(), ());
    let forgetting =
        Runner::<CountedAccounts, _>::new(Memory::with_retention(Retention::default().per_record(0).feed(0)), ());
    for n in 1..=3 {
        forgetting.handle("quiet", &Counted::Add(n)).await.unwrap();
    }
    assert_eq!(COPIES.load(Ordering::SeqCst), 0, "nothing kept, nothing copied");
    assert_eq!(forgetting.get("quiet").await.unwrap().unwrap().state, Account::Open { balance: 6 });
    for n in 1..=3 {
        keeping.handle("kept", &Counted::Add(n)).await.unwrap();
    }
    assert_eq!(COPIES.load(Ordering::SeqCst), 3, "one copy per kept entry");
    let commands: Vec<_> =
        keeping.store().history(CountedAccounts::NAME, "kept").await.unwrap().into_iter().map(|c| c.command).collect();
    assert_eq!(commands.iter().map(|c| &**c).collect::<Vec<_>>(), [r#"{"Add":1}"#, r#"{"Add":2}"#, r#"{"Add":3}"#]);
}
