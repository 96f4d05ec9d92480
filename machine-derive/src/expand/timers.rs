//! `#[derive(Command)]`'s side of timers: `Transitions::timer` (which
//! command a due record in each state fires) and the compile-time check
//! that it agrees with the state's `#[state(due)]` fields (`State::DUE`):
//! every due state has a timer command, and every state a timer command
//! runs from can be due.
//!
//! This derive never sees the state enum, so the check is a constant the
//! compiler evaluates: a free `const _` item when the state type names none
//! of the command enum's generic parameters (evaluated by every build,
//! `cargo check` included), otherwise an inline `const { .. }` in `timer`,
//! evaluated when `timer` is instantiated for concrete types (by the
//! sweeper, `machine_core::timers::check` or the declared diagram).

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::spanned::Spanned as _;
use syn::{Fields, Ident, Type};

use crate::ast::{CommandEnum, Variant};
use crate::attr::CommandVariant;

use super::{mentions_type_param, names};

/// What timers add to the `Transitions` impl.
#[derive(Default)]
pub(crate) struct Timers {
    /// `fn timer`, or nothing (the trait's default: no timers).
    pub(crate) method: Option<TokenStream>,
    /// `FieldType: Default` for the fields of timer commands whose type
    /// mentions a type parameter, for the impl's `where` clause.
    pub(crate) bounds: Vec<TokenStream>,
    /// The free `const _` check, when the state type is not generic.
    pub(crate) check: Option<TokenStream>,
}

