//! `GET /`: a small self-contained page to try the service from a browser on the LAN (no
//! CDN, no framework; the HTML, CSS and script are compiled in). It uses only the public
//! API: `/health` for the model, backend and self-test, `/v1/classify` for the ranking.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("page/index.html");

#[utoipa::path(get, path = "/", responses((status = 200, description = "the page", content_type = "text/html")))]
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything the page needs is in it; nothing may be loaded from elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; connect-src 'self'; form-action 'none'; base-uri 'none'",
            ),
        ],
        PAGE,
    )
        .into_response()
}
