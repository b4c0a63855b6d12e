/* libFuzzer target: the client codec fed an arbitrary server->client stream.

   Input: byte 0 is the configuration, the rest is the stream.
     bits 0-2  chunking: 0 all at once, 1/2/3/7 bytes at a time, 5 sizes
               1,2,..,16 cycling, 6 pseudo-random sizes 1..64, 7 sizes
               around the 7-bit/16-bit length boundaries
     bit 3     small limits (max_frame 100, max_message 200, max_output 300)
     bit 4     send our own close (1000, "bye") before reading
     bit 5     drain only half of the pending output after each call
     bits 6-7  fault injection: 2 = allocation #2..#5 (by input length) and
               every later one fails, 3 = the random source fails after its
               first fill; 0 and 1 = none
   Each chunk is copied into an exactly sized heap block, so ASan reports any
   read past what the codec was given.  Every event's bytes are read.

   Invariants (a violation is __builtin_trap()):
     - *used <= len; a call that returns no event and no error used all of
       its input; an event consumed at least one byte
     - an error comes with ev.type ERROR and ev.error == the result, the
       state is FAILED, and every later call returns the same error and
       close code
     - MESSAGE: text/binary, len <= max_message, text is valid UTF-8;
       PING/PONG <= 125 bytes; CLOSE: 1005 with no reason or a valid code
       with a valid UTF-8 reason, and the state is CLOSED
     - output: well-formed client frames (FIN, no RSV, masked, minimal
       length encoding), only pong and close, at most one close and nothing
       after it, close payload empty or a sendable code (never 1005/1006/
       1015) plus valid UTF-8; without fault injection the frames are exactly
       the pongs for the pings seen and the close replies the events imply
     - pending output never exceeds max_output + the control slack
     - without fault injection or half draining, the events are the same as
       when the whole stream is given in one call */
#define STREAM_WS_IMPLEMENTATION
#include "stream_ws.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                          \
    do {                                  \
        if (!(c)) __builtin_trap();       \
    } while (0)

/* ---- hooks ---------------------------------------------------------------- */

typedef struct fz_hooks {
    unsigned long allocs;
    unsigned long fail_alloc_at; /* 0: never */
    unsigned long fills;
    unsigned long fail_fill_after; /* 0: never */
    uint64_t rng;
} fz_hooks;

static void *fz_alloc(size_t size, void *ud) {
    fz_hooks *h = (fz_hooks *)ud;
    h->allocs++;
    if (h->fail_alloc_at && h->allocs >= h->fail_alloc_at) return NULL;
    return malloc(size);
}

static void fz_free(void *p, void *ud) {
    (void)ud;
    free(p);
}

static int fz_fill(void *buf, size_t len, void *ud) {
    fz_hooks *h = (fz_hooks *)ud;
    uint8_t *p = (uint8_t *)buf;
    size_t i;
    h->fills++;
    if (h->fail_fill_after && h->fills > h->fail_fill_after) return -1;
    for (i = 0; i < len; i++) {
        h->rng ^= h->rng << 13;
        h->rng ^= h->rng >> 7;
        h->rng ^= h->rng << 17;
        p[i] = (uint8_t)(h->rng >> 24);
    }
    return 0;
}

/* ---- independent checks --------------------------------------------------- */

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing > U+10FFFF. */
static int utf8_ok(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k, need;
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        if ((b & 0xE0) == 0xC0) need = 1, cp = b & 0x1F;
        else if ((b & 0xF0) == 0xE0) need = 2, cp = b & 0x0F;
        else if ((b & 0xF8) == 0xF0) need = 3, cp = b & 0x07;
        else return 0;
        if (n - i - 1 < need) return 0;
        for (k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000))
            return 0;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += need + 1;
    }
    return 1;
}

/* Close codes an endpoint may put on the wire (RFC 6455 §7.4.1, §7.4.2 and
   the IANA registry): never 1004-1006 or 1015, nothing below 1000. */
