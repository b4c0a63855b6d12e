/* Helpers for the Stream client tests (tests/test_client.c): no sockets, no
   threads, no sleeping.

   - a multi-socket transport: every connection attempt gets its own
     st_transport script (tests/script_transport.h), so what one socket still
     held when it was dropped can never leak into the next one, and each
     socket's outbound bytes are captured separately.  By default the upgrade
     request is answered automatically with a valid 101 (the answer is put in
     front of whatever the socket's script already holds);
   - a fake clock (now_ms and unix_s are plain variables the test moves);
   - a deterministic random hook whose 4-byte draws (the backoff delay: the
     handshake key takes 16 bytes, masking keys come in 64-byte batches) can
     be pinned to a chosen value;
   - a counting allocator, a capturing logger, a token provider and an
     on_reconnecting hook that record their calls;
   - builders for server frames and a parser for the client's masked frames;
   - an event recorder (events are copied: their views die at the next call).

   Test-side memory uses malloc directly, so it never shows up in the
   library's allocation counts. */
#ifndef CLIENT_UTIL_H
#define CLIENT_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "mbedtls_oracle.h"
#include "../stream_ws.h"
#include "script_transport.h"

#if defined(__GNUC__) || defined(__clang__)
#define CU_FN static __attribute__((unused))
#else
#define CU_FN static
#endif

#define CU_T0 ((uint64_t)5000000)          /* the fake monotonic clock starts here */
#define CU_UNIX0 ((int64_t)1767225600)     /* 2026-01-01T00:00:00Z */
#define CU_SEED UINT64_C(0x2545F4914F6CDD1D)
#ifndef CU_MAX_SOCKS
#define CU_MAX_SOCKS 96
#endif
#define CU_MAX_EVENTS 4096
#define CU_MAX_FRAMES 512
#define CU_MAX_CALLS 64
/* JWT-shaped tokens (the client refuses anything else): one header and
   payload, a signature part that tells them apart */
#define CU_JWT_HP "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoiYWxpY2UifQ."
#define CU_TOKEN CU_JWT_HP "c3RhdGlj"
#define CU_PTOK CU_JWT_HP "cHJvdmlkZWQ-" /* the provider's n-th token: CU_PTOK "<n>" */

/* ==== recorded events ===================================================== */

typedef struct cu_ev {
    stws_client_event_type type;
    char etype[64];
    char *json;                 /* malloc'd copy (NUL-terminated) */
    size_t json_len;
    char conn_id[128];
    int attempt, delay_ms;
    stws_result result;
    int close_code, error_code;
    int http_status;
    stws_result cause;
    char message[256];
    uint64_t at;                /* fake time of delivery */
    int sock;                   /* socket index current at delivery */
    int in_step;                /* delivered from inside stws_client_step() */
    int via;                    /* 0 pull, 1 desc.on_event, 2+ handler index */
} cu_ev;

typedef struct cu_frame {
    int opcode, fin;
    size_t len;
    uint8_t *data;              /* unmasked, NUL-terminated copy */
} cu_frame;

typedef void (*cu_inspect_fn)(const stws_client_event *ev);

static struct cu_fx {
    /* the transport: socket k is the k-th connection attempt that opened */
    st_transport sock[CU_MAX_SOCKS];
    int nsock;                  /* sockets opened so far */
    int active;                 /* sockets[nsock-1] is between open and close */
    int stray_close;            /* close() with no attempt in progress */
    int answered[CU_MAX_SOCKS]; /* the 101 was put in front of the script */
    int no_answer[CU_MAX_SOCKS];/* 1: leave the upgrade unanswered */
    const char *answer[CU_MAX_SOCKS]; /* a whole HTTP response instead of the 101 */
    uint64_t open_at[CU_MAX_SOCKS];
    int opens, sends, recvs, closes; /* every call, over all sockets */
    int fail_from;              /* sockets >= fail_from (if > 0) fail to open */

    /* clock */
    uint64_t now;
    int64_t unix_s;
    int unix_calls;

