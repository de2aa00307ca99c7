//! The daemons' allocator: jemalloc, which reuses freed pages for about a second and then
//! returns them to the system.
//!
//! An archive file passes through the hub and the adapters as buffers of megabytes, copied a
//! few times on its way. glibc's malloc either keeps such buffers in its heap once freed (it
//! raises its mmap threshold past every large buffer freed, up to 32 MiB: a hub that relayed
//! fifty 10 MB archives at once kept a third of a gigabyte) or, with the threshold fixed,
//! maps each buffer anew and unmaps it when freed — and then every page of every copy is
//! faulted in and zeroed by the kernel: a third of an adapter's CPU while archives moved.
//! jemalloc keeps freed pages for reuse and purges them as they age (`dirty_decay_ms`), from a
//! background thread, so an idle process gives its memory back too: the resident size follows
//! what was in use in the last second or so.

#[doc(hidden)]
pub use tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read once at its start: freed pages are kept about a second
/// (`dirty_decay_ms`; the default is ten), then returned at once rather than left for the kernel
/// to take when it likes (`muzzy_decay_ms:0`: the resident size says what is held), by a
/// background thread that purges even when nothing is allocated.
#[doc(hidden)]
pub const CONF: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Makes jemalloc, with [`CONF`], the allocator of the binary it is written in (its `main.rs`:
/// a library's static may not be linked).
#[macro_export]
macro_rules! allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::memory::Jemalloc = $crate::memory::Jemalloc;

        /// Read by jemalloc at its start (the symbol its prefixed build looks for).
        #[allow(non_upper_case_globals)]
        #[unsafe(export_name = "_rjem_malloc_conf")]
        pub static malloc_conf: &[u8] = $crate::memory::CONF;
    };
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    crate::allocator!();

    /// Pages the kernel faulted in for this thread so far (minor faults, `/proc/thread-self/stat`).
    fn faults() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
        // The fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        rest.split(' ').nth(7).expect("minflt").parse().expect("a number")
    }

    /// The process's resident bytes (`/proc/self/statm`).
    fn resident() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        statm.split(' ').nth(1).expect("resident").parse::<usize>().expect("a number") * 4096
    }

    const FILE: usize = 2_800_000; // an archive file as a message: 2 MiB in base64, in XML

    #[test]
    fn a_large_buffer_freed_is_reused_rather_than_faulted_in_again() {
        let pages = (FILE / 4096) as u64;
        let before = faults();
        for i in 0..200u8 {
            // Written whole, as a copy of a message is.
            let buffer = std::hint::black_box(vec![i; FILE]);
            drop(buffer);
        }
        let faulted = faults() - before;
        // Mapped anew each time (glibc's malloc with a fixed threshold) it is 200 × `pages`.
        assert!(faulted < 20 * pages, "{faulted} pages faulted in for 200 buffers of {pages} pages");
    }

    #[test]
    fn freed_memory_goes_back_to_the_system_within_seconds() {
        let baseline = resident();
        let buffers: Vec<Vec<u8>> = (0..32u8).map(|i| vec![i; FILE]).collect();
        let held = resident();
        assert!(held > baseline + 32 * FILE * 9 / 10, "the buffers are resident: {baseline} → {held}");
        drop(std::hint::black_box(buffers));
        // jemalloc keeps freed pages about a second ([`super::CONF`]); nothing else allocates
        // here, so the background thread must be the one returning them.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut now = resident();
        while now > baseline + 8 * FILE && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            now = resident();
        }
        assert!(now <= baseline + 8 * FILE, "resident {baseline} → {held} → {now} after freeing 32 buffers");
    }
}
