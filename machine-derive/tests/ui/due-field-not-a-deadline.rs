use machine_core::State;

#[derive(State)]
enum Hold {
    #[state(initial)]
    Free,
    Held {
        #[state(due)]
        expires: u64,
    },
}

fn main() {}
