//! The mesh naming rule: how the names of domains, products and ports become the
//! names of what the operator makes (Kafka topics and principals, buckets), and the
//! checks that keep those names valid in every system.
//!
//! The CRD schema enforces the same rules at admission (patterns and CEL); these
//! functions are what the controllers use, and what the schema's rules are tested
//! against.

/// A DNS label (RFC 1123): lowercase letters, digits and `-`, starting and ending
/// with a letter or digit. Domains, products and ports are named this way, so each
/// is a valid namespace name, topic segment and bucket segment.
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// The longest DNS label.
pub const DNS_LABEL_MAX_LENGTH: usize = 63;
/// Characters Kafka allows in a topic name, restricted to lowercase (the mesh rule).
pub const TOPIC_NAME_PATTERN: &str = "^[a-z0-9._-]+$";
/// The longest topic name Kafka accepts.
pub const TOPIC_NAME_MAX_LENGTH: usize = 249;
/// The longest S3 bucket name.
pub const BUCKET_NAME_MAX_LENGTH: usize = 63;
/// Prefixes S3 reserves for bucket names; a domain name, which starts every bucket
/// name of the domain, must not use them.
pub const RESERVED_BUCKET_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
/// Suffixes S3 reserves for bucket names; a bucket port's name, which ends its
/// bucket name, must not use them.
pub const RESERVED_BUCKET_SUFFIXES: [&str; 4] = ["-s3alias", "--ol-s3", "--x-s3", "--table-s3"];

/// Whether `name` is a DNS label (see [`DNS_LABEL_PATTERN`]).
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= DNS_LABEL_MAX_LENGTH
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
}

/// The topic of a Kafka output port when the port names none: `<domain>.<product>.<port>`.
pub fn topic_name(domain: &str, product: &str, port: &str) -> String {
    format!("{domain}.{product}.{port}")
}

/// The bucket of a bucket output port: `<domain>-<product>-<port>`.
pub fn bucket_name(domain: &str, product: &str, port: &str) -> String {
    format!("{domain}-{product}-{port}")
}

/// The Kafka principal of a domain: `User:<domain>`.
pub fn kafka_principal(domain: &str) -> String {
    format!("User:{domain}")
}

/// Whether `name` is a topic name the mesh accepts: Kafka's rule (at most 249 of
/// `[a-zA-Z0-9._-]`, not `.` or `..`), restricted to lowercase.
pub fn is_valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= TOPIC_NAME_MAX_LENGTH
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Whether `name` is a valid S3 bucket name, in the form the mesh makes them: 3 to 63
/// lowercase letters, digits and hyphens, starting and ending with a letter or digit,
/// without S3's reserved prefixes and suffixes.
pub fn is_valid_bucket_name(name: &str) -> bool {
    name.len() >= 3
        && name.len() <= BUCKET_NAME_MAX_LENGTH
        && is_dns_label(name)
        && !RESERVED_BUCKET_PREFIXES.iter().any(|p| name.starts_with(p))
        && !RESERVED_BUCKET_SUFFIXES.iter().any(|s| name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in [
            "a",
            "payments",
            "card-payments",
            "a1",
            "1a",
            &"a".repeat(63),
        ] {
            assert!(is_dns_label(good), "{good} is a DNS label");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", "ä", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad} is not a DNS label");
        }
    }

    #[test]
    fn names_follow_the_mesh_rule() {
        assert_eq!(
            topic_name("payments", "orders", "events"),
            "payments.orders.events"
        );
        assert_eq!(
            bucket_name("payments", "orders", "lake"),
            "payments-orders-lake"
        );
        assert_eq!(kafka_principal("payments"), "User:payments");
    }

    #[test]
    fn names_made_from_valid_labels_are_valid_topics() {
        let longest = "a".repeat(DNS_LABEL_MAX_LENGTH);
        assert!(is_valid_topic_name(&topic_name(
            &longest, &longest, &longest
        )));
        assert!(is_valid_topic_name("payments.orders.events_v2"));
        for bad in ["", ".", "..", "Payments.orders", "a b", &"a".repeat(250)] {
            assert!(!is_valid_topic_name(bad), "{bad:?} is not a valid topic");
        }
    }

    #[test]
    fn bucket_names() {
        assert!(is_valid_bucket_name(&bucket_name(
            "payments", "orders", "lake"
        )));
        assert!(is_valid_bucket_name("a-b"));
        for bad in [
            "ab",
            &"a".repeat(64),
            "Payments-orders-lake",
            "payments.orders.lake",
            "xn--payments-orders-lake",
            "payments-orders-s3alias",
            "payments-orders--ol-s3",
        ] {
            assert!(!is_valid_bucket_name(bad), "{bad:?} is not a valid bucket");
        }
    }
}
