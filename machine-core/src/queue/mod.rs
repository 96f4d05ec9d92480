//! Eventual retry: when a caller cannot wait for a contended record, it hands
//! the command to a bounded background queue that keeps trying it through the
//! runner, parks what keeps failing in a dead-letter list for people to
//! inspect and re-drive, and shuts down by draining or by reporting what is
//! left. Nothing is dropped silently: a full or closed queue hands the command
//! back to the caller.

mod worker;

use crate::error::Error;
use crate::machine::Machine;
use crate::observe::QueueGauges;
use crate::retry::{Clock, Jitter, Retry, TokioClock};
use crate::runner::Runner;
use crate::store::Store;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A bounded background queue of commands retried through a [`Runner`].
///
/// Each queued command is tried with [`Runner::handle`] (which applies the
/// runner's own retry policy); when that fails with a retryable error
/// ([`Error::is_retryable`]) it is tried again later, after a wait from the
/// queue's [`backoff`](RetryQueueBuilder::backoff), up to
/// [`max_tries`](RetryQueueBuilder::max_tries) times. A command that still
/// fails, or fails for good (the transition refused it), becomes a
/// [`DeadLetter`]: kept, inspectable, and re-drivable.
///
/// Clones share the queue, so every request handler can hold one. Dropping
/// the last clone stops the workers at once and abandons what was waiting;
/// call [`shutdown`](RetryQueue::shutdown) to drain it and learn what is left.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use machine_core::prelude::*;
/// use machine_core::queue::RetryQueue;
/// use machine_core::store::Memory;
/// use std::time::Duration;
/// # #[derive(State, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// # enum Hits { #[state(initial)] Zero, Counted(u64) }
/// # #[derive(Command, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// # #[command(state = Hits)]
/// # enum Hit { #[command(from(Zero, Counted), to(Counted))] Add }
/// # struct Counter;
/// # impl Machine for Counter {
/// #     type State = Hits; type Command = Hit; type Deps = (); type Error = std::convert::Infallible;
/// #     fn transition(_: &(), _: &Hit, state: &Hits) -> Result<Hits, Self::Error> {
/// #         Ok(Hits::Counted(match state { Hits::Zero => 1, Hits::Counted(n) => n + 1 }))
/// #     }
/// # }
///
/// let runner = Runner::<Counter, _>::new(Memory::new(), ());
/// let queue = RetryQueue::builder(runner.clone()).capacity(100).max_tries(5).start();
/// queue.submit("page-1", Hit::Add).expect("room in the queue");
/// let report = queue.shutdown(Duration::from_secs(5)).await;
/// assert_eq!((report.completed, report.unfinished.len(), report.dead_letters.len()), (1, 0, 0));
/// assert_eq!(runner.get("page-1").await.unwrap().unwrap().version, 1);
/// # }
/// ```
pub struct RetryQueue<M: Machine, St> {
    shared: Arc<Shared<M, St>>,
    workers: Arc<Workers>,
}

/// The worker tasks, aborted when the last clone of the queue goes away.
struct Workers(Mutex<Vec<JoinHandle<()>>>);

/// Configures and starts a [`RetryQueue`].
pub struct RetryQueueBuilder<M: Machine, St> {
    runner: Runner<M, St>,
    capacity: usize,
    max_tries: u32,
    backoff: Retry,
    workers: usize,
    clock: Arc<dyn Clock>,
}

/// A command that failed for good or ran out of tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter<C> {
    /// The record's id.
    pub id: String,
    /// The command.
    pub command: C,
    /// How many times it was tried.
    pub tries: u32,
    /// The last error, as text.
    pub error: String,
    /// Whether the last error was retryable (it ran out of tries) rather than
    /// final (the transition or the table refused it).
    pub retryable: bool,
}

/// A command still waiting when the queue shut down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished<C> {
    /// The record's id.
    pub id: String,
    /// The command.
    pub command: C,
    /// How many times it was tried (0: never).
    pub tries: u32,
    /// The error of its last try, if it was tried.
    pub last_error: Option<String>,
}

