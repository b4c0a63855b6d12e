/* libFuzzer target: the HTTP/1.1 response parser (stws_http_parser_*) fed an
   arbitrary server->client stream of pipelined responses.

   Input: byte 0 is the configuration, the rest is the stream.
     bit 0     every response answers a HEAD request
     bit 1     small limits (max_header_size 200, max_body_size 300)
     bit 2     the peer closes at the end (stws_http_parser_eof)
     bits 3-5  chunking of the second run: 0 one byte at a time, 1 sizes
               1..16 cycling, 2..7 pseudo-random sizes 1..(8 << mode)
   The stream is parsed twice: whole, then cut into pieces; each piece is
   copied into an exactly sized heap block, so ASan reports any read past
   what the parser was given.  Every response's bytes are read.

   Invariants (a violation is __builtin_trap()):
     - *used <= len; INCOMPLETE used all of its input; OK comes with a
       response, other results with none
     - a response: status 101 or 200..599, version 10 or 11, keep_alive 0
       or 1 (0 when the body ran until the close), body NUL-terminated and
       within max_body_size, no body for HEAD, 204, 304 and 101; its fields
       iterate to names of token characters and values without CR or LF;
       look-up finds the first of each name
     - an error repeats on every later call (with used 0) until a reset
     - both runs give identical responses (status, fields, body, where
       each one ended) and the same final result */
#define STREAM_WS_IMPLEMENTATION
#include "stream_ws.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                          \
    do {                                  \
        if (!(c)) __builtin_trap();       \
    } while (0)

typedef struct fz_log {
    uint8_t *p;
    size_t len, cap;
} fz_log;

static void fz_put(fz_log *l, const void *d, size_t n) {
    if (l->len + n > l->cap) {
        size_t cap = l->cap ? l->cap : 256;
        while (cap < l->len + n) cap *= 2;
        l->p = (uint8_t *)realloc(l->p, cap);
        CHECK(l->p != NULL);
        l->cap = cap;
    }
    if (n) memcpy(l->p + l->len, d, n);
    l->len += n;
}
static void fz_int(fz_log *l, long long v) { fz_put(l, &v, sizeof v); }