    /* random */
    uint64_t rng;
    int pin_delay;              /* 4-byte draws return delay_value */
    uint32_t delay_value;
    int delay_draws;

    /* allocator */
    long allocs, frees, live;
    size_t bytes_live, bytes_total;

    /* logger */
    char *log;
    size_t log_len, log_cap;
    int log_errors;

    /* token provider */
    int fetches;
    int fetch_outside;          /* calls outside stws_client_step() */
    int fetch_fail;             /* next fetch fails (and is consumed) */
    uint64_t fetch_at[CU_MAX_CALLS];
    char fetch_prefix[128];

    /* on_reconnecting */
    int rc_calls;
    int rc_attempt[CU_MAX_CALLS], rc_delay[CU_MAX_CALLS];
    int rc_abort_at;            /* return 1 at this attempt (0 = never) */
    const char *rc_token;       /* ctl->token to set (NULL = none) */
    int rc_token_at;            /* only at this attempt (0 = every call) */
    const char *rc_url;
    int rc_close_at;            /* call stws_client_close() at this attempt */
    int rc_outside;             /* calls outside stws_client_step() */

    /* events */
    cu_ev ev[CU_MAX_EVENTS];
    int nev;
    int in_step;
    int outside_calls;          /* push callbacks outside stws_client_step() */
    cu_inspect_fn inspect;      /* sees every event live (pull mode) */
    stws_result last_step;

    /* client frames of one socket, parsed on demand */
    cu_frame fr[CU_MAX_FRAMES];
    int nfr;
    size_t fr_partial;          /* bytes of an incomplete trailing frame */
    char req[4096];             /* that socket's upgrade request */

    stws_client_desc d;
    stws_client *c;
} X;

/* ==== hooks =============================================================== */

static uint64_t cu_now(void *u) {
    (void)u;
    return X.now;
}

static int64_t cu_unix(void *u) {
    (void)u;
    X.unix_calls++;
    return X.unix_s;
}

static int cu_random(void *buf, size_t len, void *u) {
    uint8_t *p = (uint8_t *)buf;
    size_t i;
    (void)u;
    if (len == 4) X.delay_draws++;
    if (len == 4 && X.pin_delay) {
        memcpy(buf, &X.delay_value, 4);
        return 0;
    }
    for (i = 0; i < len; i++) { /* xorshift64 */
        X.rng ^= X.rng << 13;
        X.rng ^= X.rng >> 7;
        X.rng ^= X.rng << 17;
        p[i] = (uint8_t)(X.rng >> 31);
    }
    return 0;
}

#define CU_HDR 16
static void *cu_alloc(size_t size, void *u) {
    unsigned char *p = (unsigned char *)malloc(size + CU_HDR);
    (void)u;
    if (!p) return NULL;
    memcpy(p, &size, sizeof size);
    X.allocs++;
    X.live++;
    X.bytes_live += size;
    X.bytes_total += size;
    return p + CU_HDR;
}

static void cu_free(void *ptr, void *u) {
    unsigned char *p;
    size_t size;
    (void)u;
    if (!ptr) return;
    p = (unsigned char *)ptr - CU_HDR;
    memcpy(&size, p, sizeof size);
    X.frees++;
    X.live--;
    X.bytes_live -= size;
    free(p);
}

static void cu_log(stws_log_level level, const char *msg, void *u) {
    size_t n = strlen(msg);
    (void)u;
    if (level == STWS_LOG_ERROR) X.log_errors++;
    if (X.log_len + n + 2 > X.log_cap) {
        size_t cap = X.log_cap ? X.log_cap * 2 : 4096;
        while (cap < X.log_len + n + 2) cap *= 2;
        X.log = (char *)realloc(X.log, cap);
        if (!X.log) abort();
        X.log_cap = cap;
    }
    memcpy(X.log + X.log_len, msg, n);
    X.log_len += n;
    X.log[X.log_len++] = '\n';
    X.log[X.log_len] = 0;
}

