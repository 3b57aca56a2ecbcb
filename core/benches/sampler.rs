//! Frame sampling benchmark: a 10-minute 1280x720 30 fps H.264 recording with a 2-second keyframe
//! interval, sampled at 1 fps with JPEG output, three ways, in one run:
//!
//! (a) the seed's loop: read and convert every frame, keep one per second, JPEG-encode the kept
//!     ones (the Python seed did this with cv2; here the same loop runs on the same OpenCV from
//!     Rust, which is faster than Python, so the baseline is conservative);
//! (b) our sampler at exactly 1 fps;
//! (c) our sampler in keyframe-aligned mode.
//!
//! Each mode runs in a child process so its peak memory (VmHWM) is its own.
//!
//! `cargo bench -p sentinela-core --bench sampler` (set `SAMPLER_BENCH_VIDEO` to reuse a file).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, videoio};
use sentinela_core::video::jpeg;
use sentinela_core::video::sampler::{Sampler, SamplerOptions};

const SECONDS: u32 = 600;

fn video() -> PathBuf {
    if let Ok(path) = std::env::var("SAMPLER_BENCH_VIDEO") {
        return PathBuf::from(path);
    }
    let path = std::env::temp_dir().join("sentinela-bench-720p30-gop60-10min.mp4");
    if !path.exists() {
        eprintln!("generating {} (once; about two minutes)…", path.display());
        let tmp = path.with_extension("partial.mp4");
        let status = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=s=1280x720:r=30:d={SECONDS}"))
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-g",
                "60",
                "-keyint_min",
                "60",
                "-sc_threshold",
                "0",
                "-pix_fmt",
                "yuv420p",
            ])
            .arg(&tmp)
            .status()
            .expect("run ffmpeg");
        assert!(status.success(), "ffmpeg failed");
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

/// Runs one mode in this process; prints `seconds samples peak_mb`.
fn run_mode(mode: &str, path: &Path) {
    let start = Instant::now();
    let mut samples = 0u64;
    match mode {
        "seed" => {
            let mut cap = videoio::VideoCapture::from_file(
                path.to_string_lossy().as_ref(),
                videoio::CAP_FFMPEG,
            )
            .unwrap();
            let fps = cap.get(videoio::CAP_PROP_FPS).unwrap().round() as u64;
            let mut frame = Mat::default();
            let mut index = 0u64;
            let params = Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, 85]);
            while cap.read(&mut frame).unwrap() {
                if index.is_multiple_of(fps) {
                    let mut buf = Vector::<u8>::new();
                    imgcodecs::imencode(".jpg", &frame, &mut buf, &params).unwrap();
                    samples += 1;
                }
                index += 1;
            }
        }
        "exact" | "keyframes" => {
            let options = SamplerOptions {
                fps: 1.0,
                snap_to_keyframes: mode == "keyframes",
                quiet_threshold: 0.0,
            };
            let mut sampler = Sampler::open(path, 0, i64::from(SECONDS) * 1000, options).unwrap();
            while let Some(frame) = sampler.next_frame().unwrap() {
                jpeg::encode(&frame.image, 85).unwrap();
                samples += 1;
            }
        }
        other => panic!("unknown mode {other}"),
    }
    println!(
        "{} {} {}",
        start.elapsed().as_secs_f64(),
        samples,
        sentinela_testkit::peak_rss_mb("self")
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--mode") {
        run_mode(&args[i + 1], Path::new(&args[i + 2]));
        return;
    }
    let path = video();
    let me = std::env::current_exe().unwrap();
    println!(
        "sampling {} ({SECONDS} s of 1280x720 30 fps H.264, keyframe every 2 s) at 1 fps, JPEG q85",
        path.display()
    );
    println!(
        "{:<42} {:>9} {:>8} {:>12} {:>9} {:>8}",
        "mode", "wall s", "samples", "video-s/s", "vs seed", "peak MB"
    );
    let mut baseline = None;
    let mut speeds = Vec::new();
    for (mode, name) in [
        ("seed", "(a) seed loop: read every frame"),
        ("exact", "(b) sampler, exact 1 fps"),
        ("keyframes", "(c) sampler, keyframe-aligned"),
    ] {
        let out = Command::new(&me)
            .args(["--mode", mode])
            .arg(&path)
            .output()
            .expect("run mode");
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<f64> = text
            .lines()
            .last()
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let (wall, samples, peak) = (fields[0], fields[1], fields[2]);
        let speed = f64::from(SECONDS) / wall;
        let base = *baseline.get_or_insert(speed);
        speeds.push((name, speed));
        println!(
            "{name:<42} {wall:>9.2} {samples:>8} {speed:>12.1} {:>8.2}x {peak:>8.0}",
            speed / base
        );
    }
    println!("targets: (b) >= 1.8x (a), (c) >= 8x (a), peak memory < 300 MB");
    if let Some(anchors) = std::env::var_os("BENCH_SEED_ANCHORS") {
        seed_in_python(Path::new(&anchors), &path, &speeds);
    }
}

/// The seed's own loop in Python (the anchors' `frames_bench/sample_frames.py`, variant
/// `cv2_read_every_frame_seed`: opencv-python reads every frame, keeps one a second, JPEG q85)
/// on the same file, in this run.
fn seed_in_python(anchors: &Path, video: &Path, ours: &[(&str, f64)]) {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("frames.json");
    let status = Command::new(anchors.join(".venv/bin/python"))
        .arg(anchors.join("frames_bench/sample_frames.py"))
        .arg("--video")
        .arg(video)
        .arg("--out")
        .arg(&out)
        .arg("--raw-dir")
        .arg(work.path())
        .args(["--only", "cv2_read_every_frame_seed"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run the anchors' sample_frames.py");
    let json: serde_json::Value = std::fs::read(&out)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let Some(variant) = json["variants"].get(0) else {
        println!("seed in Python: failed ({status})");
        return;
    };
    let wall = variant["wall_s"].as_f64().unwrap_or(f64::NAN);
    let speed = f64::from(SECONDS) / wall;
    println!(
        "{:<42} {wall:>9.2} {:>8} {speed:>12.1} {:>9} {:>8.0}",
        "(s) seed in Python (anchors, same file)",
        variant["frames_out"],
        "",
        variant["max_rss_mib"].as_f64().unwrap_or(f64::NAN)
    );
    for (name, ours) in ours {
        println!("{name:<42} {:.2}x the seed in Python", ours / speed);
    }
}
