//! A loopback OpenAI-compatible `/v1/chat/completions` server for tests/endpoint.rs and
//! tests/openapi.rs: raw HTTP/1.1 on tokio, on 127.0.0.1 with an OS-chosen port. It keeps every
//! request body it reads, counts what it answered and refused, and can hold answers (so requests
//! overlap), refuse with 429 above a hidden concurrency, report reasoning tokens, and stop
//! listening after a number of answers (a replica going down mid-run).
#![allow(dead_code)]
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// How the server behaves.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Each answer waits this long, so concurrent requests overlap at the server.
    pub hold: Duration,
    /// Requests beyond this many in flight at once get 429.
    pub max_concurrency: Option<i64>,
    /// `usage.completion_tokens_details.reasoning_tokens` of every answer (also counted in
    /// `completion_tokens`, as OpenAI does).
    pub reasoning_tokens: Option<u64>,
    /// After this many answers the server stops: no new connection is accepted, and open ones
    /// are closed at their next request.
    pub stop_after: Option<u64>,
    /// Each connection is closed right after its answer, without `Connection: close` (as a
    /// server whose keep-alive timeout is shorter than the client's pause).
    pub close_after_answer: bool,
    /// Every request gets `307` to this `Location`.
    pub redirect_to: Option<String>,
}

#[derive(Default)]
pub struct State {
    pub bodies: Mutex<Vec<Value>>,
    /// Each request's first line (`POST /v1/chat/completions HTTP/1.1`).
    pub request_lines: Mutex<Vec<String>>,
    /// Connections accepted.
    pub connections: AtomicU64,
    pub answered: AtomicU64,
    pub rejected: AtomicU64,
    pub in_flight: AtomicI64,
    pub max_in_flight: AtomicI64,
    pub stopped: AtomicBool,
    /// While set, a request whose user message says "happy" gets 400 (a test switches it off
    /// before a resume).
    pub refuse_happy: AtomicBool,
}

pub struct ChatServer {
    pub url: String,
    pub state: Arc<State>,
    _rt: tokio::runtime::Runtime,
}

/// Visible output tokens of every answer.
pub const VISIBLE_TOKENS: u64 = 2;
/// Prompt tokens of every answer.
pub const PROMPT_TOKENS: u64 = 10;

impl ChatServer {
    pub fn start(behaviour: Behaviour) -> ChatServer {
        ChatServer::start_on(behaviour, None)
    }

    /// The same server over HTTPS, with the test certificate of tests/data/tls (signed by the
    /// test CA `tls_ca()`, for 127.0.0.1).
    pub fn start_tls(behaviour: Behaviour) -> ChatServer {
        ChatServer::start_on(behaviour, Some(tls_acceptor()))
    }

    fn start_on(behaviour: Behaviour, tls: Option<tokio_rustls::TlsAcceptor>) -> ChatServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(State::default());
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{addr}/v1");
        let (st, b) = (state.clone(), Arc::new(behaviour));
        rt.spawn(async move {
            let stop = async {
                while !st.stopped.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            };
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((sock, _)) = accepted else { return };
                        st.connections.fetch_add(1, Ordering::SeqCst);
                        let (st, b) = (st.clone(), b.clone());
                        match tls.clone() {
                            None => drop(tokio::spawn(serve(sock, st, b))),
                            Some(acceptor) => drop(tokio::spawn(async move {
                                // A client that refuses the certificate ends the handshake.
                                if let Ok(sock) = acceptor.accept(sock).await {
                                    serve(sock, st, b).await;
                                }
                            })),
                        }
                    }
                    _ = &mut stop => break,
                }
            }
            // Listening ends here; the port stays bound (never listening), so it refuses
            // every connection and nothing else can take it while the test runs.
            drop(listener);
            let hold = tokio::net::TcpSocket::new_v4().ok();
            if let Some(s) = &hold {
                let _ = s.set_reuseaddr(true);
                let _ = s.bind(addr);
            }
            std::future::pending::<()>().await;
            drop(hold);
        });
        ChatServer { url, state, _rt: rt }
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.state.bodies.lock().unwrap().clone()
    }

    pub fn answered(&self) -> u64 {
        self.state.answered.load(Ordering::SeqCst)
    }

    pub fn rejected(&self) -> u64 {
        self.state.rejected.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn request_lines(&self) -> Vec<String> {
        self.state.request_lines.lock().unwrap().clone()
    }
}

