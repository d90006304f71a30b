//! The web server of `exp view`: axum on one address, every GET answered by [`Site::get`] on a
//! blocking thread (store reads are synchronous). At most [`MAX_RENDERS`] pages are made at
//! once, so the server's memory stays bounded however many requests arrive.
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{Error, Result, Site};

/// Pages made at the same time; further requests wait their turn.
pub const MAX_RENDERS: usize = 4;

/// What every page forbids: scripts and styles from anywhere but the site itself, inline
/// scripts above all (a model's output that slipped through escaping still could not run),
/// and every connection elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// Whether `addr` is reachable only from this machine.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Listens on `addr` (port 0: any free port; the listener says which).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr: addr.to_string(), source })
}

struct State {
    site: Site,
    renders: Semaphore,
}

/// Serves `site` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, site: Site) -> Result<()> {
    let state = Arc::new(State { site, renders: Semaphore::new(MAX_RENDERS) });
    let app = Router::new().fallback(move |method: Method, uri: Uri| {
        let state = state.clone();
        async move { respond(&state, method, uri).await }
    });
    axum::serve(listener, app).await.map_err(Error::Serve)
}

async fn respond(state: &Arc<State>, method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "read-only: GET only\n").into_response();
    }
    let Ok(_permit) = state.renders.acquire().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let st = state.clone();
    let page = match tokio::task::spawn_blocking(move || st.site.get(&path, &query)).await {
        Ok(p) => p,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let status = StatusCode::from_u16(page.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, page.body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(page.content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Opens `url` in the desktop's browser (`xdg-open`, `open` on macOS), without waiting for it.
pub fn open_browser(url: &str) -> Result<()> {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|_| ())
        .map_err(Error::Browser)
}
