use machine_core::{Command, State};

#[derive(State)]
enum Hold {
    #[state(initial)]
    Free,
    Held,
}

#[derive(Command)]
#[command(state = Hold, timer)]
enum HoldCommand {
    #[command(from(Free), to(Held))]
    Take,
}

fn main() {}
