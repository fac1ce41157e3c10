//! Image preprocessing shared by every backend: decode (JPEG, PNG, WebP) with EXIF
//! orientation, convert to RGB (transparency onto white), resize and crop to the encoder's square input, and the
//! float normalization the CPU engine needs.
//!
//! The steps mirror Hugging Face's `CLIPImageProcessor` (PIL path): shortest side to the
//! model size with antialiased bicubic, then a center crop, then `(x/255 - mean) / std`.
//! The Hailo encoder takes the uint8 RGB crop as it is (its normalization lives in the HEF).
//!
//! A JPEG much larger than the encoder's input (Immich's 1440-px previews) is decoded by
//! libjpeg-turbo at a DCT scale (1/2, 1/4, 1/8) that keeps its shorter side at or above
//! twice the input size ([`JPEG_SCALE_MARGIN`]), then resized as any other image
//! ([`SquareInput`]): the inverse DCT of the smaller blocks, the smaller colour conversion
//! and the smaller resize are most of a full decode's cost. Huffman decoding is not: it
//! reads every coefficient at any scale.

use std::io::Cursor;

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use ndarray::Array4;
use serde::{Deserialize, Serialize};

/// How an image becomes the encoder's square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Shortest side to the input size, then a center crop (CLIP's own preprocessing).
    #[default]
    ShortestEdgeCenterCrop,
    /// Both sides to the input size, ignoring aspect ratio (what hailo-apps does).
    Stretch,
    /// As Immich's machine-learning service prepares an image for CLIP: the JPEG decoded
    /// whole (no DCT scaling) and the shorter side resized to the input size with Python's
    /// float arithmetic `int(long / short * size)`, then the centre crop
    /// (immich `machine-learning/immich_ml/models/transforms.py`, `resize_pil`, `crop_pil`).
    Immich,
}

impl ResizeMode {
    /// Whether a large JPEG may be decoded at a DCT scale before resizing. Immich decodes its
    /// previews whole, so the mode that follows it does too.
    fn allows_scaled_decode(self) -> bool {
        !matches!(self, ResizeMode::Immich)
    }
}

/// The resampling filter of a resize, by PIL's names (what Immich's `preprocess_cfg.json`
/// says in `interpolation`). Each is a convolution with PIL's support widening when
/// downscaling, which is PIL's antialiasing; nearest has no such counterpart and is refused
/// where a model asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interpolation {
    /// PIL's BICUBIC: the a = -0.5 cubic (Catmull-Rom); CLIP's and OpenCLIP's default.
    #[default]
    Bicubic,
    Bilinear,
    /// PIL's LANCZOS: Lanczos with a = 3.
    Lanczos,
    Box,
    Hamming,
}

impl Interpolation {
    /// The filter PIL calls `name` (case-insensitive), or None for one not supported.
    pub fn from_pil_name(name: &str) -> Option<Interpolation> {
        Some(match name.to_ascii_lowercase().as_str() {
            "bicubic" => Interpolation::Bicubic,
            "bilinear" => Interpolation::Bilinear,
            "lanczos" => Interpolation::Lanczos,
            "box" => Interpolation::Box,
            "hamming" => Interpolation::Hamming,
            _ => return None,
        })
    }

    fn filter(self) -> FilterType {
        match self {
            Interpolation::Bicubic => FilterType::CatmullRom,
            Interpolation::Bilinear => FilterType::Bilinear,
            Interpolation::Lanczos => FilterType::Lanczos3,
            Interpolation::Box => FilterType::Box,
            Interpolation::Hamming => FilterType::Hamming,
        }
    }
}

/// How an encoded image becomes the encoder's square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SquareInput {
    /// Side of the square.
    pub size: u32,
    pub mode: ResizeMode,
    pub interpolation: Interpolation,
    /// `performance.jpeg_scaled_decode`: decode a large JPEG at a DCT scale.
    pub jpeg_scaled_decode: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PreprocessError {
    #[error("unsupported image format: {0} (JPEG, PNG and WebP are accepted)")]
    UnsupportedFormat(String),
    #[error("image is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels")]
    TooManyPixels {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error("image could not be decoded: {0}")]
    Corrupt(String),
}

