//! `#[derive(Command)]`'s handler traits: from the declared table, one
//! method per declared (command, from-state) pair, whose return type only
//! accepts the command's declared targets, and a `dispatch` that matches
//! every pair, so the user's transition needs no catch-all arm.
//!
//! The state's fields come from the structs `#[derive(State)]` generates
//! beside the state enum (`PendingOrderRef`, `PendingOrder`), named here by
//! convention from the `state = ..` path: this derive never sees the state.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::ext::IdentExt as _;
use syn::{GenericParam, Ident, PathArguments, Type};

use crate::ast::{CommandEnum, Variant};
use crate::attr::CommandVariant;

use super::names::{self, Respell};
use super::variants;

/// The state type's path, split so the derive can name the structs
/// `#[derive(State)]` put beside it.
struct StatePath {
    /// Everything before the enum's name (`crate::model::`), or nothing.
    prefix: TokenStream,
    /// The enum's name (`Order`).
    ident: Ident,
    /// Its generic arguments as written (`<T>`), without the brackets.
    args: Vec<TokenStream>,
}

impl StatePath {
    /// `None` when the state type is not a plain path (no handlers then).
    fn new(ty: &Type) -> Option<Self> {
        let path = match ty {
            Type::Path(path) if path.qself.is_none() => &path.path,
            Type::Group(group) => return Self::new(&group.elem),
            Type::Paren(paren) => return Self::new(&paren.elem),
            _ => return None,
        };
        let last = path.segments.last()?;
        let args = match &last.arguments {
            PathArguments::None => Vec::new(),
            PathArguments::AngleBracketed(args) => args.args.iter().map(|arg| quote!(#arg)).collect(),
            PathArguments::Parenthesized(_) => return None,
        };
        let leading = path.leading_colon;
        let segments = path.segments.iter().take(path.segments.len() - 1).map(|segment| &segment.ident);
        Some(StatePath { prefix: quote!(#leading #(#segments::)*), ident: last.ident.clone(), args })
    }

    /// The owned struct of state variant `variant`: `PendingOrder<T>`.
    fn owned(&self, variant: &Ident) -> TokenStream {
        let (prefix, args) = (&self.prefix, &self.args);
        let owned = variants::owned(variant, &self.ident, located(variant));
        if args.is_empty() { quote!(#prefix #owned) } else { quote!(#prefix #owned<#(#args),*>) }
    }

    /// The view of state variant `variant`: `PendingOrderRef<'_, T>`.
    fn view(&self, variant: &Ident) -> TokenStream {
        let (prefix, args) = (&self.prefix, &self.args);
        let view = variants::view(variant, &self.ident, located(variant));
        quote!(#prefix #view<'_ #(, #args)*>)
    }

    /// The hidden enum of views: `__OrderRef`.
    fn views(&self) -> TokenStream {
        let prefix = &self.prefix;
        let views = variants::views(&self.ident);
        quote!(#prefix #views)
    }
}

/// The markers, the `Declares` impls and both handler traits, or
/// `None` when no command declares edges or the state is not a path.
pub(crate) fn expand(input: &CommandEnum<'_>, state: &Type) -> Option<TokenStream> {
    if !input.variants.iter().any(|v| v.attrs.from.is_some() && v.attrs.to.is_some()) {
        return None;
    }
    let path = StatePath::new(state)?;
    let ident = input.ident;
    let shown = ident.unraw().to_string();
    let module = names::module(ident);
    let vis = input.vis;
    let inner_vis = names::inner_vis(vis);
    let generics = input.generics;
    let (_, ty_generics, where_clause) = generics.split_for_impl();
    let self_ty = quote!(#ident #ty_generics);
    let respell = Respell { self_ty: &self_ty };
    let marker_params = marker_params(generics);
    let phantom = names::phantom(generics);
    let views = path.views();
    let cx = Context {
        path: &path,
        ident,
        shown: &shown,
        module: &module,
        inner_vis: &inner_vis,
        generics,
        respell: &respell,
        marker_params: &marker_params,
        phantom: &phantom,
        views: &views,
        state,
    };
    let (markers, impls, methods) = cx.commands(&input.variants);

    let handlers = format_ident!("{}Handlers", ident.unraw(), span = ident.span());
    let async_handlers = format_ident!("{}AsyncHandlers", ident.unraw(), span = ident.span());
    let [module_doc, sync_doc, async_doc] = docs(&shown, &handlers);
    // Any other pair: the declared table refuses it before the transition
    // runs, so only a direct call gets here, and gets a typed error (a
    // `panic!` here would also cost a branch and a spilled state per call).
    let not_declared = quote! {
        #[allow(unreachable_patterns)]
        (command, _) => ::core::result::Result::Err(::machine_core::FromNotDeclared::from_not_declared(::machine_core::NotDeclared {
            command: ::machine_core::Kind::as_str(::machine_core::Command::kind(command)),
            state: ::machine_core::Kind::as_str(::machine_core::State::kind(state)),
        })),
    };
    let not_declared_bound = quote!(where Self::Error: ::machine_core::FromNotDeclared);
    // The async dispatch's future holds `&Command` and `&State`: `Send` needs
    // them `Sync`, which the compiler does not carry over from
    // `AsyncMachine`'s bounds to a generic enum once it normalises the type.
    let async_where = if generics.params.is_empty() {
        quote!(#where_clause)
    } else {
        super::where_clause(generics, &[quote!(#self_ty: ::core::marker::Sync), quote!(#state: ::core::marker::Sync)])
    };
    let Methods { sync, asynchronous, arms, async_arms } = methods;
    let result = quote!(::core::result::Result<#state, Self::Error>);
    let dispatch_doc = DISPATCH_DOC;
    // A public command enum over a less visible state type makes the traits
    // name that type: the user's choice, usable wherever both are visible.
    let lints = quote! {
        #[allow(private_interfaces, private_bounds)]
        #[allow(clippy::too_many_arguments, clippy::ptr_arg, clippy::trivially_copy_pass_by_ref)]
    };
    Some(quote! {
        #[doc = #module_doc]
        #[allow(dead_code)]
        #vis mod #module {
            #(#markers)*
        }

        #(#impls)*

        #[doc = #sync_doc]
        #lints
        #vis trait #handlers #generics: ::machine_core::Machine<State = #state, Command = #self_ty> #where_clause {
            #(#sync)*

            #[doc = #dispatch_doc]
            #[inline]
            fn dispatch(deps: &Self::Deps, command: &#self_ty, state: &#state) -> #result
                #not_declared_bound
            {
                match (command, #views::of(state)) {
                    #(#arms)*
                    #not_declared
                }
            }
        }

        #[doc = #async_doc]
        #lints
        #vis trait #async_handlers #generics: ::machine_core::AsyncMachine<State = #state, Command = #self_ty> #async_where {
            #(#asynchronous)*

            #[doc = #dispatch_doc]
            #[allow(clippy::manual_async_fn)]
            #[inline]
            fn dispatch(deps: &Self::Deps, command: &#self_ty, state: &#state)
                -> impl ::core::future::Future<Output = #result> + ::core::marker::Send
                #not_declared_bound
            {
                async move {
                    match (command, #views::of(state)) {
                        #(#async_arms)*
                        #not_declared
                    }
                }
            }
        }
    })
}

/// The docs of the markers' module and of both traits.
fn docs(shown: &str, handlers: &Ident) -> [String; 3] {
    let module_doc = format!(
        "The commands of [`{shown}`] that declare edges, as types: their handlers' `To<..>` \
         accepts only the states each one's `to(..)` lists."
    );
    let sync_doc = format!(
        "The transition of a `Machine` over [`{shown}`], one method per declared command and \
         from-state (`#[command(from(..), to(..))]`).\n\n\
         Implement every method and call `Self::dispatch(deps, command, state)` from \
         `Machine::transition`: a declared pair without its method does not compile, and a \
         method can only return a state its command's `to(..)` lists, so the transition needs \
         no catch-all arm and the table's `Undeclared` error cannot happen. `dispatch` needs \
         the machine's error to convert from `machine_core::NotDeclared`, what it returns for \
         a pair the table does not declare (only a direct call can pass one). Each \
         `#[command(unchecked)]` command gets one method, with the whole state."
    );
    let async_doc = format!(
        "[`{handlers}`] for an `AsyncMachine`: the same methods, each returning a `Send` future \
         (write them `async fn`); call `Self::dispatch(deps, command, state).await` from \
         `AsyncMachine::transition`."
    );
    [module_doc, sync_doc, async_doc]
}

/// The doc of both `dispatch` methods.
const DISPATCH_DOC: &str = "Runs the handler of `command` in `state`: the body of the machine's \
                    transition.\n\n# Errors\n\nThe handler's error, or, when `command` is not \
                    declared from `state`, `machine_core::NotDeclared` converted into the \
                    machine's error (hence the bound). The declared table refuses those pairs \
                    before the transition runs (in the runner, decisions and `Instance`), so \
                    only a direct call can get that one.";

/// What every command's handlers share.
struct Context<'a> {
    /// The state type, split.
    path: &'a StatePath,
    /// The command enum's name.
    ident: &'a Ident,
    /// The command enum's name as docs show it.
    shown: &'a str,
    /// The module of markers.
    module: &'a Ident,
    /// The markers' visibility.
    inner_vis: &'a TokenStream,
    /// The command enum's generics.
    generics: &'a syn::Generics,
    /// Re-spells the command's field types.
    respell: &'a Respell<'a>,
    /// The markers' generic parameters.
    marker_params: &'a [TokenStream],
    /// The markers' one field, for generic commands.
    phantom: &'a TokenStream,
    /// The hidden enum of the state's views.
    views: &'a TokenStream,
    /// The state type as written.
    state: &'a Type,
}

impl Context<'_> {
    /// Each command's marker, its `Declares` impls, and its methods.
    fn commands(&self, variants: &[Variant<'_, CommandVariant>]) -> (Vec<TokenStream>, Vec<TokenStream>, Methods) {
        let Context { path, ident, shown, module, inner_vis, generics, respell, marker_params, phantom, views, state } =
            *self;
        let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
        let mut markers = Vec::new();
        let mut impls = Vec::new();
        let mut methods = Methods::default();
        for variant in variants {
            let name = variant.ident;
            let fields = Fields::new(variant, respell);
            let command = quote!(#ident::#name);
            let snake = names::snake(&name.unraw().to_string());
            let (Some(from), Some(to)) = (&variant.attrs.from, &variant.attrs.to) else {
                let method = names::ident(&snake, name.span());
                let doc =
                    format!("Handles `{name}`, which is `#[command(unchecked)]`: in any state, producing any state.");
                methods.push(
                    &command,
                    &fields,
                    Signature {
                        method: &method,
                        doc: &doc,
                        last: ("state", quote!(&#state)),
                        output: quote!(#state),
                        state_pattern: quote!(_),
                        argument: quote!(state),
                        unwrap: false,
                    },
                );
                continue;
            };
            let marker_doc =
                format!("[`{shown}::{name}`] as a type: what its handlers' `machine_core::To` is checked against.");
            markers.push(if marker_params.is_empty() {
                quote!(#[doc = #marker_doc] #inner_vis enum #name {})
            } else {
                quote!(#[doc = #marker_doc] #inner_vis struct #name<#(#marker_params),*>(#phantom);)
            });
            let marker_ty = quote!(#module::#name #ty_generics);
            let targets = to.states.iter().map(|target| path.owned(target));
            impls.push(quote! {
                #(
                    #[automatically_derived]
                    impl #impl_generics ::machine_core::Declares<#targets> for #marker_ty #where_clause {}
                )*
            });
            let to_list: Vec<String> =
                to.states.iter().map(|s| format!("`{}`", variants::owned(s, &path.ident, s.span()))).collect();
            let to_list = to_list.join(", ");
            for from_state in &from.states {
                let method = names::ident(
                    &format!("{snake}_{}", names::snake(&from_state.unraw().to_string())),
                    from_state.span(),
                );
                let doc = format!(
                    "Handles `{name}` in state `{from_state}`: returns `To::new` of one of its declared \
                     targets ({to_list}), or the machine's error."
                );
                methods.push(
                    &command,
                    &fields,
                    Signature {
                        method: &method,
                        doc: &doc,
                        last: ("from", path.view(from_state)),
                        output: quote!(::machine_core::To<#state, #marker_ty>),
                        state_pattern: {
                            let variant = Ident::new(&from_state.to_string(), located(from_state));
                            quote!(#views::#variant(view))
                        },
                        argument: quote!(view),
                        unwrap: true,
                    },
                );
            }
        }
        (markers, impls, methods)
    }
}

/// The command's generic parameters without bounds or defaults, for the
/// marker structs.
fn marker_params(generics: &syn::Generics) -> Vec<TokenStream> {
    generics
        .params
        .iter()
        .map(|param| match param {
            GenericParam::Lifetime(lifetime) => {
                let lifetime = &lifetime.lifetime;
                quote!(#lifetime)
            }
            GenericParam::Type(ty) => {
                let ident = &ty.ident;
                quote!(#ident)
            }
            GenericParam::Const(param) => {
                let (ident, ty) = (&param.ident, &param.ty);
                quote!(const #ident: #ty)
            }
        })
        .collect()
}

/// A span at `ident` that belongs to the expansion: a misspelt state is
/// already reported, with the fix, by the table; errors about the names
/// built from it point at it too but suggest nothing (rustc would suggest
/// writing `DraftOrderRef` in `from(..)`).
fn located(ident: &Ident) -> Span {
    Span::call_site().located_at(ident.span())
}

/// The handler methods, as both traits declare them and both dispatches
/// call them.
#[derive(Default)]
struct Methods {
    /// Declarations in the sync trait.
    sync: Vec<TokenStream>,
    /// Declarations in the async trait.
    asynchronous: Vec<TokenStream>,
    /// Arms of the sync dispatch.
    arms: Vec<TokenStream>,
    /// Arms of the async dispatch.
    async_arms: Vec<TokenStream>,
}

/// What one method takes besides the deps and the command's fields, and
/// what it returns.
struct Signature<'a> {
    /// The method's name.
    method: &'a Ident,
    /// Its doc line.
    doc: &'a str,
    /// The last parameter's name (`from`, `state`) and type.
    last: (&'a str, TokenStream),
    /// What the method returns inside `Result<_, Self::Error>`.
    output: TokenStream,
    /// The state's pattern in the dispatch arm.
    state_pattern: TokenStream,
    /// What the dispatch passes as the last argument.
    argument: TokenStream,
    /// Whether the output is a `To` to unwrap into the state.
    unwrap: bool,
}

impl Methods {
    fn push(&mut self, command: &TokenStream, fields: &Fields, signature: Signature<'_>) {
        let Signature { method, doc, last, output, state_pattern, argument, unwrap } = signature;
        let deps = fields.own("deps");
        let (last_name, last_ty) = last;
        let last_name = fields.own(last_name);
        let params = &fields.params;
        let result = quote!(::core::result::Result<#output, Self::Error>);
        self.sync.push(quote! {
            #[doc = #doc]
            fn #method(#deps: &Self::Deps, #(#params,)* #last_name: #last_ty) -> #result;
        });
        self.asynchronous.push(quote! {
            #[doc = #doc]
            fn #method(#deps: &Self::Deps, #(#params,)* #last_name: #last_ty)
                -> impl ::core::future::Future<Output = #result> + ::core::marker::Send;
        });
        let pattern = &fields.pattern;
        let bindings = &fields.bindings;
        let map = unwrap.then(|| quote!(.map(::machine_core::To::into_state)));
        self.arms.push(quote! {
            (#command #pattern, #state_pattern) => Self::#method(deps, #(#bindings,)* #argument)#map,
        });
        self.async_arms.push(quote! {
            (#command #pattern, #state_pattern) => Self::#method(deps, #(#bindings,)* #argument).await #map,
        });
    }
}

/// A command variant's fields as handler parameters and pattern bindings.
struct Fields {
    /// `items: &Vec<Item>` per field.
    params: Vec<TokenStream>,
    /// The pattern after the variant's path: `{ items: field_0 }`.
    pattern: TokenStream,
    /// `field_0, ..`, the arguments the dispatch passes.
    bindings: Vec<Ident>,
    /// The fields' names, to keep the handlers' own parameters apart.
    names: Vec<String>,
}

impl Fields {
    fn new(variant: &Variant<'_, CommandVariant>, respell: &Respell<'_>) -> Self {
        let mut params = Vec::new();
        let mut bindings = Vec::new();
        let mut names = Vec::new();
        let mut members = Vec::new();
        for (i, field) in variant.fields.iter().enumerate() {
            let ty = &field.ty;
            let ty = respell.apply(quote!(#ty));
            let binding = format_ident!("field_{i}");
            let name = field.ident.clone().unwrap_or_else(|| binding.clone());
            names.push(name.unraw().to_string());
            params.push(quote!(#name: &#ty));
            if let Some(member) = &field.ident {
                members.push(quote!(#member: #binding));
            }
            bindings.push(binding);
        }
        let pattern = match variant.fields {
            syn::Fields::Named(_) => quote!({ #(#members),* }),
            syn::Fields::Unnamed(_) => quote!((#(#bindings),*)),
            syn::Fields::Unit => TokenStream::new(),
        };
        Fields { params, pattern, bindings, names }
    }

    /// A parameter name of the handler's own, or `_` when a field has it.
    fn own(&self, name: &str) -> TokenStream {
        if self.names.iter().any(|n| n == name) {
            quote!(_)
        } else {
            let ident = Ident::new(name, Span::call_site());
            quote!(#ident)
        }
    }
}
