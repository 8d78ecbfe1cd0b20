//! Qt resource bundles (`.rcc`, versions 1–3): the format Debian's `gcompris-qt-data` stores
//! its photographs in. Every read is bounds-checked; a corrupt bundle is an error, never a
//! panic or an allocation larger than the bundle.
//!
//! ```text
//! header   b"qres", u32 version, u32 tree offset, u32 data offset, u32 names offset
//!          (version >= 3: u32 flags); all integers big-endian
//! node     u32 name offset, u16 flags (1 zlib, 2 directory, 4 zstd), then
//!          directory: u32 child count, u32 first child index
//!          file:      u16 country, u16 language, u32 data offset
//!          (version >= 2: u64 modification time); 14 bytes a node in v1, 22 from v2
//! name     u16 length in UTF-16 units, u32 hash, UTF-16BE characters
//! data     u32 size, bytes (zlib: u32 uncompressed size, then a zlib stream)
//! ```

use std::io::Read;

const FLAG_ZLIB: u16 = 1;
const FLAG_DIR: u16 = 2;
const FLAG_ZSTD: u16 = 4;
/// Deepest directory nesting followed.
const MAX_DEPTH: usize = 32;
/// Largest entry inflated (a bundle's photo is a few MB).
const MAX_ENTRY: usize = 64 << 20;

/// A problem with a bundle, named for the caller's one-line error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RccError {
    /// Not a Qt resource bundle.
    #[error("not a Qt resource bundle (bad magic)")]
    BadMagic,
    /// A version this parser does not know.
    #[error("rcc version {0} is not supported (1 to 3 are)")]
    Version(u32),
    /// An offset or length points outside the bundle.
    #[error("truncated or corrupt bundle ({0} out of range)")]
    OutOfRange(&'static str),
    /// A directory tree deeper than the parser follows, or with a cycle.
    #[error("directory tree too deep or cyclic")]
    Tree,
    /// A zlib entry that does not inflate to its declared size.
    #[error("entry {0}: corrupt zlib data")]
    Zlib(String),
    /// A zstd-compressed entry (Qt 5.13+), which this build does not inflate.
    #[error("entry {0}: zstd-compressed entries are not supported")]
    Zstd(String),
}

/// A parsed bundle borrowing its bytes.
pub struct Rcc<'a> {
    bytes: &'a [u8],
    version: u32,
    tree: usize,
    data: usize,
    names: usize,
}

fn be_u16(b: &[u8], at: usize, what: &'static str) -> Result<u16, RccError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(RccError::OutOfRange(what))
}

fn be_u32(b: &[u8], at: usize, what: &'static str) -> Result<u32, RccError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(RccError::OutOfRange(what))
}

