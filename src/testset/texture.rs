//! Procedural backdrops for the hard set: plain sweeps, wood (grain, knots, plank seams), fabric
//! (plain or twill weave, linen slubs), concrete (multi-octave noise, speckles) and a textured
//! colour (felt), each under studio light (falloff toward the floor, vignette). Colours are
//! linear RGB and every value is a pure function of position and seed, so rows render in
//! parallel and identically everywhere. No image buffers and no products here.

use super::rng::{Rng, mix};
use super::{Backdrop, hsv};
use crate::ops::colour::srgb_to_linear;

/// A textured backdrop under studio light.
#[derive(Debug, Clone)]
pub(super) struct Surface {
    texture: Texture,
    /// Darkening toward the corners (0 = none).
    vignette: f32,
    /// Darkening from the top of the frame to the bottom (0 = none).
    falloff: f32,
}

#[derive(Debug, Clone)]
enum Texture {
    /// Plain colour blending from `top` to `bottom` (a seamless sweep).
    Sweep {
        top: [f32; 3],
        bottom: [f32; 3],
    },
    Wood(Wood),
    Fabric(Fabric),
    Concrete(Concrete),
    Felt(Felt),
}

impl Surface {
    /// A random surface of `kind` for a `w`×`h` frame (the classic backdrops other than
    /// `Coloured` all give a light sweep).
    pub(super) fn random(rng: &mut Rng, kind: Backdrop, seed: u64) -> Surface {
        let texture = match kind {
            Backdrop::Coloured => {
                let top = hsv(rng.unit(), rng.range(0.45, 0.75), rng.range(0.55, 0.8));
                Texture::Sweep {
                    top,
                    bottom: top.map(|c| c * 0.85),
                }
            }
            Backdrop::Wood => Texture::Wood(Wood::random(rng, seed)),
            Backdrop::Fabric => Texture::Fabric(Fabric::random(rng, seed)),
            Backdrop::Concrete => Texture::Concrete(Concrete::random(rng, seed)),
            Backdrop::ColouredTexture => Texture::Felt(Felt::random(rng, seed)),
            _ => {
                let level = rng.range(0.72, 0.92);
                let top = [rng.range(0.98, 1.02), 1.0, rng.range(0.98, 1.02)].map(|t| t * level);
                Texture::Sweep {
                    top,
                    bottom: top.map(|c| c * 0.93),
                }
            }
        };
        Surface {
            texture,
            vignette: rng.range(0.0, 0.4),
            falloff: rng.range(0.0, 0.15),
        }
    }

    /// The lit colour at pixel position `(x, y)` of a `w`×`h` frame.
    pub(super) fn at(&self, x: f32, y: f32, w: f32, h: f32) -> [f32; 3] {
        let (u, v) = (x / w, y / h);
        let c = match &self.texture {
            Texture::Sweep { top, bottom } => [0, 1, 2].map(|k| top[k] + (bottom[k] - top[k]) * v),
            Texture::Wood(t) => t.at(x, y),
            Texture::Fabric(t) => t.at(x, y),
            Texture::Concrete(t) => t.at(x, y),
            Texture::Felt(t) => t.at(x, y),
        };
        let r2 = ((u - 0.5).powi(2) + (v - 0.5).powi(2)) * 2.0;
        let light = (1.0 - self.vignette * r2) * (1.0 - self.falloff * v);
        c.map(|k| k * light)
    }

    /// Mean colour where a product stands (the middle of the frame, toward the floor): what a
    /// low-contrast product is matched to.
    pub(super) fn mean_near_product(&self, w: f32, h: f32) -> [f32; 3] {
        let mut sum = [0.0f32; 3];
        let n = 16;
        for j in 0..n {
            for i in 0..n {
                let x = w * (0.3 + 0.4 * (i as f32 + 0.5) / n as f32);
                let y = h * (0.4 + 0.45 * (j as f32 + 0.5) / n as f32);
                let c = self.at(x, y, w, h);
                (0..3).for_each(|k| sum[k] += c[k]);
            }
        }
        sum.map(|s| s / (n * n) as f32)
    }
}

/// Lattice value in `[0, 1)` at integer coordinates.
fn lattice(seed: u64, ix: i32, iy: i32) -> f32 {
    let key = (u64::from(ix as u32) << 32) | u64::from(iy as u32);
    (mix(seed ^ key.wrapping_mul(0xD6E8_FEB8_6659_FD93)) >> 40) as f32 / (1u64 << 24) as f32
}

