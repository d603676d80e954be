//! JSON Schema contracts compiled for clean records: a schema in a stated subset becomes a
//! [`Schema`], which says of a record the checker (`check.rs`) found clean whether it
//! *certainly passes* — exactly as fastjsonschema 2.22, which the Python path
//! (`RuleSet._contract`) runs, would let it pass. A record that fails, or that this module is
//! not certain of, goes to the Python path, which is the reference and writes the reason: no
//! failure message is made here.
//!
//! The subset (docs/native.md, "The contract check"), each keyword as fastjsonschema's
//! generated code reads it:
//! - `type`, a name or a list of names (any may match): `object`, `array`, `string`,
//!   `boolean`, `null`, `number` (an int or a float, never a bool), `integer` (an int, or a
//!   float whose value is whole: `1.0` passes; never a bool);
//! - `properties` (each value's schema in the subset), `required` (up to 64 names),
//!   `additionalProperties` (`true`, `false` or a schema);
//! - `minLength`, `maxLength` (code points, as Python's `len`);
//! - `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (numbers; the exact
//!   comparison Python makes between an int and a float);
//! - `enum`, `const` of strings, numbers (`1 == 1.0`, a bool never a number), booleans and
//!   null;
//! - `items` (one schema for every item);
//! - annotations that change nothing: `$schema` (at the root; draft-04's is refused, whose
//!   `exclusiveMinimum` is a boolean), `$id`, `title`, `description`, `$comment`,
//!   `examples`, `deprecated`, `readOnly`, `writeOnly`.
//!
//! Anything else is not compiled, and every record then takes the Python path for the
//! schema: other keywords (`$ref`, `format`, `pattern`, `default` — which fastjsonschema
//! writes into the record —, `allOf`, ...), boolean schemas, numbers Python would read as
//! other than an int in i64..u64 or a finite float, names and strings holding a quote, a
//! backslash or a control character (they are pasted into fastjsonschema's generated code),
//! a key repeated in the schema, more than 64 levels.
#![forbid(unsafe_code)]

use std::cmp::Ordering;

use crate::check::{self, Found, Parser, Unsure};

/// Why a schema is not compiled (the Python path checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCompiled(pub String);

/// A number as Python holds it after orjson: an int or a finite float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i128),
    Float(f64),
}

/// Python's exact comparison of two numbers (no NaN: neither side holds one).
fn compare(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Num::Int(x), Num::Float(y)) => int_float(x, y),
        (Num::Float(x), Num::Int(y)) => int_float(y, x).reverse(),
    }
}

/// An int against a finite float, exactly: the float's whole part is an exact i128 when the
/// float is under 2^100 in size, and the int is far below that.
fn int_float(x: i128, y: f64) -> Ordering {
    const BIG: f64 = 1.267_650_600_228_229_4e30; // 2^100
    if y >= BIG {
        return Ordering::Less;
    }
    if y <= -BIG {
        return Ordering::Greater;
    }
    let whole = y.floor();
    #[allow(clippy::cast_possible_truncation)] // |whole| < 2^100: exact
    let w = whole as i128;
    match x.cmp(&w) {
        Ordering::Equal if y > whole => Ordering::Less,
        other => other,
    }
}

/// A scalar an `enum` or `const` names.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Null,
    Bool(bool),
    Num(Num),
    Str(String),
}

/// A record's value as the keywords see it.
enum Seen<'a> {
    Null,
    Bool(bool),
    Num(Num),
    Str(&'a [u8]),
    Object,
    Array,
}

impl Scalar {
    /// fastjsonschema's test for one choice: `isinstance` first, so `True` is not `1`.
    fn matches(&self, seen: &Seen<'_>) -> bool {
        match (self, seen) {
            (Scalar::Null, Seen::Null) => true,
            (Scalar::Bool(a), Seen::Bool(b)) => a == b,
            (Scalar::Num(a), Seen::Num(b)) => compare(*a, *b) == Ordering::Equal,
            (Scalar::Str(a), Seen::Str(b)) => a.as_bytes() == *b,
            _ => false,
        }
    }
}

const OBJECT: u8 = 1;
const ARRAY: u8 = 2;
const STRING: u8 = 4;
const INTEGER: u8 = 8;
const NUMBER: u8 = 16;
const BOOLEAN: u8 = 32;
const NULL: u8 = 64;

