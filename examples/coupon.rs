//! A coupon with a limited number of uses, applied by many concurrent buyers,
//! decided twice: with every read validated (never overbooked) and with the
//! other buyers' counters unvalidated (faster, overbooked by a bounded amount).
//!
//! The coupon's uses are counted in 8 slot records so that buyers do not all
//! write one row: buyer *n* counts its use in slot *n mod 8*, and every
//! decision reads all slots to see the total. Validating all slots means any
//! concurrent use makes a decision run again; leaving the other slots
//! unvalidated means only buyers of the same slot conflict, and a use that
//! lands in another slot between read and commit can push the total past the
//! limit. Runs on a temporary SQLite file: `cargo run -p machine-workspace --example coupon`.

use machine_core::decision::{Decided, Decision, Key, Rejection, Verdict};
use machine_core::prelude::*;
use machine_core::store::{Sqlite, Store};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// One slot of a coupon's use counter.
#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Slot {
    #[state(initial)]
    Counting { uses: u32 },
}

#[derive(Command, Clone, Debug, Serialize, Deserialize)]
#[command(state = Slot)]
enum SlotCommand {
    #[command(from(Counting), to(Counting))]
    CountUse,
}

struct Slots;

impl Machine for Slots {
    type State = Slot;
    type Command = SlotCommand;
    type Deps = ();
    type Error = std::convert::Infallible;

    fn transition((): &(), _: &SlotCommand, Slot::Counting { uses }: &Slot) -> Result<Slot, Self::Error> {
        Ok(Slot::Counting { uses: uses + 1 })
    }
}

/// A buyer's cart.
#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Cart {
    #[state(initial)]
    Open,
    Discounted {
        code: String,
    },
}

#[derive(Command, Clone, Debug, Serialize, Deserialize)]
#[command(state = Cart)]
enum CartCommand {
    #[command(from(Open), to(Discounted))]
    ApplyCoupon { code: String },
}

struct Carts;

impl Machine for Carts {
    type State = Cart;
    type Command = CartCommand;
    type Deps = ();
    type Error = std::convert::Infallible;

    fn transition((): &(), CartCommand::ApplyCoupon { code }: &CartCommand, _: &Cart) -> Result<Cart, Self::Error> {
        Ok(Cart::Discounted { code: code.clone() })
    }
}

const CODE: &str = "SUMMER";
const LIMIT: u32 = 100;
const SLOTS: u64 = 8;
const BUYERS: u64 = 400;
const CONCURRENT: u64 = 16;

struct Run {
    discounted: u64,
    retries: u64,
    seconds: f64,
}

/// Buyer `buyer` tries to apply the coupon.
async fn apply(store: &Sqlite, buyer: u64, validated: bool) -> Result<Decided<()>, Error<Rejection>> {
    let own = buyer % SLOTS;
    let slots: Vec<Key<Slots>> = (0..SLOTS)
        .map(|slot| {
            let key = Key::new(format!("{CODE}#{slot}"));
            // The slot this buyer writes is always checked (writes are
            // compare-and-set); the others only when validating.
            if validated || slot == own { key } else { key.unvalidated() }
        })
        .collect();
    let cart = Key::<Carts>::new(format!("cart-{buyer}"));
    let mut decision = Decision::new(store).read(&cart);
    for slot in &slots {
        decision = decision.read(slot);
    }
    decision
        .attempt(|draft| {
            let mut used = 0;
            for slot in &slots {
                let Slot::Counting { uses } = draft.state(slot)?;
                used += uses;
            }
            if used >= LIMIT {
                return Ok(Verdict::Abort(format!("{CODE} is used up ({used} of {LIMIT})")));
            }
            draft.apply(&slots[usize::try_from(own).unwrap_or(0)], &(), &SlotCommand::CountUse)?;
            draft.apply(&cart, &(), &CartCommand::ApplyCoupon { code: CODE.into() })?;
            Ok(Verdict::Commit(()))
        })
        .await
}

async fn run(validated: bool) -> Result<Run, Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("coupon-{}-{validated}.db", std::process::id()));
    let store = Sqlite::open(&path).await?;
    let (discounted, retries, next) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let (store, discounted, retries, next) = (store.clone(), discounted.clone(), retries.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let buyer = next.fetch_add(1, Ordering::Relaxed);
                    if buyer >= BUYERS {
                        return Ok::<_, Error<Rejection>>(());
                    }
                    let attempts = match apply(&store, buyer, validated).await? {
                        Decided::Committed { attempts, .. } => {
                            discounted.fetch_add(1, Ordering::Relaxed);
                            attempts
                        }
                        other => other.attempts(),
                    };
                    retries.fetch_add(u64::from(attempts - 1), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut uses = 0;
    for slot in 0..SLOTS {
        if let Some(record) = store.load(Slots::NAME, &format!("{CODE}#{slot}")).await? {
            let Slot::Counting { uses: n } = serde_json::from_str(&record.state)?;
            uses += u64::from(n);
        }
    }
    let discounted = discounted.load(Ordering::Relaxed);
    assert_eq!(uses, discounted, "every discounted cart counted exactly one use");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(Run { discounted, retries: retries.load(Ordering::Relaxed), seconds })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("{BUYERS} buyers, {CONCURRENT} at a time, want coupon {CODE} limited to {LIMIT} uses:\n");
    println!("{:<28} {:>10} {:>11} {:>9} {:>9}", "reads", "discounted", "overbooked", "retries", "seconds");
    let exact = run(true).await?;
    let loose = run(false).await?;
    for (name, run) in [("all validated", &exact), ("other slots unvalidated", &loose)] {
        let over = run.discounted.saturating_sub(u64::from(LIMIT));
        println!("{name:<28} {:>10} {over:>11} {:>9} {:>9.2}", run.discounted, run.retries, run.seconds);
    }
    assert_eq!(exact.discounted, u64::from(LIMIT), "validated reads never overbook");
    println!(
        "\nunvalidated reads: {:.1}x the speed, {} retries instead of {}, overbooked by {} ({:.0}% of the limit)",
        exact.seconds / loose.seconds,
        loose.retries,
        exact.retries,
        loose.discounted.saturating_sub(u64::from(LIMIT)),
        100.0 * f64::from(u32::try_from(loose.discounted.saturating_sub(u64::from(LIMIT))).unwrap_or(u32::MAX))
            / f64::from(LIMIT),
    );
    Ok(())
}
