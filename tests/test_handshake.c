/* The opening handshake (RFC 6455 §4): Sec-WebSocket-Key/Accept, the GET
   request builder, and the parser/validator of the server's response. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <mbedtls/base64.h>
#include "mbedtls_oracle.h"
#include "../stream_ws.h"

/* RFC 6455 §1.3 / §4.2.2 example */
#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

#define RESP_101 "HTTP/1.1 101 Switching Protocols\r\n"
#define H_UPGRADE "Upgrade: websocket\r\n"
#define H_CONN "Connection: Upgrade\r\n"
#define H_ACCEPT "Sec-WebSocket-Accept: " ACCEPT "\r\n"
#define VALID RESP_101 H_UPGRADE H_CONN H_ACCEPT "\r\n"

/* ==== Sec-WebSocket-Accept ============================================== */

static void accept_rfc_example(void **state) {
    char acc[STWS_HANDSHAKE_ACCEPT_SIZE];
    (void)state;
    memset(acc, 'x', sizeof acc);
    assert_int_equal(stws_handshake_accept(KEY, acc), STWS_OK);
    assert_string_equal(acc, ACCEPT);
    assert_int_equal(strlen(acc), 28);
}

/* base64(SHA-1(key + GUID)) computed independently with mbedTLS. */
static void oracle_accept(const char *key, char out[29]) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char buf[256], digest[20];
    size_t klen = strlen(key), olen = 0;
    memcpy(buf, key, klen);
    memcpy(buf + klen, guid, sizeof guid - 1);
    assert_int_equal(oracle_sha1(buf, klen + sizeof guid - 1, digest), 0);
    assert_int_equal(mbedtls_base64_encode((unsigned char *)out, 29, &olen, digest, 20), 0);
    assert_int_equal(olen, 28);
}

static void accept_other_keys(void **state) {
    static const char *keys[] = {"x3JJHMbDL1EzLkh9GBhXDw==", "AAECAwQFBgcICQoLDA0ODw==",
                                 "++++++++++++++++++++/w==", ""};
    char acc[STWS_HANDSHAKE_ACCEPT_SIZE], want[29];
    size_t i;
    (void)state;
    assert_int_equal(stws_handshake_accept(keys[0], acc), STWS_OK);
    assert_string_equal(acc, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        assert_int_equal(stws_handshake_accept(keys[i], acc), STWS_OK);
        oracle_accept(keys[i], want);
        assert_string_equal(acc, want);
    }
    assert_int_equal(stws_handshake_accept(NULL, acc), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_handshake_accept(KEY, NULL), STWS_ERR_INVALID_ARG);
}

/* ==== Sec-WebSocket-Key ================================================= */

