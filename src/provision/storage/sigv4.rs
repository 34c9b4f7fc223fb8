//! AWS Signature Version 4, the request signing that S3 and IAM both require.
//!
//! Hand-written on `ring` (already compiled for rustls) rather than the `aws-sigv4` crate, whose
//! smithy dependencies would double this crate's build. It is small because it only has to sign
//! what this module sends: header-signed requests (no presigned URLs, no chunked payloads), paths
//! that are already percent-encoded the way S3 wants them (each segment once), and query
//! parameters given as decoded pairs. The unit tests pin it to AWS's published test vectors.

use ring::{digest, hmac};

use super::SecretString;

/// The algorithm name that prefixes the string to sign and the `Authorization` header.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Characters SigV4 leaves unencoded: RFC 3986 unreserved characters only.
pub(super) const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Like [`UNRESERVED`] but keeps `/`, for object keys in paths.
pub(super) const PATH_SEGMENT: &percent_encoding::AsciiSet = &UNRESERVED.remove(b'/');

/// Percent-encodes a query key or value, or a form field, the way SigV4 canonicalizes it.
pub(super) fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string()
}

/// Lowercase hex of SHA-256.
pub(super) fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

/// Raw SHA-256, for checksum headers.
pub(super) fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

/// Who signs, where and for what: everything in the credential scope.
pub(super) struct SigningParams<'a> {
    /// Access key id, sent in clear in the `Authorization` header.
    pub access_key_id: &'a str,
    /// Secret key; only ever an HMAC key, never sent or logged.
    pub secret_access_key: &'a SecretString,
    /// Region of the credential scope, e.g. `us-east-1`.
    pub region: &'a str,
    /// Service of the credential scope: `s3` or `iam`.
    pub service: &'a str,
    /// Request time as `YYYYMMDD'T'HHMMSS'Z'`; must equal the `x-amz-date` header.
    pub amz_date: &'a str,
}

/// One request to sign, already in its on-the-wire form.
pub(super) struct CanonicalInput<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// Path as sent, already percent-encoded (`/` for IAM, `/bucket` or `/bucket/key` for S3).
    pub path: &'a str,
    /// Decoded query parameters; a parameter without value (`?versioning`) has an empty value.
    pub query: &'a [(String, String)],
    /// Headers to sign (at least `host` and `x-amz-date`), names in any case.
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the body (for S3 the same value as `x-amz-content-sha256`).
    pub payload_sha256: &'a str,
}

/// The query string as sent and as canonicalized: encoded pairs sorted by key, then value.
pub(super) fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> =
        query.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Returns `(signed header names, canonical request)`.
fn canonical_request(input: &CanonicalInput<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = input
        .headers
        .iter()
        .map(|(name, value)| {
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            (name.to_ascii_lowercase(), value)
        })
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        input.method,
        input.path,
        canonical_query(input.query),
        canonical_headers,
        signed_headers,
        input.payload_sha256
    );
    (signed_headers, request)
}

/// The value of the `Authorization` header for `input`.
pub(super) fn authorization(params: &SigningParams<'_>, input: &CanonicalInput<'_>) -> String {
    let (signed_headers, request) = canonical_request(input);
    let date = params.amz_date.get(..8).unwrap_or(params.amz_date);
    let scope = format!("{date}/{}/{}/aws4_request", params.region, params.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        params.amz_date,
        sha256_hex(request.as_bytes())
    );
    let mut key = hmac_sha256(
        format!("AWS4{}", params.secret_access_key.expose()).as_bytes(),
        date,
    );
    for part in [params.region, params.service, "aws4_request"] {
        key = hmac_sha256(&key, part);
    }
    let signature = hex(&hmac_sha256(&key, &string_to_sign));
    format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        params.access_key_id
    )
}

/// `x-amz-date` for a moment.
pub(super) fn amz_date(at: jiff::Timestamp) -> String {
    at.strftime("%Y%m%dT%H%M%SZ").to_string()
}

