//! Every way a command can fail, as typed values: the user's own error, the
//! declared table, concurrency, the store, and stored data.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Two writers raced for the same record and this one lost.
///
/// `attempted` is the version the loser tried to write (the version it loaded
/// plus one); `current` is the version the store held when it refused. For a
/// read-only check in a multi-record commit, `attempted` is likewise the checked
/// version plus one, so [`gap`](VersionConflict::gap) means the same everywhere.
///
/// ```
/// use machine_core::VersionConflict;
///
/// let conflict = VersionConflict::new("Order", "order-42", 4, 6);
/// assert_eq!(conflict.gap(), 3); // three writes overtook us
/// assert_eq!(
///     conflict.to_string(),
///     "version conflict on Order \"order-42\": attempted version 4, current version 6",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionConflict {
    /// The machine (record namespace) the record belongs to.
    pub machine: String,
    /// The record's id.
    pub id: String,
    /// The version this writer tried to write.
    pub attempted: u64,
    /// The version the store held instead (0: the record does not exist).
    pub current: u64,
}

impl VersionConflict {
    /// A conflict on record `(machine, id)`.
    #[must_use]
    pub fn new(machine: impl Into<String>, id: impl Into<String>, attempted: u64, current: u64) -> Self {
        Self { machine: machine.into(), id: id.into(), attempted, current }
    }

    /// How many writes overtook this writer: `current - attempted + 1`,
    /// saturating (never overflows, never below zero).
    #[must_use]
    pub fn gap(&self) -> u64 {
        self.current.saturating_sub(self.attempted).saturating_add(1)
    }
}

