use machine_core::timers::Deadline;
use machine_core::{Command, State};

#[derive(State)]
enum Hold {
    #[state(initial)]
    Free,
    Held {
        #[state(due)]
        expires: Deadline,
    },
    Extended {
        expires: Deadline,
    },
}

#[derive(Command)]
#[command(state = Hold)]
enum HoldCommand {
    #[command(from(Free), to(Held))]
    Take,
    #[command(from(Held), to(Extended))]
    Extend,
    #[command(timer, from(Held, Extended), to(Free))]
    Lapse,
}

fn main() {}
