use machine_core::Command;

#[derive(Command)]
enum HoldCommand {
    Take,
    #[command(timer)]
    Lapse,
}

fn main() {}
