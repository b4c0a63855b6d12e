/* Unit tests for the sans-I/O HTTP/1.1 client layer of stream_ws.h: the
   response parser (status line, fields, Content-Length, chunked with
   extensions and trailers, close-delimited bodies, 1xx interim answers,
   bodiless answers, keep-alive, limits, pipelining) under every chunking of
   its input, each chunk placed against an unreadable page so any over-read
   faults; the request writer (query escaping, header injection refused); and
   both against an independent peer, Python's http.server over real sockets. */
#define _DEFAULT_SOURCE /* mmap, sockets, fork under -std=c99 */
#include "codec_util.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

/* ---- guarded input: chunk bytes end right before a PROT_NONE page --------- */

#define GUARD_CAP (1u << 21)
static uint8_t *guard_base;
static size_t guard_page;

static void guard_init(void) {
    if (guard_base) return;
    guard_page = (size_t)sysconf(_SC_PAGESIZE);
    guard_base = (uint8_t *)mmap(NULL, GUARD_CAP + guard_page, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(guard_base != MAP_FAILED);
    assert_int_equal(mprotect(guard_base + GUARD_CAP, guard_page, PROT_NONE), 0);
}
static const uint8_t *guarded(const void *d, size_t n) {
    uint8_t *p;
    guard_init();
    assert_true(n <= GUARD_CAP);
    p = guard_base + GUARD_CAP - n;
    if (n) memcpy(p, d, n);
    return p;
}

/* ---- running a stream of responses ---------------------------------------- */

enum { WHOLE = 0, BYTES = 1, RANDOM = 2 };

typedef struct run_cfg {
    int head;                 /* every response answers a HEAD */
    size_t max_header, max_body;
    int eof;                  /* call eof at the end of input */
} run_cfg;

static void logf_(tbuf *log, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof tmp);
    tbuf_put(log, tmp, (size_t)n);
}

static void log_response(tbuf *log, const stws_http_response *r, size_t at) {
    logf_(log, "S=%d V=%d K=%d C=%d L=%lld R=%lld I=%d AT=%zu T=[", r->status, r->version,
          r->keep_alive, r->chunked, (long long)r->content_length, (long long)r->retry_after,
          r->interim, at);
    tbuf_put(log, r->content_type.ptr, r->content_type.len);
    logf_(log, "] P=[");
    tbuf_put(log, r->reason.ptr, r->reason.len);
    logf_(log, "] F=[");
    tbuf_put(log, r->fields.ptr, r->fields.len);
    logf_(log, "] B=%zu[", r->body_len);
    tbuf_put(log, r->body, r->body_len);
    logf_(log, "]\n");
    assert_int_equal(r->body[r->body_len], 0);
}

/* Parse every response of in[0..n) cut into pieces by mode; the log records
   each response and the final result. */
static stws_result run(const char *in, size_t n, const run_cfg *cfg, int mode, uint64_t seed,
                       tbuf *log) {
    stws_http_parser_desc d;
    stws_http_parser *p;
    size_t pos = 0, base = 0;
    stws_result r = STWS_INCOMPLETE;
    memset(&d, 0, sizeof d);
    if (cfg) {
        d.max_header_size = cfg->max_header;
        d.max_body_size = cfg->max_body;
    }
    p = stws_http_parser_create(&d);
    assert_non_null(p);
    stws_http_parser_reset(p, cfg && cfg->head);
    while (pos < n) {
        size_t k = mode == WHOLE ? n - pos : mode == BYTES ? 1 : prng_range(&seed, 1, 37);
        const uint8_t *chunk;
        size_t off = 0;
        if (k > n - pos) k = n - pos;
        chunk = guarded(in + pos, k);
        while (off < k) {
            size_t used = 0;
            r = stws_http_parser_parse(p, chunk + off, k - off, &used);
            assert_true(used <= k - off);
            off += used;
            if (r == STWS_OK) {
                log_response(log, stws_http_parser_response(p), pos + off - base);
                base = pos + off;
                stws_http_parser_reset(p, cfg && cfg->head);
                r = STWS_INCOMPLETE;
                continue;
            }
            if (r != STWS_INCOMPLETE) break;
            assert_int_equal(used, k - off + used); /* INCOMPLETE takes it all */
        }
        if (r != STWS_INCOMPLETE) break;
        pos += k;
    }
    /* a close between responses is no truncation */
    if (r == STWS_INCOMPLETE && cfg && cfg->eof && stws_http_parser_received(p)) {
        r = stws_http_parser_eof(p);
        if (r == STWS_OK) {
            log_response(log, stws_http_parser_response(p), n - base);
            r = STWS_INCOMPLETE;
        }
    }
    if (r < 0) {
        size_t used = 7;
        /* sticky until reset, whatever follows */
        assert_int_equal(stws_http_parser_parse(p, "HTTP/1.1 200 OK\r\n\r\n", 19, &used), r);
        assert_int_equal(used, 0);
        assert_null(stws_http_parser_response(p));
    }
    logf_(log, "RESULT=%d\n", (int)r);
    stws_http_parser_destroy(p);
    return r;
}

/* Whole, one byte at a time and 20 random splittings give the same log,
   which is returned NUL-terminated in *out. */
static stws_result check_all(const char *in, size_t n, const run_cfg *cfg, tbuf *out) {
    tbuf a = {0}, b = {0};
    stws_result r = run(in, n, cfg, WHOLE, 0, &a), r2;
    uint64_t seed;
    r2 = run(in, n, cfg, BYTES, 0, &b);
    assert_int_equal(r2, r);
    if (a.len != b.len || memcmp(a.p, b.p, a.len))
        fail_msg("byte-at-a-time differs:\n%.*s\nvs\n%.*s", (int)a.len, a.p, (int)b.len, b.p);
    for (seed = 1; seed <= 20; seed++) {
        b.len = 0;
        r2 = run(in, n, cfg, RANDOM, seed, &b);
        assert_int_equal(r2, r);
        if (a.len != b.len || memcmp(a.p, b.p, a.len))
            fail_msg("split %d differs:\n%.*s\nvs\n%.*s", (int)seed, (int)a.len, a.p, (int)b.len, b.p);
    }
    tbuf_free(&b);
    tbuf_byte(&a, 0);
    *out = a;
    return r;
}

