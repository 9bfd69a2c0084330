//! Grading a step's result with a vision model (Bedrock `Converse`): the request, the verdict,
//! and what it was billed in tokens.
//!
//! The model sees one picture: the step's input on the left and its result on the right, each
//! downscaled to at most [`SIDE`] px, cut-outs laid on a checkerboard so holes and halos show. It
//! is asked for a JSON verdict (`{"score": 0..1, "issues": "..."}`) against the step's rubric
//! (or the op's default). Like every provider call it is prepared (CPU), sent once per attempt
//! by [`super::Providers::grade`], and finished here; it never retries or decides anything.

use image::{Rgba, RgbaImage, imageops};

use super::{Billed, RemoteError};
use crate::catalog::{ModelEntry, Op, TokenPrices};
use crate::money::Usd;
use crate::providers::bedrock::{ConverseAnswer, ConverseRequest};

/// The longest side of each half of the picture the grader sees.
pub const SIDE: u32 = 384;
/// The most tokens the verdict may take (the model stops there).
pub const MAX_TOKENS: i32 = 200;

const SYSTEM: &str = "You are a strict quality inspector for e-commerce product photos. \
You compare an input photo (left half of the picture) with the result of one editing step \
(right half; a checkerboard shows transparent areas). Answer with one JSON object and nothing \
else: {\"score\": <number from 0 to 1>, \"issues\": \"<short reason, empty if none>\"}. \
1 means ready for a shop page; below 0.5 means unusable.";

/// What the grader is asked to judge when the step gives no rubric.
pub fn default_rubric(op: Op) -> &'static str {
    match op {
        Op::RemoveBg => {
            "Background removal: the whole product is kept (thin parts too), nothing of the \
             backdrop or floor is kept, holes in the product are open, edges are clean without \
             halos."
        }
        Op::FixLighting => {
            "Lighting correction: neutral white balance, good exposure, no clipped highlights \
             or crushed shadows, the product's true colours."
        }
        Op::Upscale => {
            "Upscaling: sharp detail without artefacts, ringing or halos; the product unchanged."
        }
        Op::Inpaint => {
            "Inpainting: the described region is replaced as asked, blending in (light, \
             perspective, edges); nothing else in the photo changed."
        }
        Op::Erase => {
            "Object removal: the described object is gone without a trace (no smudge, ghost or \
             repeated pattern); nothing else in the photo changed."
        }
        Op::Variation => {
            "Variation: a believable product photo that follows the prompt and keeps the \
             original's composition; no artefacts, no garbled text."
        }
        Op::Outpaint => {
            "Outpainting: the new margins continue the original backdrop seamlessly (no seam, \
             no repeated or invented objects), the original part unchanged."
        }
        Op::ReplaceBg => {
            "Background replacement: the product unchanged and whole, sitting naturally in the \
             new background (plausible contact and light), no leftover of the old backdrop, \
             no halo."
        }
        Op::Generate => {
            "Text to image: a believable, sharp product photo that shows what the prompt \
             asks for; no deformed product, extra limbs or parts, garbled text or watermark."
        }
        Op::Frame => {
            "Marketplace framing: the whole product is visible, centred and not cropped, on a \
             clean uniform backdrop, sharp, with no edge halo or leftover backdrop."
        }
    }
}

/// A grading call built for one result.
#[derive(Debug, Clone)]
pub struct GradeCall {
    pub(super) request: ConverseRequest,
    pub(super) invoke_id: String,
    prices: TokenPrices,
    /// Tokens the input can take at most (picture and text, generously), for the reservation.
    input_bound: u64,
}

/// A grader's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Grade {
    /// 0–1.
    pub score: f32,
    pub issues: String,
}

impl GradeCall {
    /// The picture and question for `model` (which must have token prices: the manifest
    /// checks it). Synchronous and CPU-bound.
    pub fn prepare(
        model: &ModelEntry,
        op: Op,
        input: &RgbaImage,
        output: &RgbaImage,
        rubric: Option<&str>,
    ) -> Result<GradeCall, RemoteError> {
        let prices = model.tokens.ok_or_else(|| RemoteError::Config {
            message: format!("{} has no token prices in the catalog", model.id),
        })?;
        let picture = side_by_side(input, output);
        let mut png = Vec::new();
        picture
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| RemoteError::Config {
                message: format!("encoding the picture to grade: {e}"),
            })?;
        let question = format!(
            "Step: {}. Rubric: {}",
            op.as_str(),
            rubric.unwrap_or(default_rubric(op))
        );
        let (w, h) = picture.dimensions();
        let input_bound = input_bound(w * h, question.len());
        Ok(GradeCall {
            request: ConverseRequest {
                system: SYSTEM.to_owned(),
                image_png: png,
                question,
                max_tokens: MAX_TOKENS,
            },
            invoke_id: model.invoke_id.clone(),
            prices,
            input_bound,
        })
    }

    /// What the call may cost at most: reserved before it is made.
    pub fn reservation(&self) -> Usd {
        self.prices.cost(self.input_bound, MAX_TOKENS as u64)
    }

    /// What an answer was billed, and its verdict. The tokens are billed even when the verdict
    /// cannot be read; an answer that gives no readable count is charged the reservation (the
    /// most it could have cost), never nothing.
    pub fn finish(&self, answer: &ConverseAnswer) -> (Usd, Billed, Result<Grade, RemoteError>) {
        let (input, output) = answer
            .tokens
            .unwrap_or((self.input_bound, MAX_TOKENS as u64));
        let billed = Billed::Tokens { input, output };
        (
            self.prices.cost(input, output),
            billed,
            parse_verdict(&answer.text),
        )
    }
}

