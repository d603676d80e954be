//! The stamping contract v1's reader, compiled for the tap's and the gate's hot loops.
//!
//! The reference is `read_stamps` in `collectors/_stamps.py`: this module gives its result
//! only for what it is certain it reads exactly as the reference does, which is the shape
//! every stampline stamper writes (the gate, the SDK, `Stamps.headers()`): plain ASCII
//! digits, canonical UUIDs, stage stamps with their fields in the written order. Anything
//! else — every error, every spelling the reference tolerates (signs, spaces, underscores in
//! numbers, braces or `urn:uuid:` around ids, reordered or repeated stamp fields, a name
//! ending in a newline, which Python's `$` lets through), every value over a limit — is
//! [`Read::Unsure`], and the caller reads that record with the reference, which also writes
//! every error message. This module never has to say why a stamp is broken, only that it
//! is not sure it is whole.
#![forbid(unsafe_code)]

/// Times a stamp may hold, in ns: 2000-01-01 to 2100-01-01 UTC (`PLAUSIBLE_NS`).
pub const PLAUSIBLE_NS: (u64, u64) = (946_684_800 * 1_000_000_000, 4_102_444_800 * 1_000_000_000);
/// A clock-error bound over a day is no bound (`MAX_CLOCK_ERR_NS`).
pub const MAX_CLOCK_ERR_NS: u64 = 86_400 * 1_000_000_000;
/// Stage stamps on one record (`MAX_STAGES`).
pub const MAX_STAGES: usize = 64;
/// Lineage ids on one record (`MAX_PARENTS`).
pub const MAX_PARENTS: usize = 1024;
/// Where a stage stamp's bound came from (`BOUND_SOURCES`).
pub const BOUND_SOURCES: [&str; 3] = ["configured", "chrony", "fallback"];

/// The header every stage appends (`H_STAMP`).
pub const H_STAMP: &[u8] = b"stampline.stamp";
/// The other headers `read_stamps` reads, first non-null value of each name winning, in the
/// order of [`Single`]'s variants.
pub const SINGLE: [&[u8]; 8] = [
    b"stampline.v",
    b"stampline.event_id",
    b"stampline.origin_ns",
    b"stampline.ingest_ns",
    b"stampline.clock_err_ns",
    b"stampline.parents",
    b"stampline.parent_stamps",
    b"traceparent",
];

/// Index into [`Picked::single`] (and [`SINGLE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Single {
    Version = 0,
    EventId = 1,
    Origin = 2,
    Ingest = 3,
    ClockErr = 4,
    Parents = 5,
    ParentStamps = 6,
    Traceparent = 7,
}

/// What a header name is to `read_stamps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    Stamp,
    Single(usize),
    Other,
}

/// Which of the contract's headers `key` names (compared byte for byte: header names are
/// case-sensitive, and the reference compares `str`s exactly).
pub fn name_of(key: &[u8]) -> Name {
    if key == H_STAMP {
        return Name::Stamp;
    }
    match SINGLE.iter().position(|n| *n == key) {
        Some(i) => Name::Single(i),
        None => Name::Other,
    }
}

/// The headers of one record that `read_stamps` reads, picked as its loop picks them: every
/// non-null stage stamp in order, and the first non-null value of each other name.
#[derive(Clone, Debug, Default)]
pub struct Picked<'a> {
    pub stages: Vec<&'a [u8]>,
    pub single: [Option<&'a [u8]>; 8],
}

impl<'a> Picked<'a> {
    /// Takes one header; a null value is skipped, as the reference skips it.
    pub fn take(&mut self, key: &[u8], value: Option<&'a [u8]>) {
        let Some(value) = value else { return };
        match name_of(key) {
            Name::Stamp => self.stages.push(value),
            Name::Single(i) => {
                if self.single[i].is_none() {
                    self.single[i] = Some(value);
                }
            }
            Name::Other => {}
        }
    }

    fn get(&self, which: Single) -> Option<&'a [u8]> {
        self.single[which as usize]
    }
}

