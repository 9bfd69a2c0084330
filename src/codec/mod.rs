//! Bytes ↔ pixels: decoding inputs safely and encoding outputs.
//!
//! Decoding sniffs the format from the bytes (never trusts the extension), refuses images over the
//! pixel limit before allocating them, applies EXIF orientation, keeps the ICC profile, and turns
//! every input (16-bit, greyscale, palette, CMYK JPEG, alpha) into 8-bit RGBA, the one working
//! type of [`crate::ops`]. Encoding writes PNG, JPEG or lossy WebP, carrying the ICC profile along
//! where the format can. Pure and synchronous: callers run it on the CPU pool.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageFormat, ImageReader, RgbaImage};

use crate::manifest::OutputFormat;
use crate::reason::Reason;

mod container;

/// Version of the output encoders: bump when they write different bytes for the same pixels
/// (outputs written by older versions are then rewritten).
pub const ENCODER_VERSION: u32 = 1;

/// The largest embedded ICC profile accepted. Real profiles are a few KB (sRGB, Display P3) to
/// a few hundred KB (camera and printer LUT profiles); anything bigger is a bomb or garbage, and
/// would be carried into every output.
pub const MAX_ICC_BYTES: usize = 4 << 20;

/// Bytes the decoder may allocate for an image of at most `max_megapixels`: every pixel at 16
/// bits per channel with alpha, plus room for its metadata. Bounds what any decoder may reserve
/// for one image, so memory follows `limits.max_megapixels` whatever the file claims.
fn max_decode_alloc(max_megapixels: u32) -> u64 {
    u64::from(max_megapixels) * 8_000_000 + 2 * MAX_ICC_BYTES as u64 + (16 << 20)
}

/// The largest encoded input worth reading for an image of at most `max_megapixels`: every
/// pixel at 16 bits per channel with alpha, uncompressed (8 bytes), plus 64 MiB of metadata.
/// Nothing a decoder can accept within the pixel limit is bigger, so a larger file is refused
/// before its bytes are read.
pub fn max_input_bytes(max_megapixels: u32) -> u64 {
    u64::from(max_megapixels) * 8_000_000 + 64 * 1024 * 1024
}

/// A decoded input image.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Upright (EXIF orientation applied), 8-bit RGBA.
    pub image: RgbaImage,
    pub format: ImageFormat,
    /// Whether the source had an alpha channel.
    pub had_alpha: bool,
    /// The embedded ICC colour profile, if any.
    pub icc: Option<Vec<u8>>,
}

/// Why an input could not be decoded. Each becomes a failed report row.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("file is empty (0 bytes)")]
    Empty,
    #[error("not an image: the bytes match no supported format (png, jpeg, webp, tiff, bmp, gif)")]
    UnknownFormat,
    #[error(
        "image is {width}x{height} ({mp:.1} MP), over the limit of {limit} MP (limits.max_megapixels)",
        mp = (*width as f64 * *height as f64) / 1e6
    )]
    TooLarge { width: u32, height: u32, limit: u32 },
    #[error("truncated {format} data: {detail}")]
    Truncated {
        format: &'static str,
        detail: &'static str,
    },
    #[error(
        "{what} is {} or more, over the {} MiB any real one needs; the image was not processed",
        size_text(*size),
        limit / (1 << 20)
    )]
    OversizedMetadata {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error(
        "decoding this {format:?} needs more memory than limits.max_megapixels ({limit} MP) allows"
    )]
    NeedsTooMuchMemory { format: ImageFormat, limit: u32 },
    #[error("corrupt or unsupported {format:?} data: {source}")]
    Corrupt {
        format: ImageFormat,
        #[source]
        source: image::ImageError,
    },
}

