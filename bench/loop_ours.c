/* loop_ours: stream_ws.h's client in the events-over-loopback benchmark.

   loop_ours PORT EVENTS [RECV_BUFFER [lookup]]

   The Stream-independent connection (stws_conn, built-in TCP) pumped with
   stws_conn_poll() on its socket; every text message goes through the same
   path stws_client uses for a server event: stws__json_event_parse(), one
   tokenless pass that checks the whole RFC 8259 grammar and the limits and
   finds "type" (no tokens: look-ups walk the text).  The codec has
   already validated the text's UTF-8 as it arrived (RFC 6455 §8.1), as every
   conforming client must.  RECV_BUFFER sets the desc's recv_buffer_size (0 =
   the library default, 16 KiB).  "lookup" also reads "user.id" of every
   event (unescaped), a walk of the checked text to the value: an app that
   reads a field of every event pays this.

   Prints one LOOP line (see loop_common.h); exit 1 if the event count is
   not EVENTS or the connection did not close cleanly with 1000. */
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"
#include "loop_common.h"

int main(int argc, char **argv) {
    char url[64];
    unsigned long expected, events = 0, checksum = 0;
    unsigned long long bytes = 0;
    stws_conn_desc d;
    stws_conn *c;
    stws_json_tokens lazy; /* unused by the lazy path (eager = 0) */
    int done = 0, ok = 0, rc, lookup;
    uint64_t t0;

    if (argc < 3) {
        fprintf(stderr, "usage: loop_ours PORT EVENTS [RECV_BUFFER]\n");
        return 2;
    }
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", atoi(argv[1]));
    expected = strtoul(argv[2], NULL, 10);
    memset(&d, 0, sizeof d);
    d.url = url;
    d.recv_buffer_size = argc > 3 ? (size_t)strtoul(argv[3], NULL, 10) : 0;
    lookup = argc > 4 && strcmp(argv[4], "lookup") == 0;
    memset(&lazy, 0, sizeof lazy);
    t0 = loop_clock_ns();
    c = stws_conn_create(&d);
    if (!c || stws_conn_connect(c) != STWS_OK) {
        fprintf(stderr, "loop_ours: connect failed\n");
        return 1;
    }
    while (!done) {
        stws_conn_event ev;
        stws_result r = stws_conn_poll(c, 10000);
        if (r != STWS_OK && r != STWS_INCOMPLETE && stws_conn_get_state(c) != STWS_CONN_CLOSED) {
            fprintf(stderr, "loop_ours: %s (%s)\n", stws_result_string(r), stws_conn_error_detail(c));
        }
        while (stws_conn_next_event(c, &ev)) {
            if (ev.type == STWS_CONN_EVENT_MESSAGE) {
                stws_json_doc doc;
                stws_str type;
                if (ev.opcode != STWS_OP_TEXT) continue;
                bytes += ev.len;
                r = stws__json_event_parse((const char *)ev.data, ev.len, 1, &lazy, 0, 65536, &doc, &type);
                if (r == STWS_OK && lookup) {
                    char id[64];
                    size_t n = 0;
                    r = stws_json_string_at(&doc, "user.id", id, sizeof id, &n);
                    checksum += n;
                }
                if (r != STWS_OK) {
                    fprintf(stderr, "loop_ours: event %lu: %s\n", events, stws_result_string(r));
                    done = 1;
                    break;
                }
                checksum += type.len;
                events++;
            } else if (ev.type == STWS_CONN_EVENT_CLOSE) {
                ok = ev.clean && ev.close_code == 1000;
                if (!ok) fprintf(stderr, "loop_ours: close %d clean %d\n", ev.close_code, ev.clean);
                done = 1;
            } else if (ev.type == STWS_CONN_EVENT_ERROR) {
                fprintf(stderr, "loop_ours: %s (%s)\n", stws_result_string(ev.error), stws_conn_error_detail(c));
            }
        }
        if (stws_conn_get_state(c) == STWS_CONN_CLOSED && !done) {
            fprintf(stderr, "loop_ours: closed without a CLOSE event\n");
            done = 1;
        }
    }
    rc = loop_report("ours", events, expected, bytes, loop_clock_ns() - t0);
    if (checksum == 0 && expected) rc = 1;
    stws_conn_destroy(c);
    return rc || !ok;
}
