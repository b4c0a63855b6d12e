/* stream_ws_test.h - test kit for stream_ws.h users - MIT license (see stream_ws.h)

   WHAT
       Unit-test your Stream event handling with no sockets, no threads and
       no sleeping: the same scripted transport and fake clock that
       stream_ws.h's own tests use, made public.
         stws_test_clock      a clock you advance by hand (stws_clock hook)
         stws_test_random     a deterministic random source (stws_random
                              hook); pin the backoff draw to get exact delays
         stws_test_transport  an in-memory stws_transport: the bytes your
                              client writes are captured and decoded back into
                              frames (unmasked payload, opcode), so a test can
                              assert what the app sent; the bytes the "server"
                              sends are a script: data, would-block, EOF,
                              errors, partial writes, failed opens
         stws_test_accept, stws_test_connection_ok, stws_test_event, ...
                              script a Stream coordinator: the 101 answer with
                              the right Sec-WebSocket-Accept (RFC 6455 §4.2.2),
                              connection.ok, events, health checks,
                              connection.error codes, close frames, drops,
                              fragmented messages (§5.4)

   HOW TO INCLUDE
       In exactly one file of your test program, after stream_ws.h's
       implementation (or in the same file that defines it):
           #define STREAM_WS_IMPLEMENTATION        // if not done elsewhere
           #define STREAM_WS_TEST_IMPLEMENTATION
           #include "stream_ws_test.h"             // includes stream_ws.h
       Everywhere else just #include "stream_ws_test.h".  C99 or C++11; no
       test framework needed; no globals (every object is yours).  The kit
       allocates with malloc/realloc (test-side memory, never the client's
       allocator) and aborts if that fails.  STWS_TEST_API sets the linkage
       (default: that of STWS_API, so STWS_STATIC makes it static too).

   HOW A SCRIPT RUNS
       Inbound bytes are a queue of chunks; each recv() hands out bytes of
       the first chunk (at most recv_max), a pushed block answers one
       recv() with STWS_WANT_READ, EOF and errors are sticky.  An empty queue
       answers STWS_WANT_READ.  stws_test_next_socket() marks where the next
       connection's script begins: recv() never reads past the mark, and
       close() drops the rest of the current connection's script (a
       reconnect starts clean).  Server helpers push at the end of the queue.
       Each open() starts a new capture: the client's upgrade request, then
       its frames, which stws_test_next_frame()/stws_test_next_text() decode
       in order.  The 101 answer (stws_test_accept, or auto_accept for every
       connection) goes in front of the connection's script as soon as the
       request is complete, so connection.ok and events can be scripted
       before the client has even connected.

   TL;DR: A UNIT TEST OF YOUR HANDLER

       static void on_event(stws_client *c, const stws_client_event *ev, void *u) {
           my_handler((my_state *)u, c, ev);              // the code under test
       }
       ...
       stws_test_clock clk; stws_test_random rnd; stws_test_transport t;
       stws_test_clock_init(&clk, 1000, 1767225600);
       stws_test_random_init(&rnd, 42);
       stws_test_transport_init(&t);
       t.auto_accept = 1;                                 // every upgrade gets its 101
       stws_client_desc d; memset(&d, 0, sizeof d);
       d.url = "ws://chat.test/connect"; d.api_key = "k"; d.user_id = "alice";
       d.token = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoiYWxpY2UifQ.c2ln";
       d.conn.transport = stws_test_transport_hook(&t);
       d.clock = stws_test_clock_hook(&clk);
       d.random = stws_test_random_hook(&rnd);
       stws_client *c = stws_client_create(&d);
       stws_test_connection_ok(&t, "conn-1");             // scripted before connecting
       stws_test_event(&t, "{\"type\":\"message.new\",\"message\":{\"text\":\"hi\"}}");
       stws_client_connect(c);
       stws_test_settle(c, &t, on_event, &state);         // CONNECTED, then the event
       assert(strstr(stws_test_auth(&t), "\"token\":"));  // what the client sent
       stws_client_send(c, "{\"type\":\"typing.start\"}", 23);
       stws_test_settle(c, &t, on_event, &state);
       stws_test_next_text(&t, NULL);                     // the auth message, then:
       assert(!strcmp(stws_test_next_text(&t, NULL), "{\"type\":\"typing.start\"}"));
       stws_test_drop(&t);                                // the server vanishes:
       stws_test_settle(c, &t, on_event, &state);         // DISCONNECTED, RECONNECTING
       stws_test_connection_ok(&t, "conn-2");             // the next socket's answer
       stws_test_clock_advance(&clk, 2500);               // past the backoff (§5)
       stws_test_settle(c, &t, on_event, &state);         // RECONNECTED
       stws_client_destroy(c); stws_test_transport_free(&t);

   (examples/test_kit_example.c is a complete, commented version.) */
