//! Certificates made in the test: a private CA with a leaf for 127.0.0.1, and a
//! self-signed certificate.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A TLS server identity and, for a CA-signed one, the CA's PEM to trust.
pub struct Identity {
    pub server_config: rustls::ServerConfig,
    pub ca_pem: Option<String>,
}

fn server_config(cert: CertificateDer<'static>, key: &KeyPair) -> rustls::ServerConfig {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap()
}

fn leaf_params() -> CertificateParams {
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    params
}

/// A certificate for 127.0.0.1 signed by a fresh private CA.
pub fn ca_signed() -> Identity {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "webhookd test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params().signed_by(&leaf_key, &ca, &ca_key).unwrap();
    Identity {
        server_config: server_config(leaf.der().clone(), &leaf_key),
        ca_pem: Some(ca.pem()),
    }
}

/// A self-signed certificate for 127.0.0.1.
pub fn self_signed() -> Identity {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params().self_signed(&key).unwrap();
    Identity {
        server_config: server_config(cert.der().clone(), &key),
        ca_pem: None,
    }
}
