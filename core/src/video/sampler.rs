//! The frame sampler: frames of a recording at a fixed rate inside a window, each with its offset
//! from the start of the recording, paying as little decoding as the codec allows.
//!
//! H.264 can only be decoded from a keyframe, so the sampler plans its reads:
//! - it indexes the recording's keyframes first (a demux-only pass, no decoding);
//! - a sample that falls on a keyframe is read from a second capture whose decoder skips every
//!   non-key frame (FFmpeg's `skip_frame = nonkey`), so it costs one decode;
//! - any other sample is reached either by decoding forward from where the main capture is, or by
//!   seeking, whichever decodes fewer frames. Frames on the way are grabbed (decoded) but never
//!   converted to BGR; only the sampled ones are.
//! - in keyframe-aligned mode (the requested interval is at least the keyframe interval, or the
//!   caller allows snapping) every sample is snapped to its nearest keyframe and only keyframes
//!   are decoded.
//! - a sample inside a *quiet* group of pictures (GOP) is not decoded at all when the caller
//!   allows stand-ins ([`SamplerOptions::quiet_threshold`]): its packets are as small as the
//!   recording's quietest (nothing moved: inter frames of a still scene are nearly empty), and the
//!   GOP's two keyframes look the same to the motion gate's measure. It is delivered as the GOP's
//!   first keyframe, which it cannot differ from by more than the encoder's noise. See
//!   [`quiet_gops`] for what counts as quiet and where that can be wrong.
//!
//! OpenCV's FFmpeg backend takes decoder options only from the `OPENCV_FFMPEG_CAPTURE_OPTIONS`
//! environment variable, read when a capture is opened. Every capture here is opened under one
//! process-wide lock, and the variable is set only inside it (see [`open_capture`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};
use tokio::sync::mpsc;

/// The offsets (ms from the start of the recording) sampled at `fps` in `[from_ms, to_ms)`: a
/// grid anchored at 0 (0, 1000/fps, …), so overlapping windows sample the same frames. The
/// sampler plans exactly these (up to the file's last frame); estimates count them.
pub fn grid_offsets(from_ms: i64, to_ms: i64, fps: f64) -> impl Iterator<Item = i64> {
    let step_ms = 1000.0 / fps;
    let first = (from_ms.max(0) as f64 / step_ms).ceil() as i64;
    (first..)
        .map(move |k| (k as f64 * step_ms).round() as i64)
        .take_while(move |&offset| offset < to_ms)
}

/// A sample that could not be read. `Missing`, `Corrupt` and `Truncated` are permanent: retrying
/// the same file cannot succeed.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The file does not exist or cannot be read.
    #[error("recording {path} is missing: {reason}")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// OpenCV cannot open or decode the file.
    #[error("recording {path} cannot be decoded: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// OpenCV's reason.
        reason: String,
    },
    /// Decoding stopped before the end the container announced.
    #[error(
        "recording {path} is truncated: decoding stopped at frame {at_frame} of {expected_frames}"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The first frame that could not be read.
        at_frame: i64,
        /// Frames the container announced.
        expected_frames: i64,
    },
    /// OpenCV failed in a way that says nothing about the file (out of memory…).
    #[error("OpenCV failed on {path}: {source}")]
    OpenCv {
        /// The file.
        path: PathBuf,
        /// OpenCV's error.
        source: opencv::Error,
    },
}

impl SampleError {
    /// Whether retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::OpenCv { .. })
    }
}

/// How to sample.
#[derive(Debug, Clone, Copy)]
pub struct SamplerOptions {
    /// Samples per second of video.
    pub fps: f64,
    /// Allow snapping samples to the nearest keyframe (cheapest; timestamps move by up to half a
    /// keyframe interval).
    pub snap_to_keyframes: bool,
    /// Stand-ins for samples in quiet GOPs: when above 0, a sample inside a GOP whose packets
    /// say nothing moved, and whose two keyframes differ by less than this many grey levels in
    /// every block of the motion gate's grid, is delivered as the GOP's first keyframe without
    /// decoding the GOP (its offset stays the sample's). 0 decodes every sample.
    pub quiet_threshold: f64,
}

/// One sampled frame.
pub struct SampledFrame {
    /// Index of the frame in the recording (presentation order).
    pub frame_index: i64,
    /// Offset of the frame from the start of the recording, in milliseconds.
    pub offset_ms: i64,
    /// The picture, BGR.
    pub image: Mat,
}