#ifndef STREAM_WS_TEST_H
#define STREAM_WS_TEST_H

/* stream_ws.h first: with STREAM_WS_IMPLEMENTATION it sets feature macros
   that must precede every system header */
#include "stream_ws.h"
#include <stddef.h>
#include <stdint.h>

#ifndef STWS_TEST_API
#  define STWS_TEST_API STWS_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ==== fake clock ========================================================== */

/* now_ms is the monotonic clock every client timer uses; unix_s (JWT iat/exp)
   moves with it, a second per 1000 ms advanced.  Both are plain fields: a
   test may also set them directly. */
typedef struct stws_test_clock {
    uint64_t now_ms;
    int64_t unix_s;
    uint32_t sub_ms;           /* advanced ms not yet a whole second (private) */
} stws_test_clock;

/* Start the clock at now_ms (monotonic) and unix_s (wall clock). */
STWS_TEST_API void stws_test_clock_init(stws_test_clock *clk, uint64_t now_ms, int64_t unix_s);
/* Move both clocks forward by ms. */
STWS_TEST_API void stws_test_clock_advance(stws_test_clock *clk, uint64_t ms);
/* The stws_clock for a desc (reads clk; clk must outlive the client). */
STWS_TEST_API stws_clock stws_test_clock_hook(stws_test_clock *clk);

/* ==== deterministic random ================================================ */

/* xorshift64 bytes: the same seed gives the same handshake keys, masks and
   backoff delays in every run.  The client draws the backoff delay as one
   4-byte value (delay = lo + value % (hi - lo), PROTOCOL.md §5); pin it to
   get an exact delay: 0 gives the window's lower edge. */
typedef struct stws_test_random {
    uint64_t state;
    int pinned;                /* 1: every 4-byte draw returns pin */
    uint32_t pin;
    unsigned long fills;       /* calls so far */
    unsigned long draws4;      /* 4-byte calls so far (backoff delays) */
} stws_test_random;

/* Seed the generator (seed 0 is replaced by a fixed non-zero seed). */
STWS_TEST_API void stws_test_random_init(stws_test_random *rnd, uint64_t seed);
/* Every later 4-byte draw returns value (the backoff delay's draw). */
STWS_TEST_API void stws_test_random_pin_u32(stws_test_random *rnd, uint32_t value);
/* The stws_random for a desc. */
STWS_TEST_API stws_random stws_test_random_hook(stws_test_random *rnd);

/* ==== scripted transport ================================================== */

typedef struct stws_test_chunk {
    int kind, code;            /* private */
    size_t off, len, pos;
} stws_test_chunk;

typedef struct stws_test_transport {
    /* knobs: set after stws_test_transport_init(), any time */
    size_t recv_max;           /* 0 = no cap; n: a recv() hands out at most n bytes */
    size_t send_max;           /* 0 = accept all; n: partial writes of at most n bytes */
    int send_blocks;           /* the next this many send() calls return STWS_WANT_WRITE */
    int send_result;           /* 0 = normal; negative: every send() fails with it */
    int open_result;           /* 0 = open() succeeds; negative: it fails with this */
    int open_wants;            /* the next this many open() calls return
                                  STWS_WANT_WRITE (a connect in progress); counts down */
    int auto_accept;           /* 1: answer every connection's upgrade with a
                                  valid 101; default 0 (see stws_test_accept) */

    /* what the library did: read, do not write */
    int opens, closes, sends, recvs;
    int is_open;
    int misuse;                /* send/recv when not open, open when open, len 0 */
    char host[256];            /* of the last open() */
    unsigned port;
    uint64_t bytes_sent, bytes_received;   /* over every connection */

    /* private */
    stws_test_chunk *chunks;
    size_t nchunks, chunks_cap, next;
    unsigned char *pool;
    size_t pool_len, pool_cap;
    unsigned char *out;        /* this connection's captured client bytes */
    size_t out_len, out_cap, out_pos, req_len;
    int answered, accept_pending;
    char *req, *auth;
    unsigned char *frame, *msg;
    size_t frame_cap, msg_cap;
} stws_test_transport;

/* Empty script, everything accepted, nothing auto-answered. */
STWS_TEST_API void stws_test_transport_init(stws_test_transport *t);
/* Free the script and the captures (t can be initialised again). */
STWS_TEST_API void stws_test_transport_free(stws_test_transport *t);
/* The stws_transport for a desc (no handle: the client never polls an fd). */
STWS_TEST_API stws_transport stws_test_transport_hook(stws_test_transport *t);

/* -- inbound: what the server sends (appended to the script) -- */