impl fmt::Display for VersionConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:?}` on the id quotes and escapes it, so quotes, newlines and
        // control characters in ids cannot forge or break a log line.
        write!(
            f,
            "version conflict on {} {:?}: attempted version {}, current version {}",
            self.machine, self.id, self.attempted, self.current
        )
    }
}

impl std::error::Error for VersionConflict {}

/// Why a store refused or failed an operation.
///
/// `Clone`, so one failed group commit can report the same error to every
/// caller in it; the backend's error is shared, and `source()` returns it
/// itself, so `downcast_ref` reaches the driver's type.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoreError {
    /// A write or read check found another version than expected; the whole
    /// commit was refused and nothing was written.
    Conflict(VersionConflict),
    /// An id or machine name the store does not accept.
    InvalidKey {
        /// `"id"` or `"machine name"`.
        what: &'static str,
        /// The offending value (truncated to 64 characters).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The record is at the highest version the store can hold.
    VersionOverflow {
        /// The record's machine.
        machine: String,
        /// The record's id.
        id: String,
        /// The version that cannot be incremented.
        version: u64,
    },
    /// A stored row is not what the store writes (a version of 0 or below, a
    /// value of the wrong type, text that is not UTF-8, an unknown origin):
    /// written by something other than this store. The row was left as it is;
    /// other records are not affected. Trying again cannot help: the row must
    /// be repaired.
    Corrupt {
        /// The record's machine, as stored.
        machine: String,
        /// The record's id, as stored.
        id: String,
        /// What is wrong with the row (the column and what was found there).
        reason: String,
    },
    /// The feed no longer holds the changes right after `after`: they were
    /// dropped by the store's retention (the memory store's
    /// [`Retention`](crate::store::Retention)), by
    /// [`Store::prune_history`](crate::store::Store::prune_history), or by
    /// etcd's compaction. A consumer that must not miss a change rebuilds
    /// from the records and resumes from `oldest`'s predecessor (on the
    /// memory and SQL stores `Cursor { seq: oldest.seq - 1, ..oldest }`, the
    /// last change dropped); asking again cannot help.
    FeedCompacted {
        /// The cursor asked for.
        after: crate::store::Cursor,
        /// The oldest change the feed still holds.
        oldest: crate::store::Cursor,
    },
    /// The store does not implement what the call needs (a store of your own
    /// that keeps no idempotency keys, say). Nothing was written.
    Unsupported {
        /// What is missing: `"idempotency keys"`, `"removing records"`,
        /// `"pruning history"`.
        what: &'static str,
    },
    /// The database lacks schema migrations this version needs, and the
    /// store was told not to run them on connect (`migrate(false)` on
    /// `PostgresOptions` or `SqliteOptions`). Nothing was read or written.
    /// Trying again cannot help: apply the missing migrations (the store's
    /// `migrate()`, or the SQL its `migrations()` returns) with a role
    /// allowed to run DDL.
    Unmigrated {
        /// Where the tables were looked for: the PostgreSQL schema, or
        /// `main` for SQLite.
        schema: String,
        /// The migration versions not applied, in order.
        missing: Vec<u32>,
    },
    /// The backend failed (I/O, connection, driver); `retryable` says whether
    /// the same operation may succeed if tried again. A bounded wait that ran
    /// out (connect, acquire, statement, lock) is retryable, with a
    /// [`store::Timeout`](crate::store::Timeout) as its source: see
    /// [`StoreError::timeout`].
    Backend {
        /// The backend's error.
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
        /// Whether trying again may succeed (a lost connection, a timeout).
        retryable: bool,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conflict(conflict) => conflict.fmt(f),
            Self::InvalidKey { what, value, reason } => write!(f, "invalid {what} {value:?}: {reason}"),
            Self::VersionOverflow { machine, id, version } => {
                write!(f, "version overflow on {machine} {id:?}: version {version} is the store's maximum")
            }
            Self::Corrupt { machine, id, reason } => write!(f, "corrupt record {machine} {id:?}: {reason}"),
            Self::FeedCompacted { after, oldest } => {
                write!(f, "the feed no longer holds the changes after {after}: the oldest it holds is {oldest}")
            }
            Self::Unsupported { what } => write!(f, "this store does not support {what}"),
            Self::Unmigrated { schema, missing } => {
                let missing: Vec<String> = missing.iter().map(u32::to_string).collect();
                write!(
                    f,
                    "schema {schema} lacks migrations {}: apply them (the store's `migrate()`, or the SQL of \
                     `migrations()`) with a role allowed to run DDL",
                    missing.join(", ")
                )
            }
            Self::Backend { source, .. } => write!(f, "store backend error: {source}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Conflict(conflict) => Some(conflict),
            Self::Backend { source, .. } => Some(&**source),
            Self::InvalidKey { .. }
            | Self::VersionOverflow { .. }
            | Self::Corrupt { .. }
            | Self::FeedCompacted { .. }
            | Self::Unmigrated { .. }
            | Self::Unsupported { .. } => None,
        }
    }
}

impl From<VersionConflict> for StoreError {
    fn from(conflict: VersionConflict) -> Self {
        Self::Conflict(conflict)
    }
}

impl StoreError {
    /// A backend failure from any error or message, for store implementations:
    /// `StoreError::backend("connection refused", true)`.
    pub fn backend(error: impl Into<Box<dyn std::error::Error + Send + Sync>>, retryable: bool) -> Self {
        Self::Backend { source: std::sync::Arc::from(error.into()), retryable }
    }

    /// The version conflict, when this is one.
    #[must_use]
    pub fn conflict(&self) -> Option<&VersionConflict> {
        match self {
            Self::Conflict(conflict) => Some(conflict),
            _ => None,
        }
    }

    /// Whether the operation may succeed when tried again: conflicts and
    /// retryable backend errors.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Conflict(_) => true,
            Self::Backend { retryable, .. } => *retryable,
            Self::InvalidKey { .. }
            | Self::VersionOverflow { .. }
            | Self::Corrupt { .. }
            | Self::FeedCompacted { .. }
            | Self::Unmigrated { .. }
            | Self::Unsupported { .. } => false,
        }
    }

    /// The bounded wait that ran out, when this is a timeout (a
    /// [`Backend`](Self::Backend) error whose source is a
    /// [`store::Timeout`](crate::store::Timeout)).
    #[must_use]
    pub fn timeout(&self) -> Option<&crate::store::Timeout> {
        match self {
            Self::Backend { source, .. } => source.downcast_ref(),
            _ => None,
        }
    }
}

/// Names a record in messages: `Order "order-42"`, or just the machine when
/// no record is involved ([`Instance`](crate::Instance)).
struct Record<'a>(&'a str, &'a Option<String>);

impl fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(id) => write!(f, "{} {id:?}", self.0),
            None => f.write_str(self.0),
        }
    }
}

/// Everything [`Instance::handle`](crate::Instance::handle) and the
/// [`Runner`](crate::Runner) can fail with; `E` is the machine's own error.
///
/// Where a record is involved the error names it (machine and id); errors
/// from an [`Instance`](crate::Instance), which has no record, carry `id: None`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error<E> {
    /// The transition refused with the machine's own error: a business rule
    /// said no. The state is unchanged and nothing was written.
    #[error("refused: {0}")]
    Rejected(#[source] E),

    /// The transition failed with an error the machine classifies as a
    /// failure ([`RecordFailures`](crate::RecordFailures)), and the runner,
    /// built with [`record_failures`](crate::Runner::record_failures), saved
    /// the failure state at `version`. [`Runner::recover`](crate::Runner::recover)
    /// replays the command.
    #[error("{} failed and the failure was recorded at version {version}: {source}", Record(.machine, &Some(.id.clone())))]
    FailureRecorded {
        /// The machine's error.
        source: E,
        /// The machine's name.
        machine: &'static str,
        /// The record's id.
        id: String,
        /// The version of the saved failure state.
        version: u64,
    },

    /// The declared table does not allow this command in the current state;
    /// the transition did not run.
    #[error("command {command} is not allowed in state {state} of {}", Record(.machine, .id))]
    NotAllowed {
        /// The machine's name.
        machine: &'static str,
        /// The record's id (`None` for an [`Instance`](crate::Instance)).
        id: Option<String>,
        /// The command's kind.
        command: &'static str,
        /// The current state's kind.
        state: &'static str,
    },

    /// The transition produced a state its command does not declare in
    /// `to(..)`: a bug in the transition. Nothing was written.
    #[error("command {command} moved {} from {from} to undeclared state {to}", Record(.machine, .id))]
    Undeclared {
        /// The machine's name.
        machine: &'static str,
        /// The record's id (`None` for an [`Instance`](crate::Instance)).
        id: Option<String>,
        /// The command's kind.
        command: &'static str,
        /// The kind of the state the command ran in.
        from: &'static str,
        /// The kind of the state it produced.
        to: &'static str,
    },

    /// The transition panicked: a bug in the transition or its deps. Nothing
    /// was written for this command; other commands (of a coalesced group,
    /// or later ones on the same record) are not affected.
    #[error("the transition of command {command} on {} panicked: {message}", Record(.machine, .id))]
    Panicked {
        /// The machine's name.
        machine: &'static str,
        /// The record's id (`None` for an [`Instance`](crate::Instance)).
        id: Option<String>,
        /// The command's kind.
        command: &'static str,
        /// The panic's message.
        message: String,
    },

    /// Every attempt lost a race with another writer and the retry policy
    /// gave up. `conflict` is the last one.
    #[error("gave up after {attempts} attempts: {conflict}")]
    RetriesExhausted {
        /// The last conflict.
        #[source]
        conflict: VersionConflict,
        /// How many times the command was tried.
        attempts: u32,
    },

    /// The retry policy gave up early: `conflicts.len()` conflicts in a row
    /// showed no progress (the record stayed at the same version while every
    /// attempt lost). `conflicts` is the call's whole conflict history, oldest
    /// first; `conflict` is the last one.
    #[error("gave up after {attempts} attempts, thrashing without progress: {conflict}")]
    Thrashing {
        /// The last conflict.
        #[source]
        conflict: VersionConflict,
        /// Every conflict of the call, oldest first.
        conflicts: Vec<VersionConflict>,
        /// How many times the command was tried.
        attempts: u32,
    },

    /// Waiting for another attempt would have passed the policy's total
    /// deadline. `conflict` is the last conflict.
    #[error("deadline reached after {attempts} attempts in {elapsed:?}: {conflict}")]
    DeadlineExceeded {
        /// The last conflict.
        #[source]
        conflict: VersionConflict,
        /// How many times the command was tried.
        attempts: u32,
        /// How long the call had been running when it gave up.
        elapsed: Duration,
    },

    /// The shared retry budget was spent, so this conflict was not retried.
    #[error("retry budget exhausted after {attempts} attempts: {conflict}")]
    BudgetExhausted {
        /// The last conflict.
        #[source]
        conflict: VersionConflict,
        /// How many times the command was tried.
        attempts: u32,
    },

    /// The policy's circuit breaker is open: the call failed fast, without
    /// touching the store.
    #[error("circuit open for {machine} {id:?}: calls refused for another {retry_after:?}")]
    CircuitOpen {
        /// The machine's name.
        machine: &'static str,
        /// The record's id.
        id: String,
        /// How long until the breaker lets a probe through.
        retry_after: Duration,
    },

    /// [`Runner::recover`](crate::Runner::recover) found the record in a
    /// state that is not a failure.
    #[error("nothing to recover: {machine} {id:?} is in state {state}, not a failure")]
    NotFailed {
        /// The machine's name.
        machine: &'static str,
        /// The record's id.
        id: String,
        /// The kind of the current state.
        state: &'static str,
    },

    /// [`Runner::fire`](crate::Runner::fire) found the record in a state
    /// that is not due yet, or has no due time or no declared timer command:
    /// it moved on (another sweeper fired it, a command changed it) or its
    /// time has not come. Nothing was written.
    #[error("not due: {machine} {id:?} is in state {state}{}", match due {
        Some(due) => format!(", due at {due}"),
        None => String::new(),
    })]
    NotDue {
        /// The machine's name.
        machine: &'static str,
        /// The record's id.
        id: String,
        /// The kind of the current state.
        state: &'static str,
        /// When that state is due (milliseconds since the Unix epoch), if
        /// it has a due time.
        due: Option<u64>,
    },

    /// A decision used a record it did not name among its reads.
    #[error("{machine} {id:?} is not among the decision's reads: add it with `.read(&key)`")]
    NotRead {
        /// The machine's name.
        machine: &'static str,
        /// The record's id.
        id: String,
    },

    /// A stored state or command could not be read by this code: corrupt
    /// JSON, an unknown variant, a schema change without a migration, a
    /// migration step that refused it, or a record written by a newer
    /// schema version (see [`DecodeError`]). Nothing was written.
    #[error(transparent)]
    Decode(DecodeError),

    /// A state or command could not be encoded as JSON. Nothing was written.
    #[error("cannot encode {what} for {machine} {id:?}: {source}")]
    Encode {
        /// The machine's name.
        machine: &'static str,
        /// The record's id.
        id: String,
        /// `"state"` or `"command"`.
        what: &'static str,
        /// serde's error.
        source: Arc<serde_json::Error>,
    },

    /// The call said the command creates the record
    /// ([`Request::create`](crate::Request::create)), and the record exists.
    /// Nothing was written.
    #[error("{machine} {id:?} already exists (at version {version}); the command may only create it")]
    AlreadyExists {
        /// The machine's name.
        machine: &'static str,
        /// The record's id.
        id: String,
        /// The version it is at.
        version: u64,
    },

    /// The call said the command acts on an existing record
    /// ([`Request::update`](crate::Request::update)), and there is none.
    /// Nothing was written.
    #[error("{machine} {id:?} does not exist; the command only acts on an existing record")]
    NotFound {
        /// The machine's name.
        machine: &'static str,
        /// The record's id.
        id: String,
    },

    /// The idempotency key was stored earlier with another command (or, for
    /// a decision, other reads): a client bug, as a key names one request.
    /// Nothing was written; the earlier outcome stands.
    #[error("idempotency key {key:?} of {machine} {id:?} was used for another request (version {version})")]
    KeyReused {
        /// The machine's name.
        machine: &'static str,
        /// The record's id.
        id: String,
        /// The key.
        key: String,
        /// The version the key's first request wrote.
        version: u64,
    },

    /// [`Runner::remove`](crate::Runner::remove) found the record in a
    /// state that is not `#[state(terminal)]`: only finished records are
    /// removed. Nothing was removed. Also what a
    /// [`Runner::remove_terminal`](crate::Runner::remove_terminal) run told
    /// to remove a kind that is not one of the machine's terminal kinds
    /// fails with at once (`id: None`).
    #[error("{} is in state {state}, which is not terminal: nothing removed", Record(.machine, .id))]
    NotTerminal {
        /// The machine's name.
        machine: &'static str,
        /// The record's id (`None`: a kind a run was told, not a record).
        id: Option<String>,
        /// The kind of its current state.
        state: &'static str,
    },

    /// The [`Archive`](crate::retention::Archive) of a
    /// [`Runner::remove_terminal`](crate::Runner::remove_terminal) run
    /// refused the record at `version`, so it was not removed.
    #[error("archiving {machine} {id:?} at version {version} failed, so it was not removed: {source}")]
    Archive {
        /// The machine's name.
        machine: &'static str,
        /// The record's id.
        id: String,
        /// The version handed to the archive.
        version: u64,
        /// The archive's error.
        source: Arc<dyn std::error::Error + Send + Sync>,
    },

    /// The store failed.
    #[error("store error: {0}")]
    Store(#[source] StoreError),
}

