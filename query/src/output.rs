//! Result formats of `podtrail sql`: table (people), csv, json, ndjson (pipes),
//! parquet (the lake). Timestamps are UTC RFC 3339 in every text format.

use std::io::Write;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Ndjson,
    Parquet,
}

pub fn write(format: Format, schema: &SchemaRef, batches: &[RecordBatch], out: &mut dyn Write) -> Result<(), String> {
    match format {
        Format::Table => {
            let s = arrow::util::pretty::pretty_format_batches(batches).map_err(|e| e.to_string())?;
            writeln!(out, "{s}").map_err(|e| e.to_string())?;
            let n: usize = batches.iter().map(|b| b.num_rows()).sum();
            writeln!(out, "{n} row{}", if n == 1 { "" } else { "s" }).map_err(|e| e.to_string())
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(out);
            if batches.is_empty() {
                w.write(&flatten_nested(&RecordBatch::new_empty(schema.clone()))?).map_err(|e| e.to_string())?;
            }
            for b in batches {
                w.write(&flatten_nested(b)?).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(out);
            for b in batches {
                w.write(b).map_err(|e| e.to_string())?;
            }
            // An empty result is `[]` (finish writes it), not nothing.
            w.finish().map_err(|e| e.to_string())?;
            w.into_inner().write_all(b"\n").map_err(|e| e.to_string())
        }
        Format::Ndjson => {
            let mut w = arrow::json::LineDelimitedWriter::new(out);
            for b in batches {
                w.write(b).map_err(|e| e.to_string())?;
            }
            w.finish().map_err(|e| e.to_string())
        }
        Format::Parquet => {
            let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level"))).build();
            let mut buf = Vec::new();
            let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props)).map_err(|e| e.to_string())?;
            for b in batches {
                w.write(b).map_err(|e| e.to_string())?;
            }
            w.close().map_err(|e| e.to_string())?;
            out.write_all(&buf).map_err(|e| e.to_string())
        }
    }
}

/// CSV has no lists: a list of strings (e.g. `args`) becomes a JSON array, which
/// keeps arguments with spaces or commas unambiguous; other nested values use
/// Arrow's display form.
fn flatten_nested(batch: &RecordBatch) -> Result<RecordBatch, String> {
    if !batch.schema().fields().iter().any(|f| f.data_type().is_nested()) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
        if !f.data_type().is_nested() {
            fields.push(f.as_ref().clone());
            cols.push(col.clone());
            continue;
        }
        let mut b = StringBuilder::new();
        let strings = col.as_list_opt::<i32>().filter(|l| l.values().data_type() == &DataType::Utf8);
        let fmt = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default()).map_err(|e| e.to_string())?;
        for i in 0..col.len() {
            if col.is_null(i) {
                b.append_null();
            } else if let Some(l) = strings {
                let v = l.value(i);
                let items: Vec<Option<&str>> = v.as_string::<i32>().iter().collect();
                b.append_value(serde_json::to_string(&items).expect("strings serialize"));
            } else {
                b.append_value(fmt.value(i).to_string());
            }
        }
        fields.push(Field::new(f.name(), DataType::Utf8, true));
        cols.push(Arc::new(b.finish()));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| e.to_string())
}
