//! Who may do what: the checks every request passes before it reaches a page, a server function
//! or the API.
//!
//! - **Host** (DNS rebinding): a server on a loopback address answers only requests whose `Host`
//!   is a loopback name or one given with `--allowed-host`; a page on another site that makes its
//!   own name point at 127.0.0.1 cannot read the runs.
//! - **Cross-site requests**: a request that changes anything (every method but GET, HEAD,
//!   OPTIONS) is refused when the browser says it comes from another site (`Origin` not this
//!   server nor an `--allowed-origin`, or `Sec-Fetch-Site: cross-site`), and the actions below
//!   take JSON only, which a plain HTML form on another site cannot send.
//! - **Sign-in** (`--auth-token`, or `--auth-header` set by a reverse proxy): required for the
//!   actions (starting, cancelling, trying prompts) and, with `--private`, for everything but the
//!   sign-in page and the site's static files. A client signs in with `Authorization: Bearer
//!   <token>`, or in the browser on `/login`, which sets an HTTP-only, same-site cookie.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, HttpBody};
use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

/// The cookie the sign-in page sets.
pub const COOKIE: &str = "safeedit_auth";

/// The access rules of one server.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The shared secret of `--auth-token`.
    pub token: Option<String>,
    /// The header a trusted reverse proxy sets to the signed-in user (`--auth-header`).
    pub auth_header: Option<String>,
    /// Reading needs a sign-in too (`--private`).
    pub private: bool,
    /// Host names (without port) requests may address; empty: any.
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://lab.example.org`) besides this server's own that may send actions.
    pub allowed_origins: Vec<String>,
    /// Wrong tokens seen lately (shared by every clone of these rules).
    pub wrong: WrongTokens,
}

/// At most this many wrong tokens (Bearer, cookie or the sign-in form) in [`WRONG_WINDOW`];
/// past it, no token is checked until the oldest falls out of the window.
pub const MAX_WRONG: usize = 20;

/// The window of [`MAX_WRONG`].
pub const WRONG_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// When wrong tokens were presented, newest last.
#[derive(Debug, Clone, Default)]
pub struct WrongTokens(Arc<std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>>);

impl WrongTokens {
    fn recent(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<std::time::Instant>> {
        let mut times = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while times.front().is_some_and(|t| t.elapsed() > WRONG_WINDOW) {
            times.pop_front();
        }
        times
    }

    /// Whether token checks are suspended (too many wrong ones lately).
    fn locked(&self) -> bool {
        self.recent().len() >= MAX_WRONG
    }

    fn record(&self) {
        let mut times = self.recent();
        times.push_back(std::time::Instant::now());
        tracing::warn!("a wrong sign-in token ({} in the last minute)", times.len());
    }
}

/// What a request's credentials amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credentials {
    /// A valid sign-in.
    Valid,
    /// None presented.
    Absent,
    /// A token or cookie that is not this server's.
    Wrong,
}

/// Said when token checks are suspended.
const LOCKED: &str = "too many wrong sign-in tokens in the last minute; try again in a minute";

/// The names of this machine's loopback interface as a `Host` header has them.
const LOOPBACK_NAMES: [&str; 4] = ["localhost", "127.0.0.1", "[::1]", "::1"];

impl Access {
    /// The rules for a server listening on `addr`: on a loopback address, requests must name a
    /// loopback host or one of `extra_hosts`; elsewhere any host unless `extra_hosts` are given.
    pub fn for_addr(addr: SocketAddr, extra_hosts: &[String]) -> Self {
        let mut allowed_hosts: Vec<String> = extra_hosts.iter().map(|h| h.to_lowercase()).collect();
        if addr.ip().is_loopback() || !allowed_hosts.is_empty() {
            allowed_hosts.extend(LOOPBACK_NAMES.map(String::from));
            if !addr.ip().is_unspecified() {
                allowed_hosts.push(host_of_ip(addr.ip()));
            }
        }
        Self {
            allowed_hosts,
            ..Self::default()
        }
    }

    /// Whether anyone must sign in for anything.
    pub fn signs_in(&self) -> bool {
        self.token.is_some() || self.auth_header.is_some()
    }

    /// Whether the trusted reverse proxy's header names a signed-in user.
    fn proxy_user(&self, headers: &HeaderMap) -> bool {
        self.auth_header.as_ref().is_some_and(|name| {
            let user = headers.get(name.as_str()).and_then(|v| v.to_str().ok());
            user.is_some_and(|u| !u.trim().is_empty())
        })
    }

