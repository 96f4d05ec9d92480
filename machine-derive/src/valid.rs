//! Checks that need more than one attribute or variant at a time (exactly one
//! initial state, edges declared for every command, ..). Every problem is
//! recorded, none stops the others from being found.

use std::collections::BTreeMap;

use syn::Fields;
use syn::ext::IdentExt as _;

use crate::ast::{self, CommandEnum, StateEnum, Variant};
use crate::attr::StateVariant;
use crate::ctxt::Ctxt;

/// Checks a `#[derive(State)]` input.
pub(crate) fn state(cx: &mut Ctxt, input: &StateEnum<'_>) {
    let ident = input.ident;
    if input.variants.is_empty() {
        cx.error_at(
            ident.span(),
            format!(
                "enum `{ident}` has no variants: add one variant per state, starting with the \
                 state a new record is in, such as `#[state(initial)] Draft`"
            ),
        );
        return;
    }

    let mut initial: Option<&Variant<'_, StateVariant>> = None;
    let mut failure: Option<&Variant<'_, StateVariant>> = None;
    for variant in &input.variants {
        let attrs = &variant.attrs;
        let name = variant.ident;
        if let Some(key) = &attrs.initial {
            match initial {
                Some(first) => cx.error_at(
                    key.span(),
                    format!(
                        "`{name}` is marked `initial`, but `{}` already is: a record starts in \
                         exactly one state, so remove one of the two `#[state(initial)]`",
                        first.ident
                    ),
                ),
                None => initial = Some(variant),
            }
        }
        if let Some(key) = &attrs.failure {
            if attrs.initial.is_some() {
                cx.error_at(
                    key.span(),
                    format!(
                        "`{name}` cannot be both `initial` and `failure`: a record never starts \
                         failed; keep `#[state(initial)]` for the state a new record is in and \
                         `#[state(failure)]` for the variant holding `Failure<YourCommand, \
                         {ident}>`"
                    ),
                );
            }
            if let Some(first) = failure {
                cx.error_at(
                    key.span(),
                    format!(
                        "`{name}` is marked `failure`, but `{}` already is: a state enum has at \
                         most one failure variant, so remove one of the two `#[state(failure)]`",
                        first.ident
                    ),
                );
            } else {
                failure = Some(variant);
                failure_variant(cx, input, variant);
            }
        }
        due_fields(cx, variant);
    }
    if initial.is_none() && !input.variants.iter().any(|v| v.attrs.unreadable) {
        cx.error_at(
            ident.span(),
            format!(
                "`{ident}` has no initial state: mark the variant a new record starts in with \
                 `#[state(initial)]`"
            ),
        );
    }
}

/// Checks the `#[state(due)]` fields of one variant: at most one, and none
/// in the failure variant.
fn due_fields(cx: &mut Ctxt, variant: &Variant<'_, StateVariant>) {
    let name = variant.ident;
    let field_name = |index: usize| {
        variant
            .fields
            .iter()
            .nth(index)
            .and_then(|field| field.ident.as_ref())
            .map_or_else(|| format!("field {index}"), |member| format!("`{}`", member.unraw()))
    };
    let mut due = variant.attrs.due.iter();
    let Some(first) = due.next() else { return };
    for extra in due {
        cx.error_at(
            extra.key.span(),
            format!(
                "`{name}` has two `#[state(due)]` fields, {} and {}: a state is due at one time, \
                 so keep `due` on one of them (holding the earliest deadline)",
                field_name(first.index),
                field_name(extra.index)
            ),
        );
    }
    if variant.attrs.failure.is_some() {
        cx.error_at(
            first.key.span(),
            format!(
                "the failure variant `{name}` is never due: a recorded failure waits for \
                 `recover` (or a re-drive policy), not for a deadline; remove `#[state(due)]`"
            ),
        );
    }
}

/// Checks that the `#[state(failure)]` variant holds exactly one
/// `Failure<C, S>`.
fn failure_variant(cx: &mut Ctxt, input: &StateEnum<'_>, variant: &Variant<'_, StateVariant>) {
    let (ident, name) = (input.ident, variant.ident);
    let expected = match variant.fields {
        Fields::Named(_) => format!("`{name} {{ failure: Failure<YourCommand, {ident}> }}`"),
        Fields::Unnamed(_) | Fields::Unit => format!("`{name}(Failure<YourCommand, {ident}>)`"),
    };
    if variant.fields.is_empty() {
        let message = format!("the failure variant `{name}` must hold the recorded failure: write {expected}");
        match variant.fields {
            Fields::Unit => cx.error_at(name.span(), message),
            Fields::Named(_) | Fields::Unnamed(_) => cx.error_spanned_by(variant.fields, message),
        }
        return;
    }
    let Some(field) = ast::single_field(variant.fields) else {
        cx.error_spanned_by(
            variant.fields,
            format!(
                "the failure variant `{name}` holds exactly one field, the recorded failure \
                 (it keeps the command and the previous state): write {expected}"
            ),
        );
        return;
    };
    let Some((_, state, _)) = ast::failure_args(&field.ty) else {
        cx.error_spanned_by(
            &field.ty,
            format!(
                "the failure variant `{name}` must hold a `machine_core::Failure<C, S>`, with \
                 `C` the command type and `S` this enum: write {expected}"
            ),
        );
        return;
    };
    if !names_self(state, ident) {
        cx.error_spanned_by(
            state,
            format!(
                "the failure keeps the previous state, so its second type is this enum: write \
                 `{ident}` or `Self` here, as in `Failure<YourCommand, {ident}>`"
            ),
        );
    }
}

