/* The pumped connection (stws_conn_*) over a scripted transport
   (tests/script_transport.h), a fake clock and a deterministic random hook:
   no sleeping, every byte on the wire checked.  Section 10 adds what only a
   real socket shows (127.0.0.1, OS-chosen ports, bounded by alarm() and
   event waits): poll with a negative timeout, connect failure details, an
   edge-triggered epoll loop.  Those use POSIX sockets, signals and fork():
   not in the Windows build (make test-windows), which runs the rest. */
#define _POSIX_C_SOURCE 200809L
#include <time.h>
#ifndef _WIN32
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <mbedtls/base64.h>
#include "../stream_ws.h"
#include "script_transport.h"
#include "client_util.h"

#define T0 ((uint64_t)1000000)           /* the fake clock starts here */
#define SEED UINT64_C(0x9E3779B97F4A7C15)
#define MAX_BUFS 24
#define BUF_SCRATCH (MAX_BUFS - 1) /* reserved slots, not handed out by b_new() */
#define BUF_WIRE_A (MAX_BUFS - 2)
#define BUF_WIRE_B (MAX_BUFS - 3)
#define MAX_PUSHED 64

/* An event with a copy of its data (views die at the next call). */
typedef struct ev_rec {
    stws_conn_event_type type;
    stws_opcode opcode;
    size_t len;
    uint8_t data[1024];
    int close_code, clean;
    stws_result error;
} ev_rec;

/* A growable byte string for building server data. */
typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

/* A client frame parsed from the capture. */
typedef struct cframe {
    int fin, rsv, opcode, masked;
    size_t len;
    uint8_t mask[4];
} cframe;

static struct fx {
    st_transport st;
    uint64_t now;                 /* fake clock */
    uint64_t rng;                 /* deterministic random */
    int random_fills;
    uint8_t last_fill16[16];
    /* counting allocator */
    long attempts, allocs, frees, live;
    size_t bytes_total, bytes_live;
    long fail_at;                 /* 1-based attempt to fail; 0 = never */
    /* logger */
    int logs, log_errors;
    char last_log[512];
    /* push delivery */
    ev_rec pushed[MAX_PUSHED];
    int npushed, in_step, outside_calls;
    stws_conn *cb_conn;
    /* the connection under test */
    stws_conn_desc d;
    stws_conn *c;
    size_t req_off, req_len;      /* the current upgrade request in st.sent */
    size_t rd;                    /* next unparsed client byte in st.sent */
    char key[32];
    bytes bufs[MAX_BUFS];
    int nbufs;
    uint8_t frame[200000];        /* unmasked payload of the last client frame */
} F;

/* ==== hooks ============================================================== */

static uint64_t fake_now(void *user) { return ((struct fx *)user)->now; }

static int fake_random(void *buf, size_t len, void *user) {
    struct fx *f = (struct fx *)user;
    uint8_t *p = (uint8_t *)buf;
    size_t i;
    f->random_fills++;
    for (i = 0; i < len; i++) { /* xorshift64 */
        f->rng ^= f->rng << 13;
        f->rng ^= f->rng >> 7;
        f->rng ^= f->rng << 17;
        p[i] = (uint8_t)(f->rng >> 29);
    }
    if (len == 16) memcpy(f->last_fill16, buf, 16);
    return 0;
}

#define ALLOC_HDR 16
static void *count_alloc(size_t size, void *user) {
    struct fx *f = (struct fx *)user;
    unsigned char *p;
    f->attempts++;
    if (f->fail_at && f->attempts == f->fail_at) return NULL;
    p = (unsigned char *)malloc(size + ALLOC_HDR);
    if (!p) return NULL;
    memcpy(p, &size, sizeof size);
    f->allocs++;
    f->live++;
    f->bytes_total += size;
    f->bytes_live += size;
    return p + ALLOC_HDR;
}

static void count_free(void *ptr, void *user) {
    struct fx *f = (struct fx *)user;
    unsigned char *p;
    size_t size;
    if (!ptr) return;
    p = (unsigned char *)ptr - ALLOC_HDR;
    memcpy(&size, p, sizeof size);
    f->frees++;
    f->live--;
    f->bytes_live -= size;
    free(p);
}

static void quiet_log(stws_log_level level, const char *msg, void *user) {
    struct fx *f = (struct fx *)user;
    f->logs++;
    if (level == STWS_LOG_ERROR) f->log_errors++;
    snprintf(f->last_log, sizeof f->last_log, "%s", msg);
}

static void rec_copy(ev_rec *r, const stws_conn_event *ev) {
    memset(r, 0, sizeof *r);
    r->type = ev->type;
    r->opcode = ev->opcode;
    r->len = ev->len;
    r->close_code = ev->close_code;
    r->clean = ev->clean;
    r->error = ev->error;
    if (ev->len && ev->data) memcpy(r->data, ev->data, ev->len < sizeof r->data ? ev->len : sizeof r->data);
}

static void on_event_cb(stws_conn *c, const stws_conn_event *ev, void *user) {
    struct fx *f = (struct fx *)user;
    if (!f->in_step) f->outside_calls++;
    f->cb_conn = c;
    if (f->npushed < MAX_PUSHED) rec_copy(&f->pushed[f->npushed++], ev);
}

/* ==== fixture ============================================================ */

static void desc_defaults(const char *url) {
    memset(&F.d, 0, sizeof F.d);
    F.d.url = url;
    F.d.transport = st_transport_vtable(&F.st, 0);
    F.d.clock.now_ms = fake_now;
    F.d.clock.user_data = &F;
    F.d.random.fill = fake_random;
    F.d.random.user_data = &F;
    F.d.allocator.alloc = count_alloc;
    F.d.allocator.free = count_free;
    F.d.allocator.user_data = &F;
    F.d.logger.func = quiet_log;
    F.d.logger.user_data = &F;
}

static int setup(void **state) {
    (void)state;
    memset(&F, 0, sizeof F);
    st_init(&F.st);
    F.now = T0;
    F.rng = SEED;
    desc_defaults("ws://example.com/ws");
    return 0;
}

static int teardown(void **state) {
    int i, bad = 0;
    (void)state;
    stws_conn_destroy(F.c);
    F.c = NULL;
    if (F.st.misuse) {
        print_error("transport misuse: %d send/recv on a closed stream or open on an open one\n",
                    F.st.misuse);
        bad = 1;
    }
    if (F.live) {
        print_error("the library leaked %ld allocation(s), %zu bytes\n", F.live, F.bytes_live);
        bad = 1;
    }
    st_free(&F.st);
    for (i = 0; i < MAX_BUFS; i++) free(F.bufs[i].p);
    memset(F.bufs, 0, sizeof F.bufs);
    return bad ? -1 : 0;
}

/* Drop the connection and the script, keep the counters. */
static void reset_conn(const char *url) {
    stws_conn_destroy(F.c);
    F.c = NULL;
    assert_int_equal(F.st.misuse, 0);
    st_free(&F.st);
    st_init(&F.st);
    F.rng = SEED;
    F.rd = F.req_off = F.req_len = 0;
    F.npushed = F.outside_calls = 0;
    F.cb_conn = NULL;
    F.nbufs = 0; /* builder slots are reused (their memory is kept) */
    desc_defaults(url);
}

static void create(void) {
    F.c = stws_conn_create(&F.d);
    assert_non_null(F.c);
}

static stws_result step(void) {
    stws_result r;
    F.in_step++;
    r = stws_conn_step(F.c);
    F.in_step--;
    return r;
}

#define STATE() stws_conn_get_state(F.c)

/* ==== bytes ============================================================== */

static bytes *b_new(void) {
    bytes *b;
    assert_true(F.nbufs < BUF_WIRE_B);
    b = &F.bufs[F.nbufs++];
    b->n = 0;
    return b;
}

static void b_put(bytes *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        uint8_t *p;
        while (cap < b->n + n) cap *= 2;
        p = (uint8_t *)realloc(b->p, cap);
        assert_non_null(p);
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void b_str(bytes *b, const char *s) { b_put(b, s, strlen(s)); }

static void b_byte(bytes *b, unsigned v) {
    uint8_t c = (uint8_t)v;
    b_put(b, &c, 1);
}

/* A server frame (unmasked), minimal length encoding. */
static void b_frame(bytes *b, int fin, int opcode, const void *data, size_t n) {
    int k;
    b_byte(b, (fin ? 0x80u : 0u) | (unsigned)opcode);
    if (n < 126) {
        b_byte(b, (unsigned)n);
    } else if (n <= 0xFFFF) {
        b_byte(b, 126);
        b_byte(b, (unsigned)(n >> 8));
        b_byte(b, (unsigned)(n & 0xFF));
    } else {
        b_byte(b, 127);
        for (k = 0; k < 8; k++) b_byte(b, (unsigned)(((uint64_t)n >> (56 - 8 * k)) & 0xFF));
    }
    b_put(b, data, n);
}

static void b_close(bytes *b, int code, const char *reason) {
    uint8_t p[125];
    size_t n = 0;
    if (code) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = 2;
        if (reason) {
            memcpy(p + 2, reason, strlen(reason));
            n += strlen(reason);
        }
    }
    b_frame(b, 1, STWS_OP_CLOSE, p, n);
}

static void push_bytes(const bytes *b) { st_push(&F.st, b->p, b->n); }

static void push_str(const char *s) { st_push(&F.st, s, strlen(s)); }

static void push_frame(int opcode, const void *data, size_t n) {
    bytes *b = b_new();
    b_frame(b, 1, opcode, data, n);
    push_bytes(b);
}

static void push_close(int code, const char *reason) {
    bytes *b = b_new();
    b_close(b, code, reason);
    push_bytes(b);
}

static const char *find(const void *hay, size_t n, const char *needle) {
    const char *h = (const char *)hay;
    size_t m = strlen(needle), i;
    for (i = 0; i + m <= n; i++)
        if (memcmp(h + i, needle, m) == 0) return h + i;
    return NULL;
}

/* ==== events ============================================================= */

static const char *ev_name(int t) {
    switch (t) {
    case STWS_CONN_EVENT_NONE: return "NONE";
    case STWS_CONN_EVENT_OPEN: return "OPEN";
    case STWS_CONN_EVENT_MESSAGE: return "MESSAGE";
    case STWS_CONN_EVENT_PING: return "PING";
    case STWS_CONN_EVENT_PONG: return "PONG";
    case STWS_CONN_EVENT_CLOSE: return "CLOSE";
    case STWS_CONN_EVENT_ERROR: return "ERROR";
    }
    return "?";
}

static int next_ev(ev_rec *r) {
    stws_conn_event ev;
    int got = stws_conn_next_event(F.c, &ev);
    if (got) rec_copy(r, &ev);
    else memset(r, 0, sizeof *r);
    return got;
}

static void get_ev(ev_rec *r, stws_conn_event_type want) {
    if (!next_ev(r)) fail_msg("expected a %s event, got none (state %d)", ev_name(want), (int)STATE());
    if (r->type != want)
        fail_msg("expected a %s event, got %s (error %d %s, close %d, clean %d)", ev_name(want),
                 ev_name(r->type), (int)r->error, stws_result_string(r->error), r->close_code, r->clean);
}

static void expect_message(stws_opcode op, const void *data, size_t len) {
    ev_rec r;
    get_ev(&r, STWS_CONN_EVENT_MESSAGE);
    assert_int_equal(r.opcode, op);
    assert_int_equal(r.len, len);
    if (len) assert_memory_equal(r.data, data, len < sizeof r.data ? len : sizeof r.data);
}

static void expect_no_event(void) {
    ev_rec r;
    if (next_ev(&r))
        fail_msg("expected no event, got %s (error %d, close %d, len %zu)", ev_name(r.type),
                 (int)r.error, r.close_code, r.len);
}

static void expect_error_then_close(stws_result err, int close_code_sent) {
    ev_rec r;
    get_ev(&r, STWS_CONN_EVENT_ERROR);
    if (r.error != err)
        fail_msg("ERROR event: expected %d (%s), got %d (%s)", (int)err, stws_result_string(err),
                 (int)r.error, stws_result_string(r.error));
    assert_int_equal(r.close_code, close_code_sent);
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 0);
    assert_int_equal(r.close_code, STWS_CLOSE_ABNORMAL);
    expect_no_event();
    assert_int_equal(STATE(), STWS_CONN_CLOSED);
}

/* ==== the client's bytes ================================================= */

/* Parse the next complete client frame at F.rd into F.frame (unmasked). */
static int client_frame(cframe *f) {
    const uint8_t *p = F.st.sent + F.rd;
    size_t avail = F.st.sent_len - F.rd, h = 2, i;
    uint64_t len;
    if (avail < 2) return 0;
    f->fin = p[0] >> 7;
    f->rsv = (p[0] >> 4) & 7;
    f->opcode = p[0] & 0x0F;
    f->masked = p[1] >> 7;
    len = p[1] & 0x7F;
    if (len == 126) {
        if (avail < 4) return 0;
        len = (uint64_t)p[2] << 8 | p[3];
        h = 4;
        assert_true(len >= 126); /* minimal encoding (§5.2) */
    } else if (len == 127) {
        int k;
        if (avail < 10) return 0;
        for (len = 0, k = 0; k < 8; k++) len = len << 8 | p[2 + k];
        h = 10;
        assert_true(len > 0xFFFF);
        assert_true(len < ((uint64_t)1 << 63));
    }
    if (f->masked) {
        if (avail < h + 4) return 0;
        memcpy(f->mask, p + h, 4);
        h += 4;
    }
    if (avail < h + len) return 0;
    assert_true(len <= sizeof F.frame);
    for (i = 0; i < len; i++) F.frame[i] = p[h + i] ^ (f->masked ? f->mask[i & 3] : 0);
    f->len = (size_t)len;
    F.rd += h + (size_t)len;
    return 1;
}

static void expect_client_frame_m(int opcode, const void *payload, size_t len, uint8_t mask_out[4]) {
    cframe f;
    if (!client_frame(&f))
        fail_msg("expected a client frame (opcode %d), %zu unparsed bytes", opcode, F.st.sent_len - F.rd);
    assert_int_equal(f.fin, 1);
    assert_int_equal(f.rsv, 0);
    assert_int_equal(f.masked, 1); /* §5.1: every client frame is masked */
    assert_int_equal(f.opcode, opcode);
    assert_int_equal(f.len, len);
    if (len) assert_memory_equal(F.frame, payload, len);
    if (mask_out) memcpy(mask_out, f.mask, 4);
}

static void expect_client_frame(int opcode, const void *payload, size_t len) {
    expect_client_frame_m(opcode, payload, len, NULL);
}

static void expect_client_close(int code, const char *reason) {
    uint8_t p[125];
    size_t n = 0;
    if (code) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = 2;
        if (reason) {
            memcpy(p + 2, reason, strlen(reason));
            n += strlen(reason);
        }
    }
    expect_client_frame(STWS_OP_CLOSE, p, n);
}

static void expect_nothing_sent(void) {
    if (F.st.sent_len != F.rd) fail_msg("unexpected client bytes: %zu", F.st.sent_len - F.rd);
}

/* ==== the opening handshake ============================================== */

