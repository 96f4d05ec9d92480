//! The background task that fires due timers: pages the store's due-time
//! index and sends each due record its timer command through the runner.

use crate::error::Error;
use crate::machine::AsyncMachine;
use crate::process::stopping;
use crate::runner::Runner;
use crate::store::{Query, Timer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

/// Fires the timers of one machine's due records: every record whose state
/// is due ([`State::due`](crate::State::due)) by the runner's clock gets the
/// state's `#[command(timer)]` command, through [`Runner::fire`], so the
/// declared table, retries on conflict, recorded failures and coalescing all
/// apply as for any command.
///
/// Any number of sweepers (in one process or many) may sweep one store:
/// whether a record is due is judged on the state each attempt loads, so a
/// timer fires once per due state, and the sweeper that lost the race counts
/// the record as [`skipped`](Swept::skipped).
///
/// - A **refusal** of the timer command (the transition's error, a table
///   refusal, a panic, a state this code cannot read) is not retried for
///   ever: the timer is disarmed ([`Query::disarm`]) at the version that
///   refused, counted in [`refused`](Swept::refused), and told at `WARN`
///   with the `observe` feature. The record keeps its state; its next write
///   sets its due time afresh.
/// - A **recorded failure** ([`Runner::record_failures`]) is counted in
///   [`failed`](Swept::failed); the failure state is left for recovery.
/// - A **retryable** error (the policy gave up on conflicts, the store is
///   down) leaves the timer armed for the next sweep.
///
/// ```
/// # use machine_core::prelude::*;
/// # use machine_core::store::Memory;
/// # use machine_core::timers::{Deadline, Sweeper};
/// # use std::sync::Arc;
/// # use std::sync::atomic::{AtomicU64, Ordering};
/// # use std::time::Duration;
/// #[derive(State, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// enum Hold {
///     #[state(initial)]
///     Free,
///     Held { #[state(due)] until: Deadline },
///     Lapsed,
/// }
///
/// #[derive(Command, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// #[command(state = Hold)]
/// enum HoldCommand {
///     #[command(from(Free), to(Held))]
///     Take { until: Deadline },
///     #[command(timer, from(Held), to(Lapsed))]
///     Lapse,
/// }
///
/// struct Holds;
/// impl Machine for Holds {
///     type State = Hold;
///     type Command = HoldCommand;
///     type Deps = ();
///     type Error = NotDeclared;
///     fn transition(_: &(), command: &HoldCommand, _: &Hold) -> Result<Hold, NotDeclared> {
///         Ok(match command {
///             HoldCommand::Take { until } => Hold::Held { until: *until },
///             HoldCommand::Lapse => Hold::Lapsed,
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A manual clock: tests move time, nothing sleeps.
/// let now = Arc::new(AtomicU64::new(1_000));
/// let clock = Arc::clone(&now);
/// let runner = Runner::<Holds, _>::new(Memory::new(), ()).clock(move || clock.load(Ordering::SeqCst));
/// runner.handle("hold-1", &HoldCommand::Take { until: Deadline::from_millis(5_000) }).await?;
///
/// let sweeper = Sweeper::new(runner.clone());
/// assert_eq!(sweeper.sweep().await?.fired, 0); // not due yet
/// now.store(5_000, Ordering::SeqCst);
/// assert_eq!(sweeper.sweep().await?.fired, 1);
/// assert_eq!(runner.get("hold-1").await?.unwrap().state, Hold::Lapsed);
/// assert_eq!(sweeper.sweep().await?.fired, 0); // fired once
/// # Ok(()) }
/// ```
pub struct Sweeper<M: AsyncMachine, St> {
    runner: Runner<M, St>,
    page: u32,
    every: Duration,
    concurrency: usize,
}

/// What one or more sweeps did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Swept {
    /// Timer commands committed.
    pub fired: u64,
    /// Due records another sweeper or a command moved on first: nothing to do.
    pub skipped: u64,
    /// Timer commands refused (and their timers disarmed).
    pub refused: u64,
    /// Timer commands whose failure was recorded as the failure state.
    pub failed: u64,
    /// Timers left armed after a retryable error, for the next sweep.
    pub retried: u64,
}

impl Swept {
    fn add(&mut self, other: Self) {
        self.fired += other.fired;
        self.skipped += other.skipped;
        self.refused += other.refused;
        self.failed += other.failed;
        self.retried += other.retried;
    }
}

/// What became of one due record.
#[expect(clippy::enum_variant_names, reason = "each variant is a past participle, as the Swept counters are named")]
enum Fired {
    Fired,
    Skipped,
    Refused,
    Failed,
    Retried,
}

