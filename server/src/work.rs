//! Where CPU-heavy work runs, how it is cancelled, and how much decoded data may be in flight.
//!
//! - [`heavy`]: a lane of blocking threads, one permit per core, for gunzip, parsing, merging
//!   and encoding of anything large. Work waits for a permit without holding an async worker,
//!   so health checks and small uploads (decoded inline, see [`INLINE_BODY_BYTES`]) never
//!   queue behind heavy queries.
//! - [`Cancel`]: a request's deadline and a flag its caller sets when it stops waiting; long
//!   loops check it between pieces of work and stop with [`Cancelled`].
//! - [`InflightBudget`]: the bytes of request bodies and their decompressed copies held by
//!   requests being served, across all of them; beyond it uploads are refused (503), the last
//!   resort against memory exhaustion.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::Semaphore;

/// The default in-flight budget (`--max-inflight-bytes`): 1 GiB, far above what agents at
/// normal rates hold at once, so that it only ever refuses a flood.
pub const DEFAULT_INFLIGHT_BYTES: u64 = 1 << 30;

/// Request bodies under this size are decoded on the async worker that received them: that
/// costs less than a hand-off, and keeps small agent uploads out of the heavy lane's queue.
pub const INLINE_BODY_BYTES: usize = 64 << 10;

/// A pool of blocking threads for CPU-heavy work, at most one task per permit at a time.
#[derive(Debug)]
pub struct Lane {
    permits: Arc<Semaphore>,
    size: usize,
}

impl Lane {
    /// A lane running at most `size` (at least one) tasks at once.
    pub fn new(size: usize) -> Lane {
        let size = size.max(1);
        Lane { permits: Arc::new(Semaphore::new(size)), size }
    }

    /// How many tasks run at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `work` on a blocking thread once a permit is free; waiting holds no thread. A
    /// panic in `work` resumes in the caller, where the panic handler answers it.
    pub async fn run<R: Send + 'static>(&self, work: impl FnOnce() -> R + Send + 'static) -> R {
        // The semaphore is never closed.
        let permit = self.permits.clone().acquire_owned().await.expect("the heavy lane is never closed");
        let task = tokio::task::spawn_blocking(move || {
            let result = work();
            drop(permit);
            result
        });
        match task.await {
            Ok(result) => result,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Blocking tasks are only cancelled when the runtime shuts down.
                Err(e) => panic!("heavy work did not finish: {e}"),
            },
        }
    }

    /// Runs `future` to completion on a blocking thread of the current runtime, as [`Lane::run`]
    /// does: for handlers whose CPU work is interleaved with storage reads.
    pub async fn run_future<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = tokio::runtime::Handle::current();
        self.run(move || handle.block_on(future)).await
    }
}

/// The process' heavy lane: one permit per core.
pub fn heavy() -> &'static Lane {
    static HEAVY: OnceLock<Lane> = OnceLock::new();
    HEAVY.get_or_init(|| Lane::new(std::thread::available_parallelism().map_or(1, |n| n.get())))
}

/// The work was stopped before it finished: its request ran out of time or was abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request ran out of time and its work was stopped")]
pub struct Cancelled;

/// When a piece of work should stop: a deadline, and a flag for callers that stop waiting.
#[derive(Debug, Clone)]
pub struct Cancel {
    deadline: Option<Instant>,
    flag: Arc<AtomicBool>,
}

impl Cancel {
    /// Work that runs to its end.
    pub fn never() -> Cancel {
        Cancel { deadline: None, flag: Arc::new(AtomicBool::new(false)) }
    }

    /// Work that stops at `deadline`, or earlier when [`Cancel::cancel`] is called.
    pub fn at(deadline: Instant) -> Cancel {
        Cancel { deadline: Some(deadline), flag: Arc::new(AtomicBool::new(false)) }
    }

    /// Work that stops `timeout` from now (never, for a timeout past what the clock holds), or
    /// earlier when [`Cancel::cancel`] is called.
    pub fn after(timeout: std::time::Duration) -> Cancel {
        Cancel { deadline: Instant::now().checked_add(timeout), flag: Arc::new(AtomicBool::new(false)) }
    }

