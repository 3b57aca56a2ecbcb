//! The offline detector on real vehicle photos and on a generated recording.

use std::path::Path;

use opencv::imgcodecs;
use opencv::prelude::*;
use sentinela_core::detect::criteria::Criteria;
use sentinela_core::detect::local::{LocalDetector, iou};
use sentinela_core::domain::{Color, VehicleType};
use sentinela_core::video::sampler::{Sampler, SamplerOptions};
use sentinela_core::video::synth::{self, Scene, Sprite};

fn detector() -> LocalDetector {
    LocalDetector::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/nanodet_m_416.onnx"),
        0.35,
    )
    .expect("model loads")
}

#[test]
fn the_local_detector_finds_the_red_bus_in_the_photo() {
    let photo = imgcodecs::imread(synth::BUS_PHOTO, imgcodecs::IMREAD_COLOR).unwrap();
    assert!(!photo.empty(), "install Debian's opencv-doc");
    let vehicles = detector().detect_blocking(&photo).unwrap();
    let bus = vehicles
        .iter()
        .find(|v| v.kind == VehicleType::Bus)
        .unwrap_or_else(|| panic!("no bus in {vehicles:?}"));
    assert!(bus.confidence > 0.6, "{bus:?}");
    assert_eq!(bus.main_color(), Some(Color::Red), "{bus:?}");
    assert!(
        bus.bbox.w > 0.4 && bus.bbox.h > 0.4,
        "the bus fills most of the photo: {bus:?}"
    );
}

#[test]
fn an_explicit_model_path_that_does_not_exist_is_an_error_naming_it() {
    let err = sentinela_core::detect::local::locate_model(Path::new("/nonexistent/model.onnx"))
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("/nonexistent/model.onnx") && err.contains("SENTINELA__DETECTOR__MODEL_PATH"),
        "{err}"
    );
}

#[test]
fn a_wrong_model_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.onnx");
    std::fs::write(&fake, b"not a model").unwrap();
    let err = LocalDetector::load(&fake, 0.35)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("fake.onnx") && err.contains("sha256"), "{err}");
}

#[test]
fn the_red_bus_crossing_a_recording_matches_onibus_vermelho_and_not_carro_azul() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("street.mp4");
    let mut scene = Scene::new(1280, 720, 15, 8.0);
    scene.sprites.push(Sprite {
        image: synth::load_photo(synth::BUS_PHOTO, 420).unwrap(),
        enter_s: 2.0,
        exit_s: 6.0,
        y: 150,
        from_x: 0,
        to_x: 640,
    });
    synth::render(&scene, &path).unwrap();

    let detector = detector();
    let onibus_vermelho = Criteria::new(
        None,
        Some(Color::parse("vermelho").unwrap()),
        Some(VehicleType::parse("ônibus").unwrap()),
    );
    let carro_azul = Criteria::new(
        None,
        Some(Color::parse("azul").unwrap()),
        Some(VehicleType::parse("carro").unwrap()),
    );
    let options = SamplerOptions {
        fps: 1.0,
        snap_to_keyframes: false,
        quiet_threshold: 0.0,
    };
    let mut sampler = Sampler::open(&path, 0, 8_000, options).unwrap();
    let mut matched_seconds = Vec::new();
    while let Some(frame) = sampler.next_frame().unwrap() {
        let analysis = sentinela_core::detect::Analysis {
            vehicles: detector.detect_blocking(&frame.image).unwrap(),
            ..Default::default()
        };
        assert!(
            carro_azul.best_match(&analysis).is_none(),
            "no blue car at {} ms",
            frame.offset_ms
        );
        if let Some(m) = onibus_vermelho.best_match(&analysis) {
            assert_eq!(m.color, Some(Color::Red));
            matched_seconds.push(frame.offset_ms / 1000);
        }
    }
    assert_eq!(
        matched_seconds,
        vec![2, 3, 4, 5],
        "the bus is on screen from 2 s to 6 s"
    );
}

