use machine_core::Command;

#[derive(Command)]
#[command(state = "Order")]
enum OrderCommand {
    #[command(unchecked)]
    Place,
}

fn main() {}
