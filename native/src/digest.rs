//! The recorder's batch digest over Arrow buffers: the same bytes as the reference,
//! `digest_batch` in audit/_ledger.py (documented in docs/trail.md).
//!
//! Each column's digest is SHA-256 over its values in canonical row order: integers as
//! little-endian int64; strings as their little-endian int32 byte lengths, then their
//! concatenated bytes (a null string counts as empty). The batch digest is SHA-256 over the
//! column digests in the given order. The canonical row order is computed by the caller
//! (Arrow's stable sort) and given as row numbers across the table's batches.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, GenericBinaryArray, OffsetSizeTrait, PrimitiveArray,
    RecordBatch,
};
use arrow_schema::DataType;
use sha2::{Digest, Sha256};

/// How a column's values are hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Little-endian int64 (an unsigned column keeps its bits, as NumPy's cast does).
    Int,
    /// int32 byte lengths, then the bytes.
    Str,
}

/// Why a table cannot be digested here (the caller then uses the reference path).
#[derive(Debug, PartialEq, Eq)]
pub enum DigestError {
    UnknownColumn(String),
    /// The column's type or content is not one this digest reads the way the reference does.
    Unsupported {
        column: String,
        reason: String,
    },
    /// A row number in the order is past the table's end.
    BadRow(u64),
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownColumn(name) => write!(f, "no column {name:?}"),
            Self::Unsupported { column, reason } => write!(f, "column {column:?}: {reason}"),
            Self::BadRow(row) => write!(f, "row {row} is past the table's end"),
        }
    }
}

impl std::error::Error for DigestError {}

/// A batch digest and its columns' digests, in the order the columns were given.
#[derive(Debug, PartialEq, Eq)]
pub struct Digests {
    pub batch: [u8; 32],
    pub columns: Vec<[u8; 32]>,
}

/// Digest `columns` (name, kind) of a table given as `batches`, rows taken in `order` (row
/// numbers counted across the batches), hashing up to `threads` columns side by side.
pub fn digest_table(
    batches: &[RecordBatch],
    columns: &[(String, Kind)],
    order: &[u64],
    threads: usize,
) -> Result<Digests, DigestError> {
    let order_runs = runs(batches, order)?;
    let readers = columns
        .iter()
        .map(|(name, kind)| Column::new(batches, name, *kind))
        .collect::<Result<Vec<_>, _>>()?;
    let next = AtomicUsize::new(0);
    let mut digests = vec![[0u8; 32]; readers.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.clamp(1, readers.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(column) = readers.get(i) else {
                            break done;
                        };
                        done.push((i, column.digest(&order_runs, order.len())));
                    }
                })
            })
            .collect();
        for worker in workers {
            // A worker only panics on a bug here; let it surface as the panic it is.
            for (i, d) in worker.join().expect("digest worker panicked") {
                digests[i] = d;
            }
        }
    });
    let mut total = Sha256::new();
    for d in &digests {
        total.update(d);
    }
    Ok(Digests {
        batch: total.finalize().into(),
        columns: digests,
    })
}

/// Lowercase hex, as Python's `hexdigest()`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// A run of rows that follow one another in one batch: (batch, first row, rows).
/// The order is found once and used by every column; a run is copied as one slice of its
/// buffers, so rows already in canonical order cost no per-row work.
type Run = (usize, usize, usize);

fn runs(batches: &[RecordBatch], order: &[u64]) -> Result<Vec<Run>, DigestError> {
    let mut starts = Vec::with_capacity(batches.len());
    let mut total = 0u64;
    for b in batches {
        starts.push(total);
        total += b.num_rows() as u64;
    }
    let mut runs: Vec<Run> = Vec::new();
    for &row in order {
        if row >= total {
            return Err(DigestError::BadRow(row));
        }
        // The last batch starting at or before the row (empty batches share a start).
        let batch = starts.partition_point(|&s| s <= row) - 1;
        let within = usize::try_from(row - starts[batch]).map_err(|_| DigestError::BadRow(row))?;
        match runs.last_mut() {
            Some((b, first, n)) if *b == batch && *first + *n == within => *n += 1,
            _ => runs.push((batch, within, 1)),
        }
    }
    Ok(runs)
}

