//! Product geometry for the generator: signed-distance primitives (negative inside, in pixels)
//! grouped into products, each primitive with its own shading so a bottle reads as a cylinder
//! and a box as a lit block. Pure geometry and colour; no image buffers here.

use super::rng::Rng;

/// How a primitive's surface is lit.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shading {
    /// Vertical cylinder: dark rims, a specular stripe left of centre.
    Cylinder,
    /// Flat face with a gentle vertical falloff and a given brightness factor.
    Flat(f32),
    /// Sphere-like: brightest toward the upper left.
    Dome,
}

/// One signed-distance primitive.
#[derive(Debug, Clone)]
pub(super) enum Prim {
    RoundRect {
        cx: f32,
        cy: f32,
        hw: f32,
        hh: f32,
        r: f32,
    },
    Ellipse {
        cx: f32,
        cy: f32,
        rx: f32,
        ry: f32,
    },
    /// An annulus; its inner disk is a hole the backdrop shows through (a mug handle).
    Ring {
        cx: f32,
        cy: f32,
        outer: f32,
        inner: f32,
    },
    Polygon(Vec<(f32, f32)>),
    /// A stroke of half-width `r` along a polyline: straps, stems, wire (a capsule if two points).
    Polyline {
        pts: Vec<(f32, f32)>,
        r: f32,
    },
}

impl Prim {
    /// Signed distance in pixels (negative inside).
    pub(super) fn sd(&self, x: f32, y: f32) -> f32 {
        match self {
            Prim::RoundRect { cx, cy, hw, hh, r } => {
                let qx = (x - cx).abs() - (hw - r);
                let qy = (y - cy).abs() - (hh - r);
                let ox = qx.max(0.0);
                let oy = qy.max(0.0);
                (ox * ox + oy * oy).sqrt() + qx.max(qy).min(0.0) - r
            }
            Prim::Ellipse { cx, cy, rx, ry } => {
                let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
                let len = (dx * dx + dy * dy).sqrt();
                // First-order distance: value / gradient magnitude; exact on circles.
                let grad = ((dx / rx).powi(2) + (dy / ry).powi(2)).sqrt() / len.max(1e-6);
                (len - 1.0) / grad.max(1e-6)
            }
            Prim::Ring {
                cx,
                cy,
                outer,
                inner,
            } => {
                let d = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
                (d - outer).max(inner - d)
            }
            Prim::Polygon(pts) => polygon_sd(pts, x, y),
            Prim::Polyline { pts, r } => polyline_sd(pts, *r, x, y),
        }
    }

    /// Horizontal extent and vertical extent: (left, top, right, bottom).
    pub(super) fn bounds(&self) -> (f32, f32, f32, f32) {
        match self {
            Prim::RoundRect { cx, cy, hw, hh, .. } => (cx - hw, cy - hh, cx + hw, cy + hh),
            Prim::Ellipse { cx, cy, rx, ry } => (cx - rx, cy - ry, cx + rx, cy + ry),
            Prim::Ring { cx, cy, outer, .. } => (cx - outer, cy - outer, cx + outer, cy + outer),
            Prim::Polygon(pts) => points_bounds(pts),
            Prim::Polyline { pts, r } => {
                let (left, top, right, bottom) = points_bounds(pts);
                (left - r, top - r, right + r, bottom + r)
            }
        }
    }
}

fn points_bounds(pts: &[(f32, f32)]) -> (f32, f32, f32, f32) {
    pts.iter().fold(
        (f32::MAX, f32::MAX, f32::MIN, f32::MIN),
        |(l, t, r, b), &(x, y)| (l.min(x), t.min(y), r.max(x), b.max(y)),
    )
}

/// Exact distance to the stroke, except far outside its bounding box, where the distance to
/// the box (a lower bound, so coverage is still exactly 0) saves walking every segment.
fn polyline_sd(pts: &[(f32, f32)], r: f32, x: f32, y: f32) -> f32 {
    let (left, top, right, bottom) = points_bounds(pts);
    let (ox, oy) = ((left - x).max(x - right), (top - y).max(y - bottom));
    let outside = ox.max(0.0).hypot(oy.max(0.0)) - r;
    if outside > 2.0 {
        return outside;
    }
    let mut best = f32::MAX;
    for seg in pts.windows(2) {
        let ((ax, ay), (bx, by)) = (seg[0], seg[1]);
        let (ex, ey) = (bx - ax, by - ay);
        let (wx, wy) = (x - ax, y - ay);
        let t = ((wx * ex + wy * ey) / (ex * ex + ey * ey).max(1e-9)).clamp(0.0, 1.0);
        let (dx, dy) = (wx - ex * t, wy - ey * t);
        best = best.min(dx * dx + dy * dy);
    }
    best.sqrt() - r
}

