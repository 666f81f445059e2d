//! EVTX files, chunk by chunk.
//!
//! Each record is rendered to JSON by the `evtx` crate (`separate_json_attributes`, no
//! indentation), parsed back into a `serde_json::Value` and flattened by [`crate::windows`].
//! JSON rather than XML because it parses with the `serde_json` we already depend on (XML
//! would need an XML parser crate) and because the same flattening then also serves
//! evtx_dump-style JSON files. Measured on the 593 corpus files (24,661 records, release
//! build, one thread): rendering alone takes about 0.37 s, rendering + parsing + flattening
//! about 0.49 s, so the round trip through JSON costs about a quarter of the read time.
//!
//! With one thread the reader walks the chunks itself so it can check each chunk's CRC32 and
//! report a mismatch (the records are still read: a flipped byte in one string should not hide
//! the other hundred records of the chunk) and give every error a file offset. With more
//! threads it uses the crate's parallel pipeline; there `origin.offset` is the record's offset
//! inside its chunk (the pipeline does not say which chunk) and chunk CRCs are not checked.

use std::error::Error as StdError;
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek};
use std::sync::Arc;

use evtx::err::EvtxError;
use evtx::{EvtxParser, EvtxRecord, ParserSettings};
use mamori_event::{Event, Format, Interner};

use crate::input::GZIP_MAGIC;
use crate::{windows, Ctx, Error, Result};

const FILE_HEADER_SIZE: u64 = 4096;
const CHUNK_SIZE: u64 = 65536;
const RECORD_HEADER_SIZE: u64 = 24;
/// A gzip-compressed EVTX has to be decompressed into memory (the parser seeks); beyond this
/// size the user is asked to decompress it first.
const MAX_GZIP_EVTX: u64 = 512 * 1024 * 1024;

pub(crate) fn read(ctx: &mut Ctx<'_>) {
    let input: Box<dyn ReadSeekSend> = match open(ctx) {
        Ok(i) => i,
        Err(e) => {
            ctx.error(None, None, Some(0), e.to_string());
            return;
        }
    };
    let threads = ctx.opts.evtx_threads.max(1);
    let settings = ParserSettings::new()
        .separate_json_attributes(true)
        .indent(false)
        .num_threads(threads);
    let parser = match EvtxParser::from_read_seek(input) {
        Ok(p) => p.with_configuration(settings.clone()),
        Err(e) => {
            ctx.error(
                None,
                None,
                Some(0),
                format!("invalid EVTX file: {}", chain(&e)),
            );
            return;
        }
    };
    let declared = u64::from(parser.header().chunk_count);
    let data_len = ctx.report.bytes.saturating_sub(FILE_HEADER_SIZE);
    let whole_chunks = data_len / CHUNK_SIZE;
    let partial = data_len % CHUNK_SIZE;
    let settings = Arc::new(settings);
    if threads > 1 {
        read_parallel(ctx, parser);
    } else {
        read_chunks(ctx, parser, settings.clone());
    }
    if partial != 0 {
        // A file cut inside a chunk: the parser skips the piece; its complete records are read here.
        let offset = chunk_offset(whole_chunks);
        ctx.error(
            None,
            None,
            Some(offset),
            format!("file truncated: last chunk has {partial} of {CHUNK_SIZE} bytes"),
        );
        read_partial_chunk(ctx, whole_chunks, &settings);
    } else if declared > whole_chunks {
        ctx.error(
            None,
            None,
            Some(ctx.report.bytes),
            format!("file truncated: header lists {declared} chunks, file holds {whole_chunks}"),
        );
    }
}

/// Reads the records of a chunk cut short by truncation: the piece is padded with zeros to a
/// full chunk, so every record that is complete parses and the cut one is reported.
fn read_partial_chunk(ctx: &mut Ctx<'_>, number: u64, settings: &Arc<ParserSettings>) {
    let base = chunk_offset(number);
    let mut data = Vec::with_capacity(CHUNK_SIZE as usize);
    let read = File::open(&ctx.path).and_then(|mut f| {
        let mut magic = [0u8; 2];
        let n = f.read(&mut magic)?;
        if n == 2 && magic == GZIP_MAGIC {
            // Compressed input: not worth decompressing twice for the tail.
            return Ok(());
        }
        f.seek(std::io::SeekFrom::Start(base))?;
        f.take(CHUNK_SIZE).read_to_end(&mut data).map(|_| ())
    });
    if read.is_err() || data.len() < 512 {
        return;
    }
    data.resize(CHUNK_SIZE as usize, 0);
    let mut chunk_data = match evtx::EvtxChunkData::new(data, false) {
        Ok(c) => c,
        Err(e) => {
            ctx.error(
                None,
                None,
                Some(base),
                format!("chunk {number}: {}", chain(&e)),
            );
            return;
        }
    };
    let Ok(mut chunk) = chunk_data.parse(settings.clone()) else {
        return;
    };
    read_records(ctx, &mut chunk, number, base);
}

trait ReadSeekSend: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeekSend for T {}

fn open(ctx: &mut Ctx<'_>) -> Result<Box<dyn ReadSeekSend>> {
    let mut f = BufReader::with_capacity(CHUNK_SIZE as usize, File::open(&ctx.path)?);
    let len = f.get_ref().metadata()?.len();
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    f.rewind()?;
    if n == 2 && magic == GZIP_MAGIC {
        let mut buf = Vec::new();
        flate2::read::MultiGzDecoder::new(f)
            .take(MAX_GZIP_EVTX + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::Evtx(format!("gzip: {e}")))?;
        if buf.len() as u64 > MAX_GZIP_EVTX {
            return Err(Error::Evtx(format!(
                "gzip-compressed EVTX larger than {MAX_GZIP_EVTX} bytes: decompress it first"
            )));
        }
        ctx.report.bytes = buf.len() as u64;
        return Ok(Box::new(Cursor::new(buf)));
    }
    ctx.report.bytes = len;
    Ok(Box::new(f))
}

