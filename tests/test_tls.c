/* The TLS transport (stws_tls_*) against a real TLS peer: an in-process
   mbedTLS server over an in-memory pipe whose client side applies
   back-pressure, seeded: sends would-block at random, accept random partial
   lengths and stop when the server has not read a window's worth.  Keys and
   the certificate are made here with mbedTLS (no files); the client verifies
   them (chain and host name).  No sockets, no threads, no sleeping, a fake
   clock: every run with a seed does the same thing.

   Finding 1 of issue 13: mbedtls_ssl_write() keeps the record it could not
   flush and on its next call flushes it and returns the length it is GIVEN.
   A caller that offers more the second time (stws_conn offers all its queued
   output) was told bytes were written that never were. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <mbedtls/version.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
/* mbedTLS 4 moved all crypto behind PSA: no CTR-DRBG, ECP or RNG callbacks
   in its public API.  The server's key is then made by PSA (TLS_PSA_KEYS);
   before 4 by the legacy API from the seed.  PSA must be initialised before
   signing or a handshake when TLS or X.509 use it (3.6 with
   MBEDTLS_USE_PSA_CRYPTO or TLS 1.3, and 4.x). */
#if MBEDTLS_VERSION_NUMBER >= 0x04000000
#define TLS_PSA_KEYS 1
#else
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#endif
#if defined(TLS_PSA_KEYS) || defined(MBEDTLS_USE_PSA_CRYPTO) || defined(MBEDTLS_SSL_PROTO_TLS1_3)
#include <psa/crypto.h>
#define TLS_PSA_INIT 1
#endif
#include "../stream_ws.h"
#include "codec_util.h"

#define T0 ((uint64_t)1000000) /* the fake clock: it never moves, no timer fires */
#define MAX_ROUNDS 2000000     /* a run that has not finished by then is stuck */

/* ---- the pipe and its client-side transport ------------------------------ */

typedef struct pipe_t {
    tbuf c2s, s2c;              /* bytes in flight each way */
    size_t c2s_off, s2c_off;    /* how much the other side has read */
    uint64_t rng;
    int block_pct;              /* client sends that would-block at random */
    size_t window;              /* unread client bytes that stop its sends */
    int open;
    size_t sends, blocks, misuse;
    int want_read_too;          /* some blocked sends say WANT_READ */
    size_t s2c_end;             /* nonzero: the stream to the client ends here */
    int s2c_end_code;           /* with this recv() result (0: EOF) */
    size_t accept_max;          /* nonzero: a send takes exactly this many
                                   (or len if fewer), not a random part */
    int fail_in;                /* nonzero: the fail_in-th send from now and
                                   every later one fail (STWS_ERR_IO) */
} pipe_t;

static size_t unread_c2s(const pipe_t *p) { return p->c2s.len - p->c2s_off; }

static int cl_open(void *ctx, const char *host, uint16_t port) {
    pipe_t *p = (pipe_t *)ctx;
    (void)host;
    (void)port;
    if (p->open) p->misuse++;
    p->open = 1;
    return 0;
}
static int cl_send(void *ctx, const unsigned char *buf, size_t len) {
    pipe_t *p = (pipe_t *)ctx;
    size_t room, k;
    if (!p->open || !len) p->misuse++;
    p->sends++;
    if (p->fail_in) {
        if (p->fail_in == 1) return STWS_ERR_IO;
        p->fail_in--;
    }
    room = unread_c2s(p) >= p->window ? 0 : p->window - unread_c2s(p);
    if (!room || (int)(prng_next(&p->rng) % 100) < p->block_pct) {
        p->blocks++;
        /* the bio dialect allows either would-block code on a send */
        return p->want_read_too && prng_next(&p->rng) % 4 == 0 ? STWS_WANT_READ : STWS_WANT_WRITE;
    }
    k = prng_range(&p->rng, 1, len < room ? len : room);
    if (p->accept_max) k = len < p->accept_max ? len : p->accept_max; /* exact, not random */
    tbuf_put(&p->c2s, buf, k);
    return (int)k;
}
static int cl_recv(void *ctx, unsigned char *buf, size_t len) {
    pipe_t *p = (pipe_t *)ctx;
    size_t avail = p->s2c.len - p->s2c_off, k;
    if (!p->open) p->misuse++;
    if (p->s2c_end) {
        if (p->s2c_off >= p->s2c_end) return p->s2c_end_code;
        if (avail > p->s2c_end - p->s2c_off) avail = p->s2c_end - p->s2c_off;
    }
    if (!avail) return STWS_WANT_READ;
    k = prng_range(&p->rng, 1, len < avail ? len : avail);
    memcpy(buf, p->s2c.p + p->s2c_off, k);
    p->s2c_off += k;
    return (int)k;
}
static void cl_close(void *ctx) { ((pipe_t *)ctx)->open = 0; }

static stws_transport pipe_transport(pipe_t *p) {
    stws_transport t;
    memset(&t, 0, sizeof t);
    t.open = cl_open;
    t.send = cl_send;
    t.recv = cl_recv;
    t.close = cl_close;
    t.ctx = p;
    return t;
}

