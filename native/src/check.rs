//! The record checker: one pass over a record's bytes that decides whether the record is
//! certainly *clean* — exactly one JSON object, read by orjson as the Python path reads it,
//! with no key repeated in any object — and, on the way, picks up the values of the fields
//! the gate extracts (`decode.rs` turns them into columns).
//!
//! The Python path (`RuleSet.evaluate_records` in rules/_ruleset.py) is the reference. This
//! checker never refuses a record: a record it cannot vouch for is *unsure*, and the Python
//! path judges it exactly as it would without the checker (and writes the reasons). So every
//! doubt resolves to unsure: invalid UTF-8, a BOM, a control character or an unknown escape
//! in a string, a lone surrogate escape, a number orjson would not read as Python reads it
//! (an integer outside i64/u64, which orjson turns to a float; a float that overflows, which
//! orjson refuses), any other token, more than one value, and nesting deeper than
//! [`MAX_DEPTH`].
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::collections::HashSet;

/// Containers (objects and arrays) nested deeper than this make a record unsure. orjson reads
/// 1,024 levels; the Python path's duplicate-key count (`_count_keys`) recurses once per level
/// and hits Python's recursion limit near 1,000, so records anywhere near that depth must stay
/// on the Python path to be judged exactly as today.
pub const MAX_DEPTH: usize = 256;

/// An object with more keys than this checks repeats with a hash set rather than a scan.
const SCAN_KEYS: usize = 16;

/// What a clean record holds at a field the caller asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Not there (as `dict.get` / `get_field` find it).
    Missing,
    /// A string, unescaped (valid UTF-8: lone surrogates are unsure).
    Str(String),
    /// An integer token within i64's minimum and u64's maximum (orjson's `int`s).
    Int(i128),
    /// A number with a fraction or an exponent (orjson's finite `float`s).
    Float,
    /// `true` or `false`.
    Bool,
    /// `null`, an object or an array.
    Other,
}

/// What a clean record holds at one of the top-level fields the rules read
/// ([`Wanted::fields`]), as orjson gives it to Python.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Not there.
    Missing,
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer token within i64 (a Python `int`).
    Int(i64),
    /// A number with a fraction or an exponent (a Python `float`).
    Float(f64),
    /// An integer token beyond i64, within u64 (a Python `int`): as the nearest f64, the
    /// `float()` Python would give it.
    BigInt(f64),
    /// A string, unescaped.
    Str(String),
    /// An object or an array: Python reads it from the payload.
    Container,
}

/// Which fields to pick up: the identity fields are top-level keys (the Python path reads
/// them with `payload.get(name)`), the origin a dotted path (`get_field`: each part a key of
/// an object).
#[derive(Debug, Clone)]
pub struct Wanted {
    pub provider: Vec<u8>,
    pub instrument: Vec<u8>,
    pub seq: Vec<u8>,
    pub origin: Vec<Vec<u8>>,
    /// Top-level keys whose values the rules read, picked up as [`Value`]s in this order
    /// (distinct keys).
    pub fields: Vec<Vec<u8>>,
}

impl Wanted {
    pub fn new(provider: &str, instrument: &str, seq: &str, origin: &str) -> Self {
        Wanted {
            provider: provider.as_bytes().to_vec(),
            instrument: instrument.as_bytes().to_vec(),
            seq: seq.as_bytes().to_vec(),
            // str.split("."): "a..b" has an empty part, "" is one empty part.
            origin: origin.split('.').map(|p| p.as_bytes().to_vec()).collect(),
            fields: Vec::new(),
        }
    }

    /// These wanted fields, and the top-level `fields` the rules read.
    pub fn with_fields(mut self, fields: &[String]) -> Self {
        self.fields = fields.iter().map(|f| f.as_bytes().to_vec()).collect();
        self
    }
}

/// The fields of a clean record, in the order provider, instrument, seq, origin.
pub type Fields = [Found; 4];
const PROVIDER: u8 = 1;
const INSTRUMENT: u8 = 2;
const SEQ: u8 = 4;
const ORIGIN: u8 = 8;

/// The record could not be vouched for: the Python path judges it.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsure;

type Step<T> = Result<T, Unsure>;

/// The fields of `value` if it is certainly clean, else `Unsure`.
pub fn check(value: &[u8], wanted: &Wanted) -> Result<Fields, Unsure> {
    check_fields(value, wanted).map(|(found, _)| found)
}

