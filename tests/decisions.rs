//! Atomic decisions over several records: the bank invariant under
//! concurrency on every store, aborts, the after-commit callback, mixed
//! machine types, and which concurrent changes make a decision run again.

mod conformance;

use machine_core::decision::{Decided, Decision, Key, Verdict};
use machine_core::prelude::*;
use machine_core::store::{Change, Commit, Memory, Origin, Record, Store, Write};
use machine_core::{StoreError, decision::Rejection};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Account {
    #[state(initial)]
    Open { balance: i64 },
}

#[derive(Command, Clone, Debug, Serialize, Deserialize)]
#[command(state = Account)]
enum Money {
    #[command(from(Open), to(Open))]
    Deposit(i64),
    #[command(from(Open), to(Open))]
    Withdraw(i64),
}

#[derive(Debug, thiserror::Error)]
#[error("insufficient funds: balance {0}")]
struct Insufficient(i64);

struct Accounts;

impl Machine for Accounts {
    type State = Account;
    type Command = Money;
    type Deps = ();
    type Error = Insufficient;

    fn transition((): &(), command: &Money, Account::Open { balance }: &Account) -> Result<Account, Insufficient> {
        match command {
            Money::Deposit(n) => Ok(Account::Open { balance: balance + n }),
            Money::Withdraw(n) if n > balance => Err(Insufficient(*balance)),
            Money::Withdraw(n) => Ok(Account::Open { balance: balance - n }),
        }
    }
}

/// A second machine type: an audit log counting transfers.
#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Audit {
    #[state(initial)]
    Empty,
    Counting {
        transfers: u32,
    },
}

#[derive(Command, Clone, Debug, Serialize, Deserialize)]
#[command(state = Audit)]
enum AuditCommand {
    #[command(from(Empty, Counting), to(Counting))]
    Record,
}

struct Audits;

impl Machine for Audits {
    type State = Audit;
    type Command = AuditCommand;
    type Deps = ();
    type Error = std::convert::Infallible;

    fn transition((): &(), _: &AuditCommand, state: &Audit) -> Result<Audit, Self::Error> {
        Ok(Audit::Counting { transfers: if let Audit::Counting { transfers } = state { transfers + 1 } else { 1 } })
    }
}

fn balance(state: &Account) -> i64 {
    let Account::Open { balance } = state;
    *balance
}

/// Moves `amount` between two accounts, aborting on insufficient funds.
async fn transfer<St: Store>(store: &St, from: &str, to: &str, amount: i64) -> Result<Decided<()>, Error<Rejection>> {
    let (from, to) = (Key::<Accounts>::new(from), Key::<Accounts>::new(to));
    Decision::new(store)
        .read(&from)
        .read(&to)
        .attempt(|draft| {
            let available = balance(&draft.state(&from)?);
            if available < amount {
                return Ok(Verdict::Abort(format!("insufficient funds: {available} < {amount}")));
            }
            draft.apply(&from, &(), &Money::Withdraw(amount))?;
            draft.apply(&to, &(), &Money::Deposit(amount))?;
            Ok(Verdict::Commit(()))
        })
        .await
}

const ACCOUNTS: usize = 10;
const OPENING: i64 = 100;