fn polygon_sd(pts: &[(f32, f32)], x: f32, y: f32) -> f32 {
    let mut best = f32::MAX;
    let mut inside = false;
    let n = pts.len();
    for i in 0..n {
        let (ax, ay) = pts[i];
        let (bx, by) = pts[(i + n - 1) % n];
        let (ex, ey) = (bx - ax, by - ay);
        let (wx, wy) = (x - ax, y - ay);
        let t = ((wx * ex + wy * ey) / (ex * ex + ey * ey).max(1e-9)).clamp(0.0, 1.0);
        let (dx, dy) = (wx - ex * t, wy - ey * t);
        best = best.min(dx * dx + dy * dy);
        if (ay > y) != (by > y) && x < ax + (bx - ax) * (y - ay) / (by - ay) {
            inside = !inside;
        }
    }
    if inside { -best.sqrt() } else { best.sqrt() }
}

/// A primitive with its colour (linear RGB) and shading; `label` draws a band with text bars.
#[derive(Debug, Clone)]
pub(super) struct Part {
    pub prim: Prim,
    pub colour: [f32; 3],
    pub shading: Shading,
    pub label: Option<[f32; 3]>,
}

/// A product: the union of its parts. Later parts draw over earlier ones.
#[derive(Debug, Clone)]
pub(super) struct Product {
    pub kind: &'static str,
    pub parts: Vec<Part>,
    /// y of the resting base (for the contact shadow), and its horizontal centre and half-width.
    pub base: (f32, f32, f32),
}

impl Product {
    /// Has a hole the backdrop shows through (a handle, a ring).
    pub(super) fn has_hole(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p.prim, Prim::Ring { .. }))
    }

    /// Has a part at most 4 px across: a strap, stem, wire or thin handle.
    pub(super) fn has_thin_part(&self) -> bool {
        self.parts.iter().any(|p| match p.prim {
            Prim::Polyline { r, .. } => r <= 2.0,
            Prim::Ring { outer, inner, .. } => outer - inner <= 4.0,
            _ => false,
        })
    }

    /// Coverage in `[0, 1]` (analytic anti-aliasing from the distance) and the shaded colour.
    pub(super) fn sample(&self, x: f32, y: f32, tex_seed: u64) -> (f32, [f32; 3]) {
        let mut cover = 0.0f32;
        let mut colour = [0.0f32; 3];
        for part in &self.parts {
            let a = (0.5 - part.prim.sd(x, y)).clamp(0.0, 1.0);
            if a > 0.0 {
                let c = shade(part, x, y, tex_seed);
                for k in 0..3 {
                    colour[k] = colour[k] * (1.0 - a) + c[k] * a;
                }
                cover = cover + a - cover * a;
            }
        }
        if cover > 0.0 {
            // `colour` accumulated premultiplied-over; un-premultiply.
            for c in &mut colour {
                *c /= cover.max(1e-6);
            }
        }
        (cover, colour.map(|c| c.min(1.0)))
    }
}

fn shade(part: &Part, x: f32, y: f32, tex_seed: u64) -> [f32; 3] {
    let (l, t, r, b) = part.prim.bounds();
    let u = ((x - l) / (r - l).max(1.0) * 2.0 - 1.0).clamp(-1.0, 1.0);
    let v = ((y - t) / (b - t).max(1.0)).clamp(0.0, 1.0);
    let mut base = part.colour;
    if let Some(lc) = part.label
        && (0.35..0.7).contains(&v)
    {
        base = lc;
        let line = ((v - 0.35) / 0.35 * 7.0).fract();
        let row = ((v - 0.35) / 0.35 * 7.0) as u32;
        if row % 2 == 1 && line > 0.25 && u.abs() < 0.55 - 0.1 * (row % 3) as f32 {
            base = [0.03, 0.03, 0.035];
        }
    }
    let (light, spec) = match part.shading {
        Shading::Cylinder => {
            let n = (1.0 - u * u).max(0.0).sqrt();
            (0.45 + 0.55 * n, 0.35 * (-((u + 0.4) / 0.09).powi(2)).exp())
        }
        Shading::Flat(f) => (f * (1.0 - 0.12 * v), 0.0),
        Shading::Dome => {
            let d = ((u + 0.3).powi(2) + (v - 0.3).powi(2)).sqrt();
            (
                0.5 + 0.5 * (1.0 - d).max(0.0),
                0.3 * (-(d / 0.12).powi(2)).exp(),
            )
        }
    };
    let tex =
        1.0 + 0.04 * super::rng::hash_noise(tex_seed, (x * 0.25) as u32, (y * 0.25) as u32, 9);
    base.map(|c| c * light * tex + spec)
}

