/* stws_url_parse(): table-driven tests of the ws:// / wss:// URL parser
   (RFC 6455 §3, RFC 3986).  Every accepted URL is checked field by field,
   including where the host/path/query views point into the input; every
   rejected URL is checked for its exact error code. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "../stream_ws.h"

/* ---- accepted URLs ------------------------------------------------------- */

/* Offsets are byte positions in url; path_off < 0 means "no path in the URL,
   the parser's default "/"" and query_off < 0 means "no query" (ptr NULL). */
typedef struct ok_case {
    const char *url;
    int secure;
    const char *host;
    int host_off;
    unsigned port;
    int port_explicit;
    int ipv6;
    const char *path;
    int path_off;
    const char *query;
    int query_off;
} ok_case;

static const ok_case ok_cases[] = {
    /* url                              sec host            off port  exp v6 path         off  query      off */
    {"ws://example.com",                 0, "example.com",    5,   80, 0, 0, "/",          -1, NULL,       -1},
    {"wss://example.com",                1, "example.com",    6,  443, 0, 0, "/",          -1, NULL,       -1},
    {"ws://example.com/chat",            0, "example.com",    5,   80, 0, 0, "/chat",      16, NULL,       -1},
    {"wss://stream.example.io/connect",  1, "stream.example.io", 6, 443, 0, 0, "/connect", 23, NULL,       -1},
    /* scheme is case-insensitive (RFC 3986 §3.1); the host keeps its case */
    {"WS://Example.COM/Chat",            0, "Example.COM",    5,   80, 0, 0, "/Chat",      16, NULL,       -1},
    {"Wss://h/",                         1, "h",              6,  443, 0, 0, "/",           7, NULL,       -1},
    {"wSs://h",                          1, "h",              6,  443, 0, 0, "/",          -1, NULL,       -1},
    {"WSS://H:1",                        1, "H",              6,    1, 1, 0, "/",          -1, NULL,       -1},
    /* host names */
    {"ws://my-host_1.example.org/",      0, "my-host_1.example.org", 5, 80, 0, 0, "/",     26, NULL,       -1},
    {"ws://localhost:9000",              0, "localhost",      5, 9000, 1, 0, "/",          -1, NULL,       -1},
    /* IPv4 */
    {"ws://127.0.0.1:9000/ws",           0, "127.0.0.1",      5, 9000, 1, 0, "/ws",        19, NULL,       -1},
    {"wss://192.0.2.10",                 1, "192.0.2.10",     6,  443, 0, 0, "/",          -1, NULL,       -1},
    /* bracketed IPv6 literals: host without brackets */
    {"ws://[::1]",                       0, "::1",            6,   80, 0, 1, "/",          -1, NULL,       -1},
    {"ws://[::1]/",                      0, "::1",            6,   80, 0, 1, "/",          10, NULL,       -1},
    {"wss://[2001:db8::1]:8443",         1, "2001:db8::1",    7, 8443, 1, 1, "/",          -1, NULL,       -1},
    {"wss://[2001:db8::1]:8443/p?q",     1, "2001:db8::1",    7, 8443, 1, 1, "/p",         24, "q",        27},
    {"ws://[::ffff:192.0.2.1]/x",        0, "::ffff:192.0.2.1", 6, 80, 0, 1, "/x",         23, NULL,       -1},
    {"ws://[FE80::A:b]:80",              0, "FE80::A:b",      6,   80, 1, 1, "/",          -1, NULL,       -1},
    /* ports */
    {"ws://h:8080/",                     0, "h",              5, 8080, 1, 0, "/",          11, NULL,       -1},
    {"ws://h:80",                        0, "h",              5,   80, 1, 0, "/",          -1, NULL,       -1},
    {"wss://h:443/",                     1, "h",              6,  443, 1, 0, "/",          11, NULL,       -1},
    {"wss://h:80",                       1, "h",              6,   80, 1, 0, "/",          -1, NULL,       -1},
    {"ws://h:65535",                     0, "h",              5, 65535, 1, 0, "/",         -1, NULL,       -1},
    {"ws://h:1",                         0, "h",              5,    1, 1, 0, "/",          -1, NULL,       -1},
    {"ws://h:080",                       0, "h",              5,   80, 1, 0, "/",          -1, NULL,       -1},
    /* path and query, default path "/" */
    {"ws://h?x=1",                       0, "h",              5,   80, 0, 0, "/",          -1, "x=1",       7},
    {"ws://h/",                          0, "h",              5,   80, 0, 0, "/",           6, NULL,       -1},
    {"ws://h/a/b?c=d&e",                 0, "h",              5,   80, 0, 0, "/a/b",        6, "c=d&e",    11},
    {"ws://h?",                          0, "h",              5,   80, 0, 0, "/",          -1, "",          7},
    {"ws://h/?",                         0, "h",              5,   80, 0, 0, "/",           6, "",          8},
    {"ws://h:8080?x",                    0, "h",              5, 8080, 1, 0, "/",          -1, "x",        12},
    {"ws://h/p?a?b",                     0, "h",              5,   80, 0, 0, "/p",          6, "a?b",       9},
    {"ws://h/p@x",                       0, "h",              5,   80, 0, 0, "/p@x",        6, NULL,       -1},
    {"ws://h/%20?k=%2F",                 0, "h",              5,   80, 0, 0, "/%20",        6, "k=%2F",    11},
    {"ws://[::1]?v=2",                   0, "::1",            6,   80, 0, 1, "/",          -1, "v=2",      11},
};

