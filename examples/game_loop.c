/* game_loop.c — pumped from a 60 Hz frame loop with timeout 0.

   build/examples/game_loop SECONDS   (same environment as stream_events)

   Each frame calls stws_client_step() (never blocks), drains events through
   type handlers, and sends a small event every second.  At the end it prints
   the frames run, the events seen, and the worst and median time spent inside
   the pump per frame. */
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_until(double t) {
    double d = t - now_ms();
    struct timespec ts;
    if (d <= 0) return;
    ts.tv_sec = (time_t)(d / 1e3);
    ts.tv_nsec = (long)((d - ts.tv_sec * 1e3) * 1e6);
    nanosleep(&ts, NULL);
}

typedef struct game { long events, messages, connects; int fatal; } game;

static void on_any(stws_client *c, const stws_client_event *ev, void *ud) {
    game *g = (game *)ud;
    (void)c;
    g->events++;
    if (ev->event_type.len == 11 && memcmp(ev->event_type.ptr, "message.new", 11) == 0) g->messages++;
}

static void on_lifecycle(stws_client *c, const stws_client_event *ev, void *ud) {
    game *g = (game *)ud;
    (void)c;
    if (ev->type == STWS_CLIENT_EVENT_CONNECTED || ev->type == STWS_CLIENT_EVENT_RECONNECTED) g->connects++;
    if (ev->type == STWS_CLIENT_EVENT_FATAL) g->fatal = 1;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    stws_client_desc d = {0};
    stws_client *client;
    game g = {0, 0, 0, 0};
    double seconds = argc > 1 ? atof(argv[1]) : 5, start, next, worst = 0, *pump;
    long frames = 0, nframes;
    d.url = getenv("STREAM_WS_URL");
    d.api_key = getenv("STREAM_API_KEY");
    d.api_secret = getenv("STREAM_API_SECRET");
    d.user_id = getenv("STREAM_USER_ID");
    d.on_event = on_lifecycle;
    d.user_data = &g;
    client = stws_client_create(&d);
    if (!client) return 2;
    stws_client_on(client, "*", on_any, &g);
    stws_client_connect(client);
    nframes = (long)(seconds * 60) + 1;
    pump = (double *)calloc((size_t)nframes, sizeof *pump);
    start = next = now_ms();
    while (frames < nframes && !g.fatal) {
        double t0 = now_ms();
        stws_client_step(client); /* timeout 0: never waits */
        pump[frames] = now_ms() - t0;
        if (pump[frames] > worst) worst = pump[frames];
        if (frames % 60 == 59) {
            char msg[96];
            int n = snprintf(msg, sizeof msg, "{\"type\":\"game.tick\",\"frame\":%ld}", frames);
            stws_client_send(client, msg, (size_t)n); /* queued while offline */
        }
        frames++;
        next += 1000.0 / 60; /* ... the game's own work happens here ... */
        sleep_until(next);
    }
    stws_client_close(client);
    qsort(pump, (size_t)frames, sizeof *pump, cmp);
    printf("frames %ld in %.1f s, events %ld (message.new %ld), connects %ld\n", frames,
           (now_ms() - start) / 1e3, g.events, g.messages, g.connects);
    printf("pump time per frame: median %.3f ms, worst %.3f ms\n", pump[frames / 2], worst);
    stws_client_destroy(client);
    free(pump);
    return g.fatal || g.connects == 0;
}
