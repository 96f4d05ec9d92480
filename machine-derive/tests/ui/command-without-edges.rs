use machine_core::{Command, State, Transitions};

#[derive(State)]
enum Order {
    #[state(initial)]
    Draft,
    Pending,
}

#[derive(Command)]
#[command(state = Order)]
enum OrderCommand {
    #[command(from(Draft), to(Pending))]
    Place,
    Debug,
}

fn main() {
    // No cascade: the kind enum and the trait impls still exist.
    let _ = <OrderCommand as Transitions<Order>>::edge(OrderCommandKind::Place);
    let _ = OrderCommand::Debug.kind();
}
