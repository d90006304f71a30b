//! The floor of a Rust client in the `exp run` benchmark: the very request bodies exp built (its
//! `inputs/` files), POSTed over C keep-alive hyper HTTP/1.1 connections, threaded as exp sends
//! (a single-threaded tokio runtime per core, the connections dealt out among them),
//! each connection sending its next body as soon as the last answer's body is read, and doing
//! nothing else (no journal, no parsing, no scoring, no retries). What exp's sending adds on top
//! of its transport is the gap between the two. Prints one JSON line: requests, errors, seconds,
//! rps.
//!
//!   cargo run --release --example bare_client -- --url http://127.0.0.1:PORT/v1/chat/completions --concurrency 64 FILE...
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let url: hyper::Uri = value("--url").ok_or("--url is required")?.parse()?;
    let concurrency: usize = value("--concurrency").map_or(Ok(64), |c| c.parse())?;
    let mut files = Vec::new();
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--url" | "--concurrency" => {
                rest.next();
            }
            _ => files.push(a),
        }
    }
    let mut bodies = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(f)?.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            bodies.push(Bytes::from(serde_json::to_vec(&v["body"])?));
        }
    }
    let authority = url.authority().ok_or("--url needs host:port")?.to_string();
    let path = url.path().to_string();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    // Threaded as exp sends: a single-threaded runtime per core, the connections dealt out.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(concurrency);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let lanes = concurrency / threads + usize::from(t < concurrency % threads);
            let (bodies, next, errors) = (bodies.clone(), next.clone(), errors.clone());
            let (authority, path) = (authority.clone(), path.clone());
            scope.spawn(move || send_lanes(lanes, bodies, next, errors, authority, path));
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let requests = bodies.len();
    println!(
        "{}",
        serde_json::json!({
            "requests": requests,
            "errors": errors.load(Ordering::Relaxed),
            "seconds": seconds,
            "rps": requests as f64 / seconds,
        })
    );
    Ok(())
}

/// `lanes` connections on this thread's runtime, each sending the next body as soon as its last
/// answer is read, until the bodies run out.
fn send_lanes(
    lanes: usize,
    bodies: Arc<Vec<Bytes>>,
    next: Arc<AtomicUsize>,
    errors: Arc<AtomicUsize>,
    authority: String,
    path: String,
) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        errors.fetch_add(lanes, Ordering::Relaxed);
        return;
    };
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..lanes {
            let (bodies, next, errors) = (bodies.clone(), next.clone(), errors.clone());
            let (authority, path) = (authority.clone(), path.clone());
            set.spawn(async move {
                let Ok(stream) = tokio::net::TcpStream::connect(&authority).await else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let _ = stream.set_nodelay(true);
                let io = hyper_util::rt::TokioIo::new(stream);
                let Ok((mut conn, driver)) = hyper::client::conn::http1::handshake(io).await else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                tokio::spawn(driver);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { return };
                    let request = hyper::Request::post(path.as_str())
                        .header("host", authority.as_str())
                        .header("content-type", "application/json")
                        .body(Full::new(body.clone()));
                    let answered = match request {
                        Ok(request) => match conn.send_request(request).await {
                            Ok(resp) => {
                                resp.status().is_success()
                                    && resp.into_body().collect().await.is_ok()
                            }
                            Err(_) => false,
                        },
                        Err(_) => false,
                    };
                    if !answered {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        while set.join_next().await.is_some() {}
    });
}
