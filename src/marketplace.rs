//! Marketplace image rules: the presets (`amazon-main`, `square-tile`), the rules each sets
//! (backdrop colour, product fill, size, aspect, format), and the validator that names every
//! broken rule of an image. Pure: pixels and a few file facts in, violations out.
//!
//! The `frame` op builds images to a preset's rules ([`Preset::frame`] gives its defaults), the
//! quality checks flag the rules a result breaks (`qa_flags`), and `retouch check --preset`
//! validates finished files without processing anything.
//!
//! How each rule is measured (the README repeats this):
//! - **backdrop**: every pixel of the outer ring (width 1% of the short side, at least 2 px) is
//!   exactly the preset's colour and opaque. Amazon's "pure white (255, 255, 255)" is exact.
//! - **fill**: the product is every pixel more than [`PRODUCT_TOLERANCE`] away from the backdrop
//!   colour in any channel; its bounding box's larger share of the frame (width share or height
//!   share) is the fill. Amazon asks the product to fill at least 85% of the frame.
//! - **size**: the long side in pixels, between the preset's minimum and maximum.
//! - **aspect**: width ÷ height within 0.5% of the preset's, when it sets one.

use std::fmt;

use image::RgbaImage;

/// A channel difference from the backdrop colour above which a pixel counts as product (JPEG
/// noise near a pure backdrop stays below it).
pub const PRODUCT_TOLERANCE: u8 = 12;

/// A named set of marketplace rules, with the framing that meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Amazon's main product image: pure white backdrop, product at least 85% of the frame,
    /// long side 1,600 px (the zoom threshold) to 10,000 px, sRGB JPEG.
    AmazonMain,
    /// A square web-shop tile: 2,048 × 2,048 on white, product about 80% of the frame.
    SquareTile,
}

impl Preset {
    pub const ALL: [Preset; 2] = [Preset::AmazonMain, Preset::SquareTile];

    /// The name in manifests, flags and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::AmazonMain => "amazon-main",
            Preset::SquareTile => "square-tile",
        }
    }

    pub fn parse(s: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The rules an image must meet.
    pub fn rules(self) -> Rules {
        match self {
            Preset::AmazonMain => Rules {
                background: Some(WHITE),
                min_fill: 0.85,
                min_long_side: 1600,
                max_long_side: 10_000,
                aspect: None,
                jpeg: true,
            },
            Preset::SquareTile => Rules {
                background: Some(WHITE),
                min_fill: 0.70,
                min_long_side: 2048,
                max_long_side: 2048,
                aspect: Some((1, 1)),
                jpeg: false,
            },
        }
    }

    /// How `frame` builds an image that meets [`Preset::rules`] (a margin above the minimum fill,
    /// so resampling and JPEG never push a result under it).
    pub fn frame(self) -> FrameDefaults {
        match self {
            Preset::AmazonMain => FrameDefaults {
                aspect: (1, 1),
                fill: 0.90,
                size: 2000,
                background: WHITE,
            },
            Preset::SquareTile => FrameDefaults {
                aspect: (1, 1),
                fill: 0.80,
                size: 2048,
                background: WHITE,
            },
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const WHITE: [u8; 3] = [255, 255, 255];

/// A preset's framing: aspect (width : height), product fill, long side in pixels, backdrop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameDefaults {
    pub aspect: (u32, u32),
    pub fill: f32,
    pub size: u32,
    pub background: [u8; 3],
}

/// What an image must meet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// The exact backdrop colour (`None`: any backdrop, a kept scene).
    pub background: Option<[u8; 3]>,
    /// The least share of the frame the product's bounding box fills (its larger side share).
    pub min_fill: f32,
    pub min_long_side: u32,
    pub max_long_side: u32,
    /// Width : height, when the rules fix one.
    pub aspect: Option<(u32, u32)>,
    /// Whether the file must be a JPEG (checked on files only).
    pub jpeg: bool,
}

/// One broken rule. Written in `qa_flags` with the rule's value (`fill-below-85`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Violation {
    /// The outer ring is not exactly the backdrop colour (`white`: the colour is 255,255,255).
    Background { white: bool },
    /// The product fills less than this percentage of the frame.
    FillBelow(u8),
    /// The long side is shorter than this.
    LongSideBelow(u16),
    /// The long side is longer than this.
    LongSideAbove(u16),
    /// Width : height is not this.
    Aspect(u8, u8),
    /// Some pixel is not opaque.
    Transparent,
    /// The file is not a JPEG.
    NotJpeg,
    /// The file carries a colour profile that is not sRGB.
    NotSrgb,
}