/// One column's pieces, one per batch, read the way its kind is hashed.
enum Column {
    Int(Vec<Ints>),
    Str(Vec<Strs>),
}

enum Ints {
    Signed(arrow_array::Int64Array),
    Unsigned(arrow_array::UInt64Array),
}

/// A string or binary piece: offsets of either width and the bytes they index.
enum Strs {
    Small(GenericBinaryArray<i32>),
    Large(GenericBinaryArray<i64>),
}

impl Column {
    fn new(batches: &[RecordBatch], name: &str, kind: Kind) -> Result<Self, DigestError> {
        let unsupported = |reason: String| DigestError::Unsupported {
            column: name.to_owned(),
            reason,
        };
        let arrays = batches
            .iter()
            .map(|b| {
                b.column_by_name(name)
                    .cloned()
                    .ok_or_else(|| DigestError::UnknownColumn(name.to_owned()))
            })
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        match kind {
            Kind::Int => arrays
                .into_iter()
                .map(|a| {
                    // The reference turns an integer null into a float NaN: not ours to guess.
                    if a.null_count() > 0 {
                        return Err(unsupported("integers with nulls".to_owned()));
                    }
                    match a.data_type() {
                        DataType::Int64 => Ok(Ints::Signed(a.as_primitive::<Int64Type>().clone())),
                        DataType::UInt64 => {
                            Ok(Ints::Unsigned(a.as_primitive::<UInt64Type>().clone()))
                        }
                        other => Err(unsupported(format!("{other} is not a 64-bit integer"))),
                    }
                })
                .collect::<Result<_, _>>()
                .map(Column::Int),
            Kind::Str => arrays
                .into_iter()
                .map(|a| match a.data_type() {
                    // Strings are hashed as their UTF-8 bytes: the same buffers as binary.
                    DataType::Utf8 => Ok(Strs::Small(a.as_string::<i32>().clone().into())),
                    DataType::LargeUtf8 => Ok(Strs::Large(a.as_string::<i64>().clone().into())),
                    DataType::Binary => Ok(Strs::Small(a.as_binary::<i32>().clone())),
                    DataType::LargeBinary => Ok(Strs::Large(a.as_binary::<i64>().clone())),
                    other => Err(unsupported(format!("{other} is not a string or binary"))),
                })
                .collect::<Result<_, _>>()
                .map(Column::Str),
        }
    }

    /// The column's bytes, in canonical row order, gathered into one buffer and hashed
    /// at once: a column is at most a batch's worth (the reference's `take` copies as much),
    /// and hashing many small values one call each costs more than the hashing itself.
    fn digest(&self, runs: &[Run], rows: usize) -> [u8; 32] {
        let mut out = Vec::new();
        match self {
            Column::Int(pieces) => {
                out.reserve_exact(rows * 8);
                for &(b, first, n) in runs {
                    match &pieces[b] {
                        Ints::Signed(a) => push_ints(&mut out, a, first, n),
                        Ints::Unsigned(a) => push_ints(&mut out, a, first, n),
                    }
                }
            }
            Column::Str(pieces) => {
                out.reserve_exact(rows * 4);
                // All the lengths first, then all the bytes.
                for lengths in [true, false] {
                    for &(b, first, n) in runs {
                        match &pieces[b] {
                            Strs::Small(a) => push_strs(&mut out, a, first, n, lengths),
                            Strs::Large(a) => push_strs(&mut out, a, first, n, lengths),
                        }
                    }
                }
            }
        }
        Sha256::digest(&out).into()
    }
}

/// Rows `first..first + n` of a 64-bit integer column as little-endian int64 (an unsigned
/// value keeps its bits).
fn push_ints<T>(out: &mut Vec<u8>, a: &PrimitiveArray<T>, first: usize, n: usize)
where
    T: ArrowPrimitiveType,
    T::Native: ToLe,
{
    let values = &a.values()[first..first + n];
    if let [one] = values {
        out.extend_from_slice(&one.to_le());
    } else if cfg!(target_endian = "little") {
        // Arrow's buffers are in the machine's byte order: here, already the digest's.
        let width = std::mem::size_of::<T::Native>();
        out.extend_from_slice(&a.values().inner().as_slice()[first * width..(first + n) * width]);
    } else {
        for v in values {
            out.extend_from_slice(&v.to_le());
        }
    }
}

