//! An order that waits for payment, the way a service keeps it moving after
//! the request that placed it has ended:
//!
//! - placing an order only records `AwaitingPayment`, with a deadline;
//! - a processor on the change feed (the outbox) sees the committed state,
//!   calls the payment service, and sends the answer back as a command,
//!   keyed by the change, so nothing is charged or applied twice because a
//!   transition was retried or an entry was delivered again;
//! - a failed call is recorded as a state (`PaymentFailed`) that is due for
//!   a retry, and the sweeper sends the retry when it is due;
//! - orders nobody pays expire when their deadline passes.
//!
//! The payment service is a mock that fails some calls, answers some slowly
//! and never answers for some orders. The clock is a manual one the demo
//! moves forward, so 15 minutes pass in a moment and every run prints the
//! same outcome.
//!
//! Run it: `cargo run -p machine-workspace --example payment`.

use machine_core::prelude::*;
use machine_core::process::{Entry, Outbox, Processor};
use machine_core::retry::Retry;
use machine_core::store::Memory;
use machine_core::timers::{Deadline, Sweeper};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a customer has to pay, and the wait before retrying a payment
/// call that failed.
const PAY_WITHIN: Duration = Duration::from_mins(15);
const RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Order {
    #[state(initial)]
    Draft,
    /// Placed; the outbox charges it. Expires at `expires` if still unpaid.
    AwaitingPayment {
        amount: u64,
        attempt: u32,
        #[state(due)]
        expires: Deadline,
    },
    /// The payment call failed; tried again at `retry_at`.
    PaymentFailed {
        amount: u64,
        attempt: u32,
        reason: String,
        #[state(due)]
        retry_at: Deadline,
        expires: Deadline,
    },
    #[state(terminal)]
    Paid { amount: u64, receipt: String },
    #[state(terminal)]
    Expired { amount: u64 },
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Order)]
enum OrderCommand {
    #[command(from(Draft), to(AwaitingPayment))]
    Place { amount: u64 },
    /// The outbox's callbacks.
    #[command(from(AwaitingPayment), to(Paid))]
    Settle { receipt: String },
    #[command(from(AwaitingPayment), to(PaymentFailed))]
    CallFailed { reason: String },
    /// Timers: a failed call is retried, an unpaid order expires.
    #[command(timer, from(PaymentFailed), to(AwaitingPayment, Expired))]
    Retry,
    #[command(timer, from(AwaitingPayment), to(Expired))]
    Expire,
}

#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error(transparent)]
    NotDeclared(#[from] NotDeclared),
}

/// What the transition may read: the clock (the same one the runner uses,
/// so deadlines and the sweeper agree).
struct Shop {
    now: Arc<AtomicU64>,
}

impl Shop {
    fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

struct Orders;

impl Machine for Orders {
    type State = Order;
    type Command = OrderCommand;
    type Deps = Shop;
    type Error = Refused;

