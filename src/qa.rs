//! The quality score of a step's result: free local checks that run on every result, whichever
//! model made it, and give the report's `qa` (0–1) and `qa_flags` columns.
//!
//! Each check that fails adds a flag, and each flag multiplies the score by its penalty
//! ([`Flag::penalty`]): a result with no flag scores 1, one with an inverted matte about 0.1.
//! What a threshold buys is measured in BENCHMARKS.md (how many bad cut-outs a `qa < 0.8` filter
//! catches, how many good ones it raises). The checks look only at the step's input and result
//! (and, for local remove-bg with a network, how sure the network was), so they cost a few
//! milliseconds and never a call. One check holds a remote cut-out against a second opinion, an
//! installed network's own cut-out of the photo ([`second_opinion`]): that reference costs one
//! inference, made by its caller (`providers::local::Reviewer`).

use std::borrow::Cow;
use std::fmt;

use image::RgbaImage;

use crate::marketplace::{self, Rules, Violation};

/// One thing a check found wrong with a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// remove-bg kept (almost) nothing.
    Empty,
    /// remove-bg kept (almost) everything.
    FillsFrame,
    /// remove-bg kept the frame's edges and dropped the middle: the matte is inside out.
    Inverted,
    /// What was kept touches three or four sides of the frame (a backdrop kept, or a crop).
    TouchesFrame,
    /// What was kept is in many separate pieces.
    Fragmented,
    /// A large share of what was kept is semi-transparent.
    SemiTransparent,
    /// The segmentation network saw no clear product (little confident area, much doubt).
    UnsureNetwork,
    /// Much of what was kept looks exactly like the backdrop (a filled hole, a patch of floor).
    BackdropKept,
    /// A result made elsewhere disagrees with the local segmentation network's own cut-out of
    /// the same photo: a large part of the product missing (a crop through it) or a large
    /// part kept that the network calls backdrop.
    Disagrees,
    /// fix-lighting clipped highlights the input did not clip.
    ClippedHighlights,
    /// fix-lighting crushed shadows the input did not crush.
    ClippedShadows,
    /// fix-lighting left a colour cast on a near-neutral backdrop.
    ResidualCast,
    /// fix-lighting changed the image far more than a correction should.
    BigChange,
    /// The result is not the size the step asked for.
    WrongSize,
    /// frame enlarged the product over [`ENLARGED`] times: softer than its size suggests.
    Enlarged,
    /// outpaint extended a textured or busy backdrop flatly (the local method): the seam shows.
    FlatExtension,
    /// The local fill filled over 5% of the image: fine on a plain sweep, a smudge elsewhere.
    LargeFill,
    /// generate returned an image whose aspect is more than 3% off the ratio asked.
    WrongAspect,
    /// generate returned a (nearly) uniform image: nothing was drawn.
    Blank,
    /// A marketplace rule the result breaks (`frame` with a preset).
    Rule(Violation),
}

/// The enlargement over which `frame` flags a product as enlarged.
pub const ENLARGED: f32 = 2.0;

