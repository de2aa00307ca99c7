//! Logging and metrics. Logs: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as
//! JSON when `HUB_LOG_FORMAT=json`, coloured only on a terminal. Metrics: every metric the hub
//! exports is described here (Prometheus help text), and every counter starts at zero, so a
//! dashboard or an alert never waits for a first event.

use std::io::IsTerminal;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// The log filter when `RUST_LOG` is not set: INFO, and the libraries' own lines only from WARN.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,lapin=warn";

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var("HUB_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Handler latency buckets, in seconds: a message is a few milliseconds; a large archive file
/// or a busy database, up to seconds.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Messages per group commit (`[limits] group_max` is at most 64).
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Rows per relay batch (at most 1,000).
const BATCH_BUCKETS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 128.0, 256.0, 512.0, 1000.0];

/// Installs the Prometheus recorder, describes every metric and starts every counter at zero.
///
/// # Errors
/// When a recorder is installed already.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("hub_handler_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("hub_consumer_wait_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("hub_relay_stage_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("hub_outbox_delay_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("hub_consumer_group_size".into()), GROUP_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("hub_relay_batch_rows".into()), BATCH_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    let counters = [
        ("hub_messages_received_total", "Deliveries taken from the hub's inbox queue."),
        ("hub_messages_processed_total", "Messages processed, by type."),
        ("hub_messages_refused_total", "Messages answered with a business refusal, by type and code."),
        ("hub_messages_duplicate_total", "Redeliveries of messages already processed (skipped)."),
        ("hub_messages_dead_lettered_total", "Messages kept as dead letters, by code."),
        ("hub_messages_suppressed_total", "Poison over its sender's rate: counted, not kept, by code."),
        ("hub_outbox_published_total", "Outbox messages published and confirmed by the broker."),
        (
            "hub_consumer_paused_total",
            "Times the inbox subscription paused to fit the bytes held ([limits] held_bytes).",
        ),
        ("hub_requests_resent_total", "Requests sent again because a province did not answer, by stage."),
        ("hub_index_disputes_total", "Index entries a province contradicted (verification found no such student)."),
        ("hub_pruned_rows_total", "Rows removed after their retention, by table."),
        ("hub_message_log_sealed_total", "Message-log entries chained by this process (the sealer)."),
        ("hub_orgcode_records_loaded_total", "Organization-code change records loaded from batches and sent."),
        ("hub_orgcode_revocations_executed_total", "Organization-code revocations executed (their last blocker gone)."),
    ];
    for (name, help) in counters {
        describe_counter!(name, help);
        metrics::counter!(name).increment(0);
    }
    describe_histogram!(
        "hub_handler_seconds",
        metrics::Unit::Seconds,
        "Time from taking a message to its commit, by type (in a group commit: the group's)."
    );
    describe_histogram!("hub_consumer_group_size", "Messages committed together in one transaction (group commit).");
    describe_histogram!("hub_relay_batch_rows", "Outbox rows the relay claimed and published as one batch.");
    describe_histogram!(
        "hub_consumer_wait_seconds",
        metrics::Unit::Seconds,
        "Time a delivery waited in its worker's queue before its group began."
    );
    describe_histogram!(
        "hub_relay_stage_seconds",
        metrics::Unit::Seconds,
        "Time of each stage of a relay batch: claim (its read), publish, confirm (from its last publish to the broker's last answer), settle (from its last publish until the relay takes the answers up), stamp."
    );
    describe_histogram!(
        "hub_outbox_delay_seconds",
        metrics::Unit::Seconds,
        "Time from the transaction that queued an outbox message to the broker's confirm of it."
    );
    let gauges = [
        ("hub_outbox_unsent", "Outbox messages not yet published."),
        ("hub_consumer_held_bytes", "Bytes of inbox deliveries held: received, not yet acknowledged."),
        (
            "hub_consumer_window",
            "Deliveries the broker may send the hub unacknowledged ([broker] prefetch, less for large messages).",
        ),
        ("hub_outbox_lag_seconds", "Age of the oldest unpublished outbox message."),
        ("hub_cases_open", "Open cases."),
        ("hub_cases_stuck", "Open cases whose machine-driven stage has not moved for longer than the stuck threshold."),
        ("hub_cases_overdue", "Review steps past their deadline (working days)."),
        ("hub_dead_letters", "Dead letters kept (within their retention)."),
        ("hub_dead_letters_suppressed", "Poison counted over the per-sender rate (within the retention)."),
        ("hub_index_disputed", "Index entries waiting for their province to report the student again."),
        (
            "hub_message_log_lag_seconds",
            "Age of the oldest message-log entry the sealer has not chained yet (exports wait for it).",
        ),
        ("hub_build_info", "Always 1; the labels say which build runs."),
    ];
    for (name, help) in gauges {
        describe_gauge!(name, help);
    }
    metrics::gauge!("hub_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}
