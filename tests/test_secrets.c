/* No secret left behind (issue 13, finding 4): no block the library frees
   holds the token, the minted token or the API secret, in plain or masked
   (RFC 6455 §5.3: the masking key sits right before the payload, so a masked
   copy is as good as a plain one), and once the auth frame is written no
   masked copy stays in live memory either.  The Stream client over the
   scripted transport and fake clock of tests/client_util.h, with an
   allocator that scans every block as it is freed.

   The scan does not need to know where the key is: a copy of the secret
   XOR-ed with any repeating 4-byte key shows as a window where block ^
   secret has period 4 (key 0 is a plain copy).

   This file carries its own implementation (STWS_STATIC, so it does not
   clash with impl.o), to mark a codec frame secret and look into the
   codec's output block directly. */
#define STWS_STATIC
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"
#include "client_util.h"

#define MAX_LIVE 512
#define MAX_NEEDLES 4

static struct sec {
    void *ptr[MAX_LIVE];
    size_t size[MAX_LIVE];
    int n;
    const char *needle[MAX_NEEDLES];
    int nneedles;
    int freed_hits;           /* freed blocks holding a secret */
    char first_hit[200];
    int scanned;              /* blocks scanned at free */
} S;

/* Offset of a copy of secret in p[0..n) masked with a repeating 4-byte key
   (any key; *key_zero set when it is a plain copy), or -1. */
static long find_masked_n(const uint8_t *p, size_t n, const char *secret, size_t m, int *key_zero) {
    size_t j, k;
    const uint8_t *s = (const uint8_t *)secret;
    if (m < 8 || n < m) return -1;
    for (j = 0; j + m <= n; j++) {
        uint8_t x[4];
        for (k = 0; k < 4; k++) x[k] = p[j + k] ^ s[k];
        for (k = 4; k < m; k++)
            if ((uint8_t)(p[j + k] ^ s[k]) != x[k & 3]) break;
        if (k == m) {
            *key_zero = !(x[0] | x[1] | x[2] | x[3]);
            return (long)j;
        }
    }
    return -1;
}

static long find_masked(const uint8_t *p, size_t n, const char *secret, int *key_zero) {
    return find_masked_n(p, n, secret, strlen(secret), key_zero);
}

static void *sec_alloc(size_t size, void *u) {
    void *p = cu_alloc(size, u);
    if (p) {
        memset(p, 0xA5, size); /* never what an earlier test left in the heap */
        if (S.n == MAX_LIVE) fail_msg("more than %d live blocks", MAX_LIVE);
        S.ptr[S.n] = p;
        S.size[S.n] = size;
        S.n++;
    }
    return p;
}

static void sec_free(void *ptr, void *u) {
    int i, k;
    if (!ptr) return;
    for (i = 0; i < S.n && S.ptr[i] != ptr; i++) {}
    if (i == S.n) fail_msg("free of a block the allocator never gave");
    S.scanned++;
    for (k = 0; k < S.nneedles; k++) {
        int zero = 0;
        long at = find_masked((const uint8_t *)ptr, S.size[i], S.needle[k], &zero);
        if (at >= 0 && !S.freed_hits++)
            snprintf(S.first_hit, sizeof S.first_hit, "a %zu-byte block freed with secret %d (%s) at %ld",
                     S.size[i], k, zero ? "plain" : "masked", at);
    }
    S.ptr[i] = S.ptr[S.n - 1];
    S.size[i] = S.size[S.n - 1];
    S.n--;
    cu_free(ptr, u);
}

/* No live block holds a masked copy of a secret (plain copies are the
   client's own, needed to reconnect). */
static void expect_no_masked_copy_alive(const char *when) {
    int i, k;
    for (i = 0; i < S.n; i++)
        for (k = 0; k < S.nneedles; k++) {
            int zero = 0;
            long at = find_masked((const uint8_t *)S.ptr[i], S.size[i], S.needle[k], &zero);
            if (at >= 0 && !zero)
                fail_msg("%s: a live %zu-byte block holds secret %d masked at %ld", when, S.size[i], k, at);
        }
}

static void expect_nothing_freed_with_a_secret(void) {
    if (S.freed_hits) fail_msg("%d freed block(s) held a secret; the first: %s", S.freed_hits, S.first_hit);
    assert_true(S.scanned > 0);
}

static int setup(void **state) {
    cu_setup(state);
    memset(&S, 0, sizeof S);
    X.d.allocator.alloc = sec_alloc;
    X.d.allocator.free = sec_free;
    (void)cu_fetch; /* client_util.h hooks this suite does not use */
    (void)cu_reconnecting;
    return 0;
}

static void start(void) {
    cu_create();
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
}

