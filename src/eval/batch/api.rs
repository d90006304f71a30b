//! The OpenAI Batch API over reqwest: upload a batch input file (`POST /files`, multipart,
//! purpose `batch`), create a batch (`POST /batches`), look batches up (`GET /batches/{id}`,
//! `GET /batches`), download output and error files (`GET /files/{id}/content`).
//!
//! The provider is untrusted: JSON answers are read up to [`MAX_JSON`] bytes, downloads up to a
//! limit the caller sets, streamed to disk; every text taken from an answer goes through the
//! `Redactor`. The key is only ever sent as the `Authorization` header.
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::eval::build::CHAT_URL;
use crate::eval::config::ModelConfig;
use crate::eval::providers::ProviderError;
use crate::eval::providers::http::chain;
use crate::eval::providers::openai::{api_key, error_text, redirect_remark};
use crate::eval::providers::redact::Redactor;

/// The largest JSON answer read (a batch object with its `errors` list, a page of batches).
const MAX_JSON: usize = 4 << 20;
/// Pages of `GET /batches` looked through for a batch made from a given file.
const MAX_PAGES: usize = 20;

/// A batch, as OpenAI's `Batch` object has it (the fields exp reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Batch {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub input_file_id: String,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    #[serde(default)]
    pub errors: Option<serde_json::Value>,
}

impl Batch {
    /// Whether the batch will not change any more.
    pub fn ended(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "expired" | "cancelled" | "failed")
    }

    /// The messages of `errors.data` (why a batch failed validation), redacted by the caller.
    pub fn error_messages(&self) -> String {
        let data = self.errors.as_ref().and_then(|e| e.get("data")).and_then(|d| d.as_array());
        let messages: Vec<String> = data
            .into_iter()
            .flatten()
            .take(5)
            .map(|e| {
                let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("error");
                let message = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                format!("{code}: {message}")
            })
            .collect();
        messages.join("; ")
    }
}

#[derive(Deserialize)]
struct FileObject {
    id: String,
}

#[derive(Deserialize)]
struct BatchList {
    data: Vec<Batch>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

/// Why a call failed, and whether trying again can help.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub message: String,
    pub retryable: bool,
}

pub struct Api {
    client: reqwest::Client,
    base: String,
    key: Option<String>,
    pub redactor: Redactor,
}

