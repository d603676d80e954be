//! The typed decoder: for each record the checker calls clean, the gate's extraction fields
//! as the Python path computes them (`_identity` and `origin_ns` in rules/), as columns for a
//! whole batch. A field whose value is of a kind whose Python conversion is not reproduced
//! here exactly (a float seq; an origin that is not an integer, or that the Python path
//! refuses) is left to Python: [`FROM_PYTHON`] in its column.
#![forbid(unsafe_code)]

use crate::check::{Found, Value, Wanted, check_fields};

/// A seq or origin the Python path must compute for a clean record (no valid seq or origin
/// is negative: a seq outside 0..2^63 is -1, an origin outside 1970..2262 a dead letter).
pub const FROM_PYTHON: i64 = i64::MIN;

/// What to extract and the limits the Python path applies first.
#[derive(Debug, Clone)]
pub struct Spec {
    pub wanted: Wanted,
    /// Nanoseconds per origin unit (s, ms, us, ns); None for a unit decoded in Python
    /// (iso8601).
    pub origin_factor: Option<i128>,
    /// `Extraction.max_message_bytes`: a longer record is the Python path's `record.size`.
    pub max_bytes: usize,
    /// `Extraction.max_name_chars`: a longer name is the Python path's `record.identity`.
    pub max_name_chars: usize,
}

/// The columns of one batch. Rows not clean hold what the Python path starts from (empty
/// names, seq -1, origin 0), so it need only fill its own rows.
#[derive(Debug, Default, PartialEq)]
pub struct Columns {
    pub clean: Vec<bool>,
    pub providers: Vec<String>,
    pub instruments: Vec<String>,
    pub seqs: Vec<i64>,
    pub origins: Vec<i64>,
    /// One per `Spec.wanted.fields`, in order.
    pub typed: Vec<Typed>,
}

/// The kinds of a typed field's value (rules/_columns.py reads them by these numbers).
pub mod kind {
    pub const MISSING: u8 = 0;
    pub const NULL: u8 = 1;
    pub const TRUE: u8 = 2;
    pub const FALSE: u8 = 3;
    pub const INT: u8 = 4;
    pub const FLOAT: u8 = 5;
    pub const BIG_INT: u8 = 6;
    pub const STR: u8 = 7;
    pub const CONTAINER: u8 = 8;
    /// A row the checker did not call clean: Python reads its payload.
    pub const UNREAD: u8 = 9;
}

/// One field the rules read, typed for a whole batch as `Columns` (rules/_columns.py) reads
/// it from payloads: `numbers` is `numeric`'s value (NaN unless a number), `integers` is
/// `integers`' (-1 unless a whole number within int64), `texts` the string or None.
#[derive(Debug, Default, PartialEq)]
pub struct Typed {
    pub kinds: Vec<u8>,
    pub numbers: Vec<f64>,
    pub integers: Vec<i64>,
    pub texts: Vec<Option<String>>,
}

impl Typed {
    fn with_capacity(n: usize) -> Self {
        Self {
            kinds: Vec::with_capacity(n),
            numbers: Vec::with_capacity(n),
            integers: Vec::with_capacity(n),
            texts: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, value: Option<Value>) {
        let (k, number, integer, text) = match value {
            None => (kind::UNREAD, f64::NAN, -1, None),
            Some(Value::Missing) => (kind::MISSING, f64::NAN, -1, None),
            Some(Value::Null) => (kind::NULL, f64::NAN, -1, None),
            Some(Value::Bool(true)) => (kind::TRUE, f64::NAN, -1, None),
            Some(Value::Bool(false)) => (kind::FALSE, f64::NAN, -1, None),
            // i64 to f64 rounds to nearest, ties to even, as Python's float(int) does
            Some(Value::Int(v)) => (kind::INT, v as f64, v, None),
            Some(Value::Float(v)) => (kind::FLOAT, v, whole(v), None),
            // beyond int64: `integers` gives -1, as for any number outside it
            Some(Value::BigInt(v)) => (kind::BIG_INT, v, -1, None),
            Some(Value::Str(s)) => (kind::STR, f64::NAN, -1, Some(s)),
            Some(Value::Container) => (kind::CONTAINER, f64::NAN, -1, None),
        };
        self.kinds.push(k);
        self.numbers.push(number);
        self.integers.push(integer);
        self.texts.push(text);
    }
}

/// A float that is a whole number within int64 as that integer (`float.is_integer()` then
/// `-(2**63) <= int(v) < 2**63`), else -1.
fn whole(v: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63, exact in f64
    if v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
        v as i64
    } else {
        -1
    }
}

