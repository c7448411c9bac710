//! Values the evaluator handles natively: cells, literals and aggregate results as a small
//! [`Scalar`], with comparison and conversion to Rhai and JSON.

use crate::data::{ColumnData, Dataset, Interner, Sym, Table};
use crate::policy::model::ColumnType;
use crate::policy::{ColumnSchema, PolicySet};
use chrono::{NaiveDate, NaiveDateTime};
use rhai::{Dynamic, ImmutableString};
use std::cmp::Ordering;
use std::sync::Arc;

/// One value the native evaluator handles: a cell, a policy literal or an aggregate result.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Missing: an empty cell or a literal that could not be read; equal to nothing.
    None,
    /// An id, interned in the dataset's [`Interner`].
    Id(Sym),
    /// A text cell, by table, column and row (no copy).
    TextRef(u16, u16, u32),
    /// Owned text, such as a text literal or an id the dataset does not hold (behind one
    /// thin pointer: a scalar is 16 bytes, and every subject holds one per aggregate).
    Str(Arc<Box<str>>),
    /// A date.
    Date(NaiveDate),
    /// A local date-time.
    DateTime(NaiveDateTime),
    /// A boolean.
    Bool(bool),
    /// A decimal number, such as a number cell, a float literal, a sum or hours.
    Num(f64),
    /// A whole number, such as an integer literal or a count.
    Int(i64),
    /// An enum cell: table, column, value index.
    Enum(u16, u16, u8),
}

impl Scalar {
    /// Owned text.
    pub fn str(s: &str) -> Scalar {
        Scalar::Str(Arc::new(s.into()))
    }
}

/// Resolves scalars against the dataset and schema.
pub struct Values<'a> {
    /// The dataset the cells come from.
    pub data: &'a Dataset,
    /// The policy set whose schema types the cells and names the enum values.
    pub policy: &'a PolicySet,
    tables: Vec<&'a Table>,
}

impl<'a> Values<'a> {
    /// Resolver for `data` under `policy`; every table of the schema must be in `data`.
    pub fn new(data: &'a Dataset, policy: &'a PolicySet) -> Self {
        let tables = policy
            .schema
            .tables
            .keys()
            .map(|k| &data.tables[k.as_str()])
            .collect();
        Values {
            data,
            policy,
            tables,
        }
    }

    /// The cell at `row` of column `col` of `table` (schema index `tidx`).
    pub fn cell(table: &Table, tidx: usize, col: usize, row: usize) -> Scalar {
        Self::cell_of(&table.columns[col], tidx, col, row)
    }

    /// The cell at `row` of column `col` (column `ci` of the table at schema index `tidx`);
    /// empty cells, including empty text, are [`Scalar::None`].
    pub fn cell_of(col: &ColumnData, tidx: usize, ci: usize, row: usize) -> Scalar {
        match col {
            ColumnData::Id(v) => {
                if v[row].is_none() {
                    Scalar::None
                } else {
                    Scalar::Id(v[row])
                }
            }
            ColumnData::Text(v) => {
                if v.get(row).is_empty() {
                    Scalar::None
                } else {
                    Scalar::TextRef(tidx as u16, ci as u16, row as u32)
                }
            }
            ColumnData::Date(v) => v[row].map_or(Scalar::None, Scalar::Date),
            ColumnData::DateTime(v) => v.get(row).map_or(Scalar::None, Scalar::DateTime),
            ColumnData::Bool(v) => v[row].map_or(Scalar::None, Scalar::Bool),
            ColumnData::Number(v) => v.get(row).map_or(Scalar::None, Scalar::Num),
            ColumnData::Enum(v) => {
                v[row].map_or(Scalar::None, |i| Scalar::Enum(tidx as u16, ci as u16, i))
            }
        }
    }

    /// A literal from a policy file, typed by the column it is compared with.
    pub fn literal(v: &toml::Value, cs: &ColumnSchema, ids: &Interner) -> Scalar {
        use toml::Value as T;
        match (cs.ty, v) {
            (ColumnType::Id, T::String(s)) => ids.get(s).map_or_else(|| Scalar::str(s), Scalar::Id),
            (ColumnType::Date | ColumnType::Datetime, T::String(s)) => {
                crate::policy::parse_date(s).map_or(Scalar::None, Scalar::Date)
            }
            (ColumnType::Date | ColumnType::Datetime, T::Datetime(d)) => {
                crate::policy::parse_date(&d.to_string()).map_or(Scalar::None, Scalar::Date)
            }
            (_, T::String(s)) => Scalar::str(s),
            (_, T::Boolean(b)) => Scalar::Bool(*b),
            (_, T::Integer(i)) => Scalar::Int(*i),
            (_, T::Float(f)) => Scalar::Num(*f),
            (_, T::Datetime(d)) => {
                crate::policy::parse_date(&d.to_string()).map_or(Scalar::None, Scalar::Date)
            }
            _ => Scalar::None,
        }
    }

