//! Reads the `#[state(..)]` and `#[command(..)]` attributes into plain
//! structs, keeping every key's token so later errors can point at it.
//!
//! Parsing never stops at the first mistake: a bad entry is reported to the
//! [`Ctxt`], skipped up to the next comma, and the rest is still read.

use proc_macro2::TokenTree;
use quote::ToTokens;
use syn::ext::IdentExt as _;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::{Attribute, Ident, Lit, LitStr, Meta, Token, Type, Variant, token};

use crate::ctxt::{Ctxt, error_between};

/// `#[state(..)]` on the state enum itself.
#[derive(Default)]
pub(crate) struct StateContainer {
    /// `name = "orders"`: the name records are stored under.
    pub(crate) name: Option<LitStr>,
}

/// `#[state(..)]` on one variant of the state enum. Each flag keeps the key
/// token as written, for spans.
#[derive(Default)]
pub(crate) struct StateVariant {
    /// `initial`: the variant a new record starts in.
    pub(crate) initial: Option<Ident>,
    /// `terminal`: no command leaves this variant.
    pub(crate) terminal: Option<Ident>,
    /// `failure`: the variant holding a recorded `Failure<C, S>`.
    pub(crate) failure: Option<Ident>,
    /// The fields marked `#[state(due)]`, in declaration order: more than
    /// one is an error the checks report, so the expansion uses the first.
    pub(crate) due: Vec<DueField>,
    /// Whether an attribute of this variant or of one of its fields had an
    /// error: what it meant is unknown, so checks that would only repeat
    /// that error are skipped.
    pub(crate) unreadable: bool,
}

/// A field marked `#[state(due)]`: it holds when the state is due.
pub(crate) struct DueField {
    /// The `due` key as written, for spans.
    pub(crate) key: Ident,
    /// The field's position in its variant (tuple variants have no names).
    pub(crate) index: usize,
}

/// `#[command(..)]` on the command enum itself.
#[derive(Default)]
pub(crate) struct CommandContainer {
    /// `state = Order`: the state type the transition table refers to.
    pub(crate) state: Option<Type>,
}

/// `#[command(..)]` on one variant of the command enum.
#[derive(Default)]
pub(crate) struct CommandVariant {
    /// `from(A, B)`: the states the command may run in.
    pub(crate) from: Option<StateList>,
    /// `to(C)`: the states the command may produce.
    pub(crate) to: Option<StateList>,
    /// `unchecked`: the explicit opt-out of the table.
    pub(crate) unchecked: Option<Ident>,
    /// `timer`: the command fired when a record in one of its `from(..)`
    /// states is due.
    pub(crate) timer: Option<Ident>,
    /// Whether an attribute of this variant had an error: what it meant is
    /// unknown, so checks that would only repeat that error are skipped.
    pub(crate) unreadable: bool,
}

/// A `from(..)` or `to(..)` list as written.
pub(crate) struct StateList {
    /// The key (`from` or `to`), for spans and messages.
    pub(crate) key: Ident,
    /// The state variant names, each the user's own token so that rustc's
    /// "no variant named .." error points at it.
    pub(crate) states: Vec<Ident>,
}

/// Which attribute is being read, for messages.
#[derive(Clone, Copy)]
enum Attr {
    /// `#[state(..)]`.
    State,
    /// `#[command(..)]`.
    Command,
}

impl Attr {
    /// The attribute's name as written.
    fn name(self) -> &'static str {
        match self {
            Attr::State => "state",
            Attr::Command => "command",
        }
    }
}

/// Keys `#[state(..)]` accepts on a variant.
const STATE_VARIANT_KEYS: &[&str] = &["initial", "terminal", "failure"];
/// Keys `#[state(..)]` accepts on a field of a variant.
const STATE_FIELD_KEYS: &[&str] = &["due"];
/// Keys `#[state(..)]` accepts on the enum.
const STATE_CONTAINER_KEYS: &[&str] = &["name"];
/// Keys `#[command(..)]` accepts on a variant.
const COMMAND_VARIANT_KEYS: &[&str] = &["from", "to", "unchecked", "timer"];
/// Keys `#[command(..)]` accepts on the enum.
const COMMAND_CONTAINER_KEYS: &[&str] = &["state"];

