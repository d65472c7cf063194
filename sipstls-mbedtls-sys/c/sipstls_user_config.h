/*
 * The Mbed TLS configuration sipstls builds: Mbed TLS's default configuration
 * (include/mbedtls/mbedtls_config.h: TLS 1.2 and 1.3, AES-NI, certificate validity
 * against the clock, session tickets and cache) with these changes, included through
 * MBEDTLS_USER_CONFIG_FILE after it.
 */

/* Thread safety for the multi-threaded manager, through functions set at run time
 * (mbedtls_threading_set_alt): sipstls installs pthread mutexes or the application's
 * lock hooks (process-shared locks for forked workers). */
#define MBEDTLS_THREADING_C
#define MBEDTLS_THREADING_ALT

/* Allocations through functions set at run time (mbedtls_platform_set_calloc_free):
 * libc's calloc/free until the application installs allocator hooks. */
#define MBEDTLS_PLATFORM_MEMORY

/* PSA crypto (the TLS 1.3 key schedule and key exchange) draws its random bytes from
 * sipstls's generator, which reseeds after fork(), instead of a DRBG of its own, which
 * would repeat its output in forked workers. */
#define MBEDTLS_PSA_CRYPTO_EXTERNAL_RNG

/* No key files: PSA keys live in memory only. */
#undef MBEDTLS_PSA_CRYPTO_STORAGE_C
#undef MBEDTLS_PSA_ITS_FILE_C

/* Not used by sipstls: no renegotiation (refused on the wire), no sockets or timers of
 * Mbed TLS's own (sessions are sans-I/O), no debug output. */
#undef MBEDTLS_SSL_RENEGOTIATION
#undef MBEDTLS_NET_C
#undef MBEDTLS_TIMING_C
#undef MBEDTLS_DEBUG_C
