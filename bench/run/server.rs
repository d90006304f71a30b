//! A fast OpenAI-compatible `/v1/chat/completions` stub for the `exp run` benchmark, so the
//! server is never the bottleneck: raw HTTP/1.1 keep-alive on tokio, a fixed small answer with
//! `usage`, and an optional fixed delay per request (`--delay-ms 50`) to model a real endpoint.
//! Prints `listening on 127.0.0.1:PORT` once ready; `--port 0` lets the OS choose.
//!
//!   cargo run --release --example bench_server -- --port 0 --delay-ms 50 --threads 1
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> std::io::Result<()> {
    let port = arg("--port", 0) as u16;
    let delay = Duration::from_millis(arg("--delay-ms", 0));
    let threads = arg("--threads", 1) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (sock, _) = listener.accept().await?;
            let _ = sock.set_nodelay(true);
            tokio::spawn(serve(sock, delay));
        }
    })
}

async fn serve(sock: tokio::net::TcpStream, delay: Duration) {
    let mut reader = BufReader::with_capacity(16 * 1024, sock);
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        let mut length = 0usize;
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
            if first {
                first = false;
                continue;
            }
            if line.len() > 15 && line[..15].eq_ignore_ascii_case("content-length:") {
                length = line[15..].trim().parse().unwrap_or(0);
            }
        }
        body.resize(length, 0);
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // Usage grows with the request, as a real server's would.
        let prompt = length / 4;
        let json = format!(
            "{{\"id\":\"b\",\"object\":\"chat.completion\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"positive\"}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":1,\"total_tokens\":{}}}}}",
            prompt + 1
        );
        let out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        );
        if reader.get_mut().write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}