/// One clean record's extracted fields.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub provider: String,
    pub instrument: String,
    pub seq: i64,
    pub origin: i64,
    /// The values of `Spec.wanted.fields`.
    pub values: Vec<Value>,
}

/// The row of a clean record, or None when the Python path must judge it.
pub fn decode(value: Option<&[u8]>, spec: &Spec) -> Option<Row> {
    let value = value?;
    if value.is_empty() || value.len() > spec.max_bytes {
        return None;
    }
    let ([provider, instrument, seq, origin], values) = check_fields(value, &spec.wanted).ok()?;
    Some(Row {
        provider: name(provider, spec)?,
        instrument: name(instrument, spec)?,
        seq: match seq {
            // isinstance(seq, int) and not bool and 0 <= seq < 2**63
            Found::Int(v) => i64::try_from(v).ok().filter(|v| *v >= 0).unwrap_or(-1),
            // a float that is an integer becomes one: left to Python
            Found::Float => FROM_PYTHON,
            Found::Missing | Found::Str(_) | Found::Bool | Found::Other => -1,
        },
        origin: match (origin, spec.origin_factor) {
            // |v| < 2^64 and factor <= 10^9: the product fits i128. Outside 1970..2262 it is
            // a dead letter whose reason Python writes.
            (Found::Int(v), Some(factor)) => i64::try_from(v * factor)
                .ok()
                .filter(|ns| *ns >= 0)
                .unwrap_or(FROM_PYTHON),
            _ => FROM_PYTHON,
        },
        values,
    })
}

/// A provider or instrument name as `_identity` reads it ("" for anything but a string);
/// None for a name over the limit (the Python path refuses it and keeps it cut).
fn name(found: Found, spec: &Spec) -> Option<String> {
    match found {
        // Python counts code points, as chars() does.
        Found::Str(s) if s.chars().count() > spec.max_name_chars => None,
        Found::Str(s) => Some(s),
        _ => Some(String::new()),
    }
}

