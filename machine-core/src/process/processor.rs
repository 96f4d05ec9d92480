//! The processor: a lease and a checkpoint in the store, a loop that reads
//! the feed after the checkpoint and hands each entry of its machine to the
//! handler, and the dead letters it parks on the way.

use super::entry::{Entry, Handler};
use super::stopping;
use crate::error::{Error, StoreError};
use crate::machine::AsyncMachine;
use crate::retry::{Jitter, Retry};
use crate::runner::{Runner, codec, millis};
use crate::store::{Change, Checkpoint, Checkpoints, Cursor, DeadLetter};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A named consumer of the runner's store's change feed, delivering each
/// change of machine `M` to handler `H` at least once (see the
/// [module docs](super) for what it guarantees).
///
/// Changes of other machines are read and passed over: the checkpoint
/// moves past them. Start one per service instance under the same name:
/// one holds the lease and delivers, the others stand by and take over
/// when its lease runs out. Leases are judged by the runner's
/// [`clock`](Runner::clock), and the waits between a handler's retries use
/// its [`retry_clock`](Runner::retry_clock), so tests move time by hand.
///
/// ```
/// # use machine_core::prelude::*;
/// # use machine_core::store::Memory;
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
/// use machine_core::process::{Entry, Processor, Stepped};
/// use std::sync::{Arc, Mutex};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let runner = Runner::<Counter, _>::new(Memory::new(), ());
/// runner.handle("page-1", &Hit::Add).await?;
/// runner.handle("page-1", &Hit::Add).await?;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = Arc::clone(&seen);
/// let processor = Processor::new("audit", runner.clone(), move |entry: Entry<Counter>| {
///     let log = Arc::clone(&log);
///     async move {
///         log.lock().unwrap().push((entry.id, entry.version, entry.after));
///         Ok::<_, std::convert::Infallible>(())
///     }
/// });
/// assert_eq!(processor.lag().await?, 2);
/// assert!(matches!(processor.step().await?, Stepped::Processed { .. }));
/// assert_eq!(*seen.lock().unwrap(), [("page-1".into(), 1, Hits::Counted(1)), ("page-1".into(), 2, Hits::Counted(2))]);
/// assert_eq!(processor.lag().await?, 0);
/// assert!(matches!(processor.step().await?, Stepped::Idle));
/// # Ok(()) }
/// ```
pub struct Processor<M: AsyncMachine, St, H> {
    name: String,
    runner: Runner<M, St>,
    handler: H,
    batch: u32,
    lease: Duration,
    retry: Retry,
    owner: String,
    every: Duration,
}

/// What one or more steps did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Changes read from the feed, of every machine (those of other
    /// machines are passed over).
    pub read: u64,
    /// Entries the handler accepted.
    pub delivered: u64,
    /// Entries parked as dead letters: the handler kept failing, or the
    /// entry could not be decoded.
    pub parked: u64,
}

impl Progress {
    fn add(&mut self, other: Self) {
        self.read += other.read;
        self.delivered += other.delivered;
        self.parked += other.parked;
    }
}

/// What one [`Processor::step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stepped {
    /// A batch was read and handled, and the checkpoint saved after it.
    Processed {
        /// What the batch held.
        progress: Progress,
        /// The checkpoint saved: the last change handled or passed over.
        cursor: Cursor,
        /// Whether more changes may be waiting (the batch was full).
        more: bool,
    },
    /// Nothing after the checkpoint (the lease is held, renewed when it
    /// needed to be).
    Idle,
    /// Another instance holds a live lease: nothing was read.
    Standby {
        /// The instance holding it.
        owner: String,
        /// Until when, in milliseconds since the Unix epoch.
        lease_until: u64,
    },
    /// Another instance took the lease over during the step (this one's
    /// lease had run out): delivery stopped, and the checkpoint was not
    /// saved, so the new holder delivers again what this step delivered.
    LostLease {
        /// What was delivered before the loss.
        progress: Progress,
    },
}

/// What [`Processor::redrive`] did with a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Redriven {
    /// The handler accepted the entry; the dead letter is gone.
    Delivered,
    /// The handler failed again on every try; the dead letter stays, with
    /// this error and its attempts counted.
    Failed {
        /// The last error.
        error: String,
        /// The dead letter's attempts, this re-drive's included.
        attempts: u32,
    },
    /// No dead letter of this processor at that cursor.
    NotParked,
    /// The entry is no longer in the feed (retention dropped it): the dead
    /// letter stays, for a person to resolve and [`unpark`](Checkpoints::unpark).
    Gone,
}

