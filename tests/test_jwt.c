/* HS256 JWT minting: the known answers of PROTOCOL.md §7, claim
   combinations and escaping checked against an independent computation
   (a base64url coder written here, mbedTLS's one-shot HMAC), and the
   buffer contract at every capacity. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "mbedtls_oracle.h"
#include "../stream_ws.h"

static const char SECRET[] = "secret";

/* ---- an independent reference ------------------------------------------- */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64url(const unsigned char *in, size_t n, char *out) {
    size_t i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        unsigned long v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
        out[o++] = B64URL[v >> 6 & 63];
        out[o++] = B64URL[v & 63];
    }
    if (n - i == 1) {
        unsigned long v = (unsigned long)in[i] << 16;
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
    } else if (n - i == 2) {
        unsigned long v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8;
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
        out[o++] = B64URL[v >> 6 & 63];
    }
    out[o] = 0;
    return o;
}

static size_t b64url_decode(const char *in, size_t n, unsigned char *out) {
    size_t i, o = 0;
    unsigned long acc = 0;
    int bits = 0;
    for (i = 0; i < n; i++) {
        const char *p = strchr(B64URL, in[i]);
        if (!p || !in[i]) fail_msg("not base64url: '%c'", in[i]);
        acc = acc << 6 | (unsigned long)(p - B64URL);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits & 0xFF);
        }
    }
    return o;
}

/* header.payload.signature for the payload JSON, computed here. */
static char *reference(const char *secret, size_t secret_len, const char *payload) {
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    size_t plen = strlen(payload), n;
    char *out = (char *)malloc(128 + plen * 2);
    unsigned char mac[32];
    assert_non_null(out);
    n = b64url((const unsigned char *)header, sizeof header - 1, out);
    out[n++] = '.';
    n += b64url((const unsigned char *)payload, plen, out + n);
    assert_int_equal(oracle_hmac_sha256((const unsigned char *)secret, secret_len,
                                        (const unsigned char *)out, n, mac),
                     0);
    out[n++] = '.';
    b64url(mac, sizeof mac, out + n);
    return out;
}

/* Mint with claims and compare with the reference for payload. */
static void check_user(const char *label, const char *secret, size_t secret_len, const char *user_id,
                       int64_t exp, int64_t iat, const char *payload) {
    stws_jwt_claims c;
    char out[4096];
    size_t len = 0;
    char *want = reference(secret, secret_len, payload);
    stws_result r;
    c.user_id = user_id;
    c.exp = exp;
    c.iat = iat;
    r = stws_jwt_user_token(secret, secret_len, &c, out, sizeof out, &len);
    if (r != STWS_OK) fail_msg("%s: %s", label, stws_result_string(r));
    if (len != strlen(want) || strcmp(out, want) != 0)
        fail_msg("%s:\n got  %s\n want %s", label, out, want);
    /* and the payload decodes to exactly the claims JSON */
    {
        const char *p1 = strchr(out, '.'), *p2 = strrchr(out, '.');
        unsigned char dec[4096];
        size_t dn = b64url_decode(p1 + 1, (size_t)(p2 - p1 - 1), dec);
        if (dn != strlen(payload) || memcmp(dec, payload, dn) != 0)
            fail_msg("%s: payload is %.*s", label, (int)dn, dec);
    }
    free(want);
}

/* ---- tests ---------------------------------------------------------------- */

static void known_answers(void **state) {
    stws_jwt_claims c;
    char out[256];
    size_t len = 0;
    (void)state;
    memset(&c, 0, sizeof c);
    c.user_id = "tommaso";
    assert_int_equal(stws_jwt_user_token(SECRET, 6, &c, out, sizeof out, &len), STWS_OK);
    assert_string_equal(out, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoidG9tbWFzbyJ9."
                             "v-x-jt3ZnBXXbQ0GoWloIZtVnat2IE74U1a4Yuxd63M");
    assert_int_equal(len, strlen(out));

    c.exp = 1566941272;
    c.iat = 1566941272;
    assert_int_equal(stws_jwt_user_token(SECRET, 6, &c, out, sizeof out, &len), STWS_OK);
    assert_string_equal(out, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                             "eyJleHAiOjE1NjY5NDEyNzIsImlhdCI6MTU2Njk0MTI3MiwidXNlcl9pZCI6InRvbW1hc28ifQ."
                             "3HY2O_7o5ZjZ-6KCXLzyPpHZOlNEDy6_m3iNb5DKAMY");
    assert_int_equal(len, strlen(out));

    assert_int_equal(stws_jwt_server_token(SECRET, 6, out, sizeof out, &len), STWS_OK);
    assert_string_equal(out, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzZXJ2ZXIiOnRydWV9."
                             "DHnfQolWsEGFcTR7ZwVBbIVUFAvxzDJXzB6UlyU-7JQ");
    assert_int_equal(len, strlen(out));
}