impl<'a> Rcc<'a> {
    /// Parses the header of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, RccError> {
        if bytes.get(..4) != Some(b"qres") {
            return Err(RccError::BadMagic);
        }
        let version = be_u32(bytes, 4, "header")?;
        if !(1..=3).contains(&version) {
            return Err(RccError::Version(version));
        }
        let tree = be_u32(bytes, 8, "header")? as usize;
        let data = be_u32(bytes, 12, "header")? as usize;
        let names = be_u32(bytes, 16, "header")? as usize;
        for (o, what) in [(tree, "tree"), (data, "data"), (names, "names")] {
            if o > bytes.len() {
                return Err(RccError::OutOfRange(what));
            }
        }
        Ok(Rcc {
            bytes,
            version,
            tree,
            data,
            names,
        })
    }

    fn node_size(&self) -> usize {
        if self.version >= 2 {
            22
        } else {
            14
        }
    }

    fn name(&self, offset: u32) -> Result<String, RccError> {
        let at = self
            .names
            .checked_add(offset as usize)
            .ok_or(RccError::OutOfRange("name"))?;
        let len = be_u16(self.bytes, at, "name")? as usize;
        let chars = self
            .bytes
            .get(at + 6..at + 6 + 2 * len)
            .ok_or(RccError::OutOfRange("name"))?;
        let units: Vec<u16> = chars
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        Ok(String::from_utf16_lossy(&units))
    }

    /// Every file in the bundle: (path inside it, e.g. `gcompris/src/…/dog.webp`, node index).
    pub fn files(&self) -> Result<Vec<(String, usize)>, RccError> {
        let mut out = Vec::new();
        let mut visited = 0usize;
        self.walk(0, String::new(), 0, &mut out, &mut visited)?;
        Ok(out)
    }

    fn walk(
        &self,
        node: usize,
        prefix: String,
        depth: usize,
        out: &mut Vec<(String, usize)>,
        visited: &mut usize,
    ) -> Result<(), RccError> {
        *visited += 1;
        if depth > MAX_DEPTH || *visited > self.bytes.len() / self.node_size() + 1 {
            return Err(RccError::Tree);
        }
        let at = self.tree + node * self.node_size();
        let flags = be_u16(self.bytes, at + 4, "node")?;
        if flags & FLAG_DIR == 0 {
            out.push((prefix, node));
            return Ok(());
        }
        let count = be_u32(self.bytes, at + 6, "node")? as usize;
        let first = be_u32(self.bytes, at + 10, "node")? as usize;
        if count > self.bytes.len() / self.node_size() {
            return Err(RccError::OutOfRange("directory"));
        }
        for child in first..first.saturating_add(count) {
            let cat = self.tree + child * self.node_size();
            let name = self.name(be_u32(self.bytes, cat, "node")?)?;
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            self.walk(child, path, depth + 1, out, visited)?;
        }
        Ok(())
    }

    /// The contents of file node `node` (`name` only labels errors), inflated if compressed.
    pub fn read(&self, node: usize, name: &str) -> Result<Vec<u8>, RccError> {
        let at = self.tree + node * self.node_size();
        let flags = be_u16(self.bytes, at + 4, "node")?;
        if flags & FLAG_ZSTD != 0 {
            return Err(RccError::Zstd(name.into()));
        }
        let offset = be_u32(self.bytes, at + 10, "node")? as usize;
        let d = self
            .data
            .checked_add(offset)
            .ok_or(RccError::OutOfRange("data"))?;
        let size = be_u32(self.bytes, d, "data")? as usize;
        let raw = self
            .bytes
            .get(d + 4..d + 4 + size)
            .ok_or(RccError::OutOfRange("data"))?;
        if flags & FLAG_ZLIB == 0 {
            return Ok(raw.to_vec());
        }
        let full = be_u32(raw, 0, "zlib size")? as usize;
        if full > MAX_ENTRY {
            return Err(RccError::Zlib(name.into()));
        }
        let mut out = Vec::with_capacity(full);
        flate2::read::ZlibDecoder::new(raw.get(4..).unwrap_or(&[]))
            .take(full as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|_| RccError::Zlib(name.into()))?;
        if out.len() != full {
            return Err(RccError::Zlib(name.into()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A version 2 bundle: root/{a.txt (stored), d/{b.bin (zlib)}}.
    fn bundle() -> Vec<u8> {
        let mut names = Vec::new();
        let mut name_at = |s: &str| {
            let at = names.len() as u32;
            let u: Vec<u16> = s.encode_utf16().collect();
            names.extend_from_slice(&(u.len() as u16).to_be_bytes());
            names.extend_from_slice(&0u32.to_be_bytes());
            for c in u {
                names.extend_from_slice(&c.to_be_bytes());
            }
            at
        };
        let (na, nd, nb) = (name_at("a.txt"), name_at("d"), name_at("b.bin"));
        let mut data = Vec::new();
        let a_at = data.len() as u32;
        data.extend_from_slice(&5u32.to_be_bytes());
        data.extend_from_slice(b"hello");
        let b_at = data.len() as u32;
        let plain: Vec<u8> = (0..1000u32).map(|i| (i % 7) as u8).collect();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&plain).unwrap();
        let z = z.finish().unwrap();
        data.extend_from_slice(&(z.len() as u32 + 4).to_be_bytes());
        data.extend_from_slice(&(plain.len() as u32).to_be_bytes());
        data.extend_from_slice(&z);
        let node_dir = |name: u32, count: u32, first: u32| {
            let mut n = Vec::new();
            n.extend_from_slice(&name.to_be_bytes());
            n.extend_from_slice(&FLAG_DIR.to_be_bytes());
            n.extend_from_slice(&count.to_be_bytes());
            n.extend_from_slice(&first.to_be_bytes());
            n.resize(22, 0);
            n
        };
        let node_file = |name: u32, flags: u16, at: u32| {
            let mut n = Vec::new();
            n.extend_from_slice(&name.to_be_bytes());
            n.extend_from_slice(&flags.to_be_bytes());
            n.extend_from_slice(&[0; 4]);
            n.extend_from_slice(&at.to_be_bytes());
            n.resize(22, 0);
            n
        };
        let mut tree = Vec::new();
        tree.extend(node_dir(0, 2, 1)); // root
        tree.extend(node_file(na, 0, a_at));
        tree.extend(node_dir(nd, 1, 3));
        tree.extend(node_file(nb, FLAG_ZLIB, b_at));
        let mut out = b"qres".to_vec();
        out.extend_from_slice(&2u32.to_be_bytes());
        let t = 20u32;
        let d = t + tree.len() as u32;
        let n = d + data.len() as u32;
        for v in [t, d, n] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend(tree);
        out.extend(data);
        out.extend(names);
        out
    }

    #[test]
    fn lists_and_reads_stored_and_zlib_entries() {
        let b = bundle();
        let r = Rcc::parse(&b).unwrap();
        let files = r.files().unwrap();
        let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["a.txt", "d/b.bin"]);
        assert_eq!(r.read(files[0].1, "a").unwrap(), b"hello");
        let b2 = r.read(files[1].1, "b").unwrap();
        assert_eq!(b2.len(), 1000);
        assert_eq!(b2[8], 1);
    }

    #[test]
    fn corrupt_bundles_are_errors() {
        let b = bundle();
        assert!(matches!(Rcc::parse(b"qre"), Err(RccError::BadMagic)));
        let mut v = b.clone();
        v[7] = 9;
        assert!(matches!(Rcc::parse(&v), Err(RccError::Version(9))));
        // Every truncation either parses to fewer/partial results or errors, never panics.
        for cut in 0..b.len() {
            if let Ok(r) = Rcc::parse(&b[..cut]) {
                if let Ok(files) = r.files() {
                    for (p, n) in files {
                        let _ = r.read(n, &p);
                    }
                }
            }
        }
        // Every single-byte corruption likewise.
        for i in 0..b.len() {
            let mut v = b.clone();
            v[i] ^= 0xA5;
            if let Ok(r) = Rcc::parse(&v) {
                if let Ok(files) = r.files() {
                    for (p, n) in files {
                        let _ = r.read(n, &p);
                    }
                }
            }
        }
        // A directory that contains itself.
        let mut v = b.clone();
        v[20 + 10..20 + 14].copy_from_slice(&0u32.to_be_bytes());
        assert!(matches!(
            Rcc::parse(&v).unwrap().files(),
            Err(RccError::Tree)
        ));
    }
}
