//! AWS Rekognition: DetectLabels (MaxLabels 10, MinConfidence 75, general labels and image
//! properties, so vehicle instances carry dominant colours) and DetectText restricted to the
//! vehicles' boxes when the search has a plate.
//!
//! The SDK's own retries are off: throttling is retried here, with exponential backoff and full
//! jitter, so each throttle can be counted.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_rekognition::Client;
use aws_sdk_rekognition::config::retry::RetryConfig;
use aws_sdk_rekognition::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_rekognition::primitives::Blob;
use aws_sdk_rekognition::types::{
    BoundingBox, DetectLabelsFeatureName, DetectTextFilters, Image, RegionOfInterest,
};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    Analysis, BBox, ColorShare, DetectError, Detector, FrameImage, Label, VehicleDetection,
};
use crate::domain::{Color, VehicleType};

/// As in the seed.
const MAX_LABELS: i32 = 10;
/// As in the seed.
const MIN_CONFIDENCE: f32 = 75.0;
/// Attempts per call when throttled.
const MAX_ATTEMPTS: u32 = 8;
/// Transient failures (5xx, a timeout, a connection reset) retried per call, with the same
/// backoff, before the call fails: a blip does not fail the task, an outage does, quickly.
const MAX_TRANSIENT_RETRIES: u32 = 3;
/// DetectText accepts at most this many regions of interest.
const MAX_REGIONS: usize = 10;

/// The Rekognition provider.
pub struct RekognitionDetector {
    client: Client,
    base_backoff: Duration,
    throttles: AtomicU64,
}

impl RekognitionDetector {
    /// A client from the standard AWS chain (environment, profile, instance role…). The endpoint
    /// can be overridden with `AWS_ENDPOINT_URL_REKOGNITION` / `AWS_ENDPOINT_URL`.
    pub async fn from_env() -> Self {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .load()
            .await;
        Self::from_config(aws_sdk_rekognition::Config::from(&shared))
    }

    /// A client from an explicit configuration (tests point it at a loopback server).
    pub fn from_config(config: aws_sdk_rekognition::Config) -> Self {
        let config = config
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build();
        Self {
            client: Client::from_conf(config),
            base_backoff: Duration::from_millis(100),
            throttles: AtomicU64::new(0),
        }
    }

    /// Shortens the backoff (tests).
    pub fn with_base_backoff(mut self, base: Duration) -> Self {
        self.base_backoff = base;
        self
    }

    /// Throttling answers received so far.
    pub fn throttles(&self) -> u64 {
        self.throttles.load(Ordering::Relaxed)
    }

    /// Runs `call` until it succeeds, fails for another reason, or `MAX_ATTEMPTS` throttles.
    async fn with_backoff<T, E, F, Fut>(
        &self,
        operation: &'static str,
        mut call: F,
    ) -> Result<T, DetectError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let metrics = crate::metrics::global();
        let mut attempt = 0;
        let mut transient = 0;
        loop {
            match call().await {
                Ok(v) => {
                    metrics.detector_call("rekognition", operation, "ok");
                    return Ok(v);
                }
                Err(err) => {
                    let error = classify(&err);
                    if !matches!(error, DetectError::Throttled(_)) {
                        if is_transient(&err) && transient < MAX_TRANSIENT_RETRIES {
                            transient += 1;
                            metrics.detector_call("rekognition", operation, "retried");
                            let sleep = self
                                .base_backoff
                                .saturating_mul(1 << transient)
                                .mul_f64(rand::random::<f64>());
                            tracing::warn!(operation, transient, error = %error, "Rekognition failed transiently; retrying");
                            tokio::time::sleep(sleep).await;
                            continue;
                        }
                        metrics.detector_call("rekognition", operation, "error");
                        return Err(error);
                    }
                    metrics.detector_call("rekognition", operation, "throttled");
                    metrics.detector_throttled("rekognition", operation);
                    self.throttles.fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                    if attempt >= MAX_ATTEMPTS {
                        return Err(error);
                    }
                    // Full jitter: uniform in [0, base · 2^attempt], capped at 10 s.
                    let cap = self.base_backoff.saturating_mul(1 << attempt.min(10));
                    let cap = cap.min(Duration::from_secs(10));
                    let sleep = cap.mul_f64(rand::random::<f64>());
                    tracing::debug!(attempt, ?sleep, "Rekognition throttled; backing off");
                    tokio::time::sleep(sleep).await;
                }
            }
        }
    }
}

/// Whether an error is worth a retry of the same call: no answer (a connection refused or reset,
/// a timeout, an unreadable answer) or a server-side failure (5xx, `InternalServerError`,
/// `ServiceUnavailableException`). Throttles are handled apart; client errors are not retried.
fn is_transient<E>(err: &SdkError<E>) -> bool
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            service.raw().status().as_u16() >= 500
                || matches!(
                    err.code(),
                    Some("InternalServerError" | "ServiceUnavailableException")
                )
        }
        _ => false,
    }
}

