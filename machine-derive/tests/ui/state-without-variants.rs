use machine_core::State;

#[derive(State)]
enum Order {}

fn main() {}