/* The server's bio: it writes without limit and reads what is there. */
static int sv_send(void *ctx, const unsigned char *buf, size_t len) {
    pipe_t *p = (pipe_t *)ctx;
    tbuf_put(&p->s2c, buf, len);
    return (int)len;
}
static int sv_recv(void *ctx, unsigned char *buf, size_t len) {
    pipe_t *p = (pipe_t *)ctx;
    size_t avail = unread_c2s(p), k;
    if (!avail) return MBEDTLS_ERR_SSL_WANT_READ;
    k = prng_range(&p->rng, 1, len < avail ? len : avail);
    memcpy(buf, p->c2s.p + p->c2s_off, k);
    p->c2s_off += k;
    if (p->c2s_off == p->c2s.len) p->c2s_off = p->c2s.len = 0;
    return (int)k;
}

/* ---- the server: key, self-signed certificate, TLS, upgrade, frames -------- */

#ifndef TLS_PSA_KEYS
static int det_entropy(void *ctx, unsigned char *out, size_t len) {
    return det_fill(out, len, ctx);
}
#endif

typedef struct server {
    det_rng seed;
#ifndef TLS_PSA_KEYS
    mbedtls_ctr_drbg_context drbg;
#endif
    mbedtls_pk_context key;
    mbedtls_x509_crt crt;
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    unsigned char pem[2048];    /* the certificate, for the client's ca_pem */
    int up;                     /* TLS handshake done */
    int upgraded;               /* ws: the 101 was sent */
    int ws;                     /* 1: answer the upgrade and parse frames */
    int stream;                 /* 1: text frames; the first is the auth
                                   message, answered with connection.ok */
    int authed;
    tbuf plain;                 /* decrypted bytes not yet parsed */
    size_t plain_total;         /* decrypted bytes in all */
    size_t messages;            /* ws: messages received, each checked */
    uint64_t msg_seed;
} server;

/* The server's key: P-256, from the seed before mbedTLS 4; on 4.x from PSA's
   own generator (there the client's TLS randomness is PSA's too, so a run
   is deterministic in the pipe's choices only, not byte for byte). */
static void server_key(server *s) {
#ifdef TLS_PSA_KEYS
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    mbedtls_svc_key_id_t id = MBEDTLS_SVC_KEY_ID_INIT;
    psa_set_key_type(&a, PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1));
    psa_set_key_bits(&a, 256);
    psa_set_key_usage_flags(&a, PSA_KEY_USAGE_SIGN_HASH | PSA_KEY_USAGE_VERIFY_HASH | PSA_KEY_USAGE_EXPORT);
    psa_set_key_algorithm(&a, PSA_ALG_ECDSA(PSA_ALG_ANY_HASH));
    assert_int_equal(psa_generate_key(&a, &id), PSA_SUCCESS);
    /* a copy: the PK context owns its key, the PSA one goes at once */
    assert_int_equal(mbedtls_pk_copy_from_psa(id, &s->key), 0);
    assert_int_equal(psa_destroy_key(id), PSA_SUCCESS);
    psa_reset_key_attributes(&a);
#else
    assert_int_equal(mbedtls_ctr_drbg_seed(&s->drbg, det_entropy, &s->seed, NULL, 0), 0);
    assert_int_equal(mbedtls_pk_setup(&s->key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), 0);
    assert_int_equal(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(s->key),
                                         mbedtls_ctr_drbg_random, &s->drbg), 0);
#endif
}

static void server_init(server *s, uint64_t seed) {
    static const unsigned char serial[] = {1};
    mbedtls_x509write_cert w;
    memset(s, 0, sizeof *s);
    s->seed.seed = seed;
#ifdef TLS_PSA_INIT
    assert_int_equal(psa_crypto_init(), PSA_SUCCESS);
#endif
#ifndef TLS_PSA_KEYS
    mbedtls_ctr_drbg_init(&s->drbg);
#endif
    mbedtls_pk_init(&s->key);
    mbedtls_x509_crt_init(&s->crt);
    mbedtls_ssl_config_init(&s->conf);
    mbedtls_ssl_init(&s->ssl);
    server_key(s);
    /* self-signed, CN=localhost, a CA so the client can trust it directly */
    mbedtls_x509write_crt_init(&w);
    mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w, &s->key);
    mbedtls_x509write_crt_set_issuer_key(&w, &s->key);
    assert_int_equal(mbedtls_x509write_crt_set_subject_name(&w, "CN=localhost"), 0);
    assert_int_equal(mbedtls_x509write_crt_set_issuer_name(&w, "CN=localhost"), 0);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 /* 2.28 has only the MPI setter */
    assert_int_equal(mbedtls_x509write_crt_set_serial_raw(&w, (unsigned char *)serial, sizeof serial), 0);
#else
    {
        mbedtls_mpi n;
        mbedtls_mpi_init(&n);
        assert_int_equal(mbedtls_mpi_lset(&n, serial[0]), 0);
        assert_int_equal(mbedtls_x509write_crt_set_serial(&w, &n), 0);
        mbedtls_mpi_free(&n);
    }
#endif
    assert_int_equal(mbedtls_x509write_crt_set_validity(&w, "20200101000000", "20991231235959"), 0);
    assert_int_equal(mbedtls_x509write_crt_set_basic_constraints(&w, 1, -1), 0);
#ifdef TLS_PSA_KEYS
    assert_int_equal(mbedtls_x509write_crt_pem(&w, s->pem, sizeof s->pem), 0);
#else
    assert_int_equal(mbedtls_x509write_crt_pem(&w, s->pem, sizeof s->pem, mbedtls_ctr_drbg_random,
                                               &s->drbg), 0);
#endif
    mbedtls_x509write_crt_free(&w);
    assert_int_equal(mbedtls_x509_crt_parse(&s->crt, s->pem, strlen((char *)s->pem) + 1), 0);
    assert_int_equal(mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER,
                                                 MBEDTLS_SSL_TRANSPORT_STREAM,
                                                 MBEDTLS_SSL_PRESET_DEFAULT), 0);
