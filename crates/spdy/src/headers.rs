//! Name/value header blocks (draft 3.1 §2.6.10) and their zlib compression.
//!
//! A block is `u32 count` then, per header, `u32 len, name, u32 len, value`;
//! several values of one name travel as one NUL-separated value. Each
//! direction of a connection keeps *one* zlib stream, primed with the SPDY/3
//! dictionary and SYNC_FLUSHed after every block, so the compressor and the
//! decompressor must see every block in wire order: a lost or half-processed
//! block corrupts all later ones (hence those failures are session errors).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::{Error, Result};

/// The zlib dictionary that primes both header compression contexts,
/// written out from the SPDY/3 draft (§2.6.10.1): 65 length-prefixed header
/// names and tokens followed by a run of common status codes and values.
pub const SPDY3_DICTIONARY: &[u8; 1423] = b"\
\x00\x00\x00\x07options\
\x00\x00\x00\x04head\
\x00\x00\x00\x04post\
\x00\x00\x00\x03put\
\x00\x00\x00\x06delete\
\x00\x00\x00\x05trace\
\x00\x00\x00\x06accept\
\x00\x00\x00\x0eaccept-charset\
\x00\x00\x00\x0faccept-encoding\
\x00\x00\x00\x0faccept-language\
\x00\x00\x00\x0daccept-ranges\
\x00\x00\x00\x03age\
\x00\x00\x00\x05allow\
\x00\x00\x00\x0dauthorization\
\x00\x00\x00\x0dcache-control\
\x00\x00\x00\x0aconnection\
\x00\x00\x00\x0ccontent-base\
\x00\x00\x00\x10content-encoding\
\x00\x00\x00\x10content-language\
\x00\x00\x00\x0econtent-length\
\x00\x00\x00\x10content-location\
\x00\x00\x00\x0bcontent-md5\
\x00\x00\x00\x0dcontent-range\
\x00\x00\x00\x0ccontent-type\
\x00\x00\x00\x04date\
\x00\x00\x00\x04etag\
\x00\x00\x00\x06expect\
\x00\x00\x00\x07expires\
\x00\x00\x00\x04from\
\x00\x00\x00\x04host\
\x00\x00\x00\x08if-match\
\x00\x00\x00\x11if-modified-since\
\x00\x00\x00\x0dif-none-match\
\x00\x00\x00\x08if-range\
\x00\x00\x00\x13if-unmodified-since\
\x00\x00\x00\x0dlast-modified\
\x00\x00\x00\x08location\
\x00\x00\x00\x0cmax-forwards\
\x00\x00\x00\x06pragma\
\x00\x00\x00\x12proxy-authenticate\
\x00\x00\x00\x13proxy-authorization\
\x00\x00\x00\x05range\
\x00\x00\x00\x07referer\
\x00\x00\x00\x0bretry-after\
\x00\x00\x00\x06server\
\x00\x00\x00\x02te\
\x00\x00\x00\x07trailer\
\x00\x00\x00\x11transfer-encoding\
\x00\x00\x00\x07upgrade\
\x00\x00\x00\x0auser-agent\
\x00\x00\x00\x04vary\
\x00\x00\x00\x03via\
\x00\x00\x00\x07warning\
\x00\x00\x00\x10www-authenticate\
\x00\x00\x00\x06method\
\x00\x00\x00\x03get\
\x00\x00\x00\x06status\
\x00\x00\x00\x06200 OK\
\x00\x00\x00\x07version\
\x00\x00\x00\x08HTTP/1.1\
\x00\x00\x00\x03url\
\x00\x00\x00\x06public\
\x00\x00\x00\x0aset-cookie\
\x00\x00\x00\x0akeep-alive\
\x00\x00\x00\x06origin\
100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
203 Non-Authoritative Information\
204 No Content\
301 Moved Permanently\
400 Bad Request\
401 Unauthorized\
403 Forbidden\
404 Not Found\
500 Internal Server Error\
501 Not Implemented\
503 Service Unavailable\
Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 \
Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT\
chunked,text/html,image/png,image/jpg,image/gif,\
application/xml,application/xhtml+xml,text/plain,text/javascript,\
publicprivatemax-age=\
gzip,deflate,sdch\
charset=utf-8\
charset=iso-8859-1,utf-,*,enq=0.";