/* Raw bytes, returned by recv() as one chunk (never merged with others). */
STWS_TEST_API void stws_test_push(stws_test_transport *t, const void *data, size_t len);
/* One recv() answers STWS_WANT_READ (nothing arrived yet). */
STWS_TEST_API void stws_test_push_block(stws_test_transport *t);
/* recv() returns 0 (the peer closed the stream) from here on. */
STWS_TEST_API void stws_test_push_eof(stws_test_transport *t);
/* recv() returns code (negative, e.g. STWS_ERR_IO) from here on. */
STWS_TEST_API void stws_test_push_error(stws_test_transport *t, int code);
/* What follows belongs to the next connection (see HOW A SCRIPT RUNS). */
STWS_TEST_API void stws_test_next_socket(stws_test_transport *t);
/* Chunks of the script not yet (fully) read, up to the next socket mark. */
STWS_TEST_API size_t stws_test_unread(const stws_test_transport *t);

/* -- the Stream coordinator -- */

/* Answer the open connection's upgrade (with none open: the next one's)
   with a valid 101 (Sec-WebSocket-Accept computed from the client's key), in
   front of its script: now if the request is complete, else as soon as it
   is.  0, or -1 if already answered or the request has no key. */
STWS_TEST_API int stws_test_accept(stws_test_transport *t);
/* A whole HTTP response instead (e.g. "HTTP/1.1 503 Busy\r\n\r\n"), pushed
   like any data. */
STWS_TEST_API void stws_test_push_http(stws_test_transport *t, const char *response);
/* One server frame: b0 = FIN bit | RSV | opcode (0x81 = a final text frame),
   unmasked as a server's must be (§5.1), the shortest length encoding. */
STWS_TEST_API void stws_test_frame(stws_test_transport *t, unsigned b0, const void *data, size_t len);
/* A message split into frames of at most piece bytes (§5.4): opcode, then
   continuations, FIN on the last; all in one chunk. */
STWS_TEST_API void stws_test_fragments(stws_test_transport *t, int opcode, const void *data, size_t len,
                                       size_t piece);
/* A text frame with this JSON (copied as given: the kit does not check it). */
STWS_TEST_API void stws_test_event(stws_test_transport *t, const char *json);
/* {"type":"connection.ok","connection_id":id,...,"me":{...}} (id inserted verbatim). */
STWS_TEST_API void stws_test_connection_ok(stws_test_transport *t, const char *connection_id);
/* {"type":"health.check","connection_id":id,...}. */
STWS_TEST_API void stws_test_health_check(stws_test_transport *t, const char *connection_id);
/* {"type":"connection.error","error":{"code":code,"StatusCode":status,"message":message}}. */
STWS_TEST_API void stws_test_connection_error(stws_test_transport *t, int code, int status, const char *message);
/* A close frame with this status code (0 = no status, an empty close).  The
   client answers it and waits (its close timeout) for the server to close
   TCP, as §7.1.1 has the server do: follow it with stws_test_drop(). */
STWS_TEST_API void stws_test_close(stws_test_transport *t, int code);
/* A ping with this payload (at most 125 bytes, §5.5). */
STWS_TEST_API void stws_test_ping(stws_test_transport *t, const void *data, size_t len);
/* The server goes away without a close frame: EOF. */
STWS_TEST_API void stws_test_drop(stws_test_transport *t);
/* The connection is reset: recv() fails with STWS_ERR_IO. */
STWS_TEST_API void stws_test_reset(stws_test_transport *t);

/* -- outbound: what the client sent on the current connection -- */

/* A client frame as decoded from the capture (the payload unmasked). */
typedef struct stws_test_frame_info {
    int opcode;                /* STWS_OP_TEXT, STWS_OP_CLOSE, ... */
    int fin, rsv;              /* FIN bit; RSV1-3 bits (0 unless broken) */
    int masked;                /* 1 as a client's must be (§5.3) */
    const unsigned char *data; /* unmasked payload, NUL-terminated; valid until
                                  the next decode call on t */
    size_t len;
    int close_code;            /* CLOSE: the status (0 if none) */
} stws_test_frame_info;

/* The current connection's upgrade request (NUL-terminated), NULL until complete. */
STWS_TEST_API const char *stws_test_request(stws_test_transport *t);
/* The next complete client frame: 1, or 0 if none (yet). */
STWS_TEST_API int stws_test_next_frame(stws_test_transport *t, stws_test_frame_info *f);
/* The next complete text message (continuations joined; pings, pongs and
   closes skipped), NUL-terminated, its length in *len (may be NULL); NULL if
   none (yet).  The first one on a connection is the auth message. */
STWS_TEST_API const char *stws_test_next_text(stws_test_transport *t, size_t *len);
/* The current connection's first text frame (the auth message), whatever
   has been read; NULL if not sent yet.  Valid until the next open(). */