    /// The text of a scalar that is text-like (ids, texts, enum names).
    pub fn text<'b>(&'b self, s: &'b Scalar) -> Option<&'b str> {
        match s {
            Scalar::Str(s) => Some(s),
            other => self.data_text(other),
        }
    }

    /// The text of an id, text cell or enum value, borrowed from the data or the policy
    /// (`None` for other scalars, including [`Scalar::Str`]).
    pub fn data_text(&self, s: &Scalar) -> Option<&'a str> {
        match s {
            Scalar::Id(i) => Some(self.data.ids.resolve(*i)),
            Scalar::TextRef(t, c, r) => match &self.tables[*t as usize].columns[*c as usize] {
                ColumnData::Text(v) => Some(v.get(*r as usize)),
                _ => None,
            },
            Scalar::Enum(t, c, i) => self
                .policy
                .schema
                .tables
                .get_index(*t as usize)
                .and_then(|(_, ts)| ts.columns.get(*c as usize))
                .and_then(|cs| cs.values.get(*i as usize))
                .map(|(k, _)| k.as_str()),
            _ => None,
        }
    }

    /// Whether `a` and `b` are the same value; a missing value equals nothing.
    pub fn equal(&self, a: &Scalar, b: &Scalar) -> bool {
        match (a, b) {
            (Scalar::None, _) | (_, Scalar::None) => false,
            (Scalar::Id(x), Scalar::Id(y)) => x == y,
            (Scalar::Enum(t1, c1, x), Scalar::Enum(t2, c2, y)) if t1 == t2 && c1 == c2 => x == y,
            _ => self.compare(a, b) == Some(Ordering::Equal),
        }
    }

    /// The order of `a` and `b`: dates with date-times by day, numbers with whole numbers,
    /// text-like values by their text; `None` when either is missing or they do not compare.
    pub fn compare(&self, a: &Scalar, b: &Scalar) -> Option<Ordering> {
        use Scalar::*;
        match (a, b) {
            (None, _) | (_, None) => Option::None,
            (Date(x), Date(y)) => Some(x.cmp(y)),
            (DateTime(x), DateTime(y)) => Some(x.cmp(y)),
            (DateTime(x), Date(y)) => Some(x.date().cmp(y)),
            (Date(x), DateTime(y)) => Some(x.cmp(&y.date())),
            (Num(x), Num(y)) => x.partial_cmp(y),
            (Int(x), Int(y)) => Some(x.cmp(y)),
            (Num(x), Int(y)) => x.partial_cmp(&(*y as f64)),
            (Int(x), Num(y)) => (*x as f64).partial_cmp(y),
            (Bool(x), Bool(y)) => Some(x.cmp(y)),
            _ => match (self.text(a), self.text(b)) {
                (Some(x), Some(y)) => Some(x.cmp(y)),
                _ => Option::None,
            },
        }
    }

    /// As a Rhai value: dates become `YYYY-MM-DD` strings, missing becomes `()`.
    pub fn to_dynamic(&self, s: &Scalar) -> Dynamic {
        match s {
            Scalar::None => Dynamic::UNIT,
            Scalar::Date(d) => Dynamic::from(ImmutableString::from(crate::dates::date_text(*d))),
            Scalar::DateTime(d) => {
                Dynamic::from(ImmutableString::from(crate::dates::datetime_text(*d)))
            }
            Scalar::Bool(b) => Dynamic::from(*b),
            Scalar::Num(x) => Dynamic::from(*x),
            Scalar::Int(i) => Dynamic::from(*i),
            other => self
                .text(other)
                .map_or(Dynamic::UNIT, |t| Dynamic::from(ImmutableString::from(t))),
        }
    }

    /// The table at schema index `i`.
    pub fn table(&self, i: usize) -> &'a Table {
        self.tables[i]
    }
}
