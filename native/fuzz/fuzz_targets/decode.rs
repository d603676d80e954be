//! The typed decoder on arbitrary bytes and settings: it never panics; a batch gives what
//! its records give one by one; a decoded row keeps the limits and the conversions' ranges.
#![no_main]
#![forbid(unsafe_code)]

use _native::check::{Wanted, check};
use _native::decode::{FROM_PYTHON, Spec, decode, decode_batch, kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the settings; the rest, split at 0xff, are the records.
    let [units, names, limit, rest @ ..] = data else {
        return;
    };
    let spec = Spec {
        wanted: Wanted::new("provider", "instrument", "seq", "ts")
            .with_fields(&["price".to_string(), "provider".to_string()]),
        origin_factor: [
            None,
            Some(1),
            Some(1_000),
            Some(1_000_000),
            Some(1_000_000_000),
        ][usize::from(*units) % 5],
        max_bytes: usize::from(*limit) * 4,
        max_name_chars: usize::from(*names % 16),
    };
    let values: Vec<Option<&[u8]>> = rest
        .split(|&b| b == 0xff)
        .enumerate()
        .map(|(i, v)| (i % 7 != 6).then_some(v))
        .collect();
    let cols = decode_batch(&values, &spec);
    assert_eq!(cols.clean.len(), values.len());
    for typed in &cols.typed {
        assert_eq!(typed.kinds.len(), values.len());
        assert_eq!(typed.numbers.len(), values.len());
        assert_eq!(typed.integers.len(), values.len());
        assert_eq!(typed.texts.len(), values.len());
        for (i, &k) in typed.kinds.iter().enumerate() {
            // a row is typed exactly when it is clean; a text only for a string
            assert_eq!(k == kind::UNREAD, !cols.clean[i]);
            assert_eq!(typed.texts[i].is_some(), k == kind::STR);
            assert!(
                typed.numbers[i].is_nan() != matches!(k, kind::INT | kind::FLOAT | kind::BIG_INT)
            );
        }
    }
    for (i, value) in values.iter().enumerate() {
        let row = decode(*value, &spec);
        assert_eq!(cols.clean[i], row.is_some());
        let Some(row) = row else {
            assert_eq!((cols.seqs[i], cols.origins[i]), (-1, 0));
            assert!(cols.providers[i].is_empty() && cols.instruments[i].is_empty());
            continue;
        };
        let value = value.expect("a clean record has bytes");
        assert!(!value.is_empty() && value.len() <= spec.max_bytes);
        assert!(check(value, &spec.wanted).is_ok());
        assert_eq!(row.values.len(), spec.wanted.fields.len());
        assert!(row.provider.chars().count() <= spec.max_name_chars);
        assert!(row.instrument.chars().count() <= spec.max_name_chars);
        assert!(row.seq == -1 || row.seq == FROM_PYTHON || row.seq >= 0);
        assert!(row.origin == FROM_PYTHON || row.origin >= 0);
        if spec.origin_factor.is_none() {
            assert_eq!(row.origin, FROM_PYTHON);
        }
        assert_eq!(
            (
                &cols.providers[i],
                &cols.instruments[i],
                cols.seqs[i],
                cols.origins[i]
            ),
            (&row.provider, &row.instrument, row.seq, row.origin)
        );
    }
});
