//! A failed command kept as a state, so it can be inspected and replayed.

use serde::{Deserialize, Serialize};

/// What a `#[state(failure)]` variant holds: the command that failed, the
/// state it failed in, and why.
///
/// Recorded by a runner built with
/// [`record_failures`](crate::Runner::record_failures) for the errors its
/// machine classifies as failures ([`RecordFailures`](crate::RecordFailures));
/// [`recover`](crate::Runner::recover) replays `command` on `previous`.
/// `E` is what is kept of the error: by default its text, or a type of
/// yours (`Failure<OrderCommand, Order, PaymentFault>`) that a program can
/// branch on. `Clone`, `Debug`, `PartialEq`, `Serialize` and `Deserialize`
/// hold whenever they hold for `C`, `S` and `E`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure<C, S, E = String> {
    /// The command whose transition failed.
    pub command: C,
    /// The state the command ran in (never itself the failure the
    /// command produced; after a failed recovery it is still the original).
    pub previous: Box<S>,
    /// The recorded error, as the machine's
    /// [`RecordFailures::failure`](crate::RecordFailures::failure) kept it.
    pub error: E,
    /// How many times this command has failed on `previous`: 1 when first
    /// recorded, one more for each failed recovery.
    pub attempts: u32,
    /// When the (latest) failure happened, in milliseconds since the Unix epoch.
    pub failed_at: u64,
}
