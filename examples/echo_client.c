/* echo_client.c — a portable WebSocket client: send messages, check the echoes.

   build/examples/echo_client URL [CA_FILE]

   Connects to URL (ws:// or wss://; CA_FILE: the PEM bundle to verify the
   server with, default the system one), sends six messages one at a time
   (empty text, 125 and 126 bytes of text, 70000 bytes of text, 1 MiB of binary,
   "bye"), checks that each comes back byte for byte with its type, then closes
   with 1000 and waits for the server's close.  Prints one line per message and
   exits 0 after a clean closing handshake, 1 with a reason on stderr otherwise.
   Only stdio and the library's built-in stack: the same file builds on Linux
   and on Windows (make test-windows runs it under wine). */
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NMSG 6
static const size_t sizes[NMSG] = {0, 125, 126, 70000, 1u << 20, 3};

/* Message k's bytes (tests/integration/windows_echo.py makes the same). */
static void fill(unsigned char *p, int k, size_t n) {
    size_t i;
    if (k == NMSG - 1) {
        memcpy(p, "bye", 3);
        return;
    }
    for (i = 0; i < n; i++)
        p[i] = k == 4 ? (unsigned char)((i * 31 + (size_t)k) & 0xFF) : (unsigned char)('a' + (i + (size_t)k) % 26);
}

static int fail(stws_conn *c, const char *what, stws_result r) {
    fprintf(stderr, "echo_client: %s: %s%s%s\n", what, stws_result_string(r), c && *stws_conn_error_detail(c) ? ": " : "",
            c ? stws_conn_error_detail(c) : "");
    stws_conn_destroy(c);
    return 1;
}

int main(int argc, char **argv) {
    stws_conn_desc d;
    stws_conn *c;
    unsigned char *want;
    int k = 0, closing = 0;
    time_t deadline = time(NULL) + 60;
    if (argc < 2) {
        fprintf(stderr, "usage: echo_client URL [CA_FILE]\n");
        return 2;
    }
    memset(&d, 0, sizeof d);
    d.url = argv[1];
    d.ca_file = argc > 2 ? argv[2] : NULL;
    d.connect_timeout_ms = 30000; /* a loaded machine under wine is slow */
    if (!(want = (unsigned char *)malloc(sizes[4]))) return 1;
    if (!(c = stws_conn_create(&d))) return fail(NULL, "create", STWS_ERR_INVALID_ARG);
    if (stws_conn_connect(c) != STWS_OK) return fail(c, "connect", STWS_ERR_STATE);
    while (time(NULL) < deadline) {
        stws_conn_event ev;
        stws_result r = stws_conn_poll(c, 1000); /* a failure also arrives as an ERROR event */
        while (stws_conn_next_event(c, &ev)) {
            switch (ev.type) {
            case STWS_CONN_EVENT_OPEN:
                printf("open\n");
                fill(want, k, sizes[k]);
                if ((r = stws_conn_send(c, STWS_OP_TEXT, want, sizes[k])) != STWS_OK) return fail(c, "send", r);
                break;
            case STWS_CONN_EVENT_MESSAGE: {
                stws_opcode op = k == 4 ? STWS_OP_BINARY : STWS_OP_TEXT;
                if (closing || ev.opcode != op || ev.len != sizes[k] || (ev.len && memcmp(ev.data, want, ev.len) != 0)) {
                    fprintf(stderr, "echo_client: message %d came back wrong (opcode %d, %lu bytes)\n", k,
                            (int)ev.opcode, (unsigned long)ev.len);
                    stws_conn_destroy(c);
                    return 1;
                }
                printf("echo %d: %lu bytes ok\n", k, (unsigned long)ev.len);
                if (++k == NMSG) {
                    closing = 1;
                    (void)stws_conn_close(c, STWS_CLOSE_NORMAL, "done");
                } else {
                    fill(want, k, sizes[k]);
                    r = stws_conn_send(c, k == 4 ? STWS_OP_BINARY : STWS_OP_TEXT, want, sizes[k]);
                    if (r != STWS_OK) return fail(c, "send", r);
                }
                break;
            }
            case STWS_CONN_EVENT_CLOSE:
                if (!closing || !ev.clean || ev.close_code != STWS_CLOSE_NORMAL) {
                    fprintf(stderr, "echo_client: closed early or uncleanly (code %d, clean %d)\n", ev.close_code,
                            ev.clean);
                    stws_conn_destroy(c);
                    return 1;
                }
                printf("closed %d\n", ev.close_code);
                stws_conn_destroy(c);
                free(want);
                return 0;
            case STWS_CONN_EVENT_ERROR: return fail(c, "error", ev.error);
            default: break;
            }
        }
    }
    return fail(c, "no clean close within 60 s", STWS_ERR_TIMEOUT);
}
