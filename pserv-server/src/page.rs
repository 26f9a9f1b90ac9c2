//! The status page (`GET /`): one read-only page, HTML, CSS and plain JavaScript built into
//! the binary. It holds no data: the script reads the control API (`/v1/status`,
//! `/v1/subnets`, `/v1/nodes`, `/v1/leases?page=`, `/v1/counters`) and follows `/v1/events`,
//! sending the token, where one is required, as an `Authorization` header (asked for on the
//! page, kept for the browser tab only, never put in a URL). Boot progress is built in the
//! browser from the event stream (replayed from the oldest event kept when the page opens), so
//! the server keeps nothing per machine for it.
//!
//! The files are served outside the token check (a browser must load the page that asks for
//! the token) with a content security policy that allows only this origin's script, style and
//! API: no inline script, no other site, no framing.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::control::App;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/page.js");
const STYLE: &str = include_str!("page/page.css");

/// What the browser may load and run for the page: this origin only.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // Built into the binary: a new build is a new page, so a browser asks each time
            // (the files are small).
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The page's routes.
pub(crate) fn router() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/page.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/page.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}
