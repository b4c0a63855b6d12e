/* test_kit_example.c — unit-testing your own Stream event handling with
   stream_ws_test.h: no sockets, no sleeping, no test framework.

   The code under test is a tiny "chat overlay" a game might draw: it shows
   the last lines of chat ("Bob: hi"), a typing indicator, and whether chat is
   online; after a reconnect it watches its channel again (subscriptions die
   with the old socket).  The test drives a real stws_client against a
   scripted Stream coordinator and a fake clock, and checks what the overlay
   shows and what it sent.

   build/examples/test_kit_example   (exit status 0 = every check passed) */
#define STREAM_WS_IMPLEMENTATION
#define STREAM_WS_TEST_IMPLEMENTATION
#include "../stream_ws_test.h"
#include <stdio.h>
#include <string.h>

/* ==== the code under test (your game's) =================================== */

typedef struct overlay {
    char lines[4][128];        /* the last 4 chat lines, oldest first */
    int nlines;
    int online;                /* 1 online, 0 offline, -1 chat is unavailable */
    int typing;                /* someone is typing */
    int watches;               /* watch requests sent */
} overlay;

static void overlay_watch(overlay *o, stws_client *c) {
    static const char watch[] = "{\"type\":\"watch\",\"channel\":\"messaging:lobby\"}";
    if (stws_client_send(c, watch, sizeof watch - 1) == STWS_OK) o->watches++;
}

static void overlay_add_line(overlay *o, const char *line) {
    if (o->nlines == 4) {
        memmove(o->lines[0], o->lines[1], sizeof o->lines[0] * 3);
        o->nlines--;
    }
    snprintf(o->lines[o->nlines++], sizeof o->lines[0], "%s", line);
}

/* The handler: one stws_client_event at a time. */
static void overlay_on_event(stws_client *c, const stws_client_event *ev, void *user_data) {
    overlay *o = (overlay *)user_data;
    char name[48], text[64], line[128];
    size_t n;
    switch (ev->type) {
    case STWS_CLIENT_EVENT_CONNECTED: o->online = 1; overlay_watch(o, c); break;
    case STWS_CLIENT_EVENT_RECONNECTED: o->online = 1; overlay_watch(o, c); break;
    case STWS_CLIENT_EVENT_DISCONNECTED: o->online = 0; o->typing = 0; break;
    case STWS_CLIENT_EVENT_FATAL: o->online = -1; break;
    case STWS_CLIENT_EVENT_SERVER:
        if (ev->event_type.len == 11 && memcmp(ev->event_type.ptr, "message.new", 11) == 0) {
            if (stws_json_string_at(&ev->doc, "message.user.name", name, sizeof name, &n) != STWS_OK)
                snprintf(name, sizeof name, "?");
            if (stws_json_string_at(&ev->doc, "message.text", text, sizeof text, &n) != STWS_OK) break;
            snprintf(line, sizeof line, "%s: %s", name, text);
            overlay_add_line(o, line);
            o->typing = 0;
        } else if (ev->event_type.len == 12 && memcmp(ev->event_type.ptr, "typing.start", 12) == 0) {
            o->typing = 1;
        }
        break;
    default: break;
    }
}

/* ==== the test ============================================================ */

static int failures;
#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                           \
        }                                                                         \
    } while (0)

#define JWT "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoiYWxpY2UifQ.c2lnbmF0dXJl"

typedef struct world {
    stws_test_clock clock;
    stws_test_random random;
    stws_test_transport server;
    stws_client *client;
    overlay ui;
} world;

static void world_init(world *w) {
    stws_client_desc d;
    memset(w, 0, sizeof *w);
    stws_test_clock_init(&w->clock, 1000, 1767225600);
    stws_test_random_init(&w->random, 1);
    stws_test_transport_init(&w->server);
    w->server.auto_accept = 1; /* every upgrade gets a valid 101 */
    memset(&d, 0, sizeof d);
    d.url = "ws://chat.test/api/v2/connect";
    d.api_key = "key";
    d.user_id = "alice";
    d.token = JWT;
    d.conn.transport = stws_test_transport_hook(&w->server);
    d.clock = stws_test_clock_hook(&w->clock);
    d.random = stws_test_random_hook(&w->random);
    w->client = stws_client_create(&d);
}