/// Builds a random product of a random kind centred in a `w`×`h` frame.
pub(super) fn random_product(
    rng: &mut Rng,
    w: f32,
    h: f32,
    colour: [f32; 3],
    label: [f32; 3],
) -> Product {
    let s = w.min(h);
    let cx = w * rng.range(0.42, 0.58);
    let base_y = h * rng.range(0.78, 0.88);
    match rng.below(5) {
        0 => bottle(rng, s, cx, base_y, colour, label),
        1 => boxy(rng, s, cx, base_y, colour, label),
        2 => mug(rng, s, cx, base_y, colour, label),
        3 => shoe(rng, s, cx, base_y, colour),
        _ => can_and_ball(rng, s, cx, base_y, colour, label),
    }
}

pub(super) fn part(
    prim: Prim,
    colour: [f32; 3],
    shading: Shading,
    label: Option<[f32; 3]>,
) -> Part {
    Part {
        prim,
        colour,
        shading,
        label,
    }
}

fn bottle(rng: &mut Rng, s: f32, cx: f32, base: f32, c: [f32; 3], l: [f32; 3]) -> Product {
    let hw = s * rng.range(0.1, 0.15);
    let hh = s * rng.range(0.22, 0.28);
    let cy = base - hh;
    let neck_hw = hw * 0.38;
    let neck_hh = s * 0.07;
    let neck_cy = cy - hh - neck_hh + hw * 0.3;
    let cap = [0.05, 0.05, 0.06].map(|k: f32| k + 0.5 * rng.unit() * c[0].min(0.5));
    let parts = vec![
        part(
            Prim::RoundRect {
                cx,
                cy,
                hw,
                hh,
                r: hw * 0.45,
            },
            c,
            Shading::Cylinder,
            Some(l),
        ),
        part(
            Prim::RoundRect {
                cx,
                cy: neck_cy,
                hw: neck_hw,
                hh: neck_hh,
                r: neck_hw * 0.3,
            },
            c,
            Shading::Cylinder,
            None,
        ),
        part(
            Prim::RoundRect {
                cx,
                cy: neck_cy - neck_hh,
                hw: neck_hw * 1.15,
                hh: s * 0.03,
                r: 2.0,
            },
            cap,
            Shading::Cylinder,
            None,
        ),
    ];
    Product {
        kind: "bottle",
        parts,
        base: (base, cx, hw),
    }
}

fn boxy(rng: &mut Rng, s: f32, cx: f32, base: f32, c: [f32; 3], l: [f32; 3]) -> Product {
    let hw = s * rng.range(0.16, 0.24);
    let hh = s * rng.range(0.15, 0.25);
    let depth = s * rng.range(0.04, 0.07);
    let (x0, y0, x1, y1) = (cx - hw, base - 2.0 * hh, cx + hw, base);
    let side = Prim::Polygon(vec![
        (x1, y0),
        (x1 + depth, y0 - depth),
        (x1 + depth, y1 - depth),
        (x1, y1),
    ]);
    let top = Prim::Polygon(vec![
        (x0, y0),
        (x0 + depth, y0 - depth),
        (x1 + depth, y0 - depth),
        (x1, y0),
    ]);
    let parts = vec![
        part(side, c, Shading::Flat(0.62), None),
        part(top, c, Shading::Flat(0.95), None),
        part(
            Prim::RoundRect {
                cx,
                cy: base - hh,
                hw,
                hh,
                r: 1.5,
            },
            c,
            Shading::Flat(0.82),
            Some(l),
        ),
    ];
    Product {
        kind: "box",
        parts,
        base: (base, cx + depth * 0.5, hw + depth * 0.5),
    }
}

