//! The intermediate representation both derives work on: the enum with its
//! parsed attributes, borrowing the original tokens so that every later error
//! and every generated reference keeps the user's spans.

use syn::{
    Attribute, Data, DeriveInput, Field, Fields, GenericArgument, Generics, Ident, PathArguments, Type, Visibility,
};

use crate::attr;
use crate::ctxt::Ctxt;

/// An enum given to one of the derives, with container attributes `C` and
/// per-variant attributes `V`.
pub(crate) struct Enum<'a, C, V> {
    /// The enum's name (`Order`).
    pub(crate) ident: &'a Ident,
    /// The enum's visibility, given to the generated kind enum as well.
    pub(crate) vis: &'a Visibility,
    /// The enum's generics, propagated to every impl.
    pub(crate) generics: &'a Generics,
    /// What the container attribute said.
    pub(crate) attrs: C,
    /// The variants in declaration order.
    pub(crate) variants: Vec<Variant<'a, V>>,
}

/// One variant of the enum.
pub(crate) struct Variant<'a, V> {
    /// The variant's name (`Pending`).
    pub(crate) ident: &'a Ident,
    /// The variant's fields as written.
    pub(crate) fields: &'a Fields,
    /// What the variant's attributes said.
    pub(crate) attrs: V,
}

/// The input of `#[derive(State)]`.
pub(crate) type StateEnum<'a> = Enum<'a, attr::StateContainer, attr::StateVariant>;

/// The input of `#[derive(Command)]`.
pub(crate) type CommandEnum<'a> = Enum<'a, attr::CommandContainer, attr::CommandVariant>;

/// Which derive is running, for messages.
#[derive(Clone, Copy)]
enum Derive {
    /// `#[derive(State)]`.
    State,
    /// `#[derive(Command)]`.
    Command,
}

impl StateEnum<'_> {
    /// Parses a `#[derive(State)]` input; `None` (with the error recorded)
    /// when it is not an enum.
    pub(crate) fn from_syn<'a>(cx: &mut Ctxt, input: &'a DeriveInput) -> Option<StateEnum<'a>> {
        let ident = &input.ident;
        from_syn(
            cx,
            input,
            Derive::State,
            |cx, attrs| attr::state_container(cx, attrs, ident),
            |cx, variant| attr::state_variant(cx, variant, ident),
        )
    }
}

impl CommandEnum<'_> {
    /// Parses a `#[derive(Command)]` input; `None` (with the error recorded)
    /// when it is not an enum.
    pub(crate) fn from_syn<'a>(cx: &mut Ctxt, input: &'a DeriveInput) -> Option<CommandEnum<'a>> {
        let ident = &input.ident;
        from_syn(cx, input, Derive::Command, attr::command_container, |cx, variant| {
            attr::command_variant(cx, &variant.attrs, ident)
        })
    }
}

/// The shared part of both parsers: checks that the input is an enum and
/// reads the attributes of the enum and of each variant (with its fields).
fn from_syn<'a, C, V>(
    cx: &mut Ctxt,
    input: &'a DeriveInput,
    derive: Derive,
    container: impl FnOnce(&mut Ctxt, &'a [Attribute]) -> C,
    mut variant: impl FnMut(&mut Ctxt, &'a syn::Variant) -> V,
) -> Option<Enum<'a, C, V>> {
    let ident = &input.ident;
    let (name, one_per, example) = match derive {
        Derive::State => ("State", "state", format!("`enum {ident} {{ #[state(initial)] Draft, Pending {{ .. }} }}`")),
        Derive::Command => ("Command", "command", format!("`enum {ident} {{ Place {{ .. }}, Confirm }}`")),
    };
    let not_enum = |keyword: &str| {
        format!(
            "#[derive({name})] works on enums, not {keyword}s: derive it on an enum with one \
             variant per {one_per}, such as {example}"
        )
    };
    let data = match &input.data {
        Data::Enum(data) => data,
        Data::Struct(data) => {
            cx.error_at(data.struct_token.span, not_enum("struct"));
            return None;
        }
        Data::Union(data) => {
            cx.error_at(data.union_token.span, not_enum("union"));
            return None;
        }
    };
    let attrs = container(cx, &input.attrs);
    let variants =
        data.variants.iter().map(|v| Variant { ident: &v.ident, fields: &v.fields, attrs: variant(cx, v) }).collect();
    Some(Enum { ident, vis: &input.vis, generics: &input.generics, attrs, variants })
}

impl<'a> Variant<'a, attr::StateVariant> {
    /// The field marked `#[state(due)]` (the first one, when a mistake marks
    /// several), with its key.
    pub(crate) fn due(&self) -> Option<(&attr::DueField, &'a Field)> {
        let due = self.attrs.due.first()?;
        self.fields.iter().nth(due.index).map(|field| (due, field))
    }
}

/// The one field of a `#[state(failure)]` variant, when it has exactly one.
pub(crate) fn single_field(fields: &Fields) -> Option<&Field> {
    let mut iter = fields.iter();
    match (iter.next(), iter.next()) {
        (Some(field), None) => Some(field),
        _ => None,
    }
}

/// The `C`, `S` and optional `E` of a field type written `Failure<C, S>` or
/// `Failure<C, S, E>` (with any path before `Failure`, such as
/// `machine_core::Failure<C, S>`).
pub(crate) fn failure_args(ty: &Type) -> Option<(&Type, &Type, Option<&Type>)> {
    let path = match ty {
        Type::Path(path) if path.qself.is_none() => &path.path,
        Type::Group(group) => return failure_args(&group.elem),
        Type::Paren(paren) => return failure_args(&paren.elem),
        _ => return None,
    };
    let last = path.segments.last()?;
    if last.ident != "Failure" {
        return None;
    }
    let PathArguments::AngleBracketed(arguments) = &last.arguments else {
        return None;
    };
    let mut args = arguments.args.iter();
    match (args.next(), args.next(), args.next(), args.next()) {
        (Some(GenericArgument::Type(command)), Some(GenericArgument::Type(state)), None, None) => {
            Some((command, state, None))
        }
        (
            Some(GenericArgument::Type(command)),
            Some(GenericArgument::Type(state)),
            Some(GenericArgument::Type(error)),
            None,
        ) => Some((command, state, Some(error))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_types_are_recognised_by_their_last_segment() {
        let ty: Type = syn::parse_quote!(machine_core::Failure<OrderCommand, Order>);
        let (command, state, error) = failure_args(&ty).expect("a failure type");
        assert_eq!(quote::quote!(#command).to_string(), "OrderCommand");
        assert_eq!(quote::quote!(#state).to_string(), "Order");
        assert!(error.is_none());
        let ty: Type = syn::parse_quote!(Failure<OrderCommand, Order, Fault>);
        let (_, _, error) = failure_args(&ty).expect("a failure type with a typed error");
        assert_eq!(quote::quote!(#error).to_string(), "Fault");
        for ty in [
            syn::parse_quote!(Failure<OrderCommand>),
            syn::parse_quote!(Failure<OrderCommand, Order, u8, u8>),
            syn::parse_quote!(Failures<OrderCommand, Order>),
            syn::parse_quote!(Failure<'static, Order>),
            syn::parse_quote!(<T as Trait>::Failure<A, B>),
            syn::parse_quote!(String),
        ] {
            let ty: Type = ty;
            assert!(failure_args(&ty).is_none(), "{}", quote::quote!(#ty));
        }
    }
}