/// What [`RetryQueue::shutdown`] leaves behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport<C> {
    /// Commands saved since the queue started.
    pub completed: u64,
    /// Commands not finished when the grace period ended, in queue order.
    pub unfinished: Vec<Unfinished<C>>,
    /// Dead letters not taken out before shutdown.
    pub dead_letters: Vec<DeadLetter<C>>,
}

/// Counts of the queue's commands at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Queued and waiting for a try.
    pub waiting: usize,
    /// Being tried now.
    pub running: usize,
    /// Saved since the queue started.
    pub completed: u64,
    /// In the dead-letter list.
    pub dead: usize,
}

/// Why [`RetryQueue::submit`] did not queue a command; the command comes back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError<C> {
    /// The queue holds `capacity` commands already.
    #[error("retry queue full ({capacity} commands): {id:?} was not queued")]
    Full {
        /// The record's id.
        id: String,
        /// The command, handed back.
        command: C,
        /// The queue's capacity.
        capacity: usize,
    },
    /// The queue is shutting down and accepts nothing new.
    #[error("retry queue shut down: {id:?} was not queued")]
    ShutDown {
        /// The record's id.
        id: String,
        /// The command, handed back.
        command: C,
    },
}

impl<C> QueueError<C> {
    /// The refused id and command, to handle some other way.
    #[must_use]
    pub fn into_parts(self) -> (String, C) {
        match self {
            Self::Full { id, command, .. } | Self::ShutDown { id, command } => (id, command),
        }
    }
}

struct Shared<M: Machine, St> {
    runner: Runner<M, St>,
    capacity: usize,
    max_tries: u32,
    backoff: Retry,
    clock: Arc<dyn Clock>,
    state: Mutex<State<M::Command>>,
    wake: Notify,
}

struct State<C> {
    waiting: VecDeque<Job<C>>,
    running: usize,
    completed: u64,
    dead: Vec<DeadLetter<C>>,
    /// No new submissions (shutdown began).
    closed: bool,
    /// Workers start no new tries.
    stopped: bool,
    /// What the depth and dead-letter gauges last heard from this queue.
    gauges: QueueGauges,
}

struct Job<C> {
    id: String,
    command: C,
    tries: u32,
    ready_at: Duration,
    last_wait: Duration,
    last_error: Option<String>,
}

