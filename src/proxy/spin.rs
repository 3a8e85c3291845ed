//! When the libvirt -> client thread polls libvirt's socket instead of
//! sleeping (`proxy.adaptive_poll`, on by default).
//!
//! Relayed, each RPC wakes two proxy threads, and on a virtual machine a
//! thread woken on an idle vCPU costs tens of microseconds. The thread that
//! relays libvirt's replies can save its wakeup by polling its socket
//! (receives that do not wait) when a reply is due: while a call of its
//! connection is in flight, and for a moment after a reply went to the
//! client, when a client in a loop of calls sends the next one. How long, it
//! learns from the connection's own calls ([`Window`]); between calls of an
//! idle connection it never polls.
//!
//! Whether polling pays depends on the host: on idle CPUs it makes a loop of
//! calls faster than without the proxy; on busy ones it takes CPU time from
//! the client, libvirtd and the guests, and makes every call slower. So each
//! connection measures it ([`Trial`]): it times the client's calls in turns
//! with and without polling, keeps polling only while that is clearly
//! faster, tries and keeps polling only while the host's CPUs have time to
//! spare (/proc/stat, counting its own polling as spare), and stops at once
//! when a poll loses its CPU to another task. Each poll attempt yields the
//! CPU to anything else runnable.
//!
//! Only one thread of the process polls at a time, and none while more than
//! one connection has a call in flight (then the CPUs have other work).

use super::connection::{busy_connections, Handle};
use crate::rpc::transport::Spin;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest poll for a reply to a call in flight.
const REPLY_CAP: Duration = Duration::from_micros(400);
/// Longest poll for the client's next call after a reply.
const NEXT_CAP: Duration = Duration::from_micros(150);
/// A window that grows starts at this.
const GROW_START: Duration = Duration::from_micros(50);
/// A window that shrinks below this is closed.
const SHRINK_MIN: Duration = Duration::from_micros(10);
/// A poll that went this long between two attempts lost its CPU to another
/// task (longer than the client or libvirtd taking a turn on it).
const PREEMPTED: Duration = Duration::from_micros(200);

/// Threads of this process polling now.
static POLLING: AtomicUsize = AtomicUsize::new(0);
/// At most this many threads poll at once.
const MAX_POLLING: usize = 1;

/// How long to poll for one kind of wait, learnt from the waits seen: a wait
/// that a longer poll would have caught (up to the cap) doubles it, a wait
/// longer than the cap halves it (the polling was wasted), a wait caught
/// leaves it.
#[derive(Debug, Clone, Copy)]
struct Window {
    now: Duration,
    cap: Duration,
}

impl Window {
    fn new(cap: Duration) -> Window {
        Window {
            now: Duration::ZERO,
            cap,
        }
    }

    fn learn(&mut self, waited: Duration) {
        if waited <= self.now {
            return;
        }
        if waited <= self.cap {
            self.now = (self.now * 2).max(GROW_START).min(self.cap);
        } else {
            self.now /= 2;
            if self.now < SHRINK_MIN {
                self.now = Duration::ZERO;
            }
        }
    }
}

/// Calls whose cycle (one call to the next) is this long or longer are not
/// a loop of calls, and say nothing about polling.
const CYCLE_MAX_US: u64 = 2000;
/// Cycles timed per turn.
const TURN: u32 = 16;
/// Polling must make the cycles at least this much shorter to be kept.
const GAIN: f64 = 0.95;
/// Turns polling is kept after it won.
const KEEP: u32 = 16;
/// Turns without polling after it lost: at first, then doubling each time it
/// loses again, up to the most.
const QUIET_MIN: u32 = 4;
const QUIET_MAX: u32 = 256;
/// Polling is tried only when the CPUs had at least this much of one idle.
const SPARE_CPU: f64 = 0.8;

/// What a connection is doing with polling now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Timing a turn with polling, then one without.
    TryPoll,
    TrySleep {
        polled_us: u64,
    },
    /// Polling won: poll for this many more turns.
    Poll {
        left: u32,
    },
    /// Polling lost: sleep for this many more turns.
    Sleep {
        left: u32,
    },
}

