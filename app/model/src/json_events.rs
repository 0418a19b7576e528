//! JSON read as a flat sequence of events, without recursion: for formats whose trees nest as
//! deep as the profiled program's stacks (V8 heap profiles), which a recursive reader either
//! refuses past its nesting limit (serde_json stops at 128 levels) or overflows the stack on.
//! The reader holds one byte per open container, so its memory is bounded by the input's size.

use std::borrow::Cow;

/// One step through a document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event<'a> {
    ObjectStart,
    ObjectEnd,
    ArrayStart,
    ArrayEnd,
    /// An object's key; its value's events follow.
    Key(Cow<'a, str>),
    String(Cow<'a, str>),
    /// A number as written (checked to be one).
    Number(&'a str),
    Bool(bool),
    Null,
}

/// What may come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value (the document's, an array element after a comma, or a key's).
    Value,
    /// A value or `]`, right after `[`.
    ValueOrArrayEnd,
    /// A key or `}`, right after `{`.
    KeyOrObjectEnd,
    /// A key, after a comma in an object.
    Key,
    /// `:` after a key.
    Colon,
    /// `,` or the end of the open container, after a value.
    CommaOrEnd,
    /// Nothing but whitespace: the document's value is complete.
    Done,
}

/// The events of one JSON document, in order; an error (with its byte offset) ends them.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// `{` or `[` for each open container, innermost last.
    open: Vec<u8>,
    expect: Expect,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0, open: Vec::new(), expect: Expect::Value }
    }

    /// The next event; `None` once the document has ended (and only whitespace followed it).
    pub(crate) fn next_event(&mut self) -> Result<Option<Event<'a>>, String> {
        loop {
            self.skip_whitespace();
            let Some(&byte) = self.bytes.get(self.at) else {
                return match self.expect {
                    Expect::Done => Ok(None),
                    _ => Err(format!("the JSON ends early, at byte {}", self.at)),
                };
            };
            match (self.expect, byte) {
                (Expect::Done, _) => return Err(self.unexpected("after the end of the document")),
                (Expect::Colon, b':') => {
                    self.at += 1;
                    self.expect = Expect::Value;
                }
                (Expect::Colon, _) => return Err(self.unexpected("where `:` belongs")),
                (Expect::CommaOrEnd, b',') => {
                    self.at += 1;
                    self.expect = if self.open.last() == Some(&b'{') { Expect::Key } else { Expect::Value };
                }
                (Expect::CommaOrEnd | Expect::ValueOrArrayEnd | Expect::KeyOrObjectEnd, b']' | b'}') => {
                    let opener = if byte == b']' { b'[' } else { b'{' };
                    let may_close = match self.expect {
                        Expect::ValueOrArrayEnd => byte == b']',
                        Expect::KeyOrObjectEnd => byte == b'}',
                        _ => true,
                    };
                    if !may_close || self.open.last() != Some(&opener) {
                        return Err(self.unexpected("that closes nothing open"));
                    }
                    self.at += 1;
                    self.open.pop();
                    self.after_value();
                    return Ok(Some(if byte == b']' { Event::ArrayEnd } else { Event::ObjectEnd }));
                }
                (Expect::CommaOrEnd, _) => return Err(self.unexpected("where `,` or the end of a container belongs")),
                (Expect::KeyOrObjectEnd | Expect::Key, b'"') => {
                    let key = self.string()?;
                    self.expect = Expect::Colon;
                    return Ok(Some(Event::Key(key)));
                }
                (Expect::KeyOrObjectEnd | Expect::Key, _) => return Err(self.unexpected("where a key belongs")),
                (Expect::Value | Expect::ValueOrArrayEnd, _) => return self.value(byte).map(Some),
            }
        }
    }

    fn value(&mut self, byte: u8) -> Result<Event<'a>, String> {
        match byte {
            b'{' | b'[' => {
                self.at += 1;
                self.open.push(byte);
                self.expect = if byte == b'{' { Expect::KeyOrObjectEnd } else { Expect::ValueOrArrayEnd };
                Ok(if byte == b'{' { Event::ObjectStart } else { Event::ArrayStart })
            }
            b'"' => {
                let text = self.string()?;
                self.after_value();
                Ok(Event::String(text))
            }
            b't' | b'f' | b'n' => {
                let (word, event) = match byte {
                    b't' => ("true", Event::Bool(true)),
                    b'f' => ("false", Event::Bool(false)),
                    _ => ("null", Event::Null),
                };
                if !self.bytes[self.at..].starts_with(word.as_bytes()) {
                    return Err(self.unexpected("where a value belongs"));
                }
                self.at += word.len();
                self.after_value();
                Ok(event)
            }
            b'-' | b'0'..=b'9' => {
                let start = self.at;
                while self
                    .bytes
                    .get(self.at)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    self.at += 1;
                }
                let text = std::str::from_utf8(&self.bytes[start..self.at]).expect("ASCII");
                if !is_json_number(text) {
                    return Err(format!("`{text}` at byte {start} is not a number"));
                }
                self.after_value();
                Ok(Event::Number(text))
            }
            _ => Err(self.unexpected("where a value belongs")),
        }
    }

    fn after_value(&mut self) {
        self.expect = if self.open.is_empty() { Expect::Done } else { Expect::CommaOrEnd };
    }

    fn skip_whitespace(&mut self) {
        while self.bytes.get(self.at).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn unexpected(&self, place: &str) -> String {
        let shown = self.bytes.get(self.at).map_or(String::new(), |&b| (b as char).escape_default().to_string());
        format!("unexpected `{shown}` at byte {} {place}", self.at)
    }

    /// A string starting at its opening quote, unescaped.
    fn string(&mut self) -> Result<Cow<'a, str>, String> {
        let start = self.at + 1;
        let mut end = start;
        let mut escaped = false;
        loop {
            match self.bytes.get(end) {
                None => return Err(format!("the string at byte {} is not closed", self.at)),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    end += 2;
                }
                Some(b) if *b < 0x20 => return Err(format!("a control character in the string at byte {}", self.at)),
                Some(_) => end += 1,
            }
        }
        let raw = self.bytes.get(start..end).ok_or_else(|| format!("the string at byte {} is not closed", self.at))?;
        let raw = std::str::from_utf8(raw).map_err(|_| format!("the string at byte {} is not UTF-8", self.at))?;
        let at = self.at;
        self.at = end + 1;
        if !escaped {
            return Ok(Cow::Borrowed(raw));
        }
        unescape(raw).map(Cow::Owned).ok_or_else(|| format!("a bad escape in the string at byte {at}"))
    }
}

