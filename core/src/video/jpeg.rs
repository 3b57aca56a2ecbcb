//! JPEG encoding of frames for the detector and for snapshots.

use opencv::core::{Mat, Size, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};

/// Rekognition rejects images over 5 MB; stay well under it.
pub const MAX_JPEG_BYTES: usize = 5 * 1024 * 1024 - 64 * 1024;

/// Scales `frame` down so its longest side is at most `max_dimension` (never up).
///
/// # Errors
/// OpenCV's error.
pub fn fit(frame: &Mat, max_dimension: i32) -> opencv::Result<Mat> {
    let (w, h) = (frame.cols(), frame.rows());
    let longest = w.max(h);
    if max_dimension <= 0 || longest <= max_dimension {
        return Ok(frame.clone());
    }
    let scale = f64::from(max_dimension) / f64::from(longest);
    let size = Size::new(
        ((f64::from(w) * scale).round() as i32).max(1),
        ((f64::from(h) * scale).round() as i32).max(1),
    );
    let mut out = Mat::default();
    imgproc::resize(frame, &mut out, size, 0.0, 0.0, imgproc::INTER_AREA)?;
    Ok(out)
}

/// Encodes `frame` as JPEG at `quality`, lowering the quality until it fits [`MAX_JPEG_BYTES`].
///
/// # Errors
/// OpenCV's error.
pub fn encode(frame: &Mat, quality: i32) -> opencv::Result<Vec<u8>> {
    let mut quality = quality.clamp(1, 100);
    loop {
        let mut buf = Vector::<u8>::new();
        let params = Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, quality]);
        imgcodecs::imencode(".jpg", frame, &mut buf, &params)?;
        if buf.len() <= MAX_JPEG_BYTES || quality <= 10 {
            return Ok(buf.to_vec());
        }
        quality -= 15;
    }
}

/// Decodes a JPEG (or PNG) into a BGR frame.
///
/// # Errors
/// OpenCV's error, or an empty image when the bytes are not an image.
pub fn decode(bytes: &[u8]) -> opencv::Result<Mat> {
    let buf = Vector::<u8>::from_slice(bytes);
    let mat = imgcodecs::imdecode(&buf, imgcodecs::IMREAD_COLOR)?;
    if mat.empty() {
        return Err(opencv::Error::new(
            opencv::core::StsError,
            "the bytes are not a decodable image",
        ));
    }
    Ok(mat)
}
