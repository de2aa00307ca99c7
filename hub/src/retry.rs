//! Waiting between attempts, shared by everything that reconnects or retries (consumer, relay,
//! scheduler, start-up), and the text of a caught panic.

use std::time::Duration;

use backon::BackoffBuilder;

/// Capped exponential backoff with full jitter: 200 ms doubling up to 15 s, for ever.
pub fn backoff() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(15))
        .with_jitter()
        .without_max_times()
        .build()
}

/// The message of a caught panic.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
