//! Every terminating signal drains, SIGHUP included. (Installing the handlers, a
//! library call, is tested in tests/signals.rs.)

use crate::support;

use support::{field, Client, End, Process, GOODBYE};

#[test]
fn sighup_drains_like_sigterm() {
    let (mut server, addr) = Process::server(&["echo", "--addr", "127.0.0.1:0"]);
    let mut client = Client::connect(addr);
    client.send(b"still there?\n").unwrap();
    assert_eq!(client.expect_line(), "Echo: still there?\r\n");
    server.signal("HUP");
    let (rest, end) = client.rest();
    assert_eq!(String::from_utf8_lossy(&rest), GOODBYE);
    assert_eq!(end, End::Eof);
    drop(client);
    let (status, report) = server.finish();
    assert_eq!(status.code(), Some(0), "{}", server.dump());
    assert_eq!(field(&report, "reason"), "signal");
    assert_eq!(field(&report, "outcome"), "clean");
}
