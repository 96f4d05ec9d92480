//! `#[derive(State)]`'s variant structs (`PendingOrder`, `PendingOrderRef`
//! and the hidden `__OrderRef`): what `#[derive(Command)]`'s handlers take
//! and return, since that derive sees only the command enum and cannot name
//! the state's fields. The user's enum is left as written, so its serde
//! encoding does not change.
//!
//! They sit beside the enum rather than in a module of their own: a module
//! inside a function body (a doctest's `main`) cannot name the function's
//! items, and the fields' types are the user's, written for this scope.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::ext::IdentExt as _;
use syn::{Fields, GenericParam, Ident, Lifetime, LifetimeParam};

use crate::ast::{StateEnum, Variant};
use crate::attr::StateVariant;

use super::names::{self, Respell};

/// The owned struct of variant `variant` of enum `ident`: `Pending` of
/// `Order` → `PendingOrder`, spanned at `span` (the token that names it).
pub(crate) fn owned(variant: &Ident, ident: &Ident, span: Span) -> Ident {
    format_ident!("{}{}", variant.unraw(), ident.unraw(), span = span)
}

/// The borrowed view of a variant: `PendingOrderRef`.
pub(crate) fn view(variant: &Ident, ident: &Ident, span: Span) -> Ident {
    format_ident!("{}{}Ref", variant.unraw(), ident.unraw(), span = span)
}

/// The hidden enum of views the generated dispatch matches on: `__OrderRef`.
pub(crate) fn views(ident: &Ident) -> Ident {
    format_ident!("__{}Ref", ident.unraw(), span = ident.span())
}

/// One owned struct and one view per variant, the enum of views, and
/// `From` each owned struct into the enum.
pub(crate) fn expand(input: &StateEnum<'_>) -> TokenStream {
    let ident = input.ident;
    let shown = ident.unraw().to_string();
    let vis = input.vis;
    let field_vis = names::inner_vis(input.vis);
    let generics = input.generics;
    let (_, ty_generics, where_clause) = generics.split_for_impl();
    let self_ty = quote!(#ident #ty_generics);
    let respell = Respell { self_ty: &self_ty };
    let views_ident = views(ident);

    let mut view_generics = generics.clone();
    let view_lifetime = Lifetime::new("'view", Span::call_site());
    view_generics.params.insert(0, GenericParam::Lifetime(LifetimeParam::new(view_lifetime.clone())));
    let (view_impl_generics, view_ty_generics, _) = view_generics.split_for_impl();

    let cx = Context {
        ident,
        shown: &shown,
        vis,
        field_vis: &field_vis,
        generics,
        self_ty: &self_ty,
        respell: &respell,
        view_lifetime: &view_lifetime,
        view_generics: &view_generics,
    };
    let mut items = Vec::new();
    let mut ref_variants = Vec::new();
    let mut ref_arms = Vec::new();
    for variant in &input.variants {
        let (item, ref_variant, ref_arm) = cx.variant(variant);
        items.push(item);
        ref_variants.push(ref_variant);
        ref_arms.push(ref_arm);
    }

    quote! {
        #(#items)*

        /// The current state with its fields borrowed, in the variant it is
        /// in: what the dispatch `#[derive(Command)]` generates matches on.
        #[doc(hidden)]
        #[allow(dead_code)]
        #vis enum #views_ident #view_generics #where_clause {
            #(#ref_variants)*
        }

        #[automatically_derived]
        #[allow(dead_code)]
        impl #view_impl_generics #views_ident #view_ty_generics #where_clause {
            /// Borrows the fields of `state`.
            #[must_use]
            #[inline]
            #vis fn of(state: &#view_lifetime #self_ty) -> Self {
                match state {
                    #(#ref_arms)*
                }
            }
        }
    }
}

/// What every variant's structs share.
struct Context<'a> {
    /// The enum's name.
    ident: &'a Ident,
    /// The enum's name as docs show it.
    shown: &'a str,
    /// The enum's visibility, given to the structs.
    vis: &'a syn::Visibility,
    /// The structs' fields' visibility.
    field_vis: &'a TokenStream,
    /// The enum's generics, given to the structs.
    generics: &'a syn::Generics,
    /// The enum's type, `Order<T>`.
    self_ty: &'a TokenStream,
    /// Re-spells the fields' types.
    respell: &'a Respell<'a>,
    /// The views' lifetime.
    view_lifetime: &'a Lifetime,
    /// The enum's generics after the views' lifetime.
    view_generics: &'a syn::Generics,
}

