/* connstat: what one connection costs.  Connects to an echo server, reports
   allocations and heap for the idle open connection, allocations per message
   in steady state, and the time from start to open.

   build/connstat URL [--ca FILE] [--messages N] [--size BYTES]

   Two counts: through stream_ws.h's allocator hook, and process-wide (malloc
   interposed, glibc only), since mbedTLS allocates its SSL buffers itself. */
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static size_t process_allocs; /* a measuring tool's own counter */
void *malloc(size_t n) { process_allocs++; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { process_allocs++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { process_allocs++; return __libc_realloc(p, n); }

typedef struct counter { size_t allocs, live, peak; } counter;

static void *count_alloc(size_t n, void *ud) {
    counter *c = (counter *)ud;
    size_t *p = (size_t *)malloc(n + sizeof(size_t) * 2);
    if (!p) return NULL;
    p[0] = n;
    c->allocs++;
    c->live += n;
    if (c->live > c->peak) c->peak = c->live;
    return p + 2;
}
static void count_free(void *ptr, void *ud) {
    counter *c = (counter *)ud;
    size_t *p = (size_t *)ptr - 2;
    c->live -= p[0];
    free(p);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static size_t heap_in_use(void) { return mallinfo2().uordblks; }

static int wait_for(stws_conn *c, stws_conn_event_type want, size_t *got) {
    double end = now_ms() + 20000;
    while (now_ms() < end) {
        stws_conn_event ev;
        stws_conn_poll(c, 100);
        while (stws_conn_next_event(c, &ev)) {
            if (ev.type == want) {
                if (got) *got = ev.len;
                return 0;
            }
            if (ev.type == STWS_CONN_EVENT_ERROR || ev.type == STWS_CONN_EVENT_CLOSE) {
                fprintf(stderr, "connstat: %s\n", stws_conn_error_detail(c));
                return -1;
            }
        }
    }
    fprintf(stderr, "connstat: timed out\n");
    return -1;
}

int main(int argc, char **argv) {
    const char *url = NULL, *ca = NULL;
    int i, messages = 1000, size = 1000;
    counter cnt = {0, 0, 0};
    stws_conn_desc d;
    stws_conn *c;
    size_t heap0, a0, p0, a_open, p_open, heap_open, got = 0;
    double t0, t_open;
    char *msg;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ca") && i + 1 < argc) ca = argv[++i];
        else if (!strcmp(argv[i], "--messages") && i + 1 < argc) messages = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else url = argv[i];
    }
    if (!url || messages < 20 || size < 1) {
        fprintf(stderr, "usage: connstat URL [--ca FILE] [--messages N>=20] [--size BYTES]\n");
        return 2;
    }
    msg = (char *)malloc((size_t)size);
    memset(msg, 'x', (size_t)size);
    memset(&d, 0, sizeof d);
    d.url = url;
    d.ca_file = ca;
    d.allocator.alloc = count_alloc;
    d.allocator.free = count_free;
    d.allocator.user_data = &cnt;
    heap0 = heap_in_use();
    p0 = process_allocs;
    a0 = cnt.allocs;
    t0 = now_ms();
    c = stws_conn_create(&d);
    if (!c || stws_conn_connect(c) != STWS_OK || wait_for(c, STWS_CONN_EVENT_OPEN, NULL)) return 1;
    t_open = now_ms() - t0;
    a_open = cnt.allocs - a0;
    p_open = process_allocs - p0;
    heap_open = heap_in_use() - heap0;
    printf("open:        %.2f ms from create to OPEN\n", t_open);
    printf("idle conn:   %zu allocations, %zu bytes live via the allocator hook\n", a_open, cnt.live);
    printf("idle conn:   %zu allocations process-wide, %zu bytes of heap in use\n", p_open, heap_open);
    /* warm up: the buffers grow to the message size once */
    for (i = 0; i < 10; i++) {
        if (stws_conn_send(c, STWS_OP_TEXT, msg, (size_t)size) != STWS_OK) return 1;
        if (wait_for(c, STWS_CONN_EVENT_MESSAGE, &got) || got != (size_t)size) return 1;
    }
    a0 = cnt.allocs;
    p0 = process_allocs;
    for (i = 0; i < messages; i++) {
        if (stws_conn_send(c, STWS_OP_TEXT, msg, (size_t)size) != STWS_OK) return 1;
        if (wait_for(c, STWS_CONN_EVENT_MESSAGE, &got) || got != (size_t)size) return 1;
    }
    printf("steady:      %d echoed messages of %d B: %zu allocations via the hook, %zu process-wide\n",
           messages, size, cnt.allocs - a0, process_allocs - p0);
    printf("             (%.3f per message)\n", (double)(process_allocs - p0) / messages);
    stws_conn_close(c, 1000, NULL);
    wait_for(c, STWS_CONN_EVENT_CLOSE, NULL);
    a0 = cnt.allocs;
    p0 = process_allocs;
    t0 = now_ms();
    if (stws_conn_connect(c) != STWS_OK || wait_for(c, STWS_CONN_EVENT_OPEN, NULL)) return 1;
    printf("reconnect:   %.2f ms, %zu allocations via the hook, %zu process-wide\n", now_ms() - t0,
           cnt.allocs - a0, process_allocs - p0);
    stws_conn_close(c, 1000, NULL);
    wait_for(c, STWS_CONN_EVENT_CLOSE, NULL);
    stws_conn_destroy(c);
    printf("after destroy: %zu bytes live via the hook\n", cnt.live);
    free(msg);
    return 0;
}