    /// The same work, stopping no later than `timeout` from now: a client's own deadline
    /// (Connect's `Connect-Timeout-Ms`) on top of the server's. Cancelling either cancels both.
    pub fn within(&self, timeout: std::time::Duration) -> Cancel {
        let client = Instant::now().checked_add(timeout);
        let deadline = match (self.deadline, client) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Cancel { deadline, flag: self.flag.clone() }
    }

    /// Stops the work at its next check (every clone sees it).
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// A guard that cancels when dropped unless disarmed: held by the future that waits for
    /// the work, so that a caller who stops waiting also stops the work.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(Some(self.clone()))
    }

    /// `Err` once the deadline has passed or the work was cancelled.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.flag.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.flag.store(true, Ordering::Relaxed);
            return Err(Cancelled);
        }
        Ok(())
    }

    /// True once [`Cancel::check`] would fail.
    pub fn is_cancelled(&self) -> bool {
        self.check().is_err()
    }
}

/// Cancels its [`Cancel`] when dropped, unless [`CancelOnDrop::disarm`]ed first.
#[derive(Debug)]
pub struct CancelOnDrop(Option<Cancel>);

impl CancelOnDrop {
    /// The waiting ended normally: leave the work alone.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            cancel.cancel();
        }
    }
}

/// A budget of bytes held by requests in flight (bodies and their decompressed copies),
/// shared by all requests. One request is always admitted when nothing else holds any, so a
/// body larger than the whole budget is slow rather than refused forever.
#[derive(Debug)]
pub struct InflightBudget {
    limit: u64,
    in_flight: AtomicU64,
    refused: AtomicU64,
}

impl InflightBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<InflightBudget> {
        Arc::new(InflightBudget { limit, in_flight: AtomicU64::new(0), refused: AtomicU64::new(0) })
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held now (a gauge for `/metrics`).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests refused for the budget since start (a counter for `/metrics`).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Holds `bytes` until the reservation is dropped, or `None` (counted as refused) when they
    /// do not fit beside what is already held.
    pub fn try_reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let admitted = self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            let total = held.saturating_add(bytes);
            (held == 0 || total <= self.limit).then_some(total)
        });
        match admitted {
            Ok(_) => Some(Reservation { budget: self.clone(), bytes }),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// Bytes held in an [`InflightBudget`], given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<InflightBudget>,
    bytes: u64,
}

impl Reservation {
    /// Holds `extra` more bytes for the same request, on the terms of
    /// [`InflightBudget::try_reserve`]: admitted when they fit, or when this request is the
    /// only one holding bytes. False (and counted as refused) otherwise.
    pub fn try_grow(&mut self, extra: u64) -> bool {
        let (budget, own) = (&self.budget, self.bytes);
        let admitted = budget.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            let total = held.saturating_add(extra);
            (held == own || total <= budget.limit).then_some(total)
        });
        if admitted.is_err() {
            budget.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.bytes += extra;
        true
    }
}

/// One request's [`Reservation`], shared between the lane that admitted the request and the
/// decoder that finds more bytes inside it (gzipped profiles inside a push or a multipart
/// body): what the lane could not see from outside is held as it is decompressed.
#[derive(Debug, Clone)]
pub struct UploadHold(Arc<std::sync::Mutex<HeldUpload>>);

#[derive(Debug)]
struct HeldUpload {
    reservation: Reservation,
    /// Decompressed bytes already held for this request (the lane's estimate of the body's
    /// outer gzip layer, then whatever the decoder added).
    decompressed: u64,
}

