//! The record checker on arbitrary bytes: it never panics, and whatever it calls clean a
//! strict parser reads as one JSON object with no repeated key, holding the values it found
//! (the identity fields, and the typed fields the rules read, floats bit for bit).
#![no_main]
#![forbid(unsafe_code)]

use _native::check::{Found, MAX_DEPTH, Value as Typed, Wanted, check_fields};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

mod oracle;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn agrees(found: &Found, value: Option<&Value>) -> bool {
    match (found, value) {
        (Found::Missing, None) => true,
        (Found::Str(s), Some(Value::String(t))) => s == t,
        (Found::Int(i), Some(Value::Number(n))) => {
            n.as_i64().map(i128::from) == Some(*i)
                || n.as_u64().map(i128::from) == Some(*i)
                // `-0`: serde_json reads a float -0.0, orjson (and the checker) an int 0
                || (*i == 0 && n.is_f64() && n.as_f64() == Some(0.0))
        }
        (Found::Float, Some(Value::Number(n))) => n.as_f64().is_some_and(f64::is_finite),
        (Found::Bool, Some(Value::Bool(_))) => true,
        (Found::Other, Some(Value::Null | Value::Array(_) | Value::Object(_))) => true,
        _ => false,
    }
}

/// A typed field's value as the strict parser reads it (serde_json with float_roundtrip
/// rounds correctly, as orjson does).
fn typed_agrees(typed: &Typed, value: Option<&Value>) -> bool {
    match (typed, value) {
        (Typed::Missing, None) => true,
        (Typed::Null, Some(Value::Null)) => true,
        (Typed::Bool(b), Some(Value::Bool(c))) => b == c,
        (Typed::Str(s), Some(Value::String(t))) => s == t,
        (Typed::Int(i), Some(Value::Number(n))) => {
            n.as_i64() == Some(*i) || (*i == 0 && n.as_f64() == Some(0.0)) // `-0`, as above
        }
        (Typed::BigInt(f), Some(Value::Number(n))) => n
            .as_u64()
            .is_some_and(|u| u > i64::MAX as u64 && (u as f64).to_bits() == f.to_bits()),
        (Typed::Float(f), Some(Value::Number(n))) => {
            n.is_f64() && n.as_f64().map(f64::to_bits) == Some(f.to_bits())
        }
        (Typed::Container, Some(Value::Array(_) | Value::Object(_))) => true,
        _ => false,
    }
}

const TYPED: [&str; 4] = ["a", "x", "provider", "y"];

fuzz_target!(|data: &[u8]| {
    let names: Vec<String> = TYPED.iter().map(|s| s.to_string()).collect();
    let wanted = Wanted::new("provider", "instrument", "seq", "a.b").with_fields(&names);
    let Ok((fields, typed)) = check_fields(data, &wanted) else {
        return;
    };
    let value = oracle::strict(data).expect("clean, yet not strict JSON without repeated keys");
    let Value::Object(top) = &value else {
        panic!("clean, yet not an object");
    };
    assert!(depth(&value) <= MAX_DEPTH, "clean, yet nested too deep");
    assert!(agrees(&fields[0], top.get("provider")), "provider");
    assert!(agrees(&fields[1], top.get("instrument")), "instrument");
    assert!(agrees(&fields[2], top.get("seq")), "seq");
    let origin = top
        .get("a")
        .and_then(|a| a.as_object())
        .and_then(|a| a.get("b"));
    assert!(agrees(&fields[3], origin), "origin");
    for (name, value) in TYPED.iter().zip(&typed) {
        assert!(typed_agrees(value, top.get(*name)), "typed field {name}");
    }
});