/// Smooth value noise in `[0, 1)` with features about one unit across.
pub(super) fn value_noise(seed: u64, x: f32, y: f32) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    let (ix, iy) = (fx as i32, fy as i32);
    let ease = |t: f32| t * t * (3.0 - 2.0 * t);
    let (tx, ty) = (ease(x - fx), ease(y - fy));
    let (a, b) = (lattice(seed, ix, iy), lattice(seed, ix + 1, iy));
    let (c, d) = (lattice(seed, ix, iy + 1), lattice(seed, ix + 1, iy + 1));
    let (top, bottom) = (a + (b - a) * tx, c + (d - c) * tx);
    top + (bottom - top) * ty
}

/// `octaves` of value noise, each twice as fine and half as strong, in `[0, 1)`.
pub(super) fn fbm(seed: u64, x: f32, y: f32, octaves: u32) -> f32 {
    let (mut sum, mut amp, mut norm, mut f) = (0.0, 1.0, 0.0, 1.0);
    for o in 0..octaves {
        sum += amp * value_noise(seed.wrapping_add(u64::from(o) * 0x9E37), x * f, y * f);
        norm += amp;
        amp *= 0.5;
        // Not exactly 2, so the octaves' lattices do not line up into a visible grid.
        f *= 2.03;
    }
    sum / norm
}

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [0, 1, 2].map(|k| a[k] + (b[k] - a[k]) * t)
}

fn srgb(c: [f32; 3]) -> [f32; 3] {
    c.map(srgb_to_linear)
}

/// Boards of wood: growth rings as stripes along the grain, warped by noise, bulging round
/// knots, with fine fibres and dark seams between planks.
#[derive(Debug, Clone)]
struct Wood {
    seed: u64,
    light: [f32; 3],
    dark: [f32; 3],
    /// Grain direction (cosine, sine).
    dir: (f32, f32),
    /// Distance between growth rings, pixels.
    period: f32,
    warp: f32,
    /// Plank width across the grain, pixels (0 = one board).
    plank: f32,
    /// Knots: position along and across the grain, radius.
    knots: Vec<(f32, f32, f32)>,
}

impl Wood {
    fn random(rng: &mut Rng, seed: u64) -> Wood {
        // From pale pine to walnut, or whitewashed boards.
        let t = rng.unit();
        let (light, dark) = if rng.chance(0.2) {
            ([0.86, 0.82, 0.74], [0.7, 0.63, 0.53])
        } else {
            (
                lerp3([0.82, 0.64, 0.44], [0.46, 0.31, 0.2], t),
                lerp3([0.62, 0.42, 0.25], [0.24, 0.15, 0.09], t),
            )
        };
        let across_frame = if rng.chance(0.7) {
            0.0
        } else {
            std::f32::consts::FRAC_PI_2
        };
        let angle = across_frame + rng.range(-0.12, 0.12);
        let knots = (0..rng.below(4))
            .map(|_| {
                (
                    rng.range(0.0, 1400.0),
                    rng.range(0.0, 1400.0),
                    rng.range(5.0, 16.0),
                )
            })
            .collect();
        Wood {
            seed: mix(seed ^ 0x57_00D),
            light: srgb(light),
            dark: srgb(dark),
            dir: (angle.cos(), angle.sin()),
            period: rng.range(7.0, 24.0),
            warp: rng.range(8.0, 40.0),
            plank: if rng.chance(0.6) {
                rng.range(90.0, 260.0)
            } else {
                0.0
            },
            knots,
        }
    }

