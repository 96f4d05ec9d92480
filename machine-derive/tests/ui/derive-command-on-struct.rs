use machine_core::Command;

#[derive(Command)]
struct Place {
    items: Vec<String>,
}

fn main() {}
