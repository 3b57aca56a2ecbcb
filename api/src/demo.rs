//! `--demo`: a demo city with three cameras and twelve one-minute recordings generated from the
//! real photo of a red bus (Debian's `opencv-doc`), which crosses four of them — one camera after
//! another, as a vehicle driving through the city would.

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Duration, TimeZone, Utc};
use sea_orm::DatabaseConnection;
use sentinela_core::repo::recordings;
use sentinela_core::seed;
use sentinela_core::video::synth::{self, Scene, Sprite};

/// Start of the demo recordings: 2026-11-29 08:00 in São Paulo (UTC−3).
pub fn demo_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 11, 0, 0).unwrap()
}

/// Minutes of recordings per camera.
const MINUTES: i64 = 4;

/// What the demo created.
pub struct Demo {
    /// The demo city.
    pub city_id: i64,
}

/// Creates (idempotently) the demo city, cameras and recordings under `recordings_dir`.
///
/// # Errors
/// Database, OpenCV or ffmpeg errors.
pub async fn prepare(db: &DatabaseConnection, recordings_dir: &Path) -> anyhow::Result<Demo> {
    let (city, cameras) = seed::seed_demo(db)
        .await
        .context("failed to seed the demo city")?;
    let mut planned = Vec::new();
    for minute in 0..MINUTES {
        for (index, camera) in cameras.iter().enumerate() {
            let start = demo_start() + Duration::minutes(minute);
            let folder = camera
                .mediamtx_path
                .clone()
                .unwrap_or_else(|| camera.name.clone());
            let relative = format!("{folder}/{}.mp4", start.format("%Y-%m-%d_%H-%M-%S-000000"));
            // The bus passes camera `minute % 3` during minute `minute`.
            let with_bus = index as i64 == minute % cameras.len() as i64;
            planned.push((camera.id, start, relative, with_bus));
        }
    }
    let dir = recordings_dir.to_owned();
    let to_render: Vec<(String, bool)> = planned
        .iter()
        .filter(|(_, _, relative, _)| !dir.join(relative).exists())
        .map(|(_, _, relative, bus)| (relative.clone(), *bus))
        .collect();
    if !to_render.is_empty() {
        println!(
            "demo: generating {} one-minute recordings (once)…",
            to_render.len()
        );
        tokio::task::spawn_blocking(move || render_all(&dir, &to_render))
            .await
            .context("demo rendering task")??;
    }
    for (camera_id, start, relative, _) in planned {
        let size = std::fs::metadata(recordings_dir.join(&relative)).map(|m| m.len() as i64)?;
        recordings::register(
            db,
            recordings::NewRecording {
                camera_id,
                city_id: city.id,
                file_path: relative,
                started_at: start,
                ended_at: start + Duration::minutes(1),
                size_bytes: size,
            },
        )
        .await?;
    }
    // The recordings decode here (the FFmpeg behind OpenCV has the codec): checked before the
    // search is offered.
    let first = recordings_dir.join(first_recording(&cameras));
    tokio::task::spawn_blocking(move || check_decodable(&first))
        .await
        .context("demo decoding check")??;
    Ok(Demo { city_id: city.id })
}

fn first_recording(cameras: &[entity::camera::Model]) -> String {
    let camera = &cameras[0];
    let folder = camera
        .mediamtx_path
        .clone()
        .unwrap_or_else(|| camera.name.clone());
    format!(
        "{folder}/{}.mp4",
        demo_start().format("%Y-%m-%d_%H-%M-%S-000000")
    )
}

fn check_decodable(path: &Path) -> anyhow::Result<()> {
    use sentinela_core::video::sampler::{Sampler, SamplerOptions};
    let options = SamplerOptions {
        fps: 1.0,
        snap_to_keyframes: false,
        quiet_threshold: 0.0,
    };
    let mut sampler = Sampler::open(path, 0, 1_000, options).with_context(|| {
        format!(
            "the demo recording {} cannot be decoded: OpenCV's FFmpeg lacks H.264 or MPEG-4 decoding (install ffmpeg's libavcodec)",
            path.display()
        )
    })?;
    sampler
        .next_frame()
        .with_context(|| format!("the demo recording {} cannot be decoded", path.display()))?
        .with_context(|| format!("the demo recording {} has no frame", path.display()))?;
    Ok(())
}

/// `dir` exists (it is created) and a file can be written in it.
///
/// # Errors
/// Naming the folder and what failed.
pub fn check_writable(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data folder {}", dir.display()))?;
    let probe = dir.join(format!(".sentinela-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"ok")
        .with_context(|| format!("the data folder {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn render_all(dir: &Path, files: &[(String, bool)]) -> anyhow::Result<()> {
    let bus = synth::load_photo(synth::BUS_PHOTO, 240)?;
    for (relative, with_bus) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut scene = Scene::new(640, 360, 15, 60.0);
        if *with_bus {
            scene.sprites.push(Sprite {
                image: bus.clone(),
                enter_s: 15.0,
                exit_s: 45.0,
                y: 60,
                from_x: -200,
                to_x: 480,
            });
        }
        let partial = path.with_extension("partial.mp4");
        synth::render(&scene, &partial)?;
        std::fs::rename(&partial, &path)?;
    }
    Ok(())
}
