//! The fieldless `{Enum}Kind` enum both derives generate, with its inherent
//! `ALL` and `as_str()`, `Display` and `machine_core::Kind`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::{Ident, Visibility};

/// The name of the kind enum of `ident`: `Order` → `OrderKind`, spanned at
/// the enum's name so the user can name it and errors point there.
pub(crate) fn ident(ident: &Ident) -> Ident {
    Ident::new(&format!("{}Kind", ident.unraw()), ident.span())
}

/// The kind enum of enum `ident`, whose variants are `variants` in
/// declaration order, with the same visibility as the enum.
pub(crate) fn expand(vis: &Visibility, ident: &Ident, variants: &[&Ident]) -> TokenStream {
    let kind = self::ident(ident);
    // The kind enum's own tokens are located at the user's enum name (with
    // the derive's hygiene): rustc's "no variant named .. found for this
    // enum" then points there rather than at `#[derive(..)]`.
    let span = Span::call_site().located_at(ident.span());
    let shown = ident.unraw();
    let enum_doc = format!(
        "Which variant of [`{shown}`] a value is, without its data: what transition tables, \
         diagrams, stored records and errors name."
    );
    let variant_docs = variants.iter().map(|variant| format!("[`{shown}::{}`].", variant.unraw()));
    let names: Vec<String> = variants.iter().map(|variant| variant.unraw().to_string()).collect();
    let as_str_doc = match names.first() {
        Some(first) => format!("The variant's name as written in [`{shown}`] (`{kind}::{first}` → `\"{first}\"`)."),
        None => format!("The variant's name as written in [`{shown}`]."),
    };
    let kind_enum = quote_spanned! {span=>
        #[doc = #enum_doc]
        #[derive(
            ::core::clone::Clone,
            ::core::marker::Copy,
            ::core::cmp::PartialEq,
            ::core::cmp::Eq,
            ::core::cmp::PartialOrd,
            ::core::cmp::Ord,
            ::core::hash::Hash,
            ::core::fmt::Debug,
        )]
        #vis enum #kind {
            #(
                #[doc = #variant_docs]
                #variants,
            )*
        }
    };
    quote! {
        #kind_enum

        #[automatically_derived]
        impl #kind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Self] = &[#(Self::#variants),*];

            #[doc = #as_str_doc]
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    #(Self::#variants => #names,)*
                }
            }
        }

        #[automatically_derived]
        impl ::core::fmt::Display for #kind {
            fn fmt(&self, formatter: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                // `pad` honours width and alignment: `{:<10}`.
                formatter.pad(#kind::as_str(*self))
            }
        }

        // Inside this impl, `#kind::ALL` and `#kind::as_str` name the inherent
        // items above: inherent associated items always take precedence over
        // trait items in path resolution, so these do not recurse.
        #[automatically_derived]
        impl ::machine_core::Kind for #kind {
            const ALL: &'static [Self] = #kind::ALL;

            fn as_str(self) -> &'static str {
                #kind::as_str(self)
            }
        }
    }
}
