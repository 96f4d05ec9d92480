//! What a [`Runner::remove_terminal`](super::Runner::remove_terminal) run is
//! told and tells back: which finished records it takes, how it pages and
//! reports, and the archive each record is handed to before it goes.

use super::outcome::HistoryItem;
use crate::Kind;
use crate::machine::AsyncMachine;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// Which records [`Runner::remove_terminal`](crate::Runner::remove_terminal)
/// removes, how it pages, and where it archives them first.
///
/// By default: every record in any `#[state(terminal)]` state, whatever its
/// age, in pages of 256, nothing archived. A service keeps finished records
/// for a while and removes them in a periodic job:
///
/// ```
/// use machine_core::retention::Terminal;
/// # #[derive(machine_core::State)] enum Order { #[state(initial)] Draft, #[state(terminal)] Cancelled }
///
/// let thirty_days_ago: u64 = 1_700_000_000_000 - 30 * 86_400_000;
/// let terminal = Terminal::default()
///     .kind(OrderKind::Cancelled)
///     .finished_before(thirty_days_ago)
///     .page(500)
///     .progress(|progress| eprintln!("{} removed of {} seen", progress.removed, progress.scanned));
/// # drop(terminal);
/// ```
#[derive(Clone)]
pub struct Terminal<A = NoArchive> {
    pub(crate) page: u32,
    pub(crate) after: Option<String>,
    pub(crate) before: Option<u64>,
    pub(crate) kinds: Vec<&'static str>,
    pub(crate) progress: Option<Report>,
    pub(crate) archive: Option<A>,
}

/// What [`Terminal::progress`] calls after every page.
type Report = Arc<dyn Fn(&Progress) + Send + Sync>;

impl Default for Terminal {
    /// Every terminal record, in pages of 256 from the first id, nothing
    /// archived, no progress reports.
    fn default() -> Self {
        Self { page: 256, after: None, before: None, kinds: Vec::new(), progress: None, archive: None }
    }
}

impl<A> Terminal<A> {
    /// Lists `records` (at least 1) per page.
    #[must_use]
    pub fn page(mut self, records: u32) -> Self {
        self.page = records.max(1);
        self
    }

    /// Starts after id `id`: resumes a run that stopped (pass the last
    /// [`Progress::last_id`] it reported).
    #[must_use]
    pub fn after(mut self, id: impl Into<String>) -> Self {
        self.after = Some(id.into());
        self
    }

    /// Only records whose last change was written before `at`
    /// (milliseconds since the Unix epoch, compared with the store's
    /// [`updated_at`](crate::store::Record::updated_at)): those finished
    /// for long enough. Checked again when each record is removed, so one
    /// written to since it was listed stays.
    #[must_use]
    pub fn finished_before(mut self, at: u64) -> Self {
        self.before = Some(at);
        self
    }

    /// Only records in terminal state `kind` (call again to add kinds): a
    /// retention per outcome, such as cancelled orders after a month and
    /// delivered ones after seven years. A kind that is not one of the
    /// machine's `#[state(terminal)]` kinds fails the run before it removes
    /// anything ([`Error::NotTerminal`](crate::Error::NotTerminal)).
    #[must_use]
    pub fn kind(mut self, kind: impl Kind) -> Self {
        self.kinds.push(kind.as_str());
        self
    }

    /// Calls `report` after every page, with the totals so far.
    #[must_use]
    pub fn progress(mut self, report: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(report));
        self
    }

    /// Hands each record, with its whole history, to `archive` before
    /// removing it; a record the archive refuses is not removed. A record
    /// is removed only at the version archived: one written to meanwhile
    /// stays (and is archived again, at its new version, by a later run).
    #[must_use]
    pub fn archive<B>(self, archive: B) -> Terminal<B> {
        Terminal {
            page: self.page,
            after: self.after,
            before: self.before,
            kinds: self.kinds,
            progress: self.progress,
            archive: Some(archive),
        }
    }
}

impl<A> fmt::Debug for Terminal<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Terminal")
            .field("page", &self.page)
            .field("after", &self.after)
            .field("finished_before", &self.before)
            .field("kinds", &self.kinds)
            .field("progress", &self.progress.is_some())
            .field("archive", &self.archive.is_some())
            .finish()
    }
}

