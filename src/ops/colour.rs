//! sRGB ⇄ linear-light conversions shared by the operations (table-driven decode, exact encode).

use std::sync::LazyLock;

static DECODE: LazyLock<[f32; 256]> = LazyLock::new(|| {
    let mut t = [0.0f32; 256];
    for (i, v) in t.iter_mut().enumerate() {
        *v = srgb_to_linear(i as f32 / 255.0);
    }
    t
});

/// sRGB-encoded value in `[0, 1]` to linear light.
pub fn srgb_to_linear(v: f32) -> f32 {
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// Linear light to sRGB-encoded value in `[0, 1]` (input clamped).
pub fn linear_to_srgb(v: f32) -> f32 {
    let v = v.clamp(0.0, 1.0);
    if v <= 0.003_130_8 {
        v * 12.92
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    }
}

/// An 8-bit sRGB channel to linear light via a lookup table.
pub fn decode(v: u8) -> f32 {
    DECODE[v as usize]
}

/// Linear light to an 8-bit sRGB channel, rounded.
pub fn encode(v: f32) -> u8 {
    (linear_to_srgb(v) * 255.0 + 0.5) as u8
}

/// Rec. 709 luminance of a linear RGB triple.
pub fn luminance(c: [f32; 3]) -> f32 {
    0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte() {
        for i in 0..=255u8 {
            assert_eq!(encode(decode(i)), i);
        }
        assert!((srgb_to_linear(0.5) - 0.214).abs() < 1e-3);
    }
}
