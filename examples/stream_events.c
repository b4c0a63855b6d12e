/* stream_events.c — the smallest useful program: print Stream events.

   STREAM_API_KEY=key STREAM_API_SECRET=secret STREAM_USER_ID=alice \
   STREAM_WS_URL=ws://127.0.0.1:PORT/api/v2/connect build/examples/stream_events [N]

   Prints the first N server events (default 10) as JSON lines, then closes. */
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    stws_client_desc d = {0};
    stws_client *client;
    int want = argc > 1 ? atoi(argv[1]) : 10, got = 0, status = 1;
    d.url = getenv("STREAM_WS_URL"); /* NULL: wss://chat.stream-io-api.com/... */
    d.api_key = getenv("STREAM_API_KEY");
    d.api_secret = getenv("STREAM_API_SECRET"); /* or d.token = a JWT from your backend */
    d.user_id = getenv("STREAM_USER_ID");
    client = stws_client_create(&d);
    if (!client || stws_client_connect(client) != STWS_OK) return 2;
    for (;;) {
        stws_client_event ev;
        stws_client_poll(client, 1000); /* waits for the socket or the next timer */
        while (stws_client_next_event(client, &ev)) {
            if (ev.type == STWS_CLIENT_EVENT_SERVER) {
                printf("%.*s\n", (int)ev.json.len, ev.json.ptr);
                if (++got == want) stws_client_close(client);
            } else if (ev.type == STWS_CLIENT_EVENT_FATAL) {
                fprintf(stderr, "fatal: %.*s\n", (int)ev.message.len, ev.message.ptr);
                goto out;
            } else if (ev.type == STWS_CLIENT_EVENT_CLOSED) {
                status = 0;
                goto out;
            }
        }
    }
out:
    stws_client_destroy(client);
    return status;
}
