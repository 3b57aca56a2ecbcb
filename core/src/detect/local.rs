//! The offline provider: NanoDet-m (COCO, Apache-2.0) on OpenCV's `dnn` module for vehicles,
//! HSV classes for their colours, and the Tesseract command for text inside their boxes.
//!
//! Model input and output layout: see `models/PROVENANCE.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use async_trait::async_trait;
use opencv::core::{self as cvcore, Mat, Rect, Scalar, Size, Vector};
use opencv::dnn::{self, Net};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use sha2::{Digest, Sha256};

use super::{Analysis, BBox, DetectError, Detector, FrameImage, Label, VehicleDetection, colors};
use crate::domain::VehicleType;

/// sha256 of the shipped `nanodet_m_416.onnx`.
pub const MODEL_SHA256: &str = "ebd9d2ca05e00826a261defb2bb201cc60bb8dcadadb859ff9b9c8c27caea72f";

const INPUT: i32 = 416;
const MEAN: [f64; 3] = [103.53, 116.28, 123.675];
const STD: [f64; 3] = [57.375, 57.12, 58.395];
const STRIDES: [(usize, f64); 3] = [(52, 8.0), (26, 16.0), (13, 32.0)];
const BINS: usize = 11;
const CLASSES: usize = 80;
const NMS_IOU: f64 = 0.5;

/// COCO classes kept: (id, name, type).
const VEHICLE_CLASSES: [(usize, &str, VehicleType); 4] = [
    (2, "car", VehicleType::Car),
    (3, "motorcycle", VehicleType::Motorcycle),
    (5, "bus", VehicleType::Bus),
    (7, "truck", VehicleType::Truck),
];

/// NanoDet-m on OpenCV `dnn`.
#[derive(Clone)]
pub struct LocalDetector {
    net: Arc<Mutex<Net>>,
    min_confidence: f64,
    tiles: bool,
}

impl LocalDetector {
    /// Loads the model and checks it is the file described in `models/PROVENANCE.md`.
    ///
    /// # Errors
    /// When the file is missing, is another file, or OpenCV cannot load it.
    pub fn load(model: &Path, min_confidence: f64) -> anyhow::Result<Self> {
        let source = locate_model(model)?;
        let bytes = source.bytes()?;
        let net = dnn::read_net_from_onnx_buffer(&Vector::from_slice(&bytes))
            .with_context(|| format!("OpenCV cannot load {source}"))?;
        if let std::borrow::Cow::Borrowed(bundled) = bytes {
            release_pages(bundled);
        }
        tracing::info!(model = %source, "local detector model loaded");
        Ok(Self {
            net: Arc::new(Mutex::new(net)),
            min_confidence,
            tiles: false,
        })
    }

    /// Also runs the network on square tiles of frames wider (or taller) than 1.2 times their
    /// other side, so small vehicles are seen at up to twice the resolution, for up to three
    /// runs of the network per frame (see [`tiles`]).
    #[must_use]
    pub fn with_tiles(mut self, tiles: bool) -> Self {
        self.tiles = tiles;
        self
    }

    /// Runs the network on a BGR frame (blocking): on the whole frame, and on its tiles when
    /// tiling is on. One vehicle gives one detection: overlapping boxes are merged whatever their
    /// class (a van is often both "car" and "truck" to the model), the most confident kept.
    ///
    /// # Errors
    /// OpenCV's error.
    pub fn detect_blocking(&self, frame: &Mat) -> opencv::Result<Vec<VehicleDetection>> {
        let whole = Rect::new(0, 0, frame.cols(), frame.rows());
        let mut candidates = self.run(frame, whole)?;
        if self.tiles {
            for tile in tiles(frame.cols(), frame.rows()) {
                let seen = self.run(frame, tile)?;
                // A box cut by the tile's inner edge is part of a vehicle: the whole frame or
                // the next tile sees all of it.
                let margin = f64::from(tile.width.min(tile.height)) * 0.02;
                let cut = |b: &[f64; 4]| {
                    (tile.x > 0 && b[0] < f64::from(tile.x) + margin)
                        || (tile.x + tile.width < whole.width
                            && b[2] > f64::from(tile.x + tile.width) - margin)
                        || (tile.y > 0 && b[1] < f64::from(tile.y) + margin)
                        || (tile.y + tile.height < whole.height
                            && b[3] > f64::from(tile.y + tile.height) - margin)
                };
                candidates.extend(
                    seen.into_iter()
                        .filter(|c| !cut(&c.bbox))
                        .map(|c| Candidate { tiled: true, ..c }),
                );
            }
        }
        let kept = nms(candidates);
        let (fw, fh) = (f64::from(frame.cols()), f64::from(frame.rows()));
        let mut vehicles = Vec::with_capacity(kept.len());
        for Candidate {
            class,
            confidence,
            bbox: [x1, y1, x2, y2],
            ..
        } in kept
        {
            let (_, name, kind) = VEHICLE_CLASSES
                .iter()
                .find(|(id, _, _)| *id == class)
                .copied()
                .expect("kept classes are vehicle classes");
            let bbox = BBox {
                x: x1 / fw,
                y: y1 / fh,
                w: (x2 - x1) / fw,
                h: (y2 - y1) / fh,
            }
            .clamped();
            vehicles.push(VehicleDetection {
                kind,
                label: name.to_owned(),
                confidence,
                colors: colors::dominant_colors(frame, &bbox)?,
                bbox,
                texts: Vec::new(),
            });
        }
        vehicles.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        Ok(vehicles)
    }

