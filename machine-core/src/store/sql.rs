//! What the SQL stores share: version and time conversions, and turning
//! driver errors into typed, classified store errors.

use super::record::{Change, Cursor, Record};
use crate::error::StoreError;
use sqlx::{Decode, Row, Type};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A record from a row with columns `version`, `kind`, `state`, `updated_at`.
pub(crate) fn record<R: Row>(row: &R, error: fn(sqlx::Error) -> StoreError) -> Result<Record, StoreError>
where
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    Ok(Record {
        version: version_from_db(row.try_get("version").map_err(error)?)?,
        kind: Arc::from(row.try_get::<&str, _>("kind").map_err(error)?),
        state: Arc::from(row.try_get::<&str, _>("state").map_err(error)?),
        updated_at: unsigned(row.try_get("updated_at").map_err(error)?),
    })
}

/// A history entry from a row with columns `seq`, `machine`, `id`, `version`,
/// `command`, `kind`, `state`, `at`, `kind_before`, `state_before`; `tx` is
/// the committing transaction's order (0 where commits are serial).
pub(crate) fn change<R: Row>(row: &R, tx: u64, error: fn(sqlx::Error) -> StoreError) -> Result<Change, StoreError>
where
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let text = |column: &str| row.try_get::<&str, _>(column).map(Arc::from).map_err(error);
    let optional = |column: &str| row.try_get::<Option<&str>, _>(column).map(|v| v.map(Arc::from)).map_err(error);
    Ok(Change {
        cursor: Cursor { tx, seq: unsigned(row.try_get("seq").map_err(error)?) },
        machine: text("machine")?,
        id: text("id")?,
        version: version_from_db(row.try_get("version").map_err(error)?)?,
        command: text("command")?,
        kind_before: optional("kind_before")?,
        before: optional("state_before")?,
        kind: text("kind")?,
        after: text("state")?,
        origin: crate::store::Origin::Command,
        at: unsigned(row.try_get("at").map_err(error)?),
    })
}

/// A version as the database's signed 64-bit integer; versions past
/// `i64::MAX` cannot be stored.
pub(crate) fn version_to_db(machine: &str, id: &str, version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| overflow(machine, id, version.saturating_sub(1)))
}

/// The version after `expected`, refused when the database cannot hold it.
pub(crate) fn next_version(machine: &str, id: &str, expected: u64) -> Result<i64, StoreError> {
    match expected.checked_add(1) {
        Some(next) => i64::try_from(next).map_err(|_| overflow(machine, id, expected)),
        None => Err(overflow(machine, id, expected)),
    }
}

fn overflow(machine: &str, id: &str, version: u64) -> StoreError {
    StoreError::VersionOverflow { machine: machine.to_owned(), id: id.to_owned(), version }
}

/// A stored version; a negative one can only come from outside tampering.
pub(crate) fn version_from_db(version: i64) -> Result<u64, StoreError> {
    u64::try_from(version).map_err(|_| corrupt(format!("negative version {version} in the database")))
}

/// A non-negative database integer as `u64` (sequence numbers, times).
pub(crate) fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

pub(crate) fn now_millis() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn corrupt(message: String) -> StoreError {
    StoreError::backend(message, false)
}

/// Wraps a driver error, marking the ones worth trying again: lost or
/// refused connections, pool timeouts, and the codes `retryable_codes` lists
/// for the backend (busy or locked databases, server shutdowns).
pub(crate) fn backend(error: sqlx::Error, retryable_code: fn(&str) -> bool) -> StoreError {
    let retryable = match &error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| retryable_code(&code)),
        _ => false,
    };
    StoreError::Backend { source: std::sync::Arc::new(error), retryable }
}

/// Whether `name` may be used as an SQL identifier unquoted: lowercase ASCII
/// letters, digits and `_`, not starting with a digit, at most 48 bytes (so
/// derived index names stay under PostgreSQL's 63-byte limit).
pub(crate) fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        for good in ["machine", "app_1", "_x"] {
            assert!(is_identifier(good), "{good}");
        }
        for bad in ["", "1abc", "Machine", "a-b", "a;drop", "a b", "\"x\"", &"a".repeat(49)] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn versions_beyond_i64_are_typed_errors() {
        assert_eq!(next_version("m", "i", 0).unwrap(), 1);
        let max = u64::try_from(i64::MAX).unwrap();
        assert!(
            matches!(next_version("m", "i", max), Err(StoreError::VersionOverflow { version, .. }) if version == max)
        );
        assert!(matches!(next_version("m", "i", u64::MAX), Err(StoreError::VersionOverflow { .. })));
        assert!(version_to_db("m", "i", max + 1).is_err());
        assert!(version_from_db(-1).is_err());
    }
}