static int sendable_close_code(int code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

static volatile uint8_t sink;

static uint64_t touch(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    size_t i;
    if (n) CHECK(p != NULL);
    for (i = 0; i < n; i++) {
        h = (h ^ p[i]) * 1099511628211ULL;
        sink ^= p[i];
    }
    return h;
}

/* ---- expected output frames ------------------------------------------------- */

typedef struct exp_frame {
    uint8_t opcode;
    uint8_t len;
    uint8_t data[125];
} exp_frame;

typedef struct out_check {
    int exact;            /* compare with the expected frames */
    uint8_t *wire;        /* everything drained so far */
    size_t wire_len, wire_cap, wire_pos;
    exp_frame *exp;
    size_t exp_len, exp_cap, exp_pos;
    int close_queued;     /* our model: a close frame is (or should be) queued */
    int close_seen;       /* a close frame was on the wire */
    size_t pending;       /* output left pending by the last drain */
} out_check;

static void expect_frame(out_check *o, uint8_t opcode, const uint8_t *data, size_t len) {
    CHECK(len <= 125);
    if (o->exp_len == o->exp_cap) {
        size_t cap = o->exp_cap ? o->exp_cap * 2 : 16;
        exp_frame *n = (exp_frame *)realloc(o->exp, cap * sizeof *n);
        CHECK(n != NULL);
        o->exp = n;
        o->exp_cap = cap;
    }
    o->exp[o->exp_len].opcode = opcode;
    o->exp[o->exp_len].len = (uint8_t)len;
    if (len) memcpy(o->exp[o->exp_len].data, data, len);
    o->exp_len++;
}

static void expect_close(out_check *o, int code, const char *reason, size_t rlen) {
    uint8_t p[125];
    size_t n = 0;
    if (code) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        if (rlen) memcpy(p + 2, reason, rlen);
        n = 2 + rlen;
    }
    expect_frame(o, STWS_OP_CLOSE, p, n);
    o->close_queued = 1;
}

/* Check every complete frame in wire[wire_pos..wire_len). */
static void check_frames(out_check *o) {
    for (;;) {
        const uint8_t *f = o->wire + o->wire_pos;
        size_t avail = o->wire_len - o->wire_pos, hlen, plen, i;
        uint8_t payload[125];
        int op;
        if (avail < 2) return;
        CHECK((f[0] & 0x80) != 0); /* FIN: we never fragment */
        CHECK((f[0] & 0x70) == 0); /* no RSV */
        op = f[0] & 0x0F;
        CHECK(op == STWS_OP_PONG || op == STWS_OP_CLOSE);
        CHECK((f[1] & 0x80) != 0); /* client frames are masked (§5.3) */
        plen = f[1] & 0x7F;
        CHECK(plen <= 125); /* control frames (and minimal encoding) */
        hlen = 2 + 4;
        if (avail < hlen + plen) return;
        for (i = 0; i < plen; i++) payload[i] = f[hlen + i] ^ f[2 + (i & 3)];
        CHECK(!o->close_seen); /* nothing after our close (§5.5.1) */
        if (op == STWS_OP_CLOSE) {
            o->close_seen = 1;
            CHECK(plen != 1);
            if (plen >= 2) {
                CHECK(sendable_close_code(payload[0] << 8 | payload[1]));
                CHECK(utf8_ok(payload + 2, plen - 2));
            }
        }
        if (o->exact) {
            const exp_frame *e;
            CHECK(o->exp_pos < o->exp_len);
            e = &o->exp[o->exp_pos++];
            CHECK(e->opcode == op);
            CHECK(e->len == plen);
            CHECK(plen == 0 || memcmp(e->data, payload, plen) == 0);
        }
        o->wire_pos += hlen + plen;
    }
}

/* Take n pending bytes of output (all if n is (size_t)-1). */
static void drain(stws_codec *c, out_check *o, size_t n) {
    size_t pending;
    const uint8_t *p = stws_codec_output(c, &pending);
    if (n > pending) n = pending;
    o->pending = pending - n;
    if (!n) return;
    CHECK(p != NULL);
    if (o->wire_len + n > o->wire_cap) {
        size_t cap = o->wire_cap ? o->wire_cap : 256;
        uint8_t *w;
        while (cap < o->wire_len + n) cap *= 2;
        w = (uint8_t *)realloc(o->wire, cap);
        CHECK(w != NULL);
        o->wire = w;
        o->wire_cap = cap;
    }
    memcpy(o->wire + o->wire_len, p, n);
    o->wire_len += n;
    stws_codec_output_consumed(c, n);
    check_frames(o);
}

