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
        #[state(due)]
        expires: Deadline,
    },
}

#[derive(Command)]
#[command(state = Hold)]
enum HoldCommand {
    #[command(from(Free), to(Held))]
    Take,
    #[command(timer, from(Held, Extended), to(Free))]
    Lapse,
    #[command(timer, from(Extended), to(Free))]
    Remind,
}

fn main() {}