STWS_TEST_API const char *stws_test_auth(stws_test_transport *t);
/* Captured bytes of this connection not yet decoded (a cut-off frame). */
STWS_TEST_API size_t stws_test_unread_sent(const stws_test_transport *t);

/* -- pumping -- */

/* What a game loop does, until nothing moves: stws_client_step(), then every
   event stws_client_next_event() has, each handed to on_event (NULL: dropped;
   in pull mode the client acts on connection.ok and health.check when they
   are pulled, so they must be).  Stops when for 3 steps the transport shows
   no progress, no event came and no timer is due (the clock does not move).
   The number of steps, or -1 if it never settles within 100000 steps. */
STWS_TEST_API int stws_test_settle(stws_client *client, const stws_test_transport *t,
                                   stws_client_event_fn on_event, void *user_data);

#ifdef __cplusplus
} /* extern "C" */
#endif
#endif /* STREAM_WS_TEST_H */

/* ========================================================================= */
#ifdef STREAM_WS_TEST_IMPLEMENTATION
#ifndef STREAM_WS_TEST_IMPLEMENTATION_DONE
#define STREAM_WS_TEST_IMPLEMENTATION_DONE

#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#  define STWS_TEST__FN static __attribute__((unused))
#else
#  define STWS_TEST__FN static
#endif

enum { STWS_TEST__DATA, STWS_TEST__BLOCK, STWS_TEST__EOF, STWS_TEST__ERROR, STWS_TEST__MARK };