    /// The network on `area` of `frame`: vehicle candidates over the confidence, in frame pixels.
    fn run(&self, frame: &Mat, area: Rect) -> opencv::Result<Vec<Candidate>> {
        let region = Mat::roi(frame, area)?;
        let blob = preprocess(&region)?;
        let outputs = {
            let mut net = self.net.lock().unwrap_or_else(|e| e.into_inner());
            net.set_input(&blob, "", 1.0, Scalar::default())?;
            let names = net.get_unconnected_out_layers_names()?;
            let mut outputs = Vector::<Mat>::new();
            net.forward(&mut outputs, &names)?;
            outputs
        };
        let mut scores: [Option<Mat>; 3] = [None, None, None];
        let mut boxes: [Option<Mat>; 3] = [None, None, None];
        for out in outputs {
            let (n, c) = {
                let dims = out.mat_size();
                if dims.dims() != 3 {
                    continue;
                }
                (dims[1] as usize, dims[2] as usize)
            };
            let Some(level) = STRIDES.iter().position(|(g, _)| g * g == n) else {
                continue;
            };
            match c {
                CLASSES => scores[level] = Some(out),
                c if c == 4 * BINS => boxes[level] = Some(out),
                _ => {}
            }
        }
        let sx = f64::from(area.width) / f64::from(INPUT);
        let sy = f64::from(area.height) / f64::from(INPUT);
        let (ox, oy) = (f64::from(area.x), f64::from(area.y));
        let mut candidates = Vec::new();
        for (level, (grid, stride)) in STRIDES.iter().enumerate() {
            let (Some(score), Some(dist)) = (&scores[level], &boxes[level]) else {
                return Err(opencv::Error::new(
                    cvcore::StsError,
                    "the model's outputs do not have NanoDet-m's shapes",
                ));
            };
            let score = score.data_typed::<f32>()?;
            let dist = dist.data_typed::<f32>()?;
            for cell in 0..grid * grid {
                let row = &score[cell * CLASSES..(cell + 1) * CLASSES];
                for (class, _, _) in VEHICLE_CLASSES {
                    let confidence = f64::from(row[class]);
                    if confidence < self.min_confidence {
                        continue;
                    }
                    let cx = ((cell % grid) as f64 + 0.5) * stride;
                    let cy = ((cell / grid) as f64 + 0.5) * stride;
                    let d = &dist[cell * 4 * BINS..(cell + 1) * 4 * BINS];
                    let side = |i: usize| expectation(&d[i * BINS..(i + 1) * BINS]) * stride;
                    let (x1, y1, x2, y2) = (cx - side(0), cy - side(1), cx + side(2), cy + side(3));
                    candidates.push(Candidate {
                        class,
                        confidence,
                        bbox: [ox + x1 * sx, oy + y1 * sy, ox + x2 * sx, oy + y2 * sy],
                        tiled: false,
                    });
                }
            }
        }
        Ok(candidates)
    }
}

/// One box from the network, in frame pixels.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    class: usize,
    confidence: f64,
    bbox: [f64; 4],
    /// Seen on a tile rather than on the whole frame.
    tiled: bool,
}

