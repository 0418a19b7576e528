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
    // Off-CPU time (the OpenTelemetry eBPF profiler's `off_cpu/nanoseconds` profiles).
    "off_cpu",
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
    // Java Flight Recorder events, named as Pyroscope's JFR ingest names them.
    "native",
    "alloc_in_new_tlab_objects",
    "alloc_in_new_tlab_bytes",
    "alloc_outside_tlab_objects",
    "alloc_outside_tlab_bytes",
    "alloc_sample_objects",
    "alloc_sample_bytes",
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
    ///
    /// An application name that the bare form cannot carry (one with `{`, `"` or a line break,
    /// or one that ends in `.cpu` without being of that type) is written quoted, with the same
    /// escapes: `"my app {x}".cpu{env="prod"}`. Label names that are not identifiers are quoted
    /// the same way (`{"k8s/pod"="a"}`, as in Prometheus 3). [`Selector`]'s `Display` quotes
    /// exactly where needed, so every stored series can be written as a query.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let input = input.trim();
        if let Some(quoted) = input.strip_prefix('"') {
            return Selector::parse_quoted_app(quoted);
        }
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
            return Err(err(format!(
                "application name `{head}` has characters that are not allowed unquoted; quote it (`\"name\".cpu`)"
            )));
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

    /// The rest of `"app"[.type][{matchers}]` after its opening quote.
    fn parse_quoted_app(quoted: &str) -> Result<Selector, SelectorError> {
        let (app, rest) = unquote(quoted).ok_or_else(|| err("unterminated quote in the application name"))?;
        if app.is_empty() {
            return Err(err("application name is empty"));
        }
        let rest = rest.trim_start();
        let (ty, rest) = match rest.strip_prefix('.') {
            Some(after) => {
                let end = after.find('{').unwrap_or(after.len());
                let ty = after[..end].trim();
                if !KNOWN_PROFILE_TYPES.contains(&ty) {
                    return Err(err(format!("unknown profile type `{ty}` after the quoted application name")));
                }
                (Some(ty.to_string()), &after[end..])
            }
            None => (None, rest),
        };
        let matchers = match rest.strip_prefix('{') {
            Some(body) => parse_matchers(body.strip_suffix('}').ok_or_else(|| err("labels must end with `}`"))?)?,
            None if rest.is_empty() => Vec::new(),
            None => return Err(err(format!("expected `.type` or `{{` after the quoted application name at `{rest}`"))),
        };
        Ok(Selector { app, profile_type: ty, matchers })
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
/// printed text (with [`Selector::parse`] or [`Selector::parse_query`]) gives back the same
/// selector. The application name and label names are quoted only where the bare form would
/// read differently.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if app_needs_quotes(&self.app, self.profile_type.is_some()) {
            write_quoted(f, &self.app)?;
        } else {
            f.write_str(&self.app)?;
        }
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
            if valid_label_name(&m.name) {
                f.write_str(&m.name)?;
            } else {
                write_quoted(f, &m.name)?;
            }
            write!(f, "{}", m.op)?;
            write_quoted(f, &m.value)?;
        }
        f.write_str("}")
    }
}

/// `"text"` with `\` and `"` escaped.
fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

/// True when the bare form would not read back as this application name (with a type after
/// it when `typed`): characters the bare form refuses, a name that starts with a quote or has
/// blanks at either end (trimmed), four colons (a Pyroscope 1.x type ID to `parse_query`), or,
/// untyped, a name ending in `.cpu` or another type (it would be read as that type).
fn app_needs_quotes(app: &str, typed: bool) -> bool {
    app.is_empty()
        || app.trim() != app
        || app.contains(['{', '}', '"', '\n', '\r'])
        || app.matches(':').count() == 4
        || (!typed
            && app.rsplit_once('.').is_some_and(|(head, ty)| !head.is_empty() && KNOWN_PROFILE_TYPES.contains(&ty)))
}

