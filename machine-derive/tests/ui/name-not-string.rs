use machine_core::State;

#[derive(State)]
#[state(name = orders)]
enum Order {
    #[state(initial)]
    Draft,
}

fn main() {}