/// What an object's keys not in `properties` may be.
#[derive(Debug, Default)]
enum Extra {
    #[default]
    Any,
    None,
    Checked(Box<Node>),
}

/// One schema (or subschema) of the subset.
#[derive(Debug, Default)]
struct Node {
    types: u8, // 0: any type
    required: Vec<String>,
    properties: Vec<(String, Node)>,
    extra: Extra,
    min_length: Option<u64>,
    max_length: Option<u64>,
    minimum: Option<Num>,
    maximum: Option<Num>,
    exclusive_minimum: Option<Num>,
    exclusive_maximum: Option<Num>,
    choices: Option<Vec<Scalar>>, // enum
    constant: Option<Scalar>,
    items: Option<Box<Node>>,
}

/// A compiled schema. Build with [`Schema::compile`].
#[derive(Debug)]
pub struct Schema {
    root: Node,
}

/// Containers a schema may nest.
const MAX_SCHEMA_DEPTH: usize = 64;

type Step<T> = Result<T, Unsure>;

impl Schema {
    /// The schema of JSON text `text`, or why it is outside the subset.
    pub fn compile(text: &str) -> Result<Schema, NotCompiled> {
        let mut p = check::reader(text.as_bytes());
        p.ws();
        let json = tree(&mut p, 0).map_err(|_| not("JSON this module does not read"))?;
        p.ws();
        if p.i != text.len() {
            return Err(not("text after the schema"));
        }
        Ok(Schema {
            root: node(&json, true, 0)?,
        })
    }

    /// Whether `record`, which the checker found clean, certainly passes. False when it
    /// fails or when this is not certain: the Python path then judges it.
    pub fn passes(&self, record: &[u8]) -> bool {
        let mut p = check::reader(record);
        p.ws();
        self.root.check(&mut p).is_ok()
    }
}

/// Per record, the bits of `wants` (bit i: `schemas[i]`) whose schema the record certainly
/// passes; 0 for a record not clean (`clean[i]` false), whose contract Python checks anyway.
/// A mask has 64 bits: schemas after the 64th are never checked (their bits stay 0).
pub fn passed_batch(
    schemas: &[&Schema],
    values: &[Option<&[u8]>],
    clean: &[bool],
    wants: &[u64],
) -> Vec<u64> {
    values
        .iter()
        .zip(clean)
        .zip(wants)
        .map(|((value, &clean), &want)| match value {
            Some(record) if clean => schemas
                .iter()
                .take(64)
                .enumerate()
                .filter(|&(at, s)| want >> at & 1 == 1 && s.passes(record))
                .fold(0, |bits, (at, _)| bits | 1 << at),
            _ => 0,
        })
        .collect()
}

fn not(why: &str) -> NotCompiled {
    NotCompiled(why.to_owned())
}

