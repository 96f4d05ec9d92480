//! Running an async transition to completion on the test's own thread, so
//! the given/when/then suite and exploration stay plain synchronous code for
//! sync and async machines alike.

use crate::error::Error;
use crate::machine::{AsyncMachine, checked};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

/// Wakes the blocked test thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    /// A current-thread runtime with timers, made the first time a suite on
    /// this thread runs an async transition outside any runtime.
    static RUNTIME: Option<tokio::runtime::Runtime> =
        tokio::runtime::Builder::new_current_thread().enable_time().build().ok();
}

/// Runs `future` to completion on this thread.
///
/// In a plain `#[test]` that is a small current-thread tokio runtime with
/// timers, so deps may sleep or yield as real async code does. Called from
/// inside a runtime (which cannot be blocked on), the future is polled here,
/// parking between polls: fine for mocks that answer at once.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    if tokio::runtime::Handle::try_current().is_ok() {
        return park_on(future);
    }
    RUNTIME.with(|runtime| match runtime {
        Some(runtime) => runtime.block_on(future),
        None => park_on(future),
    })
}

/// Polls `future` on this thread until it is ready, parking between polls.
fn park_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// The transition between the table checks, as the runner runs it; a panic
/// in the transition is raised again here, so the suite reports it with the
/// case and step it happened in.
pub(crate) fn transition<M: AsyncMachine>(
    deps: &M::Deps,
    command: &M::Command,
    state: &M::State,
) -> Result<M::State, Error<M::Error>> {
    match block_on(checked::<M>(deps, None, command, state)) {
        Err(Error::Panicked { message, .. }) => std::panic::resume_unwind(Box::new(message)),
        other => other,
    }
}
