//! The fuzz targets' oracle: serde_json (a strict RFC 8259 parser) reading a value while
//! refusing a key repeated in any object, and keeping the top-level object.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON value with no repeated key anywhere; the top-level value as serde_json reads it.
pub fn strict(text: &[u8]) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(text);
    de.disable_recursion_limit();
    (&mut de).deserialize_any(NoRepeat).ok()?;
    de.end().ok()?;
    let mut de = serde_json::Deserializer::from_slice(text);
    de.disable_recursion_limit(); // the checker reads 256 levels, serde_json's default 128
    serde::Deserialize::deserialize(&mut de).ok()
}

struct NoRepeat;

impl<'de> DeserializeSeed<'de> for NoRepeat {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(NoRepeat)
    }
}

impl<'de> Visitor<'de> for NoRepeat {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoRepeat)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key) {
                return Err(de::Error::custom("repeated key"));
            }
            map.next_value_seed(NoRepeat)?;
        }
        Ok(())
    }
}
