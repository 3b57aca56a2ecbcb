//! Synthetic recordings with a known ground truth: real vehicle photos moved across a background
//! at known times, encoded to H.264 by the `ffmpeg` command. Used by tests, benchmarks and the
//! `--demo` recordings, so every check compares against where the vehicle really was.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use opencv::core::{Mat, Point, Rect, Scalar, Size};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};

/// A red double-decker bus with a readable UK plate and two cars (Debian's `opencv-doc`).
pub const BUS_PHOTO: &str = "/usr/share/doc/opencv-doc/opencv4/html/pexels_double_decker_bus.jpg";
/// A red bus (Debian's `opencv-doc`).
pub const BUS_DET_PHOTO: &str = "/usr/share/doc/opencv-doc/opencv4/html/bus_det.jpg";

/// A picture that crosses the scene horizontally between two times.
pub struct Sprite {
    /// The picture, BGR.
    pub image: Mat,
    /// When it appears, seconds from the start.
    pub enter_s: f64,
    /// When it leaves.
    pub exit_s: f64,
    /// Top edge, pixels.
    pub y: i32,
    /// Left edge when it appears.
    pub from_x: i32,
    /// Left edge when it leaves.
    pub to_x: i32,
}

impl Sprite {
    /// Where the sprite's box is at `t` seconds, if it is on screen (clipped to the frame).
    pub fn rect_at(&self, t: f64, width: i32, height: i32) -> Option<Rect> {
        if t < self.enter_s || t >= self.exit_s {
            return None;
        }
        let progress = (t - self.enter_s) / (self.exit_s - self.enter_s);
        let x = self.from_x + ((self.to_x - self.from_x) as f64 * progress).round() as i32;
        let rect = Rect::new(x, self.y, self.image.cols(), self.image.rows());
        let frame = Rect::new(0, 0, width, height);
        let clipped = rect & frame;
        (clipped.width > 0 && clipped.height > 0).then_some(clipped)
    }
}

/// A scene to render.
pub struct Scene {
    /// Frame width, pixels.
    pub width: i32,
    /// Frame height, pixels.
    pub height: i32,
    /// Frames per second.
    pub fps: u32,
    /// Length, seconds.
    pub seconds: f64,
    /// Frames between keyframes.
    pub keyframe_interval: u32,
    /// What crosses the scene.
    pub sprites: Vec<Sprite>,
    /// Paint each frame's index as 16 black/white cells in the top-left corner (see
    /// [`read_marker`]).
    pub frame_marker: bool,
    /// Write fragmented MP4, as MediaMTX records.
    pub fragmented: bool,
}

impl Scene {
    /// An empty scene: a static street, one keyframe per second.
    pub fn new(width: i32, height: i32, fps: u32, seconds: f64) -> Self {
        Self {
            width,
            height,
            fps,
            seconds,
            keyframe_interval: fps,
            sprites: Vec::new(),
            frame_marker: false,
            fragmented: false,
        }
    }

    /// Number of frames.
    pub fn frame_count(&self) -> i64 {
        (self.seconds * f64::from(self.fps)).round() as i64
    }

    /// Renders frame `index` onto a copy of `background`.
    ///
    /// # Errors
    /// OpenCV's error.
    pub fn render_frame(&self, background: &Mat, index: i64) -> opencv::Result<Mat> {
        let mut frame = background.clone();
        let t = index as f64 / f64::from(self.fps);
        for sprite in &self.sprites {
            if let Some(rect) = sprite.rect_at(t, self.width, self.height) {
                let progress = (t - sprite.enter_s) / (sprite.exit_s - sprite.enter_s);
                let x = sprite.from_x
                    + ((sprite.to_x - sprite.from_x) as f64 * progress).round() as i32;
                let source = Rect::new(rect.x - x, rect.y - sprite.y, rect.width, rect.height);
                let src = Mat::roi(&sprite.image, source)?;
                let mut dst = Mat::roi_mut(&mut frame, rect)?;
                src.copy_to(&mut dst)?;
            }
        }
        if self.frame_marker {
            paint_marker(&mut frame, index)?;
        }
        Ok(frame)
    }
}

const MARKER_BITS: i32 = 16;
const MARKER_CELL: i32 = 16;

fn paint_marker(frame: &mut Mat, index: i64) -> opencv::Result<()> {
    for bit in 0..MARKER_BITS {
        let on = (index >> bit) & 1 == 1;
        let color = if on {
            Scalar::all(255.0)
        } else {
            Scalar::all(0.0)
        };
        imgproc::rectangle(
            frame,
            Rect::new(bit * MARKER_CELL, 0, MARKER_CELL, MARKER_CELL),
            color,
            -1,
            imgproc::LINE_8,
            0,
        )?;
    }
    Ok(())
}

