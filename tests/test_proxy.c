/* The HTTP CONNECT proxy transport (RFC 9110 §9.3.6) against hostile and
   broken answers (issue 13, finding 6): each is a clear error (the result
   and stws_proxy_error_detail()), read with bounded memory (the reply
   header never passes 1024 bytes, nothing is allocated) and bounded time
   (a proxy that drips meets the connection's connect timer, on a fake
   clock).  The proxy runs over a scripted transport
   (tests/script_transport.h); one test runs the built-in stack (TCP +
   proxy) against a hostile proxy on 127.0.0.1 to see the log line. */
#define _POSIX_C_SOURCE 200809L /* poll, sockets under -std=c99 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#ifndef _WIN32 /* the one real-socket test is POSIX-only (not in make test-windows) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#endif
#include "../stream_ws.h"
#include "script_transport.h"

static struct pfx {
    st_transport st;
    stws_proxy *p;
    stws_transport tr;
    long allocs, frees;
    uint64_t now;
    int log_lines, log_bad;
    char log[4096];
} P;

static void *count_alloc(size_t size, void *u) {
    (void)u;
    P.allocs++;
    return malloc(size);
}
static void count_free(void *ptr, void *u) {
    (void)u;
    if (ptr) P.frees++;
    free(ptr);
}

/* A log line is safe: no control byte, no DEL (see tests/test_hostile.c). */
static void check_log(stws_log_level level, const char *msg, void *u) {
    size_t i, n = strlen(msg), used = strlen(P.log);
    (void)level;
    (void)u;
    P.log_lines++;
    for (i = 0; i < n; i++)
        if ((unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] == 0x7F) P.log_bad++;
    snprintf(P.log + used, sizeof P.log - used, "%s\n", msg);
}

static void make_proxy(const char *url) {
    stws_proxy_desc d;
    if (P.p) stws_proxy_destroy(P.p);
    st_free(&P.st);
    st_init(&P.st);
    memset(&d, 0, sizeof d);
    d.inner = st_transport_vtable(&P.st, 1);
    d.url = url;
    d.allocator.alloc = count_alloc;
    d.allocator.free = count_free;
    P.p = stws_proxy_create(&d);
    assert_non_null(P.p);
    P.tr = stws_proxy_transport(P.p);
}

static int setup(void **state) {
    (void)state;
    memset(&P, 0, sizeof P);
    st_init(&P.st);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    stws_proxy_destroy(P.p);
    P.p = NULL;
    st_free(&P.st);
    assert_int_equal(P.allocs, P.frees);
    return 0;
}

/* Call open until it is done or the script has nothing more to give. */
static int open_all(void) {
    int r, i;
    for (i = 0; i < 200000; i++) {
        size_t before = P.st.bytes_received, next = P.st.next;
        r = P.tr.open(P.tr.ctx, "ws.example.com", 443);
        if (r != STWS_WANT_READ && r != STWS_WANT_WRITE) return r;
        if (P.st.bytes_received == before && P.st.next == next) return r; /* starved */
    }
    fail_msg("open never finishes");
    return 0;
}

typedef struct pcase {
    const char *name;
    const char *reply;      /* NULL: built by the test */
    size_t reply_len;       /* 0: strlen */
    int eof;                /* the stream ends after the reply */
    int result;
    const char *detail;
    size_t read_max;        /* exactly this many bytes are taken: no tunnel byte, and
                               a bad reply is dropped as soon as it is known bad */
} pcase;