static void claims_combinations(void **state) {
    (void)state;
    check_user("user only", SECRET, 6, "alice", 0, 0, "{\"user_id\":\"alice\"}");
    check_user("exp only", SECRET, 6, "alice", 1700000000, 0, "{\"exp\":1700000000,\"user_id\":\"alice\"}");
    check_user("iat only", SECRET, 6, "alice", 0, 1699999995, "{\"iat\":1699999995,\"user_id\":\"alice\"}");
    check_user("exp and iat", SECRET, 6, "alice", 1700003600, 1699999995,
               "{\"exp\":1700003600,\"iat\":1699999995,\"user_id\":\"alice\"}");
    check_user("no user_id", SECRET, 6, NULL, 5, 4, "{\"exp\":5,\"iat\":4}");
    check_user("nothing", SECRET, 6, NULL, 0, 0, "{}");
    check_user("extremes", SECRET, 6, "u", INT64_MAX, INT64_MIN,
               "{\"exp\":9223372036854775807,\"iat\":-9223372036854775808,\"user_id\":\"u\"}");
    check_user("negative", SECRET, 6, "u", -1, -2, "{\"exp\":-1,\"iat\":-2,\"user_id\":\"u\"}");
    check_user("empty user_id", SECRET, 6, "", 0, 0, "{\"user_id\":\"\"}");
    /* lengths 1..3 mod 3 of the payload (padding stripped in each case) */
    check_user("pad 1", SECRET, 6, "a", 0, 0, "{\"user_id\":\"a\"}");
    check_user("pad 2", SECRET, 6, "ab", 0, 0, "{\"user_id\":\"ab\"}");
    check_user("pad 3", SECRET, 6, "abc", 0, 0, "{\"user_id\":\"abc\"}");
}

static void user_id_escaping(void **state) {
    char long_id[1501], long_json[4000];
    size_t i, n;
    (void)state;
    check_user("quotes", SECRET, 6, "a\"b", 0, 0, "{\"user_id\":\"a\\\"b\"}");
    check_user("backslash", SECRET, 6, "a\\b", 0, 0, "{\"user_id\":\"a\\\\b\"}");
    check_user("injection", SECRET, 6, "x\",\"server\":true,\"y\":\"", 0, 0,
               "{\"user_id\":\"x\\\",\\\"server\\\":true,\\\"y\\\":\\\"\"}");
    check_user("controls", SECRET, 6, "\n\r\t\b\f\x01\x1f\x7f", 0, 0,
               "{\"user_id\":\"\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f\"}");
    check_user("utf-8", SECRET, 6, "J\xc3\xb6rg \xf0\x9f\x98\x80", 0, 0,
               "{\"user_id\":\"J\xc3\xb6rg \xf0\x9f\x98\x80\"}");
    check_user("slash kept", SECRET, 6, "a/b", 0, 0, "{\"user_id\":\"a/b\"}");
    /* long enough to cross many 48-byte blocks, with escapes across them */
    for (i = 0; i < 1500; i++) long_id[i] = i % 7 == 3 ? '"' : (char)('a' + i % 26);
    long_id[1500] = 0;
    n = (size_t)sprintf(long_json, "{\"exp\":42,\"user_id\":\"");
    for (i = 0; i < 1500; i++) {
        if (long_id[i] == '"') long_json[n++] = '\\';
        long_json[n++] = long_id[i];
    }
    strcpy(long_json + n, "\"}");
    check_user("long user_id", SECRET, 6, long_id, 42, 0, long_json);
}

