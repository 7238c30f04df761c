//! How the pages' loaded data travels in the server-rendered HTML, chosen for the size of the
//! WebAssembly bundle.
//!
//! A value reaches the browser two ways: as a server function's answer (decoded by server_fn
//! from the response's bytes, `serde_json::from_slice`) and inside the HTML a page is rendered
//! with, for hydration (decoded by the resource's codec; leptos' default reads it with
//! `serde_json::from_str`). The two readers are different types to serde_json, so every record
//! type's deserialiser was compiled twice into the bundle. [`PageJson`] writes the same JSON as
//! the default codec and reads it through the byte reader server functions use, so there is one
//! copy. [`resource`] makes a page's resource with it; [`from_json`] reads any other JSON the
//! browser receives (event streams) the same way.

use std::future::Future;

use leptos::prelude::*;
use leptos::server::codee::{Decoder, Encoder};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// JSON in the page, read as bytes (see the module's note).
pub struct PageJson;

impl<T: Serialize> Encoder<T> for PageJson {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(value: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(value)
    }
}

impl<T: DeserializeOwned> Decoder<T> for PageJson {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(text: &str) -> Result<T, serde_json::Error> {
        from_json(text)
    }
}

/// Reads JSON text through serde_json's byte reader (see the module's note: never
/// `serde_json::from_str` in code the browser runs).
pub fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_slice(text.as_bytes())
}

/// A page's resource: loaded on the server while the page renders and sent with it.
pub type PageResource<T> = Resource<T, PageJson>;

/// [`Resource::new`] with [`PageJson`]: `fetcher` runs whenever `source` changes.
#[track_caller]
pub fn resource<S, T, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetcher: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> PageResource<T>
where
    S: PartialEq + Clone + Send + Sync + 'static,
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetcher, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_json_writes_what_the_default_codec_writes_and_reads_it_back() {
        use leptos::server::codee::string::JsonSerdeCodec;
        let value: Result<Vec<(String, Option<u64>)>, String> =
            Ok(vec![("é \"q\"".into(), Some(3)), ("b".into(), None)]);
        let ours = <PageJson as Encoder<_>>::encode(&value).unwrap();
        let theirs = <JsonSerdeCodec as Encoder<_>>::encode(&value).unwrap();
        assert_eq!(ours, theirs);
        let back: Result<Vec<(String, Option<u64>)>, String> =
            <PageJson as Decoder<_>>::decode(ours.as_str()).unwrap();
        assert_eq!(back, value);
        let bad = <PageJson as Decoder<Vec<u64>>>::decode("[1, \"two\"]").unwrap_err();
        assert!(bad.to_string().contains("invalid type"), "{bad}");
    }
}
