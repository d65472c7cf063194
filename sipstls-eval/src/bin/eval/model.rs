//! The results of a run, as plain data for the markdown, JSON and SVG writers.

use std::time::Duration;

use sipstls::{BackendInfo, Capabilities};

use super::bench::{Plan, Scenario};
use super::crypto::CryptoTimes;
use super::meta::Meta;
use super::overhead::OverheadRow;
use super::stats::Sample;

/// Everything a report shows.
#[derive(Debug)]
pub struct Report {
    /// Date, command line, machine, build.
    pub meta: Meta,
    /// Iteration counts.
    pub plan: Plan,
    /// Every backend asked for, built or not, in the order asked.
    pub backends: Vec<BackendEntry>,
    /// One result per scenario, in report order.
    pub results: Vec<ScenarioResult>,
    /// Wall time of the whole run (PKI generation and measurements).
    pub wall: Duration,
    /// sipstls against each library's own API.
    pub overhead: Vec<Result<OverheadRow, String>>,
    /// The public-key operation times behind the crypto limits.
    pub crypto: Vec<Result<CryptoTimes, String>>,
}

impl Report {
    /// The crypto times of `backend`, if measured.
    pub fn crypto_of(&self, backend: &str) -> Option<&CryptoTimes> {
        self.crypto.iter().filter_map(|c| c.as_ref().ok()).find(|c| c.backend == backend)
    }
}

impl Report {
    /// The backends that were built, in order.
    pub fn built(&self) -> impl Iterator<Item = (&str, &BackendFacts)> {
        self.backends.iter().filter_map(|b| b.status.as_ref().ok().map(|f| (b.name.as_str(), f)))
    }

    /// The result of the scenario with identifier `id`.
    pub fn result(&self, id: &str) -> Option<&ScenarioResult> {
        self.results.iter().find(|r| r.scenario.id == id)
    }
}

/// A backend asked for on the command line.
#[derive(Debug)]
pub struct BackendEntry {
    /// The name as asked (or as the backend reports it, for the default list).
    pub name: String,
    /// Its facts, or why it is not in this binary.
    pub status: Result<BackendFacts, String>,
}

/// What a backend reports about itself through the API.
#[derive(Debug, Clone)]
pub struct BackendFacts {
    /// `Backend::info()`.
    pub info: BackendInfo,
    /// `Backend::capabilities()`.
    pub caps: Capabilities,
}

/// One scenario on every built backend.
#[derive(Debug)]
pub struct ScenarioResult {
    /// The scenario.
    pub scenario: Scenario,
    /// Per built backend (in report order): the figure, or why there is none.
    pub outcomes: Vec<(String, Result<Measured, String>)>,
}

/// One figure of one backend.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Server-side values over the repetitions.
    pub server: Sample,
    /// Client-side values, when the scenario has them.
    pub client: Option<Sample>,
    /// What was negotiated (version, suite, group), server view.
    pub negotiated: String,
}

/// The capability flags shown in the report, with their labels, in order.
pub const CAPABILITY_ROWS: &[(Capabilities, &str)] = &[
    (Capabilities::TLS12, "TLS 1.2"),
    (Capabilities::TLS13, "TLS 1.3"),
    (Capabilities::CLIENT_CERT, "Client certificates"),
    (Capabilities::SNI_SWITCH, "SNI domain switch"),
    (Capabilities::ALPN, "ALPN"),
    (Capabilities::RESUMPTION_TICKETS, "Resumption: session tickets"),
    (Capabilities::RESUMPTION_SESSION_ID, "Resumption: TLS 1.2 session IDs"),
    (Capabilities::CIPHER_LIST_TLS12, "Explicit TLS 1.2 cipher list"),
    (Capabilities::CIPHER_SUITES_TLS13, "Explicit TLS 1.3 cipher suites"),
    (Capabilities::ALLOCATOR_HOOK, "Allocator hook"),
    (Capabilities::LOCK_HOOK, "Lock hook"),
    (Capabilities::MODEL_CONFINED, "Process model: confined"),
    (Capabilities::MODEL_PINNED, "Process model: pinned"),
    (Capabilities::MODEL_MIGRATING, "Process model: migrating"),
];

/// A stable JSON key for a capability row (`"client_certificates"`).
pub fn capability_key(label: &str) -> String {
    let mut key = String::new();
    for ch in label.chars() {
        if ch.is_ascii_alphanumeric() {
            key.push(ch.to_ascii_lowercase());
        } else if !key.ends_with('_') && !key.is_empty() {
            key.push('_');
        }
    }
    key.trim_end_matches('_').to_owned()
}

#[cfg(test)]
mod tests {
    use super::capability_key;

    #[test]
    fn keys() {
        assert_eq!(capability_key("TLS 1.2"), "tls_1_2");
        assert_eq!(capability_key("Resumption: TLS 1.2 session IDs"), "resumption_tls_1_2_session_ids");
    }
}