/// What the sampler did, for benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SamplerStats {
    /// Frames decoded without conversion while moving to a sample.
    pub grabbed: u64,
    /// Seeks of the main capture.
    pub seeks: u64,
    /// Samples read from the keyframe-only capture.
    pub keyframe_reads: u64,
    /// Samples in quiet GOPs delivered as their GOP's first keyframe, undecoded.
    pub stand_ins: u64,
    /// Samples delivered.
    pub samples: u64,
    /// Decoding captures opened (the keyframe-only one again for each step back, the main one
    /// again after a quiet stretch).
    pub decoders: u64,
}

/// Serialises capture opening with the environment variable that carries FFmpeg options.
static OPEN_LOCK: Mutex<()> = Mutex::new(());

const OPTIONS_VAR: &str = "OPENCV_FFMPEG_CAPTURE_OPTIONS";

/// Opens a capture; `extra` is a FFmpeg option string for this capture only (e.g.
/// `avdiscard;nonkey`), `params` OpenCV's open parameters.
fn open_capture(path: &Path, extra: Option<&str>, params: &[i32]) -> opencv::Result<VideoCapture> {
    let _guard = OPEN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let previous = std::env::var(OPTIONS_VAR).ok();
    if let Some(extra) = extra {
        // OpenCV's own default when the variable is unset, plus ours.
        let value = match &previous {
            Some(p) => format!("{p}|{extra}"),
            None => format!("rtsp_flags;prefer_tcp|{extra}"),
        };
        set_env(OPTIONS_VAR, Some(&value));
    }
    let capture = VideoCapture::from_file_with_params(
        path.to_string_lossy().as_ref(),
        videoio::CAP_FFMPEG,
        &Vector::from_slice(params),
    );
    if extra.is_some() {
        set_env(OPTIONS_VAR, previous.as_deref());
    }
    capture
}

/// Sets or removes an environment variable.
#[allow(unsafe_code)]
fn set_env(name: &str, value: Option<&str>) {
    // SAFETY: the only C code in this process that reads this variable is OpenCV's capture
    // `open`, and every open runs under `OPEN_LOCK`, held by our caller. Rust code reads the
    // environment through `std::env`, which synchronises with `set_var`/`remove_var`.
    unsafe {
        match value {
            Some(v) => std::env::set_var(name, v),
            None => std::env::remove_var(name),
        }
    }
}

/// A recording opened for sampling. Blocking: run it on a blocking thread.
///
/// It decodes through two FFmpeg captures, each opened when a sample first needs it: the main one,
/// which decodes every frame, for samples between keyframes, and one that decodes only keyframes,
/// for keyframe samples and the two ends of quiet GOPs. A decoding capture costs 26–31 MB
/// (FFmpeg's frame-threaded decoder and its frame pool), so a recording whose samples are all
/// keyframes or stand-ins never opens the main one, and the main one is closed again when no
/// sample in the next two GOPs needs it.
pub struct Sampler {
    path: PathBuf,
    main: Option<VideoCapture>,
    keys_only: Option<VideoCapture>,
    video_fps: f64,
    frame_count: i64,
    keyframes: Vec<i64>,
    /// Where the packets stop when the file is shorter than its container says.
    truncated_at: Option<i64>,
    /// Frame indexes to deliver, ascending.
    targets: std::collections::VecDeque<i64>,
    /// Index of the next frame the main capture returns.
    main_next: i64,
    /// How far ahead (frames, two usual GOPs) a sample keeps the main capture open.
    main_horizon: i64,
    /// Index of the last frame the keyframe capture returned.
    keys_last: i64,
    /// Frames the keyframe capture has returned since it was opened.
    keys_read: usize,
    /// Per GOP (keyframe `i` to keyframe `i + 1`): whether its packets say nothing moved.
    quiet: Vec<bool>,
    quiet_threshold: f64,
    /// The last keyframes decoded (index, BGR picture), at most two: a stand-in needs both ends
    /// of its GOP, and the next sample is often the second.
    held: Vec<(i64, Mat)>,
    /// The last GOP whose two keyframes were compared, and whether they looked the same (the
    /// samples of one GOP share the comparison).
    compared: Option<(usize, bool)>,
    stats: SamplerStats,
}