/* "<prefix><n>" for the n-th fetch (1-based). */
static int cu_fetch(char *buf, size_t cap, void *u) {
    int n;
    (void)u;
    if (!X.in_step) X.fetch_outside++;
    if (X.fetches < CU_MAX_CALLS) X.fetch_at[X.fetches] = X.now;
    X.fetches++;
    if (X.fetch_fail) {
        X.fetch_fail--;
        return -1;
    }
    n = snprintf(buf, cap, "%s%d", X.fetch_prefix, X.fetches);
    return n;
}

static int cu_reconnecting(stws_client *c, int attempt, int delay_ms, stws_reconnect_ctl *ctl, void *u) {
    (void)u;
    if (!X.in_step) X.rc_outside++;
    if (X.rc_calls < CU_MAX_CALLS) {
        X.rc_attempt[X.rc_calls] = attempt;
        X.rc_delay[X.rc_calls] = delay_ms;
    }
    X.rc_calls++;
    if (X.rc_token && (!X.rc_token_at || X.rc_token_at == attempt)) ctl->token = X.rc_token;
    if (X.rc_url) ctl->url = X.rc_url;
    if (X.rc_close_at && X.rc_close_at == attempt) assert_int_equal(stws_client_close(c), STWS_OK);
    return X.rc_abort_at && X.rc_abort_at == attempt;
}

/* ==== the multi-socket transport ========================================== */

CU_FN const char *cu_find(const void *hay, size_t n, const char *needle) {
    const char *h = (const char *)hay;
    size_t m = strlen(needle), i;
    if (!h) return NULL;
    for (i = 0; i + m <= n; i++)
        if (memcmp(h + i, needle, m) == 0) return h + i;
    return NULL;
}

static int cu_cur(void) { return X.nsock - 1; }

/* Put the answer to socket k's upgrade request in front of its script. */
static void cu_answer(int k) {
    st_transport *t = &X.sock[k];
    const char *end = cu_find(t->sent, t->sent_len, "\r\n\r\n"), *key;
    char resp[512], acc[STWS_HANDSHAKE_ACCEPT_SIZE], k24[32];
    st_chunk c;
    int n;
    if (!end) return;
    X.answered[k] = 1;
    if (X.no_answer[k]) return;
    if (X.answer[k]) {
        n = snprintf(resp, sizeof resp, "%s", X.answer[k]);
    } else {
        key = cu_find(t->sent, (size_t)(end - (const char *)t->sent), "\r\nSec-WebSocket-Key: ");
        if (!key) fail_msg("socket %d: upgrade request without a key", k);
        key += strlen("\r\nSec-WebSocket-Key: ");
        memcpy(k24, key, 24);
        k24[24] = 0;
        if (stws_handshake_accept(k24, acc) != STWS_OK) fail_msg("socket %d: bad key", k);
        n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     acc);
    }
    st_push(t, resp, (size_t)n);
    /* move the new chunk (last) to the front of what is unread */
    c = t->chunks[t->nchunks - 1];
    memmove(&t->chunks[t->next + 1], &t->chunks[t->next], (t->nchunks - 1 - t->next) * sizeof c);
    t->chunks[t->next] = c;
}

static int cu_tr_open(void *ctx, const char *host, uint16_t port) {
    int k;
    (void)ctx;
    X.opens++;
    if (!X.active) {
        if (X.nsock == CU_MAX_SOCKS) fail_msg("more than %d connection attempts", CU_MAX_SOCKS);
        k = X.nsock++;
        X.active = 1;
        X.open_at[k] = X.now;
        if (X.fail_from > 0 && k >= X.fail_from && X.sock[k].open_result == 0)
            X.sock[k].open_result = STWS_ERR_CONNECT;
    }
    return st__open(&X.sock[cu_cur()], host, port);
}

