//! Timeouts as states: a state says when it is due, a declared command fires
//! then, and a sweeper sends it through the one pipeline.
//!
//! A state variant marks the field that holds its deadline with
//! `#[state(due)]`, and the command that fires from that state is marked
//! `#[command(timer)]`. The runner stores the deadline with every write, in
//! the same commit, indexed by every store, and clears it when the record
//! leaves the state.

mod deadline;

pub use deadline::{Deadline, Due};
