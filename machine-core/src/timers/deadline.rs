//! The point in time a state is due at, on the runner's clock.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When a state is due, in milliseconds since the Unix epoch: the unit of
/// the runner's [`clock`](crate::Runner::clock), so a test's manual clock
/// and the stored deadlines agree. Stored as a plain number in JSON.
///
/// ```
/// use machine_core::timers::Deadline;
/// use std::time::Duration;
///
/// let now = 1_700_000_000_000;
/// let due = Deadline::after(now, Duration::from_secs(15 * 60));
/// assert_eq!(due.as_millis(), now + 900_000);
/// assert!(due.is_due(now + 900_000) && !due.is_due(now));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Deadline(u64);

impl Deadline {
    /// The deadline `millis` milliseconds after the Unix epoch.
    #[must_use]
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// `wait` after `now` (milliseconds since the Unix epoch, what the
    /// runner's clock returns); saturates instead of overflowing.
    #[must_use]
    pub fn after(now: u64, wait: Duration) -> Self {
        Self(now.saturating_add(crate::runner::millis(wait)))
    }

    /// The deadline at `time`, to the millisecond (a time before the epoch
    /// is the epoch).
    #[must_use]
    pub fn at(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whether a clock reading `now` has reached this deadline.
    #[must_use]
    pub const fn is_due(self, now: u64) -> bool {
        self.0 <= now
    }
}

impl From<SystemTime> for Deadline {
    fn from(time: SystemTime) -> Self {
        Self::at(time)
    }
}

/// What a `#[state(due)]` field may hold: a [`Deadline`], or an
/// `Option<Deadline>` for a state that is due only sometimes.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot hold a `#[state(due)]` deadline",
    label = "not a `Deadline`",
    note = "a `#[state(due)]` field holds a `machine_core::timers::Deadline`, or an \
            `Option<Deadline>` for a state that is due only sometimes"
)]
pub trait Due {
    /// The deadline this field holds, if any.
    fn deadline(&self) -> Option<Deadline>;
}

impl Due for Deadline {
    fn deadline(&self) -> Option<Deadline> {
        Some(*self)
    }
}

impl Due for Option<Deadline> {
    fn deadline(&self) -> Option<Deadline> {
        *self
    }
}

impl<T: Due + ?Sized> Due for &T {
    fn deadline(&self) -> Option<Deadline> {
        (**self).deadline()
    }
}
