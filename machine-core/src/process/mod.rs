//! Machines that keep moving after a request ends. Processors: named consumers of a store's change feed that react to
//! committed changes (send the email, call the payment service, update a
//! projection) and resume where they left off.
//!
//! A [`Processor`] reads the feed after its checkpoint, hands each change
//! of its machine to a [`Handler`] as a typed [`Entry`] (the command, the
//! state before and after, decoded through the runner so schema migrations
//! apply), and saves the checkpoint in the same store
//! ([`store::Checkpoints`](crate::store::Checkpoints)). What it guarantees:
//!
//! - **At least once.** The checkpoint moves only after the entries before
//!   it were handled (or parked), so a crash replays at most the batch in
//!   flight, and never skips one. Make handlers idempotent (an idempotency
//!   key per entry, [`Entry::key`], does it for commands).
//! - **One active instance per name**, across processes: a lease stored
//!   with the checkpoint, taken and renewed by compare-and-set, expiring
//!   after [`lease`](Processor::lease) so another instance takes over when
//!   the holder dies. An instance whose lease was taken over stops
//!   delivering ([`Stepped::LostLease`]).
//! - **Errors back off, then park.** A handler error is retried with the
//!   processor's [`retry`](Processor::retry) backoff; an entry that still
//!   fails (or cannot be decoded) is parked as a
//!   [`DeadLetter`](crate::store::DeadLetter) and the processor moves on.
//!   [`Processor::redrive`] runs the handler on it again.
//! - **Lag is readable**: [`Processor::lag`] counts the changes behind the
//!   head of the feed.

//!
//! [`Recovery`] re-drives recorded failures in the background with backoff.

mod entry;
mod outbox;
mod processor;
mod recovery;

pub use entry::{Entry, Handler};
pub use outbox::{Outbox, OutboxError};
pub use processor::{Processor, Progress, Redriven, Stepped};
pub use recovery::{Recovered, Recovery};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Waits `interval`, or less if `shutdown` completes first: `true` when it
/// did. What every background loop (sweepers, processors, recovery) does
/// between rounds.
pub(crate) async fn idle<S: Future<Output = ()>>(interval: Duration, shutdown: &mut Pin<&mut S>) -> bool {
    let mut sleep = std::pin::pin!(tokio::time::sleep(interval));
    std::future::poll_fn(|cx| {
        if shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        sleep.as_mut().poll(cx).map(|()| false)
    })
    .await
}

/// Whether `shutdown` has completed, without waiting for it: checked
/// between records, so a loop stops between commits, never inside one.
pub(crate) fn stopping<S: Future<Output = ()>>(shutdown: &mut Pin<&mut S>) -> bool {
    shutdown.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_ready()
}

/// A shutdown future that stays complete once it has completed. The loops
/// ask [`stopping`] between records and then [`idle`] again, so a shutdown
/// seen inside a step or a sweep is polled once more; an `async` block or
/// `std::future::ready` panics if polled after completing, so the loops
/// poll it through this.
pub(crate) struct Fused<'a, S>(Option<Pin<&'a mut S>>);

impl<'a, S: Future<Output = ()>> Fused<'a, S> {
    pub(crate) fn new(shutdown: Pin<&'a mut S>) -> Self {
        Self(Some(shutdown))
    }
}

impl<S: Future<Output = ()>> Future for Fused<'_, S> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(shutdown) = self.0.as_mut() else { return Poll::Ready(()) };
        if shutdown.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.0 = None;
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Fused, idle, stopping};
    use std::pin::pin;
    use std::time::Duration;

    #[tokio::test]
    async fn a_completed_shutdown_is_never_polled_again() {
        let shutdown = pin!(async {});
        let mut shutdown = pin!(Fused::new(shutdown));
        assert!(stopping(&mut shutdown));
        assert!(stopping(&mut shutdown), "still complete, the async block not resumed");
        assert!(idle(Duration::from_mins(1), &mut shutdown).await);
    }
}