#ifndef TLS_PSA_KEYS /* 4.x's TLS draws from PSA */
    mbedtls_ssl_conf_rng(&s->conf, mbedtls_ctr_drbg_random, &s->drbg);
#endif
    assert_int_equal(mbedtls_ssl_conf_own_cert(&s->conf, &s->crt, &s->key), 0);
    assert_int_equal(mbedtls_ssl_setup(&s->ssl, &s->conf), 0);
}

/* A new TLS session on the same keys (the client reconnected). */
static void server_restart(server *s, pipe_t *p) {
    assert_int_equal(mbedtls_ssl_session_reset(&s->ssl), 0);
    mbedtls_ssl_set_bio(&s->ssl, p, sv_send, sv_recv, NULL);
    s->up = s->upgraded = 0;
    s->plain.len = 0;
    s->plain_total = s->messages = 0;
}

static void server_free(server *s) {
    mbedtls_ssl_free(&s->ssl);
    mbedtls_ssl_config_free(&s->conf);
    mbedtls_x509_crt_free(&s->crt);
    mbedtls_pk_free(&s->key);
#ifndef TLS_PSA_KEYS
    mbedtls_ctr_drbg_free(&s->drbg);
#endif
    tbuf_free(&s->plain);
}

static void server_write_all(server *s, const char *text) {
    size_t off = 0, n = strlen(text);
    while (off < n) {
        int r = mbedtls_ssl_write(&s->ssl, (const unsigned char *)text + off, n - off);
        if (r < 0) fail_msg("server write: -0x%04X", (unsigned)-r);
        off += (size_t)r;
    }
}

/* Message k of a run: its length and bytes depend on (seed, k) only.  Some
   are longer than a TLS record (16 KiB), most are small. */
static size_t msg_len(uint64_t seed, size_t k) {
    uint64_t s = seed ^ (k * UINT64_C(0x2545F4914F6CDD1D));
    uint64_t r = prng_next(&s);
    if (r % 10 == 0) return (size_t)(r >> 8) % 40000;
    return (size_t)(r >> 8) % 300;
}
static uint8_t msg_byte(uint64_t seed, size_t k, size_t i) { return rng_stream_byte(seed + k, i); }

/* Message k for the Stream client: JSON text {"n":k,"p":"..."} whose length
   follows msg_len (at least 20 bytes); returns its length (out: 40100). */
static size_t json_msg(uint64_t seed, size_t k, char *out) {
    size_t len = msg_len(seed, k), n, i;
    if (len < 20) len = 20;
    n = (size_t)snprintf(out, 64, "{\"n\":%lu,\"p\":\"", (unsigned long)k);
    for (i = n; i + 2 < len; i++) out[i] = (char)('a' + msg_byte(seed, k, i) % 26);
    out[i++] = '"';
    out[i++] = '}';
    return i;
}

/* The 101 answer once the request is in; then whole frames, each checked
   against the next expected message: exactly once, in order, byte-exact. */