impl<M, St> RetryQueue<M, St>
where
    M: Machine + 'static,
    M::State: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    St: Store,
{
    /// A queue over `runner`: capacity 1,024, 5 tries per command, waits of
    /// `Retry::exponential(10 ms).max_delay(5 s).jitter(Jitter::Full)`
    /// between tries, one worker.
    #[must_use]
    pub fn builder(runner: Runner<M, St>) -> RetryQueueBuilder<M, St> {
        RetryQueueBuilder {
            runner,
            capacity: 1_024,
            max_tries: 5,
            backoff: Retry::exponential(Duration::from_millis(10))
                .max_delay(Duration::from_secs(5))
                .jitter(Jitter::Full),
            workers: 1,
            clock: Arc::new(TokioClock::new()),
        }
    }

    /// Queues `command` for record `id`, to be tried in the background.
    /// A full or shut-down queue refuses it and hands it back.
    pub fn submit(&self, id: impl Into<String>, command: M::Command) -> Result<(), QueueError<M::Command>> {
        let id = id.into();
        let ready_at = self.shared.clock.now();
        let mut state = self.shared.lock();
        if state.closed {
            return Err(QueueError::ShutDown { id, command });
        }
        if state.waiting.len() + state.running >= self.shared.capacity {
            return Err(QueueError::Full { id, command, capacity: self.shared.capacity });
        }
        let job = Job { id, command, tries: 0, ready_at, last_wait: Duration::ZERO, last_error: None };
        state.waiting.push_back(job);
        drop(state);
        self.shared.wake.notify_waiters();
        Ok(())
    }

    /// Counts of waiting, running, completed and dead commands.
    #[must_use]
    pub fn stats(&self) -> QueueStats {
        let state = self.shared.lock();
        QueueStats {
            waiting: state.waiting.len(),
            running: state.running,
            completed: state.completed,
            dead: state.dead.len(),
        }
    }

    /// A copy of the dead-letter list, oldest first.
    #[must_use]
    pub fn dead_letters(&self) -> Vec<DeadLetter<M::Command>>
    where
        M::Command: Clone,
    {
        self.shared.lock().dead.clone()
    }

    /// Takes the dead letters out of the queue, to handle them elsewhere.
    #[must_use]
    pub fn take_dead_letters(&self) -> Vec<DeadLetter<M::Command>> {
        std::mem::take(&mut self.shared.lock().dead)
    }

    /// Queues dead letters again with their tries reset, oldest first, as
    /// many as there is room for; returns how many. Those without room stay
    /// dead letters. A shut-down queue re-drives nothing.
    // Re-driving is the point; the count is for those who want it.
    #[allow(clippy::must_use_candidate)]
    pub fn redrive(&self) -> usize {
        let now = self.shared.clock.now();
        let mut state = self.shared.lock();
        if state.closed {
            return 0;
        }
        let room = self.shared.capacity.saturating_sub(state.waiting.len() + state.running);
        let take = room.min(state.dead.len());
        let moved: Vec<_> = state.dead.drain(..take).collect();
        let count = moved.len();
        state.waiting.extend(moved.into_iter().map(|dead| Job {
            id: dead.id,
            command: dead.command,
            tries: 0,
            ready_at: now,
            last_wait: Duration::ZERO,
            last_error: Some(dead.error),
        }));
        drop(state);
        self.shared.wake.notify_waiters();
        count
    }

    /// Stops accepting commands, keeps trying the queued ones for up to
    /// `grace`, then lets each worker finish the try it is in (a try is never
    /// cut off mid-commit) and reports what is left. `Duration::ZERO` stops
    /// after the tries in progress.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport<M::Command> {
        self.shared.lock().closed = true;
        self.shared.wake.notify_waiters();
        let until = self.shared.clock.now().saturating_add(grace);
        loop {
            let mut woken = std::pin::pin!(self.shared.wake.notified());
            woken.as_mut().enable();
            if self.shared.lock().is_idle() {
                break;
            }
            let now = self.shared.clock.now();
            if now >= until {
                break;
            }
            worker::either(woken, self.shared.clock.sleep(until.saturating_sub(now))).await;
        }
        self.shared.lock().stopped = true;
        self.shared.wake.notify_waiters();
        let workers = std::mem::take(&mut *self.workers.0.lock().unwrap_or_else(PoisonError::into_inner));
        for handle in workers {
            // A worker ends on its own once stopped; a panic inside a
            // transition only loses that worker's current command, which is
            // then neither completed nor unfinished.
            let _ = handle.await;
        }
        let mut state = self.shared.lock();
        let unfinished = state
            .waiting
            .drain(..)
            .map(|job| Unfinished { id: job.id, command: job.command, tries: job.tries, last_error: job.last_error })
            .collect();
        ShutdownReport { completed: state.completed, unfinished, dead_letters: std::mem::take(&mut state.dead) }
    }
}

