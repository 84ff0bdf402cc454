//! TLS material: loading a PEM chain and key at config time, a development certificate for
//! `demo`, and the certificate resolver the HTTPS listeners use.
//!
//! Certificates are parsed while validating config (so `check` catches a bad file and
//! nothing is bound), and handed to pingora through a resolver rather than file paths,
//! because pingora's path-based loader panics on bad input at start-up.

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

/// A certificate chain with its private key, ready for rustls.
pub struct CertifiedChain {
    pub key: Arc<CertifiedKey>,
}

impl std::fmt::Debug for CertifiedChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CertifiedChain({} certificates, key <redacted>)",
            self.key.cert.len()
        )
    }
}

impl CertifiedChain {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, String> {
        let cert_pem = std::fs::read(cert)
            .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?;
        let key_pem = std::fs::read(key)
            .map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate found", cert.display()));
        }
        let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?
            .ok_or_else(|| format!("{}: no private key found", key.display()))?;
        Self::from_der(certs, key_der)
            .map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))
    }

    pub fn from_der(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, String> {
        let provider = rustls::crypto::ring::default_provider();
        let ck = CertifiedKey::from_der(certs, key, &provider)
            .map_err(|e| format!("certificate and key do not form a usable pair: {e}"))?;
        Ok(Self { key: Arc::new(ck) })
    }

    /// A self-signed certificate for `names`, generated in memory (used by `demo`).
    pub fn self_signed(names: &[&str]) -> Result<Self, String> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
        let cert = ck.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        Self::from_der(vec![cert], key)
    }
}

/// Hands the current certificate to every handshake; swapped on reload.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    pub fn new(chain: &CertifiedChain) -> Self {
        Self {
            current: ArcSwap::new(chain.key.clone()),
        }
    }

    pub fn replace(&self, chain: &CertifiedChain) {
        self.current.store(chain.key.clone());
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
