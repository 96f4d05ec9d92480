use machine_core::{Command, State};

#[derive(State)]
enum Order {
    #[state(initial)]
    Draft,
}

#[derive(Command)]
#[command(state = Order, from(Draft))]
enum OrderCommand {
    #[command(unchecked)]
    Place,
}

fn main() {}
