use machine_core::{Command, State};

#[derive(State)]
#[state(name = 42, initial)]
enum Order {
    #[state(inital, terminal)]
    Draft,
    #[state(terminal, terminal)]
    Pending,
    #[state(failure)]
    Failed(u8, u8),
}

#[derive(Command)]
#[command(state = Order)]
enum OrderCommand {
    #[command(from(Draft, Draft), to())]
    Place,
    Confirm,
    #[command(unchecked, to(Pending))]
    Cancel,
    #[command(state = Order, from(Order::Draft), to("Pending"))]
    Debug,
}

fn main() {}
