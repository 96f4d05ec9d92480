use machine_core::State;

#[derive(State)]
enum Order {
    #[state(initial = true)]
    Draft,
}

fn main() {}