/// Reads the frame index painted by a scene with `frame_marker`.
///
/// # Errors
/// OpenCV's error.
pub fn read_marker(frame: &Mat) -> opencv::Result<i64> {
    let mut index = 0i64;
    for bit in 0..MARKER_BITS {
        // The centre of the cell, away from compression ringing at its edges.
        let cell = Mat::roi(
            frame,
            Rect::new(bit * MARKER_CELL + 4, 4, MARKER_CELL - 8, MARKER_CELL - 8),
        )?;
        let mean = opencv::core::mean(&cell, &opencv::core::no_array())?;
        if mean[0] + mean[1] + mean[2] > 3.0 * 128.0 {
            index |= 1 << bit;
        }
    }
    Ok(index)
}

/// A street seen from above: asphalt, kerbs, lane markings and some texture, so the encoder has
/// real detail to work with.
///
/// # Errors
/// OpenCV's error.
pub fn background(width: i32, height: i32) -> opencv::Result<Mat> {
    let mut frame =
        Mat::new_rows_cols_with_default(height, width, opencv::core::CV_8UC3, Scalar::all(88.0))?;
    let kerb = height / 6;
    imgproc::rectangle(
        &mut frame,
        Rect::new(0, 0, width, kerb),
        Scalar::new(150.0, 160.0, 165.0, 0.0),
        -1,
        imgproc::LINE_8,
        0,
    )?;
    imgproc::rectangle(
        &mut frame,
        Rect::new(0, height - kerb, width, kerb),
        Scalar::new(150.0, 160.0, 165.0, 0.0),
        -1,
        imgproc::LINE_8,
        0,
    )?;
    let mut x = 0;
    while x < width {
        imgproc::rectangle(
            &mut frame,
            Rect::new(x, height / 2 - 3, width / 24, 6),
            Scalar::all(230.0),
            -1,
            imgproc::LINE_8,
            0,
        )?;
        x += width / 12;
    }
    // Deterministic speckle: paving stones on the kerbs, grit on the road.
    let mut seed: u32 = 0x2545_f491;
    for _ in 0..(width * height / 400) {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let px = (seed % width as u32) as i32;
        let py = ((seed / width as u32) % height as u32) as i32;
        let shade = f64::from(60 + (seed % 60));
        imgproc::circle(
            &mut frame,
            Point::new(px, py),
            1 + (seed % 2) as i32,
            Scalar::all(shade),
            -1,
            imgproc::LINE_8,
            0,
        )?;
    }
    Ok(frame)
}

/// Loads a photo scaled to `height` pixels tall.
///
/// # Errors
/// When the file is missing (install Debian's `opencv-doc`) or not an image.
pub fn load_photo(path: &str, height: i32) -> anyhow::Result<Mat> {
    let image = imgcodecs::imread(path, imgcodecs::IMREAD_COLOR)
        .with_context(|| format!("failed to read {path}"))?;
    if image.empty() {
        bail!("{path} is missing or not an image (is Debian's opencv-doc package installed?)");
    }
    let width =
        (f64::from(image.cols()) * f64::from(height) / f64::from(image.rows())).round() as i32;
    let mut out = Mat::default();
    imgproc::resize(
        &image,
        &mut out,
        Size::new(width, height),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )?;
    Ok(out)
}

/// Encodes the scene to H.264 in an MP4 at `path` with the `ffmpeg` command (libx264's
/// `ultrafast` preset: Constrained Baseline, I and P frames only, CAVLC; cheaper to decode than
/// the High profile with B-frames most cameras send, which `ffmpeg`'s defaults give).
///
/// # Errors
/// When `ffmpeg` is missing or fails, or OpenCV fails to draw.
pub fn render(scene: &Scene, path: &Path) -> anyhow::Result<()> {
    let background = background(scene.width, scene.height)?;
    let size = format!("{}x{}", scene.width, scene.height);
    let gop = scene.keyframe_interval.max(1).to_string();
    let mut args: Vec<String> = [
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "bgr24",
        "-s",
        &size,
        "-r",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    args.push(scene.fps.to_string());
    args.extend(
        [
            "-i",
            "-",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "23",
            "-g",
            &gop,
            "-keyint_min",
            &gop,
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
        ]
        .iter()
        .map(ToString::to_string),
    );
    if scene.fragmented {
        args.extend(
            [
                "-movflags",
                "+frag_keyframe+empty_moov+default_base_moof",
                "-f",
                "mp4",
            ]
            .iter()
            .map(ToString::to_string),
        );
    } else {
        args.extend(["-movflags", "+faststart"].iter().map(ToString::to_string));
    }
    args.push(path.to_string_lossy().into_owned());
    let mut child = Command::new("ffmpeg")
        .args(&args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("failed to start ffmpeg (install Debian's ffmpeg package)")?;
    {
        let stdin = child.stdin.as_mut().context("ffmpeg stdin")?;
        for index in 0..scene.frame_count() {
            let frame = scene.render_frame(&background, index)?;
            stdin
                .write_all(frame.data_bytes()?)
                .context("failed to write a frame to ffmpeg")?;
        }
    }
    let output = child.wait_with_output().context("ffmpeg")?;
    if !output.status.success() {
        bail!(
            "ffmpeg failed to encode {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