impl Sampler {
    /// Opens `path` and plans the samples whose offsets fall in `[from_ms, to_ms)`. Offsets are on
    /// a grid anchored at the start of the recording (0, 1000/fps, …) so two searches over
    /// overlapping windows sample the same frames (and share cached analyses).
    ///
    /// # Errors
    /// [`SampleError::Missing`] or [`SampleError::Corrupt`] when the file cannot be opened.
    pub fn open(
        path: &Path,
        from_ms: i64,
        to_ms: i64,
        options: SamplerOptions,
    ) -> Result<Self, SampleError> {
        let Opened {
            fps: video_fps,
            announced: frame_count,
            keyframes,
            packets,
            gop_bytes,
            key_bytes,
        } = open_indexed(path)?;
        if frame_count <= 0 {
            return Err(corrupt(path, "the container announces no frames"));
        }
        let (targets, truncated_at) = plan(
            video_fps,
            frame_count,
            &keyframes,
            packets,
            from_ms,
            to_ms,
            options,
        );

        let main_horizon = 2 * median_interval(&keyframes).unwrap_or(0);
        let quiet = if options.quiet_threshold > 0.0 {
            quiet_gops(&keyframes, &gop_bytes, &key_bytes)
        } else {
            Vec::new()
        };
        Ok(Self {
            path: path.to_owned(),
            main: None,
            keys_only: None,
            video_fps,
            frame_count,
            keyframes,
            truncated_at,
            targets: targets.into(),
            main_next: 0,
            main_horizon,
            keys_last: -1,
            keys_read: 0,
            quiet,
            quiet_threshold: options.quiet_threshold,
            held: Vec::new(),
            compared: None,
            stats: SamplerStats::default(),
        })
    }

    /// Frames per second of the video.
    pub fn video_fps(&self) -> f64 {
        self.video_fps
    }

    /// Frames the container announces.
    pub fn frame_count(&self) -> i64 {
        self.frame_count
    }

    /// Indexes of the keyframes.
    pub fn keyframes(&self) -> &[i64] {
        &self.keyframes
    }

    /// Samples still to deliver.
    pub fn remaining(&self) -> usize {
        self.targets.len()
    }

    /// What the sampler has done so far.
    pub fn stats(&self) -> SamplerStats {
        self.stats
    }

    /// The next sample, or `None` at the end.
    ///
    /// # Errors
    /// [`SampleError::Truncated`] when the file ends before a planned sample.
    pub fn next_frame(&mut self) -> Result<Option<SampledFrame>, SampleError> {
        let Some(target) = self.targets.pop_front() else {
            return Ok(None);
        };
        if let Some(at) = self.truncated_at.filter(|&at| target >= at) {
            self.targets.clear();
            return Err(self.truncated(at));
        }
        let frame = if self.keyframes.binary_search(&target).is_ok() {
            self.read_keyframe(target)?
        } else if let Some(frame) = self.stand_in(target)? {
            frame
        } else {
            self.read_main(target)?
        };
        self.stats.samples += 1;
        self.release_idle_main();
        Ok(Some(frame))
    }

    /// Closes the main capture, and gives back its decoder's memory, when no sample in the next
    /// two GOPs is one it would decode (a sample between keyframes, outside a quiet GOP): the
    /// next one it would decode is then reached by a seek, which a capture opened again does as
    /// well. So the main capture lives through a stretch where something moves, not through the
    /// quiet rest of the recording after it.
    fn release_idle_main(&mut self) {
        if self.main.is_none() {
            return;
        }
        let horizon = self.main_next + self.main_horizon;
        let decodes = |target: i64| match self.keyframes.binary_search(&target) {
            Ok(_) => false,
            Err(0) => true,
            Err(i) => !self.quiet.get(i - 1).copied().unwrap_or(false),
        };
        if !self
            .targets
            .iter()
            .take_while(|&&target| target <= horizon)
            .any(|&target| decodes(target))
        {
            self.main = None;
        }
    }

