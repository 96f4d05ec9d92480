//! The suite's summary for people: what ran, which transitions it
//! exercised, how much of the declared table that covers, and what
//! exploration found.

use super::coverage::Coverage;
use super::explore::Exploration;
use super::record::Transition;
use crate::Kind;
use std::fmt;

/// What a [`Suite`](super::Suite) ran, covered and found; print it with `{}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<S, C> {
    /// The machine's name.
    pub machine: &'static str,
    /// How many cases ran (forks included).
    pub cases: usize,
    /// How many steps ran.
    pub steps: usize,
    /// The distinct transitions exercised, sorted.
    pub transitions: Vec<Transition<S, C>>,
    /// Coverage of the declared table.
    pub coverage: Coverage<S, C>,
    /// The last exploration, if one ran.
    pub exploration: Option<Exploration<S, C>>,
}

impl<S: Kind, C: Kind> fmt::Display for Report<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.transitions.iter().filter(|t| !t.is_ok()).count();
        writeln!(
            f,
            "{}: {} case(s), {} step(s), {} distinct transition(s), {failed} of them ending in an error",
            self.machine,
            self.cases,
            self.steps,
            self.transitions.len()
        )?;
        for transition in &self.transitions {
            writeln!(f, "  {transition}")?;
        }
        write!(f, "{}", self.coverage)?;
        match &self.exploration {
            Some(exploration) => write!(f, "{exploration}"),
            None => writeln!(f, "exploration: not run"),
        }
    }
}
