//! The names both derives agree on without seeing each other (`Order`'s
//! variant structs, `OrderCommand`'s module of markers), and the re-spelling
//! of field types for generated items outside the enum.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::ext::IdentExt as _;
use syn::{GenericParam, Generics, Ident, Visibility};

/// `OrderCommand` → `order_command`, `HTTPState` → `http_state`.
pub(crate) fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let after_lower = i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let ends_acronym =
                i > 0 && chars[i - 1].is_uppercase() && chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if after_lower || ends_acronym {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// An identifier for `name`, raw when `name` is a keyword (`Type` →
/// `r#type`), with `_` appended for the few keywords that cannot be raw.
pub(crate) fn ident(name: &str, span: Span) -> Ident {
    if syn::parse_str::<Ident>(name).is_ok() {
        return Ident::new(name, span);
    }
    if matches!(name, "self" | "super" | "crate" | "_") {
        return Ident::new(&format!("{name}_"), span);
    }
    Ident::new_raw(name, span)
}

/// The module holding the generated types of enum `name`: `Order` →
/// `order`, spanned at the enum's name.
pub(crate) fn module(name: &Ident) -> Ident {
    ident(&snake(&name.unraw().to_string()), name.span())
}

/// The visibility of items inside a generated module: `pub` for a public
/// enum (so they are reachable wherever it is), `pub(crate)` otherwise
/// (the module itself, with the enum's visibility, bounds them).
pub(crate) fn inner_vis(vis: &Visibility) -> TokenStream {
    if let Visibility::Public(_) = vis { quote!(pub) } else { quote!(pub(crate)) }
}

/// A `PhantomData` type mentioning every generic parameter of `generics`,
/// for generated types whose fields do not.
pub(crate) fn phantom(generics: &Generics) -> TokenStream {
    let parts = generics.params.iter().map(|param| match param {
        GenericParam::Lifetime(lifetime) => {
            let lifetime = &lifetime.lifetime;
            quote!(&#lifetime ())
        }
        GenericParam::Type(ty) => ty.ident.to_token_stream(),
        GenericParam::Const(param) => {
            let ident = &param.ident;
            quote!([(); #ident])
        }
    });
    quote!(::core::marker::PhantomData<fn() -> (#(#parts,)*)>)
}

/// Whether `tokens` mention every generic parameter of `generics` (a
/// token-level look: lifetimes as `'a`, others by name).
pub(crate) fn mentions_all(generics: &Generics, tokens: &TokenStream) -> bool {
    let mut idents = Vec::new();
    let mut lifetimes = Vec::new();
    collect(tokens.clone(), &mut idents, &mut lifetimes);
    generics.params.iter().all(|param| match param {
        GenericParam::Lifetime(lifetime) => lifetimes.contains(&lifetime.lifetime.ident.to_string()),
        GenericParam::Type(ty) => idents.contains(&ty.ident.to_string()),
        GenericParam::Const(param) => idents.contains(&param.ident.to_string()),
    })
}

/// Whether `tokens` mention any generic parameter of `generics` (the same
/// token-level look as [`mentions_all`]).
pub(crate) fn mentions_any(generics: &Generics, tokens: &TokenStream) -> bool {
    let mut idents = Vec::new();
    let mut lifetimes = Vec::new();
    collect(tokens.clone(), &mut idents, &mut lifetimes);
    generics.params.iter().any(|param| match param {
        GenericParam::Lifetime(lifetime) => lifetimes.contains(&lifetime.lifetime.ident.to_string()),
        GenericParam::Type(ty) => idents.contains(&ty.ident.to_string()),
        GenericParam::Const(param) => idents.contains(&param.ident.to_string()),
    })
}

/// The identifiers (`idents`) and lifetime names (`lifetimes`) in `tokens`.
fn collect(tokens: TokenStream, idents: &mut Vec<String>, lifetimes: &mut Vec<String>) {
    let mut after_quote = false;
    for tree in tokens {
        let quote = matches!(&tree, TokenTree::Punct(punct) if punct.as_char() == '\'');
        match tree {
            TokenTree::Ident(ident) if after_quote => lifetimes.push(ident.to_string()),
            TokenTree::Ident(ident) => idents.push(ident.to_string()),
            TokenTree::Group(group) => collect(group.stream(), idents, lifetimes),
            TokenTree::Punct(_) | TokenTree::Literal(_) => {}
        }
        after_quote = quote;
    }
}

/// How a field type written inside the enum is spelt outside it, where
/// `Self` no longer means the enum.
pub(crate) struct Respell<'a> {
    /// What `Self` means in the enum: the enum with its generics.
    pub(crate) self_ty: &'a TokenStream,
}

impl Respell<'_> {
    /// `tokens` with every `Self` replaced by the enum's type.
    pub(crate) fn apply(&self, tokens: TokenStream) -> TokenStream {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut out = TokenStream::new();
        for (i, tree) in trees.iter().enumerate() {
            match tree {
                TokenTree::Group(group) => {
                    let mut respelt = Group::new(group.delimiter(), self.apply(group.stream()));
                    respelt.set_span(group.span());
                    out.extend([TokenTree::Group(respelt)]);
                }
                TokenTree::Ident(ident) if ident == "Self" => {
                    let self_ty = self.self_ty;
                    // `Self::Assoc` needs the qualified form once `Self` has generics.
                    if matches!(trees.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == ':') {
                        out.extend(quote!(<#self_ty>));
                    } else {
                        out.extend(self_ty.clone());
                    }
                }
                other => out.extend([other.clone()]),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_names() {
        assert_eq!(snake("OrderCommand"), "order_command");
        assert_eq!(snake("Order"), "order");
        assert_eq!(snake("HTTPState"), "http_state");
        assert_eq!(snake("Step2Go"), "step2_go");
        assert_eq!(ident("type", Span::call_site()).to_string(), "r#type");
        assert_eq!(ident("super", Span::call_site()).to_string(), "super_");
    }

    #[test]
    fn self_is_respelt_as_the_enum() {
        let self_ty = quote!(Order<T>);
        let respell = Respell { self_ty: &self_ty };
        let ty: TokenStream = quote!(Vec<(Self, Self::Assoc, &'static str, x::Pending)>);
        // Compared without spaces: printing `> >` or `>>` is the printer's choice.
        let squeeze = |tokens: TokenStream| tokens.to_string().replace(' ', "");
        assert_eq!(
            squeeze(respell.apply(ty)),
            squeeze(quote!(Vec<(Order<T>, <Order<T>>::Assoc, &'static str, x::Pending)>))
        );
    }
}
