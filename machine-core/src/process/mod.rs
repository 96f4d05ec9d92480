//! Machines that keep moving after a request ends: work started from
//! committed states, and recorded failures re-driven in the background.

mod recovery;

pub use recovery::{Recovered, Recovery};

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
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
