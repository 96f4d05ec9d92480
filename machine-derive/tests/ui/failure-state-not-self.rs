use machine_core::{Command, Failure, State};

#[derive(State)]
enum Order {
    #[state(initial)]
    Draft,
    #[state(failure)]
    Failed(Failure<OrderCommand, String>),
}

#[derive(Command)]
enum OrderCommand {
    Place,
}

fn main() {}
