/* libFuzzer target: the whole Stream client (stws_client_*) against a fake
   server, with a fake clock and a scripted, misbehaving transport.  The
   input is a program: each op byte (and its argument bytes) is one of

     step(s), move the fake clock, send a message, server frames on the
     current socket (connection.ok with an id, an event, health.check,
     connection.error with a code, a close frame, a ping, a fragmented event,
     filtered garbage), end the socket's stream (EOF or an error), change
     the transport's behaviour (WANT_WRITE/WANT_READ at random, partial
     writes, failing writes, failing or slow opens, upgrade answers), pull
     events, stws_client_close(), stws_client_connect(), and destroy and
     re-create the client (pull or push delivery, a small queue limit).

   The transport's random behaviour comes from a PRNG the input seeds, so a
   saved input replays exactly.

   The oracle (a violation prints what and traps):
     - every message stws_client_send() accepted (STWS_OK) is written in
       full exactly once, in the order of the sends, on some socket of the
       same client: the fake server parses each socket's masked frames and
       sees the messages as a prefix of the accepted ones; a frame cut off
       by a failing socket is not a delivery, and must come again (the
       client promises to resend what was not fully written) — a gap is a
       loss, a repeat is a duplicate;
     - a message's first byte is written on a socket only after the client
       delivered that socket's connection.ok (the event the client acts on),
       only after the auth message, never after the client's own Close
       (RFC 6455 §5.5.1); client frames are masked (§5.3);
     - stws_client_queued() is never below the bytes of the accepted but not
       yet delivered messages (nothing dropped), and equals them after every
       step (the queue settles in the step);
     - no server event from an older socket after a newer one started, and a
       socket's events come in order, without repeats, and without gaps
       unless garbage on that socket could have swallowed frames;
     - CONNECTED/RECONNECTED only after that socket's connection.ok;
     - the WANT_WRITE contract: after a would-block, the next send on the
       same socket offers the same bytes again (at least as many, same
       start) — what mbedTLS's record layer needs (issue 13, finding 1);
     - no transport misuse (send/recv on a closed stream, open on an open
       one); no allocation left after destroy;
     - at the end, a cooperative server and transport: the client (connected
       again if it had stopped) writes every queued message and
       stws_client_queued() reaches 0 — liveness, not only safety.

   What it found is listed in fuzz/crashes/README.md (each fixed, with a
   unit test). */
#define STREAM_WS_IMPLEMENTATION
#include "stream_ws.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FZ_TLS (fuzz/fuzz_client_tls.c): the client's transport is the library's
   TLS layer (stws_tls) over the scripted transport, and the fake server
   runs an mbedTLS server over the same bytes: the frames it parses are
   what it decrypted.  Found by it (issue 13 finding 1, and a close_notify
   that completed a failed write's half record: a duplicate; both fixed,
   fuzz/crashes/README.md): the scripted transport answers TLS writes with
   would-blocks, partial writes and failures like any other. */
#ifndef FZ_TLS
#define FZ_TLS 0
#endif
#if FZ_TLS
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/pk.h>
#endif

#define FZ_MAX_SOCKS 192
#define FZ_MAX_MSGS 2048
#define FZ_MAX_OPS 600
#define FZ_BIG 70000
#define FZ_JWT "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoiYWxpY2UifQ."

/* ---- small buffers --------------------------------------------------------- */

typedef struct fz_buf {
    uint8_t *p;
    size_t n, cap;
} fz_buf;

