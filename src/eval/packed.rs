//! Aggregate values as a run keeps them for every subject: by chunk of subjects and by
//! aggregate, each aggregate's values in a chunk stored in the narrowest form that holds all
//! of them exactly (a date in 4 bytes, a count in 4, a flag in 1; anything else as an
//! [`AggValue`], 16 bytes). At a million members with 33 aggregates the values took 0.53 GB
//! as `AggValue`s, the largest thing a run builds after the data itself.

use super::aggregate::AggValue;
use super::value::Scalar;
use crate::data::Sym;
use chrono::{Datelike, NaiveDate};

/// One aggregate's values for the subjects of one chunk.
#[derive(Debug)]
pub(super) enum Packed {
    /// Dates, whole numbers or ids, 4 bytes each (see [`Word`]).
    Words(Word, Box<[u32]>),
    /// Booleans, or the values of one enum column, 1 byte each (see [`Byte`]).
    Bytes(Byte, Box<[u8]>),
    /// Decimal numbers, bit for bit ([`NUM_UNIT`] and [`NUM_NONE`]: no value).
    Nums(Box<[f64]>),
    /// Anything else: text, date-times, lists of days or rows, mixed kinds.
    Any(Box<[AggValue]>),
}

/// What a 4-byte code holds; every kind also has [`WORD_UNIT`] (no value: the aggregate
/// found nothing) and [`WORD_NONE`] ([`Scalar::None`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Word {
    /// Days from the common era.
    Date,
    /// A whole number in 32 bits, offset by 2³¹.
    Int,
    /// An interned id.
    Id,
}

/// What a 1-byte code holds, besides [`BYTE_UNIT`] and [`BYTE_NONE`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Byte {
    /// 0 or 1.
    Bool,
    /// A value index of enum column (table, column).
    Enum(u16, u16),
}

const WORD_UNIT: u32 = u32::MAX;
const WORD_NONE: u32 = u32::MAX - 1;
const BYTE_UNIT: u8 = u8::MAX;
const BYTE_NONE: u8 = u8::MAX - 1;
/// Two NaNs no arithmetic makes (a number with either bit pattern is kept as it is).
const NUM_UNIT: u64 = 0x7ff8_dead_0000_0001;
const NUM_NONE: u64 = 0x7ff8_dead_0000_0002;

impl Word {
    fn of(s: &Scalar) -> Option<Word> {
        match s {
            Scalar::Date(_) => Some(Word::Date),
            Scalar::Int(_) => Some(Word::Int),
            Scalar::Id(_) => Some(Word::Id),
            _ => None,
        }
    }

    fn encode(self, v: &AggValue) -> Option<u32> {
        let code = match v {
            AggValue::Unit => return Some(WORD_UNIT),
            AggValue::Scalar(Scalar::None) => return Some(WORD_NONE),
            AggValue::Scalar(s) => match (self, s) {
                (Word::Date, Scalar::Date(d)) => u32::try_from(d.num_days_from_ce()).ok()?,
                (Word::Int, Scalar::Int(i)) => u32::try_from(i64::from(i32::MIN).abs() + i).ok()?,
                (Word::Id, Scalar::Id(sym)) => sym.0,
                _ => return None,
            },
            _ => return None,
        };
        (code < WORD_NONE).then_some(code)
    }

    fn decode(self, code: u32) -> AggValue {
        AggValue::Scalar(match (code, self) {
            (WORD_UNIT, _) => return AggValue::Unit,
            (WORD_NONE, _) => Scalar::None,
            (c, Word::Date) => {
                NaiveDate::from_num_days_from_ce_opt(c as i32).map_or(Scalar::None, Scalar::Date)
            }
            (c, Word::Int) => Scalar::Int(i64::from(c) - i64::from(i32::MIN).abs()),
            (c, Word::Id) => Scalar::Id(Sym(c)),
        })
    }
}

impl Byte {
    fn of(s: &Scalar) -> Option<Byte> {
        match s {
            Scalar::Bool(_) => Some(Byte::Bool),
            Scalar::Enum(t, c, _) => Some(Byte::Enum(*t, *c)),
            _ => None,
        }
    }

    fn encode(self, v: &AggValue) -> Option<u8> {
        let code = match v {
            AggValue::Unit => return Some(BYTE_UNIT),
            AggValue::Scalar(Scalar::None) => return Some(BYTE_NONE),
            AggValue::Scalar(s) => match (self, s) {
                (Byte::Bool, Scalar::Bool(b)) => u8::from(*b),
                (Byte::Enum(t, c), Scalar::Enum(t2, c2, i)) if (t, c) == (*t2, *c2) => *i,
                _ => return None,
            },
            _ => return None,
        };
        (code < BYTE_NONE).then_some(code)
    }

    fn decode(self, code: u8) -> AggValue {
        AggValue::Scalar(match (code, self) {
            (BYTE_UNIT, _) => return AggValue::Unit,
            (BYTE_NONE, _) => Scalar::None,
            (c, Byte::Bool) => Scalar::Bool(c == 1),
            (c, Byte::Enum(t, col)) => Scalar::Enum(t, col, c),
        })
    }
}