impl DecodeError {
    /// The report's reason.
    pub fn reason(&self) -> Reason {
        match self {
            DecodeError::Empty => Reason::EmptyFile,
            DecodeError::UnknownFormat => Reason::NotAnImage,
            DecodeError::TooLarge { .. } | DecodeError::NeedsTooMuchMemory { .. } => {
                Reason::TooLarge
            }
            DecodeError::OversizedMetadata { .. } => Reason::OversizedMetadata,
            DecodeError::Truncated { .. } => Reason::Truncated,
            DecodeError::Corrupt { .. } => Reason::CorruptImage,
        }
    }
}

fn size_text(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

/// Why an output could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("encoding {format:?} failed: {source}")]
    Image {
        format: OutputFormat,
        #[source]
        source: image::ImageError,
    },
    #[error("encoding webp failed: {0}")]
    Webp(String),
}

/// Decodes `bytes`, refusing images of more than `max_megapixels` million pixels.
pub fn decode(bytes: &[u8], max_megapixels: u32) -> Result<Decoded, DecodeError> {
    let (format, mut decoder) = open_decoder(bytes, max_megapixels)?;
    let corrupt = |source| image_error(format, max_megapixels, source);
    let icc = bounded_icc(&mut decoder)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    img.apply_orientation(orientation);
    let had_alpha = img.color().has_alpha();
    Ok(Decoded {
        image: img.into_rgba8(),
        format,
        had_alpha,
        icc,
    })
}

/// What an image's header says, read without decoding pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Upright size (EXIF orientation applied).
    pub size: (u32, u32),
    /// The embedded ICC profile, if any.
    pub icc: Option<Vec<u8>>,
}

/// Reads only the header: the upright size and the ICC profile.
pub fn header(bytes: &[u8], max_megapixels: u32) -> Result<Header, DecodeError> {
    let (_, mut decoder) = open_decoder(bytes, max_megapixels)?;
    let icc = bounded_icc(&mut decoder)?;
    Ok(Header {
        size: upright_size(&mut decoder),
        icc,
    })
}

/// Reads only the header: the upright size (EXIF orientation applied) of an image.
pub fn probe(bytes: &[u8], max_megapixels: u32) -> Result<(u32, u32), DecodeError> {
    let (_, mut decoder) = open_decoder(bytes, max_megapixels)?;
    Ok(upright_size(&mut decoder))
}

fn upright_size(decoder: &mut impl ImageDecoder) -> (u32, u32) {
    let (width, height) = decoder.dimensions();
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let swaps = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    if swaps {
        (height, width)
    } else {
        (width, height)
    }
}

/// Sniffs the format and opens a decoder, refusing empty input and images over the pixel limit
/// before any pixel is allocated.
fn open_decoder(
    bytes: &[u8],
    max_megapixels: u32,
) -> Result<(ImageFormat, Box<dyn ImageDecoder + '_>), DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .expect("reading from memory cannot fail");
    let format = reader.format().ok_or(DecodeError::UnknownFormat)?;
    check_complete(format, bytes)?;
    // Some decoders allocate or parse before telling the size (the PNG decoder applies the
    // allocation limit while opening, and inflates its colour profile in full): check what the
    // container claims first.
    if let Some((width, height)) = container::claimed_size(format, bytes) {
        check_pixels(width, height, max_megapixels)?;
    }
    if format == ImageFormat::Png
        && let Some(size) = container::png_profile_size(bytes, MAX_ICC_BYTES)
        && size > MAX_ICC_BYTES
    {
        return Err(oversized_profile(size));
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_decode_alloc(max_megapixels));
    reader.limits(limits);
    let decoder = reader
        .into_decoder()
        .map_err(|source| image_error(format, max_megapixels, source))?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, max_megapixels)?;
    Ok((format, Box::new(decoder)))
}

/// Refuses an image of more than `max_megapixels` million pixels.
fn check_pixels(width: u32, height: u32, max_megapixels: u32) -> Result<(), DecodeError> {
    if u64::from(width) * u64::from(height) > u64::from(max_megapixels) * 1_000_000 {
        return Err(DecodeError::TooLarge {
            width,
            height,
            limit: max_megapixels,
        });
    }
    Ok(())
}

