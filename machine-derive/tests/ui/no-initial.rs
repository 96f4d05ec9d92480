use machine_core::State;

#[derive(State)]
enum Order {
    Draft,
    Pending,
}

fn main() {}
