//! The `#[essa_wrap]` attribute of the essa Rust guest SDK.
//!
//! Use it through its re-export `essa_api::essa_wrap`; the code it generates
//! refers to the `essa_api` crate, which must be a dependency of the crate
//! that uses the attribute.

use proc_macro::TokenStream;
use proc_macro2::{Literal, TokenStream as TokenStream2};
use quote::{format_ident, quote, ToTokens};
use syn::ext::IdentExt;
use syn::{
    Expr, ExprLit, FnArg, GenericArgument, Ident, ItemFn, Lit, MetaNameValue, Pat, PathArguments,
    ReturnType, Type,
};

/// Makes a function callable remotely, as an essa function.
///
/// ```ignore
/// use essa_api::essa_wrap;
///
/// #[essa_wrap(name = "shout_extern")]
/// pub fn shout(text: String, times: usize) -> String {
///     text.to_ascii_uppercase().repeat(times)
/// }
/// ```
///
/// The function itself is kept unchanged. The attribute adds:
///
/// - an exported function `__essa_wrapper__shout` with the Wasm type
///   `(i32) -> ()`, which the essa runtime calls with the length of the
///   argument bytes. It fetches the bytes, bincode-decodes them as a struct
///   whose fields are the function's parameters in order, calls `shout` and
///   sets the bincode-encoded return value as the call's result.
/// - `pub fn shout_extern(text: String, times: usize)
///   -> Result<essa_api::RemoteFunctionResult<String>, essa_api::EssaResult>`,
///   which starts a remote call of `shout` (possibly on another executor)
///   and returns at once; `.get()` on the handle waits for the result.
///
/// - the function's signature, as one line of JSON in the module's custom
///   section `essa.signatures` (docs/signatures.md in the essa repository):
///   `{"name":"shout","params":[{"name":"text","type":"string"},
///   {"name":"times","type":"u64"}],"result":"string"}`, so that essa takes
///   the function's arguments and gives its result as values (JSON, text,
///   Python values). Types map as `String`/`str` -> `string`, `Vec<u8>` ->
///   `bytes`, `bool`, `u8`..`u128` and `i8`..`i128` (`usize` -> `u64`,
///   `isize` -> `i64`), `f32`, `f64`, `()` -> `unit`, `Option<T>`,
///   `Vec<T>`/`[T]` -> `list<T>`, tuples and `[T; N]` -> `tuple<...>`,
///   `HashMap`/`BTreeMap<K, V>` -> `map<K,V>` (keys `String`, `bool` or
///   integers), `Box<T>` -> `T`. A function with any other type (a struct of
///   its own, `Result`, `char`, ...) gets no line and keeps the raw-bytes
///   interface: callers pass bincode bytes and get bytes back.
///
/// Parameters must be plain `name: Type` pairs of owned types that implement
/// serde's `Serialize` and `Deserialize`; the return type must implement
/// them too. Generic, `async` and method functions are not supported.
#[proc_macro_attribute]
pub fn essa_wrap(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    let generated = expand(TokenStream2::from(attr), item.clone())
        .unwrap_or_else(|error| error.to_compile_error());
    // The annotated function stays as it was, followed by what we generate.
    quote!(#item #generated).into()
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let remote_name = parse_name(attr)?;
    let function: ItemFn = syn::parse2(item).map_err(|e| {
        syn::Error::new(e.span(), "#[essa_wrap] can only be used on a function")
    })?;
    let sig = &function.sig;
    let fn_name = &sig.ident;

    if let Some(token) = &sig.asyncness {
        return Err(error(token, "#[essa_wrap] does not support async functions"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(error(&sig.generics, "#[essa_wrap] does not support generic functions"));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(error(variadic, "#[essa_wrap] does not support variadic functions"));
    }
    if remote_name == *fn_name {
        return Err(error(
            fn_name,
            "the `name` of #[essa_wrap] must differ from the function's own name",
        ));
    }

    // The parameters become the fields of the argument struct.
    let mut fields: Vec<Ident> = Vec::new();
    let mut types: Vec<&Type> = Vec::new();
    for input in &sig.inputs {
        let typed = match input {
            FnArg::Receiver(receiver) => {
                return Err(error(receiver, "#[essa_wrap] does not support methods (`self`)"))
            }
            FnArg::Typed(typed) => typed,
        };
        let ident = match &*typed.pat {
            Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => pat.ident.clone(),
            other => {
                return Err(error(
                    other,
                    "#[essa_wrap] needs plain `name: Type` parameters (no patterns)",
                ))
            }
        };
        if let Type::Reference(reference) = &*typed.ty {
            return Err(error(
                reference,
                "#[essa_wrap] parameters must be owned types (e.g. `String`, not `&str`): \
                 they are decoded from bytes",
            ));
        }
        fields.push(ident);
        types.push(&typed.ty);
    }

    let ret = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    };
    let signature = signature_line(fn_name, &fields, &types, &sig.output).map(|line| {
        let name = format_ident!("__essa_signature__{}", fn_name);
        let len = line.len();
        let bytes = Literal::byte_string(line.as_bytes());
        quote! {
            #[doc(hidden)]
            #[allow(non_upper_case_globals, dead_code)]
            #[cfg_attr(target_arch = "wasm32", link_section = "essa.signatures")]
            static #name: [u8; #len] = *#bytes;
        }
    });

    let args_struct = format_ident!("__essaArgs__{}", fn_name);
    let wrapper = format_ident!("__essa_wrapper__{}", fn_name);
    let wrapper_str = wrapper.to_string();
    let fn_name_str = fn_name.to_string();
    let remote_doc = format!(
        "Calls [`{0}`] remotely on an essa executor and returns at once; \
         `.get()` on the returned handle waits for the result \
         (generated by `#[essa_wrap]`; the callee is the export `{1}`).",
        fn_name_str, wrapper_str
    );

    Ok(quote! {
        #signature

        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #[derive(::essa_api::serde::Serialize, ::essa_api::serde::Deserialize)]
        #[serde(crate = "::essa_api::serde")]
        struct #args_struct {
            #( #fields: #types, )*
        }

        #[doc(hidden)]
        #[no_mangle]
        #[allow(unused_variables)]
        pub extern "C" fn #wrapper(__essa_args_len: usize) {
            ::essa_api::__private::serve(
                #fn_name_str,
                __essa_args_len,
                |__essa_args: #args_struct| #fn_name( #( __essa_args.#fields ),* ),
            )
        }

        #[doc = #remote_doc]
        pub fn #remote_name( #( #fields: #types ),* )
            -> ::core::result::Result<::essa_api::RemoteFunctionResult<#ret>, ::essa_api::EssaResult>
        {
            ::essa_api::__private::call(#wrapper_str, &#args_struct { #( #fields ),* })
        }
    })
}

/// The function's line of the `essa.signatures` section (JSON and a line
/// break), or `None` if a name or type has no essa spelling.
fn signature_line(
    function: &Ident,
    params: &[Ident],
    types: &[&Type],
    output: &ReturnType,
) -> Option<String> {
    let mut json = format!("{{\"name\":\"{}\",\"params\":[", plain_name(function)?);
    for (index, (param, ty)) in params.iter().zip(types).enumerate() {
        if index > 0 {
            json.push(',');
        }
        json += &format!(
            "{{\"name\":\"{}\",\"type\":\"{}\"}}",
            plain_name(param)?,
            essa_type(ty)?
        );
    }
    let result = match output {
        ReturnType::Default => "unit".to_string(),
        ReturnType::Type(_, ty) => essa_type(ty)?,
    };
    json += &format!("],\"result\":\"{}\"}}\n", result);
    Some(json)
}

/// A name as signatures spell names (ASCII letters, digits and `_`), if it is one.
fn plain_name(ident: &Ident) -> Option<String> {
    let name = ident.unraw().to_string();
    let mut chars = name.chars();
    let first = chars.next()?;
    let plain = (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 255;
    if plain {
        Some(name)
    } else {
        None
    }
}

/// The essa type (docs/signatures.md) whose bincode is the Rust type's, if it has one.
///
/// Types are recognised by the last segment of their path (`String`,
/// `std::string::String`), as written: a type alias or a type of one's own
/// with such a name is taken for the standard one.
fn essa_type(ty: &Type) -> Option<String> {
    match ty {
        Type::Paren(inner) => essa_type(&inner.elem),
        Type::Group(inner) => essa_type(&inner.elem),
        Type::Reference(reference) => essa_type(&reference.elem),
        Type::Slice(slice) => list_of(&slice.elem),
        Type::Tuple(tuple) if tuple.elems.is_empty() => Some("unit".to_string()),
        Type::Tuple(tuple) => {
            let items: Option<Vec<String>> = tuple.elems.iter().map(essa_type).collect();
            Some(format!("tuple<{}>", items?.join(",")))
        }
        Type::Array(array) => {
            let count = match &array.len {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(count),
                    ..
                }) => count.base10_parse::<usize>().ok()?,
                _ => return None,
            };
            if count == 0 || count > 32 {
                return None;
            }
            let item = essa_type(&array.elem)?;
            Some(format!("tuple<{}>", vec![item; count].join(",")))
        }
        Type::Path(path) if path.qself.is_none() => {
            let segment = path.path.segments.last()?;
            let args: Vec<&Type> = match &segment.arguments {
                PathArguments::None => Vec::new(),
                PathArguments::AngleBracketed(angle) => angle
                    .args
                    .iter()
                    .map(|arg| match arg {
                        GenericArgument::Type(ty) => Some(ty),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?,
                PathArguments::Parenthesized(_) => return None,
            };
            let name = segment.ident.to_string();
            match (name.as_str(), args.as_slice()) {
                ("String" | "str", []) => Some("string".to_string()),
                ("bool" | "u8" | "u16" | "u32" | "u64" | "u128" | "i8" | "i16" | "i32" | "i64" | "i128"
                | "f32" | "f64", []) => Some(name),
                ("usize", []) => Some("u64".to_string()),
                ("isize", []) => Some("i64".to_string()),
                ("Vec", [item]) => list_of(item),
                ("Option", [item]) => Some(format!("option<{}>", essa_type(item)?)),
                ("Box", [item]) => essa_type(item),
                ("HashMap" | "BTreeMap", [key, value]) | ("HashMap", [key, value, _]) => {
                    let key = essa_type(key)?;
                    let keys = [
                        "string", "bool", "u8", "u16", "u32", "u64", "u128", "i8", "i16", "i32", "i64",
                        "i128",
                    ];
                    if !keys.contains(&key.as_str()) {
                        return None;
                    }
                    Some(format!("map<{},{}>", key, essa_type(value)?))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// `Vec<T>` or `[T]`: `bytes` for bytes (the same bincode, shown as bytes), else `list<T>`.
fn list_of(item: &Type) -> Option<String> {
    let item = essa_type(item)?;
    Some(if item == "u8" {
        "bytes".to_string()
    } else {
        format!("list<{}>", item)
    })
}

/// Parses the attribute's `name = "remote_fn_name"` into an identifier.
fn parse_name(attr: TokenStream2) -> syn::Result<Ident> {
    const USAGE: &str = "expected #[essa_wrap(name = \"...\")], the name of the function \
                         that calls this one remotely";
    if attr.is_empty() {
        return Err(syn::Error::new(proc_macro2::Span::call_site(), USAGE));
    }
    let meta: MetaNameValue =
        syn::parse2(attr).map_err(|e| syn::Error::new(e.span(), USAGE))?;
    if !meta.path.is_ident("name") {
        return Err(error(&meta.path, USAGE));
    }
    let text = match &meta.lit {
        Lit::Str(text) => text,
        other => return Err(error(other, "the `name` of #[essa_wrap] must be a string")),
    };
    syn::parse_str::<Ident>(&text.value()).map_err(|_| {
        error(
            text,
            format!("`{}` is not a valid Rust function name", text.value()),
        )
    })
}

fn error(tokens: impl ToTokens, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new_spanned(tokens, message)
}
