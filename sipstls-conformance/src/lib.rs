//! # sipstls-conformance
//!
//! One library of checks that every sipstls backend must pass, and a macro that expands
//! them into one named `#[test]` per check for a backend (each backend gets its own test
//! binary, because OpenSSL and BoringSSL cannot link into one):
//!
//! ```ignore
//! sipstls_conformance::conformance_suite!(sipstls::rustls::RustlsBackend::new());
//! ```
//!
//! expands to `tls12::handshake_and_data`, `tls13::handshake_and_data`, ...,
//! `common::garbage_input_typed_error`, ... A check for a capability the backend does not
//! claim asserts the documented refusal instead; nothing is skipped silently.

pub mod async_checks;
pub mod callgrind;
pub mod checks;
pub mod fork;
pub mod hostile;
pub mod large_messages;
pub mod ops;
pub mod peers;
mod peers_rustls;
pub mod pki;
pub mod pump;
pub mod wire;

pub use sipstls;

/// Expands to one `#[test]` per check for the backend built by `$backend`, in modules
/// `tls12`, `tls13` and `common`. Invoke it at the root of a test crate.
#[macro_export]
macro_rules! conformance_suite {
    ($backend:expr) => {
        fn __sipstls_backend() -> ::std::sync::Arc<dyn $crate::sipstls::Backend> {
            ::std::sync::Arc::new($backend)
        }

        mod tls12 {
            $crate::__versioned_checks!(super::__sipstls_backend, $crate::sipstls::ProtocolVersion::Tls12);
        }

        mod tls13 {
            $crate::__versioned_checks!(super::__sipstls_backend, $crate::sipstls::ProtocolVersion::Tls13);
        }

        mod common {
            $crate::__module_checks!(checks, super::__sipstls_backend;
                version_mismatch_refused,
                garbage_input_typed_error,
                oversize_record_length,
                truncated_record,
                unsupported_settings_refused,
                invalid_config_refused,
                domain_table_selection,
                process_model_settings,
            );
        }

        mod ops {
            $crate::__module_checks!(ops, super::__sipstls_backend;
                table_statistics,
                reload_swaps_domains,
                peer_certificate_inspection,
            );
        }

        mod hostile {
            $crate::__module_checks!(hostile, super::__sipstls_backend;
                random_bytes_to_client,
                random_records_after_handshake,
                record_length_over_limit,
                truncated_records_wait,
                sslv2_client_hello_refused,
                data_before_handshake_ends,
                early_close_without_close_notify,
                half_closed_connection,
                never_reading_peer_is_bounded,
                no_usable_signature_scheme,
                close_notify_during_handshake,
                flooding_peer_is_bounded,
                client_renegotiation_refused,
                server_renegotiation_refused,
            );
        }

        mod async_stream {
            $crate::__module_checks!(async_checks, super::__sipstls_backend;
                async_handshake_and_data,
                async_sni_switch,
                async_client_certificate,
                async_resumption,
                async_close_notify_and_truncation,
                async_half_close,
                async_never_reading_peer_is_bounded,
                async_hostile_large_hello,
                async_handshake_timeout,
                async_flooding_peer_is_bounded,
                async_hostile_input,
            );
        }

        mod large_messages {
            $crate::__module_checks!(large_messages, super::__sipstls_backend;
                large_client_hello,
                many_cipher_suites,
                large_server_hello,
            );
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __versioned_checks {
    ($b:path, $v:expr) => {
        $crate::__versioned_tests!($b, $v;
            handshake_and_data,
            write_before_handshake,
            large_and_tiny_writes,
            close_notify,
            client_cert_required_present,
            client_cert_required_absent,
            client_cert_optional_absent,
            client_cert_optional_present,
            client_cert_untrusted_refused,
            unknown_ca_refused,
            wrong_name_refused,
            expired_refused,
            sip_uri_identity_accepted,
            ip_address_identity,
            name_check_disabled,
            sni_selects_domain,
            sni_switch_applies_domain_policy,
            alpn,
            resumption_tickets,
            resumption_server_cache,
            tls_info_fields,
            cipher_suite_selection,
            default_suite_order,
            rsa_identity,
            oversize_record_after_handshake,
            crl_revoked_client_refused,
            crl_revoked_server_refused,
            crl_unknown_status_refused,
            key_log_written,
            multiple_identities_selects,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __versioned_tests {
    ($b:path, $v:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::checks::$name(&*$b(), $v);
            }
        )*
    };
}

/// One `#[test]` per check named, each calling `$crate::<module>::<check>(backend)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __module_checks {
    ($m:ident, $b:path; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::$m::$name(&*$b());
            }
        )*
    };
}
