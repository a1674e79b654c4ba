use super::*;
use clap::CommandFactory;

#[test]
fn cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn keepalive_grace_defaults_to_the_library_default() {
    let cli = Cli::parse_from(["lameduck", "http"]);
    let Command::Http(args) = cli.command else {
        panic!("parsed as {cli:?}");
    };
    assert_eq!(
        args.keepalive_grace,
        lameduck::protocol::http::DEFAULT_KEEPALIVE_GRACE
    );
    let cli = Cli::parse_from(["lameduck", "http", "--keepalive-grace", "0s"]);
    let Command::Http(args) = cli.command else {
        panic!("parsed as {cli:?}");
    };
    assert_eq!(args.keepalive_grace, Duration::ZERO);
}

#[test]
fn deadlines_default_to_the_library_defaults() {
    let cli = Cli::parse_from(["lameduck", "echo"]);
    let Command::Echo(args) = cli.command else {
        panic!("parsed as {cli:?}");
    };
    assert_eq!(args.server.write_timeout, lameduck::DEFAULT_WRITE_TIMEOUT);
    assert_eq!(
        args.server.upgrade_timeout,
        lameduck::deploy::DEFAULT_UPGRADE_TIMEOUT
    );
    assert_eq!(
        args.line_timeout,
        lameduck::protocol::echo::DEFAULT_LINE_TIMEOUT
    );
    let cli = Cli::parse_from(["lameduck", "http", "--write-timeout", "250ms"]);
    let Command::Http(args) = cli.command else {
        panic!("parsed as {cli:?}");
    };
    assert_eq!(args.server.write_timeout, Duration::from_millis(250));
}

#[test]
fn sizes_take_binary_and_decimal_suffixes() {
    assert_eq!(parse_size("65536"), Ok(65536));
    assert_eq!(parse_size("64KiB"), Ok(65536));
    assert_eq!(parse_size("64k"), Ok(65536));
    assert_eq!(parse_size("64KB"), Ok(64000));
    assert_eq!(parse_size("1MiB"), Ok(1 << 20));
    assert!(parse_size("KiB").is_err());
    assert!(parse_size("12 parsecs").is_err());
    assert!(parse_size("99999999999999999999GiB").is_err());
}