/// Reads every `#[state(..)]` attribute on the state enum.
pub(crate) fn state_container(cx: &mut Ctxt, attrs: &[Attribute], enum_ident: &Ident) -> StateContainer {
    let mut out = StateContainer::default();
    for_each_key(cx, attrs, Attr::State, |cx, key, meta| {
        match key.to_string().as_str() {
            "name" => {
                let value = parse_name(key, meta)?;
                set_once(cx, &mut out.name, key, value, "remove one of the two names");
            }
            "initial" | "terminal" | "failure" => {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "`{key}` marks a variant, not the enum: put `#[state({key})]` on a \
                         variant of `{enum_ident}`"
                    ),
                ));
            }
            "due" => {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "`due` marks the field that holds a state's deadline, not the enum: put \
                         `#[state(due)]` on that field of a variant of `{enum_ident}`, such as \
                         `Pending {{ #[state(due)] expires: Deadline }}`"
                    ),
                ));
            }
            _ => return Err(unknown_key(key, Attr::State, "the enum", STATE_CONTAINER_KEYS)),
        }
        Ok(())
    });
    out
}

/// Reads every `#[state(..)]` attribute on one state variant and on its
/// fields.
pub(crate) fn state_variant(cx: &mut Ctxt, variant: &Variant, enum_ident: &Ident) -> StateVariant {
    let mut out = StateVariant::default();
    let errors_before = cx.len();
    let name = &variant.ident;
    for_each_key(cx, &variant.attrs, Attr::State, |cx, key, meta| {
        let slot = match key.to_string().as_str() {
            "initial" => &mut out.initial,
            "terminal" => &mut out.terminal,
            "failure" => &mut out.failure,
            "name" => {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "`name` belongs on the enum, not on a variant: write \
                         `#[state(name = \"...\")]` above `enum {enum_ident}`"
                    ),
                ));
            }
            "due" => {
                let example = if variant.fields.is_empty() {
                    format!(
                        "give `{name}` a field holding its deadline, `{name} {{ #[state(due)] expires: Deadline }}`"
                    )
                } else {
                    format!("write `#[state(due)]` before the field of `{name}` that holds its deadline")
                };
                return Err(syn::Error::new(
                    key.span(),
                    format!("`due` marks the field that holds a state's deadline, not the variant: {example}"),
                ));
            }
            _ => return Err(unknown_key(key, Attr::State, "a variant", STATE_VARIANT_KEYS)),
        };
        no_value(key, meta, Attr::State)?;
        set_once(cx, slot, key, key.clone(), "remove this one");
        Ok(())
    });
    for (index, field) in variant.fields.iter().enumerate() {
        if let Some(key) = state_field(cx, &field.attrs, name, enum_ident) {
            out.due.push(DueField { key, index });
        }
    }
    out.unreadable = cx.len() > errors_before;
    out
}

/// Reads every `#[state(..)]` attribute on one field of state variant
/// `variant`: the `due` key, if given.
fn state_field(cx: &mut Ctxt, attrs: &[Attribute], variant: &Ident, enum_ident: &Ident) -> Option<Ident> {
    let mut due = None;
    for_each_key(cx, attrs, Attr::State, |cx, key, meta| {
        match key.to_string().as_str() {
            "due" => {
                no_value(key, meta, Attr::State)?;
                set_once(cx, &mut due, key, key.clone(), "remove this one");
            }
            "initial" | "terminal" | "failure" => {
                return Err(syn::Error::new(
                    key.span(),
                    format!("`{key}` marks a variant, not a field: put `#[state({key})]` above `{variant}`"),
                ));
            }
            "name" => {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "`name` belongs on the enum, not on a field: write \
                         `#[state(name = \"...\")]` above `enum {enum_ident}`"
                    ),
                ));
            }
            _ => return Err(unknown_key(key, Attr::State, "a field", STATE_FIELD_KEYS)),
        }
        Ok(())
    });
    due
}