/* Find the upgrade request written since F.req_off and its key. */
static void take_request(void) {
    const char *s = (const char *)F.st.sent + F.req_off, *end, *k, *ke;
    size_t n = F.st.sent_len - F.req_off;
    end = find(s, n, "\r\n\r\n");
    if (!end) fail_msg("no complete upgrade request in %zu sent bytes", n);
    F.req_len = (size_t)(end - s) + 4;
    k = find(s, F.req_len, "\r\nSec-WebSocket-Key: ");
    assert_non_null(k);
    k += strlen("\r\nSec-WebSocket-Key: ");
    ke = find(k, (size_t)(s + F.req_len - k), "\r\n");
    assert_non_null(ke);
    assert_int_equal(ke - k, 24);
    memcpy(F.key, k, 24);
    F.key[24] = 0;
    F.rd = F.req_off + F.req_len;
}

/* "HTTP/1.1 101" answering F.key, extra header lines, the empty line. */
static bytes *response_101(const char *extra) {
    char acc[STWS_HANDSHAKE_ACCEPT_SIZE];
    bytes *b = b_new();
    assert_int_equal(stws_handshake_accept(F.key, acc), STWS_OK);
    b_str(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: ");
    b_str(b, acc);
    b_str(b, "\r\n");
    b_str(b, extra);
    b_str(b, "\r\n");
    return b;
}

/* connect, let open succeed, take the request. */
static void connect_to_handshake(void) {
    int i;
    F.req_off = F.st.sent_len;
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    for (i = 0; i < 20 && STATE() == STWS_CONN_CONNECTING; i++) assert_int_equal(step(), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_HANDSHAKE);
    take_request();
}

/* connect, answer 101 (with `trail` in the same chunk), take OPEN. */
static void open_conn_with(const void *trail, size_t tn) {
    bytes *b;
    ev_rec r;
    connect_to_handshake();
    b = response_101("");
    b_put(b, trail, tn);
    push_bytes(b);
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_OPEN);
    get_ev(&r, STWS_CONN_EVENT_OPEN);
}

static void open_conn(void) { open_conn_with(NULL, 0); }

/* Client close, server reply and EOF: CLOSE clean. */
static void close_clean(void) {
    ev_rec r;
    assert_int_equal(stws_conn_close(F.c, 1000, "bye"), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    expect_client_close(1000, "bye");
    push_close(1000, NULL);
    st_push_eof(&F.st);
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
    assert_int_equal(step(), STWS_OK);
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 1);
    assert_int_equal(r.close_code, 1000);
    assert_int_equal(STATE(), STWS_CONN_CLOSED);
}

/* ==== 1. happy path ====================================================== */

static void happy_path_upgrade_and_first_frames(void **state) {
    static const char *const protos[] = {"chat", "superchat"};
    static const stws_header hdrs[] = {{"X-Token", "abc123"}, {"X-Trace", "a b c"}};
    static const uint8_t bin[] = {0, 1, 2, 0xFF, 0x80};
    char expect[1024];
    unsigned char raw[32];
    size_t olen = 0;
    bytes *resp;
    ev_rec r;
    int i;
    (void)state;
    desc_defaults("ws://example.com:8080/chat?room=1&x=y");
    F.d.origin = "https://app.example.com";
    F.d.subprotocols = protos;
    F.d.num_subprotocols = 2;
    F.d.headers = hdrs;
    F.d.num_headers = 2;
    F.st.open_wants = 3;
    create();
    assert_int_equal(STATE(), STWS_CONN_IDLE);
    assert_int_equal(stws_conn_wants(F.c), STWS_POLL_NONE);
    assert_int_equal(stws_conn_timeout(F.c), -1);
    assert_int_equal(step(), STWS_OK); /* IDLE: nothing happens */
    assert_int_equal(F.st.open_calls, 0);

    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_CONNECTING);
    assert_int_equal(stws_conn_connect(F.c), STWS_ERR_STATE);
    for (i = 1; i <= 3; i++) {
        assert_int_equal(step(), STWS_OK);
        assert_int_equal(F.st.open_calls, i);
        assert_int_equal(STATE(), STWS_CONN_CONNECTING);
        assert_int_equal(stws_conn_wants(F.c), STWS_POLL_WRITE);
        assert_int_equal(F.st.sent_len, 0);
        assert_int_equal(F.st.recv_calls, 0);
        expect_no_event();
    }
    assert_int_equal(step(), STWS_OK); /* open returns 0: the request goes out */
    assert_int_equal(F.st.open_calls, 4);
    assert_string_equal(F.st.host, "example.com");
    assert_int_equal(F.st.port, 8080);
    assert_int_equal(STATE(), STWS_CONN_HANDSHAKE);
    assert_int_equal(stws_conn_wants(F.c), STWS_POLL_READ);
    expect_no_event();
    take_request();
    snprintf(expect, sizeof expect,
             "GET /chat?room=1&x=y HTTP/1.1\r\n"
             "Host: example.com:8080\r\n"
             "Upgrade: websocket\r\n"
             "Connection: Upgrade\r\n"
             "Sec-WebSocket-Key: %s\r\n"
             "Sec-WebSocket-Version: 13\r\n"
             "Origin: https://app.example.com\r\n"
             "Sec-WebSocket-Protocol: chat, superchat\r\n"
             "X-Token: abc123\r\n"
             "X-Trace: a b c\r\n"
             "\r\n",
             F.key);
    assert_int_equal(F.st.sent_len, strlen(expect));
    assert_memory_equal(F.st.sent, expect, strlen(expect));
    /* §4.1: the key is base64 of 16 fresh bytes from the random hook */
    assert_int_equal(mbedtls_base64_decode(raw, sizeof raw, &olen, (const unsigned char *)F.key, 24), 0);
    assert_int_equal(olen, 16);
    assert_memory_equal(raw, F.last_fill16, 16);

    /* the 101 and two frames in one recv chunk */
    resp = response_101("Sec-WebSocket-Protocol: chat\r\n");
    b_frame(resp, 1, STWS_OP_TEXT, "hello", 5);
    b_frame(resp, 1, STWS_OP_BINARY, bin, sizeof bin);
    push_bytes(resp);
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_OPEN);
    assert_int_equal(st_unread_chunks(&F.st), 0);
    assert_int_equal(stws_conn_timeout(F.c), 0); /* events are waiting */
    get_ev(&r, STWS_CONN_EVENT_OPEN);              /* OPEN first */
    expect_message(STWS_OP_TEXT, "hello", 5);
    expect_message(STWS_OP_BINARY, bin, sizeof bin);
    expect_no_event();
    assert_int_equal(stws_conn_timeout(F.c), -1); /* open and idle: no timer */
    assert_int_equal(stws_conn_wants(F.c), STWS_POLL_READ);
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
    expect_nothing_sent();
    assert_int_equal(F.st.open_calls, 4);
    assert_int_equal(F.st.close_calls, 0);
}

/* Host header and open() arguments for other URL shapes. */
static void request_line_and_host_variants(void **state) {
    static const struct {
        const char *url, *host, *first, *hosthdr;
        unsigned port;
    } cases[] = {
        {"ws://example.com", "example.com", "GET / HTTP/1.1\r\n", "Host: example.com\r\n", 80},
        {"ws://[::1]:9000/p?q", "::1", "GET /p?q HTTP/1.1\r\n", "Host: [::1]:9000\r\n", 9000},
        {"wss://secure.example.com/x", "secure.example.com", "GET /x HTTP/1.1\r\n",
         "Host: secure.example.com\r\n", 443},
        {"ws://10.0.0.1:80/", "10.0.0.1", "GET / HTTP/1.1\r\n", "Host: 10.0.0.1\r\n", 80},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *s;
        reset_conn(cases[i].url);
        create();
        open_conn(); /* a wss:// URL with a user transport: no TLS layer */
        s = (const char *)F.st.sent + F.req_off;
        assert_string_equal(F.st.host, cases[i].host);
        assert_int_equal(F.st.port, cases[i].port);
        assert_memory_equal(s, cases[i].first, strlen(cases[i].first));
        assert_memory_equal(s + strlen(cases[i].first), cases[i].hosthdr, strlen(cases[i].hosthdr));
        push_frame(STWS_OP_TEXT, "ok", 2);
        assert_int_equal(step(), STWS_OK);
        expect_message(STWS_OP_TEXT, "ok", 2);
    }
}

/* Every frame split 1 byte per recv; a message is delivered exactly when its
   last byte has been read, never before. */
static void frames_one_byte_per_recv(void **state) {
    static const char utf8[] = "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80!";
    uint8_t big[300];
    bytes *b;
    size_t hdr, ends[6], k = 0, i;
    ev_rec r;
    int steps = 0;
    (void)state;
    for (i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7);
    create();
    F.st.recv_max = 1;
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    take_request();
    b = response_101("");
    hdr = b->n;
    b_frame(b, 1, STWS_OP_TEXT, utf8, sizeof utf8 - 1);
    ends[0] = b->n - hdr;
    b_frame(b, 1, STWS_OP_BINARY, big, sizeof big);
    ends[1] = b->n - hdr;
    b_frame(b, 0, STWS_OP_TEXT, "frag", 4);
    b_frame(b, 1, STWS_OP_PING, "pp", 2); /* control frame inside a fragmented message */
    ends[2] = b->n - hdr;
    b_frame(b, 1, STWS_OP_CONTINUATION, "mented", 6);
    ends[3] = b->n - hdr;
    b_frame(b, 1, STWS_OP_TEXT, "", 0);
    ends[4] = b->n - hdr;
    push_bytes(b);

    /* the upgrade response is read byte by byte within one step, and not a byte more */
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_OPEN);
    assert_int_equal(F.st.bytes_received, hdr);
    get_ev(&r, STWS_CONN_EVENT_OPEN);
    expect_no_event();

    while (F.st.bytes_received < b->n && steps < 2000) {
        size_t before = F.st.bytes_received;
        assert_int_equal(step(), STWS_OK);
        steps++;
        assert_true(F.st.bytes_received - before <= 1);
        while (next_ev(&r)) {
            size_t at = F.st.bytes_received - hdr;
            assert_true(k < 5);
            if (at != ends[k]) fail_msg("event %zu delivered after %zu bytes, expected %zu", k, at, ends[k]);
            switch (k) {
            case 0:
                assert_int_equal(r.type, STWS_CONN_EVENT_MESSAGE);
                assert_int_equal(r.opcode, STWS_OP_TEXT);
                assert_int_equal(r.len, sizeof utf8 - 1);
                assert_memory_equal(r.data, utf8, sizeof utf8 - 1);
                break;
            case 1:
                assert_int_equal(r.type, STWS_CONN_EVENT_MESSAGE);
                assert_int_equal(r.opcode, STWS_OP_BINARY);
                assert_int_equal(r.len, sizeof big);
                assert_memory_equal(r.data, big, sizeof big);
                break;
            case 2:
                assert_int_equal(r.type, STWS_CONN_EVENT_PING);
                assert_int_equal(r.len, 2);
                assert_memory_equal(r.data, "pp", 2);
                break;
            case 3:
                assert_int_equal(r.type, STWS_CONN_EVENT_MESSAGE);
                assert_int_equal(r.opcode, STWS_OP_TEXT);
                assert_int_equal(r.len, 10);
                assert_memory_equal(r.data, "fragmented", 10);
                break;
            case 4:
                assert_int_equal(r.type, STWS_CONN_EVENT_MESSAGE);
                assert_int_equal(r.opcode, STWS_OP_TEXT);
                assert_int_equal(r.len, 0);
                break;
            }
            k++;
        }
    }
    assert_int_equal(k, 5);
    assert_int_equal(F.st.bytes_received, b->n);
    assert_int_equal(step(), STWS_OK);
    expect_client_frame(STWS_OP_PONG, "pp", 2);
    expect_nothing_sent();
    assert_int_equal(STATE(), STWS_CONN_OPEN);
}

/* A 1 KiB receive buffer: the 101, a 70000-byte frame (64-bit length) and a
   200-byte frame (16-bit length) in one chunk. */
static void large_frames_through_small_buffer(void **state) {
    static uint8_t big[70000];
    char text[200];
    bytes *b;
    size_t i;
    int got = 0, steps;
    (void)state;
    for (i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i ^ (i >> 8));
    for (i = 0; i < sizeof text; i++) text[i] = (char)('a' + i % 26);
    F.d.recv_buffer_size = 1024;
    create();
    connect_to_handshake();
    b = response_101("");
    b_frame(b, 1, STWS_OP_BINARY, big, sizeof big);
    b_frame(b, 1, STWS_OP_TEXT, text, sizeof text);
    b_frame(b, 1, STWS_OP_TEXT, "end", 3);
    push_bytes(b);
    for (steps = 0; steps < 1000 && got < 4; steps++) {
        stws_conn_event ev;
        assert_int_equal(step(), STWS_OK);
        while (stws_conn_next_event(F.c, &ev)) {
            switch (got++) {
            case 0: assert_int_equal(ev.type, STWS_CONN_EVENT_OPEN); break;
            case 1:
                assert_int_equal(ev.type, STWS_CONN_EVENT_MESSAGE);
                assert_int_equal(ev.opcode, STWS_OP_BINARY);
                assert_int_equal(ev.len, sizeof big);
                assert_memory_equal(ev.data, big, sizeof big);
                break;
            case 2:
                assert_int_equal(ev.type, STWS_CONN_EVENT_MESSAGE);
                assert_int_equal(ev.len, sizeof text);
                assert_memory_equal(ev.data, text, sizeof text);
                break;
            case 3:
                assert_int_equal(ev.type, STWS_CONN_EVENT_MESSAGE);
                assert_int_equal(ev.len, 3);
                assert_memory_equal(ev.data, "end", 3);
                break;
            default: fail_msg("unexpected event %s", ev_name(ev.type));
            }
        }
    }
    assert_int_equal(got, 4);
    assert_int_equal(STATE(), STWS_CONN_OPEN);
    expect_nothing_sent();
}

/* ==== 2. sends =========================================================== */

static void send_only_while_open(void **state) {
    bytes *b;
    ev_rec r;
    (void)state;
    create();
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "x", 1), STWS_ERR_STATE); /* IDLE */
    F.st.open_wants = 1;
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "x", 1), STWS_ERR_STATE); /* CONNECTING */
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_CONNECTING);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_BINARY, "x", 1), STWS_ERR_STATE);
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_HANDSHAKE);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_PING, "x", 1), STWS_ERR_STATE); /* HANDSHAKE */
    assert_int_equal(stws_conn_buffered(F.c), 0);
    take_request();
    assert_int_equal(F.st.sent_len, F.req_len); /* the request and nothing else */
    b = response_101("");
    push_bytes(b);
    assert_int_equal(step(), STWS_OK);
    get_ev(&r, STWS_CONN_EVENT_OPEN);
    expect_nothing_sent();
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "x", 1), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    expect_client_frame(STWS_OP_TEXT, "x", 1);
    close_clean();
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "x", 1), STWS_ERR_STATE); /* CLOSED */
    assert_int_equal(stws_conn_buffered(F.c), 0);
}

