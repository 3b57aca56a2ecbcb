//! The motion gate: a frame that looks like the last analysed frame of the same recording is not
//! sent to the detector; the previous analysis is reused.
//!
//! Frames are reduced to a 32x18 grid of block means in grey (each block is 1/576 of the frame),
//! and the gate looks at the largest change of any block. A block mean averages thousands of
//! pixels, so sensor noise and compression artefacts barely move it, while a vehicle entering,
//! leaving or moving within the picture changes the blocks it covers by tens of grey levels.

use opencv::core::{Mat, Size};
use opencv::prelude::*;
use opencv::{core, imgproc};

/// Grid the frame is reduced to.
const GRID: Size = Size {
    width: 32,
    height: 18,
};

/// Whether a frame goes to the detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateDecision {
    /// Changed since the last analysed frame: analyse it.
    Analyze,
    /// Unchanged: reuse the last analysis.
    Reuse,
}

/// The gate of one recording's frames. Compares each frame with the last one that was analysed
/// (not merely the previous one), so a slow drift still triggers once it adds up.
pub struct MotionGate {
    threshold: f64,
    last: Option<Mat>,
}

impl MotionGate {
    /// A gate that lets through frames whose largest block change is at least `threshold` grey
    /// levels (0–255). A threshold of 0 sends every frame.
    pub fn new(threshold: f64) -> Self {
        Self {
            threshold,
            last: None,
        }
    }

    /// Decides for `frame` (BGR). The first frame is always analysed.
    ///
    /// # Errors
    /// OpenCV's error.
    pub fn check(&mut self, frame: &Mat) -> opencv::Result<GateDecision> {
        let small = signature(frame)?;
        let decision = match &self.last {
            None => GateDecision::Analyze,
            Some(_) if self.threshold <= 0.0 => GateDecision::Analyze,
            Some(last) => {
                if largest_difference(last, &small)? >= self.threshold {
                    GateDecision::Analyze
                } else {
                    GateDecision::Reuse
                }
            }
        };
        if decision == GateDecision::Analyze {
            self.last = Some(small);
        }
        Ok(decision)
    }
}

/// The largest change of any block of the gate's grid between two frames (BGR), in grey levels:
/// what the gate compares with its threshold.
///
/// # Errors
/// OpenCV's error.
pub fn largest_block_change(a: &Mat, b: &Mat) -> opencv::Result<f64> {
    largest_difference(&signature(a)?, &signature(b)?)
}

/// The largest difference between two signatures ([`signature`]).
fn largest_difference(a: &Mat, b: &Mat) -> opencv::Result<f64> {
    let mut diff = Mat::default();
    core::absdiff(a, b, &mut diff)?;
    let mut max = 0.0;
    core::min_max_loc(&diff, None, Some(&mut max), None, None, &core::no_array())?;
    Ok(max)
}

/// The frame as a grid of block means in grey, as 32-bit floats (no rounding to whole levels).
fn signature(frame: &Mat) -> opencv::Result<Mat> {
    let mut gray = Mat::default();
    if frame.channels() == 3 {
        imgproc::cvt_color_def(frame, &mut gray, imgproc::COLOR_BGR2GRAY)?;
    } else {
        gray = frame.clone();
    }
    let mut as_float = Mat::default();
    gray.convert_to(&mut as_float, core::CV_32F, 1.0, 0.0)?;
    let mut small = Mat::default();
    imgproc::resize(&as_float, &mut small, GRID, 0.0, 0.0, imgproc::INTER_AREA)?;
    Ok(small)
}
