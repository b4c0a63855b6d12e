/* bench/workload.h: the benchmark workload, shared by every benchmark so
   that all peers see identical bytes.

   Realistic Stream events (PROTOCOL.md §8 shapes: message.new, reaction.new,
   typing.start, health.check, user.watching.start, ...) of 200-2000 bytes of
   JSON text, about 12% of them carrying non-ASCII text (Latin-1 range, CJK,
   emoji), plus one 64 KiB text message every 5,000 events and one 1 MiB
   message every 100,000.  Deterministic: a seed gives the same stream.

   bw_rng r = BW_SEED;
   size_t n = bw_event(&r, buf, cap);          // one event of 200-2000 B
   size_t n = bw_sized_event(&r, buf, cap, N); // one event of exactly N B
   size_t h = bw_server_header(hdr, n, 1);     // unmasked server frame header
   uint8_t *s = bw_stream(&r, count, big, &len); // whole server->client stream
*/
#ifndef BENCH_WORKLOAD_H
#define BENCH_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t bw_rng;
#define BW_SEED 0x5EED5EEDULL
#define BW_BIG_EVERY 5000      /* a 64 KiB event every this many */
#define BW_HUGE_EVERY 100000   /* a 1 MiB event every this many */

static uint32_t bw_next(bw_rng *r) { /* xorshift64* */
    *r ^= *r >> 12;
    *r ^= *r << 25;
    *r ^= *r >> 27;
    return (uint32_t)((*r * 0x2545F4914F6CDD1DULL) >> 32);
}

static const char *const bw_words[] = {
    "hello", "world", "stream", "chat", "video", "feed", "the", "quick", "brown", "fox",
    "jumps", "over", "lazy", "dog", "lorem", "ipsum", "dolor", "sit", "amet", "game",
    "match", "ready", "lobby", "level", "score", "player", "team", "win", "lose", "gg"};
static const char *const bw_intl[] = {
    "caf\xC3\xA9", "na\xC3\xAFve", "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "\xF0\x9F\x8E\xAE",
    "\xF0\x9F\x98\x80", "\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82", "\xC3\xBC\x62\x65r",
    "\xE4\xBD\xA0\xE5\xA5\xBD"};
static const char *const bw_types[] = {
    "message.new", "message.new", "message.new", "reaction.new", "typing.start", "typing.stop",
    "health.check", "message.updated", "user.watching.start", "message.read"};

/* Append text of exactly want bytes (pads with ASCII words). */
static size_t bw_text(bw_rng *r, char *out, size_t want, int intl) {
    size_t n = 0;
    while (n < want) {
        const char *w = (intl && bw_next(r) % 4 == 0) ? bw_intl[bw_next(r) % 8] : bw_words[bw_next(r) % 30];
        size_t k = strlen(w);
        if (n && n < want) out[n++] = ' ';
        if (n + k > want) { /* fill the rest with ASCII */
            while (n < want) out[n++] = 'x';
            break;
        }
        memcpy(out + n, w, k);
        n += k;
    }
    return n;
}

/* One event of exactly `size` bytes (size >= 200), NUL not included. */
static size_t bw_sized_event(bw_rng *r, char *out, size_t cap, size_t size) {
    char head[640];
    const char *type = bw_types[bw_next(r) % 10];
    int intl = bw_next(r) % 100 < 12;
    unsigned id = bw_next(r);
    size_t h, tail = 2; /* "}}" */
    h = (size_t)snprintf(head, sizeof head,
                         "{\"type\":\"%s\",\"cid\":\"messaging:general\",\"channel_type\":\"messaging\","
                         "\"channel_id\":\"general\",\"created_at\":\"2026-12-02T04:35:58.%06uZ\","
                         "\"user\":{\"id\":\"user-%u\",\"name\":\"Player %u\",\"online\":true},"
                         "\"message\":{\"id\":\"m-%08x\",\"type\":\"regular\",\"text\":\"",
                         type, id % 1000000u, id % 977u, id % 977u, id);
    if (size < h + tail + 1 || size + 1 > cap) return 0;
    memcpy(out, head, h);
    bw_text(r, out + h, size - h - tail - 1, intl);
    memcpy(out + size - tail - 1, "\"}}", 3);
    return size;
}

/* One event of 200-2000 bytes (skewed small, like real chat traffic). */
static size_t bw_event(bw_rng *r, char *out, size_t cap) {
    uint32_t u = bw_next(r) % 100;
    size_t size = u < 70 ? 376 + bw_next(r) % 400 : 776 + bw_next(r) % 1225;
    return bw_sized_event(r, out, cap, size);
}

/* RFC 6455 §5.2 server frame header (FIN, no mask); returns its length. */
static size_t bw_server_header(uint8_t *h, uint64_t len, int opcode) {
    h[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        h[1] = (uint8_t)len;
        return 2;
    }
    if (len < 65536) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

/* The size of event i of the standard mix: 0 = a normal event. */
static size_t bw_big_size(size_t i, int big) {
    if (!big || i == 0) return 0;
    if (i % BW_HUGE_EVERY == 0) return (size_t)1 << 20;
    if (i % BW_BIG_EVERY == 0) return (size_t)64 << 10;
    return 0;
}

/* A whole server->client stream of `count` text frames (with the 64 KiB and
   1 MiB ones when big != 0).  malloc'd; *len receives its size. */
static uint8_t *bw_stream(bw_rng *r, size_t count, int big, size_t *len) {
    size_t cap = count * 2100 + (big ? (count / BW_BIG_EVERY + 1) * (70u << 10) +
                                           (count / BW_HUGE_EVERY + 1) * ((1u << 20) + 16) : 0);
    uint8_t *s = (uint8_t *)malloc(cap), *ev = (uint8_t *)malloc((1u << 20) + 1);
    size_t off = 0;
    if (!s || !ev) {
        free(s);
        free(ev);
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        size_t want = bw_big_size(i, big);
        size_t n = want ? bw_sized_event(r, (char *)ev, (1u << 20) + 1, want) : bw_event(r, (char *)ev, 2100);
        off += bw_server_header(s + off, n, 1);
        memcpy(s + off, ev, n);
        off += n;
    }
    free(ev);
    *len = off;
    return s;
}

#endif
