/* loop_wslay: wslay (event API) in the events-over-loopback benchmark.

   loop_wslay PORT EVENTS

   wslay has no handshake or socket code: we connect and upgrade ourselves
   (loop_handshake), then switch the socket to non-blocking and hand it to
   wslay_event_context_client_init() through recv/send callbacks, pumped
   with poll().  wslay reassembles messages; on_msg_recv validates the
   text's UTF-8 (wslay does not), tokenizes it with jsmn (strict, parent
   links, as stream_ws.h uses it) and finds "type".  wslay answers the
   server's close frame by itself.

   Prints one LOOP line (see loop_common.h); exit 1 on a wrong count. */
#define _POSIX_C_SOURCE 200809L
#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>
#include "loop_common.h"
#include <poll.h>
#include <wslay/wslay.h>

typedef struct bench {
    int fd;
    uint8_t extra[4096]; /* frames that came with the 101 */
    size_t extra_len, extra_pos;
    unsigned long events, checksum;
    unsigned long long bytes;
    jsmntok_t *tok;
    unsigned tok_cap;
    int failed, close_code;
    uint32_t mask_state;
} bench;

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud) {
    bench *b = (bench *)ud;
    ssize_t r;
    (void)flags;
    if (b->extra_pos < b->extra_len) {
        size_t n = b->extra_len - b->extra_pos;
        if (n > len) n = len;
        memcpy(buf, b->extra + b->extra_pos, n);
        b->extra_pos += n;
        return (ssize_t)n;
    }
    do r = recv(b->fd, buf, len, 0);
    while (r < 0 && errno == EINTR);
    if (r > 0) return r;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    else wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE); /* EOF or error */
    return -1;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud) {
    bench *b = (bench *)ud;
    ssize_t r;
    (void)flags;
    do r = send(b->fd, data, len, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r >= 0) return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK) wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    else wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

/* Masks only go on our close frame; a benchmark needs no secrecy. */
static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud) {
    bench *b = (bench *)ud;
    size_t i;
    (void)ctx;
    for (i = 0; i < len; i++) {
        b->mask_state = b->mask_state * 1103515245u + 12345u;
        buf[i] = (uint8_t)(b->mask_state >> 24);
    }
    return 0;
}

static void on_msg_recv_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *ud) {
    bench *b = (bench *)ud;
    const char *type;
    size_t type_len;
    (void)ctx;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        b->close_code = arg->status_code;
        return;
    }
    if (arg->opcode != WSLAY_TEXT_FRAME) return;
    b->bytes += arg->msg_length;
    if (!loop_utf8_ok(arg->msg, arg->msg_length) ||
        !loop_event_type((const char *)arg->msg, arg->msg_length, &b->tok, &b->tok_cap, &type, &type_len)) {
        if (!b->failed) fprintf(stderr, "loop_wslay: bad event %lu\n", b->events);
        b->failed = 1;
        return;
    }
    b->checksum += type_len;
    b->events++;
}

int main(int argc, char **argv) {
    static bench b;
    struct wslay_event_callbacks cbs;
    wslay_event_context_ptr ctx;
    unsigned long expected, stream_events = 0;
    unsigned long long stream_bytes = 0;
    int port, rc;
    uint64_t t0;

    if (argc < 3) {
        fprintf(stderr, "usage: loop_wslay PORT EVENTS\n");
        return 2;
    }
    port = atoi(argv[1]);
    expected = strtoul(argv[2], NULL, 10);
    b.mask_state = (uint32_t)loop_clock_ns();
    t0 = loop_clock_ns();
    b.fd = loop_connect(port);
    if (b.fd < 0 ||
        loop_handshake(b.fd, port, b.extra, sizeof b.extra, &b.extra_len, &stream_bytes, &stream_events) != 0) {
        fprintf(stderr, "loop_wslay: connect/upgrade failed\n");
        return 1;
    }
    fcntl(b.fd, F_SETFL, fcntl(b.fd, F_GETFL) | O_NONBLOCK);

    memset(&cbs, 0, sizeof cbs);
    cbs.recv_callback = recv_cb;
    cbs.send_callback = send_cb;
    cbs.genmask_callback = genmask_cb;
    cbs.on_msg_recv_callback = on_msg_recv_cb;
    if (wslay_event_context_client_init(&ctx, &cbs, &b) != 0) return 1;

    for (;;) {
        struct pollfd pfd;
        int rd = wslay_event_want_read(ctx), wr = wslay_event_want_write(ctx);
        if (!rd && !wr) break; /* close sent and received */
        pfd.fd = b.fd;
        pfd.events = (short)((rd ? POLLIN : 0) | (wr ? POLLOUT : 0));
        pfd.revents = 0;
        /* frames that came with the 101 are not in the socket: read them first */
        if (b.extra_pos < b.extra_len) pfd.revents = POLLIN;
        else if (poll(&pfd, 1, 10000) <= 0) {
            fprintf(stderr, "loop_wslay: timeout\n");
            break;
        }
        if ((pfd.revents & (POLLIN | POLLHUP | POLLERR)) && wslay_event_recv(ctx) != 0) break;
        if ((pfd.revents & (POLLOUT | POLLHUP | POLLERR)) && wslay_event_send(ctx) != 0) break;
    }
    /* the server closes TCP once it has our close frame */
    {
        uint8_t tmp[256];
        fcntl(b.fd, F_SETFL, fcntl(b.fd, F_GETFL) & ~O_NONBLOCK);
        while (recv(b.fd, tmp, sizeof tmp, 0) > 0) {
        }
    }
    rc = loop_report("wslay", b.events, expected, b.bytes, loop_clock_ns() - t0);
    wslay_event_context_free(ctx);
    close(b.fd);
    free(b.tok);
    if (b.close_code != 1000) {
        fprintf(stderr, "loop_wslay: close code %d\n", b.close_code);
        rc = 1;
    }
    return rc || b.failed || (expected && b.checksum == 0);
}