static void check_ok(const ok_case *tc) {
    stws_url u;
    stws_result r;
    memset(&u, 0xA5, sizeof u); /* no field may be left over */
    r = stws_url_parse(tc->url, &u);
    if (r != STWS_OK) fail_msg("%s: got %d (%s)", tc->url, r, stws_result_string(r));
    assert_int_equal(u.secure, tc->secure);
    /* host: a view into url at the expected offset */
    assert_ptr_equal(u.host.ptr, tc->url + tc->host_off);
    assert_int_equal(u.host.len, strlen(tc->host));
    assert_memory_equal(u.host.ptr, tc->host, u.host.len);
    assert_int_equal(u.port, tc->port);
    assert_int_equal(u.port_explicit, tc->port_explicit);
    assert_int_equal(u.ipv6, tc->ipv6);
    /* path */
    assert_int_equal(u.path.len, strlen(tc->path));
    assert_non_null(u.path.ptr);
    assert_memory_equal(u.path.ptr, tc->path, u.path.len);
    if (tc->path_off >= 0) assert_ptr_equal(u.path.ptr, tc->url + tc->path_off);
    /* query */
    if (tc->query_off < 0) {
        assert_null(u.query.ptr);
        assert_int_equal(u.query.len, 0);
    } else {
        assert_ptr_equal(u.query.ptr, tc->url + tc->query_off);
        assert_int_equal(u.query.len, strlen(tc->query));
        assert_memory_equal(u.query.ptr, tc->query, u.query.len);
    }
}

static void valid_urls(void **state) {
    size_t i;
    (void)state;
    for (i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++) check_ok(&ok_cases[i]);
}

/* ---- rejected URLs ------------------------------------------------------- */

typedef struct err_case {
    const char *url;
    stws_result expect;
} err_case;