/// Why an entry could not be delivered: the last error and the tries.
struct Undelivered {
    error: String,
    attempts: u32,
}

impl<M, St, H> Processor<M, St, H>
where
    M: AsyncMachine + 'static,
    M::State: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    St: Checkpoints,
    H: Handler<M>,
{
    /// Processor `name` (its checkpoint's key in the store) of `runner`'s
    /// machine, delivering to `handler`: batches of 100 changes, a lease of
    /// 30 s, handler retries as
    /// `Retry::exponential(10 ms).max_delay(5 s).jitter(Jitter::Full).max_attempts(5)`,
    /// a unique owner id per instance, and a poll every second when idle.
    #[must_use]
    pub fn new(name: impl Into<String>, runner: Runner<M, St>, handler: H) -> Self {
        Self {
            name: name.into(),
            runner,
            handler,
            batch: 100,
            lease: Duration::from_secs(30),
            retry: Retry::exponential(Duration::from_millis(10))
                .max_delay(Duration::from_secs(5))
                .jitter(Jitter::Full)
                .max_attempts(5),
            owner: unique_owner(),
            every: Duration::from_secs(1),
        }
    }

    /// Reads the feed `changes` at a time (at least 1); the checkpoint is
    /// saved after each batch.
    #[must_use]
    pub fn batch(mut self, changes: u32) -> Self {
        self.batch = changes.max(1);
        self
    }

    /// How long a lease stands after it is taken or renewed (30 s by
    /// default). The holder renews it once half of it has passed, between
    /// entries; make it longer than the handler takes on one entry, with
    /// its retries, or another instance takes over meanwhile.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How a failing handler is retried: `retry`'s
    /// [`max_attempts`](Retry::max_attempts) tries in all, waiting its
    /// backoff between them; then the entry is parked.
    #[must_use]
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Names this instance in the lease (a unique id by default: process
    /// id, start time and a counter). Two instances with one owner name
    /// share the lease, so give each its own.
    #[must_use]
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// How long [`run`](Processor::run) waits before the next step when
    /// there was nothing to read or another instance holds the lease (1 s
    /// by default).
    #[must_use]
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval;
        self
    }

    /// The processor's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This instance's owner id.
    #[must_use]
    pub fn owner_id(&self) -> &str {
        &self.owner
    }

    /// One step: take or renew the lease, read one batch after the
    /// checkpoint, deliver each entry of the machine (retrying, then
    /// parking), and save the checkpoint. Fails only when the store does;
    /// the checkpoint then stays where it was, and the next step delivers
    /// that batch again.
    pub async fn step(&self) -> Result<Stepped, Error<M::Error>> {
        self.step_until(&mut pin!(std::future::pending::<()>())).await
    }

    /// Steps until `shutdown` completes, then returns the totals: a full
    /// batch is followed by the next at once, otherwise it waits
    /// [`every`](Processor::every). Shutdown is graceful: the step in
    /// progress stops after the entry it is handling and saves the
    /// checkpoint, and the lease is given up, so another instance takes
    /// over without waiting for it to expire. A step the store failed is
    /// tried again after the interval.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Progress {
        let shutdown = pin!(shutdown);
        let mut shutdown = pin!(crate::process::Fused::new(shutdown));
        let mut total = Progress::default();
        loop {
            let more = match self.step_until(&mut shutdown).await {
                Ok(Stepped::Processed { progress, more, .. }) => {
                    total.add(progress);
                    more
                }
                Ok(Stepped::LostLease { progress }) => {
                    total.add(progress);
                    false
                }
                Ok(_) | Err(_) => false,
            };
            if stopping(&mut shutdown) {
                break;
            }
            if more {
                continue;
            }
            if super::idle(self.every, &mut shutdown).await {
                break;
            }
        }
        self.release().await;
        total
    }

    /// How many changes of the feed (of every machine) are after the
    /// stored checkpoint: how far this processor is behind the head.
    pub async fn lag(&self) -> Result<u64, Error<M::Error>> {
        let cursor = self.checkpoint().await?.map_or(Cursor::START, |checkpoint| checkpoint.cursor);
        let lag = self.runner.store().behind(cursor).await?;
        crate::observe::processor_lag(&self.name, lag);
        Ok(lag)
    }

    /// The stored checkpoint and lease of this processor's name.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, Error<M::Error>> {
        Ok(self.runner.store().checkpoint(&self.name).await?)
    }

    /// Up to `limit` of this processor's dead letters after `after` (from
    /// the first when `None`), in feed order.
    pub async fn dead_letters(&self, after: Option<Cursor>, limit: u32) -> Result<Vec<DeadLetter>, Error<M::Error>> {
        Ok(self.runner.store().dead_letters(&self.name, after, limit).await?)
    }

    /// Runs the handler again on the dead letter at `cursor`, read afresh
    /// from the feed, with the same retries as delivery; on success the
    /// dead letter is removed. Needs no lease: the entry is behind the
    /// checkpoint, so no other instance delivers it.
    pub async fn redrive(&self, cursor: Cursor) -> Result<Redriven, Error<M::Error>> {
        let store = self.runner.store();
        let before = just_before(cursor);
        let parked = store.dead_letters(&self.name, Some(before), 1).await?;
        let Some(letter) = parked.into_iter().next().filter(|letter| letter.cursor == cursor) else {
            return Ok(Redriven::NotParked);
        };
        let change = match store.changes(before, 1).await {
            Ok(page) => page.into_iter().next().filter(|change| change.cursor == cursor),
            Err(StoreError::FeedCompacted { .. }) => None,
            Err(error) => return Err(error.into()),
        };
        let Some(change) = change else { return Ok(Redriven::Gone) };
        match self.deliver(change).await {
            Ok(()) => {
                store.unpark(&self.name, cursor).await?;
                Ok(Redriven::Delivered)
            }
            Err(failed) => {
                let attempts = letter.attempts.saturating_add(failed.attempts);
                let error = failed.error;
                let again = DeadLetter { error: error.clone(), attempts, parked_at: self.runner.now(), ..letter };
                store.park(&again).await?;
                Ok(Redriven::Failed { error, attempts })
            }
        }
    }

    async fn step_until<S: Future<Output = ()>>(&self, shutdown: &mut Pin<&mut S>) -> Result<Stepped, Error<M::Error>> {
        let store = self.runner.store();
        let now = self.runner.now();
        let mut held = match store.checkpoint(&self.name).await? {
            Some(stored) if stored.owner != self.owner && stored.lease_until > now => {
                return Ok(Stepped::Standby { owner: stored.owner, lease_until: stored.lease_until });
            }
            Some(stored) => stored,
            None => Checkpoint { cursor: Cursor::START, owner: self.owner.clone(), lease_until: 0, version: 0 },
        };
        let from = held.cursor;
        let taking = held.owner != self.owner || held.version == 0;
        if (taking || self.renewal_due(&held, now)) && !self.save(&mut held, from, now).await? {
            // Another instance took it between the read and the save.
            let holder = store.checkpoint(&self.name).await?;
            let (owner, lease_until) = holder.map_or((String::new(), 0), |holder| (holder.owner, holder.lease_until));
            return Ok(Stepped::Standby { owner, lease_until });
        }
        if taking {
            crate::observe::processor_lease(&self.name, &self.owner, "taken");
        }
        let changes = store.changes(held.cursor, self.batch).await?;
        if changes.is_empty() {
            return Ok(Stepped::Idle);
        }
        let mut more = changes.len() >= self.batch as usize;
        let mut progress = Progress::default();
        let mut cursor = held.cursor;
        for change in changes {
            if stopping(shutdown) {
                more = false;
                break;
            }
            let at = change.cursor;
            if *change.machine == *M::NAME {
                let (id, version) = (change.id.to_string(), change.version);
                match self.deliver(change).await {
                    Ok(()) => progress.delivered += 1,
                    Err(failed) => {
                        let letter = DeadLetter {
                            processor: self.name.clone(),
                            cursor: at,
                            machine: M::NAME.to_owned(),
                            id,
                            version,
                            error: failed.error,
                            attempts: failed.attempts,
                            parked_at: self.runner.now(),
                        };
                        store.park(&letter).await?;
                        progress.parked += 1;
                    }
                }
            }
            progress.read += 1;
            cursor = at;
            let now = self.runner.now();
            if self.renewal_due(&held, now) && !self.save(&mut held, cursor, now).await? {
                return Ok(self.lost(progress));
            }
        }
        if cursor != held.cursor && !self.save(&mut held, cursor, self.runner.now()).await? {
            return Ok(self.lost(progress));
        }
        crate::observe::processed(&self.name, progress.delivered, progress.parked);
        Ok(Stepped::Processed { progress, cursor, more })
    }

    /// Another instance took the lease while this one delivered `progress`.
    fn lost(&self, progress: Progress) -> Stepped {
        crate::observe::processed(&self.name, progress.delivered, progress.parked);
        crate::observe::processor_lease(&self.name, &self.owner, "lost");
        Stepped::LostLease { progress }
    }

    /// Decodes `change` and runs the handler on it with retries; an entry
    /// that does not decode fails at once, with no try.
    async fn deliver(&self, change: Change) -> Result<(), Undelivered> {
        let (cursor, id) = (change.cursor, change.id.to_string());
        let entry = match codec::decode_change::<M>(&id, change) {
            Ok(entry) => Entry::new(cursor, id, entry),
            Err(unreadable) => return Err(Undelivered { error: unreadable.to_string(), attempts: 0 }),
        };
        let mut attempts = 0;
        let mut wait = Duration::ZERO;
        loop {
            attempts += 1;
            let error = match crate::panic::catch(self.handler.handle(&entry)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) => error.to_string(),
                Err(panic) => format!("the handler panicked: {panic}"),
            };
            if attempts >= self.retry.attempts() {
                return Err(Undelivered { error, attempts });
            }
            wait = self.retry.delay(attempts, 1, wait);
            self.runner.waits().sleep(wait).await;
        }
    }

    /// Whether the lease `held` (this instance's) is past half its term.
    fn renewal_due(&self, held: &Checkpoint, now: u64) -> bool {
        held.lease_until.saturating_sub(now) < millis(self.lease) / 2
    }

    /// Saves `cursor` with a lease from `now`, if `held` is still the
    /// stored checkpoint; on success `held` is the saved one.
    async fn save(&self, held: &mut Checkpoint, cursor: Cursor, now: u64) -> Result<bool, StoreError> {
        self.save_until(held, cursor, now.saturating_add(millis(self.lease))).await
    }

    /// [`save`](Self::save) with the lease ending at `lease_until`.
    async fn save_until(&self, held: &mut Checkpoint, cursor: Cursor, lease_until: u64) -> Result<bool, StoreError> {
        let saved =
            self.runner.store().save_checkpoint(&self.name, held.version, cursor, &self.owner, lease_until).await?;
        if saved {
            *held =
                Checkpoint { cursor, owner: self.owner.clone(), lease_until, version: held.version.saturating_add(1) };
        }
        Ok(saved)
    }

    /// Gives up this instance's lease (best effort): saved as expiring now.
    async fn release(&self) {
        let Ok(Some(mut held)) = self.runner.store().checkpoint(&self.name).await else { return };
        let now = self.runner.now();
        if held.owner == self.owner && held.lease_until > now {
            let cursor = held.cursor;
            let _ = self.save_until(&mut held, cursor, now).await;
        }
    }
}

/// The cursor right before `cursor` in feed order: reading after it
/// starts at `cursor`.
fn just_before(cursor: Cursor) -> Cursor {
    match cursor.seq.checked_sub(1) {
        Some(seq) => Cursor { tx: cursor.tx, seq },
        // Sequence numbers start at 1; the stores keep them below i64::MAX.
        None => Cursor { tx: cursor.tx.saturating_sub(1), seq: i64::MAX.unsigned_abs() },
    }
}

/// A lease owner id unique to this instance: process, start time, counter.
fn unique_owner() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let next = NEXT.fetch_add(1, Ordering::Relaxed);
    let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    format!("{}-{started:x}-{next}", std::process::id())
}

impl<M: AsyncMachine, St, H> std::fmt::Debug for Processor<M, St, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("name", &self.name)
            .field("machine", &M::NAME)
            .field("owner", &self.owner)
            .field("batch", &self.batch)
            .field("lease", &self.lease)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}
