/* stws_client_post() and stws_client_wake() from other threads (issue 11,
   item 5).  Built and run as every suite, and again under ThreadSanitizer
   by `make test-tsan`.

   The pump (this thread) steps and polls a client on the scripted transport
   (tests/client_util.h); poster threads hammer stws_client_post().  Every
   posted message must be written exactly once, in each thread's order.  A
   stws_client_poll() whose timer is 25 s away must return promptly after a
   wake from another thread.  The client here uses the default allocator
   (posts may grow the inbox from the posting threads; the fixture's
   counting allocator is not thread-safe).

   On Windows (make test-windows) the same suite runs on mingw-w64's
   winpthreads, and the wake handle is the header's loopback UDP pair, which
   select() watches; only the idle "connection socket" and the empty check
   differ (below). */
#define _POSIX_C_SOURCE 200809L
#include <time.h>
#ifdef _WIN32
#include <winsock2.h>
#include <pthread.h>
#include <sched.h>
#else
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>
#endif
#include "client_util.h"

/* Nothing to read on handle h right now (a wait of 0 ms says so). */
static int nothing_to_read(intptr_t h) {
#ifdef _WIN32
    fd_set rs;
    struct timeval tv = {0, 0};
    FD_ZERO(&rs);
    FD_SET((SOCKET)h, &rs);
    return select(0, &rs, NULL, NULL, &tv) == 0;
#else
    struct pollfd p;
    p.fd = (int)h;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, 0) == 0;
#endif
}

#define POSTERS 4
#define PER_THREAD 2500

static void start_up(void) {
    srv_ok(0, "c-0");
    cu_create();
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
    if (cu_find_ev(STWS_CLIENT_EVENT_CONNECTED, 0) < 0) {
        cu_dump_events(0);
        fail_msg("not connected");
    }
}

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Socket k's unmasked text frames after the upgrade request, each passed to fn. */
static int each_text(int k, void (*fn)(const char *s, size_t n, void *ud), void *ud) {
    const st_transport *t = &X.sock[k];
    const char *end = cu_find(t->sent, t->sent_len, "\r\n\r\n");
    size_t off;
    int n = 0;
    char *buf = NULL;
    assert_non_null(end);
    off = (size_t)(end - (const char *)t->sent) + 4;
    while (off < t->sent_len) {
        const uint8_t *p = t->sent + off;
        size_t h = 2, i, len;
        assert_true(t->sent_len - off >= 2);
        assert_true(p[1] & 0x80);
        len = p[1] & 0x7F;
        if (len == 126) {
            len = (size_t)p[2] << 8 | p[3];
            h = 4;
        } else
            assert_true(len < 126);
        assert_true(t->sent_len - off >= h + 4 + len);
        buf = (char *)realloc(buf, len + 1);
        for (i = 0; i < len; i++) buf[i] = (char)(p[h + 4 + i] ^ p[h + (i & 3)]);
        buf[len] = 0;
        if ((p[0] & 0x0F) == STWS_OP_TEXT) {
            fn(buf, len, ud);
            n++;
        }
        off += h + 4 + len;
    }
    free(buf);
    return n;
}

/* ==== the hammer ========================================================== */

static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static int posters_done;
static long queue_full_retries;

static void *poster(void *arg) {
    int id = (int)(intptr_t)arg, k;
    char msg[64];
    long retries = 0;
    for (k = 0; k < PER_THREAD; k++) {
        int n = snprintf(msg, sizeof msg, "{\"t\":%d,\"n\":%d}", id, k);
        stws_result r;
        while ((r = stws_client_post(X.c, msg, (size_t)n)) == STWS_ERR_QUEUE_FULL) {
            retries++; /* the pump has not caught up: let it run */
            stws_client_wake(X.c);
            sched_yield();
        }
        if (r != STWS_OK) {
            print_error("poster %d: message %d: %s\n", id, k, stws_result_string(r));
            abort();
        }
    }
    pthread_mutex_lock(&done_mu);
    posters_done++;
    queue_full_retries += retries;
    pthread_mutex_unlock(&done_mu);
    return NULL;
}

typedef struct seen {
    int next[POSTERS];
    int bad;
    int other;
} seen;

static void check_order(const char *s, size_t n, void *ud) {
    seen *sn = (seen *)ud;
    int t, k;
    (void)n;
    if (sscanf(s, "{\"t\":%d,\"n\":%d}", &t, &k) != 2 || t < 0 || t >= POSTERS) {
        sn->other++;
        return;
    }
    if (k != sn->next[t]) {
        if (sn->bad < 5) print_error("thread %d: message %d where %d was due\n", t, k, sn->next[t]);
        sn->bad++;
    }
    sn->next[t] = k + 1;
}

