//! One case of a suite: a chain of given/when/then steps on one machine
//! state with one set of deps, checked as it goes, with failure messages that
//! name the case and the step and show what differs.

use super::block;
use super::diff;
use super::record::{CommandKind, ErrorKind, StateKind, Transition};
use super::suite::{Step, Suite, panic_message};
use crate::error::Error;
use crate::machine::AsyncMachine;
use crate::{Command, Kind, State};
use std::borrow::Borrow;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A case of a [`Suite`]: the current state, the case's deps, and the outcome
/// of the last step.
///
/// Every method runs at once and returns the case, so steps chain:
/// [`given`](Case::given) sets the state, [`before`](Case::before) and
/// [`after`](Case::after) work on the deps, [`when`](Case::when) runs a
/// command on the current state, and the `then…` methods check what the last
/// `when` produced. After a successful step the next `when` runs on the new
/// state; after a failed one the state is unchanged, as with
/// [`Instance`](crate::Instance).
///
/// A step that failed must be expected: `when` after it, a fork, or the end
/// of the case fail the test unless a `then_error`/`then_rejected` (or any
/// `then…`) looked at it.
pub struct Case<'s, M: AsyncMachine, D> {
    suite: &'s mut Suite<M, D>,
    name: String,
    deps: D,
    state: M::State,
    number: usize,
    last: Option<Last<M>>,
}

/// The outcome of the last `when`.
struct Last<M: AsyncMachine> {
    /// `step 2 (Confirm on Pending)`.
    label: String,
    result: Result<(), Error<M::Error>>,
    checked: bool,
}

