/* A hostile server's text never reaches a log line or an event's message
   raw (issue 13, finding 3): connection.error messages, a refused upgrade's
   reason phrase and Location, close reasons.  The Stream client over the
   scripted transport and fake clock of tests/client_util.h, with a logger
   that checks every line as it arrives.

   "Safe" is checked the same way everywhere: no byte below 0x20, no DEL,
   valid UTF-8, no C1 control (U+0080-U+009F) and no U+2028/U+2029.

   This file carries its own implementation (STWS_STATIC, so it does not
   clash with impl.o), to test the escaping function itself as well. */
#define STWS_STATIC
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"
#include "client_util.h"

/* ==== the check =========================================================== */

/* NULL when s is a safe line, else what is wrong with it. */
static const char *unsafe(const char *s) {
    size_t n = strlen(s), i;
    uint32_t st = 0;
    if (stws_utf8_validate(&st, s, n) != n || st) return "invalid UTF-8";
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20) return "a C0 control byte";
        if (c == 0x7F) return "DEL";
        if (c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] < 0xA0) return "a C1 control";
        if (c == 0xE2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80 &&
            ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9))
            return "U+2028/U+2029";
    }
    return NULL;
}

static int hl_lines, hl_bad;
static char hl_first_bad[600];

/* Every log line is checked before the fixture's logger records it. */
static void hl_log(stws_log_level level, const char *msg, void *u) {
    hl_lines++;
    if (unsafe(msg) && !hl_bad++) snprintf(hl_first_bad, sizeof hl_first_bad, "%s", msg);
    cu_log(level, msg, u);
}

static int setup(void **state) {
    cu_setup(state);
    X.d.logger.func = hl_log;
    (void)cu_fetch; /* client_util.h hooks this suite does not use */
    (void)cu_reconnecting;
    hl_lines = hl_bad = 0;
    hl_first_bad[0] = 0;
    return 0;
}

/* Every log line so far and every event's message is safe. */
static void expect_all_safe(void) {
    int i;
    if (hl_bad) {
        const char *why = unsafe(hl_first_bad);
        fail_msg("%d unsafe log line(s); the first has %s: %s", hl_bad, why, hl_first_bad);
    }
    for (i = 0; i < X.nev; i++) {
        const char *why = unsafe(X.ev[i].message);
        if (why) {
            cu_dump_events(0);
            fail_msg("event %d (%s): message has %s", i, cu_ev_name(X.ev[i].type), why);
        }
    }
}

static void start(void) {
    cu_create();
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
}

static const cu_ev *ev_of(stws_client_event_type t) {
    int i = cu_find_ev(t, 0);
    if (i < 0) {
        cu_dump_events(0);
        fail_msg("no %s event", cu_ev_name(t));
    }
    return &X.ev[i];
}

static void expect_log_has(const char *s) {
    if (!X.log || !strstr(X.log, s)) fail_msg("the log lacks \"%s\"; log:\n%s", s, X.log ? X.log : "");
}

/* ==== connection.error ==================================================== */

/* JSON escapes the server may use (RFC 8259 §7), unescaped by the reader:
   a line feed that would forge a second log line, an ANSI colour, BEL, CR,
   DEL, a C1 NEL, U+2028, and a backslash.  The escaped message: */
#define HOSTILE_JSON "line1\\nstream_ws: error: FORGED\\u001b[31mred\\u0007\\r\\u007f\\u0085\\u2028end \\\\ ok"
#define HOSTILE_SAFE "line1\\nstream_ws: error: FORGED\\x1B[31mred\\x07\\r\\x7F\\u0085\\u2028end \\\\ ok"

/* A fatal code (43): the FATAL event and the "client stopped" line. */
static void test_fatal_connection_error_is_escaped(void **state) {
    const cu_ev *e;
    (void)state;
    srv_error(0, 43, 401, HOSTILE_JSON);
    srv_close(0, 1000);
    srv_eof(0);
    start();
    e = ev_of(STWS_CLIENT_EVENT_FATAL);
    assert_int_equal(e->result, STWS_ERR_AUTH);
    assert_int_equal(e->error_code, 43);
    assert_string_equal(e->message, HOSTILE_SAFE);
    expect_log_has("(code 43): " HOSTILE_SAFE);
    assert_true(hl_lines > 0);
    expect_all_safe();
}

/* A transient code: the DISCONNECTED event carries the text, and the client
   retries (the text changed nothing else). */
