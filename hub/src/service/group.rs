//! Group commit (组提交): the messages a worker has taken, in one transaction and one commit —
//! one fsync — each with the outcome it would have had alone, in order. Written in batches
//! (one claim, one write of what they send, consecutive `index.upsert`s as one batch); if that
//! fails, taken again message by message under savepoints, so that a message that fails spoils
//! none of the others.

use anyhow::Result;
use chrono::{SubsecRound, Utc};
use futures_util::FutureExt;
use schemas::ids::ProvinceCode;
use schemas::messages::{Body, IndexUpsert};
use tracing::{debug, warn};

use super::{Handled, Inbound, Read, Readable, Unit, admitted, dead_letter, handle_in, read};
use crate::context::Context;
use crate::failpoint;
use crate::handlers;
use crate::store::inbox;

/// Group commit (组提交): processes `msgs` in one transaction and commits once — one fsync —
/// for all of them, with the same outcome for each as if it had been processed alone, in
/// order. Returns what became of the committed prefix (all of them, unless one failed); the
/// caller acknowledges those and takes the first one after them alone ([`handle`]), where its
/// failure is told apart (transient, or for good).
///
/// The group is first written in batches ([`handle_batch`]): one claim for all, one write of
/// everything they send, consecutive `index.upsert`s as one batch. If that fails, nothing of
/// it is kept and the group is processed again message by message, each under a savepoint
/// ([`handle_each`]), so that a message that fails spoils none of the others.
pub async fn handle_group(ctx: &Context, msgs: &[Inbound<'_>]) -> Vec<Handled> {
    match std::panic::AssertUnwindSafe(handle_batch(ctx, msgs)).catch_unwind().await {
        Ok(Ok(handled)) => handled,
        Ok(Err(e)) => {
            debug!(error = format!("{e:#}"), messages = msgs.len(), "Group failed in batches; taken one by one.");
            handle_each(ctx, msgs).await
        }
        Err(panic) => {
            warn!(
                panic = crate::retry::panic_text(&panic),
                messages = msgs.len(),
                "Group panicked in batches; taken one by one."
            );
            handle_each(ctx, msgs).await
        }
    }
}

/// The group in one transaction, in batches: every message read first (no I/O but, the first
/// time, the certificate its signature names); every
/// readable message of an admitted sender claimed in one statement; then the messages handled
/// in order — consecutive `index.upsert`s as one batch ([`handlers::dispatch_index_upserts`]) —
/// with what they send gathered and written in one statement at the end. A message whose id
/// came earlier in the group is processed as if alone ([`handle_in`]) at its turn, which finds
/// the earlier one's claim. All or nothing: `Err` keeps nothing.
///
/// # Errors
/// Any failure of any message, or of the transaction.
async fn handle_batch(ctx: &Context, msgs: &[Inbound<'_>]) -> Result<Vec<Handled>> {
    let started = std::time::Instant::now();
    let now = Utc::now().trunc_subsecs(3);
    let mut tx = ctx.pool.begin().await?;
    // The certificates their signatures name: from memory but the first time.
    let mut signers = Vec::with_capacity(msgs.len());
    for m in msgs {
        signers.push(m.signer(&mut tx, ctx).await?);
    }
    let items: Vec<Read<'_>> = msgs.iter().zip(&signers).map(|(m, s)| read(ctx, *m, s.as_deref())).collect();
    // Each (sender, id) is claimed in the batch at its first occurrence only.
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let first: Vec<bool> = items.iter().map(|i| seen.insert((i.key(), i.id()))).collect();
    let batched: Vec<usize> =
        (0..items.len()).filter(|&i| first[i] && matches!(items[i].what, Readable::Envelope { .. })).collect();
    let claims: Vec<inbox::NewClaim<'_>> = batched.iter().filter_map(|&i| items[i].new_claim()).collect();

    let claimed = inbox::claim_all_if_admitted(&mut tx, &claims).await?;
    let mut claim_of: Vec<Option<Option<inbox::Claim>>> = vec![None; items.len()];
    for (&i, c) in batched.iter().zip(claimed) {
        claim_of[i] = Some(c);
    }

    let mut unit = Unit::default();
    let mut handled: Vec<Handled> = Vec::with_capacity(items.len());
    // Processed as if alone: logged there already.
    let mut alone = vec![false; items.len()];
    let mut i = 0;
    while i < items.len() {
        let item = &items[i];
        let Some(claim) = claim_of[i] else {
            // Poison before any claim, or an id that came earlier in this group: as if alone,
            // after what the group sends so far.
            unit.pending.flush(&mut tx).await?;
            handled.push(match &item.what {
                Readable::Poison { key, id, poison } => {
                    dead_letter(&mut tx, ctx, &item.msg, key, *id, &item.digest, poison.clone(), now).await?
                }
                Readable::Envelope { .. } => {
                    alone[i] = true;
                    handle_in(&mut tx, ctx, item.msg).await?
                }
            });
            i += 1;
            continue;
        };
        // A run of new `index.upsert`s, processed as one batch.
        let run: Vec<(ProvinceCode, &IndexUpsert)> = items[i..]
            .iter()
            .zip(&claim_of[i..])
            .map_while(|(item, claim)| match (claim, item.envelope()) {
                (Some(Some(inbox::Claim::New)), Some((sender, env))) => match &env.body {
                    Body::IndexUpsert(b) => Some((sender.province()?, b)),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        if !run.is_empty() {
            let effects = handlers::dispatch_index_upserts(&mut tx, &run, now).await?;
            for (item, effects) in items[i..].iter().zip(effects) {
                handled.push(unit.add(item, effects, now));
            }
            i += run.len();
            continue;
        }
        handled.push(admitted(&mut tx, ctx, item, claim, now, &mut unit).await?);
        i += 1;
    }
    unit.finish(&mut tx).await?;
    failpoint::pass(failpoint::CONSUMER_BEFORE_COMMIT);
    tx.commit().await?;
    for ((item, h), alone) in items.iter().zip(&handled).zip(alone) {
        if !alone {
            item.log(h, started);
        }
    }
    Ok(handled)
}

/// The group message by message, each under its own savepoint, up to the first whose
/// processing fails (rolled back to its savepoint, so it leaves nothing behind), and commits.
/// A failure of the transaction itself commits nothing and returns an empty list; a commit
/// whose answer was lost is recognized by the inbox when its messages are taken again.
async fn handle_each(ctx: &Context, msgs: &[Inbound<'_>]) -> Vec<Handled> {
    let Ok(mut tx) = ctx.pool.begin().await else { return vec![] };
    let mut handled = Vec::with_capacity(msgs.len());
    for msg in msgs {
        // The first message needs no savepoint: if it fails, nothing is committed. After it,
        // one round trip folds the previous message's savepoint into the transaction and sets
        // a new one for this message.
        let mark = match handled.len() {
            0 => None,
            1 => Some("SAVEPOINT msg"),
            _ => Some("RELEASE SAVEPOINT msg; SAVEPOINT msg"),
        };
        if let Some(mark) = mark
            && sqlx::raw_sql(mark).execute(&mut *tx).await.is_err()
        {
            return vec![];
        }
        // A panic counts as a failure of this message; it is taken alone next.
        match std::panic::AssertUnwindSafe(handle_in(&mut tx, ctx, *msg)).catch_unwind().await {
            Ok(Ok(h)) => handled.push(h),
            _ => {
                if mark.is_none() {
                    // The transaction holds nothing else: rolled back as it is dropped.
                    return vec![];
                }
                if sqlx::raw_sql("ROLLBACK TO SAVEPOINT msg").execute(&mut *tx).await.is_err() {
                    return vec![];
                }
                break;
            }
        }
    }
    if handled.is_empty() {
        return handled;
    }
    failpoint::pass(failpoint::CONSUMER_BEFORE_COMMIT);
    if let Err(e) = tx.commit().await {
        warn!(error = %e, messages = handled.len(), "Group commit failed; its messages are taken one by one.");
        return vec![];
    }
    handled
}
