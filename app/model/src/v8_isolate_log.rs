//! V8's raw tick log, the `isolate-….log` that `node --prof` (or `d8 --prof`) writes: one
//! record a line, comma-separated, in the order V8 logged them. Kiln reads the records that
//! say where code is and the sampler's ticks, and resolves each tick's addresses as V8's own
//! tick processor does (`node --prof-process`), record by record, so that a tick is named by
//! the code that was at its addresses when it was taken:
//!
//! - `shared-library,name,start,end,slide`: a library's address range, named by its path;
//! - `code-creation,type,kind,time,start,size,name[,function,state]`: code V8 made (JavaScript
//!   functions with their `function url:line:column` name and the address of their shared
//!   function info, builtins, bytecode handlers, regular expressions), replacing any code it
//!   overlaps;
//! - `code-move,from,to`, `code-delete,start`, `sfi-move,from,to`: code moved or freed;
//! - `tick,pc,time,external,tos,state,frame…`: a sample at `time` µs in VM `state`, its stack
//!   the `pc` (or, when `external` is 1, the external callback `tos`) and the return addresses
//!   of its frames, leaf first (`+`/`-` offsets from the previous one, `overflow` marking a
//!   stack cut short).
//!
//! Fields are escaped as V8 writes them (`\x2C` for a comma, `\n`, `\\`, `\xHH`, `\uHHHH`).
//! Ticks are then read as the preprocessed log's are ([`crate::v8log`]): the same names, the
//! same weights (the gap to the next tick) and the same time order, so a run reads alike
//! either way. One difference: the tick processor names C++ functions with the binary's
//! symbols (`nm`), which the log does not hold; an address in a library with no code logged
//! there is named by the library's path. An address in no code and no library is its hex
//! value, as in the preprocessed log.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::budget::DecodeBudget;
use crate::profile_set::{FormatError, ProfileSet};
use crate::v8log::{self, Code, File, Tick};

/// This format's name in the table of formats.
pub const NAME: &str = "v8_log";

/// True when the first line is a record V8 writes at the start of its log.
pub fn looks_like(bytes: &[u8]) -> bool {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let head = &bytes[start..];
    [&b"v8-version,"[..], b"shared-library,", b"code-creation,"].iter().any(|record| head.starts_with(record))
}

/// Reads a raw V8 tick log. Stacks deeper than `max_depth` lose their leaf end.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<ProfileSet, FormatError> {
    parse_budgeted(bytes, max_depth, &mut DecodeBudget::unlimited())
}

/// [`parse`] within `budget` (which the caller has granted the file's size).
pub fn parse_budgeted(bytes: &[u8], max_depth: usize, budget: &mut DecodeBudget) -> Result<ProfileSet, FormatError> {
    let file = resolve(bytes).map_err(|reason| FormatError::new(NAME, reason))?;
    v8log::profile_set(&file, NAME, max_depth, budget)
}

/// Code V8 placed in memory: where each entry starts, its size, and its index among the
/// code entries (`None` for a function's shared info, which V8's tick processor keeps in
/// the same map with no size: it is never a tick's code, but an entry at its address is
/// that function's).
#[derive(Default)]
struct CodeMap {
    dynamic: BTreeMap<u64, (u64, Option<usize>)>,
    /// Libraries: their end and code index, by start.
    libraries: BTreeMap<u64, (u64, usize)>,
}

impl CodeMap {
    /// Adds an entry as V8's `CodeMap.addCode` does: every entry it overlaps goes, and an
    /// entry left at the same address (a zero-sized one) stays instead of it.
    fn add(&mut self, start: u64, size: u64, code: Option<usize>) {
        let end = start.saturating_add(size);
        let overlaps = |key: u64, size: u64| key < end && start < key.saturating_add(size);
        let mut covered: Vec<u64> =
            self.dynamic.range(start..end).filter(|&(&key, &(size, _))| overlaps(key, size)).map(|(&k, _)| k).collect();
        if let Some((&key, &(size, _))) = self.dynamic.range(..start).next_back()
            && overlaps(key, size)
        {
            covered.push(key);
        }
        for key in covered {
            self.dynamic.remove(&key);
        }
        self.dynamic.entry(start).or_insert((size, code));
    }

    /// Moves the entry at `from` to `to` (nothing when there is none, as V8 ignores it).
    fn relocate(&mut self, from: u64, to: u64) {
        if let Some((size, code)) = self.dynamic.remove(&from) {
            self.add(to, size, code);
        }
    }

