// The room machine of docs/evolution.md, at schema version 3, with the
// migrations from the versions its older releases stored. The snippets
// include this file in one hidden line (machine-core's doctests compile
// it, see machine-core/src/docs.rs); the fixtures test (tests/evolution.rs
// and the conformance suite) reads rows an older release wrote through it.
//
// Its history:
// - version 1 (release 1.0): states Free, Held { guest }, Booked { guest,
//   nights, phone }, Closed { guest, no_show }; commands Hold { guest },
//   Book { nights, phone }, Extend { nights }, Close { no_show }, Release.
// - version 2: the state Held is renamed Reserved and gains a booking
//   channel; Booked loses the phone and gains the channel; the command Hold
//   is renamed Reserve (with the channel); Book loses the phone; Extend is
//   retired.
// - version 3: Closed is split into CheckedOut and NoShow; the field
//   no_show of Close is renamed missed.

#[allow(unused_imports)]
use rooms::*;

/// The room machine and its migrations.
#[allow(dead_code)]
pub mod rooms {
    pub use machine_core::evolution::{Migration, MigrationError, json, retype};
    pub use machine_core::prelude::*;
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::Value;

    /// A hotel room's booking.
    #[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub enum Room {
        #[state(initial)]
        Free,
        Reserved {
            guest: String,
            channel: String,
        },
        Booked {
            guest: String,
            nights: u32,
            channel: String,
        },
        #[state(terminal)]
        CheckedOut {
            guest: String,
        },
        #[state(terminal)]
        NoShow {
            guest: String,
        },
    }

    /// What can be done to a room.
    #[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[command(state = Room)]
    pub enum RoomCommand {
        #[command(from(Free), to(Reserved))]
        Reserve { guest: String, channel: String },
        #[command(from(Reserved), to(Booked))]
        Book { nights: u32 },
        #[command(from(Booked), to(CheckedOut, NoShow))]
        Close { missed: bool },
        #[command(from(Reserved, Booked), to(Free))]
        Release,
        /// A command an older release offered and this one does not: kept
        /// so that old history entries still read; refused if sent.
        #[command(unchecked)]
        Retired { command: String },
    }

    /// Why a room refused a command.
    #[derive(Debug, thiserror::Error)]
    pub enum RoomError {
        #[error("{0} is no longer offered")]
        Retired(String),
        #[error("{command} does not apply to {state}")]
        Mismatch { command: &'static str, state: &'static str },
    }

    pub struct Rooms;

    impl Machine for Rooms {
        type State = Room;
        type Command = RoomCommand;
        type Deps = ();
        type Error = RoomError;

        const SCHEMA: u32 = 3;
        const MIGRATIONS: &'static [Migration] = &[
            Migration::state(1, state_from_v1),
            Migration::command(1, command_from_v1),
            Migration::state(2, state_from_v2),
            Migration::command(2, command_from_v2),
        ];

        fn transition((): &(), command: &RoomCommand, state: &Room) -> Result<Room, RoomError> {
            match (command, state) {
                (RoomCommand::Reserve { guest, channel }, Room::Free) => {
                    Ok(Room::Reserved { guest: guest.clone(), channel: channel.clone() })
                }
                (RoomCommand::Book { nights }, Room::Reserved { guest, channel }) => {
                    Ok(Room::Booked { guest: guest.clone(), nights: *nights, channel: channel.clone() })
                }
                (RoomCommand::Close { missed: true }, Room::Booked { guest, .. }) => {
                    Ok(Room::NoShow { guest: guest.clone() })
                }
                (RoomCommand::Close { missed: false }, Room::Booked { guest, .. }) => {
                    Ok(Room::CheckedOut { guest: guest.clone() })
                }
                (RoomCommand::Release, _) => Ok(Room::Free),
                (RoomCommand::Retired { command }, _) => Err(RoomError::Retired(command.clone())),
                (command, state) => {
                    Err(RoomError::Mismatch { command: command.kind().as_str(), state: state.kind().as_str() })
                }
            }
        }
    }

    /// Version 1 → 2 of states: `Held` is `Reserved` now, and a booking
    /// knows its channel (what version 1 wrote came in directly); the
    /// phone is no longer kept.
    pub fn state_from_v1(state: Value) -> Result<Value, MigrationError> {
        let state = json::rename_variant(state, "Held", "Reserved");
        let state = json::add_field(state, "Reserved", "channel", Value::from("direct"));
        let state = json::remove_field(state, "Booked", "phone");
        Ok(json::add_field(state, "Booked", "channel", Value::from("direct")))
    }

    /// Version 1 → 2 of commands: `Hold` is `Reserve` (with its channel),
    /// `Book` drops the phone, and the retired `Extend` is kept as `Retired`.
    pub fn command_from_v1(command: Value) -> Result<Value, MigrationError> {
        if json::variant(&command) == Some("Extend") {
            return Ok(serde_json::json!({ "Retired": { "command": "Extend" } }));
        }
        let command = json::rename_variant(command, "Hold", "Reserve");
        let command = json::add_field(command, "Reserve", "channel", Value::from("direct"));
        Ok(json::remove_field(command, "Book", "phone"))
    }

    /// `Closed` as versions 1 and 2 stored it.
    #[derive(Deserialize)]
    enum ClosedV2 {
        Closed { guest: String, no_show: bool },
    }

    /// Version 2 → 3 of states: `Closed` splits into `NoShow` and
    /// `CheckedOut`, decoded in its old typed shape and converted.
    pub fn state_from_v2(state: Value) -> Result<Value, MigrationError> {
        if json::variant(&state) != Some("Closed") {
            return Ok(state);
        }
        retype(state, |ClosedV2::Closed { guest, no_show }| {
            if no_show { Room::NoShow { guest } } else { Room::CheckedOut { guest } }
        })
    }

    /// Version 2 → 3 of commands: `Close`'s `no_show` is called `missed`.
    pub fn command_from_v2(command: Value) -> Result<Value, MigrationError> {
        Ok(json::rename_field(command, "Close", "no_show", "missed"))
    }
}