/// Default cap on one decompressed header block.
pub const DEFAULT_MAX_HEADER_BLOCK: usize = 256 * 1024;

/// An ordered list of header name/value pairs. Names are stored lowercase
/// (SPDY requires it); a name may repeat to carry several values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value, keeping any existing values of `name`.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let mut name = name.into();
        name.make_ascii_lowercase();
        self.entries.push((name, value.into()));
    }

    /// Sets `name` to exactly one value, replacing earlier ones.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let mut name = name.into();
        name.make_ascii_lowercase();
        self.entries.retain(|(n, _)| *n != name);
        self.entries.push((name, value.into()));
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of `name` in order (case-insensitive).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Serializes the (uncompressed) block. Values of a repeated name are
    /// joined with NUL in first-seen order.
    pub fn to_block(&self) -> Result<Vec<u8>> {
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for (name, value) in &self.entries {
            if name.is_empty() || name.contains('\0') {
                return Err(Error::InvalidFrame(format!("invalid header name {name:?}")));
            }
            if value.contains('\0') {
                return Err(Error::InvalidFrame(format!(
                    "header {name} value contains NUL"
                )));
            }
            match groups.iter_mut().find(|(n, _)| n == name) {
                Some((_, values)) => values.push(value),
                None => groups.push((name, vec![value])),
            }
        }
        let mut out = Vec::with_capacity(4 + self.entries.len() * 16);
        put_len(&mut out, groups.len())?;
        for (name, values) in groups {
            if values.len() > 1 && values.iter().any(|v| v.is_empty()) {
                return Err(Error::InvalidFrame(format!(
                    "header {name}: an empty value cannot be combined with others"
                )));
            }
            put_len(&mut out, name.len())?;
            out.extend_from_slice(name.as_bytes());
            let joined = values.join("\0");
            put_len(&mut out, joined.len())?;
            out.extend_from_slice(joined.as_bytes());
        }
        Ok(out)
    }

    /// Parses a decompressed block. Content errors are reported as `Err(reason)`
    /// so the caller can turn them into a stream error (PROTOCOL_ERROR).
    pub fn from_block(block: &[u8]) -> Result<Headers, String> {
        let mut cur = block;
        let count = take_u32(&mut cur)? as usize;
        // Each pair needs at least 8 bytes: refuse absurd counts before allocating.
        if count > cur.len() / 8 {
            return Err(format!("header count {count} exceeds the block size"));
        }
        let mut headers = Headers::new();
        for _ in 0..count {
            let name = take_str(&mut cur)?;
            if name.is_empty() {
                return Err("zero-length header name".into());
            }
            if name.bytes().any(|b| b.is_ascii_uppercase() || b == 0) {
                return Err(format!("header name {name:?} is not lowercase"));
            }
            if headers.entries.iter().any(|(n, _)| *n == name) {
                return Err(format!("duplicate header {name}"));
            }
            let value = take_str(&mut cur)?;
            if value.is_empty() {
                headers.entries.push((name, value));
                continue;
            }
            for part in value.split('\0') {
                if part.is_empty() {
                    return Err(format!("header {name} has an empty NUL-separated value"));
                }
                headers.entries.push((name.clone(), part.to_string()));
            }
        }
        if !cur.is_empty() {
            return Err(format!("{} trailing bytes after header block", cur.len()));
        }
        Ok(headers)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        for (k, v) in iter {
            headers.append(k, v);
        }
        headers
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<()> {
    let len = u32::try_from(len)
        .map_err(|_| Error::InvalidFrame(format!("header field of {len} bytes is too long")))?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

fn take_u32(cur: &mut &[u8]) -> Result<u32, String> {
    let Some((head, rest)) = cur.split_first_chunk::<4>() else {
        return Err("truncated header block".into());
    };
    *cur = rest;
    Ok(u32::from_be_bytes(*head))
}

fn take_str(cur: &mut &[u8]) -> Result<String, String> {
    let len = take_u32(cur)? as usize;
    if len > cur.len() {
        return Err(format!("header field length {len} exceeds the block"));
    }
    let (field, rest) = cur.split_at(len);
    *cur = rest;
    String::from_utf8(field.to_vec()).map_err(|_| "header field is not UTF-8".to_string())
}

/// Outgoing zlib context: one per connection direction.
pub struct HeaderEncoder {
    zlib: Compress,
}

impl HeaderEncoder {
    /// Level 9 and a 32 KiB window, as Go's SPDY framer (the kubelet's peer) uses.
    pub fn new() -> Result<Self> {
        let mut zlib = Compress::new(Compression::best(), true);
        zlib.set_dictionary(SPDY3_DICTIONARY)
            .map_err(|e| Error::Compression(e.to_string()))?;
        Ok(Self { zlib })
    }

    /// Compresses one serialized block and SYNC_FLUSHes, appending to `out`.
    pub fn compress(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let mut input = block;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(block.len() / 2 + 256);
            }
            let before_in = self.zlib.total_in();
            self.zlib
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|e| Error::Compression(e.to_string()))?;
            input = advance(input, self.zlib.total_in() - before_in);
            // zlib has finished the flush once it stops short of filling the output.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }
}

fn advance(input: &[u8], consumed: u64) -> &[u8] {
    let n = usize::try_from(consumed)
        .unwrap_or(usize::MAX)
        .min(input.len());
    &input[n..]
}

/// Incoming zlib context: one per connection direction, with an output cap.
pub struct HeaderDecoder {
    zlib: Decompress,
    max_block: usize,
}

impl HeaderDecoder {
    pub fn new(max_block: usize) -> Self {
        Self {
            zlib: Decompress::new(true),
            max_block,
        }
    }

    /// Decompresses one block's bytes (the whole compressed section of a frame).
    /// Output beyond the cap is an error (a decompression bomb must not make us
    /// allocate more than `max_block + 1` bytes).
    pub fn decompress(&mut self, mut input: &[u8]) -> Result<Vec<u8>> {
        let cap = self.max_block.saturating_add(1);
        let too_large = || Error::HeaderBlockTooLarge {
            limit: self.max_block,
        };
        let mut out = Vec::with_capacity(input.len().saturating_mul(4).clamp(256, cap));
        loop {
            if out.len() == out.capacity() {
                if out.len() >= cap {
                    return Err(too_large());
                }
                let target = out.len().saturating_mul(2).clamp(1024, cap);
                out.reserve_exact(target - out.len());
            }
            let before_in = self.zlib.total_in();
            let before_out = out.len();
            match self
                .zlib
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(status) => {
                    let consumed = self.zlib.total_in() - before_in;
                    input = advance(input, consumed);
                    if out.len() > self.max_block {
                        return Err(too_large());
                    }
                    let room_left = out.len() < out.capacity();
                    if input.is_empty() && room_left {
                        return Ok(out);
                    }
                    if matches!(status, Status::StreamEnd) && !input.is_empty() {
                        return Err(Error::Compression(
                            "data after the end of the zlib stream".into(),
                        ));
                    }
                    if consumed == 0 && out.len() == before_out && room_left {
                        return Err(Error::Compression("zlib stream is stuck".into()));
                    }
                }
                Err(e) => match e.needs_dictionary() {
                    Some(_) => {
                        input = advance(input, self.zlib.total_in() - before_in);
                        self.zlib
                            .set_dictionary(SPDY3_DICTIONARY)
                            .map_err(|e| Error::Compression(format!("dictionary rejected: {e}")))?;
                    }
                    None => return Err(Error::Compression(e.to_string())),
                },
            }
        }
    }
}