impl<M, St> RetryQueueBuilder<M, St>
where
    M: Machine + 'static,
    M::State: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    St: Store,
{
    /// At most `commands` waiting or running at once (at least 1).
    #[must_use]
    pub fn capacity(mut self, commands: usize) -> Self {
        self.capacity = commands.max(1);
        self
    }

    /// Tries per command before it becomes a dead letter (at least 1).
    #[must_use]
    pub fn max_tries(mut self, tries: u32) -> Self {
        self.max_tries = tries.max(1);
        self
    }

    /// The waits between a command's tries: [`Retry::delay`] of the try
    /// number. Only its backoff, cap and jitter are used.
    #[must_use]
    pub fn backoff(mut self, backoff: Retry) -> Self {
        self.backoff = backoff;
        self
    }

    /// How many commands are tried at once (at least 1).
    #[must_use]
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Reads time and waits with `clock`.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Starts the workers on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like [`tokio::spawn`].
    #[must_use]
    pub fn start(self) -> RetryQueue<M, St> {
        let shared = Arc::new(Shared {
            runner: self.runner,
            capacity: self.capacity,
            max_tries: self.max_tries,
            backoff: self.backoff,
            clock: self.clock,
            state: Mutex::new(State {
                waiting: VecDeque::new(),
                running: 0,
                completed: 0,
                dead: Vec::new(),
                closed: false,
                stopped: false,
                gauges: QueueGauges::default(),
            }),
            wake: Notify::new(),
        });
        let workers = (0..self.workers).map(|_| tokio::spawn(worker::work(Arc::clone(&shared)))).collect();
        RetryQueue { shared, workers: Arc::new(Workers(Mutex::new(workers))) }
    }
}

impl<M: Machine, St> Shared<M, St> {
    fn lock(&self) -> Locked<'_, M::Command> {
        // Every critical section leaves the state consistent, so a poisoned
        // lock (a panic elsewhere) is still safe to use.
        Locked { machine: M::NAME, guard: self.state.lock().unwrap_or_else(PoisonError::into_inner) }
    }
}

impl<M: Machine, St> Drop for Shared<M, St> {
    fn drop(&mut self) {
        // The queue is gone: what it still held leaves the gauges.
        self.state.get_mut().unwrap_or_else(PoisonError::into_inner).gauges.sync(M::NAME, 0, 0);
    }
}

/// The queue's state under its lock. Releasing the lock reports the queue's
/// depth and dead letters to the gauges, so no path that changes them can
/// forget to (without the `observe` feature, two lengths are read and
/// nothing else happens).
struct Locked<'s, C> {
    machine: &'static str,
    guard: MutexGuard<'s, State<C>>,
}

impl<C> Deref for Locked<'_, C> {
    type Target = State<C>;
    fn deref(&self) -> &State<C> {
        &self.guard
    }
}

impl<C> DerefMut for Locked<'_, C> {
    fn deref_mut(&mut self) -> &mut State<C> {
        &mut self.guard
    }
}

impl<C> Drop for Locked<'_, C> {
    fn drop(&mut self) {
        let state = &mut *self.guard;
        let (depth, dead) = (state.waiting.len() + state.running, state.dead.len());
        state.gauges.sync(self.machine, depth, dead);
    }
}

impl<C> State<C> {
    fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running == 0
    }
}

/// What a try's error means for the command.
fn classify<E>(error: &Error<E>) -> (bool, Duration) {
    match error {
        Error::CircuitOpen { retry_after, .. } => (true, *retry_after),
        other => (other.is_retryable(), Duration::ZERO),
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for handle in self.0.get_mut().unwrap_or_else(PoisonError::into_inner).iter() {
            handle.abort();
        }
    }
}

impl<M: Machine, St> Clone for RetryQueue<M, St> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared), workers: Arc::clone(&self.workers) }
    }
}

impl<M: Machine, St> fmt::Debug for RetryQueue<M, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("RetryQueue")
            .field("machine", &M::NAME)
            .field("capacity", &self.shared.capacity)
            .field("max_tries", &self.shared.max_tries)
            .field("waiting", &state.waiting.len())
            .field("running", &state.running)
            .field("dead", &state.dead.len())
            .finish_non_exhaustive()
    }
}

impl<M: Machine, St> fmt::Debug for RetryQueueBuilder<M, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryQueueBuilder")
            .field("machine", &M::NAME)
            .field("capacity", &self.capacity)
            .field("max_tries", &self.max_tries)
            .field("backoff", &self.backoff)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}
