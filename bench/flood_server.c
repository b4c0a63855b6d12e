/* flood_server: the server side of the events-over-loopback benchmark.

   flood_server [EVENTS [BIG [CONNECTIONS]]]
       EVENTS       events per connection (default 200000)
       BIG          1: with the 64 KiB / 1 MiB events of bench/workload.h
                    (default), 0: only the 200-2000 B ones
       CONNECTIONS  connections to serve one after another, then exit
                    (default 1; 0 = until killed)

   Listens on 127.0.0.1 on a port the OS picks and prints it (one line on
   stdout).  For each connection: reads the HTTP upgrade request, answers 101
   with the Sec-WebSocket-Accept of RFC 6455 §4.2.2 (plus X-Bench-Events and
   X-Bench-Bytes, which only the raw floor client reads), writes the whole
   pre-built stream of unmasked text frames (bw_stream) and a close frame
   1000 with as few blocking writes as the kernel allows, then waits for the
   client's close frame (or EOF, 30 s at most) and closes the socket.

   Cheap on purpose: the stream is built once before listening, and sending
   is a few big blocking send()s, so on 2 cores the server's CPU is mostly
   the kernel's copy and does not distort the client's numbers.  Its own
   getrusage goes to stderr at exit. */
#define _POSIX_C_SOURCE 200809L
#include "loop_common.h"
#include "workload.h"
#include <poll.h>
#include <signal.h>

static int read_request(int fd, char *buf, size_t cap) {
    size_t have = 0;
    for (;;) {
        ssize_t r;
        if (have + 1 >= cap) return -1;
        r = recv(fd, buf + have, cap - 1 - have, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        have += (size_t)r;
        buf[have] = 0;
        if (strstr(buf, "\r\n\r\n")) return 0; /* a client sends nothing before our 101 */
    }
}

/* After our close frame: read the client's frames (masked) until its close
   frame, EOF or 30 s.  1 if a close frame came. */
static int await_close(int fd) {
    uint8_t buf[65536];
    size_t have = 0;
    uint64_t deadline = loop_clock_ns() + 30000000000ull;
    for (;;) {
        struct pollfd pfd;
        ssize_t r;
        size_t pos = 0;
        uint64_t now = loop_clock_ns();
        if (now >= deadline) return 0;
        pfd.fd = fd;
        pfd.events = POLLIN;
        if (poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1) <= 0) continue;
        r = recv(fd, buf + have, sizeof buf - have, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 0;
        have += (size_t)r;
        for (;;) { /* whole frames only */
            size_t h, l7;
            uint64_t len;
            if (have - pos < 2) break;
            l7 = buf[pos + 1] & 0x7F;
            h = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((buf[pos + 1] & 0x80) ? 4 : 0);
            if (have - pos < h) break;
            len = l7;
            if (l7 == 126) len = (uint64_t)buf[pos + 2] << 8 | buf[pos + 3];
            if (l7 == 127) {
                int k;
                for (len = 0, k = 0; k < 8; k++) len = len << 8 | buf[pos + 2 + k];
            }
            if ((buf[pos] & 0x0F) == 8) return 1;
            if (len > sizeof buf) return 0; /* clients send no such thing here */
            if (have - pos < h + len) break;
            pos += h + (size_t)len;
        }
        memmove(buf, buf + pos, have - pos);
        have -= pos;
    }
}

static int serve(int fd, const uint8_t *stream, size_t len, size_t stream_bytes, unsigned long events) {
    char req[8192], resp[512], accept[29];
    const char *key;
    size_t key_len = 0;
    int n;
    if (read_request(fd, req, sizeof req) != 0) return -1;
    key = loop_header(req, "Sec-WebSocket-Key", &key_len);
    if (!key || loop_accept(key, key_len, accept) != 0) {
        static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        (void)loop_send_all(fd, bad, sizeof bad - 1);
        return -1;
    }
    n = snprintf(resp, sizeof resp,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\nX-Bench-Events: %lu\r\nX-Bench-Bytes: %lu\r\n\r\n",
                 accept, events, (unsigned long)stream_bytes);
    if (loop_send_all(fd, resp, (size_t)n) != 0) return -1;
    if (loop_send_all(fd, stream, len) != 0) return -1; /* events + close 1000 */
    return await_close(fd) ? 0 : -1;
}

int main(int argc, char **argv) {
    unsigned long events = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    int big = argc > 2 ? atoi(argv[2]) : 1;
    long conns = argc > 3 ? atol(argv[3]) : 1, served = 0;
    bw_rng rng = BW_SEED;
    size_t len = 0, stream_bytes;
    uint8_t *stream;
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    struct rusage ru;
    int lfd, one = 1, failures = 0;

    signal(SIGPIPE, SIG_IGN);
    stream = bw_stream(&rng, events, big, &len);
    if (!stream) {
        fprintf(stderr, "flood_server: no memory for the stream\n");
        return 1;
    }
    stream_bytes = len;
    {
        uint8_t *s = (uint8_t *)realloc(stream, len + 4);
        if (!s) return 1;
        stream = s;
        stream[len++] = 0x88; /* close 1000, unmasked */
        stream[len++] = 2;
        stream[len++] = 1000 >> 8;
        stream[len++] = 1000 & 0xFF;
    }

    lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) return 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0; /* the OS picks */
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 4) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) != 0) {
        perror("flood_server: listen");
        return 1;
    }
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);

    while (conns == 0 || served < conns) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR) continue;
            perror("flood_server: accept");
            failures++;
            break;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (serve(fd, stream, len, stream_bytes, events) != 0) {
            fprintf(stderr, "flood_server: connection %ld did not finish cleanly\n", served + 1);
            failures++;
        }
        close(fd);
        served++;
    }
    close(lfd);
    free(stream);
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "flood_server: %ld connection(s), %lu events, %lu bytes each, user %.3f s sys %.3f s\n", served,
            events, (unsigned long)stream_bytes, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
            ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    return failures ? 1 : 0;
}
