use machine_core::{Command, Failure, State};

#[derive(State)]
enum Hold {
    #[state(initial)]
    Free,
    #[state(failure)]
    Failed(#[state(due)] Failure<HoldCommand, Hold>),
}

#[derive(Command)]
enum HoldCommand {
    Take,
}

fn main() {}