static int cu_tr_send(void *ctx, const unsigned char *buf, size_t len) {
    int k = cu_cur(), r;
    (void)ctx;
    X.sends++;
    if (k < 0 || !X.active) {
        X.sock[0].misuse++;
        return STWS_ERR_IO;
    }
    r = st__send(&X.sock[k], buf, len);
    if (!X.answered[k]) cu_answer(k);
    return r;
}

static int cu_tr_recv(void *ctx, unsigned char *buf, size_t len) {
    int k = cu_cur();
    (void)ctx;
    X.recvs++;
    if (k < 0 || !X.active) {
        X.sock[0].misuse++;
        return STWS_ERR_IO;
    }
    return st__recv(&X.sock[k], buf, len);
}

static void cu_tr_close(void *ctx) {
    (void)ctx;
    X.closes++;
    if (!X.active) {
        X.stray_close++;
        return;
    }
    st__close(&X.sock[cu_cur()]);
    X.active = 0;
}

/* ==== fixture ============================================================= */

CU_FN void cu_desc_defaults(void) {
    memset(&X.d, 0, sizeof X.d);
    X.d.url = "ws://127.0.0.1:8080/api/v2/connect";
    X.d.api_key = "key123";
    X.d.user_id = "alice";
    X.d.token = CU_TOKEN;
    X.d.client_id = "stream-ws-c-v0.1.0|os=linux";
    X.d.conn.transport.open = cu_tr_open;
    X.d.conn.transport.send = cu_tr_send;
    X.d.conn.transport.recv = cu_tr_recv;
    X.d.conn.transport.close = cu_tr_close;
    X.d.conn.transport.ctx = &X;
    X.d.clock.now_ms = cu_now;
    X.d.clock.unix_s = cu_unix;
    X.d.clock.user_data = &X;
    X.d.random.fill = cu_random;
    X.d.random.user_data = &X;
    X.d.allocator.alloc = cu_alloc;
    X.d.allocator.free = cu_free;
    X.d.allocator.user_data = &X;
    X.d.logger.func = cu_log;
    X.d.logger.user_data = &X;
}

CU_FN void cu_frames_free(void) {
    int i;
    for (i = 0; i < X.nfr; i++) free(X.fr[i].data);
    X.nfr = 0;
}

CU_FN void cu_events_free(void) {
    int i;
    for (i = 0; i < X.nev; i++) free(X.ev[i].json);
    X.nev = 0;
}

static int cu_setup(void **state) {
    int i;
    (void)state;
    memset(&X, 0, sizeof X);
    for (i = 0; i < CU_MAX_SOCKS; i++) st_init(&X.sock[i]);
    X.now = CU_T0;
    X.unix_s = CU_UNIX0;
    X.rng = CU_SEED;
    snprintf(X.fetch_prefix, sizeof X.fetch_prefix, "%s", CU_PTOK);
    cu_desc_defaults();
    return 0;
}

static int cu_teardown(void **state) {
    int i, bad = 0, misuse = 0;
    (void)state;
    stws_client_destroy(X.c);
    X.c = NULL;
    for (i = 0; i < CU_MAX_SOCKS; i++) misuse += X.sock[i].misuse;
    if (misuse) {
        print_error("transport misuse: %d send/recv on a closed stream or open on an open one\n", misuse);
        bad = 1;
    }
    if (X.live) {
        print_error("the client leaked %ld allocation(s), %zu bytes\n", X.live, X.bytes_live);
        bad = 1;
    }
    for (i = 0; i < CU_MAX_SOCKS; i++) st_free(&X.sock[i]);
    cu_frames_free();
    cu_events_free();
    free(X.log);
    X.log = NULL;
    return bad ? -1 : 0;
}

/* Destroy the client and forget every socket and event (counters stay). */
CU_FN void cu_reset(void) {
    int i;
    stws_client_destroy(X.c);
    X.c = NULL;
    for (i = 0; i < CU_MAX_SOCKS; i++) {
        if (X.sock[i].misuse) fail_msg("socket %d: transport misuse %d", i, X.sock[i].misuse);
        st_free(&X.sock[i]);
        st_init(&X.sock[i]);
        X.answered[i] = X.no_answer[i] = 0;
        X.answer[i] = NULL;
        X.open_at[i] = 0;
    }
    X.nsock = X.active = 0;
    X.fail_from = 0;
    cu_frames_free();
    cu_events_free();
}