#[cfg(test)]
mod tests {
    //! Vectors from AWS's SigV4 test suite (credentials `AKIDEXAMPLE`, 2015-08-30) and from the
    //! S3 SigV4 documentation examples (`examplebucket`, 2013-05-24). Each signature was also
    //! recomputed independently with botocore's signer before being written here.
    use super::*;

    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const S3_DOCS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[allow(clippy::too_many_arguments)] // mirrors the test-vector tables one argument per column
    fn sign(
        secret: &str,
        access_key_id: &str,
        service: &str,
        amz_date: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> String {
        let secret = SecretString::new(secret);
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let payload = sha256_hex(body);
        authorization(
            &SigningParams {
                access_key_id,
                secret_access_key: &secret,
                region: "us-east-1",
                service,
                amz_date,
            },
            &CanonicalInput {
                method,
                path,
                query: &query,
                headers: &headers,
                payload_sha256: &payload,
            },
        )
    }

    fn suite(
        method: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> String {
        sign(
            SUITE_SECRET,
            "AKIDEXAMPLE",
            "service",
            "20150830T123600Z",
            method,
            "/",
            query,
            headers,
            body,
        )
    }

    #[test]
    fn get_vanilla() {
        let auth = suite(
            "GET",
            &[],
            &[
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
            ],
            b"",
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        let auth = suite(
            "GET",
            &[("Param2", "value2"), ("Param1", "value1")],
            &[
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
            ],
            b"",
        );
        assert!(
            auth.ends_with(
                "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            ),
            "{auth}"
        );
    }

    #[test]
    fn post_x_www_form_urlencoded() {
        let auth = suite(
            "POST",
            &[],
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
            ],
            b"Param1=value1",
        );
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date,"),
            "{auth}"
        );
        assert!(
            auth.ends_with(
                "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            ),
            "{auth}"
        );
    }

    #[test]
    fn iam_list_users_from_the_sigv4_guide() {
        let auth = sign(
            SUITE_SECRET,
            "AKIDEXAMPLE",
            "iam",
            "20150830T123600Z",
            "GET",
            "/",
            &[("Action", "ListUsers"), ("Version", "2010-05-08")],
            &[
                (
                    "Content-Type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                ),
                ("Host", "iam.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
            ],
            b"",
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    fn s3_docs(path: &str, query: &[(&str, &str)], extra: &[(&str, &str)]) -> String {
        let mut headers = vec![
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ];
        headers.extend_from_slice(extra);
        sign(
            S3_DOCS_SECRET,
            "AKIAIOSFODNN7EXAMPLE",
            "s3",
            "20130524T000000Z",
            "GET",
            path,
            query,
            &headers,
            b"",
        )
    }

    #[test]
    fn s3_get_object_with_range() {
        let auth = s3_docs("/test.txt", &[], &[("Range", "bytes=0-9")]);
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn s3_get_bucket_lifecycle_subresource_without_value() {
        let auth = s3_docs("/", &[("lifecycle", "")], &[]);
        assert!(
            auth.ends_with(
                "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
            ),
            "{auth}"
        );
    }

    #[test]
    fn s3_list_objects_with_sorted_query() {
        let auth = s3_docs("/", &[("prefix", "J"), ("max-keys", "2")], &[]);
        assert!(
            auth.ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ),
            "{auth}"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_inner_spaces_collapsed() {
        let (_, a) = canonical_request(&CanonicalInput {
            method: "GET",
            path: "/",
            query: &[],
            headers: &[("My-Header1".into(), "  value1   value2 ".into())],
            payload_sha256: EMPTY_SHA256,
        });
        assert!(a.contains("my-header1:value1 value2\n"), "{a}");
    }

    #[test]
    fn query_encoding_is_strict_rfc3986() {
        let query = vec![
            ("key-marker".to_owned(), "a b/c+d~e".to_owned()),
            ("delete".to_owned(), String::new()),
        ];
        assert_eq!(
            canonical_query(&query),
            "delete=&key-marker=a%20b%2Fc%2Bd~e"
        );
    }

    #[test]
    fn amz_date_format() {
        let at: jiff::Timestamp = "2015-08-30T12:36:00Z".parse().unwrap();
        assert_eq!(amz_date(at), "20150830T123600Z");
    }

    #[test]
    fn sha256_of_nothing() {
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
    }
}
