/* mbedTLS 3.6 user config for `make test-mbedtls3`'s second build: what
   firmware SDKs ship (ESP-IDF, Zephyr): TLS and X.509 on PSA crypto, TLS 1.2
   only.  Passed as MBEDTLS_USER_CONFIG_FILE both to the library build and to
   every file that includes stream_ws.h (the config changes struct layouts). */
#define MBEDTLS_USE_PSA_CRYPTO
#undef MBEDTLS_SSL_PROTO_TLS1_3
