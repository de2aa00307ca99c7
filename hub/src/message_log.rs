//! The message log (报文日志) at work: the sealer chains what was logged, in the order it finds
//! it, and the hub signs a checkpoint over the chain's end at least once a minute while
//! messages flow; an export writes a case's bundle ([`crate::evidence`]), which `verify.sh`
//! checks with standard tools.
//!
//! Entries are written with the work that caused them (a message's claim, the outbox's
//! trigger), never chained there: chaining needs the previous hash, and taking it in every
//! consumer transaction would serialize them all. One sealer at a time (a transaction lock)
//! chains them afterwards, so the chain's order is the order in which entries became visible.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use certs::signature::Signer;
use chrono::{SubsecRound, Utc};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::context::Context;
use crate::evidence::{self, Direction, Entry, Exported};
pub use crate::store::message_log::Selection;
use crate::store::message_log::{self as log, Logged};

/// Entries chained per transaction, at most.
const BATCH: i64 = 2000;
/// A checkpoint at least this often while entries are chained.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);

fn entry(position: i64, l: &Logged) -> Entry {
    Entry {
        position,
        at: l.at.trunc_subsecs(3),
        direction: if l.direction == "out" { Direction::Out } else { Direction::In },
        party: l.party.clone(),
        message_id: l.message_id,
        message_type: l.message_type.clone(),
        case_id: l.case_id,
        group_id: l.group_id,
        body_sha256: l.body_sha256.as_slice().try_into().unwrap_or([0; 32]),
        signer: l.signer.clone(),
    }
}

fn hash32(bytes: &[u8]) -> [u8; 32] {
    bytes.try_into().unwrap_or(evidence::GENESIS)
}

/// Chains what is waiting (up to [`BATCH`] entries) and, when `checkpoint` says so or the last
/// checkpoint is older than [`CHECKPOINT_EVERY`], signs a checkpoint over the new end. Returns
/// how many entries it chained; 0 also when another process is sealing.
///
/// # Errors
/// Database errors.
pub async fn seal(ctx: &Context, signer: &Signer, checkpoint: bool) -> Result<usize> {
    let mut tx = ctx.pool.begin().await?;
    if !log::lock_sealer(&mut tx).await? {
        return Ok(0);
    }
    let taken = log::take_unsealed(&mut tx, BATCH).await?;
    let (mut position, mut prev) = match log::last_link(&mut tx).await? {
        Some((p, h)) => (p, hash32(&h)),
        None => (0, evidence::GENESIS),
    };
    let mut links = Vec::with_capacity(taken.len());
    for l in &taken {
        position += 1;
        prev = entry(position, l).hash(&prev);
        links.push((position, l.entry_id, prev));
    }
    if !links.is_empty() {
        log::link(&mut tx, &links).await?;
    }
    let last = log::last_checkpoint(&mut tx).await?;
    let stale = last.as_ref().is_none_or(|c| {
        c.position < position && Utc::now() - c.at > chrono::Duration::from_std(CHECKPOINT_EVERY).unwrap_or_default()
    });
    let behind = last.as_ref().is_none_or(|c| c.position < position);
    if position > 0 && behind && (checkpoint || stale) {
        let made = evidence::Checkpoint { position, hash: prev, at: Utc::now().trunc_subsecs(3) };
        let signature = signer.sign(made.meta().as_bytes());
        let certificate = certs::CertInfo::parse_der(signer.cert_der()).map(|c| c.pem()).unwrap_or_default();
        log::checkpoint(
            &mut tx,
            &log::Checkpoint {
                position,
                hash: prev.to_vec(),
                at: made.at,
                signature: signature.value,
                signer: signature.signer,
                certificate,
            },
        )
        .await?;
    }
    tx.commit().await?;
    metrics::counter!("hub_message_log_sealed_total").increment(links.len() as u64);
    Ok(links.len())
}