fn mug(rng: &mut Rng, s: f32, cx: f32, base: f32, c: [f32; 3], l: [f32; 3]) -> Product {
    let hw = s * rng.range(0.15, 0.2);
    let hh = s * rng.range(0.16, 0.21);
    let cx = cx - hw * 0.3;
    let cy = base - hh;
    let outer = hh * rng.range(0.62, 0.72);
    let inner = outer * rng.range(0.55, 0.68);
    let ring = Prim::Ring {
        cx: cx + hw,
        cy: cy - hh * 0.05,
        outer,
        inner,
    };
    let parts = vec![
        part(ring, c, Shading::Flat(0.7), None),
        part(
            Prim::RoundRect {
                cx,
                cy,
                hw,
                hh,
                r: hw * 0.12,
            },
            c,
            Shading::Cylinder,
            Some(l),
        ),
    ];
    Product {
        kind: "mug",
        parts,
        base: (base, cx + hw * 0.2, hw * 1.1),
    }
}

fn shoe(rng: &mut Rng, s: f32, cx: f32, base: f32, c: [f32; 3]) -> Product {
    let len = s * rng.range(0.28, 0.36);
    let ht = s * rng.range(0.16, 0.22);
    let sole = s * 0.025;
    let flip = if rng.chance(0.5) { 1.0 } else { -1.0 };
    let p = |fx: f32, fy: f32| (cx + flip * fx * len, base - sole - fy * ht);
    let upper = vec![
        p(-1.0, 0.0),
        p(-1.02, 0.55),
        p(-0.85, 1.0),
        p(-0.55, 0.95),
        p(-0.45, 0.6),
        p(0.1, 0.45),
        p(0.6, 0.32),
        p(0.95, 0.2),
        p(1.0, 0.0),
    ];
    let sole_c = [0.85, 0.84, 0.8];
    let parts = vec![
        part(Prim::Polygon(upper), c, Shading::Dome, None),
        part(
            Prim::RoundRect {
                cx,
                cy: base - sole * 0.5,
                hw: len * 1.02,
                hh: sole * 0.5 + 1.0,
                r: sole * 0.4,
            },
            sole_c,
            Shading::Flat(0.7),
            None,
        ),
    ];
    Product {
        kind: "shoe",
        parts,
        base: (base, cx, len),
    }
}

fn can_and_ball(rng: &mut Rng, s: f32, cx: f32, base: f32, c: [f32; 3], l: [f32; 3]) -> Product {
    let hw = s * rng.range(0.1, 0.13);
    let hh = s * rng.range(0.15, 0.19);
    let r = s * rng.range(0.08, 0.11);
    let ball_c = [l[1], l[2], l[0]];
    let parts = vec![
        part(
            Prim::RoundRect {
                cx: cx - hw * 0.6,
                cy: base - hh,
                hw,
                hh,
                r: hw * 0.12,
            },
            c,
            Shading::Cylinder,
            Some(l),
        ),
        part(
            Prim::Ellipse {
                cx: cx + hw * 0.6 + r,
                cy: base - r,
                rx: r,
                ry: r,
            },
            ball_c,
            Shading::Dome,
            None,
        ),
    ];
    Product {
        kind: "can",
        parts,
        base: (base, cx + r * 0.5, hw + r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_have_the_right_sign() {
        let rr = Prim::RoundRect {
            cx: 10.0,
            cy: 10.0,
            hw: 5.0,
            hh: 5.0,
            r: 1.0,
        };
        assert!(rr.sd(10.0, 10.0) < -4.0);
        assert!((rr.sd(17.0, 10.0) - 2.0).abs() < 1e-4);
        let ring = Prim::Ring {
            cx: 0.0,
            cy: 0.0,
            outer: 10.0,
            inner: 5.0,
        };
        assert!(ring.sd(0.0, 0.0) > 0.0, "the hole is outside");
        assert!(ring.sd(7.5, 0.0) < 0.0);
        let tri = Prim::Polygon(vec![(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)]);
        assert!(tri.sd(2.0, 2.0) < 0.0 && tri.sd(9.0, 9.0) > 0.0);
        let wire = Prim::Polyline {
            pts: vec![(0.0, 0.0), (10.0, 0.0), (10.0, 10.0)],
            r: 1.0,
        };
        assert!((wire.sd(5.0, 0.5) + 0.5).abs() < 1e-4);
        assert!((wire.sd(12.0, 5.0) - 1.0).abs() < 1e-4);
        assert!(
            wire.sd(40.0, 40.0) > 20.0,
            "far away it is a lower bound, still outside"
        );
        let e = Prim::Ellipse {
            cx: 0.0,
            cy: 0.0,
            rx: 4.0,
            ry: 4.0,
        };
        assert!((e.sd(6.0, 0.0) - 2.0).abs() < 1e-4);
    }
}