impl Context<'_> {
    /// The structs and `From` of `variant`, its variant of the enum of
    /// views, and its arm of `of`.
    fn variant(&self, variant: &Variant<'_, StateVariant>) -> (TokenStream, TokenStream, TokenStream) {
        let Context { ident, shown, vis, field_vis, generics, self_ty, respell, view_lifetime, view_generics } = *self;
        let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
        let (_, view_ty_generics, _) = view_generics.split_for_impl();
        let parts = Parts::new(variant, respell);
        let name = variant.ident;
        let owned = owned(name, ident, name.span());
        let view = view(name, ident, name.span());
        let owned_marker = !names::mentions_all(generics, &parts.all_types());
        let view_marker = parts.types.is_empty() || owned_marker;
        let phantom = names::phantom(generics);
        let view_phantom = quote!(::core::marker::PhantomData<&#view_lifetime #self_ty>);
        let owned_doc = format!(
            "[`{shown}::{name}`] as a struct of its own: a handler's next state, turned into \
             [`{shown}`] with `From`."
        );
        let view_doc = format!("The fields of a [`{shown}::{name}`], borrowed: a handler's current state.");
        let types = &parts.types;
        let docs = &parts.docs;
        let members = &parts.members;
        let (owned_struct, view_struct) = match variant.fields {
            Fields::Named(_) => {
                let marker = owned_marker.then(|| {
                    quote! {
                        /// Always `PhantomData`: ties the generic parameters the fields do not use.
                        #field_vis _marker: #phantom,
                    }
                });
                let view_marker = view_marker.then(|| quote!(_marker: #view_phantom,));
                (
                    quote!(#vis struct #owned #generics #where_clause { #(#(#docs)* #field_vis #members: #types,)* #marker }),
                    quote!(#vis struct #view #view_generics #where_clause {
                        #(#(#docs)* #field_vis #members: &#view_lifetime #types,)* #view_marker
                    }),
                )
            }
            Fields::Unnamed(_) => {
                let marker = owned_marker.then(|| quote!(#field_vis #phantom));
                let view_marker = view_marker.then(|| quote!(#view_phantom));
                (
                    quote!(#vis struct #owned #generics (#(#field_vis #types,)* #marker) #where_clause;),
                    quote!(#vis struct #view #view_generics (#(#field_vis &#view_lifetime #types,)* #view_marker) #where_clause;),
                )
            }
            Fields::Unit => {
                let owned_struct = if owned_marker {
                    quote!(#vis struct #owned #generics (#field_vis #phantom) #where_clause;)
                } else {
                    quote!(#vis struct #owned;)
                };
                (owned_struct, quote!(#vis struct #view #view_generics (#view_phantom) #where_clause;))
            }
        };

        let bindings = &parts.bindings;
        let (owned_pattern, built, view_built, enum_pattern) = match variant.fields {
            Fields::Named(_) => {
                let rest = owned_marker.then(|| quote!(..));
                let view_rest = view_marker.then(|| quote!(_marker: ::core::marker::PhantomData,));
                (
                    quote!(#owned { #(#members: #bindings,)* #rest }),
                    quote!(Self::#name { #(#members: #bindings),* }),
                    quote!(#view { #(#members: #bindings,)* #view_rest }),
                    quote!(#ident::#name { #(#members: #bindings),* }),
                )
            }
            Fields::Unnamed(_) => {
                let rest = owned_marker.then(|| quote!(..));
                let view_rest = view_marker.then(|| quote!(::core::marker::PhantomData));
                (
                    quote!(#owned(#(#bindings,)* #rest)),
                    quote!(Self::#name(#(#bindings),*)),
                    quote!(#view(#(#bindings,)* #view_rest)),
                    quote!(#ident::#name(#(#bindings),*)),
                )
            }
            Fields::Unit => {
                (quote!(_), quote!(Self::#name), quote!(#view(::core::marker::PhantomData)), quote!(#ident::#name))
            }
        };
        let items = quote! {
            #[doc = #owned_doc]
            #[allow(dead_code)]
            #owned_struct

            #[doc = #view_doc]
            #[allow(dead_code)]
            #view_struct

            #[automatically_derived]
            #[allow(dead_code)]
            impl #impl_generics ::core::convert::From<#owned #ty_generics> for #self_ty #where_clause {
                #[inline]
                fn from(#owned_pattern: #owned #ty_generics) -> Self {
                    #built
                }
            }
        };
        (items, quote!(#name(#view #view_ty_generics),), quote!(#enum_pattern => Self::#name(#view_built),))
    }
}

/// One variant's fields as the generated structs spell them.
struct Parts {
    /// Field names (named variants only).
    members: Vec<syn::Ident>,
    /// Field types, re-spelt for the module.
    types: Vec<TokenStream>,
    /// The fields' own doc attributes, or a generated line.
    docs: Vec<Vec<TokenStream>>,
    /// A binding per field, for patterns.
    bindings: Vec<syn::Ident>,
}

impl Parts {
    fn new(variant: &Variant<'_, StateVariant>, respell: &Respell<'_>) -> Self {
        let mut parts = Parts { members: Vec::new(), types: Vec::new(), docs: Vec::new(), bindings: Vec::new() };
        for (i, field) in variant.fields.iter().enumerate() {
            let ty = &field.ty;
            parts.types.push(respell.apply(quote!(#ty)));
            let own: Vec<TokenStream> =
                field.attrs.iter().filter(|a| a.path().is_ident("doc")).map(|a| quote!(#a)).collect();
            let docs = if own.is_empty() {
                let line = field.ident.as_ref().map_or_else(
                    || format!("Field {i} of `{}`.", variant.ident.unraw()),
                    |member| format!("`{}` of `{}`.", member.unraw(), variant.ident.unraw()),
                );
                vec![quote!(#[doc = #line])]
            } else {
                own
            };
            parts.docs.push(docs);
            if let Some(member) = &field.ident {
                parts.members.push(member.clone());
            }
            parts.bindings.push(format_ident!("field_{i}"));
        }
        parts
    }

    /// Every field type, for the check of unused generic parameters.
    fn all_types(&self) -> TokenStream {
        let types = &self.types;
        quote!(#(#types)*)
    }
}
