//! A deterministic executor in virtual time, and the [`Runtime`] herd-service runs on inside it.
//!
//! One thread, one FIFO queue of woken tasks, and timers ordered by (deadline, creation order).
//! [`Exec::run_until`] polls every woken task until none is left, then moves the clock to the
//! earliest timer and fires it: no wall-clock time passes, and the same inputs give the same
//! interleaving of every task, byte for byte. Nothing here reads a clock or draws randomness.

use herd_core::time::Instant;
use herd_service::{AsyncTimer, BoxFuture, Runtime};
use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// Unix time of the virtual epoch (2026-01-01T00:00:00Z), for traces and `created` fields.
pub const EPOCH_UNIX_MS: i64 = 1_767_225_600_000;

struct Task {
    future: Mutex<Option<BoxFuture<'static, ()>>>,
    queued: AtomicBool,
    shared: Arc<Shared>,
    id: u64,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            lock(&self.shared.ready).push_back(self.clone());
        }
    }
}

#[derive(Default)]
struct Timers {
    /// (deadline, sequence) → the waker of whoever waits for it.
    waiting: BTreeMap<(Instant, u64), Waker>,
    next_seq: u64,
}

struct Shared {
    now: Mutex<Instant>,
    ready: Mutex<VecDeque<Arc<Task>>>,
    timers: Mutex<Timers>,
    /// Tasks spawned and not yet finished.
    live: Mutex<BTreeMap<u64, Arc<Task>>>,
    next_task: Mutex<u64>,
    seed: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The executor. Cheap to clone; every clone drives the same tasks and clock.
#[derive(Clone)]
pub struct Exec {
    shared: Arc<Shared>,
}

/// Why [`Exec::run_until`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The condition held.
    Done,
    /// Nothing was ready and no timer was left: every task waits for something that will never
    /// come (or there are no tasks).
    Idle,
    /// Virtual time reached the limit first.
    TimeLimit,
    /// Too many polls in one instant: something spins.
    Spinning,
}

/// Polls allowed at one instant before the executor calls it spinning.
const MAX_POLLS_PER_INSTANT: u64 = 2_000_000;

impl Exec {
    /// An executor at virtual time zero; `seed` is what its runtime gives core when asked.
    pub fn new(seed: u64) -> Exec {
        Exec {
            shared: Arc::new(Shared {
                now: Mutex::new(Instant::ZERO),
                ready: Mutex::new(VecDeque::new()),
                timers: Mutex::new(Timers::default()),
                live: Mutex::new(BTreeMap::new()),
                next_task: Mutex::new(0),
                seed,
            }),
        }
    }

    /// The herd-service runtime on this executor.
    pub fn runtime(&self) -> Arc<dyn Runtime> {
        Arc::new(SimRuntime { exec: self.clone() })
    }

    /// Virtual now.
    pub fn now(&self) -> Instant {
        *lock(&self.shared.now)
    }

    /// Runs `task` to completion in the background.
    pub fn spawn(&self, task: BoxFuture<'static, ()>) {
        let id = {
            let mut n = lock(&self.shared.next_task);
            *n += 1;
            *n
        };
        let task = Arc::new(Task {
            future: Mutex::new(Some(task)),
            queued: AtomicBool::new(false),
            shared: self.shared.clone(),
            id,
        });
        lock(&self.shared.live).insert(id, task.clone());
        task.wake_by_ref();
    }

    /// Tasks spawned and not finished.
    pub fn live_tasks(&self) -> usize {
        lock(&self.shared.live).len()
    }

    /// Timers armed now.
    pub fn armed_timers(&self) -> usize {
        lock(&self.shared.timers).waiting.len()
    }

    /// Wakes `waker` at `at` (at once when `at` has passed); returns the key to cancel it with.
    pub fn wake_at(&self, at: Instant, waker: Waker) -> (Instant, u64) {
        let mut t = lock(&self.shared.timers);
        let key = (at, t.next_seq);
        t.next_seq += 1;
        t.waiting.insert(key, waker);
        key
    }

    /// Forgets a timer set with [`Exec::wake_at`].
    pub fn cancel(&self, key: (Instant, u64)) {
        lock(&self.shared.timers).waiting.remove(&key);
    }