static const err_case err_cases[] = {
    /* other schemes, or not an absolute ws/wss URL */
    {"http://h/", STWS_ERR_URL_SCHEME},
    {"https://h/", STWS_ERR_URL_SCHEME},
    {"ftp://h/", STWS_ERR_URL_SCHEME},
    {"wsx://h/", STWS_ERR_URL_SCHEME},
    {"wss:", STWS_ERR_URL_SCHEME},
    {"ws:", STWS_ERR_URL_SCHEME},
    {"ws", STWS_ERR_URL_SCHEME},
    {"w", STWS_ERR_URL_SCHEME},
    {"ws:/x", STWS_ERR_URL_SCHEME},
    {"wss:/h", STWS_ERR_URL_SCHEME},
    {"ws:h", STWS_ERR_URL_SCHEME},
    {"", STWS_ERR_URL_SCHEME},
    {"ws//h", STWS_ERR_URL_SCHEME},
    {"//h/", STWS_ERR_URL_SCHEME},
    {"h/ws", STWS_ERR_URL_SCHEME},
    /* empty host */
    {"ws://", STWS_ERR_URL_HOST},
    {"wss://", STWS_ERR_URL_HOST},
    {"ws:///p", STWS_ERR_URL_HOST},
    {"ws://:80", STWS_ERR_URL_HOST},
    {"ws://:80/p", STWS_ERR_URL_HOST},
    {"ws://?q", STWS_ERR_URL_HOST},
    /* bad host characters */
    {"ws://h!x/", STWS_ERR_URL_HOST},
    {"ws://a,b/", STWS_ERR_URL_HOST},
    {"ws://a;b/", STWS_ERR_URL_HOST},
    {"ws://h$/", STWS_ERR_URL_HOST},
    {"ws://h*", STWS_ERR_URL_HOST},
    {"ws://h]/", STWS_ERR_URL_HOST},
    /* bracketed literals: unterminated, empty, bad characters, junk after ']' */
    {"ws://[::1", STWS_ERR_URL_HOST},
    {"ws://[::1/x", STWS_ERR_URL_HOST},
    {"ws://[::1:80", STWS_ERR_URL_HOST},
    {"ws://[", STWS_ERR_URL_HOST},
    {"ws://[]", STWS_ERR_URL_HOST},
    {"ws://[]/", STWS_ERR_URL_HOST},
    {"ws://[]:80", STWS_ERR_URL_HOST},
    {"ws://[::g]/", STWS_ERR_URL_HOST},
    {"ws://[example.com]/", STWS_ERR_URL_HOST},
    {"ws://[1:2]/", STWS_ERR_URL_HOST},
    {"ws://[::1]x/", STWS_ERR_URL_HOST},
    {"ws://[::1]]/", STWS_ERR_URL_HOST},
    {"ws://[::1]80", STWS_ERR_URL_HOST},
    /* ports */
    {"ws://h:", STWS_ERR_URL_PORT},
    {"ws://h:/p", STWS_ERR_URL_PORT},
    {"ws://h:0", STWS_ERR_URL_PORT},
    {"ws://h:00000", STWS_ERR_URL_PORT},
    {"ws://h:65536", STWS_ERR_URL_PORT},
    {"ws://h:99999", STWS_ERR_URL_PORT},
    {"ws://h:8a", STWS_ERR_URL_PORT},
    {"ws://h:a8", STWS_ERR_URL_PORT},
    {"ws://h:123456", STWS_ERR_URL_PORT},
    {"ws://h:-1", STWS_ERR_URL_PORT},
    {"ws://h:+80", STWS_ERR_URL_PORT},
    {"ws://h:80:80", STWS_ERR_URL_PORT},
    {"ws://[::1]:", STWS_ERR_URL_PORT},
    {"ws://[::1]:70000/", STWS_ERR_URL_PORT},
    /* fragments, RFC 6455 §3 */
    {"ws://h/p#frag", STWS_ERR_URL_FRAGMENT},
    {"ws://h#f", STWS_ERR_URL_FRAGMENT},
    {"ws://h/?q#", STWS_ERR_URL_FRAGMENT},
    {"wss://h#", STWS_ERR_URL_FRAGMENT},
    /* control characters, space, DEL, non-ASCII */
    {"ws://h/a b", STWS_ERR_URL_CHAR},
    {" ws://h/", STWS_ERR_URL_CHAR},
    {"ws://h/ ", STWS_ERR_URL_CHAR},
    {"ws://h/\x01", STWS_ERR_URL_CHAR},
    {"ws://h/\x1f", STWS_ERR_URL_CHAR},
    {"ws://h\t/", STWS_ERR_URL_CHAR},
    {"ws://h/\r\nX: y", STWS_ERR_URL_CHAR},
    {"ws://h/\x7f", STWS_ERR_URL_CHAR},
    {"ws://h/\x80", STWS_ERR_URL_CHAR},
    {"ws://h/\xc3\xa9", STWS_ERR_URL_CHAR},
    {"ws://h\xc3\xa9.example/", STWS_ERR_URL_CHAR},
    {"ws://h/\xff", STWS_ERR_URL_CHAR},
    /* user information */
    {"ws://user:pw@h/", STWS_ERR_URL_USERINFO},
    {"ws://user@h", STWS_ERR_URL_USERINFO},
    {"wss://@h/", STWS_ERR_URL_USERINFO},
    {"ws://a@[::1]/", STWS_ERR_URL_USERINFO},
};

static void invalid_urls(void **state) {
    size_t i;
    (void)state;
    for (i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
        stws_url u;
        stws_result r = stws_url_parse(err_cases[i].url, &u);
        if (r != err_cases[i].expect)
            fail_msg("\"%s\": expected %d (%s), got %d (%s)", err_cases[i].url,
                     err_cases[i].expect, stws_result_string(err_cases[i].expect), r,
                     stws_result_string(r));
    }
}

static void null_arguments(void **state) {
    stws_url u;
    (void)state;
    assert_int_equal(stws_url_parse(NULL, &u), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_url_parse("ws://h/", NULL), STWS_ERR_INVALID_ARG);
}

/* ---- length limits ------------------------------------------------------- */

/* "ws://h/aaaa..." of exactly n bytes, in an exactly sized allocation. */
static char *url_of_length(size_t n) {
    char *s = (char *)malloc(n + 1);
    assert_non_null(s);
    assert_true(n >= 7);
    memcpy(s, "ws://h/", 7);
    memset(s + 7, 'a', n - 7);
    s[n] = 0;
    return s;
}

/* STWS_MAX_URL is documented as "longest accepted URL in bytes" and
   STWS_ERR_URL_TOO_LONG as "longer than STWS_MAX_URL". */