/// [`check`], and the values of `wanted.fields`, in their order.
pub fn check_fields(value: &[u8], wanted: &Wanted) -> Result<(Fields, Vec<Value>), Unsure> {
    // One validation of the whole text (orjson refuses invalid UTF-8, encoded surrogates
    // included, as Rust's str does); strings need then only look for ASCII.
    std::str::from_utf8(value).map_err(|_| Unsure)?;
    let mut p = Parser {
        b: value,
        i: 0,
        wanted,
        found: [
            Found::Missing,
            Found::Missing,
            Found::Missing,
            Found::Missing,
        ],
        values: vec![Value::Missing; wanted.fields.len()],
        slot: None,
        keys: Keys {
            stack: Vec::with_capacity(32),
        },
    };
    p.ws();
    if p.peek() != Some(b'{') {
        return Err(Unsure); // not an object, or a BOM, or nothing: the Python path says which
    }
    p.object(1, Some(0))?;
    p.ws();
    if p.i != value.len() {
        return Err(Unsure); // a second value, or trailing bytes
    }
    Ok((p.found, p.values))
}

pub(crate) struct Parser<'v, 'w> {
    pub(crate) b: &'v [u8],
    pub(crate) i: usize,
    wanted: &'w Wanted,
    found: Fields,
    /// The values of `wanted.fields`.
    values: Vec<Value>,
    /// The `wanted.fields` index of the value about to be read (set by `object`).
    slot: Option<usize>,
    keys: Keys<'v>,
}

/// The keys of the objects being read, compared after unescaping (as Python's `json`
/// compares them: `"a"` and `"\u0061"` are the same key). One stack for the whole record,
/// each object's keys on top of its parents' (no allocation per object); an object with
/// many keys gets a hash set.
struct Keys<'v> {
    stack: Vec<Cow<'v, [u8]>>,
}

/// Where one object's keys start on the stack, and its hash set once it has many.
struct Frame<'v> {
    base: usize,
    many: Option<HashSet<Cow<'v, [u8]>>>,
}

impl<'v> Keys<'v> {
    /// False when `key` was already in the object of `frame`.
    fn insert(&mut self, frame: &mut Frame<'v>, key: Cow<'v, [u8]>) -> bool {
        if let Some(many) = &mut frame.many {
            return many.insert(key);
        }
        if self.stack[frame.base..].contains(&key) {
            return false;
        }
        self.stack.push(key);
        if self.stack.len() - frame.base > SCAN_KEYS {
            frame.many = Some(self.stack.drain(frame.base..).collect());
        }
        true
    }
}

/// Fields no caller wants: a [`reader`] picks nothing up.
static NOTHING: Wanted = Wanted {
    provider: Vec::new(),
    instrument: Vec::new(),
    seq: Vec::new(),
    origin: Vec::new(),
    fields: Vec::new(),
};

/// A parser over `b` that picks up no field, for its steps alone (`peek`, `ws`, `expect`,
/// `string`, `number`, `skip`): `schema.rs` walks schema texts and clean records with them,
/// so both read JSON exactly as the checker does.
pub(crate) fn reader(b: &[u8]) -> Parser<'_, 'static> {
    Parser {
        b,
        i: 0,
        wanted: &NOTHING,
        found: [
            Found::Missing,
            Found::Missing,
            Found::Missing,
            Found::Missing,
        ],
        values: Vec::new(),
        slot: None,
        keys: Keys { stack: Vec::new() },
    }
}