/* ---- event trace ------------------------------------------------------------ */

typedef struct ev_rec {
    int type, opcode, close_code, error;
    size_t len;
    uint64_t hash;
} ev_rec;

typedef struct trace {
    ev_rec *v;
    size_t n, cap;
} trace;

static void trace_add(trace *t, const stws_codec_event *ev, int r, uint64_t hash) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        ev_rec *n = (ev_rec *)realloc(t->v, cap * sizeof *n);
        CHECK(n != NULL);
        t->v = n;
        t->cap = cap;
    }
    memset(&t->v[t->n], 0, sizeof t->v[t->n]);
    t->v[t->n].type = ev->type;
    t->v[t->n].opcode = ev->type == STWS_CODEC_EVENT_MESSAGE ? (int)ev->opcode : 0;
    t->v[t->n].close_code = (ev->type == STWS_CODEC_EVENT_CLOSE || ev->type == STWS_CODEC_EVENT_ERROR) ? ev->close_code : 0;
    t->v[t->n].error = r;
    t->v[t->n].len = ev->type == STWS_CODEC_EVENT_ERROR ? 0 : ev->len;
    t->v[t->n].hash = ev->type == STWS_CODEC_EVENT_ERROR ? 0 : hash;
    t->n++;
}

/* ---- one run ---------------------------------------------------------------- */

typedef struct run_cfg {
    int chunking;
    int small;
    int send_close;
    int half_drain;
    unsigned long fail_alloc_at;
    unsigned long fail_fill_after;
} run_cfg;

#define SMALL_FRAME 100
#define SMALL_MESSAGE 200
#define SMALL_OUTPUT 300
#define CONTROL_SLACK 65536 /* documented in the implementation */

static size_t next_chunk(const run_cfg *cfg, size_t k, uint32_t *prng) {
    static const size_t boundary[] = {1, 125, 2, 126, 3, 127, 4, 128, 65535, 1, 65536};
    switch (cfg->chunking) {
    case 0: return (size_t)-1;
    case 1: return 1;
    case 2: return 2;
    case 3: return 3;
    case 4: return 7;
    case 5: return 1 + k % 16;
    case 6:
        *prng = *prng * 1103515245u + 12345u;
        return 1 + (*prng >> 16) % 64;
    default: return boundary[k % (sizeof boundary / sizeof boundary[0])];
    }
}

static int valid_error(int r) { return (r <= STWS_ERR_RESERVED_BITS && r >= STWS_ERR_MESSAGE_TOO_BIG) || r == STWS_ERR_NOMEM || r == STWS_ERR_RANDOM || r == STWS_ERR_OUTPUT_FULL; }