#define S(lit) lit, sizeof(lit) - 1

static void expect_log(const char *in, size_t n, const run_cfg *cfg, stws_result want,
                       const char *want_log) {
    tbuf log;
    stws_result r = check_all(in, n, cfg, &log);
    if (r != want || strcmp((const char *)log.p, want_log) != 0)
        fail_msg("result %d (want %d), log:\n%s\nwanted:\n%s", (int)r, (int)want,
                 (const char *)log.p, want_log);
    tbuf_free(&log);
}

static void expect_error(const char *label, const char *in, size_t n, const run_cfg *cfg,
                         stws_result want) {
    tbuf log;
    stws_result r = check_all(in, n, cfg, &log);
    if (r != want) fail_msg("%s: result %d, want %d; log:\n%s", label, (int)r, (int)want, log.p);
    tbuf_free(&log);
}

/* ---- the parser ------------------------------------------------------------- */

static void content_length_body(void **state) {
    static const char in[] =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n"
        "Retry-After: 30\r\n\r\n{\"a\":\"hello\"}";
    (void)state;
    expect_log(S(in), NULL, STWS_INCOMPLETE,
               "S=200 V=11 K=1 C=0 L=13 R=30 I=0 AT=101 T=[application/json] P=[OK] "
               "F=[Content-Type: application/json\r\nContent-Length: 13\r\nRetry-After: 30\r\n] "
               "B=13[{\"a\":\"hello\"}]\nRESULT=1\n");
}

static void chunked_with_extensions_and_trailers(void **state) {
    static const char in[] =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;name=value;flag\r\nhello\r\n"
        "1 ; x=\"quoted ;\"\r\n,\r\n"
        "00006\r\n world\r\n"
        "A\r\n0123456789\r\n"
        "0;last\r\nX-Trailer: one\r\nChecksum:\t abc \r\n\r\n";
    (void)state;
    expect_log(S(in), NULL, STWS_INCOMPLETE,
               "S=200 V=11 K=1 C=1 L=-1 R=-1 I=0 AT=167 T=[] P=[OK] "
               "F=[Transfer-Encoding: chunked\r\n] B=22[hello, world0123456789]\nRESULT=1\n");
}

static void chunked_empty_and_case(void **state) {
    static const char in[] =
        "HTTP/1.1 404 Not Found\r\ntransfer-encoding: Chunked\r\n\r\n0\r\n\r\n"
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nf\r\nabcdefghijklmno\r\n0\r\n\r\n";
    (void)state;
    expect_log(S(in), NULL, STWS_INCOMPLETE,
               "S=404 V=11 K=1 C=1 L=-1 R=-1 I=0 AT=59 T=[] P=[Not Found] "
               "F=[transfer-encoding: Chunked\r\n] B=0[]\n"
               "S=200 V=11 K=1 C=1 L=-1 R=-1 I=0 AT=72 T=[] P=[OK] "
               "F=[Transfer-Encoding: chunked\r\n] B=15[abcdefghijklmno]\nRESULT=1\n");
}

#define CHUNK_LINE_MAX 4096 /* the implementation's STWS__HTTP_MAX_CHUNK_LINE */
#define CHUNKED_HEAD "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

static void bad_chunks(void **state) {
    static const struct {
        const char *label, *body;
        stws_result want;
    } cases[] = {
        {"non-hex size", "zz\r\nhi\r\n0\r\n\r\n", STWS_ERR_HTTP_CHUNK},
        {"empty size", "\r\n", STWS_ERR_HTTP_CHUNK},
        {"sign", "+5\r\nhello\r\n", STWS_ERR_HTTP_CHUNK},
        {"0x prefix", "0x5\r\nhello\r\n", STWS_ERR_HTTP_CHUNK},
        {"junk after digits", "5x\r\nhello\r\n", STWS_ERR_HTTP_CHUNK},
        {"overflow", "1FFFFFFFFFFFFFFFFFFFFFFFF\r\n", STWS_ERR_HTTP_CHUNK},
        {"bare LF after size", "5\nhello\r\n0\r\n\r\n", STWS_ERR_HTTP_CHUNK},
        {"CR without LF", "5\rhello", STWS_ERR_HTTP_CHUNK},
        {"missing CRLF after data", "5\r\nhelloXX5\r\nhello\r\n", STWS_ERR_HTTP_CHUNK},
        {"LF only after data", "5\r\nhello\n0\r\n\r\n", STWS_ERR_HTTP_CHUNK},
        {"no CR after data", "5\r\nhelloX\n0\r\n\r\n", STWS_ERR_HTTP_CHUNK},
        {"data longer than size", "3\r\nhello\r\n", STWS_ERR_HTTP_CHUNK},
        {"control in extension", "5;a\001b\r\nhello\r\n", STWS_ERR_HTTP_CHUNK},
        {"bad trailer name", "0\r\nBad Name: x\r\n\r\n", STWS_ERR_HTTP_CHUNK},
        {"trailer without colon", "0\r\nX\r\n\r\n", STWS_ERR_HTTP_CHUNK},
        {"trailer bare LF", "0\r\nX: y\n\r\n", STWS_ERR_HTTP_CHUNK},
        {"folded trailer", "0\r\n x: y\r\n\r\n", STWS_ERR_HTTP_CHUNK},
    };
    char in[512], ext[CHUNK_LINE_MAX + 64];
    size_t i;
    run_cfg eof = {0, 0, 0, 1};
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(in, sizeof in, "%s%s", CHUNKED_HEAD, cases[i].body);
        expect_error(cases[i].label, in, strlen(in), &eof, cases[i].want);
    }
    /* the largest size that fits, refused by the body limit instead */
    snprintf(in, sizeof in, "%s%zX\r\n", CHUNKED_HEAD, (size_t)-1);
    expect_error("SIZE_MAX", in, strlen(in), NULL, STWS_ERR_HTTP_BODY_TOO_BIG);
    /* many leading zeros are no overflow */
    snprintf(in, sizeof in, "%s0000000000000000000000000000000005\r\nhello\r\n0\r\n\r\n", CHUNKED_HEAD);
    expect_error("leading zeros", in, strlen(in), NULL, STWS_INCOMPLETE);
    /* a chunk line at the limit passes, one byte more is refused */
    memset(ext, 'e', sizeof ext);
    ext[0] = '5';
    ext[1] = ';';
    memcpy(ext + CHUNK_LINE_MAX, "\r\nhello\r\n0\r\n\r\n", 14);
    snprintf(in, sizeof in, "%s", CHUNKED_HEAD);
    {
        tbuf t = {0}, log;
        tbuf_put(&t, in, strlen(in));
        tbuf_put(&t, ext, CHUNK_LINE_MAX + 14);
        assert_int_equal(check_all((const char *)t.p, t.len, NULL, &log), STWS_INCOMPLETE);
        assert_non_null(strstr((const char *)log.p, "B=5[hello]"));
        tbuf_free(&log);
        t.len = strlen(in);
        ext[CHUNK_LINE_MAX] = 'e';
        memcpy(ext + CHUNK_LINE_MAX + 1, "\r\nhello\r\n0\r\n\r\n", 14);
        tbuf_put(&t, ext, CHUNK_LINE_MAX + 15);
        expect_error("chunk line too long", (const char *)t.p, t.len, NULL, STWS_ERR_HTTP_CHUNK);
        tbuf_free(&t);
    }
}