#ifdef __cplusplus
extern "C" {
#endif

/* ---- clock ---- */

STWS_TEST_API void stws_test_clock_init(stws_test_clock *clk, uint64_t now_ms, int64_t unix_s) {
    clk->now_ms = now_ms;
    clk->unix_s = unix_s;
    clk->sub_ms = 0;
}

STWS_TEST_API void stws_test_clock_advance(stws_test_clock *clk, uint64_t ms) {
    uint64_t sub = clk->sub_ms + ms;
    clk->now_ms += ms;
    clk->unix_s += (int64_t)(sub / 1000);
    clk->sub_ms = (uint32_t)(sub % 1000);
}

STWS_TEST__FN uint64_t stws_test__now(void *u) { return ((stws_test_clock *)u)->now_ms; }
STWS_TEST__FN int64_t stws_test__unix(void *u) { return ((stws_test_clock *)u)->unix_s; }

STWS_TEST_API stws_clock stws_test_clock_hook(stws_test_clock *clk) {
    stws_clock c;
    memset(&c, 0, sizeof c);
    c.now_ms = stws_test__now;
    c.unix_s = stws_test__unix;
    c.user_data = clk;
    return c;
}

/* ---- random ---- */

STWS_TEST_API void stws_test_random_init(stws_test_random *rnd, uint64_t seed) {
    memset(rnd, 0, sizeof *rnd);
    rnd->state = seed ? seed : UINT64_C(0x2545F4914F6CDD1D);
}

STWS_TEST_API void stws_test_random_pin_u32(stws_test_random *rnd, uint32_t value) {
    rnd->pinned = 1;
    rnd->pin = value;
}

STWS_TEST__FN int stws_test__fill(void *buf, size_t len, void *u) {
    stws_test_random *r = (stws_test_random *)u;
    unsigned char *p = (unsigned char *)buf;
    size_t i;
    r->fills++;
    if (len == 4) {
        r->draws4++;
        if (r->pinned) {
            memcpy(buf, &r->pin, 4);
            return 0;
        }
    }
    for (i = 0; i < len; i++) {
        r->state ^= r->state << 13;
        r->state ^= r->state >> 7;
        r->state ^= r->state << 17;
        p[i] = (unsigned char)(r->state >> 31);
    }
    return 0;
}

STWS_TEST_API stws_random stws_test_random_hook(stws_test_random *rnd) {
    stws_random r;
    r.fill = stws_test__fill;
    r.user_data = rnd;
    return r;
}

/* ---- memory and strings ---- */

STWS_TEST__FN void *stws_test__grow(void *p, size_t *cap, size_t need, size_t elem) {
    size_t c = *cap ? *cap : 64;
    if (need <= *cap) return p;
    while (c < need) c *= 2;
    p = realloc(p, c * elem);
    if (!p) abort();
    *cap = c;
    return p;
}

/* A small string builder (no stdio: the kit builds in STWS_NO_STDIO sets too). */
typedef struct stws_test__sb {
    char *p;
    size_t n, cap;
} stws_test__sb;

STWS_TEST__FN void stws_test__sb_put(stws_test__sb *b, const char *s, size_t n) {
    b->p = (char *)stws_test__grow(b->p, &b->cap, b->n + n + 1, 1);
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

STWS_TEST__FN void stws_test__sb_str(stws_test__sb *b, const char *s) { stws_test__sb_put(b, s ? s : "", s ? strlen(s) : 0); }

STWS_TEST__FN void stws_test__sb_int(stws_test__sb *b, long v) {
    char d[24];
    int i = (int)sizeof d;
    unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
    do {
        d[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) d[--i] = '-';
    stws_test__sb_put(b, d + i, sizeof d - (size_t)i);
}

STWS_TEST__FN const unsigned char *stws_test__find(const unsigned char *h, size_t n, const char *needle) {
    size_t m = strlen(needle), i;
    if (!h) return NULL;
    for (i = 0; i + m <= n; i++)
        if (memcmp(h + i, needle, m) == 0) return h + i;
    return NULL;
}

/* ---- transport: script ---- */

STWS_TEST_API void stws_test_transport_init(stws_test_transport *t) { memset(t, 0, sizeof *t); }

STWS_TEST_API void stws_test_transport_free(stws_test_transport *t) {
    free(t->chunks);
    free(t->pool);
    free(t->out);
    free(t->req);
    free(t->auth);
    free(t->frame);
    free(t->msg);
    memset(t, 0, sizeof *t);
}

STWS_TEST__FN stws_test_chunk *stws_test__add(stws_test_transport *t, int kind) {
    stws_test_chunk *c;
    t->chunks = (stws_test_chunk *)stws_test__grow(t->chunks, &t->chunks_cap, t->nchunks + 1, sizeof *c);
    c = &t->chunks[t->nchunks++];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    return c;
}

STWS_TEST_API void stws_test_push(stws_test_transport *t, const void *data, size_t len) {
    stws_test_chunk *c;
    t->pool = (unsigned char *)stws_test__grow(t->pool, &t->pool_cap, t->pool_len + len, 1);
    if (len) memcpy(t->pool + t->pool_len, data, len);
    c = stws_test__add(t, STWS_TEST__DATA);
    c->off = t->pool_len;
    c->len = len;
    t->pool_len += len;
}

STWS_TEST_API void stws_test_push_block(stws_test_transport *t) { (void)stws_test__add(t, STWS_TEST__BLOCK); }
STWS_TEST_API void stws_test_push_eof(stws_test_transport *t) { (void)stws_test__add(t, STWS_TEST__EOF); }
STWS_TEST_API void stws_test_push_error(stws_test_transport *t, int code) {
    stws_test__add(t, STWS_TEST__ERROR)->code = code;
}
STWS_TEST_API void stws_test_next_socket(stws_test_transport *t) { (void)stws_test__add(t, STWS_TEST__MARK); }

STWS_TEST_API size_t stws_test_unread(const stws_test_transport *t) {
    size_t i, n = 0;
    for (i = t->next; i < t->nchunks && t->chunks[i].kind != STWS_TEST__MARK; i++)
        n += !(t->chunks[i].kind == STWS_TEST__DATA && t->chunks[i].pos == t->chunks[i].len);
    return n;
}

/* Push data, then move that chunk to the front of what is unread (the 101
   comes before anything scripted for the connection). */
STWS_TEST__FN void stws_test__push_front(stws_test_transport *t, const void *data, size_t len) {
    stws_test_chunk c;
    stws_test_push(t, data, len);
    c = t->chunks[t->nchunks - 1];
    memmove(&t->chunks[t->next + 1], &t->chunks[t->next], (t->nchunks - 1 - t->next) * sizeof c);
    t->chunks[t->next] = c;
}

/* ---- transport: the coordinator ---- */

/* The 101 for the captured request (§4.2.2): -1 if the request has no key. */
STWS_TEST__FN int stws_test__answer(stws_test_transport *t) {
    const unsigned char *key = stws_test__find(t->out, t->req_len, "\r\nSec-WebSocket-Key: ");
    char k24[25], acc[STWS_HANDSHAKE_ACCEPT_SIZE];
    stws_test__sb b = {NULL, 0, 0};
    if (!key || (size_t)(key - t->out) + 21 + 24 > t->req_len) return -1;
    memcpy(k24, key + 21, 24);
    k24[24] = 0;
    if (stws_handshake_accept(k24, acc) != STWS_OK) return -1;
    stws_test__sb_str(&b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: ");
    stws_test__sb_str(&b, acc);
    stws_test__sb_str(&b, "\r\n\r\n");
    stws_test__push_front(t, b.p, b.n);
    free(b.p);
    t->answered = 1;
    return 0;
}

STWS_TEST_API int stws_test_accept(stws_test_transport *t) {
    if (t->is_open && t->req_len) return t->answered ? -1 : stws_test__answer(t);
    t->accept_pending = 1; /* the open connection's request, or the next one's */
    return 0;
}

STWS_TEST_API void stws_test_push_http(stws_test_transport *t, const char *response) {
    stws_test_push(t, response, strlen(response));
}

STWS_TEST_API void stws_test_frame(stws_test_transport *t, unsigned b0, const void *data, size_t len) {
    unsigned char h[10];
    size_t hl = 2;
    int k;
    stws_test__sb b = {NULL, 0, 0};
    h[0] = (unsigned char)b0;
    if (len < 126) {
        h[1] = (unsigned char)len;
    } else if (len <= 0xFFFF) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        hl = 4;
    } else {
        h[1] = 127;
        for (k = 0; k < 8; k++) h[2 + k] = (unsigned char)((uint64_t)len >> (8 * (7 - k)));
        hl = 10;
    }
    stws_test__sb_put(&b, (const char *)h, hl);
    stws_test__sb_put(&b, (const char *)data, len);
    stws_test_push(t, b.p, b.n);
    free(b.p);
}

STWS_TEST_API void stws_test_fragments(stws_test_transport *t, int opcode, const void *data, size_t len,
                                       size_t piece) {
    const unsigned char *p = (const unsigned char *)data;
    size_t start = t->nchunks, off = 0, first = t->pool_len;
    if (!piece) piece = len ? len : 1;
    do {
        size_t n = len - off < piece ? len - off : piece;
        unsigned b0 = (unsigned)(off == 0 ? opcode : 0) | (off + n == len ? 0x80u : 0u);
        stws_test_frame(t, b0, p + off, n);
        off += n;
    } while (off < len);
    /* one chunk: merge the frames just pushed (they are contiguous in the pool) */
    t->chunks[start].off = first;
    t->chunks[start].len = t->pool_len - first;
    t->nchunks = start + 1;
}

STWS_TEST_API void stws_test_event(stws_test_transport *t, const char *json) {
    stws_test_frame(t, 0x81, json, strlen(json));
}

STWS_TEST__FN void stws_test__typed(stws_test_transport *t, const char *head, const char *id, const char *tail) {
    stws_test__sb b = {NULL, 0, 0};
    stws_test__sb_str(&b, head);
    stws_test__sb_str(&b, id);
    stws_test__sb_str(&b, tail);
    stws_test_event(t, b.p);
    free(b.p);
}

STWS_TEST_API void stws_test_connection_ok(stws_test_transport *t, const char *connection_id) {
    stws_test__typed(t, "{\"type\":\"connection.ok\",\"connection_id\":\"", connection_id,
                     "\",\"created_at\":\"2026-01-01T00:00:00.000000000Z\","
                     "\"me\":{\"id\":\"test-user\",\"role\":\"user\",\"teams\":[]}}");
}

STWS_TEST_API void stws_test_health_check(stws_test_transport *t, const char *connection_id) {
    stws_test__typed(t, "{\"type\":\"health.check\",\"connection_id\":\"", connection_id,
                     "\",\"created_at\":\"2026-01-01T00:00:25Z\",\"custom\":{}}");
}

STWS_TEST_API void stws_test_connection_error(stws_test_transport *t, int code, int status, const char *message) {
    stws_test__sb b = {NULL, 0, 0};
    stws_test__sb_str(&b, "{\"type\":\"connection.error\",\"connection_id\":\"\",\"created_at\":\"2026-01-01T00:00:00Z\","
                          "\"error\":{\"code\":");
    stws_test__sb_int(&b, code);
    stws_test__sb_str(&b, ",\"message\":\"");
    stws_test__sb_str(&b, message);
    stws_test__sb_str(&b, "\",\"StatusCode\":");
    stws_test__sb_int(&b, status);
    stws_test__sb_str(&b, ",\"duration\":\"\",\"more_info\":\"\",\"details\":[]}}");
    stws_test_event(t, b.p);
    free(b.p);
}

STWS_TEST_API void stws_test_close(stws_test_transport *t, int code) {
    unsigned char p[2];
    p[0] = (unsigned char)(code >> 8);
    p[1] = (unsigned char)code;
    stws_test_frame(t, 0x88, p, code ? 2 : 0);
}

STWS_TEST_API void stws_test_ping(stws_test_transport *t, const void *data, size_t len) {
    stws_test_frame(t, 0x89, data, len);
}

STWS_TEST_API void stws_test_drop(stws_test_transport *t) { stws_test_push_eof(t); }
STWS_TEST_API void stws_test_reset(stws_test_transport *t) { stws_test_push_error(t, STWS_ERR_IO); }

/* ---- transport: the vtable ---- */

STWS_TEST__FN int stws_test__open(void *ctx, const char *host, uint16_t port) {
    stws_test_transport *t = (stws_test_transport *)ctx;
    size_t n = host ? strlen(host) : 0;
    if (t->is_open) t->misuse++;
    t->opens++;
    if (n >= sizeof t->host) n = sizeof t->host - 1;
    if (n) memcpy(t->host, host, n);
    t->host[n] = 0;
    t->port = port;
    if (t->open_wants > 0) {
        t->open_wants--;
        return STWS_WANT_WRITE;
    }
    if (t->open_result) return t->open_result;
    /* a new connection: a new capture */
    t->is_open = 1;
    t->out_len = t->out_pos = t->req_len = 0;
    t->answered = 0;
    if (t->req) t->req[0] = 0;
    if (t->auth) {
        free(t->auth);
        t->auth = NULL;
    }
    return 0;
}

STWS_TEST__FN int stws_test__send(void *ctx, const unsigned char *buf, size_t len) {
    stws_test_transport *t = (stws_test_transport *)ctx;
    size_t n = len;
    t->sends++;
    if (!t->is_open || len == 0) t->misuse++;
    if (t->send_result) return t->send_result;
    if (t->send_blocks > 0) {
        t->send_blocks--;
        return STWS_WANT_WRITE;
    }
    if (t->send_max && n > t->send_max) n = t->send_max;
    t->out = (unsigned char *)stws_test__grow(t->out, &t->out_cap, t->out_len + n, 1);
    memcpy(t->out + t->out_len, buf, n);
    t->out_len += n;
    t->bytes_sent += n;
    if (!t->req_len) {
        const unsigned char *end = stws_test__find(t->out, t->out_len, "\r\n\r\n");
        if (end) {
            t->req_len = t->out_pos = (size_t)(end - t->out) + 4;
            if (t->auto_accept || t->accept_pending) {
                t->accept_pending = 0;
                (void)stws_test__answer(t);
            }
        }
    }
    return (int)n;
}

STWS_TEST__FN int stws_test__recv(void *ctx, unsigned char *buf, size_t len) {
    stws_test_transport *t = (stws_test_transport *)ctx;
    stws_test_chunk *c;
    size_t n;
    t->recvs++;
    if (!t->is_open || len == 0) t->misuse++;
    while (t->next < t->nchunks && t->chunks[t->next].kind == STWS_TEST__DATA &&
           t->chunks[t->next].pos == t->chunks[t->next].len)
        t->next++;
    if (t->next == t->nchunks) return STWS_WANT_READ;
    c = &t->chunks[t->next];
    switch (c->kind) {
    case STWS_TEST__BLOCK: t->next++; return STWS_WANT_READ;
    case STWS_TEST__EOF: return 0;
    case STWS_TEST__ERROR: return c->code;
    case STWS_TEST__MARK: return STWS_WANT_READ;
    default: break;
    }
    n = c->len - c->pos;
    if (n > len) n = len;
    if (t->recv_max && n > t->recv_max) n = t->recv_max;
    memcpy(buf, t->pool + c->off + c->pos, n);
    c->pos += n;
    if (c->pos == c->len) t->next++;
    t->bytes_received += n;
    return (int)n;
}

STWS_TEST__FN void stws_test__close(void *ctx) {
    stws_test_transport *t = (stws_test_transport *)ctx;
    t->closes++;
    t->is_open = 0;
    t->accept_pending = 0;
    /* the stream is gone, and with it what it had not delivered */
    while (t->next < t->nchunks && t->chunks[t->next].kind != STWS_TEST__MARK) t->next++;
    if (t->next < t->nchunks) t->next++; /* past the mark: the next connection's script */
}

STWS_TEST_API stws_transport stws_test_transport_hook(stws_test_transport *t) {
    stws_transport tr;
    memset(&tr, 0, sizeof tr);
    tr.open = stws_test__open;
    tr.send = stws_test__send;
    tr.recv = stws_test__recv;
    tr.close = stws_test__close;
    tr.ctx = t;
    return tr;
}

/* ---- transport: decoding the client's bytes ---- */

STWS_TEST_API const char *stws_test_request(stws_test_transport *t) {
    if (!t->req_len) return NULL;
    t->req = (char *)realloc(t->req, t->req_len + 1);
    if (!t->req) abort();
    memcpy(t->req, t->out, t->req_len);
    t->req[t->req_len] = 0;
    return t->req;
}

/* Decode the frame at *pos (RFC 6455 §5.2) into t->frame: 1 and *pos moved
   past it, or 0 if it is not complete yet. */
STWS_TEST__FN int stws_test__decode(stws_test_transport *t, size_t *pos, stws_test_frame_info *f) {
    const unsigned char *p = t->out + *pos;
    size_t avail = t->out_len - *pos, h = 2, i;
    uint64_t len;
    unsigned char m[4] = {0, 0, 0, 0};
    if (!t->req_len || *pos >= t->out_len || avail < 2) return 0;
    len = p[1] & 0x7F;
    if (len == 126) {
        if (avail < 4) return 0;
        len = (uint64_t)p[2] << 8 | p[3];
        h = 4;
    } else if (len == 127) {
        int k;
        if (avail < 10) return 0;
        for (len = 0, k = 0; k < 8; k++) len = len << 8 | p[2 + k];
        h = 10;
    }
    if (p[1] & 0x80) {
        if (avail < h + 4) return 0;
        memcpy(m, p + h, 4);
        h += 4;
    }
    if (len > avail - h) return 0;
    t->frame = (unsigned char *)stws_test__grow(t->frame, &t->frame_cap, (size_t)len + 1, 1);
    for (i = 0; i < len; i++) t->frame[i] = p[h + i] ^ m[i & 3];
    t->frame[len] = 0;
    memset(f, 0, sizeof *f);
    f->opcode = p[0] & 0x0F;
    f->fin = p[0] >> 7;
    f->rsv = (p[0] >> 4) & 7;
    f->masked = p[1] >> 7;
    f->data = t->frame;
    f->len = (size_t)len;
    if (f->opcode == STWS_OP_CLOSE && len >= 2) f->close_code = t->frame[0] << 8 | t->frame[1];
    *pos += h + (size_t)len;
    return 1;
}

STWS_TEST_API int stws_test_next_frame(stws_test_transport *t, stws_test_frame_info *f) {
    return stws_test__decode(t, &t->out_pos, f);
}

STWS_TEST_API const char *stws_test_next_text(stws_test_transport *t, size_t *len) {
    size_t pos = t->out_pos, n = 0;
    int in_msg = 0;
    stws_test_frame_info f;
    while (stws_test__decode(t, &pos, &f)) {
        if (f.opcode == STWS_OP_TEXT || (in_msg && f.opcode == STWS_OP_CONTINUATION)) {
            if (f.opcode == STWS_OP_TEXT) n = 0;
            in_msg = 1;
            t->msg = (unsigned char *)stws_test__grow(t->msg, &t->msg_cap, n + f.len + 1, 1);
            memcpy(t->msg + n, f.data, f.len);
            n += f.len;
            t->msg[n] = 0;
            if (f.fin) {
                t->out_pos = pos;
                if (len) *len = n;
                return (const char *)t->msg;
            }
        } else if (!in_msg) {
            t->out_pos = pos; /* a control frame (or a stray frame) before the message: skipped */
        }
    }
    return NULL; /* nothing, or a message whose last frame has not been written yet */
}

STWS_TEST_API const char *stws_test_auth(stws_test_transport *t) {
    size_t pos = t->req_len;
    stws_test_frame_info f;
    if (t->auth) return t->auth;
    while (stws_test__decode(t, &pos, &f)) {
        if (f.opcode != STWS_OP_TEXT) continue;
        t->auth = (char *)malloc(f.len + 1);
        if (!t->auth) abort();
        memcpy(t->auth, f.data, f.len + 1);
        return t->auth;
    }
    return NULL;
}

STWS_TEST_API size_t stws_test_unread_sent(const stws_test_transport *t) {
    return t->req_len ? t->out_len - t->out_pos : t->out_len;
}

/* ---- pumping ---- */

STWS_TEST_API int stws_test_settle(stws_client *client, const stws_test_transport *t,
                                   stws_client_event_fn on_event, void *user_data) {
    uint64_t last = 0;
    int i, idle = 0;
    for (i = 0; i < 100000; i++) {
        uint64_t now;
        stws_client_event ev;
        int events = 0;
        (void)stws_client_step(client);
        while (stws_client_next_event(client, &ev)) {
            events++;
            if (on_event) on_event(client, &ev, user_data);
        }
        now = t->bytes_sent * 31u + t->bytes_received * 17u + (uint64_t)t->opens * 7919u +
              (uint64_t)t->closes * 104729u + (uint64_t)t->next * 131u + (uint64_t)t->sends * 3u;
        /* a timer due now (timeout 0) is work left even when no byte moved */
        if (i > 0 && now == last && !events && stws_client_timeout(client) != 0) {
            if (++idle == 3) return i + 1;
        } else {
            idle = 0;
        }
        last = now;
    }
    return -1;
}

#ifdef __cplusplus
} /* extern "C" */
#endif
#endif /* STREAM_WS_TEST_IMPLEMENTATION_DONE */
#endif /* STREAM_WS_TEST_IMPLEMENTATION */