    fn opencv_err(&self) -> impl Fn(opencv::Error) -> SampleError + '_ {
        |source| SampleError::OpenCv {
            path: self.path.clone(),
            source,
        }
    }

    fn truncated(&self, at_frame: i64) -> SampleError {
        SampleError::Truncated {
            path: self.path.clone(),
            at_frame,
            expected_frames: self.frame_count,
        }
    }

    fn index_of(&self, capture: &VideoCapture) -> opencv::Result<i64> {
        let ms = capture.get(videoio::CAP_PROP_POS_MSEC)?;
        Ok((ms * self.video_fps / 1000.0).round() as i64)
    }

    fn read_keyframe(&mut self, target: i64) -> Result<SampledFrame, SampleError> {
        let (index, image) = self.keyframe(target)?;
        self.stats.keyframe_reads += 1;
        Ok(self.sample(index, image))
    }

    /// The first keyframe at or after `target`, from the keyframes held or the keyframe-only
    /// capture (which is reopened to go back).
    fn keyframe(&mut self, target: i64) -> Result<(i64, Mat), SampleError> {
        if let Some((index, image)) = self.held.iter().find(|(i, _)| *i == target) {
            return Ok((*index, image.clone()));
        }
        if self.keys_only.is_none() || self.keys_last >= target {
            // The old capture goes before the new one opens: never two decoders of one kind.
            self.keys_only = None;
            self.keys_only = Some(open_decoder(&self.path, Some("avdiscard;nonkey"))?);
            self.stats.decoders += 1;
            self.keys_last = -1;
            self.keys_read = 0;
        }
        loop {
            let grabbed = self
                .keys_only
                .as_mut()
                .map(|c| c.grab())
                .transpose()
                .map_err(self.opencv_err())?
                .unwrap_or(false);
            if !grabbed {
                return Err(self.truncated(target));
            }
            // This capture returns exactly the keyframes, in order: the n-th frame it returns is
            // the n-th keyframe. (Its timestamps cannot be trusted: OpenCV takes a frame whose pts
            // is 0 to have none and reports the last demuxed packet's time instead.)
            let Some(&index) = self.keyframes.get(self.keys_read) else {
                return Err(self.truncated(target));
            };
            self.keys_read += 1;
            self.keys_last = index;
            if index >= target {
                break;
            }
        }
        let mut image = Mat::default();
        let capture = self.keys_only.as_mut().expect("opened above");
        let ok = capture.retrieve(&mut image, 0);
        let ok = ok.map_err(|source| SampleError::OpenCv {
            path: self.path.clone(),
            source,
        })?;
        if !ok || image.empty() {
            return Err(self.truncated(target));
        }
        if self.held.len() == 2 {
            self.held.remove(0);
        }
        self.held.push((self.keys_last, image.clone()));
        Ok((self.keys_last, image))
    }

    /// `target` delivered as the first keyframe of its GOP, when the GOP is quiet and its two
    /// keyframes look the same; `None` when it must be decoded.
    fn stand_in(&mut self, target: i64) -> Result<Option<SampledFrame>, SampleError> {
        let gop = match self.keyframes.binary_search(&target) {
            Ok(_) | Err(0) => return Ok(None),
            Err(i) => i - 1,
        };
        if !self.quiet.get(gop).copied().unwrap_or(false) {
            return Ok(None);
        }
        let (first, second) = (self.keyframes[gop], self.keyframes[gop + 1]);
        if self.truncated_at.is_some_and(|at| second >= at) {
            return Ok(None);
        }
        let same = match self.compared {
            Some((compared, same)) if compared == gop => same,
            _ => {
                let (_, start) = self.keyframe(first)?;
                let (_, end) = self.keyframe(second)?;
                let change = crate::video::gate::largest_block_change(&start, &end)
                    .map_err(self.opencv_err())?;
                let same = change < self.quiet_threshold;
                self.compared = Some((gop, same));
                same
            }
        };
        if !same {
            return Ok(None);
        }
        let (_, start) = self.keyframe(first)?;
        self.stats.stand_ins += 1;
        Ok(Some(self.sample(target, start)))
    }

    /// `target` decoded by the main capture, opened now if this is its first sample.
    fn read_main(&mut self, target: i64) -> Result<SampledFrame, SampleError> {
        let mut main = match self.main.take() {
            Some(capture) => capture,
            None => {
                let capture = open_decoder(&self.path, None)?;
                self.stats.decoders += 1;
                self.main_next = 0;
                capture
            }
        };
        // On an error the capture is dropped with this sample: the next one opens it again.
        let frame = self.decode(&mut main, target)?;
        self.main = Some(main);
        Ok(frame)
    }

    fn decode(
        &mut self,
        main: &mut VideoCapture,
        target: i64,
    ) -> Result<SampledFrame, SampleError> {
        // OpenCV's seek lands on the last keyframe at or before `target - 16` and decodes forward.
        let landing = last_at_or_before(&self.keyframes, target - 16).unwrap_or(0);
        let forward_cost = if self.main_next <= target {
            target - self.main_next
        } else {
            i64::MAX
        };
        if target - landing < forward_cost {
            let ok = main
                .set(videoio::CAP_PROP_POS_FRAMES, target as f64)
                .map_err(self.opencv_err())?;
            if !ok {
                return Err(self.truncated(target));
            }
            self.stats.seeks += 1;
            self.main_next = target;
        }
        while self.main_next < target {
            if !main.grab().map_err(self.opencv_err())? {
                return Err(self.truncated(self.main_next));
            }
            self.stats.grabbed += 1;
            self.main_next += 1;
        }
        if !main.grab().map_err(self.opencv_err())? {
            return Err(self.truncated(target));
        }
        self.main_next = target + 1;
        let index = self.index_of(main).map_err(self.opencv_err())?;
        let mut image = Mat::default();
        let ok = main.retrieve(&mut image, 0).map_err(self.opencv_err())?;
        if !ok || image.empty() {
            return Err(self.truncated(target));
        }
        Ok(self.sample(index, image))
    }

    fn sample(&self, frame_index: i64, image: Mat) -> SampledFrame {
        SampledFrame {
            frame_index,
            offset_ms: offset_of(frame_index, self.video_fps),
            image,
        }
    }
}