/// Reads every `#[command(..)]` attribute on the command enum.
pub(crate) fn command_container(cx: &mut Ctxt, attrs: &[Attribute]) -> CommandContainer {
    let mut out = CommandContainer::default();
    for_each_key(cx, attrs, Attr::Command, |cx, key, meta| {
        match key.to_string().as_str() {
            "state" => {
                let state = parse_state_type(key, meta)?;
                set_once(cx, &mut out.state, key, state, "a command enum has one state type");
            }
            "from" | "to" | "unchecked" => {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "`{key}` describes one command and goes on a variant, not on the enum: \
                         write `#[command(from(State, ..), to(State, ..))]` or \
                         `#[command(unchecked)]` above a command variant"
                    ),
                ));
            }
            "timer" => {
                return Err(syn::Error::new(
                    key.span(),
                    "`timer` marks one command and goes on a variant, not on the enum: write \
                     `#[command(timer, from(State, ..), to(State, ..))]` above the command that \
                     fires when a record in one of its `from(..)` states is due",
                ));
            }
            _ => {
                return Err(unknown_key(key, Attr::Command, "the enum", COMMAND_CONTAINER_KEYS));
            }
        }
        Ok(())
    });
    out
}

/// Reads every `#[command(..)]` attribute on one command variant.
pub(crate) fn command_variant(cx: &mut Ctxt, attrs: &[Attribute], enum_ident: &Ident) -> CommandVariant {
    let mut out = CommandVariant::default();
    let errors_before = cx.len();
    for_each_key(cx, attrs, Attr::Command, |cx, key, meta| {
        match key.to_string().as_str() {
            "from" | "to" => {
                let list = parse_state_list(cx, key, meta)?;
                let slot = if key == "from" { &mut out.from } else { &mut out.to };
                set_once(cx, slot, key, list, "merge the two lists into one");
            }
            "unchecked" | "timer" => {
                no_value(key, meta, Attr::Command)?;
                let slot = if key == "unchecked" { &mut out.unchecked } else { &mut out.timer };
                set_once(cx, slot, key, key.clone(), "remove this one");
            }
            "state" => {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "`state` belongs on the enum, not on a variant: write \
                         `#[command(state = YourState)]` above `enum {enum_ident}`"
                    ),
                ));
            }
            _ => return Err(unknown_key(key, Attr::Command, "a variant", COMMAND_VARIANT_KEYS)),
        }
        Ok(())
    });
    out.unreadable = cx.len() > errors_before;
    out
}

/// Calls `logic` for each `key ...` entry of every `#[name(..)]` attribute in
/// `attrs`.
///
/// An error returned by `logic` is recorded and the rest of that entry is
/// skipped, so the following entries are still read. Syntax errors syn
/// reports (a missing comma, ..) are recorded too.
fn for_each_key(
    cx: &mut Ctxt,
    attrs: &[Attribute],
    attr: Attr,
    mut logic: impl FnMut(&mut Ctxt, &Ident, &ParseNestedMeta<'_>) -> syn::Result<()>,
) {
    let name = attr.name();
    for attribute in attrs.iter().filter(|a| a.path().is_ident(name)) {
        let list = match &attribute.meta {
            Meta::List(list) => list,
            Meta::Path(path) => {
                cx.error_spanned_by(path, format!("expected `#[{name}(..)]` with a key inside, {}", example(attr)));
                continue;
            }
            Meta::NameValue(name_value) => {
                cx.error_spanned_by(
                    name_value,
                    format!("expected `#[{name}(..)]` with the keys in parentheses, {}", example(attr)),
                );
                continue;
            }
        };
        let parsed = list.parse_nested_meta(|meta| {
            let result = match meta.path.get_ident() {
                Some(key) => {
                    let key = key.clone();
                    logic(cx, &key, &meta)
                }
                None => Err(syn::Error::new_spanned(
                    &meta.path,
                    format!("expected a single key, not a path, {}", example(attr)),
                )),
            };
            if let Err(error) = result {
                cx.push(error);
                skip_entry(meta.input)?;
            } else if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                cx.push(meta.input.error(format!(
                    "expected `,` between two keys, {}",
                    match attr {
                        Attr::State => "such as `#[state(initial, terminal)]`",
                        Attr::Command => "such as `#[command(from(Draft), to(Pending))]`",
                    }
                )));
                skip_entry(meta.input)?;
            }
            Ok(())
        });
        if let Err(error) = parsed {
            cx.push(error);
        }
    }
}