/// 16 tasks × 25 random transfers among 10 accounts: money is neither made
/// nor lost, and no account goes negative.
async fn bank_invariant_holds<St: Store + Clone>(store: St) {
    for account in 0..ACCOUNTS {
        let key = Key::<Accounts>::new(format!("acct-{account}"));
        let open = Decision::new(&store).read(&key).attempt(|d| {
            d.apply(&key, &(), &Money::Deposit(OPENING))?;
            Ok(Verdict::Commit(()))
        });
        assert!(open.await.unwrap().is_committed());
    }
    let tasks: Vec<_> = (0..16_u64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut seed = task.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut next = move |bound: u64| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed % bound
                };
                for _ in 0..25 {
                    let (from, to) = (next(ACCOUNTS as u64), next(ACCOUNTS as u64));
                    if from == to {
                        continue;
                    }
                    let amount = i64::try_from(next(60)).unwrap() + 1;
                    transfer(&store, &format!("acct-{from}"), &format!("acct-{to}"), amount).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut total = 0;
    for account in 0..ACCOUNTS {
        let record = store.load(Accounts::NAME, &format!("acct-{account}")).await.unwrap().unwrap();
        let state: Account = serde_json::from_str(&record.state).unwrap();
        assert!(balance(&state) >= 0, "acct-{account} went negative: {state:?}");
        total += balance(&state);
    }
    assert_eq!(total, OPENING * i64::try_from(ACCOUNTS).unwrap(), "money was created or destroyed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_invariant_on_memory() {
    bank_invariant_holds(Memory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_invariant_on_sqlite() {
    let (store, path) = conformance::sqlite().await;
    bank_invariant_holds(store.clone()).await;
    store.pool().close().await;
    conformance::remove_sqlite(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn bank_invariant_on_postgres() {
    let store = conformance::postgres().await;
    bank_invariant_holds(store.clone()).await;
    conformance::drop_schema(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(etcd_tests), ignore = "set ETCD_ENDPOINTS to run the etcd tests")]
async fn bank_invariant_on_etcd() {
    let store = conformance::etcd().await;
    bank_invariant_holds(store.clone()).await;
    conformance::remove_prefix(&store).await;
}

#[tokio::test]
async fn aborted_decisions_write_nothing_and_skip_the_callback() {
    let store = Memory::new();
    let ran = AtomicU32::new(0);
    let (decided, after) = transfer(&store, "a", "b", 5)
        .await
        .unwrap()
        .and_then(async |(): &()| {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<(), std::io::Error>(())
        })
        .await;
    assert_eq!(decided, Decided::Aborted { reason: "insufficient funds: 0 < 5".into(), attempts: 1 });
    assert!(after.is_none());
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(store.load(Accounts::NAME, "a").await.unwrap(), None);
    assert_eq!(store.load(Accounts::NAME, "b").await.unwrap(), None);
}

#[tokio::test]
async fn a_transition_error_fails_the_whole_decision() {
    let store = Memory::new();
    let (a, b) = (Key::<Accounts>::new("a"), Key::<Accounts>::new("b"));
    let error = Decision::new(&store)
        .read(&a)
        .read(&b)
        .attempt(|d| {
            d.apply(&b, &(), &Money::Deposit(10))?; // applied to the draft…
            d.apply(&a, &(), &Money::Withdraw(10))?; // …then this one is refused
            Ok(Verdict::Commit(()))
        })
        .await
        .unwrap_err();
    let Error::Rejected(rejection) = &error else { panic!("expected Rejected, got {error:?}") };
    assert_eq!(rejection.machine, "Account");
    assert_eq!(rejection.downcast_ref::<Insufficient>().map(|e| e.0), Some(0));
    assert_eq!(store.load(Accounts::NAME, "b").await.unwrap(), None, "the first command was not written");
}

#[tokio::test]
async fn reading_an_undeclared_record_is_a_typed_error() {
    let store = Memory::new();
    let (a, stranger) = (Key::<Accounts>::new("a"), Key::<Accounts>::new("stranger"));
    let error = Decision::new(&store).read(&a).attempt(|d| d.state(&stranger).map(|_| Verdict::Commit(()))).await;
    assert!(matches!(error, Err(Error::NotRead { machine: "Account", ref id }) if id == "stranger"), "{error:?}");
}

#[tokio::test]
async fn the_callback_runs_once_after_a_commit_and_its_failure_is_separate() {
    let store = Memory::new();
    let a = Key::<Accounts>::new("a");
    let ran = AtomicU32::new(0);
    let (decided, after) = Decision::new(&store)
        .read(&a)
        .attempt(|d| {
            d.apply(&a, &(), &Money::Deposit(7))?;
            Ok(Verdict::Commit("deposited"))
        })
        .await
        .unwrap()
        .and_then(async |value: &&str| {
            assert_eq!(*value, "deposited");
            ran.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(std::io::Error::other("mail server down"))
        })
        .await;
    assert_eq!(decided, Decided::Committed { value: "deposited", attempts: 1 });
    assert_eq!(after.map(|r| r.unwrap_err().to_string()), Some("mail server down".into()));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(store.load(Accounts::NAME, "a").await.unwrap().unwrap().version, 1, "the decision stands");
}

#[tokio::test]
async fn one_decision_changes_machines_of_different_types() {
    let store = Memory::new();
    let (a, b, audit) = (Key::<Accounts>::new("a"), Key::<Accounts>::new("b"), Key::<Audits>::new("ledger"));
    let decided = Decision::new(&store)
        .read(&a)
        .read(&b)
        .read(&audit)
        .attempt(|d| {
            d.apply(&a, &(), &Money::Deposit(50))?;
            d.apply(&a, &(), &Money::Withdraw(20))?; // two commands on one record chain versions
            d.apply(&b, &(), &Money::Deposit(20))?;
            let audit = d.apply(&audit, &(), &AuditCommand::Record)?;
            Ok(Verdict::Commit(audit))
        })
        .await
        .unwrap();
    assert_eq!(decided, Decided::Committed { value: Audit::Counting { transfers: 1 }, attempts: 1 });
    assert_eq!(store.load(Accounts::NAME, "a").await.unwrap().unwrap().version, 2);
    assert_eq!(store.load(Accounts::NAME, "b").await.unwrap().unwrap().version, 1);
    assert_eq!(store.load(Audits::NAME, "ledger").await.unwrap().unwrap().version, 1);
}

/// Lets a rival deposit into record `"watched"` between the decision's load
/// and its commit, the first time only.
#[derive(Clone)]
struct RivalOnce {
    inner: Memory,
    left: Arc<AtomicU32>,
}

impl Store for RivalOnce {
    async fn load(&self, machine: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.inner.load(machine, id).await
    }
    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        if self.left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            let current = self.inner.load(Accounts::NAME, "watched").await?.map_or(0, |r| r.version);
            let state = serde_json::to_string(&Account::Open { balance: 1 }).unwrap();
            let rival = Write {
                machine: Accounts::NAME,
                id: "watched",
                expected: current,
                kind: "Open",
                state,
                command: "null",
                origin: Origin::Command,
                schema: 1,
                due: None,
            };
            self.inner.commit(Commit::write(rival)).await?;
        }
        self.inner.commit(commit).await
    }
    async fn history(&self, machine: &str, id: &str) -> Result<Vec<Change>, StoreError> {
        self.inner.history(machine, id).await
    }
}

async fn decide_reading_watched(validated: bool) -> Decided<i64> {
    let store = RivalOnce { inner: Memory::new(), left: Arc::new(AtomicU32::new(1)) };
    let watched =
        if validated { Key::<Accounts>::new("watched") } else { Key::<Accounts>::new("watched").unvalidated() };
    let target = Key::<Accounts>::new("target");
    Decision::new(&store)
        .read(&watched)
        .read(&target)
        .attempt(|d| {
            let seen = balance(&d.state(&watched)?);
            d.apply(&target, &(), &Money::Deposit(10))?;
            Ok(Verdict::Commit(seen))
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_concurrent_change_to_a_validated_read_makes_the_decision_run_again() {
    // First attempt saw balance 0; the rival made it 1; the retry sees 1.
    assert_eq!(decide_reading_watched(true).await, Decided::Committed { value: 1, attempts: 2 });
}

#[tokio::test]
async fn a_concurrent_change_to_an_unvalidated_read_does_not() {
    assert_eq!(decide_reading_watched(false).await, Decided::Committed { value: 0, attempts: 1 });
}

#[tokio::test]
async fn exhausted_retries_are_an_error_so_no_callback_can_run() {
    let store = RivalOnce { inner: Memory::new(), left: Arc::new(AtomicU32::new(u32::MAX)) };
    let (watched, target) = (Key::<Accounts>::new("watched"), Key::<Accounts>::new("target"));
    let result = Decision::new(&store)
        .retry(Retry::fixed(std::time::Duration::ZERO).max_attempts(3))
        .read(&watched)
        .read(&target)
        .attempt(|d| {
            d.apply(&target, &(), &Money::Deposit(10))?;
            Ok(Verdict::Commit(()))
        })
        .await;
    match result {
        Err(Error::RetriesExhausted { attempts: 3, conflict }) => assert_eq!(conflict.id, "watched"),
        other => panic!("expected exhausted retries, got {other:?}"),
    }
    assert_eq!(store.inner.load(Accounts::NAME, "target").await.unwrap(), None);
}

#[tokio::test]
#[cfg_attr(not(postgres_tests), ignore = "set DATABASE_URL to run the PostgreSQL tests")]
async fn a_decision_joins_the_callers_transaction() {
    let store = conformance::postgres().await;
    let (a, b) = (Key::<Accounts>::new("a"), Key::<Accounts>::new("b"));
    let deposit = |key: &Key<Accounts>| {
        let key = key.clone();
        move |d: &mut machine_core::decision::Draft| {
            d.apply(&key, &(), &Money::Deposit(5))?;
            Ok(Verdict::Commit(()))
        }
    };
    let mut tx = store.pool().begin().await.unwrap();
    let decided = Decision::new(&store).read(&a).read(&b).attempt_in(&mut tx, deposit(&a)).await.unwrap();
    assert!(decided.is_committed());
    tx.rollback().await.unwrap();
    assert_eq!(store.load(Accounts::NAME, "a").await.unwrap(), None, "rolled back with the caller's transaction");

    let mut tx = store.pool().begin().await.unwrap();
    Decision::new(&store).read(&a).read(&b).attempt_in(&mut tx, deposit(&b)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.load(Accounts::NAME, "b").await.unwrap().map(|r| r.version), Some(1));
    conformance::drop_schema(&store).await;
}