/// Idle CPU time so far (seconds, all CPUs) and when it was read.
type IdleClock = fn() -> Option<(f64, Instant)>;

/// Times the client's call cycles in turns of `TURN`, alternately with and
/// without polling, and keeps what was faster for a while.
#[derive(Debug)]
struct Trial {
    phase: Phase,
    /// Turns to sleep after the next loss.
    quiet: u32,
    cycles: u32,
    sum_us: u64,
    clock: IdleClock,
    /// `clock` when the CPUs' idle time was last read, and `polled` then.
    idle_at: Option<(f64, Instant)>,
    polled_at: Duration,
    /// Time this connection spent polling, so far: CPU time it took from
    /// what would have been idle.
    polled: Duration,
}

impl Trial {
    fn new(clock: IdleClock) -> Trial {
        Trial {
            // Learn the windows first, so that the first trial polls.
            phase: Phase::Sleep { left: 2 },
            quiet: QUIET_MIN,
            cycles: 0,
            sum_us: 0,
            clock,
            idle_at: clock(),
            polled_at: Duration::ZERO,
            polled: Duration::ZERO,
        }
    }

    fn polls(&self) -> bool {
        matches!(self.phase, Phase::TryPoll | Phase::Poll { .. })
    }

    /// Polling lost: sleep, longer each time.
    fn lost(&mut self) -> Phase {
        let left = self.quiet;
        self.quiet = (self.quiet * 2).min(QUIET_MAX);
        Phase::Sleep { left }
    }

    /// A poll lost its CPU to another task: stop polling at once.
    fn preempted(&mut self) {
        self.cycles = 0;
        self.sum_us = 0;
        self.phase = self.lost();
    }

    /// Whether the CPUs had at least `SPARE_CPU` idle since the last time
    /// this was asked, counting the time this connection polled as idle.
    fn spare(&mut self) -> bool {
        let now = (self.clock)();
        let polled = (self.polled - self.polled_at).as_secs_f64();
        let spare = match (now, self.idle_at) {
            (Some((idle, at)), Some((idle0, at0))) => {
                let span = at.duration_since(at0).as_secs_f64();
                span > 0.0 && idle - idle0 + polled >= SPARE_CPU * span
            }
            _ => false,
        };
        self.idle_at = now;
        self.polled_at = self.polled;
        spare
    }

    /// One cycle of the client's calls, `us` long.
    fn cycle(&mut self, us: u64) {
        if us >= CYCLE_MAX_US {
            return;
        }
        self.cycles += 1;
        self.sum_us += us;
        if self.cycles < TURN {
            return;
        }
        let turn = self.sum_us;
        self.cycles = 0;
        self.sum_us = 0;
        let phase = self.phase;
        self.phase = match phase {
            Phase::TryPoll => Phase::TrySleep { polled_us: turn },
            Phase::TrySleep { polled_us } if (polled_us as f64) < GAIN * turn as f64 => {
                self.quiet = QUIET_MIN;
                Phase::Poll { left: KEEP }
            }
            Phase::TrySleep { .. } => self.lost(),
            Phase::Poll { left } if left > 1 => Phase::Poll { left: left - 1 },
            // Polling takes idle time only: check there still was some.
            Phase::Poll { .. } if !self.spare() => self.lost(),
            Phase::Poll { .. } => Phase::TryPoll,
            Phase::Sleep { left } if left > 1 => Phase::Sleep { left: left - 1 },
            // Polling would take CPU time from others: do not even try.
            Phase::Sleep { .. } if !self.spare() => Phase::Sleep { left: self.quiet },
            Phase::Sleep { .. } => Phase::TryPoll,
        };
    }
}