/// Maps an SDK error to ours by its error code.
fn classify<E>(err: &SdkError<E>) -> DetectError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().unwrap_or_default();
    let message = err.message().unwrap_or_default();
    match code {
        "ThrottlingException"
        | "ProvisionedThroughputExceededException"
        | "LimitExceededException" => DetectError::Throttled(format!("{code}: {message}")),
        "InvalidImageFormatException" | "ImageTooLargeException" | "InvalidParameterException" => {
            DetectError::InvalidImage(format!("{code}: {message}"))
        }
        "" => DetectError::Failed(format!(
            "{}",
            aws_sdk_rekognition::error::DisplayErrorContext(err)
        )),
        _ => DetectError::Failed(format!("{code}: {message}")),
    }
}

fn to_bbox(b: Option<&BoundingBox>) -> Option<BBox> {
    let b = b?;
    Some(
        BBox {
            x: f64::from(b.left?),
            y: f64::from(b.top?),
            w: f64::from(b.width?),
            h: f64::from(b.height?),
        }
        .clamped(),
    )
}

#[async_trait]
impl Detector for RekognitionDetector {
    fn provider(&self) -> &'static str {
        "rekognition"
    }

    async fn detect(&self, frame: &FrameImage, want_text: bool) -> Result<Analysis, DetectError> {
        let image = Image::builder()
            .bytes(Blob::new(frame.jpeg.clone()))
            .build();
        let labels = self
            .with_backoff("DetectLabels", || {
                self.client
                    .detect_labels()
                    .image(image.clone())
                    .max_labels(MAX_LABELS)
                    .min_confidence(MIN_CONFIDENCE)
                    .features(DetectLabelsFeatureName::GeneralLabels)
                    .features(DetectLabelsFeatureName::ImageProperties)
                    .send()
            })
            .await?;

        let mut analysis = Analysis::default();
        for label in labels.labels() {
            let name = label.name().unwrap_or_default().to_owned();
            let confidence = f64::from(label.confidence().unwrap_or_default()) / 100.0;
            analysis.labels.push(Label {
                name: name.clone(),
                confidence,
            });
            let Some(kind) = VehicleType::from_word(&name) else {
                continue;
            };
            for instance in label.instances() {
                let Some(bbox) = to_bbox(instance.bounding_box()) else {
                    continue;
                };
                let mut colors: Vec<ColorShare> = Vec::new();
                for dominant in instance.dominant_colors() {
                    let word = dominant
                        .simplified_color()
                        .or(dominant.css_color())
                        .unwrap_or_default();
                    if let Some(color) = Color::from_word(word) {
                        let fraction =
                            f64::from(dominant.pixel_percent().unwrap_or_default()) / 100.0;
                        match colors.iter_mut().find(|c| c.color == color) {
                            Some(c) => c.fraction += fraction,
                            None => colors.push(ColorShare { color, fraction }),
                        }
                    }
                }
                colors.sort_by(|a, b| b.fraction.total_cmp(&a.fraction));
                analysis.vehicles.push(VehicleDetection {
                    kind,
                    label: name.clone(),
                    confidence: f64::from(
                        instance
                            .confidence()
                            .unwrap_or(label.confidence().unwrap_or_default()),
                    ) / 100.0,
                    bbox,
                    colors,
                    texts: Vec::new(),
                });
            }
        }

        if want_text && !analysis.vehicles.is_empty() {
            let regions: Vec<RegionOfInterest> = analysis
                .vehicles
                .iter()
                .take(MAX_REGIONS)
                .map(|v| {
                    RegionOfInterest::builder()
                        .bounding_box(
                            BoundingBox::builder()
                                .left(v.bbox.x as f32)
                                .top(v.bbox.y as f32)
                                .width(v.bbox.w as f32)
                                .height(v.bbox.h as f32)
                                .build(),
                        )
                        .build()
                })
                .collect();
            let filters = DetectTextFilters::builder()
                .set_regions_of_interest(Some(regions))
                .build();
            let texts = self
                .with_backoff("DetectText", || {
                    self.client
                        .detect_text()
                        .image(image.clone())
                        .filters(filters.clone())
                        .send()
                })
                .await?;
            for text in texts.text_detections() {
                let Some(detected) = text.detected_text() else {
                    continue;
                };
                let Some(bbox) = to_bbox(text.geometry().and_then(|g| g.bounding_box())) else {
                    continue;
                };
                let (cx, cy) = bbox.centre();
                if let Some(vehicle) = analysis
                    .vehicles
                    .iter_mut()
                    .find(|v| v.bbox.contains(cx, cy))
                    && !vehicle.texts.iter().any(|t| t == detected)
                {
                    vehicle.texts.push(detected.to_owned());
                }
            }
        }
        analysis.text_checked = want_text;
        Ok(analysis)
    }
}