impl UploadHold {
    /// A hold over `reservation`, of which `prepaid` bytes stand for decompressed output.
    pub fn new(reservation: Reservation, prepaid: u64) -> UploadHold {
        UploadHold(Arc::new(std::sync::Mutex::new(HeldUpload { reservation, decompressed: prepaid })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HeldUpload> {
        // A poisoned lock means a decoder panicked mid-grow; the counts themselves are intact.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The request has decompressed `total` bytes so far: holds what is not held yet. False
    /// (counted as refused) when that does not fit the budget.
    pub fn cover_decompressed(&self, total: u64) -> bool {
        let mut held = self.lock();
        if total <= held.decompressed {
            return true;
        }
        let extra = total - held.decompressed;
        if !held.reservation.try_grow(extra) {
            return false;
        }
        held.decompressed = total;
        true
    }

    /// Bytes this request holds now.
    #[cfg(test)]
    fn held(&self) -> u64 {
        self.lock().reservation.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.in_flight.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_reservation_grows_while_it_fits_or_is_alone() {
        let budget = InflightBudget::new(100);
        let mut alone = budget.try_reserve(80).expect("fits");
        assert!(alone.try_grow(500), "alone, a request may outgrow the budget");
        assert_eq!(budget.in_flight(), 580);
        drop(alone);
        let mut a = budget.try_reserve(50).expect("fits");
        let b = budget.try_reserve(30).expect("fits");
        assert!(a.try_grow(20), "50 + 30 + 20 fits");
        assert!(!a.try_grow(1), "over the budget with another request in flight");
        assert_eq!(budget.refused(), 1);
        drop((a, b));
        assert_eq!(budget.in_flight(), 0);
    }

    #[test]
    fn the_budget_admits_what_fits_and_one_request_alone() {
        let budget = InflightBudget::new(100);
        let a = budget.try_reserve(60).expect("fits");
        assert!(budget.try_reserve(50).is_none(), "60 + 50 is over 100");
        let b = budget.try_reserve(40).expect("60 + 40 fits");
        assert_eq!(budget.in_flight(), 100);
        assert_eq!(budget.refused(), 1);
        drop((a, b));
        assert_eq!(budget.in_flight(), 0);
        let huge = budget.try_reserve(1_000).expect("alone, a request larger than the budget runs");
        assert!(budget.try_reserve(1).is_none());
        drop(huge);
        assert!(budget.try_reserve(1).is_some());
    }

    #[test]
    fn an_upload_hold_covers_what_its_decoder_decompresses() {
        let budget = InflightBudget::new(1_000);
        let other = budget.try_reserve(100).expect("fits");
        let hold = UploadHold::new(budget.try_reserve(300).expect("fits"), 200);
        assert!(hold.cover_decompressed(150), "within what the lane prepaid");
        assert_eq!(budget.in_flight(), 400);
        assert!(hold.cover_decompressed(700), "500 more fits beside 400");
        assert_eq!((hold.held(), budget.in_flight()), (800, 900));
        assert!(!hold.cover_decompressed(900), "200 more is over the budget with another request in flight");
        assert_eq!(budget.refused(), 1);
        drop(other);
        assert!(hold.cover_decompressed(900), "alone, the request may grow");
        drop(hold);
        assert_eq!(budget.in_flight(), 0, "every byte is given back");
    }

    #[test]
    fn cancels_stop_at_the_deadline_or_when_dropped() {
        assert!(Cancel::never().check().is_ok());
        let past = Cancel::at(Instant::now() - Duration::from_millis(1));
        assert_eq!(past.check(), Err(Cancelled));
        let later = Cancel::at(Instant::now() + Duration::from_secs(3600));
        assert!(later.check().is_ok());
        later.on_drop().disarm();
        assert!(later.check().is_ok(), "a disarmed guard leaves the work alone");
        drop(later.on_drop());
        assert_eq!(later.clone().check(), Err(Cancelled), "a dropped guard cancels every clone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lane_runs_work_off_the_workers_and_resumes_panics() {
        let lane = Lane::new(1);
        let worker = std::thread::current().id();
        let ran_on = lane.run(|| std::thread::current().id()).await;
        assert_ne!(ran_on, worker);
        assert_eq!(lane.run_future(async { 7 }).await, 7);
        let panicked = tokio::spawn(async { Lane::new(1).run(|| -> u32 { panic!("boom") }).await });
        let panic = panicked.await.expect_err("the panic reaches the caller").into_panic();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"boom"));
    }
}