/// One stage stamp (`StageStamp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage<'a> {
    pub stage: &'a str,
    pub received_ns: u64,
    pub emitted_ns: u64,
    pub clock_err_ns: u64,
    pub host: &'a str,
    /// One of [`BOUND_SOURCES`], or "" when the stamp does not say.
    pub source: &'static str,
}

/// Where one parent last left a stage (`audit.ParentStamp`); `None` is `-`, not known.
pub type ParentStamp<'a> = Option<(&'a str, u64, u64)>;

/// Everything the contract carries for one record (`Stamps`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamps<'a> {
    /// Lower-case, hyphenated: what `str(uuid.UUID(...))` gives.
    pub event_id: String,
    pub origin_ns: u64,
    pub ingest_ns: u64,
    pub clock_err_ns: u64,
    pub stages: Vec<Stage<'a>>,
    pub parents: Vec<String>,
    pub traceparent: &'a str,
    /// Empty when the header is absent; else one per parent (the reference refuses any other
    /// count, and a present header always holds at least one entry).
    pub parent_stamps: Vec<ParentStamp<'a>>,
}

/// What reading one record's stamp headers gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read<'a> {
    /// No event id: the reference returns None.
    NoStamps,
    Stamps(Stamps<'a>),
    /// Not certain to be read as the reference reads it (which includes every broken
    /// stamp): the reason, for the caller's count of paths taken. The record must be read by
    /// the reference.
    Unsure(&'static str),
}

/// Reads one record's picked stamp headers as `read_stamps` does, or says it is not sure.
pub fn read<'a>(picked: &Picked<'a>) -> Read<'a> {
    match read_sure(picked) {
        Ok(Some(stamps)) => Read::Stamps(stamps),
        Ok(None) => Read::NoStamps,
        Err(why) => Read::Unsure(why),
    }
}

fn read_sure<'a>(picked: &Picked<'a>) -> Result<Option<Stamps<'a>>, &'static str> {
    // The reference decodes every stage stamp before it looks for the event id (a broken
    // stamp is an error even on a record without one).
    let stages = picked
        .stages
        .iter()
        .map(|raw| stage_stamp(raw))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(event_id) = picked.get(Single::EventId) else {
        return Ok(None);
    };
    if stages.len() > MAX_STAGES {
        return Err("over the limit of stage stamps");
    }
    if let Some(version) = picked.get(Single::Version)
        && digits(version) != Some(1)
    {
        return Err("a contract version other than a plain 1");
    }
    let parents = match picked.get(Single::Parents) {
        Some(raw) => parents(raw)?,
        None => Vec::new(),
    };
    let parent_stamps = match picked.get(Single::ParentStamps) {
        Some(raw) => parent_stamps(raw, parents.len())?,
        None => Vec::new(),
    };
    let event_id = canonical_uuid(event_id).ok_or("an event id not in canonical UUID form")?;
    let origin_ns = time_or_zero(picked.get(Single::Origin))?;
    let ingest_ns = time_or_zero(picked.get(Single::Ingest))?;
    let clock_err_ns = match picked.get(Single::ClockErr) {
        Some(raw) => digits(raw).ok_or("a number that is not plain digits")?,
        None => 0,
    };
    if clock_err_ns > MAX_CLOCK_ERR_NS {
        return Err("a clock-error bound out of range");
    }
    let traceparent = match picked.get(Single::Traceparent) {
        // ASCII, so one byte per character: the reference's `[:128]` of the decoded text.
        Some(raw) if raw.is_ascii() => ascii(&raw[..raw.len().min(128)]).unwrap_or_default(),
        Some(_) => return Err("a traceparent that is not ASCII"),
        None => "",
    };
    Ok(Some(Stamps {
        event_id,
        origin_ns,
        ingest_ns,
        clock_err_ns,
        stages,
        parents,
        traceparent,
        parent_stamps,
    }))
}

