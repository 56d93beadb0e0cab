//! Who may use the console: a token the stack's verifier accepts, carrying the
//! [`super::OPS_GROUP`] group. 401 without a valid token, 403 without the group, 503 when
//! the identity provider's keys cannot be had; the reasons go to the log, not the client.

use auth::{Claims, Verifier};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::limits::{MAX_QUERY_BYTES, MAX_TOKEN_BYTES};
use super::{Console, OPS_GROUP};

/// The cookie the page keeps its token in (set by the page itself, path `/ops`).
pub const TOKEN_COOKIE: &str = "fleet_ops_token";

/// What a token earns.
#[derive(Debug, Clone)]
pub enum Access {
    Granted(Box<Claims>),
    /// No token, or one that does not verify.
    Unauthorized,
    /// A valid token without the ops group: its subject.
    Forbidden(String),
    /// The verifier's key set is unavailable: a retry may help.
    Unavailable,
}

/// Verifies `token` and checks its groups.
pub async fn authorize(verifier: &Verifier, token: Option<&str>) -> Access {
    let Some(token) = token else {
        return Access::Unauthorized;
    };
    if token.len() > MAX_TOKEN_BYTES {
        tracing::info!(bytes = token.len(), "ops console: a token over the limit");
        return Access::Unauthorized;
    }
    match verifier.verify(token).await {
        Ok(claims) if claims.in_group(OPS_GROUP) => Access::Granted(Box::new(claims)),
        Ok(claims) => {
            tracing::info!(sub = %claims.sub, "ops console: refused a token without the {OPS_GROUP} group");
            Access::Forbidden(claims.sub)
        }
        Err(e) if e.is_server_error() => {
            tracing::warn!(error = %e, "ops console: cannot verify tokens");
            Access::Unavailable
        }
        Err(e) => {
            tracing::info!(error = %e, "ops console: refused a token");
            Access::Unauthorized
        }
    }
}

/// The token of an `Authorization: Bearer` header, if there is a well-formed one.
pub fn token_from_header(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    auth::bearer_token(Some(value)).ok().map(str::to_owned)
}

/// The token the page stored in its cookie (only `GET /ops` reads it).
pub fn token_from_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == TOKEN_COOKIE && !value.is_empty()).then(|| value.to_owned())
        })
}

/// The API's gate: only a bearer header counts (a cookie would let other pages call it).
/// The claims of a granted request go into its extensions, for the audit log.
pub async fn require_ops(
    State(console): State<Console>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = token_from_header(request.headers());
    match authorize(&console.verifier, token.as_deref()).await {
        Access::Granted(claims) => {
            request.extensions_mut().insert(*claims);
            next.run(request).await
        }
        Access::Unauthorized => error(StatusCode::UNAUTHORIZED, "unauthorized".to_owned()),
        Access::Forbidden(_) => error(
            StatusCode::FORBIDDEN,
            format!("forbidden: the ops console needs a token in the {OPS_GROUP} group"),
        ),
        Access::Unavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the identity provider's keys are unavailable; retry".to_owned(),
        ),
    }
}

/// Refuses a query string over [`MAX_QUERY_BYTES`] before anything parses it.
pub async fn bounded_query(request: Request, next: Next) -> Response {
    let length = request.uri().query().map_or(0, str::len);
    if length > MAX_QUERY_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the query string is {length} bytes, more than {MAX_QUERY_BYTES}"),
        );
    }
    next.run(request).await
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; fleet_ops_token=abc.def.ghi; b=2".parse().unwrap(),
        );
        assert_eq!(token_from_cookie(&headers).as_deref(), Some("abc.def.ghi"));
        headers.insert(header::COOKIE, "fleet_ops_token=".parse().unwrap());
        assert_eq!(token_from_cookie(&headers), None);
    }
}