/// Reads a quoted string after its opening quote, `\x` standing for `x`: the text and what
/// follows the closing quote, or `None` when it is not closed.
fn unquote(quoted: &str) -> Option<(String, &str)> {
    let mut text = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => text.push(chars.next()?.1),
            '"' => return Some((text, &quoted[i + 1..])),
            c => text.push(c),
        }
    }
    None
}

/// How Pyroscope 1.x names a profile type (`name:sample_type:sample_unit:period_type:period_unit`)
/// in Kiln's short types. The first two fields decide; units are checked by the series itself.
///
/// | 1.x `name:sample_type` | Kiln |
/// |---|---|
/// | `process_cpu:cpu`, `process_cpu:samples`, `cpu:cpu`, `cpu:samples` | `cpu` |
/// | `wall:wall` | `wall` |
/// | `memory:alloc_objects`, `memory:alloc_space`, `memory:inuse_objects`, `memory:inuse_space` | the sample type |
/// | `memory:alloc_in_new_tlab_objects` and the other JFR allocation types | the sample type |
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

/// The five-part Pyroscope profile type ID (`name:sample_type:sample_unit:period_type:period_unit`)
/// Kiln answers for its profile type: the ID Pyroscope's agents and server use for the same
/// data, so that [`profile_type_from_id`] maps it back. CPU and wall time are stated in
/// nanoseconds, as Pyroscope does: series stored in samples are converted through their
/// sample rate where they are served. Types Kiln does not know get `type:type:count:type:count`.
pub fn profile_type_id(profile_type: &str) -> String {
    let known = match profile_type {
        "cpu" => "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        "wall" => "wall:wall:nanoseconds:wall:nanoseconds",
        "off_cpu" => "off_cpu:off_cpu:nanoseconds:off_cpu:nanoseconds",
        "itimer" => "itimer:itimer:nanoseconds:cpu:nanoseconds",
        "alloc_objects" => "memory:alloc_objects:count:space:bytes",
        "alloc_space" => "memory:alloc_space:bytes:space:bytes",
        "inuse_objects" => "memory:inuse_objects:count:space:bytes",
        "inuse_space" => "memory:inuse_space:bytes:space:bytes",
        "alloc_in_new_tlab_objects" => "memory:alloc_in_new_tlab_objects:count:space:bytes",
        "alloc_in_new_tlab_bytes" => "memory:alloc_in_new_tlab_bytes:bytes:space:bytes",
        "alloc_outside_tlab_objects" => "memory:alloc_outside_tlab_objects:count:space:bytes",
        "alloc_outside_tlab_bytes" => "memory:alloc_outside_tlab_bytes:bytes:space:bytes",
        "alloc_sample_objects" => "memory:alloc_sample_objects:count:space:bytes",
        "alloc_sample_bytes" => "memory:alloc_sample_bytes:bytes:space:bytes",
        "goroutines" => "goroutines:goroutine:count:goroutine:count",
        "mutex_count" => "mutex:contentions:count:contentions:count",
        "mutex_duration" => "mutex:delay:nanoseconds:contentions:count",
        "block_count" => "block:contentions:count:contentions:count",
        "block_duration" => "block:delay:nanoseconds:contentions:count",
        "lock_duration" => "lock:lock_duration:nanoseconds:lock:count",
        "exceptions" | "lock_count" | "samples" => {
            return format!("{profile_type}:{profile_type}:count:{profile_type}:count");
        }
        other => {
            // Colons would add parts; Grafana indexes parts 1 and 2 without checking.
            let safe = other.replace(':', "_");
            return format!("{safe}:{safe}:count:{safe}:count");
        }
    };
    known.to_string()
}

