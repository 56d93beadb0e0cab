//! What keeps the web pages a developer visits away from the local host.
//!
//! The host listens on the developer's machine, and any page open in their browser can
//! send it requests: a cross-site `POST` (a "simple" request needs no CORS preflight)
//! would invoke a function through the Lambda Invoke API, and a page whose own domain
//! re-resolves to 127.0.0.1 (DNS rebinding) would read `/dev/token`'s answer as
//! same-origin. So:
//!
//! - every request's `Host` must name the machine itself (`localhost`, `127.0.0.1`,
//!   `[::1]`, or the listener's own address): a rebound domain carries its own name;
//! - on the routes only tools and the host's own pages call ([`local_only`]: the Invoke
//!   API, `/dev/token`), an `Origin`, when the browser sends one, must be such a host too.
//!
//! Tools (the SDK, `curl`, the CLI) send no `Origin` and a loopback `Host`; nothing
//! changes for them.

use std::net::SocketAddr;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};

/// Refuses requests whose `Host` is not this machine (DNS rebinding).
pub(crate) async fn loopback_host(
    listener: Option<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(refused) = check_host(request.headers(), listener) {
        return forbidden(&refused);
    }
    next.run(request).await
}

/// A layer for routes that no other web page may call: `Host` and `Origin` must both
/// be this machine.
pub async fn local_only(request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let Err(refused) = check_host(headers, None).and_then(|()| check_origin(headers)) {
        return forbidden(&refused);
    }
    next.run(request).await
}

/// Why a request's `Host` is refused, if it is.
fn check_host(headers: &HeaderMap, listener: Option<SocketAddr>) -> Result<(), String> {
    let Some(host) = headers.get(header::HOST) else {
        // HTTP/1.0 and in-process requests: nothing a browser sends.
        return Ok(());
    };
    let host = host.to_str().unwrap_or_default();
    if is_local(host, listener) {
        return Ok(());
    }
    Err(format!(
        "Host `{}` is not this machine: the local host answers only localhost, 127.0.0.1 and [::1]",
        truncated(host)
    ))
}

/// Why a request's `Origin` is refused, if it is.
fn check_origin(headers: &HeaderMap) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match authority {
        Some(authority) if !authority.contains('/') && is_local(authority, None) => Ok(()),
        _ => Err(format!(
            "Origin `{}` may not call this route: only tools and the local host's own pages may",
            truncated(origin)
        )),
    }
}

/// Whether `authority` (`host[:port]`) names this machine.
fn is_local(authority: &str, listener: Option<SocketAddr>) -> bool {
    let host = match authority.rsplit_once(':') {
        // `[::1]:8080`, `localhost:8080`; but `[::1]` alone has colons inside brackets.
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) && !host.is_empty() => host,
        _ => authority,
    };
    let host = host.to_ascii_lowercase();
    if matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]") {
        return true;
    }
    listener.is_some_and(|addr| {
        !addr.ip().is_unspecified()
            && match addr {
                SocketAddr::V4(v4) => host == v4.ip().to_string(),
                SocketAddr::V6(v6) => host == format!("[{}]", v6.ip()),
            }
    })
}

fn truncated(text: &str) -> String {
    text.chars().take(100).collect()
}

fn forbidden(message: &str) -> Response {
    tracing::warn!(message, "refused a request from outside this machine");
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "message": message }).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_and_without_ports_are_local() {
        for local in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_local(local, None), "{local}");
        }
        for foreign in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example:80",
            "",
            ":8080",
        ] {
            assert!(!is_local(foreign, None), "{foreign}");
        }
        let lan: SocketAddr = "192.168.1.5:8080"
            .parse()
            .unwrap_or(SocketAddr::from(([0; 4], 0)));
        assert!(is_local("192.168.1.5:8080", Some(lan)));
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap_or(lan);
        assert!(!is_local("0.0.0.0:8080", Some(any)));
    }
}