/// Idle and iowait time of all CPUs so far (/proc/stat, in seconds).
fn idle_seconds() -> Option<(f64, Instant)> {
    /// Clock ticks per second in /proc/stat (USER_HZ, 100 on every
    /// architecture Linux runs on today).
    const TICKS: f64 = 100.0;
    static STAT: Mutex<Option<File>> = Mutex::new(None);
    let mut f = STAT.lock().ok()?;
    if f.is_none() {
        *f = File::open("/proc/stat").ok();
    }
    let mut buf = [0u8; 256];
    let n = f.as_ref()?.read_at(&mut buf, 0).ok()?;
    let line = std::str::from_utf8(&buf[..n]).ok()?.lines().next()?;
    // cpu  user nice system idle iowait ...
    let mut v = line.strip_prefix("cpu ")?.split_whitespace().skip(3);
    let idle: u64 = v.next()?.parse().ok()?;
    let iowait: u64 = v.next()?.parse().ok()?;
    Some(((idle + iowait) as f64 / TICKS, Instant::now()))
}

/// The adaptive poll of one connection's libvirt -> client thread.
pub(crate) struct ReplyPoll {
    handle: Arc<Handle>,
    /// From a call to libvirt to its reply.
    reply: Window,
    /// From a reply to the client's next call.
    next: Window,
    trial: Trial,
    /// `Handle::now_us` when the current receive began.
    began_us: u64,
    /// The client's last call this thread has seen (`Handle::last_call_us`).
    seen_call: u64,
    /// `waited` at the previous attempt of this receive.
    last_try: Duration,
    /// This thread holds one of the `MAX_POLLING` places, since this
    /// `waited`.
    polling: Option<Duration>,
}

impl ReplyPoll {
    pub(crate) fn new(handle: Arc<Handle>) -> ReplyPoll {
        ReplyPoll {
            handle,
            reply: Window::new(REPLY_CAP),
            next: Window::new(NEXT_CAP),
            trial: Trial::new(idle_seconds),
            began_us: 0,
            seen_call: 0,
            last_try: Duration::ZERO,
            polling: None,
        }
    }

    /// Stops polling, `waited` into the receive.
    fn release(&mut self, waited: Duration) {
        if let Some(since) = self.polling.take() {
            POLLING.fetch_sub(1, Ordering::SeqCst);
            self.trial.polled += waited.saturating_sub(since);
        }
    }

    /// Whether this wait, `waited` long so far, may poll.
    fn allowed(&self, waited: Duration) -> bool {
        if !self.trial.polls() {
            return false;
        }
        if self.handle.calls_in_flight() > 0 {
            let since_call = self
                .handle
                .now_us()
                .saturating_sub(self.handle.last_call_us());
            busy_connections() <= 1 && Duration::from_micros(since_call) < self.reply.now
        } else {
            // Only a reply makes the client's next call likely soon.
            busy_connections() == 0 && self.handle.replied_last() && waited < self.next.now
        }
    }
}

impl Spin for ReplyPoll {
    fn begin(&mut self) {
        self.began_us = self.handle.now_us();
        self.last_try = Duration::ZERO;
    }

    fn keep(&mut self, waited: Duration) -> bool {
        let gap = waited.saturating_sub(self.last_try);
        self.last_try = waited;
        if self.polling.is_some() && gap > PREEMPTED {
            self.trial.preempted();
        }
        if !self.allowed(waited) {
            self.release(waited);
            return false;
        }
        if self.polling.is_none() {
            if POLLING.fetch_add(1, Ordering::SeqCst) >= MAX_POLLING {
                POLLING.fetch_sub(1, Ordering::SeqCst);
                return false;
            }
            self.polling = Some(waited);
        }
        // Anything else runnable on this CPU goes first.
        std::thread::yield_now();
        true
    }

    fn end(&mut self, waited: Duration) {
        self.release(waited);
        let now = self.handle.now_us();
        let call = self.handle.last_call_us();
        if call != self.seen_call {
            if self.seen_call != 0 {
                self.trial.cycle(call.saturating_sub(self.seen_call));
            }
            self.seen_call = call;
        }
        if call >= self.began_us {
            // The client's next call came while this thread waited.
            self.next.learn(Duration::from_micros(call - self.began_us));
            self.reply
                .learn(Duration::from_micros(now.saturating_sub(call)));
        } else if self.handle.calls_in_flight() > 0 {
            self.reply
                .learn(Duration::from_micros(now.saturating_sub(call)));
        }
    }
}

