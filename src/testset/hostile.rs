//! A generated set of hostile inputs, each with what retouch must answer: image files built to
//! exhaust memory or confuse decoders (decompression bombs in every chunk kind the decoders
//! inflate, headers claiming billions of pixels, truncation, lies about the format), and
//! manifests built to break validation (deep nesting, huge numbers, non-finite floats, bytes that
//! are not UTF-8, writes over the run's own inputs).
//!
//! Files are built byte by byte here (chunks, checksums, headers), so each case is exactly the
//! attack it names; nothing is downloaded or committed. The integration tests run every case
//! through the binary; `bench/hostile.sh` measures peak memory over the image set.

use std::io::Write;

use image::{ImageBuffer, Rgb, RgbImage};

/// One hostile image and the report reason its rows must carry (`ok` for files that are
/// strange but valid and must be processed).
#[derive(Debug, Clone)]
pub struct HostileImage {
    /// File name, with the extension a user's glob would match.
    pub name: &'static str,
    pub bytes: Vec<u8>,
    /// The `reason` of its failed rows, or `ok`.
    pub expect: &'static str,
}

/// How big the bombs are: what their compressed payloads inflate to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BombSize(pub usize);

impl BombSize {
    /// The size of the campaign's bombs (400 MiB, from about 400 KB).
    pub const FULL: BombSize = BombSize(400 << 20);
    /// Enough to be refused and to show in memory, cheap enough for every test run.
    pub const TEST: BombSize = BombSize(48 << 20);
}

/// A plain product-like photo, valid in every way.
fn photo(w: u32, h: u32) -> RgbImage {
    ImageBuffer::from_fn(w, h, |x, y| {
        let inside = (x * 4 > w && x * 4 < 3 * w) && (y * 4 > h && y * 4 < 3 * h);
        if inside {
            Rgb([120, 60, 30])
        } else {
            Rgb([236, 234, 230])
        }
    })
}

fn encode(img: &RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode in memory");
    out.into_inner()
}

/// Every hostile image, bombs of `size`.
pub fn images(size: BombSize) -> Vec<HostileImage> {
    let mut all = png_cases(size);
    all.extend(jpeg_cases());
    all.extend(other_format_cases());
    all
}

fn case(name: &'static str, bytes: Vec<u8>, expect: &'static str) -> HostileImage {
    HostileImage {
        name,
        bytes,
        expect,
    }
}

fn png_cases(size: BombSize) -> Vec<HostileImage> {
    let small = || Png::rgb(32, 24);
    vec![
        case(
            "png-iccp-bomb.png",
            small().chunk(b"iCCP", &iccp(size.0)).finish(),
            "oversized-metadata",
        ),
        case(
            "png-ztxt-bomb.png",
            small().chunk(b"zTXt", &ztxt(size.0)).finish(),
            "ok",
        ),
        case(
            "png-itxt-bomb.png",
            small().chunk(b"iTXt", &itxt(size.0)).finish(),
            "ok",
        ),
        case(
            "png-many-text-chunks.png",
            (0..2_000)
                .fold(small(), |p, _| p.chunk(b"tEXt", &[b'k'; 4_096]))
                .finish(),
            "ok",
        ),
        case(
            "png-exif-huge.png",
            small().chunk(b"eXIf", &vec![0u8; 2 << 20]).finish(),
            "ok",
        ),
        case(
            "png-idat-bomb-over-limit.png",
            Png::zeros(40_000, 40_000).finish(),
            "too-large",
        ),
        case(
            "png-claims-2-31-pixels.png",
            Png::header_only(65_535, 65_535).finish(),
            "too-large",
        ),
        case(
            "png-zero-width.png",
            Png::header_only(0, 10).finish(),
            "corrupt-image",
        ),
        case(
            "png-bad-crc.png",
            bad_crc(small().finish()),
            "corrupt-image",
        ),
        case(
            "png-truncated.png",
            truncated(small().finish()),
            "corrupt-image",
        ),
        case("png-named-jpg.jpg", small().finish(), "ok"),
        case(
            "png-idat-zeros-within-limit.png",
            Png::zeros(2_000, 2_000).finish(),
            "ok",
        ),
    ]
}

