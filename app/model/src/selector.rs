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

/// How Pyroscope 1.x names a profile type (`name:sample_type:sample_unit:period_type:period_unit`)
/// in Kiln's short types. The first two fields decide; units are checked by the series itself.
///
/// | 1.x `name:sample_type` | Kiln |
/// |---|---|
/// | `process_cpu:cpu`, `process_cpu:samples`, `cpu:cpu`, `cpu:samples` | `cpu` |
/// | `wall:wall` | `wall` |
/// | `memory:alloc_objects`, `memory:alloc_space`, `memory:inuse_objects`, `memory:inuse_space` | the sample type |
/// | `goroutine:goroutine`, `goroutines:goroutine`, `goroutines:goroutines` | `goroutines` |
/// | `mutex:contentions` / `mutex:delay` | `mutex_count` / `mutex_duration` |
/// | `block:contentions` / `block:delay` | `block_count` / `block_duration` |
/// | anything else whose sample type is a Kiln type (e.g. `x:exceptions`) | the sample type |
pub fn profile_type_from_id(id: &str) -> Option<&'static str> {
    let mut parts = id.split(':');
    let (name, sample_type) = (parts.next()?, parts.next()?);
    let known = match (name, sample_type) {
        ("process_cpu" | "cpu", "cpu" | "samples") => "cpu",
        ("mutex", "contentions") => "mutex_count",
        ("mutex", "delay") => "mutex_duration",
        ("block", "contentions") => "block_count",
        ("block", "delay") => "block_duration",
        ("goroutine" | "goroutines", "goroutine" | "goroutines") => "goroutines",
        (_, other) => KNOWN_PROFILE_TYPES.iter().copied().find(|t| *t == other)?,
    };
    Some(known)
}

/// The label that names the application in Pyroscope 1.x queries.
pub const SERVICE_NAME_LABEL: &str = "service_name";

impl Selector {
    /// Parses a query in either form: Kiln's `app.type{matchers}` or Pyroscope 1.x's
    /// `process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="myapp",env="prod"}`, where the
    /// profile type ID maps through [`profile_type_from_id`] and `service_name="…"` (which must
    /// be an exact `=`) names the application.
    ///
    /// Ingest keeps [`Selector::parse`]: there a name with colons is just an application name.
    pub fn parse_query(input: &str) -> Result<Selector, SelectorError> {
        let trimmed = input.trim();
        let head = trimmed.split('{').next().unwrap_or("").trim();
        if head.matches(':').count() != 4 {
            return Selector::parse(input);
        }
        let profile_type = profile_type_from_id(head).ok_or_else(|| {
            err(format!("unknown profile type `{head}` (e.g. `process_cpu:cpu:nanoseconds:cpu:nanoseconds`)"))
        })?;
        let body = &trimmed[head.len()..].trim_start();
        let body = match body.strip_prefix('{') {
            Some(rest) => rest.strip_suffix('}').ok_or_else(|| err("labels must end with `}`"))?,
            None if body.is_empty() => "",
            None => return Err(err(format!("expected `{{` after `{head}`"))),
        };
        let mut matchers = parse_matchers(body)?;
        let position = matchers
            .iter()
            .position(|m| m.name == SERVICE_NAME_LABEL)
            .ok_or_else(|| err(format!("a query by profile type needs `{SERVICE_NAME_LABEL}=\"app\"`")))?;
        let service = matchers.remove(position);
        if service.op != MatchOp::Eq || service.value.is_empty() {
            return Err(err(format!(
                "`{SERVICE_NAME_LABEL}` must be matched exactly (`{SERVICE_NAME_LABEL}=\"app\"`)"
            )));
        }
        Ok(Selector { app: service.value, profile_type: Some(profile_type.to_string()), matchers })
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
    fn parses_pyroscope_1x_queries() {
        let s =
            Selector::parse_query(r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="myapp",env="prod"}"#)
                .unwrap();
        assert_eq!((s.app.as_str(), s.profile_type.as_deref()), ("myapp", Some("cpu")));
        assert_eq!(s.matchers, [m("env", MatchOp::Eq, "prod")]);
        let cases = [
            ("process_cpu:samples:count:cpu:nanoseconds", "cpu"),
            ("memory:alloc_space:bytes:space:bytes", "alloc_space"),
            ("memory:inuse_objects:count:space:bytes", "inuse_objects"),
            ("goroutine:goroutine:count:goroutine:count", "goroutines"),
            ("mutex:delay:nanoseconds:mutex:count", "mutex_duration"),
            ("block:contentions:count:block:count", "block_count"),
            ("wall:wall:nanoseconds:wall:nanoseconds", "wall"),
        ];
        for (id, kiln) in cases {
            let s = Selector::parse_query(&format!("{id}{{service_name=\"a\"}}")).unwrap();
            assert_eq!(s.profile_type.as_deref(), Some(kiln), "{id}");
        }
        assert_eq!(Selector::parse_query("web.cpu{env=~\"p.*\"}").unwrap().app, "web");
        for bad in [
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds{env=\"x\"}",
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=~\"x.*\"}",
            "nope:nope:count:x:y{service_name=\"a\"}",
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"a\"",
        ] {
            assert!(Selector::parse_query(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in ["", "{a=b}", "a{b=c}}{", "a{b=c", "a{=c}", "a{b}", "a{b=\"c}", "a{1b=c}", "a{b=c d=e}", "a}b"] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
