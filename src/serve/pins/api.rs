//! The HTTP face of the pin service: the `/pins` handlers, the bearer-token check (constant
//! time), and the API's own status table ([`PinApiError`]), answered in the spec's
//! `{"error": {"reason", "details"}}` shape rather than the gateway's plain text.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::query::ListQuery;
use super::records::valid_id;
use super::{PinRequestError, PinService};
use crate::fetch::multiaddr::multiaddr_of_url;
use crate::fetch::pinning::{Failure, FailureBody, Pin, PinStatus};
use crate::serve::upload::constant_time_eq;
use crate::serve::{header_str, Gateway};

/// Largest request body (a `Pin` object).
pub const MAX_BODY: usize = 64 * 1024;

/// Why a pinning API request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PinApiError {
    /// No pin token is configured.
    #[error("the pinning service is off on this server (start distfs serve with --pin-token-file FILE and --store DIR)")]
    Disabled,
    /// No token, or the wrong one.
    #[error("access token is missing or invalid (send Authorization: Bearer <token>)")]
    Unauthorized,
    /// A malformed body, query or pin.
    #[error("{0}")]
    BadRequest(String),
    /// No such request.
    #[error("no pin request {0}")]
    NotFound(String),
    /// Too many requests pending or kept.
    #[error("{0}")]
    TooMany(String),
    /// A server-side failure (disk).
    #[error("{0}")]
    Internal(String),
}

impl PinApiError {
    /// The status table.
    pub fn status(&self) -> StatusCode {
        match self {
            PinApiError::Disabled => StatusCode::FORBIDDEN,
            PinApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            PinApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PinApiError::NotFound(_) => StatusCode::NOT_FOUND,
            PinApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            PinApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `reason` (the spec's example codes where it has one).
    pub fn reason(&self) -> &'static str {
        match self {
            PinApiError::Disabled => "PINNING_DISABLED",
            PinApiError::Unauthorized => "UNAUTHORIZED",
            PinApiError::BadRequest(_) => "BAD_REQUEST",
            PinApiError::NotFound(_) => "NOT_FOUND",
            PinApiError::TooMany(_) => "TOO_MANY_REQUESTS",
            PinApiError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }
}

impl From<PinRequestError> for PinApiError {
    fn from(e: PinRequestError) -> PinApiError {
        match e {
            PinRequestError::NotFound { requestid } => PinApiError::NotFound(requestid),
            PinRequestError::BadPin(why) => PinApiError::BadRequest(why),
            e @ PinRequestError::TooMany { .. } => PinApiError::TooMany(e.to_string()),
            e @ PinRequestError::Io(_) => PinApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for PinApiError {
    fn into_response(self) -> Response {
        let body = Failure {
            error: FailureBody {
                reason: self.reason().to_string(),
                details: Some(self.to_string()),
            },
        };
        let mut resp = (self.status(), axum::Json(body)).into_response();
        if matches!(self, PinApiError::Unauthorized) {
            super::super::set(resp.headers_mut(), header::WWW_AUTHENTICATE, "Bearer");
        }
        resp
    }
}

/// The service, if it is on and the request carries its token.
fn authorize(gw: &Gateway, headers: &HeaderMap) -> Result<Arc<PinService>, PinApiError> {
    let svc = gw.pins().ok_or(PinApiError::Disabled)?;
    let given = header_str(headers, header::AUTHORIZATION)
        .and_then(|h| {
            let (scheme, token) = h.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        })
        .ok_or(PinApiError::Unauthorized)?;
    if !constant_time_eq(given.as_bytes(), svc.token().as_bytes()) {
        return Err(PinApiError::Unauthorized);
    }
    Ok(Arc::clone(svc))
}

/// The service's own address as a multiaddr, from the `Host` the client used.
fn delegates(headers: &HeaderMap) -> Vec<String> {
    header_str(headers, header::HOST)
        .and_then(|h| multiaddr_of_url(&format!("http://{h}")))
        .into_iter()
        .collect()
}

fn answer(code: StatusCode, headers: &HeaderMap, mut status: PinStatus) -> Response {
    status.delegates = delegates(headers);
    (code, axum::Json(status)).into_response()
}

async fn read_pin(body: Body) -> Result<Pin, PinApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        PinApiError::BadRequest(format!("reading the body (at most {MAX_BODY} bytes): {e}"))
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| PinApiError::BadRequest(format!("the body is not a Pin object: {e}")))
}

fn check_id(id: &str) -> Result<(), PinApiError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(PinApiError::NotFound(id.chars().take(64).collect()))
    }
}

fn finish(result: Result<Response, PinApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /pins`.
pub async fn list(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    finish((|| {
        let svc = authorize(&gw, req.headers())?;
        let q = ListQuery::parse(req.uri().query()).map_err(PinApiError::BadRequest)?;
        let mut results = svc.list(&q);
        let ds = delegates(req.headers());
        for r in &mut results.results {
            r.delegates.clone_from(&ds);
        }
        Ok(axum::Json(results).into_response())
    })())
}

/// `POST /pins`.
pub async fn add(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    finish(
        async {
            let svc = authorize(&gw, req.headers())?;
            let (parts, body) = req.into_parts();
            let pin = read_pin(body).await?;
            let status = svc.add(pin).await?;
            Ok(answer(StatusCode::ACCEPTED, &parts.headers, status))
        }
        .await,
    )
}

/// `GET /pins/{requestid}`.
pub async fn get(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    finish((|| {
        let svc = authorize(&gw, &headers)?;
        check_id(&id)?;
        let status = svc.get(&id).ok_or(PinApiError::NotFound(id))?;
        Ok(answer(StatusCode::OK, &headers, status))
    })())
}

/// `POST /pins/{requestid}` (replace).
pub async fn replace(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    finish(
        async {
            let svc = authorize(&gw, req.headers())?;
            check_id(&id)?;
            let (parts, body) = req.into_parts();
            let pin = read_pin(body).await?;
            let status = svc.replace(&id, pin).await?;
            Ok(answer(StatusCode::ACCEPTED, &parts.headers, status))
        }
        .await,
    )
}

/// `DELETE /pins/{requestid}`.
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    finish(
        async {
            let svc = authorize(&gw, &headers)?;
            check_id(&id)?;
            svc.delete(&id).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        .await,
    )
}
