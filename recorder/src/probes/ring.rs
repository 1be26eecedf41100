//! The ring buffers of every object, drained by the ring-reader thread: an
//! edge-triggered wait on all of them, and how full each one was.

use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{MapData, RingBuf};

use super::ProbeError;

/// The ring buffers of every object. Drained on a thread of its own, so the
/// kernel's buffers keep emptying while the pipeline builds and writes a flush.
pub struct RingReader {
    rings: Vec<Ring>,
    /// Edge-triggered on every ring: a wait ends at the kernel's wakeups only
    /// (PT_WAKEUP_BYTES pooled), not whenever a record is unread. poll(2) is
    /// level-triggered on a ring buffer: under a storm it returned at once
    /// after every drain, ~5,600 passes a second of a few records each.
    epoll: std::os::fd::OwnedFd,
}

pub(super) struct Ring {
    pub(super) ring: RingBuf<MapData>,
    pub(super) positions: RingPositions,
    pub(super) gauge: std::sync::Arc<RingGauge>,
}

/// How full one ring buffer was when the reader woke up to drain it: the bytes
/// the kernel had written that userspace had not consumed yet.
#[derive(Debug)]
pub struct RingGauge {
    pub object: &'static str,
    /// Data area size in bytes.
    pub size: u64,
    /// Pending bytes at the latest wakeup.
    pub pending: std::sync::atomic::AtomicU64,
    /// Highest pending bytes at any wakeup since the recorder started.
    pub peak: std::sync::atomic::AtomicU64,
}

impl RingGauge {
    /// `pending` as a fraction of the ring's size.
    pub fn fill(&self) -> f64 {
        self.ratio(self.pending.load(std::sync::atomic::Ordering::Relaxed))
    }
    /// `peak` as a fraction of the ring's size (1.0: records were being dropped).
    pub fn peak_fill(&self) -> f64 {
        self.ratio(self.peak.load(std::sync::atomic::Ordering::Relaxed))
    }
    fn ratio(&self, bytes: u64) -> f64 {
        if self.size == 0 { 0.0 } else { bytes as f64 / self.size as f64 }
    }
}

/// Read-only mappings of a BPF ring buffer's consumer and producer position
/// pages (the kernel allows mapping them without write access).
pub(super) struct RingPositions {
    consumer: *mut libc::c_void,
    producer: *mut libc::c_void,
    page: usize,
}

// SAFETY: the mappings are owned by this value and only read with atomic loads.
unsafe impl Send for RingPositions {}

impl RingPositions {
    pub(super) fn map(fd: std::os::fd::RawFd) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let map = |offset: usize| {
            // SAFETY: a new read-only shared mapping of the map fd; checked below.
            let p = unsafe { libc::mmap(std::ptr::null_mut(), page, libc::PROT_READ, libc::MAP_SHARED, fd, offset as libc::off_t) };
            if p == libc::MAP_FAILED { Err(std::io::Error::last_os_error()) } else { Ok(p) }
        };
        let consumer = map(0)?;
        let producer = match map(page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: unmapping the mapping made just above.
                unsafe { libc::munmap(consumer, page) };
                return Err(e);
            }
        };
        Ok(RingPositions { consumer, producer, page })
    }

    /// Bytes written by the kernel and not yet consumed.
    fn pending(&self) -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        // SAFETY: each mapping is a page whose first 8 bytes are the kernel's
        // 64-bit position, updated atomically; it lives as long as `self`.
        let (c, p) = unsafe { ((*(self.consumer as *const AtomicU64)).load(Ordering::Acquire), (*(self.producer as *const AtomicU64)).load(Ordering::Acquire)) };
        p.saturating_sub(c)
    }
}

impl Drop for RingPositions {
    fn drop(&mut self) {
        // SAFETY: unmapping the two pages mapped in `map`.
        unsafe {
            libc::munmap(self.consumer, self.page);
            libc::munmap(self.producer, self.page);
        }
    }
}

impl RingReader {
    pub(super) fn new(rings: Vec<Ring>) -> Result<Self, ProbeError> {
        use std::os::fd::FromRawFd;
        // SAFETY: epoll_create1 has no memory preconditions; a valid fd is owned below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(ProbeError::Epoll(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
        let epoll = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        for (i, r) in rings.iter().enumerate() {
            let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: i as u64 };
            // SAFETY: both fds are open for the call; `ev` is a valid epoll_event.
            if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, r.ring.as_fd().as_raw_fd(), &mut ev) } < 0 {
                return Err(ProbeError::Epoll(std::io::Error::last_os_error()));
            }
        }
        Ok(RingReader { rings, epoll })
    }

    /// Fill gauges of every ring buffer, updated at each [`RingReader::poll`].
    pub fn gauges(&self) -> Vec<std::sync::Arc<RingGauge>> {
        self.rings.iter().map(|r| std::sync::Arc::clone(&r.gauge)).collect()
    }

    /// Wait up to `timeout_ms` for the kernel's wakeup, then hand every
    /// available record of every ring to `each` (borrowed from the ring buffer:
    /// no copy). Returns how many. Whatever woke it (or nothing), every ring is
    /// drained, so no record waits longer than one timeout.
    pub fn poll(&mut self, timeout_ms: i32, mut each: impl FnMut(&[u8])) -> usize {
        let mut ready = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: the epoll fd is open; `ready` is valid for `ready.len()` events.
        unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), ready.as_mut_ptr(), ready.len() as i32, timeout_ms) };
        let mut n = 0;
        // Privilege and connection events are drained before process events:
        // an exec that happened before a connect is then always in the same
        // pass (or an earlier one), and passes are ordered by kernel time, so
        // the connect finds the process image it ran in.
        for Ring { ring, positions, gauge } in self.rings.iter_mut().rev() {
            let pending = positions.pending();
            gauge.pending.store(pending, std::sync::atomic::Ordering::Relaxed);
            gauge.peak.fetch_max(pending, std::sync::atomic::Ordering::Relaxed);
            while let Some(item) = ring.next() {
                each(&item);
                n += 1;
            }
        }
        n
    }
}

