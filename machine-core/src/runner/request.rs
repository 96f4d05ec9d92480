//! What a caller says about one command beyond the command itself: the
//! idempotency key that makes sending it twice safe, and whether it must
//! create the record or act on an existing one. What a request handler
//! passes to [`Runner::handle_with`](crate::Runner::handle_with).

use serde::Serialize;
use std::hash::Hasher;

/// How one command is sent: an idempotency key, and whether the record must
/// be new or must exist. The default is neither (what
/// [`Runner::handle`](crate::Runner::handle) does).
///
/// ```
/// use machine_core::Request;
///
/// // POST /orders with header `Idempotency-Key: 7f3a…`: creates, once.
/// let create = Request::new().key("7f3a9c").create();
/// // POST /orders/{id}/cancel: the order must exist.
/// let cancel = Request::new().key("b2c4d1").update();
/// assert_eq!(create.idempotency_key(), Some("7f3a9c"));
/// assert!(cancel.must_exist() && !cancel.must_create());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request<'k> {
    key: Option<&'k str>,
    must: Must,
}

/// Whether the record must be new, must exist, or either.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Must {
    #[default]
    Either,
    Create,
    Update,
}

impl<'k> Request<'k> {
    /// Neither a key nor an existence rule.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches idempotency key `key` (the same rules as an id: non-empty,
    /// at most 512 bytes, no NUL).
    ///
    /// The key is stored with the change, in the same commit. Sent again
    /// with the same key and the same command, to the same record, the call
    /// returns the outcome of the first (its state and version, with
    /// [`Outcome::replayed`](crate::Outcome::replayed) set) without running
    /// the transition: a client retrying after a lost reply, or a queue
    /// redelivering, applies the command once. Another command under the
    /// same key is [`Error::KeyReused`](crate::Error::KeyReused). Keys are
    /// kept for the runner's
    /// [`key_retention`](crate::Runner::key_retention). A call that wrote
    /// nothing (a refusal, a store error before the commit) stored no key:
    /// sending it again runs it again.
    #[must_use]
    pub fn key(mut self, key: &'k str) -> Self {
        self.key = Some(key);
        self
    }

    /// The command must create the record: if it exists, the call fails with
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) and writes nothing.
    #[must_use]
    pub fn create(mut self) -> Self {
        self.must = Must::Create;
        self
    }

    /// The command must act on an existing record: if there is none, the call
    /// fails with [`Error::NotFound`](crate::Error::NotFound) instead of
    /// starting one from the initial state.
    #[must_use]
    pub fn update(mut self) -> Self {
        self.must = Must::Update;
        self
    }

    /// The idempotency key, if any.
    #[must_use]
    pub fn idempotency_key(&self) -> Option<&'k str> {
        self.key
    }

    /// Whether the command must create the record.
    #[must_use]
    pub fn must_create(&self) -> bool {
        self.must == Must::Create
    }

    /// Whether the command must find the record.
    #[must_use]
    pub fn must_exist(&self) -> bool {
        self.must == Must::Update
    }

    pub(crate) fn must(&self) -> Must {
        self.must
    }
}

/// A [`Request`] kept while its command waits in a coalescing queue.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedRequest {
    key: Option<Box<str>>,
    must: Must,
}

impl OwnedRequest {
    pub(crate) fn new(request: Request<'_>) -> Self {
        Self { key: request.key.map(Box::from), must: request.must }
    }

    pub(crate) fn borrow(&self) -> Request<'_> {
        Request { key: self.key.as_deref(), must: self.must }
    }
}

/// The fingerprint a key is stored with: FNV-1a over the value's JSON,
/// which is stable across processes and releases (unlike std's hasher).
/// Hashed as it is written: nothing is allocated.
pub(crate) fn fingerprint<T: Serialize>(value: &T) -> Result<u64, serde_json::Error> {
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    serde_json::to_writer(&mut hasher, value)?;
    Ok(hasher.finish())
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl std::io::Write for Fnv {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        Hasher::write(self, bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_the_fnv_of_the_json_and_tell_commands_apart() {
        // FNV-1a 64 of the three bytes `"a"`, computed independently.
        let mut reference: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in b"\"a\"" {
            reference = (reference ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(fingerprint(&"a").unwrap(), reference);
        assert_ne!(fingerprint(&("hold", 1)).unwrap(), fingerprint(&("hold", 2)).unwrap());
        assert_eq!(fingerprint(&("hold", 1)).unwrap(), fingerprint(&("hold", 1)).unwrap());
    }

    #[test]
    fn requests_keep_what_they_were_told() {
        let plain = Request::new();
        assert_eq!((plain.idempotency_key(), plain.must_create(), plain.must_exist()), (None, false, false));
        let keyed = Request::new().update().key("k").create();
        assert_eq!((keyed.idempotency_key(), keyed.must_create(), keyed.must_exist()), (Some("k"), true, false));
        assert_eq!(OwnedRequest::new(keyed).borrow(), keyed);
    }
}
