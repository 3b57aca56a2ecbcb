//! Detection quality on real photos (not a timed test): the local detector (NanoDet-m at the
//! settings' default confidence) and our colour code on photos shipped in Debian and PyPI
//! packages, against `bench/photos/ground-truth.tsv` (every vehicle in each photo with its type,
//! colour and box; photos without vehicles too).
//!
//! Each labelled vehicle is matched to the unmatched detection that overlaps its box most
//! (intersection over union ≥ 0.4). Its type is right when the detection's type is one of the
//! labelled ones (`car|truck` for a van), its colour when a search for the labelled colour would
//! accept the detection's main colour (silver and gray accept each other, as in searches).
//! Vehicles labelled `optional` (far away, behind glass) count neither way: a miss is not held
//! against recall, a detection on them not against precision. Every other detection is a false
//! positive. Per type: recall of the type, recall of type + colour, and precision of type + colour.
//!
//! Runs twice, on the whole frame only and with tiles (`detector.tiles`), and prints the time a
//! call took in each mode (debug or release, as built).
//!
//! `bash bench/photos.sh` fetches the photos and runs this (`BENCH_PHOTOS`: their folder).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opencv::imgcodecs;
use opencv::prelude::MatTraitConst;
use sentinela_core::detect::local::{LocalDetector, iou};
use sentinela_core::detect::{BBox, VehicleDetection};
use sentinela_core::domain::{Color, VehicleType};

/// One labelled vehicle, or a photo with none (`kinds` empty).
struct Truth {
    file: String,
    kinds: Vec<VehicleType>,
    color: Option<Color>,
    /// x1, y1, x2, y2 in pixels.
    bbox: [f64; 4],
    optional: bool,
}

#[derive(Default)]
struct Tally {
    labelled: u32,
    type_found: u32,
    type_and_color: u32,
    detections: u32,
    detections_right: u32,
}

fn ground_truth() -> Vec<Truth> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/photos/ground-truth.tsv");
    std::fs::read_to_string(&path)
        .expect("bench/photos/ground-truth.tsv")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert!(f.len() >= 6, "six columns: {l}");
            let none = f[2] == "none";
            Truth {
                file: f[1].to_owned(),
                kinds: if none {
                    Vec::new()
                } else {
                    f[2].split('|')
                        .map(|k| VehicleType::parse(k).expect("a vehicle type"))
                        .collect()
                },
                color: (!none).then(|| Color::parse(f[3]).expect("a colour")),
                bbox: if none {
                    [0.0; 4]
                } else {
                    let v: Vec<f64> = f[4].split(',').map(|n| n.parse().expect("px")).collect();
                    [v[0], v[1], v[2], v[3]]
                },
                optional: f[5] == "optional",
            }
        })
        .collect()
}

fn pixels(b: &BBox, w: f64, h: f64) -> [f64; 4] {
    [b.x * w, b.y * h, (b.x + b.w) * w, (b.y + b.h) * h]
}

/// What one detection turned out to be.
#[derive(Clone, Copy, PartialEq)]
enum Verdict {
    Unmatched,
    Right,
    Wrong,
    Ignored,
}

