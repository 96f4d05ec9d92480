use machine_core::State;
use machine_core::timers::Deadline;

#[derive(State)]
enum Hold {
    #[state(initial)]
    Free,
    Held {
        #[state(due = expires)]
        expires: Deadline,
    },
}

fn main() {}