static void sent_frames_are_masked(void **state) {
    static uint8_t big[70000];
    uint8_t mid[300], m[4][4];
    size_t i, j;
    (void)state;
    for (i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 31 + 7);
    for (i = 0; i < sizeof mid; i++) mid[i] = (uint8_t)(255 - i);
    create();
    open_conn();
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "Hello, world", 12), STWS_OK);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_BINARY, mid, sizeof mid), STWS_OK);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_BINARY, big, sizeof big), STWS_OK);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_PING, "p", 1), STWS_OK);
    assert_int_equal(stws_conn_buffered(F.c), (2 + 4 + 12) + (4 + 4 + 300) + (10 + 4 + 70000) + (2 + 4 + 1));
    assert_true(stws_conn_wants(F.c) & STWS_POLL_WRITE);
    expect_nothing_sent(); /* sends are queued; the pump writes them */
    /* refused sends queue nothing */
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "\xC3\x28", 2), STWS_ERR_INVALID_UTF8);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_PING, big, 126), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_CLOSE, "", 0), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_CONTINUATION, "x", 1), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_conn_buffered(F.c), 18 + 308 + 70014 + 7);

    assert_int_equal(step(), STWS_OK);
    assert_int_equal(stws_conn_buffered(F.c), 0);
    assert_int_equal(stws_conn_wants(F.c), STWS_POLL_READ);
    expect_client_frame_m(STWS_OP_TEXT, "Hello, world", 12, m[0]);
    expect_client_frame_m(STWS_OP_BINARY, mid, sizeof mid, m[1]);
    expect_client_frame_m(STWS_OP_BINARY, big, sizeof big, m[2]);
    expect_client_frame_m(STWS_OP_PING, "p", 1, m[3]);
    expect_nothing_sent();
    /* §5.3: a fresh masking key per frame */
    for (i = 0; i < 4; i++)
        for (j = i + 1; j < 4; j++) assert_memory_not_equal(m[i], m[j], 4);
}

static void partial_writes_resume_exactly(void **state) {
    static const char msg[] = "abcdefghijklmnopqrst"; /* 20 bytes: a 26-byte frame */
    size_t prev;
    int steps = 0, calls;
    (void)state;
    create();
    open_conn();
    F.st.send_chunk = 3;
    F.st.send_block_after_write = 1; /* one 3-byte write per step */
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, msg, 20), STWS_OK);
    prev = stws_conn_buffered(F.c);
    assert_int_equal(prev, 26);
    while (stws_conn_buffered(F.c) > 0 && steps < 100) {
        assert_true(stws_conn_wants(F.c) & STWS_POLL_WRITE);
        assert_int_equal(step(), STWS_OK);
        steps++;
        assert_int_equal(stws_conn_buffered(F.c), prev - (prev < 3 ? prev : 3));
        assert_int_equal(F.st.sent_len - F.rd, 26 - stws_conn_buffered(F.c));
        prev = stws_conn_buffered(F.c);
    }
    assert_int_equal(steps, 9);
    expect_client_frame(STWS_OP_TEXT, msg, 20);
    expect_nothing_sent();
    assert_int_equal(stws_conn_wants(F.c), STWS_POLL_READ);

    /* 3 bytes per call without blocking: everything goes in one step */
    F.st.send_block_after_write = 0;
    F.st.send_blocked_next = 0;
    assert_int_equal(stws_conn_send(F.c, STWS_OP_BINARY, msg, 20), STWS_OK);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "xyz", 3), STWS_OK);
    assert_int_equal(stws_conn_buffered(F.c), 26 + 9);
    calls = F.st.send_calls;
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(F.st.send_calls - calls, (26 + 9 + 2) / 3);
    assert_int_equal(stws_conn_buffered(F.c), 0);
    expect_client_frame(STWS_OP_BINARY, msg, 20);
    expect_client_frame(STWS_OP_TEXT, "xyz", 3);
    expect_nothing_sent();
}

/* The upgrade request written 5 bytes per step. */
static void upgrade_request_partial_writes(void **state) {
    char expect[512];
    ev_rec r;
    size_t prev = 0;
    int steps = 0;
    (void)state;
    desc_defaults("ws://example.com/ws");
    create();
    F.st.send_chunk = 5;
    F.st.send_block_after_write = 1;
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    do {
        assert_int_equal(step(), STWS_OK);
        steps++;
        if (!find(F.st.sent, F.st.sent_len, "\r\n\r\n")) {
            assert_int_equal(F.st.sent_len, prev + 5);
            assert_int_equal(STATE(), STWS_CONN_HANDSHAKE);
            assert_int_equal(stws_conn_wants(F.c), STWS_POLL_WRITE);
            assert_int_equal(F.st.recv_calls, 0); /* no reading before the request is out */
        }
        prev = F.st.sent_len;
    } while (!find(F.st.sent, F.st.sent_len, "\r\n\r\n") && steps < 100);
    take_request();
    snprintf(expect, sizeof expect,
             "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
             F.key);
    assert_int_equal(F.st.sent_len, strlen(expect));
    assert_memory_equal(F.st.sent, expect, strlen(expect));
    assert_int_equal(steps, (int)((strlen(expect) + 4) / 5));
    push_bytes(response_101(""));
    assert_int_equal(step(), STWS_OK);
    get_ev(&r, STWS_CONN_EVENT_OPEN);
}

static void would_block_keeps_bytes_queued(void **state) {
    int i;
    (void)state;
    create();
    open_conn();
    F.st.send_mode = ST_SEND_BLOCK;
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "abc", 3), STWS_OK);
    assert_int_equal(stws_conn_buffered(F.c), 9);
    for (i = 0; i < 3; i++) {
        assert_int_equal(step(), STWS_OK);
        assert_int_equal(stws_conn_buffered(F.c), 9);
        assert_int_equal(stws_conn_wants(F.c), STWS_POLL_READ | STWS_POLL_WRITE);
        assert_int_equal(STATE(), STWS_CONN_OPEN);
        expect_nothing_sent();
        expect_no_event();
    }
    assert_int_equal(stws_conn_send(F.c, STWS_OP_BINARY, "de", 2), STWS_OK);
    assert_int_equal(stws_conn_buffered(F.c), 9 + 8);
    F.st.send_mode = ST_SEND_ACCEPT;
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(stws_conn_buffered(F.c), 0);
    assert_int_equal(stws_conn_wants(F.c), STWS_POLL_READ);
    expect_client_frame(STWS_OP_TEXT, "abc", 3);
    expect_client_frame(STWS_OP_BINARY, "de", 2);
    expect_nothing_sent();
}

/* A queue limit: max_output_size bounds what a blocked connection holds. */
static void output_limit_refuses_sends(void **state) {
    char msg[100];
    int i, ok = 0;
    (void)state;
    memset(msg, 'm', sizeof msg);
    F.d.max_output_size = 1000;
    create();
    open_conn();
    F.st.send_mode = ST_SEND_BLOCK;
    for (i = 0; i < 20; i++) {
        stws_result r = stws_conn_send(F.c, STWS_OP_TEXT, msg, sizeof msg);
        if (r == STWS_OK) ok++;
        else assert_int_equal(r, STWS_ERR_OUTPUT_FULL);
    }
    assert_int_equal(ok, 1000 / 106);
    assert_int_equal(stws_conn_buffered(F.c), (size_t)ok * 106);
    F.st.send_mode = ST_SEND_ACCEPT;
    assert_int_equal(step(), STWS_OK);
    for (i = 0; i < ok; i++) expect_client_frame(STWS_OP_TEXT, msg, sizeof msg);
    expect_nothing_sent();
}

/* ==== 3. ping ============================================================ */

static void server_ping_answered_at_next_step(void **state) {
    uint8_t p125[125];
    ev_rec r;
    size_t i;
    (void)state;
    for (i = 0; i < sizeof p125; i++) p125[i] = (uint8_t)i;
    create();
    open_conn();
    push_frame(STWS_OP_PING, "ping-data", 9);
    assert_int_equal(step(), STWS_OK);
    expect_nothing_sent();
    get_ev(&r, STWS_CONN_EVENT_PING);
    assert_int_equal(r.len, 9);
    assert_memory_equal(r.data, "ping-data", 9);
    expect_no_event();
    assert_int_equal(stws_conn_buffered(F.c), 2 + 4 + 9); /* the pong is queued... */
    assert_true(stws_conn_wants(F.c) & STWS_POLL_WRITE);
    expect_nothing_sent();                                  /* ...not yet written */
    assert_int_equal(step(), STWS_OK);
    expect_client_frame(STWS_OP_PONG, "ping-data", 9);
    expect_nothing_sent();
    assert_int_equal(stws_conn_buffered(F.c), 0);

    /* empty and 125-byte pings, a pong from the server (not answered) */
    push_frame(STWS_OP_PING, "", 0);
    push_frame(STWS_OP_PING, p125, sizeof p125);
    push_frame(STWS_OP_PONG, "unsolicited", 11);
    assert_int_equal(step(), STWS_OK);
    get_ev(&r, STWS_CONN_EVENT_PING);
    assert_int_equal(r.len, 0);
    expect_no_event();
    assert_int_equal(step(), STWS_OK);
    expect_client_frame(STWS_OP_PONG, "", 0);
    get_ev(&r, STWS_CONN_EVENT_PING);
    assert_int_equal(r.len, 125);
    assert_memory_equal(r.data, p125, 125);
    assert_int_equal(step(), STWS_OK);
    expect_client_frame(STWS_OP_PONG, p125, 125);
    get_ev(&r, STWS_CONN_EVENT_PONG);
    assert_int_equal(r.len, 11);
    assert_memory_equal(r.data, "unsolicited", 11);
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
    expect_nothing_sent();
}

/* ==== 4. closing ========================================================= */

static void client_close_then_server_reply_and_eof(void **state) {
    bytes *b;
    ev_rec r;
    (void)state;
    create();
    open_conn();
    assert_int_equal(stws_conn_close(F.c, 1000, "bye"), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_CLOSING);
    assert_true(stws_conn_wants(F.c) & STWS_POLL_WRITE);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "x", 1), STWS_ERR_STATE);
    assert_int_equal(stws_conn_close(F.c, 1000, "again"), STWS_OK); /* already closing: no-op */
    assert_int_equal(step(), STWS_OK);
    expect_client_close(1000, "bye");
    expect_nothing_sent();
    expect_no_event();
    /* §7.1.2: data may still arrive before the server's close */
    b = b_new();
    b_frame(b, 1, STWS_OP_TEXT, "late", 4);
    b_close(b, 1000, NULL);
    push_bytes(b);
    st_push_eof(&F.st);
    assert_int_equal(step(), STWS_OK);
    expect_message(STWS_OP_TEXT, "late", 4);
    expect_no_event(); /* CLOSE comes when the stream closes */
    assert_int_equal(F.st.close_calls, 0);
    assert_int_equal(step(), STWS_OK);
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 1);
    assert_int_equal(r.close_code, 1000);
    assert_int_equal(r.len, 0);
    expect_no_event();
    assert_int_equal(STATE(), STWS_CONN_CLOSED);
    assert_int_equal(F.st.close_calls, 1);
    expect_nothing_sent(); /* our close was sent once; nothing after it */
    assert_int_equal(stws_conn_wants(F.c), STWS_POLL_NONE);
    assert_int_equal(stws_conn_timeout(F.c), -1);
    assert_int_equal(stws_conn_close(F.c, 1000, NULL), STWS_ERR_STATE);
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
}

static void client_close_reply_without_eof_times_out_clean(void **state) {
    uint64_t t1;
    ev_rec r;
    (void)state;
    F.d.close_timeout_ms = 500;
    create();
    open_conn();
    F.now += 10;
    t1 = F.now;
    assert_int_equal(stws_conn_close(F.c, 1000, "bye"), STWS_OK);
    assert_int_equal(stws_conn_timeout(F.c), 0); /* the close frame waits to be written */
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(stws_conn_timeout(F.c), 500);
    expect_client_close(1000, "bye");
    push_close(1000, "ok");
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
    F.now = t1 + 499;
    assert_int_equal(stws_conn_timeout(F.c), 1);
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
    assert_int_equal(STATE(), STWS_CONN_CLOSING);
    assert_int_equal(F.st.close_calls, 0);
    F.now = t1 + 500;
    assert_int_equal(stws_conn_timeout(F.c), 0);
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_CLOSED);
    assert_int_equal(F.st.close_calls, 1);
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 1); /* both close frames were exchanged */
    assert_int_equal(r.close_code, 1000);
    assert_int_equal(r.len, 2);
    assert_memory_equal(r.data, "ok", 2);
    expect_no_event();
    expect_nothing_sent();
}

static void client_close_no_reply_times_out_abnormal(void **state) {
    uint64_t t1;
    ev_rec r;
    (void)state;
    F.d.close_timeout_ms = 500;
    create();
    open_conn();
    t1 = F.now;
    assert_int_equal(stws_conn_close(F.c, 1000, "bye"), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    expect_client_close(1000, "bye");
    F.now = t1 + 250;
    assert_int_equal(stws_conn_timeout(F.c), 250);
    F.now = t1 + 499;
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_CLOSING);
    expect_no_event();
    F.now = t1 + 500;
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_CLOSED);
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 0);
    assert_int_equal(r.close_code, STWS_CLOSE_ABNORMAL);
    expect_no_event();
    assert_int_equal(F.st.close_calls, 1);
    expect_nothing_sent();
}

static void server_close_is_echoed(void **state) {
    ev_rec r;
    (void)state;
    create();
    open_conn();
    push_close(1001, "going away");
    assert_int_equal(step(), STWS_OK);
    expect_no_event(); /* CLOSE comes when the stream closes */
    assert_int_equal(STATE(), STWS_CONN_CLOSING);
    assert_int_equal(stws_conn_timeout(F.c), 0); /* the echo waits to be written */
    assert_true(stws_conn_wants(F.c) & STWS_POLL_WRITE);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "x", 1), STWS_ERR_STATE);
    assert_int_equal(stws_conn_close(F.c, 1000, "x"), STWS_OK); /* no second close frame */
    assert_int_equal(step(), STWS_OK);
    expect_client_close(1001, NULL); /* §5.5.1: echo the status code */
    expect_nothing_sent();
    assert_int_equal(stws_conn_timeout(F.c), 1000); /* default close_timeout_ms */
    st_push_eof(&F.st);
    assert_int_equal(step(), STWS_OK);
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 1);
    assert_int_equal(r.close_code, 1001);
    assert_int_equal(r.len, 10);
    assert_memory_equal(r.data, "going away", 10);
    expect_no_event();
    assert_int_equal(STATE(), STWS_CONN_CLOSED);
    assert_int_equal(F.st.close_calls, 1);
    expect_nothing_sent();
}

/* Both ends close at once: each close answers the other, no echo is sent,
   and the connection close code is the peer's (§7.1.5). */
static void simultaneous_close_is_clean(void **state) {
    ev_rec r;
    (void)state;
    create();
    open_conn();
    assert_int_equal(stws_conn_close(F.c, 1000, "mine"), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    expect_client_close(1000, "mine");
    push_close(1001, "theirs");
    st_push_eof(&F.st);
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
    assert_int_equal(step(), STWS_OK);
    expect_nothing_sent(); /* our close already went: no second one */
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 1);
    assert_int_equal(r.close_code, 1001);
    assert_int_equal(r.len, 6);
    assert_memory_equal(r.data, "theirs", 6);
}

/* stws_conn_close() validates like stws_codec_close(); a refused close
   changes nothing.  code 0 sends an empty close frame. */
