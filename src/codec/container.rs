//! What an image file's container says before any decoder runs: the size its header claims
//! and how big its embedded colour profile is.
//!
//! Decoders allocate on the container's word: the PNG decoder inflates an `iCCP` profile in
//! full (a 400 KB chunk can inflate to 400 MiB) and applies its memory limit before anyone can
//! look at the claimed size; the WebP decoder parses the image stream's header before it says
//! how big the image is. Walking the container's chunk list here is cheap (the bytes are
//! already in memory), inflates nothing beyond a fixed bound, and lets `codec` refuse such files
//! with the right reason before a decoder sees them.

use std::io::Read;

use image::ImageFormat;

/// The width and height the header claims, for formats whose decoders allocate or parse before
/// telling it (PNG, WebP); `None` for others, or when the header is unreadable (the decoder
/// then says why).
pub(super) fn claimed_size(format: ImageFormat, bytes: &[u8]) -> Option<(u32, u32)> {
    match format {
        ImageFormat::Png => png_size(bytes),
        ImageFormat::WebP => webp_size(bytes),
        _ => None,
    }
}

/// The size of a PNG's `iCCP` profile once inflated, counted up to `limit + 1` bytes (so a bomb
/// is never inflated further than that). `None` when there is no profile or it is unreadable.
pub(super) fn png_profile_size(bytes: &[u8], limit: usize) -> Option<usize> {
    let data = png_chunks(bytes)
        .take_while(|(tag, _)| tag != b"IDAT")
        .find(|(tag, _)| tag == b"iCCP")?
        .1;
    // name (1-79 bytes), NUL, compression method, then the zlib stream.
    let nul = data.iter().position(|&b| b == 0)?;
    let stream = data.get(nul + 2..)?;
    let mut inflated = flate2::read::ZlibDecoder::new(stream).take(limit as u64 + 1);
    let mut count = 0usize;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match inflated.read(&mut buf) {
            Ok(0) => return Some(count),
            Ok(n) => count += n,
            Err(_) => return (count > 0).then_some(count),
        }
    }
}

/// A PNG's chunks as (tag, data), from the one after the signature until the bytes run out.
fn png_chunks(bytes: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut at = 8;
    std::iter::from_fn(move || {
        let len = u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
        let tag: [u8; 4] = bytes.get(at + 4..at + 8)?.try_into().ok()?;
        let data = bytes.get(at + 8..(at + 8).checked_add(len)?)?;
        at += 12 + len;
        Some((tag, data))
    })
}

/// The IHDR size: IHDR must come first, right after the 8-byte signature.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let (tag, data) = png_chunks(bytes).next()?;
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (&tag == b"IHDR" && data.len() >= 8).then(|| (be(&data[0..4]), be(&data[4..8])))
}

/// The canvas of an extended WebP (VP8X), or the frame size of a simple lossless (VP8L) or
/// lossy (VP8) one.
fn webp_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let tag = bytes.get(12..16)?;
    let data = bytes.get(20..)?;
    let le24 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], 0]);
    match tag {
        b"VP8X" if data.len() >= 10 => Some((le24(&data[4..7]) + 1, le24(&data[7..10]) + 1)),
        b"VP8L" if data.len() >= 5 && data[0] == 0x2F => {
            let bits = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8 " if data.len() >= 10 && data[3..6] == [0x9D, 0x01, 0x2A] => {
            let w = u16::from_le_bytes([data[6], data[7]]) & 0x3FFF;
            let h = u16::from_le_bytes([data[8], data[9]]) & 0x3FFF;
            Some((u32::from(w), u32::from(h)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(format: ImageFormat, w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 200, 30]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn reads_the_claimed_size_of_real_files() {
        assert_eq!(
            claimed_size(ImageFormat::Png, &encoded(ImageFormat::Png, 37, 21)),
            Some((37, 21))
        );
        assert_eq!(
            claimed_size(ImageFormat::WebP, &encoded(ImageFormat::WebP, 37, 21)),
            Some((37, 21))
        );
        assert_eq!(claimed_size(ImageFormat::Png, b"\x89PNG"), None);
        assert_eq!(claimed_size(ImageFormat::Jpeg, b"\xFF\xD8\xFF"), None);
    }

    #[test]
    fn profile_bombs_are_measured_without_inflating_them_whole() {
        let cases = crate::testset::hostile::images(crate::testset::hostile::BombSize(64 << 20));
        let bomb = &cases
            .iter()
            .find(|c| c.name == "png-iccp-bomb.png")
            .unwrap()
            .bytes;
        assert_eq!(png_profile_size(bomb, 1 << 20), Some((1 << 20) + 1));
        assert_eq!(
            png_profile_size(&encoded(ImageFormat::Png, 4, 4), 1 << 20),
            None
        );
    }
}
