//! The ops console: `GET /ops` (one self-contained page, `assets/ops.html`) and its JSON
//! API under `/ops/api/`, each endpoint one `fleet-ops` call, for users whose token
//! carries the [`OPS_GROUP`] group. `fleet dev` mounts it next to the dashboard;
//! `fleet ops console` serves it alone against any stage.
//!
//! Who may use it is [`access`]'s: the bearer JWT, verified by the same verifier the
//! stack's HTTP API uses, must carry `cognito:groups` with `fleet-ops` (401 without a
//! valid token, 403 without the group, on the page and on the API alike). The API takes
//! its token only from the `Authorization` header, never from a cookie, so another web
//! page cannot make the operator's browser call it.

pub mod access;
mod api;
pub mod limits;
mod progress;

use std::sync::Arc;

use auth::{DevIssuer, Verifier};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use fleet_ops::Ops;

use access::Access;

/// The group (`cognito:groups`) a token needs for the console.
pub const OPS_GROUP: &str = "fleet-ops";

/// What every handler of the console shares.
#[derive(Debug, Clone)]
pub struct Console {
    pub ops: Arc<Ops>,
    pub verifier: Arc<Verifier>,
    redrives: progress::Redrives,
}

/// `GET /ops` and `/ops/api/...` over `ops`, for tokens `verifier` accepts.
pub fn routes(ops: Ops, verifier: Arc<Verifier>) -> Router {
    let console = Console {
        ops: Arc::new(ops),
        verifier,
        redrives: progress::Redrives::default(),
    };
    let api = api::routes()
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            access::require_ops,
        ))
        .layer(axum::middleware::from_fn(access::bounded_query))
        .layer(DefaultBodyLimit::max(limits::MAX_BODY_BYTES));
    Router::new()
        .route("/ops", get(page))
        .nest("/ops/api", api)
        .with_state(console)
}

/// `GET /dev/ops-token`: a token of the dev issuer for the user `dev-ops` in the
/// [`OPS_GROUP`] group, so the page works locally without pasting one. Only `fleet dev`
/// mounts it (never `fleet ops console`), and only this machine's pages may call it.
pub fn dev_token_routes(issuer: Arc<DevIssuer>) -> Router {
    const SUB: &str = "dev-ops";
    Router::new()
        .route(
            "/dev/ops-token",
            get(move || {
                let issued = issuer.issue_with_groups(
                    SUB,
                    &[OPS_GROUP],
                    std::time::Duration::from_secs(12 * 3600),
                );
                async move {
                    match issued {
                        Ok(token) => Ok(axum::Json(serde_json::json!({
                            "token": token, "sub": SUB, "groups": [OPS_GROUP],
                        }))),
                        Err(e) => Err((
                            StatusCode::INTERNAL_SERVER_ERROR,
                            axum::Json(serde_json::json!({ "error": e.to_string() })),
                        )),
                    }
                }
            }),
        )
        .route_layer(axum::middleware::from_fn(local_host::local_only))
}

/// The page, answered with the status the caller's token earns (200, 401, 403 or 503);
/// the page shows the console, or a sign-in panel saying why not. A browser navigating
/// here sends no `Authorization` header, so the page's own cookie carries the token too.
async fn page(State(console): State<Console>, headers: HeaderMap) -> Response {
    let token = access::token_from_header(&headers).or_else(|| access::token_from_cookie(&headers));
    let access = access::authorize(&console.verifier, token.as_deref()).await;
    let (status, state) = match &access {
        Access::Granted(_) => (StatusCode::OK, "granted"),
        Access::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
        Access::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        Access::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    let html = PAGE.replace(ACCESS_PLACEHOLDER, state);
    let mut response = (status, Html(html)).into_response();
    // The page reflects who asked: never cache it.
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// The console: one self-contained page (no build step, nothing fetched elsewhere).
const PAGE: &str = include_str!("../../assets/ops.html");
/// Where the page learns whether the server let it in.
const ACCESS_PLACEHOLDER: &str = "__FLEET_OPS_ACCESS__";