/// Bytes of memory that decoding `bytes` takes at its peak, from the header alone: the
/// decoded pixels in their own format (16-bit RGBA is 8 bytes a pixel), the RGBA copy that
/// flattening transparency makes, and the RGB result. Checks the format and the pixel limit
/// as [`decode_rgb`] does.
pub fn decode_cost(bytes: &[u8], max_pixels: u64) -> Result<u64, PreprocessError> {
    let decoder = header(bytes, max_pixels)?;
    let pixels = u64::from(decoder.dimensions().0) * u64::from(decoder.dimensions().1);
    let color = decoder.color_type();
    let alpha_copy = if color.has_alpha() { 4 } else { 0 };
    Ok(pixels * (u64::from(color.bytes_per_pixel()) + alpha_copy + 3))
}

/// Width and height as the header states them (before any EXIF rotation), what a decoder
/// such as PIL reports.
pub fn image_dimensions(bytes: &[u8]) -> Result<(u32, u32), PreprocessError> {
    Ok(header(bytes, u64::MAX)?.dimensions())
}

/// The image's decoder with its header read and checked: a known format, some pixels, and
/// no more than `max_pixels`.
fn header(bytes: &[u8], max_pixels: u64) -> Result<impl ImageDecoder + use<'_>, PreprocessError> {
    let format = image::guess_format(bytes)
        .map_err(|_| PreprocessError::UnsupportedFormat("unrecognized data".into()))?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP
    ) {
        return Err(PreprocessError::UnsupportedFormat(format!("{format:?}")));
    }
    let reader = ImageReader::with_format(Cursor::new(bytes), format);
    let decoder = reader
        .into_decoder()
        .map_err(|e| PreprocessError::Corrupt(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(PreprocessError::TooManyPixels {
            width,
            height,
            pixels,
            limit: max_pixels,
        });
    }
    if pixels == 0 {
        return Err(PreprocessError::Corrupt("image has no pixels".into()));
    }
    Ok(decoder)
}