static void test_post_from_threads_written_once_in_order(void **state) {
    pthread_t th[POSTERS];
    seen sn;
    int i, done = 0, polls = 0, total;
    (void)state;
    memset(&X.d.allocator, 0, sizeof X.d.allocator);
    X.d.send_queue_limit = 64 * 1024; /* small: posters meet QUEUE_FULL and retry */
    start_up();
    for (i = 0; i < POSTERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, poster, (void *)(intptr_t)i), 0);
    while (!done) {
        pthread_mutex_lock(&done_mu);
        done = posters_done == POSTERS;
        pthread_mutex_unlock(&done_mu);
        /* the fake clock stands still: the poll waits for a wake (or 100 ms) */
        X.in_step++;
        (void)stws_client_poll(X.c, 100);
        X.in_step--;
        cu_drain();
        polls++;
    }
    for (i = 0; i < POSTERS; i++) pthread_join(th[i], NULL);
    for (i = 0; i < 100 && stws_client_queued(X.c); i++) cu_step();
    cu_step(); /* moves anything left in the inbox */
    for (i = 0; i < 100 && stws_client_queued(X.c); i++) cu_step();
    assert_int_equal(stws_client_queued(X.c), 0);
    memset(&sn, 0, sizeof sn);
    total = each_text(0, check_order, &sn);
    print_message("%d posters x %d messages: %d polls, %ld QUEUE_FULL retries\n", POSTERS, PER_THREAD,
                  polls, queue_full_retries);
    assert_int_equal(sn.bad, 0);
    for (i = 0; i < POSTERS; i++) assert_int_equal(sn.next[i], PER_THREAD);
    assert_int_equal(total - sn.other, POSTERS * PER_THREAD); /* exactly once each */
    assert_int_equal(X.nsock, 1);
}

/* ==== wake ================================================================ */

static void *waker(void *arg) {
    (void)arg;
    stws_client_wake(X.c);
    return NULL;
}

static void test_wake_ends_a_long_poll(void **state) {
    pthread_t th;
    double t0, el;
    (void)state;
    memset(&X.d.allocator, 0, sizeof X.d.allocator);
    start_up();
    cu_step(); /* nothing pending: the next timer is the health check, 25 s away */
    assert_true(stws_client_timeout(X.c) > 20000);
    assert_true(stws_client_wake_handle(X.c) >= 0);
    t0 = mono_ms();
    assert_int_equal(pthread_create(&th, NULL, waker, NULL), 0);
    (void)stws_client_poll(X.c, 60000);
    el = mono_ms() - t0;
    pthread_join(th, NULL);
    print_message("poll returned %.1f ms after the wake thread started\n", el);
    assert_true(el < 10000); /* without the wake: 25 s */
    /* the step emptied the pipe: the next short poll waits its time again */
    assert_true(nothing_to_read(stws_client_wake_handle(X.c)));
}

/* The same with a socket in the poll set (the two-descriptor poll): an
   idle socketpair end stands for the connection's socket (on Windows, an
   unconnected UDP socket on 127.0.0.1 that nobody sends to). */
#ifdef _WIN32
static SOCKET idle_fds[2] = {INVALID_SOCKET, INVALID_SOCKET};
static int idle_open(void) {
    struct sockaddr_in a;
    WSADATA wd;
    if (WSAStartup(MAKEWORD(2, 2), &wd) != 0) return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    idle_fds[0] = socket(AF_INET, SOCK_DGRAM, 0);
    if (idle_fds[0] == INVALID_SOCKET) return -1;
    return bind(idle_fds[0], (struct sockaddr *)&a, (int)sizeof a);
}
static void idle_close(void) {
    closesocket(idle_fds[0]);
    WSACleanup();
}
#else
static int idle_fds[2] = {-1, -1};
static int idle_open(void) { return socketpair(AF_UNIX, SOCK_STREAM, 0, idle_fds); }
static void idle_close(void) {
    close(idle_fds[0]);
    close(idle_fds[1]);
}
#endif
static intptr_t idle_handle(void *ctx) {
    (void)ctx;
    return (intptr_t)idle_fds[0];
}

static void test_wake_ends_a_long_poll_with_socket(void **state) {
    pthread_t th;
    double t0, el;
    (void)state;
    assert_int_equal(idle_open(), 0);
    memset(&X.d.allocator, 0, sizeof X.d.allocator);
    X.d.conn.transport.handle = idle_handle;
    start_up();
    cu_step();
    assert_int_equal(stws_client_handle(X.c), (intptr_t)idle_fds[0]);
    assert_true(stws_client_timeout(X.c) > 20000);
    t0 = mono_ms();
    assert_int_equal(pthread_create(&th, NULL, waker, NULL), 0);
    (void)stws_client_poll(X.c, 60000);
    el = mono_ms() - t0;
    pthread_join(th, NULL);
    idle_close();
    assert_true(el < 10000); /* without the wake: 25 s */
}