/// `timer` and its check for a command enum with `#[command(state = ..)]`,
/// already validated.
pub(crate) fn expand(input: &CommandEnum<'_>, state: &Type) -> Timers {
    let state_kind = quote!(<#state as ::machine_core::State>::Kind);
    let timers: Vec<(&Variant<'_, CommandVariant>, &[Ident])> = input
        .variants
        .iter()
        .filter(|variant| variant.attrs.timer.is_some())
        .filter_map(|variant| variant.attrs.from.as_ref().map(|from| (variant, from.states.as_slice())))
        .collect();

    let mut arms = Vec::new();
    let mut bounds = Vec::new();
    for (variant, from) in &timers {
        let (build, field_types) = construct_with_defaults(variant);
        arms.push(quote!(#(#state_kind::#from)|* => ::core::option::Option::Some(#build),));
        bounds.extend(
            field_types
                .into_iter()
                .filter(|ty| mentions_type_param(input.generics, quote!(#ty)))
                .map(|ty| quote!(#ty: ::core::default::Default)),
        );
    }

    let check = check(input, state, &timers);
    let generic = names::mentions_any(input.generics, &quote!(#state));
    let (inline_check, free_check) =
        if generic { (Some(quote!(const { #check })), None) } else { (None, Some(quote!(const _: () = { #check };))) };
    let body = if arms.is_empty() {
        if !generic {
            // No timers and nothing to check inside: the trait's default.
            return Timers { method: None, bounds, check: free_check };
        }
        quote! {
            let _ = state;
            ::core::option::Option::None
        }
    } else {
        quote! {
            match state {
                #(#arms)*
                _ => ::core::option::Option::None,
            }
        }
    };
    let state_arg = Ident::new("state", Span::call_site());
    let method = quote! {
        #[allow(unreachable_patterns, clippy::match_same_arms, clippy::match_wildcard_for_single_variants)]
        #[inline]
        fn timer(#state_arg: #state_kind) -> ::core::option::Option<Self> {
            #inline_check
            #body
        }
    };
    Timers { method: Some(method), bounds, check: free_check }
}

/// Builds timer command `variant` with every field `Default::default()`
/// (spanned at each field's type, so a type without `Default` is rustc's
/// error there), and returns the field types.
fn construct_with_defaults<'a>(variant: &Variant<'a, CommandVariant>) -> (TokenStream, Vec<&'a Type>) {
    let ident = variant.ident;
    let types: Vec<&Type> = variant.fields.iter().map(|field| &field.ty).collect();
    let defaults = types.iter().map(|ty| {
        let span = Span::call_site().located_at(ty.span());
        quote_spanned!(span=> <#ty as ::core::default::Default>::default())
    });
    let build = match variant.fields {
        Fields::Unit => quote!(Self::#ident),
        Fields::Unnamed(_) => quote!(Self::#ident(#(#defaults),*)),
        Fields::Named(fields) => {
            let names = fields.named.iter().map(|field| &field.ident);
            quote!(Self::#ident { #(#names: #defaults),* })
        }
    };
    (build, types)
}

/// The statements of the check, for a `const` block: every kind in
/// `State::DUE` is in some timer's `from(..)`, and every state in a timer's
/// `from(..)` is in `State::DUE`. A mismatch panics, which in a constant is
/// a compile error with the message, at the state type (a due state without
/// a timer) or at the state's name in `from(..)` (a timer from a state that
/// is never due).
///
/// Without timer commands the check only needs `DUE` to be empty, which
/// asks nothing of the state's kind type. With timers it compares kinds as
/// `usize` and names them with the kind enum's inherent `const fn as_str`,
/// both of which the kind enum `#[derive(State)]` generates has.
fn check(input: &CommandEnum<'_>, state: &Type, timers: &[(&Variant<'_, CommandVariant>, &[Ident])]) -> TokenStream {
    let state_kind = quote!(<#state as ::machine_core::State>::Kind);
    let command = input.ident.unraw().to_string();
    let shown = shown_state(state);
    let at_state = Span::call_site().located_at(state.span());
    let due = quote!(<#state as ::machine_core::State>::DUE);
    if timers.is_empty() {
        let message = format!(
            "`{shown}` has states with a `#[state(due)]` field, but no command of `{command}` is \
             `#[command(timer)]`: mark the command that fires when such a state is due \
             `#[command(timer, from(DueState), to(..))]`"
        );
        return quote_spanned! {at_state=>
            if !#due.is_empty() {
                ::core::panic!("{}", #message);
            }
        };
    }
    let fired: Vec<TokenStream> =
        timers.iter().flat_map(|(_, from)| from.iter()).map(|state| quote!(#state_kind::#state as usize)).collect();
    let before = format!("`{shown}::");
    let middle =
        format!("` has a `#[state(due)]` field, but no `#[command(timer)]` command of `{command}` runs from `");
    let after = "`: mark the command that fires when it is due `#[command(timer, from(";
    let end = "), to(..))]`";
    let every_due_fires = quote_spanned! {at_state=>
        let due: &[#state_kind] = #due;
        let fired: &[usize] = &[#(#fired),*];
        let mut index = 0;
        while index < due.len() {
            let kind = due[index];
            if !::machine_core::timers::__derive::contains(fired, kind as usize) {
                let name = <#state_kind>::as_str(kind);
                let message = ::machine_core::timers::__derive::Message::new()
                    .push(#before).push(name).push(#middle).push(name).push(#after).push(name).push(#end);
                ::core::panic!("{}", message.as_str());
            }
            index += 1;
        }
    };
    let (shown, state_kind) = (&shown, &state_kind);
    let every_timer_is_due = timers.iter().flat_map(|(variant, from)| {
        let name = variant.ident;
        from.iter().map(move |from_state| {
            let message = format!(
                "`{name}` is `#[command(timer)]` from `{from_state}`, but `{shown}::{from_state}` has \
                 no `#[state(due)]` field, so it is never due: mark the field of `{from_state}` that \
                 holds its deadline `#[state(due)]`, or remove `{from_state}` from this timer's `from(..)`"
            );
            let at = Span::call_site().located_at(from_state.span());
            quote_spanned! {at=>
                let mut is_due = false;
                let mut index = 0;
                while index < due.len() {
                    if due[index] as usize == #state_kind::#from_state as usize {
                        is_due = true;
                    }
                    index += 1;
                }
                if !is_due {
                    ::core::panic!("{}", #message);
                }
            }
        })
    });
    quote! {
        #every_due_fires
        #({ #every_timer_is_due })*
    }
}

/// The state type as messages show it: its last path segment (`Order`),
/// or its tokens.
fn shown_state(state: &Type) -> String {
    match state {
        Type::Path(path) if path.qself.is_none() => {
            path.path.segments.last().map_or_else(|| quote!(#state).to_string(), |last| last.ident.unraw().to_string())
        }
        Type::Group(group) => shown_state(&group.elem),
        Type::Paren(paren) => shown_state(&paren.elem),
        _ => quote!(#state).to_string(),
    }
}