/// Seals until `shutdown`, every second or at once while there is more.
pub async fn run(ctx: Context, mut shutdown: watch::Receiver<bool>) {
    let signer = match Signer::load(&ctx.settings.broker.cert, &ctx.settings.broker.key) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "The message log cannot be sealed: the hub's key does not sign.");
            return;
        }
    };
    loop {
        let wait = match seal(&ctx, &signer, false).await {
            Ok(n) if n as i64 >= BATCH => Duration::ZERO,
            Ok(_) => Duration::from_secs(1),
            Err(e) => {
                warn!(error = format!("{e:#}"), "Sealing the message log failed; retrying.");
                Duration::from_secs(5)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => if *shutdown.borrow() { return },
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Entries in the bundle, and how many of them are selected (with their bytes).
    pub entries: usize,
    pub selected: usize,
    /// The positions it spans, the last sealed by the hub's checkpoint.
    pub from: i64,
    pub to: i64,
}

/// What [`export`] names in the bundle, and in its log line.
fn described(selection: Selection) -> String {
    match selection {
        Selection::Case(case) => format!("case {case}"),
        Selection::Group(group) => format!("problem group {group}"),
        Selection::Logged(from, until) => format!("logged from {} until {}", from.to_rfc3339(), until.to_rfc3339()),
    }
}

/// The bundle of a case's entries, a problem group's, or those logged in a time range: the
/// selected entries with their bytes and signatures, the entries in between by their text
/// alone (the chain stays checkable, other cases stay private), the signers' certificates, the
/// checkpoint that seals the last, and the hub's signed statement of where it starts and what
/// it selected. Waits (up to a minute) for the selected entries to be chained, and makes a
/// checkpoint if none seals them yet.
///
/// # Errors
/// [`NothingLogged`] when nothing is selected; a sealer that does not keep up, database errors.
pub async fn bundle(ctx: &Context, signer: &Signer, selection: Selection) -> Result<(evidence::Bundle, Written)> {
    let what = described(selection);
    let mut conn = ctx.pool.acquire().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (first, last) = loop {
        let (first, last, waiting) = log::span(&mut conn, selection).await?;
        if waiting == 0 {
            match (first, last) {
                (Some(f), Some(l)) => break (f, l),
                _ => return Err(NothingLogged(what).into()),
            }
        }
        if std::time::Instant::now() > deadline {
            bail!("{waiting} messages of {what} are not sealed yet: is the hub's sealer running?");
        }
        seal(ctx, signer, false).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The hub's own sealer may hold the sealer's lock at this moment (then `seal` does
    // nothing): ask again until a checkpoint covers the last entry.
    let sealed = loop {
        if let Some(c) = log::checkpoint_from(&mut conn, last).await? {
            break c;
        }
        if std::time::Instant::now() > deadline {
            bail!("no checkpoint seals {what} yet: is another process holding the sealer's lock?");
        }
        if seal(ctx, signer, true).await? == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    // The export statement is signed with the current key: its certificate must be the one
    // that signed the checkpoint, else the bundle names two hub certificates.
    if signer.fingerprint() != sealed.signer {
        bail!("the checkpoint was signed by another hub certificate ({}); export with that key", sealed.signer);
    }
    let links = log::links(&mut conn, first, sealed.position, selection).await?;
    let prev = match first {
        1 => evidence::GENESIS,
        p => hash32(&log::hash_at(&mut conn, p - 1).await?.context("a gap in the chain")?),
    };
    let mut signers: Vec<String> =
        links.iter().filter(|l| l.body.is_some()).filter_map(|l| l.entry.signer.clone()).collect();
    signers.sort();
    signers.dedup();
    let certificates = log::certificates(&mut conn, &signers).await?;
    let entries: Vec<Exported> = links
        .iter()
        .map(|l| Exported { entry: entry(l.position, &l.entry), body: l.body.clone(), signature: l.signature.clone() })
        .collect();
    let selected = entries.iter().filter(|e| e.body.is_some()).count();
    let Some(head) = entries.first() else { bail!("no links from {first} to {}", sealed.position) };
    let export = evidence::export_meta(&head.entry, &prev, &what, Utc::now().trunc_subsecs(3));
    let export_sig = signer.sign(export.as_bytes()).value;
    let checkpoint = evidence::Checkpoint { position: sealed.position, hash: hash32(&sealed.hash), at: sealed.at };
    let written = Written { entries: entries.len(), selected, from: first, to: sealed.position };
    let bundle = evidence::Bundle {
        prev,
        entries,
        certificates,
        hub_certificate: sealed.certificate.clone(),
        checkpoint: (checkpoint, sealed.signature.clone()),
        export: (export, export_sig),
    };
    info!(selection = %what, entries = written.entries, selected, from = first, to = sealed.position, "Message-log bundle exported.");
    Ok((bundle, written))
}

/// Nothing of the selection is in the message log.
#[derive(Debug, thiserror::Error)]
#[error("no message of {0} is in the message log")]
pub struct NothingLogged(pub String);

/// Writes the [`bundle`] of `selection` to `dir`.
///
/// # Errors
/// As [`bundle`], and file errors.
pub async fn export(ctx: &Context, signer: &Signer, selection: Selection, dir: &std::path::Path) -> Result<Written> {
    let (bundle, written) = bundle(ctx, signer, selection).await?;
    evidence::write(dir, &bundle).with_context(|| format!("Failed to write the bundle to {}", dir.display()))?;
    Ok(written)
}