impl Flag {
    pub const ALL: &'static [Flag] = &[
        Flag::Empty,
        Flag::FillsFrame,
        Flag::Inverted,
        Flag::TouchesFrame,
        Flag::Fragmented,
        Flag::SemiTransparent,
        Flag::UnsureNetwork,
        Flag::BackdropKept,
        Flag::Disagrees,
        Flag::ClippedHighlights,
        Flag::ClippedShadows,
        Flag::ResidualCast,
        Flag::BigChange,
        Flag::WrongSize,
        Flag::Enlarged,
        Flag::FlatExtension,
        Flag::WrongAspect,
        Flag::Blank,
        Flag::LargeFill,
    ];

    /// The flag as the report writes it.
    pub fn name(self) -> Cow<'static, str> {
        match self {
            Flag::Rule(v) => Cow::Owned(v.name()),
            other => Cow::Borrowed(other.fixed_name()),
        }
    }

    fn fixed_name(self) -> &'static str {
        match self {
            Flag::Empty => "empty",
            Flag::FillsFrame => "fills-frame",
            Flag::Inverted => "inverted",
            Flag::TouchesFrame => "touches-frame",
            Flag::Fragmented => "fragmented",
            Flag::SemiTransparent => "semi-transparent",
            Flag::UnsureNetwork => "unsure-network",
            Flag::BackdropKept => "backdrop-kept",
            Flag::Disagrees => "disagrees",
            Flag::ClippedHighlights => "clipped-highlights",
            Flag::ClippedShadows => "clipped-shadows",
            Flag::ResidualCast => "residual-cast",
            Flag::BigChange => "big-change",
            Flag::WrongSize => "wrong-size",
            Flag::Enlarged => "enlarged",
            Flag::FlatExtension => "flat-extension",
            Flag::WrongAspect => "wrong-aspect",
            Flag::Blank => "blank",
            Flag::LargeFill => "large-fill",
            Flag::Rule(_) => "rule",
        }
    }

    pub fn parse(s: &str) -> Option<Flag> {
        Flag::ALL
            .iter()
            .copied()
            .find(|f| f.fixed_name() == s)
            .or_else(|| Violation::parse(s).map(Flag::Rule))
    }

    /// What the flag multiplies the score by.
    pub fn penalty(self) -> f32 {
        match self {
            Flag::Empty | Flag::Inverted | Flag::WrongSize | Flag::Rule(_) | Flag::Blank => 0.1,
            Flag::WrongAspect => 0.3,
            Flag::Enlarged => 0.8,
            Flag::FillsFrame => 0.2,
            Flag::UnsureNetwork => 0.3,
            Flag::TouchesFrame | Flag::Fragmented => 0.6,
            Flag::ClippedHighlights | Flag::ClippedShadows => 0.6,
            Flag::SemiTransparent | Flag::ResidualCast | Flag::BigChange => 0.7,
            Flag::BackdropKept | Flag::Disagrees | Flag::FlatExtension | Flag::LargeFill => 0.5,
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A result's score and what lowered it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Qa {
    /// Flags found, in [`Flag`] order, each once.
    pub flags: Vec<Flag>,
    /// A vision model's grade (`qa: { model }` on the step), in thousandths: when present it
    /// is the score (the local flags stay as notes), but a wrong size still fails.
    pub grade: Option<u16>,
}

impl Qa {
    pub fn of(mut flags: Vec<Flag>) -> Qa {
        flags.sort();
        flags.dedup();
        Qa { flags, grade: None }
    }

    /// These checks with `flag` added (once, in [`Flag`] order).
    pub fn with(mut self, flag: Flag) -> Qa {
        self.flags.push(flag);
        self.flags.sort();
        self.flags.dedup();
        self
    }

    /// These checks with a grader's `grade` (0–1, kept to three decimals).
    pub fn graded(mut self, grade: f32) -> Qa {
        self.grade = Some((grade.clamp(0.0, 1.0) * 1000.0).round() as u16);
        self
    }

    /// The local checks' own score: 1 when no check found anything, else the product of the
    /// flags' penalties.
    pub fn local_score(&self) -> f32 {
        self.flags.iter().map(|f| f.penalty()).product()
    }

    /// In `[0, 1]`: the grader's grade when graded (times a wrong size's penalty: a result of
    /// the wrong size fails whatever it looks like), else [`Qa::local_score`].
    pub fn score(&self) -> f32 {
        match self.grade {
            Some(g) if self.flags.contains(&Flag::WrongSize) => {
                f32::from(g) / 1000.0 * Flag::WrongSize.penalty()
            }
            Some(g) => f32::from(g) / 1000.0,
            None => self.local_score(),
        }
    }

    /// The `qa` column: the score with three decimals.
    pub fn score_text(&self) -> String {
        format!("{:.3}", self.score())
    }

    /// The `qa_flags` column: flags joined by `;` (empty when none), then `graded=0.620` when
    /// a grader scored the result.
    pub fn flags_text(&self) -> String {
        let mut names: Vec<String> = self.flags.iter().map(|f| f.name().into_owned()).collect();
        if let Some(g) = self.grade {
            names.push(format!("graded={:.3}", f32::from(g) / 1000.0));
        }
        names.join(";")
    }

    /// Reads the `qa_flags` column back; `None` names a flag retouch never writes.
    pub fn parse_flags(text: &str) -> Option<Qa> {
        let mut flags = Vec::new();
        let mut grade = None;
        for part in text.split(';').filter(|s| !s.is_empty()) {
            match part.strip_prefix("graded=") {
                Some(g) => {
                    let g: f32 = g.parse().ok().filter(|g: &f32| (0.0..=1.0).contains(g))?;
                    grade = Some(g);
                }
                None => flags.push(Flag::parse(part)?),
            }
        }
        let qa = Qa::of(flags);
        Some(match grade {
            Some(g) => qa.graded(g),
            None => qa,
        })
    }
}

pub use crate::ops::saliency::NetworkConfidence;

/// Measured on the hard set (BENCHMARKS.md): the cut-outs u2netp got badly wrong mostly had
/// under 1.2% confident area or over 60% doubt; no good one had either.
pub fn unsure(c: NetworkConfidence) -> bool {
    c.confident < 0.012 || c.uncertain > 0.6
}

/// Share of the kept pixels that look like the fitted backdrop above which the cut-out kept
/// backdrop (measured on the hard set, BENCHMARKS.md).
const BACKDROP_KEPT: f32 = 0.25;

/// How near (px) a transparent pixel must be for a semi-transparent one to count as edge.
const SOFT_EDGE: usize = 2;

/// Checks a cut-out (`output`'s alpha), given which pixels of the photo looked like the backdrop
/// (from the local op's own backdrop model, or [`backdrop_like`] for a result made elsewhere)
/// and, for a local network, how sure it was.
pub fn remove_bg(
    output: &RgbaImage,
    network: Option<NetworkConfidence>,
    backdrop_like: Option<&[bool]>,
) -> Qa {
    let (w, h) = (output.width() as usize, output.height() as usize);
    let mut flags = Vec::new();
    if network.is_some_and(unsure) {
        flags.push(Flag::UnsureNetwork);
    }
    if w == 0 || h == 0 {
        return Qa::of(flags);
    }
    // A flattened result (opaque everywhere) says nothing through its alpha.
    if output.pixels().all(|p| p.0[3] == 255) {
        return Qa::of(flags);
    }
    let kept: Vec<bool> = output.pixels().map(|p| p.0[3] >= 128).collect();
    let area = (w * h) as f32;
    let share = kept.iter().filter(|&&k| k).count() as f32 / area;
    if share < 0.003 {
        flags.push(Flag::Empty);
        return Qa::of(flags);
    }
    if share > 0.97 {
        flags.push(Flag::FillsFrame);
    }
    let side_share = |pixels: &mut dyn Iterator<Item = usize>, len: usize| {
        pixels.filter(|&i| kept[i]).count() as f32 / len as f32
    };
    let sides = [
        side_share(&mut (0..w), w),
        side_share(&mut (0..w).map(|x| (h - 1) * w + x), w),
        side_share(&mut (0..h).map(|y| y * w), h),
        side_share(&mut (0..h).map(|y| y * w + w - 1), h),
    ];
    let frame = sides.iter().sum::<f32>() / 4.0;
    if frame > 0.6 && share < 0.97 {
        flags.push(Flag::Inverted);
    } else if sides.iter().filter(|&&s| s > 0.1).count() >= 3 && share < 0.97 {
        flags.push(Flag::TouchesFrame);
    }
    let (_, pieces) = crate::ops::segment::component_sizes(w, h, &kept, true);
    let kept_area = (share * area) as usize;
    let min_piece = (kept_area / 500).max(16);
    if pieces.iter().skip(1).filter(|&&p| p >= min_piece).count() > 6 {
        flags.push(Flag::Fragmented);
    }
    let visible = output.pixels().filter(|p| p.0[3] >= 32).count();
    // Soft areas, not soft edges: a semi-transparent pixel counts only when no transparent
    // pixel is within 2 px (an antialiased edge, or a thin wire drawn softly, always has one).
    let transparent: Vec<bool> = output.pixels().map(|p| p.0[3] < 32).collect();
    let near_clear = crate::ops::filter::any_within(w, h, &transparent, true, SOFT_EDGE);
    let soft = output
        .pixels()
        .zip(&near_clear)
        .filter(|(p, near)| (32..=224).contains(&p.0[3]) && !**near)
        .count();
    if visible > 0 && soft as f32 > 0.25 * visible as f32 {
        flags.push(Flag::SemiTransparent);
    }
    if backdrop_like
        .and_then(|like| share_of(&kept, like))
        .is_some_and(|s| s > BACKDROP_KEPT)
    {
        flags.push(Flag::BackdropKept);
    }
    Qa::of(flags)
}

/// Share of the second opinion's product a result may leave out, and share of a result's kept
/// pixels the second opinion may call backdrop, before they disagree.
const MISSING: f32 = 0.25;
const EXTRA: f32 = 0.25;

/// How far a cut-out (`output`'s alpha) is from `reference`, an independent segmentation of the
/// same photo at the same size (true = product): the share of the reference's product the
/// result leaves out, and the share of what the result kept that the reference calls backdrop.
/// Left-out pixels that look like the backdrop (`like`, from [`backdrop_like`]) or lie in a hole
/// of the result (a left-out region the kept pixels enclose) do not count: a network at 320×320
/// fills rings, handles and gaps, and the result is right to leave them out.
/// `None` for other sizes, an empty reference, an empty result or an opaque one (a flattened
/// result says nothing through its alpha).
pub fn disagreement(
    output: &RgbaImage,
    reference: &[bool],
    like: Option<&[bool]>,
) -> Option<(f32, f32)> {
    if output.len() / 4 != reference.len()
        || like.is_some_and(|l| l.len() != reference.len())
        || output.pixels().all(|p| p.0[3] == 255)
    {
        return None;
    }
    let (w, h) = (output.width() as usize, output.height() as usize);
    let keep: Vec<bool> = output.pixels().map(|p| p.0[3] >= 128).collect();
    let hole = enclosed(w, h, &keep);
    let (mut refs, mut kept, mut missing, mut extra) = (0usize, 0usize, 0usize, 0usize);
    for (i, (&k, &r)) in keep.iter().zip(reference).enumerate() {
        refs += usize::from(r);
        kept += usize::from(k);
        missing += usize::from(r && !k && !hole[i] && !like.is_some_and(|l| l[i]));
        extra += usize::from(k && !r);
    }
    (refs > 0 && kept > 0).then(|| (missing as f32 / refs as f32, extra as f32 / kept as f32))
}

/// The left-out pixels of `kept` (w×h) that the kept pixels enclose: not connected to the
/// frame's edge through left-out pixels.
fn enclosed(w: usize, h: usize, kept: &[bool]) -> Vec<bool> {
    let regions = crate::ops::segment::Regions::of(w, h, kept, false);
    regions
        .label
        .iter()
        .map(|&l| l != 0 && !regions.at_frame[l as usize])
        .collect()
}

/// [`Flag::Disagrees`] when `output` leaves out over a quarter of `reference`'s product or
/// keeps over a quarter outside it. `reference` should come from a network that was sure of
/// the photo (see [`NetworkConfidence`]): an unsure network's cut-out is no second opinion.
pub fn second_opinion(
    output: &RgbaImage,
    reference: &[bool],
    like: Option<&[bool]>,
) -> Option<Flag> {
    let (missing, extra) = disagreement(output, reference, like)?;
    (missing > MISSING || extra > EXTRA).then_some(Flag::Disagrees)
}

/// Which pixels of `input` look like the backdrop fitted to its border (low evidence of product,
/// luminance within 4% of the backdrop's); `None` when no backdrop fits. For results made
/// without the local backdrop model (remote models).
pub fn backdrop_like(input: &RgbaImage) -> Option<Vec<bool>> {
    let model = crate::ops::backdrop::BackdropModel::fit(input)?;
    Some(crate::ops::segment::evidence(input, &model).backdrop_like())
}

/// Of the `kept` pixels, the share that are `like` the backdrop (`None` for other sizes).
fn share_of(kept: &[bool], like: &[bool]) -> Option<f32> {
    if kept.len() != like.len() {
        return None;
    }
    let n = kept.iter().filter(|&&k| k).count();
    let both = kept.iter().zip(like).filter(|&(&k, &l)| k && l).count();
    (n > 0).then(|| both as f32 / n as f32)
}

/// Checks a lighting correction against its input (visible pixels only).
pub fn fix_lighting(input: &RgbaImage, output: &RgbaImage) -> Qa {
    let mut flags = Vec::new();
    if input.dimensions() != output.dimensions() {
        return Qa::of(vec![Flag::WrongSize]);
    }
    let (mut n, mut hi_in, mut hi_out, mut lo_in, mut lo_out, mut change) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0f64);
    for (a, b) in input.pixels().zip(output.pixels()) {
        if a.0[3] < 128 {
            continue;
        }
        n += 1;
        let max_a = a.0[..3].iter().copied().max().unwrap_or(0);
        let max_b = b.0[..3].iter().copied().max().unwrap_or(0);
        hi_in += u64::from(max_a >= 254);
        hi_out += u64::from(max_b >= 254);
        lo_in += u64::from(max_a <= 1);
        lo_out += u64::from(max_b <= 1);
        change += (luma(b.0) - luma(a.0)).abs();
    }
    if n == 0 {
        return Qa::of(flags);
    }
    let share = |c: u64| c as f64 / n as f64;
    if share(hi_out) - share(hi_in) > 0.02 {
        flags.push(Flag::ClippedHighlights);
    }
    if share(lo_out) - share(lo_in) > 0.02 {
        flags.push(Flag::ClippedShadows);
    }
    if change / n as f64 > 60.0 {
        flags.push(Flag::BigChange);
    }
    if residual_cast(output) {
        flags.push(Flag::ResidualCast);
    }
    Qa::of(flags)
}

