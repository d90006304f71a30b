//! `exp view`: the store as a read-only web site. History of every run, one run's trials with
//! their statistics and charts, one trial's items (input, gold, both outputs side by side,
//! filterable, searchable, paged), and two runs compared with the items that flipped.
//!
//! Owns: turning a URL path into a page ([`Site::get`]), the axum server around it
//! ([`server`]) and the static export of the same pages ([`export`]). Every page is read from
//! commits (no checkout: it works in a clone); every URL names commit ids, so a link keeps
//! showing the same thing. Page paths are the same on the server and in an export (`index.html`,
//! `run/<id>/index.html`, …), and links between pages are relative, so an exported folder works
//! from a bucket or `file://`.
//!
//! Never prints, never reads a file outside the store: a URL only ever names commits and tree
//! entries, so `..` reaches nothing. Model outputs and every other text from a run are escaped
//! (shown as text, never as HTML), and pages forbid inline scripts (Content-Security-Policy).
pub mod export;
mod html;
mod items;
mod pages;
mod read;
pub mod server;
mod textdiff;

use crate::error::Hint;
use crate::store::{ObjectId, Repo};

pub use items::{Filter, PAGE_SIZE};

/// Why a page could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL names nothing: a 404 page.
    #[error("{what} does not exist")]
    NotFound { what: String },
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Diff(#[from] crate::diff::Error),
    /// A committed run's files could not be listed or read.
    #[error(transparent)]
    Snapshot(#[from] crate::runfiles::source::Error),
    /// A run file that cannot be read as its format says.
    #[error("{path}: {problem}")]
    BadFile { path: String, problem: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("the web server stopped: {0}")]
    Serve(std::io::Error),
    #[error("{path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot start a browser: {0}")]
    Browser(std::io::Error),
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::NotFound { .. } => Some("start from the history page, `/`".into()),
            Error::Store(e) => e.hint(),
            Error::Diff(e) => e.hint(),
            Error::Snapshot(e) => e.hint(),
            Error::BadFile { .. } => Some("run `exp fsck` to check the store".into()),
            Error::Bind { .. } => {
                Some("the port is taken: pick another with `--port N` (0: any free port)".into())
            }
            Error::Serve(_) => None,
            Error::Write { .. } => Some("check that the folder is writable".into()),
            Error::Browser(_) => Some("open the printed address in a browser yourself".into()),
        }
    }
}

