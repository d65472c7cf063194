/*
 * What sipstls needs from Mbed TLS beyond its exported functions: the header-only (static
 * inline) accessors as real functions, two facts of a running handshake that Mbed TLS keeps
 * in its internal handshake state, and the random source of PSA crypto.
 */
#define MBEDTLS_ALLOW_PRIVATE_ACCESS
#include "common.h"
#include "ssl_misc.h"

#include "mbedtls/ecdh.h"
#include "mbedtls/ssl.h"
#include "psa/crypto.h"

#include "sipstls_shim.h"

/* Set once, before psa_crypto_init(), and never changed afterwards. */
static sipstls_mbedtls_rng_fn psa_rng;

void sipstls_mbedtls_set_psa_rng(sipstls_mbedtls_rng_fn f)
{
    psa_rng = f;
}

/* MBEDTLS_PSA_CRYPTO_EXTERNAL_RNG: PSA crypto's random bytes. */
psa_status_t mbedtls_psa_external_get_random(mbedtls_psa_external_random_context_t *context,
                                             uint8_t *output, size_t output_size,
                                             size_t *output_length)
{
    (void) context;
    *output_length = 0;
    if (psa_rng == NULL || psa_rng(NULL, output, output_size) != 0) {
        return PSA_ERROR_INSUFFICIENT_ENTROPY;
    }
    *output_length = output_size;
    return PSA_SUCCESS;
}

int sipstls_mbedtls_handshake_facts(const mbedtls_ssl_context *ssl, int *resumed, uint16_t *group)
{
    const mbedtls_ssl_handshake_params *hs = ssl->MBEDTLS_PRIVATE(handshake);
    if (hs == NULL) {
        return 0;
    }
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
    if (ssl->MBEDTLS_PRIVATE(tls_version) == MBEDTLS_SSL_VERSION_TLS1_3) {
        *resumed = (hs->key_exchange_mode & MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_ALL) != 0;
        *group = hs->offered_group_id;
        return 1;
    }
#endif
    *resumed = hs->resume;
#if defined(MBEDTLS_ECDH_C) && !defined(MBEDTLS_USE_PSA_CRYPTO)
    {
        mbedtls_ecp_group_id id = mbedtls_ecdh_get_grp_id((mbedtls_ecdh_context *) &hs->ecdh_ctx);
        *group = id == MBEDTLS_ECP_DP_NONE ? 0 : mbedtls_ssl_get_tls_id_from_ecp_group_id(id);
    }
#else
    *group = 0;
#endif
    return 1;
}

int sipstls_mbedtls_tls13_server_send_keys(mbedtls_ssl_context *ssl)
{
#if defined(MBEDTLS_SSL_PROTO_TLS1_3) && defined(MBEDTLS_SSL_SRV_C)
    if (ssl->conf->endpoint == MBEDTLS_SSL_IS_SERVER &&
        ssl->tls_version == MBEDTLS_SSL_VERSION_TLS1_3 &&
        ssl->transform_application != NULL &&
        ssl->transform_out != ssl->transform_application) {
        mbedtls_ssl_set_outbound_transform(ssl, ssl->transform_application);
        return 1;
    }
#else
    (void) ssl;
#endif
    return 0;
}

void sipstls_mbedtls_conf_versions(mbedtls_ssl_config *conf, uint16_t min, uint16_t max)
{
    mbedtls_ssl_conf_min_tls_version(conf, (mbedtls_ssl_protocol_version) min);
    mbedtls_ssl_conf_max_tls_version(conf, (mbedtls_ssl_protocol_version) max);
}

uint16_t sipstls_mbedtls_version(const mbedtls_ssl_context *ssl)
{
    return (uint16_t) mbedtls_ssl_get_version_number(ssl);
}
