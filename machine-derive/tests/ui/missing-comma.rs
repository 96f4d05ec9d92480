use machine_core::State;

#[derive(State)]
enum Order {
    #[state(initial terminal)]
    Draft,
}

fn main() {}