/// Kiln's profile type for a five-part ID: [`profile_type_from_id`] for the IDs Pyroscope
/// uses, else the sample type of an ID [`profile_type_id`] wrote for a type of Kiln's own
/// (`name:name:count:name:count`). `None` for anything else.
pub fn profile_type_of_id(id: &str) -> Option<String> {
    let parts: Vec<&str> = id.split(':').collect();
    if parts.len() != 5 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    if let Some(known) = profile_type_from_id(id) {
        return Some(known.to_string());
    }
    (parts[0] == parts[1]).then(|| parts[1].to_string())
}

/// Parses a label selector as Grafana and Pyroscope write it: `{}` (or nothing) for every
/// series, `{service_name=~"api-.*",env="prod"}` for some.
pub fn parse_label_selector(input: &str) -> Result<Vec<Matcher>, SelectorError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let body = trimmed
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or_else(|| err(format!("a label selector is `{{name=\"value\",…}}`, not `{trimmed}`")))?;
    parse_matchers(body)
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
        if trimmed.starts_with('"') || head.matches(':').count() != 4 {
            return Selector::parse(input);
        }
        // Any type Kiln stores has an ID ([`profile_type_id`]), its own types (callgrind's
        // event types, `nanoseconds`) too: each reads back.
        let profile_type = profile_type_from_id(head)
            .map(str::to_string)
            .or_else(|| profile_type_of_id(head).filter(|t| profile_type_id(t) == head))
            .ok_or_else(|| {
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
        Ok(Selector { app: service.value, profile_type: Some(profile_type), matchers })
    }
}

