//! The provisioned broker speaks mutual TLS with EXTERNAL authentication, and a message of the
//! exchange survives the trip byte for byte.

use e2e::DevEnv;
use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use schemas::codec::{self, DEFAULT_MAX_BYTES};
use schemas::{MessageType, samples};

#[tokio::test]
async fn a_message_travels_over_mutual_tls_and_parses_back_identical() {
    let env = DevEnv::load().expect("services provisioned by tests/services.sh");
    let conn = env.connect("xueji", &env.hub_cert, &env.hub_key).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let q = ch
        .queue_declare("".into(), QueueDeclareOptions { exclusive: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap();
    let sent = samples::envelope(MessageType::TransferApply);
    let confirm = ch
        .basic_publish(
            "".into(),
            q.name().as_str().into(),
            BasicPublishOptions { mandatory: true, ..Default::default() },
            codec::to_xml(&sent).as_bytes(),
            BasicProperties::default().with_user_id("hub".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let mut consumer = ch
        .basic_consume(q.name().clone(), "t".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let delivery =
        tokio::time::timeout(std::time::Duration::from_secs(10), consumer.next()).await.unwrap().unwrap().unwrap();
    // The broker checked user_id against the certificate's CN: it is the authenticated user.
    assert_eq!(delivery.properties.user_id().as_ref().map(|u| u.as_str()), Some("hub"));
    assert_eq!(codec::from_xml(&delivery.data, DEFAULT_MAX_BYTES).unwrap(), sent);
}
