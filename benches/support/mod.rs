//! The bench's harness: starting and stopping the servers under test, reading their
//! CPU and memory from `/proc`, the scenarios both contenders run, and the reports.

pub mod procfs;
pub mod report;
pub mod scenarios;
pub mod server;
pub mod svg;