    fn at(&self, x: f32, y: f32) -> [f32; 3] {
        let u = x * self.dir.0 + y * self.dir.1;
        let v = -x * self.dir.1 + y * self.dir.0 + 700.0;
        let (plank, pv) = if self.plank > 0.0 {
            ((v / self.plank).floor(), v.rem_euclid(self.plank))
        } else {
            (0.0, v)
        };
        let ps = mix(self.seed ^ plank as i64 as u64);
        let mut across = v + lattice(ps, 0, 0) * 500.0;
        across += self.warp * (fbm(ps, u / 260.0, v / 45.0, 3) - 0.5);
        let mut core = 0.0f32;
        for &(ku, kv, kr) in &self.knots {
            let (du, dv) = ((u - ku) / (kr * 3.0), (v - kv) / kr);
            let d2 = du * du + dv * dv;
            across += kr * 1.8 * (-d2).exp();
            core = core.max((-d2 * 5.0).exp());
        }
        let ring = (across / self.period).rem_euclid(1.0);
        let fibre = value_noise(ps ^ 1, u / 30.0, v / 0.8);
        let broad = fbm(ps ^ 2, u / 400.0, v / 150.0, 2);
        let k = 0.5 * ring.powi(3) + 0.25 * fibre + 0.3 * (broad - 0.5) + 0.75 * core;
        let tone = 0.92 + 0.16 * lattice(ps, 1, 1);
        let mut c = lerp3(self.light, self.dark, k.clamp(0.0, 1.0)).map(|c| c * tone);
        if self.plank > 0.0 {
            let gap = pv.min(self.plank - pv);
            if gap < 1.4 {
                c = c.map(|k| k * (0.3 + 0.7 * gap / 1.4));
            }
        }
        c
    }
}

/// Woven cloth: threads a few pixels apart, round in section, dipping where they cross; linen
/// has uneven (slubbed) threads.
#[derive(Debug, Clone)]
struct Fabric {
    seed: u64,
    colour: [f32; 3],
    period: f32,
    dir: (f32, f32),
    twill: bool,
    /// How much a thread's thickness varies along it (0 = even).
    slub: f32,
}

impl Fabric {
    fn random(rng: &mut Rng, seed: u64) -> Fabric {
        let colour = match rng.below(4) {
            0 => srgb([0.8, 0.74, 0.64]), // linen
            1 => srgb([0.7, 0.7, 0.69]),  // grey
            2 => srgb([0.9, 0.89, 0.86]), // white
            _ => hsv(rng.unit(), rng.range(0.3, 0.6), rng.range(0.5, 0.8)),
        };
        let angle = rng.range(-0.15, 0.15);
        Fabric {
            seed: mix(seed ^ 0xFAB),
            colour,
            period: rng.range(3.0, 7.0),
            dir: (angle.cos(), angle.sin()),
            twill: rng.chance(0.3),
            slub: rng.range(0.0, 0.5),
        }
    }

    fn at(&self, x: f32, y: f32) -> [f32; 3] {
        let u = (x * self.dir.0 + y * self.dir.1) / self.period + 500.0;
        let v = (-x * self.dir.1 + y * self.dir.0) / self.period + 500.0;
        let (i, j) = (u.floor(), v.floor());
        let warp_over = if self.twill {
            (i - j).rem_euclid(3.0) < 1.0
        } else {
            (i + j).rem_euclid(2.0) < 1.0
        };
        // The thread on top here: across it, along it, which thread, where along it.
        let (across, along, thread, pos) = if warp_over {
            (u - i, v - j, i, v)
        } else {
            (v - j, u - i, j + 7919.0, u)
        };
        let ts = mix(self.seed ^ thread as i64 as u64);
        let width = 0.82 + self.slub * (value_noise(ts, pos / 6.0, 0.5) - 0.5);
        let d = ((across - 0.5).abs() * 2.0 / width).min(1.0);
        let profile = (1.0 - d * d).sqrt();
        let dip = 0.7 + 0.3 * (std::f32::consts::PI * along).sin().sqrt();
        let dye = 0.94 + 0.12 * lattice(ts, 3, 3);
        let mottle = 0.94 + 0.12 * fbm(self.seed, x / 70.0, y / 70.0, 3);
        let tone = (0.5 + 0.5 * profile * dip) * dye * mottle;
        self.colour.map(|c| c * tone)
    }
}

/// Cast concrete: broad blotches over fine grain, with scattered dark and light speckles.
#[derive(Debug, Clone)]
struct Concrete {
    seed: u64,
    colour: [f32; 3],
    /// Size of the broadest blotches, pixels.
    scale: f32,
    contrast: f32,
    /// Fraction of `cell`-sized squares holding a speckle.
    speckle: f32,
    cell: f32,
}

impl Concrete {
    fn random(rng: &mut Rng, seed: u64) -> Concrete {
        let g = rng.range(0.5, 0.8);
        let tint = rng.range(-0.03, 0.03);
        Concrete {
            seed: mix(seed ^ 0xC0C0),
            colour: srgb([g + tint, g, g - tint]),
            scale: rng.range(40.0, 160.0),
            contrast: rng.range(0.08, 0.22),
            speckle: rng.range(0.05, 0.3),
            cell: rng.range(5.0, 8.0),
        }
    }

