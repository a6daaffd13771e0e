//! The Avro object container file of replay files: `schemas/finding.avsc`
//! with a fixed header and sync marker, so the same findings give the same
//! bytes.

use crate::codec::avro::{self, AvroError};
use crate::model::finding::Finding;

/// The sync marker of driftwatch's container files: fixed, so the same
/// findings give the same bytes.
const OCF_MARKER: [u8; 16] = *b"driftwatch-ocf-1";

/// Avro's zig-zag variable-length `long`.
fn write_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    write_long(b.len() as i64, out);
    out.extend_from_slice(b);
}

/// An Avro object container file of `schemas/finding.avsc`, written by hand
/// so the header's metadata comes in a fixed order (apache-avro keeps it in
/// a hash map) and the bytes depend on the findings alone.
pub fn object_container(findings: &[Finding]) -> Result<Vec<u8>, AvroError> {
    let schema = avro::schema(avro::FINDING_SCHEMA);
    let mut out = b"Obj\x01".to_vec();
    write_long(2, &mut out);
    write_bytes(b"avro.codec", &mut out);
    write_bytes(b"null", &mut out);
    write_bytes(b"avro.schema", &mut out);
    write_bytes(avro::FINDING_SCHEMA.as_bytes(), &mut out);
    write_long(0, &mut out);
    out.extend_from_slice(&OCF_MARKER);
    for block in findings.chunks(1000) {
        let mut data = Vec::new();
        for f in block {
            data.extend(avro::encode_datum(&schema, f)?);
        }
        write_long(block.len() as i64, &mut out);
        write_bytes(&data, &mut out);
        out.extend_from_slice(&OCF_MARKER);
    }
    Ok(out)
}
