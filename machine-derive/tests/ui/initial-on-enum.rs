use machine_core::State;

#[derive(State)]
#[state(initial)]
enum Order {
    #[state(initial)]
    Draft,
}

fn main() {}