/// Whether `text` is a number as JSON writes them: `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`.
fn is_json_number(text: &str) -> bool {
    fn digits(bytes: &[u8]) -> usize {
        bytes.iter().take_while(|b| b.is_ascii_digit()).count()
    }
    let mut rest = text.strip_prefix('-').unwrap_or(text).as_bytes();
    let whole = digits(rest);
    if whole == 0 || (whole > 1 && rest[0] == b'0') {
        return false;
    }
    rest = &rest[whole..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = digits(fraction);
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    if let Some(exponent) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let exponent = exponent.strip_prefix(b"+").or_else(|| exponent.strip_prefix(b"-")).unwrap_or(exponent);
        let n = digits(exponent);
        if n == 0 {
            return false;
        }
        rest = &exponent[n..];
    }
    rest.is_empty()
}

/// The text of a string's body with its escapes resolved (`\uXXXX` pairs included).
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let resolved = match chars.next()? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let high = hex4(&mut chars)?;
                if (0xD800..0xDC00).contains(&high) {
                    // A surrogate pair; a lone half becomes the replacement character.
                    let rest = chars.as_str();
                    if let Some(after) = rest.strip_prefix("\\u") {
                        let mut low_chars = after.chars();
                        if let Some(low) = hex4(&mut low_chars).filter(|l| (0xDC00..0xE000).contains(l)) {
                            chars = low_chars;
                            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?
                        } else {
                            char::REPLACEMENT_CHARACTER
                        }
                    } else {
                        char::REPLACEMENT_CHARACTER
                    }
                } else {
                    char::from_u32(high).unwrap_or(char::REPLACEMENT_CHARACTER)
                }
            }
            _ => return None,
        };
        out.push(resolved);
    }
    Some(out)
}

fn hex4(chars: &mut std::str::Chars) -> Option<u32> {
    let mut value = 0;
    for _ in 0..4 {
        value = value * 16 + chars.next()?.to_digit(16)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn events(text: &str) -> Result<Vec<Event<'_>>, String> {
        let mut reader = Reader::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(event) = reader.next_event()? {
            out.push(event);
        }
        Ok(out)
    }

    #[test]
    fn documents_become_events_in_order() {
        use Event::*;
        let got =
            events(r#" {"a": [1, -2.5e3, "x\"\u00e9\ud83d\ude00"], "b": {}, "c": [], "d": true, "e": null} "#).unwrap();
        assert_eq!(
            got,
            vec![
                ObjectStart,
                Key("a".into()),
                ArrayStart,
                Number("1"),
                Number("-2.5e3"),
                String("x\"é😀".into()),
                ArrayEnd,
                Key("b".into()),
                ObjectStart,
                ObjectEnd,
                Key("c".into()),
                ArrayStart,
                ArrayEnd,
                Key("d".into()),
                Bool(true),
                Key("e".into()),
                Null,
                ObjectEnd,
            ]
        );
    }

    #[test]
    fn what_is_not_json_is_an_error() {
        for bad in [
            "",
            "{",
            "[1,",
            "[1 2]",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "[1,]",
            "{1:2}",
            "[}",
            "{]",
            "tru",
            "\"open",
            "1 2",
            "-",
            "[\"\\q\"]",
            "{\"a\":1}}",
        ] {
            assert!(events(bad).is_err(), "{bad:?} read as JSON");
        }
    }

    #[test]
    fn nesting_far_beyond_recursive_readers_limits_is_read() {
        let depth = 100_000;
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(events(&text).unwrap().len(), 2 * depth);
    }

    proptest! {
        #[test]
        fn agrees_with_serde_json_on_what_is_json(text in "[\\[\\]{}\",:0-9a-tv-z \\\\.eE+-]{0,40}") {
            prop_assert_eq!(events(&text).is_ok(), serde_json::from_str::<serde_json::Value>(&text).is_ok(), "{:?}", text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut reader = Reader::new(&bytes);
            while let Ok(Some(_)) = reader.next_event() {}
        }
    }
}
