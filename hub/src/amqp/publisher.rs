//! Publishing with confirms, for the outbox relay.

use anyhow::{Context, Result};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};

use certs::signature::Signer;
use schemas::topology::{SIGNATURE_HEADER, SIGNER_CERTIFICATE_HEADER, SIGNER_HEADER};

use crate::store::outbox::Pending;

/// What the broker said about one publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Routed to a queue and confirmed: it is the broker's now.
    Confirmed,
    /// No queue for this routing key: an error, never a silent drop.
    Unroutable(String),
    /// The broker refused it.
    Nacked,
}

/// A confirm-mode channel, and the hub's key that signs what it sends.
pub struct Publisher {
    channel: Channel,
    signer: Signer,
    /// The hub's certificate in a header: adapters check it against their exchange CA.
    certificate: LongString,
}

impl Publisher {
    /// # Errors
    /// When the channel cannot be opened.
    pub async fn open(conn: &Connection, signer: Signer) -> Result<Publisher> {
        let channel = conn.create_channel().await.context("Failed to open the relay channel")?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        let certificate = LongString::from(signer.cert_base64());
        Ok(Publisher { channel, signer, certificate })
    }

    /// Sends a row (persistent, mandatory), signed; returns the confirm to await.
    ///
    /// # Errors
    /// When the channel fails.
    pub async fn send(&self, row: &Pending) -> Result<PublisherConfirm> {
        let mut headers = FieldTable::default();
        if let Some(map) = row.headers.as_object() {
            for (k, v) in map {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                headers.insert(k.as_str().into(), AMQPValue::LongString(LongString::from(text)));
            }
        }
        let signature = self.signer.sign(&row.body);
        headers.insert(SIGNATURE_HEADER.into(), AMQPValue::LongString(signature.value_base64().into()));
        headers.insert(SIGNER_HEADER.into(), AMQPValue::LongString(signature.signer.into()));
        headers.insert(SIGNER_CERTIFICATE_HEADER.into(), AMQPValue::LongString(self.certificate.clone()));
        let mut props = BasicProperties::default()
            .with_message_id(row.message_id.to_string().into())
            .with_user_id("hub".into())
            .with_app_id("xueji-hub".into())
            .with_content_type("application/xml".into())
            .with_delivery_mode(2)
            .with_type(row.message_type.as_str().into())
            .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64)
            .with_headers(headers);
        if let Some(c) = &row.correlation_id {
            props = props.with_correlation_id(c.as_str().into());
        }
        let confirm = self
            .channel
            .basic_publish(
                row.exchange.as_str().into(),
                row.routing_key.as_str().into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                &row.body,
                props,
            )
            .await
            .context("Failed to publish")?;
        Ok(confirm)
    }
}

/// Waits for the broker's verdict on one publication.
///
/// # Errors
/// When the channel fails before the confirm arrives.
pub async fn outcome(confirm: PublisherConfirm) -> Result<Published> {
    Ok(match confirm.await.context("Lost the publisher confirm")? {
        Confirmation::Ack(None) => Published::Confirmed,
        Confirmation::Ack(Some(returned)) => Published::Unroutable(returned.reply_text.to_string()),
        Confirmation::Nack(_) => Published::Nacked,
        Confirmation::NotRequested => unreachable!("the channel is in confirm mode"),
    })
}
