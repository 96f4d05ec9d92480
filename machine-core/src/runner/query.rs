//! Listing a machine's records by the kind of their state, typed: the kind
//! is the derive's enum (so a misspelt kind does not compile), states come
//! back decoded with their versions, and pages follow a cursor.

use super::codec::decode_record;
use super::{Runner, Versioned};
use crate::error::Error;
use crate::machine::AsyncMachine;
use crate::store::Query;
use crate::store::body::Loaded;
use crate::{Kind, State};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The kind enum of a machine's state (`OrderKind` for `Order`).
pub type KindOf<M> = <<M as AsyncMachine>::State as State>::Kind;

/// A listed record, decoded, or why it could not be.
pub(crate) type Decoded<M> = Result<Versioned<<M as AsyncMachine>::State>, Error<<M as AsyncMachine>::Error>>;

/// One page of [`Runner::list`]: records ordered by id, and where the next
/// page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<S> {
    /// The records, each with its id, in id order.
    pub records: Vec<(String, Versioned<S>)>,
    /// Pass this as `after` for the next page; `None` once a page came back
    /// short (the last one). A full last page is followed by an empty one.
    pub next: Option<String>,
}

impl<M, St> Runner<M, St>
where
    M: AsyncMachine,
    M::State: Clone + Serialize + DeserializeOwned + 'static,
    M::Command: Clone + Serialize + DeserializeOwned + 'static,
    St: Query,
{
    /// Up to `limit` records whose state is of `kind`, with ids after
    /// `after` (from the start when `None`), decoded. A record that does not
    /// decode fails the page with an error naming it; the store's raw
    /// [`Query::by_kind`] still reads around it, for tools.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use machine_core::prelude::*;
    /// use machine_core::store::Memory;
    /// # #[derive(State, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    /// # enum Ticket { #[state(initial)] Open, Closed { by: String } }
    /// # #[derive(Command, Clone, Debug, serde::Serialize, serde::Deserialize)]
    /// # #[command(state = Ticket)]
    /// # enum TicketCommand { #[command(from(Open), to(Closed))] Close { by: String } }
    /// # struct Tickets;
    /// # impl Machine for Tickets {
    /// #     type State = Ticket; type Command = TicketCommand; type Deps = (); type Error = std::convert::Infallible;
    /// #     fn transition(_: &(), TicketCommand::Close { by }: &TicketCommand, _: &Ticket) -> Result<Ticket, Self::Error> {
    /// #         Ok(Ticket::Closed { by: by.clone() })
    /// #     }
    /// # }
    /// let runner = Runner::<Tickets, _>::new(Memory::new(), ());
    /// for id in ["t-1", "t-2", "t-3"] {
    ///     runner.handle(id, &TicketCommand::Close { by: "ops".into() }).await?;
    /// }
    /// let first = runner.list(TicketKind::Closed, None, 2).await?;
    /// assert_eq!(first.records.len(), 2);
    /// let rest = runner.list(TicketKind::Closed, first.next.as_deref(), 2).await?;
    /// assert_eq!((rest.records[0].0.as_str(), rest.next), ("t-3", None));
    /// assert_eq!(runner.count(TicketKind::Closed).await?, 3);
    /// # Ok(()) }
    /// ```
    pub async fn list(
        &self,
        kind: KindOf<M>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<M::State>, Error<M::Error>> {
        let (each, next) = self.list_each(kind, after, limit).await?;
        let records = each.into_iter().map(|(id, decoded)| decoded.map(|decoded| (id, decoded)));
        Ok(Page { records: records.collect::<Result<_, _>>()?, next })
    }

    /// [`list`](Self::list) with each record decoded on its own: one that
    /// does not decode is its own error, not the page's, for drivers that
    /// go on past it (background recovery). The next page's start comes
    /// with it.
    pub(crate) async fn list_each(
        &self,
        kind: KindOf<M>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<(String, Decoded<M>)>, Option<String>), Error<M::Error>> {
        let listed = self.store().by_kind(M::NAME, kind.as_str(), after, limit).await?;
        let full = listed.len() >= usize::try_from(limit).unwrap_or(usize::MAX) && limit > 0;
        let next = if full { listed.last().map(|listed| listed.id.clone()) } else { None };
        let each = listed
            .into_iter()
            .map(|listed| {
                let decoded = decode_record::<M, M::Error>(&listed.id, &Loaded::from(listed.record));
                (listed.id, decoded)
            })
            .collect();
        Ok((each, next))
    }

    /// How many records are in state `kind`.
    pub async fn count(&self, kind: KindOf<M>) -> Result<u64, Error<M::Error>> {
        Ok(self.store().count(M::NAME, kind.as_str()).await?)
    }

    /// How many records are in each kind of state, in declaration order:
    /// what a dashboard shows.
    pub async fn counts(&self) -> Result<Vec<(KindOf<M>, u64)>, Error<M::Error>> {
        let mut counts = Vec::with_capacity(KindOf::<M>::ALL.len());
        for &kind in KindOf::<M>::ALL {
            counts.push((kind, self.count(kind).await?));
        }
        Ok(counts)
    }
}
