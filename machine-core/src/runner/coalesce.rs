//! Commands sent through one runner to the same record queue up and commit as
//! one group, so tasks of one process never race each other for a hot record:
//! only other processes can still cause conflicts.

use super::group::{Intent, Opener};
use super::pipeline::{Direct, Read};
use super::request::OwnedRequest;
use super::{Outcome, Runner, outcome, settled, widen};
use crate::error::{Error, StoreError};
use crate::machine::AsyncMachine;
use crate::store::Store;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// How commands to the same record are grouped (see [`Runner::coalesce`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coalescing {
    max_batch: usize,
    max_queue: usize,
}

impl Default for Coalescing {
    /// Up to 64 commands per group commit and 1,024 waiting per record.
    fn default() -> Self {
        Self { max_batch: 64, max_queue: 1024 }
    }
}

impl Coalescing {
    /// At most `commands` (at least 1) in one group commit.
    #[must_use]
    pub fn max_batch(mut self, commands: usize) -> Self {
        self.max_batch = commands.max(1);
        self
    }

    /// At most `commands` waiting per record; beyond that a command runs on
    /// its own, uncoalesced, instead of growing the queue.
    #[must_use]
    pub fn max_queue(mut self, commands: usize) -> Self {
        self.max_queue = commands;
        self
    }
}

type Reply<M> = oneshot::Sender<Result<Outcome<<M as AsyncMachine>::State>, Error<<M as AsyncMachine>::Error>>>;

/// What a queued member asks for, owned while it waits.
pub(crate) enum Owned<M: AsyncMachine> {
    Apply(M::Command, OwnedRequest),
    Recover(Opener<M>, Option<super::group::Ready>),
    Fire(u64),
}

impl<M: AsyncMachine> Owned<M> {
    fn intent(&self) -> Intent<'_, M> {
        match self {
            Self::Apply(command, request) => Intent::Apply(command, request.borrow()),
            Self::Recover(open, ready) => Intent::Recover(*open, *ready),
            Self::Fire(now) => Intent::Fire(*now),
        }
    }
}

/// A queued member and where its outcome goes.
pub(crate) struct Job<M: AsyncMachine> {
    intent: Owned<M>,
    reply: Reply<M>,
}

/// The per-record queues of one runner (shared by its clones). A record has a
/// queue exactly while a worker is draining it.
pub(crate) struct Coalescer<M: AsyncMachine, St> {
    pub(crate) config: Coalescing,
    queues: Mutex<HashMap<String, VecDeque<Job<M>>>>,
    pub(crate) clone_command: fn(&M::Command) -> M::Command,
    spawn_worker: fn(Runner<M, St>, String),
}

impl<M: AsyncMachine, St> fmt::Debug for Coalescer<M, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalescer").field("config", &self.config).finish_non_exhaustive()
    }
}

impl<M: AsyncMachine, St> Coalescer<M, St> {
    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Job<M>>>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a member for record `id`. `Ok(true)`: no worker drains the
    /// record yet, start one. `Err`: the queue is full, run it alone.
    fn enqueue(&self, id: &str, job: Job<M>) -> Result<bool, Job<M>> {
        let mut queues = self.queues();
        match queues.get_mut(id) {
            Some(queue) if queue.len() >= self.config.max_queue => Err(job),
            Some(queue) => {
                queue.push_back(job);
                Ok(false)
            }
            None => {
                queues.insert(id.to_owned(), VecDeque::from([job]));
                Ok(true)
            }
        }
    }

    /// The next group for record `id`; empty (and the queue gone, so the next
    /// command starts a new worker) when nothing waits.
    fn next_batch(&self, id: &str) -> Vec<Job<M>> {
        let mut queues = self.queues();
        let Some(queue) = queues.get_mut(id) else { return Vec::new() };
        let take = queue.len().min(self.config.max_batch);
        let batch: Vec<Job<M>> = queue.drain(..take).collect();
        if batch.is_empty() {
            queues.remove(id);
        }
        batch
    }
}

/// Owned by a worker while it drains a record. Should the worker unwind (a
/// panic in the store, say — transitions' panics are caught as errors) or be
/// dropped by a runtime shutting down, the callers of the group in hand hear
/// that it stopped, and commands queued behind them get a fresh worker, so
/// the record never waits for a worker that is gone.
struct Draining<'c, M: AsyncMachine, St> {
    runner: &'c Runner<M, St>,
    coalescer: &'c Coalescer<M, St>,
    id: &'c str,
    /// Set when the queue was found empty and removed by `next_batch`: from
    /// then on a queue under this id belongs to a newer worker.
    drained: bool,
}

impl<M: AsyncMachine, St> Drop for Draining<'_, M, St> {
    fn drop(&mut self) {
        if self.drained {
            return;
        }
        let mut queues = self.coalescer.queues();
        let waiting = queues.get(self.id).is_some_and(|queue| !queue.is_empty());
        if !waiting {
            queues.remove(self.id);
            return;
        }
        drop(queues);
        if tokio::runtime::Handle::try_current().is_ok() {
            (self.coalescer.spawn_worker)(self.runner.clone(), self.id.to_owned());
        } else {
            // No runtime to run a worker on: the waiting callers hear that
            // the worker stopped instead of waiting for ever.
            let orphans = self.coalescer.queues().remove(self.id);
            drop(orphans);
        }
    }
}

