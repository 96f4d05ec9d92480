//! Whether a machine's timers are declared consistently: every state that
//! can be due has the command that fires then, and every timer runs from a
//! state that can be due and that its `from(..)` lists.
//!
//! `#[derive(Command)]` checks the first two at compile time; [`check`] is
//! the same at run time, for any state and command types (hand-written
//! ones too), and for code that wants the answer as a value (a sweeper
//! refusing a machine whose timers could never fire).

use crate::{Kind, State, Transitions};
use std::fmt;

/// Checks the timers of command type `C` over state type `S`: for every
/// kind in [`State::DUE`] [`Transitions::timer`] names a command, that
/// command's declared `from(..)` (if it has one) lists the kind, and no
/// kind outside `DUE` has a timer.
///
/// ```
/// use machine_core::timers::{self, Deadline};
/// use machine_core::{Command, State};
///
/// #[derive(State)]
/// enum Hold {
///     #[state(initial)]
///     Free,
///     Held { #[state(due)] until: Deadline },
///     Released,
/// }
///
/// #[derive(Command)]
/// #[command(state = Hold)]
/// enum HoldCommand {
///     #[command(from(Free), to(Held))]
///     Take { until: Deadline },
///     #[command(timer, from(Held), to(Released))]
///     Lapse,
/// }
///
/// assert_eq!(timers::check::<Hold, HoldCommand>(), Ok(()));
/// ```
///
/// # Errors
///
/// [`Misdeclared`], with every mismatch found.
pub fn check<S: State, C: Transitions<S>>() -> Result<(), Misdeclared> {
    let mut mismatches = Vec::new();
    for &state in <S::Kind as Kind>::ALL {
        let due = S::DUE.contains(&state);
        match C::timer(state) {
            None if due => mismatches.push(Mismatch::NoTimer { state: state.as_str() }),
            None => {}
            Some(command) => {
                let command = command.kind();
                if !due {
                    mismatches.push(Mismatch::NeverDue { state: state.as_str(), command: command.as_str() });
                }
                if C::edge(command).is_some_and(|edge| !edge.allows_from(state)) {
                    mismatches.push(Mismatch::NotFrom { state: state.as_str(), command: command.as_str() });
                }
            }
        }
    }
    if mismatches.is_empty() { Ok(()) } else { Err(Misdeclared { machine: S::NAME, mismatches }) }
}

/// The timers of a state type do not agree with its due states: what
/// [`check`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misdeclared {
    /// The state type's [`State::NAME`].
    pub machine: &'static str,
    /// Every mismatch, in the state kinds' declaration order.
    pub mismatches: Vec<Mismatch>,
}

/// One way a state's due time and its timer command disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mismatch {
    /// The state can be due (it has a `#[state(due)]` field) but no command
    /// fires then: a due record would stay due for ever.
    NoTimer {
        /// The state's kind name.
        state: &'static str,
    },
    /// A timer command fires from a state that is never due, so it never
    /// fires from there.
    NeverDue {
        /// The state's kind name.
        state: &'static str,
        /// The timer command's kind name.
        command: &'static str,
    },
    /// The state's timer command does not declare `from(..)` the state, so
    /// the table would refuse it when the record is due.
    NotFrom {
        /// The state's kind name.
        state: &'static str,
        /// The timer command's kind name.
        command: &'static str,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoTimer { state } => write!(f, "`{state}` can be due but no `#[command(timer)]` command fires then"),
            Self::NeverDue { state, command } => {
                write!(f, "`{command}` is the timer of `{state}`, which has no `#[state(due)]` field")
            }
            Self::NotFrom { state, command } => {
                write!(f, "`{command}` is the timer of `{state}` but does not declare `from({state})`")
            }
        }
    }
}

impl fmt::Display for Misdeclared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the timers of {} are misdeclared: ", self.machine)?;
        for (i, mismatch) in self.mismatches.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{mismatch}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Misdeclared {}

/// What the code `#[derive(Command)]` generates for its compile-time check
/// calls: `const fn`s, since the check is a constant. Not a public API.
#[doc(hidden)]
pub mod derive {
    /// Whether `kinds` holds `kind` (kinds compared as `usize`, the only way
    /// a constant can compare them).
    #[must_use]
    pub const fn contains(kinds: &[usize], kind: usize) -> bool {
        let mut index = 0;
        while index < kinds.len() {
            if kinds[index] == kind {
                return true;
            }
            index += 1;
        }
        false
    }

