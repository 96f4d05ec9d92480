//! Work after commit: call the outside world when a record has entered a
//! state, and send the answer back as a command, once per change.

use super::entry::{Entry, Handler};
use crate::error::Error;
use crate::machine::AsyncMachine;
use crate::runner::{KindOf, Request, Runner};
use crate::state::State;
use crate::store::{Origin, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::future::Future;

/// A [`Handler`] for the documented way to start async work: a
/// [`Processor`](super::Processor) reacting to a committed state.
///
/// For every entry whose record *entered* one of the [`on`](Outbox::on)
/// kinds (its kind before was another one, or it was just created), the
/// outbox runs `work` (call the payment service, send the email) and sends
/// the command `work` returns, if any, back to the same record, with the
/// entry's [`key`](Entry::key) as its idempotency key and
/// [`Request::update`]. Because the transition never performs the work and
/// the callback is keyed by the entry, a retried transition never calls the
/// service, and an entry delivered twice (after a crash) applies its
/// callback once: the second send replays the first outcome.
///
/// What `work` returning `Err` means: the call failed in a way worth
/// retrying (a timeout, a 503); the processor backs off and calls again,
/// then parks the entry as a dead letter. A failure the business should
/// see (a declined card) is an `Ok` with the command that records it.
///
/// The callback's own outcome: committed, or refused because the record
/// moved on meanwhile (a timer expired it, say), or its key replayed: all
/// are the end of this entry. Only a retryable error (conflicts the policy
/// gave up on, a store that is down) is returned, so the processor tries
/// the entry again, and the keyed callback still applies once.
///
/// The service sees a call at least once per entry: pass it
/// [`Entry::key`] as its own idempotency key where it takes one.
pub struct Outbox<M: AsyncMachine, St, F> {
    runner: Runner<M, St>,
    kinds: Vec<KindOf<M>>,
    work: F,
}

/// Why an [`Outbox`] entry is tried again.
#[derive(Debug)]
#[non_exhaustive]
pub enum OutboxError<E> {
    /// `work` failed.
    Work(E),
    /// The callback command could not be committed (retryable).
    Callback(String),
}

impl<E: fmt::Display> fmt::Display for OutboxError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Work(error) => write!(f, "work failed: {error}"),
            Self::Callback(error) => write!(f, "callback not committed: {error}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for OutboxError<E> {}

impl<M, St, F, Fut, E> Outbox<M, St, F>
where
    M: AsyncMachine,
    M::State: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    St: Store,
    F: Fn(Entry<M>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Option<M::Command>, E>> + Send,
    E: fmt::Display + Send,
{
    /// An outbox that runs `work` and sends its command through `runner`.
    /// It reacts to no kind until [`on`](Outbox::on) names one.
    pub fn new(runner: Runner<M, St>, work: F) -> Self {
        Self { runner, kinds: Vec::new(), work }
    }

    /// Also reacts to records entering state `kind`.
    #[must_use]
    pub fn on(mut self, kind: KindOf<M>) -> Self {
        self.kinds.push(kind);
        self
    }

    /// Whether `entry` is one this outbox reacts to: a command, timer or
    /// recovery that moved its record into one of the kinds.
    fn entered(&self, entry: &Entry<M>) -> bool {
        let kind = entry.after.kind();
        let moved = matches!(entry.origin, Origin::Command | Origin::Timer | Origin::Recovery);
        moved && self.kinds.contains(&kind) && entry.before.as_ref().is_none_or(|before| before.kind() != kind)
    }
}

impl<M, St, F, Fut, E> Handler<M> for Outbox<M, St, F>
where
    M: AsyncMachine,
    M::State: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    St: Store,
    F: Fn(Entry<M>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Option<M::Command>, E>> + Send,
    E: fmt::Display + Send,
{
    type Error = OutboxError<E>;

    async fn handle(&self, entry: &Entry<M>) -> Result<(), OutboxError<E>> {
        if !self.entered(entry) {
            return Ok(());
        }
        let Some(callback) = (self.work)(entry.clone()).await.map_err(OutboxError::Work)? else {
            return Ok(());
        };
        let key = entry.key();
        match self.runner.handle_with(&entry.id, &callback, Request::new().key(&key).update()).await {
            // Committed, or replayed for this entry's key (also when this
            // delivery's work answered differently: the first answer
            // stands), or refused by the record as it is now.
            Ok(_) | Err(Error::KeyReused { .. }) => Ok(()),
            Err(error) if error.is_retryable() => Err(OutboxError::Callback(error.to_string())),
            Err(_) => Ok(()),
        }
    }
}

impl<M: AsyncMachine, St, F> fmt::Debug for Outbox<M, St, F>
where
    KindOf<M>: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox").field("machine", &M::NAME).field("on", &self.kinds).finish_non_exhaustive()
    }
}