static void server_parse(server *s) {
    if (!s->upgraded) {
        char key[64], accept[STWS_HANDSHAKE_ACCEPT_SIZE], resp[256];
        const char *k;
        size_t i, end = 0, n = 0;
        for (i = 0; i + 3 < s->plain.len; i++)
            if (memcmp(s->plain.p + i, "\r\n\r\n", 4) == 0) {
                end = i + 4;
                break;
            }
        if (!end) return;
        tbuf_byte(&s->plain, 0);
        s->plain.len--;
        k = strstr((const char *)s->plain.p, "Sec-WebSocket-Key: ");
        assert_non_null(k);
        k += strlen("Sec-WebSocket-Key: ");
        while (k[n] && k[n] != '\r' && n < sizeof key - 1) {
            key[n] = k[n];
            n++;
        }
        key[n] = 0;
        assert_int_equal(stws_handshake_accept(key, accept), STWS_OK);
        snprintf(resp, sizeof resp,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
        server_write_all(s, resp);
        memmove(s->plain.p, s->plain.p + end, s->plain.len - end);
        s->plain.len -= end;
        s->upgraded = 1;
    }
    for (;;) {
        const uint8_t *p = s->plain.p;
        size_t n = s->plain.len, pos = 2, len, i;
        uint64_t l;
        uint8_t mask[4];
        if (n < 2) return;
        if (p[0] != (s->stream ? 0x81 : 0x82))
            fail_msg("message %zu: first byte 0x%02X, not a final %s frame "
                     "(the stream lost or mangled bytes)", s->messages, p[0],
                     s->stream ? "text" : "binary");
        if (!(p[1] & 0x80)) fail_msg("message %zu: frame not masked", s->messages);
        l = p[1] & 0x7F;
        if (l == 126) {
            if (n < 4) return;
            l = (uint64_t)p[2] << 8 | p[3];
            pos = 4;
        } else if (l == 127) {
            int j;
            if (n < 10) return;
            for (l = 0, j = 0; j < 8; j++) l = l << 8 | p[2 + j];
            pos = 10;
        }
        if (n < pos + 4 + l) return;
        memcpy(mask, p + pos, 4);
        pos += 4;
        len = (size_t)l;
        if (s->stream) {
            static char want[40100];
            size_t wl;
            for (i = 0; i < len; i++) s->plain.p[pos + i] ^= mask[i & 3];
            if (!s->authed) {
                tbuf frame = {0};
                static const char ok[] = "{\"type\":\"connection.ok\",\"connection_id\":\"c-1\","
                                         "\"me\":{\"id\":\"alice\"}}";
                if (len < 10 || !memchr(p + pos, '{', len)) fail_msg("no auth message");
                srv_frame(&frame, 0x81, ok, strlen(ok));
                tbuf_byte(&frame, 0);
                server_write_all(s, (const char *)frame.p);
                tbuf_free(&frame);
                s->authed = 1;
            } else {
                wl = json_msg(s->msg_seed, s->messages, want);
                if (len != wl || memcmp(p + pos, want, wl) != 0)
                    fail_msg("message %zu: %.*s... (%zu bytes), expected %.*s... (%zu bytes): lost, "
                             "duplicated or out of order", s->messages, 20, (const char *)p + pos,
                             len, 20, want, wl);
                s->messages++;
            }
            pos += len;
            memmove(s->plain.p, s->plain.p + pos, n - pos);
            s->plain.len -= pos;
            continue;
        }
        if (len != msg_len(s->msg_seed, s->messages))
            fail_msg("message %zu: %zu bytes, expected %zu (lost, duplicated or out of order)",
                     s->messages, len, msg_len(s->msg_seed, s->messages));
        for (i = 0; i < len; i++)
            if ((uint8_t)(p[pos + i] ^ mask[i & 3]) != msg_byte(s->msg_seed, s->messages, i))
                fail_msg("message %zu: byte %zu differs", s->messages, i);
        s->messages++;
        pos += len;
        memmove(s->plain.p, s->plain.p + pos, n - pos);
        s->plain.len -= pos;
    }
}

/* Advance the server: handshake, then (if reading) decrypt what is there. */
static void server_pump(server *s, int reading) {
    unsigned char buf[16384];
    int r;
    if (!s->up) {
        r = mbedtls_ssl_handshake(&s->ssl);
        if (r == 0) s->up = 1;
        else if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE)
            fail_msg("server handshake: -0x%04X", (unsigned)-r);
    }
    if (!s->up || !reading) return;
    for (;;) {
        r = mbedtls_ssl_read(&s->ssl, buf, sizeof buf);
        if (r == MBEDTLS_ERR_SSL_WANT_READ) break;
        if (r <= 0) fail_msg("server read: -0x%04X", (unsigned)-r);
        tbuf_put(&s->plain, buf, (size_t)r);
        s->plain_total += (size_t)r;
        if (s->ws) server_parse(s);
    }
}

/* ---- fixture --------------------------------------------------------------- */

typedef struct fx {
    pipe_t pipe;
    server srv;
    det_rng crng;
    stws_tls *tls;
    stws_transport tr;
    uint64_t rng;               /* the test's own choices */
} fx;

static uint64_t fake_now(void *u) {
    (void)u;
    return T0;
}
static int64_t fake_unix(void *u) {
    (void)u;
    return 1800000000;
}

static void fx_init(fx *f, uint64_t seed, int block_pct, size_t window) {
    stws_tls_desc d;
    memset(f, 0, sizeof *f);
    f->rng = seed;
    f->pipe.rng = seed * 3 + 1;
    f->pipe.block_pct = block_pct;
    f->pipe.window = window;
    server_init(&f->srv, seed);
    server_restart(&f->srv, &f->pipe);
    f->crng.seed = seed ^ 0xC11E;
    memset(&d, 0, sizeof d);
    d.inner = pipe_transport(&f->pipe);
    d.ca_pem = (const char *)f->srv.pem; /* verification stays on */
    d.random = det_random(&f->crng);
    f->tls = stws_tls_create(&d);
    assert_non_null(f->tls);
    f->tr = stws_tls_transport(f->tls);
}

static void fx_free(fx *f) {
    stws_tls_destroy(f->tls);
    server_free(&f->srv);
    tbuf_free(&f->pipe.c2s);
    tbuf_free(&f->pipe.s2c);
}

/* Open the TLS transport against the server. */
static void fx_open(fx *f) {
    int r, rounds = 0;
    while ((r = f->tr.open(f->tr.ctx, "localhost", 443)) != 0) {
        if (r != STWS_WANT_READ && r != STWS_WANT_WRITE)
            fail_msg("open: %s (%s)", stws_result_string((stws_result)r), stws_tls_error_detail(f->tls));
        server_pump(&f->srv, 1);
        assert_true(++rounds < 100000);
    }
    assert_true(f->srv.up || (server_pump(&f->srv, 1), f->srv.up));
}

/* Read everything the client wrote (the server catches up). */
static void server_drain(fx *f) {
    int guard = 0;
    while (unread_c2s(&f->pipe) || !f->srv.up) {
        server_pump(&f->srv, 1);
        assert_true(++guard < 100000);
    }
    server_pump(&f->srv, 1);
}

/* Server reads pause for stretches, so back-pressure builds up. */
static int server_reading(fx *f, int *pause) {
    if (*pause > 0) {
        (*pause)--;
        return 0;
    }
    if (prng_next(&f->rng) % 8 == 0) *pause = (int)prng_range(&f->rng, 1, 60);
    return 1;
}

/* ---- tests ------------------------------------------------------------------- */

/* The transport alone, used as the contract says: after a would-block the
   caller offers the same bytes first, and here often more behind them (an
   app that keeps producing).  The server must receive the stream exactly. */
