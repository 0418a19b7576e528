//! Series names and query selectors: `app.cpu{env=prod}` at ingest,
//! `app.cpu{env="prod",region=~"eu-.*"}` in queries.
//!
//! Only the syntax lives here (the viewer parses the URL's query with it too); evaluating
//! regular expressions is the server's business.

use std::fmt;

/// Profile types that may end an application name after a dot (`myapp.cpu`).
pub const KNOWN_PROFILE_TYPES: &[&str] = &[
    "cpu",
    "wall",
    "itimer",
    "alloc_objects",
    "alloc_space",
    "inuse_objects",
    "inuse_space",
    "goroutines",
    "mutex_count",
    "mutex_duration",
    "block_count",
    "block_duration",
    "samples",
    "exceptions",
    "lock_count",
    "lock_duration",
];

/// How a label matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    NotEq,
    /// `=~` (regular expression, anchored)
    Regex,
    /// `!~`
    NotRegex,
}

/// One `label op "value"` term.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: MatchOp,
    /// Value or pattern.
    pub value: String,
}

/// A parsed `app[.type]{matchers}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Selector {
    /// Application name.
    pub app: String,
    /// Profile type when the name ended in a known one.
    pub profile_type: Option<String>,
    /// Label matchers (only `=` at ingest).
    pub matchers: Vec<Matcher>,
}

/// A name or query that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError(pub String);

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SelectorError {}

fn err(msg: impl Into<String>) -> SelectorError {
    SelectorError(msg.into())
}

/// Label names: Prometheus-like, plus dots (agents send `process.runtime.name`).
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

impl Selector {
    /// Parses a name or query. Values may be bare (`env=prod`, the ingest form) or quoted
    /// (`env="prod"`, the query form, with `\"` and `\\` escapes).
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let input = input.trim();
        let (head, body) = match input.find('{') {
            Some(open) => {
                if !input.ends_with('}') {
                    return Err(err("labels must end with `}`"));
                }
                (&input[..open], Some(&input[open + 1..input.len() - 1]))
            }
            None => (input, None),
        };
        let head = head.trim();
        if head.is_empty() {
            return Err(err("application name is empty"));
        }
        if head.contains(['}', '{', '"', '\n', '\r']) {
            return Err(err(format!("application name `{head}` has characters that are not allowed")));
        }
        let (app, profile_type) = match head.rsplit_once('.') {
            Some((app, ty)) if !app.is_empty() && KNOWN_PROFILE_TYPES.contains(&ty) => {
                (app.to_string(), Some(ty.to_string()))
            }
            _ => (head.to_string(), None),
        };
        let matchers = match body {
            Some(body) => parse_matchers(body)?,
            None => Vec::new(),
        };
        Ok(Selector { app, profile_type, matchers })
    }

    /// True when every matcher is a plain `=` (the only kind a series name may carry).
    pub fn is_exact(&self) -> bool {
        self.matchers.iter().all(|m| m.op == MatchOp::Eq)
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Eq => "=",
            MatchOp::NotEq => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        })
    }
}

/// The query form: `app.type{name="value",…}`, values quoted and escaped, so that parsing the
/// printed text gives back the same selector.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.app)?;
        if let Some(ty) = &self.profile_type {
            write!(f, ".{ty}")?;
        }
        if self.matchers.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let escaped = m.value.replace('\\', "\\\\").replace('"', "\\\"");
            write!(f, "{}{}\"{}\"", m.name, m.op, escaped)?;
        }
        f.write_str("}")
    }
}

fn parse_matchers(body: &str) -> Result<Vec<Matcher>, SelectorError> {
    let mut out = Vec::new();
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let name_end = rest.find(['=', '!']).ok_or_else(|| err(format!("expected `name=value` at `{rest}`")))?;
        let name = rest[..name_end].trim();
        if !valid_label_name(name) {
            return Err(err(format!("invalid label name `{name}`")));
        }
        rest = &rest[name_end..];
        let (op, len) = if rest.starts_with("!=") {
            (MatchOp::NotEq, 2)
        } else if rest.starts_with("!~") {
            (MatchOp::NotRegex, 2)
        } else if rest.starts_with("=~") {
            (MatchOp::Regex, 2)
        } else if rest.starts_with('=') {
            (MatchOp::Eq, 1)
        } else {
            return Err(err(format!("expected an operator after `{name}`")));
        };
        rest = rest[len..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, e)) => v.push(e),
                        None => break,
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or_else(|| err(format!("unterminated quote in value of `{name}`")))?;
            value = v;
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            if value.contains(['{', '}', '"', '=']) {
                return Err(err(format!("value of `{name}` has characters that are not allowed; quote it")));
            }
            rest = &rest[end..];
        }
        out.push(Matcher { name: name.to_string(), op, value });
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else if !rest.is_empty() {
            return Err(err(format!("expected `,` between labels at `{rest}`")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, op: MatchOp, value: &str) -> Matcher {
        Matcher { name: name.into(), op, value: value.into() }
    }

    #[test]
    fn parses_ingest_names() {
        let s = Selector::parse("myapp.cpu{env=prod,region=eu-1}").unwrap();
        assert_eq!(s.app, "myapp");
        assert_eq!(s.profile_type.as_deref(), Some("cpu"));
        assert_eq!(s.matchers, [m("env", MatchOp::Eq, "prod"), m("region", MatchOp::Eq, "eu-1")]);
        let plain = Selector::parse("my.app").unwrap();
        assert_eq!((plain.app.as_str(), plain.profile_type), ("my.app", None));
        let agent = Selector::parse("agenttest.cpu.cpu{env=test,region=local}").unwrap();
        assert_eq!(agent.app, "agenttest.cpu");
        assert_eq!(Selector::parse("a{}").unwrap().matchers, []);
    }

    #[test]
    fn parses_query_matchers() {
        let s = Selector::parse(r#"app.cpu{env="prod", region=~"eu-.*",x!="a\"b",y!~"z"}"#).unwrap();
        assert_eq!(
            s.matchers,
            [
                m("env", MatchOp::Eq, "prod"),
                m("region", MatchOp::Regex, "eu-.*"),
                m("x", MatchOp::NotEq, "a\"b"),
                m("y", MatchOp::NotRegex, "z"),
            ]
        );
    }

    #[test]
    fn prints_what_it_parses() {
        for text in [r#"app.cpu{env="prod",region=~"eu-.*",x!="a\"b\\c"}"#, "my.app", "a.alloc_space"] {
            let s = Selector::parse(text).unwrap();
            assert_eq!(s.to_string(), text);
            assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
        }
        assert_eq!(Selector::parse("a.cpu{env=prod}").unwrap().to_string(), r#"a.cpu{env="prod"}"#);
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in ["", "{a=b}", "a{b=c}}{", "a{b=c", "a{=c}", "a{b}", "a{b=\"c}", "a{1b=c}", "a{b=c d=e}", "a}b"] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