/// The totals of a [`Runner::remove_terminal`](crate::Runner::remove_terminal)
/// run so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Records listed (in a terminal kind).
    pub scanned: u64,
    /// Records removed.
    pub removed: u64,
    /// Records left as they are: finished too recently, or changed since
    /// they were listed (written to, no longer terminal, already removed).
    pub skipped: u64,
    /// Records that could not be removed (see [`Removed::failures`]).
    pub failed: u64,
    /// The last id listed: where to resume ([`Terminal::after`]).
    pub last_id: Option<String>,
}

/// What a [`Runner::remove_terminal`](crate::Runner::remove_terminal) run did.
#[derive(Debug)]
pub struct Removed<E> {
    /// The totals.
    pub progress: Progress,
    /// The records that could not be removed, with why: one whose state
    /// does not decode (corrupt, or stored by a newer schema version), one
    /// the archive refused ([`Error::Archive`](crate::Error::Archive)), or
    /// a store failure on it. Each is left as it was.
    pub failures: Vec<(String, crate::Error<E>)>,
}

/// A record as it is handed to an [`Archive`] before it is removed: its last
/// state and version, and its history as the store still holds it (entries
/// older than a [`prune_history`](crate::store::Store::prune_history) bound
/// are gone already), decoded where it can be.
#[derive(Debug, Clone)]
pub struct Archived<C, S> {
    /// The record's id.
    pub id: String,
    /// Its state at `version`: what is removed.
    pub state: S,
    /// Its last version.
    pub version: u64,
    /// When that version was written, in milliseconds since the Unix epoch.
    pub updated_at: u64,
    /// Its history up to `version`, oldest first.
    pub history: Vec<HistoryItem<C, S>>,
}

/// What an [`Archive`] fails with: any error, kept as the source of the
/// run's [`Error::Archive`](crate::Error::Archive) for the record.
pub type ArchiveError = Box<dyn std::error::Error + Send + Sync>;

/// Where [`Terminal::archive`] sends each record before it is removed: cold
/// storage, an audit store, an export file.
///
/// The record is removed only after `archive` returned `Ok`, and only if it
/// is still at the version archived; so a record may be archived more than
/// once (a failed removal, a record written to meanwhile, a run resumed
/// after a crash). Key what you keep by id and version, and a repeat is
/// harmless.
///
/// ```
/// use machine_core::retention::{Archive, ArchiveError, Archived};
/// use machine_core::{AsyncMachine, Machine};
/// use std::sync::Mutex;
/// # #[derive(machine_core::State, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// # enum Ticket { #[state(initial)] Open, #[state(terminal)] Closed }
/// # #[derive(machine_core::Command, Clone, Debug, serde::Serialize, serde::Deserialize)]
/// # #[command(state = Ticket)] enum TicketCommand { #[command(from(Open), to(Closed))] Close }
/// # struct Tickets;
/// # impl Machine for Tickets {
/// #     type State = Ticket; type Command = TicketCommand; type Deps = (); type Error = std::convert::Infallible;
/// #     fn transition(_: &(), _: &TicketCommand, _: &Ticket) -> Result<Ticket, Self::Error> { Ok(Ticket::Closed) }
/// # }
///
/// /// Keeps one JSON line per removed ticket.
/// struct JsonLines(Mutex<Vec<String>>);
///
/// impl Archive<Tickets> for JsonLines {
///     async fn archive(&self, record: &Archived<TicketCommand, Ticket>) -> Result<(), ArchiveError> {
///         let line = serde_json::json!({ "id": record.id, "version": record.version, "state": record.state });
///         self.0.lock().map_err(|_| "poisoned")?.push(line.to_string());
///         Ok(())
///     }
/// }
/// # drop(JsonLines(Mutex::new(Vec::new())));
/// ```
pub trait Archive<M: AsyncMachine>: Send + Sync {
    /// Keeps `record`. An `Err` leaves it in the store, reported in
    /// [`Removed::failures`]; the run goes on with the next record.
    fn archive(&self, record: &Archived<M::Command, M::State>)
    -> impl Future<Output = Result<(), ArchiveError>> + Send;
}

/// No archive: what a [`Terminal`] holds until [`Terminal::archive`] names
/// one (records are removed without being read first).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoArchive;

impl<M: AsyncMachine> Archive<M> for NoArchive {
    async fn archive(&self, _: &Archived<M::Command, M::State>) -> Result<(), ArchiveError> {
        Ok(())
    }
}
