/* bench_codec: the RFC 6455 codec in memory, stream_ws.h against wslay and
   against floors that do only the unavoidable work.  No sockets: every
   contender sees the same bytes from the shared workload (workload.h).

   bench_codec [ROUNDS]          timing tables (Markdown), medians of ROUNDS
                                 alternating runs (default 11)
   bench_codec keys              the contenders that `count` accepts
   bench_codec count KEY N       one warm-up pass and one measured pass over N
                                 small events, for callgrind:
                                   valgrind --tool=callgrind
                                   --callgrind-out-file=/dev/null
                                   --toggle-collect='bench_measured*'
                                 prints "KEY MESSAGES" on stdout
   bench_codec report FILE       the instruction table from lines
                                 "KEY INSTRUCTIONS MESSAGES"

   Built by bench/codec.sh: cc -O2, bench/codec_impl.c in its own TU,
   -lwslay -lmbedtls -lmbedx509 -lmbedcrypto. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, ssize_t */
#include "../stream_ws.h"
#include "workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <wslay/wslay.h>

#if defined(__GNUC__) || defined(__clang__)
#define BENCH_NOINLINE __attribute__((noinline))
#else
#define BENCH_NOINLINE
#endif

#define RX_SIZE (16 * 1024)       /* stws_conn's default receive buffer */
#define SINK_SIZE ((1u << 20) + 64) /* one whole frame of the largest message */
#define N_EVENTS 20000
#define N_64K 256                 /* 16 MiB per pass, like the event stream */
#define N_1M 16
#define MAX_PEERS 16

