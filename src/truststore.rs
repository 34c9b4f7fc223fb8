//! A Java trust store (JKS) made from PEM CA certificates, so that a JVM (a Spark job's S3A
//! and Kafka clients) trusts the platform's CAs with nothing but
//! `-Djavax.net.ssl.trustStore=FILE`. Java 17 has no PEM key store type, and S3A trusts only
//! the JVM's trust store, so a file in a format the JVM reads is the one way that needs no code
//! in the job. Pure: the same certificates give the same bytes (entries carry a fixed date).
//!
//! The format is the one `sun.security.provider.JavaKeyStore` reads: magic `0xFEEDFEED`,
//! version 2, the entry count, each entry a trusted certificate (tag 2, alias, date, `X.509`,
//! the DER), then a SHA-1 over the password (UTF-16BE), `"Mighty Aphrodite"` and every byte
//! before it. The password, [`TRUSTSTORE_PASSWORD`], guards nothing (the store holds only
//! public certificates); the JVM checks it only when given one.
//!
//! Written here rather than with a keystore crate: `p12-keystore` writes PKCS#12, whose salts
//! are random, so the ConfigMap would change on every reconcile (a write per product per resync
//! and a rolled job each time); the `jks` crate would add a dependency tree for the 40 lines of
//! the trusted-certificate layout. The Spark jobs of `test_spark_jobs.py` reach the local S3 and
//! Kafka over TLS through this store alone; the unit tests pin its layout.

use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The store's integrity password: the JDK's well-known default, since nothing in the store
/// is secret (`keytool -list -keystore FILE -storepass changeit` lists it).
pub const TRUSTSTORE_PASSWORD: &str = "changeit";

const MAGIC: u32 = 0xFEED_FEED;
const VERSION: u32 = 2;
const TRUSTED_CERTIFICATE: u32 = 2;

/// Why no trust store could be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TruststoreError {
    /// The text is not PEM certificates.
    #[error("the CA bundle is not PEM certificates: {0}")]
    NotPem(String),
    /// The text holds no certificate.
    #[error("the CA bundle holds no PEM certificate")]
    Empty,
}

/// A JKS trust store holding each certificate of the PEM `bundles`, in order (aliases `ca-0`,
/// `ca-1`, ...); a certificate given twice is stored once.
pub fn jks_from_pem(bundles: &[&str]) -> Result<Vec<u8>, TruststoreError> {
    let mut certificates: Vec<Vec<u8>> = Vec::new();
    for pem in bundles {
        for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let der = certificate
                .map_err(|error| TruststoreError::NotPem(error.to_string()))?
                .to_vec();
            if !certificates.contains(&der) {
                certificates.push(der);
            }
        }
    }
    if certificates.is_empty() {
        return Err(TruststoreError::Empty);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&(certificates.len() as u32).to_be_bytes());
    for (index, der) in certificates.iter().enumerate() {
        out.extend_from_slice(&TRUSTED_CERTIFICATE.to_be_bytes());
        write_utf(&mut out, &format!("ca-{index}"));
        out.extend_from_slice(&0u64.to_be_bytes());
        write_utf(&mut out, "X.509");
        out.extend_from_slice(&(der.len() as u32).to_be_bytes());
        out.extend_from_slice(der);
    }
    let mut signed: Vec<u8> = TRUSTSTORE_PASSWORD
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    signed.extend_from_slice(b"Mighty Aphrodite");
    signed.extend_from_slice(&out);
    out.extend_from_slice(digest(&SHA1_FOR_LEGACY_USE_ONLY, &signed).as_ref());
    Ok(out)
}

/// `DataOutputStream.writeUTF` for ASCII text: a 16-bit length, then the bytes.
fn write_utf(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two throwaway self-signed CA certificates (no private key kept), for the format only.
    const CA_A: &str = include_str!("../tests/data/ca-a.pem");
    const CA_B: &str = include_str!("../tests/data/ca-b.pem");

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn a_store_holds_each_certificate_once_with_a_valid_digest() {
        let store = jks_from_pem(&[&format!("{CA_A}{CA_B}"), CA_A]).unwrap();
        assert_eq!(u32_at(&store, 0), MAGIC);
        assert_eq!(u32_at(&store, 4), VERSION);
        assert_eq!(
            u32_at(&store, 8),
            2,
            "the repeated certificate is stored once"
        );
        assert_eq!(u32_at(&store, 12), TRUSTED_CERTIFICATE);
        let (body, sum) = store.split_at(store.len() - 20);
        let mut signed: Vec<u8> = "changeit"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        signed.extend_from_slice(b"Mighty Aphrodite");
        signed.extend_from_slice(body);
        assert_eq!(digest(&SHA1_FOR_LEGACY_USE_ONLY, &signed).as_ref(), sum);
        assert_eq!(store, jks_from_pem(&[CA_A, CA_B]).unwrap(), "deterministic");
    }

    #[test]
    fn text_without_certificates_is_refused() {
        assert_eq!(jks_from_pem(&["no pem here"]), Err(TruststoreError::Empty));
        assert_eq!(jks_from_pem(&[]), Err(TruststoreError::Empty));
    }
}
