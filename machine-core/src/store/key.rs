//! The one definition of a valid id and machine name, shared by every store
//! so the same input is accepted or refused everywhere.

use crate::error::StoreError;

/// The longest id or machine name accepted, in bytes of UTF-8.
///
/// Long enough for UUIDs, URLs and composite keys; short enough to stay inside
/// every backend's index key limit.
pub const MAX_KEY_LEN: usize = 512;

/// Checks a record id: non-empty, at most [`MAX_KEY_LEN`] bytes, no NUL
/// character (which PostgreSQL text cannot hold). Anything else in UTF-8 is
/// accepted and stored verbatim.
pub fn validate_id(id: &str) -> Result<(), StoreError> {
    validate("id", id)
}

/// Checks a machine name with the same rules as [`validate_id`].
pub fn validate_machine(machine: &str) -> Result<(), StoreError> {
    validate("machine name", machine)
}

/// Checks an idempotency key with the same rules as [`validate_id`].
pub fn validate_idempotency_key(key: &str) -> Result<(), StoreError> {
    validate("idempotency key", key)
}

/// Checks a processor name ([`Checkpoints`](super::Checkpoints)) with the
/// same rules as [`validate_id`].
pub fn validate_processor(name: &str) -> Result<(), StoreError> {
    validate("processor name", name)
}

fn validate(what: &'static str, value: &str) -> Result<(), StoreError> {
    let reason = if value.is_empty() {
        "must not be empty"
    } else if value.len() > MAX_KEY_LEN {
        "is longer than 512 bytes"
    } else if value.contains('\0') {
        "must not contain NUL characters"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidKey { what, value: value.chars().take(64).collect(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_any_utf8_within_bounds() {
        for id in ["a", "order-42", "'; drop table machine_records --", "ключ\n\"q\"", &"x".repeat(512)] {
            assert!(validate_id(id).is_ok(), "{id:?}");
        }
    }

    #[test]
    fn refuses_empty_long_and_nul() {
        let long = "é".repeat(257); // 514 bytes, 257 characters
        for (id, reason) in [
            ("", "must not be empty"),
            (long.as_str(), "is longer than 512 bytes"),
            ("a\0b", "must not contain NUL characters"),
        ] {
            match validate_id(id) {
                Err(StoreError::InvalidKey { what: "id", reason: got, value }) => {
                    assert_eq!(got, reason);
                    assert!(value.chars().count() <= 64);
                }
                other => panic!("{id:?}: {other:?}"),
            }
        }
    }
}
