//! `testing::Suite` as users meet it: cases with mockall deps behind a trait
//! object, failure messages, forks, hooks, the drawn diagram, coverage of
//! the declared table, and exploration.

use machine_core::prelude::*;
use machine_core::testing::{ErrorKind, Explore, FileError, FileStatus, Suite, Transition, UPDATE_ENV};
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

#[derive(State, Clone, Debug, PartialEq)]
enum Tab {
    #[state(initial)]
    Empty,
    Open {
        items: Vec<u32>,
    },
    Paid {
        total: u32,
        at: u64,
    },
    #[state(terminal)]
    Closed,
}

#[derive(Command, Clone, Debug, PartialEq)]
#[command(state = Tab)]
enum TabCommand {
    #[command(from(Empty, Open), to(Open))]
    Add(u32),
    #[command(from(Open), to(Paid))]
    Pay,
    #[command(from(Empty, Open, Paid), to(Closed))]
    Close,
    /// Unchecked: the table says nothing about it.
    #[command(unchecked)]
    Touch,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum TabError {
    #[error("card declined")]
    Declined,
    #[error("nothing to pay")]
    Nothing,
}

#[mockall::automock]
trait Bank: Send + Sync {
    fn charge(&self, amount: u32) -> Result<(), TabError>;
    fn now(&self) -> u64;
}

struct Tabs;

impl Machine for Tabs {
    type State = Tab;
    type Command = TabCommand;
    type Deps = dyn Bank;
    type Error = TabError;