/// The square tiles of a `width`×`height` frame whose long side is over 1.2 times its short
/// side: side = the short side, spread evenly from one end of the long side to the other (two
/// for 16:9, overlapping by a quarter; three from 2.1:1). None for squarer frames, which the
/// whole-frame run already sees at about the tiles' scale.
pub fn tiles(width: i32, height: i32) -> Vec<Rect> {
    let (long, short) = (width.max(height), width.min(height));
    if short <= 0 || f64::from(long) <= 1.2 * f64::from(short) {
        return Vec::new();
    }
    let n = (f64::from(long) / f64::from(short)).ceil() as i32;
    (0..n)
        .map(|i| {
            let offset =
                ((f64::from(long - short) * f64::from(i)) / f64::from(n - 1)).round() as i32;
            if width >= height {
                Rect::new(offset, 0, short, short)
            } else {
                Rect::new(0, offset, short, short)
            }
        })
        .collect()
}

/// Finds the model: the configured path, else next to the executable's workspace (`models/`).
/// The model file's name, as shipped (`models/`) and installed (`share/sentinela/models/`).
pub const MODEL_FILE: &str = "nanodet_m_416.onnx";

/// The default of `detector.model_path`: relative to the working directory (a checkout).
pub const DEFAULT_MODEL_PATH: &str = "models/nanodet_m_416.onnx";

/// The model compiled into the binary (feature `bundled-model`, on for the api and worker
/// binaries built by `cargo build`/`cargo install`; off for the Debian package, which installs the
/// file). Costs the file's size, 15.2 MB, in each binary that has it.
#[cfg(feature = "bundled-model")]
static BUNDLED: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/nanodet_m_416.onnx"
));

/// Where the local model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A file.
    File(PathBuf),
    /// The copy compiled into the binary.
    Bundled,
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Bundled => f.write_str("the model compiled into this binary"),
        }
    }
}

impl ModelSource {
    /// Its bytes, checked to be the file described in `models/PROVENANCE.md`.
    ///
    /// # Errors
    /// An unreadable file, or another file than NanoDet-m 416.
    pub fn bytes(&self) -> anyhow::Result<std::borrow::Cow<'static, [u8]>> {
        let bytes: std::borrow::Cow<'static, [u8]> = match self {
            Self::File(path) => std::fs::read(path)
                .with_context(|| {
                    format!("failed to read the local detector model {}", path.display())
                })?
                .into(),
            Self::Bundled => bundled()
                .context("this binary has no bundled model")?
                .into(),
        };
        let digest = hex::encode(Sha256::digest(&bytes));
        if digest != MODEL_SHA256 {
            bail!("{self} is not NanoDet-m 416 (sha256 {digest}, expected {MODEL_SHA256})");
        }
        Ok(bytes)
    }
}

