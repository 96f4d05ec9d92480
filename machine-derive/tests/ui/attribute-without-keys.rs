use machine_core::{Command, State};

#[derive(State)]
enum Order {
    #[state]
    Draft,
}

#[derive(Command)]
enum OrderCommand {
    #[command = "unchecked"]
    Place,
}

fn main() {}