static void die(const char *what) {
    fprintf(stderr, "bench_codec: %s\n", what);
    exit(1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ==== the bench's own UTF-8 validator ====================================

   Used where a contender does not validate by itself (wslay's frame layer,
   wslay's sender, the floors), so that every row does the same work.  It
   decodes each sequence and checks the code point at its end (overlong,
   surrogate, > U+10FFFF); streaming, so payload chunks can be fed one by one.
   ASCII is skipped 8 bytes at a time, as any serious validator does. */
typedef struct u8check {
    uint32_t need, cp, min;
} u8check;

static int u8_feed(u8check *s, const uint8_t *p, size_t n) {
    uint32_t need = s->need, cp = s->cp, min = s->min;
    size_t i = 0;
    while (i < n) {
        uint8_t b;
        if (!need) {
            while (n - i >= 8) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & UINT64_C(0x8080808080808080)) break;
                i += 8;
            }
            if (i == n) break;
            b = p[i++];
            if (b < 0x80) continue;
            if (b >= 0xF5) return 0;
            if (b >= 0xF0) { need = 3; cp = b & 0x07u; min = 0x10000; }
            else if (b >= 0xE0) { need = 2; cp = b & 0x0Fu; min = 0x800; }
            else if (b >= 0xC0) { need = 1; cp = b & 0x1Fu; min = 0x80; }
            else return 0; /* a continuation byte with nothing to continue */
        } else {
            b = p[i++];
            if ((b & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (b & 0x3Fu);
            if (--need == 0 && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)))
                return 0;
        }
    }
    s->need = need;
    s->cp = cp;
    s->min = min;
    return 1;
}

static int u8_valid(const uint8_t *p, size_t n) {
    u8check s = {0, 0, 0};
    return u8_feed(&s, p, n) && s.need == 0;
}

/* A wrong validator would make every UTF-8 row meaningless: check it on the
   classic edge cases before measuring anything. */
static void u8_selftest(void) {
    static const struct { const char *s; int ok; } cases[] = {
        {"plain", 1}, {"caf\xC3\xA9", 1}, {"\xE6\x97\xA5", 1}, {"\xF0\x9F\x8E\xAE", 1},
        {"\xF4\x8F\xBF\xBF", 1}, {"\xC0\x80", 0}, {"\xE0\x9F\xBF", 0}, {"\xED\xA0\x80", 0},
        {"\xF4\x90\x80\x80", 0}, {"\xF5\x80\x80\x80", 0}, {"\x80", 0}, {"\xC3", 0},
        {"abcdefgh\xE6\x97", 0}, {"abcdefghij\xE6\x97\xA5klmnopqr", 1}};
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (u8_valid((const uint8_t *)cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            die("the bench's UTF-8 validator is wrong");
}

/* ==== workloads ========================================================= */

typedef struct workload {
    uint8_t *stream;          /* server->client frames, unmasked */
    size_t len;
    size_t count;             /* messages */
    size_t payload;           /* their payload bytes */
    int opcode;               /* 1 text, 2 binary */
    const uint8_t **msg;      /* payload views into stream (send benchmarks) */
    size_t *msg_len;
    uint64_t expect_parse;    /* what every parser must add up (see acc_msg) */
    uint64_t expect_send;     /* total client frame bytes */
} workload;

/* Every parser adds this per message: length and last byte, so that nobody
   can skip the payload and all must agree on it. */
static uint64_t acc_msg(const uint8_t *data, size_t len) { return len + (len ? data[len - 1] : 0); }

static size_t client_frame_len(size_t n) { return (n < 126 ? 2 : n < 65536 ? 4 : 10) + 4 + n; }

/* Index the frames of a built stream (all FIN, unfragmented). */
static void wl_index(workload *w) {
    size_t p = 0, i = 0;
    w->msg = (const uint8_t **)malloc(w->count * sizeof *w->msg);
    w->msg_len = (size_t *)malloc(w->count * sizeof *w->msg_len);
    if (!w->msg || !w->msg_len) die("out of memory");
    w->payload = w->expect_parse = w->expect_send = 0;
    while (p < w->len) {
        uint64_t n = w->stream[p + 1] & 0x7F;
        size_t h = 2;
        if (n == 126) {
            n = (uint64_t)w->stream[p + 2] << 8 | w->stream[p + 3];
            h = 4;
        } else if (n == 127) {
            int k;
            for (n = 0, k = 0; k < 8; k++) n = n << 8 | w->stream[p + 2 + k];
            h = 10;
        }
        if (i == w->count) die("workload: more frames than messages");
        w->msg[i] = w->stream + p + h;
        w->msg_len[i] = (size_t)n;
        w->payload += (size_t)n;
        w->expect_parse += acc_msg(w->msg[i], (size_t)n);
        w->expect_send += client_frame_len((size_t)n);
        i++;
        p += h + (size_t)n;
    }
    if (i != w->count) die("workload: frame count mismatch");
}

static void wl_free(workload *w) {
    free(w->stream);
    free(w->msg);
    free(w->msg_len);
    memset(w, 0, sizeof *w);
}

/* The realistic mix: `count` Stream events of 200-2000 B, text. */
static void wl_events(workload *w, size_t count) {
    bw_rng r = BW_SEED;
    memset(w, 0, sizeof *w);
    w->stream = bw_stream(&r, count, 0, &w->len);
    if (!w->stream) die("out of memory");
    w->count = count;
    w->opcode = 1;
    wl_index(w);
}

/* `count` messages of exactly `size` bytes, the same payloads as a text
   stream and as a binary one, so that only the opcode differs. */
static void wl_sized(workload *text, workload *bin, size_t count, size_t size) {
    bw_rng r = BW_SEED;
    size_t cap = count * (size + 10), i, off = 0;
    char *ev = (char *)malloc(size + 1);
    memset(text, 0, sizeof *text);
    memset(bin, 0, sizeof *bin);
    text->stream = (uint8_t *)malloc(cap);
    bin->stream = (uint8_t *)malloc(cap);
    if (!ev || !text->stream || !bin->stream) die("out of memory");
    for (i = 0; i < count; i++) {
        size_t h, n = bw_sized_event(&r, ev, size + 1, size);
        if (n != size) die("workload: bw_sized_event failed");
        h = bw_server_header(text->stream + off, n, 1);
        bw_server_header(bin->stream + off, n, 2);
        memcpy(text->stream + off + h, ev, n);
        memcpy(bin->stream + off + h, ev, n);
        off += h + n;
    }
    free(ev);
    text->len = bin->len = off;
    text->count = bin->count = count;
    text->opcode = 1;
    bin->opcode = 2;
    wl_index(text);
    wl_index(bin);
}

/* ==== contenders ======================================================== */

enum { PARSE, SEND };

typedef struct peer peer;
struct peer {
    const char *key, *label;
    int dir;                  /* PARSE or SEND */
    int text_only;            /* a UTF-8 row: the same as another for binary */
    uint64_t (*pass)(peer *p, const workload *w);

    stws_codec *codec;
    wslay_event_context_ptr wev;
    wslay_frame_context_ptr wfr;
    int check_utf8;           /* wslay: validate in the bench (see main) */
    const uint8_t *rd;        /* the in-memory "socket" wslay reads from */
    size_t rd_len, rd_pos;
    uint8_t *buf;             /* ours: receive buffer; send: the sink */
    size_t spos;
    bw_rng rng;               /* masking keys, for every sender alike */
    uint64_t acc;
    int bad;                  /* a callback saw something wrong */
};

static void fail(const peer *p, const char *what) {
    fprintf(stderr, "bench_codec: %s: %s\n", p->key, what);
    exit(1);
}

/* The random hook for every contender: a fast PRNG, since the DRBG cost is
   not what this benchmark is about (and wslay has none). */
static int fill_random(void *buf, size_t len, void *user_data) {
    bw_rng *r = (bw_rng *)user_data;
    uint8_t *b = (uint8_t *)buf;
    while (len) {
        uint32_t x = bw_next(r);
        size_t k = len < 4 ? len : 4;
        memcpy(b, &x, k);
        b += k;
        len -= k;
    }
    return 0;
}

/* ---- parse: ours ---------------------------------------------------------- */

static uint64_t parse_ours(peer *p, const uint8_t *in, size_t n, uint64_t acc) {
    size_t pos = 0;
    while (pos < n) {
        size_t used;
        stws_codec_event ev;
        if (stws_codec_parse(p->codec, in + pos, n - pos, &used, &ev) != STWS_OK) fail(p, "parse error");
        pos += used;
        if (ev.type == STWS_CODEC_EVENT_MESSAGE) acc += acc_msg(ev.data, ev.len);
        else if (!used) fail(p, "no progress");
    }
    return acc;
}

/* What stws_conn does: recv() into a 16 KiB buffer, parse it all.  Messages
   that straddle two reads are reassembled in the codec; the rest are views. */
static uint64_t pass_ours_reads(peer *p, const workload *w) {
    uint64_t acc = 0;
    size_t off = 0;
    while (off < w->len) {
        size_t n = w->len - off < RX_SIZE ? w->len - off : RX_SIZE;
        memcpy(p->buf, w->stream + off, n); /* the copy recv() makes */
        off += n;
        acc = parse_ours(p, p->buf, n, acc);
    }
    return acc;
}

/* The whole stream as one input: every message is a view, no copy at all. */
static uint64_t pass_ours_whole(peer *p, const workload *w) { return parse_ours(p, w->stream, w->len, 0); }

/* ---- parse: wslay event API -------------------------------------------- */

static ssize_t wev_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud) {
    peer *p = (peer *)ud;
    size_t n = p->rd_len - p->rd_pos;
    (void)flags;
    if (!n) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (n > len) n = len;
    memcpy(buf, p->rd + p->rd_pos, n); /* the copy recv() makes */
    p->rd_pos += n;
    return (ssize_t)n;
}

static void wev_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a, void *ud) {
    peer *p = (peer *)ud;
    (void)ctx;
    if (a->opcode != WSLAY_TEXT_FRAME && a->opcode != WSLAY_BINARY_FRAME) return;
    if (p->check_utf8 && a->opcode == WSLAY_TEXT_FRAME && !u8_valid(a->msg, a->msg_length)) p->bad = 1;
    p->acc += acc_msg(a->msg, a->msg_length);
}

static uint64_t pass_wslay_event(peer *p, const workload *w) {
    p->rd = w->stream;
    p->rd_len = w->len;
    p->rd_pos = 0;
    p->acc = 0;
    if (wslay_event_recv(p->wev) != 0 || !wslay_event_get_read_enabled(p->wev) || p->bad)
        fail(p, "wslay_event_recv failed");
    return p->acc;
}

/* ---- parse: wslay frame API (no reassembly) ---------------------------- */

static ssize_t wfr_recv(uint8_t *buf, size_t len, int flags, void *ud) {
    peer *p = (peer *)ud;
    size_t n = p->rd_len - p->rd_pos;
    (void)flags;
    if (n > len) n = len;
    memcpy(buf, p->rd + p->rd_pos, n);
    p->rd_pos += n;
    return (ssize_t)n; /* 0: wslay_frame_recv says WANT_READ */
}

/* Payload arrives in pieces of wslay's 4 KiB buffer; a message is counted at
   the end of its (single, FIN) frame without being put back together. */
static uint64_t pass_wslay_frame(peer *p, const workload *w) {
    uint64_t acc = 0, off = 0;
    u8check u = {0, 0, 0};
    uint8_t last = 0;
    p->rd = w->stream;
    p->rd_len = w->len;
    p->rd_pos = 0;
    for (;;) {
        struct wslay_frame_iocb io;
        ssize_t r;
        memset(&io, 0, sizeof io);
        r = wslay_frame_recv(p->wfr, &io);
        if (r == WSLAY_ERR_WANT_READ && p->rd_pos == p->rd_len) break;
        if (r < 0) fail(p, "wslay_frame_recv failed");
        if (!io.fin || (io.opcode != WSLAY_TEXT_FRAME && io.opcode != WSLAY_BINARY_FRAME))
            fail(p, "unexpected frame");
        if (io.opcode == WSLAY_TEXT_FRAME && !u8_feed(&u, io.data, io.data_length)) fail(p, "invalid UTF-8");
        if (io.data_length) last = io.data[io.data_length - 1];
        off += io.data_length;
        if (off == io.payload_length) {
            if (u.need) fail(p, "truncated UTF-8");
            acc += io.payload_length + (io.payload_length ? last : 0);
            off = 0;
        }
    }
    if (off) fail(p, "stream ended inside a frame");
    return acc;
}

/* ---- parse: floors ------------------------------------------------------ */

/* Reads each header and jumps over the payload: no checks, no copies. */
static uint64_t floor_walk(const workload *w, int utf8) {
    const uint8_t *s = w->stream;
    uint64_t acc = 0;
    size_t p = 0;
    while (p < w->len) {
        size_t h = 2, n = s[p + 1] & 0x7Fu;
        if (n == 126) {
            n = (size_t)s[p + 2] << 8 | s[p + 3];
            h = 4;
        } else if (n == 127) {
            int k;
            for (n = 0, k = 0; k < 8; k++) n = n << 8 | s[p + 2 + k];
            h = 10;
        }
        if (utf8 == 1 && (s[p] & 0x0F) == 1 && !u8_valid(s + p + h, n)) return 0;
        if (utf8 == 2 && (s[p] & 0x0F) == 1) {
            uint32_t st = 0;
            if (stws_utf8_validate(&st, s + p + h, n) != n || st) return 0;
        }
        acc += acc_msg(s + p + h, n);
        p += h + n;
    }
    return acc;
}

static uint64_t pass_floor(peer *p, const workload *w) { (void)p; return floor_walk(w, 0); }
static uint64_t pass_floor_u8(peer *p, const workload *w) { (void)p; return floor_walk(w, 1); }
static uint64_t pass_floor_stws_u8(peer *p, const workload *w) { (void)p; return floor_walk(w, 2); }

/* ---- send: ours --------------------------------------------------------- */

/* Each message is queued, then its output leaves for the "socket" (the
   sink), as stws_conn would write it. */
static uint64_t pass_send_ours(peer *p, const workload *w) {
    uint64_t acc = 0;
    size_t i;
    for (i = 0; i < w->count; i++) {
        size_t olen;
        const uint8_t *out;
        if (stws_codec_send(p->codec, (stws_opcode)w->opcode, w->msg[i], w->msg_len[i]) != STWS_OK)
            fail(p, "stws_codec_send failed");
        out = stws_codec_output(p->codec, &olen);
        memcpy(p->buf, out, olen);
        stws_codec_output_consumed(p->codec, olen);
        acc += olen;
    }
    return acc;
}

/* ---- send: wslay -------------------------------------------------------- */

static ssize_t wev_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud) {
    peer *p = (peer *)ud;
    (void)ctx;
    (void)flags;
    if (p->spos + len > SINK_SIZE) {
        p->bad = 1;
        return -1;
    }
    memcpy(p->buf + p->spos, data, len);
    p->spos += len;
    return (ssize_t)len;
}