/// An origin or ingest time: absent or 0 is "not stamped", anything else must be a time.
fn time_or_zero(raw: Option<&[u8]>) -> Result<u64, &'static str> {
    let Some(raw) = raw else { return Ok(0) };
    let value = digits(raw).ok_or("a number that is not plain digits")?;
    if value != 0 && !plausible(value) {
        return Err("a time out of range");
    }
    Ok(value)
}

/// One `stampline.stamp` value in the shape stampline writes:
/// `stage=…;in=…;out=…;err=…;host=…[;src=…]`.
pub fn stage_stamp(raw: &[u8]) -> Result<Stage<'_>, &'static str> {
    let text = ascii(raw).ok_or("a stage stamp that is not ASCII")?;
    let mut parts = text.split(';');
    let mut field = |prefix: &str| parts.next().and_then(|p| p.strip_prefix(prefix));
    const SHAPE: &str = "a stage stamp not in the shape stampline writes";
    let stage = field("stage=").ok_or(SHAPE)?;
    let received = field("in=").ok_or(SHAPE)?;
    let emitted = field("out=").ok_or(SHAPE)?;
    let err = field("err=").ok_or(SHAPE)?;
    let host = field("host=").ok_or(SHAPE)?;
    let source = match parts.next() {
        None => "",
        Some(part) => {
            let src = part.strip_prefix("src=").ok_or(SHAPE)?;
            // A `src=` present must name a source (`src=` with nothing is an error too).
            *BOUND_SOURCES
                .iter()
                .find(|s| **s == src)
                .ok_or("a stamp's src= that is not a bound source")?
        }
    };
    if parts.next().is_some() {
        return Err(SHAPE);
    }
    let number = |s: &str| digits(s.as_bytes()).ok_or("a number that is not plain digits");
    let stamp = Stage {
        stage,
        received_ns: number(received)?,
        emitted_ns: number(emitted)?,
        clock_err_ns: number(err)?,
        host,
        source,
    };
    if !stage_name(stamp.stage) {
        return Err("a stage name outside the strict form");
    }
    if !plausible(stamp.received_ns) || !plausible(stamp.emitted_ns) {
        return Err("a time out of range");
    }
    if stamp.emitted_ns < stamp.received_ns {
        return Err("a stamp with out= before in=");
    }
    if stamp.clock_err_ns > MAX_CLOCK_ERR_NS {
        return Err("a clock-error bound out of range");
    }
    if !host_name(stamp.host) {
        return Err("a host outside the strict form");
    }
    Ok(stamp)
}

/// `stampline.parents`: ids joined by commas, empty ones skipped.
fn parents(raw: &[u8]) -> Result<Vec<String>, &'static str> {
    let text = ascii(raw).ok_or("parents that are not ASCII")?;
    let ids = text.split(',').filter(|p| !p.is_empty());
    if ids.clone().count() > MAX_PARENTS {
        return Err("over the limit of parents");
    }
    ids.map(|p| canonical_uuid(p.as_bytes()).ok_or("a parent id not in canonical UUID form"))
        .collect()
}

/// `stampline.parent_stamps`: one `stage/out/err` or `-` per parent.
fn parent_stamps(raw: &[u8], parents: usize) -> Result<Vec<ParentStamp<'_>>, &'static str> {
    if raw.len() > 128 * parents.max(1) {
        return Err("parent stamps too long for their parents");
    }
    let text = ascii(raw).ok_or("parent stamps that are not ASCII")?;
    let entries = text.split(',');
    if entries.clone().count() != parents {
        return Err("parent stamps not aligned with the parents");
    }
    const SHAPE: &str = "a parent stamp not in the shape stage/out/err";
    entries
        .map(|entry| {
            if entry == "-" {
                return Ok(None);
            }
            if entry.len() > 128 {
                return Err(SHAPE);
            }
            let mut parts = entry.split('/');
            let (Some(stage), Some(emitted), Some(err), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(SHAPE);
            };
            let emitted = digits(emitted.as_bytes()).ok_or(SHAPE)?;
            let err = digits(err.as_bytes()).ok_or(SHAPE)?;
            if !stage_name(stage) {
                return Err("a stage name outside the strict form");
            }
            if !plausible(emitted) {
                return Err("a time out of range");
            }
            if err > MAX_CLOCK_ERR_NS {
                return Err("a clock-error bound out of range");
            }
            Ok(Some((stage, emitted, err)))
        })
        .collect()
}