static void client_close_arguments(void **state) {
    char reason[125];
    ev_rec r;
    (void)state;
    memset(reason, 'r', sizeof reason);
    reason[124] = 0; /* 124 bytes: one too many */
    create();
    open_conn();
    assert_int_equal(stws_conn_close(F.c, 1005, NULL), STWS_ERR_INVALID_ARG); /* reserved */
    assert_int_equal(stws_conn_close(F.c, 1006, NULL), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_conn_close(F.c, 999, NULL), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_conn_close(F.c, 1000, reason), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_conn_close(F.c, 1000, "\xC3\x28"), STWS_ERR_INVALID_UTF8);
    assert_int_equal(STATE(), STWS_CONN_OPEN);
    assert_int_equal(stws_conn_buffered(F.c), 0);
    assert_int_equal(stws_conn_timeout(F.c), -1);
    reason[123] = 0; /* 123 bytes: the most that fits (§5.5) */
    assert_int_equal(stws_conn_close(F.c, 4000, reason), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    expect_client_close(4000, reason);
    push_close(0, NULL);
    st_push_eof(&F.st);
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
    assert_int_equal(step(), STWS_OK);
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 1);
    assert_int_equal(r.close_code, STWS_CLOSE_NO_STATUS); /* the peer's close had no code */

    /* code 0: an empty close frame */
    open_conn();
    assert_int_equal(stws_conn_close(F.c, 0, NULL), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    expect_client_close(0, NULL);
    push_close(0, NULL);
    st_push_eof(&F.st);
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
    assert_int_equal(step(), STWS_OK);
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 1);
    assert_int_equal(r.close_code, STWS_CLOSE_NO_STATUS);
}

/* A server close without a status code: CLOSE reports 1005, echo is empty. */
static void server_close_without_code(void **state) {
    ev_rec r;
    (void)state;
    create();
    open_conn();
    push_close(0, NULL);
    st_push_eof(&F.st);
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
    assert_int_equal(step(), STWS_OK);
    expect_client_close(0, NULL);
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 1);
    assert_int_equal(r.close_code, STWS_CLOSE_NO_STATUS);
    assert_int_equal(r.len, 0);
}

/* The server closed, our echo could never be written, the timer fires: the
   closing handshake did not complete, so the CLOSE must not be clean. */
static void server_close_echo_never_written_is_not_clean(void **state) {
    ev_rec r;
    (void)state;
    F.d.close_timeout_ms = 300;
    create();
    open_conn();
    F.st.send_mode = ST_SEND_BLOCK;
    push_close(1001, NULL);
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
    assert_int_equal(stws_conn_buffered(F.c), 2 + 4 + 2);
    F.now += 300;
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_CLOSED);
    expect_nothing_sent();
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    if (r.clean) fail_msg("CLOSE clean=1 although our close frame was never written (%zu bytes still queued)",
                          stws_conn_buffered(F.c));
    /* the peer's close frame did arrive: its code is the connection close
       code (§7.1.5; header: "peer's code, 1005 none, 1006 no close frame") */
    if (r.close_code != 1001) fail_msg("CLOSE close_code %d, expected the peer's 1001", r.close_code);
}

static void eof_while_open(void **state) {
    (void)state;
    create();
    open_conn();
    push_frame(STWS_OP_TEXT, "last", 4);
    st_push_eof(&F.st);
    assert_int_equal(step(), STWS_OK);
    expect_message(STWS_OP_TEXT, "last", 4);
    (void)step();
    expect_error_then_close(STWS_ERR_EOF, 0);
    assert_int_equal(F.st.close_calls, 1);
    expect_nothing_sent();
    assert_true(strlen(stws_conn_error_detail(F.c)) > 0);
    assert_int_equal(stws_conn_wants(F.c), STWS_POLL_NONE);
    assert_int_equal(stws_conn_timeout(F.c), -1);
}

static void recv_error_while_open(void **state) {
    (void)state;
    create();
    open_conn();
    st_push_error(&F.st, STWS_ERR_IO);
    (void)step();
    expect_error_then_close(STWS_ERR_IO, 0);
    assert_int_equal(F.st.close_calls, 1);
    expect_nothing_sent();
}

static void send_error_while_open(void **state) {
    (void)state;
    create();
    open_conn();
    F.st.send_mode = ST_SEND_FAIL;
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "x", 1), STWS_OK);
    (void)step();
    expect_error_then_close(STWS_ERR_IO, 0);
    assert_int_equal(F.st.close_calls, 1);
}

/* "any other negative value is reported as STWS_ERR_IO": transport errors that
   are not stws_result values (here mbedTLS net errors, since mbedTLS bio
   callbacks are documented to work as transport functions). */
static void foreign_transport_errors_reported_as_io(void **state) {
    static const struct {
        const char *name;
        int code;
        int on_send;
    } cases[] = {
        {"MBEDTLS_ERR_NET_RECV_FAILED (-0x004C) from recv", -0x004C, 0},
        {"MBEDTLS_ERR_NET_CONN_RESET (-0x0050) from recv", -0x0050, 0},
        {"MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY (-0x7880) from recv", -0x7880, 0},
        {"-1000 from recv", -1000, 0},
        {"MBEDTLS_ERR_NET_SEND_FAILED (-0x004E) from send", -0x004E, 1},
        {"MBEDTLS_ERR_NET_CONN_RESET (-0x0050) from send", -0x0050, 1},
    };
    char bad[1024] = "";
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ev_rec r;
        reset_conn("ws://example.com/ws");
        create();
        open_conn();
        if (cases[i].on_send) {
            F.st.send_mode = ST_SEND_FAIL;
            F.st.send_fail_code = cases[i].code;
            assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "x", 1), STWS_OK);
        } else {
            st_push_error(&F.st, cases[i].code);
        }
        (void)step();
        get_ev(&r, STWS_CONN_EVENT_ERROR);
        if (r.error != STWS_ERR_IO) {
            size_t l = strlen(bad);
            snprintf(bad + l, sizeof bad - l, "\n  %s: reported %d (%s)", cases[i].name, (int)r.error,
                     stws_result_string(r.error));
        }
        get_ev(&r, STWS_CONN_EVENT_CLOSE);
        assert_int_equal(r.clean, 0);
        assert_int_equal(r.close_code, STWS_CLOSE_ABNORMAL);
    }
    if (bad[0]) fail_msg("transport errors not reported as STWS_ERR_IO:%s", bad);
}

/* ==== 5. protocol failures =============================================== */

typedef struct pcase {
    const char *name;
    uint8_t frame[16];
    size_t n;
    stws_result err;
    int code;
    size_t max_frame, max_message;
} pcase;

static const pcase pcases[] = {
    {"masked server frame", {0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1}, 11,
     STWS_ERR_MASKED_FRAME, 1002, 0, 0},
    {"invalid UTF-8 text", {0x81, 0x02, 0xC3, 0x28}, 4, STWS_ERR_INVALID_UTF8, 1007, 0, 0},
    {"truncated UTF-8 at message end", {0x81, 0x02, 'a', 0xE2}, 4, STWS_ERR_INVALID_UTF8, 1007, 0, 0},
    {"reserved opcode 3", {0x83, 0x00}, 2, STWS_ERR_RESERVED_OPCODE, 1002, 0, 0},
    {"reserved opcode 0xB", {0x8B, 0x00}, 2, STWS_ERR_RESERVED_OPCODE, 1002, 0, 0},
    {"RSV1 without extension", {0xC1, 0x01, 'x'}, 3, STWS_ERR_RESERVED_BITS, 1002, 0, 0},
    {"continuation without message", {0x80, 0x01, 'x'}, 3, STWS_ERR_UNEXPECTED_CONTINUATION, 1002, 0, 0},
    {"new message inside a fragmented one", {0x01, 0x01, 'a', 0x81, 0x01, 'b'}, 6,
     STWS_ERR_EXPECTED_CONTINUATION, 1002, 0, 0},
    {"fragmented ping", {0x09, 0x00}, 2, STWS_ERR_CONTROL_FRAGMENTED, 1002, 0, 0},
    {"ping longer than 125", {0x89, 0x7E, 0x00, 0x7E}, 4, STWS_ERR_CONTROL_TOO_LONG, 1002, 0, 0},
    {"64-bit length with MSB set", {0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 1}, 10, STWS_ERR_BAD_LENGTH, 1002, 0, 0},
    {"close with 1-byte payload", {0x88, 0x01, 0x03}, 3, STWS_ERR_BAD_CLOSE_PAYLOAD, 1002, 0, 0},
    {"close code 1005 on the wire", {0x88, 0x02, 0x03, 0xED}, 4, STWS_ERR_BAD_CLOSE_CODE, 1002, 0, 0},
    {"close code 999", {0x88, 0x02, 0x03, 0xE7}, 4, STWS_ERR_BAD_CLOSE_CODE, 1002, 0, 0},
    {"close reason not UTF-8", {0x88, 0x04, 0x03, 0xE8, 0xC3, 0x28}, 6, STWS_ERR_INVALID_UTF8, 1007, 0, 0},
    {"frame over max_frame_size", {0x82, 0x7E, 0x01, 0x00}, 4, STWS_ERR_FRAME_TOO_BIG, 1009, 100, 0},
    {"message over max_message_size", {0x80, 0x40}, 2, STWS_ERR_MESSAGE_TOO_BIG, 1009, 0, 100},
};

static void run_pcase(const pcase *pc, int end_with_eof) {
    static uint8_t body[64];
    uint8_t code[2];
    bytes *b;
    ev_rec r;
    uint64_t t1;
    print_message("case: %s (%s)\n", pc->name, end_with_eof ? "EOF" : "close timer");
    reset_conn("ws://example.com/ws");
    F.d.close_timeout_ms = 700;
    F.d.max_frame_size = pc->max_frame;
    F.d.max_message_size = pc->max_message;
    create();
    open_conn();
    b = b_new();
    b_frame(b, 1, STWS_OP_TEXT, "before", 6);
    if (pc->max_message) { /* 60 + 64 bytes: the second fragment overflows */
        memset(body, 'z', sizeof body);
        b_frame(b, 0, STWS_OP_BINARY, body, 60);
        b_put(b, pc->frame, pc->n);
        b_put(b, body, 64);
    } else {
        b_put(b, pc->frame, pc->n);
    }
    b_frame(b, 1, STWS_OP_TEXT, "after", 5);
    b_frame(b, 1, STWS_OP_PING, "zz", 2);
    push_bytes(b);
    push_frame(STWS_OP_TEXT, "later", 5);
    t1 = F.now;
    assert_int_equal(step(), STWS_OK);
    expect_message(STWS_OP_TEXT, "before", 6);
    get_ev(&r, STWS_CONN_EVENT_ERROR);
    if (r.error != pc->err)
        fail_msg("%s: expected %s, got %d %s", pc->name, stws_result_string(pc->err), (int)r.error,
                 stws_result_string(r.error));
    assert_int_equal(r.close_code, pc->code);
    expect_no_event(); /* nothing after the bad frame */
    assert_int_equal(STATE(), STWS_CONN_CLOSING);
    assert_non_null(strstr(stws_conn_error_detail(F.c), stws_result_string(pc->err)));
    assert_int_equal(stws_conn_buffered(F.c), 2 + 4 + 2);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "x", 1), STWS_ERR_STATE);
    assert_int_equal(step(), STWS_OK); /* writes the close, reads "later" */
    code[0] = (uint8_t)(pc->code >> 8);
    code[1] = (uint8_t)pc->code;
    expect_client_frame(STWS_OP_CLOSE, code, 2);
    expect_nothing_sent(); /* no pong for the ping after the bad frame */
    expect_no_event();
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
    assert_int_equal(st_unread_chunks(&F.st), 0);
    expect_nothing_sent();
    if (end_with_eof) {
        st_push_eof(&F.st);
        assert_int_equal(step(), STWS_OK);
    } else {
        F.now = t1 + 699;
        assert_int_equal(step(), STWS_OK);
        assert_int_equal(STATE(), STWS_CONN_CLOSING);
        expect_no_event();
        F.now = t1 + 700;
        assert_int_equal(step(), STWS_OK);
    }
    assert_int_equal(STATE(), STWS_CONN_CLOSED);
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 0);
    expect_no_event();
    assert_int_equal(F.st.close_calls, 1);
    expect_nothing_sent();
}

static void protocol_failures_fail_the_connection(void **state) {
    size_t i;
    (void)state;
    for (i = 0; i < sizeof pcases / sizeof pcases[0]; i++) run_pcase(&pcases[i], 1);
    run_pcase(&pcases[0], 0);
    run_pcase(&pcases[1], 0);
}

/* Header: "close_code: CLOSE: peer's code, 1005 none, 1006 no close frame";
   RFC 6455 §7.1.5: no close frame received -> 1006.  After we failed the
   connection the server's close frame (if any) is ignored, and here none
   comes at all. */
static void close_code_after_failure_is_1006(void **state) {
    static const uint8_t masked[] = {0x81, 0x81, 1, 2, 3, 4, 'x' ^ 1};
    char bad[256] = "";
    int variant;
    (void)state;
    for (variant = 0; variant < 2; variant++) {
        ev_rec r;
        reset_conn("ws://example.com/ws");
        F.d.close_timeout_ms = 100;
        create();
        open_conn();
        st_push(&F.st, masked, sizeof masked);
        assert_int_equal(step(), STWS_OK);
        get_ev(&r, STWS_CONN_EVENT_ERROR);
        assert_int_equal(r.close_code, 1002);
        assert_int_equal(step(), STWS_OK);
        expect_client_close(1002, NULL);
        if (variant == 0) st_push_eof(&F.st);
        else F.now += 100;
        assert_int_equal(step(), STWS_OK);
        get_ev(&r, STWS_CONN_EVENT_CLOSE);
        assert_int_equal(r.clean, 0);
        if (r.close_code != STWS_CLOSE_ABNORMAL) {
            size_t l = strlen(bad);
            snprintf(bad + l, sizeof bad - l, "\n  after %s: close_code %d", variant ? "close timer" : "EOF",
                     r.close_code);
        }
    }
    if (bad[0]) fail_msg("CLOSE after a protocol failure should report 1006:%s", bad);
}

/* Out of memory while reassembling a message: ERROR STWS_ERR_NOMEM, a close
   frame with 1011 (1006 must never be sent, §7.4.1), CLOSE not clean. */
static void out_of_memory_while_reassembling(void **state) {
    bytes *b;
    ev_rec r;
    (void)state;
    create();
    open_conn();
    b = b_new();
    b_frame(b, 1, STWS_OP_BINARY, "0123456789", 10);
    st_push(&F.st, b->p, 5); /* a partial frame must be copied */
    F.fail_at = F.attempts + 1;
    assert_int_equal(step(), STWS_OK);
    get_ev(&r, STWS_CONN_EVENT_ERROR);
    assert_int_equal(r.error, STWS_ERR_NOMEM);
    assert_int_equal(r.close_code, 1011);
    expect_no_event();
    F.fail_at = 0;
    assert_int_equal(step(), STWS_OK);
    expect_client_close(1011, NULL);
    st_push(&F.st, b->p + 5, b->n - 5);
    st_push_eof(&F.st);
    assert_int_equal(step(), STWS_OK); /* the rest of the frame: ignored */
    expect_no_event();
    assert_int_equal(step(), STWS_OK); /* EOF */
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 0);
    expect_no_event();
    expect_nothing_sent();
}

/* ==== 6. timeouts ======================================================== */