static int wev_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud) {
    peer *p = (peer *)ud;
    (void)ctx;
    return fill_random(buf, len, &p->rng);
}

/* wslay never checks outgoing text; stws_codec_send does, so the wslay+UTF-8
   row checks it here first to do the same work. */
static uint64_t pass_send_wslay(peer *p, const workload *w) {
    uint64_t acc = 0;
    size_t i;
    for (i = 0; i < w->count; i++) {
        struct wslay_event_msg m;
        if (p->check_utf8 && w->opcode == 1 && !u8_valid(w->msg[i], w->msg_len[i])) fail(p, "invalid UTF-8");
        m.opcode = (uint8_t)w->opcode;
        m.msg = w->msg[i];
        m.msg_length = w->msg_len[i];
        if (wslay_event_queue_msg(p->wev, &m) != 0) fail(p, "wslay_event_queue_msg failed");
        p->spos = 0;
        if (wslay_event_send(p->wev) != 0 || p->bad) fail(p, "wslay_event_send failed");
        acc += p->spos;
    }
    return acc;
}

/* ---- send: floors ------------------------------------------------------- */

/* Header, key, and the payload XORed into the sink a word at a time: the one
   pass over the payload that a masked frame cannot avoid. */
static uint64_t floor_send(peer *p, const workload *w, int utf8) {
    uint64_t acc = 0;
    size_t i;
    for (i = 0; i < w->count; i++) {
        const uint8_t *src = w->msg[i];
        size_t n = w->msg_len[i], h, k = 0;
        uint8_t *d = p->buf, key[8];
        uint64_t kw;
        if (utf8 && w->opcode == 1 && !u8_valid(src, n)) fail(p, "invalid UTF-8");
        h = bw_server_header(d, n, w->opcode);
        d[1] |= 0x80;
        fill_random(key, 4, &p->rng);
        memcpy(key + 4, key, 4);
        memcpy(d + h, key, 4);
        d += h + 4;
        memcpy(&kw, key, 8);
        for (; k + 8 <= n; k += 8) {
            uint64_t x;
            memcpy(&x, src + k, 8);
            x ^= kw;
            memcpy(d + k, &x, 8);
        }
        for (; k < n; k++) d[k] = src[k] ^ key[k & 3];
        acc += h + 4 + n;
    }
    return acc;
}

