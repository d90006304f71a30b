//! A real S3 server (s3s-fs: files on disk, SigV4 auth) on 127.0.0.1 for the tests that push to
//! or clone from `s3://…`, killed when dropped.
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

pub struct S3Server {
    child: Child,
    pub port: u16,
    root: TempDir,
}

const KEY: &str = "exptestkey";
const SECRET: &str = "exptestsecret";
/// The bucket every test uses; the README's session pushes to `s3://team-bucket/exp` verbatim.
pub const BUCKET: &str = "team-bucket";

impl S3Server {
    /// The server, or None (a printed skip, a failure under EXP_TEST_STRICT) without s3s-fs.
    pub fn start() -> Option<S3Server> {
        if !super::require_tool(super::on_path("s3s-fs"), "s3s-fs") {
            return None;
        }
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let mut child = Command::new("s3s-fs")
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--access-key",
                KEY,
                "--secret-key",
                SECRET,
            ])
            .arg(root.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        // The server logs the address it bound; port 0 lets the OS pick a free one.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("http://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                    let _ = tx.send(port.parse::<u16>().unwrap());
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(30)).expect("s3s-fs reports its address");
        Some(S3Server { child, port, root })
    }

    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// Where the server keeps the files of `prefix`.
    pub fn dir(&self, prefix: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(prefix)
    }

    /// The variables exp reads to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