/// `raw` as text when it is all ASCII (what the reference's `decode("ascii")` accepts).
fn ascii(raw: &[u8]) -> Option<&str> {
    if raw.is_ascii() {
        std::str::from_utf8(raw).ok()
    } else {
        None
    }
}

/// A number of 1 to 19 ASCII digits (so it fits u64). The reference's `int()` also takes
/// signs, spaces and underscores, and longer numbers: those are not sure here.
pub fn digits(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 19 || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(raw.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn plausible(ns: u64) -> bool {
    (PLAUSIBLE_NS.0..PLAUSIBLE_NS.1).contains(&ns)
}

/// `^[A-Za-z0-9_.:-]{1,64}$` without Python's allowance of a final newline before `$`.
pub fn stage_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-'))
}

/// `^[\x21-\x3a\x3c-\x7e]{0,255}$` (printable ASCII but `;` and space), without a final
/// newline.
pub fn host_name(host: &str) -> bool {
    host.len() <= 255 && host.bytes().all(|c| matches!(c, 0x21..=0x3a | 0x3c..=0x7e))
}

/// `raw` lower-cased when it is a UUID in the 8-4-4-4-12 hex form (either case): then
/// `str(uuid.UUID(raw))` is exactly that. Every other spelling `uuid.UUID` accepts is not
/// sure here.
pub fn canonical_uuid(raw: &[u8]) -> Option<String> {
    if raw.len() != 36 {
        return None;
    }
    let ok = raw.iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    ok.then(|| raw.to_ascii_lowercase())
        .and_then(|id| String::from_utf8(id).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &[u8] = b"8e36dfa3-ed6e-80cb-91d9-d638b45704dd";
    const STAMP: &[u8] = b"stage=gate;in=1795275946446045865;out=1795275946448342991;\
err=1000000;host=md-gate-1";

    fn picked<'a>(headers: &[(&[u8], Option<&'a [u8]>)]) -> Picked<'a> {
        let mut p = Picked::default();
        for (k, v) in headers {
            p.take(k, *v);
        }
        p
    }

    fn gate_headers() -> Vec<(&'static [u8], Option<&'static [u8]>)> {
        vec![
            (b"stampline.v", Some(b"1")),
            (b"stampline.event_id", Some(ID)),
            (b"stampline.origin_ns", Some(b"1795275946438000000")),
            (b"stampline.ingest_ns", Some(b"1795275946446045865")),
            (b"stampline.clock_err_ns", Some(b"1000000")),
            (
                b"traceparent",
                Some(b"00-8e36dfa3ed6e80cb91d9d638b45704dd-5b1e0c7a9f3d2e41-01"),
            ),
            (b"stampline.stamp", Some(STAMP)),
        ]
    }

    #[test]
    fn reads_what_the_gate_writes() {
        let Read::Stamps(s) = read(&picked(&gate_headers())) else {
            panic!("not read")
        };
        assert_eq!(s.event_id, "8e36dfa3-ed6e-80cb-91d9-d638b45704dd");
        assert_eq!(s.origin_ns, 1_795_275_946_438_000_000);
        assert_eq!(s.clock_err_ns, 1_000_000);
        assert_eq!(
            s.stages,
            vec![Stage {
                stage: "gate",
                received_ns: 1_795_275_946_446_045_865,
                emitted_ns: 1_795_275_946_448_342_991,
                clock_err_ns: 1_000_000,
                host: "md-gate-1",
                source: "",
            }]
        );
        assert!(s.parents.is_empty() && s.parent_stamps.is_empty());
    }

    #[test]
    fn reads_lineage_and_lower_cases_ids() {
        let mut h = gate_headers();
        h[1].1 = Some(b"8E36DFA3-ED6E-80CB-91D9-D638B45704DD");
        h.push((
            b"stampline.parents",
            Some(b",8e36dfa3-ed6e-80cb-91d9-d638b45704dd,,"),
        ));
        h.push((
            b"stampline.parent_stamps",
            Some(b"risk/1795275946448342991/0"),
        ));
        let Read::Stamps(s) = read(&picked(&h)) else {
            panic!("not read")
        };
        assert_eq!(s.event_id, "8e36dfa3-ed6e-80cb-91d9-d638b45704dd");
        assert_eq!(s.parents, vec!["8e36dfa3-ed6e-80cb-91d9-d638b45704dd"]);
        assert_eq!(
            s.parent_stamps,
            vec![Some(("risk", 1_795_275_946_448_342_991, 0))]
        );
    }

    #[test]
    fn no_event_id_is_no_stamps_and_first_value_wins() {
        let mut h = gate_headers();
        h.remove(1);
        assert_eq!(read(&picked(&h)), Read::NoStamps);
        let mut h = gate_headers();
        h.insert(0, (b"stampline.event_id", None)); // a null is skipped, not first
        h.push((b"stampline.event_id", Some(b"not a uuid")));
        assert!(matches!(read(&picked(&h)), Read::Stamps(_)));
    }

    #[test]
    fn what_the_reference_might_read_otherwise_is_unsure() {
        let spellings: &[(&[u8], &[u8])] = &[
            (b"stampline.origin_ns", b" 1795275946438000000"),
            (b"stampline.origin_ns", b"+1795275946438000000"),
            (b"stampline.origin_ns", b"1_795_275_946_438_000_000"),
            (b"stampline.origin_ns", b"17952759464380000000"),
            (b"stampline.origin_ns", b""),
            (b"stampline.origin_ns", b"5"),
            (b"stampline.v", b"2"),
            (b"stampline.v", b"1\n"),
            (
                b"stampline.event_id",
                b"{8e36dfa3-ed6e-80cb-91d9-d638b45704dd}",
            ),
            (b"stampline.event_id", b"8e36dfa3ed6e80cb91d9d638b45704dd"),
            (b"stampline.clock_err_ns", b"86400000000001"),
            (b"traceparent", b"\xff"),
            (
                b"stampline.parents",
                b"8e36dfa3-ed6e-80cb-91d9-d638b45704dd ",
            ),
            (b"stampline.parent_stamps", b"-"),
            (
                b"stampline.stamp",
                b"stage=gate\n;in=1795275946446045865;out=1795275946448342991;err=0;host=",
            ),
            (
                b"stampline.stamp",
                b"in=1795275946446045865;stage=gate;out=1795275946448342991;err=0;host=",
            ),
            (
                b"stampline.stamp",
                b"stage=gate;in=1795275946446045865;out=1795275946448342991;err=0;host=;src=",
            ),
            (
                b"stampline.stamp",
                b"stage=gate;in=1795275946446045865;out=1795275946446045864;err=0;host=",
            ),
            (
                b"stampline.stamp",
                b"stage=gate;in=1795275946446045865;out=1795275946448342991;err=0;host=a b",
            ),
        ];
        for (name, value) in spellings {
            let mut h = gate_headers();
            h.insert(0, (name, Some(value)));
            assert!(
                matches!(read(&picked(&h)), Read::Unsure(_)),
                "{} = {:?}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn limits_are_unsure() {
        let mut h = gate_headers();
        for _ in 0..MAX_STAGES {
            h.push((b"stampline.stamp", Some(STAMP)));
        }
        assert!(matches!(read(&picked(&h)), Read::Unsure(_)));
        h.pop();
        assert!(matches!(read(&picked(&h)), Read::Stamps(_)));
    }

    #[test]
    fn a_record_without_an_id_but_a_broken_stamp_is_unsure() {
        let h: Vec<(&[u8], Option<&[u8]>)> = vec![(b"stampline.stamp", Some(b"nonsense"))];
        assert!(matches!(read(&picked(&h)), Read::Unsure(_)));
    }
}
