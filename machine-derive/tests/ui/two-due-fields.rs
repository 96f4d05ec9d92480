use machine_core::State;
use machine_core::timers::Deadline;

#[derive(State)]
enum Hold {
    #[state(initial)]
    Free,
    Held {
        #[state(due)]
        reminder: Deadline,
        #[state(due)]
        expires: Deadline,
    },
    Paused(#[state(due)] Deadline, #[state(due)] Option<Deadline>),
}

fn main() {}