/// An example of the attribute, for hints.
fn example(attr: Attr) -> &'static str {
    match attr {
        Attr::State => "such as `#[state(initial)]`",
        Attr::Command => "such as `#[command(from(Draft), to(Pending))]`",
    }
}

/// Skips the tokens of the current entry, up to (not including) the next
/// comma at this level.
fn skip_entry(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// Stores `value` in `slot`, or reports `key` as a duplicate with `hint`.
fn set_once<T>(cx: &mut Ctxt, slot: &mut Option<T>, key: &Ident, value: T, hint: &str) {
    if slot.is_some() {
        cx.error_at(key.span(), format!("duplicate `{key}`: {hint}"));
    } else {
        *slot = Some(value);
    }
}

/// Rejects a value after a flag key (`initial = true`, `unchecked(..)`).
fn no_value(key: &Ident, meta: &ParseNestedMeta<'_>, attr: Attr) -> syn::Result<()> {
    if meta.input.peek(Token![=]) || meta.input.peek(token::Paren) {
        return Err(syn::Error::new(
            key.span(),
            format!("`{key}` is a flag and takes no value: write `#[{}({key})]`", attr.name()),
        ));
    }
    Ok(())
}

/// The error for a key the attribute does not know, with the expected keys
/// and, for a likely typo, the key that was probably meant.
fn unknown_key(key: &Ident, attr: Attr, place: &str, expected: &[&str]) -> syn::Error {
    let written = key.unraw().to_string();
    let list = match expected {
        [] => String::new(),
        [only] => format!("the only key is `{only}`"),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(|k| format!("`{k}`")).collect();
            format!("expected {} or `{last}`", init.join(", "))
        }
    };
    let suggestion = expected
        .iter()
        .filter(|candidate| edit_distance(&written, candidate) <= 2)
        .min_by_key(|candidate| edit_distance(&written, candidate))
        .map_or(String::new(), |candidate| format!("; did you mean `{candidate}`?"));
    syn::Error::new(
        key.span(),
        format!("unknown key `{written}` in `#[{}(..)]` on {place}: {list}{suggestion}", attr.name()),
    )
}

/// The Levenshtein distance between two short strings, for typo hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous.get(j).map_or(usize::MAX, |d| d + usize::from(ca != *cb));
            let delete = previous.get(j + 1).map_or(usize::MAX, |d| d + 1);
            let insert = current.last().map_or(usize::MAX, |d| d + 1);
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(usize::MAX)
}

/// Parses the `= "orders"` after `name`.
fn parse_name(key: &Ident, meta: &ParseNestedMeta<'_>) -> syn::Result<LitStr> {
    if !meta.input.peek(Token![=]) {
        return Err(syn::Error::new(key.span(), "expected `name = \"...\"`, such as `#[state(name = \"orders\")]`"));
    }
    let input = meta.value()?;
    if input.peek(LitStr) {
        let name: LitStr = input.parse()?;
        if name.value().is_empty() {
            return Err(syn::Error::new(
                name.span(),
                "the name must not be empty: records are stored under it, \
                 such as `#[state(name = \"orders\")]`",
            ));
        }
        return Ok(name);
    }
    let value: TokenTree = input.parse()?;
    let shown = match &value {
        TokenTree::Literal(_) => match syn::parse2::<Lit>(value.to_token_stream()) {
            Ok(Lit::Str(_)) | Err(_) => "orders".to_owned(),
            Ok(_) => value.to_string(),
        },
        TokenTree::Ident(ident) => ident.unraw().to_string(),
        TokenTree::Group(_) | TokenTree::Punct(_) => "orders".to_owned(),
    };
    Err(syn::Error::new(value.span(), format!("expected a string literal: write `name = \"{shown}\"`")))
}