fn jpeg_cases() -> Vec<HostileImage> {
    let jpg = encode(&photo(48, 32), image::ImageFormat::Jpeg);
    vec![
        case(
            "jpeg-claims-65500-square.jpg",
            jpeg_dims(&jpg, 65_500, 65_500),
            "too-large",
        ),
        case(
            "jpeg-icc-6mb.jpg",
            jpeg_icc(&jpg, 6 << 20),
            "oversized-metadata",
        ),
        case("jpeg-icc-200kb.jpg", jpeg_icc(&jpg, 200 << 10), "ok"),
        case("jpeg-truncated.jpg", truncated(jpg.clone()), "truncated"),
        case(
            "jpeg-soi-then-garbage.jpg",
            garbage_after(&jpg[..2], 4_096),
            "not-an-image",
        ),
        case("empty.jpg", Vec::new(), "empty-file"),
        case(
            "text-named.png",
            b"just some text, not a picture\n".to_vec(),
            "not-an-image",
        ),
        case(
            "html-named.webp",
            b"<html><body>hello</body></html>".to_vec(),
            "not-an-image",
        ),
    ]
}

fn other_format_cases() -> Vec<HostileImage> {
    vec![
        case(
            "gif-screen-65535.gif",
            gif_screen(65_535, 65_535),
            "too-large",
        ),
        case(
            "bmp-claims-60000.bmp",
            bmp_header(60_000, 60_000),
            "too-large",
        ),
        case(
            "tiff-claims-100000.tif",
            tiff_header(100_000, 100_000),
            "too-large",
        ),
        case(
            "webp-claims-16384.webp",
            webp_vp8l_header(16_384, 16_384),
            "too-large",
        ),
        case(
            "webp-iccp-6mb.webp",
            webp_with_iccp(&photo(32, 24), 6 << 20),
            "oversized-metadata",
        ),
        case(
            "webp-ok.webp",
            encode(&photo(40, 30), image::ImageFormat::WebP),
            "ok",
        ),
        case(
            "gif-ok.gif",
            encode(&photo(40, 30), image::ImageFormat::Gif),
            "ok",
        ),
    ]
}

/// A PNG written chunk by chunk.
struct Png {
    bytes: Vec<u8>,
    idat: Vec<u8>,
}

impl Png {
    fn with_header(w: u32, h: u32, colour_type: u8) -> Png {
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, colour_type, 0, 0, 0]);
        write_chunk(&mut bytes, b"IHDR", &ihdr);
        Png {
            bytes,
            idat: Vec::new(),
        }
    }

    /// A valid w×h RGB image (a light backdrop).
    fn rgb(w: u32, h: u32) -> Png {
        let row = 1 + 3 * w as usize;
        let mut raw = vec![200u8; row * h as usize];
        for y in 0..h as usize {
            raw[y * row] = 0; // filter: none
        }
        let mut png = Png::with_header(w, h, 2);
        png.idat = zlib(&raw);
        png
    }

    /// A greyscale w×h image of zeros: a few kilobytes that decode to w×h bytes.
    fn zeros(w: u32, h: u32) -> Png {
        let mut png = Png::with_header(w, h, 0);
        png.idat = zlib_zeros((1 + w as usize) * h as usize);
        png
    }

    /// A header and an empty image stream: all a decoder needs to learn the size.
    fn header_only(w: u32, h: u32) -> Png {
        let mut png = Png::with_header(w, h, 2);
        png.idat = zlib(&[]);
        png
    }

    fn chunk(mut self, tag: &[u8; 4], data: &[u8]) -> Png {
        write_chunk(&mut self.bytes, tag, data);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let idat = std::mem::take(&mut self.idat);
        write_chunk(&mut self.bytes, b"IDAT", &idat);
        write_chunk(&mut self.bytes, b"IEND", &[]);
        self.bytes
    }
}

fn write_chunk(out: &mut Vec<u8>, tag: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(tag);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("in memory");
    enc.finish().expect("in memory")
}

/// `n` zero bytes, zlib-compressed, without holding them in memory.
fn zlib_zeros(n: usize) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let take = left.min(block.len());
        enc.write_all(&block[..take]).expect("in memory");
        left -= take;
    }
    enc.finish().expect("in memory")
}

/// An iCCP chunk whose profile inflates to `n` bytes.
fn iccp(n: usize) -> Vec<u8> {
    let mut data = b"bomb\0\0".to_vec();
    data.extend(zlib_zeros(n));
    data
}

/// A zTXt chunk whose text inflates to `n` bytes.
fn ztxt(n: usize) -> Vec<u8> {
    let mut data = b"Comment\0\0".to_vec();
    data.extend(zlib_zeros(n));
    data
}

/// A compressed iTXt chunk whose text inflates to `n` bytes.
fn itxt(n: usize) -> Vec<u8> {
    // keyword, null, compression flag 1, method 0, empty language, null, empty translation, null
    let mut data = b"Description\0\x01\x00\0\0".to_vec();
    data.extend(zlib_zeros(n));
    data
}