/// The embedded colour profile, refused when larger than [`MAX_ICC_BYTES`] (its bytes are
/// bounded by the file's own size for every format but PNG, whose profile was measured before
/// the decoder opened).
fn bounded_icc(decoder: &mut impl ImageDecoder) -> Result<Option<Vec<u8>>, DecodeError> {
    match decoder.icc_profile().ok().flatten() {
        Some(icc) if icc.len() > MAX_ICC_BYTES => Err(oversized_profile(icc.len())),
        icc => Ok(icc),
    }
}

fn oversized_profile(size: usize) -> DecodeError {
    DecodeError::OversizedMetadata {
        what: "the embedded ICC colour profile",
        size,
        limit: MAX_ICC_BYTES,
    }
}

/// A decoder's error: running into the memory limit means the image is too large for
/// `limits.max_megapixels`, anything else that the data is corrupt or unsupported.
fn image_error(format: ImageFormat, limit: u32, source: image::ImageError) -> DecodeError {
    match source {
        image::ImageError::Limits(_) => DecodeError::NeedsTooMuchMemory { format, limit },
        source => DecodeError::Corrupt { format, source },
    }
}

/// Catches truncation that lenient decoders would paper over with grey pixels.
fn check_complete(format: ImageFormat, bytes: &[u8]) -> Result<(), DecodeError> {
    if format == ImageFormat::Jpeg {
        // A complete JPEG ends with the EOI marker; trailing padding after it is tolerated.
        let tail = &bytes[bytes.len().saturating_sub(4096)..];
        if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
            return Err(DecodeError::Truncated {
                format: "jpeg",
                detail: "no end-of-image marker",
            });
        }
    }
    Ok(())
}

/// Encodes `img` as `format`. JPEG has no alpha, so transparent pixels are flattened onto white.
/// `quality` (1..=100) applies to JPEG and WebP. The ICC profile is embedded where supported.
pub fn encode(
    img: &RgbaImage,
    format: OutputFormat,
    quality: u8,
    icc: Option<&[u8]>,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(img.as_raw().len() / 4);
    let err = |source| EncodeError::Image { format, source };
    let (w, h) = img.dimensions();
    match format {
        OutputFormat::Png => {
            let mut enc = image::codecs::png::PngEncoder::new_with_quality(
                &mut out,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::Adaptive,
            );
            if let Some(icc) = icc {
                let _ = enc.set_icc_profile(icc.to_vec());
            }
            if is_opaque(img) {
                let rgb = to_rgb(img, [255, 255, 255]);
                enc.write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
                    .map_err(err)?;
            } else {
                enc.write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgba8)
                    .map_err(err)?;
            }
        }
        OutputFormat::Jpeg => {
            let mut enc =
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100));
            if let Some(icc) = icc {
                let _ = enc.set_icc_profile(icc.to_vec());
            }
            let rgb = to_rgb(img, [255, 255, 255]);
            enc.write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
                .map_err(err)?;
        }
        OutputFormat::Webp => {
            let encoded = if is_opaque(img) {
                let rgb = to_rgb(img, [255, 255, 255]);
                webp::Encoder::from_rgb(&rgb, w, h).encode_simple(false, f32::from(quality))
            } else {
                webp::Encoder::from_rgba(img.as_raw(), w, h)
                    .encode_simple(false, f32::from(quality))
            };
            let encoded = encoded.map_err(|e| EncodeError::Webp(format!("{e:?}")))?;
            out.extend_from_slice(&encoded);
        }
    }
    Ok(out)
}

/// Whether every pixel is fully opaque.
pub fn is_opaque(img: &RgbaImage) -> bool {
    img.as_raw().chunks_exact(4).all(|p| p[3] == 255)
}

