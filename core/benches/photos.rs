//! Detection quality on real photos (not timed): the local detector (NanoDet-m at the settings'
//! default confidence) and our colour code on vehicle photos shipped in Debian and PyPI packages,
//! against `bench/photos/ground-truth.tsv` (every vehicle in each photo, its type and colour).
//!
//! Each labelled vehicle is matched to an unmatched detection of its type in the same photo,
//! preferring one of its colour. Per type: recall of the type, recall of type + colour, and
//! precision of type + colour over every detection of that type (unmatched detections count
//! against it).
//!
//! `bash bench/photos.sh` fetches the photos and runs this (`BENCH_PHOTOS`: their folder).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use opencv::imgcodecs;
use opencv::prelude::MatTraitConst;
use sentinela_core::detect::local::LocalDetector;

/// One labelled vehicle.
struct Truth {
    file: String,
    kind: String,
    color: String,
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
            Truth {
                file: f[1].to_owned(),
                kind: f[2].to_owned(),
                color: f[3].to_owned(),
            }
        })
        .collect()
}

fn main() {
    let photos = PathBuf::from(
        std::env::var("BENCH_PHOTOS").unwrap_or_else(|_| "/var/cache/sentinela/photos".into()),
    );
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/nanodet_m_416.onnx");
    let detector = LocalDetector::load(&model, 0.35).expect("the model");
    let truth = ground_truth();
    let mut files: Vec<&str> = truth.iter().map(|t| t.file.as_str()).collect();
    files.dedup();
    let mut tally: BTreeMap<String, Tally> = BTreeMap::new();
    println!("real photos from packages, local detector (confidence >= 0.35), our colour code");
    for file in files {
        let image =
            imgcodecs::imread(photos.join(file), imgcodecs::IMREAD_COLOR).expect("read the photo");
        assert!(
            !image.empty(),
            "{} missing: run bench/photos.sh",
            photos.join(file).display()
        );
        let found = detector.detect_blocking(&image).expect("detect");
        let seen: Vec<(String, String, f64)> = found
            .iter()
            .map(|d| {
                (
                    d.kind.as_str().to_owned(),
                    d.main_color().map_or("-", |c| c.as_str()).to_owned(),
                    d.confidence,
                )
            })
            .collect();
        let labels: Vec<&Truth> = truth.iter().filter(|t| t.file == file).collect();
        println!(
            "  {file}: labelled {:?}; detected {:?}",
            labels
                .iter()
                .map(|t| format!("{} {}", t.kind, t.color))
                .collect::<Vec<_>>(),
            seen.iter()
                .map(|(k, c, p)| format!("{k} {c} {p:.2}"))
                .collect::<Vec<_>>()
        );
        let mut used = vec![false; seen.len()];
        for label in &labels {
            let t = tally.entry(label.kind.clone()).or_default();
            t.labelled += 1;
            let same_type = |i: &usize| !used[*i] && seen[*i].0 == label.kind;
            let pick = (0..seen.len())
                .filter(same_type)
                .find(|&i| seen[i].1 == label.color)
                .or_else(|| (0..seen.len()).find(same_type));
            if let Some(i) = pick {
                used[i] = true;
                t.type_found += 1;
                if seen[i].1 == label.color {
                    t.type_and_color += 1;
                    t.detections_right += 1;
                }
            }
        }
        for (kind, _, _) in &seen {
            tally.entry(kind.clone()).or_default().detections += 1;
        }
    }
    println!(
        "{:<12} {:>9} {:>12} {:>20} {:>22}",
        "type", "labelled", "type recall", "type+colour recall", "type+colour precision"
    );
    let ratio = |a: u32, b: u32| {
        if b == 0 {
            "-".to_owned()
        } else {
            format!("{:.2} ({a}/{b})", f64::from(a) / f64::from(b))
        }
    };
    for (kind, t) in &tally {
        println!(
            "{kind:<12} {:>9} {:>12} {:>20} {:>22}",
            t.labelled,
            ratio(t.type_found, t.labelled),
            ratio(t.type_and_color, t.labelled),
            ratio(t.detections_right, t.detections)
        );
    }
    println!("target (issue): type + colour recall >= 0.9 with precision >= 0.9");
}
