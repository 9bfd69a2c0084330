//! Products for the hard set with thin parts and holes: a bag with strap handles, a ring, a
//! plant with stems, headphones with a cable, and any classic product with a price tag on a
//! string. Parts are the same signed-distance primitives as in `shapes`, so the true matte stays
//! analytic. Pure geometry and colour; no image buffers here.

use super::rng::Rng;
use super::shapes::{self, Part, Prim, Product, Shading, part};

/// A random product for a `w`×`h` frame: one with thin parts or holes, or a classic one that
/// often carries a tag on a string.
pub(super) fn random_product(
    rng: &mut Rng,
    w: f32,
    h: f32,
    colour: [f32; 3],
    label: [f32; 3],
) -> Product {
    let s = w.min(h);
    let cx = w * rng.range(0.42, 0.58);
    let base = h * rng.range(0.78, 0.88);
    match rng.below(10) {
        0 | 1 => bag(rng, s, cx, base, colour, label),
        2 => ring(rng, s, cx, base, colour, label),
        3 | 4 => plant(rng, s, cx, base, colour, label),
        5 => headphones(rng, s, cx, base, colour),
        _ => {
            let mut p = shapes::random_product(rng, w, h, colour, label);
            if rng.chance(0.7) {
                add_tag(rng, &mut p, (w, h), s, label);
            }
            p
        }
    }
}

/// `n + 1` points along the quadratic Bézier curve `a`–`b`–`c`.
fn bezier(a: (f32, f32), b: (f32, f32), c: (f32, f32), n: usize) -> Vec<(f32, f32)> {
    (0..=n)
        .map(|i| {
            let t = i as f32 / n as f32;
            let (p, q, r) = ((1.0 - t) * (1.0 - t), 2.0 * t * (1.0 - t), t * t);
            (p * a.0 + q * b.0 + r * c.0, p * a.1 + q * b.1 + r * c.1)
        })
        .collect()
}

fn flat(prim: Prim, colour: [f32; 3], f: f32) -> Part {
    part(prim, colour, Shading::Flat(f), None)
}

/// A tote: a tapered body with one or two strap handles whose loops show the backdrop.
fn bag(rng: &mut Rng, s: f32, cx: f32, base: f32, c: [f32; 3], l: [f32; 3]) -> Product {
    let hw = s * rng.range(0.17, 0.24);
    let top = base - 2.0 * s * rng.range(0.13, 0.19);
    let taper = hw * rng.range(0.7, 0.9);
    let outer = taper * rng.range(0.5, 0.75);
    let thick = rng.range(2.0, 7.0);
    let mut parts = Vec::new();
    let offsets: &[f32] = if rng.chance(0.4) {
        &[-0.2, 0.2]
    } else {
        &[0.0]
    };
    for &dx in offsets {
        let handle = Prim::Ring {
            cx: cx + dx * outer,
            cy: top + 1.0,
            outer,
            inner: outer - thick,
        };
        parts.push(flat(handle, c, 0.75));
    }
    let body = Prim::Polygon(vec![
        (cx - hw, base),
        (cx - taper, top),
        (cx + taper, top),
        (cx + hw, base),
    ]);
    let logo = rng.chance(0.5).then_some(l);
    parts.push(part(body, c, Shading::Flat(0.88), logo));
    Product {
        kind: "bag",
        parts,
        base: (base, cx, hw),
    }
}

