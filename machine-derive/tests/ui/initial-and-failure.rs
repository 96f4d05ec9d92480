use machine_core::{Command, Failure, State};

#[derive(State)]
enum Order {
    #[state(initial, failure)]
    Failed(Failure<OrderCommand, Order>),
    Draft,
}

#[derive(Command)]
enum OrderCommand {
    Place,
}

fn main() {}