fn encode_num(v: &AggValue) -> Option<f64> {
    match v {
        AggValue::Unit => Some(f64::from_bits(NUM_UNIT)),
        AggValue::Scalar(Scalar::None) => Some(f64::from_bits(NUM_NONE)),
        AggValue::Scalar(Scalar::Num(x)) if ![NUM_UNIT, NUM_NONE].contains(&x.to_bits()) => {
            Some(*x)
        }
        _ => None,
    }
}

fn decode_num(x: f64) -> AggValue {
    match x.to_bits() {
        NUM_UNIT => AggValue::Unit,
        NUM_NONE => AggValue::Scalar(Scalar::None),
        _ => AggValue::Scalar(Scalar::Num(x)),
    }
}

impl Packed {
    /// The narrowest form that holds `values` exactly: the kind of the first value that is
    /// something, if every other value is of that kind too (or nothing); otherwise as they
    /// are.
    fn pack(values: Vec<AggValue>) -> Packed {
        let first = values.iter().find_map(|v| match v {
            AggValue::Scalar(Scalar::None) | AggValue::Unit => None,
            AggValue::Scalar(s) => Some(Some(s)),
            _ => Some(None),
        });
        let words = |w: Word| {
            let codes = values.iter().map(|v| w.encode(v)).collect::<Option<_>>();
            codes.map(|c| Packed::Words(w, c))
        };
        let bytes = |b: Byte| {
            let codes = values.iter().map(|v| b.encode(v)).collect::<Option<_>>();
            codes.map(|c| Packed::Bytes(b, c))
        };
        let packed = match first {
            // Nothing but "nothing": any form holds that.
            None => bytes(Byte::Bool),
            Some(Some(s)) => match (Word::of(s), Byte::of(s)) {
                (Some(w), _) => words(w),
                (_, Some(b)) => bytes(b),
                _ if matches!(s, Scalar::Num(_)) => {
                    let nums = values.iter().map(encode_num).collect::<Option<_>>();
                    nums.map(Packed::Nums)
                }
                _ => None,
            },
            Some(None) => None,
        };
        packed.unwrap_or_else(|| Packed::Any(values.into_boxed_slice()))
    }

    fn get(&self, k: usize) -> AggCell<'_> {
        match self {
            Packed::Words(w, v) => AggCell::Own(w.decode(v[k])),
            Packed::Bytes(b, v) => AggCell::Own(b.decode(v[k])),
            Packed::Nums(v) => AggCell::Own(decode_num(v[k])),
            Packed::Any(v) => AggCell::Ref(&v[k]),
        }
    }
}

/// One aggregate value of one subject: borrowed from where it is kept, or made from its
/// packed form (then a plain scalar, with nothing on the heap).
#[derive(Debug)]
pub(super) enum AggCell<'a> {
    Ref(&'a AggValue),
    Own(AggValue),
}

impl std::ops::Deref for AggCell<'_> {
    type Target = AggValue;
    fn deref(&self) -> &AggValue {
        match self {
            AggCell::Ref(v) => v,
            AggCell::Own(v) => v,
        }
    }
}

/// The values of `width` aggregates for each subject held: every subject of a kind, in
/// chunks of `chunk` subjects, or one run of them from row `first` (one subject for
/// `explain`).
#[derive(Debug)]
pub(super) struct AggValues {
    first: usize,
    width: usize,
    chunk: usize,
    chunks: Vec<Box<[Packed]>>,
}

impl AggValues {
    /// Values for subjects from row `first` on, `chunk` subjects a chunk, `width` each.
    pub(super) fn new(first: usize, width: usize, chunk: usize) -> AggValues {
        AggValues {
            first,
            width,
            chunk,
            chunks: Vec::new(),
        }
    }

    /// Pack the values of the next chunk's subjects, `width` each, subject by subject
    /// (`values[k * width + l]` is subject `k`'s aggregate `l`; fewer than `chunk` subjects
    /// only in the last chunk).
    pub(super) fn pack_chunk(width: usize, mut values: Vec<AggValue>) -> Box<[Packed]> {
        let subjects = values.len().checked_div(width).unwrap_or(0);
        (0..width)
            .map(|l| {
                Packed::pack(
                    (0..subjects)
                        .map(|k| std::mem::take(&mut values[k * width + l]))
                        .collect(),
                )
            })
            .collect()
    }

    /// Add the next chunk, as [`AggValues::pack_chunk`] made it.
    pub(super) fn push(&mut self, chunk: Box<[Packed]>) {
        debug_assert_eq!(chunk.len(), self.width);
        self.chunks.push(chunk);
    }

