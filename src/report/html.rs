//! The HTML contact sheet of a run: one self-contained page (inline CSS and JS, thumbnails as
//! `data:` URIs) with a row per image, worst quality score first: before/after thumbnails (on a
//! checkerboard, so halos and holes in cut-outs show; a click opens the full file), each step's
//! model, reason, status, cost, quality score and flags, and a status filter.
//!
//! Every piece of text from a report (file names, models, errors) goes through [`escape`], so a
//! file named `<script>…` shows as text and never runs. Thumbnails are made in parallel (rayon);
//! a file that cannot be read or decoded shows as "missing". The page is written atomically.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rayon::prelude::*;

use super::analysis::{Analysis, QA_REVIEW, image_status};
use crate::ledger::StepRecord;

/// Longest side of a thumbnail, in pixels.
pub const THUMB_PX: u32 = 160;

/// Finds the files a report names: absolute paths as they are, relative ones under the first
/// base folder where they exist.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    pub bases: Vec<PathBuf>,
}

impl Resolver {
    pub fn resolve(&self, name: &str) -> Option<PathBuf> {
        if name.is_empty() {
            return None;
        }
        let p = Path::new(name);
        if p.is_absolute() {
            return p.is_file().then(|| p.to_owned());
        }
        self.bases.iter().map(|b| b.join(p)).find(|c| c.is_file())
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A `data:` URI of a thumbnail (≤ [`THUMB_PX`] px) of the image at `path`, or `None` when it
/// cannot be read or decoded. Opaque images become JPEG, others PNG.
pub fn thumbnail(path: &Path) -> Option<String> {
    let img = image::open(path).ok()?.thumbnail(THUMB_PX, THUMB_PX);
    let mut bytes = Vec::new();
    let mut cursor = std::io::Cursor::new(&mut bytes);
    let mime = if img.color().has_alpha() {
        img.write_to(&mut cursor, image::ImageFormat::Png).ok()?;
        "image/png"
    } else {
        let rgb = image::DynamicImage::ImageRgb8(img.to_rgb8());
        let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut cursor, 80);
        rgb.write_with_encoder(enc).ok()?;
        "image/jpeg"
    };
    Some(format!("data:{mime};base64,{}", STANDARD.encode(&bytes)))
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:4px 8px;\
vertical-align:top;text-align:left}img{max-width:160px;max-height:160px;\
background:repeating-conic-gradient(#c8c8c8 0% 25%,#fff 0% 50%) 50%/16px 16px}\
.low{color:#b00020;font-weight:600}\
.missing{display:inline-block;width:160px;color:#999;font-style:italic}\
.failed{color:#b00020}.skipped{color:#8a6d00}.ok{color:#1b5e20}.steps td{border:0;padding:1px 6px}";

const SCRIPT: &str = "document.getElementById('filter').addEventListener('change',function(){\
var v=this.value;document.querySelectorAll('tr.image').forEach(function(r){\
r.style.display=(v==='all'||r.getAttribute('data-status')===v)?'':'none';});});";

/// Renders the page. `rows` may come in any order; images appear in input order.
pub fn render(analysis: &Analysis, rows: &[StepRecord], resolver: &Resolver) -> String {
    let mut images: BTreeMap<usize, Vec<&StepRecord>> = BTreeMap::new();
    for r in rows {
        images.entry(r.image_index).or_default().push(r);
    }
    let mut rendered: Vec<(f32, usize, String)> = images
        .into_par_iter()
        .map(|(index, mut steps)| {
            steps.sort_by_key(|r| r.step);
            (worst_score(&steps), index, image_row(&steps, resolver))
        })
        .collect();
    // Worst first; images with no score (nothing measured) after the rest, in input order.
    rendered.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let rendered = rendered.into_iter().map(|(_, _, row)| row);
    let mut page = String::new();
    let title = format!("retouch report {}", escape(&analysis.run_id));
    let _ = write!(
        page,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{STYLE}</style></head><body><h1>{title}</h1>"
    );
    page.push_str(&totals(analysis));
    page.push_str(
        "<p><label>Show <select id=\"filter\"><option>all</option><option>ok</option>\
         <option>failed</option><option>skipped</option></select></label></p>\
         <table><thead><tr><th>image</th><th>before</th><th>after</th><th>steps</th>\
         <th>cost</th></tr></thead><tbody>",
    );
    for row in rendered {
        page.push_str(&row);
    }
    let _ = writeln!(
        page,
        "</tbody></table><script>{SCRIPT}</script></body></html>"
    );
    page
}

fn totals(a: &Analysis) -> String {
    let statuses: Vec<String> = a
        .images_by_status
        .iter()
        .map(|(s, n)| format!("{n} {}", escape(s)))
        .collect();
    let mut out = format!(
        "<p>{} images ({}), total cost ${}</p><table class=\"totals\"><tr><th>step</th>\
         <th>images</th><th>cost</th></tr>",
        a.images,
        statuses.join(", "),
        a.total_cost
    );
    for g in a.by_step.iter().chain(&a.by_model) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>${}</td></tr>",
            escape(&g.key),
            g.images,
            g.cost
        );
    }
    out.push_str("</table>");
    out
}

/// The image's lowest quality score among the results it kept (attempts `escalate:` superseded
/// do not count); above every real score when nothing was measured.
fn worst_score(steps: &[&StepRecord]) -> f32 {
    steps
        .iter()
        .filter(|r| r.status != crate::ledger::Status::Superseded)
        .filter_map(|r| r.qa.as_ref().map(|q| q.score()))
        .fold(f32::INFINITY, f32::min)
}

fn image_row(steps: &[&StepRecord], resolver: &Resolver) -> String {
    let first = steps[0];
    let status = image_status(steps.iter().copied());
    let output = steps
        .iter()
        .map(|r| r.output.as_str())
        .find(|o| !o.is_empty());
    let cost: crate::money::Usd = steps.iter().map(|r| r.cost).sum();
    let mut out = format!(
        "<tr class=\"image\" data-status=\"{status}\"><td class=\"{status}\">{}<br>{status}</td>\
         <td>{}</td><td>{}</td><td><table class=\"steps\">",
        escape(&first.image),
        thumb_cell(resolver, &first.image),
        thumb_cell(resolver, output.unwrap_or("")),
    );
    for r in steps {
        let qa = match &r.qa {
            Some(q) => {
                let class = if q.score() < QA_REVIEW {
                    " class=\"low\""
                } else {
                    ""
                };
                format!(
                    "<span{class}>qa {}</span> {}",
                    q.score_text(),
                    q.flags_text()
                )
            }
            None => String::new(),
        };
        let _ = write!(
            out,
            "<tr><td>{} {}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>${}</td>\
             <td>{qa}</td><td>{}</td></tr>",
            r.step + 1,
            r.op,
            escape(&r.model),
            escape(r.reason.as_str()),
            r.status,
            r.status,
            r.cost,
            escape(&r.error),
        );
    }
    let _ = write!(out, "</table></td><td>${cost}</td></tr>");
    out
}

fn thumb_cell(resolver: &Resolver, name: &str) -> String {
    let Some(path) = resolver.resolve(name) else {
        return "<span class=\"missing\">missing</span>".to_string();
    };
    match thumbnail(&path) {
        Some(uri) => {
            let full = std::path::absolute(&path).unwrap_or(path);
            format!(
                "<a href=\"file://{}\" target=\"_blank\"><img alt=\"\" src=\"{uri}\"></a>",
                escape(&full.to_string_lossy())
            )
        }
        None => "<span class=\"missing\">missing</span>".to_string(),
    }
}

/// Writes `html` to `path` atomically (temp file in the same folder, then rename).
pub fn write_atomic(path: &Path, html: &str) -> std::io::Result<()> {
    crate::atomic_file::write(path, html.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Op;
    use crate::ledger::Status;
    use crate::money::Usd;

    fn row(i: usize, image: &str, status: Status, output: &str) -> StepRecord {
        StepRecord {
            image_index: i,
            image: image.into(),
            step: 0,
            op: Op::RemoveBg,
            model: "local".into(),
            reason: crate::reason::Reason::OnlyPermitted,
            status,
            cost: Usd(10),
            latency_ms: 1,
            attempts: 1,
            input_size: None,
            output_size: None,
            output: output.into(),
            error: String::new(),
            qa: None,
        }
    }

    #[test]
    fn page_has_every_image_thumbnails_and_escaped_names() {
        let dir = tempfile::tempdir().unwrap();
        image::RgbImage::from_pixel(400, 200, image::Rgb([200, 10, 10]))
            .save(dir.path().join("a.jpg"))
            .unwrap();
        image::RgbaImage::from_pixel(800, 400, image::Rgba([0, 0, 0, 0]))
            .save(dir.path().join("a.png"))
            .unwrap();
        let evil = "<script>alert(1)</script>.jpg";
        let rows = vec![
            row(0, "a.jpg", Status::Ok, "a.png"),
            row(1, evil, Status::Failed, ""),
            row(2, "c \"quoted\" & co.jpg", Status::Skipped, "gone.png"),
        ];
        let analysis = Analysis::from_rows("run-<1>", &rows);
        let resolver = Resolver {
            bases: vec![dir.path().to_owned()],
        };
        let page = render(&analysis, &rows, &resolver);
        assert_eq!(page.matches("<tr class=\"image\"").count(), 3);
        assert!(page.contains("data-status=\"failed\""));
        assert!(page.contains("a.jpg"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;.jpg"));
        assert!(page.contains("c &quot;quoted&quot; &amp; co.jpg"));
        assert!(page.contains("run-&lt;1&gt;"));
        // The only script element is ours.
        assert_eq!(page.matches("<script>").count(), 1);
        assert!(!page.contains("<script>alert"));
        // a.jpg: JPEG before, PNG (alpha) after; the other images are missing on both sides.
        assert_eq!(page.matches("src=\"data:image/jpeg;base64,").count(), 1);
        assert_eq!(page.matches("src=\"data:image/png;base64,").count(), 1);
        assert_eq!(page.matches(">missing<").count(), 4);
        assert!(!page.contains("src=\"http"), "self-contained");
    }

    #[test]
    fn worst_scores_come_first_with_their_flags_and_cut_outs_sit_on_a_checkerboard() {
        use crate::qa::{Flag, Qa};
        let mut rows = vec![
            row(0, "fine.jpg", Status::Ok, ""),
            row(1, "inverted.jpg", Status::Ok, ""),
            row(2, "unmeasured.jpg", Status::Failed, ""),
            row(3, "touching.jpg", Status::Ok, ""),
        ];
        rows[0].qa = Some(Qa::default());
        rows[1].qa = Some(Qa::of(vec![Flag::Inverted]));
        rows[3].qa = Some(Qa::of(vec![Flag::TouchesFrame]));
        let analysis = Analysis::from_rows("r", &rows);
        let page = render(&analysis, &rows, &Resolver::default());
        let at = |name: &str| page.find(name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(at("inverted.jpg") < at("touching.jpg"));
        assert!(at("touching.jpg") < at("fine.jpg"));
        assert!(at("fine.jpg") < at("unmeasured.jpg"));
        assert!(page.contains("<span class=\"low\">qa 0.100</span> inverted"));
        assert!(page.contains("<span>qa 1.000</span>"));
        assert!(
            page.contains("repeating-conic-gradient"),
            "checkerboard behind thumbnails"
        );
    }

    #[test]
    fn thumbnails_are_small() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.png");
        image::RgbImage::from_pixel(1000, 500, image::Rgb([1, 2, 3]))
            .save(&path)
            .unwrap();
        let uri = thumbnail(&path).unwrap();
        let b64 = uri.strip_prefix("data:image/jpeg;base64,").unwrap();
        let bytes = STANDARD.decode(b64).unwrap();
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (160, 80));
        assert_eq!(thumbnail(&dir.path().join("none.png")), None);
    }

    #[test]
    fn writes_atomically_replacing_the_old_page() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r/report.html");
        write_atomic(&path, "one").unwrap();
        write_atomic(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