    // Pure: it reads the clock, never calls the payment service.
    fn transition(shop: &Shop, command: &OrderCommand, order: &Order) -> Result<Order, Refused> {
        Ok(match (command, order) {
            (OrderCommand::Place { amount }, _) => {
                Order::AwaitingPayment { amount: *amount, attempt: 1, expires: Deadline::after(shop.now(), PAY_WITHIN) }
            }
            (OrderCommand::Settle { receipt }, Order::AwaitingPayment { amount, .. }) => {
                Order::Paid { amount: *amount, receipt: receipt.clone() }
            }
            (OrderCommand::CallFailed { reason }, Order::AwaitingPayment { amount, attempt, expires }) => {
                Order::PaymentFailed {
                    amount: *amount,
                    attempt: *attempt,
                    reason: reason.clone(),
                    retry_at: Deadline::after(shop.now(), RETRY_AFTER),
                    expires: *expires,
                }
            }
            (OrderCommand::Retry, Order::PaymentFailed { amount, expires, .. }) if expires.is_due(shop.now()) => {
                Order::Expired { amount: *amount }
            }
            (OrderCommand::Retry, Order::PaymentFailed { amount, attempt, expires, .. }) => {
                Order::AwaitingPayment { amount: *amount, attempt: attempt + 1, expires: *expires }
            }
            (OrderCommand::Expire, Order::AwaitingPayment { amount, .. }) => Order::Expired { amount: *amount },
            (command, order) => {
                return Err(NotDeclared { command: command.kind().as_str(), state: order.kind().as_str() }.into());
            }
        })
    }
}

/// The payment service, mocked: order 3's first two calls get a 503, order
/// 5's calls are slow, order 7's gateway never answers (the call times out,
/// so the outbox retries it until the order expires), and the rest are paid
/// at once. It counts the charges it made, to show none is made twice.
#[derive(Default)]
struct PaymentService {
    calls: std::sync::Mutex<BTreeMap<String, u32>>,
    charges: std::sync::Mutex<BTreeMap<String, u32>>,
}

#[derive(Debug, thiserror::Error)]
#[error("payment service timed out")]
struct TimedOut;

enum Answer {
    Charged(String),
    Unavailable,
}

impl PaymentService {
    /// Charges `order`; `key` is the change's key, which a real service
    /// takes as its own idempotency key.
    async fn charge(&self, order: &str, key: &str, amount: u64) -> Result<Answer, TimedOut> {
        let call = {
            let mut calls = self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let call = calls.entry(order.to_owned()).or_default();
            *call += 1;
            *call
        };
        match order {
            "order-3" if call <= 2 => return Ok(Answer::Unavailable),
            "order-5" => tokio::time::sleep(Duration::from_millis(30)).await,
            "order-7" => return Err(TimedOut),
            _ => {}
        }
        let mut charges = self.charges.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *charges.entry(order.to_owned()).or_default() += 1;
        Ok(Answer::Charged(format!("rcpt-{key}-{amount}")))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = Arc::new(AtomicU64::new(1_700_000_000_000));
    let clock = Arc::clone(&now);
    let runner = Runner::<Orders, _>::new(Memory::new(), Shop { now: Arc::clone(&now) })
        .clock(move || clock.load(Ordering::SeqCst));
    let payments = Arc::new(PaymentService::default());

    // The outbox: when an order enters `AwaitingPayment`, charge it and
    // answer with the callback command. An `Err` (a timeout) is retried by
    // the processor with backoff, then parked as a dead letter.
    let service = Arc::clone(&payments);
    let outbox = Outbox::new(runner.clone(), move |entry: Entry<Orders>| {
        let service = Arc::clone(&service);
        async move {
            let Order::AwaitingPayment { amount, .. } = entry.after else { return Ok::<_, TimedOut>(None) };
            Ok(Some(match service.charge(&entry.id, &entry.key(), amount).await? {
                Answer::Charged(receipt) => OrderCommand::Settle { receipt },
                Answer::Unavailable => OrderCommand::CallFailed { reason: "503 from the gateway".into() },
            }))
        }
    })
    .on(OrderKind::AwaitingPayment);
    let processor = Arc::new(
        Processor::new("payments", runner.clone(), outbox)
            .every(Duration::from_millis(5))
            .retry(Retry::exponential(Duration::from_millis(1)).max_attempts(3)),
    );
    let sweeper = Sweeper::new(runner.clone()).every(Duration::from_millis(5));

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let processing = tokio::spawn({
        let (processor, stopped) = (Arc::clone(&processor), stopped.clone());
        async move { processor.run(until_stopped(stopped)).await }
    });
    let sweeping = tokio::spawn(sweeper.run(until_stopped(stopped)));

    // The request handlers' part: place the orders and return.
    for n in 1..=8 {
        runner.handle(&format!("order-{n}"), &OrderCommand::Place { amount: 10 * n }).await?;
    }

    // Time passes: 30 s steps up to 20 minutes, each followed by a moment of
    // real time for the background tasks to catch up.
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        now.fetch_add(30_000, Ordering::SeqCst);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(true)?;
    let (processed, swept) = (processing.await?, sweeping.await?);

    println!("{:<8} {:<16} {:>8} {:>7}  state", "order", "outcome", "versions", "charges");
    let charges = payments.charges.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    for n in 1..=8 {
        let id = format!("order-{n}");
        let order = runner.get(&id).await?.map(|record| record.state);
        let versions = runner.history(&id).await?.len();
        let outcome = order.as_ref().map_or("missing", |order| order.kind().as_str());
        let times = charges.get(&id).copied().unwrap_or(0);
        println!("{id:<8} {outcome:<16} {versions:>8} {times:>7}  {order:?}");
        assert!(times <= 1, "{id} charged twice");
    }
    let parked = processor.dead_letters(None, 100).await?;
    println!(
        "\nprocessor: {} entries read, {} delivered, {} parked; lag {}",
        processed.read,
        processed.delivered,
        processed.parked,
        processor.lag().await?
    );
    for letter in &parked {
        println!("  dead letter {} {} v{}: {}", letter.cursor, letter.id, letter.version, letter.error);
    }
    println!("sweeper: {} timers fired, {} skipped, {} refused", swept.fired, swept.skipped, swept.refused);
    Ok(())
}