/// Decodes an encoded image into upright RGB, refusing oversized images from the header
/// alone, before any pixel memory is allocated.
pub fn decode_rgb(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, PreprocessError> {
    decode_rgb_at_least(bytes, max_pixels, None)
}

/// Like [`decode_rgb`], but a JPEG whose shorter side is at least twice `min_short_side`
/// comes out smaller: decoded at the largest DCT scale that keeps the shorter side at or
/// above `min_short_side`. A JPEG libjpeg-turbo cannot turn into RGB (CMYK, YCCK) or refuses
/// (a truncated file it would warn about) is decoded whole as without it.
pub fn decode_rgb_at_least(
    bytes: &[u8],
    max_pixels: u64,
    min_short_side: Option<u32>,
) -> Result<RgbImage, PreprocessError> {
    let mut decoder = header(bytes, max_pixels)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let scaled = match min_short_side {
        Some(min) if image::guess_format(bytes).ok() == Some(ImageFormat::Jpeg) => {
            scaled_jpeg(bytes, decoder.dimensions(), min)
        }
        _ => None,
    };
    let mut image = match scaled {
        Some(rgb) => DynamicImage::ImageRgb8(rgb),
        None => DynamicImage::from_decoder(decoder)
            .map_err(|e| PreprocessError::Corrupt(e.to_string()))?,
    };
    image.apply_orientation(orientation);
    Ok(if image.color().has_alpha() {
        composite_on_white(&image.to_rgba8())
    } else {
        image.to_rgb8()
    })
}

/// The largest DCT scale (denominator 8, 4 or 2) at which a `width`×`height` JPEG keeps its
/// shorter side at or above `min_short_side`; 1 when none does. libjpeg rounds scaled
/// sides up.
pub fn jpeg_scale_denominator(width: u32, height: u32, min_short_side: u32) -> u32 {
    let short = width.min(height);
    [8, 4, 2]
        .into_iter()
        .find(|&d| short.div_ceil(d) >= min_short_side.max(1))
        .unwrap_or(1)
}

/// A JPEG decoded by libjpeg-turbo at the scale [`jpeg_scale_denominator`] picks, or None
/// when no scale applies or libjpeg-turbo cannot or will not decode it to RGB (the caller
/// then decodes it whole). `dimensions` are the header's, already checked against the
/// pixel limit.
fn scaled_jpeg(bytes: &[u8], dimensions: (u32, u32), min_short_side: u32) -> Option<RgbImage> {
    let denominator = jpeg_scale_denominator(dimensions.0, dimensions.1, min_short_side);
    if denominator == 1 {
        return None;
    }
    let mut decompressor = turbojpeg::Decompressor::new().ok()?;
    let header = decompressor.read_header(bytes).ok()?;
    if (header.width, header.height) != (dimensions.0 as usize, dimensions.1 as usize)
        || header.is_lossless
        || !matches!(
            header.colorspace,
            turbojpeg::Colorspace::YCbCr | turbojpeg::Colorspace::Gray | turbojpeg::Colorspace::RGB
        )
    {
        return None;
    }
    let factor = turbojpeg::ScalingFactor::new(1, denominator as usize);
    decompressor.set_scaling_factor(factor).ok()?;
    let scaled = header.scaled(factor);
    let mut out = turbojpeg::Image {
        pixels: vec![0u8; scaled.width * scaled.height * 3],
        width: scaled.width,
        pitch: scaled.width * 3,
        height: scaled.height,
        format: turbojpeg::PixelFormat::RGB,
    };
    // An error here (corrupt data, or a warning such as a premature end, which TurboJPEG
    // reports as an error) leaves the file to the lenient whole-image decoder.
    decompressor.decompress(bytes, out.as_deref_mut()).ok()?;
    RgbImage::from_raw(scaled.width as u32, scaled.height as u32, out.pixels)
}

/// How much larger than the encoder's input a DCT-scaled JPEG stays on its shorter side.
/// Measured on 1440-px previews (tests/preview_parity.rs) with the bundled model: decoded to
/// 720 px (margin 2) every embedding stays within cosine 0.999 of transformers' on the full
/// decode; decoded to 360 px (margin 1) one falls to 0.987. The scaled IDCT averages blocks
/// like a box filter, and the bicubic resize after it must still have room to low-pass.
pub const JPEG_SCALE_MARGIN: u32 = 2;

impl SquareInput {
    /// Decodes an encoded image for this input: a JPEG at least twice
    /// [`JPEG_SCALE_MARGIN`] times the input on its shorter side at a DCT scale, when
    /// `jpeg_scaled_decode` is on and the resize mode allows it.
    pub fn decode(&self, bytes: &[u8], max_pixels: u64) -> Result<RgbImage, PreprocessError> {
        let min_short_side = (self.jpeg_scaled_decode && self.mode.allows_scaled_decode())
            .then_some(self.size * JPEG_SCALE_MARGIN);
        decode_rgb_at_least(bytes, max_pixels, min_short_side)
    }

    /// Brings a decoded image to the square input.
    pub fn resize(&self, rgb: &RgbImage) -> Result<RgbImage, PreprocessError> {
        resize_square_with(rgb, self.size, self.mode, self.interpolation)
    }
}

/// Flattens transparency onto white, as Hugging Face's `convert_to_rgb` does (PIL
/// `alpha_composite` over an opaque white background, with PIL's integer rounding), so a
/// transparent PNG looks to the model as it looks on a page.
pub fn composite_on_white(rgba: &image::RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let a = u32::from(a);
        let blend = |c: u8| {
            // PIL: coef1 = a·128, coef2 = (255 − a)·128, then a rounded division by 255.
            let t = (u32::from(c) * a + 255 * (255 - a)) * 128 + (0x80 << 7);
            ((((t >> 8) + t) >> 8) >> 7) as u8
        };
        image::Rgb([blend(r), blend(g), blend(b)])
    })
}

/// The size after resizing the shortest side to `target` (Hugging Face's
/// `get_resize_output_image_size` with `default_to_square=False`: the long side truncates).
pub fn shortest_edge_size(width: u32, height: u32, target: u32) -> (u32, u32) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = ((u64::from(target) * u64::from(long)) / u64::from(short)) as u32;
    if width <= height {
        (target, new_long)
    } else {
        (new_long, target)
    }
}

/// The size after resizing the shorter side to `target` as Immich does, in Python's float
/// arithmetic: `int((long / short) * target)` (immich `transforms.py`, `resize_pil`).
pub fn immich_size(width: u32, height: u32, target: u32) -> (u32, u32) {
    let long = |long: u32, short: u32| {
        ((f64::from(long) / f64::from(short) * f64::from(target)) as u32).max(target)
    };
    if width < height {
        (target, long(height, width))
    } else {
        (long(width, height), target)
    }
}

