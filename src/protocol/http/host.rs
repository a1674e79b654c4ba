//! The `Host` header of a request: exactly one, and a valid `uri-host [ ":" port ]`.

use ::http::Version;

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host`, and a request whose
/// `Host` is repeated or is not a valid `uri-host [ ":" port ]` gets 400 — two hosts
/// are how requests get routed to one backend and interpreted as another.
/// Takes the head's fields as `httparse` gave them; says what is wrong, for a 400.
pub(crate) fn check_host(
    headers: &[httparse::Header<'_>],
    version: Version,
) -> Result<(), &'static str> {
    let mut hosts = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value.trim_ascii());
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 => Err("HTTP/1.1 request without Host"),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err("more than one Host"),
        (Some(host), None) if is_valid_host(host) => Ok(()),
        (Some(_), None) => Err("invalid Host"),
    }
}

/// `uri-host [ ":" port ]` (RFC 3986 §3.2.2): an IP literal in brackets, or a
/// reg-name / IPv4 address of unreserved, percent-encoded and sub-delimiter
/// characters, then optional digits after a colon. Empty is valid (a target without
/// an authority). No spaces, no `@` (userinfo), no `/`, `?` or `#`.
fn is_valid_host(host: &[u8]) -> bool {
    let (name, port) = match host.strip_prefix(b"[") {
        Some(rest) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let literal = &rest[..end];
            let valid_literal = !literal.is_empty()
                && literal
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'v' | b'V'));
            if !valid_literal {
                return false;
            }
            (&[][..], &rest[end + 1..])
        }
        None => match host.iter().rposition(|&b| b == b':') {
            Some(colon) => (&host[..colon], &host[colon..]),
            None => (host, &[][..]),
        },
    };
    let valid_port = match port.strip_prefix(b":") {
        Some(digits) => digits.iter().all(u8::is_ascii_digit),
        None => port.is_empty(),
    };
    let valid_name = name.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%')
            || matches!(
                b,
                b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            )
    });
    valid_port && valid_name
}