/// A ring standing on its edge, with a stone on top.
fn ring(rng: &mut Rng, s: f32, cx: f32, base: f32, c: [f32; 3], l: [f32; 3]) -> Product {
    let outer = s * rng.range(0.12, 0.2);
    let thick = (outer * rng.range(0.1, 0.25)).max(3.0);
    let cy = base - outer;
    let top = cy - outer;
    let (gw, gh) = (outer * rng.range(0.18, 0.3), outer * rng.range(0.12, 0.22));
    let stone = Prim::Polygon(vec![
        (cx - gw, top + thick * 0.5),
        (cx - gw * 0.6, top - gh),
        (cx + gw * 0.6, top - gh),
        (cx + gw, top + thick * 0.5),
        (cx, top + gh),
    ]);
    let band = Prim::Ring {
        cx,
        cy,
        outer,
        inner: outer - thick,
    };
    Product {
        kind: "ring",
        parts: vec![
            part(band, c, Shading::Cylinder, None),
            part(stone, l, Shading::Dome, None),
        ],
        base: (base, cx, outer * 0.5),
    }
}

/// A pot with two to four stems 1–4 px wide, each ending in a leaf.
fn plant(rng: &mut Rng, s: f32, cx: f32, base: f32, c: [f32; 3], l: [f32; 3]) -> Product {
    let pot_hw = s * rng.range(0.09, 0.13);
    let pot_top = base - 2.0 * s * rng.range(0.08, 0.12);
    let stem_c = c.map(|k| k * 0.8);
    let mut parts = Vec::new();
    for _ in 0..2 + rng.below(3) {
        let x0 = cx + pot_hw * rng.range(-0.5, 0.5);
        let height = s * rng.range(0.2, 0.38);
        let lean = s * rng.range(-0.2, 0.2);
        let bend = (
            x0 + lean * 0.1 + s * rng.range(-0.05, 0.05),
            pot_top - height * 0.5,
        );
        let tip = (x0 + lean, pot_top - height);
        let stem = Prim::Polyline {
            pts: bezier((x0, pot_top + 3.0), bend, tip, 16),
            r: rng.range(0.6, 2.0),
        };
        parts.push(flat(stem, stem_c, 0.85));
        let (dx, dy) = (tip.0 - bend.0, tip.1 - bend.1);
        let len = dx.hypot(dy).max(1e-3);
        let leaf = leaf(tip, (dx / len, dy / len), s * rng.range(0.04, 0.07));
        parts.push(part(leaf, l, Shading::Dome, None));
    }
    let pot = Prim::Polygon(vec![
        (cx - pot_hw * 0.8, base),
        (cx - pot_hw, pot_top),
        (cx + pot_hw, pot_top),
        (cx + pot_hw * 0.8, base),
    ]);
    parts.push(flat(pot, c, 0.85));
    let rim = Prim::RoundRect {
        cx,
        cy: pot_top,
        hw: pot_hw * 1.08,
        hh: s * 0.012 + 1.0,
        r: 1.5,
    };
    parts.push(flat(rim, c, 0.95));
    Product {
        kind: "plant",
        parts,
        base: (base, cx, pot_hw),
    }
}

/// A lens-shaped leaf of length `len` starting at `at` and pointing along `dir`.
fn leaf(at: (f32, f32), dir: (f32, f32), len: f32) -> Prim {
    let normal = (-dir.1, dir.0);
    let half_width = len * 0.22;
    let side = |t: f32, sign: f32| {
        let across = sign * half_width * (std::f32::consts::PI * t).sin();
        (
            at.0 + dir.0 * len * t + normal.0 * across,
            at.1 + dir.1 * len * t + normal.1 * across,
        )
    };
    let mut pts: Vec<(f32, f32)> = (0..=8).map(|i| side(i as f32 / 8.0, 1.0)).collect();
    pts.extend((1..8).rev().map(|i| side(i as f32 / 8.0, -1.0)));
    Prim::Polygon(pts)
}

