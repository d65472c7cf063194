/* The wolfSSL headers the bindings are generated from (bindgen keeps the declarations of
 * wolfssl/, wolfssl/wolfcrypt/ and wolfssl/openssl/compat_types.h they pull in). */
#include <wolfssl/options.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
