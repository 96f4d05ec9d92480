//! Business state machines that live in a database.
#![forbid(unsafe_code)]

pub use machine_derive::{Command, State};

mod command;
mod error;
mod failure;
mod kind;
mod machine;
mod state;

pub use command::{Command, Edge, Transitions};
pub use error::{Error, StoreError, VersionConflict};
pub use failure::Failure;
pub use kind::Kind;
pub use machine::{Instance, Machine};
pub use state::{FailureState, State};

/// The names most programs need: `use machine_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Command, Error, Failure, FailureState, Instance, Kind, Machine, State, Transitions,
        VersionConflict,
    };
}