impl Api {
    pub fn new(model: &ModelConfig, timeout: Duration) -> Result<Api, ProviderError> {
        let key = api_key(model)?;
        let redactor = Redactor::new(key.as_deref());
        // Redirects are not followed, as by the direct backend: they would carry the key and
        // the uploaded requests elsewhere; `send` says where they point.
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ProviderError::Client {
                model: model.name.clone(),
                message: redactor.clean_owned(e.to_string()),
            })?;
        // One endpoint: config validation refuses replicas for `backend: batch`.
        let base = model.base_url.as_ref().and_then(|u| u.0.first()).map_or("", |u| u.as_str());
        let base = base.trim_end_matches('/').to_string();
        Ok(Api { client, base, key, redactor })
    }

    /// Uploads a batch input file; its file id.
    pub async fn upload(&self, name: &str, content: Vec<u8>) -> Result<String, ApiError> {
        // The boundary is the content's hash: it cannot occur in the content it was made from
        // (short of a BLAKE3 preimage).
        let boundary = format!("exp-{}", &blake3::hash(&content).to_hex()[..32]);
        let mut body = Vec::with_capacity(content.len() + 512);
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/jsonl\r\n\r\n"
        )
        .map_err(|e| fatal(e.to_string()))?;
        body.extend_from_slice(&content);
        write!(body, "\r\n--{boundary}--\r\n").map_err(|e| fatal(e.to_string()))?;
        let req = self
            .client
            .post(format!("{}/files", self.base))
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        let file: FileObject = self.json(req).await?;
        Ok(file.id)
    }

    /// Creates the batch of an uploaded file; `chunk` goes into its metadata.
    pub async fn create(&self, file_id: &str, chunk: &str) -> Result<Batch, ApiError> {
        let body = serde_json::json!({
            "input_file_id": file_id, "endpoint": CHAT_URL, "completion_window": "24h",
            "metadata": {"exp_batch_file": chunk},
        });
        self.json(self.client.post(format!("{}/batches", self.base)).json(&body)).await
    }

    pub async fn get(&self, batch_id: &str) -> Result<Batch, ApiError> {
        let batch_id = url_safe(batch_id)?;
        self.json(self.client.get(format!("{}/batches/{batch_id}", self.base))).await
    }

    /// The batch made from `file_id`, if the provider lists one (a create whose answer was lost
    /// to a crash before it was journaled).
    pub async fn find(&self, file_id: &str) -> Result<Option<Batch>, ApiError> {
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            // Batch ids are the provider's; only URL-safe ones are put into a URL.
            let url = match &after {
                Some(a) if a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {
                    format!("{}/batches?limit=100&after={a}", self.base)
                }
                Some(_) => return Ok(None),
                None => format!("{}/batches?limit=100", self.base),
            };
            let page: BatchList = self.json(self.client.get(url)).await?;
            if let Some(b) = page.data.iter().find(|b| b.input_file_id == file_id) {
                return Ok(Some(b.clone()));
            }
            match (page.has_more, page.last_id.or(page.data.last().map(|b| b.id.clone()))) {
                (true, Some(last)) => after = Some(last),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Streams a file's content to `to`, giving up beyond `limit` bytes.
    pub async fn download(&self, file_id: &str, to: &Path, limit: u64) -> Result<(), ApiError> {
        let file_id = url_safe(file_id)?;
        let req = self.client.get(format!("{}/files/{file_id}/content", self.base));
        let mut resp = self.send(req).await?;
        let mut file =
            std::fs::File::create(to).map_err(|e| fatal(format!("{}: {e}", to.display())))?;
        let mut got = 0u64;
        loop {
            let chunk = resp.chunk().await.map_err(|e| ApiError {
                message: self
                    .redactor
                    .clean_owned(format!("download of {file_id} cut short: {}", chain(&e))),
                retryable: true,
            })?;
            let Some(chunk) = chunk else { break };
            got += chunk.len() as u64;
            if got > limit {
                return Err(fatal(format!("file {file_id} is larger than {limit} bytes")));
            }
            file.write_all(&chunk).map_err(|e| fatal(format!("{}: {e}", to.display())))?;
        }
        file.sync_all().map_err(|e| fatal(format!("{}: {e}", to.display())))
    }

    async fn send(&self, mut req: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| ApiError {
            message: self.redactor.clean_owned(chain(&e)),
            retryable: !e.is_builder(),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let location = resp.headers().get(reqwest::header::LOCATION);
        let location = location.map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
        let redirect = redirect_remark(status.as_u16(), location.as_deref(), &self.redactor);
        let bytes = self.read(resp).await.unwrap_or_default();
        let text = self.redactor.clean_owned(error_text(&bytes));
        let excerpt: String = text.chars().take(300).collect();
        Err(ApiError {
            message: format!("HTTP {}: {}{redirect}", status.as_u16(), excerpt.trim()),
            retryable: status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error(),
        })
    }

    async fn json<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ApiError> {
        let resp = self.send(req).await?;
        let bytes = self.read(resp).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError { message: format!("unexpected answer: {e}"), retryable: true })
    }

    async fn read(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| ApiError {
            message: self.redactor.clean_owned(chain(&e)),
            retryable: true,
        })? {
            if out.len() + chunk.len() > MAX_JSON {
                return Err(fatal(format!("answer larger than {MAX_JSON} bytes")));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// An id the provider gave, checked before it becomes part of a URL path.
fn url_safe(id: &str) -> Result<&str, ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 256
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && id != "."
        && id != "..";
    if ok {
        Ok(id)
    } else {
        Err(fatal(format!(
            "the provider gave an id that is not URL-safe: {:?}",
            id.chars().take(80).collect::<String>()
        )))
    }
}

fn fatal(message: String) -> ApiError {
    ApiError { message, retryable: false }
}
