//! Catching a panic in user code (a transition, a decision) as a value, so
//! a shared worker that runs many callers' commands survives one bad command
//! and the caller learns what happened instead of hanging.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::task::Poll;

/// Polls `future` to completion, turning a panic during any poll into
/// `Err(message)`.
///
/// Unwind safety is asserted: the future is dropped right after it panicked,
/// and what it borrowed (deps, the state it was given) is only read by the
/// transition. This is what tokio does for a task.
pub(crate) async fn catch<F: Future>(future: F) -> Result<F::Output, String> {
    let mut future = pin!(future);
    std::future::poll_fn(move |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
        Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(payload) => Poll::Ready(Err(message(&*payload))),
    })
    .await
}

/// [`catch`] for a plain function call.
pub(crate) fn catch_sync<T>(run: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(run)).map_err(|payload| message(&*payload))
}

/// The panic's message, when it was a string (as `panic!` makes it).
fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_while_polling_is_a_value() {
        let caught = catch(async {
            tokio::task::yield_now().await;
            panic!("boom at {}", 7);
        })
        .await;
        assert_eq!(caught, Err::<(), _>("boom at 7".to_owned()));
        assert_eq!(catch(async { 5 }).await, Ok(5));
    }
}
