use machine_core::State;

#[derive(State)]
enum Order {
    #[state(initial)]
    Draft,
    #[state(failure)]
    Failed,
}

fn main() {}
