//! Signal installation, in a process of its own: it happens once per process, a second
//! install is an error, and installing triggers nothing. (That every terminating signal
//! drains is tested with the real binary, in tests/cli/signals.rs.)

use lameduck::{signals, Shutdown, SignalError};

#[test]
fn a_second_install_is_an_error_not_a_panic() {
    let shutdown = Shutdown::new();
    signals::install(&shutdown).expect("the first install succeeds");
    let again = signals::install(&Shutdown::new());
    assert!(
        matches!(again, Err(SignalError::AlreadyInstalled)),
        "second install: {again:?}"
    );
    assert!(!shutdown.is_triggered(), "installing triggers nothing");
}