/// Longest intermediate side resized in full before cropping. Past it (a panorama or a
/// strip), only the source region under the crop is resized, so a 1×40M-pixel image cannot
/// make a gigabyte intermediate.
const MAX_INTERMEDIATE_SIDE: u32 = 4096;

/// Resizes (and crops, in `ShortestEdgeCenterCrop` mode) an RGB image to `size`×`size`
/// with bicubic resampling.
pub fn resize_square(
    image: &RgbImage,
    size: u32,
    mode: ResizeMode,
) -> Result<RgbImage, PreprocessError> {
    resize_square_with(image, size, mode, Interpolation::Bicubic)
}

/// [`resize_square`] with the given resampling filter.
pub fn resize_square_with(
    image: &RgbImage,
    size: u32,
    mode: ResizeMode,
    interpolation: Interpolation,
) -> Result<RgbImage, PreprocessError> {
    let (src_w, src_h) = image.dimensions();
    let (w, h) = match mode {
        ResizeMode::ShortestEdgeCenterCrop => shortest_edge_size(src_w, src_h, size),
        ResizeMode::Stretch => (size, size),
        ResizeMode::Immich => immich_size(src_w, src_h, size),
    };
    // Center crop with floor offsets, as Hugging Face's `center_crop` does; Immich's
    // `int(w / 2 - size / 2)` is the same number for every w >= size.
    let (left, top) = ((w - size) / 2, (h - size) / 2);
    if w.max(h) > MAX_INTERMEDIATE_SIDE {
        // The crop box in source coordinates: the same scale factor, the middle part.
        let scale = f64::from(src_w.min(src_h)) / f64::from(size);
        let (crop_w, crop_h) = (f64::from(size) * scale, f64::from(size) * scale);
        let (left, top) = (f64::from(left) * scale, f64::from(top) * scale);
        return resize_rgb(
            image,
            size,
            size,
            Some((left, top, crop_w, crop_h)),
            interpolation,
        );
    }
    let resized = resize_rgb(image, w, h, None, interpolation)?;
    if (w, h) == (size, size) {
        return Ok(resized);
    }
    Ok(image::imageops::crop_imm(&resized, left, top, size, size).to_image())
}

fn resize_rgb(
    image: &RgbImage,
    width: u32,
    height: u32,
    source_crop: Option<(f64, f64, f64, f64)>,
    interpolation: Interpolation,
) -> Result<RgbImage, PreprocessError> {
    if image.dimensions() == (width, height) && source_crop.is_none() {
        return Ok(image.clone());
    }
    let mut dst = RgbImage::new(width, height);
    // Catmull-Rom is the a = -0.5 cubic that PIL's BICUBIC uses; the convolution widens
    // its support when downscaling, which is PIL's antialiasing.
    let mut options =
        ResizeOptions::new().resize_alg(ResizeAlg::Convolution(interpolation.filter()));
    if let Some((left, top, w, h)) = source_crop {
        options = options.crop(left, top, w, h);
    }
    Resizer::new()
        .resize(image, &mut dst, &options)
        .map_err(|e| PreprocessError::Corrupt(format!("resize failed: {e}")))?;
    Ok(dst)
}

