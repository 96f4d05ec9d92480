use machine_core::{Command, State};

#[derive(State)]
enum Order {
    #[state(initial)]
    Draft,
}

#[derive(Command)]
enum OrderCommand {
    #[command(state = Order)]
    Place,
}

fn main() {}