    /// What the request's sign-in amounts to.
    fn credentials(&self, headers: &HeaderMap) -> Credentials {
        if self.proxy_user(headers) {
            return Credentials::Valid;
        }
        let Some(token) = &self.token else {
            return Credentials::Absent;
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = cookie(headers, COOKIE);
        if bearer.is_some_and(|b| same(b.trim().as_bytes(), token.as_bytes()))
            || cookie.is_some_and(|c| same(c.as_bytes(), cookie_value(token).as_bytes()))
        {
            return Credentials::Valid;
        }
        if bearer.is_some() || cookie.is_some() {
            Credentials::Wrong
        } else {
            Credentials::Absent
        }
    }

    /// Whether `host` (a `Host` header, maybe with a port) may be served.
    fn host_allowed(&self, host: &str) -> bool {
        if self.allowed_hosts.is_empty() {
            return true;
        }
        let name = strip_port(host).to_lowercase();
        self.allowed_hosts.contains(&name)
    }
}

/// `addr`'s IP as a `Host` header names it.
fn host_of_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `host:port` -> `host` (also for `[::1]:3000`).
fn strip_port(host: &str) -> &str {
    if let Some(end) = host.strip_prefix('[').and_then(|rest| rest.find(']')) {
        return &host[..end + 2];
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Equal bytes, compared in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the sign-in cookie holds for `token`: its SHA-256, so the token itself is not stored
/// in the browser.
fn cookie_value(token: &str) -> String {
    Sha256::digest(format!("safeedit-studio:{token}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of cookie `name`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

/// What a request does, as far as access goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Signing in or out.
    SignIn,
    /// The site's static files (the wasm bundle, styles).
    Static,
    /// Starting or cancelling a job, running the model on a prompt, unlisting a record,
    /// flagging a verdict.
    Action,
    /// Everything else: pages, records, downloads.
    Read,
}

fn kind(method: &Method, path: &str) -> Kind {
    if path == "/login" || path == "/logout" {
        return Kind::SignIn;
    }
    if path.starts_with("/pkg/") || path == "/favicon.ico" {
        return Kind::Static;
    }
    let action = matches!(
        path,
        "/api/jobs" | "/api/start_edit" | "/api/start_job" | "/api/cancel_job" | "/api/try"
    ) || path == "/api/try/stream"
        || path == "/api/try_model"
        || path == "/api/set_unlisted"
        || path == "/api/flag_verdict"
        || path == "/api/unflag_verdict"
        || (path.starts_with("/api/jobs/") && path.ends_with("/cancel"))
        || (path.starts_with("/api/evals/") && path.split('/').nth(4) == Some("flags"));
    // `GET /api/jobs` does not exist; a GET of the others reads nothing either.
    if action && (*method != Method::GET || path == "/api/try/stream") {
        return Kind::Action;
    }
    Kind::Read
}

/// Why a request is refused.
fn refuse(status: StatusCode, message: &str) -> Response {
    (status, message.to_string()).into_response()
}

/// The checks, in order: host, cross-site, JSON for actions, sign-in.
pub async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok())
        && !access.host_allowed(host)
    {
        let name = strip_port(host);
        let shown: String = name.chars().take(100).collect();
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            &format!(
                "this server does not answer for host `{shown}`; start it with \
                 --allowed-host {shown} if that name is meant to reach it"
            ),
        );
    }
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let kind = kind(&method, &path);
    let changes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if changes && let Some(reason) = cross_site(&access, headers) {
        return refuse(StatusCode::FORBIDDEN, &reason);
    }
    let empty = HttpBody::size_hint(request.body()).exact() == Some(0);
    if kind == Kind::Action && changes && !is_json(headers) && !empty {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as JSON (Content-Type: application/json)",
        );
    }
    let needs = match kind {
        Kind::SignIn | Kind::Static => false,
        Kind::Action => true,
        Kind::Read => access.private,
    };
    if access.signs_in() && needs {
        // While guessing is suspected no token is checked (a proxy's sign-in still counts).
        if access.token.is_some() && !access.proxy_user(headers) && access.wrong.locked() {
            return refuse(StatusCode::TOO_MANY_REQUESTS, LOCKED);
        }
        let credentials = access.credentials(headers);
        if credentials == Credentials::Wrong {
            access.wrong.record();
        }
        if credentials != Credentials::Valid {
            // A person opening a page is sent to the sign-in page; a program is told how.
            if method == Method::GET && !path.starts_with("/api/") {
                let next = request
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                return Redirect::to(&format!("/login?next={}", encode(&next))).into_response();
            }
            return refuse(
                StatusCode::UNAUTHORIZED,
                "sign in first: send `Authorization: Bearer <token>` (the server's \
                 --auth-token), or sign in on /login in the browser",
            );
        }
    }
    next.run(request).await
}

/// Why a state-changing request is cross-site, or `None` when it is not.
fn cross_site(access: &Access, headers: &HeaderMap) -> Option<String> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site == Some("cross-site") {
        return Some("requests from other sites cannot change anything here".into());
    }
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("null");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    // `http://host:port` -> `host:port`.
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    if origin_host.is_some() && origin_host == host {
        return None;
    }
    if access
        .allowed_origins
        .iter()
        .any(|allowed| allowed.trim_end_matches('/') == origin)
    {
        return None;
    }
    let shown: String = origin.chars().take(100).collect();
    Some(format!(
        "requests from {shown} cannot change anything here; start the server with \
         --allowed-origin {shown} to allow them"
    ))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// `text` percent-encoded for a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Where to go after signing in: a path on this server, never another site.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_string()
        }
        _ => "/".to_string(),
    }
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// The sign-in page (plain HTML: it works before the app's bundle is allowed to load).
fn login_page(next: &str, message: Option<&str>) -> Html<String> {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let message = message
        .map(|m| format!("<p class=\"error\">{}</p>", escape(m)))
        .unwrap_or_default();
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sign in · SafeEdit Studio</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;\
         padding:0 1rem}}input,button{{font-size:1rem;padding:.4rem;width:100%;box-sizing:\
         border-box;margin:.3rem 0}}.error{{color:#b00020}}</style></head><body>\
         <h1>SafeEdit Studio</h1><p>This server asks for its access token (the one it was \
         started with, <code>--auth-token</code>).</p>{message}\
         <form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>Access token<input type=\"password\" name=\"token\" autocomplete=\
         \"current-password\" required autofocus></label>\
         <button type=\"submit\">Sign in</button></form></body></html>",
        escape(next)
    ))
}