static void fz_put(fz_buf *b, const void *d, size_t n) {
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

static void fz_byte(fz_buf *b, unsigned v) {
    uint8_t c = (uint8_t)v;
    fz_put(b, &c, 1);
}

static void fz_buf_free(fz_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- the world ------------------------------------------------------------- */

typedef struct fz_sock {
    int inst;                   /* the client instance that opened it */
    fz_buf out;                 /* everything the client wrote */
    fz_buf in;                  /* everything the server sends */
    size_t in_pos;              /* bytes handed to recv() */
    int in_end;                 /* after `in`: 0 would-block, 1 EOF, 2 error */
    int is_open, closed, open_wants, open_fail;
    int answer_mode;            /* 0 101, 1 HTTP 404, 2 no answer, 3 bad accept */
    int answered;
    /* the would-block contract */
    int ww;
    size_t ww_len;
    uint8_t ww_head[64];
    /* the client's frames, parsed as they arrive */
    size_t parse_pos;
    int req_done, auth_seen, close_seen;
    int in_frag, frag_op;
    size_t frag_start;
    fz_buf frag;
    size_t ok_off;              /* out.n when the client delivered connection.ok */
    int ok_seen, garbage, seq_push, seq_expect, lifecycle_done;
#if FZ_TLS
    fz_buf raw;                 /* TLS records for the client */
    size_t raw_pos;
    fz_buf cin;                 /* TLS records from the client */
    size_t cin_pos;
    int hs_done, tls_dead;
#endif
} fz_sock;

typedef struct fz_msg {
    uint32_t id, pad;
} fz_msg;

static struct fz {
    const uint8_t *in;
    size_t in_len, in_pos;

    stws_client *c;
    stws_client_desc d;
    int inst, push;
    uint64_t now;
    uint64_t rng;               /* test-side randomness (transport behaviour) */
    uint64_t lib_rng;           /* the library's random hook */

    fz_sock s[FZ_MAX_SOCKS];
    int nsock, active, overflow;
    int stray_close;

    /* transport behaviour (probabilities in 1/16) */
    int p_ww, p_wr, p_part, p_fail, part_max, p_rblock, recv_max, p_open_want, p_open_fail, answer_mode;

    /* the model: messages accepted by the current instance */
    fz_msg m[FZ_MAX_MSGS];
    int nm, nd;
    uint32_t next_id;
    size_t undelivered;         /* bytes of m[nd..nm) */
    int in_step;
    unsigned cfg2;              /* the second configuration byte */
    int fetches;

#if FZ_TLS
    stws_tls *tls;
    int srv_ready;
    mbedtls_ssl_config srv_conf;
    mbedtls_x509_crt srv_cert;
    mbedtls_pk_context srv_key;
    mbedtls_ssl_context srv;
    uint64_t srv_rng;
#endif
    long allocs, live;
    long tot_acc, tot_del, tot_ev, tot_ok; /* for FZ_STATS=1 */
    char text[FZ_BIG + 64];
} F;

static void fz_fail(int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "fuzz_client: oracle violated (line %d): ", line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  instance %d, %d sockets, %d accepted, %d delivered, queued %zu, expected %zu\n", F.inst,
            F.nsock, F.nm, F.nd, F.c ? stws_client_queued(F.c) : (size_t)0, F.undelivered);
    __builtin_trap();
}
#define CHECK(cond, ...)                                      \
    do {                                                      \
        if (!(cond)) fz_fail(__LINE__, __VA_ARGS__);          \
    } while (0)

static unsigned fz_u8(void) { return F.in_pos < F.in_len ? F.in[F.in_pos++] : 0; }
static unsigned fz_u16(void) {
    unsigned a = fz_u8();
    return a << 8 | fz_u8();
}

static uint32_t fz_rand(void) {
    F.rng ^= F.rng << 13;
    F.rng ^= F.rng >> 7;
    F.rng ^= F.rng << 17;
    return (uint32_t)(F.rng >> 32);
}
static int fz_chance(int p16) { return p16 > 0 && (int)(fz_rand() & 15) < p16; }

static fz_sock *fz_cur(void) { return F.nsock && F.active ? &F.s[F.nsock - 1] : NULL; }
/* the socket server frames go to: the current one, or the last opened */
static fz_sock *fz_last(void) { return F.nsock ? &F.s[F.nsock - 1] : NULL; }

/* ---- library hooks --------------------------------------------------------- */

static uint64_t fz_now(void *u) {
    (void)u;
    return F.now;
}

static int64_t fz_unix(void *u) {
    (void)u;
    return (int64_t)1767225600 + (int64_t)(F.now / 1000);
}

static int fz_random(void *buf, size_t len, void *u) {
    uint8_t *p = (uint8_t *)buf;
    size_t i;
    (void)u;
    for (i = 0; i < len; i++) {
        F.lib_rng ^= F.lib_rng << 13;
        F.lib_rng ^= F.lib_rng >> 7;
        F.lib_rng ^= F.lib_rng << 17;
        p[i] = (uint8_t)(F.lib_rng >> 29);
    }
    return 0;
}

#define FZ_HDR 16
static void *fz_alloc(size_t size, void *u) {
    unsigned char *p = (unsigned char *)malloc(size + FZ_HDR);
    (void)u;
    if (!p) return NULL;
    F.allocs++;
    F.live++;
    return p + FZ_HDR;
}

static void fz_free(void *ptr, void *u) {
    (void)u;
    if (!ptr) return;
    F.live--;
    free((unsigned char *)ptr - FZ_HDR);
}

static void fz_log(stws_log_level level, const char *msg, void *u) {
    (void)level;
    (void)u;
    (void)msg;
}

/* ---- the client's output, parsed by the fake server ------------------------ */

static const char *fz_find(const uint8_t *h, size_t n, const char *needle) {
    size_t m = strlen(needle), i;
    for (i = 0; i + m <= n; i++)
        if (memcmp(h + i, needle, m) == 0) return (const char *)h + i;
    return NULL;
}

static size_t fz_msg_text(uint32_t id, uint32_t pad, char *out) {
    size_t n = (size_t)sprintf(out, "{\"fz\":%u,\"p\":\"", (unsigned)id), i;
    for (i = 0; i < pad; i++) out[n++] = (char)('a' + (id + i) % 26);
    out[n++] = '"';
    out[n++] = '}';
    out[n] = 0;
    return n;
}

static size_t fz_msg_len(const fz_msg *m) {
    char head[32];
    return (size_t)sprintf(head, "{\"fz\":%u,\"p\":\"", (unsigned)m->id) + m->pad + 2;
}

/* One complete text message of socket k, starting at output offset `start`. */
static void fz_client_text(int k, const uint8_t *p, size_t n, size_t start) {
    fz_sock *s = &F.s[k];
    if (n >= 9 && memcmp(p, "{\"token\":", 9) == 0) {
        CHECK(!s->auth_seen, "socket %d: a second auth message", k);
        s->auth_seen = 1;
        return;
    }
    if (n >= 24 && memcmp(p, "[{\"type\":\"health.check\"", 23) == 0) {
        CHECK(s->auth_seen, "socket %d: health check before the auth message", k);
        return;
    }
    CHECK(n >= 7 && memcmp(p, "{\"fz\":", 6) == 0, "socket %d: unknown client text %.60s", k, (const char *)p);
    {
        unsigned long id = strtoul((const char *)p + 6, NULL, 10);
        const fz_msg *want;
        size_t wn;
        CHECK(s->inst == F.inst, "socket %d of instance %d: message %lu written after that client was destroyed", k,
              s->inst, id);
        CHECK(s->auth_seen, "socket %d: message %lu before the auth message", k, id);
        CHECK(s->ok_seen && start >= s->ok_off, "socket %d: message %lu written before its connection.ok", k, id);
        CHECK(F.nd < F.nm, "socket %d: message %lu written but every accepted message was delivered already "
              "(duplicate)", k, id);
        want = &F.m[F.nd];
        CHECK(id >= want->id, "socket %d: message %lu written again (duplicate; expected %u next)", k, id,
              (unsigned)want->id);
        CHECK(id == want->id, "socket %d: message %u lost (got %lu next)", k, (unsigned)want->id, id);
        wn = fz_msg_text(want->id, want->pad, F.text);
        CHECK(wn == n && memcmp(F.text, p, n) == 0, "socket %d: message %lu written corrupted", k, id);
        F.undelivered -= wn;
        F.nd++;
        F.tot_del++;
    }
}

/* Parse whatever socket k's client wrote since the last call. */
static void fz_parse(int k) {
    fz_sock *s = &F.s[k];
    if (!s->req_done) {
        const char *e = fz_find(s->out.p, s->out.n, "\r\n\r\n");
        if (!e) return;
        CHECK(memcmp(s->out.p, "GET ", 4) == 0, "socket %d: the first bytes are not the upgrade request", k);
        s->req_done = 1;
        s->parse_pos = (size_t)(e - (const char *)s->out.p) + 4;
    }
    for (;;) {
        const uint8_t *p = s->out.p + s->parse_pos;
        size_t avail = s->out.n - s->parse_pos, h = 2, i;
        uint64_t len;
        uint8_t mk[4];
        int op, fin;
        if (avail < 2) return;
        CHECK(p[1] & 0x80, "socket %d: unmasked client frame (RFC 6455 §5.3)", k);
        CHECK((p[0] & 0x70) == 0, "socket %d: RSV bits set", k);
        len = p[1] & 0x7F;
        if (len == 126) {
            if (avail < 4) return;
            len = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (len == 127) {
            int b;
            if (avail < 10) return;
            for (len = 0, b = 0; b < 8; b++) len = len << 8 | p[2 + b];
            h = 10;
        }
        if (avail < h + 4 + len) return;
        memcpy(mk, p + h, 4);
        h += 4;
        op = p[0] & 0x0F;
        fin = p[0] >> 7;
        CHECK(!s->close_seen, "socket %d: a frame (opcode %d) after the client's Close (RFC 6455 §5.5.1)", k, op);
        if (op >= 8) {
            CHECK(fin && len <= 125, "socket %d: bad control frame", k);
            if (op == 8) s->close_seen = 1;
            else CHECK(op == 9 || op == 10, "socket %d: reserved opcode %d", k, op);
        } else {
            if (!s->in_frag) {
                CHECK(op == 1, "socket %d: data opcode %d (the client sends text only)", k, op);
                s->frag.n = 0;
                s->frag_start = s->parse_pos;
            } else {
                CHECK(op == 0, "socket %d: opcode %d inside a fragmented message", k, op);
            }
            for (i = 0; i < len; i++) fz_byte(&s->frag, p[h + i] ^ mk[i & 3]);
            s->in_frag = !fin;
            if (fin) {
                fz_byte(&s->frag, 0);
                fz_client_text(k, s->frag.p, s->frag.n - 1, s->frag_start);
            }
        }
        s->parse_pos += h + (size_t)len;
    }
}

/* ---- the transport --------------------------------------------------------- */

static void fz_answer(int k) {
    fz_sock *s = &F.s[k];
    const char *end = fz_find(s->out.p, s->out.n, "\r\n\r\n"), *key;
    char resp[512], acc[STWS_HANDSHAKE_ACCEPT_SIZE], k24[32];
    int n;
    fz_buf nb = {0, 0, 0};
    if (!end || s->answered) return;
    s->answered = 1;
    if (s->answer_mode == 2) return;
    if (s->answer_mode == 1) {
        n = snprintf(resp, sizeof resp, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    } else {
        key = fz_find(s->out.p, (size_t)(end - (const char *)s->out.p), "\r\nSec-WebSocket-Key: ");
        CHECK(key != NULL, "socket %d: upgrade request without a key", k);
        key += strlen("\r\nSec-WebSocket-Key: ");
        memcpy(k24, key, 24);
        k24[24] = 0;
        CHECK(stws_handshake_accept(k24, acc) == STWS_OK, "socket %d: bad key", k);
        if (s->answer_mode == 3) acc[0] = acc[0] == 'A' ? 'B' : 'A';
        n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     acc);
    }
    /* in front of what the server queued and the client has not read */
    if (s->in.p) fz_put(&nb, s->in.p, s->in_pos);
    fz_put(&nb, resp, (size_t)n);
    if (s->in.p) fz_put(&nb, s->in.p + s->in_pos, s->in.n - s->in_pos);
    fz_buf_free(&s->in);
    s->in = nb;
}

#if FZ_TLS
/* RSA-512 and the RSA key exchange: the cheapest handshake mbedTLS 2.28's
   client accepts (verification is off), so the target spends its time in
   the record layer, not in key exchanges. */
static const char FZ_CERT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBgTCCASugAwIBAgIUbKSsBUE/hDmqKv7UXagyhwmIsqAwDQYJKoZIhvcNAQEL\n"
    "BQAwFDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTIwNDAzMDIxNFoYDzIxMjYx\n"
    "MTEwMDMwMjE0WjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwXDANBgkqhkiG9w0BAQEF\n"
    "AANLADBIAkEAqZCqTpvbqzQ9V7tDUcj+7xS89tXU2jkPFtPjSJH8Q5hjVdt25Y4L\n"
    "Qww8Cnhh8u/DcQWnVPAdgrJuOnpzlM36nQIDAQABo1MwUTAdBgNVHQ4EFgQUuEYJ\n"
    "gGNaETZAdFHKLV47LDunlkQwHwYDVR0jBBgwFoAUuEYJgGNaETZAdFHKLV47LDun\n"
    "lkQwDwYDVR0TAQH/BAUwAwEB/zANBgkqhkiG9w0BAQsFAANBAFgrj/+CcH91EZwj\n"
    "+UGJxRFKRC/hVYGTkX2sCYpWYbZW1j4AzP3qRYS1oSQL2AQKvmNDa4v/EPS3WUUR\n"
    "GhdYP8U=\n"
    "-----END CERTIFICATE-----\n";
static const char FZ_KEY[] =
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIBOgIBAAJBAKmQqk6b26s0PVe7Q1HI/u8UvPbV1No5DxbT40iR/EOYY1XbduWO\n"
    "C0MMPAp4YfLvw3EFp1TwHYKybjp6c5TN+p0CAwEAAQJACNVGae3olZSVFXrl2N7V\n"
    "mPLFnT4qZmvOg2vqTR99uq+h1w1G10PSQOv/QhhbDXBSOCQr1Cix2WUxVaVLuYP+\n"
    "qQIhANRlP1PgCF7kfGB5GTATQx9QP6Kxe9nSLE+Byl1JA/ePAiEAzGBngVACCP7c\n"
    "oRKGjRJC7/qAbxfKzAGUdmQ1AiOeNRMCICGRlv60q94DkrzUpux4PuWWE1itYHu+\n"
    "wg4W31r7DUt1AiEAtvyh79/o0pEOjZD+s5RkJmWNVOpiguHvQUlbRL0LS80CIGb0\n"
    "xqGZv8mEfbcLZbSnnl5gZrjfvXaEZqClo2+hovVF\n"
    "-----END RSA PRIVATE KEY-----\n";

static int fz_srv_rng(void *u, unsigned char *out, size_t n) {
    size_t i;
    (void)u;
    for (i = 0; i < n; i++) {
        F.srv_rng ^= F.srv_rng << 13;
        F.srv_rng ^= F.srv_rng >> 7;
        F.srv_rng ^= F.srv_rng << 17;
        out[i] = (uint8_t)(F.srv_rng >> 27);
    }
    return 0;
}

static int fz_srv_send(void *u, const unsigned char *buf, size_t len) {
    fz_put(&((fz_sock *)u)->raw, buf, len);
    return (int)len;
}

static int fz_srv_recv(void *u, unsigned char *buf, size_t len) {
    fz_sock *s = (fz_sock *)u;
    size_t n = s->cin.n - s->cin_pos;
    if (!n) return MBEDTLS_ERR_SSL_WANT_READ;
    if (n > len) n = len;
    memcpy(buf, s->cin.p + s->cin_pos, n);
    s->cin_pos += n;
    return (int)n;
}

static const int fz_suites[] = {MBEDTLS_TLS_RSA_WITH_AES_128_GCM_SHA256, 0};

static void fz_srv_init(void) {
    if (F.srv_ready) return;
    mbedtls_ssl_config_init(&F.srv_conf);
    mbedtls_x509_crt_init(&F.srv_cert);
    mbedtls_pk_init(&F.srv_key);
    mbedtls_ssl_init(&F.srv);
    if (mbedtls_x509_crt_parse(&F.srv_cert, (const unsigned char *)FZ_CERT, sizeof FZ_CERT) != 0 ||
        mbedtls_pk_parse_key(&F.srv_key, (const unsigned char *)FZ_KEY, sizeof FZ_KEY, NULL, 0) != 0 ||
        mbedtls_ssl_config_defaults(&F.srv_conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0)
        abort();
    mbedtls_ssl_conf_rng(&F.srv_conf, fz_srv_rng, NULL);
    mbedtls_ssl_conf_ciphersuites(&F.srv_conf, fz_suites);
    if (mbedtls_ssl_conf_own_cert(&F.srv_conf, &F.srv_cert, &F.srv_key) != 0) abort();
    if (mbedtls_ssl_setup(&F.srv, &F.srv_conf) != 0) abort();
    F.srv_ready = 1;
}

/* The server side of socket k: handshake, decrypt what the client wrote
   (into `out`, parsed like a plain stream), encrypt what the server queued
   (from `in`, once the upgrade was answered). */
static void fz_srv_pump(int k) {
    fz_sock *s = &F.s[k];
    unsigned char buf[4096];
    int r;
    if (s->tls_dead) return;
    if (!s->hs_done) {
        r = mbedtls_ssl_handshake(&F.srv);
        if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) return;
        if (r != 0) {
            s->tls_dead = 1;
            return;
        }
        s->hs_done = 1;
    }
    for (;;) {
        r = mbedtls_ssl_read(&F.srv, buf, sizeof buf);
        if (r <= 0) break;
        fz_put(&s->out, buf, (size_t)r);
        if (!s->answered) fz_answer(k);
        fz_parse(k);
    }
    if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE) {
        s->tls_dead = 1; /* close_notify, or a record it could not take */
        return;
    }
    while (s->answered && s->in_pos < s->in.n) {
        r = mbedtls_ssl_write(&F.srv, s->in.p + s->in_pos, s->in.n - s->in_pos);
        if (r <= 0) break;
        s->in_pos += (size_t)r;
    }
}
#endif

static int tr_open(void *ctx, const char *host, uint16_t port) {
    fz_sock *s;
    (void)ctx;
    (void)host;
    (void)port;
    if (!F.active) {
        if (F.nsock == FZ_MAX_SOCKS) {
            F.overflow = 1;
            return STWS_ERR_CONNECT; /* the library closes: a stray close */
        }
        s = &F.s[F.nsock++];
        memset(s, 0, sizeof *s);
        s->inst = F.inst;
        s->answer_mode = F.answer_mode;
        s->open_wants = fz_chance(F.p_open_want) ? (int)(fz_rand() % 4) + 1 : 0;
        s->open_fail = fz_chance(F.p_open_fail);
        s->ok_off = (size_t)-1;
        F.active = 1;
#if FZ_TLS
        fz_srv_init();
        mbedtls_ssl_session_reset(&F.srv);
        mbedtls_ssl_set_bio(&F.srv, s, fz_srv_send, fz_srv_recv, NULL);
#endif
    }
    s = &F.s[F.nsock - 1];
    CHECK(!s->is_open, "open() on an open stream");
    if (s->open_wants > 0) {
        s->open_wants--;
        return fz_chance(8) ? STWS_WANT_WRITE : STWS_WANT_READ;
    }
    if (s->open_fail) return STWS_ERR_CONNECT;
    s->is_open = 1;
    return 0;
}

static int tr_send(void *ctx, const unsigned char *buf, size_t len) {
    fz_sock *s = fz_cur();
    size_t n = len;
    (void)ctx;
    CHECK(s && s->is_open && len > 0, "send() on a stream that is not open, or of 0 bytes");
    if (s->ww) {
        /* the bytes a would-block refused must be offered again, first */
        size_t h = s->ww_len < sizeof s->ww_head ? s->ww_len : sizeof s->ww_head;
        CHECK(len >= s->ww_len && memcmp(buf, s->ww_head, h) == 0,
              "WANT_WRITE contract: offered %zu bytes after a would-block on %zu, or different bytes", len,
              s->ww_len);
        s->ww = 0;
    }
    if (fz_chance(F.p_fail)) return fz_chance(8) ? STWS_ERR_IO : -1; /* -1: a foreign code, read as IO */
    if (fz_chance(F.p_ww) || fz_chance(F.p_wr)) {
        s->ww = 1;
        s->ww_len = len;
        memcpy(s->ww_head, buf, len < sizeof s->ww_head ? len : sizeof s->ww_head);
        return fz_chance(12) ? STWS_WANT_WRITE : STWS_WANT_READ;
    }
    if (fz_chance(F.p_part) && len > 1) {
        if (F.part_max < 0) /* all but the last 1-3 bytes: a frame cut just before its end */
            n = len > 3 ? len - 1 - fz_rand() % 3 : 1;
        else
            n = 1 + fz_rand() % (F.part_max ? (size_t)F.part_max : len);
    }
    if (n > len) n = len;
#if FZ_TLS
    fz_put(&s->cin, buf, n);
    fz_srv_pump(F.nsock - 1);
#else
    fz_put(&s->out, buf, n);
    if (!s->answered) fz_answer(F.nsock - 1);
    fz_parse(F.nsock - 1);
#endif
    return (int)n;
}

static int tr_recv(void *ctx, unsigned char *buf, size_t len) {
    fz_sock *s = fz_cur();
    size_t n;
    (void)ctx;
    CHECK(s && s->is_open && len > 0, "recv() on a stream that is not open, or of 0 bytes");
    if (fz_chance(F.p_rblock)) return fz_chance(12) ? STWS_WANT_READ : STWS_WANT_WRITE;
#if FZ_TLS
    fz_srv_pump(F.nsock - 1);
    n = s->raw.n - s->raw_pos;
    if (!n) {
        if (s->in_pos < s->in.n && !s->tls_dead) return STWS_WANT_READ; /* not encrypted yet */
        return s->in_end == 1 ? 0 : s->in_end == 2 ? STWS_ERR_IO : STWS_WANT_READ;
    }
    if (n > len) n = len;
    if (F.recv_max && n > (size_t)F.recv_max) n = (size_t)F.recv_max;
    memcpy(buf, s->raw.p + s->raw_pos, n);
    s->raw_pos += n;
#else
    n = s->in.n - s->in_pos;
    if (!n) return s->in_end == 1 ? 0 : s->in_end == 2 ? STWS_ERR_IO : STWS_WANT_READ;
    if (n > len) n = len;
    if (F.recv_max && n > (size_t)F.recv_max) n = (size_t)F.recv_max;
    memcpy(buf, s->in.p + s->in_pos, n);
    s->in_pos += n;
#endif
    return (int)n;
}

static void tr_close(void *ctx) {
    fz_sock *s = fz_cur();
    (void)ctx;
    if (!s) {
        F.stray_close++;
        return;
    }
    s->is_open = 0;
    s->closed = 1;
    s->ww = 0;
    F.active = 0;
}

/* ---- events ---------------------------------------------------------------- */

static void fz_send_msg(unsigned v);

static long fz_json_int(const stws_client_event *ev, const char *key) {
    char pat[32];
    const char *p;
    int n = snprintf(pat, sizeof pat, "\"%s\":", key);
    p = fz_find((const uint8_t *)ev->json.ptr, ev->json.len, pat);
    return p ? strtol(p + n, NULL, 10) : -1;
}

static void fz_event(const stws_client_event *ev) {
    int cur = F.nsock - 1;
    F.tot_ev++;
    if (ev->type == STWS_CLIENT_EVENT_SERVER) {
        long k = fz_json_int(ev, "sock"), seq;
        fz_sock *s;
        CHECK(ev->json.len > 0 && ev->event_type.len > 0, "SERVER event without text or type");
        if (k < 0) return; /* garbage that happened to be an event */
        CHECK(k == cur, "an event of socket %ld delivered while socket %d is current", k, cur);
        s = &F.s[k];
        CHECK(s->inst == F.inst, "an event of a destroyed client's socket");
        if (ev->event_type.len == 13 && memcmp(ev->event_type.ptr, "connection.ok", 13) == 0) {
            if (!s->ok_seen) {
                s->ok_seen = 1;
                F.tot_ok++;
                s->ok_off = s->out.n;
            }
        }
        seq = fz_json_int(ev, "seq");
        if (seq >= 0) {
            CHECK(seq >= s->seq_expect, "socket %ld: event %ld delivered again or out of order (next %d)", k, seq,
                  s->seq_expect);
            CHECK(seq == s->seq_expect || s->garbage, "socket %ld: event %d lost (got %ld)", k, s->seq_expect, seq);
            s->seq_expect = (int)seq + 1;
        }
        return;
    }
    if (ev->type == STWS_CLIENT_EVENT_CONNECTED || ev->type == STWS_CLIENT_EVENT_RECONNECTED) {
        CHECK(cur >= 0 && F.s[cur].ok_seen, "CONNECTED/RECONNECTED without a connection.ok on the socket");
    }
    if ((ev->type == STWS_CLIENT_EVENT_DISCONNECTED || ev->type == STWS_CLIENT_EVENT_CLOSED) && cur >= 0)
        F.s[cur].lifecycle_done = 1;
}

static void fz_on_event(stws_client *c, const stws_client_event *ev, void *u) {
    (void)c;
    (void)u;
    CHECK(F.in_step, "push callback outside stws_client_step()");
    fz_event(ev);
    /* the app reacts from inside the pump: sends, or closes (cfg2 bit 1) */
    if ((F.cfg2 & 2) && fz_chance(3)) fz_send_msg(fz_rand() % 200);
    if ((F.cfg2 & 2) && fz_chance(1) && (fz_rand() & 7) == 0) (void)stws_client_close(F.c);
}

/* Token provider (cfg2 bit 0): a JWT-shaped token, now and then a failure. */
static int fz_fetch(char *buf, size_t cap, void *u) {
    (void)u;
    CHECK(F.in_step, "token provider called outside stws_client_step()");
    F.fetches++;
    if (fz_chance(2)) return -1;
    return snprintf(buf, cap, FZ_JWT "c2ln%d", F.fetches);
}

/* on_reconnecting (cfg2 bit 2): go on, stop, close, or change token/URL. */
static int fz_reconnecting(stws_client *c, int attempt, int delay_ms, stws_reconnect_ctl *ctl, void *u) {
    static char tok[128];
    unsigned v = fz_rand() % 32;
    (void)c;
    (void)u;
    CHECK(F.in_step, "on_reconnecting outside stws_client_step()");
    CHECK(attempt >= 1 && delay_ms >= 0, "on_reconnecting: attempt %d, delay %d", attempt, delay_ms);
    if (v == 0) return 1;
    if (v == 1) (void)stws_client_close(F.c);
    if (v == 2) {
        snprintf(tok, sizeof tok, FZ_JWT "bmV3%d", attempt);
        ctl->token = tok;
    }
    if (v == 3) ctl->token = "not a jwt";
    if (v == 4) ctl->url = "ws://127.0.0.1:8081/api/v2/connect?api_key=key123";
    if (v == 5) ctl->url = "http://bad url";
    return 0;
}

static void fz_pull(int max) {
    stws_client_event ev;
    int n = 0;
    if (!F.c || F.push) return;
    while ((max <= 0 || n < max) && stws_client_next_event(F.c, &ev)) {
        fz_event(&ev);
        CHECK(++n < 100000, "stws_client_next_event never runs dry");
    }
}

/* ---- the model's checks ---------------------------------------------------- */

static void fz_check_queue(int settled) {
    size_t q;
    if (!F.c) return;
    q = stws_client_queued(F.c);
    CHECK(q >= F.undelivered, "stws_client_queued() %zu is below the %zu bytes accepted and not written (lost)", q,
          F.undelivered);
    if (settled)
        CHECK(q == F.undelivered, "after a step stws_client_queued() is %zu, the undelivered messages are %zu bytes", q,
              F.undelivered);
}

static void fz_step(void) {
    stws_result r;
    F.in_step++;
    r = stws_client_step(F.c);
    F.in_step--;
    (void)r;
    fz_check_queue(1);
}

/* ---- client lifetime ------------------------------------------------------- */

static void fz_destroy(void) {
    if (!F.c) return;
    stws_client_destroy(F.c);
    F.c = NULL;
#if FZ_TLS
    stws_tls_destroy(F.tls);
    F.tls = NULL;
#endif
    CHECK(F.live == 0, "%ld allocation(s) left after stws_client_destroy()", F.live);
    CHECK(!F.active, "destroy left the transport open");
    /* what the destroyed client still held is gone by design */
    F.nm = F.nd = 0;
    F.undelivered = 0;
}

static void fz_create(unsigned cfg) {
    memset(&F.d, 0, sizeof F.d);
    F.inst++;
    F.d.url = (cfg & 8) ? "ws://127.0.0.1:8080/api/v2/connect?x=1" : "ws://127.0.0.1:8080/api/v2/connect";
    F.d.api_key = "key123";
    F.d.user_id = "alice";
    F.cfg2 = fz_u8();
    if (F.cfg2 & 1) {
        F.d.token_provider.fetch = fz_fetch;
    } else {
        F.d.token = FZ_JWT "c2ln";
    }
    if (F.cfg2 & 4) F.d.on_reconnecting = fz_reconnecting;
    if (F.cfg2 & 8) F.d.conn.max_message_size = 300; /* bigger server events end the socket (1009) */
    if (F.cfg2 & 16) F.d.watchdog_ms = 2000;
    if (F.cfg2 & 32) F.d.dead_timeout_ms = 3000;
    F.d.conn.transport.open = tr_open;
    F.d.conn.transport.send = tr_send;
    F.d.conn.transport.recv = tr_recv;
    F.d.conn.transport.close = tr_close;
    F.d.conn.transport.ctx = &F;
    F.d.clock.now_ms = fz_now;
    F.d.clock.unix_s = fz_unix;
    F.d.random.fill = fz_random;
    F.d.allocator.alloc = fz_alloc;
    F.d.allocator.free = fz_free;
    F.d.logger.func = fz_log;
    F.d.send_queue_limit = (cfg & 2) ? 600 : 0;
    F.d.max_attempts = (cfg & 4) ? 3 : 0;
    F.d.health_interval_ms = (cfg & 16) ? 1000 : 0;
    F.push = (cfg & 1) != 0;
    if (F.push) F.d.on_event = fz_on_event;
#if FZ_TLS
    {
        stws_tls_desc td;
        memset(&td, 0, sizeof td);
        td.inner = F.d.conn.transport;
        td.insecure = 1; /* the chain check is not what this target is about */
        td.random = F.d.random;
        td.allocator = F.d.allocator;
        td.logger = F.d.logger;
        F.tls = stws_tls_create(&td);
        CHECK(F.tls != NULL, "stws_tls_create failed");
        F.d.conn.transport = stws_tls_transport(F.tls);
    }
#endif
    F.c = stws_client_create(&F.d);
    CHECK(F.c != NULL, "stws_client_create failed");
    if (cfg & 32) (void)stws_client_connect(F.c);
}

/* ---- server frames --------------------------------------------------------- */

static void fz_frame(fz_buf *b, unsigned b0, const void *data, size_t n) {
    int k;
    fz_byte(b, b0);
    if (n < 126) {
        fz_byte(b, (unsigned)n);
    } else if (n <= 0xFFFF) {
        fz_byte(b, 126);
        fz_byte(b, (unsigned)(n >> 8));
        fz_byte(b, (unsigned)(n & 0xFF));
    } else {
        fz_byte(b, 127);
        for (k = 7; k >= 0; k--) fz_byte(b, (unsigned)(((uint64_t)n >> (8 * k)) & 0xFF));
    }
    fz_put(b, data, n);
}

static void fz_srv_text(fz_sock *s, const char *json) { fz_frame(&s->in, 0x81, json, strlen(json)); }

static void fz_srv_op(unsigned op) {
    fz_sock *s = fz_last();
    char j[700];
    int k;
    if (!s || s->inst != F.inst || s->closed) return; /* no live socket of this client to speak on */
    k = (int)(s - F.s);
    switch (op) {
    case 0: { /* connection.ok, with an id of a chosen shape */
        unsigned v = fz_u8();
        char id[200];
        if (v < 200) snprintf(id, sizeof id, "c%d-%u", k, v);
        else if (v < 230) memset(id, 'x', 150), id[150] = 0; /* longer than the client keeps */
        else snprintf(id, sizeof id, "q\\\"\\u00e9\\n%d", k);
        snprintf(j, sizeof j,
                 "{\"type\":\"connection.ok\",\"connection_id\":\"%s\",\"sock\":%d,"
                 "\"me\":{\"id\":\"alice\",\"role\":\"user\"}}",
                 id, k);
        fz_srv_text(s, j);
        break;
    }
    case 1: /* a server event */
        snprintf(j, sizeof j, "{\"type\":\"message.new\",\"sock\":%d,\"seq\":%d,\"message\":{\"text\":\"hi\"}}", k,
                 s->seq_push++);
        fz_srv_text(s, j);
        break;
    case 2:
        snprintf(j, sizeof j, "{\"type\":\"health.check\",\"connection_id\":\"c%d\",\"sock\":%d}", k, k);
        fz_srv_text(s, j);
        break;
    case 3: { /* connection.error with a chosen code */
        static const int codes[] = {40, 41, 42, 43, 2, 4, 6, 5, 9, 16, 17, 99, 1000, -1};
        int code = codes[fz_u8() % (sizeof codes / sizeof codes[0])];
        snprintf(j, sizeof j,
                 "{\"type\":\"connection.error\",\"sock\":%d,\"error\":{\"code\":%d,\"message\":\"no\\nway\","
                 "\"StatusCode\":401}}",
                 k, code);
        fz_srv_text(s, j);
        break;
    }
    case 4: { /* a close frame */
        static const int codes[] = {1000, 1001, 1002, 1008, 1011, 1012, 4000, 1005, 0};
        unsigned v = fz_u8();
        int code = codes[v % (sizeof codes / sizeof codes[0])];
        uint8_t p[2];
        if (code == 0) {
            fz_frame(&s->in, 0x88, "", 0);
        } else {
            p[0] = (uint8_t)(code >> 8);
            p[1] = (uint8_t)code;
            fz_frame(&s->in, 0x88, p, 2);
        }
        break;
    }
    case 5: /* a ping */
        fz_frame(&s->in, 0x89, "pi", 2);
        break;
    case 6: { /* an event in fragments, a ping between */
        size_t n, a, b;
        n = (size_t)snprintf(j, sizeof j, "{\"type\":\"fragmented.event\",\"sock\":%d,\"seq\":%d,\"x\":[1,2,3]}", k,
                             s->seq_push++);
        a = 1 + fz_u8() % (n - 2);
        b = a + fz_u8() % (n - a);
        fz_frame(&s->in, 0x01, j, a);
        if (fz_u8() & 1) fz_frame(&s->in, 0x89, "", 0);
        if (b > a) fz_frame(&s->in, 0x00, j + a, b - a);
        fz_frame(&s->in, 0x80, j + b, n - b);
        break;
    }
    case 7: { /* garbage: any bytes, but never a connection.ok the oracle does not know of */
        unsigned n = fz_u8() % 64, i;
        s->garbage = 1;
        for (i = 0; i < n; i++) {
            unsigned ch = fz_u8();
            if (ch == 'k' || ch == 'K' || ch == '\\') ch = 'x';
            fz_byte(&s->in, ch);
        }
        break;
    }
    case 8: /* a binary frame (ignored by the client) */
        fz_frame(&s->in, 0x82, "\x01\x02", 2);
        break;
    case 10: { /* a big event (the receive buffer grows; or past max_message_size) */
        size_t n = (fz_u8() & 1) ? 70000 : 1000, h;
        char *big = (char *)malloc(n + 128);
        if (!big) abort();
        h = (size_t)snprintf(big, 128, "{\"type\":\"big.event\",\"sock\":%d,\"seq\":%d,\"pad\":\"", k,
                             s->seq_push++);
        memset(big + h, 'y', n);
        memcpy(big + h + n, "\"}", 3);
        fz_frame(&s->in, 0x81, big, h + n + 2);
        free(big);
        break;
    }
    case 9: /* end of stream or a transport error after what is queued */
        s->in_end = (fz_u8() & 1) ? 1 : 2;
        break;
    }
}

/* ---- the program ----------------------------------------------------------- */

static void fz_send_msg(unsigned v) {
    uint32_t pad;
    size_t n;
    stws_result r;
    if (!F.c || F.nm == FZ_MAX_MSGS) return;
    if (v < 200) pad = v;
    else if (v < 240) pad = 120 + (v - 200) * 2; /* around the 7/16-bit length boundary */
    else if (v < 250) pad = 65500 + (v - 240) * 8;
    else pad = FZ_BIG - 100;
    n = fz_msg_text(F.next_id, pad, F.text);
    r = stws_client_send(F.c, F.text, n);
    if (r == STWS_OK) {
        F.m[F.nm].id = F.next_id;
        F.m[F.nm].pad = pad;
        F.nm++;
        F.tot_acc++;
        F.undelivered += n;
    } else {
        CHECK(r == STWS_ERR_QUEUE_FULL || r == STWS_ERR_CLOSED, "stws_client_send: unexpected %s",
              stws_result_string(r));
    }
    F.next_id++;
    fz_check_queue(1);
}

static void fz_close(void) {
    if (!F.c) return;
    (void)stws_client_close(F.c);
    fz_check_queue(0);
}

static void fz_knobs(void) {
    unsigned a = fz_u8(), b = fz_u8(), c = fz_u8();
    F.p_ww = (int)(a & 7);
    F.p_part = (int)((a >> 3) & 7);
    F.p_wr = (a >> 6) ? 1 : 0;
    F.p_fail = (a >> 7) ? (int)(b & 1) : 0;
    F.part_max = (b >> 1) & 1 ? 1 + (int)((b >> 2) & 15) : (b >> 2) & 1 ? -1 : 0;
    F.p_rblock = (int)((b >> 6) & 3) * 2;
    F.recv_max = (c & 3) == 0 ? 0 : (c & 3) == 1 ? 1 : (int)(c & 31) + 1;
    F.p_open_want = (int)((c >> 2) & 3) * 3;
    F.p_open_fail = (c >> 4) & 1 ? 4 : 0;
    F.answer_mode = (c >> 5) == 7 ? 1 : (c >> 5) == 6 ? 2 : (c >> 5) == 5 ? 3 : 0;
}

static void fz_calm(void) {
    F.p_ww = F.p_wr = F.p_part = F.p_fail = F.part_max = F.p_rblock = F.recv_max = 0;
    F.p_open_want = F.p_open_fail = 0;
    F.answer_mode = 0;
}

/* A cooperative server and transport until everything queued is written. */
static void fz_drain(void) {
    int i;
    fz_calm();
    if (!F.c) return;
    for (i = 0; i < 4000 && (F.nd < F.nm || stws_client_queued(F.c)); i++) {
        fz_sock *s = fz_cur();
        if (F.overflow) return; /* out of sockets: nothing more to learn */
        (void)stws_client_connect(F.c); /* restarts a stopped client; STWS_ERR_STATE otherwise */
        if (s && s->inst == F.inst && s->req_done && s->answered && !s->ok_seen && s->in_pos == s->in.n &&
            !s->in_end && !s->garbage && s->answer_mode == 0) {
            char j[128];
            snprintf(j, sizeof j, "{\"type\":\"connection.ok\",\"connection_id\":\"d%d\",\"sock\":%d}", F.nsock - 1,
                     F.nsock - 1);
            fz_srv_text(s, j);
        }
        fz_step();
        fz_pull(0);
        fz_check_queue(0);
        if (i % 4 == 3) F.now += 997;
    }
    CHECK(F.nd == F.nm && stws_client_queued(F.c) == 0,
          "liveness: with a cooperative server %d of %d messages were written", F.nd, F.nm);
}

static void fz_reset(void) {
    int i;
    for (i = 0; i < F.nsock; i++) {
        fz_buf_free(&F.s[i].out);
        fz_buf_free(&F.s[i].in);
        fz_buf_free(&F.s[i].frag);
#if FZ_TLS
        fz_buf_free(&F.s[i].raw);
        fz_buf_free(&F.s[i].cin);
#endif
    }
    memset(F.s, 0, sizeof F.s);
    F.nsock = F.active = F.overflow = F.stray_close = 0;
    F.nm = F.nd = 0;
    F.undelivered = 0;
    F.next_id = 1;
    F.now = 5000000;
    F.rng = 0x9E3779B97F4A7C15ull;
    F.lib_rng = 0x2545F4914F6CDD1Dull;
#if FZ_TLS
    F.srv_rng = 0x853C49E6748FEA9Bull;
#endif
    F.in_step = 0;
    F.c = NULL;
    F.inst = 0;
    F.live = 0;
    F.tot_acc = F.tot_del = F.tot_ev = F.tot_ok = 0;
    fz_calm();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int ops = 0;
    fz_reset();
    F.in = data;
    F.in_len = size;
    F.in_pos = 0;
    F.rng ^= (uint64_t)fz_u8() << 8 | fz_u8();
    if (!F.rng) F.rng = 1;
    fz_create(fz_u8());
    while (F.in_pos < F.in_len && ops++ < FZ_MAX_OPS && !F.overflow) {
        unsigned op = fz_u8();
        switch (op % 24) {
        case 0: case 1: case 2: { /* steps */
            int n = 1 + (int)(fz_u8() % 8), i;
            for (i = 0; i < n; i++) fz_step();
            break;
        }
        case 3: { /* the clock */
            static const uint32_t ms[] = {0, 1, 10, 100, 249, 250, 500, 1000, 2000, 4999, 5000,
                                          14999, 15000, 25000, 34999, 35000, 60000, 120000};
            unsigned v = fz_u8();
            F.now += v < 200 ? ms[v % (sizeof ms / sizeof ms[0])] : (uint64_t)(v - 200) * 1237u;
            break;
        }
        case 4: case 5: case 6:
            fz_send_msg(fz_u8());
            break;
        case 7: case 8: fz_srv_op(0); break;
        case 9: case 10: fz_srv_op(1); break;
        case 11: fz_srv_op(2); break;
        case 12: fz_srv_op(3); break;
        case 13: fz_srv_op(4); break;
        case 14: fz_srv_op(5 + fz_u8() % 6); break;
        case 15: fz_knobs(); break;
        case 16: fz_calm(); break;
        case 17: fz_close(); break;
        case 18:
            if (F.c) (void)stws_client_connect(F.c);
            fz_check_queue(0);
            break;
        case 19: { /* destroy and re-create */
            unsigned cfg = fz_u8();
            fz_destroy();
            fz_create(cfg);
            break;
        }
        case 20: case 21: fz_pull(0); break;
        case 22: fz_pull(1); break;
        case 23: /* a step and everything it made available, like a real loop */
            fz_step();
            fz_pull(0);
            break;
        }
    }
    fz_drain();
    if (getenv("FZ_STATS"))
        fprintf(stderr, "fuzz_client: %d instance(s), %d socket(s), %ld connection.ok, %ld events, %ld messages "
                "accepted, %ld written\n", F.inst, F.nsock, F.tot_ok, F.tot_ev, F.tot_acc, F.tot_del);
    fz_destroy();
    fz_reset();
    return 0;
}
