//! Processors: named consumers of a store's change feed that react to
//! committed changes (send the email, call the payment service, update a
//! projection) and resume where they left off.
//!
//! A [`Processor`] reads the feed after its checkpoint, hands each change
//! of its machine to a [`Handler`] as a typed [`Entry`] (the command, the
//! state before and after, decoded through the runner so schema migrations
//! apply), and saves the checkpoint in the same store
//! ([`store::Checkpoints`](crate::store::Checkpoints)). What it guarantees:
//!
//! - **At least once.** The checkpoint moves only after the entries before
//!   it were handled (or parked), so a crash replays at most the batch in
//!   flight, and never skips one. Make handlers idempotent (an idempotency
//!   key per entry, [`Entry::key`], does it for commands).
//! - **One active instance per name**, across processes: a lease stored
//!   with the checkpoint, taken and renewed by compare-and-set, expiring
//!   after [`lease`](Processor::lease) so another instance takes over when
//!   the holder dies. An instance whose lease was taken over stops
//!   delivering ([`Stepped::LostLease`]).
//! - **Errors back off, then park.** A handler error is retried with the
//!   processor's [`retry`](Processor::retry) backoff; an entry that still
//!   fails (or cannot be decoded) is parked as a
//!   [`DeadLetter`](crate::store::DeadLetter) and the processor moves on.
//!   [`Processor::redrive`] runs the handler on it again.
//! - **Lag is readable**: [`Processor::lag`] counts the changes behind the
//!   head of the feed.

mod entry;
mod processor;

pub use entry::{Entry, Handler};
pub use processor::{Processor, Progress, Redriven, Stepped};
