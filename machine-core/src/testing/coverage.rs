//! Coverage of the declared table: which declared edges no case exercised,
//! and which edges the cases exercised that the table does not declare.

use super::record::Transition;
use crate::{Command, Kind, State, Transitions};
use std::collections::BTreeSet;
use std::fmt;

/// Every edge the declared table of `C` allows, sorted: for each command kind
/// with a table, each `from(..)` state to each `to(..)` state.
///
/// ```
/// use machine_core::testing::declared_transitions;
/// # use machine_core::{Command, State};
/// # #[derive(State)] enum Light { #[state(initial)] Red, Green }
/// # #[derive(Command)] #[command(state = Light)]
/// # enum Switch { #[command(from(Red, Green), to(Green))] Go }
///
/// let edges: Vec<String> = declared_transitions::<Light, Switch>().iter().map(ToString::to_string).collect();
/// assert_eq!(edges, ["Red --Go--> Green", "Green --Go--> Green"]);
/// ```
#[must_use]
pub fn declared_transitions<S: State, C: Transitions<S>>() -> Vec<Transition<S::Kind, C::Kind>> {
    let mut edges = BTreeSet::new();
    for &command in <C as Command>::Kind::ALL {
        let Some(edge) = C::edge(command) else { continue };
        for &from in edge.from {
            for &to in edge.to {
                edges.insert(Transition { from, command, outcome: Ok(to) });
            }
        }
    }
    edges.into_iter().collect()
}

/// How much of the declared table the cases exercised.
///
/// Only transitions that produced a state count; errors are neither declared
/// nor missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage<S, C> {
    /// How many edges the table declares.
    pub declared: usize,
    /// Declared edges some case exercised.
    pub covered: Vec<Transition<S, C>>,
    /// Declared edges no case exercised, sorted.
    pub missing: Vec<Transition<S, C>>,
    /// Edges cases exercised that the table does not declare, sorted: those
    /// of commands without a table, and those into the failure state (which
    /// the table always accepts).
    pub undeclared: Vec<Transition<S, C>>,
}

impl<S: Kind, C: Kind> Coverage<S, C> {
    /// Compares the `declared` edges with the `exercised` transitions.
    pub(crate) fn new<'t>(
        declared: &[Transition<S, C>],
        exercised: impl IntoIterator<Item = &'t Transition<S, C>>,
    ) -> Self {
        let exercised: BTreeSet<Transition<S, C>> = exercised.into_iter().filter(|t| t.is_ok()).copied().collect();
        let declared_set: BTreeSet<Transition<S, C>> = declared.iter().copied().collect();
        let (covered, missing) = declared_set.iter().copied().partition(|edge| exercised.contains(edge));
        Self {
            declared: declared_set.len(),
            covered,
            missing,
            undeclared: exercised.difference(&declared_set).copied().collect(),
        }
    }

    /// Whether every declared edge was exercised.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

impl<S: Kind, C: Kind> fmt::Display for Coverage<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "declared edges exercised: {} of {}", self.covered.len(), self.declared)?;
        if !self.missing.is_empty() {
            writeln!(f, "declared edges no case exercised ({}):", self.missing.len())?;
            for edge in &self.missing {
                writeln!(f, "  {edge}")?;
            }
        }
        if !self.undeclared.is_empty() {
            writeln!(f, "exercised edges the table does not declare ({}):", self.undeclared.len())?;
            for edge in &self.undeclared {
                writeln!(f, "  {edge}")?;
            }
        }
        Ok(())
    }
}
