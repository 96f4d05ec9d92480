//! `#[derive(Command)]`: the kind enum, `machine_core::Command`,
//! `machine_core::Transitions` (the declared table with `state = S`, its
//! timers, an empty one for every state type without), and with a table the
//! handler traits that let the compiler check every declared edge.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{DeriveInput, GenericParam, Ident, Type};

use crate::ast::CommandEnum;
use crate::ctxt::Ctxt;
use crate::valid;

use super::timers::{self, Timers};
use super::{handlers, kind, pattern, where_clause};

/// Expands `#[derive(Command)]` on `input`.
///
/// On errors, the compile errors come with a best-effort expansion (the kind
/// enum, `Command`, and a table that checks nothing) so that code using the
/// command type does not add a cascade of unrelated errors.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::new();
    let Some(parsed) = CommandEnum::from_syn(&mut cx, input) else {
        return cx.check().err().map_or_else(TokenStream::new, syn::Error::into_compile_error);
    };
    valid::command(&mut cx, &parsed);
    let checked = cx.check();
    let mut out = match &checked {
        Ok(()) => TokenStream::new(),
        Err(errors) => errors.to_compile_error(),
    };
    if !parsed.variants.is_empty() {
        match expand(&parsed, checked.is_ok()) {
            Ok(tokens) => out.extend(tokens),
            Err(error) => out.extend(error.into_compile_error()),
        }
    }
    out
}

/// The generated code; `checked` is false for the fallback after errors,
/// whose table checks nothing.
fn expand(input: &CommandEnum<'_>, checked: bool) -> syn::Result<TokenStream> {
    let ident = input.ident;
    let kind = kind::ident(ident);
    let variant_idents: Vec<_> = input.variants.iter().map(|v| v.ident).collect();
    let kind_enum = kind::expand(input.vis, ident, &variant_idents);

    let (impl_generics, ty_generics, _) = input.generics.split_for_impl();
    let where_clause = where_clause(input.generics, &[]);
    let kind_arms = input.variants.iter().map(|variant| {
        let pattern = pattern(variant.ident, variant.fields);
        let variant = variant.ident;
        quote!(#pattern => #kind::#variant)
    });

    let transitions = if let Some(state) = &input.attrs.state {
        let body = if checked { table(input, &kind, state) } else { None };
        let handlers = if checked { handlers::expand(input, state) } else { None };
        let Timers { method: timer, bounds, check } =
            if checked { timers::expand(input, state) } else { Timers::default() };
        let table_where = super::where_clause(input.generics, &bounds);
        quote! {
            #[automatically_derived]
            impl #impl_generics ::machine_core::Transitions<#state>
                for #ident #ty_generics #table_where
            {
                #body

                #timer
            }

            #check

            #handlers
        }
    } else {
        // Every state type, with no edges: nothing is checked.
        let mut generics = input.generics.clone();
        let param: GenericParam = syn::parse2(quote!(__S: ::machine_core::State))?;
        generics.params.push(param);
        let (impl_generics, _, _) = generics.split_for_impl();
        quote! {
            #[automatically_derived]
            impl #impl_generics ::machine_core::Transitions<__S>
                for #ident #ty_generics #where_clause
            {
            }
        }
    };

    Ok(quote! {
        #kind_enum

        #[automatically_derived]
        impl #impl_generics ::machine_core::Command for #ident #ty_generics #where_clause {
            type Kind = #kind;

            fn kind(&self) -> #kind {
                match self {
                    #(#kind_arms,)*
                }
            }
        }

        #transitions
    })
}

/// The `edge` method of the declared table, or `None` (the trait's default,
/// every command unchecked) when no command declares edges.
///
/// Each state is written `<S as ::machine_core::State>::Kind::Draft` with the
/// user's own `Draft` token, so a misspelt state is rustc's "no variant named
/// `Drat`" pointing at the attribute. The arrays are constants, promoted to
/// `'static`.
fn table(input: &CommandEnum<'_>, kind: &Ident, state: &Type) -> Option<TokenStream> {
    let state_kind = quote!(<#state as ::machine_core::State>::Kind);
    let mut arms = Vec::new();
    let mut unchecked = Vec::new();
    for variant in &input.variants {
        let name = variant.ident;
        match (&variant.attrs.from, &variant.attrs.to) {
            (Some(from), Some(to)) => {
                let from = from.states.iter();
                let to = to.states.iter();
                arms.push(quote! {
                    #kind::#name => ::core::option::Option::Some(::machine_core::Edge {
                        from: &[#(#state_kind::#from),*],
                        to: &[#(#state_kind::#to),*],
                    }),
                });
            }
            _ => unchecked.push(quote!(#kind::#name)),
        }
    }
    if arms.is_empty() {
        return None;
    }
    if !unchecked.is_empty() {
        arms.push(quote!(#(#unchecked)|* => ::core::option::Option::None,));
    }
    let command = Ident::new("command", Span::call_site());
    Some(quote! {
        fn edge(
            #command: #kind,
        ) -> ::core::option::Option<::machine_core::Edge<#state_kind>> {
            match #command {
                #(#arms)*
            }
        }
    })
}
