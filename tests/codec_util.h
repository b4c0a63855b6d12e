/* Helpers for the codec tests: byte buffers, a builder for server->client
   frames, a decoder for the codec's client->server output, a deterministic
   random hook and a counting allocator.  Test-side memory uses malloc
   directly, so it never shows up in the codec's allocator counts. */
#ifndef CODEC_UTIL_H
#define CODEC_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "../stream_ws.h"

#if defined(__GNUC__) || defined(__clang__)
#define CU_FN static __attribute__((unused))
#else
#define CU_FN static
#endif

/* ---- checks that name the case they belong to --------------------------- */

#define EXPECT_EQ(label, actual, expected)                                          \
    do {                                                                            \
        long long a_ = (long long)(actual), e_ = (long long)(expected);             \
        if (a_ != e_)                                                               \
            fail_msg("%s: %s is %lld, expected %lld (line %d)", (label), #actual,   \
                     a_, e_, __LINE__);                                             \
    } while (0)

#define EXPECT_TRUE(label, cond)                                                    \
    do {                                                                            \
        if (!(cond)) fail_msg("%s: expected %s (line %d)", (label), #cond, __LINE__); \
    } while (0)

#define EXPECT_MEM(label, actual, expected, n)                                      \
    do {                                                                            \
        size_t n_ = (n);                                                            \
        if (n_ && memcmp((actual), (expected), n_) != 0)                            \
            fail_msg("%s: %s differs from %s over %zu bytes (line %d)", (label),    \
                     #actual, #expected, n_, __LINE__);                             \
    } while (0)

/* ---- growable byte buffer ------------------------------------------------ */

typedef struct tbuf {
    uint8_t *p;
    size_t len, cap;
} tbuf;

CU_FN void tbuf_put(tbuf *b, const void *d, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) cap *= 2;
        b->p = (uint8_t *)realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, d, n);
    b->len += n;
}
CU_FN void tbuf_byte(tbuf *b, int x) {
    uint8_t c = (uint8_t)x;
    tbuf_put(b, &c, 1);
}
CU_FN void tbuf_free(tbuf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* An unmasked server frame with the minimal length encoding.  b0 is the whole
   first byte: FIN (0x80), RSV bits and the opcode. */
CU_FN void srv_frame(tbuf *b, int b0, const void *payload, size_t n) {
    int k;
    tbuf_byte(b, b0);
    if (n < 126) {
        tbuf_byte(b, (int)n);
    } else if (n <= 0xFFFF) {
        tbuf_byte(b, 126);
        tbuf_byte(b, (int)(n >> 8));
        tbuf_byte(b, (int)(n & 0xFF));
    } else {
        tbuf_byte(b, 127);
        for (k = 7; k >= 0; k--) tbuf_byte(b, (int)(((uint64_t)n >> (8 * k)) & 0xFF));
    }
    tbuf_put(b, payload, n);
}
CU_FN void srv_str(tbuf *b, int b0, const char *s) { srv_frame(b, b0, s, strlen(s)); }

/* A server close frame: code (or none when code < 0) and a reason. */
CU_FN void srv_close(tbuf *b, int code, const void *reason, size_t rlen) {
    uint8_t p[256];
    size_t n = 0;
    if (code >= 0) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)(code & 0xFF);
        n = 2;
    }
    if (rlen) memcpy(p + n, reason, rlen);
    srv_frame(b, 0x88, p, n + rlen);
}

/* ---- the codec's output: masked client frames ---------------------------- */

typedef struct cframe {
    int fin, rsv, opcode;
    int len_form;        /* 7, 16 or 64: how the length was encoded */
    uint8_t key[4];
    uint8_t *payload;    /* unmasked copy, malloc'd (NULL when empty) */
    size_t len;
} cframe;

typedef struct cframes {
    cframe *f;
    size_t n;
} cframes;

/* Decode all of p[0..n): every frame must be complete, masked, without RSV
   bits and with the minimal length encoding (RFC 6455 §5.2). */