impl Drop for ReplyPoll {
    fn drop(&mut self) {
        self.release(self.last_try);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: fn(u64) -> Duration = Duration::from_micros;

    #[test]
    fn a_window_grows_to_catch_waits_and_closes_for_long_ones() {
        let mut w = Window::new(REPLY_CAP);
        assert_eq!(w.now, Duration::ZERO);
        w.learn(US(80));
        assert_eq!(w.now, GROW_START);
        w.learn(US(80));
        assert_eq!(w.now, US(100));
        w.learn(US(80));
        assert_eq!(w.now, US(100), "a wait caught leaves it");
        for _ in 0..10 {
            w.learn(US(300));
        }
        assert_eq!(w.now, REPLY_CAP, "never past the cap");
        // An idle connection: every wait longer than the cap.
        for _ in 0..6 {
            w.learn(Duration::from_secs(1));
        }
        assert_eq!(w.now, Duration::ZERO);
    }

    /// A clock whose CPUs are all idle, or all busy.
    fn idle() -> Option<(f64, Instant)> {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let t0 = *T0.get_or_init(Instant::now);
        let now = Instant::now();
        Some((2.0 * now.duration_since(t0).as_secs_f64(), now))
    }
    fn busy() -> Option<(f64, Instant)> {
        Some((0.0, Instant::now()))
    }

    /// Feeds `turns` turns of cycles, `us` long when polling and
    /// `sleeping_us` when not; the turns that polled.
    fn run(t: &mut Trial, turns: u32, us: u64, sleeping_us: u64) -> u32 {
        let mut polled = 0;
        for _ in 0..turns {
            let p = t.polls();
            polled += u32::from(p);
            for _ in 0..TURN {
                t.cycle(if p { us } else { sleeping_us });
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        polled
    }

    #[test]
    fn polling_is_kept_while_it_makes_calls_faster() {
        let mut t = Trial::new(idle);
        let polled = run(&mut t, 200, 60, 100);
        assert!(polled > 150, "polled in {polled} of 200 turns");
    }

    #[test]
    fn polling_that_does_not_pay_is_dropped_and_tried_ever_more_rarely() {
        let mut t = Trial::new(idle);
        let polled = run(&mut t, 600, 100, 100);
        assert!((2..30).contains(&polled), "polled in {polled} of 600 turns");
        let mut t = Trial::new(idle);
        let polled = run(&mut t, 600, 150, 100);
        assert!((2..30).contains(&polled), "polled in {polled} of 600 turns");
    }

    #[test]
    fn polling_is_not_even_tried_when_the_cpus_are_busy() {
        let mut t = Trial::new(busy);
        assert_eq!(run(&mut t, 300, 60, 100), 0);
    }

    #[test]
    fn polling_stops_when_the_cpus_get_busy() {
        use std::sync::atomic::AtomicBool;
        static BUSY_NOW: AtomicBool = AtomicBool::new(false);
        fn switching() -> Option<(f64, Instant)> {
            if BUSY_NOW.load(Ordering::SeqCst) {
                busy()
            } else {
                idle()
            }
        }
        let mut t = Trial::new(switching);
        assert!(run(&mut t, 50, 60, 100) > 30);
        BUSY_NOW.store(true, Ordering::SeqCst);
        // At most the turns it had left, and never again.
        run(&mut t, KEEP + 2, 60, 100);
        assert_eq!(run(&mut t, 300, 60, 100), 0);
    }

    #[test]
    fn a_poll_that_loses_its_cpu_stops_polling() {
        let mut t = Trial::new(idle);
        run(&mut t, 10, 60, 100);
        assert!(t.polls());
        t.preempted();
        assert!(!t.polls());
        // ... and it comes back once it pays again.
        assert!(run(&mut t, 100, 60, 100) > 50);
    }

    #[test]
    fn cycles_that_are_no_loop_of_calls_change_nothing() {
        let mut t = Trial::new(idle);
        let before = t.phase;
        for _ in 0..1000 {
            t.cycle(5000);
        }
        assert_eq!(t.phase, before);
    }
}
