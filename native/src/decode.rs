//! The typed decoder: for each record the checker calls clean, the gate's extraction fields
//! as the Python path computes them (`_identity` and `origin_ns` in rules/), as columns for a
//! whole batch. A field whose value is of a kind whose Python conversion is not reproduced
//! here exactly (a float seq; an origin that is not an integer, or that the Python path
//! refuses) is left to Python: [`FROM_PYTHON`] in its column.
#![forbid(unsafe_code)]

use crate::check::{Found, Wanted, check};

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
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Columns {
    pub clean: Vec<bool>,
    pub providers: Vec<String>,
    pub instruments: Vec<String>,
    pub seqs: Vec<i64>,
    pub origins: Vec<i64>,
}

/// One clean record's extracted fields.
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    pub provider: String,
    pub instrument: String,
    pub seq: i64,
    pub origin: i64,
}

/// The row of a clean record, or None when the Python path must judge it.
pub fn decode(value: Option<&[u8]>, spec: &Spec) -> Option<Row> {
    let value = value?;
    if value.is_empty() || value.len() > spec.max_bytes {
        return None;
    }
    let [provider, instrument, seq, origin] = check(value, &spec.wanted).ok()?;
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
    };
    for value in values {
        match decode(*value, spec) {
            Some(row) => {
                out.clean.push(true);
                out.providers.push(row.provider);
                out.instruments.push(row.instrument);
                out.seqs.push(row.seq);
                out.origins.push(row.origin);
            }
            None => {
                out.clean.push(false);
                out.providers.push(String::new());
                out.instruments.push(String::new());
                out.seqs.push(-1);
                out.origins.push(0);
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
    fn an_iso_origin_is_left_to_python() {
        let mut s = spec();
        s.origin_factor = None;
        let r = decode(Some(br#"{"ts":5}"#), &s).unwrap();
        assert_eq!(r.origin, FROM_PYTHON);
    }
}
