//! Mermaid `stateDiagram-v2` text for a set of transitions: what the cases
//! exercised, or what the declared table allows. The text depends only on the
//! set and the kinds' declaration order, so it is the same on every run and
//! can be committed and compared.

use super::coverage::declared_transitions;
use super::golden::{self, FileError, FileStatus};
use super::record::Transition;
use crate::{Command, Kind, State, Transitions};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::path::Path;

/// A rendered Mermaid `stateDiagram-v2`.
///
/// One line per transition, sorted by source state, command, then target,
/// each in the order the enums declare their variants (`Kind`'s `Ord`):
///
/// - `[*] --> Draft` for the initial state;
/// - `Draft --> Pending : Place` for a command that produced a state;
/// - `Pending --> Pending : Confirm ✗ rejected` for one that failed (the state
///   stays, so the edge loops; the `✗` and the error's kind tell it apart —
///   Mermaid state diagrams cannot style single edges);
/// - in the declared diagram of a state with a `#[state(failure)]` variant,
///   `Pending --> Failed : Confirm ✗ failure` for each command that may fail
///   there and `Failed --> Confirmed : recover` for each state a recovery may
///   produce;
/// - in the declared diagram, `Pending --> Expired : Expire ⏰ timer` for
///   the edges of the command a due state fires
///   ([`Transitions::timer`], `#[command(timer)]`), from the states it fires
///   in;
/// - `Cancelled --> [*]` for a `#[state(terminal)]` state that appears.
///
/// State names Mermaid would read as keywords (`State`, `Note`, `Default`,
/// `Style`, …) are drawn through an alias (`state "State" as s_State`).
///
/// ```
/// use machine_core::testing::declared_diagram;
/// # use machine_core::{Command, State};
/// # #[derive(State)] enum Light { #[state(initial)] Red, Green, #[state(terminal)] Broken }
/// # #[derive(Command)] #[command(state = Light)]
/// # enum Switch { #[command(from(Red), to(Green))] Go, #[command(from(Red, Green), to(Broken))] Smash }
///
/// let text = declared_diagram::<Light, Switch>().to_string();
/// assert!(text.starts_with("stateDiagram-v2\n"));
/// assert!(text.contains("    [*] --> Red\n    Red --> Green : Go\n    Red --> Broken : Smash\n"));
/// assert!(text.ends_with("    Green --> Broken : Smash\n    Broken --> [*]\n"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagram {
    text: String,
}