static int is_b64(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

static void check_key_shape(const char *key, unsigned char raw[16]) {
    unsigned char dec[32];
    size_t olen = 0, i;
    assert_int_equal(strlen(key), 24);
    for (i = 0; i < 22; i++) assert_true(is_b64(key[i]));
    assert_int_equal(key[22], '=');
    assert_int_equal(key[23], '=');
    assert_int_equal(
        mbedtls_base64_decode(dec, sizeof dec, &olen, (const unsigned char *)key, 24), 0);
    assert_int_equal(olen, 16);
    if (raw) memcpy(raw, dec, 16);
}

static void key_default_random(void **state) {
    char keys[8][STWS_HANDSHAKE_KEY_SIZE];
    stws_random none = {NULL, NULL};
    int i, j;
    (void)state;
    for (i = 0; i < 8; i++) {
        memset(keys[i], 'x', sizeof keys[i]);
        /* NULL and a hook without fill both mean "the default CSPRNG" */
        assert_int_equal(stws_handshake_key(i & 1 ? &none : NULL, keys[i]), STWS_OK);
        check_key_shape(keys[i], NULL);
    }
    for (i = 0; i < 8; i++)
        for (j = i + 1; j < 8; j++) assert_string_not_equal(keys[i], keys[j]);
}

typedef struct fake_random {
    const unsigned char *bytes;
    int calls;
    size_t requested;
    int fail;
} fake_random;

static int fake_fill(void *buf, size_t len, void *user_data) {
    fake_random *f = (fake_random *)user_data;
    f->calls++;
    f->requested += len;
    if (f->fail) return -1;
    memcpy(buf, f->bytes, len);
    return 0;
}

static void key_injected_random(void **state) {
    static const unsigned char seq[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    static const unsigned char hi[16] = {0xfb, 0xef, 0xbe, 0xfb, 0xef, 0xbe, 0xfb, 0xef,
                                         0xbe, 0xfb, 0xef, 0xbe, 0xfb, 0xef, 0xbe, 0xff};
    fake_random f = {seq, 0, 0, 0};
    stws_random hook;
    char key[STWS_HANDSHAKE_KEY_SIZE];
    unsigned char raw[16];
    (void)state;
    hook.fill = fake_fill;
    hook.user_data = &f;
    assert_int_equal(stws_handshake_key(&hook, key), STWS_OK);
    assert_int_equal(f.calls, 1);
    assert_int_equal(f.requested, 16);
    assert_string_equal(key, "AAECAwQFBgcICQoLDA0ODw==");
    check_key_shape(key, raw);
    assert_memory_equal(raw, seq, 16);

    f.bytes = hi;
    f.calls = 0;
    f.requested = 0;
    assert_int_equal(stws_handshake_key(&hook, key), STWS_OK);
    assert_string_equal(key, "++++++++++++++++++++/w==");
    check_key_shape(key, raw);
    assert_memory_equal(raw, hi, 16);
}

static void key_random_failure(void **state) {
    fake_random f = {NULL, 0, 0, 1};
    stws_random hook;
    char key[STWS_HANDSHAKE_KEY_SIZE];
    (void)state;
    hook.fill = fake_fill;
    hook.user_data = &f;
    assert_int_equal(stws_handshake_key(&hook, key), STWS_ERR_RANDOM);
    assert_int_equal(f.calls, 1);
    assert_int_equal(stws_handshake_key(NULL, NULL), STWS_ERR_INVALID_ARG);
}

/* ==== the GET request ==================================================== */

#define REQ_TAIL(key) \
    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " key \
    "\r\nSec-WebSocket-Version: 13\r\n"

static void parse_url(const char *s, stws_url *u) {
    stws_result r = stws_url_parse(s, u);
    if (r != STWS_OK) fail_msg("url %s: %d", s, r);
}

/* Build into a large buffer and compare byte for byte. */
static void expect_request(const char *url, const stws_handshake_desc *d, const char *key,
                           const char *want) {
    stws_url u;
    char buf[2048];
    size_t len = 12345;
    stws_result r;
    parse_url(url, &u);
    memset(buf, 'x', sizeof buf);
    r = stws_handshake_request(&u, d, key, buf, sizeof buf, &len);
    if (r != STWS_OK) fail_msg("request for %s with key %s: %d (%s)", url, key, r, stws_result_string(r));
    assert_int_equal(len, strlen(want));
    assert_memory_equal(buf, want, len + 1); /* including the NUL */
}

static void request_basic(void **state) {
    (void)state;
    /* the RFC 6455 §1.3 example, with the §4.1 fields this library sends */
    expect_request("ws://server.example.com/chat", NULL, KEY,
                   "GET /chat HTTP/1.1\r\nHost: server.example.com" REQ_TAIL(KEY) "\r\n");
    /* a desc with nothing in it changes nothing */
    {
        stws_handshake_desc d;
        memset(&d, 0, sizeof d);
        expect_request("ws://server.example.com/chat", &d, KEY,
                       "GET /chat HTTP/1.1\r\nHost: server.example.com" REQ_TAIL(KEY) "\r\n");
    }
}

/* Every key stws_handshake_key() can produce must be accepted: base64 uses
   '+', '/' and '=' (RFC 4648 §4). */
static void request_with_generated_keys(void **state) {
    static const unsigned char hi[16] = {0xfb, 0xef, 0xbe, 0xfb, 0xef, 0xbe, 0xfb, 0xef,
                                         0xbe, 0xfb, 0xef, 0xbe, 0xfb, 0xef, 0xbe, 0xff};
    fake_random f = {hi, 0, 0, 0};
    stws_random hook;
    char key[STWS_HANDSHAKE_KEY_SIZE], want[512];
    int i;
    (void)state;
    hook.fill = fake_fill;
    hook.user_data = &f;
    assert_int_equal(stws_handshake_key(&hook, key), STWS_OK);
    snprintf(want, sizeof want, "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
             key);
    expect_request("ws://h", NULL, key, want);
    for (i = 0; i < 4; i++) {
        assert_int_equal(stws_handshake_key(NULL, key), STWS_OK);
        snprintf(want, sizeof want, "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 key);
        expect_request("ws://h", NULL, key, want);
    }
}

static void request_path_and_query(void **state) {
    (void)state;
    expect_request("ws://h/a/b?c=d&e", NULL, KEY,
                   "GET /a/b?c=d&e HTTP/1.1\r\nHost: h" REQ_TAIL(KEY) "\r\n");
    expect_request("ws://h?x=1", NULL, KEY, "GET /?x=1 HTTP/1.1\r\nHost: h" REQ_TAIL(KEY) "\r\n");
    expect_request("ws://h", NULL, KEY, "GET / HTTP/1.1\r\nHost: h" REQ_TAIL(KEY) "\r\n");
    expect_request("ws://h/", NULL, KEY, "GET / HTTP/1.1\r\nHost: h" REQ_TAIL(KEY) "\r\n");
    /* an empty query keeps its '?' (it was in the URL) */
    expect_request("ws://h/p?", NULL, KEY, "GET /p? HTTP/1.1\r\nHost: h" REQ_TAIL(KEY) "\r\n");
    expect_request("wss://api.example.io:8443/connect?api_key=k&v=1", NULL, KEY,
                   "GET /connect?api_key=k&v=1 HTTP/1.1\r\nHost: api.example.io:8443" REQ_TAIL(KEY)
                   "\r\n");
}

/* §4.1: Host carries the port only when it is not the scheme's default. */
static void request_host_port(void **state) {
    static const struct {
        const char *url, *host;
    } cases[] = {
        {"ws://h", "h"},
        {"ws://h:80", "h"},
        {"ws://h:8080", "h:8080"},
        {"ws://h:443", "h:443"},
        {"wss://h", "h"},
        {"wss://h:443", "h"},
        {"wss://h:80", "h:80"},
        {"wss://h:1", "h:1"},
        {"wss://h:65535", "h:65535"},
        {"ws://127.0.0.1:9000", "127.0.0.1:9000"},
        {"ws://[::1]", "[::1]"},
        {"ws://[::1]:80", "[::1]"},
        {"wss://[2001:db8::1]:8443", "[2001:db8::1]:8443"},
        {"wss://[2001:db8::1]", "[2001:db8::1]"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char want[512];
        snprintf(want, sizeof want, "GET / HTTP/1.1\r\nHost: %s" REQ_TAIL(KEY) "\r\n", cases[i].host);
        expect_request(cases[i].url, NULL, KEY, want);
    }
}

static void request_all_fields(void **state) {
    static const char *protos[] = {"chat", "superchat"};
    static const stws_header hdrs[] = {{"Authorization", "Bearer abc.def"},
                                       {"X-Stream-Client", "stream-c/0.1 (linux)"},
                                       {"X-Empty", ""}};
    stws_handshake_desc d;
    (void)state;
    memset(&d, 0, sizeof d);
    d.origin = "https://example.com";
    d.subprotocols = protos;
    d.num_subprotocols = 2;
    d.headers = hdrs;
    d.num_headers = 3;
    expect_request("wss://[2001:db8::1]:8443/rt?x=1", &d, KEY,
                   "GET /rt?x=1 HTTP/1.1\r\nHost: [2001:db8::1]:8443" REQ_TAIL(KEY)
                   "Origin: https://example.com\r\n"
                   "Sec-WebSocket-Protocol: chat, superchat\r\n"
                   "Authorization: Bearer abc.def\r\n"
                   "X-Stream-Client: stream-c/0.1 (linux)\r\n"
                   "X-Empty: \r\n"
                   "\r\n");
    /* one subprotocol, no origin, no headers */
    memset(&d, 0, sizeof d);
    d.subprotocols = protos + 1;
    d.num_subprotocols = 1;
    expect_request("ws://h/", &d, KEY,
                   "GET / HTTP/1.1\r\nHost: h" REQ_TAIL(KEY) "Sec-WebSocket-Protocol: superchat\r\n\r\n");
    /* only the origin */
    memset(&d, 0, sizeof d);
    d.origin = "http://o";
    expect_request("ws://h/", &d, KEY, "GET / HTTP/1.1\r\nHost: h" REQ_TAIL(KEY) "Origin: http://o\r\n\r\n");
}

static stws_result build(const stws_handshake_desc *d) {
    stws_url u;
    char buf[1024];
    size_t len;
    parse_url("ws://h/", &u);
    return stws_handshake_request(&u, d, KEY, buf, sizeof buf, &len);
}

/* Header injection: CR or LF in any field must be refused.  Each case is
   paired with a clean variant of the same desc that must succeed, so the
   refusal is attributable to the injected bytes. */
static void request_header_injection(void **state) {
    static const char *bad_values[] = {"a\r\nX-Injected: 1", "a\nb", "a\rb", "\r\n", "x\r\n\r\nGET / HTTP/1.1"};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        const char *bad = bad_values[i];
        stws_handshake_desc d;
        const char *protos[2];
        stws_header h[2];

        /* origin */
        memset(&d, 0, sizeof d);
        d.origin = "https://ok.example";
        assert_int_equal(build(&d), STWS_OK);
        d.origin = bad;
        assert_int_equal(build(&d), STWS_ERR_HEADER_VALUE);

        /* subprotocol (a bad one anywhere in the list) */
        memset(&d, 0, sizeof d);
        protos[0] = "chat";
        protos[1] = "v2";
        d.subprotocols = protos;
        d.num_subprotocols = 2;
        assert_int_equal(build(&d), STWS_OK);
        protos[1] = bad;
        assert_int_equal(build(&d), STWS_ERR_HEADER_VALUE);
        protos[0] = bad;
        protos[1] = "v2";
        assert_int_equal(build(&d), STWS_ERR_HEADER_VALUE);

        /* header value */
        memset(&d, 0, sizeof d);
        h[0].name = "X-A";
        h[0].value = "1";
        h[1].name = "X-B";
        h[1].value = "two words";
        d.headers = h;
        d.num_headers = 2;
        assert_int_equal(build(&d), STWS_OK);
        h[1].value = bad;
        assert_int_equal(build(&d), STWS_ERR_HEADER_VALUE);

        /* header name */
        h[1].value = "two words";
        h[0].name = bad;
        assert_int_equal(build(&d), STWS_ERR_HEADER_VALUE);
    }
    /* names and subprotocols are tokens (RFC 7230 §3.2, RFC 6455 §4.1) */
    {
        stws_handshake_desc d;
        stws_header h = {"X-A: 1\r\nX-B", "v"};
        const char *p = "a b";
        memset(&d, 0, sizeof d);
        d.headers = &h;
        d.num_headers = 1;
        assert_int_equal(build(&d), STWS_ERR_HEADER_VALUE);
        h.name = "X-A:";
        assert_int_equal(build(&d), STWS_ERR_HEADER_VALUE);
        h.name = "";
        assert_int_equal(build(&d), STWS_ERR_HEADER_VALUE);
        memset(&d, 0, sizeof d);
        d.subprotocols = &p;
        d.num_subprotocols = 1;
        assert_int_equal(build(&d), STWS_ERR_HEADER_VALUE);
        p = "";
        assert_int_equal(build(&d), STWS_ERR_HEADER_VALUE);
    }
    /* the key too */
    {
        stws_url u;
        char buf[1024];
        size_t len;
        parse_url("ws://h/", &u);
        assert_int_equal(stws_handshake_request(&u, NULL, KEY "\r\nX: y", buf, sizeof buf, &len),
                         STWS_ERR_HEADER_VALUE);
    }
}

/* STWS_ERR_BUFFER_TOO_SMALL reports in *len the request's length, as on
   success (the library's own connection code then allocates *len + 1): a
   capacity of *len + 1 is enough, *len is not (no room for the NUL). */
static void request_buffer_too_small(void **state) {
    static const char *protos[] = {"chat"};
    stws_handshake_desc d;
    stws_url u;
    char big[1024];
    size_t full = 0, len, cap;
    char *buf;
    (void)state;
    memset(&d, 0, sizeof d);
    d.origin = "https://example.com";
    d.subprotocols = protos;
    d.num_subprotocols = 1;
    parse_url("wss://h.example:8443/p?q", &u);
    assert_int_equal(stws_handshake_request(&u, &d, KEY, big, sizeof big, &full), STWS_OK);
    assert_int_equal(full, strlen(big));

    /* no buffer at all */
    len = 0;
    assert_int_equal(stws_handshake_request(&u, &d, KEY, NULL, 0, &len), STWS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(len, full);
    /* every too-small capacity, in an exactly sized allocation (ASan), the
       last one being exactly the length without room for the NUL */
    for (cap = 1; cap <= full; cap++) {
        buf = (char *)malloc(cap);
        assert_non_null(buf);
        len = 0;
        assert_int_equal(stws_handshake_request(&u, &d, KEY, buf, cap, &len),
                         STWS_ERR_BUFFER_TOO_SMALL);
        assert_int_equal(len, full);
        free(buf);
    }
    /* the usual pattern: ask, allocate *len + 1, build */
    len = 0;
    assert_int_equal(stws_handshake_request(&u, &d, KEY, NULL, 0, &len), STWS_ERR_BUFFER_TOO_SMALL);
    cap = len + 1;
    buf = (char *)malloc(cap);
    assert_non_null(buf);
    assert_int_equal(stws_handshake_request(&u, &d, KEY, buf, cap, &len), STWS_OK);
    assert_int_equal(len, full);
    assert_memory_equal(buf, big, full + 1);
    free(buf);
}

/* §4.1 item 10: the offered subprotocols "MUST all be unique strings". */
static void request_duplicate_subprotocols(void **state) {
    const char *protos[3] = {"chat", "v2", "chat"};
    stws_handshake_desc d;
    (void)state;
    memset(&d, 0, sizeof d);
    d.subprotocols = protos;
    d.num_subprotocols = 2;
    assert_int_equal(build(&d), STWS_OK);
    d.num_subprotocols = 3;
    assert_true(build(&d) < 0);
    protos[2] = "Chat"; /* a different string */
    assert_int_equal(build(&d), STWS_OK);
}

static void request_invalid_args(void **state) {
    stws_url u;
    stws_handshake_desc d;
    char buf[512];
    size_t len;
    (void)state;
    parse_url("ws://h/", &u);
    assert_int_equal(stws_handshake_request(NULL, NULL, KEY, buf, sizeof buf, &len), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_handshake_request(&u, NULL, NULL, buf, sizeof buf, &len), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_handshake_request(&u, NULL, KEY, NULL, sizeof buf, &len), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_handshake_request(&u, NULL, KEY, buf, sizeof buf, NULL), STWS_ERR_INVALID_ARG);
    memset(&d, 0, sizeof d);
    d.num_subprotocols = -1;
    assert_int_equal(stws_handshake_request(&u, &d, KEY, buf, sizeof buf, &len), STWS_ERR_INVALID_ARG);
    d.num_subprotocols = 0;
    d.num_headers = -1;
    assert_int_equal(stws_handshake_request(&u, &d, KEY, buf, sizeof buf, &len), STWS_ERR_INVALID_ARG);
}

/* ==== the response ======================================================= */

/* Parse resp[0..len) from an exactly sized heap copy (so ASan sees any read
   past len); the views in *out are checked to lie inside the copy and are
   rebased onto resp so tests can compare pointers. */
static void rebase(stws_str *s, const char *copy, size_t len, const char *orig) {
    if (!s->ptr) {
        assert_int_equal(s->len, 0);
        return;
    }
    assert_true(s->ptr >= copy && s->ptr + s->len <= copy + len);
    s->ptr = orig + (s->ptr - copy);
}

static stws_result parse_n(const char *resp, size_t len, const stws_handshake_desc *d,
                           stws_handshake_response *out) {
    char *copy = (char *)malloc(len ? len : 1);
    stws_result r;
    assert_non_null(copy);
    if (len) memcpy(copy, resp, len);
    memset(out, 0x5A, sizeof *out);
    r = stws_handshake_response_parse(copy, len, KEY, d, out);
    rebase(&out->location, copy, len, resp);
    rebase(&out->subprotocol, copy, len, resp);
    free(copy);
    return r;
}

static stws_result parse(const char *resp, const stws_handshake_desc *d, stws_handshake_response *out) {
    return parse_n(resp, strlen(resp), d, out);
}

static void expect_parse(const char *resp, const stws_handshake_desc *d, stws_result want,
                         int status) {
    stws_handshake_response out;
    stws_result r = parse(resp, d, &out);
    if (r != want || out.status != status)
        fail_msg("expected %d (%s) status %d, got %d (%s) status %d for:\n%s", want,
                 stws_result_string(want), status, r, stws_result_string(r), out.status, resp);
}

static const char *const valid_responses[] = {
    VALID,
    /* header names in odd case, values with extra whitespace, tabs */
    "HTTP/1.1 101 Switching Protocols\r\n"
    "uPgRaDe:websocket\r\n"
    "CONNECTION:   Upgrade   \r\n"
    "sec-websocket-accept:\t" ACCEPT " \t\r\n"
    "\r\n",
    /* Upgrade value case-insensitive; Connection as a token list */
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: WebSocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Accept: " ACCEPT "\r\n"
    "\r\n",
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Connection: upgrade,keep-alive\r\n"
    "Sec-WebSocket-Accept: " ACCEPT "\r\n"
    "Upgrade: WEBSOCKET\r\n"
    "\r\n",
    /* Connection split over two fields (RFC 7230 §3.2.2) */
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Connection: keep-alive\r\n"
    "Connection: Upgrade\r\n"
    "Upgrade: websocket\r\n"
    "Sec-WebSocket-Accept: " ACCEPT "\r\n"
    "\r\n",
    /* other fields, an empty reason phrase, an empty extension list */
    "HTTP/1.1 101 \r\n"
    "Server: nginx/1.25\r\n"
    "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
    "Upgrade: websocket\r\n"
    "X-Empty:\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Extensions: \r\n"
    "Sec-WebSocket-Accept: " ACCEPT "\r\n"
    "X-Obs-Text: caf\xc3\xa9\r\n"
    "\r\n",
};

static void response_valid(void **state) {
    size_t i;
    (void)state;
    for (i = 0; i < sizeof valid_responses / sizeof valid_responses[0]; i++) {
        stws_handshake_response out;
        const char *resp = valid_responses[i];
        stws_result r = parse(resp, NULL, &out);
        if (r != STWS_OK) fail_msg("response %zu: %d (%s)", i, r, stws_result_string(r));
        assert_int_equal(out.status, 101);
        assert_int_equal(out.header_size, strlen(resp));
        assert_int_equal(out.location.len, 0);
        assert_int_equal(out.subprotocol.len, 0);
    }
}

/* Fed byte by byte, every strict prefix is INCOMPLETE; the status is known
   once the status line is. */
static void response_incomplete_prefixes(void **state) {
    static const char r302[] = "HTTP/1.1 302 Found\r\nLocation: wss://other.example/x\r\nContent-Length: 0\r\n\r\n";
    size_t i, n, k;
    (void)state;
    for (i = 0; i < sizeof valid_responses / sizeof valid_responses[0]; i++) {
        const char *resp = valid_responses[i];
        size_t status_end = (size_t)(strstr(resp, "\r\n") - resp) + 2;
        n = strlen(resp);
        for (k = 0; k < n; k++) {
            stws_handshake_response out;
            stws_result r = parse_n(resp, k, NULL, &out);
            if (r != STWS_INCOMPLETE) fail_msg("response %zu prefix %zu: %d", i, k, r);
            assert_int_equal(out.status, k >= status_end ? 101 : 0);
        }
        {
            stws_handshake_response out;
            assert_int_equal(parse_n(resp, n, NULL, &out), STWS_OK);
        }
    }
    n = strlen(r302);
    for (k = 0; k < n; k++) {
        stws_handshake_response out;
        assert_int_equal(parse_n(r302, k, NULL, &out), STWS_INCOMPLETE);
        assert_int_equal(out.status, k >= 20 ? 302 : 0);
    }
    {
        stws_handshake_response out;
        assert_int_equal(parse_n(r302, n, NULL, &out), STWS_ERR_HANDSHAKE_STATUS);
        assert_int_equal(out.status, 302);
    }
    /* a NULL buffer of length 0 is just "nothing yet" */
    {
        stws_handshake_response out;
        assert_int_equal(stws_handshake_response_parse(NULL, 0, KEY, NULL, &out), STWS_INCOMPLETE);
    }
}

static void response_accept(void **state) {
    char other[STWS_HANDSHAKE_ACCEPT_SIZE], resp[512];
    (void)state;
    /* the accept of a different key */
    assert_int_equal(stws_handshake_accept("x3JJHMbDL1EzLkh9GBhXDw==", other), STWS_OK);
    snprintf(resp, sizeof resp, RESP_101 H_UPGRADE H_CONN "Sec-WebSocket-Accept: %s\r\n\r\n", other);
    expect_parse(resp, NULL, STWS_ERR_HANDSHAKE_ACCEPT, 101);
    /* base64 is case-sensitive */
    expect_parse(RESP_101 H_UPGRADE H_CONN "Sec-WebSocket-Accept: S3PPLMBITXAQ9KYGZZHZRBK+XOO=\r\n\r\n",
                 NULL, STWS_ERR_HANDSHAKE_ACCEPT, 101);
    /* truncated, extended, the key itself, empty */
    expect_parse(RESP_101 H_UPGRADE H_CONN "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n\r\n",
                 NULL, STWS_ERR_HANDSHAKE_ACCEPT, 101);
    expect_parse(RESP_101 H_UPGRADE H_CONN "Sec-WebSocket-Accept: " ACCEPT "=\r\n\r\n", NULL,
                 STWS_ERR_HANDSHAKE_ACCEPT, 101);
    expect_parse(RESP_101 H_UPGRADE H_CONN "Sec-WebSocket-Accept: " ACCEPT "x\r\n\r\n", NULL,
                 STWS_ERR_HANDSHAKE_ACCEPT, 101);
    expect_parse(RESP_101 H_UPGRADE H_CONN "Sec-WebSocket-Accept: " KEY "\r\n\r\n", NULL,
                 STWS_ERR_HANDSHAKE_ACCEPT, 101);
    expect_parse(RESP_101 H_UPGRADE H_CONN "Sec-WebSocket-Accept:\r\n\r\n", NULL,
                 STWS_ERR_HANDSHAKE_ACCEPT, 101);
    /* missing */
    expect_parse(RESP_101 H_UPGRADE H_CONN "\r\n", NULL, STWS_ERR_HANDSHAKE_ACCEPT, 101);
    /* duplicated, even when both copies are right, or one is */
    expect_parse(RESP_101 H_UPGRADE H_CONN H_ACCEPT H_ACCEPT "\r\n", NULL, STWS_ERR_HANDSHAKE_ACCEPT, 101);
    snprintf(resp, sizeof resp, RESP_101 H_UPGRADE H_CONN H_ACCEPT "Sec-WebSocket-Accept: %s\r\n\r\n", other);
    expect_parse(resp, NULL, STWS_ERR_HANDSHAKE_ACCEPT, 101);
    snprintf(resp, sizeof resp, RESP_101 H_UPGRADE H_CONN "Sec-WebSocket-Accept: %s\r\n" H_ACCEPT "\r\n", other);
    expect_parse(resp, NULL, STWS_ERR_HANDSHAKE_ACCEPT, 101);
    /* the accept is checked against the key given */
    {
        stws_handshake_response out;
        assert_int_equal(stws_handshake_response_parse(VALID, strlen(VALID), "x3JJHMbDL1EzLkh9GBhXDw==",
                                                       NULL, &out),
                         STWS_ERR_HANDSHAKE_ACCEPT);
    }
}

static void response_upgrade(void **state) {
    (void)state;
    expect_parse(RESP_101 H_CONN H_ACCEPT "\r\n", NULL, STWS_ERR_HANDSHAKE_UPGRADE, 101);
    expect_parse(RESP_101 "Upgrade: h2c\r\n" H_CONN H_ACCEPT "\r\n", NULL, STWS_ERR_HANDSHAKE_UPGRADE, 101);
    expect_parse(RESP_101 "Upgrade: websocket2\r\n" H_CONN H_ACCEPT "\r\n", NULL, STWS_ERR_HANDSHAKE_UPGRADE, 101);
    expect_parse(RESP_101 "Upgrade: websock\r\n" H_CONN H_ACCEPT "\r\n", NULL, STWS_ERR_HANDSHAKE_UPGRADE, 101);
    expect_parse(RESP_101 "Upgrade:\r\n" H_CONN H_ACCEPT "\r\n", NULL, STWS_ERR_HANDSHAKE_UPGRADE, 101);
    /* §4.1 client step 2: the value must match "websocket" itself */
    expect_parse(RESP_101 "Upgrade: websocket, h2c\r\n" H_CONN H_ACCEPT "\r\n", NULL,
                 STWS_ERR_HANDSHAKE_UPGRADE, 101);
    expect_parse(RESP_101 "X-Upgrade: websocket\r\n" H_CONN H_ACCEPT "\r\n", NULL,
                 STWS_ERR_HANDSHAKE_UPGRADE, 101);
}

/* Two Upgrade fields combine to "a, b" (RFC 7230 §3.2.2), which is not a
   case-insensitive match for "websocket" (RFC 6455 §4.1 client step 2),
   whatever the order. */
static void response_duplicate_upgrade(void **state) {
    (void)state;
    expect_parse(RESP_101 "Upgrade: websocket\r\nUpgrade: h2c\r\n" H_CONN H_ACCEPT "\r\n", NULL,
                 STWS_ERR_HANDSHAKE_UPGRADE, 101);
    expect_parse(RESP_101 "Upgrade: h2c\r\nUpgrade: websocket\r\n" H_CONN H_ACCEPT "\r\n", NULL,
                 STWS_ERR_HANDSHAKE_UPGRADE, 101);
}

static void response_connection(void **state) {
    (void)state;
    expect_parse(RESP_101 H_UPGRADE H_ACCEPT "\r\n", NULL, STWS_ERR_HANDSHAKE_CONNECTION, 101);
    expect_parse(RESP_101 H_UPGRADE "Connection: keep-alive\r\n" H_ACCEPT "\r\n", NULL,
                 STWS_ERR_HANDSHAKE_CONNECTION, 101);
    expect_parse(RESP_101 H_UPGRADE "Connection: close\r\n" H_ACCEPT "\r\n", NULL,
                 STWS_ERR_HANDSHAKE_CONNECTION, 101);
    expect_parse(RESP_101 H_UPGRADE "Connection: upgrades\r\n" H_ACCEPT "\r\n", NULL,
                 STWS_ERR_HANDSHAKE_CONNECTION, 101);
    expect_parse(RESP_101 H_UPGRADE "Connection: keep-alive upgrade\r\n" H_ACCEPT "\r\n", NULL,
                 STWS_ERR_HANDSHAKE_CONNECTION, 101);
    expect_parse(RESP_101 H_UPGRADE "Connection:\r\n" H_ACCEPT "\r\n", NULL,
                 STWS_ERR_HANDSHAKE_CONNECTION, 101);
}

static void response_status(void **state) {
    static const char r302[] = "HTTP/1.1 302 Found\r\n"
                               "Content-Length: 0\r\n"
                               "Location:  wss://edge-2.example.com/connect?x=1  \r\n"
                               "\r\n";
    stws_handshake_response out;
    (void)state;
    /* a 200 reply, even one carrying every upgrade field */
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", NULL, &out),
                     STWS_ERR_HANDSHAKE_STATUS);
    assert_int_equal(out.status, 200);
    assert_int_equal(out.location.len, 0);
    assert_int_equal(parse("HTTP/1.1 200 OK\r\n" H_UPGRADE H_CONN H_ACCEPT "Location: /x\r\n\r\n", NULL, &out),
                     STWS_ERR_HANDSHAKE_STATUS);
    assert_int_equal(out.status, 200);
    assert_int_equal(out.location.len, 0);
    /* a redirect exposes Location, trimmed, as a view into the buffer */
    assert_int_equal(parse(r302, NULL, &out), STWS_ERR_HANDSHAKE_STATUS);
    assert_int_equal(out.status, 302);
    assert_ptr_equal(out.location.ptr, strstr(r302, "wss://"));
    assert_int_equal(out.location.len, strlen("wss://edge-2.example.com/connect?x=1"));
    assert_int_equal(out.header_size, strlen(r302));
    assert_int_equal(parse("HTTP/1.1 301 Moved Permanently\r\nlocation: /new\r\n\r\n", NULL, &out),
                     STWS_ERR_HANDSHAKE_STATUS);
    assert_int_equal(out.status, 301);
    assert_int_equal(out.location.len, 4);
    assert_memory_equal(out.location.ptr, "/new", 4);
    assert_int_equal(parse("HTTP/1.1 307 Temporary Redirect\r\nLOCATION: ws://h:81/\r\n\r\n", NULL, &out),
                     STWS_ERR_HANDSHAKE_STATUS);
    assert_int_equal(out.status, 307);
    assert_int_equal(out.location.len, 10);
    assert_memory_equal(out.location.ptr, "ws://h:81/", 10);
    /* a 3xx without Location */
    assert_int_equal(parse("HTTP/1.1 304 Not Modified\r\n\r\n", NULL, &out), STWS_ERR_HANDSHAKE_STATUS);
    assert_int_equal(out.status, 304);
    assert_int_equal(out.location.len, 0);
    /* 426 Upgrade Required (RFC 6455 §4.4) */
    assert_int_equal(parse("HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\r\n", NULL, &out),
                     STWS_ERR_HANDSHAKE_STATUS);
    assert_int_equal(out.status, 426);
    assert_int_equal(out.location.len, 0);
    /* other statuses; Location is only for 3xx */
    expect_parse("HTTP/1.1 404 Not Found\r\nLocation: /x\r\n\r\n", NULL, STWS_ERR_HANDSHAKE_STATUS, 404);
    expect_parse("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n", NULL, STWS_ERR_HANDSHAKE_STATUS, 503);
    expect_parse("HTTP/1.1 100 Continue\r\n\r\n", NULL, STWS_ERR_HANDSHAKE_STATUS, 100);
    expect_parse("HTTP/1.1 599 X\r\n\r\n", NULL, STWS_ERR_HANDSHAKE_STATUS, 599);
    /* a 101 with a Location: OK, location empty */
    assert_int_equal(parse(RESP_101 H_UPGRADE H_CONN H_ACCEPT "Location: /x\r\n\r\n", NULL, &out), STWS_OK);
    assert_int_equal(out.status, 101);
    assert_int_equal(out.location.len, 0);
}

/* "Location header for 3xx, else empty" holds whatever the result: here a
   later malformed field ends the parse after Location was seen. */
static void response_location_only_for_3xx(void **state) {
    stws_handshake_response out;
    (void)state;
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nLocation: /x\r\nBad field\r\n\r\n", NULL, &out),
                     STWS_ERR_HANDSHAKE_MALFORMED);
    assert_int_equal(out.status, 200);
    assert_int_equal(out.location.len, 0);
    assert_int_equal(parse(RESP_101 "Location: /x\r\nX-A: a\001\r\n\r\n", NULL, &out),
                     STWS_ERR_HANDSHAKE_MALFORMED);
    assert_int_equal(out.status, 101);
    assert_int_equal(out.location.len, 0);
    /* while a malformed 3xx may still expose it */
    assert_int_equal(parse("HTTP/1.1 302 Found\r\nLocation: /x\r\nBad field\r\n\r\n", NULL, &out),
                     STWS_ERR_HANDSHAKE_MALFORMED);
    assert_int_equal(out.status, 302);
}

/* A valid 101 padded with an X-Pad field to exactly total bytes. */
static char *padded_response(size_t total) {
    static const char head[] = RESP_101 H_UPGRADE H_CONN H_ACCEPT "X-Pad: ";
    size_t base = sizeof head - 1 + 4;
    char *s;
    assert_true(total >= base);
    s = (char *)malloc(total + 1);
    assert_non_null(s);
    memcpy(s, head, sizeof head - 1);
    memset(s + sizeof head - 1, 'p', total - base);
    memcpy(s + total - 4, "\r\n\r\n", 5);
    return s;
}

static void check_size_limits(size_t max, const stws_handshake_desc *d) {
    stws_handshake_response out;
    char *s;
    size_t n;

    /* exactly at the limit: fine, and bytes past it (frames) are fine too */
    s = padded_response(max);
    assert_int_equal(parse_n(s, max, d, &out), STWS_OK);
    assert_int_equal(out.header_size, max);
    free(s);
    s = padded_response(max + 8);
    memcpy(s + max - 4, "\r\n\r\n\x81\x02hi", 8); /* headers end at max, a frame follows */
    assert_int_equal(parse_n(s, max + 4, d, &out), STWS_OK);
    assert_int_equal(out.header_size, max);
    free(s);

    /* the terminator comes, one byte past the limit */
    s = padded_response(max + 1);
    assert_int_equal(parse_n(s, max + 1, d, &out), STWS_ERR_HANDSHAKE_TOO_BIG);
    assert_int_equal(parse_n(s, max + 1, d, &out), STWS_ERR_HANDSHAKE_TOO_BIG);
    free(s);
    s = padded_response(2 * max);
    assert_int_equal(parse_n(s, 2 * max, d, &out), STWS_ERR_HANDSHAKE_TOO_BIG);
    free(s);

    /* the terminator never comes: incomplete while under, too big once over */
    s = padded_response(2 * max);
    n = max / 2;
    assert_int_equal(parse_n(s, n, d, &out), STWS_INCOMPLETE);
    assert_int_equal(parse_n(s, max - 4, d, &out), STWS_INCOMPLETE);
    assert_int_equal(parse_n(s, max + 1, d, &out), STWS_ERR_HANDSHAKE_TOO_BIG);
    assert_int_equal(parse_n(s, 2 * max - 8, d, &out), STWS_ERR_HANDSHAKE_TOO_BIG);
    free(s);

    /* not even the status line ends */
    s = (char *)malloc(2 * max);
    assert_non_null(s);
    memcpy(s, "HTTP/1.1 101 ", 13);
    memset(s + 13, 'x', 2 * max - 13);
    assert_int_equal(parse_n(s, max / 2, d, &out), STWS_INCOMPLETE);
    assert_int_equal(parse_n(s, max + 1, d, &out), STWS_ERR_HANDSHAKE_TOO_BIG);
    assert_int_equal(parse_n(s, 2 * max, d, &out), STWS_ERR_HANDSHAKE_TOO_BIG);
    free(s);
}

static void response_too_big(void **state) {
    stws_handshake_desc d;
    (void)state;
    check_size_limits(STWS_DEFAULT_MAX_RESPONSE_SIZE, NULL);
    memset(&d, 0, sizeof d);
    check_size_limits(STWS_DEFAULT_MAX_RESPONSE_SIZE, &d); /* 0 = the default */
    d.max_response_size = 256;
    check_size_limits(256, &d);
    d.max_response_size = 64 * 1024;
    check_size_limits(64 * 1024, &d);
}

static void response_malformed(void **state) {
    static const char *const bad_status[] = {
        "HTTP/1.0 101 Switching Protocols\r\n",
        "http/1.1 101 Switching Protocols\r\n",
        "HTTP/1.1 1O1 Switching Protocols\r\n",
        "HTTP/1.1 99 Switching Protocols\r\n",
        "HTTP/1.1 600 Switching Protocols\r\n",
        "HTTP/1.1 099 X\r\n",
        "HTTP/1.1 1010 Switching Protocols\r\n",
        "HTTP/1.1  101 Switching Protocols\r\n",
        "HTTP/1.1 101Switching Protocols\r\n",
        "HTTP/1.1\t101 Switching Protocols\r\n",
        "HTTP/2 101 Switching Protocols\r\n",
        "ICY 200 OK\r\n",
        " HTTP/1.1 101 Switching Protocols\r\n",
        "\r\n",
    };
    static const char *const bad_fields[] = {
        /* obs-fold (RFC 7230 §3.2.4) */
        " Upgrade: websocket\r\n",
        "X-A: 1\r\n  continued\r\n",
        "X-A: 1\r\n\tcontinued\r\n",
        /* no colon, whitespace before the colon, empty name, bad name */
        "Upgrade websocket\r\n",
        "Upgrade : websocket\r\n",
        ": websocket\r\n",
        "X(y): z\r\n",
        "X y: z\r\n",
        /* bare LF, bare CR */
        "X-A: 1\nX-B: 2\r\n",
        "X-A\n: 1\r\n",
        "X-A: 1\rX-B: 2\r\n",
        /* control characters in a value */
        "X-A: a\001b\r\n",
        "X-A: a\x7f\r\n",
    };
    size_t i;
    char resp[512];
    stws_handshake_response out;
    (void)state;
    for (i = 0; i < sizeof bad_status / sizeof bad_status[0]; i++) {
        snprintf(resp, sizeof resp, "%s" H_UPGRADE H_CONN H_ACCEPT "\r\n", bad_status[i]);
        if (parse(resp, NULL, &out) != STWS_ERR_HANDSHAKE_MALFORMED)
            fail_msg("status line %zu accepted: %s", i, resp);
        assert_int_equal(out.status, 0);
    }
    for (i = 0; i < sizeof bad_fields / sizeof bad_fields[0]; i++) {
        snprintf(resp, sizeof resp, RESP_101 H_UPGRADE H_CONN "%s" H_ACCEPT "\r\n", bad_fields[i]);
        if (parse(resp, NULL, &out) != STWS_ERR_HANDSHAKE_MALFORMED)
            fail_msg("field %zu accepted: %s", i, resp);
        assert_int_equal(out.status, 101);
    }
    /* a NUL inside a value */
    {
        static const char nul[] = RESP_101 H_UPGRADE H_CONN "X-A: a\0b\r\n" H_ACCEPT "\r\n";
        assert_int_equal(parse_n(nul, sizeof nul - 1, NULL, &out), STWS_ERR_HANDSHAKE_MALFORMED);
    }
}

/* The status line ends at its CRLF; a bare LF or another control character
   cannot be part of a reason-phrase (RFC 7230 §3.1.2: reason-phrase =
   *( HTAB / SP / VCHAR / obs-text )). */
static void response_status_line_control_chars(void **state) {
    stws_handshake_response out;
    (void)state;
    /* here the LF hides "X-Hidden: y" inside the status line */
    assert_int_equal(parse("HTTP/1.1 101 Switching Protocols\nX-Hidden: y\r\n" H_UPGRADE H_CONN H_ACCEPT "\r\n",
                           NULL, &out),
                     STWS_ERR_HANDSHAKE_MALFORMED);
    assert_int_equal(parse("HTTP/1.1 101 Switching\x01Protocols\r\n" H_UPGRADE H_CONN H_ACCEPT "\r\n", NULL, &out),
                     STWS_ERR_HANDSHAKE_MALFORMED);
    assert_int_equal(parse("HTTP/1.1 101 Switching\rProtocols\r\n" H_UPGRADE H_CONN H_ACCEPT "\r\n", NULL, &out),
                     STWS_ERR_HANDSHAKE_MALFORMED);
}

static void response_extension(void **state) {
    (void)state;
    expect_parse(RESP_101 H_UPGRADE H_CONN H_ACCEPT "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                 NULL, STWS_ERR_HANDSHAKE_EXTENSION, 101);
    expect_parse(RESP_101 "sec-websocket-extensions: x-webkit-deflate-frame; max_window_bits=10\r\n"
                 H_UPGRADE H_CONN H_ACCEPT "\r\n",
                 NULL, STWS_ERR_HANDSHAKE_EXTENSION, 101);
}

static void response_subprotocol(void **state) {
    static const char *protos[] = {"chat", "superchat"};
    static const char pick[] = RESP_101 H_UPGRADE H_CONN H_ACCEPT "Sec-WebSocket-Protocol:  superchat \r\n\r\n";
    static const char pick1[] = RESP_101 "sec-websocket-protocol: chat\r\n" H_UPGRADE H_CONN H_ACCEPT "\r\n";
    stws_handshake_desc d, none;
    stws_handshake_response out;
    (void)state;
    memset(&d, 0, sizeof d);
    d.subprotocols = protos;
    d.num_subprotocols = 2;
    memset(&none, 0, sizeof none);

    /* a requested one: accepted and exposed */
    assert_int_equal(parse(pick, &d, &out), STWS_OK);
    assert_ptr_equal(out.subprotocol.ptr, strstr(pick, "superchat"));
    assert_int_equal(out.subprotocol.len, 9);
    assert_int_equal(parse(pick1, &d, &out), STWS_OK);
    assert_ptr_equal(out.subprotocol.ptr, strstr(pick1, "chat\r"));
    assert_int_equal(out.subprotocol.len, 4);
    /* requested, the server picks none */
    assert_int_equal(parse(VALID, &d, &out), STWS_OK);
    assert_int_equal(out.subprotocol.len, 0);

    /* not requested */
    expect_parse(RESP_101 H_UPGRADE H_CONN H_ACCEPT "Sec-WebSocket-Protocol: other\r\n\r\n", &d,
                 STWS_ERR_HANDSHAKE_SUBPROTOCOL, 101);
    expect_parse(RESP_101 H_UPGRADE H_CONN H_ACCEPT "Sec-WebSocket-Protocol: supe\r\n\r\n", &d,
                 STWS_ERR_HANDSHAKE_SUBPROTOCOL, 101);
    expect_parse(RESP_101 H_UPGRADE H_CONN H_ACCEPT "Sec-WebSocket-Protocol: superchats\r\n\r\n", &d,
                 STWS_ERR_HANDSHAKE_SUBPROTOCOL, 101);
    expect_parse(RESP_101 H_UPGRADE H_CONN H_ACCEPT "Sec-WebSocket-Protocol:\r\n\r\n", &d,
                 STWS_ERR_HANDSHAKE_SUBPROTOCOL, 101);
    /* none requested at all */
    expect_parse(pick1, NULL, STWS_ERR_HANDSHAKE_SUBPROTOCOL, 101);
    expect_parse(pick1, &none, STWS_ERR_HANDSHAKE_SUBPROTOCOL, 101);
    /* two values: one field with a list, or two fields */
    expect_parse(RESP_101 H_UPGRADE H_CONN H_ACCEPT "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n", &d,
                 STWS_ERR_HANDSHAKE_SUBPROTOCOL, 101);
    expect_parse(RESP_101 H_UPGRADE H_CONN H_ACCEPT
                 "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
                 &d, STWS_ERR_HANDSHAKE_SUBPROTOCOL, 101);
    expect_parse(RESP_101 H_UPGRADE H_CONN H_ACCEPT
                 "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: superchat\r\n\r\n",
                 &d, STWS_ERR_HANDSHAKE_SUBPROTOCOL, 101);
}

/* Bytes after the header block belong to the codec: header_size points at
   the first frame byte. */
static void response_trailing_frames(void **state) {
    static const uint8_t frames[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o',    /* text "Hello" */
                                     0x82, 0x04, '\r', '\n', '\r', '\n',     /* binary CRLFCRLF */
                                     0x89, 0x00};                            /* ping */
    const size_t hlen = strlen(VALID);
    const size_t total = hlen + sizeof frames;
    char *buf = (char *)malloc(total);
    stws_handshake_response out;
    stws_codec *c;
    stws_codec_event ev;
    size_t used, off;
    (void)state;
    assert_non_null(buf);
    memcpy(buf, VALID, hlen);
    memcpy(buf + hlen, frames, sizeof frames);

    /* only part of the first frame arrived with the headers */
    assert_int_equal(stws_handshake_response_parse(buf, hlen + 1, KEY, NULL, &out), STWS_OK);
    assert_int_equal(out.header_size, hlen);
    /* all of it */
    assert_int_equal(stws_handshake_response_parse(buf, total, KEY, NULL, &out), STWS_OK);
    assert_int_equal(out.header_size, hlen);
    assert_int_equal((uint8_t)buf[out.header_size], 0x81);

    c = stws_codec_create(NULL);
    assert_non_null(c);
    off = out.header_size;
    assert_int_equal(stws_codec_parse(c, buf + off, total - off, &used, &ev), STWS_OK);
    assert_int_equal(used, 7);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.opcode, STWS_OP_TEXT);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
    off += used;
    assert_int_equal(stws_codec_parse(c, buf + off, total - off, &used, &ev), STWS_OK);
    assert_int_equal(used, 6);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.opcode, STWS_OP_BINARY);
    assert_int_equal(ev.len, 4);
    assert_memory_equal(ev.data, "\r\n\r\n", 4);
    off += used;
    assert_int_equal(stws_codec_parse(c, buf + off, total - off, &used, &ev), STWS_OK);
    assert_int_equal(used, 2);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_PING);
    assert_int_equal(ev.len, 0);
    off += used;
    assert_int_equal(off, total);
    stws_codec_destroy(c);
    free(buf);
}