/// Parses the `= Order` after `state`.
fn parse_state_type(key: &Ident, meta: &ParseNestedMeta<'_>) -> syn::Result<Type> {
    if !meta.input.peek(Token![=]) {
        return Err(syn::Error::new(key.span(), "expected `state = YourState`, such as `#[command(state = Order)]`"));
    }
    let input = meta.value()?;
    if input.peek(LitStr) {
        let string: LitStr = input.parse()?;
        return Err(syn::Error::new(
            string.span(),
            format!("expected a type, not a string: write `state = {}`", string.value()),
        ));
    }
    input.parse()
}

/// Parses the `(Draft, Pending)` after `from` or `to`.
fn parse_state_list(cx: &mut Ctxt, key: &Ident, meta: &ParseNestedMeta<'_>) -> syn::Result<StateList> {
    let what = if key == "from" { "runs in" } else { "may produce" };
    if !meta.input.peek(token::Paren) {
        return Err(syn::Error::new(
            key.span(),
            format!(
                "`{key}` takes a parenthesized list of the state variants this command \
                 {what}, such as `{key}(Draft, Pending)`"
            ),
        ));
    }
    let content;
    let paren = syn::parenthesized!(content in meta.input);
    let mut states = Vec::new();
    let mut saw_entry = false;
    while !content.is_empty() {
        saw_entry = true;
        let mut entry = Vec::new();
        while !content.is_empty() && !content.peek(Token![,]) {
            entry.push(content.parse::<TokenTree>()?);
        }
        match state_name(&entry, key) {
            Ok(ident) if states.contains(&ident) => {
                cx.error_at(ident.span(), format!("`{ident}` is listed twice in `{key}(..)`: remove this one"));
            }
            Ok(ident) => states.push(ident),
            Err(error) => cx.push(error),
        }
        if !content.is_empty() {
            content.parse::<Token![,]>()?;
        }
    }
    if !saw_entry {
        cx.push(error_between(
            key.span(),
            paren.span.close(),
            format!(
                "`{key}()` names no state: list the state variants this command {what}, \
                 such as `{key}(Draft)`, or mark the command `#[command(unchecked)]`"
            ),
        ));
    }
    Ok(StateList { key: key.clone(), states })
}