static void connect_timeout_exact(void **state) {
    ev_rec r;
    stws_result res;
    (void)state;
    F.d.connect_timeout_ms = 3000;
    F.st.open_wants = 1000000;
    create();
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    assert_int_equal(stws_conn_timeout(F.c), 3000);
    assert_int_equal(step(), STWS_OK);
    F.now = T0 + 1000;
    assert_int_equal(stws_conn_timeout(F.c), 2000);
    assert_int_equal(step(), STWS_OK);
    F.now = T0 + 2999;
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_CONNECTING);
    assert_int_equal(stws_conn_timeout(F.c), 1);
    expect_no_event();
    assert_int_equal(F.st.close_calls, 0);
    F.now = T0 + 3000;
    assert_int_equal(stws_conn_timeout(F.c), 0);
    res = step();
    assert_int_equal(res, STWS_ERR_TIMEOUT);
    assert_int_equal(STATE(), STWS_CONN_CLOSED);
    assert_int_equal(stws_conn_timeout(F.c), 0); /* events pending */
    get_ev(&r, STWS_CONN_EVENT_ERROR);
    assert_int_equal(r.error, STWS_ERR_TIMEOUT);
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 0);
    assert_int_equal(r.close_code, STWS_CLOSE_ABNORMAL);
    expect_no_event();
    assert_int_equal(stws_conn_timeout(F.c), -1);
    assert_int_equal(stws_conn_wants(F.c), STWS_POLL_NONE);
    assert_int_equal(F.st.close_calls, 1);
    assert_int_equal(F.st.sent_len, 0);
    assert_non_null(strstr(stws_conn_error_detail(F.c), stws_result_string(STWS_ERR_TIMEOUT)));
}

/* connect_timeout_ms covers connect + upgrade, counted from connect(). */
static void handshake_timeout_exact(void **state) {
    ev_rec r;
    (void)state;
    F.d.connect_timeout_ms = 3000;
    F.st.open_wants = 2;
    create();
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    F.now = T0 + 1000;
    assert_int_equal(step(), STWS_OK);
    F.now = T0 + 2000;
    assert_int_equal(step(), STWS_OK); /* open succeeds, request sent */
    assert_int_equal(STATE(), STWS_CONN_HANDSHAKE);
    take_request();
    assert_int_equal(stws_conn_timeout(F.c), 1000);
    push_str("HTTP/1.1 101 Switching Protocols\r\n"); /* and nothing more */
    F.now = T0 + 2999;
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_HANDSHAKE);
    expect_no_event();
    F.now = T0 + 3000;
    assert_int_equal(step(), STWS_ERR_TIMEOUT);
    get_ev(&r, STWS_CONN_EVENT_ERROR);
    assert_int_equal(r.error, STWS_ERR_TIMEOUT);
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 0);
    assert_int_equal(r.close_code, STWS_CLOSE_ABNORMAL);
    expect_no_event();
    assert_int_equal(STATE(), STWS_CONN_CLOSED);
    assert_int_equal(F.st.close_calls, 1);
    expect_nothing_sent();
}

/* Part of the upgrade response has arrived, the rest has not: there is
   nothing to do until the socket is readable or the connect timer fires, so
   stws_conn_timeout() must give the time to the deadline, not 0 (which makes
   a stws_conn_poll() loop spin without sleeping). */
static void timeout_during_partial_upgrade_response(void **state) {
    char bad[256] = "";
    int t;
    (void)state;
    F.d.connect_timeout_ms = 3000;
    create();
    connect_to_handshake();
    assert_int_equal(stws_conn_timeout(F.c), 3000);
    push_str("HTTP/1.1 101 Switching Protocols\r\n");
    F.now = T0 + 1000;
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_HANDSHAKE);
    expect_no_event();
    assert_int_equal(step(), STWS_OK); /* really nothing to do */
    assert_int_equal(STATE(), STWS_CONN_HANDSHAKE);
    expect_no_event();
    t = stws_conn_timeout(F.c);
    if (t != 2000) {
        size_t l = strlen(bad);
        snprintf(bad + l, sizeof bad - l, "\n  %d while waiting for the rest of the upgrade response "
                 "(expected 2000, the connect deadline)", t);
    }
    /* a refused upgrade leaves its bytes in the buffer: CLOSED, nothing to do */
    reset_conn("ws://example.com/ws");
    create();
    connect_to_handshake();
    push_str("HTTP/1.1 403 Forbidden\r\n\r\n");
    (void)step();
    expect_error_then_close(STWS_ERR_HANDSHAKE_STATUS, 0);
    t = stws_conn_timeout(F.c);
    if (t != -1) {
        size_t l = strlen(bad);
        snprintf(bad + l, sizeof bad - l, "\n  %d after a refused upgrade, CLOSED with no events (expected -1)", t);
    }
    if (bad[0]) fail_msg("stws_conn_timeout():%s", bad);
}

static void timeout_reports_remaining_pending_and_none(void **state) {
    (void)state;
    F.d.connect_timeout_ms = 5000;
    F.d.close_timeout_ms = 800;
    create();
    assert_int_equal(stws_conn_timeout(F.c), -1); /* IDLE */
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    F.now = T0 + 1234;
    assert_int_equal(stws_conn_timeout(F.c), 5000 - 1234);
    assert_int_equal(step(), STWS_OK);
    take_request();
    push_bytes(response_101(""));
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(stws_conn_timeout(F.c), 0); /* OPEN pending */
    {
        ev_rec r;
        get_ev(&r, STWS_CONN_EVENT_OPEN);
    }
    assert_int_equal(stws_conn_timeout(F.c), -1); /* OPEN, idle, no timer */
    F.now += 100000;
    assert_int_equal(stws_conn_timeout(F.c), -1);
    {
        bytes *b = b_new();
        b_frame(b, 1, STWS_OP_TEXT, "a", 1);
        b_frame(b, 1, STWS_OP_TEXT, "b", 1);
        push_bytes(b); /* one chunk: one read */
    }
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(stws_conn_timeout(F.c), 0); /* unparsed frames */
    expect_message(STWS_OP_TEXT, "a", 1);
    assert_int_equal(stws_conn_timeout(F.c), 0);
    expect_message(STWS_OP_TEXT, "b", 1);
    assert_int_equal(stws_conn_timeout(F.c), -1);
    assert_int_equal(stws_conn_close(F.c, 1000, NULL), STWS_OK);
    assert_int_equal(stws_conn_timeout(F.c), 0); /* the close frame waits to be written */
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(stws_conn_timeout(F.c), 800);
    F.now += 250;
    assert_int_equal(stws_conn_timeout(F.c), 550);
    F.now += 550;
    assert_int_equal(stws_conn_timeout(F.c), 0);
    F.now += 5;
    assert_int_equal(stws_conn_timeout(F.c), 0);
}

/* ==== 7. handshake refusals ============================================= */

enum { R_FIXED, R_101_EXTRA, R_101_WRONG_ACCEPT, R_101_NO_UPGRADE };
typedef struct rcase {
    const char *name;
    int kind;
    const char *text; /* R_FIXED: the whole response; R_101_EXTRA: extra header lines */
    stws_result err;
    int status;
    const char *detail_has;
} rcase;

static const rcase rcases[] = {
    {"200", R_FIXED, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", STWS_ERR_HANDSHAKE_STATUS, 200, "200"},
    {"302", R_FIXED,
     "HTTP/1.1 302 Found\r\nLocation: https://elsewhere.example/ws?x=1\r\nContent-Length: 0\r\n\r\n",
     STWS_ERR_HANDSHAKE_STATUS, 302, "https://elsewhere.example/ws?x=1"},
    {"307 with spaces around Location", R_FIXED,
     "HTTP/1.1 307 Temporary Redirect\r\nLocation:   ws://other.example:81/a  \r\n\r\n",
     STWS_ERR_HANDSHAKE_STATUS, 307, "Location: ws://other.example:81/a"},
    {"401", R_FIXED, "HTTP/1.1 401 Unauthorized\r\n\r\n", STWS_ERR_HANDSHAKE_STATUS, 401, "401"},
    {"HTTP/1.0", R_FIXED, "HTTP/1.0 101 Switching Protocols\r\n\r\n", STWS_ERR_HANDSHAKE_MALFORMED, 0, NULL},
    {"wrong accept", R_101_WRONG_ACCEPT, "", STWS_ERR_HANDSHAKE_ACCEPT, 101, NULL},
    {"no Upgrade", R_101_NO_UPGRADE, "", STWS_ERR_HANDSHAKE_UPGRADE, 101, NULL},
    {"unrequested subprotocol", R_101_EXTRA, "Sec-WebSocket-Protocol: chat\r\n",
     STWS_ERR_HANDSHAKE_SUBPROTOCOL, 101, NULL},
    {"unrequested extension", R_101_EXTRA, "Sec-WebSocket-Extensions: permessage-deflate\r\n",
     STWS_ERR_HANDSHAKE_EXTENSION, 101, NULL},
};

static void handshake_refusals(void **state) {
    size_t i;
    (void)state;
    for (i = 0; i < sizeof rcases / sizeof rcases[0]; i++) {
        const rcase *rc = &rcases[i];
        bytes *b;
        print_message("case: %s\n", rc->name);
        reset_conn("ws://example.com/ws");
        create();
        connect_to_handshake();
        if (rc->kind == R_FIXED) {
            b = b_new();
            b_str(b, rc->text);
        } else if (rc->kind == R_101_EXTRA) {
            b = response_101(rc->text);
        } else if (rc->kind == R_101_WRONG_ACCEPT) {
            char acc[STWS_HANDSHAKE_ACCEPT_SIZE];
            assert_int_equal(stws_handshake_accept("dGhlIHNhbXBsZSBub25jZQ==", acc), STWS_OK);
            b = b_new();
            b_str(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: ");
            b_str(b, acc);
            b_str(b, "\r\n\r\n");
        } else {
            char acc[STWS_HANDSHAKE_ACCEPT_SIZE];
            assert_int_equal(stws_handshake_accept(F.key, acc), STWS_OK);
            b = b_new();
            b_str(b, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
            b_str(b, acc);
            b_str(b, "\r\n\r\n");
        }
        b_frame(b, 1, STWS_OP_TEXT, "never", 5); /* must not be delivered */
        push_bytes(b);
        (void)step();
        expect_error_then_close(rc->err, 0); /* no OPEN before */
        assert_int_equal(stws_conn_http_status(F.c), rc->status);
        if (rc->detail_has && !strstr(stws_conn_error_detail(F.c), rc->detail_has))
            fail_msg("%s: error detail \"%s\" lacks \"%s\"", rc->name, stws_conn_error_detail(F.c),
                     rc->detail_has);
        assert_int_equal(F.st.close_calls, 1);
        expect_nothing_sent();
        assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "x", 1), STWS_ERR_STATE);
    }
}

/* recv_buffer_size is also the handshake limit: a 1024-byte response fits a
   1024-byte buffer, 1025 bytes fail, in one chunk or in many. */
static void handshake_response_size_limit(void **state) {
    int split;
    (void)state;
    for (split = 0; split < 3; split++) { /* one chunk, 100-byte chunks, 1 byte per recv */
        size_t total;
        for (total = 1024; total <= 1025; total++) {
            bytes *b;
            char acc[STWS_HANDSHAKE_ACCEPT_SIZE];
            size_t base, pad, i;
            ev_rec r;
            reset_conn("ws://example.com/ws");
            F.d.recv_buffer_size = 1024;
            create();
            connect_to_handshake();
            assert_int_equal(stws_handshake_accept(F.key, acc), STWS_OK);
            b = b_new();
            b_str(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: ");
            b_str(b, acc);
            b_str(b, "\r\nX-Pad: ");
            base = b->n + 4; /* + "\r\n\r\n" */
            assert_true(total > base);
            pad = total - base;
            for (i = 0; i < pad; i++) b_byte(b, 'p');
            b_str(b, "\r\n\r\n");
            assert_int_equal(b->n, total);
            if (split == 2) {
                F.st.recv_max = 1;
                push_bytes(b);
                (void)step();
            } else if (split == 1) {
                for (i = 0; i < b->n; i += 100) {
                    st_push(&F.st, b->p + i, b->n - i < 100 ? b->n - i : 100);
                    st_push_block(&F.st);
                }
                for (i = 0; i < 30 && STATE() == STWS_CONN_HANDSHAKE; i++) (void)step();
            } else {
                push_bytes(b);
                (void)step();
            }
            if (total == 1024) {
                assert_int_equal(STATE(), STWS_CONN_OPEN);
                get_ev(&r, STWS_CONN_EVENT_OPEN);
            } else {
                expect_error_then_close(STWS_ERR_HANDSHAKE_TOO_BIG, 0);
            }
        }
    }
}

static void handshake_eof_and_open_failure(void **state) {
    ev_rec r;
    (void)state;
    create();
    connect_to_handshake();
    push_str("HTTP/1.1 101 Switching");
    st_push_eof(&F.st);
    (void)step();
    expect_error_then_close(STWS_ERR_EOF, 0);
    assert_int_equal(F.st.close_calls, 1);

    reset_conn("ws://example.com/ws");
    F.st.open_wants = 2;
    F.st.open_result = STWS_ERR_CONNECT;
    create();
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
    assert_int_equal(step(), STWS_ERR_CONNECT);
    expect_error_then_close(STWS_ERR_CONNECT, 0);
    assert_int_equal(F.st.sent_len, 0);
    assert_int_equal(F.st.open_calls, 3);

    /* abort before OPEN with stws_conn_close: CLOSE 1006, no ERROR */
    reset_conn("ws://example.com/ws");
    F.st.open_wants = 5;
    create();
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(stws_conn_close(F.c, 1000, NULL), STWS_OK);
    assert_int_equal(STATE(), STWS_CONN_CLOSED);
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 0);
    assert_int_equal(r.close_code, STWS_CLOSE_ABNORMAL);
    expect_no_event();
    assert_int_equal(F.st.close_calls, 1);
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(F.st.open_calls, 1);
}

/* ==== 8. reconnect and allocations ====================================== */

static void send_and_receive_round(const uint8_t *msg, size_t n) {
    bytes *b = &F.bufs[BUF_SCRATCH]; /* reused scratch, no growth after the first round */
    ev_rec r;
    b->n = 0;
    b_frame(b, 1, STWS_OP_BINARY, msg, n);
    /* whole in one recv: delivered without a copy */
    st_push(&F.st, b->p, b->n);
    /* the same split in two recvs: reassembled in the message buffer */
    st_push(&F.st, b->p, b->n / 2);
    st_push(&F.st, b->p + b->n / 2, b->n - b->n / 2);
    b->n = 0;
    b_frame(b, 1, STWS_OP_PING, "hb", 2);
    st_push(&F.st, b->p, b->n);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_BINARY, msg, n), STWS_OK);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "text", 4), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    expect_client_frame(STWS_OP_BINARY, msg, n);
    expect_client_frame(STWS_OP_TEXT, "text", 4);
    expect_message(STWS_OP_BINARY, msg, n);
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
    assert_int_equal(step(), STWS_OK);
    expect_message(STWS_OP_BINARY, msg, n);
    assert_int_equal(step(), STWS_OK);
    get_ev(&r, STWS_CONN_EVENT_PING);
    assert_int_equal(step(), STWS_OK);
    expect_client_frame(STWS_OP_PONG, "hb", 2);
    expect_nothing_sent();
}

