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

/// Polls `future` on this thread until it is ready, parking between polls.
///
/// Mocked deps answer at once; a dependency that needs a runtime's timers or
/// I/O needs a real runtime, which a unit test of a pure transition should
/// not.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
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