    fn at(&self, x: f32, y: f32) -> [f32; 3] {
        let n = fbm(self.seed, x / self.scale, y / self.scale, 6);
        let grain = value_noise(self.seed ^ 1, x / 1.5, y / 1.5) - 0.5;
        let mut tone = 1.0 + self.contrast * (n - 0.5) * 2.0 + 0.06 * grain;
        let (cx, cy) = ((x / self.cell).floor(), (y / self.cell).floor());
        let h = mix(self.seed ^ ((cx as i64 as u64) << 32) ^ (cy as i64 as u64));
        let unit = |shift: u32| ((h >> shift) & 0xFF) as f32 / 255.0;
        if ((h & 0xFFFF) as f32 / 65536.0) < self.speckle {
            let r = 0.5 + 1.3 * unit(16);
            let px = cx * self.cell + r + unit(24) * (self.cell - 2.0 * r);
            let py = cy * self.cell + r + unit(32) * (self.cell - 2.0 * r);
            let cover = (r - (x - px).hypot(y - py) + 0.5).clamp(0.0, 1.0);
            tone *= if (h >> 40) & 3 != 0 {
                1.0 - 0.5 * cover
            } else {
                1.0 + 0.35 * cover
            };
        }
        self.colour.map(|c| c * tone)
    }
}

/// A saturated colour with a soft fibrous texture (felt, card, suede).
#[derive(Debug, Clone)]
struct Felt {
    seed: u64,
    colour: [f32; 3],
    fibre: f32,
    mottle: f32,
    amp: f32,
}

impl Felt {
    fn random(rng: &mut Rng, seed: u64) -> Felt {
        Felt {
            seed: mix(seed ^ 0xFE17),
            colour: hsv(rng.unit(), rng.range(0.45, 0.8), rng.range(0.5, 0.8)),
            fibre: rng.range(1.5, 3.5),
            mottle: rng.range(25.0, 70.0),
            amp: rng.range(0.08, 0.18),
        }
    }

    fn at(&self, x: f32, y: f32) -> [f32; 3] {
        let fibres = fbm(self.seed, x / self.fibre, y / self.fibre, 2) - 0.5;
        let mottle = fbm(self.seed ^ 1, x / self.mottle, y / self.mottle, 3) - 0.5;
        let tone = 1.0 + 2.0 * self.amp * fibres + 0.16 * mottle;
        self.colour.map(|c| c * tone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_bounded_and_continuous() {
        for i in 0..500 {
            let (x, y) = (i as f32 * 0.37 - 60.0, i as f32 * 0.91 - 200.0);
            let n = value_noise(3, x, y);
            assert!((0.0..1.0).contains(&n), "{n}");
            assert!((value_noise(3, x + 0.01, y) - n).abs() < 0.05);
            assert!((0.0..1.0).contains(&fbm(3, x, y, 5)));
        }
    }

    /// Standard deviation of luminance over a 64×64 patch.
    fn spread(s: &Surface) -> f32 {
        let v: Vec<f32> = (0..64 * 64)
            .map(|i| {
                let c = s.at(
                    (i % 64) as f32 + 300.5,
                    (i / 64) as f32 + 300.5,
                    800.0,
                    800.0,
                );
                crate::ops::colour::luminance(c)
            })
            .collect();
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt() / mean
    }

    #[test]
    fn textures_are_textured_and_sweeps_are_smooth() {
        for seed in 0..8 {
            for kind in [
                Backdrop::Wood,
                Backdrop::Fabric,
                Backdrop::Concrete,
                Backdrop::ColouredTexture,
            ] {
                let s = Surface::random(&mut Rng::new(seed), kind, seed);
                assert!(spread(&s) > 0.02, "{kind:?} seed {seed}: {}", spread(&s));
                assert_eq!(
                    s.at(10.5, 20.5, 800.0, 800.0),
                    s.at(10.5, 20.5, 800.0, 800.0)
                );
            }
            let plain = Surface::random(&mut Rng::new(seed), Backdrop::LightSeamless, seed);
            assert!(spread(&plain) < 0.02);
            let m = plain.mean_near_product(800.0, 800.0);
            assert!(m.iter().all(|c| (0.4..1.0).contains(c)), "{m:?}");
        }
    }
}