/// An integer value's little-endian bytes, whatever the machine's order.
trait ToLe {
    fn to_le(&self) -> [u8; 8];
}

impl ToLe for i64 {
    fn to_le(&self) -> [u8; 8] {
        self.to_le_bytes()
    }
}

impl ToLe for u64 {
    fn to_le(&self) -> [u8; 8] {
        self.to_le_bytes()
    }
}

/// The lengths (`lengths`) or else the bytes of rows `first..first + n` of a string column.
fn push_strs<O: OffsetSizeTrait>(
    out: &mut Vec<u8>,
    a: &GenericBinaryArray<O>,
    first: usize,
    n: usize,
    lengths: bool,
) {
    if lengths {
        push_lengths(out, a, first, n);
    } else {
        push_bytes(out, a, first, n);
    }
}

/// The int32 byte lengths of rows `first..first + n` (a null counts as empty; a length
/// past 2 GiB wraps, as NumPy's cast to int32 does).
fn push_lengths<O: OffsetSizeTrait>(
    out: &mut Vec<u8>,
    a: &GenericBinaryArray<O>,
    first: usize,
    n: usize,
) {
    let offsets = &a.value_offsets()[first..=first + n];
    for (row, w) in (first..).zip(offsets.windows(2)) {
        let len = if a.is_null(row) {
            0
        } else {
            (w[1] - w[0]).as_usize()
        };
        out.extend_from_slice(&(len as i32).to_le_bytes());
    }
}

