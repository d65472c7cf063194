//! What the manager's test files share.

/// Runs each named check once per backend of the build (rustls and OpenSSL), as
/// `rustls::check` and `openssl::check`.
macro_rules! per_backend {
    ($($check:ident),* $(,)?) => {
        mod rustls {
            $( #[test] fn $check() { super::$check(sipstls::backend("rustls").unwrap()) } )*
        }
        mod openssl {
            $( #[test] fn $check() { super::$check(sipstls::backend("openssl").unwrap()) } )*
        }
    };
}