CU_FN void cu_create(void) {
    X.c = stws_client_create(&X.d);
    if (!X.c) fail_msg("stws_client_create failed; log:\n%s", X.log ? X.log : "");
}

/* ==== events ============================================================== */

CU_FN const char *cu_ev_name(int t) {
    switch (t) {
    case STWS_CLIENT_EVENT_NONE: return "NONE";
    case STWS_CLIENT_EVENT_CONNECTED: return "CONNECTED";
    case STWS_CLIENT_EVENT_SERVER: return "SERVER";
    case STWS_CLIENT_EVENT_DISCONNECTED: return "DISCONNECTED";
    case STWS_CLIENT_EVENT_RECONNECTING: return "RECONNECTING";
    case STWS_CLIENT_EVENT_RECONNECTED: return "RECONNECTED";
    case STWS_CLIENT_EVENT_FATAL: return "FATAL";
    case STWS_CLIENT_EVENT_MALFORMED: return "MALFORMED";
    case STWS_CLIENT_EVENT_CLOSED: return "CLOSED";
    }
    return "?";
}

static void cu_copy_str(char *dst, size_t cap, stws_str s) {
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (s.ptr && n) memcpy(dst, s.ptr, n);
    dst[s.ptr ? n : 0] = 0;
}

CU_FN void cu_record(const stws_client_event *ev, int via) {
    cu_ev *r;
    if (X.nev == CU_MAX_EVENTS) fail_msg("more than %d events", CU_MAX_EVENTS);
    r = &X.ev[X.nev++];
    memset(r, 0, sizeof *r);
    r->type = ev->type;
    cu_copy_str(r->etype, sizeof r->etype, ev->event_type);
    r->json_len = ev->json.len;
    r->json = (char *)malloc(ev->json.len + 1);
    if (!r->json) abort();
    if (ev->json.len) memcpy(r->json, ev->json.ptr, ev->json.len);
    r->json[ev->json.len] = 0;
    cu_copy_str(r->conn_id, sizeof r->conn_id, ev->connection_id);
    r->attempt = ev->attempt;
    r->delay_ms = ev->delay_ms;
    r->result = ev->result;
    r->close_code = ev->close_code;
    r->error_code = ev->error_code;
    r->http_status = ev->http_status;
    r->cause = ev->cause;
    cu_copy_str(r->message, sizeof r->message, ev->message);
    r->at = X.now;
    r->sock = cu_cur();
    r->in_step = X.in_step;
    r->via = via;
}

/* Pull every event now available. */
CU_FN int cu_drain(void) {
    stws_client_event ev;
    int n = 0;
    while (stws_client_next_event(X.c, &ev)) {
        if (X.inspect) X.inspect(&ev);
        cu_record(&ev, 0);
        n++;
        if (n > 100000) fail_msg("stws_client_next_event never runs dry");
    }
    return n;
}

/* One stws_client_step() and (pull mode) the events it made available. */
CU_FN stws_result cu_step(void) {
    X.in_step++;
    X.last_step = stws_client_step(X.c);
    X.in_step--;
    if (!X.d.on_event) cu_drain();
    return X.last_step;
}

static uint64_t cu_progress(void) {
    uint64_t s = (uint64_t)X.nev * 1000003u + (uint64_t)X.nsock * 7919u + (uint64_t)X.opens * 104729u;
    int i;
    for (i = 0; i < X.nsock; i++)
        s += X.sock[i].sent_len * 31u + X.sock[i].next * 131u + X.sock[i].bytes_received * 17u;
    return s;
}

