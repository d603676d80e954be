//! The contract check on arbitrary schemas and records (the input split at its first NUL:
//! schema text, then the record): compiling never panics, and a compiled schema judges any
//! record the checker finds clean without panicking, the same way twice. Whether what it
//! vouches for passes fastjsonschema is tests/rules/test_schema_native.py's job (Hypothesis
//! against the Python path): this target looks for crashes and hangs.
#![no_main]
#![forbid(unsafe_code)]

use _native::check::{Wanted, check};
use _native::schema::Schema;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(cut) = data.iter().position(|&b| b == 0) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(&data[..cut]) else {
        return;
    };
    let Ok(schema) = Schema::compile(text) else {
        return;
    };
    let record = &data[cut + 1..];
    let wanted = Wanted::new("provider", "instrument", "seq", "ts");
    if check(record, &wanted).is_err() {
        return; // not clean: the Python path judges it, the schema is never asked
    }
    let once = schema.passes(record);
    assert_eq!(once, schema.passes(record), "judged differently twice");
});
