/* clientstat: what one Stream client costs, the stws_client counterpart of
   connstat.  Connects to a Stream coordinator (tools/mock_coordinator.py
   sending product events), then reports allocations and heap for the idle
   connected client, allocations per event in steady state (one server event
   in, one message out through the send queue), and per reconnect after the
   server drops the socket (SIGUSR1 to the mock, --drop-pid).

   build/bench/mem/clientstat URL --drop-pid PID [--events N] [--warmup N]
                              [--reconnects K]

   URL is ws://host:port/api/v2/connect; api_key "key", secret "secret" (the
   mock's defaults; the token is minted with HS256).  Two counts, as in
   connstat: through stream_ws.h's allocator hook, and process-wide (malloc,
   calloc and realloc interposed, glibc only), since mbedTLS allocates for
   HMAC itself.  Output: one "name: value" line per figure. */
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static size_t proc_allocs; /* process-wide calls of malloc/calloc/realloc */
void *malloc(size_t n) { proc_allocs++; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { proc_allocs++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { proc_allocs++; return __libc_realloc(p, n); }

/* The allocator hook: a size header in front of every block. */
typedef struct hook_count { size_t allocs, live; } hook_count;
static void *hook_alloc(size_t n, void *ud) {
    hook_count *h = (hook_count *)ud;
    size_t *p = (size_t *)malloc(sizeof(size_t) * 2 + n);
    if (!p) return NULL;
    p[0] = n;
    h->allocs++;
    h->live += n;
    return p + 2;
}
static void hook_free(void *ptr, void *ud) {
    hook_count *h = (hook_count *)ud;
    size_t *p;
    if (!ptr) return;
    p = (size_t *)ptr - 2;
    h->live -= p[0];
    free(p);
}

static double ms_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
static size_t heap_used(void) { return mallinfo2().uordblks; }

/* Pump until an event of type want arrives (count server events when want is
   SERVER: *n of them); answer each server event with one queued message when
   reply is set.  0 on success, -1 on FATAL/CLOSED or after 30 s. */
static stws_client *client;
static const char reply_msg[] =
    "{\"type\":\"typing.start\",\"cid\":\"messaging:bench\",\"parent_id\":\"\","
    "\"user\":{\"id\":\"bench-user\"},\"note\":\"a steady-state message of a few hundred bytes, "
    "queued by stws_client_send and written after connection.ok\"}";
static size_t events_seen;

static int pump_until(stws_client_event_type want, size_t n, int reply) {
    double end = ms_now() + 30000;
    size_t got = 0;
    while (ms_now() < end) {
        stws_client_event ev;
        stws_client_poll(client, 50);
        while (stws_client_next_event(client, &ev)) {
            if (ev.type == STWS_CLIENT_EVENT_SERVER) {
                events_seen++;
                if (reply && stws_client_send(client, reply_msg, sizeof reply_msg - 1) != STWS_OK) {
                    fprintf(stderr, "clientstat: send failed\n");
                    return -1;
                }
            }
            if (ev.type == STWS_CLIENT_EVENT_FATAL || ev.type == STWS_CLIENT_EVENT_CLOSED) {
                if (want == STWS_CLIENT_EVENT_CLOSED && ev.type == want) return 0;
                fprintf(stderr, "clientstat: client stopped: %.*s (%s)\n", (int)ev.message.len,
                        ev.message.ptr ? ev.message.ptr : "", stws_result_string(ev.result));
                return -1;
            }
            if (ev.type == want && ++got >= n) return 0;
        }
    }
    fprintf(stderr, "clientstat: timed out waiting for event %d (%zu of %zu)\n", (int)want, got, n);
    return -1;
}

int main(int argc, char **argv) {
    const char *url = NULL;
    long drop_pid = 0;
    int i, events = 1000, warmup = 1000, reconnects = 3;
    hook_count hk = {0, 0};
    stws_client_desc d;
    size_t h0, p0, a0, heap0, heap1;
    double t0;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--drop-pid") && i + 1 < argc) drop_pid = atol(argv[++i]);
        else if (!strcmp(argv[i], "--events") && i + 1 < argc) events = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reconnects") && i + 1 < argc) reconnects = atoi(argv[++i]);
        else url = argv[i];
    }
    if (!url || drop_pid <= 0 || events < 1 || warmup < 1 || reconnects < 1) {
        fprintf(stderr, "usage: clientstat URL --drop-pid PID [--events N] [--warmup N] [--reconnects K]\n");
        return 2;
    }
    memset(&d, 0, sizeof d);
    d.url = url;
    d.api_key = "key";
    d.api_secret = "secret";
    d.user_id = "bench-user";
    d.user_name = "Bench User";
    d.allocator.alloc = hook_alloc;
    d.allocator.free = hook_free;
    d.allocator.user_data = &hk;

    heap0 = heap_used();
    p0 = proc_allocs;
    t0 = ms_now();
    client = stws_client_create(&d);
    if (!client || stws_client_connect(client) != STWS_OK) return 1;
    if (pump_until(STWS_CLIENT_EVENT_CONNECTED, 1, 0)) return 1;
    printf("connected_ms: %.2f\n", ms_now() - t0);
    printf("idle_hook_allocs: %zu\n", hk.allocs);
    printf("idle_hook_bytes: %zu\n", hk.live);
    printf("idle_proc_allocs: %zu\n", proc_allocs - p0);
    printf("idle_heap_bytes: %zu\n", heap_used() - heap0);

    /* warm-up: buffers grow to the sizes the events need */
    if (pump_until(STWS_CLIENT_EVENT_SERVER, (size_t)warmup, 1)) return 1;
    printf("warmup_events: %d\n", warmup);
    a0 = hk.allocs;
    p0 = proc_allocs;
    h0 = heap_used();
    if (pump_until(STWS_CLIENT_EVENT_SERVER, (size_t)events, 1)) return 1;
    printf("steady_events: %d\n", events);
    printf("steady_hook_allocs: %zu\n", hk.allocs - a0);
    printf("steady_proc_allocs: %zu\n", proc_allocs - p0);
    printf("steady_heap_growth: %ld\n", (long)heap_used() - (long)h0);

    a0 = hk.allocs;
    p0 = proc_allocs;
    heap1 = heap_used();
    for (i = 0; i < reconnects; i++) {
        if (kill((pid_t)drop_pid, SIGUSR1) != 0) {
            perror("clientstat: kill");
            return 1;
        }
        if (pump_until(STWS_CLIENT_EVENT_RECONNECTED, 1, 0)) return 1;
    }
    printf("reconnects: %d\n", reconnects);
    printf("reconnect_hook_allocs: %zu\n", hk.allocs - a0);
    printf("reconnect_proc_allocs: %zu\n", proc_allocs - p0);
    printf("reconnect_heap_growth: %ld\n", (long)heap_used() - (long)heap1);

    if (stws_client_close(client) != STWS_OK || pump_until(STWS_CLIENT_EVENT_CLOSED, 1, 0)) return 1;
    stws_client_destroy(client);
    printf("destroyed_hook_bytes: %zu\n", hk.live);
    return 0;
}
