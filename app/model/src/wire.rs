//! A compact text encoding for the small records pages carry from the server to the browser:
//! the data a page was first drawn with (embedded in the HTML) and the answers the browser
//! fetches after.
//!
//! Numbers are decimal and end with `,`; a string is its length in bytes, `:`, then the bytes.
//! Nothing is escaped and nothing is named, so decoding is a single forward pass and the
//! browser build needs no general-purpose serialisation library. Both sides are this module,
//! so the format only has to agree with itself; a record that does not decode is an error, never
//! a guess.

use std::fmt;

use crate::top::TopRow;

/// Why a record did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// Byte offset where decoding stopped.
    pub at: usize,
    /// What was expected there.
    pub expected: &'static str,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed record at byte {}: expected {}", self.at, self.expected)
    }
}

impl std::error::Error for WireError {}

/// Appends values to an encoded record.
#[derive(Debug, Default)]
pub struct WireWriter {
    out: String,
}

impl WireWriter {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// The record so far.
    pub fn finish(self) -> String {
        self.out
    }

    /// Appends an unsigned number.
    pub fn u64(&mut self, value: u64) {
        self.number(&value.to_string());
    }

    /// Appends a signed number.
    pub fn i64(&mut self, value: i64) {
        self.number(&value.to_string());
    }

    fn number(&mut self, digits: &str) {
        self.out.push_str(digits);
        self.out.push(',');
    }

    /// Appends a string.
    pub fn str(&mut self, value: &str) {
        self.out.push_str(&value.len().to_string());
        self.out.push(':');
        self.out.push_str(value);
    }
}

/// Reads values back, in the order they were written.
#[derive(Debug)]
pub struct WireReader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> WireReader<'a> {
    /// A reader at the start of `text`.
    pub fn new(text: &'a str) -> Self {
        WireReader { text, at: 0 }
    }

    fn error(&self, expected: &'static str) -> WireError {
        WireError { at: self.at, expected }
    }

    /// The digits (and sign) up to `end`, consumed with it.
    fn token(&mut self, end: u8, expected: &'static str) -> Result<&'a str, WireError> {
        let rest = &self.text.as_bytes()[self.at..];
        let len = rest.iter().position(|&b| b == end).ok_or_else(|| self.error(expected))?;
        let token = &self.text[self.at..self.at + len];
        self.at += len + 1;
        Ok(token)
    }

    /// Reads an unsigned number.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        self.number("a number")
    }

    /// Reads a signed number.
    pub fn i64(&mut self) -> Result<i64, WireError> {
        self.number("a signed number")
    }

    fn number<N: std::str::FromStr>(&mut self, expected: &'static str) -> Result<N, WireError> {
        let start = self.at;
        let token = self.token(b',', expected)?;
        // `parse` accepts a leading `+`; the writer never writes one.
        if token.starts_with('+') {
            return Err(WireError { at: start, expected });
        }
        token.parse().map_err(|_| WireError { at: start, expected })
    }

    /// Reads a count of items that follow: bounded by the bytes left, since every item takes
    /// at least one, so a corrupt count cannot make the caller reserve a huge vector.
    pub fn count(&mut self) -> Result<usize, WireError> {
        let start = self.at;
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.text.len() - self.at)
            .ok_or(WireError { at: start, expected: "a count no larger than the rest of the record" })
    }

    /// Reads a string.
    pub fn str(&mut self) -> Result<String, WireError> {
        let start = self.at;
        let token = self.token(b':', "a string length")?;
        let len: usize = token.parse().map_err(|_| WireError { at: start, expected: "a string length" })?;
        let end = self.at.checked_add(len).filter(|&end| end <= self.text.len());
        let value = end.and_then(|end| self.text.get(self.at..end)).ok_or_else(|| self.error("a whole string"))?;
        self.at += len;
        Ok(value.to_string())
    }

    /// Checks the whole record was read.
    pub fn end(&self) -> Result<(), WireError> {
        if self.at == self.text.len() { Ok(()) } else { Err(self.error("the end of the record")) }
    }
}