/// Over-ear headphones: a band arching between two cups, and a 1–2 px cable on the floor.
fn headphones(rng: &mut Rng, s: f32, cx: f32, base: f32, c: [f32; 3]) -> Product {
    let span = s * rng.range(0.16, 0.22);
    let (cup_hw, cup_hh) = (s * rng.range(0.045, 0.065), s * rng.range(0.07, 0.09));
    let cup_cy = base - cup_hh;
    let arch_cy = cup_cy - cup_hh * 0.3;
    let arch = (0..=24)
        .map(|i| {
            let a = std::f32::consts::PI * (1.0 + i as f32 / 24.0);
            (cx + span * a.cos(), arch_cy + span * 1.1 * a.sin())
        })
        .collect();
    let mut parts = vec![flat(
        Prim::Polyline {
            pts: arch,
            r: rng.range(2.5, 6.0),
        },
        c,
        0.8,
    )];
    for x in [cx - span, cx + span] {
        let cup = Prim::RoundRect {
            cx: x,
            cy: cup_cy,
            hw: cup_hw,
            hh: cup_hh,
            r: cup_hw * 0.6,
        };
        parts.push(part(cup, c, Shading::Cylinder, None));
    }
    let start = (cx - span, cup_cy + cup_hh * 0.5);
    let bend = (cx - span - s * rng.range(0.05, 0.15), base + s * 0.05);
    let end = (
        cx + s * rng.range(-0.1, 0.25),
        base + s * rng.range(0.02, 0.08),
    );
    let cable = Prim::Polyline {
        pts: bezier(start, bend, end, 24),
        r: rng.range(0.5, 1.2),
    };
    parts.push(flat(cable, c.map(|k| k * 0.7), 0.8));
    Product {
        kind: "headphones",
        parts,
        base: (base, cx, span + cup_hw),
    }
}

/// Whether the product's coverage is full (at least a pixel inside) at `(x, y)`.
fn is_inside(p: &Product, x: f32, y: f32) -> bool {
    p.parts.iter().any(|part| part.prim.sd(x, y) < -1.0)
}

/// Hangs a tag on a 1–2 px string from the side of the product, toward the wider margin.
fn add_tag(rng: &mut Rng, p: &mut Product, (w, h): (f32, f32), s: f32, colour: [f32; 3]) {
    let bounds = p.parts.iter().map(|q| q.prim.bounds()).fold(
        (f32::MAX, f32::MAX, f32::MIN, f32::MIN),
        |(l, t, r, b), (a, c, d, e)| (l.min(a), t.min(c), r.max(d), b.max(e)),
    );
    let (left, top, right, bottom) = bounds;
    let y = top + (bottom - top) * rng.range(0.15, 0.5);
    let mut row = (left.max(0.0) as u32..right.min(w) as u32).map(|x| x as f32 + 0.5);
    let Some(first) = row.clone().find(|&x| is_inside(p, x, y)) else {
        return;
    };
    let last = row.rfind(|&x| is_inside(p, x, y)).unwrap_or(first);
    let side = if w - last > first { 1.0 } else { -1.0 };
    let edge = if side > 0.0 { last } else { first };
    let margin = if side > 0.0 { w - edge } else { edge };
    let reach = (s * rng.range(0.1, 0.2))
        .min(margin - s * 0.06)
        .max(s * 0.03);
    let start = (edge - side * 3.0, y);
    let bend = (edge + side * reach * 0.6, y - s * rng.range(0.02, 0.06));
    let (tag_hw, tag_hh) = (s * 0.025, s * 0.04);
    let drop = (y + s * rng.range(0.06, 0.15)).min(h - 2.0 * tag_hh - 4.0);
    let end = (edge + side * reach, drop);
    let string_c = if rng.chance(0.5) {
        [0.03, 0.03, 0.03]
    } else {
        colour
    };
    let string = Prim::Polyline {
        pts: bezier(start, bend, end, 16),
        r: rng.range(0.5, 1.0),
    };
    p.parts.push(flat(string, string_c, 0.9));
    let tag = Prim::RoundRect {
        cx: end.0,
        cy: end.1 + tag_hh - 1.0,
        hw: tag_hw,
        hh: tag_hh,
        r: 2.0,
    };
    p.parts.push(flat(tag, colour, 0.95));
}