static void steady_state_messaging_allocates_nothing(void **state) {
    uint8_t msg[100];
    long a0, n_connect, n_send, n_whole, n_split;
    size_t b0, b_send, b_split;
    bytes *b;
    int i;
    (void)state;
    for (i = 0; i < 100; i++) msg[i] = (uint8_t)(i * 3);
    create();
    a0 = F.allocs;
    open_conn();
    n_connect = F.allocs - a0;
    assert_int_equal(n_connect, 0); /* request and receive buffers exist since create */

    a0 = F.allocs;
    b0 = F.bytes_total;
    assert_int_equal(stws_conn_send(F.c, STWS_OP_BINARY, msg, 100), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    expect_client_frame(STWS_OP_BINARY, msg, 100);
    n_send = F.allocs - a0;
    b_send = F.bytes_total - b0;

    b = b_new();
    b_frame(b, 1, STWS_OP_BINARY, msg, 100);
    a0 = F.allocs;
    push_bytes(b);
    assert_int_equal(step(), STWS_OK);
    expect_message(STWS_OP_BINARY, msg, 100);
    n_whole = F.allocs - a0;
    assert_int_equal(n_whole, 0); /* a whole frame in one read: a view, no copy */

    a0 = F.allocs;
    b0 = F.bytes_total;
    st_push(&F.st, b->p, 50);
    st_push(&F.st, b->p + 50, b->n - 50);
    assert_int_equal(step(), STWS_OK);
    expect_no_event();
    assert_int_equal(step(), STWS_OK);
    expect_message(STWS_OP_BINARY, msg, 100);
    n_split = F.allocs - a0;
    b_split = F.bytes_total - b0;

    send_and_receive_round(msg, 100); /* warm-up of the exact round below */
    a0 = F.allocs;
    b0 = F.bytes_total;
    for (i = 0; i < 100; i++) send_and_receive_round(msg, 100);
    assert_int_equal(F.allocs - a0, 0);
    assert_int_equal(F.bytes_total - b0, 0);
    print_message("allocations: connect+handshake %ld; first 100-byte send %ld (%zu bytes); "
                  "first whole 100-byte receive %ld; first split 100-byte receive %ld (%zu bytes); "
                  "steady state 0 per message\n",
                  n_connect, n_send, b_send, n_whole, n_split, b_split);
}

static void reconnect_reuses_everything(void **state) {
    char key1[32];
    char *req1;
    uint8_t msg[100];
    size_t req1_len;
    long a0;
    size_t b0;
    int i;
    (void)state;
    for (i = 0; i < 100; i++) msg[i] = (uint8_t)(200 - i);
    create();
    open_conn();
    send_and_receive_round(msg, 100); /* sizes seen before */
    close_clean();
    strcpy(key1, F.key);
    req1_len = F.req_len;
    req1 = (char *)malloc(req1_len);
    assert_non_null(req1);
    memcpy(req1, F.st.sent + F.req_off, req1_len);
    assert_int_equal(F.st.open_calls, 1);
    assert_int_equal(F.st.close_calls, 1);

    a0 = F.allocs;
    b0 = F.bytes_total;
    open_conn(); /* connect again after CLOSED */
    assert_int_equal(F.st.open_calls, 2);
    if (strcmp(key1, F.key) == 0) {
        free(req1);
        fail_msg("the second handshake reused the key %s", key1);
    }
    /* the same request but for the key */
    assert_int_equal(F.req_len, req1_len);
    {
        const char *k = find(req1, req1_len, key1);
        size_t off;
        assert_non_null(k);
        off = (size_t)(k - req1);
        memcpy(req1 + off, F.key, 24);
        assert_memory_equal(F.st.sent + F.req_off, req1, req1_len);
    }
    free(req1);
    assert_string_equal(stws_conn_error_detail(F.c), "");
    for (i = 0; i < 100; i++) send_and_receive_round(msg, 100);
    if (F.allocs != a0)
        fail_msg("second connect + handshake + 100 rounds made %ld allocations (%zu bytes)", F.allocs - a0,
                 F.bytes_total - b0);

    /* and after a failure: the error state is cleared */
    st_push_eof(&F.st);
    (void)step();
    expect_error_then_close(STWS_ERR_EOF, 0);
    assert_true(strlen(stws_conn_error_detail(F.c)) > 0);
    open_conn();
    assert_string_equal(stws_conn_error_detail(F.c), "");
    send_and_receive_round(msg, 100);
    assert_int_equal(F.allocs, a0);
    assert_int_equal(F.st.open_calls, 3);
    assert_int_equal(F.st.close_calls, 2);
}

/* Header (stws_conn_create): "Allocations, all made here: the object, the URL
   copy, the request buffer, the receive buffer, the codec, the random
   generator (unless given), and each built-in transport ...; with a user
   transport and a random hook that is 5."  So at most 5, or 6 with the
   default random generator.  (The header first documented 3 / 4: "the object,
   the receive buffer, the codec, the random generator (unless given)".)
   Measured on x86-64, mbedTLS 2.28, URL "ws://example.com/ws": 5 allocations,
   18237 bytes with the hook (object 1272, URL copy 20, request buffer 153,
   receive buffer 16384, codec 408); 6 allocations, 56589 bytes with the
   default random generator (its CTR-DRBG + entropy context is 38352 bytes).
   Sizes shift with the struct layout; the counts are what the header
   documents.  The test prints its measurement. */
static void create_allocations_match_doc(void **state) {
    long with_hook, without_hook;
    size_t bytes_hook, bytes_nohook;
    stws_conn *c2;
    (void)state;
    F.allocs = 0;
    F.bytes_total = 0;
    create();
    with_hook = F.allocs;
    bytes_hook = F.bytes_total;
    assert_true(bytes_hook >= 16 * 1024); /* the default receive buffer is made up front */
    F.d.random.fill = NULL;
    F.d.random.user_data = NULL;
    F.allocs = 0;
    F.bytes_total = 0;
    c2 = stws_conn_create(&F.d);
    assert_non_null(c2);
    without_hook = F.allocs;
    bytes_nohook = F.bytes_total;
    stws_conn_destroy(c2);
    print_message("stws_conn_create with a user transport: %ld allocations, %zu bytes (random hook); "
                  "%ld allocations, %zu bytes (default random)\n",
                  with_hook, bytes_hook, without_hook, bytes_nohook);
    if (with_hook > 5 || without_hook > 6)
        fail_msg("stws_conn_create made %ld (random hook) / %ld (default random) allocations; the header "
                 "documents 5 / 6", with_hook, without_hook);
    /* everything is made up front: the receive buffer and the request */
    assert_true(bytes_hook >= 16 * 1024 + sizeof "GET /ws HTTP/1.1\r\n");
}

/* Every allocation failure in create returns NULL and leaks nothing. */
static void create_allocation_failures_leak_nothing(void **state) {
    long n, k;
    (void)state;
    create();
    n = F.attempts;
    stws_conn_destroy(F.c);
    F.c = NULL;
    assert_true(n > 0);
    for (k = 1; k <= n; k++) {
        stws_conn *c;
        F.attempts = 0;
        F.fail_at = k;
        c = stws_conn_create(&F.d);
        if (c) {
            stws_conn_destroy(c);
            fail_msg("create succeeded with allocation %ld of %ld failing", k, n);
        }
        assert_int_equal(F.live, 0);
    }
    F.fail_at = 0;
    create();
}

/* ==== 9. push delivery =================================================== */

static int run_mixed_script(int push, ev_rec *out, bytes *wire) {
    static const char two[] = "two-two";
    bytes *b;
    ev_rec r;
    int n = 0, i;
    reset_conn("ws://example.com/ws");
    if (push) {
        F.d.on_event = on_event_cb;
        F.d.user_data = &F;
    }
    create();
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    assert_int_equal(F.npushed, 0);
#define PUMP()                                                               \
    do {                                                                     \
        assert_int_equal(step(), STWS_OK);                                   \
        if (!push) {                                                         \
            while (next_ev(&r)) out[n++] = r;                                \
        } else {                                                             \
            assert_int_equal(next_ev(&r), 0); /* all delivered in the step */ \
        }                                                                    \
    } while (0)
    PUMP();
    take_request();
    b = response_101("");
    b_frame(b, 1, STWS_OP_TEXT, "one", 3);
    b_frame(b, 1, STWS_OP_PING, "p1", 2);
    push_bytes(b);
    PUMP();
    b = b_new();
    b_frame(b, 1, STWS_OP_BINARY, two, 7);
    st_push_split(&F.st, b->p, b->n, 1);
    for (i = 0; i < 12; i++) PUMP();
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "mine", 4), STWS_OK);
    b = b_new();
    b_frame(b, 1, STWS_OP_PONG, "", 0);
    b_close(b, 1000, "done");
    push_bytes(b);
    st_push_eof(&F.st);
    for (i = 0; i < 4; i++) PUMP();
#undef PUMP
    assert_int_equal(STATE(), STWS_CONN_CLOSED);
    if (push) {
        n = F.npushed;
        memcpy(out, F.pushed, (size_t)n * sizeof *out);
        assert_int_equal(F.outside_calls, 0);
        assert_ptr_equal(F.cb_conn, F.c);
    }
    wire->n = 0;
    b_put(wire, F.st.sent, F.st.sent_len);
    return n;
}

static void on_event_push_matches_pull(void **state) {
    static ev_rec pulled[MAX_PUSHED], pushed[MAX_PUSHED];
    static const struct {
        stws_conn_event_type type;
        const char *data;
        int close_code, clean;
    } want[] = {
        {STWS_CONN_EVENT_OPEN, "", 0, 0},       {STWS_CONN_EVENT_MESSAGE, "one", 0, 0},
        {STWS_CONN_EVENT_PING, "p1", 0, 0},     {STWS_CONN_EVENT_MESSAGE, "two-two", 0, 0},
        {STWS_CONN_EVENT_PONG, "", 0, 0},       {STWS_CONN_EVENT_CLOSE, "done", 1000, 1},
    };
    bytes *wire_pull, *wire_push;
    int n_pull, n_push, i;
    (void)state;
    wire_pull = &F.bufs[BUF_WIRE_A];
    wire_push = &F.bufs[BUF_WIRE_B];
    n_pull = run_mixed_script(0, pulled, wire_pull);
    n_push = run_mixed_script(1, pushed, wire_push);
    assert_int_equal(n_pull, (int)(sizeof want / sizeof want[0]));
    assert_int_equal(n_push, n_pull);
    for (i = 0; i < n_pull; i++) {
        if (pulled[i].type != want[i].type || pushed[i].type != want[i].type)
            fail_msg("event %d: pulled %s, pushed %s, want %s", i, ev_name(pulled[i].type),
                     ev_name(pushed[i].type), ev_name(want[i].type));
        assert_int_equal(pulled[i].len, strlen(want[i].data));
        if (pulled[i].len) assert_memory_equal(pulled[i].data, want[i].data, pulled[i].len);
        assert_int_equal(pulled[i].close_code, want[i].close_code);
        assert_int_equal(pulled[i].clean, want[i].clean);
        assert_int_equal(pushed[i].opcode, pulled[i].opcode);
        assert_int_equal(pushed[i].len, pulled[i].len);
        assert_memory_equal(pushed[i].data, pulled[i].data, sizeof pushed[i].data);
        assert_int_equal(pushed[i].close_code, pulled[i].close_code);
        assert_int_equal(pushed[i].clean, pulled[i].clean);
        assert_int_equal(pushed[i].error, pulled[i].error);
    }
    /* the same bytes on the wire, byte for byte (same random stream) */
    assert_int_equal(wire_push->n, wire_pull->n);
    assert_memory_equal(wire_push->p, wire_pull->p, wire_pull->n);
}

/* Events raised outside the pump (close before OPEN) wait for the next step. */
static void on_event_only_inside_step(void **state) {
    (void)state;
    F.d.on_event = on_event_cb;
    F.d.user_data = &F;
    F.st.open_wants = 3;
    create();
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(stws_conn_close(F.c, 1000, NULL), STWS_OK);
    assert_int_equal(F.npushed, 0);
    assert_int_equal(stws_conn_timeout(F.c), 0);
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(F.npushed, 1);
    assert_int_equal(F.pushed[0].type, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(F.pushed[0].close_code, STWS_CLOSE_ABNORMAL);
    assert_int_equal(F.pushed[0].clean, 0);
    assert_int_equal(F.outside_calls, 0);
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(F.npushed, 1);

    /* a full open + message in push mode; send() and close() never call back */
    F.npushed = 0;
    F.st.open_wants = 0;
    F.req_off = F.st.sent_len;
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    take_request();
    {
        bytes *b = response_101("");
        b_frame(b, 1, STWS_OP_TEXT, "m", 1);
        push_bytes(b);
    }
    assert_int_equal(F.npushed, 0);
    assert_int_equal(step(), STWS_OK);
    assert_int_equal(F.npushed, 2);
    assert_int_equal(F.pushed[0].type, STWS_CONN_EVENT_OPEN);
    assert_int_equal(F.pushed[1].type, STWS_CONN_EVENT_MESSAGE);
    assert_int_equal(stws_conn_send(F.c, STWS_OP_TEXT, "x", 1), STWS_OK);
    assert_int_equal(stws_conn_close(F.c, 1000, NULL), STWS_OK);
    assert_int_equal(F.npushed, 2);
    assert_int_equal(F.outside_calls, 0);
}

/* on_event may destroy its conn (a game leaving the lobby on the first
   message): deferred, nothing is called after it, the step frees the conn
   and says STWS_ERR_CLOSED; a step or poll from inside is refused.  Under
   ASan a use-after-free here fails the run; the allocator hook must show
   every block freed. */
static stws_result destroy_cb_inner_step, destroy_cb_inner_poll;
static void destroy_cb(stws_conn *c, const stws_conn_event *ev, void *user) {
    struct fx *f = (struct fx *)user;
    if (f->npushed < MAX_PUSHED) rec_copy(&f->pushed[f->npushed++], ev);
    destroy_cb_inner_step = stws_conn_step(c);
    destroy_cb_inner_poll = stws_conn_poll(c, 0);
    if (ev->type == STWS_CONN_EVENT_MESSAGE) stws_conn_destroy(c);
}

static void on_event_may_destroy_the_conn(void **state) {
    (void)state;
    F.d.on_event = destroy_cb;
    F.d.user_data = &F;
    create();
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    take_request();
    {
        bytes *b = response_101("");
        b_frame(b, 1, STWS_OP_TEXT, "first", 5);
        b_frame(b, 1, STWS_OP_TEXT, "second", 6);
        push_bytes(b);
    }
    assert_int_equal(step(), STWS_ERR_CLOSED);
    F.c = NULL; /* freed by the step */
    assert_int_equal(F.npushed, 2); /* OPEN, "first"; never "second" */
    assert_int_equal(F.pushed[0].type, STWS_CONN_EVENT_OPEN);
    assert_int_equal(F.pushed[1].type, STWS_CONN_EVENT_MESSAGE);
    assert_int_equal(F.pushed[1].len, 5);
    assert_int_equal(destroy_cb_inner_step, STWS_ERR_STATE);
    assert_int_equal(destroy_cb_inner_poll, STWS_ERR_STATE);
    assert_int_equal(F.live, 0);
}

/* ==== 10. invalid descs ================================================== */

static void invalid_desc_returns_null(void **state) {
    static const char *const bad_urls[] = {
        "http://example.com/",  "ws://",        "ws://exa mple.com/", "ws://example.com/#frag",
        "ws://user@example.com/", "ws://example.com:0/", "ws://example.com:65536/", "example.com",
    };
    static const stws_header crlf[] = {{"X-Ok", "fine"}, {"X-Evil", "a\r\nInjected: yes"}};
    static const stws_header lf[] = {{"X-Evil", "a\nb"}};
    static const stws_header cr[] = {{"X-Evil", "a\rb"}};
    static const stws_header badname[] = {{"X Bad", "v"}};
    static const char *const badproto[] = {"chat", "a b"};
    size_t i;
    int logs;
    (void)state;
    assert_null(stws_conn_create(NULL));
    for (i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        logs = F.log_errors;
        desc_defaults(bad_urls[i]);
        F.c = stws_conn_create(&F.d); /* teardown frees it if the test fails */
        if (F.c) fail_msg("created a connection for %s", bad_urls[i]);
        assert_int_equal(F.live, 0);
        if (F.log_errors == logs) fail_msg("no error logged for %s", bad_urls[i]);
    }
#define EXPECT_NULL(what)                                                  \
    do {                                                                   \
        logs = F.log_errors;                                               \
        F.c = stws_conn_create(&F.d);                                    \
        if (F.c) fail_msg("created a connection with %s", what);         \
        assert_int_equal(F.live, 0);                                       \
        if (F.log_errors == logs) fail_msg("no error logged for %s", what); \
    } while (0)
    desc_defaults("ws://example.com/");
    F.d.headers = crlf;
    F.d.num_headers = 2;
    EXPECT_NULL("CR LF in a header value");
    F.d.headers = lf;
    F.d.num_headers = 1;
    EXPECT_NULL("LF in a header value");
    F.d.headers = cr;
    EXPECT_NULL("CR in a header value");
    F.d.headers = badname;
    EXPECT_NULL("a space in a header name");
    desc_defaults("ws://example.com/");
    F.d.origin = "https://a.example\r\nX: y";
    EXPECT_NULL("CR LF in the origin");
    desc_defaults("ws://example.com/");
    F.d.subprotocols = badproto;
    F.d.num_subprotocols = 2;
    EXPECT_NULL("a subprotocol that is not a token");
    desc_defaults("ws://example.com/");
    F.d.num_headers = -1;
    EXPECT_NULL("num_headers -1");
#undef EXPECT_NULL
    /* and the good one still works */
    desc_defaults("ws://example.com/");
    create();
}

/* "NULL on bad desc (logged)": a desc without a URL is a bad desc too. */
static void missing_url_is_logged(void **state) {
    (void)state;
    F.d.url = NULL;
    F.c = stws_conn_create(&F.d);
    assert_null(F.c);
    assert_int_equal(F.live, 0);
    if (F.log_errors == 0) fail_msg("stws_conn_create returned NULL for a desc without a URL but logged nothing");
}

/* handle(): the transport's, while the transport is in use. */
static void handle_follows_the_transport(void **state) {
    (void)state;
    create();
    assert_int_equal(stws_conn_handle(F.c), -1); /* no handle function */
    stws_conn_destroy(F.c);
    F.c = NULL;
    F.d.transport = st_transport_vtable(&F.st, 1);
    create();
    assert_int_equal(stws_conn_handle(F.c), -1); /* IDLE */
    open_conn();
    assert_int_equal(stws_conn_handle(F.c), 42);
    close_clean();
    assert_int_equal(stws_conn_handle(F.c), -1);
}

/* ==== 10. poll, external loops and connect failures (issue 13) ========== */
#ifndef _WIN32 /* POSIX sockets, alarm(), fork() */

/* A bound for a call that could block for ever: SIGALRM after s seconds
   interrupts poll() (which is never restarted) and sets g_alarmed.  The
   tests assert that it did not fire; nothing here waits on a timer of its own. */
static volatile sig_atomic_t g_alarmed;
static struct sigaction g_old_alarm;
static int g_armed;
static void on_alarm(int sig) {
    (void)sig;
    g_alarmed = 1;
}

static void arm_alarm(unsigned s) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: the blocked call returns EINTR */
    g_alarmed = 0;
    assert_int_equal(sigaction(SIGALRM, &sa, &g_old_alarm), 0);
    g_armed = 1;
    alarm(s);
}

