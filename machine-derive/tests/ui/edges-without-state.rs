use machine_core::Command;

#[derive(Command)]
enum OrderCommand {
    #[command(from(Draft), to(Pending))]
    Place,
    #[command(from(Pending), to(Confirmed))]
    Confirm,
}

fn main() {}