static void response_invalid_args(void **state) {
    stws_handshake_response out;
    (void)state;
    assert_int_equal(stws_handshake_response_parse(VALID, strlen(VALID), NULL, NULL, &out), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_handshake_response_parse(VALID, strlen(VALID), KEY, NULL, NULL), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_handshake_response_parse(NULL, 5, KEY, NULL, &out), STWS_ERR_INVALID_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accept_rfc_example),
        cmocka_unit_test(accept_other_keys),
        cmocka_unit_test(key_default_random),
        cmocka_unit_test(key_injected_random),
        cmocka_unit_test(key_random_failure),
        cmocka_unit_test(request_basic),
        cmocka_unit_test(request_with_generated_keys),
        cmocka_unit_test(request_path_and_query),
        cmocka_unit_test(request_host_port),
        cmocka_unit_test(request_all_fields),
        cmocka_unit_test(request_header_injection),
        cmocka_unit_test(request_buffer_too_small),
        cmocka_unit_test(request_duplicate_subprotocols),
        cmocka_unit_test(request_invalid_args),
        cmocka_unit_test(response_valid),
        cmocka_unit_test(response_incomplete_prefixes),
        cmocka_unit_test(response_accept),
        cmocka_unit_test(response_upgrade),
        cmocka_unit_test(response_duplicate_upgrade),
        cmocka_unit_test(response_connection),
        cmocka_unit_test(response_status),
        cmocka_unit_test(response_location_only_for_3xx),
        cmocka_unit_test(response_too_big),
        cmocka_unit_test(response_malformed),
        cmocka_unit_test(response_status_line_control_chars),
        cmocka_unit_test(response_extension),
        cmocka_unit_test(response_subprotocol),
        cmocka_unit_test(response_trailing_frames),
        cmocka_unit_test(response_invalid_args),
    };
    return cmocka_run_group_tests_name("handshake", tests, NULL, NULL);
}