/* A wake before the poll is not lost: the poll returns at once. */
static void test_wake_before_poll_is_kept(void **state) {
    double t0, el;
    (void)state;
    start_up();
    cu_step();
    stws_client_wake(X.c);
    stws_client_wake(X.c); /* two wakes, one byte: no pipe filling up */
    t0 = mono_ms();
    (void)stws_client_poll(X.c, 60000);
    el = mono_ms() - t0;
    assert_true(el < 10000);
}

/* ==== post's refusals and ordering (one thread) =========================== */

static void test_post_refusals_queue_nothing(void **state) {
    static char big[STWS_DEFAULT_MAX_OUTPUT_SIZE - 13];
    (void)state;
    X.d.send_queue_limit = 20;
    start_up();
    assert_int_equal(stws_client_post(NULL, "{}", 2), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_client_post(X.c, NULL, 2), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_client_post(X.c, big, sizeof big), STWS_ERR_MESSAGE_TOO_BIG);
    assert_int_equal(stws_client_post(X.c, "\"\xff\"", 3), STWS_ERR_INVALID_UTF8);
    assert_int_equal(stws_client_post(X.c, "{} {}", 5), STWS_ERR_JSON);
    assert_int_equal(stws_client_post(X.c, "", 0), STWS_ERR_JSON);
    assert_int_equal(stws_client_post(X.c, "{\"a\":\"0123456789\"}", 18), STWS_OK);
    assert_int_equal(stws_client_post(X.c, "[1]", 3), STWS_ERR_QUEUE_FULL); /* 18 + 3 > 20 */
    assert_int_equal(stws_client_post(X.c, "1", 1), STWS_OK);               /* 19 */
    cu_settle();
    cu_parse_sent(0); /* frame 0 is the auth message */
    assert_int_equal(X.nfr, 3);
    assert_string_equal((const char *)X.fr[1].data, "{\"a\":\"0123456789\"}");
    assert_string_equal((const char *)X.fr[2].data, "1");
    assert_int_equal(stws_client_queued(X.c), 0);
    /* stopped: refused once the step has seen it */
    assert_int_equal(stws_client_close(X.c), STWS_OK);
    cu_advance(2000); /* the server never answers the close: 1 s close timeout */
    assert_true(cu_find_ev(STWS_CLIENT_EVENT_CLOSED, 0) >= 0);
    assert_int_equal(stws_client_post(X.c, "2", 1), STWS_ERR_CLOSED);
    assert_int_equal(stws_client_queued(X.c), 0);
}

/* Posted before connection.ok: kept, moved by the step, written after the
   auth message with the pump's own sends, each side in its order. */
static void test_post_before_connect_kept_in_order(void **state) {
    (void)state;
    srv_ok(0, "c-0");
    cu_create();
    assert_int_equal(stws_client_post(X.c, "{\"p\":1}", 7), STWS_OK);
    assert_int_equal(stws_client_post(X.c, "{\"p\":2}", 7), STWS_OK);
    assert_int_equal(stws_client_queued(X.c), 0); /* still in the inbox */
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_step(); /* the inbox moves into the send queue */
    assert_int_equal(stws_client_queued(X.c), 14);
    assert_int_equal(stws_client_send(X.c, "{\"s\":3}", 7), STWS_OK);
    cu_settle();
    cu_parse_sent(0);
    assert_true(X.nfr >= 4);
    /* frame 0 is the auth message */
    assert_string_equal((const char *)X.fr[1].data, "{\"p\":1}");
    assert_string_equal((const char *)X.fr[2].data, "{\"p\":2}");
    assert_string_equal((const char *)X.fr[3].data, "{\"s\":3}");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_post_from_threads_written_once_in_order, cu_setup, cu_teardown),
        cmocka_unit_test_setup_teardown(test_wake_ends_a_long_poll, cu_setup, cu_teardown),
        cmocka_unit_test_setup_teardown(test_wake_ends_a_long_poll_with_socket, cu_setup, cu_teardown),
        cmocka_unit_test_setup_teardown(test_wake_before_poll_is_kept, cu_setup, cu_teardown),
        cmocka_unit_test_setup_teardown(test_post_refusals_queue_nothing, cu_setup, cu_teardown),
        cmocka_unit_test_setup_teardown(test_post_before_connect_kept_in_order, cu_setup, cu_teardown),
    };
    (void)cu_fetch; /* fixture hooks this suite does not use */
    (void)cu_reconnecting;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