static const pcase cases[] = {
    {"200", "HTTP/1.1 200 Connection established\r\n\r\nTUNNEL", 0, 0, 0, "", 39},
    {"HTTP/1.0 200 with headers", "HTTP/1.0 200 OK\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\nTUNNEL", 0, 0, 0, "", 50},
    {"407", "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n", 0, 0,
     STWS_ERR_PROXY, "proxy needs credentials: HTTP/1.1 407 Proxy Authentication Required", 44},
    {"403 with terminal escapes", "HTTP/1.1 403 Forbidden\x1b]0;pwned\x07\x9b" "2J\r\n\r\n", 0, 0, STWS_ERR_PROXY,
     "proxy refused the CONNECT: HTTP/1.1 403 Forbidden\\x1B]0;pwned\\x07\xef\xbf\xbd" "2J", 37},
    {"502", "HTTP/1.1 502 Bad Gateway\r\n\r\n", 0, 0, STWS_ERR_PROXY,
     "proxy refused the CONNECT: HTTP/1.1 502 Bad Gateway", 26},
    {"1xx", "HTTP/1.1 100 Continue\r\n\r\n", 0, 0, STWS_ERR_PROXY, "proxy refused the CONNECT: HTTP/1.1 100 Continue", 23},
    {"junk status digits", "HTTP/1.1 2xx OK\r\n\r\nTUNNEL", 0, 0, STWS_ERR_PROXY,
     "malformed proxy status line: HTTP/1.1 2xx OK", 17},
    {"status digits run on", "HTTP/1.1 200OK\r\n\r\n", 0, 0, STWS_ERR_PROXY,
     "malformed proxy status line: HTTP/1.1 200OK", 16},
    {"two-digit status", "HTTP/1.1 20\r\n\r\n", 0, 0, STWS_ERR_PROXY, "malformed proxy status line: HTTP/1.1 20", 13},
    {"no space after the version", "HTTP/1.1_200 OK\r\n\r\n", 0, 0, STWS_ERR_PROXY,
     "malformed proxy status line: HTTP/1.1_200 OK", 17},
    {"HTTP/2", "HTTP/2 200\r\n\r\n", 0, 0, STWS_ERR_PROXY, "proxy reply is not HTTP: HTTP/2", 6},
    {"not HTTP at all", "SSH-2.0-OpenSSH_9.2\r\n", 0, 0, STWS_ERR_PROXY, "proxy reply is not HTTP: S", 1},
    {"NUL in the status line", "HTTP/1.1 200 O\0K\r\n\r\n", 20, 0, STWS_ERR_PROXY, "NUL byte in the proxy reply", 15},
    {"NUL in a header", "HTTP/1.1 200 OK\r\nX-A: a\0b\r\n\r\n", 29, 0, STWS_ERR_PROXY, "NUL byte in the proxy reply", 24},
    {"EOF after the status line", "HTTP/1.1 200 OK\r\n", 0, 1, STWS_ERR_PROXY,
     "proxy closed the stream before its reply ended: HTTP/1.1 200 OK", 17},
    {"EOF before anything", "", 0, 1, STWS_ERR_PROXY, "proxy closed the stream before its reply ended", 0},
    {"100 KB status line", NULL, 0, 0, STWS_ERR_PROXY, NULL, 1024},
    {"endless header lines", NULL, 0, 0, STWS_ERR_PROXY, NULL, 1024},
};

static void hostile_replies(void **state) {
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const pcase *pc = &cases[i];
        char *big = NULL;
        const char *reply = pc->reply;
        size_t len = pc->reply_len, taken;
        long allocs;
        int r;
        print_message("case: %s\n", pc->name);
        make_proxy("http://proxy.example:3128");
        if (!reply) {
            size_t k;
            big = (char *)malloc(200000);
            assert_non_null(big);
            if (strcmp(pc->name, "100 KB status line") == 0) {
                len = 100 * 1024;
                memcpy(big, "HTTP/1.1 200 ", 13);
                memset(big + 13, 'A', len - 13);
            } else {
                memcpy(big, "HTTP/1.1 200 OK\r\n", 17);
                for (len = 17, k = 0; k < 10000; k++, len += 10) memcpy(big + len, "X-Pad: y\r\n", 10);
            }
            reply = big;
        }
        if (!len) len = strlen(reply);
        if (len) st_push(&P.st, reply, len);
        if (pc->eof) st_push_eof(&P.st);
        allocs = P.allocs;
        r = open_all();
        taken = P.st.bytes_received;
        assert_int_equal(r, pc->result);
        assert_int_equal(P.allocs, allocs); /* bounded memory: nothing allocated */
        if (taken != pc->read_max) fail_msg("%s: %zu reply bytes read, not %zu", pc->name, taken, pc->read_max);
        if (pc->detail) {
            assert_string_equal(stws_proxy_error_detail(P.p), pc->detail);
        } else if (strcmp(pc->name, "100 KB status line") == 0) {
            const char *d = stws_proxy_error_detail(P.p);
            assert_int_equal(strncmp(d, "proxy status line over 1024 bytes: HTTP/1.1 200 AAAA", 52), 0);
            assert_string_equal(d + strlen(d) - 3, "...");
            assert_true(strlen(d) < 192);
        } else {
            assert_string_equal(stws_proxy_error_detail(P.p), "proxy reply header over 1024 bytes: HTTP/1.1 200 OK");
        }
        if (r == 0) { /* the tunnel's first bytes are left for the next layer */
            unsigned char t[16];
            assert_int_equal(P.tr.recv(P.tr.ctx, t, sizeof t), 6);
            assert_memory_equal(t, "TUNNEL", 6);
        }
        free(big);
    }
}

