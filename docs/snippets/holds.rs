// A hold on a room that lapses unless confirmed: the machine the
// living-machines doc's snippets run. Included by docs/living-machines.md.
use machine_core::prelude::*;
use machine_core::timers::Deadline;
use serde::{Deserialize, Serialize};

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Hold {
    #[state(initial)]
    Free,
    /// Lapses at `until` unless confirmed first.
    Held {
        guest: String,
        #[state(due)]
        until: Deadline,
    },
    Confirmed {
        guest: String,
    },
    Lapsed,
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Hold)]
pub enum HoldCommand {
    #[command(from(Free, Lapsed), to(Held))]
    Take { guest: String, until: Deadline },
    #[command(from(Held), to(Confirmed))]
    Confirm,
    /// Sent by the sweeper once `Held` is due.
    #[command(timer, from(Held), to(Lapsed))]
    Lapse,
}

pub struct Holds;

impl Machine for Holds {
    type State = Hold;
    type Command = HoldCommand;
    type Deps = ();
    type Error = NotDeclared;

    fn transition((): &(), command: &HoldCommand, state: &Hold) -> Result<Hold, NotDeclared> {
        Ok(match (command, state) {
            (HoldCommand::Take { guest, until }, _) => Hold::Held { guest: guest.clone(), until: *until },
            (HoldCommand::Confirm, Hold::Held { guest, .. }) => Hold::Confirmed { guest: guest.clone() },
            (HoldCommand::Lapse, _) => Hold::Lapsed,
            (command, state) => {
                return Err(NotDeclared { command: command.kind().as_str(), state: state.kind().as_str() });
            }
        })
    }
}
