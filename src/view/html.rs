//! HTML building blocks: escaping, the page frame, number formats, and the embedded assets
//! (stylesheet, script, icon), compiled into the binary so the site works offline.
use std::fmt::Write;

use super::Page;
use crate::display;

/// `s` as HTML text: every character that could start markup or end an attribute is escaped,
/// so a model's output is shown, never interpreted.
pub(crate) fn esc(s: &str) -> String {
    crate::eval::report::format::html(s)
}

/// `s` for a URL query value.
pub(crate) fn url_value(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A URL path as a 404 page may repeat it: bounded.
pub(crate) fn short_path(path: &str) -> String {
    let mut s: String = path.chars().take(120).collect();
    if path.chars().count() > 120 {
        s.push('…');
    }
    s
}

/// The relative way back to the site root from a page `depth` folders deep.
pub(crate) fn root(depth: usize) -> String {
    if depth == 0 { "./".into() } else { "../".repeat(depth) }
}

/// A whole page: head (stylesheet, script, icon, all from `assets/`), a header with the trail
/// of links that led here, and `body`.
pub(crate) fn frame(title: &str, depth: usize, trail: &[(String, String)], body: &str) -> String {
    let r = root(depth);
    let mut crumbs = format!("<a href=\"{r}index.html\">history</a>");
    for (href, label) in trail {
        let _ = write!(crumbs, " <span class=\"sep\">/</span> <a href=\"{href}\">{label}</a>");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · exp view</title>\
<link rel=\"icon\" href=\"{r}assets/favicon.svg\" type=\"image/svg+xml\">\
<link rel=\"stylesheet\" href=\"{r}assets/app.css\">\
<script src=\"{r}assets/app.js\" defer></script></head>\n\
<body><header><span class=\"brand\">exp view</span> {crumbs}</header>\n<main>\n{body}\n</main></body></html>\n",
        title = esc(title),
    )
}

static ASSETS: [(&str, &str, &str); 3] = [
    ("app.css", "text/css; charset=utf-8", include_str!("assets/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("favicon.svg", "image/svg+xml", include_str!("assets/favicon.svg")),
];

/// The asset called `name`, if there is one.
pub(crate) fn asset_name(name: &str) -> Option<&'static str> {
    ASSETS.iter().find(|(n, _, _)| *n == name).map(|(n, _, _)| *n)
}

pub(crate) fn asset(name: &str) -> Option<Page> {
    ASSETS.iter().find(|(n, _, _)| *n == name).map(|(_, ty, body)| Page {
        status: 200,
        content_type: ty,
        body: body.as_bytes().to_vec(),
    })
}

/// Every asset's name and bytes (for the export).
pub(crate) fn assets() -> impl Iterator<Item = (&'static str, &'static [u8])> {
    ASSETS.iter().map(|(n, _, b)| (*n, b.as_bytes()))
}

/// The figures as `crate::display` spells them, `—` where there is none.
pub(crate) fn pct(x: Option<f64>) -> String {
    display::or_missing(x, display::percent)
}

/// A difference in percentage points.
pub(crate) fn pp(x: Option<f64>) -> String {
    display::or_missing(x, display::points)
}

pub(crate) fn ci_pct(ci: Option<[f64; 2]>) -> String {
    ci.map(|[a, b]| format!("[{:.1}, {:.1}]", a * 100.0, b * 100.0)).unwrap_or_default()
}

pub(crate) fn p(x: Option<f64>) -> String {
    display::or_missing(x, display::p_value)
}

pub(crate) fn usd(x: Option<f64>) -> String {
    display::or_missing(x, display::usd)
}

/// A sortable cell: the text shown, and the number the history table sorts by.
pub(crate) fn num_cell(text: &str, value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("<td class=\"num\" data-v=\"{v}\">{}</td>", esc(text)),
        _ => format!("<td class=\"num\">{}</td>", esc(text)),
    }
}

/// An SVG chart with its caption and download buttons (the script wires them).
pub(crate) fn figure(id: &str, title: &str, caption: &str, svg: &str) -> String {
    format!(
        "<figure class=\"chart\" id=\"{id}\"><div class=\"svg\">{svg}</div>\
<figcaption><strong>{}</strong> {} <span class=\"downloads\">\
<button type=\"button\" class=\"dl\" data-format=\"svg\" data-name=\"{id}\">SVG</button> \
<button type=\"button\" class=\"dl\" data-format=\"png\" data-name=\"{id}\">PNG</button></span>\
</figcaption></figure>",
        esc(title),
        esc(caption)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(url_value("a b/<"), "a%20b%2F%3C");
    }

    #[test]
    fn money_keeps_three_significant_digits() {
        assert_eq!(usd(Some(0.000092)), "$0.0000920");
        assert_eq!(usd(Some(1.5)), "$1.50");
        assert_eq!(usd(None), "—");
    }
}
