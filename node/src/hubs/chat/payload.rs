//! The fields of chat events under their catalog names (the definition lays
//! them out, `crate::hubs::definition::BoundEvent`), and ISO-8601 UTC times.

use serde_json::{json, Map, Value};

use hubwire_store::Message;

/// A stored message's fields: `id` (decimal text: ids exceed JavaScript's
/// exact integers), `conversationId`, `senderId`, `senderName`, `recipientId`
/// (direct messages), `content`, `attachments` (the JSON stored),
/// `clientMessageId`, `sentAt`, and `messageType` when one is stored.
pub fn message_fields(message: &Message, sender_name: Option<&str>, recipient: Option<&str>) -> Map<String, Value> {
    let attachments = message
        .attachments
        .as_deref()
        .map(|text| serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())));
    let fields = json!({
        "id": message.id.to_string(),
        "conversationId": message.conversation_id,
        "senderId": message.sender_id,
        "senderName": sender_name,
        "recipientId": recipient,
        "content": message.content,
        "attachments": attachments,
        "clientMessageId": message.client_message_id,
        "sentAt": iso8601(message.sent_at),
    });
    let mut fields = match fields {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    // None stored: left out, so that the definition's default applies.
    if let Some(kind) = &message.message_type {
        fields.insert("messageType".into(), Value::String(kind.clone()));
    }
    fields
}

/// Fields from `(name, value)` pairs.
pub fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix milliseconds as ISO-8601 UTC with milliseconds
/// (`2024-05-01T12:00:00.000Z`), as .NET's `DateTime` serialises.
pub fn iso8601(unix_ms: i64) -> String {
    let (secs, ms) = (unix_ms.div_euclid(1000), unix_ms.rem_euclid(1000));
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = hubwire_protocol::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubwire_store::MessageId;

    #[test]
    fn times_are_iso_8601_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_714_564_800_000), "2024-05-01T12:00:00.000Z");
        assert_eq!(iso8601(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_message_has_every_field_under_its_catalog_name() {
        let message = Message {
            id: MessageId(9_007_199_254_740_993),
            conversation_id: "c1".into(),
            sender_id: "alice".into(),
            content: "hi".into(),
            attachments: Some(r#"[{"url":"u"}]"#.into()),
            client_message_id: Some("k1".into()),
            sent_at: 1_714_564_800_000,
            key_id: None,
            message_type: Some("Image".into()),
            stored_by: None,
            broadcast_at: None,
        };
        let fields = message_fields(&message, Some("Alice"), None);
        assert_eq!(fields["id"], "9007199254740993", "as text: beyond 2^53");
        assert_eq!(fields["conversationId"], "c1");
        assert_eq!(fields["senderName"], "Alice");
        assert_eq!(fields["recipientId"], Value::Null);
        assert_eq!(fields["attachments"], json!([{ "url": "u" }]));
        assert_eq!(fields["clientMessageId"], "k1");
        assert_eq!(fields["sentAt"], "2024-05-01T12:00:00.000Z");
        assert_eq!(fields["messageType"], "Image");
        let untyped = Message {
            message_type: None,
            ..message
        };
        assert!(
            !message_fields(&untyped, None, None).contains_key("messageType"),
            "left to the definition's default"
        );
    }
}
