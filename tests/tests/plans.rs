//! Statements on paths that run for every message or batch read by index whatever the
//! planner's statistics say: a table not yet analyzed (a new hub's first load, a restored
//! database) has none, and the planner then guesses that a few keys match a fair part of the
//! table. Each test fills a table that was never analyzed and checks, from the transaction's
//! own scan counts, that the statement read no table sequentially.

use e2e::inprocess::Hub;

/// This transaction's scans of `table`, before they are reported: none sequential, one or
/// more by index.
async fn assert_read_by_index(tx: &mut sqlx::PgConnection, table: &str) {
    let (seq, idx): (i64, i64) =
        sqlx::query_as("SELECT seq_scan, COALESCE(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = $1")
            .bind(table)
            .fetch_one(tx)
            .await
            .unwrap();
    assert_eq!(seq, 0, "no sequential scan of {table}");
    assert!(idx >= 1, "{table} read by index: {idx} index scans");
}

/// A batch's national de-duplication probes the document index once per number, even on a
/// table never analyzed (a new hub's first load, a restored database): without statistics the
/// planner took a batch's numbers, asked together, to match a fair part of the table and read
/// it whole for every batch.
#[tokio::test]
async fn de_duplicating_a_batch_probes_the_document_index_on_a_table_never_analyzed() {
    let hub = Hub::new(&["37"], "").await;
    sqlx::query(
        "INSERT INTO student_index (student_id, province, name, sex, birth_date, document_type, document_no,
                                    school, grade, status, problem_record, open_business, changed_at)
         SELECT 'G' || lpad(n::text, 18, '0'), '37', repeat('名', 8), '1', DATE '2012-01-01' + n % 2000, '1',
                '37010420' || lpad(n::text, 10, '0'), '3701040001', '21', '01', false, false, now()
         FROM generate_series(1, 20000) n",
    )
    .execute(&hub.pool)
    .await
    .unwrap();
    let mut tx = hub.pool.begin().await.unwrap();
    // Numbers not held: the plan is what is checked, not what it finds.
    let numbers: Vec<String> = (0..48).map(|n| format!("44010520{n:010}")).collect();
    let found = hub::store::index::by_resident_ids(&mut tx, &numbers).await.unwrap();
    assert!(found.is_empty());
    assert_read_by_index(&mut tx, "student_index").await;
}

/// The sealer takes its batch of entries by key, however far behind it is: asked as
/// `IN (subquery)`, the ids were joined to a sequential scan of the whole queue.
#[tokio::test]
async fn the_sealer_takes_its_batch_by_key_from_a_long_queue_never_analyzed() {
    let hub = Hub::new(&["37"], "").await;
    sqlx::query("INSERT INTO message_log_unsealed SELECT generate_series(1, 40000)").execute(&hub.pool).await.unwrap();
    let mut tx = hub.pool.begin().await.unwrap();
    // Queue entries without log entries: the plan is what is checked, and which were taken.
    let taken = hub::store::message_log::take_unsealed(&mut tx, 2000).await.unwrap();
    assert!(taken.is_empty());
    assert_read_by_index(&mut tx, "message_log_unsealed").await;
    let (left, first): (i64, i64) =
        sqlx::query_as("SELECT count(*), min(entry_id) FROM message_log_unsealed").fetch_one(&mut *tx).await.unwrap();
    assert_eq!((left, first), (38000, 2001), "the oldest 2,000 taken, the rest left");
}
