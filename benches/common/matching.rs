//! One small machine written twice, for the `compare` bench: once with the
//! hand-written `match (command, state)` (and its catch-all), once with the
//! handlers `#[derive(Command)]` generates. Same types, same results; the
//! difference between their timings is the cost of the generated style.

use machine_core::prelude::*;

/// Both machines' error: the generated `dispatch` returns a pair the table
/// does not declare as [`NotDeclared`] (never met here: the round only
/// sends declared pairs), and the hand-written match never fails.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TicketError {
    /// A pair the table does not declare, from a direct call.
    #[error(transparent)]
    NotDeclared(#[from] NotDeclared),
}

#[derive(State, Clone, Debug, PartialEq)]
pub(crate) enum Ticket {
    #[state(initial)]
    Open {
        votes: u32,
    },
    Assigned {
        to: u32,
        votes: u32,
    },
    Closed {
        votes: u32,
    },
}

#[derive(Command, Clone, Debug)]
#[command(state = Ticket)]
pub(crate) enum TicketCommand {
    #[command(from(Open, Assigned), to(Open, Assigned))]
    Vote { by: u32 },
    #[command(from(Open), to(Assigned))]
    Assign { to: u32 },
    #[command(from(Assigned), to(Open))]
    Unassign,
    #[command(from(Assigned), to(Closed))]
    Close,
    #[command(from(Closed), to(Open))]
    Reopen,
}

/// A round trip through every declared pair.
pub(crate) const ROUND: &[TicketCommand] = &[
    TicketCommand::Vote { by: 1 },
    TicketCommand::Assign { to: 7 },
    TicketCommand::Vote { by: 2 },
    TicketCommand::Unassign,
    TicketCommand::Assign { to: 8 },
    TicketCommand::Close,
    TicketCommand::Reopen,
];

/// The hand-written match.
pub(crate) struct HandTickets;

impl Machine for HandTickets {
    type State = Ticket;
    type Command = TicketCommand;
    type Deps = ();
    type Error = TicketError;

    fn transition((): &(), command: &TicketCommand, state: &Ticket) -> Result<Ticket, TicketError> {
        use {Ticket as S, TicketCommand as C};
        Ok(match (command, state) {
            (C::Vote { by }, S::Open { votes }) => S::Open { votes: votes + by },
            (C::Vote { by }, S::Assigned { to, votes }) => S::Assigned { to: *to, votes: votes + by },
            (C::Assign { to }, S::Open { votes }) => S::Assigned { to: *to, votes: *votes },
            (C::Unassign, S::Assigned { votes, .. }) | (C::Reopen, S::Closed { votes }) => S::Open { votes: *votes },
            (C::Close, S::Assigned { votes, .. }) => S::Closed { votes: *votes },
            // The declared table refuses every other pair first.
            (_, state) => state.clone(),
        })
    }
}

/// The generated handlers.
pub(crate) struct GeneratedTickets;

impl Machine for GeneratedTickets {
    type State = Ticket;
    type Command = TicketCommand;
    type Deps = ();
    type Error = TicketError;

    fn transition((): &(), command: &TicketCommand, state: &Ticket) -> Result<Ticket, TicketError> {
        Self::dispatch(&(), command, state)
    }
}

impl TicketCommandHandlers for GeneratedTickets {
    fn vote_open((): &(), by: &u32, from: OpenTicketRef<'_>) -> Result<To<Ticket, ticket_command::Vote>, TicketError> {
        Ok(To::new(OpenTicket { votes: from.votes + by }))
    }

    fn vote_assigned(
        (): &(),
        by: &u32,
        from: AssignedTicketRef<'_>,
    ) -> Result<To<Ticket, ticket_command::Vote>, TicketError> {
        Ok(To::new(AssignedTicket { to: *from.to, votes: from.votes + by }))
    }

    fn assign_open(
        (): &(),
        to: &u32,
        from: OpenTicketRef<'_>,
    ) -> Result<To<Ticket, ticket_command::Assign>, TicketError> {
        Ok(To::new(AssignedTicket { to: *to, votes: *from.votes }))
    }

    fn unassign_assigned(
        (): &(),
        from: AssignedTicketRef<'_>,
    ) -> Result<To<Ticket, ticket_command::Unassign>, TicketError> {
        Ok(To::new(OpenTicket { votes: *from.votes }))
    }

    fn close_assigned((): &(), from: AssignedTicketRef<'_>) -> Result<To<Ticket, ticket_command::Close>, TicketError> {
        Ok(To::new(ClosedTicket { votes: *from.votes }))
    }

    fn reopen_closed((): &(), from: ClosedTicketRef<'_>) -> Result<To<Ticket, ticket_command::Reopen>, TicketError> {
        Ok(To::new(OpenTicket { votes: *from.votes }))
    }
}

/// Runs `rounds` rounds of [`ROUND`] through `M`'s transition, returning
/// the final state (so the work cannot be optimised away).
/// Never inlined, so each style is one function of its own, measured alike.
#[inline(never)]
pub(crate) fn run<M: Machine<State = Ticket, Command = TicketCommand, Deps = (), Error = TicketError>>(
    rounds: usize,
) -> Ticket {
    let mut state = Ticket::initial();
    for _ in 0..rounds {
        for command in ROUND {
            // `black_box` on the command and the state: each transition runs
            // on values the optimiser cannot see through, one after another.
            // An error (none happens: the round sends declared pairs only,
            // and a skipped step would change the final state the bench
            // compares) keeps the state, as the hand-written catch-all does.
            if let Ok(next) = M::transition(&(), std::hint::black_box(command), &state) {
                state = std::hint::black_box(next);
            }
        }
    }
    state
}