impl<'s, M, D> Case<'s, M, D>
where
    M: AsyncMachine,
    M::State: Clone + fmt::Debug + PartialEq,
    M::Command: Clone + fmt::Debug,
{
    pub(crate) fn start(suite: &'s mut Suite<M, D>, name: String, deps: D, state: M::State, number: usize) -> Self {
        Self { suite, name, deps, state, number, last: None }
    }

    /// Puts the case in `state` (instead of the machine's initial state, or
    /// wherever the steps so far left it).
    ///
    /// # Panics
    ///
    /// When the previous step failed and nothing checked its error.
    #[track_caller]
    pub fn given(&mut self, state: M::State) -> &mut Self {
        self.ensure_checked();
        self.state = state;
        self.last = None;
        self
    }

    /// Works on the deps before the next step: set the expectations of a
    /// mock, e.g. `.before(|mock| { mock.expect_now().times(1).return_const(5_u64); })`.
    ///
    /// # Panics
    ///
    /// When `f` panics; the message names the case and the step.
    #[track_caller]
    pub fn before(&mut self, f: impl FnOnce(&mut D)) -> &mut Self {
        let context = format!("case {:?}, before step {}", self.name, self.number + 1);
        guarded(|| format!("{context}: a before(..) hook panicked"), || f(&mut self.deps));
        self
    }

    /// Runs `command` on the current state, with the declared-table checks:
    /// the suite's `before_each` hooks, the transition, then its `after_each`
    /// hooks. On success the case moves to the new state.
    ///
    /// # Panics
    ///
    /// When the previous step failed and nothing checked its error, or when
    /// the transition or a hook panics (a mock called without a matching
    /// expectation); the message names the case and the step.
    #[track_caller]
    pub fn when(&mut self, command: M::Command) -> &mut Self {
        self.ensure_checked();
        self.number += 1;
        let (from, command_kind) = (self.state.kind(), command.kind());
        let label = format!("step {} ({} on {})", self.number, command_kind.as_str(), from.as_str());
        let context = format!("case {:?}, {label}", self.name);
        let step = Step { case: &self.name, number: self.number, from, command: command_kind };
        let suite = &mut *self.suite;
        for hook in &mut suite.before_each {
            guarded(|| format!("{context}: a before_each hook panicked"), || hook(&mut self.deps, &step));
        }
        let view = suite.view;
        let result = guarded(
            || format!("{context}: the transition panicked"),
            || block::transition::<M>(view(&self.deps), &command, &self.state),
        );
        for hook in &mut suite.after_each {
            guarded(|| format!("{context}: an after_each hook panicked"), || hook(&mut self.deps, &step));
        }

        let outcome = result.as_ref().map(State::kind).map_err(ErrorKind::of);
        suite.recorded.transitions.insert(Transition::<StateKind<M>, CommandKind<M>> {
            from,
            command: command_kind,
            outcome,
        });
        suite.recorded.state(&self.state);
        suite.recorded.command(&command);
        suite.steps += 1;
        let result = result.map(|next| {
            suite.recorded.state(&next);
            self.state = next;
        });
        self.last = Some(Last { label, result, checked: false });
        self
    }

    /// Checks that the last step produced exactly `expected` (a state or a
    /// reference to one).
    ///
    /// # Panics
    ///
    /// When there was no step, the step failed, or its state differs from
    /// `expected`; the message shows a line diff of the two, pretty-printed.
    #[track_caller]
    pub fn then(&mut self, expected: impl Borrow<M::State>) -> &mut Self {
        let expected = expected.borrow();
        match self.last_result("then") {
            Ok(()) if self.state == *expected => {}
            Ok(()) => {
                let (expected, actual) = (format!("{expected:#?}"), format!("{:#?}", self.state));
                if expected == actual {
                    self.fail(format_args!(
                        "the state is not equal to the expected one, yet prints the same:\n{actual}"
                    ));
                }
                // States are short: show them whole, so the variant and
                // the neighbouring fields are in view.
                let context = if expected.lines().count().max(actual.lines().count()) <= 60 { usize::MAX } else { 8 };
                let diff = diff::lines(&expected, &actual, "expected", "actual", context);
                self.fail(format_args!("the state differs from the expected one\n{diff}"));
            }
            Err(error) => {
                self.fail(format_args!("expected state {expected:?}, but the step failed: {error} ({error:?})"))
            }
        }
        self.mark_checked();
        self
    }

    /// Checks that the last step produced a state of kind `kind`, whatever
    /// its data.
    ///
    /// # Panics
    ///
    /// When there was no step, the step failed, or produced another kind.
    #[track_caller]
    pub fn then_kind(&mut self, kind: StateKind<M>) -> &mut Self {
        match self.last_result("then_kind") {
            Ok(()) if self.state.kind() == kind => {}
            Ok(()) => self.fail(format_args!("expected a state of kind {kind}, got {:#?}", self.state)),
            Err(error) => self.fail(format_args!("expected a state of kind {kind}, but the step failed: {error}")),
        }
        self.mark_checked();
        self
    }

    /// Checks that the last step failed with an error `matches` accepts
    /// (`|e| matches!(e, Error::NotAllowed { .. })`). The state is unchanged.
    ///
    /// # Panics
    ///
    /// When there was no step, the step succeeded, or `matches` returned false.
    #[track_caller]
    pub fn then_error(&mut self, matches: impl FnOnce(&Error<M::Error>) -> bool) -> &mut Self {
        match self.last_result("then_error") {
            Err(error) if matches(error) => {}
            Err(error) => self.fail(format_args!("the error does not match: {error} ({error:?})")),
            Ok(()) => self.fail(format_args!("expected an error, but the step produced {:#?}", self.state)),
        }
        self.mark_checked();
        self
    }

    /// Checks that the transition returned the machine's own error and that
    /// `matches` accepts it (`|e| matches!(e, OrderError::Empty)`).
    ///
    /// # Panics
    ///
    /// When there was no step, the step succeeded, failed otherwise (refused
    /// by the table, say), or `matches` returned false.
    #[track_caller]
    pub fn then_rejected(&mut self, matches: impl FnOnce(&M::Error) -> bool) -> &mut Self {
        match self.last_result("then_rejected") {
            Err(Error::Rejected(error)) if matches(error) => {}
            Err(Error::Rejected(error)) => {
                self.fail(format_args!("the machine's error does not match: {error} ({error:?})"));
            }
            Err(error) => self.fail(format_args!("expected the machine's own error, got: {error} ({error:?})")),
            Ok(()) => self.fail(format_args!("expected the machine's error, but the step produced {:#?}", self.state)),
        }
        self.mark_checked();
        self
    }

    /// Works on the deps after the last step: check what a mock saw, or
    /// `.after(|mock| mock.checkpoint())`.
    ///
    /// # Panics
    ///
    /// When `f` panics (a mock's unmet expectation); the message names the
    /// case and the step.
    #[track_caller]
    pub fn after(&mut self, f: impl FnOnce(&mut D)) -> &mut Self {
        let context = self.context("after the step");
        guarded(|| format!("{context}: an after(..) hook panicked"), || f(&mut self.deps));
        self
    }

    /// Runs `f` on a new case named `"{this case} / {name}"` that starts from
    /// this case's current state with fresh deps; then this case goes on
    /// where it was. Forks may fork again.
    ///
    /// # Panics
    ///
    /// When the previous step failed and nothing checked its error, or when
    /// the fork fails.
    #[track_caller]
    pub fn fork(&mut self, name: &str, f: impl FnOnce(&mut Case<'_, M, D>)) -> &mut Self {
        self.ensure_checked();
        self.suite.cases += 1;
        let deps = (self.suite.make_deps)();
        let name = format!("{} / {name}", self.name);
        let mut fork = Case::start(&mut *self.suite, name, deps, self.state.clone(), self.number);
        f(&mut fork);
        drop(fork);
        self
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> &M::State {
        &self.state
    }

    /// The case's deps.
    #[must_use]
    pub fn deps(&self) -> &D {
        &self.deps
    }

    /// The case's deps, to change between steps.
    #[must_use]
    pub fn deps_mut(&mut self) -> &mut D {
        &mut self.deps
    }

    /// The case's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last step's result; fails when there was none.
    #[track_caller]
    fn last_result(&self, method: &str) -> &Result<(), Error<M::Error>> {
        match &self.last {
            Some(last) => &last.result,
            None => self.fail(format_args!("{method}(..) needs a when(..) step before it")),
        }
    }

    fn mark_checked(&mut self) {
        if let Some(last) = &mut self.last {
            last.checked = true;
        }
    }

    /// Fails when the last step failed and no `then…` looked at it.
    #[track_caller]
    fn ensure_checked(&self) {
        if let Some(Last { result: Err(error), checked: false, .. }) = &self.last {
            self.fail(format_args!(
                "failed with: {error} ({error:?}); expect it with then_error(..) or then_rejected(..)"
            ));
        }
    }

    /// `case "name", step 2 (Confirm on Pending)`, or `case "name", {otherwise}`
    /// before the first step.
    fn context(&self, otherwise: &str) -> String {
        let at = self.last.as_ref().map_or(otherwise, |last| last.label.as_str());
        format!("case {:?}, {at}", self.name)
    }

    #[track_caller]
    fn fail(&self, message: fmt::Arguments<'_>) -> ! {
        panic!("{}: {message}", self.context("before the first step"));
    }
}

impl<M: AsyncMachine, D> Drop for Case<'_, M, D> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Some(Last { label, result: Err(error), checked: false }) = &self.last {
            panic!(
                "case {:?}, {label}: failed with: {error}; expect it with then_error(..) or then_rejected(..)",
                self.name
            );
        }
    }
}

impl<M: AsyncMachine, D> fmt::Debug for Case<'_, M, D>
where
    M::State: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("state", &self.state)
            .field("steps", &self.number)
            .finish_non_exhaustive()
    }
}

/// Runs `f`; if it panics, panics again with `context()` and the message, so
/// a mock's complaint says which case and step it came from.
#[track_caller]
fn guarded<R>(context: impl FnOnce() -> String, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(payload) => panic!("{}: {}", context(), panic_message(payload.as_ref())),
    }
}