impl<E> Error<E> {
    /// The version conflict behind this error, if any: the last one of
    /// exhausted retries, or one the store reported.
    ///
    /// The same value is reachable through [`std::error::Error::source`], so
    /// `anyhow` or `Box<dyn Error>` users can `downcast_ref::<VersionConflict>()`.
    #[must_use]
    pub fn conflict(&self) -> Option<&VersionConflict> {
        match self {
            Self::RetriesExhausted { conflict, .. }
            | Self::Thrashing { conflict, .. }
            | Self::DeadlineExceeded { conflict, .. }
            | Self::BudgetExhausted { conflict, .. } => Some(conflict),
            Self::Store(store) => store.conflict(),
            _ => None,
        }
    }

    /// Whether the same command may succeed if sent again later: the retry
    /// policy gave up on conflicts, the circuit was open, or the store failed
    /// in a retryable way. The transition's and the table's refusals, and bad
    /// data, are not.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RetriesExhausted { .. }
            | Self::Thrashing { .. }
            | Self::DeadlineExceeded { .. }
            | Self::BudgetExhausted { .. }
            | Self::CircuitOpen { .. } => true,
            Self::Store(store) => store.is_retryable(),
            _ => false,
        }
    }

    /// The machine's own error, when the transition returned one (recorded or not).
    #[must_use]
    pub fn rejection(&self) -> Option<&E> {
        match self {
            Self::Rejected(error) | Self::FailureRecorded { source: error, .. } => Some(error),
            _ => None,
        }
    }

    /// The same error with the machine's error converted by `f`; every other
    /// variant is carried over as it is.
    pub fn map_rejection<F>(self, f: impl FnOnce(E) -> F) -> Error<F> {
        match self {
            Self::Rejected(e) => Error::Rejected(f(e)),
            Self::FailureRecorded { source, machine, id, version } => {
                Error::FailureRecorded { source: f(source), machine, id, version }
            }
            Self::NotAllowed { machine, id, command, state } => Error::NotAllowed { machine, id, command, state },
            Self::Undeclared { machine, id, command, from, to } => Error::Undeclared { machine, id, command, from, to },
            Self::Panicked { machine, id, command, message } => Error::Panicked { machine, id, command, message },
            Self::RetriesExhausted { conflict, attempts } => Error::RetriesExhausted { conflict, attempts },
            Self::Thrashing { conflict, conflicts, attempts } => Error::Thrashing { conflict, conflicts, attempts },
            Self::DeadlineExceeded { conflict, attempts, elapsed } => {
                Error::DeadlineExceeded { conflict, attempts, elapsed }
            }
            Self::BudgetExhausted { conflict, attempts } => Error::BudgetExhausted { conflict, attempts },
            Self::CircuitOpen { machine, id, retry_after } => Error::CircuitOpen { machine, id, retry_after },
            Self::NotFailed { machine, id, state } => Error::NotFailed { machine, id, state },
            Self::NotDue { machine, id, state, due } => Error::NotDue { machine, id, state, due },
            Self::NotRead { machine, id } => Error::NotRead { machine, id },
            Self::Decode(error) => Error::Decode(error),
            Self::Encode { machine, id, what, source } => Error::Encode { machine, id, what, source },
            Self::AlreadyExists { machine, id, version } => Error::AlreadyExists { machine, id, version },
            Self::NotFound { machine, id } => Error::NotFound { machine, id },
            Self::KeyReused { machine, id, key, version } => Error::KeyReused { machine, id, key, version },
            Self::NotTerminal { machine, id, state } => Error::NotTerminal { machine, id, state },
            Self::Archive { machine, id, version, source } => Error::Archive { machine, id, version, source },
            Self::Store(e) => Error::Store(e),
        }
    }

    /// A copy of an error that does not hold the machine's own error: what a
    /// group commit reports to each of its callers when the group as a whole
    /// failed. `Err` for [`Rejected`](Error::Rejected) and
    /// [`FailureRecorded`](Error::FailureRecorded), which hold one (returned).
    pub(crate) fn share<F>(&self) -> Result<Error<F>, &E> {
        Ok(match self {
            Self::Rejected(error) | Self::FailureRecorded { source: error, .. } => return Err(error),
            Self::NotAllowed { machine, id, command, state } => {
                Error::NotAllowed { machine, id: id.clone(), command, state }
            }
            Self::Undeclared { machine, id, command, from, to } => {
                Error::Undeclared { machine, id: id.clone(), command, from, to }
            }
            Self::Panicked { machine, id, command, message } => {
                Error::Panicked { machine, id: id.clone(), command, message: message.clone() }
            }
            Self::RetriesExhausted { conflict, attempts } => {
                Error::RetriesExhausted { conflict: conflict.clone(), attempts: *attempts }
            }
            Self::Thrashing { conflict, conflicts, attempts } => {
                Error::Thrashing { conflict: conflict.clone(), conflicts: conflicts.clone(), attempts: *attempts }
            }
            Self::DeadlineExceeded { conflict, attempts, elapsed } => {
                Error::DeadlineExceeded { conflict: conflict.clone(), attempts: *attempts, elapsed: *elapsed }
            }
            Self::BudgetExhausted { conflict, attempts } => {
                Error::BudgetExhausted { conflict: conflict.clone(), attempts: *attempts }
            }
            Self::CircuitOpen { machine, id, retry_after } => {
                Error::CircuitOpen { machine, id: id.clone(), retry_after: *retry_after }
            }
            Self::NotFailed { machine, id, state } => Error::NotFailed { machine, id: id.clone(), state },
            Self::NotDue { machine, id, state, due } => Error::NotDue { machine, id: id.clone(), state, due: *due },
            Self::NotRead { machine, id } => Error::NotRead { machine, id: id.clone() },
            Self::Decode(error) => Error::Decode(error.clone()),
            Self::Encode { machine, id, what, source } => {
                Error::Encode { machine, id: id.clone(), what, source: Arc::clone(source) }
            }
            Self::AlreadyExists { machine, id, version } => {
                Error::AlreadyExists { machine, id: id.clone(), version: *version }
            }
            Self::NotFound { machine, id } => Error::NotFound { machine, id: id.clone() },
            Self::KeyReused { machine, id, key, version } => {
                Error::KeyReused { machine, id: id.clone(), key: key.clone(), version: *version }
            }
            Self::NotTerminal { machine, id, state } => Error::NotTerminal { machine, id: id.clone(), state },
            Self::Archive { machine, id, version, source } => {
                Error::Archive { machine, id: id.clone(), version: *version, source: Arc::clone(source) }
            }
            Self::Store(store) => Error::Store(store.clone()),
        })
    }
}