static int sent_has(const char *needle) {
    size_t n = strlen(needle), i;
    for (i = 0; i + n <= P.st.sent_len; i++)
        if (memcmp(P.st.sent + i, needle, n) == 0) return 1;
    return 0;
}

/* With credentials, a 407 says they were refused; the request carried them. */
static void refused_credentials(void **state) {
    static const char reply[] = "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n";
    (void)state;
    make_proxy("http://user:pa%40ss@proxy.example:3128");
    st_push(&P.st, reply, sizeof reply - 1);
    assert_int_equal(open_all(), STWS_ERR_PROXY);
    assert_string_equal(stws_proxy_error_detail(P.p),
                        "proxy refused the credentials: HTTP/1.1 407 Proxy Authentication Required");
    assert_true(sent_has("\r\nProxy-Authorization: Basic dXNlcjpwYUBzcw==\r\n"));
    /* a new attempt starts with a clean detail */
    P.tr.close(P.tr.ctx);
    st_free(&P.st);
    st_init(&P.st);
    st_push(&P.st, "HTTP/1.1 200 OK\r\n\r\n", 19);
    assert_int_equal(open_all(), 0);
    assert_string_equal(stws_proxy_error_detail(P.p), "");
}

/* ==== a proxy that drips: the connect timer ============================== */

static uint64_t fake_now(void *u) {
    (void)u;
    return P.now;
}
static int fake_random(void *buf, size_t len, void *u) {
    (void)u;
    memset(buf, 0x5A, len);
    return 0;
}

/* One byte a second of an endless, valid-looking reply: the connection's
   connect timeout (10 s by default) still fires, and in that time the proxy
   has read ten bytes. */
static void dripping_reply_meets_the_connect_timeout(void **state) {
    static const char reply[] = "HTTP/1.1 200 Connection established\r\nX-Pad: ";
    stws_conn_desc d;
    stws_conn *c;
    stws_conn_event ev;
    int i, errors = 0, closes = 0;
    stws_result err = STWS_OK;
    (void)state;
    make_proxy("http://proxy.example:3128");
    for (i = 0; i < (int)sizeof reply - 1; i++) {
        st_push(&P.st, reply + i, 1);
        st_push_block(&P.st);
    }
    memset(&d, 0, sizeof d);
    d.url = "ws://ws.example.com/connect";
    d.transport = P.tr;
    d.clock.now_ms = fake_now;
    d.random.fill = fake_random;
    d.logger.func = check_log;
    P.now = 1000000;
    c = stws_conn_create(&d);
    assert_non_null(c);
    assert_int_equal(stws_conn_connect(c), STWS_OK);
    for (i = 0; i < 30 && stws_conn_get_state(c) != STWS_CONN_CLOSED; i++) {
        (void)stws_conn_step(c);
        if (stws_conn_get_state(c) != STWS_CONN_CLOSED) P.now += 1000;
    }
    assert_int_equal(stws_conn_get_state(c), STWS_CONN_CLOSED);
    assert_int_equal(P.now, 1000000 + 10000); /* exactly at the 10 s timer */
    assert_true(P.st.bytes_received <= 11);
    while (stws_conn_next_event(c, &ev)) {
        if (ev.type == STWS_CONN_EVENT_ERROR) {
            errors++;
            err = ev.error;
        }
        closes += ev.type == STWS_CONN_EVENT_CLOSE;
    }
    assert_int_equal(errors, 1);
    assert_int_equal(err, STWS_ERR_TIMEOUT);
    assert_int_equal(closes, 1);
    assert_string_equal(stws_conn_error_detail(c), "connect: timed out");
    assert_int_equal(P.st.close_calls, 1);
    assert_int_equal(P.log_bad, 0);
    stws_conn_destroy(c);
}