/// Checks a framed result: its size, how much the product was enlarged (`scale`), and, when
/// the step names a preset, every rule of it the pixels break.
pub fn frame(output: &RgbaImage, expected: (u32, u32), scale: f32, rules: Option<&Rules>) -> Qa {
    let mut flags = Vec::new();
    if output.dimensions() != expected {
        flags.push(Flag::WrongSize);
    }
    if scale > ENLARGED {
        flags.push(Flag::Enlarged);
    }
    if let Some(rules) = rules {
        flags.extend(
            marketplace::check(output, rules)
                .violations
                .into_iter()
                .map(Flag::Rule),
        );
    }
    Qa::of(flags)
}

/// Checks an outpainted result: its size, and whether a textured backdrop was extended flatly.
pub fn outpaint(output: &RgbaImage, expected: (u32, u32), flat_on_texture: bool) -> Qa {
    let mut flags = Vec::new();
    if output.dimensions() != expected {
        flags.push(Flag::WrongSize);
    }
    if flat_on_texture {
        flags.push(Flag::FlatExtension);
    }
    Qa::of(flags)
}

/// Checks a generated image: the aspect asked (`w`:`h`) within 3%, and something drawn (the
/// luma's standard deviation over a sample grid at least 2 levels).
pub fn generate(output: &RgbaImage, (aw, ah): (u32, u32)) -> Qa {
    let mut flags = Vec::new();
    let (w, h) = output.dimensions();
    if w == 0 || h == 0 {
        return Qa::of(vec![Flag::Blank]);
    }
    let asked = f64::from(aw.max(1)) / f64::from(ah.max(1));
    let got = f64::from(w) / f64::from(h);
    if (got / asked).ln().abs() > 0.03f64.ln_1p() {
        flags.push(Flag::WrongAspect);
    }
    let step = (w.max(h) / 64).max(1);
    let samples: Vec<f64> = output
        .enumerate_pixels()
        .filter(|(x, y, _)| x.is_multiple_of(step) && y.is_multiple_of(step))
        .map(|(_, _, p)| luma(p.0))
        .collect();
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    if var.sqrt() < 2.0 {
        flags.push(Flag::Blank);
    }
    Qa::of(flags)
}

