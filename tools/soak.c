/* soak — the long run of issue 13: Stream clients on flapping connections,
   driven by tools/soak.py (`make soak`), normally built with ASan.

   soak --seconds N --report S --drop-every D --api-key K --secret S [--ca FILE]
        [--seed X] NAME=URL [NAME=URL ...]

   One client per NAME=URL (ws:// or wss://, each a mock coordinator that
   drops every connection D seconds after its connection.ok), all pumped in
   one poll() loop.  Each client sends numbered messages
   {"type":"soak","c":NAME,"n":N} while it is connected, but only in the
   first half of a connection's life: the mock aborts the TCP connection
   after D seconds, and bytes the kernel accepted but the mock had not read
   then are lost by TCP itself (there are no acknowledgements in the
   protocol); messages are also queued while disconnected (they go out right
   after the next connection.ok).  Now and then a client closes itself
   (stws_client_close(), then stws_client_connect() on CLOSED): a clean
   flap, with messages queued across it.

   Every S seconds one line per client on stdout:
     soak t=SECS NAME allocs=A live=L/BYTES rss_kb=R sent=N events=E
          dup_events=X reconnects=C flaps=F fatal=Z queued=Q
   allocs counts every allocation through the client's allocator hook,
   live the blocks and bytes it holds; rss_kb is the process's.  At the end
   the clients stop sending, pump until their queues are empty, close
   cleanly (the mock reads everything before our Close) and are destroyed;
   the last line is
     soak final NAME sent=N events=E dup_events=X live_after_destroy=L ...
   Exit status 0, or 1 on a duplicate or reordered server event (global_seq
   must rise), a FATAL event, a queue that would not drain, or an allocation
   left after destroy.  Lost and duplicated client messages are counted by
   tools/soak.py from the mock's --record file. */
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CLIENTS 4

typedef struct soak_client {
    char name[32];
    const char *url;
    stws_client *c;
    long allocs, live;
    size_t live_bytes;
    long sent, events, dup_events, reconnects, flaps, fatal;
    int64_t last_global_seq;
    int connected, closing;
    uint64_t ok_at;
} soak_client;

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

#define HDR 16
static void *soak_alloc(size_t size, void *u) {
    soak_client *s = (soak_client *)u;
    unsigned char *p = (unsigned char *)malloc(size + HDR);
    if (!p) return NULL;
    memcpy(p, &size, sizeof size);
    s->allocs++;
    s->live++;
    s->live_bytes += size;
    return p + HDR;
}

static void soak_free(void *ptr, void *u) {
    soak_client *s = (soak_client *)u;
    unsigned char *p;
    size_t size;
    if (!ptr) return;
    p = (unsigned char *)ptr - HDR;
    memcpy(&size, p, sizeof size);
    s->live--;
    s->live_bytes -= size;
    free(p);
}

static void soak_log(stws_log_level level, const char *msg, void *u) {
    soak_client *s = (soak_client *)u;
    (void)level;
    (void)msg;
    (void)s; /* drops are the point of the run: no log lines */
}

