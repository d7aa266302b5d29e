//! `[hub.notifications]` checked, with its defaults: retention, the group
//! templates of tenants and channels, and the sizes of notifications.

use crate::core::definition::HubTable;
use crate::hubs::definition::{DefinitionError, ID_PLACEHOLDER};
use crate::hubs::limits::check_chars;
use hubwire_store::{Audience, NewNotification};

/// The field of [`Settings::max_name_chars`], as refusals name it.
const NAME_FIELD: &str = "notifications.max_name_chars";

/// The settings of a notifications hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Days a notification is kept; 0: forever.
    pub retention_days: u32,
    /// The tenant group template (with `{id}`).
    pub tenant_group: String,
    /// The channel group template (with `{id}`).
    pub channel_group: String,
    /// The most notifications of one REST batch.
    pub max_batch: usize,
    /// The most notifications `GetUnreadNotifications` returns.
    pub max_unread: usize,
    /// The longest title, in characters.
    pub max_title_chars: usize,
    /// The longest body, in characters.
    pub max_body_chars: usize,
    /// The most bytes of `data` as JSON.
    pub max_data_bytes: usize,
    /// The longest channel name, tenant and `type`, in characters.
    pub max_name_chars: usize,
}

impl Settings {
    /// The settings of `table` (a hub of the notifications kind), checked.
    pub fn resolve(table: &HubTable) -> Result<Self, DefinitionError> {
        let written = table.notifications.clone().unwrap_or_default();
        let error = |field: &str, reason: String| DefinitionError {
            hub: table.path.clone(),
            field: format!("notifications.{field}"),
            reason,
        };
        let template = |field: &str, value: Option<String>, default: &str| {
            let value = value.unwrap_or_else(|| format!("{default}{ID_PLACEHOLDER}"));
            if value.contains(ID_PLACEHOLDER) {
                Ok(value)
            } else {
                Err(error(field, format!("{value:?} has no {ID_PLACEHOLDER}")))
            }
        };
        let settings = Self {
            retention_days: written.retention_days.unwrap_or(30),
            tenant_group: template("tenant_group", written.tenant_group, "tenant_")?,
            channel_group: template("channel_group", written.channel_group, "channel_")?,
            max_batch: written.max_batch.unwrap_or(100),
            max_unread: written.max_unread.unwrap_or(100),
            max_title_chars: written.max_title_chars.unwrap_or(256),
            max_body_chars: written.max_body_chars.unwrap_or(4000),
            max_data_bytes: written.max_data_bytes.unwrap_or(16_384),
            max_name_chars: written.max_name_chars.unwrap_or(128),
        };
        for (field, value) in [
            ("max_batch", settings.max_batch),
            ("max_unread", settings.max_unread),
            ("max_title_chars", settings.max_title_chars),
            ("max_body_chars", settings.max_body_chars),
            ("max_data_bytes", settings.max_data_bytes),
            ("max_name_chars", settings.max_name_chars),
        ] {
            if value == 0 {
                return Err(error(field, "must be positive".into()));
            }
        }
        if settings.tenant_group.replace(ID_PLACEHOLDER, "") == settings.channel_group.replace(ID_PLACEHOLDER, "") {
            return Err(error(
                "channel_group",
                "must differ from tenant_group, or a channel could be named like a tenant".into(),
            ));
        }
        Ok(settings)
    }

    /// The group of tenant `id`.
    pub fn tenant_group_of(&self, id: &str) -> String {
        self.tenant_group.replace(ID_PLACEHOLDER, id)
    }

    /// The group of channel `id`.
    pub fn channel_group_of(&self, id: &str) -> String {
        self.channel_group.replace(ID_PLACEHOLDER, id)
    }

    /// Refuses a channel name that is empty or beyond `max_name_chars`.
    pub fn check_channel(&self, channel: &str) -> Result<(), String> {
        check_chars("A channel name", channel, self.max_name_chars, NAME_FIELD)
    }

