//! The page shape every record has: the record a route parameter names is loaded on the server
//! (async SSR, so a shared link opens complete), rendered by the page's view, a real 404 when
//! there is none, the error otherwise.

use std::future::Future;

use leptos::prelude::*;

use crate::codec::resource;
use leptos_router::hooks::use_params_map;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::NotFound;
use crate::error::AppResult;

/// The page of the record named by the route parameter `param`: `load` fetches it, `loading`
/// shows meanwhile, `show` renders it.
pub(crate) fn record_page<T, Fut, V>(
    param: &'static str,
    loading: &'static str,
    load: fn(String) -> Fut,
    show: fn(T) -> V,
) -> impl IntoView
where
    T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    Fut: Future<Output = AppResult<Option<T>>> + Send + 'static,
    V: IntoView + 'static,
{
    let params = use_params_map();
    let key = Memo::new(move |_| params.get().get(param).unwrap_or_default());
    let record = resource(move || key.get(), load);
    view! {
        <Suspense fallback=move || view! { <p>{loading}</p> }>
            {move || Suspend::new(async move {
                match record.await {
                    Ok(Some(record)) => show(record).into_any(),
                    Ok(None) => view! { <NotFound /> }.into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}