static void test_transient_connection_error_is_escaped(void **state) {
    const cu_ev *e;
    (void)state;
    srv_error(0, 9, 500, HOSTILE_JSON);
    srv_close(0, 1000);
    srv_eof(0);
    start();
    e = ev_of(STWS_CLIENT_EVENT_DISCONNECTED);
    assert_int_equal(e->result, STWS_ERR_AUTH_TRANSIENT);
    assert_string_equal(e->message, "connection.error 9: " HOSTILE_SAFE);
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_RECONNECTING)->attempt, 1);
    expect_all_safe();
}

/* A message too long to unescape on the stack: cut, marked, still safe. */
static void test_long_connection_error_is_cut(void **state) {
    char big[5000];
    const cu_ev *e;
    size_t i, n;
    (void)state;
    n = (size_t)snprintf(big, sizeof big, "{\"type\":\"connection.error\",\"error\":{\"code\":43,\"message\":\"");
    for (i = 0; i < 400; i++) n += (size_t)snprintf(big + n, sizeof big - n, "ab\\n\\u001b");
    snprintf(big + n, sizeof big - n, "\"}}");
    srv_text(0, big); /* 400 x (a b LF ESC): 1600 bytes unescaped */
    start();
    e = ev_of(STWS_CLIENT_EVENT_FATAL);
    assert_int_equal(e->error_code, 43);
    assert_true(strlen(e->message) < 200);
    assert_int_equal(strncmp(e->message, "ab\\\\n\\\\u001b", 12), 0); /* the raw JSON text, escaped */
    assert_string_equal(e->message + strlen(e->message) - 3, "...");
    expect_all_safe();
}

/* ==== a refused upgrade =================================================== */

/* The response parser refuses CR, ESC and other controls in the reason
   phrase and header values, but lets a tab and obs-text (bytes >= 0x80: an
   8-bit CSI, invalid UTF-8) through, and those go into the detail, the log
   and the DISCONNECTED message.  Valid UTF-8 (é) survives as it is. */
static void test_upgrade_reason_and_location_are_escaped(void **state) {
    const cu_ev *e;
    (void)state;
    X.answer[0] = "HTTP/1.1 302 Fo\tund \x9b" "2J caf\xc3\xa9\r\n"
                  "Location: ws://elsewhere.example/\t\xff\xc2\x9b" "0m?x=1\r\nContent-Length: 0\r\n\r\n";
    start();
    e = ev_of(STWS_CLIENT_EVENT_DISCONNECTED);
    assert_int_equal(e->result, STWS_ERR_HANDSHAKE_STATUS);
    assert_string_equal(e->message, "upgrade refused: HTTP 302 Fo\\tund \xef\xbf\xbd" "2J caf\xc3\xa9, "
                                    "Location: ws://elsewhere.example/\\t\xef\xbf\xbd\\u009B0m?x=1");
    expect_log_has("Location: ws://elsewhere.example/\\t");
    expect_all_safe();
}

/* CR or ESC inside a Location: the parser refuses the response outright, so
   none of the server's text is shown. */
static void test_upgrade_location_with_cr_or_esc_is_malformed(void **state) {
    static const char *const answers[] = {
        "HTTP/1.1 302 Found\r\nLocation: ws://a.example/\rX-Forged: 1\r\n\r\n",
        "HTTP/1.1 302 Found\r\nLocation: ws://a.example/\x1b[2J\r\n\r\n",
    };
    size_t i;
    (void)state;
    for (i = 0; i < 2; i++) {
        const cu_ev *e;
        cu_reset();
        X.answer[0] = answers[i];
        start();
        e = ev_of(STWS_CLIENT_EVENT_DISCONNECTED);
        assert_int_equal(e->result, STWS_ERR_HANDSHAKE_MALFORMED);
        assert_string_equal(e->message, "upgrade response: malformed handshake response");
        expect_all_safe();
    }
}

/* ==== close reasons ======================================================= */

/* The server closes with a reason that holds controls (valid UTF-8: the
   codec accepts it, RFC 6455 §5.5.1): DISCONNECTED shows it, escaped. */
static void test_close_reason_is_shown_escaped(void **state) {
    static const char reason[] = "bye\nstream_ws: error: FORGED\x1b[0m\xc2\x85";
    cu_buf b = {0, 0, 0};
    uint8_t p[64];
    const cu_ev *e;
    (void)state;
    srv_ok(0, "c-0");
    p[0] = 4000 >> 8;
    p[1] = 4000 & 0xFF;
    memcpy(p + 2, reason, sizeof reason - 1);
    cu_frame_to(&b, 0x88, p, 2 + sizeof reason - 1);
    cu_push_buf(0, &b);
    srv_eof(0);
    start();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CONNECTED), 1);
    e = ev_of(STWS_CLIENT_EVENT_DISCONNECTED);
    assert_int_equal(e->close_code, 4000);
    assert_string_equal(e->message, "socket closed (code 4000: bye\\nstream_ws: error: FORGED\\x1B[0m\\u0085)");
    expect_all_safe();
}