/* Step until nothing moves any more (the clock does not move). */
CU_FN void cu_settle(void) {
    uint64_t last = cu_progress();
    long i, idle = 0;
    for (i = 0; i < 3000000 && idle < 3; i++) {
        uint64_t now;
        cu_step();
        now = cu_progress();
        if (now == last) idle++;
        else idle = 0;
        last = now;
    }
    if (idle < 3) fail_msg("the client never settles");
}

CU_FN void cu_advance(uint64_t ms) {
    X.now += ms;
    cu_settle();
}

/* The index of the first event of type t at or after `from`, or -1. */
CU_FN int cu_find_ev(stws_client_event_type t, int from) {
    int i;
    for (i = from < 0 ? 0 : from; i < X.nev; i++)
        if (X.ev[i].type == t) return i;
    return -1;
}

CU_FN int cu_count_ev(stws_client_event_type t) {
    int i, n = 0;
    for (i = 0; i < X.nev; i++) n += X.ev[i].type == t;
    return n;
}

CU_FN int cu_count_server(const char *etype) {
    int i, n = 0;
    for (i = 0; i < X.nev; i++) n += X.ev[i].type == STWS_CLIENT_EVENT_SERVER && strcmp(X.ev[i].etype, etype) == 0;
    return n;
}

CU_FN void cu_dump_events(int from) {
    int i;
    for (i = from < 0 ? 0 : from; i < X.nev; i++)
        print_message("  ev[%d] t=+%llu sock=%d %s etype=%s result=%d(%s) close=%d err=%d attempt=%d delay=%d "
                      "id=%s msg=%s json=%.80s\n",
                      i, (unsigned long long)(X.ev[i].at - CU_T0), X.ev[i].sock, cu_ev_name(X.ev[i].type),
                      X.ev[i].etype, (int)X.ev[i].result, stws_result_string(X.ev[i].result), X.ev[i].close_code,
                      X.ev[i].error_code, X.ev[i].attempt, X.ev[i].delay_ms, X.ev[i].conn_id, X.ev[i].message,
                      X.ev[i].json ? X.ev[i].json : "");
}

/* The events at or after `from` must be exactly these types. */
CU_FN void cu_expect_types(int from, int n, ...) {
    va_list ap;
    int i, ok = X.nev - from == n;
    va_start(ap, n);
    for (i = 0; i < n; i++) {
        int t = va_arg(ap, int);
        if (ok && X.ev[from + i].type != (stws_client_event_type)t) ok = 0;
    }
    va_end(ap);
    if (!ok) {
        print_message("expected %d events from %d, got %d:\n", n, from, X.nev - from);
        va_start(ap, n);
        for (i = 0; i < n; i++) print_message("  want %s\n", cu_ev_name(va_arg(ap, int)));
        va_end(ap);
        cu_dump_events(from);
        fail_msg("event sequence differs (see above)");
    }
}

/* ==== server frames ======================================================= */

typedef struct cu_buf {
    uint8_t *p;
    size_t n, cap;
} cu_buf;