/// The share of an image a local fill may cover before it is flagged `large-fill`.
pub const LARGE_FILL: f64 = 0.05;

/// Checks a local fill: its size, and how much of the image it made up.
pub fn fill(output: &RgbaImage, expected: (u32, u32), filled: f64) -> Qa {
    let mut flags = Vec::new();
    if output.dimensions() != expected {
        flags.push(Flag::WrongSize);
    }
    if filled > LARGE_FILL {
        flags.push(Flag::LargeFill);
    }
    Qa::of(flags)
}

/// Checks an upscale's size.
pub fn upscale(output: &RgbaImage, expected: (u32, u32)) -> Qa {
    if output.dimensions() == expected {
        Qa::default()
    } else {
        Qa::of(vec![Flag::WrongSize])
    }
}

fn luma(p: [u8; 4]) -> f64 {
    0.2126 * f64::from(p[0]) + 0.7152 * f64::from(p[1]) + 0.0722 * f64::from(p[2])
}

/// A light, near-neutral frame (a studio sweep) that still leans toward one colour.
fn residual_cast(img: &RgbaImage) -> bool {
    let (w, h) = img.dimensions();
    if w < 4 || h < 4 {
        return false;
    }
    let mut sum = [0f64; 3];
    let mut n = 0f64;
    for (x, y, p) in img.enumerate_pixels() {
        let edge = x < 2 || y < 2 || x + 2 >= w || y + 2 >= h;
        if edge && p.0[3] >= 128 {
            (0..3).for_each(|k| sum[k] += f64::from(p.0[k]));
            n += 1.0;
        }
    }
    if n < 16.0 {
        return false;
    }
    let mean = sum.map(|s| s / n);
    let (lo, hi) = mean
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    // Light and nearly grey (a sweep, not a coloured wall), yet 6–30 levels apart.
    hi > 170.0 && (6.0..30.0).contains(&(hi - lo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    fn cut_out(w: u32, h: u32, keep: impl Fn(u32, u32) -> bool) -> RgbaImage {
        RgbaImage::from_fn(w, h, |x, y| {
            Rgba([90, 60, 40, if keep(x, y) { 255 } else { 0 }])
        })
    }

    #[test]
    fn a_clean_cut_out_scores_one_and_broken_ones_are_flagged() {
        let good = cut_out(100, 80, |x, y| {
            (30..70).contains(&x) && (20..75).contains(&y)
        });
        let photo = RgbaImage::from_fn(100, 80, |x, y| {
            if (30..70).contains(&x) && (20..75).contains(&y) {
                Rgba([90, 60, 40, 255])
            } else {
                Rgba([235, 235, 232, 255])
            }
        });
        let like = backdrop_like(&photo);
        let remove_bg = |out: &RgbaImage, net| remove_bg(out, net, like.as_deref());
        assert_eq!(remove_bg(&good, None).flags, []);
        assert_eq!(remove_bg(&good, None).score(), 1.0);

        let inverted = cut_out(100, 80, |x, y| {
            !((30..70).contains(&x) && (20..75).contains(&y))
        });
        assert_eq!(
            remove_bg(&inverted, None).flags,
            [Flag::Inverted, Flag::BackdropKept]
        );
        assert!(remove_bg(&inverted, None).score() < 0.2);

        let empty = cut_out(100, 80, |x, y| x == 50 && y == 40);
        assert_eq!(remove_bg(&empty, None).flags, [Flag::Empty]);

        // The product and the backdrop beside it, kept.
        let greedy = cut_out(100, 80, |x, y| {
            (10..90).contains(&x) && (20..75).contains(&y)
        });
        assert_eq!(remove_bg(&greedy, None).flags, [Flag::BackdropKept]);

        let confetti = cut_out(100, 80, |x, y| x % 12 < 4 && y % 12 < 4 && x > 5 && y > 5);
        assert!(remove_bg(&confetti, None).flags.contains(&Flag::Fragmented));

        let unsure = NetworkConfidence {
            confident: 0.004,
            uncertain: 0.9,
        };
        assert_eq!(remove_bg(&good, Some(unsure)).flags, [Flag::UnsureNetwork]);
        let sure = NetworkConfidence {
            confident: 0.2,
            uncertain: 0.1,
        };
        assert_eq!(remove_bg(&good, Some(sure)).flags, []);
    }

    #[test]
    fn a_result_far_from_the_network_s_own_cut_out_disagrees() {
        let product = |x: u32, y: u32| (30..70).contains(&x) && (20..75).contains(&y);
        let reference: Vec<bool> = (0..100 * 80).map(|i| product(i % 100, i / 100)).collect();
        let good = cut_out(100, 80, product);
        assert_eq!(disagreement(&good, &reference, None), Some((0.0, 0.0)));
        assert_eq!(second_opinion(&good, &reference, None), None);
        // A few pixels off all round is no disagreement.
        let close = cut_out(100, 80, |x, y| {
            (31..71).contains(&x) && (21..75).contains(&y)
        });
        assert_eq!(second_opinion(&close, &reference, None), None);
        // The lower 45% cropped away: that share of the product missing.
        let truncated = cut_out(100, 80, |x, y| product(x, y) && y < 50);
        let (missing, extra) = disagreement(&truncated, &reference, None).unwrap();
        assert!((missing - 25.0 / 55.0).abs() < 1e-6 && extra == 0.0);
        assert_eq!(
            second_opinion(&truncated, &reference, None),
            Some(Flag::Disagrees)
        );
        // ... unless what was left out looks like the backdrop.
        let like: Vec<bool> = (0..100 * 80).map(|i| i / 100 >= 50).collect();
        assert_eq!(second_opinion(&truncated, &reference, Some(&like)), None);
        // A hole the result leaves open inside the product (a ring the network filled).
        let ring = cut_out(100, 80, |x, y| {
            product(x, y) && !((38..62).contains(&x) && (30..65).contains(&y))
        });
        assert_eq!(disagreement(&ring, &reference, None), Some((0.0, 0.0)));
        // Backdrop kept beside the product.
        let greedy = cut_out(100, 80, |x, y| {
            (10..90).contains(&x) && (20..75).contains(&y)
        });
        assert_eq!(
            second_opinion(&greedy, &reference, None),
            Some(Flag::Disagrees)
        );
        // A flattened result, another size, or nothing to compare: no opinion.
        let opaque = cut_out(100, 80, |_, _| true);
        assert_eq!(disagreement(&opaque, &reference, None), None);
        assert_eq!(
            disagreement(&cut_out(50, 40, product), &reference, None),
            None
        );
        assert_eq!(disagreement(&good, &[false; 8000], None), None);
        // The flag joins the others, and lowers the score below the usual 0.8 mark.
        let qa = remove_bg(&truncated, None, None).with(Flag::Disagrees);
        assert_eq!(qa.flags, [Flag::Disagrees]);
        assert!(qa.score() < 0.8);
        assert_eq!(Flag::parse("disagrees"), Some(Flag::Disagrees));
        // Added once, in order, a grade kept.
        let graded = Qa::of(vec![Flag::Fragmented])
            .graded(0.9)
            .with(Flag::Disagrees)
            .with(Flag::Disagrees);
        assert_eq!(graded.flags, [Flag::Fragmented, Flag::Disagrees]);
        assert_eq!(graded.grade, Some(900));
    }

    #[test]
    fn soft_areas_are_semi_transparent_and_soft_edges_are_not() {
        // A thin wire drawn softly (every pixel of it half-opaque) beside a solid body.
        let wire = RgbaImage::from_fn(100, 80, |x, y| {
            let a = if (30..60).contains(&x) && (20..60).contains(&y) {
                255
            } else if (60..100).contains(&x) && (38..41).contains(&y) {
                140
            } else {
                0
            };
            Rgba([90, 60, 40, a])
        });
        assert_eq!(remove_bg(&wire, None, None).flags, []);
        // The same body in a half-opaque halo 8 px wide.
        let halo = RgbaImage::from_fn(100, 80, |x, y| {
            let a = if (30..60).contains(&x) && (20..60).contains(&y) {
                255
            } else if (22..68).contains(&x) && (12..68).contains(&y) {
                150
            } else {
                0
            };
            Rgba([90, 60, 40, a])
        });
        assert_eq!(remove_bg(&halo, None, None).flags, [Flag::SemiTransparent]);
    }

    #[test]
    fn lighting_that_clips_or_leaves_a_cast_is_flagged() {
        let input = RgbaImage::from_fn(60, 60, |x, _| Rgba([120 + (x as u8), 120, 118, 255]));
        let same = input.clone();
        assert_eq!(fix_lighting(&input, &same).flags, []);
        let blown = RgbaImage::from_pixel(60, 60, Rgba([255, 255, 255, 255]));
        let qa = fix_lighting(&input, &blown);
        assert!(qa.flags.contains(&Flag::ClippedHighlights), "{qa:?}");
        assert!(qa.flags.contains(&Flag::BigChange), "{qa:?}");
        let warm = RgbaImage::from_pixel(60, 60, Rgba([235, 225, 215, 255]));
        assert!(
            fix_lighting(&input, &warm)
                .flags
                .contains(&Flag::ResidualCast)
        );
    }

    #[test]
    fn a_generated_image_is_checked_for_its_aspect_and_for_being_blank() {
        let drawn = RgbaImage::from_fn(1344, 768, |x, _| Rgba([(x % 256) as u8, 90, 40, 255]));
        assert_eq!(generate(&drawn, (16, 9)).flags, []);
        // 1344x768 is 1.75, within 3% of 16:9 (1.78); not of 4:3.
        assert_eq!(generate(&drawn, (4, 3)).flags, [Flag::WrongAspect]);
        let blank = RgbaImage::from_pixel(1024, 1024, Rgba([250, 250, 250, 255]));
        let qa = generate(&blank, (1, 1));
        assert_eq!(qa.flags, [Flag::Blank]);
        assert!(qa.score() <= 0.1);
        assert_eq!(Flag::parse("wrong-aspect"), Some(Flag::WrongAspect));
        assert_eq!(Flag::parse("blank"), Some(Flag::Blank));
    }

    #[test]
    fn flags_read_back_and_sizes_are_checked() {
        let qa = Qa::of(vec![
            Flag::TouchesFrame,
            Flag::Fragmented,
            Flag::TouchesFrame,
        ]);
        assert_eq!(qa.flags_text(), "touches-frame;fragmented");
        assert_eq!(Qa::parse_flags(&qa.flags_text()), Some(qa.clone()));
        assert_eq!(qa.score_text(), "0.360");
        assert_eq!(Qa::parse_flags("nonsense"), None);
        let rules = Qa::of(vec![
            Flag::Rule(Violation::FillBelow(85)),
            Flag::Enlarged,
            Flag::Rule(Violation::Background { white: true }),
        ]);
        assert_eq!(
            rules.flags_text(),
            "enlarged;bg-not-pure-white;fill-below-85"
        );
        assert_eq!(Qa::parse_flags(&rules.flags_text()), Some(rules.clone()));
        assert!((rules.score() - 0.008).abs() < 1e-6);
        assert_eq!(Qa::parse_flags(""), Some(Qa::default()));
        let img = RgbaImage::new(10, 8);
        assert_eq!(upscale(&img, (10, 8)).flags, []);
        assert_eq!(upscale(&img, (20, 16)).flags, [Flag::WrongSize]);
        let texts: std::collections::BTreeSet<_> = Flag::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(texts.len(), Flag::ALL.len(), "unique");
    }
}
