//! The protocols lameduck serves, each a [`Handler`](crate::server::Handler).

pub mod echo;
pub mod http;