static void malformed_heads(void **state) {
    static const struct {
        const char *label, *in;
    } cases[] = {
        {"not HTTP", "HTTX/1.1 200 OK\r\n\r\n"},
        {"HTTP/2", "HTTP/2 200 OK\r\n\r\n"},
        {"HTTP/1.x letter", "HTTP/1.a 200 OK\r\n\r\n"},
        {"short status", "HTTP/1.1 20 OK\r\n\r\n"},
        {"status 600", "HTTP/1.1 600 Odd\r\n\r\n"},
        {"status 099", "HTTP/1.1 099 Odd\r\n\r\n"},
        {"no space after status", "HTTP/1.1 200OK\r\n\r\n"},
        {"control in reason", "HTTP/1.1 200 O\001K\r\n\r\n"},
        {"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n"},
        {"bare CR", "HTTP/1.1 200 OK\r\rX: y\r\n\r\n"},
        {"NUL in field", "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n"},
        {"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"},
        {"no colon", "HTTP/1.1 200 OK\r\nContent-Length\r\n\r\n"},
        {"empty name", "HTTP/1.1 200 OK\r\n: x\r\n\r\n"},
        {"fold on first line", "HTTP/1.1 200 OK\r\n X: y\r\n\r\n"},
        {"control in value", "HTTP/1.1 200 OK\r\nX: a\002b\r\n\r\n"},
        {"bad content-length", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n"},
        {"negative content-length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"},
        {"empty content-length", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n"},
        {"conflicting content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello"},
        {"two content-lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 4\r\n\r\nhello"},
        {"gzip coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"},
        {"chunked not last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"},
        {"chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"},
    };
    size_t i;
    run_cfg eof = {0, 0, 0, 1};
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].in);
        if (strcmp(cases[i].label, "NUL in field") == 0) n = 27;
        expect_error(cases[i].label, cases[i].in, n, &eof, STWS_ERR_HTTP_MALFORMED);
    }
}

/* Garbage is refused at its first wrong byte, not after the header limit;
   a valid prefix is only "need more bytes". */
static void incomplete_is_not_invalid(void **state) {
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    stws_http_parser *p = stws_http_parser_create(NULL);
    size_t k, used;
    (void)state;
    for (k = 0; k < sizeof ok - 1; k++) {
        stws_http_parser_reset(p, 0);
        assert_int_equal(stws_http_parser_parse(p, guarded(ok, k), k, &used), STWS_INCOMPLETE);
        assert_int_equal(used, k);
        assert_int_equal(stws_http_parser_received(p), k);
        assert_null(stws_http_parser_response(p));
    }
    stws_http_parser_reset(p, 0);
    assert_int_equal(stws_http_parser_parse(p, guarded("<htm", 4), 4, &used), STWS_ERR_HTTP_MALFORMED);
    assert_int_equal(used, 1);
    stws_http_parser_reset(p, 0);
    assert_int_equal(stws_http_parser_parse(p, guarded("HTTP/2", 6), 6, &used), STWS_ERR_HTTP_MALFORMED);
    stws_http_parser_destroy(p);
}

