//! Business state machines that live in a database.
//!
//! Declare states and commands as enums, write one pure transition function,
//! and let a [`Runner`] persist every change: it loads a record, runs the
//! transition, and saves the result only if no other writer got there first,
//! retrying by a [`retry::Policy`] when one did.
//!
//! With the `testing` feature, the `testing` module runs given/when/then cases against
//! the pure transition with mocked dependencies, draws the exercised
//! transitions as a Mermaid diagram, and injects store faults.
//!
//! With the `observe` feature, the pipeline emits `tracing` spans and events
//! and `metrics` counters, histograms and gauges (the `observe` module;
//! `docs/observability.md` lists them).
//!
//! Start with the guide, `docs/guide.md` in the repository, or run
//! `cargo run --example quickstart`.
#![forbid(unsafe_code)]

pub use machine_derive::{Command, State};

/// The `sqlx` this crate was built with (features `sqlite` and `postgres`).
///
/// [`store::Postgres`] and [`store::Sqlite`] take and hand out `sqlx` types
/// (pools, connections, transactions for `handle_in`), which are only the
/// same types when both sides use the same `sqlx`. Use this re-export, or
/// depend on the same minor version (see the README), and enable any other
/// `sqlx` features you need in your own dependency: Cargo unifies them.
///
/// ```
/// # #[cfg(feature = "postgres")] {
/// use machine_core::sqlx::PgPool;
/// use machine_core::store::Postgres;
///
/// async fn open(pool: PgPool) -> Result<Postgres, machine_core::StoreError> {
///     Postgres::from_pool(pool).await
/// }
/// # let _ = open;
/// # }
/// ```
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sqlx;

mod command;
pub mod decision;
// README.md and docs/*.md as doctests; see the module.
#[cfg(doctest)]
mod docs;
mod error;
pub mod evolution;
mod failure;
mod kind;
mod machine;
// Spans and metrics of the pipeline: public (metric names, `describe`) with
// the `observe` feature, inert hooks without it.
#[cfg(feature = "observe")]
pub mod observe;
#[cfg(not(feature = "observe"))]
mod observe;
mod panic;
pub mod process;
pub mod queue;
pub mod retention;
pub mod retry;
mod runner;
mod state;
pub mod store;
mod target;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timers;

// The derives emit `::machine_core::…` paths; this lets the `testing`
// module's unit tests use them.
#[cfg(all(test, feature = "testing"))]
extern crate self as machine_core;

pub use command::{Command, Edge, Transitions};
pub use error::{DecodeCause, DecodeError, Error, StoreError, VersionConflict};
pub use failure::Failure;
pub use kind::Kind;
pub use machine::{AsyncMachine, Instance, Machine, RecordFailures};
pub use queue::RetryQueue;
pub use retry::{Jitter, Retry};
pub use runner::{
    Coalescing, HistoryEntry, HistoryItem, KindOf, Outcome, Page, Request, Runner, UnreadableEntry, Versioned,
};
pub use state::{FailureState, State};
pub use target::{Declares, FromNotDeclared, NotDeclared, To};

/// The names most programs need: `use machine_core::prelude::*;`.
///
/// [`AsyncMachine`] is not in it: a type that implements [`Machine`] is also
/// an `AsyncMachine`, and with both traits in scope a call such as
/// `OrderMachine::transition(..)` would be ambiguous. Async machines import
/// it by name.
pub mod prelude {
    pub use crate::{
        Command, Error, Failure, FailureState, Instance, Jitter, Kind, Machine, NotDeclared, Outcome, RecordFailures,
        Request, Retry, Runner, State, To, Transitions, VersionConflict, Versioned,
    };
}