impl<E> From<DecodeError> for Error<E> {
    fn from(error: DecodeError) -> Self {
        Self::Decode(error)
    }
}

/// A stored state or command that this code cannot read, naming the record,
/// the version and the payload, and the schema version it was stored with.
///
/// ```
/// use machine_core::evolution::Payload;
/// use machine_core::{DecodeCause, DecodeError};
///
/// let error = DecodeError {
///     machine: "Room",
///     id: "r9".into(),
///     version: 3,
///     what: Payload::Command,
///     schema: 4,
///     current: 3,
///     cause: DecodeCause::Newer,
/// };
/// assert_eq!(
///     error.to_string(),
///     "cannot decode the command of Room \"r9\" at version 3: it was stored by schema version 4, \
///      newer than this code's 3; it is left as it is"
/// );
/// assert!(error.is_newer());
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot decode the {what} of {machine} {id:?} at version {version}: {cause}", cause = Cause(self))]
pub struct DecodeError {
    /// The machine's name.
    pub machine: &'static str,
    /// The record's id.
    pub id: String,
    /// The record version the payload belongs to (of the record, or of the
    /// history entry).
    pub version: u64,
    /// Which payload: the state, a history entry's command, or its state before.
    pub what: crate::evolution::Payload,
    /// The schema version the payload was stored with.
    pub schema: u32,
    /// The running code's schema version ([`Machine::SCHEMA`](crate::Machine::SCHEMA)).
    pub current: u32,
    /// What went wrong.
    #[source]
    pub cause: DecodeCause,
}