/// Stacks square RGB images into a normalized NCHW float tensor: `(x/255 - mean) / std`.
pub fn normalize_nchw(images: &[RgbImage], mean: [f32; 3], std: [f32; 3]) -> Array4<f32> {
    let size = images.first().map_or(0, |i| i.width() as usize);
    let mut out = Array4::<f32>::zeros((images.len(), 3, size, size));
    for (n, image) in images.iter().enumerate() {
        debug_assert_eq!(image.dimensions(), (size as u32, size as u32));
        for (x, y, pixel) in image.enumerate_pixels() {
            for c in 0..3 {
                let v = f32::from(pixel[c]) / 255.0;
                out[[n, c, y as usize, x as usize]] = (v - mean[c]) / std[c];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(image: &DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn shortest_edge_matches_hugging_face_rounding() {
        // 451x300 (chelsea): short 300 -> 224, long int(224*451/300) = 336.
        assert_eq!(shortest_edge_size(451, 300, 224), (336, 224));
        assert_eq!(shortest_edge_size(300, 451, 224), (224, 336));
        assert_eq!(shortest_edge_size(512, 512, 224), (224, 224));
        assert_eq!(shortest_edge_size(640, 427, 224), (335, 224));
    }

    #[test]
    fn pixel_limit_is_checked_before_decoding() {
        let image = DynamicImage::new_rgb8(100, 50);
        let bytes = png_bytes(&image);
        let err = decode_rgb(&bytes, 4999).unwrap_err();
        assert_eq!(
            err,
            PreprocessError::TooManyPixels {
                width: 100,
                height: 50,
                pixels: 5000,
                limit: 4999
            }
        );
        assert_eq!(decode_rgb(&bytes, 5000).unwrap().dimensions(), (100, 50));
    }

    #[test]
    fn unsupported_and_corrupt_inputs_are_told_apart() {
        let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
        assert!(matches!(
            decode_rgb(gif, 100),
            Err(PreprocessError::UnsupportedFormat(f)) if f == "Gif"
        ));
        assert!(matches!(
            decode_rgb(b"hello world", 100),
            Err(PreprocessError::UnsupportedFormat(_))
        ));
        let mut truncated = png_bytes(&DynamicImage::new_rgb8(10, 10));
        truncated.truncate(40);
        assert!(matches!(
            decode_rgb(&truncated, 1000),
            Err(PreprocessError::Corrupt(_))
        ));
    }

    #[test]
    fn grayscale_and_alpha_become_rgb() {
        let gray = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(4, 3, image::Luma([77])));
        let rgb = decode_rgb(&png_bytes(&gray), 100).unwrap();
        assert_eq!(rgb.get_pixel(1, 1).0, [77, 77, 77]);
        // Transparent becomes white, opaque stays, half-transparent blends (PIL's rounding:
        // (10·128 + 255·127)/255 = 132.04 → 132).
        let mut rgba = image::RgbaImage::from_pixel(4, 3, image::Rgba([10, 20, 30, 0]));
        rgba.put_pixel(1, 0, image::Rgba([10, 20, 30, 255]));
        rgba.put_pixel(2, 0, image::Rgba([10, 20, 30, 128]));
        let rgb = decode_rgb(&png_bytes(&DynamicImage::ImageRgba8(rgba)), 100).unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [10, 20, 30]);
        assert_eq!(rgb.get_pixel(2, 0).0, [132, 137, 142]);
    }

    /// A black `width`×`height` image with the columns `stripe` in `colour`.
    fn striped(width: u32, height: u32, stripe: std::ops::Range<u32>, colour: [u8; 3]) -> RgbImage {
        RgbImage::from_fn(width, height, |x, _| {
            image::Rgb(if stripe.contains(&x) {
                colour
            } else {
                [0, 0, 0]
            })
        })
    }

    #[test]
    fn center_crop_keeps_the_middle() {
        // A wide image whose middle third is white: after the crop only white remains.
        let image = striped(300, 100, 100..200, [255, 255, 255]);
        let out = resize_square(&image, 50, ResizeMode::ShortestEdgeCenterCrop).unwrap();
        assert_eq!(out.dimensions(), (50, 50));
        assert_eq!(out.get_pixel(25, 25).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(5, 25).0, [255, 255, 255]);
        let stretched = resize_square(&image, 50, ResizeMode::Stretch).unwrap();
        assert_eq!(stretched.get_pixel(2, 25).0, [0, 0, 0]);
    }

    #[test]
    fn extreme_aspect_ratio_resizes_only_the_crop() {
        // 20000x10: a full shortest-edge resize would be 448000x224.
        let image = striped(20000, 10, 9998..10002, [200, 100, 50]);
        let out = resize_square(&image, 224, ResizeMode::ShortestEdgeCenterCrop).unwrap();
        assert_eq!(out.dimensions(), (224, 224));
        assert_eq!(out.get_pixel(112, 112).0, [200, 100, 50]);
        assert_eq!(out.get_pixel(0, 112).0, [0, 0, 0]);
    }

    #[test]
    fn normalize_applies_mean_and_std_per_channel() {
        let image = RgbImage::from_pixel(2, 2, image::Rgb([255, 0, 51]));
        let t = normalize_nchw(&[image], [0.5, 0.5, 0.0], [0.5, 0.25, 0.2]);
        assert_eq!(t.shape(), &[1, 3, 2, 2]);
        assert_eq!(t[[0, 0, 1, 1]], 1.0);
        assert_eq!(t[[0, 1, 0, 1]], -2.0);
        assert!((t[[0, 2, 1, 0]] - 1.0).abs() < 1e-6);
    }
}
