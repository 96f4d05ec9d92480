//! Testing machines: given/when/then cases for the pure transition with
//! mocked dependencies, the Mermaid diagrams the cases draw, coverage of the
//! declared table, seeded exploration, and a store that injects faults.
//!
//! Enabled by the `testing` feature, usually from `[dev-dependencies]`, so
//! none of it (panicking assertions, file writes) reaches a production build:
//!
//! ```toml
//! [dev-dependencies]
//! machine-core = { version = "0.1", features = ["testing"] }
//! ```
//!
//! - [`Suite`] runs [`Case`]s: `given` a state, `when` a command, `then` the
//!   expected state or an error; steps chain, cases fork, hooks see the deps.
//!   Every step is recorded as a [`Transition`] between kinds.
//! - [`Suite::assert_diagram`] draws the recorded transitions as a Mermaid
//!   `stateDiagram-v2` ([`Diagram`]) and compares it with a committed file,
//!   writing it when missing or when `UPDATE_DIAGRAMS=1`.
//! - [`declared_diagram`] draws the declared table; [`Suite::coverage`] and
//!   [`Suite::assert_covered`] compare it with what the cases exercised.
//! - [`Suite::explore`] runs the commands the cases used against the states
//!   they reached; [`Suite::report`] summarises all of it.
//! - [`FaultyStore`] wraps a store and injects conflicts and transient errors
//!   on a [`Schedule`], so retries are tested without timing luck.
//!
//! `docs/testing.md` walks through the workflow.

mod block;
mod case;
mod coverage;
mod diagram;
mod diff;
mod explore;
mod faults;
mod golden;
mod record;
mod report;
mod suite;

pub use case::Case;
pub use coverage::{Coverage, declared_transitions};
pub use diagram::{Diagram, declared_diagram};
pub use explore::{Exploration, Explore, Finding};
pub use faults::{Fault, FaultyStore, InjectedFault, Injection, Op, Schedule};
pub use golden::{FileError, FileStatus, UPDATE_ENV};
pub use record::{CommandKind, ErrorKind, StateKind, Transition, TransitionOf};
pub use report::Report;
pub use suite::{Step, Suite};