fn parse_matchers(body: &str) -> Result<Vec<Matcher>, SelectorError> {
    let mut out = Vec::new();
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let name;
        if let Some(quoted) = rest.strip_prefix('"') {
            let (text, after) = unquote(quoted).ok_or_else(|| err("unterminated quote in a label name"))?;
            if text.is_empty() {
                return Err(err("label name is empty"));
            }
            name = text;
            rest = after.trim_start();
        } else {
            let name_end = rest.find(['=', '!']).ok_or_else(|| err(format!("expected `name=value` at `{rest}`")))?;
            let bare = rest[..name_end].trim();
            if !valid_label_name(bare) {
                return Err(err(format!("invalid label name `{bare}`; quote it (`\"{bare}\"=\"value\"`)")));
            }
            name = bare.to_string();
            rest = &rest[name_end..];
        }
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
            let (text, after) =
                unquote(quoted).ok_or_else(|| err(format!("unterminated quote in value of `{name}`")))?;
            value = text;
            rest = after.trim_start();
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            if value.contains(['{', '}', '"', '=']) {
                return Err(err(format!("value of `{name}` has characters that are not allowed; quote it")));
            }
            rest = &rest[end..];
        }
        out.push(Matcher { name, op, value });
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
    fn profile_type_ids_round_trip() {
        for kiln in KNOWN_PROFILE_TYPES.iter().copied().chain(["nanoseconds", "a:b"]) {
            let id = profile_type_id(kiln);
            assert_eq!(id.split(':').count(), 5, "{id}");
            let back = profile_type_of_id(&id).unwrap();
            assert_eq!(back, kiln.replace(':', "_"), "{id}");
        }
        assert_eq!(profile_type_of_id("process_cpu:samples:count:cpu:nanoseconds").as_deref(), Some("cpu"));
        assert_eq!(profile_type_of_id("process_cpu:cpu"), None);
        assert_eq!(profile_type_of_id("x:y:count:x:count"), None);
    }

    #[test]
    fn label_selectors_parse() {
        assert_eq!(parse_label_selector("{}").unwrap(), []);
        assert_eq!(parse_label_selector(" ").unwrap(), []);
        assert_eq!(
            parse_label_selector(r#"{service_name=~"api-.*", env="prod"}"#).unwrap(),
            [m("service_name", MatchOp::Regex, "api-.*"), m("env", MatchOp::Eq, "prod")]
        );
        assert!(parse_label_selector("service_name=\"a\"").is_err());
        assert!(parse_label_selector("{a=\"b\"").is_err());
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
        let own = Selector::parse_query(r#"Ir:Ir:count:Ir:count{service_name="cg"}"#).unwrap();
        assert_eq!((own.app.as_str(), own.profile_type.as_deref()), ("cg", Some("Ir")));
    }

    #[test]
    fn odd_application_names_are_quoted() {
        let s = Selector::parse(r#""my app {x}".cpu{env="prod"}"#).unwrap();
        assert_eq!((s.app.as_str(), s.profile_type.as_deref()), ("my app {x}", Some("cpu")));
        assert_eq!(s.matchers, [m("env", MatchOp::Eq, "prod")]);
        assert_eq!(Selector::parse_query(r#""my app {x}".cpu{env="prod"}"#).unwrap(), s);
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("my app {x}", Some("cpu"), r#""my app {x}".cpu"#),
            ("say \"hi\"", None, r#""say \"hi\"""#),
            ("web.cpu", None, r#""web.cpu""#),
            ("web.cpu", Some("cpu"), "web.cpu.cpu"),
            ("a:b:c:d:e", None, r#""a:b:c:d:e""#),
            (" padded ", None, r#"" padded ""#),
            ("naïve 服务", None, "naïve 服务"),
            ("my app", Some("wall"), "my app.wall"),
        ];
        for (app, ty, printed) in cases {
            let s = Selector { app: app.to_string(), profile_type: ty.map(String::from), matchers: vec![] };
            assert_eq!(s.to_string(), *printed, "{app:?}");
            assert_eq!(Selector::parse(printed).unwrap(), s, "{printed}");
            assert_eq!(Selector::parse_query(printed).unwrap(), s, "{printed}");
        }
        let odd_label = Selector::parse(r#"a{"k8s/pod name"=~"x.*"}"#).unwrap();
        assert_eq!(odd_label.matchers, [m("k8s/pod name", MatchOp::Regex, "x.*")]);
        assert_eq!(odd_label.to_string(), r#"a{"k8s/pod name"=~"x.*"}"#);
        // The Pyroscope 1.x form carries any service name as a label value.
        let s =
            Selector::parse_query(r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="my app {x}"}"#).unwrap();
        assert_eq!(s.app, "my app {x}");
        for bad in [r#""unterminated"#, r#""a".nope"#, r#""a" b"#, r#""".cpu"#, r#""a"{b="c""#] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    fn any_name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        // Printable and odd characters alike, with the syntax's own characters and type
        // suffixes made likely.
        let piece = prop_oneof![
            "[a-z]{1,4}",
            Just(".cpu".to_string()),
            Just(".alloc_space".to_string()),
            "[{}\"\\\\,=!~:. \t\n]",
            any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(piece, 1..6).prop_map(|p| p.concat())
    }

    proptest::proptest! {
        #[test]
        fn printed_selectors_parse_back(
            app in any_name(),
            typed in proptest::option::of(proptest::sample::select(KNOWN_PROFILE_TYPES)),
            labels in proptest::collection::vec((any_name(), 0..4usize, any_name()), 0..4),
        ) {
            let ops = [MatchOp::Eq, MatchOp::NotEq, MatchOp::Regex, MatchOp::NotRegex];
            let selector = Selector {
                app,
                profile_type: typed.map(String::from),
                matchers: labels.into_iter().map(|(name, op, value)| Matcher { name, op: ops[op], value }).collect(),
            };
            let printed = selector.to_string();
            proptest::prop_assert_eq!(Selector::parse(&printed), Ok(selector.clone()), "{}", printed);
            proptest::prop_assert_eq!(Selector::parse_query(&printed), Ok(selector), "{}", printed);
        }
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in ["", "{a=b}", "a{b=c}}{", "a{b=c", "a{=c}", "a{b}", "a{b=\"c}", "a{1b=c}", "a{b=c d=e}", "a}b"] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