static int is_tchar(int c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void check_response(const stws_http_response *r, int head, size_t max_body, fz_log *l,
                           size_t at) {
    size_t pos = 0, i;
    stws_str n, v, f;
    int count = 0;
    CHECK(r != NULL);
    CHECK(r->status == 101 || (r->status >= 200 && r->status <= 599));
    CHECK(r->version == 10 || r->version == 11);
    CHECK(r->keep_alive == 0 || r->keep_alive == 1);
    CHECK(r->body != NULL && r->body[r->body_len] == 0 && r->body_len <= max_body);
    if (head || r->status == 101 || r->status == 204 || r->status == 304) CHECK(r->body_len == 0);
    if (r->status == 101) CHECK(!r->keep_alive);
    while (stws_http_response_header(r, &pos, &n, &v)) {
        CHECK(n.len > 0);
        for (i = 0; i < n.len; i++) CHECK(is_tchar((unsigned char)n.ptr[i]));
        for (i = 0; i < v.len; i++) CHECK(v.ptr[i] != '\r' && v.ptr[i] != '\n' && v.ptr[i] != 0);
        if (v.len) CHECK(v.ptr[0] != ' ' && v.ptr[v.len - 1] != ' ');
        if (count++ < 8) {
            char name[64];
            if (n.len < sizeof name) {
                memcpy(name, n.ptr, n.len);
                name[n.len] = 0;
                CHECK(stws_http_response_find(r, name, &f) == 1);
                CHECK(f.ptr <= v.ptr); /* the first of that name */
            }
        }
        fz_put(l, n.ptr, n.len);
        fz_put(l, ":", 1);
        fz_put(l, v.ptr, v.len);
    }
    fz_int(l, r->status);
    fz_int(l, r->version);
    fz_int(l, r->keep_alive);
    fz_int(l, r->chunked);
    fz_int(l, r->content_length);
    fz_int(l, r->retry_after);
    fz_int(l, r->interim);
    fz_int(l, (long long)at);
    fz_put(l, r->reason.ptr, r->reason.len);
    fz_put(l, r->content_type.ptr, r->content_type.len);
    fz_int(l, (long long)r->body_len);
    fz_put(l, r->body, r->body_len);
}

static stws_result run(const uint8_t *in, size_t n, int cfg, int split, fz_log *l) {
    stws_http_parser_desc d;
    stws_http_parser *p;
    size_t pos = 0, base = 0, max_body = (cfg & 2) ? 300 : STWS_DEFAULT_MAX_BODY_SIZE;
    int head = cfg & 1, mode = (cfg >> 3) & 7;
    unsigned step = 0;
    uint64_t rng = n * 0x9E3779B97F4A7C15ull + 1;
    stws_result r = STWS_INCOMPLETE;
    memset(&d, 0, sizeof d);
    if (cfg & 2) {
        d.max_header_size = 200;
        d.max_body_size = 300;
    }
    p = stws_http_parser_create(&d);
    CHECK(p != NULL);
    stws_http_parser_reset(p, head);
    while (pos < n) {
        size_t k = n - pos, off = 0;
        uint8_t *chunk;
        if (split) {
            if (mode == 0) k = 1;
            else if (mode == 1) k = 1 + step++ % 16;
            else {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                k = 1 + (size_t)((rng >> 33) % ((size_t)8 << mode));
            }
            if (k > n - pos) k = n - pos;
        }
        chunk = (uint8_t *)malloc(k);
        CHECK(chunk != NULL);
        memcpy(chunk, in + pos, k);
        while (off < k) {
            size_t used = (size_t)-1;
            r = stws_http_parser_parse(p, chunk + off, k - off, &used);
            CHECK(used <= k - off);
            off += used;
            if (r == STWS_OK) {
                check_response(stws_http_parser_response(p), head, max_body, l, pos + off - base);
                base = pos + off;
                stws_http_parser_reset(p, head);
                r = STWS_INCOMPLETE;
                continue;
            }
            CHECK(stws_http_parser_response(p) == NULL);
            if (r == STWS_INCOMPLETE) CHECK(off == k);
            break;
        }
        free(chunk);
        if (r != STWS_INCOMPLETE) break;
        pos += k;
    }
    if (r == STWS_INCOMPLETE && (cfg & 4) && stws_http_parser_received(p)) {
        r = stws_http_parser_eof(p);
        if (r == STWS_OK) {
            const stws_http_response *resp = stws_http_parser_response(p);
            CHECK(!resp->keep_alive);
            check_response(resp, head, max_body, l, n - base);
            r = STWS_INCOMPLETE;
        }
    }
    if (r < 0) {
        size_t used = 1;
        CHECK(r == STWS_ERR_HTTP_MALFORMED || r == STWS_ERR_HTTP_HEADERS_TOO_BIG ||
              r == STWS_ERR_HTTP_BODY_TOO_BIG || r == STWS_ERR_HTTP_CHUNK || r == STWS_ERR_EOF);
        CHECK(stws_http_parser_parse(p, "HTTP/1.1 200 OK\r\n\r\n", 19, &used) == r && used == 0);
        CHECK(stws_http_parser_eof(p) == r);
    }
    fz_int(l, r);
    stws_http_parser_destroy(p);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_log a = {0, 0, 0}, b = {0, 0, 0};
    int cfg;
    if (size < 1) return 0;
    cfg = data[0];
    run(data + 1, size - 1, cfg, 0, &a);
    run(data + 1, size - 1, cfg, 1, &b);
    CHECK(a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0));
    free(a.p);
    free(b.p);
    return 0;
}