/// Gives back the resident pages of `bytes`, a part of this executable's read-only data that was
/// read once (the bundled model, 15 MB, checked and handed to OpenCV, which keeps its own copy of
/// the weights): they would otherwise stay in the process's resident memory for its lifetime.
/// They are clean pages of a private file mapping, so a later read finds the same bytes again
/// from the file.
#[cfg(all(target_os = "linux", feature = "bundled-model"))]
#[allow(unsafe_code)]
fn release_pages(bytes: &'static [u8]) {
    // SAFETY: sysconf only reads a system constant.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(0);
    if page == 0 {
        return;
    }
    let start = (bytes.as_ptr() as usize).div_ceil(page) * page;
    let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
    if end > start {
        // SAFETY: `[start, end)` holds whole pages inside `bytes`, read-only data of the
        // executable that nothing ever writes; MADV_DONTNEED on such pages only drops them from
        // memory, and the next access reads them from the executable again. A failure (EINVAL,
        // EAGAIN) leaves them resident, as before.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(not(all(target_os = "linux", feature = "bundled-model")))]
fn release_pages(_bytes: &'static [u8]) {}

fn bundled() -> Option<&'static [u8]> {
    #[cfg(feature = "bundled-model")]
    return Some(BUNDLED);
    #[cfg(not(feature = "bundled-model"))]
    None
}

/// Finds the local model. A `configured` path other than the default must exist (an explicit
/// `SENTINELA__DETECTOR__MODEL_PATH` is never second-guessed). The default is looked for, in
/// order: in the working directory (`models/`, a checkout), next to the executable
/// (`<bin>/nanodet_m_416.onnx`, `<bin>/models/`), in the data directory beside it
/// (`<bin>/../share/sentinela/models/`: `/usr/bin` → `/usr/share`, where the Debian package
/// installs it), in `/usr/share/sentinela/models/`, and last the copy compiled into the binary.
///
/// # Errors
/// When none is found; the message lists where it looked.
pub fn locate_model(configured: &Path) -> anyhow::Result<ModelSource> {
    if configured != Path::new(DEFAULT_MODEL_PATH) {
        if configured.is_file() {
            return Ok(ModelSource::File(configured.to_owned()));
        }
        bail!(
            "the local detector model {} does not exist (SENTINELA__DETECTOR__MODEL_PATH)",
            configured.display()
        );
    }
    let mut candidates = vec![configured.to_owned()];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned))
    {
        candidates.push(dir.join(MODEL_FILE));
        candidates.push(dir.join("models").join(MODEL_FILE));
        candidates.push(dir.join("../share/sentinela/models").join(MODEL_FILE));
    }
    candidates.push(Path::new("/usr/share/sentinela/models").join(MODEL_FILE));
    if let Some(found) = candidates.iter().find(|c| c.is_file()) {
        return Ok(ModelSource::File(found.clone()));
    }
    if bundled().is_some() {
        return Ok(ModelSource::Bundled);
    }
    bail!(
        "the local detector model was not found; looked in {} (set SENTINELA__DETECTOR__MODEL_PATH)",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The network input: 416x416, BGR, per-channel (pixel − mean) / std, NCHW.
fn preprocess(frame: &impl cvcore::ToInputArray) -> opencv::Result<Mat> {
    let mut resized = Mat::default();
    imgproc::resize(
        frame,
        &mut resized,
        Size::new(INPUT, INPUT),
        0.0,
        0.0,
        imgproc::INTER_LINEAR,
    )?;
    let mut as_float = Mat::default();
    resized.convert_to(&mut as_float, cvcore::CV_32FC3, 1.0, 0.0)?;
    let mut centred = Mat::default();
    cvcore::subtract(
        &as_float,
        &Scalar::new(MEAN[0], MEAN[1], MEAN[2], 0.0),
        &mut centred,
        &cvcore::no_array(),
        -1,
    )?;
    let mut scaled = Mat::default();
    cvcore::divide2(
        &centred,
        &Scalar::new(STD[0], STD[1], STD[2], 1.0),
        &mut scaled,
        1.0,
        -1,
    )?;
    dnn::blob_from_image(
        &scaled,
        1.0,
        Size::new(INPUT, INPUT),
        Scalar::default(),
        false,
        false,
        cvcore::CV_32F,
    )
}

/// Expectation of the softmax over a side's bins (in strides).
fn expectation(bins: &[f32]) -> f64 {
    let max = bins.iter().copied().fold(f32::MIN, f32::max);
    let exps: Vec<f64> = bins.iter().map(|b| f64::from(b - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter()
        .enumerate()
        .map(|(i, e)| i as f64 * e / sum)
        .sum()
}

/// Intersection over union of two boxes given as `[x1, y1, x2, y2]` (any unit); 0 for boxes
/// without area.
pub fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let area = |r: &[f64; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Non-maximum suppression across classes: a box overlapping a more confident one by half
/// (intersection over union) is dropped, and so is a tile's box that lies mostly (80 %) inside a
/// kept one (a tile sees part of a large vehicle as a vehicle of its own).
fn nms(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        let dropped = kept.iter().any(|k| {
            iou(&k.bbox, &c.bbox) >= NMS_IOU || (c.tiled && inside(&c.bbox, &k.bbox) >= 0.8)
        });
        if !dropped {
            kept.push(c);
        }
    }
    kept
}

/// The share of `a`'s area that lies inside `b`.
fn inside(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0);
    if area <= 0.0 { 0.0 } else { ix * iy / area }
}

/// Reads text in a vehicle's box with the `tesseract` command (Debian's `tesseract-ocr`).
///
/// Tesseract runs as a child process rather than through a binding: the bindings' build
/// (bindgen + clang-sys) conflicts with the opencv crate's binding generator in one workspace,
/// and a crash inside OCR then cannot take the worker down.
///
/// # Errors
/// When the command is missing, fails, or runs longer than [`TESSERACT_TIMEOUT`] (it is then
/// killed: a hung child must not hold a blocking thread forever).
pub fn read_text(frame: &Mat, bbox: &BBox) -> anyhow::Result<Vec<String>> {
    read_text_with(Path::new("tesseract"), TESSERACT_TIMEOUT, frame, bbox)
}

/// How long one Tesseract run may take (a crop of a plate takes well under a second).
pub const TESSERACT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// [`read_text`] with another program and time limit (tests).
///
/// # Errors
/// As [`read_text`].
pub fn read_text_with(
    program: &Path,
    timeout: std::time::Duration,
    frame: &Mat,
    bbox: &BBox,
) -> anyhow::Result<Vec<String>> {
    let (fw, fh) = (f64::from(frame.cols()), f64::from(frame.rows()));
    let rect = Rect::new(
        (bbox.x * fw) as i32,
        (bbox.y * fh) as i32,
        (bbox.w * fw).ceil() as i32,
        (bbox.h * fh).ceil() as i32,
    ) & Rect::new(0, 0, frame.cols(), frame.rows());
    if rect.width < 8 || rect.height < 8 {
        return Ok(Vec::new());
    }
    let crop = Mat::roi(frame, rect)?;
    // Plates are small; Tesseract reads characters best around 30 px tall.
    let scale = (600.0 / f64::from(rect.height.max(rect.width))).clamp(1.0, 4.0);
    let mut big = Mat::default();
    imgproc::resize(
        &crop,
        &mut big,
        Size::default(),
        scale,
        scale,
        imgproc::INTER_CUBIC,
    )?;
    let mut gray = Mat::default();
    imgproc::cvt_color_def(&big, &mut gray, imgproc::COLOR_BGR2GRAY)?;
    let mut png = Vector::<u8>::new();
    imgcodecs::imencode(".png", &gray, &mut png, &Vector::new())?;
    let mut child = Command::new(program)
        .args([
            "stdin",
            "stdout",
            "--psm",
            "11",
            "-l",
            "eng",
            "-c",
            "tessedit_char_whitelist=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("failed to start tesseract (install Debian's tesseract-ocr)")?;
    // Its output is read on a thread of its own while this one watches the clock.
    let mut stdout = child.stdout.take().context("tesseract stdout")?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut out).map(|_| out)
    });
    // The crop goes in on a thread too: a child that stops reading must not block this one.
    let mut stdin = child.stdin.take().context("tesseract stdin")?;
    let crop = png.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&crop));
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("tesseract")? {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            // Killed and reaped; its stdout closes, so the reader ends too.
            child.kill().ok();
            child.wait().ok();
            reader.join().ok();
            writer.join().ok();
            bail!(
                "tesseract ran longer than {} s and was killed",
                timeout.as_secs()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("tesseract input writer panicked"))?
        .context("failed to send the crop to tesseract")?;
    let output = reader
        .join()
        .map_err(|_| anyhow::anyhow!("tesseract output reader panicked"))?
        .context("tesseract output")?;
    if !status.success() {
        bail!("tesseract failed with {status}");
    }
    Ok(String::from_utf8_lossy(&output)
        .lines()
        .map(str::trim)
        .filter(|l| l.chars().filter(char::is_ascii_alphanumeric).count() >= 3)
        .map(str::to_owned)
        .collect())
}

#[async_trait]
impl Detector for LocalDetector {
    fn provider(&self) -> &'static str {
        "local"
    }

    fn wants_jpeg(&self) -> bool {
        false
    }

    async fn detect(&self, frame: &FrameImage, want_text: bool) -> Result<Analysis, DetectError> {
        let image = std::sync::Arc::clone(&frame.image);
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let metrics = crate::metrics::global();
            let outcome = |ok: bool| if ok { "ok" } else { "error" };
            let detected = this.detect_blocking(&image);
            metrics.detector_call("local", "nanodet", outcome(detected.is_ok()));
            let mut vehicles =
                detected.map_err(|e| DetectError::Failed(format!("OpenCV dnn: {e}")))?;
            if want_text {
                for vehicle in &mut vehicles {
                    let read = read_text(&image, &vehicle.bbox);
                    metrics.detector_call("local", "tesseract", outcome(read.is_ok()));
                    vehicle.texts = read.map_err(|e| DetectError::Failed(format!("{e:#}")))?;
                }
            }
            let labels = vehicles
                .iter()
                .map(|v| Label {
                    name: v.label.clone(),
                    confidence: v.confidence,
                })
                .collect();
            Ok(Analysis {
                labels,
                vehicles,
                text_checked: want_text,
            })
        })
        .await
        .map_err(|e| DetectError::Failed(format!("detector task: {e}")))?
    }
}
