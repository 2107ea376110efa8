//! The simulator's scheduler: one thread, a virtual millisecond clock, and a
//! seeded choice of which runnable task runs next.
//!
//! Tasks are boxed `?Send` futures in a slab. A task is runnable when it was
//! just spawned or when a timer it registered fired; among runnable tasks the
//! next one is drawn from the seed, so every `.await` that yields is a point
//! where another request, a detached refresh, or a fault can step in. When no
//! task is runnable, the clock jumps to the earliest timer (all timers due at
//! that instant become runnable together, again in seeded order). Every
//! [`Sleep`] yields at least once, even for 0 ms, so same-instant steps
//! interleave too. Killing a task drops its future: exactly what the Workers
//! runtime does to a request whose client hung up, or to everything of an
//! isolate that died.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

pub type TaskId = usize;
type Boxed = Pin<Box<dyn Future<Output = ()>>>;

/// SplitMix64: small, fast, and the same numbers on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        per_mille > 0 && self.below(1000) < per_mille
    }
}

struct Slot {
    fut: Option<Boxed>,
    /// The request the task belongs to (isolate deaths and hang-ups kill by it).
    request: u32,
    /// Work handed to `wait_until`: survives a hang-up, not an isolate death.
    detached: bool,
    queued: bool,
    alive: bool,
}

pub struct Exec {
    now: Cell<u64>,
    slots: RefCell<Vec<Slot>>,
    runnable: RefCell<Vec<TaskId>>,
    timers: RefCell<BinaryHeap<Reverse<(u64, u64, TaskId)>>>,
    timer_seq: Cell<u64>,
    current: Cell<TaskId>,
    pub rng: RefCell<Rng>,
    pub steps: Cell<u64>,
}

impl Exec {
    pub fn new(seed: u64, start_ms: u64) -> Rc<Exec> {
        Rc::new(Exec {
            now: Cell::new(start_ms),
            slots: RefCell::new(Vec::new()),
            runnable: RefCell::new(Vec::new()),
            timers: RefCell::new(BinaryHeap::new()),
            timer_seq: Cell::new(0),
            current: Cell::new(usize::MAX),
            rng: RefCell::new(Rng::new(seed)),
            steps: Cell::new(0),
        })
    }

    pub fn now(&self) -> u64 {
        self.now.get()
    }

    /// Moves the clock forward (between phases, never backwards).
    pub fn advance_to(&self, ms: u64) {
        self.now.set(self.now.get().max(ms));
    }

    pub fn current(&self) -> TaskId {
        self.current.get()
    }

    pub fn spawn(&self, request: u32, detached: bool, fut: impl Future<Output = ()> + 'static) {
        let mut slots = self.slots.borrow_mut();
        let id = slots.len();
        slots.push(Slot {
            fut: Some(Box::pin(fut)),
            request,
            detached,
            queued: true,
            alive: true,
        });
        self.runnable.borrow_mut().push(id);
    }

    pub fn wake(&self, id: TaskId) {
        let mut slots = self.slots.borrow_mut();
        if let Some(s) = slots.get_mut(id) {
            if s.alive && !s.queued {
                s.queued = true;
                self.runnable.borrow_mut().push(id);
            }
        }
    }

    fn add_timer(&self, at: u64, id: TaskId) {
        let seq = self.timer_seq.get();
        self.timer_seq.set(seq + 1);
        self.timers.borrow_mut().push(Reverse((at, seq, id)));
    }

    /// Drops every live task of `request` (its detached work too when
    /// `detached_too`). Whether anything was still running.
    pub fn kill(&self, request: u32, detached_too: bool) -> bool {
        let mut dropped = Vec::new();
        {
            let mut slots = self.slots.borrow_mut();
            for s in slots.iter_mut() {
                if s.alive && s.request == request && (detached_too || !s.detached) {
                    s.alive = false;
                    dropped.push(s.fut.take());
                }
            }
        }
        let any = !dropped.is_empty();
        drop(dropped); // outside the borrow: a future's drop may touch the world
        any
    }

    /// Whether `request` still has a task running (its own, not detached).
    pub fn running(&self, request: u32) -> bool {
        self.slots
            .borrow()
            .iter()
            .any(|s| s.alive && s.request == request && !s.detached)
    }

    /// Runs until no task is left; `check` runs after every step.
    pub fn run(&self, mut check: impl FnMut()) {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let picked = {
                let mut r = self.runnable.borrow_mut();
                if r.is_empty() {
                    None
                } else {
                    let i = self.rng.borrow_mut().below(r.len() as u64) as usize;
                    Some(r.swap_remove(i))
                }
            };
            let Some(id) = picked else {
                if self.fire_timers() {
                    continue;
                }
                return;
            };
            let fut = {
                let mut slots = self.slots.borrow_mut();
                let s = &mut slots[id];
                s.queued = false;
                if !s.alive {
                    continue;
                }
                s.fut.take()
            };
            let Some(mut fut) = fut else { continue };
            self.current.set(id);
            self.steps.set(self.steps.get() + 1);
            let done = fut.as_mut().poll(&mut cx).is_ready();
            self.current.set(usize::MAX);
            let finished = {
                let mut slots = self.slots.borrow_mut();
                let s = &mut slots[id];
                if done || !s.alive {
                    s.alive = false;
                    Some(fut)
                } else {
                    s.fut = Some(fut);
                    None
                }
            };
            drop(finished);
            check();
        }
    }

    /// Jumps to the earliest timer and makes everything due then runnable.
    fn fire_timers(&self) -> bool {
        let mut timers = self.timers.borrow_mut();
        let Some(Reverse((at, _, _))) = timers.peek().copied() else {
            return false;
        };
        self.advance_to(at);
        while let Some(Reverse((t, _, id))) = timers.peek().copied() {
            if t > at {
                break;
            }
            timers.pop();
            self.wake(id);
        }
        true
    }
}

/// Resolves once the virtual clock reaches `at`; always yields first.
pub struct Sleep {
    exec: Rc<Exec>,
    at: u64,
    registered: bool,
}

pub fn sleep(exec: &Rc<Exec>, ms: u64) -> Sleep {
    Sleep {
        exec: exec.clone(),
        at: exec.now() + ms,
        registered: false,
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.registered && self.exec.now() >= self.at {
            return Poll::Ready(());
        }
        if !self.registered {
            self.registered = true;
            self.exec.add_timer(self.at, self.exec.current());
        }
        Poll::Pending
    }
}

/// `inner`, or `None` once `deadline` passed first (then `inner` is dropped).
pub struct Timeout<F> {
    inner: Pin<Box<F>>,
    deadline: Sleep,
}

pub fn timeout<F: Future>(exec: &Rc<Exec>, ms: u64, inner: F) -> Timeout<F> {
    Timeout {
        inner: Box::pin(inner),
        deadline: sleep(exec, ms),
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Option<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.inner.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        match Pin::new(&mut self.deadline).poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Where detached work leaves its result for the request waiting on it.
pub struct Handoff<T> {
    value: RefCell<Option<T>>,
    waiter: TaskId,
}

impl<T> Handoff<T> {
    pub fn new(waiter: TaskId) -> Rc<Handoff<T>> {
        Rc::new(Handoff {
            value: RefCell::new(None),
            waiter,
        })
    }

    pub fn put(&self, exec: &Exec, v: T) {
        *self.value.borrow_mut() = Some(v);
        exec.wake(self.waiter);
    }
}

/// Resolves when the handoff holds a value.
pub struct Collect<T>(pub Rc<Handoff<T>>);

impl<T> Future for Collect<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<T> {
        match self.0.value.borrow_mut().take() {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }
}