/// Columns for a batch (None: a value that is not bytes, judged by Python).
pub fn decode_batch(values: &[Option<&[u8]>], spec: &Spec) -> Columns {
    let n = values.len();
    let mut out = Columns {
        clean: Vec::with_capacity(n),
        providers: Vec::with_capacity(n),
        instruments: Vec::with_capacity(n),
        seqs: Vec::with_capacity(n),
        origins: Vec::with_capacity(n),
        typed: (0..spec.wanted.fields.len())
            .map(|_| Typed::with_capacity(n))
            .collect(),
    };
    for value in values {
        match decode(*value, spec) {
            Some(row) => {
                out.clean.push(true);
                out.providers.push(row.provider);
                out.instruments.push(row.instrument);
                out.seqs.push(row.seq);
                out.origins.push(row.origin);
                for (typed, v) in out.typed.iter_mut().zip(row.values) {
                    typed.push(Some(v));
                }
            }
            None => {
                out.clean.push(false);
                out.providers.push(String::new());
                out.instruments.push(String::new());
                out.seqs.push(-1);
                out.origins.push(0);
                for typed in &mut out.typed {
                    typed.push(None);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            wanted: Wanted::new("provider", "instrument", "seq", "ts"),
            origin_factor: Some(1_000_000),
            max_bytes: 200,
            max_name_chars: 4,
        }
    }

    #[test]
    fn a_quote_becomes_a_row() {
        let row = decode(
            Some(br#"{"provider":"P1","instrument":"ABC","seq":3,"ts":1700000000000}"#),
            &spec(),
        );
        let want = Row {
            provider: "P1".into(),
            instrument: "ABC".into(),
            seq: 3,
            origin: 1_700_000_000_000_000_000,
            values: Vec::new(),
        };
        assert_eq!(row, Some(want));
    }

    #[test]
    fn conversions_follow_identity_and_origin_ns() {
        let row = |t: &[u8]| decode(Some(t), &spec()).unwrap();
        let r = row(br#"{"provider":7,"seq":true,"ts":-1}"#);
        assert_eq!((r.provider.as_str(), r.instrument.as_str()), ("", ""));
        assert_eq!((r.seq, r.origin), (-1, FROM_PYTHON));
        let r = row(br#"{"seq":9223372036854775808,"ts":9223372036854}"#);
        assert_eq!((r.seq, r.origin), (-1, 9_223_372_036_854_000_000));
        let r = row(br#"{"seq":9223372036854775807,"ts":9223372036855}"#);
        assert_eq!((r.seq, r.origin), (i64::MAX, FROM_PYTHON));
        let r = row(br#"{"seq":2.0,"ts":1.5}"#);
        assert_eq!((r.seq, r.origin), (FROM_PYTHON, FROM_PYTHON));
        let r = row(br#"{"seq":-3,"ts":"1"}"#);
        assert_eq!((r.seq, r.origin), (-1, FROM_PYTHON));
        let r = row(br#"{"provider":"\u00e9\u00e9\u00e9\u00e9"}"#);
        assert_eq!(r.provider, "\u{e9}\u{e9}\u{e9}\u{e9}");
    }

    #[test]
    fn long_names_empty_oversized_and_unsure_records_go_to_python() {
        assert_eq!(decode(Some(br#"{"provider":"abcde"}"#), &spec()), None);
        assert_eq!(decode(Some(br#"{"instrument":"abcde"}"#), &spec()), None);
        assert_eq!(decode(Some(b""), &spec()), None);
        assert_eq!(decode(None, &spec()), None);
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(200));
        assert_eq!(decode(Some(big.as_bytes()), &spec()), None);
        let cols = decode_batch(&[Some(b"{}"), Some(b"[]")], &spec());
        assert_eq!(cols.clean, vec![true, false]);
        assert_eq!(cols.seqs, vec![-1, -1]);
        assert_eq!(cols.origins, vec![FROM_PYTHON, 0]);
    }

    #[test]
    fn typed_fields_read_as_columns_reads_payloads() {
        let mut s = spec();
        let names: Vec<String> = ["price", "side", "n", "x"].map(String::from).to_vec();
        s.wanted = s.wanted.with_fields(&names);
        let cols = decode_batch(
            &[
                Some(br#"{"price":1.5,"side":"b\u00e9","n":3,"x":null}"#),
                Some(br#"{"price":-0,"side":true,"n":2.0,"x":[1]}"#),
                Some(br#"{"price":18446744073709551615,"n":1e300,"x":{"price":1}}"#),
                Some(b"[]"),
            ],
            &s,
        );
        let [price, side, n, x] = &cols.typed[..] else {
            panic!("four typed fields")
        };
        assert_eq!(
            price.kinds,
            [kind::FLOAT, kind::INT, kind::BIG_INT, kind::UNREAD]
        );
        assert_eq!(price.numbers[..3], [1.5, 0.0, 18446744073709551615.0]);
        assert_eq!(price.integers, [-1, 0, -1, -1]);
        assert_eq!(
            side.kinds,
            [kind::STR, kind::TRUE, kind::MISSING, kind::UNREAD]
        );
        assert_eq!(side.texts[0].as_deref(), Some("b\u{e9}"));
        assert_eq!(n.kinds, [kind::INT, kind::FLOAT, kind::FLOAT, kind::UNREAD]);
        assert_eq!(n.integers, [3, 2, -1, -1]);
        assert_eq!(
            x.kinds,
            [kind::NULL, kind::CONTAINER, kind::CONTAINER, kind::UNREAD]
        );
        assert!(price.numbers[3].is_nan() && side.numbers[0].is_nan());
    }

    #[test]
    fn an_iso_origin_is_left_to_python() {
        let mut s = spec();
        s.origin_factor = None;
        let r = decode(Some(br#"{"ts":5}"#), &s).unwrap();
        assert_eq!(r.origin, FROM_PYTHON);
    }
}