    /// Refuses a notification beyond the sizes, or with an empty type or
    /// title: the text names the field and the limit. (Its user id is
    /// bounded by the hub's `limits.max_user_id_chars`, which the caller
    /// checks.)
    pub fn check(&self, n: &NewNotification) -> Result<(), String> {
        if n.kind.trim().is_empty() {
            return Err("\"type\" must be a non-empty string".into());
        }
        let max = self.max_name_chars;
        let named = |what: &str, value: &str| {
            check_chars(what, value, max, NAME_FIELD)
                .map_err(|_| format!("\"{what}\" is longer than {max} characters ({NAME_FIELD})"))
        };
        named("type", &n.kind)?;
        match &n.audience {
            Audience::Tenant(t) => named("tenant", t)?,
            Audience::Channel(c) => named("channel", c)?,
            Audience::User(_) | Audience::All => {}
        }
        if n.title.trim().is_empty() {
            return Err("\"title\" must be a non-empty string".into());
        }
        if n.title.chars().count() > self.max_title_chars {
            return Err(format!(
                "\"title\" is longer than {} characters (notifications.max_title_chars)",
                self.max_title_chars
            ));
        }
        if n.body
            .as_deref()
            .is_some_and(|b| b.chars().count() > self.max_body_chars)
        {
            return Err(format!(
                "\"body\" is longer than {} characters (notifications.max_body_chars)",
                self.max_body_chars
            ));
        }
        if n.data.as_deref().is_some_and(|d| d.len() > self.max_data_bytes) {
            return Err(format!(
                "\"data\" is more than {} bytes of JSON (notifications.max_data_bytes)",
                self.max_data_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table(extra: &str) -> HubTable {
        toml::from_str(&format!("kind = \"notifications\"\npath = \"/hubs/n\"\n{extra}")).unwrap()
    }

    #[test]
    fn defaults_and_checks() {
        let s = Settings::resolve(&table("")).unwrap();
        assert_eq!(s.retention_days, 30);
        assert_eq!(s.tenant_group_of("acme"), "tenant_acme");
        assert_eq!(s.channel_group_of("orders"), "channel_orders");
        let bad = Settings::resolve(&table("[notifications]\ntenant_group = \"t\"")).unwrap_err();
        assert_eq!(bad.field, "notifications.tenant_group");
        let same = Settings::resolve(&table(
            "[notifications]\ntenant_group = \"x{id}\"\nchannel_group = \"x{id}\"",
        ));
        assert_eq!(same.unwrap_err().field, "notifications.channel_group");
        let zero = Settings::resolve(&table("[notifications]\nmax_batch = 0")).unwrap_err();
        assert_eq!(zero.field, "notifications.max_batch");
        let n = NewNotification {
            hub: "n".into(),
            audience: hubwire_store::Audience::All,
            kind: "order".into(),
            title: "x".repeat(257),
            body: None,
            data: None,
        };
        assert!(s.check(&n).unwrap_err().contains("max_title_chars"));
        let ok = NewNotification {
            title: "fine".into(),
            ..n.clone()
        };
        assert!(s.check(&ok).is_ok());
        let untyped = NewNotification {
            kind: " ".into(),
            ..ok.clone()
        };
        assert!(s.check(&untyped).unwrap_err().contains("type"));
        assert_eq!(s.max_name_chars, 128);
        let long_type = NewNotification {
            kind: "t".repeat(129),
            ..ok.clone()
        };
        assert_eq!(
            s.check(&long_type).unwrap_err(),
            "\"type\" is longer than 128 characters (notifications.max_name_chars)"
        );
        let long_channel = NewNotification {
            audience: hubwire_store::Audience::Channel("c".repeat(129)),
            ..ok.clone()
        };
        assert!(s.check(&long_channel).unwrap_err().starts_with("\"channel\" is longer"));
        let long_tenant = NewNotification {
            audience: hubwire_store::Audience::Tenant("t".repeat(129)),
            ..ok.clone()
        };
        assert!(s.check(&long_tenant).unwrap_err().starts_with("\"tenant\" is longer"));
        assert!(s.check_channel(&"c".repeat(128)).is_ok());
        assert_eq!(
            s.check_channel(&"c".repeat(129)).unwrap_err(),
            "A channel name must be 1 to 128 characters (notifications.max_name_chars)."
        );
        let narrow = Settings::resolve(&table("[notifications]\nmax_name_chars = 4")).unwrap();
        assert!(narrow.check_channel("abcde").unwrap_err().contains("1 to 4 characters"));
        let zero = Settings::resolve(&table("[notifications]\nmax_name_chars = 0")).unwrap_err();
        assert_eq!(zero.field, "notifications.max_name_chars");
    }
}