/// Drops alpha, compositing onto `background`.
fn to_rgb(img: &RgbaImage, background: [u8; 3]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(img.as_raw().len() / 4 * 3);
    for p in img.as_raw().chunks_exact(4) {
        let a = u32::from(p[3]);
        for c in 0..3 {
            let v = (u32::from(p[c]) * a + u32::from(background[c]) * (255 - a) + 127) / 255;
            rgb.push(v as u8);
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

    fn png_bytes(img: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn decodes_sixteen_bit_grey_and_alpha() {
        let grey16: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_fn(4, 3, |x, _| Luma([x as u16 * 20_000]));
        let d = decode(&png_bytes(&DynamicImage::ImageLuma16(grey16)), 100).unwrap();
        assert_eq!(d.image.dimensions(), (4, 3));
        assert_eq!(d.image.get_pixel(3, 0).0, [233, 233, 233, 255]);
        assert!(!d.had_alpha);

        let la: ImageBuffer<LumaA<u8>, Vec<u8>> = ImageBuffer::from_pixel(2, 2, LumaA([10, 128]));
        let d = decode(&png_bytes(&DynamicImage::ImageLumaA8(la)), 100).unwrap();
        assert!(d.had_alpha);
        assert_eq!(d.image.get_pixel(0, 0).0, [10, 10, 10, 128]);
    }

    #[test]
    fn decodes_cmyk_jpeg_to_rgb() {
        // A pure-cyan CMYK JPEG: C=255, M=Y=K=0.
        let (w, h) = (16u16, 16u16);
        let data: Vec<u8> = (0..w as usize * h as usize)
            .flat_map(|_| [255u8, 0, 0, 0])
            .collect();
        let mut out = Vec::new();
        let enc = jpeg_encoder::Encoder::new(&mut out, 95);
        enc.encode(&data, w, h, jpeg_encoder::ColorType::Cmyk)
            .unwrap();
        let d = decode(&out, 100).unwrap();
        let [r, g, b, a] = d.image.get_pixel(8, 8).0;
        assert_eq!(a, 255);
        assert!(
            r < 60 && g > 180 && b > 180,
            "cyan expected, got {r},{g},{b}"
        );
    }

    #[test]
    fn rejects_bad_inputs_with_reasons() {
        assert_eq!(decode(&[], 100).unwrap_err().reason(), Reason::EmptyFile);
        assert_eq!(
            decode(b"hello, not an image", 100).unwrap_err().reason(),
            Reason::NotAnImage
        );
        let img = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(64, 64, Rgb([9, 9, 9])));
        let mut jpg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpg), ImageFormat::Jpeg)
            .unwrap();
        let cut = &jpg[..jpg.len() / 2];
        assert_eq!(decode(cut, 100).unwrap_err().reason(), Reason::Truncated);
        let png = png_bytes(&img);
        let err = decode(&png[..png.len() - 20], 100).unwrap_err();
        assert_eq!(err.reason(), Reason::CorruptImage, "{err}");
        let big = DynamicImage::ImageLuma8(ImageBuffer::from_pixel(1100, 1000, Luma([0])));
        let err = decode(&png_bytes(&big), 1).unwrap_err();
        assert_eq!(err.reason(), Reason::TooLarge);
        assert!(err.to_string().contains("1100x1000"), "{err}");
    }

    /// A PNG whose header claims `width` x `height` RGBA pixels, followed by one tiny IDAT.
    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, deflate, no interlace
        // A zlib stream holding one empty stored block.
        let idat = [
            0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x01,
        ];
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [
            (b"IHDR", &ihdr[..]),
            (b"IDAT", &idat[..]),
            (b"IEND", &[][..]),
        ] {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let crc = crc32(&out[start..]);
            out.extend_from_slice(&crc.to_be_bytes());
        }
        out
    }

    /// CRC-32 (IEEE), as PNG chunks use it.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn huge_png_header_is_too_large_not_corrupt() {
        assert_eq!(crc32(b"IEND"), 0xAE42_6082, "the CRC matches PNG's");
        for (w, h) in [
            (65_535, 65_535),
            (u32::MAX >> 1, u32::MAX >> 1),
            (100_000, 30_000),
        ] {
            let png = png_claiming(w, h);
            let err = decode(&png, 100).unwrap_err();
            assert_eq!(err.reason(), Reason::TooLarge, "{w}x{h}: {err}");
            assert!(err.to_string().contains(&format!("{w}x{h}")), "{err}");
            assert_eq!(probe(&png, 100).unwrap_err().reason(), Reason::TooLarge);
        }
        // The same header at a size the limit allows gets as far as the (empty) pixel data.
        let err = decode(&png_claiming(4, 4), 100).unwrap_err();
        assert_eq!(err.reason(), Reason::CorruptImage, "{err}");
    }

    #[test]
    fn applies_exif_orientation() {
        // A 2x1 JPEG (red, blue) tagged "rotate 90° clockwise" (orientation 6) must come out 1x2.
        let img = DynamicImage::ImageRgb8(ImageBuffer::from_fn(32, 16, |x, _| {
            if x < 16 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        }));
        let mut jpg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpg), ImageFormat::Jpeg)
            .unwrap();
        let exif = exif_orientation_segment(6);
        let mut tagged = jpg[..2].to_vec();
        tagged.extend_from_slice(&exif);
        tagged.extend_from_slice(&jpg[2..]);
        let d = decode(&tagged, 100).unwrap();
        assert_eq!(d.image.dimensions(), (16, 32));
        // Rotating clockwise puts the left (red) half on top.
        let top = d.image.get_pixel(8, 4).0;
        assert!(top[0] > 200 && top[2] < 60, "{top:?}");
    }

    /// An APP1 Exif segment holding only an orientation tag.
    fn exif_orientation_segment(orientation: u16) -> Vec<u8> {
        let mut tiff = vec![b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1];
        tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut seg = vec![0xFF, 0xE1];
        let len = (2 + 6 + tiff.len()) as u16;
        seg.extend_from_slice(&len.to_be_bytes());
        seg.extend_from_slice(b"Exif\0\0");
        seg.extend_from_slice(&tiff);
        seg
    }

    #[test]
    fn encodes_every_format_and_round_trips() {
        let img: RgbaImage = ImageBuffer::from_fn(40, 30, |x, y| {
            Rgba([x as u8 * 6, y as u8 * 8, 100, if x < 20 { 255 } else { 0 }])
        });
        let png = encode(&img, OutputFormat::Png, 90, None).unwrap();
        let back = decode(&png, 100).unwrap();
        assert_eq!(back.image, img);
        let jpg = encode(&img, OutputFormat::Jpeg, 90, None).unwrap();
        let back = decode(&jpg, 100).unwrap();
        assert_eq!(back.format, ImageFormat::Jpeg);
        // Transparent half flattened onto white.
        assert!(back.image.get_pixel(35, 15).0[..3].iter().all(|&c| c > 240));
        let webp = encode(&img, OutputFormat::Webp, 80, None).unwrap();
        let back = decode(&webp, 100).unwrap();
        assert_eq!(back.format, ImageFormat::WebP);
        assert!(back.had_alpha);
        assert_eq!(back.image.get_pixel(35, 15).0[3], 0);
    }

    #[test]
    fn keeps_icc_profile_in_png() {
        let img: RgbaImage = ImageBuffer::from_pixel(8, 8, Rgba([1, 2, 3, 255]));
        let icc = b"fake-icc-profile-bytes".to_vec();
        let png = encode(&img, OutputFormat::Png, 90, Some(&icc)).unwrap();
        assert_eq!(decode(&png, 100).unwrap().icc, Some(icc));
    }
}