CU_FN void cu_put(cu_buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = (uint8_t *)realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

CU_FN void cu_byte(cu_buf *b, unsigned v) {
    uint8_t c = (uint8_t)v;
    cu_put(b, &c, 1);
}

/* An unmasked server frame; b0 = FIN|opcode byte. */
CU_FN void cu_frame_to(cu_buf *b, unsigned b0, const void *data, size_t n) {
    int k;
    cu_byte(b, b0);
    if (n < 126) {
        cu_byte(b, (unsigned)n);
    } else if (n <= 0xFFFF) {
        cu_byte(b, 126);
        cu_byte(b, (unsigned)(n >> 8));
        cu_byte(b, (unsigned)(n & 0xFF));
    } else {
        cu_byte(b, 127);
        for (k = 7; k >= 0; k--) cu_byte(b, (unsigned)(((uint64_t)n >> (8 * k)) & 0xFF));
    }
    cu_put(b, data, n);
}

CU_FN void cu_text_to(cu_buf *b, const char *json) { cu_frame_to(b, 0x81, json, strlen(json)); }

CU_FN void cu_close_to(cu_buf *b, int code) {
    uint8_t p[2];
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    cu_frame_to(b, 0x88, p, 2);
}

CU_FN void cu_push_buf(int k, cu_buf *b) {
    st_push(&X.sock[k], b->p, b->n);
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* One text frame as one recv() chunk on socket k. */
CU_FN void srv_text(int k, const char *json) {
    cu_buf b = {0, 0, 0};
    cu_text_to(&b, json);
    cu_push_buf(k, &b);
}

CU_FN void srv_ok(int k, const char *connection_id) {
    char j[512];
    snprintf(j, sizeof j,
             "{\"type\":\"connection.ok\",\"connection_id\":\"%s\",\"created_at\":\"2026-11-23T19:00:00.123456789Z\","
             "\"me\":{\"id\":\"alice\",\"name\":\"Alice\",\"role\":\"user\",\"teams\":[]}}",
             connection_id);
    srv_text(k, j);
}

CU_FN void srv_error(int k, int code, int status, const char *message) {
    char j[512];
    snprintf(j, sizeof j,
             "{\"type\":\"connection.error\",\"connection_id\":\"\",\"created_at\":\"2026-11-23T19:00:00Z\","
             "\"error\":{\"code\":%d,\"message\":\"%s\",\"StatusCode\":%d,\"duration\":\"\",\"more_info\":\"\","
             "\"details\":[]}}",
             code, message, status);
    srv_text(k, j);
}

CU_FN void srv_health(int k, const char *connection_id) {
    char j[256];
    snprintf(j, sizeof j,
             "{\"type\":\"health.check\",\"connection_id\":\"%s\",\"created_at\":\"2026-11-23T19:00:25Z\","
             "\"custom\":{}}",
             connection_id);
    srv_text(k, j);
}

CU_FN void srv_event(int k, const char *type, int seq) {
    char j[256];
    snprintf(j, sizeof j, "{\"type\":\"%s\",\"seq\":%d,\"message\":{\"user\":{\"id\":\"bob\"},\"text\":\"hi\"}}", type,
             seq);
    srv_text(k, j);
}

CU_FN void srv_close(int k, int code) {
    cu_buf b = {0, 0, 0};
    cu_close_to(&b, code);
    cu_push_buf(k, &b);
}

CU_FN void srv_ping(int k) {
    cu_buf b = {0, 0, 0};
    cu_frame_to(&b, 0x89, "p", 1);
    cu_push_buf(k, &b);
}

CU_FN void srv_eof(int k) { st_push_eof(&X.sock[k]); }

/* ==== the client's bytes ================================================== */

/* Parse socket k's capture: the upgrade request into X.req, then every
   complete masked frame into X.fr; X.fr_partial = bytes of a cut-off frame. */
CU_FN int cu_parse_sent(int k) {
    const st_transport *t = &X.sock[k];
    const char *end = cu_find(t->sent, t->sent_len, "\r\n\r\n");
    size_t off, rl;
    cu_frames_free();
    X.fr_partial = 0;
    X.req[0] = 0;
    if (!end) {
        X.fr_partial = t->sent_len;
        return 0;
    }
    rl = (size_t)(end - (const char *)t->sent) + 4;
    if (rl >= sizeof X.req) fail_msg("socket %d: request too long", k);
    memcpy(X.req, t->sent, rl);
    X.req[rl] = 0;
    off = rl;
    while (off < t->sent_len) {
        const uint8_t *p = t->sent + off;
        size_t avail = t->sent_len - off, h = 2, i;
        uint64_t len;
        uint8_t m[4];
        cu_frame *f;
        if (avail < 2) break;
        if (!(p[1] & 0x80)) fail_msg("socket %d: unmasked client frame at %zu", k, off);
        len = p[1] & 0x7F;
        if (len == 126) {
            if (avail < 4) break;
            len = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (len == 127) {
            int b;
            if (avail < 10) break;
            for (len = 0, b = 0; b < 8; b++) len = len << 8 | p[2 + b];
            h = 10;
        }
        if (avail < h + 4 + len) break;
        memcpy(m, p + h, 4);
        h += 4;
        if (X.nfr == CU_MAX_FRAMES) fail_msg("socket %d: too many client frames", k);
        f = &X.fr[X.nfr++];
        f->opcode = p[0] & 0x0F;
        f->fin = p[0] >> 7;
        f->len = (size_t)len;
        f->data = (uint8_t *)malloc((size_t)len + 1);
        if (!f->data) abort();
        for (i = 0; i < len; i++) f->data[i] = p[h + i] ^ m[i & 3];
        f->data[len] = 0;
        off += h + (size_t)len;
    }
    X.fr_partial = t->sent_len - off;
    return X.nfr;
}

/* The text frames of socket k in order (pings/pongs/close left out). */
CU_FN int cu_texts(int k, const char **out, int max) {
    int i, n = 0;
    cu_parse_sent(k);
    for (i = 0; i < X.nfr && n < max; i++)
        if (X.fr[i].opcode == STWS_OP_TEXT) out[n++] = (const char *)X.fr[i].data;
    return n;
}

CU_FN void cu_dump_texts(int k) {
    int i;
    cu_parse_sent(k);
    for (i = 0; i < X.nfr; i++)
        print_message("  sock %d frame %d op %d len %zu: %.200s\n", k, i, X.fr[i].opcode, X.fr[i].len,
                      X.fr[i].opcode == 1 ? (const char *)X.fr[i].data : "");
    if (X.fr_partial) print_message("  sock %d: %zu bytes of a partial frame\n", k, X.fr_partial);
}

/* Socket k's text frames must be exactly these strings (in order). */
CU_FN void cu_expect_texts(int k, int n, ...) {
    const char *got[CU_MAX_FRAMES];
    va_list ap;
    int i, m = cu_texts(k, got, CU_MAX_FRAMES), ok = m == n;
    va_start(ap, n);
    for (i = 0; i < n && ok; i++)
        if (strcmp(got[i], va_arg(ap, const char *)) != 0) ok = 0;
    va_end(ap);
    if (!ok) {
        print_message("socket %d: expected %d text frames, got %d:\n", k, n, m);
        va_start(ap, n);
        for (i = 0; i < n; i++) print_message("  want: %s\n", va_arg(ap, const char *));
        va_end(ap);
        cu_dump_texts(k);
        fail_msg("socket %d: text frames differ (see above)", k);
    }
}

/* ==== JWT reference (independent of the library) ========================== */

static const char CU_B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

CU_FN size_t cu_b64url(const unsigned char *in, size_t n, char *out) {
    size_t i, o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = CU_B64URL[(acc >> bits) & 63];
        }
    }
    if (bits) out[o++] = CU_B64URL[(acc << (6 - bits)) & 63];
    out[o] = 0;
    return o;
}

/* header.payload.signature for {"iat":iat,"user_id":user} keyed with secret. */
CU_FN void cu_expected_jwt(const char *secret, const char *user, int64_t iat, char *out, size_t cap) {
    char hdr[64], pay[512], claims[256], signing[1024];
    unsigned char mac[32];
    char sig[64];
    const char *h = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    snprintf(claims, sizeof claims, "{\"iat\":%lld,\"user_id\":\"%s\"}", (long long)iat, user);
    cu_b64url((const unsigned char *)h, strlen(h), hdr);
    cu_b64url((const unsigned char *)claims, strlen(claims), pay);
    snprintf(signing, sizeof signing, "%s.%s", hdr, pay);
    if (oracle_hmac_sha256((const unsigned char *)secret, strlen(secret),
                           (const unsigned char *)signing, strlen(signing), mac) != 0)
        fail_msg("HMAC failed");
    cu_b64url(mac, 32, sig);
    snprintf(out, cap, "%s.%s", signing, sig);
}

#endif /* CLIENT_UTIL_H */
