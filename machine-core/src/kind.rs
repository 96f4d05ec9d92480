//! The fieldless "kind" of a state or command: what tables, diagrams, stores
//! and error messages talk about when the payload does not matter.

use std::fmt::{Debug, Display};
use std::hash::Hash;

/// A fieldless enum naming the variants of a [`State`](crate::State) or
/// [`Command`](crate::Command).
///
/// The derives generate one per enum (`OrderKind`, `OrderCommandKind`), with the
/// same items also available as inherent `ALL` and `as_str()` so callers do not
/// need this trait in scope.
pub trait Kind: Copy + Eq + Ord + Hash + Debug + Display + Send + Sync + 'static {
    /// Every kind, in declaration order.
    const ALL: &'static [Self];

    /// The variant's name as written in the enum (`"Pending"`).
    fn as_str(self) -> &'static str;

    /// The kind whose [`as_str`](Kind::as_str) is `name`, if any.
    ///
    /// ```
    /// use machine_core::Kind;
    /// # #[derive(machine_core::State)]
    /// # enum Light { #[state(initial)] Red, Green }
    /// assert_eq!(LightKind::from_name("Green"), Some(LightKind::Green));
    /// assert_eq!(LightKind::from_name("Blue"), None);
    /// ```
    #[must_use]
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.as_str() == name)
    }
}
