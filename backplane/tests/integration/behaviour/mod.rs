//! One behaviour suite for every backplane: each test runs on three nodes of
//! the in-process bus (`on_local`) and on three Redis backplanes sharing one
//! `redis-server` under a prefix of their own (`on_redis`).
//!
//! - [`delivery`]: publish to every kind of target, unsubscribe, shutdown.
//! - [`membership`]: connections, limits, groups, users and counts.

mod delivery;
mod membership;

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
);

/// The hub most tests use.
fn hub() -> HubName {
    HubName::from("chat")
}
