use machine_core::prelude::*;

#[derive(State, Clone, Debug, PartialEq)]
enum Door {
    #[state(initial)]
    Closed,
    Open,
}

#[derive(Command, Clone, Debug, PartialEq)]
#[command(state = Door)]
enum DoorCommand {
    #[command(from(Closed), to(Open))]
    Open,
}

/// The handlers never fail, but `dispatch` can: called directly with a pair
/// the table does not declare (`Open` on an open door), it returns
/// `NotDeclared`, which `Infallible` cannot hold.
struct DoorMachine;

impl Machine for DoorMachine {
    type State = Door;
    type Command = DoorCommand;
    type Deps = ();
    type Error = std::convert::Infallible;

    fn transition((): &(), command: &DoorCommand, state: &Door) -> Result<Door, Self::Error> {
        Self::dispatch(&(), command, state)
    }
}

impl DoorCommandHandlers for DoorMachine {
    fn open_closed((): &(), _: ClosedDoorRef<'_>) -> Result<To<Door, door_command::Open>, std::convert::Infallible> {
        Ok(To::new(OpenDoor))
    }
}

fn main() {}
