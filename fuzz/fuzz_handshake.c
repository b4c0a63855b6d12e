/* libFuzzer target: stws_handshake_response_parse() on arbitrary bytes.

   The whole input is the server's response to a request made with the
   RFC 6455 §1.3 key.  It is parsed, and so is every prefix of it (as a
   client accumulating bytes would), each from an exactly sized heap copy so
   ASan reports any read past len, under three descs: none (every prefix);
   subprotocols "chat" and "superchat" offered (prefixes ending in LF);
   max_response_size 128 (every prefix up to twice the limit).

   Invariants (a violation is __builtin_trap()):
     - the result is OK, INCOMPLETE or one of the handshake errors
     - OK: status 101, header_size <= len and <= the limit, and header_size
       is the end of the first CRLFCRLF; every CR and LF in the block is a
       CRLF and there is no other control character but HTAB (RFC 7230 §3);
       location empty; subprotocol empty or one that was offered
     - INCOMPLETE only when len <= the limit and there is no CRLFCRLF in the
       buffer; a CRLFCRLF ending within the limit rules out INCOMPLETE and
       TOO_BIG
     - status is 0 or 100..599 and, when set, matches the status line;
       HANDSHAKE_STATUS comes with a status other than 101
     - views lie inside the buffer (their bytes are read); location only
       for 3xx
     - once a prefix gives a final result, every longer prefix gives the
       same result, status and header_size */
#define STREAM_WS_IMPLEMENTATION
#include "stream_ws.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                          \
    do {                                  \
        if (!(c)) __builtin_trap();       \
    } while (0)

#define KEY "dGhlIHNhbXBsZSBub25jZQ==" /* accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo= */
#define MAX_PREFIXES 4096

static volatile char sink;

static void touch(const stws_str *s, const char *buf, size_t len) {
    size_t i;
    if (!s->ptr) {
        CHECK(s->len == 0);
        return;
    }
    CHECK(s->ptr >= buf && s->len <= len && (size_t)(s->ptr - buf) <= len - s->len);
    for (i = 0; i < s->len; i++) sink ^= s->ptr[i];
}

/* End of the first CRLFCRLF in buf[0..len), or 0. */
static size_t first_terminator(const char *buf, size_t len) {
    size_t i;
    for (i = 0; i + 4 <= len; i++)
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) return i + 4;
    return 0;
}

static int handshake_result(stws_result r) {
    return r == STWS_OK || r == STWS_INCOMPLETE ||
           (r <= STWS_ERR_HANDSHAKE_TOO_BIG && r >= STWS_ERR_HANDSHAKE_SUBPROTOCOL);
}

typedef struct final_state {
    int have;
    stws_result r;
    int status;
    size_t header_size;
} final_state;

static void check_one(const uint8_t *data, size_t len, const stws_handshake_desc *d,
                      final_state *fin) {
    size_t max = (d && d->max_response_size) ? d->max_response_size : STWS_DEFAULT_MAX_RESPONSE_SIZE;
    char *buf = (char *)malloc(len ? len : 1);
    stws_handshake_response out;
    stws_result r;
    size_t term;
    CHECK(buf != NULL);
    if (len) memcpy(buf, data, len);
    memset(&out, 0xA5, sizeof out);
    r = stws_handshake_response_parse(buf, len, KEY, d, &out);
    CHECK(handshake_result(r));
    term = first_terminator(buf, len);

    touch(&out.location, buf, len);
    touch(&out.subprotocol, buf, len);
    CHECK(out.status == 0 || (out.status >= 100 && out.status <= 599));
    if (out.status) {
        CHECK(len >= 12 && memcmp(buf, "HTTP/1.1 ", 9) == 0);
        CHECK(out.status == (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0'));
    }
    if (out.location.len) CHECK(out.status / 100 == 3);

    if (r == STWS_INCOMPLETE) {
        CHECK(len <= max);
        CHECK(term == 0);
    }
    if (term && term <= max) CHECK(r != STWS_INCOMPLETE && r != STWS_ERR_HANDSHAKE_TOO_BIG);
    if (r == STWS_OK) {
        size_t i;
        CHECK(out.status == 101);
        /* RFC 7230 §3: lines end in CRLF; no CTL but HTAB in the block */
        for (i = 0; i < term; i++) {
            unsigned char ch = (unsigned char)buf[i];
            if (ch == '\r') CHECK(i + 1 < term && buf[i + 1] == '\n');
            else if (ch == '\n') CHECK(i > 0 && buf[i - 1] == '\r');
            else CHECK(ch == '\t' || (ch >= 0x20 && ch != 0x7F));
        }
        CHECK(out.header_size == term);
        CHECK(out.header_size <= len && out.header_size <= max);
        CHECK(out.location.len == 0);
        if (out.subprotocol.len) {
            int k, found = 0;
            CHECK(d && d->num_subprotocols > 0);
            for (k = 0; k < d->num_subprotocols; k++)
                if (strlen(d->subprotocols[k]) == out.subprotocol.len &&
                    memcmp(d->subprotocols[k], out.subprotocol.ptr, out.subprotocol.len) == 0)
                    found = 1;
            CHECK(found);
        }
    }
    if (r == STWS_ERR_HANDSHAKE_STATUS) CHECK(out.status != 0 && out.status != 101);

    /* prefix monotonicity */
    if (fin->have) {
        CHECK(r == fin->r);
        CHECK(out.status == fin->status);
        if (r == STWS_OK) CHECK(out.header_size == fin->header_size);
    } else if (r != STWS_INCOMPLETE) {
        fin->have = 1;
        fin->r = r;
        fin->status = out.status;
        fin->header_size = out.header_size;
    }
    free(buf);
}

/* which prefixes to parse besides the whole input */
enum { ALL_PREFIXES, LINE_PREFIXES };

static void check_all(const uint8_t *data, size_t size, const stws_handshake_desc *d, int which) {
    size_t max = (d && d->max_response_size) ? d->max_response_size : STWS_DEFAULT_MAX_RESPONSE_SIZE;
    final_state fin;
    size_t k, step = 1, upto = size;
    memset(&fin, 0, sizeof fin);
    /* past max + 4 every prefix is final: a few are enough */
    if (upto > 2 * max + 8) upto = 2 * max + 8;
    if (upto > MAX_PREFIXES) step = upto / MAX_PREFIXES + 1;
    for (k = 0; k < upto; k += step)
        if (which == ALL_PREFIXES || (k && data[k - 1] == '\n')) check_one(data, k, d, &fin);
    check_one(data, size, d, &fin);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *protos[] = {"chat", "superchat"};
    stws_handshake_desc d;
    check_all(data, size, NULL, ALL_PREFIXES);
    memset(&d, 0, sizeof d);
    d.subprotocols = protos;
    d.num_subprotocols = 2;
    check_all(data, size, &d, LINE_PREFIXES);
    memset(&d, 0, sizeof d);
    d.max_response_size = 128;
    check_all(data, size, &d, ALL_PREFIXES);
    return 0;
}