/* The game loop, run until nothing moves: step, then hand events to the overlay. */
static void run(world *w) { CHECK(stws_test_settle(w->client, &w->server, overlay_on_event, &w->ui) > 0); }

static void world_free(world *w) {
    stws_client_destroy(w->client);
    stws_test_transport_free(&w->server);
}

static void test_messages_and_typing(void) {
    world w;
    size_t n;
    const char *sent;
    world_init(&w);
    CHECK(w.client != NULL);
    stws_test_connection_ok(&w.server, "conn-1");
    stws_test_event(&w.server, "{\"type\":\"typing.start\",\"user\":{\"id\":\"bob\"}}");
    CHECK(stws_client_connect(w.client) == STWS_OK);
    run(&w);
    CHECK(w.ui.online == 1);
    CHECK(w.ui.typing == 1);
    /* the first text the client wrote is its auth, then the overlay's watch */
    CHECK(stws_test_next_text(&w.server, &n) != NULL);
    sent = stws_test_next_text(&w.server, &n);
    CHECK(sent && strcmp(sent, "{\"type\":\"watch\",\"channel\":\"messaging:lobby\"}") == 0);

    stws_test_event(&w.server, "{\"type\":\"message.new\",\"message\":{\"text\":\"hi\",\"user\":{\"name\":\"Bob\"}}}");
    /* a long message split into three frames arrives as one event */
    {
        static const char big[] = "{\"type\":\"message.new\",\"message\":{\"text\":\"gg\",\"user\":{\"name\":\"Eve\"}}}";
        stws_test_fragments(&w.server, STWS_OP_TEXT, big, sizeof big - 1, 25);
    }
    run(&w);
    CHECK(w.ui.nlines == 2);
    CHECK(strcmp(w.ui.lines[0], "Bob: hi") == 0);
    CHECK(strcmp(w.ui.lines[1], "Eve: gg") == 0);
    CHECK(w.ui.typing == 0);
    world_free(&w);
}

static void test_reconnect_watches_again(void) {
    world w;
    size_t n;
    const char *sent;
    world_init(&w);
    stws_test_connection_ok(&w.server, "conn-1");
    CHECK(stws_client_connect(w.client) == STWS_OK);
    run(&w);
    CHECK(w.ui.watches == 1);
    stws_test_clock_advance(&w.clock, 10000);  /* a healthy connection (> 5 s) */
    run(&w);

    stws_test_random_pin_u32(&w.random, 0);    /* the backoff draw: the window's low edge */
    stws_test_drop(&w.server);                 /* the server vanishes */
    run(&w);
    CHECK(w.ui.online == 0);
    CHECK(w.server.opens == 1);

    stws_test_connection_ok(&w.server, "conn-2"); /* what the next socket will say */
    stws_test_clock_advance(&w.clock, 250);    /* PROTOCOL.md §5: [250, 500) ms after a healthy socket */
    run(&w);
    CHECK(w.server.opens == 2);
    CHECK(w.ui.online == 1);
    CHECK(w.ui.watches == 2);
    CHECK(strcmp(stws_client_connection_id(w.client), "conn-2") == 0);
    CHECK(stws_test_next_text(&w.server, &n) != NULL); /* the new socket's auth */
    sent = stws_test_next_text(&w.server, &n);
    CHECK(sent && strstr(sent, "\"watch\"") != NULL);
    world_free(&w);
}

static void test_bad_token_shows_unavailable(void) {
    world w;
    world_init(&w);
    stws_test_connection_error(&w.server, 43, 401, "JWTAuth error: token signature is invalid");
    CHECK(stws_client_connect(w.client) == STWS_OK);
    run(&w);
    CHECK(w.ui.online == -1);
    stws_test_clock_advance(&w.clock, 60000);
    run(&w);
    CHECK(w.server.opens == 1);                /* a fatal code is never retried */
    world_free(&w);
}

int main(void) {
    test_messages_and_typing();
    test_reconnect_watches_again();
    test_bad_token_shows_unavailable();
    if (failures) {
        fprintf(stderr, "test_kit_example: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_kit_example: the chat overlay passes its tests\n");
    return 0;
}
