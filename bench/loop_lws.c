/* loop_lws: libwebsockets (4.1) in the events-over-loopback benchmark.

   loop_lws PORT EVENTS

   A minimal lws client: a context without listener, one protocol,
   lws_client_connect_via_info() to ws://127.0.0.1:PORT/, lws_service()
   until LWS_CALLBACK_CLIENT_CLOSED.  Defaults everywhere (rx buffer, service
   buffer, fd limit), logging off.  LWS_CALLBACK_CLIENT_RECEIVE hands over
   pieces of frames: a message that arrives whole in one piece is used in
   place, otherwise the pieces are gathered until lws_is_final_fragment()
   and lws_remaining_packet_payload() say the message is complete.  Each
   message is then UTF-8 validated, tokenized with jsmn (strict, parent
   links) and its "type" read.  lws answers the server's close frame itself.

   Prints one LOOP line (see loop_common.h); exit 1 on a wrong count. */
#define _POSIX_C_SOURCE 200809L
#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>
#include "loop_common.h"
#include <libwebsockets.h>

typedef struct bench {
    uint8_t *msg;
    size_t len, cap;
    unsigned long events, checksum;
    unsigned long long bytes;
    jsmntok_t *tok;
    unsigned tok_cap;
    int failed, done, peer_close, connected;
} bench;

static bench b;

static void handle_message(const uint8_t *m, size_t len) {
    const char *type;
    size_t type_len;
    b.bytes += len;
    if (!loop_utf8_ok(m, len) || !loop_event_type((const char *)m, len, &b.tok, &b.tok_cap, &type, &type_len)) {
        if (!b.failed) fprintf(stderr, "loop_lws: bad event %lu\n", b.events);
        b.failed = 1;
        return;
    }
    b.checksum += type_len;
    b.events++;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        b.connected = 1;
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        int last = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
        if (lws_frame_is_binary(wsi)) break;
        if (last && b.len == 0) { /* whole message in one piece: no copy */
            handle_message((const uint8_t *)in, len);
            break;
        }
        if (b.len + len > b.cap) {
            size_t cap = b.cap ? b.cap : 65536;
            uint8_t *m;
            while (cap < b.len + len) cap *= 2;
            m = (uint8_t *)realloc(b.msg, cap);
            if (!m) return -1;
            b.msg = m;
            b.cap = cap;
        }
        memcpy(b.msg + b.len, in, len);
        b.len += len;
        if (last) {
            handle_message(b.msg, b.len);
            b.len = 0;
        }
        break;
    }
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2) b.peer_close = ((const uint8_t *)in)[0] << 8 | ((const uint8_t *)in)[1];
        break; /* 0: lws echoes the close */
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        fprintf(stderr, "loop_lws: connection error: %s\n", in ? (const char *)in : "?");
        b.failed = 1;
        b.done = 1;
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        b.done = 1;
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"bench", callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

int main(int argc, char **argv) {
    struct lws_context_creation_info info;
    struct lws_client_connect_info ci;
    struct lws_context *ctx;
    unsigned long expected;
    int port, rc;
    uint64_t t0;

    if (argc < 3) {
        fprintf(stderr, "usage: loop_lws PORT EVENTS\n");
        return 2;
    }
    port = atoi(argv[1]);
    expected = strtoul(argv[2], NULL, 10);
    lws_set_log_level(0, NULL);
    t0 = loop_clock_ns();
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.gid = -1;
    info.uid = -1;
    ctx = lws_create_context(&info);
    if (!ctx) {
        fprintf(stderr, "loop_lws: no context\n");
        return 1;
    }
    memset(&ci, 0, sizeof ci);
    ci.context = ctx;
    ci.address = "127.0.0.1";
    ci.port = port;
    ci.path = "/";
    ci.host = "127.0.0.1";
    ci.origin = "127.0.0.1";
    ci.local_protocol_name = "bench";
    if (!lws_client_connect_via_info(&ci)) {
        fprintf(stderr, "loop_lws: connect failed\n");
        lws_context_destroy(ctx);
        return 1;
    }
    while (!b.done)
        if (lws_service(ctx, 0) < 0) break;
    rc = loop_report("lws", b.events, expected, b.bytes, loop_clock_ns() - t0);
    lws_context_destroy(ctx);
    free(b.msg);
    free(b.tok);
    if (b.peer_close != 1000) {
        fprintf(stderr, "loop_lws: close code %d\n", b.peer_close);
        rc = 1;
    }
    return rc || b.failed || (expected && b.checksum == 0);
}
