//! Fuzzes the compiled stamp reader on arbitrary header lists.
//!
//! Input: headers separated by NUL bytes; each header's first byte picks its name (0-8: one
//! of the contract's names with the rest as its value; 9-17: that name with a null value;
//! anything else: another header). bench/fuzz_stamps.sh decodes the corpus the same way to
//! hold the reader to the Python reference (`read_stamps`) on everything the fuzzer found.
//!
//! Checked here, without Python: the reader never panics, reads the same input the same
//! way, gives only values the contract allows (what `read_stamps` promises the rest of the
//! code), and reads back exactly what it read once re-encoded as stampline writes it.
#![no_main]
#![forbid(unsafe_code)]

use _native::stamps::{
    self, BOUND_SOURCES, MAX_CLOCK_ERR_NS, MAX_PARENTS, MAX_STAGES, PLAUSIBLE_NS, Picked, Read,
    SINGLE, Stamps,
};
use libfuzzer_sys::fuzz_target;

const NAMES: [&[u8]; 9] = [
    b"stampline.v",
    b"stampline.event_id",
    b"stampline.origin_ns",
    b"stampline.ingest_ns",
    b"stampline.clock_err_ns",
    b"stampline.stamp",
    b"stampline.parents",
    b"stampline.parent_stamps",
    b"traceparent",
];

fn headers(data: &[u8]) -> Vec<(&'static [u8], Option<&[u8]>)> {
    data.split(|b| *b == 0)
        .filter_map(|part| {
            let (&first, value) = part.split_first()?;
            Some(match first {
                0..=8 => (NAMES[usize::from(first)], Some(value)),
                9..=17 => (NAMES[usize::from(first - 9)], None),
                _ => (&b"x-other"[..], Some(value)),
            })
        })
        .collect()
}

fn read<'a>(headers: &[(&[u8], Option<&'a [u8]>)]) -> Read<'a> {
    let mut picked = Picked::default();
    for (key, value) in headers {
        picked.take(key, *value);
    }
    stamps::read(&picked)
}

fn plausible(ns: u64) -> bool {
    (PLAUSIBLE_NS.0..PLAUSIBLE_NS.1).contains(&ns)
}

fn canonical(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// What `read_stamps` promises the rest of the code about what it returns.
fn check(s: &Stamps<'_>) {
    assert!(canonical(&s.event_id));
    assert!(s.origin_ns == 0 || plausible(s.origin_ns));
    assert!(s.ingest_ns == 0 || plausible(s.ingest_ns));
    assert!(s.clock_err_ns <= MAX_CLOCK_ERR_NS);
    assert!(s.stages.len() <= MAX_STAGES);
    for st in &s.stages {
        assert!(stamps::stage_name(st.stage) && stamps::host_name(st.host));
        assert!(plausible(st.received_ns) && plausible(st.emitted_ns));
        assert!(st.received_ns <= st.emitted_ns && st.clock_err_ns <= MAX_CLOCK_ERR_NS);
        assert!(st.source.is_empty() || BOUND_SOURCES.contains(&st.source));
    }
    assert!(s.parents.len() <= MAX_PARENTS && s.parents.iter().all(|p| canonical(p)));
    assert!(s.parent_stamps.is_empty() || s.parent_stamps.len() == s.parents.len());
    for (stage, emitted, err) in s.parent_stamps.iter().flatten() {
        assert!(stamps::stage_name(stage) && plausible(*emitted) && *err <= MAX_CLOCK_ERR_NS);
    }
    assert!(s.traceparent.len() <= 128 && s.traceparent.is_ascii());
}

/// The headers `Stamps.headers()` writes for `s` (the traceparent only when there is one).
fn encode(s: &Stamps<'_>) -> Vec<(&'static [u8], Vec<u8>)> {
    let mut out: Vec<(&'static [u8], Vec<u8>)> = vec![
        (SINGLE[0], b"1".to_vec()),
        (SINGLE[1], s.event_id.clone().into_bytes()),
        (SINGLE[2], s.origin_ns.to_string().into_bytes()),
        (SINGLE[3], s.ingest_ns.to_string().into_bytes()),
        (SINGLE[4], s.clock_err_ns.to_string().into_bytes()),
    ];
    if !s.parents.is_empty() {
        out.push((SINGLE[5], s.parents.join(",").into_bytes()));
    }
    if !s.parent_stamps.is_empty() {
        let left: Vec<String> = s
            .parent_stamps
            .iter()
            .map(|p| match p {
                Some((stage, emitted, err)) => format!("{stage}/{emitted}/{err}"),
                None => "-".to_owned(),
            })
            .collect();
        out.push((SINGLE[6], left.join(",").into_bytes()));
    }
    if !s.traceparent.is_empty() {
        out.push((SINGLE[7], s.traceparent.as_bytes().to_vec()));
    }
    for st in &s.stages {
        let mut text = format!(
            "stage={};in={};out={};err={};host={}",
            st.stage, st.received_ns, st.emitted_ns, st.clock_err_ns, st.host
        );
        if !st.source.is_empty() {
            text += &format!(";src={}", st.source);
        }
        out.push((stamps::H_STAMP, text.into_bytes()));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let headers = headers(data);
    let first = read(&headers);
    assert_eq!(first, read(&headers));
    if let Read::Stamps(s) = &first {
        check(s);
        let again = encode(s);
        let again: Vec<(&[u8], Option<&[u8]>)> = again
            .iter()
            .map(|(k, v)| (*k, Some(v.as_slice())))
            .collect();
        assert_eq!(read(&again), first);
    }
});
