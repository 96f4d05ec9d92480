//! Bank transfers as atomic decisions over two account machines.
//!
//! 16 concurrent tasks move random amounts among 10 accounts. Each transfer
//! reads both accounts, aborts when the source lacks funds, and otherwise
//! withdraws and deposits in one atomic commit; a transfer that loses a race
//! runs again on fresh balances. At the end the total is unchanged and no
//! account is negative. Runs on a temporary SQLite file:
//! `cargo run -p machine-workspace --example bank_transfer`.

use machine_core::decision::{Decided, Decision, Key, Verdict};
use machine_core::prelude::*;
use machine_core::store::{Sqlite, Store};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

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
#[error("overdraft: balance {balance}, withdrawal {amount}")]
struct Overdraft {
    balance: i64,
    amount: i64,
}

struct Accounts;

impl Machine for Accounts {
    type State = Account;
    type Command = Money;
    type Deps = ();
    type Error = Overdraft;

    fn transition((): &(), command: &Money, Account::Open { balance }: &Account) -> Result<Account, Overdraft> {
        match *command {
            Money::Deposit(amount) => Ok(Account::Open { balance: balance + amount }),
            // The machine itself refuses overdrafts; the decision below aborts
            // before asking, so this is the last line of defence.
            Money::Withdraw(amount) if amount > *balance => Err(Overdraft { balance: *balance, amount }),
            Money::Withdraw(amount) => Ok(Account::Open { balance: balance - amount }),
        }
    }
}

const ACCOUNTS: u64 = 10;
const OPENING_BALANCE: i64 = 1_000;
const TASKS: u64 = 16;
const TRANSFERS_PER_TASK: u64 = 50;

#[derive(Default)]
struct Tally {
    transfers: AtomicU64,
    aborts: AtomicU64,
    retries: AtomicU64,
}

/// One transfer: read both accounts, decide, write both or neither.
async fn transfer(
    store: &impl Store,
    from: u64,
    to: u64,
    amount: i64,
    tally: &Tally,
) -> Result<(), Error<machine_core::decision::Rejection>> {
    let (from, to) = (Key::<Accounts>::new(format!("acct-{from}")), Key::<Accounts>::new(format!("acct-{to}")));
    let decided = Decision::new(store)
        .read(&from)
        .read(&to)
        .attempt(|draft| {
            let Account::Open { balance } = draft.state(&from)?;
            if balance < amount {
                return Ok(Verdict::Abort(format!("{} has {balance}, needs {amount}", from.id())));
            }
            draft.apply(&from, &(), &Money::Withdraw(amount))?;
            draft.apply(&to, &(), &Money::Deposit(amount))?;
            Ok(Verdict::Commit(()))
        })
        .await?;
    let attempts = match decided {
        Decided::Committed { attempts, .. } => {
            tally.transfers.fetch_add(1, Ordering::Relaxed);
            attempts
        }
        Decided::Aborted { attempts, .. } => {
            tally.aborts.fetch_add(1, Ordering::Relaxed);
            attempts
        }
        Decided::Unchanged { attempts, .. } => attempts,
        // Only a decision with an idempotency key (`Decision::key`) replays.
        Decided::Replayed { .. } => 1,
    };
    tally.retries.fetch_add(u64::from(attempts - 1), Ordering::Relaxed);
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("bank-transfer-{}.db", std::process::id()));
    let store = Sqlite::open(&path).await?;

    for account in 0..ACCOUNTS {
        let key = Key::<Accounts>::new(format!("acct-{account}"));
        Decision::new(&store)
            .read(&key)
            .attempt(|draft| {
                draft.apply(&key, &(), &Money::Deposit(OPENING_BALANCE))?;
                Ok(Verdict::Commit(()))
            })
            .await?;
    }
    println!("{ACCOUNTS} accounts opened with {OPENING_BALANCE} each; {TASKS} tasks start transferring…");

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, tally) = (store.clone(), tally.clone());
            tokio::spawn(async move {
                // A small deterministic generator: the run is reproducible.
                let mut seed = (task + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut next = move |bound: u64| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed % bound
                };
                for _ in 0..TRANSFERS_PER_TASK {
                    let (from, to) = (next(ACCOUNTS), next(ACCOUNTS));
                    if from != to {
                        let amount = i64::try_from(next(700)).unwrap_or(1) + 1;
                        transfer(&store, from, to, amount, &tally).await?;
                    }
                }
                Ok::<_, Error<machine_core::decision::Rejection>>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();

    let mut total = 0;
    println!("\nbalances:");
    for account in 0..ACCOUNTS {
        let record = store.load(Accounts::NAME, &format!("acct-{account}")).await?.ok_or("account exists")?;
        let Account::Open { balance } = serde_json::from_str(&record.state)?;
        println!("  acct-{account}: {balance:>6}  (version {})", record.version);
        assert!(balance >= 0, "no account may go negative");
        total += balance;
    }
    let expected = OPENING_BALANCE * i64::try_from(ACCOUNTS)?;
    println!(
        "\ntotal {total} (expected {expected}) in {:.2} s: {} transfers, {} aborted for insufficient funds, {} retries after conflicts",
        elapsed.as_secs_f64(),
        tally.transfers.load(Ordering::Relaxed),
        tally.aborts.load(Ordering::Relaxed),
        tally.retries.load(Ordering::Relaxed),
    );
    assert_eq!(total, expected, "money is neither created nor destroyed");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(())
}