    fn transition(bank: &dyn Bank, command: &TabCommand, state: &Tab) -> Result<Tab, TabError> {
        match (command, state) {
            (TabCommand::Add(price), Tab::Empty) => Ok(Tab::Open { items: vec![*price] }),
            (TabCommand::Add(price), Tab::Open { items }) => Ok(Tab::Open { items: [&items[..], &[*price]].concat() }),
            (TabCommand::Pay, Tab::Open { items }) => {
                let total = items.iter().sum();
                if total == 0 {
                    return Err(TabError::Nothing);
                }
                bank.charge(total)?;
                Ok(Tab::Paid { total, at: bank.now() })
            }
            (TabCommand::Close, _) => Ok(Tab::Closed),
            (_, state) => Ok(state.clone()),
        }
    }
}

fn suite() -> Suite<Tabs, MockBank> {
    Suite::<Tabs, MockBank>::with_deps_as(MockBank::new, |bank| bank)
}

/// A bank that accepts every charge at time 7.
fn generous() -> MockBank {
    let mut bank = MockBank::new();
    bank.expect_charge().returning(|_| Ok(()));
    bank.expect_now().return_const(7_u64);
    bank
}

/// The panic message of `f`, which must panic.
fn panic_of(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("should have panicked");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn steps_chain_on_the_resulting_state_with_per_step_mock_expectations() {
    let mut suite = suite().after_each(|bank, _| bank.checkpoint());
    suite
        .case("add twice, pay")
        .when(TabCommand::Add(3))
        .then(Tab::Open { items: vec![3] })
        .when(TabCommand::Add(4))
        .then(Tab::Open { items: vec![3, 4] })
        .before(|bank| {
            bank.expect_charge().with(mockall::predicate::eq(7)).times(1).returning(|_| Ok(()));
            bank.expect_now().times(1).return_const(1_700_000_000_u64);
        })
        .when(TabCommand::Pay)
        .then(Tab::Paid { total: 7, at: 1_700_000_000 })
        .when(TabCommand::Close)
        .then_kind(TabKind::Closed);
    assert_eq!((suite.cases(), suite.steps()), (1, 4));
}

#[test]
fn a_wrong_state_names_case_and_step_and_shows_a_diff() {
    let mut suite = suite();
    let message = panic_of(|| {
        suite
            .case("wrong items")
            .given(Tab::Open { items: vec![1] })
            .when(TabCommand::Add(2))
            .then(Tab::Open { items: vec![1, 3] });
    });
    assert!(message.starts_with("case \"wrong items\", step 1 (Add on Open): the state differs"), "{message}");
    assert!(message.contains("--- expected\n+++ actual\n"), "{message}");
    assert!(message.contains("-         3,\n+         2,\n"), "{message}");
}

#[test]
fn errors_are_matched_by_predicates_and_leave_the_state() {
    let mut suite = suite();
    suite
        .case("declined, then refused")
        .given(Tab::Open { items: vec![5] })
        .before(|bank| {
            bank.expect_charge().returning(|_| Err(TabError::Declined));
        })
        .when(TabCommand::Pay)
        .then_rejected(|error| *error == TabError::Declined)
        .when(TabCommand::Add(1))
        .then(Tab::Open { items: vec![5, 1] })
        .given(Tab::Closed)
        .when(TabCommand::Pay)
        .then_error(|error| matches!(error, Error::NotAllowed { command: "Pay", state: "Closed", .. }));
    assert!(suite.transitions().contains(&Transition {
        from: TabKind::Open,
        command: TabCommandKind::Pay,
        outcome: Err(ErrorKind::Rejected),
    }));
}

#[test]
fn a_mismatching_error_or_a_success_fails_then_error() {
    let mut suite = suite();
    let message = panic_of(|| {
        suite.case("refused").when(TabCommand::Pay).then_rejected(|_| true);
    });
    assert!(message.contains("step 1 (Pay on Empty): expected the machine's own error, got: command Pay"), "{message}");

    let message = panic_of(|| {
        suite.case("succeeds").when(TabCommand::Add(1)).then_error(|_| true);
    });
    assert!(message.contains("case \"succeeds\", step 1 (Add on Empty): expected an error, but the step produced"));
}

#[test]
fn an_unexpected_error_fails_at_the_next_step_or_the_end_of_the_case() {
    let mut suite = suite();
    let message = panic_of(|| {
        suite.case("next step").when(TabCommand::Pay).when(TabCommand::Add(1));
    });
    assert!(message.starts_with("case \"next step\", step 1 (Pay on Empty): failed with: command Pay"), "{message}");

    let message = panic_of(|| {
        suite.case("end of case").when(TabCommand::Add(1)).when(TabCommand::Pay);
    });
    // Add(1) opened the tab with a total of 1, so Pay reaches the bank mock,
    // which has no expectation: the panic names the step.
    assert!(message.starts_with("case \"end of case\", step 2 (Pay on Open): the transition panicked:"), "{message}");

    let message = panic_of(|| {
        suite.case("last step").given(Tab::Open { items: vec![0] }).when(TabCommand::Pay);
    });
    assert!(message.starts_with("case \"last step\", step 1 (Pay on Open): failed with: refused"), "{message}");
}

#[test]
fn then_before_any_step_is_a_mistake() {
    let mut suite = suite();
    let message = panic_of(|| {
        suite.case("no step").then(Tab::Empty);
    });
    assert_eq!(message, "case \"no step\", before the first step: then(..) needs a when(..) step before it");
}

#[test]
fn forks_start_from_the_current_state_with_fresh_deps_and_continue_numbering() {
    let made = Rc::new(RefCell::new(0));
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (made_in, seen_in) = (Rc::clone(&made), Rc::clone(&seen));
    let mut suite = Suite::<Tabs, MockBank>::with_deps_as(
        move || {
            *made_in.borrow_mut() += 1;
            generous()
        },
        |bank| bank,
    )
    .before_each(move |_, step| {
        seen_in.borrow_mut().push(format!("{} #{} {} on {}", step.case, step.number, step.command, step.from));
    });

    suite
        .case("tab")
        .when(TabCommand::Add(2))
        .fork("paid", |case| {
            assert_eq!(case.state(), &Tab::Open { items: vec![2] });
            case.when(TabCommand::Pay).then(Tab::Paid { total: 2, at: 7 }).fork("closed", |case| {
                case.when(TabCommand::Close).then(Tab::Closed);
            });
        })
        .when(TabCommand::Close)
        .then(Tab::Closed);

    assert_eq!(*made.borrow(), 3, "one deps per case and per fork");
    assert_eq!(suite.cases(), 3);
    assert_eq!(
        *seen.borrow(),
        [
            "tab #1 Add on Empty",
            "tab / paid #2 Pay on Open",
            "tab / paid / closed #3 Close on Paid",
            "tab #2 Close on Open",
        ]
    );
}

#[test]
fn hooks_run_in_order_around_each_step() {
    let log = Rc::new(RefCell::new(Vec::<String>::new()));
    let (before, after) = (Rc::clone(&log), Rc::clone(&log));
    let mut suite = suite()
        .before_each(move |_, step| before.borrow_mut().push(format!("before_each {}", step.number)))
        .after_each(move |_, step| after.borrow_mut().push(format!("after_each {}", step.number)));
    let case_log = Rc::clone(&log);
    suite
        .case("hooks")
        .before(|_| case_log.borrow_mut().push("before".into()))
        .when(TabCommand::Add(1))
        .after(|_| case_log.borrow_mut().push("after".into()))
        .then_kind(TabKind::Open);
    assert_eq!(*log.borrow(), ["before", "before_each 1", "after_each 1", "after"]);
}

#[test]
fn a_failing_hook_names_the_case_and_step() {
    let mut suite = suite().after_each(|bank, _| bank.checkpoint());
    let message = panic_of(|| {
        suite
            .case("unmet expectation")
            .before(|bank| {
                bank.expect_now().times(1).return_const(1_u64);
            })
            .when(TabCommand::Add(1));
    });
    assert!(
        message.starts_with("case \"unmet expectation\", step 1 (Add on Empty): an after_each hook panicked:"),
        "{message}"
    );
}

/// A case to run on a suite.
type TabCase = Box<dyn Fn(&mut Suite<Tabs, MockBank>)>;

/// The same three cases, in either order.
fn run_cases(suite: &mut Suite<Tabs, MockBank>, reversed: bool) {
    let mut cases: Vec<TabCase> = vec![
        Box::new(|suite| {
            suite.case("pay").given(Tab::Open { items: vec![2] }).when(TabCommand::Pay).then_kind(TabKind::Paid);
        }),
        Box::new(|suite| {
            suite
                .case("open")
                .when(TabCommand::Add(1))
                .then_kind(TabKind::Open)
                .when(TabCommand::Close)
                .then(Tab::Closed);
        }),
        Box::new(|suite| {
            suite
                .case("nothing to pay")
                .given(Tab::Open { items: vec![0] })
                .when(TabCommand::Pay)
                .then_rejected(|e| *e == TabError::Nothing)
                .given(Tab::Empty)
                .when(TabCommand::Pay)
                .then_error(|_| true);
        }),
    ];
    if reversed {
        cases.reverse();
    }
    for case in cases {
        case(suite);
    }
}

const TABS_DIAGRAM: &str = "stateDiagram-v2
    %% Drawn by machine_core::testing from the transitions the tests exercised (✗ marks a command that failed; the state stayed). Regenerate with UPDATE_DIAGRAMS=1.
    [*] --> Empty
    Empty --> Open : Add
    Empty --> Empty : Pay ✗ not allowed
    Open --> Paid : Pay
    Open --> Open : Pay ✗ rejected
    Open --> Closed : Close
    Closed --> [*]
";

#[test]
fn the_diagram_is_sorted_and_independent_of_case_order() {
    let (mut forward, mut backward) = (
        Suite::<Tabs, MockBank>::with_deps_as(generous, |b| b),
        Suite::<Tabs, MockBank>::with_deps_as(generous, |b| b),
    );
    run_cases(&mut forward, false);
    run_cases(&mut backward, true);
    assert_eq!(forward.diagram(), backward.diagram());
    assert_eq!(forward.diagram().as_str(), TABS_DIAGRAM);
}

#[test]
fn assert_diagram_passes_on_the_committed_file_and_shows_drift() {
    let mut suite = Suite::<Tabs, MockBank>::with_deps_as(generous, |b| b);
    run_cases(&mut suite, false);
    let dir = std::env::temp_dir().join(format!("machine-suite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tabs.mmd");

    std::fs::write(&path, TABS_DIAGRAM).unwrap();
    suite.assert_diagram(&path);

    std::fs::write(&path, TABS_DIAGRAM.replace("    Open --> Closed : Close\n", "")).unwrap();
    match suite.diagram().check_file(&path) {
        Err(FileError::Differs { diff, .. }) => {
            assert!(std::env::var_os(UPDATE_ENV).is_none());
            let expected =
                "      Open --> Open : Pay ✗ rejected\n+     Open --> Closed : Close\n      Closed --> [*]\n";
            assert!(diff.contains(expected), "{diff}");
        }
        // Running the whole suite with UPDATE_DIAGRAMS=1 rewrites it instead.
        Ok(FileStatus::Updated) => assert!(std::env::var_os(UPDATE_ENV).is_some()),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn coverage_lists_missing_and_undeclared_edges() {
    let mut suite = Suite::<Tabs, MockBank>::with_deps_as(generous, |b| b);
    run_cases(&mut suite, false);
    suite.case("touch").when(TabCommand::Touch).then(Tab::Empty);

    let coverage = suite.coverage();
    assert_eq!(coverage.declared, 6);
    let missing: Vec<String> = coverage.missing.iter().map(ToString::to_string).collect();
    assert_eq!(missing, ["Empty --Close--> Closed", "Open --Add--> Open", "Paid --Close--> Closed"]);
    let undeclared: Vec<String> = coverage.undeclared.iter().map(ToString::to_string).collect();
    assert_eq!(undeclared, ["Empty --Touch--> Empty"]);
    assert!(!coverage.is_complete());

    let message = panic_of(|| suite.assert_covered());
    assert!(message.contains("Tab: not every declared edge was exercised"), "{message}");
    assert!(message.contains("declared edges exercised: 3 of 6\n"), "{message}");
    assert!(message.contains("  Paid --Close--> Closed\n"), "{message}");

    suite
        .case("the rest")
        .when(TabCommand::Close)
        .given(Tab::Open { items: vec![1] })
        .when(TabCommand::Add(1))
        .given(Tab::Paid { total: 1, at: 1 })
        .when(TabCommand::Close);
    suite.assert_covered();
}

#[test]
fn exploration_finds_what_the_cases_missed_and_is_repeatable() {
    let mut suite = Suite::<Tabs, MockBank>::with_deps_as(generous, |b| b);
    run_cases(&mut suite, false);

    let first = suite.explore(Explore::seeded(1), generous).clone();
    let found: Vec<String> = first.findings.iter().map(|f| f.transition.to_string()).collect();
    assert_eq!(found, ["Empty --Close--> Closed", "Open --Add--> Open", "Paid --Close--> Closed",]);
    assert_eq!(first.findings[2].command, "Close");
    assert!(first.findings[2].state.starts_with("Paid {"), "{:?}", first.findings[2]);
    assert_eq!(suite.explore(Explore::seeded(1), generous), &first);

    let report = suite.report().to_string();
    assert!(
        report.starts_with("Tab: 3 case(s), 5 step(s), 5 distinct transition(s), 2 of them ending in an error\n"),
        "{report}"
    );
    assert!(
        report.contains("found 3 transition(s) no case exercised\n  Empty --Close--> Closed: Close on Empty\n"),
        "{report}"
    );
}

#[test]
fn sampled_exploration_depends_only_on_the_seed() {
    let mut suite = Suite::<Tabs, MockBank>::with_deps_as(generous, |b| b);
    run_cases(&mut suite, false);
    let sample =
        |suite: &mut Suite<Tabs, MockBank>, seed| suite.explore(Explore::seeded(seed).max_runs(5), generous).clone();
    let a = sample(&mut suite, 42);
    assert_eq!((a.runs, a.pairs), (5, 18));
    assert_eq!(sample(&mut suite, 42), a);
    let seeds_differ = (0..20).any(|seed| sample(&mut suite, seed).findings != a.findings);
    assert!(seeds_differ, "some seed samples other pairs");
}

#[test]
fn deeper_exploration_reaches_states_no_case_reached_and_reports_panics() {
    let mut suite = suite();
    suite.case("open").when(TabCommand::Add(1)).then_kind(TabKind::Open);
    suite.case("pay fails").given(Tab::Open { items: vec![0] }).when(TabCommand::Pay).then_rejected(|_| true);
    suite.case("close").when(TabCommand::Close).then(Tab::Closed);

    // A bank without expectations: charging panics, which exploration reports.
    let shallow = suite.explore(Explore::seeded(3), MockBank::new).clone();
    let panicked: Vec<_> =
        shallow.findings.iter().filter(|f| f.transition.outcome == Err(ErrorKind::Panicked)).collect();
    assert_eq!(panicked.len(), 1, "{shallow}");
    assert!(panicked[0].error.as_deref().unwrap_or_default().contains("No matching expectation"), "{panicked:?}");

    // No case reached Paid: one round finds the way there, a second one
    // the way on from it.
    let found = |suite: &mut Suite<Tabs, MockBank>, depth| -> Vec<String> {
        let exploration = suite.explore(Explore::seeded(3).depth(depth), generous);
        exploration.findings.iter().map(|f| f.transition.to_string()).collect()
    };
    assert_eq!(found(&mut suite, 1), ["Open --Add--> Open", "Open --Pay--> Paid", "Open --Close--> Closed"]);
    assert_eq!(
        found(&mut suite, 3),
        ["Open --Add--> Open", "Open --Pay--> Paid", "Open --Close--> Closed", "Paid --Close--> Closed"]
    );
}

#[derive(State, Clone, Debug, PartialEq)]
enum Dial {
    #[state(initial)]
    Low,
    High(u8),
}

#[derive(Command, Clone, Debug)]
#[command(state = Dial)]
enum Turn {
    #[command(from(Low, High), to(High))]
    Up,
}

/// A machine whose deps are a plain value (the step size).
struct Dials;

impl Machine for Dials {
    type State = Dial;
    type Command = Turn;
    type Deps = u8;
    type Error = std::convert::Infallible;

    fn transition(step: &u8, _: &Turn, state: &Dial) -> Result<Dial, Self::Error> {
        Ok(match state {
            Dial::Low => Dial::High(*step),
            Dial::High(level) => Dial::High(level.saturating_add(*step)),
        })
    }
}

#[test]
fn sized_deps_are_built_per_case_and_changed_by_hooks() {
    let mut suite = Suite::<Dials, u8>::with_deps(|| 1);
    suite
        .case("up twice")
        .when(Turn::Up)
        .then(Dial::High(1))
        .before(|step| *step = 10)
        .when(Turn::Up)
        .then(Dial::High(11));
    // `then` takes a reference as well.
    let levels = [Dial::High(1), Dial::High(2)];
    let mut case = suite.case("fresh deps");
    for expected in &levels {
        case.when(Turn::Up).then(expected);
    }
    drop(case);
    suite.assert_covered();
}
