use machine_core::State;

#[derive(State)]
enum Order {
    #[state(initial, initial)]
    Draft,
    #[state(terminal)]
    #[state(terminal)]
    Done,
}

fn main() {}
