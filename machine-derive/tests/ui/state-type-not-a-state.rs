use machine_core::Command;

enum Order {
    Draft,
}

#[derive(Command)]
#[command(state = Order)]
enum OrderCommand {
    #[command(from(Draft), to(Draft))]
    Place,
}

fn main() {
    let _ = Order::Draft;
}