impl<M, St> Runner<M, St>
where
    M: AsyncMachine + 'static,
    M::State: Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + 'static,
    St: Store,
{
    /// Coalesces commands to the same record sent through this runner and its
    /// clones: one worker task loads the record once, applies the waiting
    /// commands in arrival order, and commits them as one group (one history
    /// entry and one version per command). Each caller still gets its own
    /// outcome: the state right after its command and its version, or its own
    /// error, exactly as without coalescing; a command that is refused (or
    /// whose transition panics) changes nothing for the others (with
    /// [`record_failures`](Runner::record_failures), a recorded failure is
    /// what the next command sees).
    ///
    /// Conflicts then only come from other processes; when one happens the
    /// whole group is reloaded and applied again under the retry policy, and
    /// a give-up or a store error reaches every caller of that group as the
    /// same typed error. Dropping a caller's future after its command was
    /// queued does not withdraw the command (it may still be applied) and
    /// never affects other callers. [`recover`](Runner::recover) calls queue
    /// up like commands.
    #[must_use]
    pub fn coalesce(mut self, config: Coalescing) -> Self {
        self.coalescer = Some(Arc::new(Coalescer {
            config,
            queues: Mutex::new(HashMap::new()),
            clone_command: M::Command::clone,
            spawn_worker: |runner, id| {
                tokio::spawn(async move { runner.drain(&id).await });
            },
        }));
        self
    }
}

impl<M, St> Runner<M, St>
where
    M: AsyncMachine,
    M::State: Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + 'static,
    St: Store,
{
    /// One caller of a coalesced record: admitted by the policy, queued for
    /// the record's worker (or run alone when the queue is full), and the
    /// policy told how it ended — the same frame as an uncoalesced call.
    pub(crate) async fn handle_coalesced(
        &self,
        coalescer: &Coalescer<M, St>,
        id: &str,
        intent: Owned<M>,
    ) -> Result<Outcome<M::State>, Error<M::Error>> {
        let pipeline = self.pipeline();
        let admitted = pipeline.admit(intent.intent().op(false), M::NAME, id)?;
        let (reply, outcome) = oneshot::channel();
        let waited = async {
            match coalescer.enqueue(id, Job { intent, reply }) {
                Err(job) => self.alone(Direct::new(self.store(), M::QUICK), id, &job.intent.intent()).await,
                Ok(start) => {
                    if start {
                        (coalescer.spawn_worker)(self.clone(), id.to_owned());
                    }
                    outcome.await.unwrap_or_else(|_| Err(Error::Store(StoreError::backend(WorkerStopped, true))))
                }
            }
        };
        let result = admitted.run(waited).await;
        pipeline.finish(admitted, &result, settled::<M>);
        result
    }

    /// Drains record `id`'s queue, one group at a time, until it is empty.
    async fn drain(&self, id: &str) {
        let Some(coalescer) = self.coalescer.as_deref() else { return };
        let mut draining = Draining { runner: self, coalescer, id, drained: false };
        loop {
            let batch = coalescer.next_batch(id);
            if batch.is_empty() {
                draining.drained = true;
                return;
            }
            self.commit_group(id, batch).await;
        }
    }

    /// One group through the pipeline; every caller gets its own result.
    /// A group of one is a single command, with its held attempt
    /// (`Runner::alone`), as when it is not coalesced.
    async fn commit_group(&self, id: &str, mut batch: Vec<Job<M>>) {
        if batch.len() == 1 {
            let result = {
                let intent = batch[0].intent.intent();
                self.alone(Direct::new(self.store(), M::QUICK), id, &intent).await
            };
            if let Some(job) = batch.pop() {
                let _ = job.reply.send(result);
            }
            return;
        }
        let result = {
            let intents: Vec<Intent<'_, M>> = batch.iter().map(|job| job.intent.intent()).collect();
            let mut group = self.group(id, &intents);
            let keys: Vec<&str> = intents.iter().filter_map(Intent::key).collect();
            let read = Read { keys: &keys, ..Read::plain(M::NAME, id) };
            self.pipeline().grouped(Direct::new(self.store(), M::QUICK), &[read], &mut group, intents.len()).await
        };
        match result {
            Ok((applied, attempts)) => {
                for (job, applied) in batch.into_iter().zip(applied) {
                    // A caller that stopped waiting simply does not hear back.
                    let _ = job.reply.send(outcome::<M>(id, applied, attempts));
                }
            }
            Err(error) => {
                for job in batch {
                    let _ = job.reply.send(Err(widen(&error)));
                }
            }
        }
    }
}

/// The worker of a coalesced record stopped without answering: the runtime
/// is shutting down, or the store panicked. Retryable: the record's next
/// command starts a new worker.
#[derive(Debug, thiserror::Error)]
#[error("the group-commit worker stopped before answering (the store panicked or the runtime is shutting down)")]
struct WorkerStopped;
