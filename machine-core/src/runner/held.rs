//! An attempt planned and committed under the lock of the in-process
//! store's record, for a step that never waits: one lookup instead of two,
//! and no race with another writer of this process. The loop's other rules
//! (what a plan may write, how errors map) are the same as on every store.

use super::pipeline::{Loads, Plan, Step};
use super::session::put;
use crate::error::Error;
use crate::store::memory::Slot;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// How a held attempt ended.
pub(crate) enum Planned<T, E> {
    /// Its write (if any) is committed: what the step hands back.
    Committed(T),
    /// Planning or the write failed: the call ends with this error.
    Failed(Error<E>),
    /// Planning did not finish at once (or planned what a held record cannot
    /// take in one write): the attempt is made again the usual way.
    Later,
}

/// Plans `step`'s attempt `attempt` on the held record and writes what it planned
/// to `slot`, all while the record is locked. The plan is polled once with
/// a waker that does nothing: a step whose [`Step::at_once`] holds is ready
/// then.
pub(crate) fn plan<P: Step>(step: &mut P, attempt: u32, slot: Slot<'_>) -> Planned<P::Value, P::Error> {
    let mut planning = pin!(step.plan(Loads::one(slot.loaded()), Vec::new(), attempt, true));
    let Poll::Ready(planned) = planning.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
        return Planned::Later;
    };
    let mut plan: Plan<'_, P::Value> = match planned {
        Ok(plan) => plan,
        Err(error) => return Planned::Failed(error),
    };
    if plan.remove.is_some() || !plan.keys.is_empty() {
        return Planned::Later;
    }
    match plan.writes.as_mut_slice() {
        [] => Planned::Committed(plan.value),
        [write] => match slot.put(put(write)) {
            Ok(()) => Planned::Committed(plan.value),
            Err(error) => Planned::Failed(Error::Store(error)),
        },
        // Several versions of the record (a coalesced group): committed
        // together outside the lock, checked as every commit is.
        _ => Planned::Later,
    }
}