fn bad_crc(mut png: Vec<u8>) -> Vec<u8> {
    // The IHDR CRC sits right after the 8-byte signature, 8-byte chunk head and 13 data bytes.
    png[8 + 8 + 13] ^= 0xFF;
    png
}

fn truncated(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() * 2 / 3);
    bytes
}

fn garbage_after(head: &[u8], n: usize) -> Vec<u8> {
    let mut out = head.to_vec();
    out.extend((0..n).map(|i| (i * 7919 % 251) as u8));
    out
}

/// `jpg` with its frame header (SOF0) claiming `w`×`h`.
fn jpeg_dims(jpg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = jpg.to_vec();
    let sof = out
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("baseline JPEG has SOF0");
    out[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    out
}

/// `jpg` with an ICC profile of `n` bytes in APP2 segments after SOI.
fn jpeg_icc(jpg: &[u8], n: usize) -> Vec<u8> {
    const PER_SEGMENT: usize = 65_000;
    let count = n.div_ceil(PER_SEGMENT);
    let mut out = jpg[..2].to_vec();
    for seq in 0..count {
        let len = PER_SEGMENT.min(n - seq * PER_SEGMENT);
        out.extend_from_slice(&[0xFF, 0xE2]);
        out.extend_from_slice(&((2 + 14 + len) as u16).to_be_bytes());
        out.extend_from_slice(b"ICC_PROFILE\0");
        out.extend_from_slice(&[(seq + 1) as u8, count as u8]);
        out.extend((0..len).map(|i| (i % 253) as u8));
    }
    out.extend_from_slice(&jpg[2..]);
    out
}

fn gif_screen(w: u16, h: u16) -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&w.to_le_bytes());
    out.extend_from_slice(&h.to_le_bytes());
    out.extend_from_slice(&[0x80, 0, 0]); // global colour table of 2 entries
    out.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    out.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0]); // one 1×1 frame
    out.extend_from_slice(&[2, 2, 0x44, 0x01, 0, 0x3B]);
    out
}

fn bmp_header(w: i32, h: i32) -> Vec<u8> {
    let mut out = b"BM".to_vec();
    out.extend_from_slice(&(54u32 + 16).to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&w.to_le_bytes());
    out.extend_from_slice(&h.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 24]);
    out.extend_from_slice(&[0; 16]);
    out
}

