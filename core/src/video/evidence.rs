//! Evidence an operator confirms a sighting with: the snapshot with the vehicle's box drawn, a
//! crop of the vehicle, and a short clip of the recording around the sighting.
//!
//! Boxes and crops are drawn from the stored full frame when asked (old snapshots get them too,
//! and the snapshot budget counts one file per sighting); clips are cut from the recording with
//! ffmpeg. All of it is blocking: async callers use a blocking thread.

use std::path::Path;
use std::process::Command;

use opencv::core::{Mat, Rect, Scalar};
use opencv::imgproc;
use opencv::prelude::*;

use crate::detect::BBox;
use crate::video::jpeg;

/// The colour of the drawn box (BGR): pure red, so a test can find it along the box's edges.
pub const BOX_COLOR_BGR: (u8, u8, u8) = (0, 0, 255);

/// The box in pixels of a `cols`×`rows` frame, clamped inside it (at least 1×1).
pub fn pixel_box(bbox: &BBox, cols: i32, rows: i32) -> Rect {
    let clamp = |v: f64, max: i32| (v.round() as i32).clamp(0, max.max(1) - 1);
    let x = clamp(bbox.x * f64::from(cols), cols);
    let y = clamp(bbox.y * f64::from(rows), rows);
    let right = clamp((bbox.x + bbox.w) * f64::from(cols), cols).max(x + 1);
    let bottom = clamp((bbox.y + bbox.h) * f64::from(rows), rows).max(y + 1);
    Rect::new(x, y, (right - x).min(cols - x), (bottom - y).min(rows - y))
}

/// The snapshot `jpeg_bytes` with `bbox` drawn in [`BOX_COLOR_BGR`], as JPEG.
///
/// # Errors
/// OpenCV's error (undecodable bytes).
pub fn boxed(jpeg_bytes: &[u8], bbox: &BBox, quality: i32) -> opencv::Result<Vec<u8>> {
    let mut frame = jpeg::decode(jpeg_bytes)?;
    let rect = pixel_box(bbox, frame.cols(), frame.rows());
    let thickness = (frame.cols().max(frame.rows()) / 240).max(2);
    let (b, g, r) = BOX_COLOR_BGR;
    imgproc::rectangle(
        &mut frame,
        rect,
        Scalar::new(f64::from(b), f64::from(g), f64::from(r), 0.0),
        thickness,
        imgproc::LINE_8,
        0,
    )?;
    jpeg::encode(&frame, quality)
}

/// The vehicle cut out of the snapshot `jpeg_bytes` (the box grown by 10 % each side), as JPEG.
///
/// # Errors
/// OpenCV's error (undecodable bytes).
pub fn crop(jpeg_bytes: &[u8], bbox: &BBox, quality: i32) -> opencv::Result<Vec<u8>> {
    let frame = jpeg::decode(jpeg_bytes)?;
    let grown = BBox {
        x: bbox.x - bbox.w * 0.1,
        y: bbox.y - bbox.h * 0.1,
        w: bbox.w * 1.2,
        h: bbox.h * 1.2,
    };
    let rect = pixel_box(&grown, frame.cols(), frame.rows());
    let roi = Mat::roi(&frame, rect)?.try_clone()?;
    jpeg::encode(&roi, quality)
}

/// Why a clip could not be cut.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// ffmpeg could not be run.
    #[error("ffmpeg could not be run: {0}")]
    Spawn(std::io::Error),
    /// ffmpeg failed (unreadable recording, nothing in the range).
    #[error("ffmpeg failed: {0}")]
    Failed(String),
}

/// How a clip was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipMode {
    /// Remuxed without re-encoding: a keyframe sits at (or just before) the start.
    Remuxed,
    /// Re-encoded (H.264), because no keyframe is close enough to the start.
    Reencoded,
}

/// Keyframe times (seconds from the start of the file) between `from` and `to`.
fn keyframes(file: &Path, from: f64, to: f64) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-skip_frame",
            "nokey",
        ])
        .args(["-show_entries", "frame=pts_time", "-of", "csv=p=0"])
        .arg("-read_intervals")
        .arg(format!("{:.3}%{:.3}", from.max(0.0), to))
        .arg(file)
        .output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
            .collect()
    })
    .unwrap_or_default()
}

/// Cuts `duration` seconds of `file` from `start` seconds into it, as an MP4 written to `out`.
/// Remuxed when a keyframe lies within 0.25 s before `start` (the clip then starts there and
/// lasts what was asked within that), re-encoded otherwise so the clip starts where asked.
///
/// # Errors
/// [`ClipError`] when ffmpeg cannot be run or fails.
pub fn clip(file: &Path, start: f64, duration: f64, out: &Path) -> Result<ClipMode, ClipError> {
    let start = start.max(0.0);
    let remux = keyframes(file, start - 0.25, start + 0.001)
        .iter()
        .any(|k| (start - k).abs() <= 0.25);
    let mut command = Command::new("ffmpeg");
    command
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .arg("-ss")
        .arg(format!("{start:.3}"))
        .arg("-i")
        .arg(file)
        .arg("-t")
        .arg(format!("{duration:.3}"))
        .args(["-map", "0:v:0", "-an"]);
    if remux {
        command.args(["-c", "copy"]);
    } else {
        command.args([
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        ]);
    }
    let output = command
        .args(["-movflags", "+faststart", "-f", "mp4"])
        .arg(out)
        .output()
        .map_err(ClipError::Spawn)?;
    if !output.status.success() {
        return Err(ClipError::Failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(if remux {
        ClipMode::Remuxed
    } else {
        ClipMode::Reencoded
    })
}
