//! `#[derive(State)]`: the kind enum, `machine_core::State`,
//! `machine_core::FailureState` when the enum has a failure variant, and the
//! variant structs the command derive's handlers use.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::spanned::Spanned as _;
use syn::{DeriveInput, Fields, LitStr};

use crate::ast::{self, StateEnum, Variant};
use crate::attr::StateVariant;
use crate::ctxt::Ctxt;
use crate::valid;

use super::{kind, mentions_type_param, pattern, variants, where_clause};

/// Expands `#[derive(State)]` on `input`.
///
/// On errors, the compile errors come with a best-effort expansion (the kind
/// enum and a `State` impl) so that code using `OrderKind` or `Order::kind()`
/// does not add a cascade of unrelated errors.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::new();
    let Some(parsed) = StateEnum::from_syn(&mut cx, input) else {
        return cx.check().err().map_or_else(TokenStream::new, syn::Error::into_compile_error);
    };
    valid::state(&mut cx, &parsed);
    match cx.check() {
        Ok(()) => expand(&parsed, true),
        Err(errors) => {
            let mut out = errors.into_compile_error();
            if !parsed.variants.is_empty() {
                out.extend(expand(&parsed, false));
            }
            out
        }
    }
}

/// The generated code; `checked` is false for the fallback after errors,
/// which leaves out what the errors make impossible to build.
fn expand(input: &StateEnum<'_>, checked: bool) -> TokenStream {
    let ident = input.ident;
    let kind = kind::ident(ident);
    let variant_idents: Vec<_> = input.variants.iter().map(|v| v.ident).collect();
    let kind_enum = kind::expand(input.vis, ident, &variant_idents);

    let initial = input.variants.iter().find(|v| v.attrs.initial.is_some());
    let failure = input.variants.iter().find(|v| v.attrs.failure.is_some());

    let (impl_generics, ty_generics, _) = input.generics.split_for_impl();
    let mut bounds: Vec<TokenStream> = match initial {
        Some(variant) if checked => variant
            .fields
            .iter()
            .map(|field| &field.ty)
            .filter(|ty| mentions_type_param(input.generics, quote!(#ty)))
            .map(|ty| quote!(#ty: ::core::default::Default))
            .collect(),
        _ => Vec::new(),
    };
    let due = if checked { due(input) } else { None };
    if let Some(due) = &due {
        bounds.extend(due.bounds.iter().cloned());
    }
    let where_clause = where_clause(input.generics, &bounds);
    let due = due.map(|due| due.items);

    let name = input.attrs.name.clone().unwrap_or_else(|| LitStr::new(&ident.unraw().to_string(), ident.span()));

    let kind_arms = input.variants.iter().map(|variant| {
        let pattern = pattern(variant.ident, variant.fields);
        let variant = variant.ident;
        quote!(#pattern => #kind::#variant)
    });

    let initial_body = match initial {
        Some(variant) if checked => construct_with_defaults(variant),
        // Only reached after a compile error, so never at run time.
        _ => quote!(::core::unreachable!()),
    };

    let terminal: Vec<TokenStream> =
        input.variants.iter().filter(|v| v.attrs.terminal.is_some()).map(|v| pattern(v.ident, v.fields)).collect();
    let is_terminal = if terminal.is_empty() { quote!(false) } else { quote!(::core::matches!(self, #(#terminal)|*)) };
    let terminal_kinds = input.variants.iter().filter(|v| v.attrs.terminal.is_some()).map(|v| v.ident);

    let is_failure = failure.map(|variant| {
        let pattern = pattern(variant.ident, variant.fields);
        let failure_kind = variant.ident;
        quote! {
            const FAILURE: ::core::option::Option<#kind> = ::core::option::Option::Some(#kind::#failure_kind);

            fn is_failure(&self) -> bool {
                ::core::matches!(self, #pattern)
            }
        }
    });

    let failure_state = match failure {
        Some(variant) if checked => failure_state(input, variant, &where_clause),
        _ => None,
    };
    let variant_structs = checked.then(|| variants::expand(input));

    quote! {
        #kind_enum

        #[automatically_derived]
        impl #impl_generics ::machine_core::State for #ident #ty_generics #where_clause {
            type Kind = #kind;

            const NAME: &'static str = #name;

            const TERMINAL: &'static [#kind] = &[#(#kind::#terminal_kinds),*];

            fn kind(&self) -> #kind {
                match self {
                    #(#kind_arms,)*
                }
            }

            fn initial() -> Self {
                #initial_body
            }

            fn is_terminal(&self) -> bool {
                #is_terminal
            }

            #is_failure

            #due
        }

        #failure_state

        #variant_structs
    }
}

/// What `#[state(due)]` fields add to the `State` impl.
struct Due {
    /// `fn due` and `const DUE`.
    items: TokenStream,
    /// `FieldType: Due` for due fields whose type mentions a type parameter.
    bounds: Vec<TokenStream>,
}

/// `fn due` and `const DUE` from the `#[state(due)]` fields, or `None` (the
/// trait's defaults: never due) when no variant has one.
///
/// Each deadline is read through `<FieldType as Due>::deadline`, spanned at
/// the field's type, so a type that holds no deadline is rustc's "`String`
/// cannot hold a `#[state(due)]` deadline" (the trait's own message) there.
fn due(input: &StateEnum<'_>) -> Option<Due> {
    let kind = kind::ident(input.ident);
    let mut arms = Vec::new();
    let mut kinds = Vec::new();
    let mut others = Vec::new();
    let mut bounds = Vec::new();
    for variant in &input.variants {
        let Some((due, field)) = variant.due() else {
            others.push(pattern(variant.ident, variant.fields));
            continue;
        };
        let name = variant.ident;
        let ty = &field.ty;
        let binding = quote!(deadline);
        let pattern = if let Some(member) = &field.ident {
            quote!(Self::#name { #member: #binding, .. })
        } else {
            let before = (0..due.index).map(|_| quote!(_));
            let rest = (due.index + 1 < variant.fields.len()).then(|| quote!(, ..));
            quote!(Self::#name(#(#before,)* #binding #rest))
        };
        let span = Span::call_site().located_at(ty.span());
        let read = quote_spanned!(span=> <#ty as ::machine_core::timers::Due>::deadline(#binding));
        arms.push(quote!(#pattern => #read,));
        kinds.push(name);
        if mentions_type_param(input.generics, quote!(#ty)) {
            bounds.push(quote!(#ty: ::machine_core::timers::Due));
        }
    }
    if kinds.is_empty() {
        return None;
    }
    let none_arm = (!others.is_empty()).then(|| quote!(#(#others)|* => ::core::option::Option::None,));
    let items = quote! {
        const DUE: &'static [#kind] = &[#(#kind::#kinds),*];

        fn due(&self) -> ::core::option::Option<::machine_core::timers::Deadline> {
            match self {
                #(#arms)*
                #none_arm
            }
        }
    };
    Some(Due { items, bounds })
}

/// Builds `variant` with every field `Default::default()`.
fn construct_with_defaults(variant: &Variant<'_, StateVariant>) -> TokenStream {
    let ident = variant.ident;
    let default = quote!(::core::default::Default::default());
    match variant.fields {
        Fields::Unit => quote!(Self::#ident),
        Fields::Unnamed(fields) => {
            let values = fields.unnamed.iter().map(|_| &default);
            quote!(Self::#ident(#(#values),*))
        }
        Fields::Named(fields) => {
            let names = fields.named.iter().map(|field| &field.ident);
            quote!(Self::#ident { #(#names: #default),* })
        }
    }
}

/// `impl FailureState` for the failure variant `variant`, or `None` when
/// its field is not a `Failure<C, S>` (already reported).
fn failure_state(
    input: &StateEnum<'_>,
    variant: &Variant<'_, StateVariant>,
    where_clause: &TokenStream,
) -> Option<TokenStream> {
    let field = ast::single_field(variant.fields)?;
    let (command, _, error) = ast::failure_args(&field.ty)?;
    let error = error.map_or_else(|| quote!(::std::string::String), |error| quote!(#error));
    let ident = input.ident;
    let (impl_generics, ty_generics, _) = input.generics.split_for_impl();
    let name = variant.ident;

    // Spanned at the field's type: when its `S` is not this enum, rustc's
    // "mismatched types" points at the user's `Failure<C, S>`.
    let span = Span::call_site().located_at(field.ty.span());
    let (build, bind) = match &field.ident {
        Some(member) => {
            (quote_spanned!(span=> Self::#name { #member: failure }), quote!(Self::#name { #member: failure }))
        }
        None => (quote_spanned!(span=> Self::#name(failure)), quote!(Self::#name(failure))),
    };
    let some = quote_spanned!(span=> ::core::option::Option::Some(failure));
    let others: Vec<TokenStream> =
        input.variants.iter().filter(|v| v.ident != variant.ident).map(|v| pattern(v.ident, v.fields)).collect();
    let none_arm = if others.is_empty() { None } else { Some(quote!(#(#others)|* => ::core::option::Option::None,)) };

    Some(quote! {
        #[automatically_derived]
        impl #impl_generics ::machine_core::FailureState for #ident #ty_generics #where_clause {
            type Command = #command;
            type Error = #error;

            fn from_failure(failure: ::machine_core::Failure<Self::Command, Self, Self::Error>) -> Self {
                #build
            }

            fn failure(
                &self,
            ) -> ::core::option::Option<&::machine_core::Failure<Self::Command, Self, Self::Error>> {
                match self {
                    #bind => #some,
                    #none_arm
                }
            }
        }
    })
}
