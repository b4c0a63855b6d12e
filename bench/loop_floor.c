/* loop_floor: the two floors of the events-over-loopback benchmark.

   loop_floor raw  PORT EVENTS
   loop_floor plus PORT EVENTS

   raw:  only recv()s the stream into a 256 KiB buffer until it has the
         X-Bench-Bytes the server announced plus its close frame, answers the
         close and waits for EOF.  The cost of moving the bytes, nothing else.
         Its event count is the server's X-Bench-Events once every announced
         byte has come.
   plus: the reference floor: recv() into a 256 KiB buffer (grown to
         hold a frame bigger than that), walk the frame headers in place,
         validate each text message's UTF-8, tokenize it with jsmn (strict,
         parent links) and read "type".  No protocol checks beyond that, no
         fragmentation support, no copy except moving a partial frame to the
         front of the buffer.

   Blocking socket, no poll: nothing can be cheaper per byte.  Prints one
   LOOP line (see loop_common.h); exit 1 on a wrong count. */
#define _POSIX_C_SOURCE 200809L
#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>
#include "loop_common.h"

#define RECV_SIZE (256u * 1024u)

static int finish_close(int fd) {
    uint8_t cf[8], tmp[256];
    ssize_t r;
    if (loop_send_all(fd, cf, loop_close_frame(cf)) != 0) return -1;
    while ((r = recv(fd, tmp, sizeof tmp, 0)) > 0) {
    }
    return r == 0 ? 0 : -1;
}

static int run_raw(int fd, size_t have, unsigned long long stream_bytes, unsigned long long *got) {
    uint8_t *buf = (uint8_t *)malloc(RECV_SIZE);
    unsigned long long total = have, want = stream_bytes + 4; /* + close frame */
    if (!buf) return -1;
    while (total < want) {
        ssize_t r = recv(fd, buf, RECV_SIZE, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        total += (unsigned long long)r;
    }
    free(buf);
    *got = total;
    if (total != want) return -1;
    return finish_close(fd);
}

static int run_plus(int fd, uint8_t *buf, size_t cap, size_t have, unsigned long *events,
                    unsigned long long *bytes, unsigned long *checksum) {
    jsmntok_t *tok = NULL;
    unsigned tok_cap = 0;
    size_t pos = 0;
    int closed = 0, rc = 0;
    while (!closed) {
        ssize_t r;
        /* every whole frame in buf[pos..have) */
        for (;;) {
            size_t avail = have - pos, h;
            uint64_t len;
            uint8_t b0, l7;
            const char *type;
            size_t type_len;
            if (avail < 2) break;
            b0 = buf[pos];
            l7 = buf[pos + 1] & 0x7F;
            h = l7 < 126 ? 2 : l7 == 126 ? 4 : 10;
            if (avail < h) break;
            if (l7 < 126) len = l7;
            else if (l7 == 126) len = (uint64_t)buf[pos + 2] << 8 | buf[pos + 3];
            else {
                int k;
                for (len = 0, k = 0; k < 8; k++) len = len << 8 | buf[pos + 2 + k];
            }
            if (len > (uint64_t)1 << 30) return -1;
            if (avail < h + len) {
                if (h + len > cap) { /* grow so the frame fits */
                    uint8_t *nb;
                    memmove(buf, buf + pos, avail);
                    have = avail;
                    pos = 0;
                    cap = h + (size_t)len;
                    nb = (uint8_t *)realloc(buf, cap);
                    if (!nb) return -1;
                    buf = nb;
                }
                break;
            }
            if ((b0 & 0x0F) == 1) {
                const uint8_t *m = buf + pos + h;
                if (!loop_utf8_ok(m, (size_t)len) ||
                    !loop_event_type((const char *)m, (size_t)len, &tok, &tok_cap, &type, &type_len)) {
                    fprintf(stderr, "loop_floor: bad event %lu\n", *events);
                    rc = -1;
                } else {
                    *checksum += type_len;
                    ++*events;
                }
                *bytes += len;
            } else if ((b0 & 0x0F) == 8) {
                closed = 1;
                break;
            }
            pos += h + (size_t)len;
        }
        if (closed) break;
        if (pos == have) pos = have = 0;
        else if (have == cap) { /* partial frame at the end: to the front */
            memmove(buf, buf + pos, have - pos);
            have -= pos;
            pos = 0;
        }
        do r = recv(fd, buf + have, cap - have, 0);
        while (r < 0 && errno == EINTR);
        if (r <= 0) {
            rc = -1;
            break;
        }
        have += (size_t)r;
    }
    free(tok);
    free(buf);
    if (rc == 0 && finish_close(fd) != 0) rc = -1;
    return rc;
}

int main(int argc, char **argv) {
    unsigned long expected, events = 0, checksum = 0, stream_events = 0;
    unsigned long long bytes = 0, stream_bytes = 0;
    uint8_t *buf;
    size_t have = 0;
    int port, fd, plus, rc;
    uint64_t t0;

    if (argc < 4 || (strcmp(argv[1], "raw") != 0 && strcmp(argv[1], "plus") != 0)) {
        fprintf(stderr, "usage: loop_floor raw|plus PORT EVENTS\n");
        return 2;
    }
    plus = argv[1][0] == 'p';
    port = atoi(argv[2]);
    expected = strtoul(argv[3], NULL, 10);
    buf = (uint8_t *)malloc(RECV_SIZE);
    if (!buf) return 1;
    t0 = loop_clock_ns();
    fd = loop_connect(port);
    if (fd < 0 || loop_handshake(fd, port, buf, RECV_SIZE, &have, &stream_bytes, &stream_events) != 0) {
        fprintf(stderr, "loop_floor: connect/upgrade failed\n");
        return 1;
    }
    if (plus) {
        rc = run_plus(fd, buf, RECV_SIZE, have, &events, &bytes, &checksum);
    } else {
        free(buf);
        rc = run_raw(fd, have, stream_bytes, &bytes);
        events = rc == 0 ? stream_events : 0; /* all bytes of the announced stream came */
        checksum = 1;
    }
    close(fd);
    if (rc != 0) fprintf(stderr, "loop_floor: %s: stream incomplete or bad\n", argv[1]);
    rc = loop_report(plus ? "floor+" : "floor", events, expected, bytes, loop_clock_ns() - t0) || rc;
    return rc || (expected && checksum == 0);
}
