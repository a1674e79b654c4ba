//! Conveniences a service reaches for: the query string's pairs, and JSON responses
//! (feature `json`).

use ::http::Uri;
#[cfg(feature = "json")]
use ::http::{header, HeaderValue, StatusCode};

#[cfg(feature = "json")]
use super::response::{text, Body, Response};

/// The query string's `name=value` pairs, percent-decoded (`+` as a space), in
/// order; empty without a query.
pub fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|query| {
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// A JSON response (`Content-Type: application/json`) of `value`. A value that
/// cannot be serialized (a map with keys that are not strings, a `Serialize` that
/// fails) is logged at error level and answered `500`.
#[cfg(feature = "json")]
pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = Response::new(Body::bytes(bytes));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(err) => {
            log::error!("cannot serialize a JSON response: {err}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_decoded_in_order() {
        let uri: Uri = "/search?q=caf%C3%A9+au+lait&page=2&q=x%26y&empty=&flag"
            .parse()
            .unwrap();
        let pairs = query_pairs(&uri);
        let expected = [
            ("q", "café au lait"),
            ("page", "2"),
            ("q", "x&y"),
            ("empty", ""),
            ("flag", ""),
        ];
        assert_eq!(pairs.len(), expected.len());
        for ((name, value), (want_name, want_value)) in pairs.iter().zip(expected) {
            assert_eq!((name.as_str(), value.as_str()), (want_name, want_value));
        }
        assert!(query_pairs(&"/no-query".parse().unwrap()).is_empty());
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_responses_say_so_and_failures_are_500() {
        let response = json(StatusCode::CREATED, &serde_json::json!({"id": 7}));
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(response.body().as_bytes(), Some(&br#"{"id":7}"#[..]));
        let mut bad = std::collections::HashMap::new();
        bad.insert(vec![1u8], 1);
        assert_eq!(
            json(StatusCode::OK, &bad).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
