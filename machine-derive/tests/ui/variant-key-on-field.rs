use machine_core::State;
use machine_core::timers::Deadline;

#[derive(State)]
enum Hold {
    #[state(initial)]
    Free,
    Held {
        #[state(terminal)]
        expires: Deadline,
        #[state(deu)]
        reminder: Deadline,
        #[state(name = "holds")]
        by: String,
    },
}

fn main() {}
