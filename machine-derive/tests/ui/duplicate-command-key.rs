use machine_core::{Command, State};

#[derive(State)]
enum Order {
    #[state(initial)]
    Draft,
    Pending,
}

#[derive(Command)]
#[command(state = Order)]
enum OrderCommand {
    #[command(from(Draft), to(Pending))]
    #[command(from(Pending))]
    Place,
    #[command(unchecked, unchecked)]
    Debug,
}

fn main() {}