static void expect_connected(int n) {
    if (cu_count_ev(STWS_CLIENT_EVENT_CONNECTED) + cu_count_ev(STWS_CLIENT_EVENT_RECONNECTED) != n) {
        cu_dump_events(0);
        fail_msg("expected %d connection.ok", n);
    }
}

/* Socket k's first text frame is the auth message carrying token. */
static void expect_auth_sent(int k, const char *token) {
    const char *t[4];
    char want[512];
    snprintf(want, sizeof want, "{\"token\":\"%s\",\"user_details\":{\"id\":\"alice\"}}", token);
    if (cu_texts(k, t, 4) < 1 || strcmp(t[0], want) != 0) {
        cu_dump_texts(k);
        fail_msg("socket %d: the auth message is not intact", k);
    }
}

static const char TOKEN[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoiYWxpY2UifQ.c2VjcmV0LXNpZ25hdHVyZQ";

/* A static token through connect, auth, an output buffer that grows, a
   reconnect and destroy. */
static void test_static_token_never_left_behind(void **state) {
    char *big;
    size_t n = 100000;
    (void)state;
    X.d.token = TOKEN;
    S.needle[S.nneedles++] = TOKEN;
    srv_ok(0, "c-0");
    start();
    expect_connected(1);
    expect_auth_sent(0, TOKEN);
    expect_no_masked_copy_alive("after the auth frame was written");
    /* a message larger than the output block: it grows, the old one is freed */
    big = (char *)malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    big[0] = '"';
    big[n - 1] = '"';
    big[n] = 0;
    assert_int_equal(stws_client_send(X.c, big, n), STWS_OK);
    free(big);
    cu_settle();
    assert_int_equal(stws_client_queued(X.c), 0);
    /* the server drops the socket; the client reconnects and authenticates
       again into the grown block */
    srv_eof(0);
    srv_ok(1, "c-1");
    cu_settle();
    X.now += 30000;
    cu_settle();
    expect_connected(2);
    expect_auth_sent(1, TOKEN);
    expect_no_masked_copy_alive("after the second auth frame was written");
    stws_client_destroy(X.c);
    X.c = NULL;
    expect_nothing_freed_with_a_secret();
}

/* api_secret: neither the secret nor the token minted from it. */
static void test_api_secret_and_minted_token_never_left_behind(void **state) {
    static const char secret[] = "s3cr3t-api-secret-that-must-never-be-left-behind";
    char token[512];
    (void)state;
    X.d.token = NULL;
    X.d.api_secret = secret;
    cu_expected_jwt(secret, "alice", CU_UNIX0 - 5, token, sizeof token);
    S.needle[S.nneedles++] = secret;
    S.needle[S.nneedles++] = token;
    srv_ok(0, "c-0");
    start();
    expect_connected(1);
    expect_auth_sent(0, token);
    expect_no_masked_copy_alive("after the auth frame was written");
    stws_client_destroy(X.c);
    X.c = NULL;
    expect_nothing_freed_with_a_secret();
}

/* Socket index whose sends block once its upgrade request is out (-1: none). */
static int block_sock = -1;
static int sec_send(void *ctx, const unsigned char *buf, size_t len) {
    int k = X.nsock - 1;
    if (k == block_sock && X.answered[k]) return STWS_WANT_WRITE;
    return cu_tr_send(ctx, buf, len);
}

/* The auth frame still unwritten while the output compacts and grows:
   7 bytes leave per step while the server's pings queue 131-byte pongs
   behind it.  The frame must reach the wire intact, and no stale copy may
   be left by the moves.  Then a socket that never takes the auth frame: the
   watchdog drops it, and its frame is gone before the backoff ends. */
static void test_unwritten_auth_frame_never_left_behind(void **state) {
    uint8_t ping[125];
    int i;
    (void)state;
    X.d.token = TOKEN;
    X.d.conn.transport.send = sec_send;
    block_sock = 1;
    S.needle[S.nneedles++] = TOKEN;
    memset(ping, 'p', sizeof ping);
    X.sock[0].send_chunk = 7;
    X.sock[0].send_block_after_write = 1;
    for (i = 0; i < 12; i++) {
        cu_buf b = {0, 0, 0};
        cu_frame_to(&b, 0x89, ping, sizeof ping);
        cu_frame_to(&b, 0x89, ping, sizeof ping);
        cu_push_buf(0, &b);
    }
    srv_ok(0, "c-0");
    start();
    expect_connected(1);
    expect_auth_sent(0, TOKEN);
    cu_parse_sent(0);
    assert_int_equal(X.nfr, 1 + 24); /* the auth frame, then 24 pongs */
    expect_no_masked_copy_alive("after the auth frame was written in pieces");
    /* socket 1 takes its upgrade request but never the auth frame */
    srv_eof(0);
    cu_settle();
    X.now += 30000;
    cu_settle();
    assert_int_equal(X.nsock, 2);
    assert_true(X.answered[1]);
    X.now += 15000; /* the connection.ok watchdog */
    cu_settle();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 2);
    expect_no_masked_copy_alive("in the backoff after a socket that never took the auth frame");
    /* socket 2 connects and authenticates */
    srv_ok(2, "c-2");
    X.now += 30000;
    cu_settle();
    expect_connected(2);
    expect_auth_sent(2, TOKEN);
    expect_no_masked_copy_alive("after a reconnect over an unwritten auth frame");
    stws_client_destroy(X.c);
    X.c = NULL;
    expect_nothing_freed_with_a_secret();
}