/// The test CA's certificate (PEM), for `SSL_CERT_FILE`.
pub fn tls_ca() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls/ca.pem")
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn serve<S>(sock: S, st: Arc<State>, b: Arc<Behaviour>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(sock);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if std::mem::take(&mut first) {
                st.request_lines.lock().unwrap().push(line.trim_end().to_string());
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).await.is_err() || st.stopped.load(Ordering::SeqCst) {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        st.bodies.lock().unwrap().push(body.clone());
        let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        st.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let over = b.max_concurrency.is_some_and(|max| now > max);
        if !over {
            tokio::time::sleep(b.hold).await;
        }
        st.in_flight.fetch_sub(1, Ordering::SeqCst);
        let user = body["messages"][1]["content"].as_str().unwrap_or("");
        let reply = if let Some(to) = &b.redirect_to {
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n"
            )
        } else if st.refuse_happy.load(Ordering::SeqCst) && user.contains("happy") {
            http("400 Bad Request", r#"{"error": {"message": "no"}}"#.into())
        } else if over {
            st.rejected.fetch_add(1, Ordering::SeqCst);
            http("429 Too Many Requests", r#"{"error": {"message": "slow down"}}"#.into())
        } else {
            let n = st.answered.fetch_add(1, Ordering::SeqCst) + 1;
            if b.stop_after.is_some_and(|after| n > after) {
                st.answered.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            if b.stop_after == Some(n) {
                st.stopped.store(true, Ordering::SeqCst);
            }
            http("200 OK", answer(&body, b.reasoning_tokens).to_string())
        };
        if reader.get_mut().write_all(reply.as_bytes()).await.is_err() || b.close_after_answer {
            return;
        }
    }
}

fn http(status: &str, body: String) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// "positive" for a user message saying "happy", else "negative".
fn answer(body: &Value, reasoning: Option<u64>) -> Value {
    let user = body["messages"][1]["content"].as_str().unwrap_or("");
    let content = if user.contains("happy") { "positive" } else { "negative" };
    let mut usage = serde_json::json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": VISIBLE_TOKENS + reasoning.unwrap_or(0),
        "total_tokens": PROMPT_TOKENS + VISIBLE_TOKENS + reasoning.unwrap_or(0),
    });
    if let Some(r) = reasoning {
        usage["completion_tokens_details"] = serde_json::json!({"reasoning_tokens": r});
    }
    serde_json::json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": usage,
    })
}

/// A workspace with `n` items (every third one "happy"), two prompts, and a config whose
/// `models:` list is `models` (YAML lines) and whose decoding and execution sections are given.
pub fn workspace(n: usize, models: &str, decoding: &str, execution: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let rows = crate::common::labelled_jsonl((0..n).map(|i| {
        let (text, label) =
            if i % 3 == 0 { ("a happy day", "positive") } else { ("a gloomy day", "negative") };
        (format!("i{i}"), format!("item {i} was {text}"), label)
    }));
    let config = format!(
        "datasets:\n  - {{name: d, path: data/d.jsonl}}\nmodels:\n{models}\nprompt_sets:\n  ps: {{control: config/prompts/control.txt, treatment: config/prompts/treatment.txt}}\nuser_template: \"Text: {{text}}\"\ndecoding: {{{decoding}}}\nscoring: {{type: label, labels: [positive, negative]}}\nexecution: {{{execution}}}\n"
    );
    crate::common::write_files(
        dir.path(),
        &[
            ("data/d.jsonl", &rows),
            ("config/prompts/control.txt", "Classify the sentiment."),
            ("config/prompts/treatment.txt", "You are careful. Classify the sentiment."),
            ("config/eval_config.yaml", &config),
        ],
    );
    dir
}

/// A run's trial folders, by slug.
pub fn trials(ws: &std::path::Path, run_id: &str) -> Vec<std::path::PathBuf> {
    let run = ws.join("experiments").join(format!("run_{run_id}"));
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("multi_trial_manifest.json")).unwrap(),
    )
    .unwrap();
    manifest["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| run.join(t["slug"].as_str().unwrap()))
        .collect()
}

/// A JSON file of a run.
pub fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}
