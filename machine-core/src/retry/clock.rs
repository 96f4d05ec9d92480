//! Time as a value the retry machinery is given, not one it reads: the runner's
//! waits, deadlines, circuit cool-downs and budget refills all go through a
//! [`Clock`], so tests swap in a [`ManualClock`] and never sleep for real.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A future returned by [`Clock::sleep`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A monotonic clock that can also wait.
///
/// [`TokioClock`] is the production clock; [`ManualClock`] is the test clock.
pub trait Clock: Send + Sync + Debug {
    /// Time since this clock's origin; never goes backwards.
    fn now(&self) -> Duration;

    /// A future that completes once `duration` has passed on this clock.
    /// Dropping it cancels the wait: nothing keeps running in the background.
    fn sleep(&self, duration: Duration) -> Sleep;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }
    fn sleep(&self, duration: Duration) -> Sleep {
        (**self).sleep(duration)
    }
}

/// Tokio's clock: [`tokio::time::Instant`] and [`tokio::time::sleep`], so a
/// test that pauses tokio's time controls it too.
///
/// Tokio's timer has millisecond granularity: waits are computed to the
/// nanosecond, but a sleep of 200 µs lasts about 1 ms.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose origin is now.
    #[must_use]
    pub fn new() -> Self {
        Self { origin: tokio::time::Instant::now() }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that only moves when told to: [`advance`](ManualClock::advance), or
/// a [`sleep`](Clock::sleep), which moves it by the slept duration at once and
/// records it. Clones share the same time.
///
/// ```
/// use machine_core::retry::{Clock, ManualClock};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_millis(5));
/// clock.sleep(Duration::from_millis(2)).await; // returns at once
/// assert_eq!(clock.now(), Duration::from_millis(7));
/// assert_eq!(clock.sleeps(), [Duration::from_millis(2)]);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug, Default)]
struct ManualInner {
    nanos: AtomicU64,
    sleeps: Mutex<Vec<Duration>>,
}

impl ManualClock {
    /// A clock at zero.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by` (saturating at about 584 years).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // `fetch_update` with a closure that always returns `Some` cannot fail.
        let _ = self.inner.nanos.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_add(by)));
    }

    /// Every duration slept on this clock (and its clones), in order.
    #[must_use]
    pub fn sleeps(&self) -> Vec<Duration> {
        self.inner.sleeps.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.inner.nanos.load(Ordering::SeqCst))
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        self.inner.sleeps.lock().unwrap_or_else(PoisonError::into_inner).push(duration);
        self.advance(duration);
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new();
        let twin = clock.clone();
        assert_eq!(clock.now(), Duration::ZERO);
        twin.advance(Duration::from_micros(3));
        twin.sleep(Duration::from_nanos(500)).await;
        assert_eq!(clock.now(), Duration::from_nanos(3_500));
        assert_eq!(clock.sleeps(), [Duration::from_nanos(500)]);
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), Duration::from_nanos(u64::MAX), "saturates instead of wrapping");
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_tokio_time() {
        let clock = TokioClock::new();
        clock.sleep(Duration::from_secs(3)).await;
        assert!(clock.now() >= Duration::from_secs(3));
    }
}
