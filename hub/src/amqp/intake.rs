//! The hub's subscription to its inbox, bounded in bytes as well as in deliveries (see
//! [`Intake`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, anyhow};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tracing::info;

use super::names;

/// A delivery the hub holds, counted in the bytes held until it is dropped (after its
/// acknowledgement).
pub(super) struct Held(pub(super) Delivery, Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        let left = self.1.fetch_sub(self.0.data.len(), Ordering::SeqCst) - self.0.data.len();
        metrics::gauge!("hub_consumer_held_bytes").set(left as f64);
    }
}

/// The subscription to the inbox, bounded in bytes as well as in deliveries. The prefetch
/// counts deliveries whatever their size — a window that suits index batches of a few hundred
/// bytes lets the broker send hundreds of archive files of megabytes. So the intake sizes its
/// window from what it receives: about `[limits] held_bytes` divided by the size of the
/// largest recent delivery (before any, the largest a message may be), at most `[broker]
/// prefetch`. When the deliveries held pass
/// `held_bytes`, or the window no longer fits the sizes seen (larger or much smaller), the
/// subscription is cancelled; what the broker had sent still arrives and is processed (the
/// subscription's end follows its last delivery), and once half of `held_bytes` has been
/// acknowledged it subscribes again with the window that fits.
pub(super) struct Intake<'a> {
    channel: &'a lapin::Channel,
    tag: &'a str,
    /// Subscriptions made so far (each has a tag of its own).
    made: u32,
    consumer: Option<lapin::Consumer>,
    held: Arc<AtomicUsize>,
    limit: usize,
    prefetch: u16,
    /// The window of the current subscription.
    window: u16,
    /// The sizes of the last [`RECENT`] deliveries.
    recent: std::collections::VecDeque<usize>,
    /// The largest a message may be: assumed of every delivery until [`KNOWN`] have been seen.
    largest: usize,
    paused: bool,
}

/// Deliveries whose sizes make the window: after a burst of large files, this many small
/// messages open it again.
const RECENT: usize = 64;
/// Deliveries seen before their sizes are trusted over the largest a message may be: a hub
/// started on a queue full of archive files takes them a few at a time from the first.
const KNOWN: usize = 8;

impl<'a> Intake<'a> {
    /// Subscribes with the window that fits messages of `largest` bytes, the largest a message
    /// may be (until the sizes are known).
    pub(super) async fn start(
        channel: &'a lapin::Channel,
        tag: &'a str,
        limits: (usize, u16, usize),
    ) -> Result<Intake<'a>> {
        let (limit, prefetch, largest) = limits;
        let mut intake = Intake {
            channel,
            tag,
            made: 0,
            consumer: None,
            held: Arc::new(AtomicUsize::new(0)),
            limit,
            prefetch,
            window: prefetch,
            recent: std::collections::VecDeque::with_capacity(RECENT),
            largest,
            paused: false,
        };
        intake.subscribe().await?;
        Ok(intake)
    }

    /// The window for the sizes seen.
    fn fitting_window(&self) -> u16 {
        let seen = self.recent.iter().copied().max().unwrap_or(0);
        let largest = if self.recent.len() < KNOWN { self.largest } else { seen.max(1) };
        u16::try_from(self.limit / largest).unwrap_or(u16::MAX).clamp(1, self.prefetch)
    }

    async fn subscribe(&mut self) -> Result<()> {
        self.made += 1;
        self.window = self.fitting_window();
        // The window applies to the consumers made after it on this channel.
        self.channel.basic_qos(self.window, BasicQosOptions::default()).await?;
        let tag = self.current_tag();
        let consumer = self
            .channel
            .basic_consume(
                names::INBOX_QUEUE.into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.consumer = Some(consumer);
        self.paused = false;
        metrics::gauge!("hub_consumer_window").set(f64::from(self.window));
        Ok(())
    }

    fn current_tag(&self) -> String {
        format!("{}-{}", self.tag, self.made)
    }

    async fn pause(&mut self, why: &'static str) -> Result<()> {
        self.paused = true;
        metrics::counter!("hub_consumer_paused_total").increment(1);
        info!(
            held = self.held.load(Ordering::SeqCst),
            window = self.window,
            fitting = self.fitting_window(),
            why,
            "Inbox subscription paused."
        );
        self.channel.basic_cancel(self.current_tag().as_str().into(), BasicCancelOptions::default()).await?;
        Ok(())
    }

    /// The next delivery; `Ok(None)` when there is none to give now (paused, or a cancelled
    /// subscription just ended).
    pub(super) async fn next(&mut self) -> Result<Option<Held>> {
        if self.paused && self.consumer.is_none() && self.held.load(Ordering::SeqCst) <= self.limit / 2 {
            self.subscribe().await?;
            info!(held = self.held.load(Ordering::SeqCst), window = self.window, "Inbox subscription resumed.");
        }
        let Some(consumer) = self.consumer.as_mut() else {
            // Paused: look again shortly.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Ok(None);
        };
        match consumer.next().await {
            Some(Ok(d)) => {
                let size = d.data.len();
                let bytes = self.held.fetch_add(size, Ordering::SeqCst) + size;
                metrics::gauge!("hub_consumer_held_bytes").set(bytes as f64);
                if self.recent.len() == RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back(size);
                if !self.paused {
                    let fitting = self.fitting_window();
                    if bytes > self.limit {
                        self.pause("the deliveries held passed the limit").await?;
                    } else if fitting < self.window {
                        self.pause("larger deliveries: a smaller window").await?;
                    } else if fitting >= self.window.saturating_mul(4) {
                        self.pause("smaller deliveries: a larger window").await?;
                    }
                }
                Ok(Some(Held(d, self.held.clone())))
            }
            Some(Err(e)) => Err(anyhow!(e).context("Consumer failed")),
            None if self.paused => {
                // The cancelled subscription ended: everything it was sent has arrived.
                self.consumer = None;
                Ok(None)
            }
            None => Err(anyhow!("the broker cancelled the consumer")),
        }
    }

    /// Takes no more deliveries (a graceful stop).
    pub(super) async fn stop(&mut self) {
        if self.consumer.is_some() && !self.paused {
            let _ = self.channel.basic_cancel(self.current_tag().as_str().into(), BasicCancelOptions::default()).await;
        }
    }
}
