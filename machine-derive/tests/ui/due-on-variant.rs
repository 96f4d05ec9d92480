use machine_core::State;
use machine_core::timers::Deadline;

#[derive(State)]
#[state(due)]
enum Hold {
    #[state(initial)]
    Free,
    #[state(due)]
    Held { expires: Deadline },
    #[state(due)]
    Lapsed,
}

fn main() {}
