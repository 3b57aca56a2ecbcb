//! Search starts of the cities in the shared database, written together.
//!
//! Under load, many requests reach the insert at once. Each would cost a statement, a commit and a
//! queue round trip of its own. Instead each hands its search to a runner here and waits for the
//! answer. A runner takes every start waiting (up to [`MAX_BATCH`]), writes them with
//! [`searches::create_many_in_shared`] (one commit) and enqueues their jobs with
//! [`JobQueue::push_searches`] (one round trip). A lone request is a batch of one and waits for
//! nothing: batches form only from requests that arrive while a runner is busy.
//!
//! Failure is per search, as before batching:
//! - a batch the database refuses is written again one search at a time, so one bad row (a city
//!   deleted meanwhile, say) fails only its own request;
//! - when the queue refuses a batch, each of its searches is marked failed ("the job queue was
//!   unavailable") and each request answers 503, as a lone start would.
//!
//! A request that goes away while it waits (the client hung up) does not stop its start: the
//! search is written and enqueued whole, never left pending without a job.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use entity::vehicle_search;
use futures::FutureExt;
use sea_orm::DatabaseConnection;
use sentinela_core::jobs::SearchVehicle;
use sentinela_core::queue::JobQueue;
use sentinela_core::repo::searches::{self, NewSearch};
use tokio::sync::{Mutex, mpsc, oneshot};

/// Most searches written in one batch.
pub const MAX_BATCH: usize = 64;

/// Runners on PostgreSQL: batches in progress at once (one enqueues while the next is written).
/// Their inserts take the city's `search_load` rows in the same order, so they never deadlock.
/// On SQLite, which has one writer at a time, one runner: a second would only wait in SQLite's
/// busy handler, whose sleeps of up to 100 ms made the tail latency.
const RUNNERS_POSTGRES: usize = 2;

/// Why a start failed.
#[derive(Debug)]
pub enum StartError {
    /// The database refused the search.
    Db(sea_orm::DbErr),
    /// The search was written but the queue refused its job; the search is marked failed.
    Queue,
    /// The runners have stopped (the process is shutting down), or the batch panicked.
    Stopped,
}

struct Start {
    new: NewSearch,
    reply: oneshot::Sender<Result<vehicle_search::Model, StartError>>,
}

/// The runners' inbox.
#[derive(Clone)]
pub struct Starts {
    inbox: mpsc::Sender<Start>,
}

impl Starts {
    /// Spawns the runners, which write into `db` (the shared database) and enqueue on `queue`.
    /// Must be called within a Tokio runtime.
    pub fn spawn(db: DatabaseConnection, queue: JobQueue) -> Self {
        let runners = match db.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => RUNNERS_POSTGRES,
            _ => 1,
        };
        let (inbox, rx) = mpsc::channel(MAX_BATCH * 8);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..runners {
            tokio::spawn(run(Arc::clone(&rx), db.clone(), queue.clone()));
        }
        Self { inbox }
    }

    /// Writes and enqueues one search, with whichever others are waiting.
    ///
    /// # Errors
    /// See [`StartError`].
    pub async fn start(&self, new: NewSearch) -> Result<vehicle_search::Model, StartError> {
        let (reply, answer) = oneshot::channel();
        self.inbox
            .send(Start { new, reply })
            .await
            .map_err(|_| StartError::Stopped)?;
        answer.await.map_err(|_| StartError::Stopped)?
    }
}

async fn run(rx: Arc<Mutex<mpsc::Receiver<Start>>>, db: DatabaseConnection, queue: JobQueue) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(start) => batch.push(start),
                    Err(_) => break,
                }
            }
            batch
        };
        // A runner outlives a panic in one batch (its requests then answer 503, their reply
        // channels dropped): on SQLite it is the only runner, and without it no search could start.
        if let Err(panic) = AssertUnwindSafe(write(&db, &queue, batch))
            .catch_unwind()
            .await
        {
            let what = crate::error::panic_message(&*panic);
            tracing::error!(panic = %what, "a batch of search starts panicked");
        }
    }
}

/// Writes a batch, enqueues its jobs and answers each request.
async fn write(db: &DatabaseConnection, queue: &JobQueue, batch: Vec<Start>) {
    let (news, replies): (Vec<NewSearch>, Vec<_>) =
        batch.into_iter().map(|s| (s.new, s.reply)).unzip();
    let written: Vec<Result<vehicle_search::Model, sea_orm::DbErr>> =
        match searches::create_many_in_shared(db, &news).await {
            Ok(rows) => rows.into_iter().map(Ok).collect(),
            Err(e) if news.len() == 1 => vec![Err(e)],
            Err(e) => {
                tracing::warn!(error = %e, searches = news.len(), "a batch of search starts was refused; writing them one by one");
                let mut one_by_one = Vec::with_capacity(news.len());
                for new in news {
                    one_by_one.push(searches::create_in_shared(db, new).await);
                }
                one_by_one
            }
        };
    let jobs: Vec<SearchVehicle> = written
        .iter()
        .flatten()
        .map(|search| SearchVehicle {
            search_id: search.id,
            city_id: Some(search.city_id),
        })
        .collect();
    let enqueued = queue.push_searches(jobs).await;
    for (reply, written) in replies.into_iter().zip(written) {
        let answer = match (written, &enqueued) {
            (Ok(search), Ok(())) => Ok(search),
            (Ok(search), Err(e)) => {
                unqueued(db, search.id, e).await;
                Err(StartError::Queue)
            }
            (Err(e), _) => Err(StartError::Db(e)),
        };
        // The request may have gone away; its search is started all the same.
        reply.send(answer).ok();
    }
}

/// Marks a search whose job the queue refused as failed: nothing will ever plan it, so say so on
/// the search rather than leave it pending.
pub(crate) async fn unqueued(db: &DatabaseConnection, search_id: i64, e: &anyhow::Error) {
    searches::fail(db, search_id, "the job queue was unavailable")
        .await
        .ok();
    tracing::error!(search_id, error = %format!("{e:#}"), "failed to enqueue a search");
}