static uint64_t pass_send_floor(peer *p, const workload *w) { return floor_send(p, w, 0); }
static uint64_t pass_send_floor_u8(peer *p, const workload *w) { return floor_send(p, w, 1); }

/* ---- the roster --------------------------------------------------------- */

static peer peers[MAX_PEERS];
static int npeers;
static int wslay_checks_utf8; /* found out at start-up, see probe_wslay_utf8 */

static peer *add(const char *key, const char *label, int dir, int text_only,
                 uint64_t (*pass)(peer *, const workload *)) {
    peer *p = &peers[npeers++];
    memset(p, 0, sizeof *p);
    p->key = key;
    p->label = label;
    p->dir = dir;
    p->text_only = text_only;
    p->pass = pass;
    p->rng = BW_SEED ^ (uint64_t)npeers;
    p->buf = (uint8_t *)malloc(SINK_SIZE);
    if (!p->buf) die("out of memory");
    return p;
}

static stws_codec *make_codec(peer *p) {
    stws_codec_desc d;
    stws_codec *c;
    memset(&d, 0, sizeof d); /* default limits: 16 MiB frames and messages */
    d.random.fill = fill_random;
    d.random.user_data = &p->rng;
    c = stws_codec_create(&d);
    if (!c) die("stws_codec_create failed");
    return c;
}