static void secrets(void **state) {
    static const char nul_secret[] = {'s', 0, 'x'};
    char big[200];
    memset(big, 'k', sizeof big); /* longer than the SHA-256 block: hashed first (RFC 2104) */
    (void)state;
    check_user("binary secret", nul_secret, sizeof nul_secret, "u", 0, 0, "{\"user_id\":\"u\"}");
    check_user("long secret", big, sizeof big, "u", 0, 0, "{\"user_id\":\"u\"}");
    check_user("one-byte secret", "k", 1, "u", 0, 0, "{\"user_id\":\"u\"}");
    {
        /* the secret's length is what counts, not a NUL in it */
        stws_jwt_claims c;
        char a[256], b[256];
        size_t la, lb;
        memset(&c, 0, sizeof c);
        c.user_id = "u";
        assert_int_equal(stws_jwt_user_token(nul_secret, 1, &c, a, sizeof a, &la), STWS_OK);
        assert_int_equal(stws_jwt_user_token(nul_secret, 3, &c, b, sizeof b, &lb), STWS_OK);
        assert_string_not_equal(a, b);
    }
}

static void buffer_too_small(void **state) {
    stws_jwt_claims c;
    char full[512];
    size_t need, cap;
    int server;
    (void)state;
    memset(&c, 0, sizeof c);
    c.user_id = "tommaso\"q";
    c.exp = 1566941272;
    c.iat = 1566941000;
    for (server = 0; server < 2; server++) {
        stws_result r = server ? stws_jwt_server_token(SECRET, 6, full, sizeof full, &need)
                               : stws_jwt_user_token(SECRET, 6, &c, full, sizeof full, &need);
        assert_int_equal(r, STWS_OK);
        assert_int_equal(strlen(full), need);
        {
            size_t len = 0;
            r = server ? stws_jwt_server_token(SECRET, 6, NULL, 0, &len)
                       : stws_jwt_user_token(SECRET, 6, &c, NULL, 0, &len);
            assert_int_equal(r, STWS_ERR_BUFFER_TOO_SMALL);
            assert_int_equal(len, need);
        }
        for (cap = 0; cap <= need + 1; cap++) {
            char *buf = (char *)malloc(cap + 1);
            size_t len = 0;
            assert_non_null(buf);
            memset(buf, 'x', cap);
            buf[cap] = (char)0xA5; /* guard */
            r = server ? stws_jwt_server_token(SECRET, 6, buf, cap, &len)
                       : stws_jwt_user_token(SECRET, 6, &c, buf, cap, &len);
            if ((unsigned char)buf[cap] != 0xA5) fail_msg("cap %zu: wrote past the end", cap);
            assert_int_equal(len, need);
            if (cap <= need) {
                if (r != STWS_ERR_BUFFER_TOO_SMALL) fail_msg("cap %zu: %s", cap, stws_result_string(r));
                if (cap) assert_int_equal(buf[0], 0);
            } else {
                assert_int_equal(r, STWS_OK);
                assert_string_equal(buf, full);
            }
            free(buf);
        }
    }
}

static void bad_arguments(void **state) {
    stws_jwt_claims c;
    char out[256];
    size_t len = 7;
    (void)state;
    memset(&c, 0, sizeof c);
    c.user_id = "u";
    assert_int_equal(stws_jwt_user_token(NULL, 6, &c, out, sizeof out, &len), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_jwt_user_token(SECRET, 0, &c, out, sizeof out, &len), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_jwt_user_token(SECRET, 6, NULL, out, sizeof out, &len), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_jwt_user_token(SECRET, 6, &c, out, sizeof out, NULL), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_jwt_user_token(SECRET, 6, &c, NULL, 10, &len), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_jwt_server_token(NULL, 0, out, sizeof out, &len), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_jwt_server_token(SECRET, 6, out, sizeof out, NULL), STWS_ERR_INVALID_ARG);
    /* a user_id that is not UTF-8 cannot be put in JSON (RFC 8259 §8.1) */
    c.user_id = "bad\xff";
    out[0] = 'x';
    assert_int_equal(stws_jwt_user_token(SECRET, 6, &c, out, sizeof out, &len), STWS_ERR_INVALID_UTF8);
    assert_int_equal(out[0], 0);
    c.user_id = "\xed\xa0\x80"; /* a surrogate */
    assert_int_equal(stws_jwt_user_token(SECRET, 6, &c, out, sizeof out, &len), STWS_ERR_INVALID_UTF8);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_answers),   cmocka_unit_test(claims_combinations),
        cmocka_unit_test(user_id_escaping), cmocka_unit_test(secrets),
        cmocka_unit_test(buffer_too_small), cmocka_unit_test(bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
