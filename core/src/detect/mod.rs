//! Detectors: what is in a frame. A provider-independent [`Analysis`] (labels, vehicle instances
//! with boxes and dominant colours, text) is what the cache stores and what criteria match against.
//!
//! # Layout
//! - [`Detector`]: the provider trait; [`local::LocalDetector`] (NanoDet-m on OpenCV `dnn` plus
//!   Tesseract, offline) and [`rekognition::RekognitionDetector`] (AWS).
//! - [`colors`]: dominant colours of a box, mapped to named colours.
//! - [`criteria`]: matching an analysis against a search's criteria.
//! - [`limit`]: the per-process in-flight cap and the cluster-wide rate limit.

pub mod colors;
pub mod criteria;
pub mod limit;
pub mod local;
pub mod rekognition;

use std::sync::Arc;

use async_trait::async_trait;
use opencv::core::Mat;
use serde::{Deserialize, Serialize};

use crate::domain::{Color, VehicleType};
use crate::settings::{DetectorProvider, Settings};

/// A box relative to the frame: every field in 0..1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

impl BBox {
    /// Whether the point (relative coordinates) is inside the box.
    pub fn contains(&self, px: f64, py: f64) -> bool {
        px >= self.x && px <= self.x + self.w && py >= self.y && py <= self.y + self.h
    }

    /// Centre of the box.
    pub fn centre(&self) -> (f64, f64) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }

    /// The box clamped to the frame.
    pub fn clamped(self) -> Self {
        let x = self.x.clamp(0.0, 1.0);
        let y = self.y.clamp(0.0, 1.0);
        Self {
            x,
            y,
            w: self.w.clamp(0.0, 1.0 - x),
            h: self.h.clamp(0.0, 1.0 - y),
        }
    }
}

/// A colour and the share of the vehicle's pixels that have it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ColorShare {
    /// The named colour.
    pub color: Color,
    /// Its share of the vehicle, 0..1 (for the local detector, after colours its surroundings
    /// share are discounted: see [`colors::dominant_colors`]).
    pub fraction: f64,
}

/// One vehicle seen in a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VehicleDetection {
    /// The vehicle type.
    pub kind: VehicleType,
    /// The provider's own label ("bus", "Pickup Truck"…).
    pub label: String,
    /// Confidence, 0..1.
    pub confidence: f64,
    /// Where.
    pub bbox: BBox,
    /// Dominant colours, largest first.
    pub colors: Vec<ColorShare>,
    /// Texts read inside the box (plates), when text was asked for.
    pub texts: Vec<String>,
}

impl VehicleDetection {
    /// The vehicle's colour: the largest chromatic colour when it covers at least a fifth of the
    /// box (windows, tyres and shadows are black or grey on every vehicle), else the largest one.
    pub fn main_color(&self) -> Option<Color> {
        let chromatic = self
            .colors
            .iter()
            .filter(|c| !c.color.is_achromatic())
            .max_by(|a, b| a.fraction.total_cmp(&b.fraction));
        match chromatic {
            Some(c) if c.fraction >= 0.2 => Some(c.color),
            _ => self
                .colors
                .iter()
                .max_by(|a, b| a.fraction.total_cmp(&b.fraction))
                .map(|c| c.color),
        }
    }
}

/// A label for the whole frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// Name.
    pub name: String,
    /// Confidence, 0..1.
    pub confidence: f64,
}

/// What a detector saw in one frame. Stored in the frame-analysis cache as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// Labels of the whole frame.
    pub labels: Vec<Label>,
    /// Vehicles.
    pub vehicles: Vec<VehicleDetection>,
    /// Whether text was read inside the vehicle boxes (only done when a search has a plate).
    pub text_checked: bool,
}

/// A frame handed to a detector: the decoded picture (for local providers) and its JPEG (for
/// remote ones).
pub struct FrameImage {
    /// BGR picture (shared: the pipeline hands the same decoded frame to the gate, the detector
    /// and the snapshot).
    pub image: std::sync::Arc<Mat>,
    /// JPEG bytes of the same picture; empty for providers whose [`Detector::wants_jpeg`] is false.
    pub jpeg: Vec<u8>,
}

/// Why a detector call failed.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The provider asks us to slow down; retried with backoff.
    #[error("detector throttled: {0}")]
    Throttled(String),
    /// The image is not acceptable; retrying the same image cannot help.
    #[error("detector rejected the image: {0}")]
    InvalidImage(String),
    /// Anything else; the job may be retried.
    #[error("detector failed: {0}")]
    Failed(String),
}

impl DetectError {
    /// Whether retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::InvalidImage(_))
    }
}

/// A frame detector.
#[async_trait]
pub trait Detector: Send + Sync {
    /// Provider name, stored with cached analyses (`local`, `rekognition`).
    fn provider(&self) -> &'static str;

    /// Whether the provider reads [`FrameImage::jpeg`] (remote providers do; a local model works
    /// on the decoded picture, so callers can skip encoding).
    fn wants_jpeg(&self) -> bool {
        true
    }

    /// Analyses one frame; reads text inside vehicle boxes when `want_text`.
    ///
    /// # Errors
    /// [`DetectError`]; throttling is retried inside providers before it is returned.
    async fn detect(&self, frame: &FrameImage, want_text: bool) -> Result<Analysis, DetectError>;
}

/// Builds the detector the settings ask for.
///
/// # Errors
/// When the local model is missing or invalid, or the AWS configuration cannot be loaded.
pub async fn from_settings(settings: &Settings) -> anyhow::Result<Arc<dyn Detector>> {
    Ok(match settings.detector.provider {
        DetectorProvider::Local => Arc::new(
            local::LocalDetector::load(
                &settings.detector.model_path,
                settings.detector.min_confidence,
            )?
            .with_tiles(settings.detector.tiles),
        ),
        DetectorProvider::Rekognition => {
            Arc::new(rekognition::RekognitionDetector::from_env().await)
        }
    })
}
