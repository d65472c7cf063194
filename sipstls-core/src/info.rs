//! A plain-data snapshot of an established session.

use crate::config::{Certificate, ProtocolVersion};
use crate::error::CertificateError;
use crate::x509::CertificateInfo;

/// The outcome of verifying the peer's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::exhaustive_enums)] // closed: not asked, nothing sent, verified, or failed
pub enum VerifyResult {
    /// This side did not ask for verification (a server without `verify_peer`, or a client
    /// with verification explicitly disabled).
    NotRequested,
    /// Verification was requested but the peer sent no certificate (optional client auth).
    NoCertificate,
    /// The chain verified against the trust anchors (and, on a client, the name matched).
    Verified,
    /// Verification failed but the session was allowed to continue (never the case with
    /// the defaults; reserved for `optional_no_ca`-style policies).
    Failed(CertificateError),
}

/// What a SIP server wants to know about an established TLS connection: cheap to clone
/// and to send to another process. Backends build it with [`TlsInfo::new`] and the
/// `with_*` methods (new facts come as new fields).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// Negotiated version.
    pub version: ProtocolVersion,
    /// Negotiated cipher suite, IANA name (`TLS_AES_128_GCM_SHA256`).
    pub cipher_suite: String,
    /// Key-exchange group, IANA name (`x25519`, `secp256r1`, `X25519MLKEM768`), when known.
    pub group: Option<String>,
    /// Server: the SNI the client sent. Client: the SNI we sent.
    pub sni: Option<String>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
    /// True when the session was resumed (no full handshake).
    pub resumed: bool,
    /// The peer's chain as it sent it, leaf first (DER). Empty if it sent none. On a
    /// resumed session some backends do not keep the chain: then it is empty too.
    pub peer_chain: Vec<Certificate>,
    /// The verification outcome.
    pub verify: VerifyResult,
    /// Parsed facts about the peer's leaf certificate.
    pub peer: Option<CertificateInfo>,
}

impl TlsInfo {
    /// The facts every established session has; `peer` is parsed from the first
    /// certificate of `peer_chain` (a chain that does not parse leaves it empty). No group,
    /// SNI or ALPN, not resumed.
    pub fn new(
        version: ProtocolVersion,
        cipher_suite: impl Into<String>,
        peer_chain: Vec<Certificate>,
        verify: VerifyResult,
    ) -> Self {
        let peer = peer_chain.first().and_then(|c| CertificateInfo::parse(c.der()).ok());
        TlsInfo {
            version,
            cipher_suite: cipher_suite.into(),
            group: None,
            sni: None,
            alpn: None,
            resumed: false,
            peer_chain,
            verify,
            peer,
        }
    }

    /// Sets the key-exchange group.
    pub fn with_group(mut self, group: Option<String>) -> Self {
        self.group = group;
        self
    }

    /// Sets the SNI.
    pub fn with_sni(mut self, sni: Option<String>) -> Self {
        self.sni = sni;
        self
    }

    /// Sets the ALPN protocol.
    pub fn with_alpn(mut self, alpn: Option<Vec<u8>>) -> Self {
        self.alpn = alpn;
        self
    }

    /// Marks the session resumed (or not).
    pub fn with_resumed(mut self, resumed: bool) -> Self {
        self.resumed = resumed;
        self
    }

    /// Parsed facts about every certificate of the peer's chain, leaf first, as it sent it
    /// (certificates that do not parse are left out). When `verify` is
    /// [`VerifyResult::Verified`], this chain led to one of the domain's trust anchors.
    pub fn peer_chain_info(&self) -> Vec<CertificateInfo> {
        self.peer_chain.iter().filter_map(|c| CertificateInfo::parse(c.der()).ok()).collect()
    }
}