/// One entry of a `from(..)`/`to(..)` list: a bare variant name, or an error
/// saying how to write it.
fn state_name(entry: &[TokenTree], key: &Ident) -> syn::Result<Ident> {
    let (Some(first), Some(last)) = (entry.first(), entry.last()) else {
        return Err(syn::Error::new(key.span(), format!("empty entry in `{key}(..)`: remove the extra comma")));
    };
    let span = |message: String| error_between(first.span(), last.span(), message);
    if let [TokenTree::Ident(ident)] = entry {
        return syn::parse2::<Ident>(ident.to_token_stream())
            .map_err(|_| syn::Error::new(ident.span(), format!("`{ident}` is a keyword, not a state variant name")));
    }
    let idents: Vec<&proc_macro2::Ident> = entry
        .iter()
        .filter_map(|tt| match tt {
            TokenTree::Ident(ident) => Some(ident),
            _ => None,
        })
        .collect();
    if let [TokenTree::Literal(literal)] = entry
        && let Ok(Lit::Str(string)) = syn::parse2::<Lit>(literal.to_token_stream())
    {
        return Err(span(format!(
            "expected a state variant name, not a string: write `{}` without quotes",
            string.value()
        )));
    }
    let is_path = entry.iter().all(|tt| match tt {
        TokenTree::Ident(_) => true,
        TokenTree::Punct(punct) => punct.as_char() == ':',
        _ => false,
    });
    if is_path && let Some(variant) = idents.last() {
        return Err(span(format!("write the state variant name alone: `{variant}`, without the enum's path")));
    }
    if let [TokenTree::Ident(variant), TokenTree::Group(_)] = entry {
        return Err(span(format!("write the state variant name alone: `{variant}`, without its fields")));
    }
    Err(span(format!("expected a state variant name such as `Draft` in `{key}(..)`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("initial", "initial"), 0);
        assert_eq!(edit_distance("inital", "initial"), 1);
        assert_eq!(edit_distance("form", "from"), 2);
        assert_eq!(edit_distance("", "to"), 2);
        assert_eq!(edit_distance("terminal", "to"), 7);
    }

    #[test]
    fn unknown_keys_list_the_expected_ones_and_suggest_a_close_one() {
        let key = Ident::new("inital", proc_macro2::Span::call_site());
        let error = unknown_key(&key, Attr::State, "a variant", STATE_VARIANT_KEYS);
        assert_eq!(
            error.to_string(),
            "unknown key `inital` in `#[state(..)]` on a variant: expected `initial`, \
             `terminal` or `failure`; did you mean `initial`?"
        );
        let key = Ident::new("colour", proc_macro2::Span::call_site());
        let error = unknown_key(&key, Attr::Command, "the enum", COMMAND_CONTAINER_KEYS);
        assert_eq!(error.to_string(), "unknown key `colour` in `#[command(..)]` on the enum: the only key is `state`");
    }

    #[test]
    fn every_mistake_in_one_attribute_is_reported() {
        let variant: Variant = syn::parse_quote! {
            #[state(inital, terminal = 1, failure, failure)]
            #[serde(rename = "x")]
            Draft
        };
        let mut cx = Ctxt::new();
        let ident = Ident::new("Order", proc_macro2::Span::call_site());
        let parsed = state_variant(&mut cx, &variant, &ident);
        assert!(parsed.unreadable);
        assert!(parsed.failure.is_some());
        assert!(parsed.initial.is_none() && parsed.terminal.is_none());
        let errors: Vec<String> = cx.check().err().into_iter().flatten().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn due_fields_are_found_by_position_and_field_mistakes_reported() {
        let variant: Variant = syn::parse_quote! {
            Pending(u8, #[state(due)] Deadline, #[serde(skip)] #[state(due, initial, deu)] Option<Deadline>)
        };
        let mut cx = Ctxt::new();
        let ident = Ident::new("Order", proc_macro2::Span::call_site());
        let parsed = state_variant(&mut cx, &variant, &ident);
        let positions: Vec<usize> = parsed.due.iter().map(|due| due.index).collect();
        assert_eq!(positions, [1, 2]);
        assert!(parsed.unreadable);
        let errors: Vec<String> = cx.check().err().into_iter().flatten().map(|e| e.to_string()).collect();
        assert_eq!(
            errors,
            [
                "`initial` marks a variant, not a field: put `#[state(initial)]` above `Pending`",
                "unknown key `deu` in `#[state(..)]` on a field: the only key is `due`; did you mean `due`?",
            ]
        );
    }

    #[test]
    fn state_lists_keep_the_names_in_order() {
        let attrs: Vec<Attribute> = vec![syn::parse_quote!(#[command(from(Draft, Pending,), to(Cancelled))])];
        let mut cx = Ctxt::new();
        let ident = Ident::new("OrderCommand", proc_macro2::Span::call_site());
        let parsed = command_variant(&mut cx, &attrs, &ident);
        assert!(cx.check().is_ok());
        let names = |list: Option<StateList>| -> Vec<String> {
            list.map(|l| l.states.iter().map(ToString::to_string).collect()).unwrap_or_default()
        };
        assert_eq!(names(parsed.from), ["Draft", "Pending"]);
        assert_eq!(names(parsed.to), ["Cancelled"]);
    }
}
