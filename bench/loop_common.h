/* bench/loop_common.h: helpers shared by the events-over-loopback clients
   (bench/loop_*.c) and bench/flood_server.c.  Header-only, all static
   inline, so each program takes only what it uses.

   - loop_clock_ns(), loop_report(): wall time and the process's own
     getrusage, printed as one "LOOP ..." line that bench/loopback.sh parses
   - loop_utf8_ok(): a whole-buffer UTF-8 validator (RFC 3629) for the peers
   - loop_connect(), loop_handshake(): blocking TCP connect to 127.0.0.1 and
     a hand-made RFC 6455 upgrade (for the wslay and floor clients)
   - loop_event_type(): jsmn tokenize + find the top-level "type" (only when
     jsmn.h was included before this header)

   The flood server adds two headers to its 101 answer, X-Bench-Events and
   X-Bench-Bytes (the stream's size, close frame excluded), so that the raw
   floor client knows when it has everything without parsing. */
#ifndef BENCH_LOOP_COMMON_H
#define BENCH_LOOP_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>
#include <mbedtls/version.h>

#define LOOP_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static inline uint64_t loop_clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One line on stdout for bench/loopback.sh; returns the exit status. */
static inline int loop_report(const char *client, unsigned long events, unsigned long expected,
                              unsigned long long bytes, uint64_t wall_ns) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("LOOP client=%s events=%lu expected=%lu bytes=%llu wall_ns=%llu user_us=%lld sys_us=%lld "
           "maxrss_kb=%ld\n",
           client, events, expected, bytes, (unsigned long long)wall_ns,
           (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
           (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec, ru.ru_maxrss);
    fflush(stdout);
    if (events != expected) {
        fprintf(stderr, "%s: got %lu events, expected %lu\n", client, events, expected);
        return 1;
    }
    return 0;
}

/* RFC 3629: 1 if s[0..n) is entirely valid UTF-8 (no overlongs, no
   surrogates, nothing above U+10FFFF).  ASCII goes 8 bytes per step. */
static inline int loop_utf8_ok(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], lo = 0x80, hi = 0xBF, more;
        if (c < 0x80) {
            uint64_t w;
            i++;
            while (n - i >= 8) {
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ull) break;
                i += 8;
            }
            continue;
        }
        if (c < 0xC2) return 0;
        if (c < 0xE0) more = 1;
        else if (c < 0xF0) {
            more = 2;
            if (c == 0xE0) lo = 0xA0;
            else if (c == 0xED) hi = 0x9F;
        } else if (c < 0xF5) {
            more = 3;
            if (c == 0xF0) lo = 0x90;
            else if (c == 0xF4) hi = 0x8F;
        } else {
            return 0;
        }
        if (n - i <= more) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        if (more > 1 && (s[i + 2] & 0xC0) != 0x80) return 0;
        if (more > 2 && (s[i + 3] & 0xC0) != 0x80) return 0;
        i += more + 1;
    }
    return 1;
}

static inline int loop_sha1(const unsigned char *in, size_t len, unsigned char out[20]) {
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    return mbedtls_sha1(in, len, out);
#else
    return mbedtls_sha1_ret(in, len, out);
#endif
}

/* Sec-WebSocket-Accept for key (RFC 6455 §4.2.2): 28 chars + NUL into out. */
static inline int loop_accept(const char *key, size_t key_len, char out[29]) {
    unsigned char buf[128], sha[20];
    size_t olen = 0;
    if (key_len + sizeof LOOP_WS_GUID > sizeof buf) return -1;
    memcpy(buf, key, key_len);
    memcpy(buf + key_len, LOOP_WS_GUID, sizeof LOOP_WS_GUID - 1);
    if (loop_sha1(buf, key_len + sizeof LOOP_WS_GUID - 1, sha) != 0) return -1;
    if (mbedtls_base64_encode((unsigned char *)out, 29, &olen, sha, 20) != 0 || olen != 28) return -1;
    return 0;
}

