//! The routes of `lameduck http`, the tutorial's web-server template: `GET /` says
//! hello after a simulated piece of work, `GET /healthz` reports readiness.

use std::time::Duration;

use ::http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION};
use ::http::{Method, StatusCode};

use super::request_body::Request;
use super::response::{text, Response};
use super::service::{Context, Error, Service};

/// The body of `GET /`, byte-exact with the tutorial's aiohttp handler.
pub const HELLO: &str = "Hello, World!";

/// The built-in service: `/` and `/healthz`, GET and HEAD only.
#[derive(Debug, Clone, Default)]
pub struct Hello {
    work_delay: Duration,
}

impl Hello {
    /// The service with no simulated work.
    pub fn new() -> Hello {
        Hello::default()
    }

    /// How long `GET /` works before answering (the tutorial's `asyncio.sleep(1)`).
    /// A drain lets this work finish; a force cuts it short. Default 0.
    pub fn work_delay(mut self, delay: Duration) -> Self {
        self.work_delay = delay;
        self
    }
}

/// The methods every built-in route allows, for `Allow` on a 405.
pub const ALLOWED: &str = "GET, HEAD";

fn method_not_allowed() -> Response {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(ALLOWED));
    response
}

impl Service for Hello {
    fn call(&self, request: Request<'_>, ctx: &Context) -> Result<Response, Error> {
        // A HEAD arrives as a GET.
        let readable = request.method() == Method::GET;
        Ok(match request.uri().path() {
            "/" if !readable => method_not_allowed(),
            "/" => {
                if !self.work_delay.is_zero() && !ctx.work_for(self.work_delay) {
                    let mut cut = text(StatusCode::SERVICE_UNAVAILABLE, "shutdown forced\n");
                    cut.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                    return Ok(cut);
                }
                text(StatusCode::OK, HELLO)
            }
            "/healthz" if !readable => method_not_allowed(),
            "/healthz" if ctx.is_ready() => text(StatusCode::OK, "ok\n"),
            "/healthz" => {
                let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        })
    }
}
