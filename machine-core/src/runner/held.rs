//! A command planned and committed under the lock of the in-process store's
//! record, when its transition never waits: one lookup instead of two, no
//! lists, and no race with another writer of this process. It is the first
//! attempt of a group of one; whatever it cannot take (a stored JSON state,
//! an idempotency key, a transition that did wait) is left to the pipeline's
//! loop, and the rules it shares with that loop (what a command may write,
//! how errors map) are the group's own.

use super::group::{Group, Intent, Saved};
use super::session::into_put;
use crate::error::Error;
use crate::machine::AsyncMachine;
use crate::observe;
use crate::store::memory::Slot;
use crate::{Kind, State};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// How a held attempt ended.
pub(crate) enum Planned<T, E> {
    /// Its write (if any) is committed: what the caller gets back.
    Committed(T),
    /// Planning or the write failed: the call ends with this error.
    Failed(Error<E>),
    /// Not for a held record (see the module's doc), or the transition did
    /// not finish at once: the attempt is made again the usual way.
    Later,
}

impl<M> Group<'_, M>
where
    M: AsyncMachine,
    M::State: Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + 'static,
{
    /// Plans the group's one intent on the record `slot` holds and writes
    /// what it planned there, all while the record is locked. The
    /// transition is polled once with a waker that does nothing: a
    /// synchronous machine's is ready then.
    pub(crate) fn held(&self, slot: Slot<'_>) -> Planned<Saved<M>, M::Error> {
        let [intent] = self.intents else { return Planned::Later };
        if intent.key().is_some() || matches!(intent, Intent::Rewrite) {
            return Planned::Later;
        }
        let version = slot.version();
        let (write, saved, from) = {
            let initial;
            let base = if version == 0 {
                initial = M::State::initial();
                &initial
            } else {
                match slot.typed::<M::State>(M::SCHEMA) {
                    Some(state) => state,
                    None => return Planned::Later,
                }
            };
            let from = base.kind().as_str();
            // Without a key, the request's rule on whether the record
            // exists is all there is to admit.
            if let Intent::Apply(_, request) = intent
                && let Err(error) = self.exists_as(*request, version)
            {
                return failed(from, error);
            }
            let mut writing = pin!(self.write(intent, base, version, true));
            let Poll::Ready(written) = writing.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
                return Planned::Later;
            };
            match written {
                Ok((write, saved)) => (write, saved, from),
                Err(error) => return failed(from, error),
            }
        };
        observe::planned(from, Some(saved.state.kind().as_str()));
        match slot.put(into_put(write)) {
            Ok(()) => Planned::Committed(saved),
            Err(error) => Planned::Failed(Error::Store(error)),
        }
    }
}

/// A held attempt that planned no write: recorded as a plan that ended
/// where it began, as the loop records it.
fn failed<T, E>(from: &'static str, error: Error<E>) -> Planned<T, E> {
    observe::planned(from, None);
    Planned::Failed(error)
}