/* ==== the built-in stack against a hostile proxy on 127.0.0.1 ============ */
#ifndef _WIN32

/* The proxy answers the CONNECT with a status line full of terminal escapes:
   the connection's detail and its log line carry it, escaped.  Real sockets,
   so waits are poll() on them with generous bounds. */
static void builtin_proxy_status_line_reaches_the_log_escaped(void **state) {
    static const char reply[] = "HTTP/1.1 403 Forbidden\x1b[2J\x1b]0;pwned\x07\r\n\r\n";
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int lfd, afd = -1, one = 1, i, replied = 0;
    char url[64], req[2048];
    size_t rn = 0;
    stws_conn_desc d;
    stws_conn *c;
    (void)state;
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    (void)setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 1), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    memset(&d, 0, sizeof d);
    d.url = "ws://127.0.0.1:9/connect"; /* never reached: the proxy refuses */
    d.proxy = url;
    d.logger.func = check_log;
    d.connect_timeout_ms = 60000;
    c = stws_conn_create(&d);
    assert_non_null(c);
    assert_int_equal(stws_conn_connect(c), STWS_OK);
    for (i = 0; i < 600 && stws_conn_get_state(c) != STWS_CONN_CLOSED; i++) {
        struct pollfd pf[2];
        int n = 0;
        pf[n].fd = afd < 0 ? lfd : afd;
        pf[n].events = POLLIN;
        n++;
        if (stws_conn_handle(c) >= 0) {
            pf[n].fd = (int)stws_conn_handle(c);
            pf[n].events = (short)((stws_conn_wants(c) & STWS_POLL_WRITE) ? POLLOUT | POLLIN : POLLIN);
            n++;
        }
        (void)poll(pf, (nfds_t)n, 100);
        if (afd < 0 && (pf[0].revents & POLLIN)) {
            afd = accept(lfd, NULL, NULL);
        } else if (afd >= 0 && !replied && (pf[0].revents & POLLIN)) {
            ssize_t k = recv(afd, req + rn, sizeof req - 1 - rn, 0);
            if (k > 0) rn += (size_t)k;
            req[rn] = 0;
            if (strstr(req, "\r\n\r\n")) {
                assert_int_equal(send(afd, reply, sizeof reply - 1, 0), (ssize_t)(sizeof reply - 1));
                replied = 1;
            }
        }
        (void)stws_conn_step(c);
    }
    if (afd >= 0) close(afd);
    close(lfd);
    assert_int_equal(stws_conn_get_state(c), STWS_CONN_CLOSED);
    assert_true(replied);
    assert_non_null(strstr(req, "CONNECT 127.0.0.1:9 HTTP/1.1\r\n"));
    assert_string_equal(stws_conn_error_detail(c), "connect: HTTP proxy CONNECT failed: proxy refused the CONNECT: "
                                                   "HTTP/1.1 403 Forbidden\\x1B[2J\\x1B]0;pwned\\x07");
    assert_true(P.log_lines > 0);
    if (P.log_bad) fail_msg("a log line holds control bytes:\n%s", P.log);
    assert_non_null(strstr(P.log, "proxy refused the CONNECT: HTTP/1.1 403 Forbidden\\x1B[2J"));
    stws_conn_destroy(c);
}
#endif

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(hostile_replies),
        T(refused_credentials),
        T(dripping_reply_meets_the_connect_timeout),
#ifndef _WIN32
        T(builtin_proxy_status_line_reaches_the_log_escaped),
#endif
    };
#undef T
    return cmocka_run_group_tests_name("proxy", tests, NULL, NULL);
}
