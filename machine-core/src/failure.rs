//! A failed command kept as a state, so it can be inspected and replayed.

use serde::{Deserialize, Serialize};

/// What a `#[state(failure)]` variant holds: the command that failed, the
/// state it failed in, and why.
///
/// Recorded by a runner built with
/// [`record_failures`](crate::Runner::record_failures);
/// [`recover`](crate::Runner::recover) replays `command` on `previous`.
/// `Clone`, `Debug`, `PartialEq`, `Serialize` and `Deserialize` hold whenever
/// they hold for `C` and `S`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure<C, S> {
    /// The command whose transition failed.
    pub command: C,
    /// The state the command ran in (never itself the failure the
    /// command produced; after a failed recovery it is still the original).
    pub previous: Box<S>,
    /// The transition error's `Display` text.
    pub error: String,
    /// How many times this command has failed on `previous`: 1 when first
    /// recorded, one more for each failed recovery.
    pub attempts: u32,
    /// When the (latest) failure happened, in milliseconds since the Unix epoch.
    pub failed_at: u64,
}