impl Diagram {
    /// Draws `transitions` (in any order; duplicates are drawn once) for
    /// state type `S`, with `comments` as `%%` lines under the header.
    pub(crate) fn draw<'t, S, C>(
        transitions: impl IntoIterator<Item = &'t Transition<S::Kind, C>>,
        comments: &[String],
    ) -> Self
    where
        S: State,
        C: Kind,
    {
        Self::draw_with::<S, C>(transitions, comments, &Declared::default())
    }

    /// [`draw`](Diagram::draw), with the declared ways into and out of the
    /// failure state and the timer edges marked.
    fn draw_with<'t, S, C>(
        transitions: impl IntoIterator<Item = &'t Transition<S::Kind, C>>,
        comments: &[String],
        failing: &Declared<S::Kind, C>,
    ) -> Self
    where
        S: State,
        C: Kind,
    {
        let transitions: BTreeSet<&Transition<S::Kind, C>> = transitions.into_iter().collect();
        let initial = S::initial().kind();
        let mut kinds = BTreeSet::from([initial]);
        for transition in &transitions {
            kinds.insert(transition.from);
            if let Ok(to) = transition.outcome {
                kinds.insert(to);
            }
        }
        if let Some(failed) = failing.kind {
            kinds.insert(failed);
            kinds.extend(failing.into.iter().map(|(from, _)| *from));
            kinds.extend(failing.recovers_to.iter().copied());
        }

        let mut text = String::from("stateDiagram-v2\n");
        // Writing to a String cannot fail; `let _` keeps that visible.
        for comment in comments {
            let _ = writeln!(text, "    %% {}", comment.replace('\n', " "));
        }
        for &kind in &kinds {
            if let Cow::Owned(alias) = node(kind) {
                let _ = writeln!(text, "    state \"{}\" as {alias}", kind.as_str().replace(['"', '\n', '\r'], "'"));
            }
        }
        let _ = writeln!(text, "    [*] --> {}", node(initial));
        for transition in &transitions {
            let from = node(transition.from);
            let command = label(transition.command.as_str());
            let timer = if failing.timers.contains(&(transition.from, transition.command)) { " ⏰ timer" } else { "" };
            let _ = match transition.outcome {
                Ok(to) => writeln!(text, "    {from} --> {} : {command}{timer}", node(to)),
                Err(error) => writeln!(text, "    {from} --> {from} : {command} ✗ {error}"),
            };
        }
        if let Some(failed) = failing.kind {
            let failed = node(failed);
            for (from, command) in &failing.into {
                let _ = writeln!(text, "    {} --> {failed} : {} ✗ failure", node(*from), label(command.as_str()));
            }
            for to in &failing.recovers_to {
                let _ = writeln!(text, "    {failed} --> {} : recover", node(*to));
            }
        }
        for kind in S::TERMINAL.iter().filter(|kind| kinds.contains(kind)) {
            let _ = writeln!(text, "    {} --> [*]", node(*kind));
        }
        Self { text }
    }

    /// The Mermaid text, ending in a newline.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Compares the diagram with the committed file at `path`: passes when
    /// they are equal (line endings aside); writes the file when it is missing
    /// (unless the `CI` environment variable is set) or when `UPDATE_DIAGRAMS`
    /// is set; fails with a line diff otherwise.
    ///
    /// A relative `path` is relative to the current directory, which `cargo
    /// test` sets to the root of the package whose test runs (its
    /// `CARGO_MANIFEST_DIR`). For a path that does not depend on how the test
    /// binary is started, write `concat!(env!("CARGO_MANIFEST_DIR"), "/docs/diagrams/order.mmd")`.
    pub fn check_file(&self, path: impl AsRef<Path>) -> Result<FileStatus, FileError> {
        golden::check(path.as_ref(), &self.text, golden::Mode::from_env())
    }

    /// [`check_file`](Diagram::check_file) for tests.
    ///
    /// # Panics
    ///
    /// When the check fails: the committed file differs (the message holds
    /// the diff and says how to accept the change), is missing under `CI`, or
    /// cannot be read or written.
    #[track_caller]
    pub fn assert_file(&self, path: impl AsRef<Path>) {
        if let Err(error) = self.check_file(path) {
            panic!("{error}");
        }
    }
}

impl fmt::Display for Diagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The declared transition table of command type `C` over state type `S` as
/// a Mermaid diagram: every `from(..)` × `to(..)` edge of every command, with
/// the initial and terminal markers. Commands without a table
/// (`#[command(unchecked)]`) are named in a comment. The edges of the
/// command a due state fires ([`Transitions::timer`]) from that state are
/// labelled `Expire ⏰ timer`.
#[must_use]
pub fn declared_diagram<S: State, C: Transitions<S>>() -> Diagram {
    let transitions = declared_transitions::<S, C>();
    let mut failing = Declared::<S::Kind, C::Kind> { kind: S::FAILURE, ..Declared::default() };
    failing.timers = <S::Kind as Kind>::ALL
        .iter()
        .filter_map(|&state| C::timer(state).map(|command| (state, command.kind())))
        .collect();
    if let Some(failed) = S::FAILURE {
        let mut into = BTreeSet::new();
        let mut recovers_to = BTreeSet::new();
        for &command in <C as Command>::Kind::ALL {
            let Some(edge) = C::edge(command) else { continue };
            let before = into.len();
            into.extend(edge.from.iter().filter(|&&from| from != failed).map(|&from| (from, command)));
            // Only a command that can fail into the state can be recovered.
            if into.len() > before {
                recovers_to.extend(edge.to.iter().copied());
            }
        }
        failing.into = into.into_iter().collect();
        failing.recovers_to = recovers_to.into_iter().collect();
    }
    let mut comments = vec![format!(
        "The declared transition table of {}: every from(..) x to(..) edge. Drawn by machine_core::testing.",
        S::NAME
    )];
    let unchecked: Vec<&str> = <C as Command>::Kind::ALL
        .iter()
        .filter(|&&command| C::edge(command).is_none())
        .map(|command| command.as_str())
        .collect();
    if !unchecked.is_empty() {
        comments.push(format!("Commands without declared edges (not drawn): {}", unchecked.join(", ")));
    }
    if !failing.timers.is_empty() {
        comments.push("⏰ timer: the command a due state fires (#[command(timer)]), sent by the sweeper.".to_owned());
    }
    Diagram::draw_with::<S, _>(&transitions, &comments, &failing)
}

