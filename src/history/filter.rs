//! `--where` expressions over the cross-run table: `model=x and temp>0.5 or effect<0`.
//!
//! Grammar (`and` binds tighter than `or`, parentheses group):
//! ```text
//! expr  := term ("or" term)*
//! term  := factor ("and" factor)*
//! factor:= "(" expr ")" | "not" factor | COLUMN OP VALUE
//! OP    := = | != | > | >= | < | <= | ~        (~: contains, case-insensitive)
//! ```
//! Comparisons are numeric when both sides parse as numbers (`0.50` equals `0.5`), else text.
//! A row without the column never matches a comparison. The expression comes from the command
//! line, so its length and nesting are bounded and every error points at the offending token.
use crate::error::Hint;
use std::collections::BTreeMap;

const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("--where `{expr}`: {problem}")]
pub struct FilterError {
    pub expr: String,
    pub problem: String,
}

impl Hint for FilterError {
    fn hint(&self) -> Option<String> {
        Some(
            "write COLUMN OP VALUE joined by and/or, e.g. --where 'model=gpt-4o and temp>0.5'; \
             OP is one of = != > >= < <= ~ (contains); `exp list --json` shows the column names"
                .into(),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
}

/// A parsed `--where` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Or(Vec<Filter>),
    And(Vec<Filter>),
    Not(Box<Filter>),
    Compare { column: String, op: Op, value: String },
}

impl Filter {
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        let err = |problem: String| FilterError { expr: expr.to_string(), problem };
        if expr.len() > MAX_LEN {
            return Err(err(format!("longer than {MAX_LEN} characters")));
        }
        let tokens = tokenize(expr).map_err(err)?;
        let mut p = Parser { tokens, pos: 0, depth: 0 };
        let f = p.expr().map_err(err)?;
        match p.tokens.get(p.pos) {
            None => Ok(f),
            Some(t) => Err(err(format!("unexpected `{t}`"))),
        }
    }

    /// The columns the expression names, to check them against the table's.
    pub fn columns(&self) -> Vec<&str> {
        match self {
            Filter::Or(v) | Filter::And(v) => v.iter().flat_map(Filter::columns).collect(),
            Filter::Not(f) => f.columns(),
            Filter::Compare { column, .. } => vec![column.as_str()],
        }
    }

    pub fn matches(&self, row: &BTreeMap<String, String>) -> bool {
        match self {
            Filter::Or(v) => v.iter().any(|f| f.matches(row)),
            Filter::And(v) => v.iter().all(|f| f.matches(row)),
            Filter::Not(f) => !f.matches(row),
            Filter::Compare { column, op, value } => match row.get(column) {
                Some(cell)
                    if !cell.is_empty() && cell != "-" && cell != crate::display::MISSING =>
                {
                    compare(cell, *op, value)
                }
                _ => false,
            },
        }
    }
}

fn compare(cell: &str, op: Op, value: &str) -> bool {
    if op == Op::Contains {
        return cell.to_lowercase().contains(&value.to_lowercase());
    }
    let ordering = match (number(cell), number(value)) {
        (Some(a), Some(b)) => a.partial_cmp(&b),
        _ => Some(cell.cmp(value)),
    };
    let Some(o) = ordering else { return false };
    match op {
        Op::Eq => o.is_eq(),
        Op::Ne => o.is_ne(),
        Op::Gt => o.is_gt(),
        Op::Ge => o.is_ge(),
        Op::Lt => o.is_lt(),
        Op::Le => o.is_le(),
        Op::Contains => unreachable!("handled above"),
    }
}

/// A cell as a number: plain numbers, and the table's own spellings `12.5%`, `+3.1 pp`, `$0.02`.
pub fn number(s: &str) -> Option<f64> {
    let t = s.trim().trim_start_matches('$').trim_end_matches('%').trim_end_matches(" pp");
    let t = t.trim_start_matches("< ").replace(',', "");
    t.trim_start_matches('+').parse::<f64>().ok().filter(|v| v.is_finite())
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Op(Op),
    Open,
    Close,
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Word(w) => write!(f, "{w}"),
            Token::Op(o) => write!(f, "{}", op_text(*o)),
            Token::Open => write!(f, "("),
            Token::Close => write!(f, ")"),
        }
    }
}

