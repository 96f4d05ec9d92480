use machine_core::State;

#[derive(State)]
enum Order {
    #[state(initial)]
    Draft,
    #[state(initial)]
    Pending,
}

fn main() {
    // No cascade: the kind enum and the `State` impl still exist.
    let _ = Order::initial();
    let _ = OrderKind::Draft.as_str();
}