/// A value with a wire encoding.
pub trait Wire: Sized {
    /// Appends `self`.
    fn write(&self, w: &mut WireWriter);
    /// Reads one value.
    fn read(r: &mut WireReader<'_>) -> Result<Self, WireError>;
}

/// `value` as a whole record.
pub fn encode<T: Wire>(value: &T) -> String {
    let mut w = WireWriter::new();
    value.write(&mut w);
    w.finish()
}

/// A whole record as one value; trailing bytes are an error.
pub fn decode<T: Wire>(text: &str) -> Result<T, WireError> {
    let mut r = WireReader::new(text);
    let value = T::read(&mut r)?;
    r.end()?;
    Ok(value)
}

impl Wire for u64 {
    fn write(&self, w: &mut WireWriter) {
        w.u64(*self);
    }
    fn read(r: &mut WireReader<'_>) -> Result<Self, WireError> {
        r.u64()
    }
}

impl Wire for i64 {
    fn write(&self, w: &mut WireWriter) {
        w.i64(*self);
    }
    fn read(r: &mut WireReader<'_>) -> Result<Self, WireError> {
        r.i64()
    }
}

impl Wire for usize {
    fn write(&self, w: &mut WireWriter) {
        w.u64(*self as u64);
    }
    fn read(r: &mut WireReader<'_>) -> Result<Self, WireError> {
        let at = r.at;
        usize::try_from(r.u64()?).map_err(|_| WireError { at, expected: "a number that fits in usize" })
    }
}

impl Wire for String {
    fn write(&self, w: &mut WireWriter) {
        w.str(self);
    }
    fn read(r: &mut WireReader<'_>) -> Result<Self, WireError> {
        r.str()
    }
}

impl<T: Wire> Wire for Vec<T> {
    fn write(&self, w: &mut WireWriter) {
        w.u64(self.len() as u64);
        for item in self {
            item.write(w);
        }
    }
    fn read(r: &mut WireReader<'_>) -> Result<Self, WireError> {
        let n = r.count()?;
        (0..n).map(|_| T::read(r)).collect()
    }
}

impl<T: Wire> Wire for Option<T> {
    fn write(&self, w: &mut WireWriter) {
        match self {
            None => w.u64(0),
            Some(value) => {
                w.u64(1);
                value.write(w);
            }
        }
    }
    fn read(r: &mut WireReader<'_>) -> Result<Self, WireError> {
        let at = r.at;
        match r.u64()? {
            0 => Ok(None),
            1 => T::read(r).map(Some),
            _ => Err(WireError { at, expected: "0 or 1 (absent or present)" }),
        }
    }
}

impl<T: Wire, E: Wire> Wire for Result<T, E> {
    fn write(&self, w: &mut WireWriter) {
        match self {
            Ok(value) => {
                w.u64(0);
                value.write(w);
            }
            Err(error) => {
                w.u64(1);
                error.write(w);
            }
        }
    }
    fn read(r: &mut WireReader<'_>) -> Result<Self, WireError> {
        let at = r.at;
        match r.u64()? {
            0 => T::read(r).map(Ok),
            1 => E::read(r).map(Err),
            _ => Err(WireError { at, expected: "0 or 1 (answer or error)" }),
        }
    }
}

impl Wire for TopRow {
    fn write(&self, w: &mut WireWriter) {
        w.str(&self.name);
        w.u64(self.self_value);
        w.u64(self.total);
    }
    fn read(r: &mut WireReader<'_>) -> Result<Self, WireError> {
        Ok(TopRow { name: r.str()?, self_value: r.u64()?, total: r.u64()? })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn records_read_back_in_the_written_order() {
        let rows = vec![TopRow { name: "a,b:c 1:x".into(), self_value: 3, total: 7 }];
        let mut w = WireWriter::new();
        w.u64(0);
        rows.write(&mut w);
        Some(-5i64).write(&mut w);
        let text = w.finish();
        assert_eq!(text, "0,1,9:a,b:c 1:x3,7,1,-5,");
        let mut r = WireReader::new(&text);
        assert_eq!(r.u64(), Ok(0));
        assert_eq!(Vec::<TopRow>::read(&mut r), Ok(rows));
        assert_eq!(Option::<i64>::read(&mut r), Ok(Some(-5)));
        assert_eq!(r.end(), Ok(()));
    }

    #[test]
    fn malformed_records_are_errors() {
        for bad in
            ["", "5", "+5,", "-1,", "x,", "9:short", "3:ab", "2,", "2:é", "1,0,", "0,0,", "18446744073709551616,"]
        {
            assert!(decode::<Vec<String>>(bad).is_err(), "{bad:?} decoded");
        }
        // A count larger than the bytes left is refused before anything is reserved.
        assert_eq!(
            decode::<Vec<u64>>("99999999999,").unwrap_err().expected,
            "a count no larger than the rest of the record"
        );
        assert!(decode::<Option<u64>>("2,5,").is_err());
        assert!(decode::<Result<u64, String>>("3,").is_err());
        assert!(decode::<u64>("5,6,").is_err(), "trailing bytes");
    }

    proptest! {
        #[test]
        fn every_record_round_trips(
            names in proptest::collection::vec(".{0,12}", 0..6),
            numbers in proptest::collection::vec(any::<u64>(), 0..6),
            signed in any::<i64>(),
            answer in proptest::option::of(".{0,8}"),
            failed in any::<bool>(),
        ) {
            let rows: Vec<TopRow> = names
                .iter()
                .zip(numbers.iter().chain(std::iter::repeat(&0)))
                .map(|(name, &n)| TopRow { name: name.clone(), self_value: n / 2, total: n })
                .collect();
            prop_assert_eq!(decode::<Vec<TopRow>>(&encode(&rows)), Ok(rows));
            prop_assert_eq!(decode::<Vec<String>>(&encode(&names)), Ok(names.clone()));
            prop_assert_eq!(decode::<Vec<u64>>(&encode(&numbers)), Ok(numbers));
            prop_assert_eq!(decode::<i64>(&encode(&signed)), Ok(signed));
            let result: Result<Option<String>, String> = if failed { Err(names.concat()) } else { Ok(answer) };
            prop_assert_eq!(decode::<Result<Option<String>, String>>(&encode(&result)), Ok(result));
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = decode::<Result<Vec<TopRow>, String>>(&text);
            let _ = decode::<Option<Vec<i64>>>(&text);
        }
    }
}