static void send_retry_offers_more_bytes(void **state) {
    static const uint64_t seeds[] = {1, 2, 3, 4, 5, 6, 7, 0xBADC0FFEE};
    size_t si;
    (void)state;
    for (si = 0; si < sizeof seeds / sizeof seeds[0]; si++) {
        fx f;
        size_t total = 300000, produced = 0, pos = 0, grew_after_block = 0, last_len = 0;
        size_t short_writes = 0;
        uint8_t *stream = (uint8_t *)malloc(total);
        int blocked = 0, pause = 0;
        long rounds = 0;
        size_t i;
        assert_non_null(stream);
        for (i = 0; i < total; i++) stream[i] = rng_stream_byte(seeds[si] + 77, i);
        fx_init(&f, seeds[si], 35, 6000);
        f.pipe.want_read_too = (int)(si & 1);
        fx_open(&f);
        while (pos < total) {
            int r;
            if (produced < total) {
                produced += prng_range(&f.rng, 0, 2500);
                if (produced > total) produced = total;
            }
            if (produced > pos) {
                size_t len = produced - pos;
                if (blocked && len > last_len) grew_after_block++;
                r = f.tr.send(f.tr.ctx, stream + pos, len);
                if (r > 0) {
                    assert_true((size_t)r <= len);
                    if ((size_t)r < len) short_writes++; /* a record's worth, or the pipe's */
                    pos += (size_t)r;
                    blocked = 0;
                } else if (r == STWS_WANT_WRITE || r == STWS_WANT_READ) {
                    blocked = 1;
                    last_len = len;
                } else {
                    fail_msg("seed %llu: send: %s (%s)", (unsigned long long)seeds[si],
                             stws_result_string((stws_result)r), stws_tls_error_detail(f.tls));
                }
            }
            server_pump(&f.srv, server_reading(&f, &pause));
            assert_true(++rounds < MAX_ROUNDS);
        }
        server_drain(&f);
        if (f.srv.plain_total != total)
            fail_msg("seed %llu: the server received %zu bytes, the transport reported %zu written",
                     (unsigned long long)seeds[si], f.srv.plain_total, total);
        assert_memory_equal(f.srv.plain.p, stream, total);
        /* the run exercised the case: retries that offered more bytes */
        assert_true(grew_after_block > 10);
        assert_true(short_writes > 10);
        assert_int_equal(f.pipe.misuse, 0);
        fx_free(&f);
        free(stream);
    }
}

/* A retry with fewer bytes than the would-blocked write cannot be honoured
   (mbedTLS would report the kept record's bytes as the smaller count): a
   clear error, not a wrong count. */
static void send_retry_with_fewer_bytes_is_refused(void **state) {
    fx f;
    uint8_t data[1000];
    int r;
    (void)state;
    memset(data, 'x', sizeof data);
    fx_init(&f, 7, 0, 1 << 20);
    fx_open(&f);
    f.pipe.block_pct = 100;
    r = f.tr.send(f.tr.ctx, data, sizeof data);
    assert_int_equal(r, STWS_WANT_WRITE);
    r = f.tr.send(f.tr.ctx, data, 10);
    assert_int_equal(r, STWS_ERR_STATE);
    assert_non_null(strstr(stws_tls_error_detail(f.tls), "fewer"));
    /* the same length again is fine: the kept record goes out once */
    f.pipe.block_pct = 0;
    r = f.tr.send(f.tr.ctx, data, sizeof data);
    assert_int_equal(r, (int)sizeof data);
    server_drain(&f);
    assert_int_equal(f.srv.plain_total, sizeof data);
    fx_free(&f);
}

/* A write that would-blocked, then the stream is closed and opened again:
   the new session starts clean; nothing of the old write is reported
   written on the new one, and the new server gets exactly the new bytes. */
static void reconnect_forgets_a_blocked_write(void **state) {
    fx f;
    uint8_t a[3000], b[500];
    int r;
    (void)state;
    memset(a, 'a', sizeof a);
    memset(b, 'b', sizeof b);
    fx_init(&f, 11, 0, 1 << 20);
    fx_open(&f);
    f.pipe.block_pct = 100;
    assert_int_equal(f.tr.send(f.tr.ctx, a, sizeof a), STWS_WANT_WRITE);
    f.tr.close(f.tr.ctx);
    /* a fresh pipe and server session */
    f.pipe.c2s.len = f.pipe.c2s_off = f.pipe.s2c.len = f.pipe.s2c_off = 0;
    f.pipe.block_pct = 0;
    server_restart(&f.srv, &f.pipe);
    fx_open(&f);
    f.pipe.block_pct = 50;
    {
        size_t pos = 0;
        int rounds = 0;
        while (pos < sizeof b) {
            r = f.tr.send(f.tr.ctx, b + pos, sizeof b - pos);
            if (r > 0) pos += (size_t)r;
            else assert_true(r == STWS_WANT_WRITE);
            assert_true(++rounds < 10000);
        }
    }
    server_drain(&f);
    assert_int_equal(f.srv.plain_total, sizeof b);
    assert_memory_equal(f.srv.plain.p, b, sizeof b);
    fx_free(&f);
}

/* The stream to the client ends (EOF or a transport error) 7 bytes into a
   record: the read reports it (0 = end, or the error) and the detail says
   that a record was cut, and where. */