/// A stand-in for `tesseract` (a shell script), so the test controls what the child does.
fn fake_tesseract(dir: &Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("tesseract");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_hung_tesseract_is_killed_after_its_time_limit() {
    use sentinela_core::detect::BBox;
    use sentinela_core::detect::local::read_text_with;
    use std::time::{Duration, Instant};
    let frame = Mat::new_rows_cols_with_default(
        120,
        200,
        opencv::core::CV_8UC3,
        opencv::core::Scalar::all(128.0),
    )
    .unwrap();
    let bbox = BBox {
        x: 0.1,
        y: 0.1,
        w: 0.5,
        h: 0.5,
    };
    let dir = tempfile::tempdir().unwrap();
    // A child that reads its input and answers: its text comes back.
    let answers = fake_tesseract(dir.path(), "cat >/dev/null; echo ABC1D23");
    let texts = read_text_with(&answers, Duration::from_secs(10), &frame, &bbox).unwrap();
    assert_eq!(texts, ["ABC1D23"]);
    // A child that never ends: killed at the limit, an error, and the thread is free again.
    let dir = tempfile::tempdir().unwrap();
    let hangs = fake_tesseract(dir.path(), "exec sleep 600");
    let started = Instant::now();
    let err = read_text_with(&hangs, Duration::from_millis(500), &frame, &bbox).unwrap_err();
    assert!(err.to_string().contains("killed"), "{err:#}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "gave up after {:?}",
        started.elapsed()
    );
}

/// Pixel boxes of the detections, for overlap checks.
fn boxes(vehicles: &[sentinela_core::detect::VehicleDetection], w: f64, h: f64) -> Vec<[f64; 4]> {
    vehicles
        .iter()
        .map(|v| {
            [
                v.bbox.x * w,
                v.bbox.y * h,
                (v.bbox.x + v.bbox.w) * w,
                (v.bbox.y + v.bbox.h) * h,
            ]
        })
        .collect()
}

#[test]
fn tiles_find_the_taxi_half_hidden_behind_the_bus_and_each_vehicle_is_reported_once() {
    // A real photo: the double-decker, a white car at the left, and a silver taxi at the right
    // edge, half hidden by the bus, which the whole frame alone scores under the threshold.
    let photo = imgcodecs::imread(synth::BUS_PHOTO, imgcodecs::IMREAD_COLOR).unwrap();
    assert!(!photo.empty(), "install Debian's opencv-doc");
    let (w, h) = (f64::from(photo.cols()), f64::from(photo.rows()));
    let taxi = [462.0, 282.0, 546.0, 390.0];
    let found_taxi = |vehicles: &[sentinela_core::detect::VehicleDetection]| {
        boxes(vehicles, w, h)
            .iter()
            .zip(vehicles)
            .any(|(b, v)| v.kind == VehicleType::Car && iou(b, &taxi) >= 0.4)
    };
    let whole = detector()
        .with_tiles(false)
        .detect_blocking(&photo)
        .unwrap();
    assert!(!found_taxi(&whole), "the whole frame alone: {whole:?}");
    let tiled = detector().with_tiles(true).detect_blocking(&photo).unwrap();
    assert!(found_taxi(&tiled), "with tiles: {tiled:?}");
    assert_eq!(
        tiled.iter().filter(|v| v.kind == VehicleType::Bus).count(),
        1,
        "the bus once, not once per tile: {tiled:?}"
    );
    let b = boxes(&tiled, w, h);
    for i in 0..b.len() {
        for j in i + 1..b.len() {
            assert!(
                iou(&b[i], &b[j]) < 0.5,
                "two detections of one vehicle: {:?} and {:?}",
                tiled[i],
                tiled[j]
            );
        }
    }
}

#[test]
fn tiles_cover_wide_and_tall_frames_and_leave_square_ones_alone() {
    use opencv::core::Rect;
    use sentinela_core::detect::local::tiles;
    assert_eq!(
        tiles(1280, 720),
        vec![Rect::new(0, 0, 720, 720), Rect::new(560, 0, 720, 720)]
    );
    assert_eq!(
        tiles(720, 1280),
        vec![Rect::new(0, 0, 720, 720), Rect::new(0, 560, 720, 720)]
    );
    assert_eq!(tiles(1500, 600).len(), 3);
    assert_eq!(tiles(1500, 600)[2], Rect::new(900, 0, 600, 600));
    assert!(tiles(640, 560).is_empty());
    assert!(tiles(0, 0).is_empty());
}

#[test]
fn a_colour_the_surroundings_share_does_not_colour_the_vehicle() {
    use opencv::core::{CV_8UC3, Mat, Rect, Scalar};
    use sentinela_core::detect::colors::dominant_colors;
    use sentinela_core::detect::{BBox, VehicleDetection};
    // A red motorcycle in a brown garage: inside its box, a quarter is red and half is the
    // brown wall behind it, the rest chrome and tyres.
    let brown = Scalar::new(40.0, 80.0, 120.0, 0.0);
    let red = Scalar::new(20.0, 20.0, 200.0, 0.0);
    let chrome = Scalar::new(120.0, 120.0, 120.0, 0.0);
    let paint = |wall: Scalar| {
        let mut frame = Mat::new_rows_cols_with_default(400, 400, CV_8UC3, wall).unwrap();
        let mut fill = |r: Rect, c: Scalar| {
            Mat::roi_mut(&mut frame, r)
                .unwrap()
                .set_to(&c, &opencv::core::no_array())
                .unwrap();
        };
        fill(Rect::new(100, 100, 200, 200), brown);
        fill(Rect::new(100, 100, 200, 50), red);
        fill(Rect::new(100, 250, 200, 50), chrome);
        frame
    };
    let bbox = BBox {
        x: 0.25,
        y: 0.25,
        w: 0.5,
        h: 0.5,
    };
    let main = |frame: &Mat| {
        VehicleDetection {
            kind: VehicleType::Motorcycle,
            label: "motorcycle".into(),
            confidence: 0.8,
            bbox,
            colors: dominant_colors(frame, &bbox).unwrap(),
            texts: Vec::new(),
        }
        .main_color()
    };
    // In the brown garage the brown inside the box is the wall's: the motorcycle is red.
    assert_eq!(main(&paint(brown)), Some(Color::Red));
    // In a grey street the same box's brown is the vehicle's own, and it is the larger share.
    assert_eq!(main(&paint(chrome)), Some(Color::Brown));
}
