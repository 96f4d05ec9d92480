//! Property: any sequence of commands ends in the same state and reports the
//! same errors whether run in memory by `Instance` or persisted by `Runner`.

use machine_core::prelude::*;
use machine_core::store::Memory;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(State, Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Cart {
    #[state(initial)]
    Empty,
    Filled {
        items: Vec<u8>,
        total: u32,
    },
    #[state(terminal)]
    CheckedOut {
        total: u32,
    },
}

#[derive(Command, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[command(state = Cart)]
enum CartCommand {
    #[command(from(Empty, Filled), to(Filled))]
    Add(u8),
    #[command(from(Filled), to(Empty, Filled))]
    RemoveLast,
    #[command(from(Filled), to(CheckedOut))]
    CheckOut,
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("cart total {0} is over the limit")]
struct OverLimit(u32);

struct Carts;

impl Machine for Carts {
    type State = Cart;
    type Command = CartCommand;
    type Deps = u32; // the spending limit
    type Error = OverLimit;

    fn transition(limit: &u32, command: &CartCommand, state: &Cart) -> Result<Cart, OverLimit> {
        match (command, state) {
            (CartCommand::Add(price), Cart::Empty) => {
                Ok(Cart::Filled { items: vec![*price], total: u32::from(*price) })
            }
            (CartCommand::Add(price), Cart::Filled { items, total }) => {
                let total = total + u32::from(*price);
                if total > *limit {
                    return Err(OverLimit(total));
                }
                Ok(Cart::Filled { items: [items.as_slice(), &[*price]].concat(), total })
            }
            (CartCommand::RemoveLast, Cart::Filled { items, .. }) if items.len() <= 1 => Ok(Cart::Empty),
            (CartCommand::RemoveLast, Cart::Filled { items, total }) => {
                let last = items.last().copied().unwrap_or_default();
                Ok(Cart::Filled { items: items[..items.len() - 1].to_vec(), total: total - u32::from(last) })
            }
            (CartCommand::CheckOut, Cart::Filled { total, .. }) => Ok(Cart::CheckedOut { total: *total }),
            (_, other) => Ok(other.clone()),
        }
    }
}

fn command() -> impl Strategy<Value = CartCommand> {
    prop_oneof![any::<u8>().prop_map(CartCommand::Add), Just(CartCommand::RemoveLast), Just(CartCommand::CheckOut)]
}

/// An outcome comparable across the two paths: the state or the error's kind.
fn summary<T>(result: &Result<T, Error<OverLimit>>) -> Result<(), String> {
    result.as_ref().map(|_| ()).map_err(|error| match error {
        Error::Rejected(e) => format!("rejected: {e}"),
        Error::NotAllowed { command, state, .. } => format!("not allowed: {command} in {state}"),
        other => format!("unexpected: {other}"),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn instance_and_runner_agree(commands in proptest::collection::vec(command(), 0..40), limit in 100_u32..600) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let runner = Runner::<Carts, _>::new(Memory::new(), limit);
        let mut instance = Instance::<Carts>::new(&limit, Cart::initial());
        let mut saved = 0;
        for command in &commands {
            let in_memory = summary(&instance.handle(command));
            let persisted = runtime.block_on(runner.handle("cart", command));
            saved += u64::from(persisted.is_ok());
            prop_assert_eq!(in_memory, summary(&persisted), "command {:?}", command);
        }
        let stored = runtime.block_on(runner.get("cart")).unwrap();
        prop_assert_eq!(stored.as_ref().map_or(&Cart::Empty, |v| &v.state), instance.state());
        prop_assert_eq!(stored.map_or(0, |v| v.version), saved, "one version per saved command");
    }
}