fn evaluate(detector: &LocalDetector, photos: &Path, truth: &[Truth]) -> Duration {
    let mut files: Vec<&str> = truth.iter().map(|t| t.file.as_str()).collect();
    files.dedup();
    let mut tally: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut spent = Duration::ZERO;
    for file in &files {
        let image =
            imgcodecs::imread(photos.join(file), imgcodecs::IMREAD_COLOR).expect("read the photo");
        assert!(
            !image.empty(),
            "{} missing: run bench/photos.sh",
            photos.join(file).display()
        );
        let (w, h) = (f64::from(image.cols()), f64::from(image.rows()));
        let started = Instant::now();
        let found: Vec<VehicleDetection> = detector.detect_blocking(&image).expect("detect");
        spent += started.elapsed();
        let mut verdicts = vec![Verdict::Unmatched; found.len()];
        let mut lines = Vec::new();
        let mut labels: Vec<&Truth> = truth
            .iter()
            .filter(|t| t.file == *file && !t.kinds.is_empty())
            .collect();
        labels.sort_by_key(|t| t.optional);
        for label in labels {
            let t = tally.entry(label.kinds[0].as_str()).or_default();
            if !label.optional {
                t.labelled += 1;
            }
            let pick = (0..found.len())
                .filter(|&i| verdicts[i] == Verdict::Unmatched)
                .map(|i| (i, iou(&label.bbox, &pixels(&found[i].bbox, w, h))))
                .filter(|(_, o)| *o >= 0.4)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i);
            let wanted = format!(
                "{} {}{}",
                label
                    .kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join("|"),
                label.color.map_or("-", |c| c.as_str()),
                if label.optional { " (optional)" } else { "" }
            );
            let Some(i) = pick else {
                lines.push(format!("{wanted}: missed"));
                continue;
            };
            let d = &found[i];
            let type_right = label.kinds.contains(&d.kind);
            let color_right = type_right
                && label
                    .color
                    .zip(d.main_color())
                    .is_some_and(|(want, got)| want.matches(got));
            lines.push(format!(
                "{wanted}: {} {} {:.2}",
                d.kind.as_str(),
                d.main_color().map_or("-", |c| c.as_str()),
                d.confidence
            ));
            if label.optional {
                verdicts[i] = Verdict::Ignored;
                continue;
            }
            t.type_found += u32::from(type_right);
            t.type_and_color += u32::from(color_right);
            verdicts[i] = if color_right {
                Verdict::Right
            } else {
                Verdict::Wrong
            };
        }
        for (d, verdict) in found.iter().zip(&verdicts) {
            if *verdict == Verdict::Unmatched {
                lines.push(format!(
                    "nothing there: {} {} {:.2}",
                    d.kind.as_str(),
                    d.main_color().map_or("-", |c| c.as_str()),
                    d.confidence
                ));
            }
            if *verdict != Verdict::Ignored {
                let t = tally.entry(d.kind.as_str()).or_default();
                t.detections += 1;
                t.detections_right += u32::from(*verdict == Verdict::Right);
            }
        }
        println!("  {file}: {}", lines.join("; "));
    }
    println!(
        "  {:<12} {:>9} {:>12} {:>20} {:>22}",
        "type", "labelled", "type recall", "type+colour recall", "type+colour precision"
    );
    let ratio = |a: u32, b: u32| {
        if b == 0 {
            "-".to_owned()
        } else {
            format!("{:.2} ({a}/{b})", f64::from(a) / f64::from(b))
        }
    };
    let mut all = Tally::default();
    for (kind, t) in &tally {
        println!(
            "  {kind:<12} {:>9} {:>12} {:>20} {:>22}",
            t.labelled,
            ratio(t.type_found, t.labelled),
            ratio(t.type_and_color, t.labelled),
            ratio(t.detections_right, t.detections)
        );
        all.labelled += t.labelled;
        all.type_found += t.type_found;
        all.type_and_color += t.type_and_color;
        all.detections += t.detections;
        all.detections_right += t.detections_right;
    }
    println!(
        "  {:<12} {:>9} {:>12} {:>20} {:>22}",
        "all",
        all.labelled,
        ratio(all.type_found, all.labelled),
        ratio(all.type_and_color, all.labelled),
        ratio(all.detections_right, all.detections)
    );
    spent / u32::try_from(files.len()).expect("a few photos")
}

fn main() {
    let photos = PathBuf::from(
        std::env::var("BENCH_PHOTOS").unwrap_or_else(|_| "/var/cache/sentinela/photos".into()),
    );
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/nanodet_m_416.onnx");
    let detector = LocalDetector::load(&model, 0.35).expect("the model");
    let truth = ground_truth();
    println!(
        "real photos from packages ({} files), local detector (confidence >= 0.35), our colour code",
        {
            let mut f: Vec<&str> = truth.iter().map(|t| t.file.as_str()).collect();
            f.dedup();
            f.len()
        }
    );
    println!("whole frame only (detector.tiles = false):");
    let whole = evaluate(&detector.clone().with_tiles(false), &photos, &truth);
    println!("with tiles (detector.tiles = true, the default):");
    let tiled = evaluate(&detector.with_tiles(true), &photos, &truth);
    println!(
        "mean time per photo: whole frame {:.1} ms, with tiles {:.1} ms",
        whole.as_secs_f64() * 1e3,
        tiled.as_secs_f64() * 1e3
    );
    println!("target (issue): type + colour recall >= 0.9 with precision >= 0.9");
}
