//! Background recovery: recorded failures replayed with backoff up to a
//! limit, then left for a person.

use crate::error::Error;
use crate::machine::AsyncMachine;
use crate::retry::Backoff;
use crate::runner::{Ready, Runner};
use crate::state::{FailureState, State};
use crate::store::Query;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

/// Re-drives a machine's recorded failures ([`Runner::record_failures`]):
/// each record in the `#[state(failure)]` state is replayed with
/// [`Runner::recover`] once its backoff after the last failure has passed,
/// until it has failed [`limit`](Recovery::limit) times; then it is left in
/// its failure state for a person, and counted in
/// [`left`](Recovered::left) on every sweep (a dashboard's "needs a human").
///
/// The wait before replaying a failure seen `n` times is the backoff's curve
/// for retry `n`, capped at [`max_wait`](Recovery::max_wait): by default
/// 1 minute, 2, 4, ... up to an hour, and 5 failures in all. A failure's
/// attempt count and time are kept in the state
/// ([`Failure::attempts`](crate::Failure), `failed_at`), so the schedule
/// survives restarts and is shared by every instance; readiness is judged
/// on the state each attempt loads, so two instances never replay one
/// failure twice in a row.
///
/// ```
/// # use machine_core::prelude::*;
/// # use machine_core::process::Recovery;
/// # use machine_core::retry::Backoff;
/// # use std::time::Duration;
/// # fn demo<M: machine_core::AsyncMachine, St: machine_core::store::Query>(runner: Runner<M, St>)
/// # where M: 'static, M::State: FailureState<Command = M::Command> + Clone + serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
/// #       M::Command: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + 'static {
/// let recovery = Recovery::new(runner)
///     .backoff(Backoff::Exponential(Duration::from_secs(30)))
///     .max_wait(Duration::from_secs(15 * 60))
///     .limit(8);
/// # let _ = recovery; }
/// ```
pub struct Recovery<M: AsyncMachine, St> {
    runner: Runner<M, St>,
    backoff: Backoff,
    max_wait: Duration,
    limit: u32,
    page: u32,
    every: Duration,
}

/// What one or more recovery sweeps did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovered {
    /// Failures replayed successfully.
    pub recovered: u64,
    /// Failures replayed that failed again (recorded with one more attempt).
    pub failed_again: u64,
    /// Failures whose backoff has not passed yet (or that another instance
    /// replayed first).
    pub waiting: u64,
    /// Failures at the limit, left for a person.
    pub left: u64,
    /// Replays refused or stopped by an error (the failure stays as it
    /// was), and records in the failure state that do not decode (a corrupt
    /// row, a newer schema): each is counted and skipped, never the end of
    /// the sweep.
    pub errors: u64,
}

impl Recovered {
    fn add(&mut self, other: Self) {
        self.recovered += other.recovered;
        self.failed_again += other.failed_again;
        self.waiting += other.waiting;
        self.left += other.left;
        self.errors += other.errors;
    }
}

impl<M, St> Recovery<M, St>
where
    M: AsyncMachine + 'static,
    M::State: FailureState<Command = M::Command> + Clone + Serialize + DeserializeOwned + Send + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + Send + 'static,
    St: Query,
{
    /// Recovery of `runner`'s machine with the defaults above, sweeping
    /// every minute when [`run`](Recovery::run).
    #[must_use]
    pub fn new(runner: Runner<M, St>) -> Self {
        Self {
            runner,
            backoff: Backoff::Exponential(Duration::from_mins(1)),
            max_wait: Duration::from_hours(1),
            limit: 5,
            page: 100,
            every: Duration::from_mins(1),
        }
    }

    /// The curve of waits after each failure.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest wait between two replays.
    #[must_use]
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// How many failures in all (the first included) before a record is
    /// left for a person.
    #[must_use]
    pub fn limit(mut self, failures: u32) -> Self {
        self.limit = failures;
        self
    }

    /// Reads failed records `records` at a time (at least 1).
    #[must_use]
    pub fn page(mut self, records: u32) -> Self {
        self.page = records.max(1);
        self
    }

    /// How long [`run`](Recovery::run) waits between sweeps.
    #[must_use]
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval;
        self
    }

    fn ready(&self) -> Ready {
        Ready {
            now: self.runner.now(),
            backoff: self.backoff,
            cap: crate::runner::millis(self.max_wait),
            limit: self.limit,
        }
    }

    /// One sweep over every record in the failure state, by the runner's
    /// clock now. Fails only if the store cannot list them: a record that
    /// does not decode is counted in [`Recovered::errors`] and the sweep
    /// goes on.
    pub async fn sweep(&self) -> Result<Recovered, Error<M::Error>> {
        let mut swept = Recovered::default();
        let Some(failure) = <M::State as State>::FAILURE else { return Ok(swept) };
        let ready = self.ready();
        let mut after: Option<String> = None;
        loop {
            // Each record decoded on its own (not `Runner::list`, which
            // fails the page): one unreadable record must not hide the
            // failures after it.
            let (each, next) = self.runner.list_each(failure, after.as_deref(), self.page).await?;
            for (id, decoded) in &each {
                let Ok(record) = decoded else {
                    swept.errors += 1;
                    continue;
                };
                let Some(failed) = record.state.failure() else { continue };
                match ready.at(failed.attempts, failed.failed_at) {
                    None => swept.left += 1,
                    Some(at) if at > ready.now => swept.waiting += 1,
                    Some(_) => match self.runner.recover_when(id, Some(ready)).await {
                        Ok(_) => swept.recovered += 1,
                        Err(Error::FailureRecorded { .. }) => swept.failed_again += 1,
                        Err(Error::NotDue { .. } | Error::NotFailed { .. }) => swept.waiting += 1,
                        Err(_) => swept.errors += 1,
                    },
                }
            }
            match next {
                Some(next) => after = Some(next),
                None => return Ok(swept),
            }
        }
    }

    /// Sweeps every [`every`](Recovery::every) until `shutdown` completes,
    /// then returns the totals (a sweep in progress finishes first).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Recovered {
        let shutdown = pin!(shutdown);
        let mut shutdown = pin!(crate::process::Fused::new(shutdown));
        let mut total = Recovered::default();
        loop {
            if let Ok(swept) = self.sweep().await {
                total.add(swept);
            }
            if crate::process::idle(self.every, &mut shutdown).await {
                return total;
            }
        }
    }
}

impl<M: AsyncMachine, St> std::fmt::Debug for Recovery<M, St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("machine", &M::NAME)
            .field("backoff", &self.backoff)
            .field("max_wait", &self.max_wait)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}