impl<'v> Parser<'v, '_> {
    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// JSON's white space: space, tab, line feed, carriage return (orjson takes no other).
    pub(crate) fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    pub(crate) fn expect(&mut self, c: u8) -> Step<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    /// An object at `depth` (the record itself is 1). `level`: Some(n) when this object is
    /// where the origin path's first n parts lead (the record itself: Some(0)).
    fn object(&mut self, depth: usize, level: Option<usize>) -> Step<()> {
        if depth > MAX_DEPTH {
            return Err(Unsure);
        }
        self.i += 1; // '{'
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let mut frame = Frame {
            base: self.keys.stack.len(),
            many: None,
        };
        loop {
            if self.peek() != Some(b'"') {
                return Err(Unsure);
            }
            let key = self.string(true)?;
            let (mask, descend) = self.targets(&key, level);
            let slot = match level {
                Some(0) => self.wanted.fields.iter().position(|f| *f == *key),
                _ => None,
            };
            if !self.keys.insert(&mut frame, key) {
                return Err(Unsure); // a repeated key: the Python path names it
            }
            self.ws();
            self.expect(b':')?;
            self.ws();
            self.slot = slot;
            self.value(depth, mask, descend)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    self.keys.stack.truncate(frame.base);
                    return Ok(());
                }
                _ => return Err(Unsure),
            }
        }
    }

    /// Which wanted fields the value of `key` is (a bit mask), and the origin level its value
    /// is at when it is an object on the origin's path.
    fn targets(&self, key: &[u8], level: Option<usize>) -> (u8, Option<usize>) {
        let w = self.wanted;
        let mut mask = 0;
        let Some(level) = level else {
            return (0, None);
        };
        if level == 0 {
            for (name, bit) in [
                (&w.provider, PROVIDER),
                (&w.instrument, INSTRUMENT),
                (&w.seq, SEQ),
            ] {
                if key == name.as_slice() {
                    mask |= bit;
                }
            }
        }
        let mut descend = None;
        if w.origin
            .get(level)
            .is_some_and(|part| key == part.as_slice())
        {
            if level + 1 == w.origin.len() {
                mask |= ORIGIN;
            } else {
                descend = Some(level + 1);
            }
        }
        (mask, descend)
    }

    fn keep(&mut self, mask: u8, found: Found) {
        if mask == 0 {
            return;
        }
        let mut last = None;
        for (at, bit) in [PROVIDER, INSTRUMENT, SEQ, ORIGIN].into_iter().enumerate() {
            if mask & bit != 0
                && let Some(before) = last.replace(at)
            {
                self.found[before] = found.clone(); // one value, two fields
            }
        }
        if let Some(at) = last {
            self.found[at] = found;
        }
    }

    /// Reads past one value, checking it as the checker does (nesting counted from here).
    pub(crate) fn skip(&mut self) -> Step<()> {
        self.value(1, 0, None)
    }

    /// A value inside a container at `depth`.
    fn value(&mut self, depth: usize, mask: u8, descend: Option<usize>) -> Step<()> {
        let slot = self.slot.take(); // this value's alone, not its children's
        let mut typed = Value::Missing;
        match self.peek() {
            Some(b'{') => {
                self.keep(mask, Found::Other);
                typed = Value::Container;
                self.object(depth + 1, descend)?;
            }
            Some(b'[') => {
                self.keep(mask, Found::Other);
                typed = Value::Container;
                self.array(depth + 1)?;
            }
            Some(b'"') => {
                let s = self.string(mask != 0 || slot.is_some())?;
                if mask != 0 || slot.is_some() {
                    // Valid UTF-8: the whole text is, and escapes decode to whole characters.
                    let s = String::from_utf8(s.into_owned()).map_err(|_| Unsure)?;
                    // one copy only when the string is both a wanted field and a typed one
                    match (mask != 0, slot.is_some()) {
                        (true, true) => {
                            self.keep(mask, Found::Str(s.clone()));
                            typed = Value::Str(s);
                        }
                        (true, false) => self.keep(mask, Found::Str(s)),
                        _ => typed = Value::Str(s),
                    }
                }
            }
            Some(b't') => {
                self.literal(b"true", mask, Found::Bool)?;
                typed = Value::Bool(true);
            }
            Some(b'f') => {
                self.literal(b"false", mask, Found::Bool)?;
                typed = Value::Bool(false);
            }
            Some(b'n') => {
                self.literal(b"null", mask, Found::Other)?;
                typed = Value::Null;
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                let n = self.number(mask != 0 || slot.is_some())?;
                if slot.is_some() {
                    typed = self.typed_number(&n, start)?;
                }
                self.keep(mask, n);
            }
            _ => return Err(Unsure), // NaN, Infinity and every other token
        }
        if let Some(at) = slot {
            self.values[at] = typed;
        }
        Ok(())
    }

    /// The [`Value`] of the number just read from `start`, found as `n`.
    fn typed_number(&self, n: &Found, start: usize) -> Step<Value> {
        Ok(match n {
            Found::Int(v) => match i64::try_from(*v) {
                Ok(v) => Value::Int(v),
                // within u64: the float Python's float(int) gives, correctly rounded as the
                // parse of the same digits is
                Err(_) => Value::BigInt(self.float_at(start)?),
            },
            Found::Float => Value::Float(self.float_at(start)?),
            _ => return Err(Unsure), // number() keeps every number asked for
        })
    }

    /// The number token from `start` to here as the nearest f64 (Rust's parse, like
    /// orjson's, rounds correctly).
    fn float_at(&self, start: usize) -> Step<f64> {
        let text = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| Unsure)?;
        let v: f64 = text.parse().map_err(|_| Unsure)?;
        if v.is_finite() { Ok(v) } else { Err(Unsure) }
    }

    fn literal(&mut self, word: &[u8], mask: u8, found: Found) -> Step<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            self.keep(mask, found);
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    fn array(&mut self, depth: usize) -> Step<()> {
        if depth > MAX_DEPTH {
            return Err(Unsure);
        }
        self.i += 1; // '['
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(depth, 0, None)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Unsure),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// RFC 8259's number grammar. An integer outside [i64::MIN, u64::MAX] is unsure (orjson
    /// reads it as a float, Python's json as an int); a float that is not finite is unsure
    /// (orjson refuses it).
    /// `keep`: the caller wants the value (else an integer in range may be `Found::Other`).
    pub(crate) fn number(&mut self, keep: bool) -> Step<Found> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let whole = match self.peek() {
            Some(b'0') => {
                self.i += 1;
                1
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Unsure),
        };
        let mut float = false;
        let mut exponent = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(Unsure);
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(Unsure);
            }
            float = true;
            exponent = true;
        }
        if float && !exponent && whole <= 300 {
            return Ok(Found::Float); // under 10^300 and no exponent: finite, no need to parse
        }
        if !float && !keep && whole <= 18 {
            return Ok(Found::Other); // within i64 whatever its digits
        }
        // ASCII by construction.
        let text = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| Unsure)?;
        if float {
            let v: f64 = text.parse().map_err(|_| Unsure)?;
            return if v.is_finite() {
                Ok(Found::Float)
            } else {
                Err(Unsure)
            };
        }
        // 21 characters hold u64::MAX and i64::MIN; longer is out of range whatever it says.
        if text.len() > 21 {
            return Err(Unsure);
        }
        let v: i128 = text.parse().map_err(|_| Unsure)?;
        if v < i128::from(i64::MIN) || v > i128::from(u64::MAX) {
            return Err(Unsure);
        }
        Ok(Found::Int(v))
    }

    fn hex4(&mut self) -> Step<u32> {
        let digits = self.b.get(self.i..self.i + 4).ok_or(Unsure)?;
        let mut v = 0u32;
        for &d in digits {
            let x = (d as char).to_digit(16).ok_or(Unsure)?;
            v = v * 16 + x;
        }
        self.i += 4;
        Ok(v)
    }

    /// A string at '"'; its unescaped bytes when `keep` (else only checked, and empty).
    /// Control characters, unknown escapes and lone surrogates are unsure (orjson refuses
    /// them; Python's json reads the lone surrogates).
    pub(crate) fn string(&mut self, keep: bool) -> Step<Cow<'v, [u8]>> {
        self.i += 1;
        let start = self.i;
        // The common string has no escape: find its end in one tight scan.
        let plain = self.b[start..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            .ok_or(Unsure)?;
        self.i = start + plain;
        match self.b[self.i] {
            b'"' => {
                self.i += 1;
                return Ok(Cow::Borrowed(&self.b[start..start + plain]));
            }
            b'\\' => {}
            _ => return Err(Unsure), // a control character
        }
        let mut out = if keep {
            self.b[start..self.i].to_vec()
        } else {
            Vec::new()
        };
        loop {
            match self.peek() {
                None => return Err(Unsure),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = self.peek().ok_or(Unsure)?;
                    self.i += 1;
                    let plain = match c {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let ch = self.unicode()?;
                            if keep {
                                let mut buf = [0u8; 4];
                                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                            }
                            continue;
                        }
                        _ => return Err(Unsure),
                    };
                    if keep {
                        out.push(plain);
                    }
                }
                Some(c) if c < 0x20 => return Err(Unsure),
                Some(c) => {
                    if keep {
                        out.push(c);
                    }
                    self.i += 1;
                }
            }
        }
    }

    /// The character of a `\u` escape (after the `u`): a pair for a surrogate.
    fn unicode(&mut self) -> Step<char> {
        let high = self.hex4()?;
        let code = match high {
            0xD800..=0xDBFF => {
                if !self.b[self.i..].starts_with(b"\\u") {
                    return Err(Unsure);
                }
                self.i += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(Unsure);
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(Unsure),
            _ => high,
        };
        char::from_u32(code).ok_or(Unsure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> Wanted {
        Wanted::new("provider", "instrument", "seq", "ts")
    }

    fn clean(text: &[u8]) -> bool {
        check(text, &wanted()).is_ok()
    }

    #[test]
    fn reads_the_fields_of_a_quote() {
        let got = check(
            br#" {"provider":"P\u00e9","instrument":"S\"1","seq":7,"ts":1700000000000,"x":[1.5,{"y":null}]} "#,
            &wanted(),
        )
        .unwrap();
        assert_eq!(got[0], Found::Str("P\u{e9}".into()));
        assert_eq!(got[1], Found::Str("S\"1".into()));
        assert_eq!(got[2], Found::Int(7));
        assert_eq!(got[3], Found::Int(1_700_000_000_000));
    }

    #[test]
    fn follows_a_dotted_origin_path_and_reads_identity_as_top_level_keys() {
        let w = Wanted::new("a.b", "instrument", "seq", "meta.t");
        let got = check(
            br#"{"a.b":"p","a":{"b":"no"},"meta":{"t":5,"u":{"t":6}},"t":7}"#,
            &w,
        );
        let got = got.unwrap();
        assert_eq!(got[0], Found::Str("p".into()));
        assert_eq!(got[3], Found::Int(5));
        let got = check(br#"{"meta":[{"t":5}],"u":{"meta":{"t":1}}}"#, &w).unwrap();
        assert_eq!(got[3], Found::Missing);
    }

    #[test]
    fn kinds_of_values() {
        let got = check(
            br#"{"provider":1,"instrument":true,"seq":1.0,"ts":null}"#,
            &wanted(),
        );
        assert_eq!(
            got.unwrap(),
            [Found::Int(1), Found::Bool, Found::Float, Found::Other]
        );
        let got = check(br#"{"seq":-0,"ts":18446744073709551615}"#, &wanted()).unwrap();
        assert_eq!(got[2], Found::Int(0));
        assert_eq!(got[3], Found::Int(i128::from(u64::MAX)));
    }

    #[test]
    fn repeated_keys_are_unsure_at_any_depth_and_after_unescaping() {
        assert!(!clean(br#"{"a":1,"a":2}"#));
        assert!(!clean(br#"{"a":1,"\u0061":2}"#));
        assert!(!clean(br#"{"x":[{"b":{"c":1,"c":1}}]}"#));
        assert!(clean(br#"{"a":{"a":1},"b":{"a":1}}"#));
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        assert!(clean(format!("{{{}}}", many.join(",")).as_bytes()));
        let repeated = format!("{{{},\"k3\":0}}", many.join(","));
        assert!(!clean(repeated.as_bytes()));
    }

    #[test]
    fn what_orjson_refuses_or_reads_otherwise_is_unsure() {
        for text in [
            &b""[..],
            b"  ",
            b"[]",
            b"1",
            b"\"s\"",
            b"\xef\xbb\xbf{}",
            b"{} {}",
            b"{}x",
            b"{}\x00",
            b"\x0c{}",
            b"{\"a\":NaN}",
            b"{\"a\":Infinity}",
            b"{\"a\":-Infinity}",
            b"{\"a\":1e400}",
            b"{\"a\":-1e400}",
            b"{\"a\":18446744073709551616}",
            b"{\"a\":-9223372036854775809}",
            b"{\"a\":01}",
            b"{\"a\":1.}",
            b"{\"a\":.1}",
            b"{\"a\":+1}",
            b"{\"a\":1e}",
            b"{\"a\":\"\\ud800\"}",
            b"{\"a\":\"\\udc00\\ud800\"}",
            b"{\"a\":\"\\ud800\\u0041\"}",
            b"{\"a\":\"\xed\xa0\x80\"}",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":\"\x00\"}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\u00g0\"}",
            b"{\"a\":tru}",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{a:1}",
            b"{\"a\":[1,]}",
            b"{\"a\":\"x}",
        ] {
            assert!(!clean(text), "{:?}", String::from_utf8_lossy(text));
        }
        for text in [
            &b"{}"[..],
            b" \t\r\n{ \"a\" : [ 1 , -0 , 0.5e-3 , 1E+2 , 1e-400 , true , false , null , \"\\u0000\\/\" ] } \n",
            b"{\"a\":1.7976931348623157e308}",
            b"{\"a\":-9223372036854775808,\"b\":18446744073709551615}",
            b"{\"\\ud83d\\ude00\":\"\x7f\"}",
        ] {
            assert!(clean(text), "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_unsure() {
        let nest = |depth: usize| {
            // the record is one level; depth - 1 arrays inside it
            let mut s = b"{\"a\":".to_vec();
            s.extend(std::iter::repeat_n(b'[', depth - 1));
            s.extend(std::iter::repeat_n(b']', depth - 1));
            s.push(b'}');
            s
        };
        assert!(clean(&nest(MAX_DEPTH)));
        assert!(!clean(&nest(MAX_DEPTH + 1)));
        assert!(!clean(&nest(1025)));
    }
}
