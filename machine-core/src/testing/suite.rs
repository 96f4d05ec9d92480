//! The suite: where cases start, where hooks and dependency factories live,
//! and where everything the cases exercised is collected for diagrams,
//! coverage, exploration and the report.

use super::case::Case;
use super::coverage::{Coverage, declared_transitions};
use super::diagram::Diagram;
use super::explore::{self, Exploration, Explore};
use super::record::{CommandKind, Recorded, StateKind, TransitionOf};
use super::report::Report;
use crate::{AsyncMachine, State};
use std::any::Any;
use std::fmt;
use std::path::Path;

/// The step a hook runs around.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step<'a, S, C> {
    /// The case's name (`"parent / fork"` inside a fork).
    pub case: &'a str,
    /// The step's number within its case, from 1; a fork continues its
    /// parent's numbering.
    pub number: usize,
    /// The kind of the state the command runs in.
    pub from: S,
    /// The command's kind.
    pub command: C,
}

/// A hook run around every step of every case.
pub(crate) type Hook<M, D> = Box<dyn FnMut(&mut D, &Step<'_, StateKind<M>, CommandKind<M>>)>;

/// Given/when/then tests for the pure transition of machine `M`, whose
/// dependencies are built as a `D` for every case.
///
/// Each [`case`](Suite::case) starts from the initial state (or a
/// [`given`](Case::given) one) with fresh deps, runs commands one after the
/// other with the same checks of the declared table as
/// [`Instance`](crate::Instance), and checks what each step produced. The
/// suite records every transition the steps exercised, and from that draws a
/// Mermaid diagram ([`assert_diagram`](Suite::assert_diagram)), measures
/// coverage of the declared table ([`coverage`](Suite::coverage)), and can
/// [`explore`](Suite::explore) for transitions the cases missed.
///
/// A suite lives inside one `#[test]` function: cases run in the order they
/// are written, so what it records, draws and reports is the same on every run.
///
/// ```
/// use machine_core::prelude::*;
/// use machine_core::testing::Suite;
///
/// #[derive(State, Clone, Debug, PartialEq)]
/// enum Light { #[state(initial)] Red, Green, #[state(terminal)] Broken }
///
/// #[derive(Command, Clone, Debug)]
/// #[command(state = Light)]
/// enum Switch {
///     #[command(from(Red), to(Green))]
///     Go,
///     #[command(from(Red, Green), to(Broken))]
///     Smash,
/// }
///
/// struct Traffic;
/// impl Machine for Traffic {
///     type State = Light;
///     type Command = Switch;
///     type Deps = ();
///     type Error = std::convert::Infallible;
///     fn transition(_: &(), command: &Switch, _: &Light) -> Result<Light, Self::Error> {
///         Ok(match command { Switch::Go => Light::Green, Switch::Smash => Light::Broken })
///     }
/// }
///
/// let mut suite = Suite::<Traffic>::new();
/// suite
///     .case("go, then smash")
///     .when(Switch::Go)
///     .then(Light::Green)
///     .fork("smashed at red", |case| {
///         case.given(Light::Red).when(Switch::Smash).then(Light::Broken);
///     })
///     .when(Switch::Smash)
///     .then(Light::Broken)
///     .when(Switch::Go)
///     .then_error(|error| matches!(error, Error::NotAllowed { .. }));
///
/// suite.assert_covered();
/// assert!(suite.diagram().as_str().contains("    Broken --> Broken : Go ✗ not allowed\n"));
/// // In a real test: suite.assert_diagram("docs/diagrams/light.mmd");
/// ```
pub struct Suite<M: AsyncMachine, D = ()> {
    pub(crate) make_deps: Box<dyn FnMut() -> D>,
    pub(crate) view: fn(&D) -> &M::Deps,
    pub(crate) before_each: Vec<Hook<M, D>>,
    pub(crate) after_each: Vec<Hook<M, D>>,
    pub(crate) recorded: Recorded<M>,
    pub(crate) cases: usize,
    pub(crate) steps: usize,
    exploration: Option<Exploration<StateKind<M>, CommandKind<M>>>,
}

impl<M: AsyncMachine<Deps = ()>> Suite<M, ()> {
    /// A suite for a machine without dependencies (`type Deps = ()`).
    #[must_use]
    pub fn new() -> Self {
        Self::with_deps_as(|| (), |unit| unit)
    }
}

impl<M: AsyncMachine<Deps = ()>> Default for Suite<M, ()> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: AsyncMachine> Suite<M, M::Deps>
where
    M::Deps: Sized,
{
    /// A suite whose cases each get deps from `make`, for a machine whose
    /// `Deps` is a concrete type.
    #[must_use]
    pub fn with_deps(make: impl FnMut() -> M::Deps + 'static) -> Self {
        Self::with_deps_as(make, |deps| deps)
    }
}

impl<M: AsyncMachine, D> Suite<M, D> {
    /// A suite whose cases each get a `D` from `make`, and pass it to the
    /// transition as `view(&d)`.
    ///
    /// This is the constructor for `type Deps = dyn YourDeps` with a mock:
    /// hooks get the mock itself (`&mut MockYourDeps`, to set expectations),
    /// the transition gets it as `&dyn YourDeps`. Rust cannot state "coerces
    /// to `M::Deps`" as a bound, so `view` does the coercion; `|mock| mock` is
    /// all it takes.
    ///
    /// ```
    /// # use machine_core::prelude::*;
    /// # use machine_core::testing::Suite;
    /// # #[derive(State, Clone, Debug, PartialEq)] enum Clock { #[state(initial)] Stopped, Ticking(u64) }
    /// # #[derive(Command, Clone, Debug)] #[command(state = Clock)] enum Tick { #[command(from(Stopped), to(Ticking))] Start }
    /// trait Time { fn now(&self) -> u64; }
    ///
    /// struct Fixed(u64); // or a mockall mock
    /// impl Time for Fixed { fn now(&self) -> u64 { self.0 } }
    ///
    /// struct Clocks;
    /// impl Machine for Clocks {
    ///     type State = Clock;
    ///     type Command = Tick;
    ///     type Deps = dyn Time + Send + Sync;
    ///     type Error = std::convert::Infallible;
    ///     fn transition(time: &(dyn Time + Send + Sync), _: &Tick, _: &Clock) -> Result<Clock, Self::Error> {
    ///         Ok(Clock::Ticking(time.now()))
    ///     }
    /// }
    ///
    /// let mut suite = Suite::<Clocks, Fixed>::with_deps_as(|| Fixed(0), |fixed| fixed);
    /// suite.case("starts at the current time")
    ///     .before(|time| time.0 = 42)
    ///     .when(Tick::Start)
    ///     .then(Clock::Ticking(42));
    /// ```
    #[must_use]
    pub fn with_deps_as(make: impl FnMut() -> D + 'static, view: fn(&D) -> &M::Deps) -> Self {
        Self {
            make_deps: Box::new(make),
            view,
            before_each: Vec::new(),
            after_each: Vec::new(),
            recorded: Recorded::default(),
            cases: 0,
            steps: 0,
            exploration: None,
        }
    }

    /// Runs `hook` before every step of every case, after the case's own
    /// [`before`](Case::before) calls: set expectations every step needs, or
    /// count calls.
    #[must_use]
    pub fn before_each(mut self, hook: impl FnMut(&mut D, &Step<'_, StateKind<M>, CommandKind<M>>) + 'static) -> Self {
        self.before_each.push(Box::new(hook));
        self
    }

    /// Runs `hook` after every step of every case, right after the transition
    /// and before the step is checked: `|mock, _| mock.checkpoint()` verifies
    /// each step's mockall expectations and clears them for the next step.
    #[must_use]
    pub fn after_each(mut self, hook: impl FnMut(&mut D, &Step<'_, StateKind<M>, CommandKind<M>>) + 'static) -> Self {
        self.after_each.push(Box::new(hook));
        self
    }

    /// How many cases (forks included) have started.
    #[must_use]
    pub fn cases(&self) -> usize {
        self.cases
    }

    /// How many steps have run.
    #[must_use]
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Every distinct transition the steps exercised, sorted.
    #[must_use]
    pub fn transitions(&self) -> Vec<TransitionOf<M>> {
        self.recorded.transitions.iter().copied().collect()
    }

    /// The exercised transitions as a Mermaid diagram (see [`Diagram`]).
    #[must_use]
    pub fn diagram(&self) -> Diagram {
        let comment = "Drawn by machine_core::testing from the transitions the tests exercised \
                       (✗ marks a command that failed; the state stayed). Regenerate with UPDATE_DIAGRAMS=1.";
        Diagram::draw::<M::State, _>(&self.recorded.transitions, &[comment.to_owned()])
    }

    /// Checks the [`diagram`](Suite::diagram) against the committed file at
    /// `path` (see [`Diagram::check_file`] for when it is written and how a
    /// relative path resolves). Call it after the cases.
    ///
    /// # Panics
    ///
    /// When the committed file differs (the message shows the diff), is
    /// missing while `CI` is set, or cannot be read or written.
    #[track_caller]
    pub fn assert_diagram(&self, path: impl AsRef<Path>) {
        self.diagram().assert_file(path);
    }

    /// How much of `M`'s declared table the cases exercised.
    #[must_use]
    pub fn coverage(&self) -> Coverage<StateKind<M>, CommandKind<M>> {
        Coverage::new(&declared_transitions::<M::State, M::Command>(), &self.recorded.transitions)
    }

    /// Checks that the cases exercised every declared edge.
    ///
    /// # Panics
    ///
    /// When some declared edge was not exercised; the message lists them.
    #[track_caller]
    pub fn assert_covered(&self) {
        let coverage = self.coverage();
        assert!(coverage.is_complete(), "{}: not every declared edge was exercised\n{coverage}", M::NAME);
    }
}

impl<M, D> Suite<M, D>
where
    M: AsyncMachine,
    M::State: Clone + fmt::Debug + PartialEq,
    M::Command: Clone + fmt::Debug,
{
    /// Starts a case named `name` in the machine's initial state, with fresh
    /// deps. Chain its steps: `suite.case("..").given(..).when(..).then(..)`.
    pub fn case(&mut self, name: impl Into<String>) -> Case<'_, M, D> {
        self.cases += 1;
        let deps = (self.make_deps)();
        Case::start(self, name.into(), deps, M::State::initial(), 0)
    }

    /// Runs every command the cases sent against every state they saw (and,
    /// with [`Explore::depth`], against the states that reaches), each with
    /// fresh deps from `make`, and keeps what it found for the
    /// [`report`](Suite::report). Give deps that answer every call (a mock
    /// without expectations panics, which is reported as a finding).
    ///
    /// Deterministic: the same cases and settings run the same pairs in the
    /// same order and find the same transitions. Panics inside the transition
    /// are caught and reported, but the panic hook still prints them.
    pub fn explore(
        &mut self,
        settings: Explore,
        mut make: impl FnMut() -> D,
    ) -> &Exploration<StateKind<M>, CommandKind<M>> {
        let found = explore::run::<M, D>(settings, &self.recorded, &mut make, self.view);
        self.exploration.insert(found)
    }

    /// What the suite ran, covered and found.
    #[must_use]
    pub fn report(&self) -> Report<StateKind<M>, CommandKind<M>> {
        Report {
            machine: M::NAME,
            cases: self.cases,
            steps: self.steps,
            transitions: self.transitions(),
            coverage: self.coverage(),
            exploration: self.exploration.clone(),
        }
    }
}

impl<M: AsyncMachine, D> fmt::Debug for Suite<M, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suite")
            .field("machine", &M::NAME)
            .field("cases", &self.cases)
            .field("steps", &self.steps)
            .field("transitions", &self.recorded.transitions.len())
            .finish_non_exhaustive()
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
