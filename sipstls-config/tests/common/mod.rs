//! Test helpers: the tls.cfg fixtures, temporary directories, and the conformance suite's
//! PKI and handshake pump.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use sipstls_conformance::pki::{Ca, Leaf};
use sipstls_core::{Error, Session};

/// `tests/fixtures`: the Kamailio tls.cfg samples the tests read.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "sipstls-config-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The certificates `tests/fixtures/tls.cfg` names: a CA, a server leaf and a client leaf.
pub struct PeerPki {
    pub ca: Ca,
    pub server: Leaf,
    pub client: Leaf,
}

impl PeerPki {
    pub fn new() -> PeerPki {
        let ca = Ca::new("Test SIP CA");
        let server = ca.leaf("localhost", &["localhost", "sip.test"], 10);
        let client = ca.leaf("sip-client", &["client.sip.test"], 11);
        PeerPki { ca, server, client }
    }

    /// Writes `CERTS/{ca.crt,server.crt,server.key,client.crt,client.key}` into `dir`.
    pub fn write_certs(&self, dir: &TempDir) {
        dir.write("CERTS/ca.crt", &self.ca.pem);
        dir.write("CERTS/server.crt", &self.server.cert_pem);
        dir.write("CERTS/server.key", &self.server.key_pem);
        dir.write("CERTS/client.crt", &self.client.cert_pem);
        dir.write("CERTS/client.key", &self.client.key_pem);
    }
}

/// Runs a handshake between two sessions in memory (the conformance suite's pump); the
/// error of the side that failed.
pub fn handshake(client: &mut dyn Session, server: &mut dyn Session) -> Result<(), Error> {
    sipstls_conformance::pump::handshake(client, server).map_err(|f| f.error)
}
