//! Commands sent through one runner to the same record queue up and commit as
//! one group, so tasks of one process never race each other for a hot record:
//! only other processes can still cause conflicts.

use crate::error::{Error, StoreError};
use crate::machine::Machine;
use crate::runner::{Outcome, Planned, Runner, decode_record, encode};
use crate::store::{Commit, Store, Write};
use crate::tries::Tries;
use crate::{Kind, State};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, PoisonError};
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

type Reply<M> = oneshot::Sender<Result<Outcome<<M as Machine>::State>, Error<<M as Machine>::Error>>>;

/// A queued command and where its outcome goes.
pub(crate) struct Job<M: Machine> {
    command: M::Command,
    command_json: String,
    reply: Reply<M>,
}

/// The per-record queues of one runner (shared by its clones). A record has a
/// queue exactly while a worker is draining it.
pub(crate) struct Coalescer<M: Machine, St> {
    config: Coalescing,
    queues: Mutex<HashMap<String, VecDeque<Job<M>>>>,
    clone_command: fn(&M::Command) -> M::Command,
    spawn_worker: fn(Runner<M, St>, String),
}

impl<M: Machine, St> fmt::Debug for Coalescer<M, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalescer").field("config", &self.config).finish_non_exhaustive()
    }
}

impl<M: Machine, St> Coalescer<M, St> {
    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Job<M>>>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a command for record `id`. `Ok(true)`: no worker drains the
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

impl<M, St> Runner<M, St>
where
    M: Machine + 'static,
    M::State: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    St: Store,
{
    /// Coalesces commands to the same record sent through this runner and its
    /// clones: one worker task loads the record once, applies the waiting
    /// commands in arrival order, and commits them as one group (one history
    /// entry and one version per command). Each caller still gets its own
    /// outcome: the state right after its command and its version, or its own
    /// error; a command whose transition fails changes nothing for the others
    /// (with [`record_failures`](Runner::record_failures), its failure state is
    /// what the next command sees).
    ///
    /// Conflicts then only come from other processes; when one happens the
    /// whole group is reloaded and applied again under the retry policy. A
    /// store error fails exactly the callers of that group. Dropping a
    /// caller's future after its command was queued does not withdraw the
    /// command (it may still be applied) and never affects other callers.
    #[must_use]
    pub fn coalesce(mut self, config: Coalescing) -> Self {
        self.set_coalescer(Coalescer {
            config,
            queues: Mutex::new(HashMap::new()),
            clone_command: M::Command::clone,
            spawn_worker: |runner, id| {
                tokio::spawn(async move { runner.drain(&id).await });
            },
        });
        self
    }
}

impl<M, St> Runner<M, St>
where
    M: Machine,
    M::State: Serialize + DeserializeOwned + Send + Sync + 'static,
    M::Command: Serialize + DeserializeOwned + Send + Sync + 'static,
    St: Store,
{
    /// Queues `command` for the record's worker and waits for its outcome;
    /// `None` when the queue is full (the caller then runs it alone).
    pub(crate) async fn handle_coalesced(
        &self,
        coalescer: &Coalescer<M, St>,
        id: &str,
        command: &M::Command,
        command_json: &str,
    ) -> Option<Result<Outcome<M::State>, Error<M::Error>>> {
        let (reply, outcome) = oneshot::channel();
        let job = Job { command: (coalescer.clone_command)(command), command_json: command_json.to_owned(), reply };
        match coalescer.enqueue(id, job) {
            Err(_) => return None,
            Ok(true) => (coalescer.spawn_worker)(self.clone(), id.to_owned()),
            Ok(false) => {}
        }
        // The worker always answers; a closed channel could only mean the
        // worker task was aborted by the runtime shutting down.
        Some(outcome.await.unwrap_or_else(|_| {
            let gone = StoreError::backend(WorkerGone, true);
            Err(Error::Store(gone))
        }))
    }
}

impl<M, St> Runner<M, St>
where
    M: Machine,
    M::State: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    M::Command: Serialize + DeserializeOwned + Send + Sync + 'static,
    St: Store,
{
    /// Drains record `id`'s queue, one group at a time, until it is empty.
    async fn drain(&self, id: &str) {
        let Some(coalescer) = self.coalescer() else { return };
        loop {
            let batch = coalescer.next_batch(id);
            if batch.is_empty() {
                return;
            }
            self.commit_group(id, batch).await;
        }
    }

    /// Loads once, applies every command of `batch` in order, commits once;
    /// on a conflict reloads and applies the whole group again.
    async fn commit_group(&self, id: &str, batch: Vec<Job<M>>) {
        let mut tries = Tries::new(self.retry_clock_ref());
        loop {
            let attempts = tries.start();
            let record = match self.store().load(M::NAME, id).await {
                Ok(record) => record,
                Err(error) => return fail_all(batch, || Error::Store(error.clone())),
            };
            let (mut state, version) = match &record {
                None => (M::State::initial(), 0),
                Some(record) => match decode_record::<M>(id, record) {
                    Ok(loaded) => (loaded.state, loaded.version),
                    Err(_) => {
                        // serde's error is not Clone: decode again for each caller.
                        return fail_all(batch, || {
                            decode_record::<M>(id, record)
                                .err()
                                .unwrap_or(Error::NotRead { machine: M::NAME, id: id.to_owned() })
                        });
                    }
                },
            };
            let mut results: Vec<Applied<M>> = Vec::with_capacity(batch.len());
            let mut writes: Vec<Write<'_>> = Vec::new();
            for job in &batch {
                let expected = version + writes.len() as u64;
                if expected == u64::MAX {
                    let overflow = StoreError::VersionOverflow {
                        machine: M::NAME.to_owned(),
                        id: id.to_owned(),
                        version: expected,
                    };
                    results.push(Err(Error::Store(overflow)));
                    continue;
                }
                let planned = self.plan(&job.command, Cow::Borrowed(job.command_json.as_str()), state.clone());
                if let Ok(planned) = &planned {
                    match encode::<M, _>(id, "state", &planned.next) {
                        Ok(json) => {
                            writes.push(Write {
                                machine: M::NAME,
                                id,
                                expected,
                                kind: planned.next.kind().as_str(),
                                state: json,
                                command: &job.command_json,
                                origin: crate::store::Origin::Command,
                            });
                            state = planned.next.clone();
                        }
                        Err(error) => {
                            results.push(Err(error));
                            continue;
                        }
                    }
                }
                results.push(planned.map(|p: Planned<'_, M>| (p.next, p.rejected)));
            }
            let committed = if writes.is_empty() {
                Ok(())
            } else {
                self.store().commit(Commit { writes, checks: Vec::new() }).await
            };
            match committed {
                Ok(()) => return deliver(batch, results, version, attempts),
                Err(StoreError::Conflict(conflict)) => {
                    if let Err(error) = tries.lost::<M::Error>(self.policy(), self.retry_clock_ref(), conflict).await {
                        return fail_all(batch, || share(&error));
                    }
                }
                Err(error) => return fail_all(batch, || Error::Store(error.clone())),
            }
        }
    }
}

/// One command's result within a group: the state it produced (and its
/// error, when that state is a recorded failure), or why it was refused.
type Applied<M> = Result<(<M as Machine>::State, Option<<M as Machine>::Error>), Error<<M as Machine>::Error>>;

/// Sends each caller its own outcome; versions follow the order of the
/// successful commands.
fn deliver<M: Machine>(batch: Vec<Job<M>>, results: Vec<Applied<M>>, base: u64, attempts: u32) {
    let mut version = base;
    for (job, result) in batch.into_iter().zip(results) {
        let outcome = result.and_then(|(state, rejected)| {
            version += 1;
            match rejected {
                None => Ok(Outcome { state, version, attempts }),
                Some(source) => Err(Error::FailureRecorded { source, version }),
            }
        });
        // A caller that stopped waiting simply does not hear back.
        let _ = job.reply.send(outcome);
    }
}

fn fail_all<M: Machine>(batch: Vec<Job<M>>, error: impl Fn() -> Error<M::Error>) {
    for job in batch {
        let _ = job.reply.send(Err(error()));
    }
}

/// A copy of a group-wide error (those the retry loop can end with).
fn share<E: fmt::Display>(error: &Error<E>) -> Error<E> {
    match error {
        Error::RetriesExhausted { conflict, attempts } => {
            Error::RetriesExhausted { conflict: conflict.clone(), attempts: *attempts }
        }
        Error::Store(store) => Error::Store(store.clone()),
        other => Error::Store(StoreError::Backend {
            source: std::sync::Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(other.to_string())),
            retryable: false,
        }),
    }
}

/// The worker of a coalesced record stopped without answering.
#[derive(Debug, thiserror::Error)]
#[error("the group-commit worker stopped before answering (runtime shutting down)")]
struct WorkerGone;
