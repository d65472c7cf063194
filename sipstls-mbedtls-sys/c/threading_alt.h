/*
 * The mutex type of Mbed TLS built with MBEDTLS_THREADING_ALT: a lock made by the
 * functions sipstls installs with mbedtls_threading_set_alt (see sipstls-backend-mbedtls's
 * locks module). `id` is the lock's identity there; `is_valid` is set once it was made.
 */
#ifndef SIPSTLS_MBEDTLS_THREADING_ALT_H
#define SIPSTLS_MBEDTLS_THREADING_ALT_H

#include <stdint.h>

typedef struct mbedtls_threading_mutex_t {
    uintptr_t id;
    unsigned char is_valid;
} mbedtls_threading_mutex_t;

#endif
