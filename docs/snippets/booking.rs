// The room machine of docs/request-handlers.md (the one of
// examples/booking_service.rs), for its snippets: they include this file in
// one hidden line. machine-core's doctests compile it (machine-core/src/docs.rs).

#[allow(unused_imports)]
use docs::*;

/// What the snippets use without naming it; an explicit `use` in a snippet
/// shadows these glob imports without a conflict.
#[allow(unused_imports)]
mod docs {
    pub use machine_core::prelude::*;
    pub use serde::{Deserialize, Serialize};
}

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Room {
    /// What a missing record is: only `Create` leaves it.
    #[state(initial)]
    Unlisted,
    Free { rate: u32 },
    Held { rate: u32, guest: String },
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Room)]
pub enum RoomCommand {
    #[command(from(Unlisted), to(Free))]
    Create { rate: u32 },
    #[command(from(Free), to(Held))]
    Hold { guest: String },
    #[command(from(Held), to(Free))]
    Release,
}

pub struct Rooms;

impl Machine for Rooms {
    type State = Room;
    type Command = RoomCommand;
    type Deps = ();
    type Error = NotDeclared;

    fn transition(deps: &(), command: &RoomCommand, room: &Room) -> Result<Room, Self::Error> {
        Self::dispatch(deps, command, room)
    }
}

impl RoomCommandHandlers for Rooms {
    fn create_unlisted(
        (): &(),
        rate: &u32,
        _: UnlistedRoomRef<'_>,
    ) -> Result<To<Room, room_command::Create>, Self::Error> {
        Ok(To::new(FreeRoom { rate: *rate }))
    }

    fn hold_free((): &(), guest: &String, from: FreeRoomRef<'_>) -> Result<To<Room, room_command::Hold>, Self::Error> {
        Ok(To::new(HeldRoom { rate: *from.rate, guest: guest.clone() }))
    }

    fn release_held((): &(), from: HeldRoomRef<'_>) -> Result<To<Room, room_command::Release>, Self::Error> {
        Ok(To::new(FreeRoom { rate: *from.rate }))
    }
}