static wslay_event_context_ptr make_wslay(peer *p) {
    struct wslay_event_callbacks cb;
    wslay_event_context_ptr c;
    memset(&cb, 0, sizeof cb);
    cb.recv_callback = wev_recv;
    cb.send_callback = wev_send;
    cb.genmask_callback = wev_genmask;
    cb.on_msg_recv_callback = wev_msg;
    if (wslay_event_context_client_init(&c, &cb, p) != 0) die("wslay_event_context_client_init failed");
    return c;
}

/* Does this wslay validate incoming text?  (Debian's 1.1.1 does, with a
   byte-at-a-time DFA; if a build does not, the bench validates in the
   message callback so the work stays equal.)  Feed it "a" + an overlong NUL. */
static int probe_wslay_utf8(void) {
    static const uint8_t bad[] = {0x81, 3, 'a', 0xC0, 0x80};
    peer probe;
    wslay_event_context_ptr c;
    int rejected;
    memset(&probe, 0, sizeof probe);
    probe.key = "probe";
    probe.rd = bad;
    probe.rd_len = sizeof bad;
    c = make_wslay(&probe);
    wslay_event_recv(c);
    rejected = probe.acc == 0 && !wslay_event_get_read_enabled(c);
    wslay_event_context_free(c);
    return rejected;
}