/* The same unwritten auth frame, but the client is destroyed while it is
   still queued. */
static void test_destroy_with_auth_frame_queued(void **state) {
    (void)state;
    X.d.token = TOKEN;
    X.d.conn.transport.send = sec_send;
    block_sock = 0;
    S.needle[S.nneedles++] = TOKEN;
    start();
    assert_true(X.answered[0]);
    cu_parse_sent(0); /* the request only: no frame, not even part of one */
    assert_int_equal(X.nfr, 0);
    assert_int_equal(X.fr_partial, 0);
    stws_client_destroy(X.c);
    X.c = NULL;
    expect_nothing_freed_with_a_secret();
}

/* The compaction rule itself, on a bare codec: a secret frame mostly
   written, one small frame behind it, and a third that does not fit the
   block's tail.  The move leaves the old bytes of the secret behind the
   moved data; they must be wiped, not only the moved frame once it leaves.
   Any 16 bytes of the token masked with any key count as a copy. */
static void test_codec_compaction_leaves_no_stale_copy(void **state) {
    stws_codec_desc cd;
    stws_codec *c;
    char payload[231];
    uint8_t wire[512];
    size_t wn = 0, n, w, m = strlen(TOKEN);
    const uint8_t *out;
    (void)state;
    memset(&cd, 0, sizeof cd);
    cd.random.fill = cu_random;
    cd.allocator.alloc = sec_alloc;
    cd.allocator.free = sec_free;
    c = stws_codec_create(&cd);
    assert_non_null(c);
    /* 230 bytes of payload: an 8-byte header and key, a 238-byte frame in a 256-byte block */
    n = (size_t)snprintf(payload, sizeof payload, "{\"token\":\"%s\",\"pad\":\"", TOKEN);
    memset(payload + n, 'x', 228 - n);
    memcpy(payload + 228, "\"}", 3);
    assert_int_equal(strlen(payload), 230);
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, payload, 230), STWS_OK);
    stws__codec_secret(c, 238);
    assert_int_equal(c->out_cap, 256);
    /* 200 bytes leave: the token's bytes among them, the secret still queued */
    out = stws_codec_output(c, &n);
    assert_int_equal(n, 238);
    memcpy(wire, out, 200);
    wn = 200;
    stws_codec_output_consumed(c, 200);
    assert_int_equal(stws_codec_send(c, STWS_OP_PING, "12345678", 8), STWS_OK); /* 14 bytes: fits */
    assert_int_equal(stws_codec_send(c, STWS_OP_PING, "abcd", 4), STWS_OK);     /* 10: compacts */
    assert_int_equal(c->out_cap, 256); /* moved, not grown */
    out = stws_codec_output(c, &n);
    assert_int_equal(n, 38 + 14 + 10);
    memcpy(wire + wn, out, n);
    wn += n;
    stws_codec_output_consumed(c, n);
    /* the bytes written are the three frames, the secret one intact */
    assert_int_equal(wire[0], 0x81);
    assert_int_equal(wire[1], 0x80 | 126);
    assert_int_equal(wire[2] << 8 | wire[3], 230);
    for (w = 0; w < 230; w++) assert_int_equal(wire[8 + w] ^ wire[4 + (w & 3)], (uint8_t)payload[w]);
    assert_int_equal(wire[238], 0x89);
    assert_int_equal(wire[252], 0x89);
    /* no 16 bytes of the token are left in the block, masked or plain */
    for (w = 0; w + 16 <= m; w++) {
        int zero = 0;
        long at = find_masked_n(c->out, c->out_cap, TOKEN + w, 16, &zero);
        if (at >= 0) fail_msg("token bytes %zu..%zu left in the output block at %ld", w, w + 15, at);
    }
    stws_codec_destroy(c);
    expect_nothing_freed_with_a_secret();
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, cu_teardown)
    const struct CMUnitTest tests[] = {
        T(test_static_token_never_left_behind),
        T(test_api_secret_and_minted_token_never_left_behind),
        T(test_unwritten_auth_frame_never_left_behind),
        T(test_destroy_with_auth_frame_queued),
        T(test_codec_compaction_leaves_no_stale_copy),
    };
#undef T
    return cmocka_run_group_tests_name("secrets", tests, NULL, NULL);
}