static void run(const uint8_t *data, size_t n, const run_cfg *cfg, trace *tr) {
    fz_hooks hooks;
    stws_codec_desc desc;
    stws_codec *c;
    out_check o;
    size_t off = 0, k = 0, max_message, max_output;
    uint32_t prng = 0x9E3779B9u ^ (uint32_t)n;
    int faults = cfg->fail_alloc_at || cfg->fail_fill_after;
    int failed = 0, closed = 0;
    stws_result sticky = STWS_OK;
    int sticky_code = 0;

    memset(&hooks, 0, sizeof hooks);
    hooks.fail_alloc_at = cfg->fail_alloc_at;
    hooks.fail_fill_after = cfg->fail_fill_after;
    hooks.rng = 0x243F6A8885A308D3ULL;
    memset(&desc, 0, sizeof desc);
    if (cfg->small) {
        desc.max_frame_size = SMALL_FRAME;
        desc.max_message_size = SMALL_MESSAGE;
        desc.max_output_size = SMALL_OUTPUT;
    }
    desc.allocator.alloc = fz_alloc;
    desc.allocator.free = fz_free;
    desc.allocator.user_data = &hooks;
    desc.random.fill = fz_fill;
    desc.random.user_data = &hooks;
    max_message = cfg->small ? SMALL_MESSAGE : STWS_DEFAULT_MAX_MESSAGE_SIZE;
    max_output = cfg->small ? SMALL_OUTPUT : STWS_DEFAULT_MAX_OUTPUT_SIZE;

    c = stws_codec_create(&desc);
    if (!c) {
        CHECK(cfg->fail_alloc_at); /* only an injected failure may do that */
        return;
    }
    CHECK(stws_codec_get_state(c) == STWS_CODEC_OPEN);
    memset(&o, 0, sizeof o);
    o.exact = !faults;

    if (cfg->send_close) {
        stws_result r = stws_codec_close(c, 1000, "bye", 3);
        if (r == STWS_OK) {
            expect_close(&o, 1000, "bye", 3);
            CHECK(stws_codec_get_state(c) == STWS_CODEC_CLOSING);
        } else {
            CHECK(faults && (r == STWS_ERR_NOMEM || r == STWS_ERR_RANDOM));
        }
        drain(c, &o, cfg->half_drain ? 3 : (size_t)-1);
    }

    while (off < n && !failed) {
        size_t clen = next_chunk(cfg, k++, &prng), coff = 0;
        uint8_t *chunk;
        if (clen > n - off) clen = n - off;
        chunk = (uint8_t *)malloc(clen);
        CHECK(chunk != NULL);
        memcpy(chunk, data + off, clen);
        while (coff < clen) {
            stws_codec_event ev;
            size_t used = (size_t)-7, avail = clen - coff, pending, before = o.pending;
            stws_result r;
            r = stws_codec_parse(c, chunk + coff, avail, &used, &ev);
            CHECK(used <= avail);
            if (r < 0) {
                stws_codec_event ev2;
                size_t used2 = 0, after;
                CHECK(valid_error(r));
                CHECK(ev.type == STWS_CODEC_EVENT_ERROR);
                CHECK(ev.error == r);
                CHECK(stws_codec_get_state(c) == STWS_CODEC_FAILED);
                CHECK(!closed);
                if (!faults) CHECK(r != STWS_ERR_NOMEM && r != STWS_ERR_RANDOM);
                if (!o.close_queued && !faults) expect_close(&o, ev.close_code, NULL, 0);
                o.close_queued = 1;
                trace_add(tr, &ev, r, 0);
                sticky = r;
                sticky_code = ev.close_code;
                /* sticky: again, with the rest and with nothing */
                (void)stws_codec_output(c, &after);
                CHECK(stws_codec_parse(c, chunk + coff + used, avail - used, &used2, &ev2) == sticky);
                CHECK(used2 <= avail - used);
                CHECK(ev2.type == STWS_CODEC_EVENT_ERROR && ev2.error == sticky && ev2.close_code == sticky_code);
                CHECK(stws_codec_parse(c, NULL, 0, &used2, &ev2) == sticky);
                CHECK(ev2.type == STWS_CODEC_EVENT_ERROR && ev2.close_code == sticky_code);
                (void)stws_codec_output(c, &pending);
                CHECK(pending == after); /* no second close */
                failed = 1;
                drain(c, &o, (size_t)-1);
                break;
            }
            CHECK(r == STWS_OK);
            switch (ev.type) {
            case STWS_CODEC_EVENT_NONE:
                CHECK(used == avail);
                break;
            case STWS_CODEC_EVENT_MESSAGE: {
                uint64_t h;
                CHECK(!closed);
                CHECK(used > 0);
                CHECK(ev.opcode == STWS_OP_TEXT || ev.opcode == STWS_OP_BINARY);
                CHECK(ev.len <= max_message);
                h = touch(ev.data, ev.len);
                if (ev.opcode == STWS_OP_TEXT) CHECK(utf8_ok(ev.data, ev.len));
                trace_add(tr, &ev, r, h);
                break;
            }
            case STWS_CODEC_EVENT_PING:
            case STWS_CODEC_EVENT_PONG: {
                uint64_t h;
                CHECK(!closed);
                CHECK(used > 0);
                CHECK(ev.len <= 125);
                h = touch(ev.data, ev.len);
                if (ev.type == STWS_CODEC_EVENT_PING && !o.close_queued) expect_frame(&o, STWS_OP_PONG, ev.data, ev.len);
                trace_add(tr, &ev, r, h);
                break;
            }
            case STWS_CODEC_EVENT_CLOSE: {
                uint64_t h;
                CHECK(!closed);
                CHECK(used > 0);
                h = touch(ev.data, ev.len);
                if (ev.close_code == STWS_CLOSE_NO_STATUS) {
                    CHECK(ev.len == 0);
                } else {
                    CHECK(sendable_close_code(ev.close_code));
                    CHECK(ev.len <= 123);
                    CHECK(utf8_ok(ev.data, ev.len));
                }
                CHECK(stws_codec_get_state(c) == STWS_CODEC_CLOSED);
                if (!o.close_queued)
                    expect_close(&o, ev.close_code == STWS_CLOSE_NO_STATUS ? 0 : ev.close_code, NULL, 0);
                trace_add(tr, &ev, r, h);
                closed = 1;
                break;
            }
            default:
                CHECK(0);
            }
            (void)stws_codec_output(c, &pending);
            CHECK(pending <= max_output + CONTROL_SLACK + 2 + 4 + 125);
            if (closed) {
                /* §5.5.1: after the close, input is discarded and nothing is queued */
                if (ev.type != STWS_CODEC_EVENT_CLOSE) CHECK(pending <= before);
            }
            coff += used;
            drain(c, &o, cfg->half_drain ? (pending + 1) / 2 : (size_t)-1);
        }
        off += clen;
        free(chunk);
    }

    if (!failed) {
        /* end of input: an empty call changes nothing */
        stws_codec_event ev;
        size_t used = 1;
        CHECK(stws_codec_parse(c, NULL, 0, &used, &ev) == STWS_OK);
        CHECK(used == 0 && ev.type == STWS_CODEC_EVENT_NONE);
    } else {
        CHECK(sticky < 0);
    }
    drain(c, &o, (size_t)-1);
    {
        size_t pending;
        (void)stws_codec_output(c, &pending);
        CHECK(pending == 0);
    }
    CHECK(o.wire_pos == o.wire_len); /* no partial frame left */
    if (o.exact) CHECK(o.exp_pos == o.exp_len);
    if (o.close_seen && !faults) CHECK(o.close_queued);
    stws_codec_destroy(c);
    free(o.wire);
    free(o.exp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    run_cfg cfg;
    trace t1, t2;
    uint8_t *stream;
    size_t n;
    if (size < 1) return 0;
    memset(&cfg, 0, sizeof cfg);
    cfg.chunking = data[0] & 7;
    cfg.small = (data[0] >> 3) & 1;
    cfg.send_close = (data[0] >> 4) & 1;
    cfg.half_drain = (data[0] >> 5) & 1;
    n = size - 1;
    if ((data[0] >> 6) == 2) cfg.fail_alloc_at = 2 + n % 4;
    if ((data[0] >> 6) == 3) cfg.fail_fill_after = 1;

    stream = (uint8_t *)malloc(n ? n : 1);
    CHECK(stream != NULL);
    if (n) memcpy(stream, data + 1, n);
    memset(&t1, 0, sizeof t1);
    run(stream, n, &cfg, &t1);

    /* The same stream in one piece must give the same events. */
    if (!cfg.fail_alloc_at && !cfg.fail_fill_after && !cfg.half_drain && cfg.chunking != 0) {
        run_cfg whole = cfg;
        whole.chunking = 0;
        memset(&t2, 0, sizeof t2);
        run(stream, n, &whole, &t2);
        CHECK(t1.n == t2.n);
        CHECK(t1.n == 0 || memcmp(t1.v, t2.v, t1.n * sizeof *t1.v) == 0);
        free(t2.v);
    }
    free(t1.v);
    free(stream);
    return 0;
}
