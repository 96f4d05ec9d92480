//! The queue's worker loop: take the next command that is due, try it through
//! the runner without holding the lock, and file the result (done, again
//! later, or dead letter). Sleeps until the next command is due or until
//! something changes.

use super::{DeadLetter, Job, Shared, classify};
use crate::machine::Machine;
use crate::store::Store;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// What a worker does next.
enum Next<C> {
    Try(Job<C>),
    /// Nothing is due; the earliest waiting command is due at this time.
    WaitUntil(Duration),
    /// Nothing is queued.
    WaitForWork,
    Exit,
}

pub(super) async fn work<M, St>(shared: Arc<Shared<M, St>>)
where
    M: Machine + 'static,
    M::State: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    St: Store,
{
    loop {
        // Registered before the state is read, so a change made after the
        // read still wakes this worker.
        let mut woken = pin!(shared.wake.notified());
        woken.as_mut().enable();
        match next(&shared) {
            Next::Try(job) => attempt(&shared, job).await,
            Next::WaitUntil(due) => {
                let wait = due.saturating_sub(shared.clock.now());
                either(woken, shared.clock.sleep(wait)).await;
            }
            Next::WaitForWork => woken.await,
            Next::Exit => return,
        }
    }
}

fn next<M: Machine, St>(shared: &Shared<M, St>) -> Next<M::Command> {
    let now = shared.clock.now();
    let mut state = shared.lock();
    if state.stopped || (state.closed && state.is_idle()) {
        return Next::Exit;
    }
    if let Some(at) = state.waiting.iter().position(|job| job.ready_at <= now)
        && let Some(job) = state.waiting.remove(at)
    {
        state.running += 1;
        return Next::Try(job);
    }
    match state.waiting.iter().map(|job| job.ready_at).min() {
        Some(due) => Next::WaitUntil(due),
        None => Next::WaitForWork,
    }
}

/// Holds the job while it is tried; if the try never returns (a panic in the
/// transition, or the queue dropped mid-try) the job is filed as a dead letter
/// rather than lost.
struct InFlight<'s, M: Machine, St> {
    shared: &'s Shared<M, St>,
    job: Option<Job<M::Command>>,
}

impl<M: Machine, St> Drop for InFlight<'_, M, St> {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            let mut state = self.shared.lock();
            state.running = state.running.saturating_sub(1);
            state.dead.push(DeadLetter {
                id: job.id,
                command: job.command,
                tries: job.tries.saturating_add(1),
                error: "the try did not finish (a panic in the transition, or the queue was dropped)".to_owned(),
                retryable: true,
            });
            drop(state);
            self.shared.wake.notify_waiters();
        }
    }
}

async fn attempt<M, St>(shared: &Shared<M, St>, job: Job<M::Command>)
where
    M: Machine + 'static,
    M::State: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    St: Store,
{
    let mut flight = InFlight { shared, job: Some(job) };
    let result = match &flight.job {
        Some(job) => shared.runner.handle(&job.id, &job.command).await,
        None => return,
    };
    let Some(mut job) = flight.job.take() else { return };
    job.tries = job.tries.saturating_add(1);
    let now = shared.clock.now();
    let mut state = shared.lock();
    state.running = state.running.saturating_sub(1);
    match result {
        Ok(_) => state.completed += 1,
        Err(error) => {
            let (retryable, at_least) = classify(&error);
            if retryable && job.tries < shared.max_tries {
                let wait = shared.backoff.delay(job.tries, 1, job.last_wait).max(at_least);
                job.ready_at = now.saturating_add(wait);
                job.last_wait = wait;
                job.last_error = Some(error.to_string());
                state.waiting.push_back(job);
            } else {
                let dead = DeadLetter {
                    id: job.id,
                    command: job.command,
                    tries: job.tries,
                    error: error.to_string(),
                    retryable,
                };
                state.dead.push(dead);
            }
        }
    }
    drop(state);
    shared.wake.notify_waiters();
}

/// Waits for whichever of two futures completes first.
pub(super) async fn either(a: impl Future<Output = ()>, b: impl Future<Output = ()>) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    poll_fn(|cx| {
        if a.as_mut().poll(cx).is_ready() || b.as_mut().poll(cx).is_ready() { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
}
