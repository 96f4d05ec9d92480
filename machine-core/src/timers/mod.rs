//! Timeouts as states: a state says when it is due, a declared command fires
//! then, and a sweeper sends it through the one pipeline.
//!
//! A state variant marks the field that holds its deadline with
//! `#[state(due)]`, and the command that fires from that state is marked
//! `#[command(timer)]`. The runner stores the deadline with every write, in
//! the same commit, indexed by every store, and clears it when the record
//! leaves the state.
//!
//! The derives check at compile time that the two agree (every due state
//! has one timer command, every timer runs only from due states); [`check`]
//! is the same check at run time, as a value. The guide's "Timers" section
//! shows a machine with one.

mod check;
mod deadline;
mod sweeper;

pub use check::{Misdeclared, Mismatch, check};
pub use deadline::{Deadline, Due};
pub use sweeper::{Sweeper, Swept};

#[doc(hidden)]
pub use check::derive as __derive;
