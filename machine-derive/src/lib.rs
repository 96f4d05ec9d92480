//! Derive macros for `machine-core`; use them through `machine_core`.
use proc_macro::TokenStream;

/// Derives `machine_core::State`.
#[proc_macro_derive(State, attributes(state))]
pub fn derive_state(input: TokenStream) -> TokenStream {
    let _ = input;
    TokenStream::new()
}

/// Derives `machine_core::Command`.
#[proc_macro_derive(Command, attributes(command))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    let _ = input;
    TokenStream::new()
}