static void setup(void) {
    struct wslay_frame_callbacks fcb;
    peer *p;
    u8_selftest();
    wslay_checks_utf8 = probe_wslay_utf8();

    p = add("ours", "**ours**: `stws_codec_parse`, 16 KiB reads (as `stws_conn`)", PARSE, 0, pass_ours_reads);
    p->codec = make_codec(p);
    p = add("ours-whole", "ours: `stws_codec_parse`, whole stream as one input", PARSE, 0, pass_ours_whole);
    p->codec = make_codec(p);
    p = add("wslay", wslay_checks_utf8 ? "wslay: `wslay_event_recv` (4 KiB reads, own UTF-8 check)"
                                       : "wslay: `wslay_event_recv` (4 KiB reads) + bench UTF-8 check",
            PARSE, 0, pass_wslay_event);
    p->wev = make_wslay(p);
    p->check_utf8 = !wslay_checks_utf8;
    p = add("wslay-frame", "wslay: `wslay_frame_recv` + bench UTF-8 check, no reassembly", PARSE, 0,
            pass_wslay_frame);
    memset(&fcb, 0, sizeof fcb);
    fcb.recv_callback = wfr_recv;
    if (wslay_frame_context_init(&p->wfr, &fcb, p) != 0) die("wslay_frame_context_init failed");
    add("floor", "floor: header walk", PARSE, 0, pass_floor);
    add("floor-utf8", "floor: header walk + bench UTF-8 check", PARSE, 1, pass_floor_u8);
    add("floor-stws-utf8", "floor: header walk + `stws_utf8_validate`", PARSE, 1, pass_floor_stws_u8);

    p = add("send-ours", "**ours**: `stws_codec_send` (checks UTF-8), output copied out", SEND, 0,
            pass_send_ours);
    p->codec = make_codec(p);
    p = add("send-wslay-utf8", "wslay: bench UTF-8 check + `wslay_event_queue_msg` + `_send`", SEND, 0,
            pass_send_wslay);
    p->wev = make_wslay(p);
    p->check_utf8 = 1;
    p = add("send-wslay", "wslay: `wslay_event_queue_msg` + `_send`, no UTF-8 check", SEND, 1, pass_send_wslay);
    p->wev = make_wslay(p);
    add("send-floor-utf8", "floor: bench UTF-8 check + header + word-wise mask into the sink", SEND, 0,
        pass_send_floor_u8);
    add("send-floor", "floor: header + word-wise mask into the sink", SEND, 1, pass_send_floor);
}

static void teardown(void) {
    int i;
    for (i = 0; i < npeers; i++) {
        stws_codec_destroy(peers[i].codec);
        if (peers[i].wev) wslay_event_context_free(peers[i].wev);
        if (peers[i].wfr) wslay_frame_context_free(peers[i].wfr);
        free(peers[i].buf);
    }
    npeers = 0;
}

static peer *find_peer(const char *key) {
    int i;
    for (i = 0; i < npeers; i++)
        if (!strcmp(peers[i].key, key)) return &peers[i];
    return NULL;
}

static void check(const peer *p, const workload *w, uint64_t acc) {
    if (acc != (p->dir == PARSE ? w->expect_parse : w->expect_send)) fail(p, "wrong result");
}

/* Unmask what a sender wrote for one message and compare with the message:
   a fast sender that writes the wrong bytes must not get a row. */