impl Violation {
    /// The flag text: `bg-not-pure-white`, `fill-below-85`, `long-side-below-1600`, ….
    pub fn name(self) -> String {
        match self {
            Violation::Background { white: true } => "bg-not-pure-white".into(),
            Violation::Background { white: false } => "bg-not-exact".into(),
            Violation::FillBelow(p) => format!("fill-below-{p}"),
            Violation::LongSideBelow(n) => format!("long-side-below-{n}"),
            Violation::LongSideAbove(n) => format!("long-side-above-{n}"),
            Violation::Aspect(w, h) => format!("aspect-not-{w}:{h}"),
            Violation::Transparent => "transparent".into(),
            Violation::NotJpeg => "not-jpeg".into(),
            Violation::NotSrgb => "not-srgb".into(),
        }
    }

    /// Reads a flag text back (`None`: not a violation's name).
    pub fn parse(s: &str) -> Option<Violation> {
        let number = |prefix: &str| s.strip_prefix(prefix).and_then(|n| n.parse::<u16>().ok());
        match s {
            "bg-not-pure-white" => return Some(Violation::Background { white: true }),
            "bg-not-exact" => return Some(Violation::Background { white: false }),
            "transparent" => return Some(Violation::Transparent),
            "not-jpeg" => return Some(Violation::NotJpeg),
            "not-srgb" => return Some(Violation::NotSrgb),
            _ => {}
        }
        if let Some(p) = number("fill-below-") {
            return u8::try_from(p).ok().map(Violation::FillBelow);
        }
        if let Some(n) = number("long-side-below-") {
            return Some(Violation::LongSideBelow(n));
        }
        if let Some(n) = number("long-side-above-") {
            return Some(Violation::LongSideAbove(n));
        }
        let (w, h) = s.strip_prefix("aspect-not-")?.split_once(':')?;
        Some(Violation::Aspect(w.parse().ok()?, h.parse().ok()?))
    }

    /// What the rule asks, for people.
    pub fn explain(self) -> String {
        match self {
            Violation::Background { white: true } => {
                "the backdrop at the edges is not pure white (255, 255, 255)".into()
            }
            Violation::Background { white: false } => {
                "the backdrop at the edges is not exactly the preset's colour".into()
            }
            Violation::FillBelow(p) => format!("the product fills less than {p}% of the frame"),
            Violation::LongSideBelow(n) => format!("the long side is under {n} px"),
            Violation::LongSideAbove(n) => format!("the long side is over {n} px"),
            Violation::Aspect(w, h) => format!("the aspect is not {w}:{h}"),
            Violation::Transparent => "some pixels are transparent".into(),
            Violation::NotJpeg => "the file is not a JPEG".into(),
            Violation::NotSrgb => "the colour profile is not sRGB".into(),
        }
    }
}

/// What the validator measured on an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The product's bounding box share of the frame (the larger of width and height share).
    pub fill: f32,
    pub violations: Vec<Violation>,
}

/// Checks the pixels of `img` against `rules` (file facts are [`check_file`]'s).
pub fn check(img: &RgbaImage, rules: &Rules) -> Measured {
    let (w, h) = img.dimensions();
    let mut violations = Vec::new();
    if img.pixels().any(|p| p.0[3] != 255) {
        violations.push(Violation::Transparent);
    }
    if let Some(bg) = rules.background
        && !ring_is(img, bg)
    {
        violations.push(Violation::Background { white: bg == WHITE });
    }
    let fill = match rules.background {
        Some(bg) => fill(img, bg),
        None => 1.0,
    };
    if fill + 1e-6 < rules.min_fill {
        violations.push(Violation::FillBelow(percent(rules.min_fill)));
    }
    let long = w.max(h);
    if long < rules.min_long_side {
        violations.push(Violation::LongSideBelow(side(rules.min_long_side)));
    }
    if long > rules.max_long_side {
        violations.push(Violation::LongSideAbove(side(rules.max_long_side)));
    }
    if let Some((aw, ah)) = rules.aspect {
        let want = aw as f64 / ah as f64;
        let got = w as f64 / h.max(1) as f64;
        if (got / want - 1.0).abs() > 0.005 {
            violations.push(Violation::Aspect(small(aw), small(ah)));
        }
    }
    violations.sort();
    Measured { fill, violations }
}

/// File facts: the format and the colour profile. `icc` is the embedded profile, if any; a
/// profile is taken as sRGB when its description says so (`sRGB IEC61966-2.1` and kin).
pub fn check_file(is_jpeg: bool, icc: Option<&[u8]>, rules: &Rules) -> Vec<Violation> {
    let mut out = Vec::new();
    if rules.jpeg && !is_jpeg {
        out.push(Violation::NotJpeg);
    }
    if icc.is_some_and(|p| !is_srgb_profile(p)) {
        out.push(Violation::NotSrgb);
    }
    out
}

fn is_srgb_profile(icc: &[u8]) -> bool {
    icc.windows(4).any(|w| w.eq_ignore_ascii_case(b"srgb"))
        || icc
            .windows(8)
            .any(|w| w == [0, b's', 0, b'R', 0, b'G', 0, b'B'])
}