impl DecodeError {
    /// Whether the payload was stored by a newer schema version than this
    /// code's: deploy the newer code (or roll it back with a migration
    /// down), as nothing here can read it.
    #[must_use]
    pub fn is_newer(&self) -> bool {
        matches!(self.cause, DecodeCause::Newer)
    }
}

/// Formats a decode error's cause with its schema versions.
struct Cause<'a>(&'a DecodeError);

impl fmt::Display for Cause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let DecodeError { schema, current, cause, .. } = self.0;
        match cause {
            DecodeCause::Newer => write!(
                f,
                "it was stored by schema version {schema}, newer than this code's {current}; it is left as it is"
            ),
            DecodeCause::Migration { from, source } => write!(
                f,
                "stored by schema version {schema}, the migration step from version {from} refused it: {source}"
            ),
            DecodeCause::Json(source) if schema == current => write!(f, "{source}"),
            DecodeCause::Json(source) => {
                write!(f, "stored by schema version {schema} and migrated to {current}, it does not decode: {source}")
            }
        }
    }
}

/// Why a stored payload could not be read (see [`DecodeError`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeCause {
    /// The JSON (after the migrations, for an older payload) does not
    /// decode into the machine's type: corrupt, or a changed shape that no
    /// migration covers.
    #[error("{0}")]
    Json(#[source] Arc<serde_json::Error>),
    /// A declared migration step refused the stored JSON.
    #[error("the migration step from schema version {from} refused it: {source}")]
    Migration {
        /// The version the refusing step reads.
        from: u32,
        /// Its reason.
        #[source]
        source: crate::evolution::MigrationError,
    },
    /// Stored by a newer schema version than the running code's.
    #[error("stored by a newer schema version")]
    Newer,
}

impl<E> From<StoreError> for Error<E> {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_corrupt_record_is_named_and_not_retryable() {
        let corrupt = StoreError::Corrupt {
            machine: "Order".into(),
            id: "order-42".into(),
            reason: "stored version 0 is not a valid version (versions start at 1)".into(),
        };
        assert_eq!(
            corrupt.to_string(),
            "corrupt record Order \"order-42\": stored version 0 is not a valid version (versions start at 1)"
        );
        assert!(!corrupt.is_retryable());
        assert!(corrupt.source().is_none());
        assert!(corrupt.conflict().is_none());
        assert!(!Error::<std::convert::Infallible>::Store(corrupt).is_retryable());
    }
}
