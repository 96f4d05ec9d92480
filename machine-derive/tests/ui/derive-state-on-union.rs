use machine_core::State;

#[derive(State)]
union Order {
    placed: u8,
    count: u16,
}

fn main() {}
