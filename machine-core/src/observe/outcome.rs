//! The `outcome` label of a call that failed: one short, fixed name per way
//! of failing, so the label's values are a closed set (listed in
//! `docs/observability.md`).

use super::Ended;
use crate::error::{Error, StoreError};

/// How a call that returned `err` ended: its outcome label, and what the
/// error knows of attempts and versions.
pub(super) fn of_error<E>(err: &Error<E>) -> Ended {
    let (outcome, attempts) = match err {
        Error::Rejected(_) => ("refused", None),
        Error::FailureRecorded { version, .. } => {
            return Ended { outcome: "failed", attempts: None, version: Some(*version), to: None };
        }
        Error::NotAllowed { .. } => ("not_allowed", None),
        Error::Undeclared { .. } => ("undeclared", None),
        Error::Panicked { .. } => ("panicked", None),
        Error::RetriesExhausted { attempts, .. }
        | Error::Thrashing { attempts, .. }
        | Error::DeadlineExceeded { attempts, .. }
        | Error::BudgetExhausted { attempts, .. } => ("gave_up", Some(*attempts)),
        Error::CircuitOpen { .. } => ("circuit_open", None),
        Error::NotFailed { .. } => ("not_failed", None),
        Error::NotDue { .. } => ("not_due", None),
        Error::NotRead { .. } => ("not_read", None),
        Error::AlreadyExists { .. } => ("already_exists", None),
        Error::NotFound { .. } => ("not_found", None),
        Error::KeyReused { .. } => ("key_reused", None),
        Error::NotTerminal { .. } => ("not_terminal", None),
        Error::Archive { .. } => ("archive_failed", None),
        Error::Decode(_) | Error::Encode { .. } | Error::Store(StoreError::Corrupt { .. }) => ("bad_data", None),
        Error::Store(StoreError::InvalidKey { .. }) => ("invalid_key", None),
        Error::Store(_) => ("store_error", None),
    };
    Ended { outcome, attempts, version: None, to: None }
}