/// The most input tokens a picture of `pixels` and a question of `question_len` bytes take:
/// Nova reads about one token per 500–650 pixels, so one per 300 bounds it with room to spare,
/// plus the text at one token per two bytes.
fn input_bound(pixels: u32, question_len: usize) -> u64 {
    let text = (SYSTEM.len() + question_len) as u64;
    u64::from(pixels).div_ceil(300) + text.div_ceil(2) + 100
}

/// The most grading one result can cost with `prices` (the largest picture, the longest
/// rubric): what `check` adds per result to the top of its estimate.
pub fn max_cost(prices: TokenPrices) -> Usd {
    let picture = (2 * SIDE + 8) * SIDE;
    prices.cost(input_bound(picture, 1100), MAX_TOKENS as u64)
}

/// `{"score": x, "issues": "..."}` somewhere in the answer (models sometimes wrap it in prose or
/// a code fence).
fn parse_verdict(text: &str) -> Result<Grade, RemoteError> {
    #[derive(serde::Deserialize)]
    struct Verdict {
        score: f64,
        #[serde(default)]
        issues: String,
    }
    let bad = |why: &str| RemoteError::BadResponse {
        message: format!(
            "grader verdict {why}: {}",
            text.chars().take(120).collect::<String>()
        ),
    };
    let (Some(start), Some(end)) = (text.find('{'), text.rfind('}')) else {
        return Err(bad("is not JSON"));
    };
    let verdict: Verdict = serde_json::from_str(&text[start..=end.max(start)])
        .map_err(|_| bad("does not read as {score, issues}"))?;
    if !verdict.score.is_finite() || !(0.0..=1.0).contains(&verdict.score) {
        return Err(bad("has a score outside 0..1"));
    }
    Ok(Grade {
        score: verdict.score as f32,
        issues: verdict.issues,
    })
}

/// The input and the result side by side, each at most [`SIDE`] px, on a checkerboard.
fn side_by_side(input: &RgbaImage, output: &RgbaImage) -> RgbaImage {
    let fit = |img: &RgbaImage| {
        let (w, h) = img.dimensions();
        let scale = (SIDE as f32 / w.max(h).max(1) as f32).min(1.0);
        let (tw, th) = (
            ((w as f32 * scale).round() as u32).max(1),
            ((h as f32 * scale).round() as u32).max(1),
        );
        imageops::thumbnail(img, tw, th)
    };
    let (a, b) = (fit(input), fit(output));
    let (w, h) = (a.width() + 8 + b.width(), a.height().max(b.height()));
    let mut canvas = RgbaImage::from_fn(w, h, |x, y| {
        let light = ((x / 12) + (y / 12)) % 2 == 0;
        if light {
            Rgba([204, 204, 204, 255])
        } else {
            Rgba([153, 153, 153, 255])
        }
    });
    imageops::overlay(&mut canvas, &a, 0, 0);
    imageops::overlay(&mut canvas, &b, i64::from(a.width() + 8), 0);
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_read_from_json_even_inside_prose() {
        let g =
            parse_verdict("Here: ```json\n{\"score\": 0.35, \"issues\": \"halo\"}\n```").unwrap();
        assert_eq!((g.score, g.issues.as_str()), (0.35, "halo"));
        assert!(parse_verdict("looks fine").is_err());
        assert!(parse_verdict("{\"score\": 1.5}").is_err());
        assert!(parse_verdict("{\"score\": \"high\"}").is_err());
    }

    #[test]
    fn an_answer_without_a_readable_count_is_charged_the_reservation_not_nothing() {
        let call = GradeCall {
            request: ConverseRequest {
                system: SYSTEM.to_owned(),
                image_png: Vec::new(),
                question: "Step: remove-bg.".into(),
                max_tokens: MAX_TOKENS,
            },
            invoke_id: "amazon.nova-lite-v1:0".into(),
            prices: TokenPrices {
                input_per_million: 0.06,
                output_per_million: 0.24,
            },
            input_bound: 3000,
        };
        let answer = |tokens| ConverseAnswer {
            text: "{\"score\": 0.9, \"issues\": \"\"}".into(),
            tokens,
        };
        let (cost, billed, verdict) = call.finish(&answer(Some((812, 37))));
        assert_eq!(
            (cost, billed),
            (
                Usd(58),
                Billed::Tokens {
                    input: 812,
                    output: 37
                }
            )
        );
        assert_eq!(verdict.unwrap().score, 0.9);
        let (cost, billed, verdict) = call.finish(&answer(None));
        assert_eq!(cost, call.reservation());
        assert!(cost > Usd::ZERO);
        assert_eq!(
            billed,
            Billed::Tokens {
                input: 3000,
                output: MAX_TOKENS as u64
            }
        );
        assert!(verdict.is_ok(), "the verdict is still read");
    }

    #[test]
    fn tokens_cost_exactly_rounded_up_to_the_micro_dollar() {
        let nova_lite = TokenPrices {
            input_per_million: 0.06,
            output_per_million: 0.24,
        };
        // 1,000,000 in + 1,000,000 out = $0.30 exactly.
        assert_eq!(nova_lite.cost(1_000_000, 1_000_000), Usd(300_000));
        // 812 in, 37 out: 48.72 + 8.88 = 57.6 micro-dollars, billed as 58.
        assert_eq!(nova_lite.cost(812, 37), Usd(58));
        // A single token is never free.
        assert_eq!(nova_lite.cost(1, 0), Usd(1));
        assert_eq!(nova_lite.cost(0, 0), Usd::ZERO);
    }
}