static void stream_cut_inside_a_record(void **state) {
    static const int codes[] = {0, STWS_ERR_IO};
    size_t i;
    (void)state;
    for (i = 0; i < 2; i++) {
        fx f;
        unsigned char buf[256];
        char want[128];
        int r, rounds = 0;
        fx_init(&f, 21 + i, 0, 1 << 20);
        fx_open(&f);
        /* one whole record the client reads, then one cut 7 bytes in */
        server_write_all(&f.srv, "first record");
        f.pipe.s2c_end = f.pipe.s2c.len + 7;
        f.pipe.s2c_end_code = codes[i];
        server_write_all(&f.srv, "second record, never complete");
        do {
            r = f.tr.recv(f.tr.ctx, buf, sizeof buf);
            assert_true(++rounds < 1000);
        } while (r == STWS_WANT_READ);
        assert_int_equal(r, 12);
        assert_memory_equal(buf, "first record", 12);
        assert_string_equal(stws_tls_error_detail(f.tls), "");
        do {
            r = f.tr.recv(f.tr.ctx, buf, sizeof buf);
            assert_true(++rounds < 1000);
        } while (r == STWS_WANT_READ);
        assert_int_equal(r, codes[i]);
        snprintf(want, sizeof want, codes[i] == 0
                 ? "TLS record cut short: the stream ended 7 bytes into a record"
                 : "the transport failed 7 bytes into a TLS record");
        assert_string_equal(stws_tls_error_detail(f.tls), want);
        fx_free(&f);
    }
}

/* The stream ends at a record boundary without close_notify: an end (0),
   reported as a truncation in the detail. */
static void stream_end_without_close_notify(void **state) {
    fx f;
    unsigned char buf[64];
    int r, rounds = 0;
    (void)state;
    fx_init(&f, 23, 0, 1 << 20);
    fx_open(&f);
    server_write_all(&f.srv, "only");
    f.pipe.s2c_end = f.pipe.s2c.len;
    do {
        r = f.tr.recv(f.tr.ctx, buf, sizeof buf);
        assert_true(++rounds < 1000);
    } while (r == STWS_WANT_READ);
    assert_int_equal(r, 4);
    r = f.tr.recv(f.tr.ctx, buf, sizeof buf);
    assert_int_equal(r, 0);
    assert_string_equal(stws_tls_error_detail(f.tls), "TLS stream truncated (no close_notify)");
    fx_free(&f);
}

/* What the server reads after the client closed: application bytes into
   *got, and the result that ended the read (WANT_READ: nothing more yet). */
static int server_read_rest(fx *f, size_t *got) {
    unsigned char buf[4096];
    int r, guard = 0;
    *got = 0;
    for (;;) {
        r = mbedtls_ssl_read(&f->srv.ssl, buf, sizeof buf);
        if (r <= 0) return r;
        *got += (size_t)r;
        assert_true(++guard < 1000);
    }
}

/* Found by fuzz/fuzz_client_tls.c (fuzz/corpus/fuzz_client_tls/regress_close_notify_dup*):
   a write fails with its record half out (5 bytes sent, then the transport
   fails); the connection treats the message as not written and sends it
   again on its next socket.  Closing must not complete that record:
   mbedtls_ssl_close_notify() flushes pending output before its alert, so
   the server used to receive the message here, then again after the
   reconnect (a duplicate).  The transport recovers before the close (the
   fuzzer's did: a failure code from a socket still writable). */
static void test_fuzz_tls_close_after_failed_write(void **state) {
    fx f;
    size_t got;
    int r;
    (void)state;
    fx_init(&f, 41, 0, 1 << 20);
    fx_open(&f);
    server_drain(&f);
    f.pipe.accept_max = 5; /* the record's header goes out ... */
    f.pipe.fail_in = 2;    /* ... and the next inner write fails */
    r = f.tr.send(f.tr.ctx, (const unsigned char *)"{\"n\":1}", 7);
    assert_int_equal(r, STWS_ERR_IO);
    assert_int_equal(unread_c2s(&f.pipe), 5);
    f.pipe.accept_max = 0;
    f.pipe.fail_in = 0;
    f.tr.close(f.tr.ctx);
    r = server_read_rest(&f, &got);
    if (got) fail_msg("the server received %zu bytes of a write that failed (the close completed its record)", got);
    assert_int_equal(r, MBEDTLS_ERR_SSL_WANT_READ); /* a cut record: no close_notify after it */
    assert_int_equal(unread_c2s(&f.pipe), 0);
    assert_int_equal(f.pipe.misuse, 0);
    fx_free(&f);
}

/* The same with a write that would-blocked (its record kept whole by
   mbedTLS, the caller told nothing was written): the close sends none of
   it, and no close_notify. */
static void close_with_a_blocked_write_sends_nothing_of_it(void **state) {
    fx f;
    uint8_t data[300];
    size_t got, before;
    int r;
    (void)state;
    memset(data, 'w', sizeof data);
    fx_init(&f, 43, 0, 1 << 20);
    fx_open(&f);
    server_drain(&f);
    f.pipe.block_pct = 100;
    assert_int_equal(f.tr.send(f.tr.ctx, data, sizeof data), STWS_WANT_WRITE);
    before = f.pipe.c2s.len;
    f.pipe.block_pct = 0;
    f.tr.close(f.tr.ctx);
    assert_int_equal(f.pipe.c2s.len, before); /* not a byte more on the wire */
    r = server_read_rest(&f, &got);
    assert_int_equal(got, 0);
    assert_int_equal(r, MBEDTLS_ERR_SSL_WANT_READ);
    assert_int_equal(f.pipe.misuse, 0);
    fx_free(&f);
}

/* After writes that all went out, the close still sends close_notify: the
   server reads every byte, then the clean end (RFC 8446 §6.1). */
