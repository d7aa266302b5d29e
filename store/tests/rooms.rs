//! Room membership grants (the rooms hub kind), on SQLite and PostgreSQL.

mod common;

use common::TestDb;

on_both!(grants_come_and_go_per_hub_and_room, grants_survive_a_reopen);

async fn grants_come_and_go_per_hub_and_room(db: TestDb) {
    let store = db.open().await;
    assert!(!store.is_room_member("rooms", "r1", "alice").await.expect("check"));
    assert!(store.grant_room("rooms", "r1", "alice").await.expect("grant"));
    assert!(
        !store.grant_room("rooms", "r1", "alice").await.expect("grant again"),
        "a repeat grants nothing new"
    );
    assert!(store.grant_room("rooms", "r1", "bob").await.expect("grant"));
    assert!(store.is_room_member("rooms", "r1", "alice").await.expect("check"));
    // Another room, another hub: not granted.
    assert!(!store.is_room_member("rooms", "r2", "alice").await.expect("check"));
    assert!(!store
        .is_room_member("shopping-list", "r1", "alice")
        .await
        .expect("check"));
    assert_eq!(
        store.room_members("rooms", "r1").await.expect("list"),
        vec!["alice", "bob"]
    );
    assert!(store.revoke_room("rooms", "r1", "alice").await.expect("revoke"));
    assert!(!store.revoke_room("rooms", "r1", "alice").await.expect("revoke again"));
    assert!(!store.is_room_member("rooms", "r1", "alice").await.expect("check"));
    assert_eq!(store.room_members("rooms", "r1").await.expect("list"), vec!["bob"]);
}

async fn grants_survive_a_reopen(db: TestDb) {
    {
        let store = db.open().await;
        assert!(store.grant_room("h", "list-1", "carol").await.expect("grant"));
    }
    let store = db.open().await;
    assert!(store.is_room_member("h", "list-1", "carol").await.expect("check"));
}
