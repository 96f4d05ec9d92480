use machine_core::{Command, State};

#[derive(State)]
enum Order {
    #[state(initial)]
    Draft,
    Pending { since: u64 },
}

#[derive(Command)]
#[command(state = Order)]
enum OrderCommand {
    #[command(from(Order::Draft), to(Pending { .. }))]
    Place,
    #[command(from = Draft, to(Pending))]
    Confirm,
    #[command(from(Draft, 3, self), to("Pending"))]
    Cancel,
}

fn main() {}
