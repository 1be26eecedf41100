//! Result formats of `podtrail sql`: table (people), csv, json, ndjson (pipes),
//! parquet (the lake). Timestamps are UTC RFC 3339 in every text format.

use std::io::Write;

use arrow::datatypes::SchemaRef;
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
                w.write(&RecordBatch::new_empty(schema.clone())).map_err(|e| e.to_string())?;
            }
            for b in batches {
                w.write(b).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(out);
            for b in batches {
                w.write(b).map_err(|e| e.to_string())?;
            }
            w.finish().map_err(|e| e.to_string())?;
            // An empty result is `[]`, not nothing.
            if batches.iter().all(|b| b.num_rows() == 0) {
                let out = w.into_inner();
                out.write_all(b"[]").map_err(|e| e.to_string())?;
                return out.write_all(b"\n").map_err(|e| e.to_string());
            }
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
