use machine_core::{Command, Failure, State};

#[derive(State)]
enum Order {
    #[state(initial)]
    Draft,
    #[state(failure)]
    Failed(Failure<OrderCommand, Order>),
    #[state(failure)]
    Broken(Failure<OrderCommand, Order>),
}

#[derive(Command)]
enum OrderCommand {
    Place,
}

fn main() {}