/// A schema text as a tree (only to compile it).
enum Json {
    Null,
    Bool(bool),
    Num(Num),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

fn tree(p: &mut Parser<'_, '_>, depth: usize) -> Step<Json> {
    if depth > MAX_SCHEMA_DEPTH {
        return Err(Unsure);
    }
    match p.peek() {
        Some(b'{') => {
            let mut members: Vec<(String, Json)> = Vec::new();
            each(p, b'}', |p| {
                let key = text(p)?;
                if members.iter().any(|(k, _)| *k == key) {
                    return Err(Unsure); // orjson keeps the last; better not guess
                }
                p.ws();
                p.expect(b':')?;
                p.ws();
                members.push((key, tree(p, depth + 1)?));
                Ok(())
            })?;
            Ok(Json::Object(members))
        }
        Some(b'[') => {
            let mut items = Vec::new();
            each(p, b']', |p| {
                items.push(tree(p, depth + 1)?);
                Ok(())
            })?;
            Ok(Json::Array(items))
        }
        Some(b'"') => Ok(Json::Str(text(p)?)),
        _ => Ok(match scalar(p)? {
            Seen::Null => Json::Null,
            Seen::Bool(b) => Json::Bool(b),
            Seen::Num(n) => Json::Num(n),
            _ => return Err(Unsure),
        }),
    }
}

/// A string token, unescaped.
fn text(p: &mut Parser<'_, '_>) -> Step<String> {
    if p.peek() != Some(b'"') {
        return Err(Unsure);
    }
    String::from_utf8(p.string(true)?.into_owned()).map_err(|_| Unsure)
}

/// `true`, `false`, `null` or a number, as Python reads them.
fn scalar<'a>(p: &mut Parser<'_, '_>) -> Step<Seen<'a>> {
    for (word, seen) in [
        (&b"true"[..], Seen::Bool(true)),
        (b"false", Seen::Bool(false)),
        (b"null", Seen::Null),
    ] {
        if p.b[p.i..].starts_with(word) {
            p.i += word.len();
            return Ok(seen);
        }
    }
    let start = p.i;
    match p.number(true)? {
        Found::Int(v) => Ok(Seen::Num(Num::Int(v))),
        Found::Float => {
            // The token is ASCII; parsed as orjson does (correctly rounded), finite (checked).
            let token = std::str::from_utf8(&p.b[start..p.i]).map_err(|_| Unsure)?;
            let v: f64 = token.parse().map_err(|_| Unsure)?;
            if v.is_finite() {
                Ok(Seen::Num(Num::Float(v)))
            } else {
                Err(Unsure)
            }
        }
        _ => Err(Unsure),
    }
}

/// A name or string fastjsonschema pastes into its code: none that needs escaping there.
fn plain(s: &str) -> Result<&str, NotCompiled> {
    if s.chars()
        .any(|c| c == '"' || c == '\'' || c == '\\' || c.is_control())
    {
        return Err(NotCompiled(format!(
            "{s:?} holds a quote, a backslash or a control character"
        )));
    }
    Ok(s)
}

fn to_scalar(json: &Json) -> Result<Scalar, NotCompiled> {
    Ok(match json {
        Json::Null => Scalar::Null,
        Json::Bool(b) => Scalar::Bool(*b),
        Json::Num(n) => Scalar::Num(*n),
        Json::Str(s) => Scalar::Str(plain(s)?.to_owned()),
        _ => return Err(not("an enum or const that is an object or an array")),
    })
}

fn length(json: &Json, key: &str) -> Result<u64, NotCompiled> {
    match json {
        Json::Num(Num::Int(v)) => u64::try_from(*v).map_err(|_| not(key)),
        _ => Err(NotCompiled(format!("{key} that is not a whole number"))),
    }
}

fn bound(json: &Json, key: &str) -> Result<Num, NotCompiled> {
    match json {
        Json::Num(n) => Ok(*n),
        _ => Err(NotCompiled(format!("{key} that is not a number"))),
    }
}

fn node(json: &Json, root: bool, depth: usize) -> Result<Node, NotCompiled> {
    let Json::Object(members) = json else {
        return Err(not("a schema that is not an object"));
    };
    if depth > MAX_SCHEMA_DEPTH {
        return Err(not("a schema nested too deep"));
    }
    let mut n = Node::default();
    for (key, value) in members {
        match (key.as_str(), value) {
            ("$schema", Json::Str(s)) if root => {
                if s.contains("draft-04") {
                    return Err(not("draft-04 (its exclusive bounds are booleans)"));
                }
            }
            (
                "$id" | "title" | "description" | "$comment" | "examples" | "deprecated"
                | "readOnly" | "writeOnly",
                _,
            ) => {}
            ("type", Json::Str(name)) => n.types = type_bit(name)?,
            ("type", Json::Array(names)) if !names.is_empty() => {
                for name in names {
                    let Json::Str(name) = name else {
                        return Err(not("a type list holding a non-string"));
                    };
                    n.types |= type_bit(name)?;
                }
            }
            ("required", Json::Array(names)) if names.len() <= 64 => {
                for name in names {
                    let Json::Str(name) = name else {
                        return Err(not("required holding a non-string"));
                    };
                    n.required.push(plain(name)?.to_owned());
                }
            }
            ("properties", Json::Object(props)) => {
                for (name, sub) in props {
                    n.properties
                        .push((plain(name)?.to_owned(), node(sub, false, depth + 1)?));
                }
            }
            ("additionalProperties", Json::Bool(true)) => n.extra = Extra::Any,
            ("additionalProperties", Json::Bool(false)) => n.extra = Extra::None,
            ("additionalProperties", sub @ Json::Object(_)) => {
                n.extra = Extra::Checked(Box::new(node(sub, false, depth + 1)?));
            }
            ("items", sub @ Json::Object(_)) => {
                n.items = Some(Box::new(node(sub, false, depth + 1)?));
            }
            ("minLength", v) => n.min_length = Some(length(v, key)?),
            ("maxLength", v) => n.max_length = Some(length(v, key)?),
            ("minimum", v) => n.minimum = Some(bound(v, key)?),
            ("maximum", v) => n.maximum = Some(bound(v, key)?),
            ("exclusiveMinimum", v) => n.exclusive_minimum = Some(bound(v, key)?),
            ("exclusiveMaximum", v) => n.exclusive_maximum = Some(bound(v, key)?),
            ("enum", Json::Array(choices)) if !choices.is_empty() => {
                n.choices = Some(choices.iter().map(to_scalar).collect::<Result<_, _>>()?);
            }
            ("const", v) => n.constant = Some(to_scalar(v)?),
            _ => return Err(NotCompiled(format!("keyword {key:?} as written"))),
        }
    }
    Ok(n)
}

fn type_bit(name: &str) -> Result<u8, NotCompiled> {
    Ok(match name {
        "object" => OBJECT,
        "array" => ARRAY,
        "string" => STRING,
        "integer" => INTEGER,
        "number" => NUMBER,
        "boolean" => BOOLEAN,
        "null" => NULL,
        _ => return Err(NotCompiled(format!("type {name:?}"))),
    })
}

impl Node {
    /// Reads one value of a clean record, Ok when it certainly passes.
    fn check(&self, p: &mut Parser<'_, '_>) -> Step<()> {
        match p.peek() {
            Some(b'{') => {
                self.kind(OBJECT, &Seen::Object)?;
                self.object(p)
            }
            Some(b'[') => {
                self.kind(ARRAY, &Seen::Array)?;
                self.array(p)
            }
            Some(b'"') => {
                let s = p.string(true)?;
                self.kind(STRING, &Seen::Str(&s))?;
                // Code points, as Python's len: every byte that does not continue one.
                let chars = s.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u64;
                if self.min_length.is_some_and(|m| chars < m)
                    || self.max_length.is_some_and(|m| chars > m)
                {
                    return Err(Unsure);
                }
                Ok(())
            }
            _ => {
                let seen = scalar(p)?;
                match seen {
                    Seen::Num(v) => {
                        let whole = match v {
                            Num::Int(_) => true,
                            Num::Float(f) => f.fract() == 0.0,
                        };
                        let bits = if whole { INTEGER | NUMBER } else { NUMBER };
                        self.kind(bits, &seen)?;
                        self.bounds(v)
                    }
                    Seen::Bool(_) => self.kind(BOOLEAN, &seen),
                    _ => self.kind(NULL, &seen),
                }
            }
        }
    }

