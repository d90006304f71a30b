//! The HTTP client of chat requests: one POST, its status, headers and body in chunks.
//!
//! Plain `http://` endpoints reached without a proxy (the local vLLM, llama.cpp or Ollama server,
//! where a run sends tens of thousands of requests a second and the client's CPU is the limit)
//! go over hyper HTTP/1.1 connections of our own: each endpoint keeps a stack of idle keep-alive
//! connections, taken and put back under a mutex. Measured on loopback (bench/run), reqwest's
//! layers over the same hyper (its pool, a URL parse per request, redirect and retry services)
//! cost about half of the requests a second. Everything else, `https://` (TLS, the platform's
//! roots) and any endpoint behind `HTTP_PROXY`/`ALL_PROXY`, goes through reqwest: those requests
//! are bound by network latency and rate limits, not by the client, and reqwest does TLS and
//! proxies right.
//!
//! Neither path follows redirects: an API endpoint that redirects is misconfigured, and following
//! it would send the key somewhere the config never named. Neither path has a timeout of its own:
//! the caller bounds the whole exchange (connect, send, body), whichever step hangs.
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderValue};

/// What went wrong before an answer's end, and whether the endpoint was reached at all.
#[derive(Debug)]
pub struct SendError {
    /// No connection could be made (refused, no route, name not found).
    pub connect: bool,
    /// The request can never succeed as built (a URL reqwest cannot use).
    pub fatal: bool,
    pub message: String,
}

impl SendError {
    fn other(message: String) -> SendError {
        SendError { connect: false, fatal: false, message }
    }

    fn connect(message: String) -> SendError {
        SendError { connect: true, fatal: false, message }
    }
}

/// The client of one model: a route per endpoint URL.
pub struct Client {
    routes: Vec<(String, Route)>,
    /// For the endpoints routed through reqwest; `None` when there are none.
    reqwest: Option<ReqwestClients>,
    /// `Authorization: Bearer …`, marked sensitive so no debug output shows it.
    auth: Option<HeaderValue>,
}

/// reqwest clients, one per sending thread: a client's pooled connections are driven by the
/// runtime that opened them and die with it, so one client shared by the threads of `exp run`
/// (a runtime each) would hand a thread connections whose runtime had ended.
struct ReqwestClients {
    max_idle: usize,
    per_thread: Mutex<Vec<(ThreadId, reqwest::Client)>>,
}

impl ReqwestClients {
    /// Builds the first client now, so a client that cannot be built is an error at start.
    fn new(max_idle: usize) -> Result<ReqwestClients, String> {
        let first = (std::thread::current().id(), Self::build(max_idle)?);
        Ok(ReqwestClients { max_idle, per_thread: Mutex::new(vec![first]) })
    }

    fn build(max_idle: usize) -> Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .pool_max_idle_per_host(max_idle)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())
    }

    fn for_this_thread(&self) -> Result<reqwest::Client, SendError> {
        let me = std::thread::current().id();
        let mut clients = self.per_thread.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, client)) = clients.iter().find(|(thread, _)| *thread == me) {
            return Ok(client.clone());
        }
        let client = Self::build(self.max_idle).map_err(|message| SendError {
            connect: false,
            fatal: true,
            message,
        })?;
        clients.push((me, client.clone()));
        Ok(client)
    }
}

enum Route {
    Direct(Arc<Endpoint>),
    Reqwest,
}

/// A plain-HTTP endpoint: where to connect, what to send as `Host` and path, and its idle
/// connections.
struct Endpoint {
    /// `host:port` as `TcpStream::connect` resolves it (IPv6 literals in brackets stripped).
    connect_to: (String, u16),
    host: HeaderValue,
    /// The request target (path and query), parsed once.
    target: hyper::Uri,
    /// Oldest first, each with the thread whose runtime drives it: `exp run` sends from a
    /// runtime per core, and a connection driven by another thread's runtime would hand every
    /// request and answer across threads.
    idle: Mutex<Vec<(ThreadId, SendRequest<Full<Bytes>>)>>,
    /// Idle connections kept at most, over all threads (the model's concurrency bound): more
    /// would only be closed later by the server.
    max_idle: usize,
}