    /// A message assembled in a constant, for a compile error naming a
    /// state only known once the state type's `DUE` is evaluated. A piece
    /// that does not fit is left out whole, so the text stays UTF-8.
    #[derive(Debug)]
    pub struct Message {
        bytes: [u8; 512],
        len: usize,
    }

    impl Message {
        /// An empty message.
        #[must_use]
        pub const fn new() -> Self {
            Self { bytes: [0; 512], len: 0 }
        }

        /// The message with `piece` appended, if it fits.
        #[must_use]
        pub const fn push(mut self, piece: &str) -> Self {
            let piece = piece.as_bytes();
            if piece.len() > self.bytes.len() - self.len {
                return self;
            }
            let mut index = 0;
            while index < piece.len() {
                self.bytes[self.len + index] = piece[index];
                index += 1;
            }
            self.len += piece.len();
            self
        }

        /// The text so far.
        #[must_use]
        pub const fn as_str(&self) -> &str {
            match core::str::from_utf8(self.bytes.split_at(self.len).0) {
                Ok(text) => text,
                Err(_) => "",
            }
        }
    }

    impl Default for Message {
        fn default() -> Self {
            Self::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::derive::{Message, contains};
    use super::{Misdeclared, Mismatch, check};
    use crate::timers::Deadline;
    use crate::{Edge, Transitions};

    #[derive(crate::State)]
    #[allow(dead_code)]
    enum Hold {
        #[state(initial)]
        Free,
        Held {
            #[state(due)]
            until: Deadline,
        },
        Gone,
    }

    /// No state type, so no table and no timers, for every state type.
    #[derive(crate::Command)]
    #[allow(dead_code)]
    enum Loose {
        Lapse,
    }

    #[derive(crate::State)]
    #[allow(dead_code)]
    enum Other {
        #[state(initial)]
        Only,
    }

    /// A table of its own for `Other`, and a hand-written one for `Hold`
    /// whose timers disagree with `Hold`'s due states.
    #[derive(crate::Command, Debug)]
    #[command(state = Other)]
    #[allow(dead_code)]
    enum Wrong {
        #[command(from(Only), to(Only))]
        Lapse,
    }

    impl Transitions<Hold> for Wrong {
        fn edge(_: WrongKind) -> Option<Edge<HoldKind>> {
            Some(Edge { from: &[HoldKind::Free], to: &[HoldKind::Gone] })
        }

        fn timer(state: HoldKind) -> Option<Self> {
            matches!(state, HoldKind::Free | HoldKind::Held).then_some(Self::Lapse)
        }
    }

    #[test]
    fn a_due_state_without_a_timer_is_reported() {
        let error = check::<Hold, Loose>().unwrap_err();
        assert_eq!(error, Misdeclared { machine: "Hold", mismatches: vec![Mismatch::NoTimer { state: "Held" }] });
        assert_eq!(
            error.to_string(),
            "the timers of Hold are misdeclared: `Held` can be due but no `#[command(timer)]` command fires then"
        );
    }

    #[test]
    fn timers_from_states_never_due_or_not_declared_are_reported() {
        let error = check::<Hold, Wrong>().unwrap_err();
        assert_eq!(
            error.mismatches,
            [
                Mismatch::NeverDue { state: "Free", command: "Lapse" },
                Mismatch::NotFrom { state: "Held", command: "Lapse" },
            ]
        );
        assert_eq!(
            error.to_string(),
            "the timers of Hold are misdeclared: `Lapse` is the timer of `Free`, which has no `#[state(due)]` \
             field; `Lapse` is the timer of `Held` but does not declare `from(Held)`"
        );
        assert_eq!(check::<Other, Wrong>(), Ok(()));
    }

    #[test]
    fn messages_keep_whole_pieces_only() {
        const MESSAGE: Message = Message::new().push("`").push("Pending").push("` is due");
        assert_eq!(MESSAGE.as_str(), "`Pending` is due");
        let long = "é".repeat(300);
        let message = Message::new().push("ab").push(&long).push("c");
        assert_eq!(message.as_str(), "abc");
        assert!(contains(&[1, 3], 3) && !contains(&[1, 3], 2) && !contains(&[], 0));
    }
}