    /// Aggregate `l` of subject `s` (which must be held).
    #[inline]
    pub(super) fn get(&self, s: usize, l: usize) -> AggCell<'_> {
        let i = s - self.first;
        self.chunks[i / self.chunk][l].get(i % self.chunk)
    }

    /// All the aggregates of subject `s`, unpacked.
    pub(super) fn of(&self, s: usize) -> Vec<AggValue> {
        (0..self.width).map(|l| self.get(s, l).clone()).collect()
    }

    /// Aggregates per subject.
    pub(super) fn width(&self) -> usize {
        self.width
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2020, 3, day).unwrap()
    }

    /// Every value comes back as it went in, whatever form its chunk took.
    #[test]
    fn values_come_back_unchanged_in_every_form() {
        let s = AggValue::Scalar;
        let (unit, none) = (AggValue::Unit, s(Scalar::None));
        let nan = |bits| s(Scalar::Num(f64::from_bits(bits)));
        let columns: Vec<(&str, Vec<AggValue>)> = vec![
            (
                "Date",
                vec![
                    s(Scalar::Date(d(1))),
                    none.clone(),
                    unit.clone(),
                    s(Scalar::Date(d(3))),
                ],
            ),
            (
                "Int",
                vec![
                    s(Scalar::Int(0)),
                    s(Scalar::Int(-7)),
                    unit.clone(),
                    s(Scalar::Int(i32::MAX as i64 - 2)),
                ],
            ),
            // Out of 32 bits, or on a code that means "nothing".
            (
                "any",
                vec![
                    s(Scalar::Int(1)),
                    s(Scalar::Int(1 << 40)),
                    s(Scalar::Int(2)),
                    none.clone(),
                ],
            ),
            (
                "any",
                vec![
                    s(Scalar::Int(i32::MAX as i64)),
                    unit.clone(),
                    none.clone(),
                    unit.clone(),
                ],
            ),
            (
                "Id",
                vec![
                    s(Scalar::Id(Sym(5))),
                    unit.clone(),
                    none.clone(),
                    s(Scalar::Id(Sym(0))),
                ],
            ),
            (
                "any",
                vec![
                    s(Scalar::Id(Sym::NONE)),
                    unit.clone(),
                    none.clone(),
                    unit.clone(),
                ],
            ),
            (
                "nums",
                vec![
                    s(Scalar::Num(1.5)),
                    s(Scalar::Num(-0.0)),
                    nan(f64::NAN.to_bits()),
                    unit.clone(),
                ],
            ),
            (
                "any",
                vec![
                    s(Scalar::Num(1.5)),
                    nan(NUM_UNIT),
                    none.clone(),
                    unit.clone(),
                ],
            ),
            (
                "Bool",
                vec![
                    s(Scalar::Bool(true)),
                    none.clone(),
                    s(Scalar::Bool(false)),
                    unit.clone(),
                ],
            ),
            (
                "Enum(5, 3)",
                vec![
                    s(Scalar::Enum(5, 3, 0)),
                    unit.clone(),
                    s(Scalar::Enum(5, 3, 7)),
                    none.clone(),
                ],
            ),
            (
                "any",
                vec![
                    s(Scalar::Enum(5, 3, 0)),
                    s(Scalar::Enum(5, 4, 0)),
                    unit.clone(),
                    none.clone(),
                ],
            ),
            (
                "any",
                vec![
                    s(Scalar::Enum(5, 3, BYTE_NONE)),
                    unit.clone(),
                    unit.clone(),
                    none.clone(),
                ],
            ),
            (
                "Bool",
                vec![unit.clone(), none.clone(), unit.clone(), none.clone()],
            ),
            (
                "any",
                vec![
                    s(Scalar::Int(1)),
                    none.clone(),
                    s(Scalar::Num(2.0)),
                    unit.clone(),
                ],
            ),
            (
                "any",
                vec![
                    AggValue::Days(Box::new(vec![d(1), d(2)].into())),
                    AggValue::Rows(Box::new(vec![4u32, 9].into())),
                    unit.clone(),
                    none.clone(),
                ],
            ),
            (
                "any",
                vec![
                    s(Scalar::str("甲")),
                    none.clone(),
                    s(Scalar::Date(d(2))),
                    unit.clone(),
                ],
            ),
        ];
        let width = columns.len();
        let mut by_subject = Vec::new();
        for k in 0..4 {
            for (_, c) in &columns {
                by_subject.push(c[k].clone());
            }
        }
        let chunk = AggValues::pack_chunk(width, by_subject);
        let forms: Vec<String> = chunk
            .iter()
            .map(|p| match p {
                Packed::Words(w, _) => format!("{w:?}"),
                Packed::Bytes(b, _) => format!("{b:?}"),
                Packed::Nums(_) => "nums".into(),
                Packed::Any(_) => "any".into(),
            })
            .collect();
        assert_eq!(forms, columns.iter().map(|c| c.0).collect::<Vec<_>>());
        let mut values = AggValues::new(10, width, 4);
        values.push(chunk);
        for (l, (_, c)) in columns.iter().enumerate() {
            for (k, want) in c.iter().enumerate() {
                let got = values.get(10 + k, l);
                assert_eq!(
                    format!("{:?}", *got),
                    format!("{want:?}"),
                    "aggregate {l}, subject {k}"
                );
            }
        }
        assert_eq!(values.of(11).len(), width);
    }
}