impl Client {
    /// `urls` are every URL `post` will be given (the model's replicas); `max_idle` bounds the
    /// idle connections kept per endpoint.
    pub fn new(urls: &[&str], key: Option<&str>, max_idle: usize) -> Result<Client, String> {
        let proxied = proxy_configured();
        let routes: Vec<(String, Route)> = urls
            .iter()
            .map(|url| {
                let route = match direct_endpoint(url, max_idle) {
                    Some(endpoint) if !proxied => Route::Direct(Arc::new(endpoint)),
                    _ => Route::Reqwest,
                };
                (url.to_string(), route)
            })
            .collect();
        // Only made when an endpoint needs it: it loads the platform's root certificates.
        let reqwest = if routes.iter().any(|(_, r)| matches!(r, Route::Reqwest)) {
            Some(ReqwestClients::new(max_idle)?)
        } else {
            None
        };
        let auth = match key {
            Some(key) => {
                let mut value = HeaderValue::try_from(format!("Bearer {key}"))
                    .map_err(|_| "the API key is not a valid header value".to_string())?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Client { routes, reqwest, auth })
    }

    /// POSTs `body` (JSON) to `url`, one of the URLs the client was made with.
    pub async fn post(&self, url: &str, body: Bytes) -> Result<Response, SendError> {
        match (self.routes.iter().find(|(u, _)| u == url).map(|(_, r)| r), &self.reqwest) {
            (Some(Route::Direct(endpoint)), _) => self.post_direct(endpoint, body).await,
            (Some(Route::Reqwest), Some(clients)) => {
                self.post_reqwest(&clients.for_this_thread()?, url, body).await
            }
            _ => Err(SendError {
                connect: false,
                fatal: true,
                message: format!("{url} is not one of the model's endpoints"),
            }),
        }
    }

    async fn post_reqwest(
        &self,
        client: &reqwest::Client,
        url: &str,
        body: Bytes,
    ) -> Result<Response, SendError> {
        let mut req = client.post(url).header(CONTENT_TYPE, "application/json").body(body);
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let resp = req.send().await.map_err(|e| SendError {
            connect: e.is_connect(),
            fatal: e.is_builder(),
            message: chain(&e),
        })?;
        Ok(Response {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: Body::Reqwest(resp),
        })
    }

    async fn post_direct(
        &self,
        endpoint: &Arc<Endpoint>,
        body: Bytes,
    ) -> Result<Response, SendError> {
        // A kept-alive connection the server closed since its last answer fails before the
        // request is written, or (the race every HTTP/1.1 client has) as it is written, with a
        // reset. Either way no byte of answer came back, the server never took the request, so
        // it goes out again on a fresh connection, as curl does: a closed idle connection never
        // costs an attempt. On a fresh connection the same failure is the server's to answer for.
        if let Some(conn) = endpoint.take_idle()
            && let Ok(resp) = self.send_on(conn, endpoint, body.clone()).await
        {
            return Ok(resp);
        }
        let conn = endpoint.connect().await?;
        self.send_on(conn, endpoint, body).await.map_err(|e| SendError::other(chain(&e)))
    }

    /// `body` on `conn`, up to the answer's head.
    async fn send_on(
        &self,
        mut conn: SendRequest<Full<Bytes>>,
        endpoint: &Arc<Endpoint>,
        body: Bytes,
    ) -> Result<Response, hyper::Error> {
        conn.ready().await?;
        let resp = conn
            .try_send_request(self.request(endpoint, body))
            .await
            .map_err(|e| e.into_error())?;
        let status = resp.status().as_u16();
        let (parts, incoming) = resp.into_parts();
        Ok(Response {
            status,
            headers: parts.headers,
            body: Body::Direct { incoming, conn: Some(conn), endpoint: endpoint.clone() },
        })
    }

    fn request(&self, endpoint: &Endpoint, body: Bytes) -> hyper::Request<Full<Bytes>> {
        let mut req = hyper::Request::new(Full::new(body));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = endpoint.target.clone();
        let headers = req.headers_mut();
        headers.insert(HOST, endpoint.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(auth) = &self.auth {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        req
    }
}

impl Endpoint {
    /// This thread's most recently used open connection; `None` when it has none, and then,
    /// since the caller connects anew, the longest idle connection of another thread is closed:
    /// the endpoint never holds more connections than the model has slots (a server such as
    /// llama.cpp's keeps a worker thread busy per open connection).
    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let me = std::thread::current().id();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = idle.iter().rposition(|(thread, conn)| *thread == me && !conn.is_closed())
        {
            return Some(idle.remove(at).1);
        }
        idle.retain(|(thread, conn)| *thread != me && !conn.is_closed());
        if !idle.is_empty() {
            idle.remove(0);
        }
        None
    }

    fn put_back(&self, conn: SendRequest<Full<Bytes>>) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= self.max_idle {
            // Closed ones first (their thread's runtime may be gone), then the longest idle.
            idle.retain(|(_, c)| !c.is_closed());
            if idle.len() >= self.max_idle {
                idle.remove(0);
            }
        }
        idle.push((std::thread::current().id(), conn));
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let (host, port) = (&self.connect_to.0, self.connect_to.1);
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| SendError::connect(format!("{host}:{port}: {e}")))?;
        // Small requests must not wait for Nagle's acknowledgement.
        let _ = stream.set_nodelay(true);
        let (conn, driver) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| SendError::connect(chain(&e)))?;
        // The connection's reads and writes run beside the requests; its error, if any, is
        // what the request in flight reports.
        tokio::spawn(driver);
        Ok(conn)
    }
}

