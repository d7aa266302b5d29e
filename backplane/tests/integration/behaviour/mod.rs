//! One behaviour suite for every backplane: each test runs on three nodes of
//! the in-process bus (`on_local`) and on three Redis backplanes sharing one
//! `redis-server` under a prefix of their own (`on_redis`).
//!
//! - [`delivery`]: publish to every kind of target, unsubscribe, shutdown.
//! - [`membership`]: connections, limits, groups, users and counts.
//! - [`user_state`]: rate buckets, a user's first and last connection, last
//!   seen, cached read positions, room presence.

mod delivery;
mod membership;
mod user_state;

use hubwire_backplane::HubName;

macro_rules! suite {
    ($($module:ident: [$($name:ident),* $(,)?]),* $(,)?) => {
        mod on_local {
            $(mod $module {
                $(
                    #[tokio::test]
                    async fn $name() {
                        let cluster = crate::common::TestCluster::local(3).await;
                        crate::behaviour::$module::$name(cluster).await;
                    }
                )*
            })*
        }
        mod on_redis {
            $(mod $module {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let cluster = crate::common::TestCluster::redis(3).await;
                        crate::behaviour::$module::$name(cluster).await;
                    }
                )*
            })*
        }
    };
}

suite!(
    delivery: [
        publish_to_all_reaches_each_subscribed_other_node_once,
        publish_to_group_reaches_only_its_subscribers,
        publish_to_user_reaches_only_its_subscribers,
        publish_to_connection_reaches_only_the_node_holding_it,
        a_publish_right_after_a_subscribe_returns_is_delivered,
        unsubscribe_stops_delivery,
        shutdown_leaves_the_cluster,
    ],
    membership: [
        register_unregister_and_lookup,
        per_user_limit_holds_cluster_wide,
        group_join_leave_and_listing,
        user_memberships_follow_their_ttl,
        remove_user_from_group_and_from_all_groups,
        counts_span_every_node,
    ],
    user_state: [
        rate_limit_holds_across_nodes,
        rate_bucket_refills,
        one_first_and_one_last_connection_under_concurrency,
        last_seen_is_written_when_the_last_connection_goes,
        read_positions_are_cached_cluster_wide,
        room_presence_is_shared_per_room_and_expires,
        one_first_and_one_last_entry_of_a_user_in_a_room_under_concurrency,
        a_dead_nodes_room_entries_are_taken_by_its_sweeper,
    ],
);

/// The hub most tests use.
fn hub() -> HubName {
    HubName::from("chat")
}
