//! Video: sampling frames out of recordings, the motion gate, JPEG encoding, and generating
//! synthetic recordings with a known ground truth (tests, benchmarks and the demo).
//!
//! All of it is blocking OpenCV work: async callers run it on a blocking thread (see
//! [`sampler::spawn_sampler`]) so the async runtime keeps serving queue heartbeats.

pub mod evidence;
pub mod gate;
pub mod jpeg;
pub mod sampler;
pub mod synth;