/// `GET /login`.
pub async fn login_form(
    State(access): State<Arc<Access>>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = local_path(q.next.as_deref());
    if access.token.is_none() {
        // Nothing to sign in to (open server, or the reverse proxy signs people in).
        return Redirect::to(&next).into_response();
    }
    login_page(&next, None).into_response()
}

/// `POST /login`: checks the token and sets the sign-in cookie (`Secure` when a reverse proxy
/// says the browser came over HTTPS).
pub async fn login(
    State(access): State<Arc<Access>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = local_path(form.next.as_deref());
    let Some(token) = &access.token else {
        return Redirect::to(&next).into_response();
    };
    if access.wrong.locked() {
        let mut page = login_page(
            &next,
            Some("Too many wrong tokens in the last minute; wait a minute."),
        )
        .into_response();
        *page.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return page;
    }
    if !same(form.token.trim().as_bytes(), token.as_bytes()) {
        access.wrong.record();
        let mut page = login_page(&next, Some("That is not this server's token.")).into_response();
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return page;
    }
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000{}",
        cookie_value(token),
        if https { "; Secure" } else { "" }
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /logout`: forgets the sign-in cookie.
pub async fn logout() -> Response {
    let mut response = Redirect::to("/").into_response();
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Headers every answer carries: no MIME sniffing, no framing by other sites, a content
/// security policy, and no referrer sent to other sites.
pub async fn security_headers(request: Request<Body>, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; \
             style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
             connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
             frame-ancestors 'none'",
        ),
    ] {
        if let Ok(value) = value.parse() {
            headers.entry(name).or_insert(value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_ports_and_paths_are_read_as_meant() {
        assert_eq!(strip_port("localhost:3000"), "localhost");
        assert_eq!(strip_port("[::1]:3000"), "[::1]");
        assert_eq!(strip_port("example.org"), "example.org");
        let local = Access::for_addr("127.0.0.1:3000".parse().unwrap(), &[]);
        assert!(local.host_allowed("127.0.0.1:3000"));
        assert!(local.host_allowed("LOCALHOST:8080"));
        assert!(!local.host_allowed("attacker.example:3000"));
        let open = Access::for_addr("0.0.0.0:3000".parse().unwrap(), &[]);
        assert!(open.host_allowed("lab.example.org"));
        let named = Access::for_addr("0.0.0.0:3000".parse().unwrap(), &["Lab.example.org".into()]);
        assert!(named.host_allowed("lab.example.org:3000"));
        assert!(!named.host_allowed("other.example.org"));
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/runs?kind=edit")), "/runs?kind=edit");
        assert_eq!(kind(&Method::POST, "/api/jobs/abc/cancel"), Kind::Action);
        assert_eq!(kind(&Method::GET, "/api/jobs/abc"), Kind::Read);
        assert_eq!(kind(&Method::GET, "/api/try/stream"), Kind::Action);
        assert_eq!(kind(&Method::POST, "/api/results"), Kind::Read);
        assert_eq!(kind(&Method::POST, "/api/evals/abc/flags"), Kind::Action);
        assert_eq!(
            kind(&Method::DELETE, "/api/evals/abc/flags/3/DS"),
            Kind::Action
        );
        assert_eq!(kind(&Method::GET, "/api/evals/abc/flags"), Kind::Read);
        assert_eq!(kind(&Method::POST, "/api/flag_verdict"), Kind::Action);
        assert_eq!(kind(&Method::POST, "/api/unflag_verdict"), Kind::Action);
        assert_eq!(
            kind(&Method::GET, "/api/evals/flags/summary.csv"),
            Kind::Read
        );
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
    }
}
