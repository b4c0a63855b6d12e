/* stream_events.c — the smallest useful program: print Stream events.

   STREAM_API_KEY=key STREAM_API_SECRET=secret STREAM_USER_ID=alice \
   STREAM_WS_URL=ws://127.0.0.1:PORT/api/v2/connect build/examples/stream_events [N]

   Prints the first N server events (default 10) as JSON lines on stdout,
   then closes.  On stderr it walks what it finds with the reader's cursors:
   every attachment of a message.new, every member of a channel event and
   the reaction counts (an object whose keys are data). */
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"
#include <stdio.h>
#include <stdlib.h>

/* Every element of the array (or member of the object) at path, O(n). */
static void walk(const stws_json_doc *doc, const char *path, const char *what, const char *field) {
    stws_json_value list, key, item, v;
    stws_json_iter it;
    int i = 0;
    if (stws_json_get(doc, path, &list) == STWS_JSON_NONE || stws_json_iter_init(&it, &list) != STWS_OK)
        return;
    fprintf(stderr, "  %s: %u\n", what, (unsigned)stws_json_len(&list));
    while (stws_json_next(&it, &key, &item)) {
        char buf[256];
        size_t n;
        int64_t count;
        if (key.type == STWS_JSON_STRING && stws_json_value_int(&item, &count) == STWS_OK) {
            /* a dynamic key: the raw view, still escaped */
            fprintf(stderr, "    %.*s = %lld\n", (int)key.raw.len, key.raw.ptr, (long long)count);
        } else if (stws_json_get_in(&item, field, &v) == STWS_JSON_STRING &&
                   stws_json_value_string(&v, buf, sizeof buf, &n) == STWS_OK) {
            fprintf(stderr, "    [%d] %s\n", i, buf); /* relative to the element: no re-walk */
        }
        i++;
    }
}

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
                walk(&ev.doc, "message.attachments", "attachments", "type");
                walk(&ev.doc, "message.reaction_counts", "reaction counts", "");
                walk(&ev.doc, "members", "members", "user.id");
                walk(&ev.doc, "channel.members", "channel members", "user.id");
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