/// Whether `ty` is written as the enum `ident` itself (`Order`, `Order<T>`,
/// `crate::Order`) or `Self`. A type alias of the enum is not recognised:
/// the second type of `Failure<C, S>` must be spelt as the enum.
fn names_self(ty: &syn::Type, ident: &syn::Ident) -> bool {
    match ty {
        syn::Type::Path(path) if path.qself.is_none() => {
            path.path.segments.last().is_some_and(|last| last.ident == *ident || last.ident == "Self")
        }
        syn::Type::Group(group) => names_self(&group.elem, ident),
        syn::Type::Paren(paren) => names_self(&paren.elem, ident),
        _ => false,
    }
}

/// Checks a `#[derive(Command)]` input.
pub(crate) fn command(cx: &mut Ctxt, input: &CommandEnum<'_>) {
    let ident = input.ident;
    if input.variants.is_empty() {
        cx.error_at(
            ident.span(),
            format!("enum `{ident}` has no variants: add one variant per command, such as `Place`"),
        );
        return;
    }
    let has_state = input.attrs.state.is_some();
    let mut reported_missing_state = false;
    for variant in &input.variants {
        let name = variant.ident;
        let attrs = &variant.attrs;
        if attrs.unreadable {
            // Its attribute has an error already; guessing what it meant
            // would only add noise.
            continue;
        }
        let first_list = attrs.from.as_ref().or(attrs.to.as_ref());
        if let (Some(key), Some(list)) = (&attrs.unchecked, first_list) {
            cx.error_at(
                key.span(),
                format!(
                    "`unchecked` leaves `{name}` out of the transition table, so it cannot also \
                     declare `{}(..)`: remove `unchecked` to check the edges, or the lists to opt out",
                    list.key
                ),
            );
        } else {
            match (&attrs.from, &attrs.to) {
                (Some(from), None) => cx.error_at(
                    from.key.span(),
                    format!(
                        "`from(..)` without `to(..)`: add `to(State, ..)` with the states \
                         `{name}` may produce, such as `#[command(from(..), to(Pending))]`"
                    ),
                ),
                (None, Some(to)) => cx.error_at(
                    to.key.span(),
                    format!(
                        "`to(..)` without `from(..)`: add `from(State, ..)` with the states \
                         `{name}` may run in, such as `#[command(from(Draft), to(..))]`"
                    ),
                ),
                _ => {}
            }
        }
        if let Some(list) = first_list
            && !has_state
            && !reported_missing_state
        {
            reported_missing_state = true;
            cx.error_at(
                list.key.span(),
                format!(
                    "`{}(..)` names states, but the state type is unknown: add \
                     `#[command(state = YourState)]` above `enum {ident}`",
                    list.key
                ),
            );
        }
        if let Some(key) = &attrs.timer {
            if !has_state && !reported_missing_state {
                reported_missing_state = true;
                cx.error_at(
                    key.span(),
                    format!(
                        "`timer` fires `{name}` when a record in one of its `from(..)` states is \
                         due, but the state type is unknown: add `#[command(state = YourState)]` \
                         above `enum {ident}` and declare `from(..)`/`to(..)` on `{name}`"
                    ),
                );
            } else if has_state && attrs.unchecked.is_some() {
                cx.error_at(
                    key.span(),
                    format!(
                        "a timer fires from the states its `from(..)` lists, and `unchecked` \
                         leaves `{name}` without any: replace `unchecked` with \
                         `from(DueState), to(State, ..)`"
                    ),
                );
            }
        }
        if has_state && attrs.from.is_none() && attrs.to.is_none() && attrs.unchecked.is_none() {
            cx.error_at(
                name.span(),
                format!(
                    "command `{name}` declares no transition: add \
                     `#[command(from(State, ..), to(State, ..))]` with the states it runs in and \
                     produces, or `#[command(unchecked)]` to leave it out of the table"
                ),
            );
        }
    }
    if has_state {
        one_timer_per_state(cx, input);
    }
}

/// Checks that no state is in the `from(..)` of two `#[command(timer)]`
/// commands: a due record fires exactly one command.
fn one_timer_per_state(cx: &mut Ctxt, input: &CommandEnum<'_>) {
    let mut fired_by: BTreeMap<String, &syn::Ident> = BTreeMap::new();
    for variant in input.variants.iter().filter(|v| v.attrs.timer.is_some() && !v.attrs.unreadable) {
        let Some(from) = &variant.attrs.from else { continue };
        for state in &from.states {
            match fired_by.get(&state.unraw().to_string()) {
                Some(first) => cx.error_at(
                    state.span(),
                    format!(
                        "`{state}` already fires `{first}` when it is due, and a due record fires \
                         one command: remove `{state}` from the `from(..)` of `{}`, or `timer` \
                         from one of the two commands",
                        variant.ident
                    ),
                ),
                None => {
                    fired_by.insert(state.unraw().to_string(), variant.ident);
                }
            }
        }
    }
}
