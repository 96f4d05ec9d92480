//! `VersionConflict` as users meet it: printed, inspected, found through
//! `source()` chains and `downcast_ref`, with hostile ids and extreme versions.

use machine_core::{Error, StoreError, VersionConflict};
use std::error::Error as _;

#[derive(Debug, thiserror::Error)]
#[error("user error")]
struct UserError;

fn exhausted(conflict: VersionConflict) -> Error<UserError> {
    Error::RetriesExhausted { conflict, attempts: 7 }
}

#[test]
fn message_names_machine_id_attempted_and_current() {
    let conflict = VersionConflict::new("Order", "order-42", 4, 9);
    let text = conflict.to_string();
    for part in ["Order", "\"order-42\"", "attempted version 4", "current version 9"] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
    let error = exhausted(conflict).to_string();
    assert!(error.starts_with("gave up after 7 attempts: version conflict on Order \"order-42\""), "{error}");
    assert!(error.contains("attempted version 4, current version 9"), "{error}");
}

#[test]
fn fields_are_readable() {
    let conflict = VersionConflict::new("Order", "o-1", 3, 5);
    assert_eq!(
        (conflict.machine.as_str(), conflict.id.as_str(), conflict.attempted, conflict.current),
        ("Order", "o-1", 3, 5)
    );
    assert_eq!(conflict.gap(), 3);
    assert_eq!(conflict.clone(), conflict);
}

#[test]
fn conflict_accessor_finds_it_in_exhausted_retries_and_store_errors() {
    let conflict = VersionConflict::new("Order", "o-1", 3, 5);
    assert_eq!(exhausted(conflict.clone()).conflict(), Some(&conflict));
    let store: Error<UserError> = Error::Store(StoreError::Conflict(conflict.clone()));
    assert_eq!(store.conflict(), Some(&conflict));
    assert_eq!(Error::<UserError>::Rejected(UserError).conflict(), None);
}

#[test]
fn source_chain_reaches_the_conflict_for_dyn_error_users() {
    let conflict = VersionConflict::new("Order", "o-1", 3, 5);
    for error in [exhausted(conflict.clone()), Error::Store(StoreError::Conflict(conflict.clone()))] {
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(error);
        let found = std::iter::successors(Some(&*boxed as &(dyn std::error::Error + 'static)), |e| (*e).source())
            .find_map(|e| e.downcast_ref::<VersionConflict>());
        assert_eq!(found, Some(&conflict));
    }
    // Directly: the exhausted error's source is the conflict itself.
    let error = exhausted(conflict.clone());
    assert_eq!(error.source().and_then(|s| s.downcast_ref::<VersionConflict>()), Some(&conflict));
}

#[test]
fn hostile_ids_are_escaped_in_messages_and_kept_verbatim_in_fields() {
    for id in ["say \"hi\"", "line\nbreak", "ключ-🔑", "tab\tand\\backslash", "'; drop table machine_records --"]
    {
        let conflict = VersionConflict::new("Order", id, 1, 2);
        assert_eq!(conflict.id, id);
        let text = conflict.to_string();
        assert!(!text.contains('\n'), "a newline in an id must not split the log line: {text:?}");
        assert!(text.contains(&format!("{id:?}")), "{text:?}");
    }
}

#[test]
fn extreme_versions_do_not_overflow() {
    let at_max = VersionConflict::new("Order", "o", 1, u64::MAX);
    assert_eq!(at_max.gap(), u64::MAX);
    assert!(at_max.to_string().contains(&u64::MAX.to_string()));
    let behind = VersionConflict::new("Order", "o", u64::MAX, 0);
    assert_eq!(behind.gap(), 1);
}