/// The bytes of rows `first..first + n`: one slice when there are no nulls (a null slot's
/// offsets may span bytes that are not its value).
fn push_bytes<O: OffsetSizeTrait>(
    out: &mut Vec<u8>,
    a: &GenericBinaryArray<O>,
    first: usize,
    n: usize,
) {
    let offsets = a.value_offsets();
    if a.null_count() == 0 {
        let (start, end) = (offsets[first].as_usize(), offsets[first + n].as_usize());
        out.extend_from_slice(&a.value_data()[start..end]);
    } else {
        for row in (first..first + n).filter(|&row| !a.is_null(row)) {
            out.extend_from_slice(a.value(row));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{BinaryArray, Int64Array, LargeStringArray, StringArray, UInt64Array};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn sha(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    fn batch(ints: Vec<i64>, strs: Vec<Option<&str>>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(ints)),
                Arc::new(StringArray::from(strs)),
            ],
        )
        .unwrap()
    }

    fn columns() -> Vec<(String, Kind)> {
        vec![("n".to_owned(), Kind::Int), ("s".to_owned(), Kind::Str)]
    }

    #[test]
    fn known_vector_matches_the_documented_bytes() {
        // Rows taken in order 1, 0: n = [-1, 2], s = ["é", ""] (é is two UTF-8 bytes).
        let got = digest_table(
            &[batch(vec![2, -1], vec![None, Some("é")])],
            &columns(),
            &[1, 0],
            2,
        )
        .unwrap();
        let mut ints = (-1i64).to_le_bytes().to_vec();
        ints.extend(2i64.to_le_bytes());
        let strs = [&2i32.to_le_bytes()[..], &0i32.to_le_bytes(), "é".as_bytes()].concat();
        let (n, s) = (sha(&ints), sha(&strs));
        assert_eq!(got.columns, vec![n, s]);
        assert_eq!(got.batch, sha(&[n, s].concat()));
        // Fixed here so a change to the bytes hashed cannot pass unnoticed (the same value
        // as Python's digest_batch gives for this table).
        assert_eq!(hex(&got.batch), KNOWN_BATCH);
    }

    const KNOWN_BATCH: &str = "24926b2da741f6477d5d8f775a8666607ba3649e6f72af2f88b11cad91c9204f";

    #[test]
    fn rows_span_batches_and_threads_do_not_change_the_digest() {
        let one = batch(vec![1, 2, 3], vec![Some("a"), Some("bb"), Some("ccc")]);
        let split = [
            batch(vec![1], vec![Some("a")]),
            batch(vec![], vec![]),
            batch(vec![2, 3], vec![Some("bb"), Some("ccc")]),
        ];
        let order = [2, 0, 1];
        let whole = digest_table(&[one], &columns(), &order, 1).unwrap();
        assert_eq!(digest_table(&split, &columns(), &order, 2).unwrap(), whole);
    }

    #[test]
    fn widths_and_signedness_hash_the_same_bytes() {
        let schema = Schema::new(vec![
            Field::new("n", DataType::UInt64, false),
            Field::new("s", DataType::LargeUtf8, false),
        ]);
        let wide = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(UInt64Array::from(vec![u64::MAX, 7])),
                Arc::new(LargeStringArray::from(vec!["x", ""])),
            ],
        )
        .unwrap();
        let narrow = batch(vec![-1, 7], vec![Some("x"), Some("")]);
        let order = [0, 1];
        assert_eq!(
            digest_table(&[wide], &columns(), &order, 1).unwrap(),
            digest_table(&[narrow], &columns(), &order, 1).unwrap()
        );
    }

    #[test]
    fn binary_is_hashed_as_its_bytes() {
        let schema = Schema::new(vec![Field::new("s", DataType::Binary, false)]);
        let b = RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(BinaryArray::from(vec![&b"\xff\x00"[..]]))],
        )
        .unwrap();
        let got = digest_table(&[b], &[("s".to_owned(), Kind::Str)], &[0], 1).unwrap();
        assert_eq!(
            got.columns[0],
            sha(&[&2i32.to_le_bytes()[..], b"\xff\x00"].concat())
        );
    }

    #[test]
    fn what_it_cannot_read_is_refused() {
        let b = batch(vec![1], vec![Some("a")]);
        let strs_as_ints = [("s".to_owned(), Kind::Int)];
        assert!(matches!(
            digest_table(std::slice::from_ref(&b), &strs_as_ints, &[0], 1),
            Err(DigestError::Unsupported { .. })
        ));
        let missing = [("x".to_owned(), Kind::Int)];
        assert_eq!(
            digest_table(std::slice::from_ref(&b), &missing, &[0], 1),
            Err(DigestError::UnknownColumn("x".to_owned()))
        );
        assert_eq!(
            digest_table(&[b], &columns(), &[1], 1),
            Err(DigestError::BadRow(1))
        );
        let schema = Schema::new(vec![Field::new("n", DataType::Int64, true)]);
        let nulls = RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from(vec![Some(1), None]))],
        )
        .unwrap();
        assert!(matches!(
            digest_table(&[nulls], &[("n".to_owned(), Kind::Int)], &[0, 1], 1),
            Err(DigestError::Unsupported { .. })
        ));
    }

    #[test]
    fn a_run_hashes_as_its_rows_one_by_one() {
        // Sliced (offsets > 0) and with a null: the run 0..3 must hash as rows 0, 1, 2 do.
        let whole = batch(
            vec![9, 1, 2, 3],
            vec![Some("skip"), Some("ab"), None, Some("c")],
        );
        let sliced = whole.slice(1, 3);
        let run = digest_table(std::slice::from_ref(&sliced), &columns(), &[0, 1, 2], 1).unwrap();
        let one_by_one = [sliced.slice(0, 1), sliced.slice(1, 1), sliced.slice(2, 1)];
        let rows = digest_table(&one_by_one, &columns(), &[0, 1, 2], 1).unwrap();
        assert_eq!(run, rows);
        let mut ints = Vec::new();
        for v in [1i64, 2, 3] {
            ints.extend(v.to_le_bytes());
        }
        let lengths = [2i32, 0, 1].map(i32::to_le_bytes).concat();
        assert_eq!(
            run.columns,
            vec![sha(&ints), sha(&[&lengths[..], b"abc"].concat())]
        );
    }

    #[test]
    fn an_empty_table_digests_empty_columns() {
        let got = digest_table(&[batch(vec![], vec![])], &columns(), &[], 2).unwrap();
        assert_eq!(got.columns, vec![sha(b""), sha(b"")]);
    }
}