/// The frames a sampler delivers for `[from_ms, to_ms)`, ascending, and where the packets stop
/// when the file is cut short.
fn plan(
    video_fps: f64,
    frame_count: i64,
    keyframes: &[i64],
    packets: i64,
    from_ms: i64,
    to_ms: i64,
    options: SamplerOptions,
) -> (Vec<i64>, Option<i64>) {
    // A file cut short still announces its full length; its packets stop early. Allow half a
    // second of slack for containers whose frame count is estimated from the duration.
    let truncated_at =
        (packets > 0 && (frame_count - packets) as f64 > video_fps / 2.0).then_some(packets);
    let last_frame = match (truncated_at, packets) {
        (Some(_), _) | (None, 0) => frame_count,
        (None, packets) => packets.min(frame_count),
    };

    let step_frames = video_fps / options.fps;
    let key_interval = median_interval(keyframes);
    let snap =
        options.snap_to_keyframes || key_interval.is_some_and(|k| step_frames >= k as f64 - 0.5);
    let mut targets = BTreeSet::new();
    for offset_ms in grid_offsets(from_ms, to_ms, options.fps) {
        let frame = ((offset_ms as f64) * video_fps / 1000.0).round() as i64;
        if frame >= last_frame {
            break;
        }
        let frame = if snap && !keyframes.is_empty() && truncated_at.is_none_or(|t| frame < t) {
            nearest(keyframes, frame)
        } else {
            frame
        };
        targets.insert(frame);
    }
    (targets.into_iter().collect(), truncated_at)
}

/// The offsets (ms) of the frames a [`Sampler`] opened with the same arguments would deliver,
/// read from the container and its packet index without decoding a frame: what a task needs to
/// know whether the frame-analysis cache already covers it. `None` when the sampler would fail
/// (the file is missing, unreadable or cut short inside the window): sampling reports why.
/// Blocking.
pub fn planned_offsets(
    path: &Path,
    from_ms: i64,
    to_ms: i64,
    options: SamplerOptions,
) -> Option<Vec<i64>> {
    let opened = open_indexed(path).ok()?;
    if opened.announced <= 0 {
        return None;
    }
    let (targets, truncated_at) = plan(
        opened.fps,
        opened.announced,
        &opened.keyframes,
        opened.packets,
        from_ms,
        to_ms,
        options,
    );
    if truncated_at.is_some_and(|at| targets.last().is_some_and(|&last| last >= at)) {
        return None;
    }
    Some(
        targets
            .into_iter()
            .map(|frame| offset_of(frame, opened.fps))
            .collect(),
    )
}

/// The offset (ms) of a frame index: the same rounding as every delivered [`SampledFrame`].
fn offset_of(frame_index: i64, video_fps: f64) -> i64 {
    (frame_index as f64 * 1000.0 / video_fps).round() as i64
}