CU_FN void decode_client(const uint8_t *p, size_t n, cframes *out, const char *label) {
    size_t pos = 0;
    out->f = NULL;
    out->n = 0;
    while (pos < n) {
        cframe fr;
        uint64_t l;
        size_t i;
        memset(&fr, 0, sizeof fr);
        if (n - pos < 2) fail_msg("%s: truncated client frame header at %zu", label, pos);
        fr.fin = p[pos] >> 7;
        fr.rsv = p[pos] & 0x70;
        fr.opcode = p[pos] & 0x0F;
        if (!(p[pos + 1] & 0x80)) fail_msg("%s: client frame at %zu is not masked", label, pos);
        l = p[pos + 1] & 0x7F;
        pos += 2;
        if (l == 126) {
            if (n - pos < 2) fail_msg("%s: truncated 16-bit length", label);
            l = (uint64_t)p[pos] << 8 | p[pos + 1];
            pos += 2;
            fr.len_form = 16;
            if (l < 126) fail_msg("%s: non-minimal 16-bit length %llu", label, (unsigned long long)l);
        } else if (l == 127) {
            int k;
            if (n - pos < 8) fail_msg("%s: truncated 64-bit length", label);
            if (p[pos] & 0x80) fail_msg("%s: 64-bit length with MSB set", label);
            for (l = 0, k = 0; k < 8; k++) l = l << 8 | p[pos + k];
            pos += 8;
            fr.len_form = 64;
            if (l <= 0xFFFF) fail_msg("%s: non-minimal 64-bit length %llu", label, (unsigned long long)l);
        } else {
            fr.len_form = 7;
        }
        if (n - pos < 4) fail_msg("%s: truncated masking key", label);
        memcpy(fr.key, p + pos, 4);
        pos += 4;
        if ((uint64_t)(n - pos) < l) fail_msg("%s: truncated client payload", label);
        fr.len = (size_t)l;
        if (fr.len) {
            fr.payload = (uint8_t *)malloc(fr.len);
            assert_non_null(fr.payload);
            for (i = 0; i < fr.len; i++) fr.payload[i] = p[pos + i] ^ fr.key[i & 3];
        }
        pos += fr.len;
        out->f = (cframe *)realloc(out->f, (out->n + 1) * sizeof *out->f);
        assert_non_null(out->f);
        out->f[out->n++] = fr;
    }
}

CU_FN void cframes_free(cframes *fs) {
    size_t i;
    for (i = 0; i < fs->n; i++) free(fs->f[i].payload);
    free(fs->f);
    fs->f = NULL;
    fs->n = 0;
}

/* Take and consume everything the codec has queued. */
CU_FN void drain(stws_codec *c, tbuf *sink) {
    size_t n = 0;
    const uint8_t *p = stws_codec_output(c, &n);
    if (n) {
        assert_non_null(p);
        if (sink) tbuf_put(sink, p, n);
    }
    stws_codec_output_consumed(c, n);
}

/* Decode and consume the pending output. */
CU_FN void take_output(stws_codec *c, cframes *fs, const char *label) {
    tbuf sink = {0};
    drain(c, &sink);
    decode_client(sink.p, sink.len, fs, label);
    tbuf_free(&sink);
}

/* A close frame with exactly the given code (code < 0: empty payload). */
CU_FN void expect_close_frame(const cframe *f, int code, const char *label) {
    EXPECT_EQ(label, f->opcode, STWS_OP_CLOSE);
    EXPECT_EQ(label, f->fin, 1);
    EXPECT_EQ(label, f->rsv, 0);
    if (code < 0) {
        EXPECT_EQ(label, f->len, 0);
    } else {
        EXPECT_EQ(label, f->len, 2);
        EXPECT_EQ(label, f->payload[0], code >> 8);
        EXPECT_EQ(label, f->payload[1], code & 0xFF);
    }
}

/* ---- deterministic random hook ------------------------------------------ */

/* Byte i of the stream for a seed (splitmix64 of the index). */
CU_FN uint8_t rng_stream_byte(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return (uint8_t)((z ^ (z >> 31)) >> 24);
}

typedef struct det_rng {
    uint64_t seed;
    uint64_t pos;     /* bytes produced so far */
    size_t calls;
    int fail;         /* nonzero: report failure */
} det_rng;

CU_FN int det_fill(void *buf, size_t len, void *user_data) {
    det_rng *r = (det_rng *)user_data;
    size_t i;
    r->calls++;
    if (r->fail) return -1;
    for (i = 0; i < len; i++) ((uint8_t *)buf)[i] = rng_stream_byte(r->seed, r->pos++);
    return 0;
}

CU_FN stws_random det_random(det_rng *r) {
    stws_random h;
    h.fill = det_fill;
    h.user_data = r;
    return h;
}

/* ---- counting allocator --------------------------------------------------- */

typedef struct counting {
    size_t allocs, frees;
    long live;
    long budget;      /* allocations that may still succeed; < 0: unlimited */
    size_t failed;
} counting;

CU_FN void *count_alloc(size_t size, void *user_data) {
    counting *a = (counting *)user_data;
    void *p;
    if (a->budget == 0) {
        a->failed++;
        return NULL;
    }
    if (a->budget > 0) a->budget--;
    p = malloc(size ? size : 1);
    if (p) {
        a->allocs++;
        a->live++;
    }
    return p;
}

CU_FN void count_free(void *ptr, void *user_data) {
    counting *a = (counting *)user_data;
    if (!ptr) return;
    a->frees++;
    a->live--;
    free(ptr);
}

CU_FN stws_allocator counting_allocator(counting *a) {
    stws_allocator al;
    al.alloc = count_alloc;
    al.free = count_free;
    al.user_data = a;
    return al;
}

/* ---- test PRNG (fixed seeds) --------------------------------------------- */

CU_FN uint64_t prng_next(uint64_t *s) {
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}
CU_FN size_t prng_range(uint64_t *s, size_t lo, size_t hi) { /* inclusive */
    return lo + (size_t)(prng_next(s) % (uint64_t)(hi - lo + 1));
}

#endif /* CODEC_UTIL_H */