/* ==== the escaping function itself ======================================= */

static void expect_safe_copy(const char *in, size_t n, size_t cap, const char *want) {
    char out[256];
    size_t len;
    memset(out, 'Z', sizeof out);
    len = stws__copy_safe(out, cap, in, n);
    assert_int_equal(len, strlen(out));
    assert_string_equal(out, want);
    assert_int_equal((unsigned char)out[cap], 'Z'); /* nothing past cap */
}

static void test_copy_safe_cases(void **state) {
    (void)state;
    expect_safe_copy("plain text", 10, 64, "plain text");
    expect_safe_copy("a\0b", 3, 64, "a\\x00b");
    expect_safe_copy("\t\r\n\x1b\x7f\\", 6, 64, "\\t\\r\\n\\x1B\\x7F\\\\");
    expect_safe_copy("caf\xc3\xa9 \xf0\x9f\x98\x80", 10, 64, "caf\xc3\xa9 \xf0\x9f\x98\x80"); /* é, U+1F600 */
    expect_safe_copy("\xc2\x85\xc2\x9f\xc2\xa0", 6, 64, "\\u0085\\u009F\xc2\xa0"); /* C1 escaped, NBSP kept */
    expect_safe_copy("\xe2\x80\xa8\xe2\x80\xa9\xe2\x80\xaa", 9, 64, "\\u2028\\u2029\xe2\x80\xaa");
    /* invalid UTF-8: each bad byte one U+FFFD */
    expect_safe_copy("\xc0\x80", 2, 64, "\xef\xbf\xbd\xef\xbf\xbd");                      /* overlong */
    expect_safe_copy("\xed\xa0\x80", 3, 64, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");      /* surrogate */
    expect_safe_copy("\xf4\x90\x80\x80", 4, 64,
                     "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");                   /* > U+10FFFF */
    expect_safe_copy("x\xe2\x82", 3, 64, "x\xef\xbf\xbd\xef\xbf\xbd");                     /* cut short */
    expect_safe_copy("\xff\xfe", 2, 64, "\xef\xbf\xbd\xef\xbf\xbd");
    /* fits exactly; one more byte and the cut is marked */
    expect_safe_copy("abc", 3, 4, "abc");
    expect_safe_copy("abcd", 4, 4, "...");
    expect_safe_copy("abcdefgh", 8, 8, "abcd...");
    expect_safe_copy("abc", 3, 3, "ab");   /* no room for the mark: cut plainly */
    expect_safe_copy("abc", 3, 1, "");
    expect_safe_copy("", 0, 1, "");
}

/* Whatever the cap, the cut never splits an escape or a character. */
static void test_copy_safe_cuts_at_boundaries(void **state) {
    static const char in[] = "a\x1b\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80\n\xff bcdefghij";
    size_t cap, n = sizeof in - 1;
    (void)state;
    for (cap = 1; cap < 80; cap++) {
        char out[96];
        size_t len = stws__copy_safe(out, cap, in, n);
        const char *why = unsafe(out);
        assert_true(len < cap);
        if (why) fail_msg("cap %zu: \"%s\" has %s", cap, out, why);
        if (len >= 3 && strcmp(out + len - 3, "...") == 0) continue;
        /* not marked: either the whole text or a cap too small for the mark */
        if (cap >= 4) assert_string_equal(out, "a\\x1B\xc3\xa9\\u2028\xf0\x9f\x98\x80\\n\xef\xbf\xbd bcdefghij");
    }
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, cu_teardown)
    const struct CMUnitTest tests[] = {
        T(test_fatal_connection_error_is_escaped),
        T(test_transient_connection_error_is_escaped),
        T(test_long_connection_error_is_cut),
        T(test_upgrade_reason_and_location_are_escaped),
        T(test_upgrade_location_with_cr_or_esc_is_malformed),
        T(test_close_reason_is_shown_escaped),
        cmocka_unit_test(test_copy_safe_cases),
        cmocka_unit_test(test_copy_safe_cuts_at_boundaries),
    };
#undef T
    return cmocka_run_group_tests_name("hostile text", tests, NULL, NULL);
}
