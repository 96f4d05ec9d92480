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
    #[command(form(Draft), to(Pending))]
    Place,
}

fn main() {}
