//! What a REST request names: path segments, query parameters, the hub.
//!
//! Path segments arrive percent-decoded (the SDK escapes user ids, group
//! names and connection ids). Query parameter names are matched
//! case-insensitively (the SDK writes `maxPageSize`, Azure documents
//! `maxpagesize`); repeated parameters (`excluded`) keep every value.
//!
//! [`HubRequest`] is the prologue every hub route shares: authorize, read the
//! path, resolve its hub.

use std::future::{ready, Ready};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::auth::Authorized;
use super::error::{Missing, RestError};
use crate::core::node::Node;
use crate::web::state::AppState;
use hubwire_backplane::{ConnectionId, GroupName, HubName, MembershipTtl, UserId};

/// `/hubs/{hub}`.
#[derive(Deserialize)]
pub struct HubPath {
    /// The hub, as written in the URL.
    pub hub: String,
}

/// `/hubs/{hub}/users/{user}`.
#[derive(Deserialize)]
pub struct UserPath {
    /// The hub, as written in the URL.
    pub hub: String,
    /// The user id.
    pub user: String,
}

/// `/hubs/{hub}/channels/{channel}` (a notifications hub's channel).
#[derive(Deserialize)]
pub struct ChannelPath {
    /// The hub, as written in the URL.
    pub hub: String,
    /// The channel name.
    pub channel: String,
}

/// `/hubs/{hub}/groups/{group}`.
#[derive(Deserialize)]
pub struct GroupPath {
    /// The hub, as written in the URL.
    pub hub: String,
    /// The group name.
    pub group: String,
}

/// `/hubs/{hub}/connections/{id}`.
#[derive(Deserialize)]
pub struct ConnectionPath {
    /// The hub, as written in the URL.
    pub hub: String,
    /// The connection id.
    pub id: String,
}

/// A user and a group of a hub (in either order in the URL).
#[derive(Deserialize)]
pub struct UserGroupPath {
    /// The hub, as written in the URL.
    pub hub: String,
    /// The user id.
    pub user: String,
    /// The group name.
    pub group: String,
}

/// A connection and a group of a hub (in either order in the URL).
#[derive(Deserialize)]
pub struct ConnectionGroupPath {
    /// The hub, as written in the URL.
    pub hub: String,
    /// The group name.
    pub group: String,
    /// The connection id.
    pub id: String,
}

/// `/hubs/{hub}/conversations/{id}`.
#[derive(Deserialize)]
pub struct ConversationPath {
    /// The hub, as written in the URL.
    pub hub: String,
    /// The conversation id.
    pub id: String,
}

/// `/hubs/{hub}/conversations/{id}/participants/{user}`.
#[derive(Deserialize)]
pub struct ParticipantPath {
    /// The hub, as written in the URL.
    pub hub: String,
    /// The conversation id.
    pub id: String,
    /// The user id.
    pub user: String,
}

/// A path that names a hub (`/hubs/{hub}/...`).
pub trait HubSegment {
    /// The hub, as written in the URL.
    fn hub_segment(&self) -> &str;
}

macro_rules! hub_segment {
    ($($path:ty),*) => {
        $(impl HubSegment for $path {
            fn hub_segment(&self) -> &str {
                &self.hub
            }
        })*
    };
}
hub_segment!(
    HubPath,
    UserPath,
    ChannelPath,
    GroupPath,
    ConnectionPath,
    UserGroupPath,
    ConnectionGroupPath,
    ConversationPath,
    ParticipantPath
);

/// An authorized request to a hub route: the node's state, the path `P` and
/// the hub it resolves to. Refuses with 401 when not authorized (checked
/// first), then 404 `Error.Hub.NotExisted` as [`hub`] does.
pub struct HubRequest<P> {
    /// What every handler gets.
    pub state: web::Data<AppState>,
    /// The path segments.
    pub path: P,
    /// The hub the path names.
    pub hub: HubName,
}

impl<P: HubSegment + DeserializeOwned + 'static> FromRequest for HubRequest<P> {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        ready(hub_request(req, payload))
    }
}

fn hub_request<P: HubSegment + DeserializeOwned + 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
) -> Result<HubRequest<P>, actix_web::Error> {
    Authorized::from_request(req, payload).into_inner()?;
    let state = web::Data::<AppState>::from_request(req, payload).into_inner()?;
    let path = web::Path::<P>::from_request(req, payload).into_inner()?.into_inner();
    let hub = hub(&state.node, req, path.hub_segment())?;
    Ok(HubRequest { state, path, hub })
}

/// Whether the request uses the v1 paths (`/api/v1/...`).
pub fn is_v1(req: &HttpRequest) -> bool {
    req.path().starts_with("/api/v1/")
}