    /// The code entry at `address` and the offset into it: code made at run time, else the
    /// library there.
    fn find(&self, address: u64) -> Option<(usize, u64)> {
        let within = |start: u64, end: u64| address >= start && address < end;
        if let Some((&start, &(size, Some(code)))) = self.dynamic.range(..=address).next_back()
            && within(start, start.saturating_add(size))
        {
            return Some((code, address - start));
        }
        let (&start, &(end, code)) = self.libraries.range(..=address).next_back()?;
        within(start, end).then_some((code, address - start))
    }
}

/// V8's log escapes undone: `\x2C`, `\n`, `\\`, `\xHH` and `\uHHHH` (an escape that is not
/// one of these is kept as written).
fn unescape(field: &str) -> Cow<'_, str> {
    if !field.contains('\\') {
        return Cow::Borrowed(field);
    }
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (decoded, used) = match rest.as_bytes().get(1) {
            Some(b'n') => (Some('\n'), 2),
            Some(b'\\') => (Some('\\'), 2),
            Some(b'x') => {
                (rest.get(2..4).and_then(|hex| u32::from_str_radix(hex, 16).ok()).and_then(char::from_u32), 4)
            }
            Some(b'u') => {
                (rest.get(2..6).and_then(|hex| u32::from_str_radix(hex, 16).ok()).and_then(char::from_u32), 6)
            }
            _ => (None, 1),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('\\');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A number as V8 logs it: decimal, or hex with `0x`, signed or not.
fn number(field: &str) -> Option<i128> {
    let (negative, digits) = match field.as_bytes().first() {
        Some(b'-') => (true, &field[1..]),
        Some(b'+') => (false, &field[1..]),
        _ => (false, field),
    };
    let value = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.len() <= 16 => i128::from_str_radix(hex, 16).ok()?,
        Some(_) => return None,
        None if !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse().ok()?
        }
        None => return None,
    };
    Some(if negative { -value } else { value })
}

/// One record's fields, with errors that say which line and field.
struct Record<'a> {
    line: usize,
    kind: &'a str,
    fields: Vec<&'a str>,
}

impl<'a> Record<'a> {
    fn field(&self, index: usize, what: &str) -> Result<&'a str, String> {
        self.fields.get(index).copied().ok_or_else(|| {
            format!("line {}: a `{}` record without its {what} (field {})", self.line, self.kind, index + 1)
        })
    }

    fn number(&self, index: usize, what: &str) -> Result<i128, String> {
        let field = self.field(index, what)?;
        number(field)
            .ok_or_else(|| format!("line {}: the {what} `{field}` of a `{}` is not a number", self.line, self.kind))
    }

    /// An address: a number within 64 bits.
    fn address(&self, index: usize, what: &str) -> Result<u64, String> {
        let value = self.number(index, what)?;
        u64::try_from(value).map_err(|_| {
            format!("line {}: the {what} {value} of a `{}` is not an address within 64 bits", self.line, self.kind)
        })
    }
}

/// The log's ticks, resolved record by record into the preprocessed log's shape.
fn resolve(bytes: &[u8]) -> Result<File, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let mut map = CodeMap::default();
    let mut file = File::default();
    for (number, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut fields = line.split(',');
        let kind = fields.next().unwrap_or_default();
        if !matches!(kind, "shared-library" | "code-creation" | "code-move" | "code-delete" | "sfi-move" | "tick") {
            continue;
        }
        let record = Record { line: number + 1, kind, fields: fields.collect() };
        match kind {
            "shared-library" => {
                let name = unescape(record.field(0, "path")?).into_owned();
                let (start, end) = (record.address(1, "start")?, record.address(2, "end")?);
                let code = file.code.len();
                file.code.push(Code { name, kind: "SHARED_LIB".into() });
                // The same library logged again (node's binary, once per segment): the widest.
                let slot = map.libraries.entry(start).or_insert((end, code));
                if end > slot.0 {
                    *slot = (end, code);
                }
            }
            "code-creation" => {
                let kind = record.field(0, "type")?;
                let (start, size) = (record.address(3, "start")?, record.address(4, "size")?);
                let name = unescape(record.field(5, "name")?).into_owned();
                let code = file.code.len();
                // A function's code names its shared function info (not a regular expression's).
                match record.fields.get(6).filter(|f| kind != "RegExp" && !f.is_empty()) {
                    Some(_) => {
                        let function = record.address(6, "function")?;
                        if !map.dynamic.contains_key(&function) {
                            map.add(function, 0, None);
                        }
                        // New code of a function always replaces the entry at its address
                        // (a zero-sized one, which `add` would keep, included), as V8's does.
                        map.dynamic.remove(&start);
                        file.code.push(Code { name, kind: "JS".into() });
                    }
                    None => file.code.push(Code { name, kind: "CODE".into() }),
                }
                map.add(start, size, Some(code));
            }
            "code-move" | "sfi-move" => map.relocate(record.address(0, "from")?, record.address(1, "to")?),
            "code-delete" => {
                map.dynamic.remove(&record.address(0, "start")?);
            }
            _ => file.ticks.push(tick(&record, &map)?),
        }
    }
    Ok(file)
}