/// A plain-HTTP URL as an endpoint; `None` for anything else (https, or what hyper cannot
/// address, which reqwest then reports).
fn direct_endpoint(url: &str, max_idle: usize) -> Option<Endpoint> {
    let parsed = reqwest::Url::parse(url).ok()?;
    if parsed.scheme() != "http" || !parsed.username().is_empty() || parsed.password().is_some() {
        return None;
    }
    let host_str = parsed.host_str()?;
    let port = parsed.port_or_known_default()?;
    let authority = match parsed.port() {
        Some(p) => format!("{host_str}:{p}"),
        None => host_str.to_string(),
    };
    let host = host_str.trim_start_matches('[').trim_end_matches(']').to_string();
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let target = path.parse::<hyper::Uri>().ok()?;
    Some(Endpoint {
        connect_to: (host, port),
        host: HeaderValue::try_from(authority).ok()?,
        target,
        idle: Mutex::new(Vec::new()),
        max_idle: max_idle.max(1),
    })
}

/// Whether the environment names a proxy for plain HTTP (reqwest then decides, with `NO_PROXY`,
/// which requests take it).
fn proxy_configured() -> bool {
    ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
}

/// An answer: status and headers, and the body still to read.
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    body: Body,
}

enum Body {
    Direct {
        incoming: hyper::body::Incoming,
        /// Back to the endpoint's idle stack once the body is read to its end, never before
        /// (a connection with half an answer unread cannot carry the next request).
        conn: Option<SendRequest<Full<Bytes>>>,
        endpoint: Arc<Endpoint>,
    },
    Reqwest(reqwest::Response),
}

impl Response {
    /// The body's length as announced by `Content-Length`.
    pub fn content_length(&self) -> Option<u64> {
        self.headers.get(reqwest::header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
    }

    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, SendError> {
        match &mut self.body {
            Body::Reqwest(resp) => resp.chunk().await.map_err(|e| SendError::other(chain(&e))),
            Body::Direct { incoming, conn, endpoint } => loop {
                match incoming.frame().await {
                    None => {
                        if let Some(conn) = conn.take() {
                            endpoint.put_back(conn);
                        }
                        return Ok(None);
                    }
                    Some(Err(e)) => return Err(SendError::other(chain(&e))),
                    Some(Ok(frame)) => {
                        // Trailers carry nothing a chat answer needs.
                        if let Ok(data) = frame.into_data() {
                            return Ok(Some(data));
                        }
                    }
                }
            },
        }
    }
}

/// An error with its sources, which hold the useful part ("connection refused").
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(url: &str) -> Option<(String, u16, String, String)> {
        let e = direct_endpoint(url, 4)?;
        let host = e.host.to_str().unwrap().to_string();
        Some((e.connect_to.0, e.connect_to.1, host, e.target.to_string()))
    }

    #[test]
    fn plain_http_urls_become_direct_endpoints_with_host_and_path() {
        let d = |h: &str, p: u16, host: &str, path: &str| {
            Some((h.to_string(), p, host.to_string(), path.to_string()))
        };
        assert_eq!(
            direct("http://127.0.0.1:8080/v1/chat/completions"),
            d("127.0.0.1", 8080, "127.0.0.1:8080", "/v1/chat/completions")
        );
        assert_eq!(
            direct("http://gpu-box/v1/chat/completions"),
            d("gpu-box", 80, "gpu-box", "/v1/chat/completions")
        );
        assert_eq!(
            direct("http://[::1]:9000/openai/v1/chat/completions?api-version=2"),
            d("::1", 9000, "[::1]:9000", "/openai/v1/chat/completions?api-version=2")
        );
    }

    #[test]
    fn tls_and_credentials_in_the_url_go_through_reqwest() {
        assert!(direct("https://api.openai.com/v1/chat/completions").is_none());
        assert!(direct("http://user:pw@host/v1/chat/completions").is_none());
        assert!(direct("not a url").is_none());
    }
}
