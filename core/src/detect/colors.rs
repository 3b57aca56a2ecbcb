//! Dominant colours of a region, mapped to named colours, from HSV pixel classes.

use opencv::core::{Mat, Rect, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::{BBox, ColorShare};
use crate::domain::Color;

/// Classifies one HSV pixel (OpenCV ranges: H 0–179, S and V 0–255).
pub fn classify(h: u8, s: u8, v: u8) -> Color {
    if v < 50 {
        return Color::Black;
    }
    if s < 45 {
        return match v {
            200..=255 => Color::White,
            140..=199 => Color::Silver,
            _ => Color::Gray,
        };
    }
    match h {
        0..=7 | 170..=179 => {
            if v < 110 && s < 150 {
                Color::Brown
            } else {
                Color::Red
            }
        }
        8..=20 => {
            if v < 150 {
                Color::Brown
            } else {
                Color::Orange
            }
        }
        21..=34 => {
            if s < 110 && v > 150 {
                Color::Beige
            } else {
                Color::Yellow
            }
        }
        35..=85 => Color::Green,
        86..=130 => Color::Blue,
        131..=154 => Color::Purple,
        _ => Color::Pink,
    }
}

/// The colours inside `bbox` of `frame` (BGR), largest share first, shares ≥ 3 % only. The box is
/// shrunk by a tenth on each side so the road around the vehicle weighs less.
///
/// # Errors
/// OpenCV's error.
pub fn dominant_colors(frame: &Mat, bbox: &BBox) -> opencv::Result<Vec<ColorShare>> {
    let (fw, fh) = (f64::from(frame.cols()), f64::from(frame.rows()));
    let inset = 0.1;
    let x = ((bbox.x + bbox.w * inset) * fw).round() as i32;
    let y = ((bbox.y + bbox.h * inset) * fh).round() as i32;
    let w = ((bbox.w * (1.0 - 2.0 * inset)) * fw).round() as i32;
    let h = ((bbox.h * (1.0 - 2.0 * inset)) * fh).round() as i32;
    let rect = Rect::new(x, y, w, h) & Rect::new(0, 0, frame.cols(), frame.rows());
    if rect.width < 2 || rect.height < 2 {
        return Ok(Vec::new());
    }
    let roi = Mat::roi(frame, rect)?;
    let mut small = Mat::default();
    let side = 48;
    imgproc::resize(
        &roi,
        &mut small,
        Size::new(side, side),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )?;
    let mut hsv = Mat::default();
    imgproc::cvt_color_def(&small, &mut hsv, imgproc::COLOR_BGR2HSV)?;
    let mut counts = [0usize; Color::ALL.len()];
    let bytes = hsv.data_bytes()?;
    for px in bytes.chunks_exact(3) {
        let color = classify(px[0], px[1], px[2]);
        let i = Color::ALL.iter().position(|c| *c == color).unwrap_or(0);
        counts[i] += 1;
    }
    let total = (bytes.len() / 3).max(1) as f64;
    let mut shares: Vec<ColorShare> = Color::ALL
        .iter()
        .zip(counts)
        .map(|(color, n)| ColorShare {
            color: *color,
            fraction: n as f64 / total,
        })
        .filter(|s| s.fraction >= 0.03)
        .collect();
    shares.sort_by(|a, b| b.fraction.total_cmp(&a.fraction));
    Ok(shares)
}
