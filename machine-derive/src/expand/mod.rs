//! Code generation: turns a parsed and checked enum into the generated kind
//! enum and trait impls. Only absolute paths are emitted, so the user's
//! imports and shadowed names never change what the code means.

pub(crate) mod command;
mod handlers;
pub(crate) mod kind;
mod names;
pub(crate) mod state;
mod timers;
mod variants;

use proc_macro2::{TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::{Fields, Generics, Ident};

/// A pattern matching any value of variant `ident` without binding its
/// fields: `Self::A`, `Self::B(..)` or `Self::C { .. }`.
fn pattern(ident: &Ident, fields: &Fields) -> TokenStream {
    match fields {
        Fields::Unit => quote!(Self::#ident),
        Fields::Unnamed(_) => quote!(Self::#ident(..)),
        Fields::Named(_) => quote!(Self::#ident { .. }),
    }
}

/// The enum's `where` clause with `extra` predicates appended.
fn where_clause(generics: &Generics, extra: &[TokenStream]) -> TokenStream {
    let own = generics.where_clause.iter().flat_map(|clause| clause.predicates.iter()).map(ToTokens::to_token_stream);
    let predicates: Vec<TokenStream> = own.chain(extra.iter().cloned()).collect();
    if predicates.is_empty() { TokenStream::new() } else { quote!(where #(#predicates),*) }
}

/// Whether `tokens` mention one of the generic type parameters of
/// `generics` (a token-level look, which may over-approximate; an extra
/// bound is harmless).
fn mentions_type_param(generics: &Generics, tokens: TokenStream) -> bool {
    let params: Vec<&Ident> = generics.type_params().map(|param| &param.ident).collect();
    if params.is_empty() {
        return false;
    }
    contains_ident(&params, tokens)
}

/// Whether `tokens`, searched into every group, contain one of `idents`.
fn contains_ident(idents: &[&Ident], tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => idents.iter().any(|wanted| **wanted == ident),
        TokenTree::Group(group) => contains_ident(idents, group.stream()),
        TokenTree::Punct(_) | TokenTree::Literal(_) => false,
    })
}
