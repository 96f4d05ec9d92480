//! Exploration: runs the commands the cases used against the states they
//! reached, to find transitions no case exercised. Seeded and ordered, so the
//! same cases find the same things on every run.

use super::block;
use super::record::{ErrorKind, Recorded, Transition, TransitionOf};
use super::suite::panic_message;
use crate::machine::AsyncMachine;
use crate::retry::Rng;
use crate::{Command, State};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// How to explore: a seed, how many rounds, and how many transitions at most.
///
/// Round one runs every distinct command the cases sent against every
/// distinct state they saw; each later round runs them against the states
/// the previous round newly reached. When a round has more pairs than the
/// remaining budget, a sample is drawn with the seed, so a given seed always
/// runs the same pairs.
///
/// ```
/// use machine_core::testing::Explore;
///
/// let explore = Explore::seeded(7).depth(2).max_runs(500);
/// assert_eq!((explore.seed(), explore.rounds(), explore.budget()), (7, 2, 500));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Explore {
    seed: u64,
    depth: u32,
    max_runs: usize,
}

impl Explore {
    /// One round, at most 10 000 transitions, sampled with `seed` when there
    /// are more.
    #[must_use]
    pub fn seeded(seed: u64) -> Self {
        Self { seed, depth: 1, max_runs: 10_000 }
    }

    /// Explores `depth` rounds deep (at least one).
    #[must_use]
    pub fn depth(mut self, depth: u32) -> Self {
        self.depth = depth.max(1);
        self
    }

    /// Runs at most `max_runs` transitions in all.
    #[must_use]
    pub fn max_runs(mut self, max_runs: usize) -> Self {
        self.max_runs = max_runs;
        self
    }

    /// The seed.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many rounds deep it explores.
    #[must_use]
    pub fn rounds(&self) -> u32 {
        self.depth
    }

    /// How many transitions it runs at most.
    #[must_use]
    pub fn budget(&self) -> usize {
        self.max_runs
    }
}

/// A transition exploration found that no case exercised, with the first
/// state and command (in run order) that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding<S, C> {
    /// What happened, as kinds.
    pub transition: Transition<S, C>,
    /// The state it ran in (`Debug`).
    pub state: String,
    /// The command (`Debug`).
    pub command: String,
    /// The error or panic message, when it failed.
    pub error: Option<String>,
}

impl<S: crate::Kind, C: crate::Kind> fmt::Display for Finding<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} on {}", self.transition, self.command, self.state)?;
        match &self.error {
            Some(error) => write!(f, " ({error})"),
            None => Ok(()),
        }
    }
}

/// What an exploration ran and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exploration<S, C> {
    /// The settings it ran with.
    pub settings: Explore,
    /// How many (state, command) pairs there were to run.
    pub pairs: usize,
    /// How many it ran.
    pub runs: usize,
    /// Transitions no case exercised, sorted. Refusals by the declared table
    /// are left out: the table already documents them.
    pub findings: Vec<Finding<S, C>>,
}

impl<S: crate::Kind, C: crate::Kind> fmt::Display for Exploration<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "exploration (seed {}, {} round(s)): ran {} of {} pairs, found {} transition(s) no case exercised",
            self.settings.seed,
            self.settings.depth,
            self.runs,
            self.pairs,
            self.findings.len()
        )?;
        for finding in &self.findings {
            writeln!(f, "  {finding}")?;
        }
        Ok(())
    }
}

/// Explores from what `recorded` holds; each run gets fresh deps from `make`.
pub(crate) fn run<M, D>(
    settings: Explore,
    recorded: &Recorded<M>,
    make: &mut dyn FnMut() -> D,
    view: fn(&D) -> &M::Deps,
) -> Exploration<<M::State as State>::Kind, <M::Command as Command>::Kind>
where
    M: AsyncMachine,
    M::State: Clone + fmt::Debug,
    M::Command: Clone + fmt::Debug,
{
    let rng = Rng::seeded(settings.seed);
    let mut seen: BTreeSet<String> = recorded.states.iter().map(|state| format!("{state:?}")).collect();
    let mut frontier: Vec<M::State> = recorded.states.clone();
    let commands = &recorded.commands;
    let mut found: BTreeMap<TransitionOf<M>, Finding<_, _>> = BTreeMap::new();
    let (mut pairs_total, mut runs) = (0_usize, 0_usize);

    for _ in 0..settings.depth {
        let mut pairs: Vec<(usize, usize)> =
            (0..frontier.len()).flat_map(|s| (0..commands.len()).map(move |c| (s, c))).collect();
        pairs_total += pairs.len();
        let budget = settings.max_runs.saturating_sub(runs);
        if pairs.len() > budget {
            // A partial Fisher–Yates shuffle picks `budget` pairs; sorting
            // them back keeps the run order independent of the draw.
            for i in 0..budget {
                let remaining = u64::try_from(pairs.len() - i).unwrap_or(u64::MAX);
                let j = i + usize::try_from(rng.below(remaining)).unwrap_or(0);
                pairs.swap(i, j);
            }
            pairs.truncate(budget);
            pairs.sort_unstable();
        }
        let mut next = Vec::new();
        for (s, c) in pairs {
            runs += 1;
            let (state, command) = (&frontier[s], &commands[c]);
            let result = catch_unwind(AssertUnwindSafe(|| {
                let deps = make();
                block::transition::<M>(view(&deps), command, state)
            }));
            let (outcome, error) = match result {
                Ok(Ok(reached)) => {
                    let kind = reached.kind();
                    if seen.insert(format!("{reached:?}")) {
                        next.push(reached);
                    }
                    (Ok(kind), None)
                }
                Ok(Err(error)) => (Err(ErrorKind::of(&error)), Some(error.to_string())),
                Err(payload) => (Err(ErrorKind::Panicked), Some(panic_message(payload.as_ref()))),
            };
            let transition = Transition { from: state.kind(), command: command.kind(), outcome };
            if outcome == Err(ErrorKind::NotAllowed) || recorded.transitions.contains(&transition) {
                continue;
            }
            found.entry(transition).or_insert_with(|| Finding {
                transition,
                state: format!("{state:?}"),
                command: format!("{command:?}"),
                error,
            });
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    Exploration { settings, pairs: pairs_total, runs, findings: found.into_values().collect() }
}