static void verify_send(peer *p, const workload *w) {
    size_t i;
    for (i = 0; i < w->count && i < 64; i++) {
        workload one = *w;
        const uint8_t *f = p->buf;
        size_t n, h = 2, k;
        one.count = 1;
        one.msg = w->msg + i;
        one.msg_len = w->msg_len + i;
        one.opcode = w->opcode;
        p->pass(p, &one);
        if (f[0] != (0x80 | w->opcode) || !(f[1] & 0x80)) fail(p, "bad frame header");
        n = f[1] & 0x7Fu;
        if (n == 126) {
            n = (size_t)f[2] << 8 | f[3];
            h = 4;
        } else if (n == 127) {
            for (n = 0, k = 0; k < 8; k++) n = n << 8 | f[2 + k];
            h = 10;
        }
        if (n != w->msg_len[i]) fail(p, "bad frame length");
        for (k = 0; k < n; k++)
            if ((uint8_t)(f[h + 4 + k] ^ f[h + (k & 3)]) != w->msg[i][k]) fail(p, "bad masking");
    }
}

/* ==== timing ============================================================= */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One table: every applicable contender, one pass each per round, in the
   same order every round (A B C A B C ...), so slow drifts of a noisy
   machine hit all of them alike; medians per contender. */
static void bench(const char *heading, const workload *w, int dir, int rounds) {
    peer *list[MAX_PEERS];
    double t[MAX_PEERS][64], med[MAX_PEERS];
    int n = 0, i, r;
    for (i = 0; i < npeers; i++)
        if (peers[i].dir == dir && !(peers[i].text_only && w->opcode != 1)) list[n++] = &peers[i];
    for (i = 0; i < n; i++) {
        if (dir == SEND) verify_send(list[i], w);
        check(list[i], w, list[i]->pass(list[i], w)); /* warm-up: buffers grown, pages touched */
    }
    for (r = 0; r < rounds; r++)
        for (i = 0; i < n; i++) {
            double t0 = now();
            uint64_t acc = list[i]->pass(list[i], w);
            t[i][r] = now() - t0;
            check(list[i], w, acc);
        }
    for (i = 0; i < n; i++) med[i] = median(t[i], rounds);
    printf("%s, median of %d alternating runs\n\n", heading, rounds);
    printf("| Contender | GB/s | ns/message | time vs ours |\n|---|--:|--:|--:|\n");
    for (i = 0; i < n; i++)
        printf("| %s | %.2f | %.0f | %.2fx |\n", list[i]->label, (double)w->payload / med[i] / 1e9,
               med[i] * 1e9 / (double)w->count, med[i] / med[0]);
    printf("\n");
    fflush(stdout);
}

/* "20,000": headings are read by people. */
static const char *thousands(size_t n, char *buf, size_t cap) {
    if (n >= 1000) snprintf(buf, cap, "%zu,%03zu", n / 1000, n % 1000);
    else snprintf(buf, cap, "%zu", n);
    return buf;
}

static void run_tables(int rounds) {
    workload a, b;
    char h[256], nev[32];

    wl_events(&a, N_EVENTS);
    snprintf(h, sizeof h,
             "**Parse: %s Stream events, text, 200-2000 B (mean %.0f B, ~12%% non-ASCII), %.1f MB**",
             thousands(N_EVENTS, nev, sizeof nev), (double)a.payload / (double)a.count, (double)a.len / 1e6);
    bench(h, &a, PARSE, rounds);
    snprintf(h, sizeof h, "**Serialize + mask (client->server): the same %s events, text**", nev);
    bench(h, &a, SEND, rounds);
    wl_free(&a);

    wl_sized(&a, &b, N_64K, (size_t)64 << 10);
    snprintf(h, sizeof h, "**Parse: %d messages of 64 KiB, text (%.1f MB)**", N_64K, (double)a.len / 1e6);
    bench(h, &a, PARSE, rounds);
    snprintf(h, sizeof h, "**Parse: %d messages of 64 KiB, binary (same bytes)**", N_64K);
    bench(h, &b, PARSE, rounds);
    snprintf(h, sizeof h, "**Serialize + mask (client->server): %d messages of 64 KiB, text**", N_64K);
    bench(h, &a, SEND, rounds);
    wl_free(&a);
    wl_free(&b);

    wl_sized(&a, &b, N_1M, (size_t)1 << 20);
    snprintf(h, sizeof h, "**Parse: %d messages of 1 MiB, text (%.1f MB)**", N_1M, (double)a.len / 1e6);
    bench(h, &a, PARSE, rounds);
    snprintf(h, sizeof h, "**Parse: %d messages of 1 MiB, binary (same bytes)**", N_1M);
    bench(h, &b, PARSE, rounds);
    wl_free(&a);
    wl_free(&b);

    printf("Notes: GB/s = message payload bytes (10^9) per second; \"time vs ours\" = median time over "
           "ours' (>1 slower).  Every contender gets the same bytes and must return the same "
           "length/last-byte sum.  Ours uses a PRNG random hook (no DRBG), default limits (16 MiB).  "
           "wslay %s; its frame layer does not, so the bench validates there "
           "(its own streaming validator, ASCII 8 bytes at a time).  wslay never checks outgoing "
           "text, stws_codec_send does: the \"+ bench UTF-8 check\" send row does equal work.  "
           "Floors do no checks at all; the header walk (and ours on one whole buffer, which hands "
           "out views) does not touch a binary payload, so its GB/s there is no throughput.  "
           "Rows with 16 KiB/4 KiB reads include the copy recv() would make; floors read in place.\n",
           wslay_checks_utf8 ? "validates incoming UTF-8 itself (probed at start-up: an "
                                        "overlong NUL is refused), so nothing is added to its callback"
                                      : "does not validate incoming UTF-8 (probed), so its message "
                                        "callback runs the bench's validator");
}

