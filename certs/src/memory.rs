//! The process's memory: large buffers go back to the system when freed.
//!
//! glibc's malloc serves a buffer above its mmap threshold (128 KiB) from a mapping of its own,
//! unmapped when freed — but it raises that threshold past every such buffer freed, up to
//! 32 MiB, and from then on serves archive files of megabytes from its heap, which keeps their
//! memory: a hub that relayed fifty 10 MB archives at once kept a third of a gigabyte. Fixing
//! the threshold keeps large buffers mapped and returned, and the resident size bounded by what
//! is in use.

/// Buffers of this size and above are mapped on their own and returned when freed.
const MMAP_THRESHOLD: i32 = 1024 * 1024;

/// Fixes malloc's mmap threshold (glibc; elsewhere nothing to do). Call once, at start.
pub fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of the allocator; it is called before the
    // process starts its threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
