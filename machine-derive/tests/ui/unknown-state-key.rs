use machine_core::State;

#[derive(State)]
enum Order {
    #[state(inital)]
    Draft,
    Pending,
}

fn main() {}
