//! Dedicated threads that run the model, fed by a bounded queue. The model's work is
//! CPU-bound for tens to hundreds of milliseconds a call, so it never runs on the async
//! runtime's threads; a full queue is refused at once rather than waited on.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use super::model::{SentenceModel, Vectors};

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<anyhow::Result<Vectors>>,
}

/// Why a job was not taken.
#[derive(Debug)]
pub enum Refused {
    /// The queue is full; room is expected after about this many seconds.
    Full { retry_after_secs: u64 },
    /// The workers are gone (a worker panicked, or the pool is shutting down).
    Closed,
}

pub struct Pool {
    queue: SyncSender<Job>,
    waiting: Arc<AtomicU64>,
    /// Moving average of the time one job takes, in microseconds.
    job_micros: Arc<AtomicU64>,
    workers: usize,
}

impl Pool {
    /// Starts `workers` threads sharing `model`, with room for `queue` waiting jobs.
    pub fn start(model: Arc<SentenceModel>, workers: usize, queue: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let waiting = Arc::new(AtomicU64::new(0));
        let job_micros = Arc::new(AtomicU64::new(100_000));
        for n in 0..workers.max(1) {
            let (model, rx) = (model.clone(), rx.clone());
            let (waiting, job_micros) = (waiting.clone(), job_micros.clone());
            std::thread::Builder::new()
                .name(format!("embed-{n}"))
                .spawn(move || work(&model, &rx, &waiting, &job_micros))
                .expect("spawning an embedding worker thread");
        }
        Self {
            queue: tx,
            waiting,
            job_micros,
            workers: workers.max(1),
        }
    }

    /// Queues `texts`; the answer arrives on the returned receiver.
    pub fn submit(
        &self,
        texts: Vec<String>,
    ) -> Result<oneshot::Receiver<anyhow::Result<Vectors>>, Refused> {
        let (reply, answer) = oneshot::channel();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        match self.queue.try_send(Job { texts, reply }) {
            Ok(()) => Ok(answer),
            Err(e) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => Refused::Full {
                        retry_after_secs: self.drain_secs(),
                    },
                    TrySendError::Disconnected(_) => Refused::Closed,
                })
            }
        }
    }

    /// About how long the jobs queued now take to run, in whole seconds (at least 1).
    fn drain_secs(&self) -> u64 {
        let queued = self.waiting.load(Ordering::Relaxed);
        let micros = self.job_micros.load(Ordering::Relaxed);
        (queued * micros / self.workers as u64)
            .div_ceil(1_000_000)
            .max(1)
    }
}

fn work(
    model: &SentenceModel,
    rx: &Mutex<Receiver<Job>>,
    waiting: &AtomicU64,
    job_micros: &AtomicU64,
) {
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        waiting.fetch_sub(1, Ordering::Relaxed);
        // A caller that went away (timed out, disconnected) no longer wants the answer.
        if job.reply.is_closed() {
            continue;
        }
        let started = Instant::now();
        let answer = std::panic::catch_unwind(AssertUnwindSafe(|| model.embed(&job.texts)))
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the embedding model panicked")));
        let took = started.elapsed().as_micros().min(u64::MAX as u128) as u64;
        let avg = job_micros.load(Ordering::Relaxed);
        job_micros.store((avg * 7 + took) / 8, Ordering::Relaxed);
        let _ = job.reply.send(answer);
    }
}