impl<M, St> Sweeper<M, St>
where
    M: AsyncMachine + 'static,
    M::State: Clone + Serialize + DeserializeOwned + Send + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + Send + 'static,
    M::Error: Send,
    St: Query,
{
    /// A sweeper for `runner`'s machine, reading its due records from the
    /// runner's store: pages of 100, one record at a time, every second
    /// when [`run`](Sweeper::run).
    #[must_use]
    pub fn new(runner: Runner<M, St>) -> Self {
        Self { runner, page: 100, every: Duration::from_secs(1), concurrency: 1 }
    }

    /// Reads due records `records` at a time (at least 1).
    #[must_use]
    pub fn page(mut self, records: u32) -> Self {
        self.page = records.max(1);
        self
    }

    /// How long [`run`](Sweeper::run) waits between sweeps.
    #[must_use]
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval;
        self
    }

    /// How many records of a page are fired at once (at least 1): on a
    /// server store, where each commit waits on the network, a few in
    /// flight multiply the rate.
    #[must_use]
    pub fn concurrency(mut self, records: usize) -> Self {
        self.concurrency = records.max(1);
        self
    }

    /// One sweep: every record due by the runner's clock now, page by page
    /// in due order, each sent its timer command. Fails only if the store
    /// cannot list due records; what became of each record is counted.
    pub async fn sweep(&self) -> Result<Swept, Error<M::Error>> {
        self.sweep_until(&mut pin!(std::future::pending::<()>())).await
    }

    /// Sweeps every [`every`](Sweeper::every) until `shutdown` completes,
    /// then returns the totals. Shutdown is graceful: a sweep in progress
    /// stops after the records it is firing, and no command is abandoned
    /// midway. A sweep the store failed is retried at the next interval.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Swept {
        let shutdown = pin!(shutdown);
        let mut shutdown = pin!(crate::process::Fused::new(shutdown));
        let mut total = Swept::default();
        loop {
            if let Ok(swept) = self.sweep_until(&mut shutdown).await {
                total.add(swept);
            }
            if crate::process::idle(self.every, &mut shutdown).await {
                return total;
            }
        }
    }

    async fn sweep_until<S: Future<Output = ()>>(
        &self,
        shutdown: &mut std::pin::Pin<&mut S>,
    ) -> Result<Swept, Error<M::Error>> {
        let now = self.runner.now();
        let mut swept = Swept::default();
        let mut after: Option<(u64, String)> = None;
        loop {
            let position = after.as_ref().map(|(due, id)| (*due, id.as_str()));
            let page = self.runner.store().due(M::NAME, now, position, self.page).await.map_err(Error::Store)?;
            let full = page.len() >= self.page as usize;
            if let Some(last) = page.last() {
                after = Some((last.due, last.id.clone()));
            }
            for chunk in page.chunks(self.concurrency) {
                for fired in self.fire_all(chunk).await {
                    match fired {
                        Fired::Fired => swept.fired += 1,
                        Fired::Skipped => swept.skipped += 1,
                        Fired::Refused => swept.refused += 1,
                        Fired::Failed => swept.failed += 1,
                        Fired::Retried => swept.retried += 1,
                    }
                }
                if stopping(shutdown) {
                    return Ok(swept);
                }
            }
            if !full {
                return Ok(swept);
            }
        }
    }

    /// Fires `timers` at once, each in a task of its own when there are
    /// several (a panic in one is its own `Retried`).
    async fn fire_all(&self, timers: &[Timer]) -> Vec<Fired> {
        if let [timer] = timers {
            return vec![fire(&self.runner, timer).await];
        }
        let mut tasks = tokio::task::JoinSet::new();
        for timer in timers {
            let (runner, timer) = (self.runner.clone(), timer.clone());
            tasks.spawn(async move { fire(&runner, &timer).await });
        }
        let mut fired = Vec::with_capacity(timers.len());
        while let Some(joined) = tasks.join_next().await {
            fired.push(joined.unwrap_or(Fired::Retried));
        }
        fired
    }
}

/// Sends one due record its timer command and says what became of it.
async fn fire<M, St>(runner: &Runner<M, St>, timer: &Timer) -> Fired
where
    M: AsyncMachine,
    M::State: Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + 'static,
    St: Query,
{
    match runner.fire(&timer.id).await {
        Ok(_) => Fired::Fired,
        Err(Error::NotDue { .. }) => Fired::Skipped,
        Err(Error::FailureRecorded { .. }) => Fired::Failed,
        Err(error) if error.is_retryable() => Fired::Retried,
        Err(error) => {
            // Refused for good at this version: stop finding it. If the
            // record moved on meanwhile, disarming finds nothing, and its
            // new state's timer stands.
            let disarmed = runner.store().disarm(M::NAME, &timer.id, timer.version).await;
            crate::observe::timer_refused(M::NAME, &timer.id, &error, M::SENSITIVE);
            match disarmed {
                Ok(_) => Fired::Refused,
                Err(_) => Fired::Retried,
            }
        }
    }
}

impl<M: AsyncMachine, St: std::fmt::Debug> std::fmt::Debug for Sweeper<M, St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweeper")
            .field("machine", &M::NAME)
            .field("page", &self.page)
            .field("every", &self.every)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}
