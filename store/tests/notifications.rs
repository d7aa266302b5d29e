//! Notifications (the notifications hub kind), the same test functions on
//! SQLite and PostgreSQL.

mod common;

use common::TestDb;
use hubwire_store::{Audience, NewNotification, Notification, Recipient, StoreError};

on_both!(
    a_user_gets_the_notifications_of_their_audiences,
    acknowledge_and_read_are_stored_per_user,
    pages_run_newest_first_with_a_cursor,
    retention_deletes_old_notifications_of_its_hub,
    a_channel_lists_its_own_notifications_newest_first_in_pages,
);

fn new(hub: &str, audience: Audience, title: &str) -> NewNotification {
    NewNotification {
        hub: hub.into(),
        audience,
        kind: "order".into(),
        title: title.into(),
        body: Some(format!("{title} body")),
        data: Some(r#"{"orderId":7}"#.into()),
    }
}

fn titles(ns: &[Notification]) -> Vec<&str> {
    ns.iter().map(|n| n.title.as_str()).collect()
}

fn alice<'a>(channels: &'a [String]) -> Recipient<'a> {
    Recipient {
        user: "alice",
        tenant: Some("t1"),
        channels,
    }
}

async fn a_user_gets_the_notifications_of_their_audiences(db: TestDb) {
    let store = db.open().await;
    let stored = store
        .create_notifications(&[
            new("n", Audience::User("alice".into()), "to alice"),
            new("n", Audience::User("bob".into()), "to bob"),
            new("n", Audience::Tenant("t1".into()), "to t1"),
            new("n", Audience::Tenant("t2".into()), "to t2"),
            new("n", Audience::Channel("orders".into()), "to orders"),
            new("n", Audience::Channel("rides".into()), "to rides"),
            new("n", Audience::All, "to all"),
            new("other", Audience::User("alice".into()), "other hub"),
        ])
        .await
        .expect("create");
    assert_eq!(stored.len(), 8);
    assert!(stored.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    assert_eq!(stored[0].data.as_deref(), Some(r#"{"orderId":7}"#));

    let orders = vec!["orders".to_owned()];
    let got = store
        .notifications_of("n", alice(&orders), true, None, 50)
        .await
        .expect("read");
    assert_eq!(titles(&got), ["to all", "to orders", "to t1", "to alice"]);
    assert_eq!(got[3].audience, Audience::User("alice".into()));
    assert_eq!(got[3].body.as_deref(), Some("to alice body"));
    assert_eq!(got[3].acknowledged_at, None);

    let none = store
        .notifications_of("n", alice(&[]), true, None, 50)
        .await
        .expect("read");
    assert_eq!(titles(&none), ["to all", "to t1", "to alice"]);
    let no_tenant = Recipient {
        user: "carol",
        tenant: None,
        channels: &[],
    };
    let carol = store
        .notifications_of("n", no_tenant, true, None, 50)
        .await
        .expect("read");
    assert_eq!(titles(&carol), ["to all"]);
}

async fn acknowledge_and_read_are_stored_per_user(db: TestDb) {
    let store = db.open().await;
    let stored = store
        .create_notifications(&[
            new("n", Audience::User("alice".into()), "mine"),
            new("n", Audience::Tenant("t1".into()), "tenant"),
            new("n", Audience::User("bob".into()), "bob's"),
            new("n", Audience::Channel("orders".into()), "channel"),
        ])
        .await
        .expect("create");
    let (mine, tenant, bobs, channel) = (stored[0].id, stored[1].id, stored[2].id, stored[3].id);

    let acked = store
        .acknowledge_notification("n", mine, alice(&[]))
        .await
        .expect("ack");
    assert!(acked.acknowledged_at.is_some());
    assert_eq!(acked.read_at, None);
    let unread = store
        .notifications_of("n", alice(&[]), true, None, 50)
        .await
        .expect("unread");
    assert_eq!(titles(&unread), ["tenant", "mine"], "acknowledged is still unread");

    let read = store.read_notification("n", tenant, alice(&[])).await.expect("read");
    let read_at = read.read_at.expect("read_at");
    assert!(read.acknowledged_at.is_some(), "reading acknowledges");
    let again = store
        .read_notification("n", tenant, alice(&[]))
        .await
        .expect("read again");
    assert_eq!(again.read_at, Some(read_at), "the first read counts");
    // A channel's notification may be read after the subscription ended.
    store
        .read_notification("n", channel, alice(&[]))
        .await
        .expect("read channel");

    let unread = store
        .notifications_of("n", alice(&[]), true, None, 50)
        .await
        .expect("unread");
    assert_eq!(titles(&unread), ["mine"]);
    let all = store
        .notifications_of("n", alice(&[]), false, None, 50)
        .await
        .expect("all");
    assert_eq!(titles(&all), ["tenant", "mine"]);
    assert_eq!(all[0].read_at, Some(read_at));

    // Bob's state is his own; alice cannot touch his notification.
    let bob = Recipient {
        user: "bob",
        tenant: Some("t1"),
        channels: &[],
    };
    let bob_unread = store.notifications_of("n", bob, true, None, 50).await.expect("bob");
    assert_eq!(titles(&bob_unread), ["bob's", "tenant"]);
    let refused = store.read_notification("n", bobs, alice(&[])).await;
    assert!(matches!(refused, Err(StoreError::NotFound(_))), "{refused:?}");
    let missing = store
        .acknowledge_notification("n", hubwire_store::MessageId(12345), alice(&[]))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");
    let other_hub = store.read_notification("m", mine, alice(&[])).await;
    assert!(matches!(other_hub, Err(StoreError::NotFound(_))), "{other_hub:?}");
}

async fn pages_run_newest_first_with_a_cursor(db: TestDb) {
    let store = db.open().await;
    let batch: Vec<_> = (0..5)
        .map(|i| new("n", Audience::User("alice".into()), &format!("n{i}")))
        .collect();
    store.create_notifications(&batch).await.expect("create");
    let first = store
        .notifications_of("n", alice(&[]), true, None, 2)
        .await
        .expect("page 1");
    assert_eq!(titles(&first), ["n4", "n3"]);
    let second = store
        .notifications_of("n", alice(&[]), true, Some(first[1].id), 2)
        .await
        .expect("page 2");
    assert_eq!(titles(&second), ["n2", "n1"]);
    let last = store
        .notifications_of("n", alice(&[]), true, Some(second[1].id), 2)
        .await
        .expect("page 3");
    assert_eq!(titles(&last), ["n0"]);
}

async fn retention_deletes_old_notifications_of_its_hub(db: TestDb) {
    let store = db.open().await;
    let old = store
        .create_notifications(&[
            new("n", Audience::User("alice".into()), "old"),
            new("other", Audience::User("alice".into()), "other hub"),
        ])
        .await
        .expect("old");
    store.read_notification("n", old[0].id, alice(&[])).await.expect("read");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let boundary = old[0].created_at + 2;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let new_one = store
        .create_notifications(&[new("n", Audience::User("alice".into()), "new")])
        .await
        .expect("new");
    assert!(old[0].created_at < boundary && boundary < new_one[0].created_at);

    let now = boundary + 30 * 24 * 3600 * 1000;
    assert_eq!(
        store.run_notification_retention("n", 30, now).await.expect("run"),
        Some(1)
    );
    let left = store
        .notifications_of("n", alice(&[]), false, None, 50)
        .await
        .expect("left");
    assert_eq!(titles(&left), ["new"]);
    let other = store
        .notifications_of("other", alice(&[]), false, None, 50)
        .await
        .expect("other");
    assert_eq!(titles(&other), ["other hub"]);
    assert_eq!(
        store.run_notification_retention("n", 30, now).await.expect("again"),
        Some(0)
    );
}

async fn a_channel_lists_its_own_notifications_newest_first_in_pages(db: TestDb) {
    let store = db.open().await;
    let batch: Vec<_> = (0..3)
        .map(|i| new("n", Audience::Channel("orders".into()), &format!("o{i}")))
        .chain([
            new("n", Audience::Channel("rides".into()), "a ride"),
            new("n", Audience::User("alice".into()), "to alice"),
            new("n", Audience::All, "to all"),
            new("other", Audience::Channel("orders".into()), "other hub"),
        ])
        .collect();
    store.create_notifications(&batch).await.expect("create");
    // A user's state is not a channel's: reading one changes nothing here.
    let orders = vec!["orders".to_owned()];
    let mine = store
        .notifications_of("n", alice(&orders), false, None, 50)
        .await
        .expect("alice");
    let o2 = mine
        .iter()
        .find(|n| n.title == "o2")
        .expect("o2 is alice's through the channel");
    store.read_notification("n", o2.id, alice(&orders)).await.expect("read");

    let first = store
        .channel_notifications("n", "orders", None, 2)
        .await
        .expect("page 1");
    assert_eq!(titles(&first), ["o2", "o1"]);
    assert!(first.iter().all(|n| n.audience == Audience::Channel("orders".into())));
    assert!(first.iter().all(|n| n.read_at.is_none() && n.acknowledged_at.is_none()));
    let rest = store
        .channel_notifications("n", "orders", Some(first[1].id), 2)
        .await
        .expect("page 2");
    assert_eq!(titles(&rest), ["o0"]);
    let rides = store
        .channel_notifications("n", "rides", None, 50)
        .await
        .expect("rides");
    assert_eq!(titles(&rides), ["a ride"]);
    assert!(store
        .channel_notifications("n", "nobody", None, 50)
        .await
        .expect("none")
        .is_empty());
}