fn op_text(o: Op) -> &'static str {
    match o {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Contains => "~",
    }
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let (token, width) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            '=' if next == Some('=') => (Token::Op(Op::Eq), 2),
            '=' => (Token::Op(Op::Eq), 1),
            '!' if next == Some('=') => (Token::Op(Op::Ne), 2),
            '>' if next == Some('=') => (Token::Op(Op::Ge), 2),
            '>' => (Token::Op(Op::Gt), 1),
            '<' if next == Some('=') => (Token::Op(Op::Le), 2),
            '<' => (Token::Op(Op::Lt), 1),
            '~' => (Token::Op(Op::Contains), 1),
            '"' | '\'' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&q| q == c)
                    .ok_or_else(|| format!("the quote at character {} is never closed", i + 1))?;
                let word: String = chars[i + 1..i + 1 + end].iter().collect();
                (Token::Word(word), end + 2)
            }
            _ => {
                let end = chars[i..]
                    .iter()
                    .position(|&q| q.is_whitespace() || "()=!<>~\"'".contains(q))
                    .unwrap_or(chars.len() - i);
                (Token::Word(chars[i..i + end].iter().collect()), end)
            }
        };
        out.push(token);
        i += width;
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn expr(&mut self) -> Result<Filter, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        let mut terms = vec![self.term()?];
        while self.peek_keyword("or") {
            self.pos += 1;
            terms.push(self.term()?);
        }
        self.depth -= 1;
        Ok(if terms.len() == 1 { terms.remove(0) } else { Filter::Or(terms) })
    }

    fn term(&mut self) -> Result<Filter, String> {
        let mut factors = vec![self.factor()?];
        while self.peek_keyword("and") {
            self.pos += 1;
            factors.push(self.factor()?);
        }
        Ok(if factors.len() == 1 { factors.remove(0) } else { Filter::And(factors) })
    }

    fn factor(&mut self) -> Result<Filter, String> {
        if self.peek_keyword("not") {
            self.pos += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(format!("nested deeper than {MAX_DEPTH} levels"));
            }
            let inner = self.factor()?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        match self.tokens.get(self.pos).cloned() {
            Some(Token::Open) => {
                self.pos += 1;
                let inner = self.expr()?;
                match self.tokens.get(self.pos) {
                    Some(Token::Close) => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    _ => Err("a `(` is never closed".into()),
                }
            }
            Some(Token::Word(column)) => {
                self.pos += 1;
                let op = match self.tokens.get(self.pos) {
                    Some(Token::Op(op)) => *op,
                    Some(t) => {
                        return Err(format!("expected an operator after `{column}`, found `{t}`"));
                    }
                    None => return Err(format!("`{column}` needs an operator and a value")),
                };
                self.pos += 1;
                let value = match self.tokens.get(self.pos) {
                    Some(Token::Word(v)) => v.clone(),
                    Some(t) => {
                        return Err(format!(
                            "expected a value after `{column}{}`, found `{t}`",
                            op_text(op)
                        ));
                    }
                    None => return Err(format!("`{column}{}` needs a value", op_text(op))),
                };
                self.pos += 1;
                Ok(Filter::Compare { column, op, value })
            }
            Some(t) => Err(format!("unexpected `{t}`")),
            None => Err("the expression ends too early".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let f = Filter::parse("model=a and temp>0.5 or model=b").expect("parses");
        assert!(f.matches(&row(&[("model", "a"), ("temp", "0.7")])));
        assert!(!f.matches(&row(&[("model", "a"), ("temp", "0.2")])));
        assert!(f.matches(&row(&[("model", "b"), ("temp", "0.2")])));
    }

    #[test]
    fn parentheses_and_not_group() {
        let f = Filter::parse("model=a and not (temp>0.5 or top_p<1)").expect("parses");
        assert!(f.matches(&row(&[("model", "a"), ("temp", "0"), ("top_p", "1")])));
        assert!(!f.matches(&row(&[("model", "a"), ("temp", "0.7"), ("top_p", "1")])));
    }

    #[test]
    fn numbers_compare_as_numbers_including_the_tables_spellings() {
        let f = Filter::parse("effect>=2 and cost<0.01 and treatment>50").expect("parses");
        assert!(f.matches(&row(&[
            ("effect", "+2.0 pp"),
            ("cost", "$0.0038"),
            ("treatment", "78.1%")
        ])));
        assert!(!f.matches(&row(&[
            ("effect", "-1.0 pp"),
            ("cost", "$0.0038"),
            ("treatment", "78.1%")
        ])));
    }

    #[test]
    fn quoted_values_keep_spaces_and_contains_ignores_case() {
        let f = Filter::parse("message~'Prompt V2'").expect("parses");
        assert!(f.matches(&row(&[("message", "try prompt v2 on all")])));
    }

    #[test]
    fn a_missing_or_empty_cell_never_matches() {
        let f = Filter::parse("p!=0.5").expect("parses");
        assert!(!f.matches(&row(&[("p", "-")])));
        assert!(!f.matches(&row(&[])));
    }

    #[test]
    fn malformed_expressions_say_where() {
        for (e, want) in [
            ("model", "needs an operator"),
            ("model=", "needs a value"),
            ("(model=a", "never closed"),
            ("model=a and", "ends too early"),
            ("model='a", "never closed"),
            ("model=a b", "unexpected `b`"),
        ] {
            let err = Filter::parse(e).expect_err(e);
            assert!(err.to_string().contains(want), "{e}: {err}");
        }
        let deep = format!("{}a=1{}", "(".repeat(40), ")".repeat(40));
        assert!(Filter::parse(&deep).expect_err("deep").to_string().contains("nested deeper"));
    }
}
