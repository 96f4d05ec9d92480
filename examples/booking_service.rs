//! A booking service's request handlers, the way a service calls the
//! framework: every request carries an idempotency key, creating a room and
//! acting on one are told apart, and each error becomes the status code a
//! client can act on. Plain tokio stands in for the HTTP framework: the
//! handlers take a request struct and return a status and a body, so they
//! drop into axum, actix or a queue consumer unchanged.
//!
//! Run it: `cargo run -p machine-workspace --example booking_service`.

use machine_core::prelude::*;
use machine_core::store::Memory;
use machine_core::{Request, Runner};
use serde::{Deserialize, Serialize};

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Room {
    /// Not created yet: the only command a missing room accepts is `Create`,
    /// so the declared table itself says which command may create a record
    /// (`Request::create` and `update` say it per call, as well).
    #[state(initial)]
    Unlisted,
    Free {
        rate: u32,
    },
    Held {
        rate: u32,
        guest: String,
    },
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Room)]
enum RoomCommand {
    #[command(from(Unlisted), to(Free))]
    Create { rate: u32 },
    #[command(from(Free), to(Held))]
    Hold { guest: String },
    #[command(from(Held), to(Free))]
    Release,
}

/// The business rule's refusal (the table already refuses holding a held
/// room, before the transition runs).
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("a hold needs the guest's name")]
    NoGuest,
    /// What the generated `dispatch` returns when called directly with a
    /// pair the table refuses (the runner checks the table first).
    #[error(transparent)]
    NotDeclared(#[from] NotDeclared),
}

struct Rooms;

impl Machine for Rooms {
    type State = Room;
    type Command = RoomCommand;
    type Deps = ();
    type Error = Refused;

    fn transition(deps: &(), command: &RoomCommand, room: &Room) -> Result<Room, Refused> {
        // One handler per declared (command, state) pair, below.
        Self::dispatch(deps, command, room)
    }
}

impl RoomCommandHandlers for Rooms {
    fn create_unlisted((): &(), rate: &u32, _: UnlistedRoomRef<'_>) -> Result<To<Room, room_command::Create>, Refused> {
        Ok(To::new(FreeRoom { rate: *rate }))
    }

    fn hold_free((): &(), guest: &String, from: FreeRoomRef<'_>) -> Result<To<Room, room_command::Hold>, Refused> {
        if guest.trim().is_empty() {
            return Err(Refused::NoGuest);
        }
        Ok(To::new(HeldRoom { rate: *from.rate, guest: guest.clone() }))
    }

    fn release_held((): &(), from: HeldRoomRef<'_>) -> Result<To<Room, room_command::Release>, Refused> {
        Ok(To::new(FreeRoom { rate: *from.rate }))
    }
}

/// What a client sent: the path's room, the body's command, and the
/// `Idempotency-Key` header its HTTP client generated for this request
/// (and sends again on every retry of it).
struct HttpRequest<'a> {
    room: &'a str,
    command: RoomCommand,
    idempotency_key: &'a str,
}

/// What the handler answers.
#[derive(Debug)]
struct HttpResponse {
    status: u16,
    body: String,
}

/// `PUT /rooms/{room}`: lists a new room. Creating twice is a client error,
/// unless it is the same request sent again, which gets the same answer.
async fn create_room(runner: &Runner<Rooms, Memory>, request: HttpRequest<'_>) -> HttpResponse {
    let how = Request::new().key(request.idempotency_key).create();
    respond(runner.handle_with(request.room, &request.command, how).await)
}

/// `POST /rooms/{room}/holds` and the like: the room must exist, so a typo
/// in the path is a 404 instead of a room conjured up from its initial state.
async fn act_on_room(runner: &Runner<Rooms, Memory>, request: HttpRequest<'_>) -> HttpResponse {
    let how = Request::new().key(request.idempotency_key).update();
    respond(runner.handle_with(request.room, &request.command, how).await)
}

/// One place maps outcomes to statuses: what each error means for a client.
fn respond(result: Result<Outcome<Room>, Error<Refused>>) -> HttpResponse {
    let (status, body) = match result {
        // A replay is answered as the first call was: the client cannot tell
        // a retried request from the original, which is the point.
        Ok(out) => (if out.version == 1 { 201 } else { 200 }, format!("{:?} (version {})", out.state, out.version)),
        Err(Error::Rejected(refused)) => (409, refused.to_string()),
        Err(error @ (Error::NotAllowed { .. } | Error::AlreadyExists { .. })) => (409, error.to_string()),
        Err(error @ Error::NotFound { .. }) => (404, error.to_string()),
        Err(error @ Error::KeyReused { .. }) => (422, error.to_string()),
        // Conflicts the policy gave up on, an open circuit, a store that is
        // down: the client may send the same request (same key) again.
        Err(error) if error.is_retryable() => (503, error.to_string()),
        Err(error) => (500, error.to_string()),
    };
    HttpResponse { status, body }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runner = Runner::<Rooms, _>::new(Memory::new(), ());
    let request = |room, command, key| HttpRequest { room, command, idempotency_key: key };

    let created = create_room(&runner, request("room-101", RoomCommand::Create { rate: 120 }, "k-create-101")).await;
    println!("PUT  /rooms/room-101          -> {} {}", created.status, created.body);

    // The client's reply was lost on the way; its HTTP client retries with
    // the same key: same answer, nothing applied twice.
    let retried = create_room(&runner, request("room-101", RoomCommand::Create { rate: 120 }, "k-create-101")).await;
    println!("PUT  /rooms/room-101 (retry)  -> {} {}", retried.status, retried.body);

    // Two guests try to hold the room at once; one wins, the other finds it
    // held (the declared table: Hold only from Free).
    let hold = |guest: &str, key| request("room-101", RoomCommand::Hold { guest: guest.into() }, key);
    let (ada, bob) =
        tokio::join!(act_on_room(&runner, hold("ada", "k-hold-ada")), act_on_room(&runner, hold("bob", "k-hold-bob")));
    println!("POST /rooms/room-101/holds    -> {} {}   (ada)", ada.status, ada.body);
    println!("POST /rooms/room-101/holds    -> {} {}   (bob)", bob.status, bob.body);

    // A queue redelivers ada's hold: still her hold, still one history entry.
    let redelivered = act_on_room(&runner, hold("ada", "k-hold-ada")).await;
    println!("POST /rooms/room-101/holds    -> {} {}   (ada, redelivered)", redelivered.status, redelivered.body);

    // A typo in the id: not found, and no room springs into existence.
    let typo = act_on_room(&runner, request("room-1O1", RoomCommand::Hold { guest: "cy".into() }, "k-typo")).await;
    println!("POST /rooms/room-1O1/holds    -> {} {}", typo.status, typo.body);

    // A client bug: one key reused for another request.
    let reused = act_on_room(&runner, request("room-101", RoomCommand::Release, "k-hold-ada")).await;
    println!("POST /rooms/room-101/release  -> {} {}", reused.status, reused.body);

    // The operator's view: typed lists and counts by kind.
    let page = runner.list(RoomKind::Held, None, 50).await?;
    let names: Vec<&str> = page.records.iter().map(|(id, _)| id.as_str()).collect();
    println!("held rooms: {names:?}; counts: {:?}", runner.counts().await?);
    println!("history of room-101: {} entries", runner.history("room-101").await?.len());
    assert_eq!(runner.history("room-101").await?.len(), 2, "create and one hold, each once");
    Ok(())
}
