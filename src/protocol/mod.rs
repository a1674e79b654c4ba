//! The protocols lameduck serves, each a [`Handler`](crate::Handler).

pub mod echo;
pub mod http;