/* The value of header `name` in an HTTP head (case-insensitive name), or NULL. */
static inline const char *loop_header(const char *head, const char *name, size_t *len) {
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p && p[2] != '\r') {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *e;
            while (*v == ' ' || *v == '\t') v++;
            e = strstr(v, "\r\n");
            if (!e) return NULL;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
            *len = (size_t)(e - v);
            return v;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

static inline int loop_connect(int port) {
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Blocking upgrade on fd.  Bytes that came after the response head (the
   first frames) are left in extra[0..*extra_len).  *stream_bytes and
   *stream_events receive the server's X-Bench-Bytes and X-Bench-Events (0
   if absent).  0 on success. */
static inline int loop_handshake(int fd, int port, uint8_t *extra, size_t cap, size_t *extra_len,
                                 unsigned long long *stream_bytes, unsigned long *stream_events) {
    char req[512], head[4096], want[29], keyb64[32];
    unsigned char nonce[16];
    size_t have = 0, olen = 0, vlen = 0;
    const char *v, *end = NULL;
    int n, i;
    FILE *ur = fopen("/dev/urandom", "rb");
    if (!ur || fread(nonce, 1, sizeof nonce, ur) != sizeof nonce) {
        if (ur) fclose(ur);
        return -1;
    }
    fclose(ur);
    if (mbedtls_base64_encode((unsigned char *)keyb64, sizeof keyb64, &olen, nonce, sizeof nonce) != 0) return -1;
    if (loop_accept(keyb64, olen, want) != 0) return -1;
    n = snprintf(req, sizeof req,
                 "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 port, keyb64);
    for (i = 0; i < n;) {
        ssize_t w = send(fd, req + i, (size_t)(n - i), MSG_NOSIGNAL);
        if (w <= 0) return -1;
        i += (int)w;
    }
    while (!end) {
        ssize_t r;
        if (have + 1 >= sizeof head) return -1;
        r = recv(fd, head + have, sizeof head - 1 - have, 0);
        if (r <= 0) return -1;
        have += (size_t)r;
        head[have] = 0;
        end = strstr(head, "\r\n\r\n");
    }
    end += 4;
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) return -1;
    v = loop_header(head, "Sec-WebSocket-Accept", &vlen);
    if (!v || vlen != 28 || memcmp(v, want, 28) != 0) return -1;
    *stream_bytes = 0;
    v = loop_header(head, "X-Bench-Bytes", &vlen);
    if (v) *stream_bytes = strtoull(v, NULL, 10);
    *stream_events = 0;
    v = loop_header(head, "X-Bench-Events", &vlen);
    if (v) *stream_events = strtoul(v, NULL, 10);
    *extra_len = have - (size_t)(end - head);
    if (*extra_len > cap) return -1;
    memcpy(extra, end, *extra_len);
    return 0;
}

/* A masked close frame with code 1000 (the mask need not be secret here:
   it is the only frame a benchmark client sends). */
static inline size_t loop_close_frame(uint8_t out[8]) {
    static const uint8_t mask[4] = {0x3a, 0x51, 0xc7, 0x0e};
    out[0] = 0x88;
    out[1] = 0x80 | 2;
    memcpy(out + 2, mask, 4);
    out[6] = (uint8_t)((1000 >> 8) ^ mask[0]);
    out[7] = (uint8_t)((1000 & 0xFF) ^ mask[1]);
    return 8;
}

static inline int loop_send_all(int fd, const void *buf, size_t len) {
    const uint8_t *p = (const uint8_t *)buf;
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

#ifdef JSMN_H
/* Tokenize js[0..len) with jsmn into *tok (grown by doubling from 64 while
   jsmn runs out) and point *type at the top-level "type" string.  1 on
   success.  Expects jsmn built with JSMN_PARENT_LINKS. */
static inline int loop_event_type(const char *js, size_t len, jsmntok_t **tok, unsigned *cap,
                                  const char **type, size_t *type_len) {
    int n, i;
    for (;;) {
        jsmn_parser p;
        if (*cap == 0) {
            *tok = (jsmntok_t *)malloc(64 * sizeof **tok);
            if (!*tok) return 0;
            *cap = 64;
        }
        jsmn_init(&p);
        n = jsmn_parse(&p, js, len, *tok, *cap);
        if (n != JSMN_ERROR_NOMEM) break;
        {
            jsmntok_t *t = (jsmntok_t *)realloc(*tok, 2 * *cap * sizeof **tok);
            if (!t) return 0;
            *tok = t;
            *cap *= 2;
        }
    }
    if (n < 1 || (*tok)[0].type != JSMN_OBJECT) return 0;
    for (i = 1; i + 1 < n; i++) {
        const jsmntok_t *k = &(*tok)[i];
        if (k->parent == 0 && k->type == JSMN_STRING && k->end - k->start == 4 &&
            memcmp(js + k->start, "type", 4) == 0) {
            const jsmntok_t *v = &(*tok)[i + 1];
            if (v->type != JSMN_STRING) return 0;
            *type = js + v->start;
            *type_len = (size_t)(v->end - v->start);
            return 1;
        }
    }
    return 0;
}
#endif

#endif