/// What the declared diagram draws beyond the edges: the ways into and out
/// of the failure state (any checked command may fail into it, whether it
/// does is the machine's [`RecordFailures`](crate::RecordFailures) choice,
/// and `recover` leaves it for a state the failed command may produce), and
/// which (state, command) pairs are timers.
struct Declared<S, C> {
    kind: Option<S>,
    into: Vec<(S, C)>,
    recovers_to: Vec<S>,
    timers: BTreeSet<(S, C)>,
}

impl<S, C> Default for Declared<S, C> {
    fn default() -> Self {
        Self { kind: None, into: Vec::new(), recovers_to: Vec::new(), timers: BTreeSet::new() }
    }
}

/// Words Mermaid's state-diagram lexer, which is case-insensitive, reads as
/// keywords wherever a state name stands (checked against mermaid 11's
/// parser: `State --> Note` does not parse).
const MERMAID_KEYWORDS: [&str; 10] =
    ["accdescr", "acctitle", "class", "classdef", "default", "note", "scale", "state", "statediagram", "style"];

/// The name a kind is drawn under: itself, or an alias when Mermaid would
/// misread it (a keyword, or characters outside `[A-Za-z0-9_]`).
fn node<K: Kind>(kind: K) -> Cow<'static, str> {
    let name = kind.as_str();
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        let index = K::ALL.iter().position(|&k| k == kind).unwrap_or(usize::MAX);
        return Cow::Owned(format!("s_{index}"));
    }
    if MERMAID_KEYWORDS.contains(&name.to_ascii_lowercase().as_str()) {
        Cow::Owned(format!("s_{name}"))
    } else {
        Cow::Borrowed(name)
    }
}