/// Whether every pixel of the outer ring is exactly `bg` and opaque.
fn ring_is(img: &RgbaImage, bg: [u8; 3]) -> bool {
    let (w, h) = img.dimensions();
    let r = ring_width(w, h);
    let want = [bg[0], bg[1], bg[2], 255];
    img.enumerate_pixels()
        .filter(|(x, y, _)| {
            *x < r || *y < r || *x >= w.saturating_sub(r) || *y >= h.saturating_sub(r)
        })
        .all(|(_, _, p)| p.0 == want)
}

/// The width of the ring the backdrop rule checks: 1% of the short side, at least 2 px.
pub fn ring_width(w: u32, h: u32) -> u32 {
    (w.min(h) / 100).max(2)
}

/// The product's bounding-box share of the frame: pixels more than [`PRODUCT_TOLERANCE`] from
/// `bg` in a channel (or not opaque) are product.
pub fn fill(img: &RgbaImage, bg: [u8; 3]) -> f32 {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return 0.0;
    }
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in img.enumerate_pixels() {
        let differs = p.0[3] < 255 || (0..3).any(|k| p.0[k].abs_diff(bg[k]) > PRODUCT_TOLERANCE);
        if differs {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
    }
    if x0 == u32::MAX {
        return 0.0;
    }
    let fw = (x1 - x0 + 1) as f32 / w as f32;
    let fh = (y1 - y0 + 1) as f32 / h as f32;
    fw.max(fh)
}

fn percent(f: f32) -> u8 {
    (f * 100.0).round().clamp(0.0, 100.0) as u8
}

fn side(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn small(n: u32) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    /// A `w`×`h` white frame with a grey product box filling `fill` of the width.
    fn framed(w: u32, h: u32, fill: f32) -> RgbaImage {
        let mut img = RgbaImage::from_pixel(w, h, Rgba([255, 255, 255, 255]));
        let pw = (w as f32 * fill).round() as u32;
        let x0 = (w - pw) / 2;
        for y in h / 4..h * 3 / 4 {
            for x in x0..x0 + pw {
                img.put_pixel(x, y, Rgba([90, 60, 40, 255]));
            }
        }
        img
    }

    #[test]
    fn a_good_amazon_image_breaks_no_rule() {
        let m = check(&framed(2000, 2000, 0.9), &Preset::AmazonMain.rules());
        assert_eq!(m.violations, vec![]);
        assert!((m.fill - 0.9).abs() < 0.001, "{}", m.fill);
    }

    #[test]
    fn each_broken_rule_is_named() {
        let rules = Preset::AmazonMain.rules();
        let small = check(&framed(1000, 1000, 0.5), &rules);
        assert_eq!(
            small.violations,
            vec![Violation::FillBelow(85), Violation::LongSideBelow(1600)]
        );
        let mut off_white = framed(1600, 1600, 0.9);
        off_white.put_pixel(0, 800, Rgba([254, 255, 255, 255]));
        assert_eq!(
            check(&off_white, &rules).violations,
            vec![Violation::Background { white: true }]
        );
        let mut see_through = framed(1600, 1600, 0.9);
        see_through.put_pixel(800, 800, Rgba([90, 60, 40, 128]));
        assert_eq!(
            check(&see_through, &rules).violations,
            vec![Violation::Transparent]
        );
        let tile = check(&framed(2048, 1024, 0.9), &Preset::SquareTile.rules());
        assert_eq!(tile.violations, vec![Violation::Aspect(1, 1)]);
        let huge = check(&framed(4096, 4096, 0.9), &Preset::SquareTile.rules());
        assert_eq!(huge.violations, vec![Violation::LongSideAbove(2048)]);
    }

    #[test]
    fn file_rules_need_jpeg_and_srgb() {
        let rules = Preset::AmazonMain.rules();
        assert_eq!(check_file(true, None, &rules), vec![]);
        assert_eq!(check_file(false, None, &rules), vec![Violation::NotJpeg]);
        let p3 = b"....desc....Display P3....".to_vec();
        assert_eq!(
            check_file(true, Some(&p3), &rules),
            vec![Violation::NotSrgb]
        );
        let srgb = b"....desc....sRGB IEC61966-2.1....".to_vec();
        assert_eq!(check_file(true, Some(&srgb), &rules), vec![]);
        assert_eq!(check_file(false, None, &Preset::SquareTile.rules()), vec![]);
    }

    #[test]
    fn names_read_back() {
        for v in [
            Violation::Background { white: true },
            Violation::Background { white: false },
            Violation::FillBelow(85),
            Violation::LongSideBelow(1600),
            Violation::LongSideAbove(10_000),
            Violation::Aspect(4, 5),
            Violation::Transparent,
            Violation::NotJpeg,
            Violation::NotSrgb,
        ] {
            assert_eq!(Violation::parse(&v.name()), Some(v), "{}", v.name());
        }
        assert_eq!(Violation::parse("fill-below-x"), None);
        assert_eq!(Violation::parse("inverted"), None);
    }
}
