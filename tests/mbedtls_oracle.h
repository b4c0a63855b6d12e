/* Reference SHA-1 and HMAC-SHA256 for the tests, computed with mbedTLS
   independently of the header's code paths.  mbedTLS 4 has neither
   mbedtls_sha1 nor mbedtls_md_hmac: SHA-1 is then PSA's hash, and HMAC is
   RFC 2104 §2 written out over PSA's SHA-256 (not the psa_mac_compute the
   header uses). */
#ifndef STWS_TESTS_MBEDTLS_ORACLE_H
#define STWS_TESTS_MBEDTLS_ORACLE_H
#include <stdlib.h>
#include <string.h>
#include <mbedtls/version.h>
#if MBEDTLS_VERSION_NUMBER >= 0x04000000
#include <psa/crypto.h>
#else
#include <mbedtls/md.h>
#include <mbedtls/sha1.h>
#endif

static inline int oracle_sha1(const unsigned char *in, size_t len, unsigned char out[20]) {
#if MBEDTLS_VERSION_NUMBER >= 0x04000000
    size_t n;
    if (psa_crypto_init() != PSA_SUCCESS) return -1;
    return psa_hash_compute(PSA_ALG_SHA_1, in, len, out, 20, &n) == PSA_SUCCESS ? 0 : -1;
#elif MBEDTLS_VERSION_NUMBER >= 0x03000000
    return mbedtls_sha1(in, len, out);
#else
    return mbedtls_sha1_ret(in, len, out);
#endif
}

static inline int oracle_hmac_sha256(const unsigned char *key, size_t klen, const unsigned char *msg,
                              size_t mlen, unsigned char mac[32]) {
#if MBEDTLS_VERSION_NUMBER >= 0x04000000
    unsigned char k[64], inner[32], *buf;
    size_t i, n;
    psa_status_t st = psa_crypto_init();
    memset(k, 0, sizeof k);
    if (st == PSA_SUCCESS && klen > 64) st = psa_hash_compute(PSA_ALG_SHA_256, key, klen, k, 32, &n);
    else if (st == PSA_SUCCESS) memcpy(k, key, klen);
    buf = (unsigned char *)malloc(64 + (mlen > 32 ? mlen : 32));
    if (!buf) return -1;
    for (i = 0; i < 64; i++) buf[i] = (unsigned char)(k[i] ^ 0x36);
    memcpy(buf + 64, msg, mlen);
    if (st == PSA_SUCCESS) st = psa_hash_compute(PSA_ALG_SHA_256, buf, 64 + mlen, inner, 32, &n);
    for (i = 0; i < 64; i++) buf[i] = (unsigned char)(k[i] ^ 0x5c);
    memcpy(buf + 64, inner, 32);
    if (st == PSA_SUCCESS) st = psa_hash_compute(PSA_ALG_SHA_256, buf, 64 + 32, mac, 32, &n);
    free(buf);
    return st == PSA_SUCCESS ? 0 : -1;
#else
    return mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), key, klen, msg, mlen, mac);
#endif
}
#endif
