use machine_core::State;

#[derive(State)]
struct Order {
    placed: bool,
}

fn main() {}
