//! placeholder
use image::RgbaImage;
pub struct LightingOptions {
    pub strength: f32,
}
pub fn fix_lighting(img: &RgbaImage, _opts: &LightingOptions) -> RgbaImage {
    img.clone()
}
