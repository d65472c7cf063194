/* The functions of shim.c (see there). */
#ifndef SIPSTLS_MBEDTLS_SHIM_H
#define SIPSTLS_MBEDTLS_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include "mbedtls/ssl.h"

/* A random source: fills `len` bytes at `out`, returns 0 on success. */
typedef int (*sipstls_mbedtls_rng_fn)(void *ctx, unsigned char *out, size_t len);

/* Sets PSA crypto's random source. Call once, before psa_crypto_init(); until then PSA
 * crypto reports PSA_ERROR_INSUFFICIENT_ENTROPY. */
void sipstls_mbedtls_set_psa_rng(sipstls_mbedtls_rng_fn f);

/* While a handshake runs: whether it resumes a session, and the TLS id of its key
 * exchange group (0 when none is known yet). Returns 0 when no handshake is in progress. */
int sipstls_mbedtls_handshake_facts(const mbedtls_ssl_context *ssl, int *resumed, uint16_t *group);

/* mbedtls_ssl_conf_min_tls_version and _max_tls_version (MBEDTLS_SSL_VERSION_TLS1_x). */
void sipstls_mbedtls_conf_versions(mbedtls_ssl_config *conf, uint16_t min, uint16_t max);

/* mbedtls_ssl_get_version_number: 0x0303 for TLS 1.2, 0x0304 for TLS 1.3. */
uint16_t sipstls_mbedtls_version(const mbedtls_ssl_context *ssl);

/* A TLS 1.3 server that has sent its Finished sends with the application traffic keys
 * (RFC 8446 section 4.4.4 and 7.1): Mbed TLS 3.6 switches only when the handshake is over,
 * so an alert about the client's second flight (a missing client certificate) would go out
 * under the handshake keys, which the client no longer reads. Switches the outbound keys
 * once the application keys exist; returns 1 when it switched. Call after each handshake
 * step of a server. */
int sipstls_mbedtls_tls13_server_send_keys(mbedtls_ssl_context *ssl);

#endif
