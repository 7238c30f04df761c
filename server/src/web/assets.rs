//! The site bundle under a versioned path: pages load `/pkg/{version}/safeedit.js` (and the
//! wasm and stylesheet beside it), where the version is a hash of the bundle's files taken when
//! the server starts. Those paths change whenever the bundle does, so browsers may keep them for
//! a year without asking again; `/pkg/{file}` keeps working for pages rendered before (revalidated
//! by Last-Modified).

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use tower_http::services::ServeFile;

/// The bundle's files, in the order they are hashed.
const BUNDLE: [&str; 3] = ["safeedit.js", "safeedit_bg.wasm", "safeedit.css"];

/// How long a browser may keep a versioned file (a year; it never changes under its path).
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The site's package folder as pages name it: `pkg/{version}` (16 hex digits of SHA-256 over
/// the bundle's files), or `pkg` when the bundle cannot be read.
pub fn pkg_dir(site_root: &Path) -> String {
    let mut hasher = Sha256::new();
    for name in BUNDLE {
        match std::fs::read(site_root.join("pkg").join(name)) {
            Ok(bytes) => {
                hasher.update(name.as_bytes());
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(&bytes);
            }
            Err(_) => return "pkg".into(),
        }
    }
    let digest = hasher.finalize();
    let version: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("pkg/{version}")
}

/// Where the versioned files are served from.
#[derive(Clone)]
pub struct Bundle {
    /// The site root's `pkg` folder.
    pub dir: PathBuf,
    /// The version pages name (`pkg/{version}`'s last part).
    pub version: String,
}

/// `GET /pkg/{version}/{file}`: a file of this build's bundle, cacheable for a year; 404 for
/// another version (a page from before the bundle changed: reloading it gets the new one) or a
/// name that is not one of the bundle's files.
pub async fn versioned(
    State(bundle): State<Bundle>,
    UrlPath((version, file)): UrlPath<(String, String)>,
    request: Request,
) -> Response {
    if version != bundle.version || !BUNDLE.contains(&file.as_str()) {
        return (
            StatusCode::NOT_FOUND,
            format!(
                "no bundle file {file} of version {version} (this server has {})",
                bundle.version
            ),
        )
            .into_response();
    }
    match ServeFile::new(bundle.dir.join(&file))
        .oneshot(request)
        .await
    {
        Ok(response) => {
            let mut response = response.map(Body::new);
            if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
            }
            response
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading {file}: {e}"),
        )
            .into_response(),
    }
}