/// A command name as an edge label: Mermaid ends a label at `:`, `;` or a
/// newline, so those become spaces.
fn label(name: &str) -> Cow<'_, str> {
    if name.contains([':', ';', '\n', '\r']) {
        Cow::Owned(name.replace([':', ';', '\n', '\r'], " "))
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ErrorKind;

    #[derive(crate::State, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    #[allow(dead_code)]
    enum Payment {
        #[state(initial)]
        Due,
        Paid,
        #[state(failure)]
        Failed(crate::Failure<Pay, Payment>),
    }

    #[derive(crate::Command, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    #[command(state = Payment)]
    #[allow(dead_code)]
    enum Pay {
        #[command(from(Due), to(Paid))]
        Charge,
        #[command(from(Failed), to(Due))]
        Reset,
    }

    #[test]
    fn the_declared_diagram_draws_the_ways_into_and_out_of_the_failure_state() {
        let text = declared_diagram::<Payment, Pay>().to_string();
        let edges: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(
            edges,
            [
                "    [*] --> Due",
                "    Due --> Paid : Charge",
                "    Failed --> Due : Reset",
                "    Due --> Failed : Charge ✗ failure",
                "    Failed --> Paid : recover",
            ]
        );
    }

    #[derive(crate::State, Debug)]
    #[allow(dead_code)]
    enum Doc {
        #[state(initial)]
        Draft,
        State,
        Default,
        #[state(terminal)]
        Note,
        Published,
        DefaultView,
    }

    #[derive(crate::Command, Debug)]
    #[command(state = Doc)]
    #[allow(dead_code)]
    enum Edit {
        #[command(from(Draft), to(State, Published))]
        Save,
        #[command(from(State, Default, DefaultView), to(Note))]
        Annotate,
        #[command(unchecked)]
        Poke,
    }

    fn t(from: DocKind, command: EditKind, outcome: Result<DocKind, ErrorKind>) -> Transition<DocKind, EditKind> {
        Transition { from, command, outcome }
    }

    #[test]
    fn draws_sorted_edges_errors_and_markers_whatever_the_input_order() {
        let edges = [
            t(DocKind::Draft, EditKind::Poke, Err(ErrorKind::Rejected)),
            t(DocKind::Draft, EditKind::Save, Ok(DocKind::Published)),
            t(DocKind::Draft, EditKind::Save, Err(ErrorKind::NotAllowed)),
            t(DocKind::Draft, EditKind::Save, Ok(DocKind::Published)),
            t(DocKind::Draft, EditKind::Save, Ok(DocKind::Draft)),
        ];
        let forward = Diagram::draw::<Doc, _>(&edges, &["hello".to_owned()]);
        let backward = Diagram::draw::<Doc, _>(edges.iter().rev(), &["hello".to_owned()]);
        assert_eq!(forward, backward);
        assert_eq!(
            forward.as_str(),
            "stateDiagram-v2\n\
             \x20   %% hello\n\
             \x20   [*] --> Draft\n\
             \x20   Draft --> Draft : Save\n\
             \x20   Draft --> Published : Save\n\
             \x20   Draft --> Draft : Save ✗ not allowed\n\
             \x20   Draft --> Draft : Poke ✗ rejected\n"
        );
    }

    #[test]
    fn aliases_mermaid_keywords_and_draws_the_declared_table() {
        let text = declared_diagram::<Doc, Edit>().to_string();
        assert_eq!(
            text,
            "stateDiagram-v2\n\
             \x20   %% The declared transition table of Doc: every from(..) x to(..) edge. Drawn by machine_core::testing.\n\
             \x20   %% Commands without declared edges (not drawn): Poke\n\
             \x20   state \"State\" as s_State\n\
             \x20   state \"Default\" as s_Default\n\
             \x20   state \"Note\" as s_Note\n\
             \x20   [*] --> Draft\n\
             \x20   Draft --> s_State : Save\n\
             \x20   Draft --> Published : Save\n\
             \x20   s_State --> s_Note : Annotate\n\
             \x20   s_Default --> s_Note : Annotate\n\
             \x20   DefaultView --> s_Note : Annotate\n\
             \x20   s_Note --> [*]\n"
        );
    }

    #[derive(crate::State, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    #[allow(dead_code)]
    enum Hold {
        #[state(initial)]
        Free,
        Held {
            #[state(due)]
            until: crate::timers::Deadline,
        },
        Reminded(#[state(due)] Option<crate::timers::Deadline>),
        #[state(terminal)]
        Lapsed,
        #[state(failure)]
        Failed(crate::Failure<HoldCommand, Hold>),
    }

    #[derive(crate::Command, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    #[command(state = Hold)]
    #[allow(dead_code)]
    enum HoldCommand {
        #[command(from(Free), to(Held))]
        Take { until: crate::timers::Deadline },
        #[command(timer, from(Held), to(Reminded, Lapsed))]
        Remind,
        #[command(timer, from(Reminded), to(Lapsed))]
        Lapse,
        #[command(from(Held, Reminded), to(Lapsed))]
        Release,
    }

    #[test]
    fn the_declared_diagram_marks_the_edges_timers_fire() {
        let text = declared_diagram::<Hold, HoldCommand>().to_string();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "    %% The declared transition table of Hold: every from(..) x to(..) edge. Drawn by machine_core::testing.",
                "    %% ⏰ timer: the command a due state fires (#[command(timer)]), sent by the sweeper.",
                "    [*] --> Free",
                "    Free --> Held : Take",
                "    Held --> Reminded : Remind ⏰ timer",
                "    Held --> Lapsed : Remind ⏰ timer",
                "    Held --> Lapsed : Release",
                "    Reminded --> Lapsed : Lapse ⏰ timer",
                "    Reminded --> Lapsed : Release",
                "    Free --> Failed : Take ✗ failure",
                "    Held --> Failed : Remind ✗ failure",
                "    Held --> Failed : Release ✗ failure",
                "    Reminded --> Failed : Lapse ✗ failure",
                "    Reminded --> Failed : Release ✗ failure",
                "    Failed --> Held : recover",
                "    Failed --> Reminded : recover",
                "    Failed --> Lapsed : recover",
                "    Lapsed --> [*]",
            ]
        );
    }

    #[test]
    fn labels_cannot_end_early() {
        assert_eq!(label("a:b;c"), "a b c");
        assert_eq!(label("Place"), "Place");
    }
}
