//! Users: whether one is connected, and groups by user.
//!
//! Adding a user to a group adds all the user's connections on every node,
//! and (unless `ttl=0`) the connections the user opens later, until removed
//! or until `ttl` seconds have passed. Removing takes all of them out.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use super::error::{Missing, RestError};
use super::params::{self, HubRequest, UserGroupPath, UserPath};
use super::success;

/// `HEAD` / `GET /api/hubs/{hub}/users/{user}`: 200 when the user has a
/// connection to the hub, or 404 `Warning.User.NotExisted`.
pub async fn exists(HubRequest { state, path, hub }: HubRequest<UserPath>) -> Result<HttpResponse, RestError> {
    let user = params::user(&path.user);
    if state.node.user_connections(&hub, &user).await?.is_empty() {
        Err(RestError::not_found(
            Missing::User,
            format!("user '{}' has no connection", path.user),
        ))
    } else {
        Ok(HttpResponse::Ok().finish())
    }
}

/// `PUT /api/hubs/{hub}/users/{user}/groups/{group}` (`ttl` seconds): 200.
pub async fn add_to_group(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<UserGroupPath>,
) -> Result<HttpResponse, RestError> {
    let group = params::group(&path.group);
    let ttl = params::ttl(params::query_value(&req, "ttl").as_deref())?;
    let user = params::user(&path.user);
    state.node.add_user_to_group(&hub, &user, &group, ttl).await?;
    Ok(success(&req, StatusCode::OK))
}

/// `HEAD` / `GET /api/hubs/{hub}/users/{user}/groups/{group}`: 200 when the
/// user is a member, or 404 `Info.User.NotInGroup`.
pub async fn in_group(HubRequest { state, path, hub }: HubRequest<UserGroupPath>) -> Result<HttpResponse, RestError> {
    let group = params::group(&path.group);
    let user = params::user(&path.user);
    if state.node.user_in_group(&hub, &user, &group).await? {
        Ok(HttpResponse::Ok().finish())
    } else {
        Err(RestError::not_found(
            Missing::UserInGroup,
            format!("user '{}' is not in group '{}'", path.user, path.group),
        ))
    }
}

/// `DELETE /api/hubs/{hub}/users/{user}/groups/{group}`: 204, also when the
/// user was not a member.
pub async fn remove_from_group(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<UserGroupPath>,
) -> Result<HttpResponse, RestError> {
    let group = params::group(&path.group);
    let user = params::user(&path.user);
    state.node.remove_user_from_group(&hub, &user, &group).await?;
    Ok(success(&req, StatusCode::NO_CONTENT))
}

/// `DELETE /api/hubs/{hub}/users/{user}/groups`: 204.
pub async fn remove_from_all_groups(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<UserPath>,
) -> Result<HttpResponse, RestError> {
    let user = params::user(&path.user);
    state.node.remove_user_from_all_groups(&hub, &user).await?;
    Ok(success(&req, StatusCode::NO_CONTENT))
}
