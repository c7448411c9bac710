//! Parquet input: a `NAME.parquet` file is a table like `NAME.csv`. Its cells are turned into
//! the text a CSV export would hold (dates `2020-02-07`, date-times `2020-02-07 09:30:00`,
//! numbers in decimal, null as an empty cell) and go through the same checks, so a Parquet
//! table is validated and accounted for row by row exactly like a CSV table. Row numbers are
//! the Parquet row index, counted from 0 (as DuckDB, Polars and pandas count).

use super::{Row, TableSink};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchReader};
use arrow_schema::{DataType, TimeUnit};
use std::path::Path;

/// Rows converted at a time.
const BATCH: usize = 64 * 1024;

/// Stream the rows of a Parquet file into `sink`.
pub fn read_parquet_into<S: TableSink>(path: &Path, sink: &mut S) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = super::guarded(
        || "the file cannot be read as Parquet: it is damaged".to_string(),
        || {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(BATCH).build())
                .map_err(|e| format!("cannot read as a Parquet file: {e}"))
        },
    )?;
    let header: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().trim().to_string())
        .collect();
    sink.header(&header, 0, "Parquet", false)?;
    let mut index: u64 = 0;
    let mut batches = reader;
    let sink_ref: &S = sink;
    loop {
        let next = super::guarded(
            || format!("the file cannot be read as Parquet after row {index}: it is damaged"),
            || Ok(batches.next()),
        )?;
        let Some(batch) = next else { break };
        let batch = batch.map_err(|e| format!("cannot read Parquet rows from row {index}: {e}"))?;
        let cells = columns_as_text(&batch)?;
        let mut piece = sink_ref.piece(batch.num_rows());
        for r in 0..batch.num_rows() {
            let line = u32::try_from(index + r as u64)
                .map_err(|_| "more than 4,294,967,295 rows in one file".to_string())?;
            let fields: Vec<&str> = cells.iter().map(|c| c[r].as_str()).collect();
            // A row of only empty cells holds nothing: skipped like a blank CSV line.
            if fields.iter().all(|f| f.is_empty()) {
                continue;
            }
            sink_ref.row(
                &mut piece,
                Row {
                    line,
                    fields: &fields,
                    problem: None,
                },
            );
        }
        sink_ref.absorb(piece);
        index += batch.num_rows() as u64;
    }
    sink_ref.progress(size);
    Ok(())
}

/// Every column of a batch as the text of each row.
fn columns_as_text(batch: &RecordBatch) -> Result<Vec<Vec<String>>, String> {
    batch
        .columns()
        .iter()
        .zip(batch.schema().fields())
        .map(|(a, f)| column_text(a).map_err(|e| format!("column `{}`: {e}", f.name())))
        .collect()
}

/// One column as text, row by row (null: empty).
fn column_text(a: &ArrayRef) -> Result<Vec<String>, String> {
    let n = a.len();
    let mut out = Vec::with_capacity(n);
    let each = |out: &mut Vec<String>, f: &dyn Fn(usize) -> String| {
        for i in 0..n {
            out.push(if a.is_null(i) { String::new() } else { f(i) });
        }
    };
    match a.data_type() {
        DataType::Utf8 => each(&mut out, &|i| {
            a.as_string::<i32>().value(i).trim().to_string()
        }),
        DataType::LargeUtf8 => each(&mut out, &|i| {
            a.as_string::<i64>().value(i).trim().to_string()
        }),
        DataType::Utf8View => each(&mut out, &|i| {
            a.as_string_view().value(i).trim().to_string()
        }),
        DataType::Float32 | DataType::Float64 | DataType::Float16 => {
            let f = arrow_cast::cast(a, &DataType::Float64).map_err(|e| e.to_string())?;
            let f = f.as_primitive::<arrow_array::types::Float64Type>();
            each(&mut out, &|i| number_text(f.value(i)));
        }
        DataType::Date32 => {
            let d = a.as_primitive::<Date32Type>();
            each(&mut out, &|i| {
                d.value_as_date(i)
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default()
            });
        }
        DataType::Date64 => {
            let d = a.as_primitive::<Date64Type>();
            each(&mut out, &|i| {
                d.value_as_date(i)
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default()
            });
        }
        DataType::Timestamp(unit, tz) => {
            // A zone-less timestamp is a local date-time; one with a zone is shown in it.
            let tz: Option<arrow_array::timezone::Tz> = match tz {
                None => None,
                Some(z) => Some(z.parse().map_err(|_| {
                    format!("time zone `{z}` is not one rulebook knows; export local date-times without a zone")
                })?),
            };
            macro_rules! stamps {
                ($t:ty) => {{
                    let d = a.as_primitive::<$t>();
                    each(&mut out, &|i| {
                        let local = match &tz {
                            None => d.value_as_datetime(i),
                            Some(z) => d.value_as_datetime_with_tz(i, *z).map(|t| t.naive_local()),
                        };
                        local
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_default()
                    });
                }};
            }
            match unit {
                TimeUnit::Second => stamps!(TimestampSecondType),
                TimeUnit::Millisecond => stamps!(TimestampMillisecondType),
                TimeUnit::Microsecond => stamps!(TimestampMicrosecondType),
                TimeUnit::Nanosecond => stamps!(TimestampNanosecondType),
            }
        }
        _ => {
            // Integers, booleans, decimals, dictionaries and the rest: Arrow's own display.
            let opts = arrow_cast::display::FormatOptions::default();
            let fmt = arrow_cast::display::ArrayFormatter::try_new(a.as_ref(), &opts)
                .map_err(|e| format!("cannot be read as text: {e}"))?;
            each(&mut out, &|i| fmt.value(i).to_string().trim().to_string());
        }
    }
    Ok(out)
}

/// A floating-point cell as a CSV export writes it: whole numbers without a fraction.
fn number_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}
