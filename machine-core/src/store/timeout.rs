//! Bounded waits, as a typed error: which wait of a SQL store ran out (a
//! connection, the pool, a statement, a lock) and after how long, so a
//! request handler can answer "try again later" instead of hanging, and tell
//! a slow database from a broken request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What a store was waiting for when its bound ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Wait {
    /// Opening a connection: TCP, TLS, the server's start-up and
    /// authentication (the connect timeout).
    Connect,
    /// A connection from the pool: all of them were busy, or a new one could
    /// not be opened in time (the acquire timeout).
    Acquire,
    /// A statement ran longer than the server allows (PostgreSQL's
    /// `statement_timeout`, SQLSTATE `57014`).
    Statement,
    /// A lock another session held: SQLite's write lock past the busy
    /// timeout (`SQLITE_BUSY`), or PostgreSQL's `lock_timeout` (`55P03`).
    Lock,
}

impl Wait {
    /// The wait in words, as in messages: `"acquiring a connection from the pool"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connecting to the database",
            Self::Acquire => "acquiring a connection from the pool",
            Self::Statement => "running a statement",
            Self::Lock => "waiting for a lock held by another session",
        }
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bounded wait of a store ran out. Always retryable: it is reported as
/// [`StoreError::Backend`](crate::StoreError::Backend) with
/// `retryable: true` and this as its source, reached with
/// [`StoreError::timeout`](crate::StoreError::timeout). Nothing was written
/// by the operation that timed out (a statement cancelled by the server
/// rolls back its transaction).
///
/// ```
/// use machine_core::StoreError;
/// use machine_core::store::Wait;
///
/// fn status(error: &StoreError) -> u16 {
///     match error.timeout() {
///         Some(timeout) if timeout.wait() == Wait::Acquire => 503, // the pool is exhausted: shed load
///         Some(_) => 504,                                          // the database is slow or unreachable
///         None if error.is_retryable() => 503,
///         None => 500,
///     }
/// }
/// # let _ = status;
/// ```
#[derive(Clone, Debug)]
pub struct Timeout {
    wait: Wait,
    limit: Option<Duration>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Timeout {
    /// A timeout of `wait` after `limit` (when known), caused by `source`
    /// (the driver's error, when there is one).
    #[must_use]
    pub fn new(wait: Wait, limit: Option<Duration>, source: Option<Arc<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { wait, limit, source }
    }

    /// What was being waited for.
    #[must_use]
    pub fn wait(&self) -> Wait {
        self.wait
    }

    /// The bound that ran out, when the store knows it (it does not for a
    /// pool or a `statement_timeout` you configured yourself).
    #[must_use]
    pub fn limit(&self) -> Option<Duration> {
        self.limit
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out {}", self.wait)?;
        if let Some(limit) = self.limit {
            write!(f, " after {limit:?}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Timeout {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|source| source as &(dyn std::error::Error + 'static))
    }
}

impl From<Timeout> for crate::StoreError {
    fn from(timeout: Timeout) -> Self {
        Self::Backend { source: Arc::new(timeout), retryable: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;

    #[test]
    fn a_timeout_is_a_retryable_backend_error_that_names_its_wait() {
        let error: StoreError = Timeout::new(Wait::Acquire, Some(Duration::from_secs(2)), None).into();
        assert!(error.is_retryable());
        assert_eq!(error.timeout().map(Timeout::wait), Some(Wait::Acquire));
        assert_eq!(error.to_string(), "store backend error: timed out acquiring a connection from the pool after 2s");
        let other = StoreError::backend("connection reset", true);
        assert!(other.timeout().is_none());
        let statement = Timeout::new(Wait::Statement, None, None);
        assert_eq!(statement.to_string(), "timed out running a statement");
    }
}
