//! Background recovery on every store: recorded failures replayed after
//! their backoff, by several instances at once without double replays, and
//! left for a person at the limit.

use super::Harness;
use machine_core::prelude::*;
use machine_core::process::{Recovered, Recovery};
use machine_core::retry::Backoff;
use machine_core::store::{Origin, Store};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Charge {
    #[state(initial)]
    Due,
    Paid,
    #[state(failure)]
    Failed(Failure<ChargeCommand, Charge>),
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Charge)]
pub(crate) enum ChargeCommand {
    #[command(from(Due), to(Paid))]
    Pay,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum GatewayError {
    #[error("gateway down")]
    Down,
}

/// The gateway fails its first `failures` calls.
pub(crate) struct Gateway {
    failures: AtomicU32,
    calls: AtomicU32,
}

pub(crate) struct Charges;

impl Machine for Charges {
    type State = Charge;
    type Command = ChargeCommand;
    type Deps = Gateway;
    type Error = GatewayError;
    const NAME: &'static str = "Charge";

    fn transition(gateway: &Gateway, _: &ChargeCommand, _: &Charge) -> Result<Charge, GatewayError> {
        gateway.calls.fetch_add(1, Ordering::SeqCst);
        let left = gateway.failures.load(Ordering::SeqCst);
        if left > 0 {
            gateway.failures.store(left - 1, Ordering::SeqCst);
            return Err(GatewayError::Down);
        }
        Ok(Charge::Paid)
    }
}

impl RecordFailures for Charges {
    fn failure(error: &GatewayError) -> Option<String> {
        Some(error.to_string())
    }
}

fn runner<St: Store>(store: St, failures: u32, now: &Arc<AtomicU64>) -> Runner<Charges, St> {
    let clock = Arc::clone(now);
    let gateway = Gateway { failures: AtomicU32::new(failures), calls: AtomicU32::new(0) };
    Runner::new(store, gateway).record_failures().clock(move || clock.load(Ordering::SeqCst))
}

fn recovery_of<St: machine_core::store::Query>(runner: &Runner<Charges, St>) -> Recovery<Charges, St> {
    // 1 s after the first failure, 2 s after the second, at most 3 s; 4 in all.
    Recovery::new(runner.clone())
        .backoff(Backoff::Exponential(Duration::from_secs(1)))
        .max_wait(Duration::from_secs(3))
        .limit(4)
        .page(3)
}

async fn recoveries<St: Store>(runner: &Runner<Charges, St>, id: &str) -> usize {
    let history = runner.history(id).await.unwrap();
    history.iter().filter(|item| item.as_ref().is_ok_and(|entry| entry.origin == Origin::Recovery)).count()
}

pub(crate) async fn failures_are_replayed_after_their_backoff_then_left(store: impl Harness) {
    let now = Arc::new(AtomicU64::new(10_000));
    // Fails on the first call and two replays, then works.
    let runner = runner(store, 3, &now);
    assert!(matches!(runner.handle("c", &ChargeCommand::Pay).await, Err(Error::FailureRecorded { .. })));
    let recovery = recovery_of(&runner);
    let at = |ms| now.store(ms, Ordering::SeqCst);
    let counted = |r: Recovered| (r.recovered, r.failed_again, r.waiting, r.left);
    assert_eq!(counted(recovery.sweep().await.unwrap()), (0, 0, 1, 0), "1 s has not passed");
    at(11_000);
    assert_eq!(counted(recovery.sweep().await.unwrap()), (0, 1, 0, 0), "replayed, failed again at 11 s");
    at(12_999);
    assert_eq!(counted(recovery.sweep().await.unwrap()), (0, 0, 1, 0), "2 s after the second failure");
    at(13_000);
    assert_eq!(counted(recovery.sweep().await.unwrap()), (0, 1, 0, 0));
    at(16_000);
    // Third failure: the wait would be 4 s, capped at 3.
    assert_eq!(counted(recovery.sweep().await.unwrap()), (1, 0, 0, 0));
    assert_eq!(runner.get("c").await.unwrap().unwrap().state, Charge::Paid);
    assert_eq!(recoveries(&runner, "c").await, 3);

    // A record that keeps failing is left for a person at the limit.
    let stubborn = self::runner(runner.store().clone(), 100, &now);
    assert!(stubborn.handle("s", &ChargeCommand::Pay).await.is_err());
    let recovery = recovery_of(&stubborn);
    for step in 1..=10 {
        at(16_000 + step * 5_000);
        recovery.sweep().await.unwrap();
    }
    let swept = recovery.sweep().await.unwrap();
    assert_eq!((swept.left, swept.failed_again), (1, 0));
    let Charge::Failed(failure) = stubborn.get("s").await.unwrap().unwrap().state else { panic!("not failed") };
    assert_eq!(failure.attempts, 4, "1 failure and 3 replays");
    assert_eq!(stubborn.deps().calls.load(Ordering::SeqCst), 4);
}

/// A record in the failure state that does not decode (written behind the
/// store's back) is counted as an error and skipped: the failures listed
/// after it are still replayed.
pub(crate) async fn an_unreadable_failed_record_does_not_stop_recovery(store: impl Harness) {
    use machine_core::store::{Commit, Write};
    let now = Arc::new(AtomicU64::new(0));
    let runner = runner(store.clone(), 1, &now);
    assert!(runner.handle("b-real", &ChargeCommand::Pay).await.is_err(), "a recorded failure");
    let odd = Write {
        machine: Charges::NAME,
        id: "a-odd",
        expected: 0,
        kind: "Failed",
        state: r#"{"Failed": 7}"#.to_owned(),
        command: r#""Pay""#,
        origin: Origin::Command,
        schema: 1,
        due: None,
    };
    store.commit(Commit::write(odd)).await.unwrap();
    now.store(60_000, Ordering::SeqCst);
    let swept = recovery_of(&runner).page(1).sweep().await.unwrap();
    assert_eq!((swept.recovered, swept.errors), (1, 1), "{swept:?}");
    assert_eq!(runner.get("b-real").await.unwrap().unwrap().state, Charge::Paid);
}

pub(crate) async fn concurrent_recoveries_replay_each_failure_once(store: impl Harness) {
    const RECORDS: usize = 20;
    let now = Arc::new(AtomicU64::new(0));
    // Every first call fails, every replay works.
    let runner = runner(store, u32::try_from(RECORDS).unwrap(), &now);
    for n in 0..RECORDS {
        assert!(runner.handle(&format!("c-{n:02}"), &ChargeCommand::Pay).await.is_err());
    }
    now.store(60_000, Ordering::SeqCst);
    let (one, two) = (recovery_of(&runner), recovery_of(&runner));
    let (a, b) = tokio::join!(one.sweep(), two.sweep());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.recovered + b.recovered, RECORDS as u64, "{a:?} {b:?}");
    assert_eq!(a.errors + b.errors + a.failed_again + b.failed_again, 0);
    for n in 0..RECORDS {
        assert_eq!(recoveries(&runner, &format!("c-{n:02}")).await, 1);
    }
    // Two instances may both run a replay's transition (it is pure); only
    // one of them commits, which the history above shows.
    assert!(runner.deps().calls.load(Ordering::SeqCst) >= 2 * u32::try_from(RECORDS).unwrap());
}
