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

/// The colours of the vehicle in `bbox` of `frame` (BGR), largest share first, shares ≥ 3 % only.
///
/// The box is shrunk by a tenth on each side, and a colour that is as common around the box as
/// inside it is discounted: a box also holds what is behind the vehicle (a wooden wall behind a
/// motorcycle, a brick street behind a bus), and a colour the surroundings share says little about
/// the vehicle. Each chromatic class keeps only its share inside the box above its share in a ring
/// around the box (a quarter of the box's size on each side, where the frame has it); achromatic
/// classes (windows, tyres, shadows, road) are kept as they are, because the
/// [main colour](super::VehicleDetection::main_color) already prefers a chromatic one. The shares
/// left are scaled to sum to one.
///
/// Two vehicles of one colour side by side discount each other a little: the ring then holds part
/// of the other vehicle.
///
/// # Errors
/// OpenCV's error.
pub fn dominant_colors(frame: &Mat, bbox: &BBox) -> opencv::Result<Vec<ColorShare>> {
    let (fw, fh) = (f64::from(frame.cols()), f64::from(frame.rows()));
    let frame_rect = Rect::new(0, 0, frame.cols(), frame.rows());
    let px = |v: f64, scale: f64| (v * scale).round() as i32;
    let (bx, by, bw, bh) = (
        px(bbox.x, fw),
        px(bbox.y, fh),
        px(bbox.w, fw),
        px(bbox.h, fh),
    );
    let inner = Rect::new(
        bx + (f64::from(bw) * INSET).round() as i32,
        by + (f64::from(bh) * INSET).round() as i32,
        (f64::from(bw) * (1.0 - 2.0 * INSET)).round() as i32,
        (f64::from(bh) * (1.0 - 2.0 * INSET)).round() as i32,
    ) & frame_rect;
    if inner.width < 2 || inner.height < 2 {
        return Ok(Vec::new());
    }
    let inside = class_counts(frame, inner, SIDE, SIDE)?;
    // The ring: four strips around the box, clamped to the frame.
    let (rw, rh) = (
        (f64::from(bw) * RING).round() as i32,
        (f64::from(bh) * RING).round() as i32,
    );
    let strips = [
        Rect::new(bx - rw, by - rh, bw + 2 * rw, rh),
        Rect::new(bx - rw, by + bh, bw + 2 * rw, rh),
        Rect::new(bx - rw, by, rw, bh),
        Rect::new(bx + bw, by, rw, bh),
    ];
    let mut around = [0.0f64; Color::ALL.len()];
    let mut around_area = 0.0;
    for strip in strips {
        let strip = strip & frame_rect;
        if strip.width < 2 || strip.height < 2 {
            continue;
        }
        // Each strip weighs by its area in the frame, whatever it is resized to.
        let area = f64::from(strip.width) * f64::from(strip.height);
        let (w, h) = if strip.width >= strip.height {
            (SIDE, (SIDE / 4).max(2))
        } else {
            ((SIDE / 4).max(2), SIDE)
        };
        let counts = class_counts(frame, strip, w, h)?;
        let n = f64::from(w * h);
        for (sum, count) in around.iter_mut().zip(counts) {
            *sum += area * count as f64 / n;
        }
        around_area += area;
    }
    let n = f64::from(SIDE * SIDE);
    let mut shares: Vec<ColorShare> = Color::ALL
        .iter()
        .zip(inside.iter().zip(around))
        .map(|(color, (&count, around))| {
            let share = count as f64 / n;
            let discounted = if color.is_achromatic() || around_area == 0.0 {
                share
            } else {
                (share - around / around_area).max(0.0)
            };
            ColorShare {
                color: *color,
                fraction: discounted,
            }
        })
        .collect();
    let total: f64 = shares.iter().map(|s| s.fraction).sum();
    if total > 0.0 {
        for share in &mut shares {
            share.fraction /= total;
        }
    }
    shares.retain(|s| s.fraction >= 0.03);
    shares.sort_by(|a, b| b.fraction.total_cmp(&a.fraction));
    Ok(shares)
}

/// How much of the box is left out on each side (mostly road and background at the corners).
const INSET: f64 = 0.1;
/// The ring's width on each side, as a share of the box's width or height.
const RING: f64 = 0.25;
/// Side of the square the box is resized to before its pixels are counted.
const SIDE: i32 = 48;

/// Pixels of each colour class (in [`Color::ALL`]'s order) in `rect` of `frame`, resized to
/// `w`×`h` first.
fn class_counts(
    frame: &Mat,
    rect: Rect,
    w: i32,
    h: i32,
) -> opencv::Result<[usize; Color::ALL.len()]> {
    let roi = Mat::roi(frame, rect)?;
    let mut small = Mat::default();
    imgproc::resize(
        &roi,
        &mut small,
        Size::new(w, h),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )?;
    let mut hsv = Mat::default();
    imgproc::cvt_color_def(&small, &mut hsv, imgproc::COLOR_BGR2HSV)?;
    let mut counts = [0usize; Color::ALL.len()];
    for px in hsv.data_bytes()?.chunks_exact(3) {
        let color = classify(px[0], px[1], px[2]);
        let i = Color::ALL.iter().position(|c| *c == color).unwrap_or(0);
        counts[i] += 1;
    }
    Ok(counts)
}