    /// Runs tasks and moves time until `done()` holds (checked whenever nothing is ready), no
    /// work is left, or virtual time would pass `limit`.
    pub fn run_until(&self, limit: Instant, mut done: impl FnMut() -> bool) -> Stop {
        let mut polls_now = 0u64;
        loop {
            loop {
                let next = lock(&self.shared.ready).pop_front();
                let Some(task) = next else { break };
                polls_now += 1;
                if polls_now > MAX_POLLS_PER_INSTANT {
                    return Stop::Spinning;
                }
                self.poll(&task);
            }
            if done() {
                return Stop::Done;
            }
            // Nothing ready: the clock moves to the earliest timer, which fires with every
            // other timer due at the same instant.
            let due = {
                let mut timers = lock(&self.shared.timers);
                let Some((&(at, _), _)) = timers.waiting.iter().next() else { return Stop::Idle };
                if at > limit {
                    return Stop::TimeLimit;
                }
                let mut now = lock(&self.shared.now);
                if at > *now {
                    *now = at;
                    polls_now = 0;
                }
                let now = *now;
                let mut due = Vec::new();
                while let Some(entry) = timers.waiting.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    due.push(entry.remove());
                }
                due
            };
            for w in due {
                w.wake();
            }
        }
    }

    fn poll(&self, task: &Arc<Task>) {
        task.queued.store(false, Ordering::Release);
        let mut slot = lock(&task.future);
        let Some(fut) = slot.as_mut() else { return };
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        if fut.as_mut().poll(&mut cx).is_ready() {
            *slot = None;
            drop(slot);
            lock(&self.shared.live).remove(&task.id);
        }
    }

    /// Drops every task (their futures first, so what they hold is released in a known order:
    /// by task id) and every timer.
    pub fn shutdown(&self) {
        let tasks: Vec<Arc<Task>> = std::mem::take(&mut *lock(&self.shared.live)).into_values().collect();
        for t in &tasks {
            let fut = lock(&t.future).take();
            drop(fut);
        }
        lock(&self.shared.ready).clear();
        lock(&self.shared.timers).waiting.clear();
    }
}

/// herd-service's runtime inside an [`Exec`].
struct SimRuntime {
    exec: Exec,
}

impl Runtime for SimRuntime {
    fn now(&self) -> Instant {
        self.exec.now()
    }
    fn unix_ms(&self) -> i64 {
        EPOCH_UNIX_MS + (self.exec.now().as_micros() / 1000) as i64
    }
    fn seed(&self) -> u64 {
        self.exec.shared.seed
    }
    fn timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(SimTimer { exec: self.exec.clone(), at, key: None })
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        let mut timer = SimTimer { exec: self.exec.clone(), at: self.exec.now() + d, key: None };
        Box::pin(std::future::poll_fn(move |cx| Pin::new(&mut timer).poll(cx)))
    }
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.exec.spawn(task);
    }
}

/// A timer of the virtual clock.
pub struct SimTimer {
    exec: Exec,
    at: Instant,
    key: Option<(Instant, u64)>,
}

impl SimTimer {
    /// A timer firing at `at`.
    pub fn at(exec: &Exec, at: Instant) -> SimTimer {
        SimTimer { exec: exec.clone(), at, key: None }
    }

    fn disarm(&mut self) {
        if let Some(k) = self.key.take() {
            self.exec.cancel(k);
        }
    }
}

impl AsyncTimer for SimTimer {
    fn reset(self: Pin<&mut Self>, at: Instant) {
        let this = self.get_mut();
        this.disarm();
        this.at = at;
    }
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.exec.now() >= this.at {
            this.disarm();
            return Poll::Ready(());
        }
        this.disarm();
        this.key = Some(this.exec.wake_at(this.at, cx.waker().clone()));
        Poll::Pending
    }
}

impl std::future::Future for SimTimer {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        AsyncTimer::poll(self, cx)
    }
}

impl Drop for SimTimer {
    fn drop(&mut self) {
        self.disarm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_moves_only_to_timers_and_tasks_run_in_order() {
        let exec = Exec::new(1);
        let rt = exec.runtime();
        let log = Arc::new(Mutex::new(Vec::new()));
        for (name, ms) in [("b", 20u64), ("a", 10), ("c", 10)] {
            let (rt2, log2) = (rt.clone(), log.clone());
            exec.spawn(Box::pin(async move {
                rt2.sleep(Duration::from_millis(ms)).await;
                lock(&log2).push((name, rt2.now().as_micros()));
            }));
        }
        assert_eq!(exec.run_until(Instant::MAX, || false), Stop::Idle);
        assert_eq!(*lock(&log), vec![("a", 10_000), ("c", 10_000), ("b", 20_000)]);
        assert_eq!(exec.live_tasks(), 0);
        assert_eq!(exec.armed_timers(), 0);
    }

    #[test]
    fn a_reset_timer_fires_at_its_new_deadline() {
        let exec = Exec::new(1);
        let rt = exec.runtime();
        let fired = Arc::new(Mutex::new(None));
        let (rt2, fired2) = (rt.clone(), fired.clone());
        exec.spawn(Box::pin(async move {
            let mut t = rt2.timer(Instant::from_millis(50));
            t.as_mut().reset(Instant::from_millis(5));
            std::future::poll_fn(|cx| t.as_mut().poll(cx)).await;
            *lock(&fired2) = Some(rt2.now());
        }));
        exec.run_until(Instant::MAX, || false);
        assert_eq!(*lock(&fired), Some(Instant::from_millis(5)));
        assert_eq!(exec.armed_timers(), 0, "the first deadline was disarmed");
    }

    #[test]
    fn the_time_limit_stops_before_a_later_timer() {
        let exec = Exec::new(1);
        let rt = exec.runtime();
        exec.spawn(Box::pin(async move { rt.sleep(Duration::from_secs(10)).await }));
        assert_eq!(exec.run_until(Instant::from_secs(1), || false), Stop::TimeLimit);
        assert_eq!(exec.live_tasks(), 1);
        exec.shutdown();
        assert_eq!(exec.live_tasks(), 0);
        assert_eq!(exec.armed_timers(), 0);
    }
}
