//! Everything that runs the `lameduck` binary or an example as a real process, with
//! real sockets and real signals: one test binary, so the support module is compiled
//! once, and gated on the `cli` feature (Cargo.toml), which builds the binary and the
//! examples. Tests of the library alone live in their own binaries beside this
//! directory and build without `cli`.
//!
//! One module per area; `cargo test --test cli echo::` runs one of them.

mod support;

mod deadlines;
mod deploy;
mod descriptors;
mod echo;
mod examples;
mod files;
mod http;
mod http_stream;
mod kit_examples;
mod notes;
mod probe;
mod signals;
mod stdio;
