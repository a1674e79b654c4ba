//! The routes of `lameduck http`, the tutorial's web-server template: `GET /` says
//! hello after a simulated piece of work, `GET /healthz` reports readiness.

use std::time::Duration;

use super::request::Request;
use super::response::{Response, Status};
use super::service::{Context, Service};

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
    Response::text(Status::METHOD_NOT_ALLOWED, "method not allowed\n").header("Allow", ALLOWED)
}

impl Service for Hello {
    fn call(&self, request: &Request, ctx: &Context<'_>) -> Response {
        let readable = matches!(request.method.as_str(), "GET" | "HEAD");
        match request.path() {
            "/" if !readable => method_not_allowed(),
            "/" => {
                if !self.work_delay.is_zero() && !ctx.work_for(self.work_delay) {
                    return Response::text(Status::SERVICE_UNAVAILABLE, "shutdown forced\n")
                        .close();
                }
                Response::text(Status::OK, HELLO)
            }
            "/healthz" if !readable => method_not_allowed(),
            "/healthz" if ctx.is_ready() => Response::text(Status::OK, "ok\n"),
            "/healthz" => Response::text(Status::SERVICE_UNAVAILABLE, "draining\n")
                .header("Cache-Control", "no-store"),
            _ => Response::text(Status::NOT_FOUND, "not found\n"),
        }
    }
}