/// Every value of query parameter `name` (matched case-insensitively).
pub fn query_values(req: &HttpRequest, name: &str) -> Vec<String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// The first value of query parameter `name` (matched case-insensitively).
pub fn query_value(req: &HttpRequest, name: &str) -> Option<String> {
    query_values(req, name).into_iter().next()
}

/// The `excluded` connection ids.
pub fn excluded(req: &HttpRequest) -> Vec<ConnectionId> {
    query_values(req, "excluded")
        .into_iter()
        .map(ConnectionId::from)
        .collect()
}

/// The `reason` of a close, if any.
pub fn reason(req: &HttpRequest) -> Option<String> {
    query_value(req, "reason").filter(|r| !r.is_empty())
}

/// The hub a request addresses.
///
/// Hub names match case-insensitively. With `application=app`, a hub named
/// `app_hub` is preferred, then `hub` itself: hubwire serves one set of hubs,
/// so the application only selects a hub an operator named after it. v1 paths
/// carry the application in the hub segment (`app_hub`), so there the part
/// after the first `_` is tried last.
pub fn hub(node: &Node, req: &HttpRequest, name: &str) -> Result<HubName, RestError> {
    let application = query_value(req, "application").filter(|a| !a.is_empty());
    let prefixed = application.map(|app| format!("{app}_{name}"));
    let unprefixed = is_v1(req).then(|| name.split_once('_').map(|(_, hub)| hub)).flatten();
    let found = prefixed
        .iter()
        .map(String::as_str)
        .chain([name])
        .chain(unprefixed)
        .find_map(|candidate| node.hub(candidate));
    found.ok_or_else(|| RestError::not_found(Missing::Hub, format!("hub '{name}' does not exist")))
}

/// A group name from the path. Its length is checked by the node, the same
/// way for every path (an answer of 400 here, see [`crate::core::node::NodeError`]).
pub fn group(name: &str) -> GroupName {
    GroupName::from(name)
}

/// A user id from the path.
pub fn user(name: &str) -> UserId {
    UserId::from(name)
}

/// The `ttl` of a user's group membership: absent = until removed, `0` = the
/// user's current connections only, `n` = `n` seconds.
pub fn ttl(value: Option<&str>) -> Result<MembershipTtl, RestError> {
    let Some(value) = value else {
        return Ok(MembershipTtl::Forever);
    };
    match value.trim().parse::<u64>() {
        Ok(0) => Ok(MembershipTtl::CurrentConnectionsOnly),
        Ok(secs) => Ok(MembershipTtl::For(Duration::from_secs(secs))),
        Err(_) => Err(RestError::BadRequest(format!(
            "ttl must be a non-negative number of seconds, not {value:?}"
        ))),
    }
}

/// An optional non-negative integer query parameter within `range`.
pub fn bounded(
    req: &HttpRequest,
    name: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<Option<usize>, RestError> {
    let Some(value) = query_value(req, name) else {
        return Ok(None);
    };
    match value.trim().parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(RestError::BadRequest(format!(
            "{name} must be an integer from {} to {}, not {value:?}",
            range.start(),
            range.end()
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn ttl_follows_azure() {
        assert_eq!(ttl(None).unwrap(), MembershipTtl::Forever);
        assert_eq!(ttl(Some("0")).unwrap(), MembershipTtl::CurrentConnectionsOnly);
        assert_eq!(ttl(Some("90")).unwrap(), MembershipTtl::For(Duration::from_secs(90)));
        for bad in ["-1", "1.5", "", "soon"] {
            assert!(matches!(ttl(Some(bad)), Err(RestError::BadRequest(_))));
        }
    }

    #[test]
    fn query_names_match_case_insensitively_and_repeat() {
        let req = TestRequest::with_uri("/x?excluded=a&Excluded=b%20c&maxPageSize=5&reason=").to_http_request();
        let ids: Vec<_> = excluded(&req).iter().map(|c| c.as_str().to_owned()).collect();
        assert_eq!(ids, ["a", "b c"]);
        assert_eq!(bounded(&req, "maxpagesize", 1..=200).unwrap(), Some(5));
        assert_eq!(bounded(&req, "top", 0..=usize::MAX).unwrap(), None);
        assert_eq!(reason(&req), None);
        let req = TestRequest::with_uri("/x?maxpagesize=201").to_http_request();
        assert!(bounded(&req, "maxpagesize", 1..=200).is_err());
    }

    #[test]
    fn v1_is_told_by_the_path() {
        assert!(is_v1(&TestRequest::with_uri("/api/v1/hubs/chat").to_http_request()));
        assert!(!is_v1(&TestRequest::with_uri("/api/hubs/chat/:send").to_http_request()));
    }
}