static void disarm_alarm(void) {
    if (!g_armed) return;
    alarm(0);
    (void)sigaction(SIGALRM, &g_old_alarm, NULL);
    g_armed = 0;
}

static int g_sv[2] = {-1, -1};  /* a socketpair standing in for the socket */
static int g_lsock = -1;        /* a listening (or bound) socket */
static int g_go[2] = {-1, -1};  /* tells the child server to accept */
static pid_t g_child = -1;

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static int teardown_net(void **state) {
    disarm_alarm();
    if (g_child > 0) {
        kill(g_child, SIGKILL);
        (void)waitpid(g_child, NULL, 0);
        g_child = -1;
    }
    close_fd(&g_sv[0]);
    close_fd(&g_sv[1]);
    close_fd(&g_lsock);
    close_fd(&g_go[0]);
    close_fd(&g_go[1]);
    return teardown(state);
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A TCP port on 127.0.0.1 that nothing listens on: bound by the OS, closed. */
static int closed_port(void) {
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int s = socket(AF_INET, SOCK_STREAM, 0), port;
    assert_true(s >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    port = ntohs(sa.sin_port);
    close(s);
    return port;
}

/* A socket bound to 127.0.0.1 on an OS-chosen port, not yet listening. */
static int bound_socket(int *port) {
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return s;
}

/* The built-in stack on real sockets and the real clock. */
static void desc_real(const char *url) {
    desc_defaults(url);
    memset(&F.d.transport, 0, sizeof F.d.transport);
    memset(&F.d.clock, 0, sizeof F.d.clock);
}

/* Two messages and the server's Close arrive with the 101, so everything is
   buffered and the socket itself stays silent.  stws_conn_poll(c, -1) must
   not wait on the socket then: a negative timeout used to replace the
   library's "0: work is waiting" with "wait for ever", so the Close was
   never answered. */
static void poll_negative_timeout_never_waits_on_buffered_data(void **state) {
    bytes *b;
    ev_rec r;
    int i, msgs = 0;
    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, g_sv), 0);
    F.d.transport = st_transport_vtable(&F.st, 1);
    F.st.handle_value = g_sv[0]; /* a real descriptor that never becomes readable */
    create();
    b = b_new();
    b_frame(b, 1, STWS_OP_TEXT, "one", 3);
    b_frame(b, 1, STWS_OP_TEXT, "two", 3);
    b_close(b, 1000, "bye");
    open_conn_with(b->p, b->n);
    arm_alarm(3);
    for (i = 0; i < 10 && !g_alarmed && F.st.sent_len == F.rd; i++) {
        F.in_step++;
        (void)stws_conn_poll(F.c, -1);
        F.in_step--;
        while (next_ev(&r)) {
            assert_int_equal(r.type, STWS_CONN_EVENT_MESSAGE);
            assert_int_equal(r.len, 3);
            assert_memory_equal(r.data, msgs ? "two" : "one", 3);
            msgs++;
        }
    }
    disarm_alarm();
    if (g_alarmed) fail_msg("stws_conn_poll(-1) blocked on the socket while frames were buffered");
    assert_int_equal(msgs, 2);
    assert_int_equal(STATE(), STWS_CONN_CLOSING);
    expect_client_close(1000, NULL); /* the Close was answered */
    expect_nothing_sent();
    /* the peer closes TCP; make the descriptor readable so the wait ends */
    st_push_eof(&F.st);
    assert_int_equal(write(g_sv[1], "x", 1), 1);
    arm_alarm(3);
    (void)stws_conn_poll(F.c, -1);
    disarm_alarm();
    assert_int_equal(g_alarmed, 0);
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 1);
    assert_int_equal(r.close_code, 1000);
}

/* The close timer is due and the socket is silent: poll(-1) must return and
   fire it (it used to wait for the socket for ever). */
static void poll_negative_timeout_fires_a_due_timer(void **state) {
    ev_rec r;
    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, g_sv), 0);
    F.d.transport = st_transport_vtable(&F.st, 1);
    F.st.handle_value = g_sv[0];
    F.d.close_timeout_ms = 700;
    create();
    open_conn();
    assert_int_equal(stws_conn_close(F.c, 1000, NULL), STWS_OK);
    assert_int_equal(step(), STWS_OK);
    expect_client_close(1000, NULL);
    assert_int_equal(stws_conn_timeout(F.c), 700);
    F.now += 700; /* the peer never answers */
    assert_int_equal(stws_conn_timeout(F.c), 0);
    arm_alarm(3);
    (void)stws_conn_poll(F.c, -1);
    disarm_alarm();
    if (g_alarmed) fail_msg("stws_conn_poll(-1) blocked past a due close timer");
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    assert_int_equal(r.clean, 0);
    assert_int_equal(r.close_code, STWS_CLOSE_ABNORMAL);
    assert_int_equal(STATE(), STWS_CONN_CLOSED);
}

/* A client whose server refuses: between attempts it is in backoff with no
   socket, and stws_client_poll(c, -1) must wait for the backoff timer.
   It used to return at once, millions of times a second (the real clock and
   a real refused port; the count is of calls, not of time). */
static void client_poll_waits_out_the_backoff(void **state) {
    char url[64];
    stws_client_desc d;
    stws_client *cl;
    stws_client_event ev;
    long polls = 0, polls_at_first = -1;
    int reconnecting = 0, delay = 0;
    unsigned gen0;
    double end;
    (void)state;
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", closed_port());
    memset(&d, 0, sizeof d);
    d.url = url;
    d.api_key = "key";
    d.user_id = "alice";
    d.api_secret = "secret";
    d.allocator = F.d.allocator;
    d.logger = F.d.logger;
    d.random = F.d.random;
    cl = stws_client_create(&d);
    assert_non_null(cl);
    assert_int_equal(stws_client_connect(cl), STWS_OK);
    gen0 = stws_client_socket_generation(cl);
    end = mono_s() + 30;
    while (reconnecting < 2 && mono_s() < end && polls < 1000000) {
        (void)stws_client_poll(cl, -1);
        polls++;
        while (stws_client_next_event(cl, &ev)) {
            if (ev.type != STWS_CLIENT_EVENT_RECONNECTING) continue;
            if (++reconnecting == 1) {
                polls_at_first = polls;
                delay = ev.delay_ms;
            }
        }
    }
    /* each attempt's socket came and went: the generation says so (4 changes
       at least: made and closed, twice) */
    assert_true(stws_client_socket_generation(cl) - gen0 >= 4);
    stws_client_destroy(cl);
    assert_int_equal(reconnecting, 2);
    assert_true(delay > 0);
    /* one backoff wait of `delay` ms and one refused connect: a few calls */
    if (polls - polls_at_first > 20)
        fail_msg("%ld stws_client_poll(-1) calls during a %d ms backoff: it spins", polls - polls_at_first,
                 delay);
}

/* "TCP connect failed" says which address and why (errno). */
static void tcp_connect_failure_names_address_and_errno(void **state) {
    char url[64], want[64], why[160];
    int port = closed_port(), i;
    ev_rec r;
    (void)state;
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", port);
    desc_real(url);
    create();
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    for (i = 0; i < 100 && STATE() != STWS_CONN_CLOSED; i++) (void)stws_conn_poll(F.c, 1000);
    get_ev(&r, STWS_CONN_EVENT_ERROR);
    assert_int_equal(r.error, STWS_ERR_CONNECT);
    snprintf(want, sizeof want, "127.0.0.1:%d: ", port);
    snprintf(why, sizeof why, "%s (errno %d)", strerror(ECONNREFUSED), ECONNREFUSED);
    if (!strstr(stws_conn_error_detail(F.c), want) || !strstr(stws_conn_error_detail(F.c), why))
        fail_msg("detail \"%s\" lacks \"%s\" and \"%s\"", stws_conn_error_detail(F.c), want, why);
    assert_non_null(strstr(F.last_log, want)); /* the log line says it too */
}

/* A wss:// attempt fails in TLS (the "server" answers in plain HTTP), then
   the next attempt cannot even connect: its detail must be its own, not the
   TLS reason of the attempt before. */
static void connect_failure_detail_is_not_the_previous_tls_reason(void **state) {
    char url[64];
    int port, i, fd = -1, fl;
    const char *det;
    ev_rec r;
    (void)state;
    g_lsock = bound_socket(&port);
    assert_int_equal(listen(g_lsock, 4), 0);
    fl = fcntl(g_lsock, F_GETFL, 0);
    assert_int_equal(fcntl(g_lsock, F_SETFL, fl | O_NONBLOCK), 0);
    snprintf(url, sizeof url, "wss://127.0.0.1:%d/", port);
    desc_real(url);
    F.d.insecure = 1;
    create();
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    for (i = 0; i < 200 && STATE() != STWS_CONN_CLOSED; i++) {
        (void)stws_conn_poll(F.c, 100);
        if (fd < 0 && (fd = accept(g_lsock, NULL, NULL)) >= 0) {
            const char *junk = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
            assert_int_equal(write(fd, junk, strlen(junk)), (int)strlen(junk));
        }
    }
    close_fd(&fd);
    get_ev(&r, STWS_CONN_EVENT_ERROR);
    assert_true(r.error == STWS_ERR_TLS || r.error == STWS_ERR_TLS_VERIFY);
    assert_true(strlen(stws_conn_error_detail(F.c)) > 0); /* the TLS layer's reason */
    get_ev(&r, STWS_CONN_EVENT_CLOSE);
    close_fd(&g_lsock); /* now nothing listens there */
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    for (i = 0; i < 100 && STATE() != STWS_CONN_CLOSED; i++) (void)stws_conn_poll(F.c, 1000);
    get_ev(&r, STWS_CONN_EVENT_ERROR);
    assert_int_equal(r.error, STWS_ERR_CONNECT);
    det = stws_conn_error_detail(F.c);
    if (strstr(det, "TLS") || !strstr(det, strerror(ECONNREFUSED)))
        fail_msg("a refused connect reported as \"%s\"", det);
}

#ifdef __linux__
/* ---- an edge-triggered epoll loop over loopback ---- */

#define ET_MSG 400000
static uint8_t et_byte(size_t i) { return (uint8_t)(i * 7 + (i >> 10)); }

/* The name resolves to two addresses; the first is refused (nothing listens
   yet when it is tried), the second connects. */
static int two_addresses(const char *host, stws_address *out, int max, void *user) {
    int i;
    (void)host;
    (void)user;
    for (i = 0; i < 2 && i < max; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].family = 4;
        out[i].bytes[0] = 127;
        out[i].bytes[3] = 1;
    }
    return 2;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *s = (const char *)p;
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The child: a blocking one-shot server.  Accept once told to, answer the
   upgrade, send a 400 KB binary message and a Close, read the client's
   Close, close TCP first (§7.1.1). */