/// What [`probe`] reads from a recording.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoInfo {
    /// Frames per second.
    pub fps: f64,
    /// Frames that can actually be decoded (the packets present, for a file cut short).
    pub frames: i64,
    /// Playing time of those frames.
    pub duration: std::time::Duration,
}

/// Reads a recording's frame rate and real length (by demuxing its packets), and checks that
/// FFmpeg has a decoder for it, as index sync does for each new segment. Blocking.
///
/// # Errors
/// [`SampleError::Missing`] or [`SampleError::Corrupt`] when the file cannot be read as a video.
pub fn probe(path: &Path) -> Result<VideoInfo, SampleError> {
    let opened = open_indexed(path)?;
    // A recording no search could decode is refused here, once, rather than by every search.
    drop(open_decoder(path, None)?);
    let frames = match (opened.packets, opened.announced) {
        (0, a) => a,
        (p, a) if a > 0 => p.min(a),
        (p, _) => p,
    };
    if frames <= 0 {
        return Err(corrupt(path, "it holds no video frames"));
    }
    Ok(VideoInfo {
        fps: opened.fps,
        frames,
        duration: std::time::Duration::from_secs_f64(frames as f64 / opened.fps),
    })
}

/// What a recording's container announces and its packets' index, read without decoding.
struct Opened {
    fps: f64,
    /// Frames the container announces (0 or less when it does not know).
    announced: i64,
    keyframes: Vec<i64>,
    packets: i64,
    /// Bytes of the inter (non-key) packets of each GOP, in keyframe order: `gop_bytes[i]` is
    /// what follows keyframe `i` up to the next keyframe (the last one up to the end).
    gop_bytes: Vec<u64>,
    /// Bytes of each keyframe's packet.
    key_bytes: Vec<u64>,
}