static void oversize_headers(void **state) {
    /* exactly 64 bytes of head */
    static const char at[] = "HTTP/1.1 200 OK\r\nX-Pad: 012345678901234567890123456789012345\r\n\r\n";
    static const char over[] = "HTTP/1.1 200 OK\r\nX-Pad: 0123456789012345678901234567890123456\r\n\r\n";
    run_cfg lim = {1, 64, 0, 0};
    tbuf log;
    (void)state;
    assert_int_equal(sizeof at - 1, 64);
    assert_int_equal(check_all(S(at), &lim, &log), STWS_INCOMPLETE);
    assert_non_null(strstr((const char *)log.p, "S=200"));
    tbuf_free(&log);
    expect_error("65 bytes", S(over), &lim, STWS_ERR_HTTP_HEADERS_TOO_BIG);
    /* the default limit: 16 KiB */
    {
        tbuf t = {0};
        size_t i;
        tbuf_put(&t, S("HTTP/1.1 200 OK\r\n"));
        for (i = 0; i < 400; i++) tbuf_put(&t, S("X-Filler: 0123456789012345678901234567890\r\n"));
        tbuf_put(&t, S("\r\n"));
        expect_error("default limit", (const char *)t.p, t.len, NULL, STWS_ERR_HTTP_HEADERS_TOO_BIG);
        tbuf_free(&t);
    }
    /* 1xx answers count against the same limit */
    {
        static const char two[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
                                  "HTTP/1.1 200 OK\r\n\r\n";
        run_cfg small = {1, 68, 0, 0};
        expect_error("1xx flood", S(two), &small, STWS_ERR_HTTP_HEADERS_TOO_BIG);
        small.max_header = 69;
        expect_error("1xx within", S(two), &small, STWS_INCOMPLETE);
    }
    /* trailers too */
    {
        static const char tr[] = CHUNKED_HEAD "0\r\nX-Trailer: 0123456789012345678901234567890123456789\r\n\r\n";
        run_cfg small = {0, 54, 0, 0};
        expect_error("trailer", S(tr), &small, STWS_ERR_HTTP_HEADERS_TOO_BIG);
        small.max_header = 55;
        expect_error("trailer within", S(tr), &small, STWS_INCOMPLETE);
    }
}

static void oversize_bodies(void **state) {
    run_cfg lim = {0, 0, 10, 1};
    tbuf log;
    (void)state;
    expect_error("length 11", S("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"), &lim,
                 STWS_ERR_HTTP_BODY_TOO_BIG);
    expect_error("huge length", S("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
                 &lim, STWS_ERR_HTTP_BODY_TOO_BIG);
    assert_int_equal(check_all(S("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"), &lim, &log),
                     STWS_INCOMPLETE);
    assert_non_null(strstr((const char *)log.p, "B=10[0123456789]"));
    tbuf_free(&log);
    expect_error("chunks", S(CHUNKED_HEAD "5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n"), &lim,
                 STWS_ERR_HTTP_BODY_TOO_BIG);
    expect_error("chunks at limit", S(CHUNKED_HEAD "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"), &lim,
                 STWS_INCOMPLETE);
    expect_error("until close", S("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789A"), &lim,
                 STWS_ERR_HTTP_BODY_TOO_BIG);
    expect_error("until close at limit", S("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789"),
                 &lim, STWS_INCOMPLETE);
}

static void connection_close_and_http10(void **state) {
    run_cfg eof = {0, 0, 0, 1};
    (void)state;
    expect_log(S("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"), NULL,
               STWS_INCOMPLETE,
               "S=200 V=11 K=0 C=0 L=2 R=-1 I=0 AT=59 T=[] P=[OK] F=[Connection: close\r\n"
               "Content-Length: 2\r\n] B=2[ok]\nRESULT=1\n");
    expect_log(S("HTTP/1.1 200 OK\r\nConnection: foo, Close\r\nContent-Length: 0\r\n\r\n"), NULL,
               STWS_INCOMPLETE,
               "S=200 V=11 K=0 C=0 L=0 R=-1 I=0 AT=62 T=[] P=[OK] F=[Connection: foo, Close\r\n"
               "Content-Length: 0\r\n] B=0[]\nRESULT=1\n");
    /* HTTP/1.0: closes unless keep-alive; without a length the close ends it */
    expect_log(S("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"), NULL, STWS_INCOMPLETE,
               "S=200 V=10 K=0 C=0 L=2 R=-1 I=0 AT=40 T=[] P=[OK] F=[Content-Length: 2\r\n] B=2[ok]\n"
               "RESULT=1\n");
    expect_log(S("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok"), NULL,
               STWS_INCOMPLETE,
               "S=200 V=10 K=1 C=0 L=2 R=-1 I=0 AT=64 T=[] P=[OK] F=[Connection: Keep-Alive\r\n"
               "Content-Length: 2\r\n] B=2[ok]\nRESULT=1\n");
    expect_log(S("HTTP/1.0 200 OK\r\n\r\nuntil the end"), &eof, STWS_INCOMPLETE,
               "S=200 V=10 K=0 C=0 L=-1 R=-1 I=0 AT=32 T=[] P=[OK] F=[] B=13[until the end]\n"
               "RESULT=1\n");
    /* keep-alive is no help without a length */
    expect_log(S("HTTP/1.1 200 OK\r\n\r\nabc"), &eof, STWS_INCOMPLETE,
               "S=200 V=11 K=0 C=0 L=-1 R=-1 I=0 AT=22 T=[] P=[OK] F=[] B=3[abc]\nRESULT=1\n");
    /* Transfer-Encoding and Content-Length: chunked wins, no reuse */
    expect_log(S("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "2\r\nab\r\n0\r\n\r\n"), NULL, STWS_INCOMPLETE,
               "S=200 V=11 K=0 C=1 L=3 R=-1 I=0 AT=78 T=[] P=[OK] F=[Content-Length: 3\r\n"
               "Transfer-Encoding: chunked\r\n] B=2[ab]\nRESULT=1\n");
    /* 1.x minor versions above 1 read as 1.1; status line without reason */
    expect_log(S("HTTP/1.2 200\r\nContent-Length: 0\r\n\r\n"), NULL, STWS_INCOMPLETE,
               "S=200 V=11 K=1 C=0 L=0 R=-1 I=0 AT=35 T=[] P=[] F=[Content-Length: 0\r\n] B=0[]\n"
               "RESULT=1\n");
}

static void truncated_by_eof(void **state) {
    static const char *const cuts[] = {
        "", "HTTP/1.1 200", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
        CHUNKED_HEAD "5\r\nhello\r\n", CHUNKED_HEAD "0\r\n",
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        stws_http_parser *p = stws_http_parser_create(NULL);
        size_t used, n = strlen(cuts[i]);
        assert_int_equal(stws_http_parser_parse(p, guarded(cuts[i], n), n, &used), STWS_INCOMPLETE);
        assert_int_equal(stws_http_parser_received(p), n);
        assert_int_equal(stws_http_parser_eof(p), STWS_ERR_EOF);
        assert_int_equal(stws_http_parser_eof(p), STWS_ERR_EOF);
        assert_null(stws_http_parser_response(p));
        assert_int_equal(stws_http_parser_parse(p, "H", 1, &used), STWS_ERR_EOF);
        stws_http_parser_destroy(p);
    }
}

static void interim_answers_skipped(void **state) {
    (void)state;
    expect_log(S("HTTP/1.1 100 Continue\r\n\r\n"
                 "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                 "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"), NULL, STWS_INCOMPLETE,
               "S=201 V=11 K=1 C=0 L=2 R=-1 I=2 AT=127 T=[] P=[Created] F=[Content-Length: 2\r\n] "
               "B=2[ok]\nRESULT=1\n");
    /* 101 is final: no body, and the connection is no longer HTTP */
    expect_log(S("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nHTTP/1.1 200 OK\r\n"), NULL,
               STWS_INCOMPLETE,
               "S=101 V=11 K=0 C=0 L=-1 R=-1 I=0 AT=48 T=[] P=[Switching Protocols] "
               "F=[Upgrade: x\r\n] B=0[]\nRESULT=1\n");
}

static void bodiless_answers(void **state) {
    run_cfg head = {1, 0, 0, 0};
    (void)state;
    /* 204 and 304 never have a body, whatever their fields say; what follows
       is the next response */
    expect_log(S("HTTP/1.1 204 No Content\r\n\r\n"
                 "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"
                 "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"), NULL, STWS_INCOMPLETE,
               "S=204 V=11 K=1 C=0 L=-1 R=-1 I=0 AT=27 T=[] P=[No Content] F=[] B=0[]\n"
               "S=304 V=11 K=1 C=0 L=50 R=-1 I=0 AT=49 T=[] P=[Not Modified] F=[Content-Length: 50\r\n] B=0[]\n"
               "S=204 V=11 K=1 C=0 L=-1 R=-1 I=0 AT=55 T=[] P=[No Content] "
               "F=[Transfer-Encoding: chunked\r\n] B=0[]\nRESULT=1\n");
    /* HEAD: the length describes a body that is not sent */
    expect_log(S("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), &head, STWS_INCOMPLETE,
               "S=200 V=11 K=1 C=0 L=10 R=-1 I=0 AT=39 T=[] P=[OK] F=[Content-Length: 10\r\n] B=0[]\n"
               "S=200 V=11 K=1 C=0 L=-1 R=-1 I=0 AT=47 T=[] P=[OK] "
               "F=[Transfer-Encoding: chunked\r\n] B=0[]\nRESULT=1\n");
}

static void pipelined_responses(void **state) {
    (void)state;
    expect_log(S("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
                 "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\ntwo\r\n0\r\n\r\n"
                 "HTTP/1.1 429 Too Many Requests\r\nRetry-After: Fri, 31 Dec 1999 23:59:59 GMT\r\n"
                 "Content-Length: 5\r\n\r\nthree"
                 "HTTP/1.1 200 OK\r\nContent-Len"), NULL, STWS_INCOMPLETE,
               "S=200 V=11 K=1 C=0 L=3 R=-1 I=0 AT=41 T=[] P=[OK] F=[Content-Length: 3\r\n] B=3[one]\n"
               "S=503 V=11 K=1 C=1 L=-1 R=7 I=0 AT=93 T=[] P=[Service Unavailable] "
               "F=[Retry-After: 7\r\nTransfer-Encoding: chunked\r\n] B=3[two]\n"
               "S=429 V=11 K=1 C=0 L=5 R=-1 I=0 AT=102 T=[] P=[Too Many Requests] "
               "F=[Retry-After: Fri, 31 Dec 1999 23:59:59 GMT\r\nContent-Length: 5\r\n] B=5[three]\n"
               "RESULT=1\n");
}

static void fields_and_folding(void **state) {
    static const char in[] = "HTTP/1.1 200 OK\r\ncontent-TYPE:text/plain \t\r\nX-Empty:\r\n"
                             "X-Fold: a\r\n  b\r\n\tc\r\nContent-Length: 0\r\nContent-Length: 0, 0\r\n\r\n";
    stws_http_parser *p = stws_http_parser_create(NULL);
    const stws_http_response *r;
    stws_str n, v;
    size_t pos = 0, used;
    (void)state;
    assert_int_equal(stws_http_parser_parse(p, guarded(S(in)), sizeof in - 1, &used), STWS_OK);
    assert_int_equal(used, sizeof in - 1);
    r = stws_http_parser_response(p);
    assert_non_null(r);
    assert_int_equal(r->content_length, 0);
    assert_int_equal(r->content_type.len, 10);
    assert_memory_equal(r->content_type.ptr, "text/plain", 10);
    assert_int_equal(stws_http_response_header(r, &pos, &n, &v), 1);
    assert_int_equal(n.len, 12);
    assert_memory_equal(n.ptr, "content-TYPE", 12);
    assert_int_equal(v.len, 10);
    assert_int_equal(stws_http_response_header(r, &pos, &n, &v), 1);
    assert_int_equal(n.len, 7);
    assert_int_equal(v.len, 0);
    assert_int_equal(stws_http_response_header(r, &pos, &n, &v), 1);
    /* obs-fold became spaces (RFC 9112 §5.2) */
    assert_int_equal(v.len, 10);
    assert_memory_equal(v.ptr, "a    b  \tc", 10);
    assert_int_equal(stws_http_response_header(r, &pos, &n, &v), 1);
    assert_int_equal(stws_http_response_header(r, &pos, &n, &v), 1);
    assert_int_equal(stws_http_response_header(r, &pos, &n, &v), 0);
    assert_int_equal(stws_http_response_find(r, "x-fold", &v), 1);
    assert_int_equal(stws_http_response_find(r, "CONTENT-LENGTH", &v), 1);
    assert_int_equal(v.len, 1);
    assert_int_equal(stws_http_response_find(r, "x-missing", &v), 0);
    assert_int_equal(stws_http_response_find(r, "x-fol", &v), 0);
    /* after OK: STATE until reset; reset then parses the next */
    assert_int_equal(stws_http_parser_parse(p, "H", 1, &used), STWS_ERR_STATE);
    assert_int_equal(used, 0);
    assert_int_equal(stws_http_parser_eof(p), STWS_OK);
    stws_http_parser_reset(p, 0);
    assert_null(stws_http_parser_response(p));
    assert_int_equal(stws_http_parser_received(p), 0);
    assert_int_equal(stws_http_parser_eof(p), STWS_ERR_EOF);
    stws_http_parser_destroy(p);
}

static void args_checked(void **state) {
    stws_http_parser *p = stws_http_parser_create(NULL);
    size_t used;
    (void)state;
    assert_int_equal(stws_http_parser_parse(NULL, "x", 1, &used), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_http_parser_parse(p, NULL, 1, &used), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_http_parser_parse(p, "x", 1, NULL), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_http_parser_parse(p, NULL, 0, &used), STWS_INCOMPLETE);
    assert_int_equal(stws_http_parser_eof(NULL), STWS_ERR_INVALID_ARG);
    assert_null(stws_http_parser_response(NULL));
    assert_int_equal(stws_http_response_header(NULL, &used, NULL, NULL), 0);
    stws_http_parser_destroy(NULL);
    stws_http_parser_reset(NULL, 0);
    stws_http_parser_destroy(p);
    assert_string_equal(stws_result_string(STWS_ERR_HTTP_CHUNK), "malformed HTTP chunk");
    assert_string_equal(stws_result_string(STWS_ERR_HTTP_HEADERS_TOO_BIG), "HTTP response header too big");
}

/* Buffers grow to the largest response and stay: none per response after. */
static void no_allocation_in_steady_state(void **state) {
    counting c = {0, 0, 0, -1, 0};
    stws_http_parser_desc d;
    stws_http_parser *p;
    tbuf t = {0};
    size_t i, used, allocs;
    (void)state;
    memset(&d, 0, sizeof d);
    d.allocator = counting_allocator(&c);
    p = stws_http_parser_create(&d);
    tbuf_put(&t, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
    for (i = 0; i < 100; i++) tbuf_put(&t, S("40\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n"));
    tbuf_put(&t, S("0\r\n\r\n"));
    for (i = 0; i < 50; i++) {
        if (i == 1) allocs = c.allocs;
        stws_http_parser_reset(p, 0);
        assert_int_equal(stws_http_parser_parse(p, t.p, t.len, &used), STWS_OK);
        assert_int_equal(stws_http_parser_response(p)->body_len, 6400);
    }
    assert_int_equal(c.allocs, allocs);
    stws_http_parser_destroy(p);
    assert_int_equal(c.live, 0);
    /* out of memory: a sticky NOMEM, nothing leaked */
    for (i = 0; i < 4; i++) {
        counting f = {0, 0, 0, (long)i, 0};
        d.allocator = counting_allocator(&f);
        p = stws_http_parser_create(&d);
        if (!p) {
            assert_int_equal(i, 0);
            continue;
        }
        {
            stws_result r = stws_http_parser_parse(p, t.p, t.len, &used);
            if (i < 3) {
                assert_int_equal(r, STWS_ERR_NOMEM);
                assert_int_equal(stws_http_parser_parse(p, t.p, t.len, &used), STWS_ERR_NOMEM);
            }
        }
        stws_http_parser_destroy(p);
        assert_int_equal(f.live, 0);
    }
    tbuf_free(&t);
}

/* An announced length is no reason to allocate: the body buffer grows with
   the bytes that came. */
static size_t largest_alloc;
static void *size_alloc(size_t size, void *ud) {
    (void)ud;
    if (size > largest_alloc) largest_alloc = size;
    return malloc(size);
}
static void size_free(void *p, void *ud) {
    (void)ud;
    free(p);
}
static void announced_length_not_allocated(void **state) {
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Length: 16000000\r\n\r\nabc";
    stws_http_parser_desc d;
    stws_http_parser *p;
    size_t used;
    (void)state;
    memset(&d, 0, sizeof d);
    d.allocator.alloc = size_alloc;
    d.allocator.free = size_free;
    largest_alloc = 0;
    p = stws_http_parser_create(&d);
    assert_int_equal(stws_http_parser_parse(p, in, sizeof in - 1, &used), STWS_INCOMPLETE);
    assert_true(largest_alloc <= 4096);
    assert_int_equal(stws_http_parser_eof(p), STWS_ERR_EOF);
    stws_http_parser_destroy(p);
}

/* ---- the writer ------------------------------------------------------------- */

static void write_req(const stws_http_request_desc *d, char *buf, size_t cap, stws_result want) {
    size_t len = 0;
    stws_result r = stws_http_request_write(d, buf, cap, &len);
    if (r != want) fail_msg("write: result %d, want %d", (int)r, (int)want);
}

static void writer_get_with_query(void **state) {
    static const stws_http_query q[] = {
        {"api_key", "key 1|2&3=4"}, {"connection_id", "abc-_.*~"}, {"user", "J\xc3\xa9r\xc3\xb4me/+%"},
        {"flag", NULL}, {"empty", ""},
    };
    stws_http_request_desc d;
    char buf[512];
    size_t len;
    (void)state;
    memset(&d, 0, sizeof d);
    d.host = "chat.stream-io-api.com";
    d.secure = 1;
    d.port = 443;
    d.path = "/api/v2/chat/channels";
    d.query = q;
    d.num_query = 5;
    assert_int_equal(stws_http_request_write(&d, buf, sizeof buf, &len), STWS_OK);
    assert_string_equal(buf, "GET /api/v2/chat/channels?api_key=key+1%7C2%263%3D4&connection_id=abc-_.*%7E"
                             "&user=J%C3%A9r%C3%B4me%2F%2B%25&flag&empty= HTTP/1.1\r\n"
                             "Host: chat.stream-io-api.com\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(len, strlen(buf));
    /* a path with its own query gets '&' */
    d.path = "/x?a=1";
    d.num_query = 1;
    d.secure = 0;
    d.port = 8080;
    assert_int_equal(stws_http_request_write(&d, buf, sizeof buf, &len), STWS_OK);
    assert_string_equal(buf, "GET /x?a=1&api_key=key+1%7C2%263%3D4 HTTP/1.1\r\nHost: chat.stream-io-api.com:8080\r\n"
                             "Connection: keep-alive\r\n\r\n");
    /* IPv6 literal, default port, close */
    memset(&d, 0, sizeof d);
    d.host = "::1";
    d.port = 80;
    d.close = 1;
    d.method = "HEAD";
    assert_int_equal(stws_http_request_write(&d, buf, sizeof buf, &len), STWS_OK);
    assert_string_equal(buf, "HEAD / HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n");
}

static void writer_post_body(void **state) {
    static const stws_header h[] = {{"Authorization", "eyJ.a.b"}, {"stream-auth-type", "jwt"},
                                    {"Content-Type", "application/json"}};
    stws_http_request_desc d;
    char buf[512], small[20];
    size_t len, need;
    (void)state;
    memset(&d, 0, sizeof d);
    d.method = "POST";
    d.host = "127.0.0.1";
    d.port = 3030;
    d.path = "/api/v2/chat/channels/messaging/general/message";
    d.headers = h;
    d.num_headers = 3;
    d.body = "{\"message\":{}}";
    d.body_len = 14;
    assert_int_equal(stws_http_request_write(&d, buf, sizeof buf, &len), STWS_OK);
    assert_string_equal(buf, "POST /api/v2/chat/channels/messaging/general/message HTTP/1.1\r\n"
                             "Host: 127.0.0.1:3030\r\nAuthorization: eyJ.a.b\r\nstream-auth-type: jwt\r\n"
                             "Content-Type: application/json\r\nContent-Length: 14\r\n"
                             "Connection: keep-alive\r\n\r\n{\"message\":{}}");
    need = len;
    assert_int_equal(stws_http_request_write(&d, small, sizeof small, &len), STWS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(len, need);
    assert_int_equal(stws_http_request_write(&d, buf, need, &len), STWS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(stws_http_request_write(&d, NULL, 0, &len), STWS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(len, need);
    assert_int_equal(stws_http_request_write(&d, buf, need + 1, &len), STWS_OK);
    /* POST without a body still says Content-Length: 0 */
    d.body = NULL;
    d.body_len = 0;
    d.num_headers = 0;
    d.port = 0;
    assert_int_equal(stws_http_request_write(&d, buf, sizeof buf, &len), STWS_OK);
    assert_string_equal(buf, "POST /api/v2/chat/channels/messaging/general/message HTTP/1.1\r\n"
                             "Host: 127.0.0.1\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
}

static void writer_refuses_injection(void **state) {
    static const struct {
        const char *name, *value;
        stws_result want;
    } hs[] = {
        {"X-A", "ok\r\nX-Injected: 1", STWS_ERR_HEADER_VALUE},
        {"X-A", "ok\nX-Injected: 1", STWS_ERR_HEADER_VALUE},
        {"X-A", "ok\r", STWS_ERR_HEADER_VALUE},
        {"X-A", "bell\a", STWS_ERR_HEADER_VALUE},
        {"X-A", "del\x7f", STWS_ERR_HEADER_VALUE},
        {"X A", "v", STWS_ERR_HEADER_VALUE},
        {"X-A:", "v", STWS_ERR_HEADER_VALUE},
        {"X-A\r\nY", "v", STWS_ERR_HEADER_VALUE},
        {"", "v", STWS_ERR_HEADER_VALUE},
        {"Host", "evil", STWS_ERR_INVALID_ARG},
        {"content-length", "0", STWS_ERR_INVALID_ARG},
        {"Transfer-Encoding", "chunked", STWS_ERR_INVALID_ARG},
        {"CONNECTION", "close", STWS_ERR_INVALID_ARG},
        {"X-Ok", "tab\there and \xc3\xa9", STWS_OK},
    };
    static const char *const hosts[] = {"a\r\nb", "a b", "a/b", "a?b", "a#b", "us@er", "", "[::1]"};
    static const char *const paths[] = {"/a b", "/a\r\nX: y", "/a#frag", "a", "/\x80", "", "/\t"};
    static const char *const methods[] = {"GET /", "G\r\nET", "", "GE(T"};
    stws_http_request_desc d;
    stws_header h;
    char buf[512];
    size_t i;
    (void)state;
    memset(&d, 0, sizeof d);
    d.host = "example.com";
    d.headers = &h;
    d.num_headers = 1;
    for (i = 0; i < sizeof hs / sizeof hs[0]; i++) {
        h.name = hs[i].name;
        h.value = hs[i].value;
        write_req(&d, buf, sizeof buf, hs[i].want);
    }
    d.num_headers = 0;
    for (i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        d.host = hosts[i];
        write_req(&d, buf, sizeof buf, STWS_ERR_HEADER_VALUE);
    }
    d.host = "example.com";
    for (i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        d.path = paths[i];
        write_req(&d, buf, sizeof buf, STWS_ERR_HEADER_VALUE);
    }
    d.path = NULL;
    for (i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        d.method = methods[i];
        write_req(&d, buf, sizeof buf, STWS_ERR_HEADER_VALUE);
    }
    d.method = NULL;
    /* query values cannot inject: they are percent-encoded */
    {
        stws_http_query q = {"a\r\nb", "c d\r\nHost: x"};
        size_t len;
        d.query = &q;
        d.num_query = 1;
        assert_int_equal(stws_http_request_write(&d, buf, sizeof buf, &len), STWS_OK);
        assert_string_equal(buf, "GET /?a%0D%0Ab=c+d%0D%0AHost%3A+x HTTP/1.1\r\nHost: example.com\r\n"
                                 "Connection: keep-alive\r\n\r\n");
    }
    d.num_query = 0;
    d.port = 65536;
    write_req(&d, buf, sizeof buf, STWS_ERR_INVALID_ARG);
    d.port = 0;
    d.body_len = 3;
    write_req(&d, buf, sizeof buf, STWS_ERR_INVALID_ARG);
    write_req(NULL, buf, sizeof buf, STWS_ERR_INVALID_ARG);
}

/* ---- an independent peer: Python's http.server --------------------------- */

static pid_t peer_pid = -1;
static int peer_stdin = -1, peer_port;

static int peer_start(void **state) {
    int in[2], out[2];
    char line[32];
    size_t n = 0;
    const char *src = getenv("STWS_SRC");
    char script[512];
    (void)state;
    snprintf(script, sizeof script, "%s/tests/integration/http_peer.py", src ? src : ".");
    if (pipe(in) || pipe(out)) return -1;
    peer_pid = fork();
    if (peer_pid < 0) return -1;
    if (peer_pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execl("/usr/bin/python3", "python3", script, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    peer_stdin = in[1];
    while (n + 1 < sizeof line) { /* the port line, within 30 s */
        struct pollfd pfd;
        ssize_t k;
        pfd.fd = out[0];
        pfd.events = POLLIN;
        if (poll(&pfd, 1, 30000) <= 0) break;
        k = read(out[0], line + n, 1);
        if (k <= 0 || line[n] == '\n') break;
        n++;
    }
    line[n] = 0;
    close(out[0]);
    peer_port = atoi(line);
    return peer_port > 0 ? 0 : -1;
}

static int peer_stop(void **state) {
    (void)state;
    if (peer_stdin >= 0) close(peer_stdin); /* the peer exits on EOF */
    if (peer_pid > 0) {
        kill(peer_pid, SIGTERM);
        waitpid(peer_pid, NULL, 0);
    }
    peer_pid = -1;
    return 0;
}

static int peer_connect(void) {
    struct sockaddr_in a;
    struct timeval tv = {30, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)peer_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Send one request and parse its response off the socket; bytes past it
   stay in *carry (none expected from a server that answers in order). */
static const stws_http_response *exchange(int fd, stws_http_parser *p, const stws_http_request_desc *d,
                                          int head) {
    static char req[4096];
    uint8_t buf[1500];
    size_t len, used;
    stws_result r = STWS_INCOMPLETE;
    assert_int_equal(stws_http_request_write(d, req, sizeof req, &len), STWS_OK);
    assert_int_equal(send(fd, req, len, 0), (ssize_t)len);
    stws_http_parser_reset(p, head);
    while (r == STWS_INCOMPLETE) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k < 0 && errno == EINTR) continue;
        assert_true(k >= 0); /* no timeout */
        if (k == 0) {
            r = stws_http_parser_eof(p);
            break;
        }
        r = stws_http_parser_parse(p, buf, (size_t)k, &used);
        if (r == STWS_OK) assert_int_equal(used, (size_t)k);
    }
    assert_int_equal(r, STWS_OK);
    return stws_http_parser_response(p);
}

static void expect_body_has(const stws_http_response *r, const char *s) {
    if (!strstr((const char *)r->body, s)) fail_msg("body lacks %s: %s", s, (const char *)r->body);
}

static void python_peer_keep_alive(void **state) {
    static const stws_http_query q[] = {{"api_key", "k y|1&2=3"}, {"name", "J\xc3\xa9r\xc3\xb4me"}};
    static const stws_header h[] = {{"X-Test", "tab\tvalue"}};
    stws_http_parser *p = stws_http_parser_create(NULL);
    stws_http_request_desc d;
    const stws_http_response *r;
    int fd = peer_connect(), i;
    (void)state;
    memset(&d, 0, sizeof d);
    d.host = "127.0.0.1";
    d.port = peer_port;
    d.query = q;
    d.num_query = 2;
    d.headers = h;
    d.num_headers = 1;
    for (i = 0; i < 3; i++) { /* Content-Length, chunked, a POST: one connection */
        d.path = i == 1 ? "/chunked" : "/cl";
        d.method = i == 2 ? "POST" : NULL;
        d.body = i == 2 ? "{\"text\":\"hi \xe2\x9c\x93\"}" : NULL;
        d.body_len = i == 2 ? strlen((const char *)d.body) : 0;
        r = exchange(fd, p, &d, 0);
        assert_int_equal(r->status, i == 2 ? 201 : 200);
        assert_int_equal(r->keep_alive, 1);
        assert_int_equal(r->chunked, i == 1);
        assert_int_equal(r->content_type.len, 16);
        expect_body_has(r, "\"api_key\": [\"k y|1&2=3\"]");
        expect_body_has(r, "\"name\": [\"J\xc3\xa9r\xc3\xb4me\"]");
        expect_body_has(r, "\"x\": \"tab\\tvalue\"");
        expect_body_has(r, "\"connection\": \"keep-alive\"");
        {
            char host[64];
            snprintf(host, sizeof host, "\"host\": \"127.0.0.1:%d\"", peer_port);
            expect_body_has(r, host);
        }
        if (i == 2) {
            expect_body_has(r, "\"method\": \"POST\"");
            expect_body_has(r, "\"body\": \"{\\\"text\\\":\\\"hi \xe2\x9c\x93\\\"}\"");
        }
        if (i == 1) {
            expect_body_has(r, "\"path\": \"/chunked\"");
            assert_int_equal(r->body_len, strlen((const char *)r->body));
        }
    }
    /* HEAD: a length, no body, and the connection still in step */
    d.method = "HEAD";
    d.path = "/cl";
    r = exchange(fd, p, &d, 1);
    assert_int_equal(r->status, 200);
    assert_true(r->content_length > 0);
    assert_int_equal(r->body_len, 0);
    /* a 1 MiB chunked body in chunks of varying size */
    d.method = NULL;
    d.path = "/big?n=1048576";
    d.num_query = 0;
    r = exchange(fd, p, &d, 0);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, 1048576);
    for (i = 0; i < 1048576; i++)
        if (r->body[i] != (uint8_t)((i * 7 + 3) & 0xFF)) fail_msg("big body differs at %d", i);
    /* Connection: close, body until the close */
    d.path = "/close";
    r = exchange(fd, p, &d, 0);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->keep_alive, 0);
    assert_int_equal(r->content_length, -1);
    expect_body_has(r, "\"path\": \"/close\"");
    close(fd);
    stws_http_parser_destroy(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(content_length_body),
        cmocka_unit_test(chunked_with_extensions_and_trailers),
        cmocka_unit_test(chunked_empty_and_case),
        cmocka_unit_test(bad_chunks),
        cmocka_unit_test(malformed_heads),
        cmocka_unit_test(incomplete_is_not_invalid),
        cmocka_unit_test(oversize_headers),
        cmocka_unit_test(oversize_bodies),
        cmocka_unit_test(connection_close_and_http10),
        cmocka_unit_test(truncated_by_eof),
        cmocka_unit_test(interim_answers_skipped),
        cmocka_unit_test(bodiless_answers),
        cmocka_unit_test(pipelined_responses),
        cmocka_unit_test(fields_and_folding),
        cmocka_unit_test(args_checked),
        cmocka_unit_test(no_allocation_in_steady_state),
        cmocka_unit_test(announced_length_not_allocated),
        cmocka_unit_test(writer_get_with_query),
        cmocka_unit_test(writer_post_body),
        cmocka_unit_test(writer_refuses_injection),
    };
    const struct CMUnitTest peer[] = {
        cmocka_unit_test(python_peer_keep_alive),
    };
    int failed = cmocka_run_group_tests_name("http", tests, NULL, NULL);
    signal(SIGPIPE, SIG_IGN);
    failed += cmocka_run_group_tests_name("http peer", peer, peer_start, peer_stop);
    return failed;
}
