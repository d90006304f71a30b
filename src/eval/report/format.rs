//! Report text besides the figures themselves (those read as `crate::display` says): scores as
//! percentages or plain numbers, decoding settings, Markdown cells and HTML escapes.
use crate::display;
use crate::stats::significance::ScoreKind;

/// Scores are shown as percentages when they are 0/1 (accuracy) and as plain numbers otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Num {
    pub pct: bool,
}

impl Num {
    pub fn for_kind(kind: Option<ScoreKind>) -> Num {
        Num { pct: kind != Some(ScoreKind::Continuous) }
    }

    /// A level: "69.2%" or "0.692".
    pub fn level(&self, x: f64) -> String {
        if self.pct { display::percent(x) } else { format!("{x:.3}") }
    }

    /// A difference: "+6.7 pp" or "+0.067".
    pub fn diff(&self, x: f64) -> String {
        if self.pct { display::points(x) } else { format!("{:+.3}", x + 0.0) }
    }

    /// A level interval: "60.4% to 76.7%".
    pub fn level_ci(&self, ci: [f64; 2]) -> String {
        format!("{} to {}", self.level(ci[0]), self.level(ci[1]))
    }

    /// A difference interval: "+1.1 to +12.2 pp" or "-0.013 to +0.059".
    pub fn diff_ci(&self, ci: [f64; 2]) -> String {
        if self.pct {
            display::points_range(ci[0], ci[1])
        } else {
            format!("{:+.3} to {:+.3}", ci[0] + 0.0, ci[1] + 0.0)
        }
    }

    /// The unit of a difference in words.
    pub fn diff_unit(&self) -> &'static str {
        if self.pct { "percentage points" } else { "points of mean score" }
    }

    pub fn level_name(&self) -> &'static str {
        if self.pct { "accuracy" } else { "mean score" }
    }
}

/// "temperature 0, top_k 50, top_p 1, max_tokens 1024".
pub fn decoding(d: Option<&serde_json::Map<String, serde_json::Value>>) -> String {
    let Some(d) = d else { return "not recorded".into() };
    let parts: Vec<String> = d
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k} {s}"),
            other => format!("{k} {other}"),
        })
        .collect();
    if parts.is_empty() { "provider defaults".into() } else { parts.join(", ") }
}

/// Text for a Markdown table cell: one line, pipes escaped, at most `max` characters.
pub fn cell(s: &str, max: usize) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut t: String = one_line.chars().take(max).collect();
    if one_line.chars().count() > max {
        t.push('…');
    }
    let t = t.replace('|', "\\|");
    if t.is_empty() { display::MISSING.into() } else { t }
}

/// Text for HTML.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        let n = Num { pct: true };
        assert_eq!(n.level(0.6917), "69.2%");
        assert_eq!(n.diff(0.0667), "+6.7 pp");
        assert_eq!(n.diff(-0.0), "+0.0 pp");
        assert_eq!(Num { pct: false }.diff(-0.0), "+0.000");
        assert_eq!(cell("a|b\nc", 10), "a\\|b c");
        assert_eq!(html("<a & 'b'>"), "&lt;a &amp; &#39;b&#39;&gt;");
    }
}