/* ==== instruction counts (callgrind) ===================================== */

static uint64_t bench_sink;

/* Both run one pass; only bench_measured is collected (--toggle-collect),
   so set-up and the warm-up pass (buffer growth) are left out. */
BENCH_NOINLINE uint64_t bench_warm(peer *p, const workload *w);
BENCH_NOINLINE uint64_t bench_measured(peer *p, const workload *w);
BENCH_NOINLINE uint64_t bench_warm(peer *p, const workload *w) { return p->pass(p, w); }
BENCH_NOINLINE uint64_t bench_measured(peer *p, const workload *w) { return p->pass(p, w); }

static int run_count(const char *key, size_t count) {
    workload w;
    peer *p = find_peer(key);
    if (!p || !count) die("count: unknown contender or zero events");
    wl_events(&w, count);
    check(p, &w, bench_warm(p, &w));
    bench_sink += bench_measured(p, &w);
    printf("%s %zu\n", key, w.count);
    wl_free(&w);
    return 0;
}

/* Lines "KEY INSTRUCTIONS MESSAGES"; ratios against ours in that direction. */
static void report_dir(FILE *f, int dir, const char *base_key, const char *heading) {
    char key[64];
    double ins, base = 0;
    unsigned long msgs;
    int any = 0;
    rewind(f);
    while (fscanf(f, "%63s %lf %lu", key, &ins, &msgs) == 3)
        if (!strcmp(key, base_key) && msgs) base = ins / (double)msgs;
    if (base <= 0) return;
    rewind(f);
    while (fscanf(f, "%63s %lf %lu", key, &ins, &msgs) == 3) {
        peer *p = find_peer(key);
        if (!p || p->dir != dir || !msgs) continue;
        if (!any) printf("%s\n\n| Contender | instructions/message | vs ours |\n|---|--:|--:|\n", heading);
        any = 1;
        printf("| %s | %.0f | %.2fx |\n", p->label, ins / (double)msgs, ins / (double)msgs / base);
    }
    printf("\n");
}

static int run_report(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die("report: cannot open the counts file");
    report_dir(f, PARSE, "ours", "**Instructions per message, parse, small events (callgrind, repeatable)**");
    report_dir(f, SEND, "send-ours", "**Instructions per message, serialize + mask, small events (callgrind)**");
    fclose(f);
    return 0;
}

int main(int argc, char **argv) {
    int rc = 0;
    setup();
    if (argc >= 2 && !strcmp(argv[1], "keys")) {
        int i;
        for (i = 0; i < npeers; i++) printf("%s\n", peers[i].key);
    } else if (argc >= 4 && !strcmp(argv[1], "count")) {
        rc = run_count(argv[2], (size_t)strtoul(argv[3], NULL, 10));
    } else if (argc >= 3 && !strcmp(argv[1], "report")) {
        rc = run_report(argv[2]);
    } else {
        int rounds = argc >= 2 ? atoi(argv[1]) : 11;
        if (rounds < 1 || rounds > 64) die("rounds: 1..64");
        run_tables(rounds);
    }
    teardown();
    return rc;
}