impl Error {
    fn not_found(what: impl Into<String>) -> Error {
        Error::NotFound { what: what.into() }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// One response: status, content type, bytes.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The site over one store.
#[derive(Debug, Clone)]
pub struct Site {
    repo: Repo,
    /// Pages for a static export: no search box (a static file cannot search).
    static_site: bool,
}

const HTML: &str = "text/html; charset=utf-8";

impl Site {
    pub fn new(repo: Repo) -> Site {
        Site { repo, static_site: false }
    }

    fn for_export(repo: Repo) -> Site {
        Site { repo, static_site: true }
    }

    /// The page at `path` (percent-encoded, as in the URL, with or without the leading `/`),
    /// with the URL's `query` (`q=text`). Never fails: what cannot be shown is a 404 page, and
    /// a damaged store a 500 page saying what is wrong.
    pub fn get(&self, path: &str, query: &str) -> Page {
        let route = Route::parse(path);
        let result = match &route {
            Some(r) => self.render(r, query),
            None => Err(Error::not_found(format!("page {}", html::short_path(path)))),
        };
        match result {
            Ok(page) => page,
            Err(e) => {
                let depth = route.as_ref().map(Route::depth).unwrap_or(0);
                let status = if matches!(e, Error::NotFound { .. }) { 404 } else { 500 };
                Page { status, content_type: HTML, body: pages::error_page(status, &e, depth) }
            }
        }
    }

    fn render(&self, route: &Route, query: &str) -> Result<Page> {
        let html = |body: String| Page { status: 200, content_type: HTML, body: body.into_bytes() };
        match route {
            Route::Asset(name) => html::asset(name).ok_or_else(|| Error::not_found(*name)),
            Route::History => Ok(html(pages::history(self)?)),
            Route::Run(id) => Ok(html(pages::run(self, id)?)),
            Route::Trial { run, slug, filter, page } => {
                let q = if self.static_site { String::new() } else { query_value(query, "q") };
                Ok(html(pages::trial(self, run, slug, *filter, *page, &q)?))
            }
            Route::Compare { a, b, page } => Ok(html(pages::compare(self, a, b, *page)?)),
        }
    }
}

/// What a URL path names. Built only from exact matches: a commit id is 64 hex digits, a
/// trial is a tree entry name, an asset one of a fixed list; anything else is no route.
#[derive(Debug, Clone, PartialEq)]
enum Route {
    History,
    Asset(&'static str),
    Run(ObjectId),
    Trial { run: ObjectId, slug: String, filter: Filter, page: u64 },
    Compare { a: ObjectId, b: ObjectId, page: u64 },
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        let decoded = percent_decode(path.trim_start_matches('/'))?;
        let parts: Vec<&str> = decoded.split('/').collect();
        // A `.` or `..` anywhere (or an empty name inside) is never a page.
        if parts.iter().enumerate().any(|(i, p)| {
            *p == "." || *p == ".." || (p.is_empty() && i + 1 != parts.len() && i != 0)
        }) {
            return None;
        }
        let id = |s: &str| -> Option<ObjectId> {
            (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| s.parse::<ObjectId>().ok())?
        };
        let page_no = |s: &str| -> Option<u64> {
            s.strip_suffix(".html")?.parse::<u64>().ok().filter(|n| (1..=10_000_000).contains(n))
        };
        match parts.as_slice() {
            [""] | ["index.html"] => Some(Route::History),
            ["assets", name] => html::asset_name(name).map(Route::Asset),
            ["run", c, "" | "index.html"] => Some(Route::Run(id(c)?)),
            ["run", c, slug, filter, page] => Some(Route::Trial {
                run: id(c)?,
                slug: valid_name(slug)?.to_string(),
                filter: Filter::parse(filter)?,
                page: page_no(page)?,
            }),
            ["compare", a, b, page] => {
                Some(Route::Compare { a: id(a)?, b: id(b)?, page: page_no(page)? })
            }
            _ => None,
        }
    }

    /// How many folders deep the page sits (for relative links back to the root).
    fn depth(&self) -> usize {
        match self {
            Route::History => 0,
            Route::Asset(_) => 1,
            Route::Run(_) => 2,
            Route::Trial { .. } => 4,
            Route::Compare { .. } => 3,
        }
    }
}

/// A tree entry name as the store allows it (no `/`, no `.`/`..`, not empty), bounded.
fn valid_name(s: &str) -> Option<&str> {
    (!s.is_empty() && s.len() <= 255 && s != "." && s != ".." && !s.contains(['/', '\0']))
        .then_some(s)
}

/// `%XX` decoding; None for a malformed escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value of `key` in a query string (`+` is a space), bounded to 200 characters.
fn query_value(query: &str, key: &str) -> String {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| percent_decode(&v.replace('+', " ")))
        .map(|v| v.chars().take(200).collect())
        .unwrap_or_default()
}

/// The path of a page, relative to the site root (what links and the export use).
pub(crate) mod paths {
    use super::{Filter, ObjectId};

    pub fn run(id: &ObjectId) -> String {
        format!("run/{}/index.html", id.to_hex())
    }

    pub fn trial(id: &ObjectId, slug: &str, filter: Filter, page: u64) -> String {
        format!("run/{}/{}/{}/{page}.html", id.to_hex(), slug, filter.as_str())
    }

    pub fn compare(a: &ObjectId, b: &ObjectId, page: u64) -> String {
        format!("compare/{}/{}/{page}.html", a.to_hex(), b.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";

    #[test]
    fn routes_are_exact_and_dot_dot_is_no_route() {
        assert_eq!(Route::parse("/"), Some(Route::History));
        assert!(matches!(Route::parse(&format!("/run/{HEX}/index.html")), Some(Route::Run(_))));
        assert!(matches!(
            Route::parse(&format!("/run/{HEX}/slug-a/fixed/3.html")),
            Some(Route::Trial { page: 3, filter: Filter::Fixed, .. })
        ));
        for bad in [
            "/../etc/passwd".to_string(),
            "/assets/../../Cargo.toml".into(),
            "/assets/%2e%2e/%2e%2e/Cargo.toml".into(),
            format!("/run/{HEX}/../trial/all/1.html"),
            format!("/run/{HEX}/%2e%2e/all/1.html"),
            format!("/run/{HEX}/a%2Fb/all/1.html"),
            "/run/abc/index.html".into(),
            format!("/run/{HEX}/slug/all/0.html"),
            "/assets/app.js.map".into(),
        ] {
            assert_eq!(Route::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn query_values_are_decoded_and_bounded() {
        assert_eq!(query_value("q=a+b%3Cc&x=1", "q"), "a b<c");
        assert_eq!(query_value(&format!("q={}", "x".repeat(500)), "q").len(), 200);
        assert_eq!(query_value("q=%zz", "q"), "");
    }
}
