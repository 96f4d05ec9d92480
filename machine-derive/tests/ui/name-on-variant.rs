use machine_core::State;

#[derive(State)]
enum Order {
    #[state(initial, name = "draft")]
    Draft,
}

fn main() {}