static void close_after_complete_writes_sends_close_notify(void **state) {
    fx f;
    size_t got, pos = 0;
    int r, rounds = 0;
    (void)state;
    fx_init(&f, 47, 0, 1 << 20);
    fx_open(&f);
    server_drain(&f);
    f.pipe.block_pct = 50;
    while (pos < 5) {
        r = f.tr.send(f.tr.ctx, (const unsigned char *)"hello" + pos, 5 - pos);
        if (r > 0) pos += (size_t)r;
        else assert_int_equal(r, STWS_WANT_WRITE);
        assert_true(++rounds < 10000);
    }
    f.pipe.block_pct = 0;
    f.tr.close(f.tr.ctx);
    r = server_read_rest(&f, &got);
    assert_int_equal(got, 5);
    assert_int_equal(r, MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
    fx_free(&f);
}

#if defined(MBEDTLS_SSL_RENEGOTIATION) && defined(MBEDTLS_SSL_SRV_C)
/* A record that is not ours waits in mbedTLS's output: the server asks for
   renegotiation (HelloRequest), the client refuses with a no_renegotiation
   alert, and that alert cannot be flushed (the read returns WANT_WRITE).  The
   next send must not be counted against the alert's flush: mbedTLS would
   flush the alert and report the offered bytes written without encrypting
   them. */
static void send_after_an_unflushed_alert(void **state) {
    fx f;
    unsigned char buf[64];
    int r, rounds = 0;
    size_t pos = 0;
    (void)state;
    fx_init(&f, 13, 0, 1 << 20);
    mbedtls_ssl_conf_renegotiation(&f.srv.conf, MBEDTLS_SSL_RENEGOTIATION_ENABLED);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    /* renegotiation is TLS 1.2's (1.3 has none: a HelloRequest there is an
       unexpected message); the session reset makes the server's context
       take the new maximum (3.x copies it into the context at reset) */
    mbedtls_ssl_conf_max_tls_version(&f.srv.conf, MBEDTLS_SSL_VERSION_TLS1_2);
    server_restart(&f.srv, &f.pipe);
#endif
    fx_open(&f);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    assert_int_equal(mbedtls_ssl_get_version_number(&f.srv.ssl), MBEDTLS_SSL_VERSION_TLS1_2);
#endif
    assert_int_equal(mbedtls_ssl_renegotiate(&f.srv.ssl), 0); /* HelloRequest sent */
    f.pipe.block_pct = 100;
    r = f.tr.recv(f.tr.ctx, buf, sizeof buf);
    if (r != STWS_WANT_WRITE)
        fail_msg("recv after HelloRequest: %d (%s)", r, stws_tls_error_detail(f.tls));
    f.pipe.block_pct = 50;
    while (pos < 5) {
        r = f.tr.send(f.tr.ctx, (const unsigned char *)"hello" + pos, 5 - pos);
        if (r > 0) pos += (size_t)r;
        else assert_int_equal(r, STWS_WANT_WRITE);
        assert_true(++rounds < 10000);
    }
    server_drain(&f);
    assert_int_equal(f.srv.plain_total, 5);
    assert_memory_equal(f.srv.plain.p, "hello", 5);
    fx_free(&f);
}
#endif

/* The natural case: stws_conn over wss:// trickling messages while the
   server pauses its reads.  Every message arrives once, in order, byte-exact;
   whenever stws_conn_buffered() is 0 the server, once it has read what the
   pipe holds, has every message sent so far. */
static void conn_trickle_under_back_pressure(void **state) {
    static const uint64_t seeds[] = {5, 6, 8, 9, 10, 0x5EED};
    size_t si;
    (void)state;
    for (si = 0; si < sizeof seeds / sizeof seeds[0]; si++) {
        fx f;
        stws_conn_desc d;
        stws_conn *c;
        det_rng rr;
        size_t n_msgs = 1500, sent = 0, zero_checks = 0;
        uint8_t *msg = (uint8_t *)malloc(40000);
        int pause = 0;
        long rounds = 0;
        assert_non_null(msg);
        fx_init(&f, seeds[si], 30, 5000);
        f.pipe.want_read_too = (int)(si & 1);
        f.srv.ws = 1;
        f.srv.msg_seed = seeds[si] * 31;
        rr.seed = seeds[si] ^ 0xAB;
        rr.pos = 0;
        rr.calls = 0;
        rr.fail = 0;
        memset(&d, 0, sizeof d);
        d.url = "wss://localhost/stream";
        d.transport = f.tr;
        d.clock.now_ms = fake_now;
        d.clock.unix_s = fake_unix;
        d.random = det_random(&rr);
        c = stws_conn_create(&d);
        assert_non_null(c);
        assert_int_equal(stws_conn_connect(c), STWS_OK);
        while (stws_conn_get_state(c) != STWS_CONN_OPEN) {
            stws_conn_event ev;
            (void)stws_conn_step(c);
            while (stws_conn_next_event(c, &ev))
                if (ev.type == STWS_CONN_EVENT_ERROR || ev.type == STWS_CONN_EVENT_CLOSE)
                    fail_msg("connect failed: %s", stws_conn_error_detail(c));
            server_pump(&f.srv, 1);
            assert_true(++rounds < 100000);
        }
        for (;;) {
            stws_conn_event ev;
            /* trickle: a message now and then, also while blocked */
            if (sent < n_msgs && prng_next(&f.rng) % 3 == 0) {
                size_t len = msg_len(f.srv.msg_seed, sent), i;
                for (i = 0; i < len; i++) msg[i] = msg_byte(f.srv.msg_seed, sent, i);
                assert_int_equal(stws_conn_send(c, STWS_OP_BINARY, msg, len), STWS_OK);
                sent++;
            }
            (void)stws_conn_step(c);
            while (stws_conn_next_event(c, &ev))
                if (ev.type == STWS_CONN_EVENT_ERROR || ev.type == STWS_CONN_EVENT_CLOSE)
                    fail_msg("seed %llu: the conn failed after %zu messages: %s",
                             (unsigned long long)seeds[si], sent, stws_conn_error_detail(c));
            if (stws_conn_buffered(c) == 0) {
                /* everything reported written must be on the wire */
                server_drain(&f);
                if (f.srv.messages != sent)
                    fail_msg("seed %llu: stws_conn_buffered() is 0 after %zu messages, "
                             "the server has %zu", (unsigned long long)seeds[si], sent,
                             f.srv.messages);
                zero_checks++;
                if (sent == n_msgs) break;
            }
            server_pump(&f.srv, server_reading(&f, &pause));
            assert_true(++rounds < MAX_ROUNDS);
        }
        assert_int_equal(f.srv.messages, n_msgs);
        assert_int_equal(f.pipe.misuse, 0);
        assert_true(f.pipe.blocks > 100); /* back-pressure really happened */
        assert_true(zero_checks > 1);
        stws_conn_destroy(c);
        fx_free(&f);
        free(msg);
    }
}

/* The Stream client over wss:// on the same pipe: it authenticates, gets
   connection.ok, then trickles messages through its send queue while the
   server pauses its reads.  Whenever stws_client_queued() is 0 the server
   has every message sent so far (issue 13: "every message is reported sent,
   the server never receives some"). */
static void client_trickle_under_back_pressure(void **state) {
    static const uint64_t seeds[] = {31, 32, 33};
    size_t si;
    (void)state;
    for (si = 0; si < sizeof seeds / sizeof seeds[0]; si++) {
        fx f;
        stws_client_desc d;
        stws_client *c;
        det_rng rr;
        size_t n_msgs = 800, sent = 0, zero_checks = 0;
        static char msg[40100];
        int pause = 0, connected = 0;
        long rounds = 0;
        fx_init(&f, seeds[si], 30, 5000);
        f.pipe.want_read_too = (int)(si & 1);
        f.srv.ws = 1;
        f.srv.stream = 1;
        f.srv.msg_seed = seeds[si] * 17;
        memset(&rr, 0, sizeof rr);
        rr.seed = seeds[si] ^ 0xCD;
        memset(&d, 0, sizeof d);
        d.url = "wss://localhost/api/v2/connect";
        d.api_key = "key";
        d.user_id = "alice";
        d.api_secret = "test-secret";
        d.conn.transport = f.tr;
        d.clock.now_ms = fake_now;
        d.clock.unix_s = fake_unix;
        d.random = det_random(&rr);
        c = stws_client_create(&d);
        assert_non_null(c);
        assert_int_equal(stws_client_connect(c), STWS_OK);
        for (;;) {
            stws_client_event ev;
            if (connected && sent < n_msgs && prng_next(&f.rng) % 3 == 0) {
                size_t len = json_msg(f.srv.msg_seed, sent, msg);
                assert_int_equal(stws_client_send(c, msg, len), STWS_OK);
                sent++;
            }
            (void)stws_client_step(c);
            while (stws_client_next_event(c, &ev)) {
                if (ev.type == STWS_CLIENT_EVENT_CONNECTED) connected = 1;
                else if (ev.type != STWS_CLIENT_EVENT_SERVER)
                    fail_msg("seed %llu: client event %d after %zu messages: %.*s",
                             (unsigned long long)seeds[si], (int)ev.type, sent,
                             (int)ev.message.len, ev.message.ptr);
            }
            if (connected && stws_client_queued(c) == 0) {
                server_drain(&f);
                if (f.srv.messages != sent)
                    fail_msg("seed %llu: stws_client_queued() is 0 after %zu messages, "
                             "the server has %zu", (unsigned long long)seeds[si], sent,
                             f.srv.messages);
                zero_checks++;
                if (sent == n_msgs) break;
            }
            server_pump(&f.srv, server_reading(&f, &pause));
            assert_true(++rounds < MAX_ROUNDS);
        }
        assert_int_equal(f.srv.messages, n_msgs);
        assert_int_equal(f.pipe.misuse, 0);
        assert_true(f.pipe.blocks > 100);
        assert_true(zero_checks > 1);
        stws_client_destroy(c);
        fx_free(&f);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(send_retry_offers_more_bytes),
        cmocka_unit_test(send_retry_with_fewer_bytes_is_refused),
        cmocka_unit_test(reconnect_forgets_a_blocked_write),
        cmocka_unit_test(conn_trickle_under_back_pressure),
        cmocka_unit_test(client_trickle_under_back_pressure),
        cmocka_unit_test(stream_cut_inside_a_record),
        cmocka_unit_test(stream_end_without_close_notify),
        cmocka_unit_test(test_fuzz_tls_close_after_failed_write),
        cmocka_unit_test(close_with_a_blocked_write_sends_nothing_of_it),
        cmocka_unit_test(close_after_complete_writes_sends_close_notify),
#if defined(MBEDTLS_SSL_RENEGOTIATION) && defined(MBEDTLS_SSL_SRV_C)
        cmocka_unit_test(send_after_an_unflushed_alert),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
