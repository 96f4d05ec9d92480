// The types of the guide's order machine (docs/guide.md §1–§2) and the
// imports its snippets take for granted. Included by `order.rs`, and on its
// own by the guide's §3, which defines the deps and the machine itself.

#[allow(unused_imports)]
use docs::*;

/// What the snippets use without naming it; an explicit `use` in a snippet
/// shadows these glob imports without a conflict.
#[allow(unused_imports)]
mod docs {
    pub use machine_core::prelude::*;
    pub use machine_core::store::{self, Memory};
    pub use serde::{Deserialize, Serialize};
    pub use std::sync::Arc;
    pub use std::time::Duration;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub quantity: u32,
}

/// `quantity` mugs, the tests' favourite order.
pub fn mug(quantity: u32) -> Vec<Item> {
    vec![Item { sku: "mug".into(), quantity }]
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    #[error("only {available} of {sku} left")]
    Short { sku: String, available: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("an order needs at least one item")]
    Empty,
    #[error(transparent)]
    Stock(#[from] StockError),
    /// A command in a state its `from(..)` does not list: what the generated
    /// `dispatch` returns when called directly (the table refuses it first).
    #[error(transparent)]
    NotDeclared(#[from] NotDeclared),
}

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Order {
    #[state(initial)]
    Draft,
    Pending {
        items: Vec<Item>,
        placed_at: u64,
    },
    Confirmed {
        items: Vec<Item>,
        placed_at: u64,
    },
    #[state(terminal)]
    Cancelled {
        reason: String,
    },
    #[state(failure)]
    Failed(Failure<OrderCommand, Order>),
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Order)]
pub enum OrderCommand {
    #[command(from(Draft), to(Pending))]
    Place { items: Vec<Item> },
    #[command(from(Pending), to(Confirmed))]
    Confirm,
    #[command(from(Draft, Pending, Confirmed), to(Cancelled))]
    Cancel { reason: String },
}