fn corrupt(path: &Path, reason: &str) -> SampleError {
    SampleError::Corrupt {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

const CANNOT_OPEN: &str = "OpenCV's FFmpeg backend cannot open it (not a video, an unsupported codec, or a damaged container)";

/// Reads `path`'s frame rate and frame count and indexes its packets, in one demux-only pass
/// through OpenCV's FFmpeg backend: no decoder is opened (so no frame is decoded and none of a
/// decoder's memory is taken).
fn open_indexed(path: &Path) -> Result<Opened, SampleError> {
    std::fs::File::open(path).map_err(|e| SampleError::Missing {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let opencv = |source| SampleError::OpenCv {
        path: path.to_owned(),
        source,
    };
    // Raw mode: `grab` reads the next packet, `retrieve` returns its bytes.
    let mut raw = open_capture(path, None, &[videoio::CAP_PROP_FORMAT, -1]).map_err(opencv)?;
    if !raw.is_opened().map_err(opencv)? {
        return Err(corrupt(path, CANNOT_OPEN));
    }
    let fps = raw.get(videoio::CAP_PROP_FPS).map_err(opencv)?;
    let announced = raw.get(videoio::CAP_PROP_FRAME_COUNT).map_err(opencv)? as i64;
    if !(fps.is_finite() && fps > 0.0) {
        return Err(corrupt(path, "the container announces no frame rate"));
    }
    let mut opened = Opened {
        fps,
        announced,
        keyframes: Vec::new(),
        packets: 0,
        gop_bytes: Vec::new(),
        key_bytes: Vec::new(),
    };
    // Packets in decode order; with closed GOPs a keyframe's index is the same in presentation
    // order.
    let mut packet = Mat::default();
    while raw.grab().map_err(opencv)? {
        let bytes = if raw.retrieve(&mut packet, 0).map_err(opencv)? {
            packet.total() as u64 * packet.elem_size().map_err(opencv)? as u64
        } else {
            0
        };
        if raw
            .get(videoio::CAP_PROP_LRF_HAS_KEY_FRAME)
            .map_err(opencv)?
            > 0.0
        {
            opened.keyframes.push(opened.packets);
            opened.key_bytes.push(bytes);
            opened.gop_bytes.push(0);
        } else if let Some(gop) = opened.gop_bytes.last_mut() {
            *gop += bytes;
        }
        opened.packets += 1;
    }
    Ok(opened)
}

/// A capture that decodes `path` (with FFmpeg options `extra`, see [`open_capture`]).
fn open_decoder(path: &Path, extra: Option<&str>) -> Result<VideoCapture, SampleError> {
    let opencv = |source| SampleError::OpenCv {
        path: path.to_owned(),
        source,
    };
    let capture = open_capture(path, extra, &[]).map_err(opencv)?;
    if !capture.is_opened().map_err(opencv)? {
        return Err(corrupt(path, CANNOT_OPEN));
    }
    Ok(capture)
}

/// Which GOPs are quiet: nothing in them moved, by their packets alone. `keyframes` are the
/// keyframes' frame indexes, `gop_bytes[i]` the size of GOP `i`'s inter packets (keyframe `i` to
/// keyframe `i + 1`; the last GOP, with no keyframe after it, is never quiet), `key_bytes` the
/// keyframes' sizes.
///
/// A GOP is quiet when its inter packets weigh at most 1.5 times the recording's quiet floor
/// (the tenth percentile of its complete GOPs; at least four are needed), and either
/// - the recording has busier GOPs, at least twice the floor: its encoder spends bytes on motion
///   (variable bit rate), so a GOP at the floor is a still one; or
/// - its inter frames average at most 2 % of a keyframe: a still scene whatever the rest of the
///   recording does (an encoder that pads to a constant bit rate never gets that small).
///
/// Where it can be wrong: a constant-bit-rate stream with a busy GOP somewhere looks variable;
/// its other GOPs then pass on bytes alone, and only the keyframe check guards them, so a vehicle
/// that enters and leaves the picture between two keyframes (2 s apart with a camera's usual
/// settings) could be stood in for. The caller's threshold should be the motion gate's, which
/// makes the same call on decoded frames.
pub fn quiet_gops(keyframes: &[i64], gop_bytes: &[u64], key_bytes: &[u64]) -> Vec<bool> {
    let complete = &gop_bytes[..gop_bytes.len().saturating_sub(1)];
    if complete.len() < 4 || keyframes.len() != gop_bytes.len() {
        return vec![false; gop_bytes.len()];
    }
    let mut sorted = complete.to_vec();
    sorted.sort_unstable();
    let floor = sorted[sorted.len() / 10];
    let variable = sorted[sorted.len() - 1] >= 2 * floor.max(1);
    let mut keys = key_bytes.to_vec();
    keys.sort_unstable();
    let key = keys.get(keys.len() / 2).copied().unwrap_or(0) as f64;
    (0..gop_bytes.len())
        .map(|i| {
            if i + 1 >= gop_bytes.len() || gop_bytes[i] as f64 > 1.5 * floor as f64 {
                return false;
            }
            let inter_frames = (keyframes[i + 1] - keyframes[i] - 1).max(1) as f64;
            variable || gop_bytes[i] as f64 / inter_frames <= 0.02 * key
        })
        .collect()
}

fn median_interval(keyframes: &[i64]) -> Option<i64> {
    let mut gaps: Vec<i64> = keyframes.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_unstable();
    Some(gaps[gaps.len() / 2])
}

fn nearest(sorted: &[i64], value: i64) -> i64 {
    match sorted.binary_search(&value) {
        Ok(i) => sorted[i],
        Err(0) => sorted[0],
        Err(i) if i == sorted.len() => sorted[i - 1],
        Err(i) => {
            let (below, above) = (sorted[i - 1], sorted[i]);
            if value - below <= above - value {
                below
            } else {
                above
            }
        }
    }
}

fn last_at_or_before(sorted: &[i64], value: i64) -> Option<i64> {
    match sorted.binary_search(&value) {
        Ok(i) => Some(sorted[i]),
        Err(0) => None,
        Err(i) => Some(sorted[i - 1]),
    }
}

/// Runs a sampler on a blocking thread and delivers its frames through a bounded channel (two
/// frames of look-ahead bound memory). Dropping the receiver stops the sampler at its next frame.
pub fn spawn_sampler(
    path: PathBuf,
    from_ms: i64,
    to_ms: i64,
    options: SamplerOptions,
) -> mpsc::Receiver<Result<SampledFrame, SampleError>> {
    let (tx, rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let mut sampler = match Sampler::open(&path, from_ms, to_ms, options) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            match sampler.next_frame() {
                Ok(Some(frame)) => {
                    if tx.blocking_send(Ok(frame)).is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}