static long rss_kb(void) {
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static void pull(soak_client *s, uint64_t now) {
    stws_client_event ev;
    while (stws_client_next_event(s->c, &ev)) {
        switch (ev.type) {
        case STWS_CLIENT_EVENT_CONNECTED:
        case STWS_CLIENT_EVENT_RECONNECTED:
            s->connected = 1;
            s->ok_at = now;
            if (ev.type == STWS_CLIENT_EVENT_RECONNECTED) s->reconnects++;
            break;
        case STWS_CLIENT_EVENT_DISCONNECTED: s->connected = 0; break;
        case STWS_CLIENT_EVENT_CLOSED:
            s->connected = 0;
            if (s->closing == 1) { /* our own flap: start again */
                s->closing = 0;
                (void)stws_client_connect(s->c);
            }
            break;
        case STWS_CLIENT_EVENT_FATAL:
            s->fatal++;
            s->connected = 0;
            fprintf(stderr, "soak: %s: FATAL %s (code %d): %.*s\n", s->name, stws_result_string(ev.result),
                    ev.error_code, (int)ev.message.len, ev.message.ptr);
            (void)stws_client_connect(s->c);
            break;
        case STWS_CLIENT_EVENT_SERVER: {
            int64_t g = -1;
            if (stws_json_int_at(&ev.doc, "global_seq", &g) == STWS_OK) {
                s->events++;
                if (g <= s->last_global_seq) s->dup_events++;
                else s->last_global_seq = g;
            }
            break;
        }
        default: break;
        }
    }
}

static void send_one(soak_client *s) {
    char m[160];
    int n = snprintf(m, sizeof m, "{\"type\":\"soak\",\"c\":\"%s\",\"n\":%ld,\"pad\":\"%.*s\"}", s->name, s->sent,
                     (int)(s->sent % 50), "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    if (stws_client_send(s->c, m, (size_t)n) == STWS_OK) s->sent++;
}

/* One poll() over every client's socket, then a step and the events of each. */
static void pump(soak_client *cl, int n, int max_wait) {
    struct pollfd p[MAX_CLIENTS];
    int i, np = 0, t = max_wait;
    uint64_t now;
    for (i = 0; i < n; i++) {
        intptr_t h = stws_client_handle(cl[i].c);
        int w = stws_client_wants(cl[i].c), ct = stws_client_timeout(cl[i].c);
        if (ct >= 0 && ct < t) t = ct;
        if (h >= 0 && w) {
            p[np].fd = (int)h;
            p[np].events = (short)(((w & STWS_POLL_READ) ? POLLIN : 0) | ((w & STWS_POLL_WRITE) ? POLLOUT : 0));
            p[np].revents = 0;
            np++;
        }
    }
    (void)poll(np ? p : NULL, (nfds_t)np, t);
    now = now_ms();
    for (i = 0; i < n; i++) {
        (void)stws_client_step(cl[i].c);
        pull(&cl[i], now);
    }
}

static void report(soak_client *cl, int n, const char *when) {
    int i;
    long rss = rss_kb();
    for (i = 0; i < n; i++) {
        soak_client *s = &cl[i];
        printf("soak %s %s allocs=%ld live=%ld/%zu rss_kb=%ld sent=%ld events=%ld dup_events=%ld reconnects=%ld "
               "flaps=%ld fatal=%ld queued=%zu\n",
               when, s->name, s->allocs, s->live, s->live_bytes, rss, s->sent, s->events, s->dup_events,
               s->reconnects, s->flaps, s->fatal, stws_client_queued(s->c));
    }
    fflush(stdout);
}

int main(int argc, char **argv) {
    soak_client cl[MAX_CLIENTS];
    int n = 0, i, bad = 0;
    double seconds = 60, every = 60, drop_every = 2;
    const char *key = "key", *secret = "secret", *ca = NULL;
    uint64_t start, end, next_report, next_send = 0;
    memset(cl, 0, sizeof cl);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *eq;
        if (strncmp(a, "--", 2) == 0) {
            if (!v) {
                fprintf(stderr, "soak: %s needs a value\n", a);
                return 2;
            }
            i++;
            if (strcmp(a, "--seconds") == 0) seconds = atof(v);
            else if (strcmp(a, "--report") == 0) every = atof(v);
            else if (strcmp(a, "--drop-every") == 0) drop_every = atof(v);
            else if (strcmp(a, "--api-key") == 0) key = v;
            else if (strcmp(a, "--secret") == 0) secret = v;
            else if (strcmp(a, "--ca") == 0) ca = v;
            else if (strcmp(a, "--seed") == 0) rng_state ^= strtoull(v, NULL, 0);
            else {
                fprintf(stderr, "soak: unknown option %s\n", a);
                return 2;
            }
        } else if ((eq = strchr(a, '=')) != NULL && n < MAX_CLIENTS && (size_t)(eq - a) < sizeof cl[0].name) {
            memcpy(cl[n].name, a, (size_t)(eq - a));
            cl[n].url = eq + 1;
            n++;
        } else {
            fprintf(stderr, "soak: bad argument %s (want NAME=URL)\n", a);
            return 2;
        }
    }
    if (!n) {
        fprintf(stderr, "soak: no NAME=URL given\n");
        return 2;
    }
    for (i = 0; i < n; i++) {
        stws_client_desc d;
        memset(&d, 0, sizeof d);
        d.url = cl[i].url;
        d.api_key = key;
        d.api_secret = secret;
        d.user_id = "soak";
        d.conn.ca_file = ca;
        d.backoff_cap_ms = 1000;
        d.allocator.alloc = soak_alloc;
        d.allocator.free = soak_free;
        d.allocator.user_data = &cl[i];
        d.logger.func = soak_log;
        d.logger.user_data = &cl[i];
        cl[i].last_global_seq = 0;
        cl[i].c = stws_client_create(&d);
        if (!cl[i].c || stws_client_connect(cl[i].c) != STWS_OK) {
            fprintf(stderr, "soak: %s: cannot create the client\n", cl[i].name);
            return 1;
        }
    }
    start = now_ms();
    end = start + (uint64_t)(seconds * 1000);
    next_report = start + (uint64_t)(every * 1000);
    while (now_ms() < end) {
        uint64_t now;
        pump(cl, n, 20);
        now = now_ms();
        if (now >= next_send) {
            next_send = now + 20;
            for (i = 0; i < n; i++) {
                soak_client *s = &cl[i];
                int k, burst = 1 + (int)(rnd() % 3);
                int young = s->connected && now - s->ok_at < (uint64_t)(drop_every * 1000 / 2);
                /* while disconnected: queue a few (bounded), sent after connection.ok */
                if (!young && (s->connected || s->closing || stws_client_queued(s->c) > 2000)) continue;
                for (k = 0; k < burst; k++) send_one(s);
                /* a clean flap now and then (about once per 25 connections) */
                if (young && !s->closing && rnd() % 1000 < 2) {
                    s->closing = 1;
                    s->flaps++;
                    (void)stws_client_close(s->c);
                }
            }
        }
        if (now >= next_report) {
            char when[32];
            snprintf(when, sizeof when, "t=%llus", (unsigned long long)((now - start) / 1000));
            report(cl, n, when);
            next_report += (uint64_t)(every * 1000);
        }
    }
    /* drain: stop sending, pump until every queue is empty on a live connection */
    {
        uint64_t limit = now_ms() + 60000;
        int done = 0;
        while (!done && now_ms() < limit) {
            pump(cl, n, 20);
            done = 1;
            for (i = 0; i < n; i++)
                if (stws_client_queued(cl[i].c) || !cl[i].connected || cl[i].closing) done = 0;
        }
        if (!done) {
            for (i = 0; i < n; i++)
                if (stws_client_queued(cl[i].c))
                    fprintf(stderr, "soak: %s: %zu bytes still queued after 60 s of draining\n", cl[i].name,
                            stws_client_queued(cl[i].c));
            bad = 1;
        }
        /* close cleanly: the mock reads what we wrote before our Close */
        for (i = 0; i < n; i++) {
            cl[i].closing = 2;
            (void)stws_client_close(cl[i].c);
        }
        limit = now_ms() + 15000;
        while (now_ms() < limit) {
            int open = 0;
            pump(cl, n, 20);
            for (i = 0; i < n; i++) open += stws_client_handle(cl[i].c) >= 0;
            if (!open) break;
        }
    }
    report(cl, n, "end");
    for (i = 0; i < n; i++) {
        soak_client *s = &cl[i];
        stws_client_destroy(s->c);
        s->c = NULL;
        printf("soak final %s sent=%ld events=%ld dup_events=%ld reconnects=%ld flaps=%ld fatal=%ld allocs=%ld "
               "live_after_destroy=%ld\n",
               s->name, s->sent, s->events, s->dup_events, s->reconnects, s->flaps, s->fatal, s->allocs, s->live);
        if (s->dup_events || s->fatal || s->live) bad = 1;
    }
    fflush(stdout);
    return bad;
}