static void et_server(void) {
    char req[4096], acc[STWS_HANDSHAKE_ACCEPT_SIZE], resp[256], key[25], g;
    uint8_t hdr[10], cl[4] = {0x88, 2, 0x03, 0xE8}, in[64];
    size_t n = 0, i, got = 0;
    uint8_t *msg;
    const char *k;
    int s, m;
    alarm(60);
    if (read(g_go[0], &g, 1) != 1) _exit(10);
    if ((s = accept(g_lsock, NULL, NULL)) < 0) _exit(11);
    for (;;) {
        ssize_t r = read(s, req + n, sizeof req - 1 - n);
        if (r <= 0) _exit(12);
        n += (size_t)r;
        req[n] = 0;
        if (strstr(req, "\r\n\r\n")) break;
        if (n == sizeof req - 1) _exit(12);
    }
    if (!(k = strstr(req, "Sec-WebSocket-Key: "))) _exit(13);
    memcpy(key, k + 19, 24);
    key[24] = 0;
    if (stws_handshake_accept(key, acc) != STWS_OK) _exit(14);
    m = snprintf(resp, sizeof resp,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n\r\n", acc);
    if (!(msg = (uint8_t *)malloc(ET_MSG))) _exit(15);
    for (i = 0; i < ET_MSG; i++) msg[i] = et_byte(i);
    hdr[0] = 0x82;
    hdr[1] = 127;
    for (i = 0; i < 8; i++) hdr[2 + i] = (uint8_t)(((uint64_t)ET_MSG >> (56 - 8 * i)) & 0xFF);
    if (write_all(s, resp, (size_t)m) || write_all(s, hdr, 10) || write_all(s, msg, ET_MSG) ||
        write_all(s, cl, 4))
        _exit(16);
    while (got < 8) { /* the masked close: 2 + 4 + 2 bytes */
        ssize_t r = read(s, in, sizeof in);
        if (r <= 0) _exit(17);
        got += (size_t)r;
    }
    close(s);
    _exit(0);
}

/* The contract of stws_conn_step() for external loops, with EPOLLET:
   register on every socket generation, wait at most stws_conn_timeout(),
   step.  It used to fail twice: the socket of the second address could get
   the number of the first (closed, so epoll dropped it) with no signal, and
   one read per step left most of a large message in the socket with no new
   edge to come.  A wait that times out while the library says "nothing but
   the socket" (-1) is a stall. */
static void edge_triggered_epoll_loop(void **state) {
    char url[64];
    int port, ep, listening = 0, sockets = 0, same_number = 0, last_fd = -1, status = 0;
    int got_open = 0, got_msg = 0, got_close = 0;
    unsigned seen = 0;
    double end;
    size_t i;
    ev_rec r;
    stws_conn_event ev;
    (void)state;
    (void)r;
    g_lsock = bound_socket(&port);
    assert_int_equal(pipe(g_go), 0);
    g_child = fork();
    assert_true(g_child >= 0);
    if (g_child == 0) et_server();
    close_fd(&g_go[0]);
    snprintf(url, sizeof url, "ws://stws-test.invalid:%d/", port);
    desc_real(url);
    F.d.resolver.resolve = two_addresses;
    create();
    assert_int_equal(stws_conn_socket_generation(F.c), 0);
    assert_true((ep = epoll_create1(0)) >= 0);
    assert_int_equal(stws_conn_connect(F.c), STWS_OK);
    end = mono_s() + 60;
    while (!got_close && mono_s() < end) {
        struct epoll_event evs[4];
        unsigned gen;
        int n, t;
        (void)stws_conn_step(F.c);
        while (stws_conn_next_event(F.c, &ev)) {
            switch (ev.type) {
            case STWS_CONN_EVENT_OPEN: got_open++; break;
            case STWS_CONN_EVENT_MESSAGE:
                assert_int_equal(ev.opcode, STWS_OP_BINARY);
                assert_int_equal(ev.len, ET_MSG);
                for (i = 0; i < ET_MSG; i++)
                    if (ev.data[i] != et_byte(i)) fail_msg("byte %zu of the message differs", i);
                got_msg++;
                break;
            case STWS_CONN_EVENT_CLOSE:
                assert_int_equal(ev.clean, 1);
                assert_int_equal(ev.close_code, 1000);
                got_close++;
                break;
            case STWS_CONN_EVENT_ERROR:
                fail_msg("ERROR %s: %s", stws_result_string(ev.error), stws_conn_error_detail(F.c));
                break;
            default: break;
            }
        }
        if ((gen = stws_conn_socket_generation(F.c)) != seen) {
            intptr_t h = stws_conn_handle(F.c);
            seen = gen;
            if (h >= 0) {
                struct epoll_event e;
                memset(&e, 0, sizeof e);
                e.events = EPOLLIN | EPOLLOUT | EPOLLET;
                e.data.fd = (int)h;
                if (epoll_ctl(ep, EPOLL_CTL_ADD, (int)h, &e) != 0) {
                    assert_int_equal(errno, EEXIST);
                    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_MOD, (int)h, &e), 0);
                }
                same_number += (int)h == last_fd;
                last_fd = (int)h;
                sockets++;
            }
        }
        if (got_close) break;
        t = stws_conn_timeout(F.c);
        n = epoll_wait(ep, evs, 4, t < 0 || t > 5000 ? 5000 : t);
        if (n == 0 && t < 0)
            fail_msg("the edge-triggered loop stalled (state %d, %d sockets, open %d, message %d)",
                     (int)STATE(), sockets, got_open, got_msg);
        if (n > 0 && !listening) {
            /* the first address has been refused: let the second connect */
            listening = 1;
            assert_int_equal(listen(g_lsock, 4), 0);
            assert_int_equal(write(g_go[1], "g", 1), 1);
        }
    }
    close(ep);
    assert_int_equal(got_open, 1);
    assert_int_equal(got_msg, 1);
    assert_int_equal(got_close, 1);
    assert_int_equal(sockets, 2); /* one per address; same number or not */
    print_message("edge-triggered loop: %d sockets, %d reused the number before\n", sockets, same_number);
    assert_int_equal(waitpid(g_child, &status, 0), g_child);
    g_child = -1;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}
#endif /* __linux__ */
#endif /* !_WIN32 */

/* ---- the client's default JSON limit (finding 8) ---- */

/* A 1 MiB message.new of a realistic shape (bench/workload.h's head, and
   the message's reactions), about 100,000 tokens: the default
   max_json_tokens (65,536) used to reject it as MALFORMED though
   max_message_size (16 MiB) allows it. */
static void client_default_json_limit_admits_a_1mib_event(void **state) {
    const size_t want = (size_t)1 << 20;
    char *j = (char *)malloc(want + 512);
    size_t n, reactions = 0;
    int i;
    (void)state;
    assert_non_null(j);
    n = (size_t)snprintf(j, 1024,
                         "{\"type\":\"message.new\",\"cid\":\"messaging:general\",\"channel_type\":\"messaging\","
                         "\"channel_id\":\"general\",\"created_at\":\"2026-12-02T04:35:58.000001Z\","
                         "\"user\":{\"id\":\"user-7\",\"name\":\"Player 7\",\"online\":true},"
                         "\"message\":{\"id\":\"m-0000abcd\",\"type\":\"regular\",\"text\":\"gg\","
                         "\"latest_reactions\":[");
    while (n + 200 < want) {
        n += (size_t)snprintf(j + n, 200, "%s{\"type\":\"like\",\"user_id\":\"user-%u\",\"score\":%u,"
                              "\"created_at\":\"2026-12-02T04:35:58.%06uZ\"}",
                              reactions ? "," : "", (unsigned)(reactions % 977), (unsigned)(reactions % 5),
                              (unsigned)reactions);
        reactions++;
    }
    memcpy(j + n, "]}}", 4);
    n += 3;
    assert_true(reactions * 9 > 65536); /* 9 tokens per reaction alone */
    (void)cu_fetch; /* client_util.h's hooks this suite does not need */
    (void)cu_reconnecting;
    srv_ok(0, "c-1");
    srv_text(0, j);
    cu_create();
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
    for (i = 0; i < X.nev; i++)
        if (X.ev[i].type == STWS_CLIENT_EVENT_MALFORMED)
            fail_msg("the %zu-byte event was MALFORMED: %s", n, stws_result_string(X.ev[i].result));
    assert_int_equal(cu_count_server("message.new"), 1);
    for (i = 0; i < X.nev; i++)
        if (X.ev[i].type == STWS_CLIENT_EVENT_SERVER && strcmp(X.ev[i].etype, "message.new") == 0)
            assert_int_equal(X.ev[i].json_len, n);
    free(j);
}

#ifndef _WIN32 /* a socketpair, alarm() */
/* A connected client with its health check due and a silent socket:
   stws_client_poll(c, -1) must send the check and return (it used to wait
   on the socket for ever; the dead timer was just as deaf). */
static intptr_t sv_handle(void *ctx) {
    (void)ctx;
    return g_sv[0];
}

static void client_poll_negative_timeout_fires_the_health_check(void **state) {
    const char *got[8];
    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, g_sv), 0);
    X.d.conn.transport.handle = sv_handle;
    srv_ok(0, "c-1");
    cu_create();
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CONNECTED), 1);
    assert_int_equal(cu_texts(0, got, 8), 1); /* the auth message */
    X.now += 25000;                            /* the default health interval */
    assert_int_equal(stws_client_timeout(X.c), 0);
    arm_alarm(3);
    (void)stws_client_poll(X.c, -1);
    disarm_alarm();
    if (g_alarmed) fail_msg("stws_client_poll(-1) blocked on the socket past a due health check");
    assert_int_equal(cu_texts(0, got, 8), 2);
    assert_string_equal(got[1], "[{\"type\":\"health.check\",\"client_id\":\"c-1\"}]");
}

/* The 101 and the end of the stream are both read before the app takes the
   conn's OPEN event (two steps, no events read in between).  The client
   answers OPEN with its auth message, which a closed conn refuses: that
   used to abort the closed conn a second time (a second ERROR and CLOSE,
   "auth message not sent: not allowed in this state" logged at ERROR, and
   the socket reported ended with STWS_ERR_STATE instead of the EOF). */
static void client_open_read_after_eof_ends_the_socket_once(void **state) {
    (void)state;
    srv_eof(0); /* after the automatic 101 */
    cu_create();
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    X.in_step++;
    (void)stws_client_step(X.c); /* attempt 1: connect, upgrade: OPEN waits */
    (void)stws_client_step(X.c); /* the EOF: the conn is CLOSED */
    X.in_step--;
    assert_int_equal(X.nev, 0);
    cu_drain();
    cu_settle(); /* the reconnect is announced by the next step */
    cu_expect_types(0, 2, STWS_CLIENT_EVENT_DISCONNECTED, STWS_CLIENT_EVENT_RECONNECTING);
    assert_int_equal(X.ev[0].result, STWS_ERR_EOF);
    assert_null(strstr(X.ev[0].message, "not allowed"));
    assert_int_equal(X.ev[1].attempt, 1);
    if (X.log && strstr(X.log, "not allowed in this state")) fail_msg("log:\n%s", X.log);
    /* the EOF, logged once, below ERROR: the client retries it */
    assert_int_equal(X.log_errors, 0);
    assert_non_null(X.log);
    assert_non_null(strstr(X.log, stws_result_string(STWS_ERR_EOF)));
    assert_null(strstr(strstr(X.log, stws_result_string(STWS_ERR_EOF)) + 1, stws_result_string(STWS_ERR_EOF)));
}

static int cu_teardown_net(void **state) {
    disarm_alarm();
    close_fd(&g_sv[0]);
    close_fd(&g_sv[1]);
    return cu_teardown(state);
}
#endif /* !_WIN32 */

/* The public calls a layer above uses (the client's watchdog and dead timer,
   on_reconnecting's URL): abort ends an open conn with the given result and
   no close frame; set_url works only while not connected, keeps the scheme,
   and the next request goes to the new host and path. */
static void public_abort_and_set_url(void **state) {
    (void)state;
    create();
    assert_int_equal(stws_conn_abort(F.c, STWS_ERR_WATCHDOG, "idle"), STWS_ERR_STATE);
    assert_int_equal(stws_conn_abort(F.c, STWS_OK, "not an error"), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_conn_abort(NULL, STWS_ERR_DEAD, "x"), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_conn_set_url(F.c, NULL), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_conn_set_url(F.c, "wss://example.com/ws"), STWS_ERR_URL_SCHEME);
    assert_int_equal(stws_conn_set_url(F.c, "ws://other.example:81/next?q=1"), STWS_OK);
    open_conn();
    assert_non_null(find((const char *)F.st.sent + F.req_off, F.req_len, "GET /next?q=1 HTTP/1.1\r\n"));
    assert_non_null(find((const char *)F.st.sent + F.req_off, F.req_len, "\r\nHost: other.example:81\r\n"));
    assert_int_equal(stws_conn_set_url(F.c, "ws://example.com/ws"), STWS_ERR_STATE);
    assert_int_equal(stws_conn_abort(F.c, STWS_ERR_DEAD, "no frame received"), STWS_OK);
    expect_nothing_sent(); /* no closing handshake */
    expect_error_then_close(STWS_ERR_DEAD, 0);
    assert_string_equal(stws_conn_error_detail(F.c), "no frame received: connection silent for too long");
    assert_int_equal(stws_conn_abort(F.c, STWS_ERR_DEAD, "again"), STWS_ERR_STATE);
    assert_int_equal(stws_conn_set_url(F.c, "ws://example.com/ws"), STWS_OK);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(happy_path_upgrade_and_first_frames),
        T(public_abort_and_set_url),
        T(request_line_and_host_variants),
        T(frames_one_byte_per_recv),
        T(large_frames_through_small_buffer),
        T(send_only_while_open),
        T(sent_frames_are_masked),
        T(partial_writes_resume_exactly),
        T(upgrade_request_partial_writes),
        T(would_block_keeps_bytes_queued),
        T(output_limit_refuses_sends),
        T(server_ping_answered_at_next_step),
        T(client_close_then_server_reply_and_eof),
        T(client_close_reply_without_eof_times_out_clean),
        T(client_close_no_reply_times_out_abnormal),
        T(server_close_is_echoed),
        T(server_close_without_code),
        T(simultaneous_close_is_clean),
        T(client_close_arguments),
        T(server_close_echo_never_written_is_not_clean),
        T(eof_while_open),
        T(recv_error_while_open),
        T(send_error_while_open),
        T(foreign_transport_errors_reported_as_io),
        T(protocol_failures_fail_the_connection),
        T(close_code_after_failure_is_1006),
        T(out_of_memory_while_reassembling),
        T(connect_timeout_exact),
        T(handshake_timeout_exact),
        T(timeout_during_partial_upgrade_response),
        T(timeout_reports_remaining_pending_and_none),
        T(handshake_refusals),
        T(handshake_response_size_limit),
        T(handshake_eof_and_open_failure),
        T(steady_state_messaging_allocates_nothing),
        T(reconnect_reuses_everything),
        T(create_allocations_match_doc),
        T(create_allocation_failures_leak_nothing),
        T(on_event_push_matches_pull),
        T(on_event_only_inside_step),
        T(on_event_may_destroy_the_conn),
        T(invalid_desc_returns_null),
        T(missing_url_is_logged),
        T(handle_follows_the_transport),
#ifndef _WIN32
#define N(f) cmocka_unit_test_setup_teardown(f, setup, teardown_net)
        N(poll_negative_timeout_never_waits_on_buffered_data),
        N(poll_negative_timeout_fires_a_due_timer),
        N(client_poll_waits_out_the_backoff),
        N(tcp_connect_failure_names_address_and_errno),
        N(connect_failure_detail_is_not_the_previous_tls_reason),
#ifdef __linux__
        N(edge_triggered_epoll_loop),
#endif
#undef N
#endif
        cmocka_unit_test_setup_teardown(client_default_json_limit_admits_a_1mib_event, cu_setup, cu_teardown),
#ifndef _WIN32
        cmocka_unit_test_setup_teardown(client_poll_negative_timeout_fires_the_health_check, cu_setup,
                                        cu_teardown_net),
        cmocka_unit_test_setup_teardown(client_open_read_after_eof_ends_the_socket_once, cu_setup, cu_teardown),
#endif
    };
#undef T
    return cmocka_run_group_tests_name("conn", tests, NULL, NULL);
}
