//! placeholder
use image::RgbaImage;
pub struct ResizeOptions {
    pub sharpen: f32,
}
pub fn resize(
    img: &RgbaImage,
    w: u32,
    h: u32,
    _o: &ResizeOptions,
) -> Result<RgbaImage, super::OpError> {
    Ok(image::imageops::resize(
        img,
        w,
        h,
        image::imageops::FilterType::Triangle,
    ))
}