    /// Ok when a value of type bits `bits` may be here and `enum`/`const` allow it.
    fn kind(&self, bits: u8, seen: &Seen<'_>) -> Step<()> {
        let typed = self.types == 0 || self.types & bits != 0;
        let chosen = self
            .choices
            .as_ref()
            .is_none_or(|c| c.iter().any(|c| c.matches(seen)));
        let constant = self.constant.as_ref().is_none_or(|c| c.matches(seen));
        if typed && chosen && constant {
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    /// Ok when `v` is within every bound (Python: `v < minimum` fails, `v <= exclusiveMinimum`
    /// fails, and so on).
    fn bounds(&self, v: Num) -> Step<()> {
        let breaks = |bound: Option<Num>, failing: &[Ordering]| {
            bound.is_some_and(|b| failing.contains(&compare(v, b)))
        };
        use Ordering::{Equal, Greater, Less};
        if breaks(self.minimum, &[Less])
            || breaks(self.maximum, &[Greater])
            || breaks(self.exclusive_minimum, &[Less, Equal])
            || breaks(self.exclusive_maximum, &[Greater, Equal])
        {
            return Err(Unsure);
        }
        Ok(())
    }

    fn object(&self, p: &mut Parser<'_, '_>) -> Step<()> {
        let mut present: u64 = 0;
        each(p, b'}', |p| {
            if p.peek() != Some(b'"') {
                return Err(Unsure);
            }
            let key = p.string(true)?; // borrowed unless escaped: no allocation per key
            // The checker saw no key twice in this object: each required bit is set once.
            for (at, name) in self.required.iter().enumerate() {
                if name.as_bytes() == &*key {
                    present |= 1 << at;
                }
            }
            let sub = self.properties.iter().find(|(k, _)| k.as_bytes() == &*key);
            p.ws();
            p.expect(b':')?;
            p.ws();
            match (sub, &self.extra) {
                (Some((_, sub)), _) => sub.check(p),
                (None, Extra::Any) => p.skip(),
                (None, Extra::None) => Err(Unsure),
                (None, Extra::Checked(sub)) => sub.check(p),
            }
        })?;
        let all = match self.required.len() {
            64 => u64::MAX,
            n => (1u64 << n) - 1,
        };
        if present == all { Ok(()) } else { Err(Unsure) }
    }

    fn array(&self, p: &mut Parser<'_, '_>) -> Step<()> {
        match &self.items {
            None => p.skip(),
            Some(items) => each(p, b']', |p| items.check(p)),
        }
    }
}

/// Reads an object or array from its opening bracket to `close`, calling `member` at each
/// member (white space skipped around it).
fn each<'v, 'w>(
    p: &mut Parser<'v, 'w>,
    close: u8,
    mut member: impl FnMut(&mut Parser<'v, 'w>) -> Step<()>,
) -> Step<()> {
    p.i += 1;
    p.ws();
    if p.peek() == Some(close) {
        p.i += 1;
        return Ok(());
    }
    loop {
        member(p)?;
        p.ws();
        if p.peek() == Some(close) {
            p.i += 1;
            return Ok(());
        }
        p.expect(b',')?;
        p.ws();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKET: &str = include_str!("../../stampline/data/market_data.schema.json");

    fn passes(schema: &str, record: &str) -> bool {
        Schema::compile(schema).unwrap().passes(record.as_bytes())
    }

    fn why_not(schema: &str) -> String {
        Schema::compile(schema).unwrap_err().0
    }

    #[test]
    fn the_market_data_schema_passes_a_quote_and_nothing_wrong() {
        let quote = r#"{"provider":"p1","instrument":"EURUSD","seq":7,"ts":1.7e12,"type":"quote","price":1.1,"quantity":3,"venue":"x"}"#;
        assert!(passes(MARKET, quote));
        for wrong in [
            r#"{"provider":"p1","instrument":"EURUSD","seq":7,"ts":1,"type":"quote","price":1.1}"#,
            r#"{"provider":"","instrument":"EURUSD","seq":7,"ts":1,"type":"quote","price":1.1,"quantity":3}"#,
            r#"{"provider":"p1","instrument":"EURUSD","seq":-1,"ts":1,"type":"quote","price":1.1,"quantity":3}"#,
            r#"{"provider":"p1","instrument":"EURUSD","seq":7,"ts":1.5,"type":"quote","price":1.1,"quantity":3}"#,
            r#"{"provider":"p1","instrument":"EURUSD","seq":7,"ts":1,"type":"quot","price":1.1,"quantity":3}"#,
            r#"{"provider":"p1","instrument":"EURUSD","seq":7,"ts":1,"type":"quote","price":true,"quantity":3}"#,
            r#"{"provider":"p1","instrument":"EURUSD","seq":7,"ts":1,"type":"quote","price":1,"quantity":3,"bid":"1"}"#,
        ] {
            assert!(!passes(MARKET, wrong), "{wrong}");
        }
    }

    #[test]
    fn types_follow_fastjsonschema() {
        let integer = r#"{"properties":{"a":{"type":"integer"}}}"#;
        assert!(passes(integer, r#"{"a":1.0}"#)); // a whole float is an integer
        assert!(passes(integer, r#"{"a":-0.0}"#));
        assert!(passes(integer, r#"{"a":18446744073709551615}"#));
        assert!(!passes(integer, r#"{"a":true}"#));
        assert!(!passes(integer, r#"{"a":1.5}"#));
        let either = r#"{"properties":{"a":{"type":["boolean","integer"]}}}"#;
        assert!(passes(either, r#"{"a":true}"#));
        let number = r#"{"properties":{"a":{"type":"number"}}}"#;
        assert!(!passes(number, r#"{"a":false}"#));
        assert!(!passes(number, r#"{"a":null}"#));
    }

    #[test]
    fn lengths_count_code_points_after_unescaping() {
        let s = r#"{"properties":{"a":{"maxLength":2,"minLength":2}}}"#;
        assert!(passes(s, r#"{"a":"é😀"}"#));
        assert!(passes(s, r#"{"a":"\u00e9\ud83d\ude00"}"#));
        assert!(!passes(s, r#"{"a":"abc"}"#));
        assert!(passes(s, r#"{"a":12345}"#)); // lengths apply to strings only
    }

    #[test]
    fn bounds_compare_ints_and_floats_exactly() {
        let s = r#"{"properties":{"a":{"minimum":9007199254740993,"exclusiveMaximum":1e300}}}"#;
        assert!(passes(s, r#"{"a":9007199254740993}"#));
        assert!(!passes(s, r#"{"a":9007199254740992}"#));
        assert!(!passes(s, r#"{"a":9007199254740992.0}"#)); // 2^53 < 2^53 + 1
        let e = r#"{"properties":{"a":{"exclusiveMinimum":0.5,"maximum":2}}}"#;
        assert!(!passes(e, r#"{"a":0.5}"#));
        assert!(passes(e, r#"{"a":2.0}"#));
        assert!(!passes(e, r#"{"a":2.0000000000000004}"#));
    }

    #[test]
    fn enum_and_const_compare_as_python_with_isinstance() {
        let s = r#"{"properties":{"a":{"enum":[1,"x",null,false]}}}"#;
        for ok in ["1", "1.0", "\"x\"", "\"\\u0078\"", "null", "false"] {
            assert!(passes(s, &format!(r#"{{"a":{ok}}}"#)), "{ok}");
        }
        for bad in ["true", "0", "\"y\"", "[]", "{}"] {
            assert!(!passes(s, &format!(r#"{{"a":{bad}}}"#)), "{bad}");
        }
        let c = r#"{"properties":{"a":{"const":true}}}"#;
        assert!(passes(c, r#"{"a":true}"#));
        assert!(!passes(c, r#"{"a":1}"#));
    }

    #[test]
    fn required_additional_and_nested() {
        let s = r#"{"required":["a"],"additionalProperties":false,
            "properties":{"a":{"type":"object","required":["b"],"additionalProperties":{"type":"string"},
            "properties":{"b":{"type":"array","items":{"type":"integer"}}}}}}"#;
        assert!(passes(s, r#"{"a":{"b":[1,2.0],"c":"x"}}"#));
        assert!(!passes(s, r#"{"a":{"b":[1,2.5]}}"#));
        assert!(!passes(s, r#"{"a":{"b":[],"c":1}}"#));
        assert!(!passes(s, r#"{"a":{"c":"x"}}"#));
        assert!(!passes(s, r#"{"a":{"b":[]},"z":1}"#));
        assert!(!passes(s, r#"{}"#));
    }

    #[test]
    fn a_batch_gets_the_bits_it_wants_that_its_clean_records_pass() {
        let int = Schema::compile(r#"{"properties":{"a":{"type":"integer"}}}"#).unwrap();
        let text = Schema::compile(r#"{"properties":{"a":{"type":"string"}}}"#).unwrap();
        let mut schemas = vec![&int, &text];
        let values = [
            Some(&b"{\"a\":1}"[..]),
            Some(b"{\"a\":\"x\"}"),
            Some(b"{}"),
            None,
        ];
        let got = passed_batch(
            &schemas,
            &values,
            &[true, true, false, false],
            &[3, 2, 3, 3],
        );
        assert_eq!(got, vec![1, 2, 0, 0]);
        // Past 64 schemas nothing is checked, nor does a bit wrap onto another schema's.
        schemas = vec![&text; 64];
        schemas.push(&int);
        let got = passed_batch(&schemas, &values[..1], &[true], &[u64::MAX]);
        assert_eq!(got, vec![0]);
    }

    #[test]
    fn what_is_outside_the_subset_is_not_compiled() {
        for (schema, why) in [
            (r##"{"$ref":"#/x"}"##, "$ref"),
            (r#"{"properties":{"a":{"format":"date"}}}"#, "format"),
            (r#"{"properties":{"a":{"pattern":"x"}}}"#, "pattern"),
            (r#"{"properties":{"a":{"default":1}}}"#, "default"),
            (
                r#"{"$schema":"http://json-schema.org/draft-04/schema#"}"#,
                "draft-04",
            ),
            (r##"{"properties":{"a\"b":{}}}"##, "quote"),
            (r#"{"properties":{"a":true}}"#, "not an object"),
            (r#"{"minimum":1e400}"#, "does not read"),
            (r#"{"enum":[[1]]}"#, "an array"),
            (r#"{"type":"integer","type":"string"}"#, "does not read"),
            (r#"{"minLength":1.0}"#, "whole number"),
        ] {
            assert!(
                why_not(schema).contains(why),
                "{schema}: {}",
                why_not(schema)
            );
        }
    }
}
