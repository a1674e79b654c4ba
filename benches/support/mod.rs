//! The bench's harness: starting and stopping the servers under test, reading their
//! CPU and memory from `/proc`, the scenarios both contenders run, and the reports.

// `commit` serves the benches that print no machine line.
#[allow(dead_code)]
pub mod figures;
pub mod procfs;
pub mod report;
pub mod scenarios;
pub mod server;
pub mod svg;