fn read_chunks(
    ctx: &mut Ctx<'_>,
    mut parser: EvtxParser<Box<dyn ReadSeekSend>>,
    settings: Arc<ParserSettings>,
) {
    for chunk in parser.chunks() {
        let mut data = match chunk {
            Ok(d) => d,
            Err(e) => {
                let offset = chunk_number(&e).map(chunk_offset);
                ctx.error(None, None, offset, chain(&e));
                continue;
            }
        };
        let number = data.number.unwrap_or(0);
        let base = chunk_offset(number);
        if !data.validate_checksum() {
            // Reported, not fatal: the records are usually fine and the evidence matters.
            ctx.error(
                None,
                None,
                Some(base),
                format!(
                    "chunk {number}: CRC32 mismatch, chunk damaged (its records are read anyway)"
                ),
            );
        }
        let mut chunk = match data.parse(settings.clone()) {
            Ok(c) => c,
            Err(e) => {
                ctx.error(
                    None,
                    None,
                    Some(base),
                    format!("chunk {number}: {}", chain(&e)),
                );
                continue;
            }
        };
        read_records(ctx, &mut chunk, number, base);
    }
}

/// The records of one parsed chunk. A panic inside the `evtx` crate (a bug there, on hostile
/// input) costs this chunk, not the process: it becomes an error and the next chunk is read.
fn read_records(ctx: &mut Ctx<'_>, chunk: &mut evtx::EvtxChunk<'_>, number: u64, base: u64) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for record in chunk.iter() {
            match record {
                Ok(r) => {
                    let id = r.event_record_id;
                    let offset = base + r.binxml_offset.saturating_sub(RECORD_HEADER_SIZE);
                    match render(r) {
                        Ok(json) => emit(ctx, json, id, offset),
                        Err(e) => ctx.error(None, Some(id), Some(offset), e.to_string()),
                    }
                }
                Err(e) => {
                    let (record, offset) = record_location(&e, base);
                    ctx.error(None, record, offset, chain(&e));
                }
            }
        }
    }));
    if outcome.is_err() {
        ctx.error(
            None,
            None,
            Some(base),
            format!("chunk {number}: the EVTX parser failed on this chunk; skipped"),
        );
    }
}

fn read_parallel(ctx: &mut Ctx<'_>, mut parser: EvtxParser<Box<dyn ReadSeekSend>>) {
    let records = parser.serialized_records(|r| {
        let r = r?;
        let offset = r.binxml_offset.saturating_sub(RECORD_HEADER_SIZE);
        let id = r.event_record_id;
        r.into_json().map(|s| (s.data, id, offset))
    });
    for r in records {
        match r {
            Ok((json, id, offset)) => emit(ctx, json, id, offset),
            Err(e) => {
                let (record, offset) = record_location(&e, 0);
                ctx.error(None, record, offset, chain(&e));
            }
        }
    }
}

fn render(r: EvtxRecord<'_>) -> Result<String> {
    r.into_json()
        .map(|s| s.data)
        .map_err(|e| Error::Evtx(chain(&e)))
}

fn emit(ctx: &mut Ctx<'_>, json: String, id: u64, offset: u64) {
    match evtx_json_to_event(json, ctx.origin(None, Some(id), offset), &mut ctx.names) {
        Ok(ev) => ctx.emit(ev),
        Err(e) => ctx.error(None, Some(id), Some(offset), e.to_string()),
    }
}

/// One rendered EVTX record (the `evtx` crate's JSON) to an event.
pub(crate) fn evtx_json_to_event(
    json: String,
    origin: mamori_event::Origin,
    names: &mut Interner,
) -> Result<Event> {
    let value: serde_json::Value = serde_json::from_str(&json)?;
    let mut ev = Event::new(Format::Evtx, origin, json.into_bytes());
    match value.get("Event") {
        Some(serde_json::Value::Object(e)) => windows::flatten_event(e, &mut ev, names),
        _ => return Err(Error::Evtx("record has no Event element".into())),
    }
    windows::add_windows_ecs(&mut ev, names);
    Ok(ev)
}

fn chunk_offset(number: u64) -> u64 {
    FILE_HEADER_SIZE.saturating_add(number.saturating_mul(CHUNK_SIZE))
}

fn chunk_number(e: &EvtxError) -> Option<u64> {
    match e {
        EvtxError::FailedToParseChunk { chunk_id, .. } => Some(*chunk_id),
        EvtxError::FailedToReadRecordAt { chunk, .. } => *chunk,
        _ => None,
    }
}

/// Record number and file offset an error names, as far as it does.
fn record_location(e: &EvtxError, chunk_base: u64) -> (Option<u64>, Option<u64>) {
    match e {
        EvtxError::FailedToParseRecord { record_id, .. } => (Some(*record_id), Some(chunk_base)),
        EvtxError::FailedToReadRecordAt { chunk, offset, .. } => {
            let base = chunk.map(chunk_offset).unwrap_or(chunk_base);
            (None, Some(base.saturating_add(*offset)))
        }
        EvtxError::FailedToParseChunk { chunk_id, .. } => (None, Some(chunk_offset(*chunk_id))),
        _ => (None, Some(chunk_base)),
    }
}

/// The error and its causes, `outer: inner: innermost`.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