/// A `tick` record, its stack resolved in `map` as it is now.
fn tick(record: &Record, map: &CodeMap) -> Result<Tick, String> {
    let pc = record.address(0, "pc")?;
    let time = record.number(1, "time")?;
    let tm = i64::try_from(time).map_err(|_| format!("line {}: the time {time} is beyond 64 bits", record.line))?;
    let external = record.number(2, "external-callback flag")? != 0;
    let tos = record.address(3, "top of stack")?;
    let vm = i64::try_from(record.number(4, "VM state")?)
        .map_err(|_| format!("line {}: the VM state is beyond 64 bits", record.line))?;
    // In an external callback the pc is within it: the callback's address stands for it.
    let first = if external { tos } else { pc };
    let mut addresses = vec![first];
    let mut previous = first;
    for (index, frame) in record.fields.iter().enumerate().skip(5) {
        if frame.starts_with('o') {
            continue; // `overflow`: the stack was cut short here.
        }
        let value = number(frame).ok_or_else(|| {
            format!("line {}: frame {} `{frame}` of a tick is not an address", record.line, index - 4)
        })?;
        let address = if frame.starts_with(['+', '-']) {
            u64::try_from(i128::from(previous) + value).ok()
        } else {
            u64::try_from(value).ok()
        };
        let address = address.ok_or_else(|| {
            format!("line {}: frame {} `{frame}` of a tick is not an address within 64 bits", record.line, index - 4)
        })?;
        if frame.starts_with(['+', '-']) {
            previous = address;
        }
        addresses.push(address);
    }
    let mut s = Vec::with_capacity(addresses.len() * 2);
    for address in addresses {
        match map.find(address) {
            Some((code, offset)) => s.extend([code as i64, offset as i64]),
            None => s.extend([-1, address as i64]),
        }
    }
    Ok(Tick { tm, vm, s })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded;
    use proptest::prelude::*;

    fn folded_of(set: &ProfileSet) -> String {
        set.parts.iter().map(|p| folded::print(&p.tree.to_flat())).collect()
    }

    const LOG: &str = "v8-version,11,3,244,8,-node.38,0\r\n\
shared-library,/usr/bin/node,0x400000,0xb71000,0\r\n\
shared-library,/usr/bin/node,0x400000,0x2601000,0\r\n\
shared-library,/usr/lib/libc.so.6,0x7f0000000000,0x7f0000100000,0\r\n\
code-creation,Builtin,2,100,0x1000000,0x100,ArrayPrototypePush\r\n\
code-creation,JS,10,120,0x5000,0x40, /tmp/a.js:1:1,0x9000,~\r\n\
code-creation,JS,10,130,0x5100,0x40,main /tmp/a.js:3:14,0x9100,~\r\n\
code-creation,JS,10,140,0x5200,0x40,fib /tmp/a.js:1:13,0x9200,~\r\n\
code-creation,RegExp,4,150,0x5300,0x10,a\\x2Cb,0x9300\r\n\
tick,0x5210,1000,0,0x0,0,0x5110,0x5010\r\n\
tick,0x1000010,1100,0,0x0,0,+0x100,0x5110,0x5010\r\n\
code-creation,JS,10,160,0x6000,0x80,fib /tmp/a.js:1:13,0x9200,*\r\n\
code-move,0x5100,0x7000\r\n\
tick,0x6010,1300,0,0x0,0,0x7010,0x5010\r\n\
code-delete,0x6000\r\n\
tick,0x7f0000000100,1400,1,0x5308,6,0x6010,overflow\r\n\
tick,0x123,1500,0,0x0,8\r\n";

    #[test]
    fn ticks_are_named_by_the_code_at_their_addresses_when_taken() {
        assert!(looks_like(LOG.as_bytes()) && looks_like(b"\n shared-library,a,0x0,0x1,0\n"));
        assert!(!looks_like(b"main;work 3\n") && !looks_like(b"{\"code\": []}"));
        let set = parse(LOG.as_bytes(), 64).unwrap();
        assert_eq!(set.parts[0].units, "nanoseconds");
        // 1: fib < main < the script. 2: a builtin called from node's binary (`+0x100` past
        // it). 3: the optimised fib, called from main, which moved. 4: an external callback (a
        // regular expression's code stands for it), its caller's code freed, the stack cut
        // short. 5: idle at an address in no code. Each weighs the gap to the next tick.
        assert_eq!(
            folded_of(&set),
            "(anonymous) /tmp/a.js:1;main;/usr/bin/node;ArrayPrototypePush 200000\n\
             (anonymous) /tmp/a.js:1;main;fib 200000\n\
             0x123 100000\n\
             0x6010;a,b 100000\n"
        );
        let order = set.parts[0].time_order.as_ref().unwrap();
        let starts: Vec<u64> = order.samples.iter().map(|s| s.start).collect();
        assert_eq!(starts, [0, 100_000, 300_000, 400_000, 500_000]);
    }

    #[test]
    fn broken_logs_name_the_format_the_line_and_what_is_wrong() {
        for (log, says) in [
            ("code-creation,JS,10,1,0x10,4\n", "line 1: a `code-creation` record without its name (field 6)"),
            ("code-creation,JS,10,1,0xzz,4,f\n", "line 1: the start `0xzz` of a `code-creation` is not a number"),
            ("v8-version,1\ntick,0x10,soon,0,0x0,0\n", "line 2: the time `soon` of a `tick` is not a number"),
            ("tick,-5,1,0,0x0,0\n", "not an address within 64 bits"),
            ("tick,0x10,1,0,0x0,0,0x10,what\n", "frame 2 `what` of a tick is not an address"),
            ("tick,0x10,1,0,0x0,0,-0x20\n", "frame 1 `-0x20` of a tick is not an address within 64 bits"),
            ("shared-library,a\n", "without its start"),
            ("tick,0x10,-9223372036854775808,0,0x0,0\ntick,0x10,9223372036854775807,0,0x0,0\n", "beyond 64 bits"),
        ] {
            let e = parse(log.as_bytes(), 64).unwrap_err();
            assert_eq!(e.format, NAME);
            assert!(e.reason.contains(says), "{log}: {e}");
        }
        let e = parse(b"v8-version,\xff\n", 64).unwrap_err();
        assert!(e.reason.contains("not UTF-8"), "{e}");
        assert!(parse(b"v8-version,11\n", 64).unwrap().parts.is_empty(), "a log without ticks holds nothing");
    }

    #[test]
    fn escapes_and_numbers_read_as_v8_writes_them() {
        assert_eq!(unescape(r"a\x2Cb\nc\\d\u00e9\q\x4"), "a,b\nc\\d\u{e9}\\q\\x4");
        assert_eq!(number("0x1f"), Some(31));
        assert_eq!(number("-0x10"), Some(-16));
        assert_eq!(number("+12"), Some(12));
        assert_eq!(number("0x"), None);
        assert_eq!(number("12a"), None);
        assert_eq!(number("0xffffffffffffffffff"), None);
    }

    #[test]
    fn many_ticks_stop_at_the_budget() {
        let mut log = String::from("code-creation,JS,10,1,0x100,0x10,f a.js:1:1,0x900,~\n");
        for i in 0..5000 {
            log.push_str(&format!("tick,0x104,{i},0,0x0,0\n"));
        }
        let e = parse_budgeted(log.as_bytes(), 64, &mut DecodeBudget::new(1000, u64::MAX, 1)).unwrap_err();
        assert!(e.exhausted.is_some(), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, 16);
        }

        #[test]
        fn arbitrary_records_never_panic(
            records in proptest::collection::vec((0usize..6, proptest::collection::vec(0u64..0x40, 0..6)), 0..40)
        ) {
            let kinds = ["code-creation,JS,1,1", "code-move", "code-delete", "sfi-move", "tick", "shared-library,l"];
            let log: String = records
                .iter()
                .map(|(kind, numbers)| {
                    let fields: Vec<String> = numbers.iter().map(|n| format!("{n:#x}")).collect();
                    format!("{},{}\n", kinds[*kind], fields.join(","))
                })
                .collect();
            if let Ok(set) = parse(log.as_bytes(), 4) {
                for part in &set.parts {
                    part.tree.to_flat().validate().unwrap();
                    let order = part.time_order.as_ref().unwrap();
                    prop_assert_eq!(order.samples.iter().map(|s| s.weight).sum::<u64>(), part.tree.total());
                }
            }
        }
    }
}
