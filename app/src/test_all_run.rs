//! `/test-all/{slug}`: one SafeEdit_test_ALL run — each edited model with its instance and layer,
//! the category and attack slices, and downloads. Read-only: the server renders the page
//! (`test_all_run_body.rs`) and the browser runs only its share line.

use leptos::prelude::*;

use crate::record_page::record_page;
use crate::server_html::rendered_page;
use crate::test_all_run_html;

/// `/test-all/{slug}`
#[component]
pub fn TestAllRunPage() -> impl IntoView {
    record_page("slug", "Loading the run…", test_all_run_html, rendered_page)
}
