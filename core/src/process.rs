//! Process life: the runtime every binary runs on, and the stop flag raised by SIGTERM/SIGINT
//! that every binary drains on.

/// glibc malloc arenas a process keeps unless `MALLOC_ARENA_MAX` says otherwise. glibc's default
/// (8 per core) lets every decoding and detecting thread grow its own heap. Measured on the
/// end-to-end benchmark (docs/benchmarks.md): two arenas cut the peak RSS by about a third
/// against the default, one by another 20–40 MB against two, at the same speed (small
/// allocations go through each thread's cache without the arena's lock).
pub const MALLOC_ARENAS: i32 = 1;

/// Runs `main` on a multi-threaded Tokio runtime, after capping glibc's malloc arenas to
/// [`MALLOC_ARENAS`] (unless `MALLOC_ARENA_MAX` is set): before the runtime starts any thread, so
/// every thread shares the capped arenas.
///
/// # Panics
/// When the runtime cannot be built (no threads or no epoll in this process).
pub fn run<F: std::future::Future>(main: F) -> F::Output {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        cap_malloc_arenas(MALLOC_ARENAS);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the Tokio runtime")
        .block_on(main)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn cap_malloc_arenas(arenas: i32) {
    // SAFETY: `mallopt` only sets an allocator parameter; it is called before this process starts
    // any other thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn cap_malloc_arenas(_arenas: i32) {}

/// Analyses in flight per worker process by default: one per CPU core this process may use.
/// Decoding and the local detector are CPU-bound, so more in flight only adds memory (each holds
/// its decoders and frames); a remote detector's latency is hidden by raising `WORKER_CONCURRENCY`.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// A flag raised by SIGTERM/SIGINT, for the several tasks that stop on it.
pub fn stop_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(true);
    });
    rx
}

/// Resolves once the flag is raised (or its sender is gone).
pub async fn stopped(mut flag: tokio::sync::watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await;
}

/// Resolves on SIGTERM or SIGINT.
///
/// # Panics
/// When the SIGTERM handler cannot be installed (no signal support in this process).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown signal received; draining");
}