static void url_length_limit(void **state) {
    static const size_t ok_lens[] = {STWS_MAX_URL - 1, STWS_MAX_URL};
    static const size_t bad_lens[] = {STWS_MAX_URL + 1, STWS_MAX_URL + 2, 2 * STWS_MAX_URL,
                                      16 * STWS_MAX_URL};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof ok_lens / sizeof ok_lens[0]; i++) {
        stws_url u;
        char *s = url_of_length(ok_lens[i]);
        if (stws_url_parse(s, &u) != STWS_OK) fail_msg("URL of %zu bytes rejected", ok_lens[i]);
        assert_ptr_equal(u.path.ptr, s + 6);
        assert_int_equal(u.path.len, ok_lens[i] - 6);
        assert_null(u.query.ptr);
        free(s);
    }
    for (i = 0; i < sizeof bad_lens / sizeof bad_lens[0]; i++) {
        stws_url u;
        char *s = url_of_length(bad_lens[i]);
        stws_result r = stws_url_parse(s, &u);
        if (r != STWS_ERR_URL_TOO_LONG) fail_msg("URL of %zu bytes: got %d", bad_lens[i], r);
        free(s);
    }
}

/* A host name of 253 characters is the DNS maximum (RFC 1035 §2.3.4). */
static void host_name_length(void **state) {
    char url[5 + 254 + 2];
    stws_url u;
    (void)state;
    memcpy(url, "ws://", 5);
    memset(url + 5, 'a', 253);
    url[5 + 253] = '/';
    url[5 + 254] = 0;
    assert_int_equal(stws_url_parse(url, &u), STWS_OK);
    assert_ptr_equal(u.host.ptr, url + 5);
    assert_int_equal(u.host.len, 253);
    assert_ptr_equal(u.path.ptr, url + 5 + 253);
    assert_int_equal(u.path.len, 1);

    memset(url + 5, 'a', 254);
    url[5 + 254] = 0;
    assert_int_equal(stws_url_parse(url, &u), STWS_ERR_URL_HOST);
}

static void quiet(stws_log_level level, const char *message, void *user_data) {
    (void)level;
    (void)message;
    (void)user_data;
}

/* An IPv6 literal is at most 45 characters; a longer bracketed "host" once
   overflowed the connection's host buffer at create. */
static void ipv6_literal_length(void **state) {
    static const char longest[] = "ws://[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]/";
    char url[600];
    stws_url u;
    stws_conn_desc d;
    int i;
    (void)state;
    assert_int_equal(stws_url_parse(longest, &u), STWS_OK);
    assert_int_equal(u.host.len, 45);
    strcpy(url, "ws://[");
    for (i = 0; i < 200; i++) strcat(url, "1:");
    strcat(url, "1]/");
    assert_int_equal(stws_url_parse(url, &u), STWS_ERR_URL_HOST);
    strcpy(url, "ws://[1:2:3:4:5:6:7:8:9:a:b:c:d:e:f:1:2:3:4:5:6:7:8:9]/"); /* 47 characters */
    assert_int_equal(stws_url_parse(url, &u), STWS_ERR_URL_HOST);
    memset(&d, 0, sizeof d);
    d.url = url;
    d.logger.func = quiet;
    assert_null(stws_conn_create(&d));
}

/* Views point into the caller's string and never past its end: parse every
   table URL from an exactly sized heap copy (so ASan sees any over-read). */
static void exact_size_copies(void **state) {
    size_t i;
    (void)state;
    for (i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++) {
        size_t n = strlen(ok_cases[i].url);
        char *s = (char *)malloc(n + 1);
        stws_url u;
        assert_non_null(s);
        memcpy(s, ok_cases[i].url, n + 1);
        assert_int_equal(stws_url_parse(s, &u), STWS_OK);
        assert_true(u.host.ptr >= s && u.host.ptr + u.host.len <= s + n);
        if (u.query.ptr) assert_true(u.query.ptr >= s && u.query.ptr + u.query.len <= s + n);
        free(s);
    }
    for (i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
        size_t n = strlen(err_cases[i].url);
        char *s = (char *)malloc(n + 1);
        stws_url u;
        assert_non_null(s);
        memcpy(s, err_cases[i].url, n + 1);
        assert_int_equal(stws_url_parse(s, &u), err_cases[i].expect);
        free(s);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_urls),
        cmocka_unit_test(invalid_urls),
        cmocka_unit_test(null_arguments),
        cmocka_unit_test(url_length_limit),
        cmocka_unit_test(host_name_length),
        cmocka_unit_test(ipv6_literal_length),
        cmocka_unit_test(exact_size_copies),
    };
    return cmocka_run_group_tests_name("url", tests, NULL, NULL);
}
