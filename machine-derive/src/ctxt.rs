//! Collects every error found in one derive input, so the user sees all of
//! them in a single build instead of fixing them one compile at a time.

use std::fmt::Display;

use proc_macro2::{Punct, Spacing, Span, TokenStream, TokenTree};
use quote::ToTokens;

/// The errors found so far while parsing and checking one derive input.
///
/// Like serde's `Ctxt`: every stage pushes into it and carries on; at the end
/// [`Ctxt::check`] combines them into one [`syn::Error`] whose compile errors
/// each keep their own span.
#[derive(Default)]
pub(crate) struct Ctxt {
    /// The errors in the order they were found.
    errors: Vec<syn::Error>,
}

impl Ctxt {
    /// An empty collector.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records an error that is already built (for example one returned by
    /// syn's parser).
    pub(crate) fn push(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    /// Records an error pointing at `tokens` (from their first to their last
    /// token).
    pub(crate) fn error_spanned_by(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records an error pointing at one span.
    pub(crate) fn error_at(&mut self, span: Span, message: impl Display) {
        self.errors.push(syn::Error::new(span, message));
    }

    /// How many errors were recorded so far; comparing two readings tells
    /// whether a stage found a problem.
    pub(crate) fn len(&self) -> usize {
        self.errors.len()
    }

    /// All errors combined into one, or `Ok` when there were none.
    pub(crate) fn check(self) -> syn::Result<()> {
        let mut errors = self.errors.into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            combined.combine(error);
        }
        Err(combined)
    }
}

/// An error covering everything from `start` to `end` (inclusive), such as a
/// whole `from()` key with its parentheses.
///
/// Stable Rust cannot join two spans, but a compile error spanned over a
/// token stream covers it from its first to its last token; two placeholder
/// tokens carrying the two spans do just that.
pub(crate) fn error_between(start: Span, end: Span, message: impl Display) -> syn::Error {
    let mut tokens = TokenStream::new();
    for span in [start, end] {
        let mut punct = Punct::new('#', Spacing::Alone);
        punct.set_span(span);
        tokens.extend([TokenTree::Punct(punct)]);
    }
    syn::Error::new_spanned(tokens, message)
}
