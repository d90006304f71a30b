//! Keeps secrets out of everything an endpoint sends back before it is journaled, logged or shown.
//!
//! A server may echo what it was sent (a 401 body quoting the `Authorization` header, a proxy's
//! error page, a debugging endpoint answering with the request headers), and whatever an answer
//! holds ends up in the journal, predictions.csv, report.md, the store and every remote it is
//! pushed to. So every text taken from an answer passes through `Redactor::clean` first: the key's
//! own bytes go wherever they appear, and so does the value of anything that looks like a
//! credential header (`Authorization`, `api-key`, `x-api-key`, a `Bearer` token), whoever's it is.
use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// What a removed secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// `Authorization: Bearer x`, `"api-key": "x"`, `x-api-key=x`, `Bearer x`: the name (and scheme)
/// stay, so a message still says which credential was refused, the value goes. A value that is
/// already `[redacted]` (the key, removed first) matches as a whole, so it is not mangled.
static CREDENTIAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)((?:proxy-)?authorization|x-api-key|api[-_]?key)(\\?["']?\s*[:=]\s*\\?["']?)((?:bearer|basic|token)\s+)?(?:\[redacted\]|[^\s"'\\,;}\[\]]+)|(\bbearer\s+)(?:\[redacted\]|[^\s"'\\,;}\[\]]+)"#,
    )
    .expect("the credential pattern is valid")
});

/// Removes one endpoint's key (and any credential-shaped value) from text.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    key: Option<String>,
}

impl Redactor {
    pub fn new(key: Option<&str>) -> Redactor {
        Redactor { key: key.filter(|k| !k.is_empty()).map(str::to_string) }
    }

    /// `text` with the key and every credential value replaced by `[redacted]`.
    pub fn clean<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        if let Some(key) = &self.key
            && out.contains(key.as_str())
        {
            out = Cow::Owned(out.replace(key.as_str(), REDACTED));
        }
        if CREDENTIAL.is_match(&out) {
            let replaced = CREDENTIAL
                .replace_all(&out, |c: &regex::Captures<'_>| match c.get(4) {
                    Some(bearer) => format!("{}{REDACTED}", bearer.as_str()),
                    None => format!(
                        "{}{}{}{REDACTED}",
                        &c[1],
                        &c[2],
                        c.get(3).map_or("", |s| s.as_str())
                    ),
                })
                .into_owned();
            out = Cow::Owned(replaced);
        }
        out
    }

    /// `clean` for an owned string, which it returns unchanged (no copy) when there is nothing
    /// to remove.
    pub fn clean_owned(&self, text: String) -> String {
        match self.clean(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(cleaned) => cleaned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_goes_wherever_it_appears() {
        let r = Redactor::new(Some("sk-abc123"));
        assert_eq!(r.clean("x sk-abc123y sk-abc123"), "x [redacted]y [redacted]");
        assert_eq!(r.clean("Authorization: Bearer sk-abc123"), "Authorization: Bearer [redacted]");
        assert!(matches!(r.clean("positive"), Cow::Borrowed("positive")));
    }

    #[test]
    fn credential_values_go_whoever_they_belong_to() {
        let r = Redactor::new(None);
        for (text, want) in [
            ("Authorization: Bearer other-token", "Authorization: Bearer [redacted]"),
            (r#"{"authorization":"Basic dXNlcjpw"}"#, r#"{"authorization":"Basic [redacted]"}"#),
            (r#"{\"api-key\": \"k1\"}"#, r#"{\"api-key\": \"[redacted]\"}"#),
            ("x-api-key=k2; next", "x-api-key=[redacted]; next"),
            ("api_key: k3", "api_key: [redacted]"),
            ("invalid token bearer abc.def", "invalid token bearer [redacted]"),
            ("the api key you sent is invalid", "the api key you sent is invalid"),
        ] {
            assert_eq!(r.clean(text), want, "{text}");
        }
    }
}