/// A little-endian TIFF whose one strip claims `w`×`h` 8-bit greyscale pixels.
fn tiff_header(w: u32, h: u32) -> Vec<u8> {
    let entries: [(u16, u16, u32); 8] = [
        (256, 4, w),   // ImageWidth
        (257, 4, h),   // ImageLength
        (258, 3, 8),   // BitsPerSample
        (259, 3, 1),   // Compression: none
        (262, 3, 1),   // Photometric: black is zero
        (273, 4, 122), // StripOffsets
        (278, 4, h),   // RowsPerStrip
        (279, 4, 16),  // StripByteCounts
    ];
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, value) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        if kind == 3 {
            out.extend_from_slice(&(value as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
        } else {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.resize(122, 0);
    out.extend_from_slice(&[0; 16]);
    out
}

/// A lossless WebP header claiming `w`×`h`, followed by nothing useful.
fn webp_vp8l_header(w: u32, h: u32) -> Vec<u8> {
    let bits = (w - 1) | ((h - 1) << 14);
    let mut vp8l = vec![0x2F];
    vp8l.extend_from_slice(&bits.to_le_bytes());
    vp8l.extend_from_slice(&[0; 32]);
    riff_webp(&[(b"VP8L", vp8l)])
}

/// A valid WebP of `img` in the extended format, with an ICC profile of `n` bytes.
fn webp_with_iccp(img: &RgbImage, n: usize) -> Vec<u8> {
    let simple = encode(img, image::ImageFormat::WebP);
    // The simple file is RIFF size WEBP then one image chunk (VP8 or VP8L).
    let tag: [u8; 4] = simple[12..16].try_into().expect("chunk tag");
    let len = u32::from_le_bytes(simple[16..20].try_into().expect("chunk size")) as usize;
    let image_chunk = simple[20..20 + len].to_vec();
    let (w, h) = (img.width() - 1, img.height() - 1);
    let mut vp8x = vec![0x20, 0, 0, 0]; // flags: ICC profile present
    vp8x.extend_from_slice(&w.to_le_bytes()[..3]);
    vp8x.extend_from_slice(&h.to_le_bytes()[..3]);
    let profile: Vec<u8> = (0..n).map(|i| (i % 241) as u8).collect();
    riff_webp(&[(b"VP8X", vp8x), (b"ICCP", profile), (&tag, image_chunk)])
}

fn riff_webp(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut body = b"WEBP".to_vec();
    for (tag, data) in chunks {
        body.extend_from_slice(*tag);
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

/// One hostile manifest and how `retouch check` must answer it.
#[derive(Debug, Clone)]
pub struct HostileManifest {
    pub name: &'static str,
    pub text: Vec<u8>,
    /// The exit code of `check`.
    pub exit: i32,
    /// A phrase the error output must contain.
    pub says: &'static str,
}

/// The top of a valid manifest whose inputs are `../in/*.jpg`; cases append to it or replace
/// parts of it.
pub const VALID: &str = "version: 1\nname: hostile\ninputs: [\"../in/*.jpg\"]\n\
output: { dir: ../out }\nsteps:\n  - op: upscale\n    models: [local]\n    factor: 2\n";

fn manifest(name: &'static str, text: String, says: &'static str) -> HostileManifest {
    HostileManifest {
        name,
        text: text.into_bytes(),
        exit: 2,
        says,
    }
}

/// Every hostile manifest (to be checked next to a folder `in/` holding at least `in/a.jpg`).
pub fn manifests() -> Vec<HostileManifest> {
    let mut all = vec![
        manifest(
            "flow-nesting-bomb.yaml",
            format!("{VALID}exclude: {}", "[".repeat(100_000)),
            "nest",
        ),
        manifest(
            "block-nesting-bomb.yaml",
            format!(
                "{VALID}limits:\n{}",
                (1..3_000)
                    .map(|d| format!("{}k{d}:\n", " ".repeat(d)))
                    .collect::<String>()
            ),
            "nest",
        ),
        manifest(
            "huge-manifest.yaml",
            format!("{VALID}# {}\n", "x".repeat(3 << 20)),
            "MiB",
        ),
        manifest(
            "inf-factor.yaml",
            VALID.replace("factor: 2", "factor: .inf"),
            "finite",
        ),
        manifest(
            "nan-budget.yaml",
            format!("{VALID}budget: {{ max_usd: .nan }}\n"),
            "finite",
        ),
        manifest(
            "huge-concurrency.yaml",
            format!("{VALID}limits: {{ concurrency: 99999999999999999999999 }}\n"),
            "limits.concurrency",
        ),
        manifest(
            "unknown-key.yaml",
            format!("{VALID}colour: red\n"),
            "unknown top-level key",
        ),
        manifest(
            "wrong-type.yaml",
            VALID.replace("factor: 2", "factor: two"),
            "factor",
        ),
        manifest("empty.yaml", String::new(), "empty"),
        manifest(
            "duplicate-key.yaml",
            format!("{VALID}name: again\n"),
            "duplicate key",
        ),
        manifest(
            "output-over-inputs.yaml",
            VALID.replace("dir: ../out", "dir: ../in, format: jpeg"),
            "would overwrite input",
        ),
        manifest(
            "report-over-manifest.yaml",
            format!("{VALID}report: report-over-manifest.yaml\n"),
            "would overwrite the manifest",
        ),
        manifest(
            "state-is-the-manifest.yaml",
            format!("{VALID}state: state-is-the-manifest.yaml\n"),
            "not a folder",
        ),
        manifest(
            "report-over-input.yaml",
            format!("{VALID}report: ../in/a.jpg\n"),
            "would overwrite input",
        ),
    ];
    let mut bad_utf8 = VALID.as_bytes().to_vec();
    bad_utf8.extend_from_slice(b"exclude: [\"caf\xE9\"]\n");
    all.push(HostileManifest {
        name: "not-utf8.yaml",
        text: bad_utf8,
        exit: 2,
        says: "UTF-8",
    });
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bombs_are_small_files_that_inflate_to_their_size() {
        let all = images(BombSize(8 << 20));
        let names: std::collections::HashSet<_> = all.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), all.len(), "names are unique");
        let bomb = all.iter().find(|c| c.name == "png-iccp-bomb.png").unwrap();
        assert!(bomb.bytes.len() < 64 << 10, "{}", bomb.bytes.len());
        // The valid cases really are valid.
        for c in all.iter().filter(|c| c.expect == "ok") {
            assert!(image::load_from_memory(&c.bytes).is_ok(), "{}", c.name);
        }
    }
}
