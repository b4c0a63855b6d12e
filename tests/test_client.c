/* The Stream real-time client (stws_client_*, PROTOCOL.md §1-§6) over a
   scripted multi-socket transport (tests/client_util.h), a fake clock, a
   deterministic random hook and a counting allocator: no sockets, no
   sleeping, every byte the client writes checked. */
#include "client_util.h"

#define AT(ms) (CU_T0 + (uint64_t)(ms))

static const char AUTH0[] = "{\"token\":\"" CU_TOKEN "\",\"user_details\":{\"id\":\"alice\"}}";

/* ==== helpers ============================================================= */

/* Move the fake clock to T0 + ms and let the client do what it has to. */
static void go(uint64_t ms) {
    if (AT(ms) < X.now) fail_msg("the clock cannot go back (%llu)", (unsigned long long)ms);
    X.now = AT(ms);
    cu_settle();
}

static void start(void) {
    cu_create();
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
}

static const cu_ev *last_ev(void) {
    if (!X.nev) fail_msg("no event at all");
    return &X.ev[X.nev - 1];
}

static const cu_ev *ev_of(stws_client_event_type t, int from) {
    int i = cu_find_ev(t, from);
    if (i < 0) {
        cu_dump_events(0);
        fail_msg("no %s event from index %d", cu_ev_name(t), from);
    }
    return &X.ev[i];
}

/* create + connect; socket 0 answers the upgrade and then connection.ok. */
static void up(const char *id) {
    int i;
    srv_ok(0, id);
    start();
    i = cu_find_ev(STWS_CLIENT_EVENT_CONNECTED, 0);
    if (i < 0) {
        cu_dump_events(0);
        fail_msg("not connected");
    }
    assert_string_equal(X.ev[i].conn_id, id);
    assert_string_equal(stws_client_connection_id(X.c), id);
}

/* The delay of the last RECONNECTING event (and checks it is the last one
   but for the DISCONNECTED before it). */
static int last_delay(void) {
    int i;
    for (i = X.nev - 1; i >= 0; i--)
        if (X.ev[i].type == STWS_CLIENT_EVENT_RECONNECTING) return X.ev[i].delay_ms;
    cu_dump_events(0);
    fail_msg("no RECONNECTING event");
    return -1;
}

/* After a drop: wait out the backoff; the next socket answers connection.ok. */
static void reconnect_ok(const char *id) {
    int k = X.nsock, from = X.nev, i;
    srv_ok(k, id);
    X.now += (uint64_t)last_delay();
    cu_settle();
    if (X.nsock != k + 1) fail_msg("expected socket %d to open, %d sockets", k, X.nsock);
    i = cu_find_ev(STWS_CLIENT_EVENT_RECONNECTED, from);
    if (i < 0) i = cu_find_ev(STWS_CLIENT_EVENT_CONNECTED, from);
    if (i < 0) {
        cu_dump_events(from);
        fail_msg("no (RE)CONNECTED on socket %d", k);
    }
    assert_string_equal(X.ev[i].conn_id, id);
}

static void auth_min(char *out, size_t cap, const char *token) {
    snprintf(out, cap, "{\"token\":\"%s\",\"user_details\":{\"id\":\"alice\"}}", token);
}

/* The first line of socket k's upgrade request. */
static void request_line(int k, char *out, size_t cap) {
    const char *e;
    cu_parse_sent(k);
    e = strstr(X.req, "\r\n");
    if (!e) fail_msg("socket %d: no request", k);
    snprintf(out, cap, "%.*s", (int)(e - X.req), X.req);
}

/* Nothing happens any more: an hour of steps opens and reads nothing. */
static void expect_dead_quiet(void) {
    int opens = X.opens, recvs = X.recvs, sends = X.sends, nsock = X.nsock, nev = X.nev, i;
    for (i = 0; i < 60; i++) {
        X.now += 60000;
        cu_settle();
    }
    if (X.opens != opens || X.nsock != nsock) fail_msg("connect attempt after the stop: %d opens", X.opens - opens);
    assert_int_equal(X.recvs, recvs);
    assert_int_equal(X.sends, sends);
    if (X.nev != nev) {
        cu_dump_events(nev);
        fail_msg("events after the stop");
    }
    assert_int_equal(stws_client_timeout(X.c), -1);
}

static int sock_open(int k) { return X.sock[k].is_open; }

/* ==== §1: the endpoint ==================================================== */

/* the os= of the default X-Stream-Client is the platform's (make test-windows) */
#ifdef _WIN32
#define TEST_OS_NAME "windows"
#else
#define TEST_OS_NAME "linux"
#endif

static void test_upgrade_request_query(void **state) {
    static const struct {
        const char *url, *key, *client_id, *line, *host;
        unsigned port;
    } cases[] = {
        {"ws://127.0.0.1:8080/api/v2/connect", "key123", "stream-ws-c-v0.1.0|os=linux",
         "GET /api/v2/connect?api_key=key123&stream-auth-type=jwt&X-Stream-Client=stream-ws-c-v0.1.0%7Cos%3Dlinux "
         "HTTP/1.1",
         "127.0.0.1", 8080},
        {"ws://127.0.0.1:8080/api/v2/connect", "k y|z", "my app|os=linux v1",
         "GET /api/v2/connect?api_key=k+y%7Cz&stream-auth-type=jwt&X-Stream-Client=my+app%7Cos%3Dlinux+v1 HTTP/1.1",
         "127.0.0.1", 8080},
        {"ws://chat.example:9000/connect?region=eu", "abc", "c|d",
         "GET /connect?region=eu&api_key=abc&stream-auth-type=jwt&X-Stream-Client=c%7Cd HTTP/1.1", "chat.example",
         9000},
        {"ws://[::1]/v", "a&b=c/d", "x+y%z",
         "GET /v?api_key=a%26b%3Dc%2Fd&stream-auth-type=jwt&X-Stream-Client=x%2By%25z HTTP/1.1", "::1", 80},
        {"ws://127.0.0.1:8080/api/v2/connect", "key123", NULL,
         "GET /api/v2/connect?api_key=key123&stream-auth-type=jwt&X-Stream-Client=stream-ws-c-v" STWS_VERSION_STRING
         "%7Cos%3D" TEST_OS_NAME " HTTP/1.1",
         "127.0.0.1", 8080},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char line[1024];
        cu_reset();
        X.d.url = cases[i].url;
        X.d.api_key = cases[i].key;
        X.d.client_id = cases[i].client_id;
        X.no_answer[0] = 1;
        start();
        assert_int_equal(X.nsock, 1);
        request_line(0, line, sizeof line);
        if (strcmp(line, cases[i].line) != 0)
            fail_msg("case %zu: request line\n  got  %s\n  want %s", i, line, cases[i].line);
        assert_string_equal(X.sock[0].host, cases[i].host);
        assert_int_equal(X.sock[0].port, cases[i].port);
        /* §1: no token in the URL in this flavour */
        assert_null(strstr(X.req, "" CU_TOKEN ""));
        assert_null(strstr(X.req, "authorization"));
    }
}

/* desc.conn reaches the connection: its upgrade-request options (origin,
   headers) are sent, while what the client owns inside it (conn.url) is
   ignored and the client's URL is used. */
static void test_conn_options_nested(void **state) {
    static const stws_header hdr[] = {{"X-Trace", "t-1"}};
    char line[1024];
    (void)state;
    X.d.conn.url = "ws://ignored.example/nope";
    X.d.conn.origin = "https://app.example";
    X.d.conn.headers = hdr;
    X.d.conn.num_headers = 1;
    X.no_answer[0] = 1;
    start();
    assert_int_equal(X.nsock, 1);
    request_line(0, line, sizeof line);
    assert_non_null(strstr(line, "GET /api/v2/connect?api_key="));
    assert_string_equal(X.sock[0].host, "127.0.0.1");
    assert_non_null(strstr(X.req, "\r\nOrigin: https://app.example\r\n"));
    assert_non_null(strstr(X.req, "\r\nX-Trace: t-1\r\n"));
    assert_null(strstr(X.req, "ignored.example"));
}

/* ==== §2: the auth message ================================================ */

static void test_auth_message_exact(void **state) {
    static const struct {
        const char *name, *image, *custom, *products, *want;
    } cases[] = {
        {NULL, NULL, NULL, NULL, "{\"token\":\"" CU_TOKEN "\",\"user_details\":{\"id\":\"alice\"}}"},
        {"Alice", "https://example.com/a.png", "{\"team\":\"red\",\"n\":1}", "chat,video",
         "{\"token\":\"" CU_TOKEN "\",\"user_details\":{\"id\":\"alice\",\"name\":\"Alice\",\"image\":"
         "\"https://example.com/a.png\",\"custom\":{\"team\":\"red\",\"n\":1}},\"products\":[\"chat\",\"video\"]}"},
        {"Bob", NULL, NULL, "chat,video,feeds",
         "{\"token\":\"" CU_TOKEN "\",\"user_details\":{\"id\":\"alice\",\"name\":\"Bob\"},\"products\":[\"chat\","
         "\"video\",\"feeds\"]}"},
        {NULL, "i", NULL, "feeds",
         "{\"token\":\"" CU_TOKEN "\",\"user_details\":{\"id\":\"alice\",\"image\":\"i\"},\"products\":[\"feeds\"]}"},
        {NULL, NULL, "{\"tags\":[\"a\",\"b\"],\"vip\":true,\"o\":{}}", NULL,
         "{\"token\":\"" CU_TOKEN "\",\"user_details\":{\"id\":\"alice\",\"custom\":{\"tags\":[\"a\",\"b\"],\"vip\":"
         "true,\"o\":{}}}}"},
        /* user input: quotes, backslashes, control characters, non-ASCII */
        {"Q\"uo\\te\x01\x1f\n\t\r/\xc3\xa9", "a\"b\\c", NULL, NULL,
         "{\"token\":\"" CU_TOKEN "\",\"user_details\":{\"id\":\"alice\",\"name\":\"Q\\\"uo\\\\te\\u0001\\u001f\\n\\t"
         "\\r/\xc3\xa9\",\"image\":\"a\\\"b\\\\c\"}}"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cu_reset();
        X.d.user_name = cases[i].name;
        X.d.user_image = cases[i].image;
        X.d.user_custom_json = cases[i].custom;
        X.d.products = cases[i].products;
        start();
        /* the auth frame is the first and only frame before connection.ok */
        cu_expect_texts(0, 1, cases[i].want);
        assert_int_equal(X.nfr, 1);
        assert_int_equal(X.fr[0].fin, 1);
        assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CONNECTED), 0);
    }
}

/* A user field the auth message can never carry (custom that is not JSON,
   a name that is not UTF-8): refused at create ("NULL on a bad desc"), or
   at least a FATAL at the first attempt -- never an endless reconnect loop
   of auth messages that cannot be written (PROTOCOL.md §6: a fatal error
   must stop the loop). */
static void test_unusable_user_fields_never_loop(void **state) {
    static const struct {
        const char *name, *custom;
    } cases[] = {
        {NULL, "{not json"},
        {NULL, "{\"a\":1} x"},
        {"bad \xff utf-8", NULL},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int k;
        cu_reset();
        X.d.user_name = cases[i].name;
        X.d.user_custom_json = cases[i].custom;
        X.c = stws_client_create(&X.d);
        if (!X.c) continue; /* refused at create: fine */
        assert_int_equal(stws_client_connect(X.c), STWS_OK);
        cu_settle();
        for (k = 0; k < 20; k++) {
            X.now += 30000;
            cu_settle();
        }
        if (cu_count_ev(STWS_CLIENT_EVENT_FATAL) != 1 || X.nsock > 1) {
            cu_dump_events(X.nev > 6 ? X.nev - 6 : 0);
            fail_msg("case %zu: create accepted an auth message that cannot be written and the client loops: %d "
                     "connect attempts in 10 min, %d FATAL",
                     i, X.nsock, cu_count_ev(STWS_CLIENT_EVENT_FATAL));
        }
    }
}

static void test_auth_token_from_api_secret(void **state) {
    char want_tok[512], want[1024], tok2[512];
    const char *texts[8];
    int n;
    (void)state;
    X.d.token = NULL;
    X.d.api_secret = "s3cr3t-Shh";
    X.d.user_id = "alice";
    X.unix_s = CU_UNIX0 + 12345;
    start();
    cu_expected_jwt("s3cr3t-Shh", "alice", CU_UNIX0 + 12345 - 5, want_tok, sizeof want_tok);
    auth_min(want, sizeof want, want_tok);
    cu_expect_texts(0, 1, want);
    /* the secret goes nowhere but into the HMAC */
    assert_null(cu_find(X.sock[0].sent, X.sock[0].sent_len, "s3cr3t"));
    assert_true(X.log == NULL || strstr(X.log, "s3cr3t") == NULL);
    assert_true(X.log == NULL || strstr(X.log, want_tok) == NULL);

    /* a plain drop: the next auth still carries a valid token for alice
       (the same one, or one minted now with iat = now - 5) */
    srv_ok(0, "c-0");
    cu_settle();
    srv_eof(0);
    X.unix_s += 100;
    cu_settle();
    reconnect_ok("c-1");
    n = cu_texts(1, texts, 8);
    assert_true(n >= 1);
    cu_expected_jwt("s3cr3t-Shh", "alice", X.unix_s - 5, tok2, sizeof tok2);
    {
        char a1[1024], a2[1024];
        auth_min(a1, sizeof a1, want_tok);
        auth_min(a2, sizeof a2, tok2);
        if (strcmp(texts[0], a1) != 0 && strcmp(texts[0], a2) != 0) fail_msg("auth after a drop: %s", texts[0]);
    }
}

static void test_auth_token_provider_calls(void **state) {
    char want[256];
    (void)state;
    X.d.token = NULL;
    X.d.token_provider.fetch = cu_fetch;
    cu_create();
    assert_int_equal(X.fetches, 0); /* nothing before connect */
    srv_ok(0, "c-0");
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
    assert_int_equal(X.fetches, 1);
    auth_min(want, sizeof want, "" CU_PTOK "1");
    cu_expect_texts(0, 1, want);

    /* drops of every other kind reuse the token */
    srv_eof(0); /* 1006 */
    cu_settle();
    reconnect_ok("c-1");
    cu_expect_texts(1, 1, want);
    X.now += 35000; /* silence */
    cu_settle();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 2);
    reconnect_ok("c-2");
    cu_expect_texts(2, 1, want);
    srv_close(2, 1011);
    srv_eof(2);
    cu_settle();
    /* a transient connection.error (code 17) */
    srv_error(3, 17, 429, "Too many requests");
    srv_close(3, 1000);
    srv_eof(3);
    X.now += (uint64_t)last_delay();
    cu_settle();
    assert_int_equal(X.nsock, 4);
    cu_expect_texts(3, 1, want);
    reconnect_ok("c-4");
    cu_expect_texts(4, 1, want);
    assert_int_equal(X.fetches, 1);

    /* code 40 (the first reply of socket 5): exactly one new fetch, its
       token in the next auth message */
    srv_eof(4);
    cu_settle();
    srv_error(5, 40, 401, "JWTAuth error: token expired");
    srv_close(5, 1000);
    srv_eof(5);
    X.now += (uint64_t)last_delay();
    cu_settle();
    assert_int_equal(X.nsock, 6);
    cu_expect_texts(5, 1, want);
    assert_int_equal(last_ev()->type, STWS_CLIENT_EVENT_RECONNECTING);
    reconnect_ok("c-6");
    assert_int_equal(X.fetches, 2);
    auth_min(want, sizeof want, "" CU_PTOK "2");
    cu_expect_texts(6, 1, want);
    /* and not again on the next ordinary drop */
    srv_eof(6);
    cu_settle();
    reconnect_ok("c-7");
    assert_int_equal(X.fetches, 2);
    cu_expect_texts(7, 1, want);
}

/* A provider that fails: the attempt fails with STWS_ERR_TOKEN and is
   retried with backoff (the provider is asked again). */
/* The header: the provider is "called from inside the pump at the first
   connect" (stws_client_step/poll), not from stws_client_connect(). */
static void test_token_provider_called_inside_the_pump(void **state) {
    (void)state;
    X.d.token = NULL;
    X.d.token_provider.fetch = cu_fetch;
    cu_create();
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    if (X.fetches != 0) fail_msg("the token provider ran inside stws_client_connect(), outside the pump");
    cu_step();
    assert_int_equal(X.fetches, 1);
}

/* A provider answer that is not a JWT never reaches the auth message. */
static void test_token_provider_malformed_token(void **state) {
    const cu_ev *e;
    (void)state;
    X.d.token = NULL;
    X.d.token_provider.fetch = cu_fetch;
    snprintf(X.fetch_prefix, sizeof X.fetch_prefix, "bad\"tok");
    start();
    assert_int_equal(X.fetches, 1);
    assert_int_equal(X.nsock, 0);
    e = ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0);
    assert_int_equal(e->result, STWS_ERR_TOKEN);
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_RECONNECTING, 0)->attempt, 1);
}

static void test_token_provider_failure_is_retried(void **state) {
    const cu_ev *e;
    char want[256];
    (void)state;
    X.d.token = NULL;
    X.d.token_provider.fetch = cu_fetch;
    X.fetch_fail = 1;
    start();
    assert_int_equal(X.fetches, 1);
    assert_int_equal(X.nsock, 0); /* no socket without a token */
    e = ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0);
    if (e->result != STWS_ERR_TOKEN)
        fail_msg("first attempt, provider failed: DISCONNECTED result %d (%s), expected STWS_ERR_TOKEN",
                 (int)e->result, stws_result_string(e->result));
    e = ev_of(STWS_CLIENT_EVENT_RECONNECTING, 0);
    assert_int_equal(e->attempt, 1);
    reconnect_ok("c-0");
    assert_int_equal(X.fetches, 2);
    auth_min(want, sizeof want, "" CU_PTOK "2");
    cu_expect_texts(0, 1, want);
}

/* After a code 40 the refresh fails once: STWS_ERR_TOKEN, retried with
   backoff, then it works. */
static void test_token_refresh_failure_is_retried(void **state) {
    const cu_ev *e;
    char want[256];
    (void)state;
    X.d.token = NULL;
    X.d.token_provider.fetch = cu_fetch;
    X.fetches = 1; /* tokens count from 2 as in the first part */
    up("c-0");
    assert_int_equal(X.fetches, 2);
    auth_min(want, sizeof want, "" CU_PTOK "2");
    cu_expect_texts(0, 1, want);
    srv_eof(0);
    cu_settle();
    srv_error(1, 40, 401, "expired");
    srv_close(1, 1000);
    srv_eof(1);
    X.now += (uint64_t)last_delay();
    cu_settle();
    assert_int_equal(X.nsock, 2);
    cu_expect_texts(1, 1, want); /* same token: no fetch on a plain drop */
    assert_int_equal(X.fetches, 2);
    X.fetch_fail = 1;
    {
        int from = X.nev;
        X.now += (uint64_t)last_delay();
        cu_settle();
        assert_int_equal(X.fetches, 3);
        assert_int_equal(X.nsock, 2); /* no socket without a token */
        e = ev_of(STWS_CLIENT_EVENT_DISCONNECTED, from);
        assert_int_equal(e->result, STWS_ERR_TOKEN);
        assert_int_equal(ev_of(STWS_CLIENT_EVENT_RECONNECTING, from)->attempt, 3); /* drop, code 40, no token */
    }
    reconnect_ok("c-2");
    assert_int_equal(X.fetches, 4);
    auth_min(want, sizeof want, "" CU_PTOK "4");
    cu_expect_texts(2, 1, want);
}

/* ==== §3: connection.ok ==================================================== */

static void test_connection_ok_is_the_only_success(void **state) {
    int i;
    const cu_ev *e;
    (void)state;
    start();
    assert_string_equal(stws_client_connection_id(X.c), "");
    /* other messages before connection.ok are events, not success */
    srv_health(0, "zzz");
    srv_event(0, "message.new", 1);
    srv_text(0, "{\"type\":\"connection.okay\",\"connection_id\":\"nope\"}");
    cu_settle();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CONNECTED), 0);
    assert_string_equal(stws_client_connection_id(X.c), "");
    assert_int_equal(cu_count_server("health.check"), 1);
    assert_int_equal(cu_count_server("message.new"), 1);

    srv_ok(0, "conn-1");
    cu_settle();
    i = cu_find_ev(STWS_CLIENT_EVENT_CONNECTED, 0);
    assert_true(i >= 0);
    assert_string_equal(X.ev[i].conn_id, "conn-1");
    assert_string_equal(stws_client_connection_id(X.c), "conn-1");
    /* connection.ok is also delivered as a SERVER event, next to CONNECTED */
    assert_int_equal(cu_count_server("connection.ok"), 1);
    {
        int j = i + 1;
        if (i > 0 && X.ev[i - 1].type == STWS_CLIENT_EVENT_SERVER && strcmp(X.ev[i - 1].etype, "connection.ok") == 0)
            j = i - 1;
        assert_true(j < X.nev);
        e = &X.ev[j];
        assert_int_equal(e->type, STWS_CLIENT_EVENT_SERVER);
        assert_string_equal(e->etype, "connection.ok");
        assert_non_null(strstr(e->json, "\"connection_id\":\"conn-1\""));
    }

    /* a second connection.ok on the same socket is just an event */
    srv_ok(0, "conn-other");
    cu_settle();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CONNECTED), 1);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_RECONNECTED), 0);
    assert_int_equal(cu_count_server("connection.ok"), 2);
    assert_string_equal(stws_client_connection_id(X.c), "conn-1");

    /* a drop, then RECONNECTED with the new id */
    srv_eof(0);
    cu_settle();
    e = ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0);
    assert_int_equal(e->result, STWS_ERR_EOF);
    assert_int_equal(e->close_code, 1006);
    assert_true(e->message[0] != 0);
    assert_string_equal(stws_client_connection_id(X.c), "");
    i = X.nev;
    reconnect_ok("conn-2");
    e = ev_of(STWS_CLIENT_EVENT_RECONNECTED, i);
    assert_string_equal(e->conn_id, "conn-2");
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CONNECTED), 1);
    assert_int_equal(cu_count_server("connection.ok"), 3);
    assert_string_equal(stws_client_connection_id(X.c), "conn-2");
}

static void test_upgrade_refused_is_a_transport_failure(void **state) {
    const cu_ev *e;
    (void)state;
    X.answer[0] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    start();
    e = ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0);
    assert_int_equal(e->result, STWS_ERR_HANDSHAKE_STATUS);
    e = ev_of(STWS_CLIENT_EVENT_RECONNECTING, 0);
    assert_int_equal(e->attempt, 1);
    reconnect_ok("c-1");
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CONNECTED), 1);
}

/* ==== §4: keep-alive ======================================================= */

static void test_health_check_after_connection_ok(void **state) {
    const char *hc = "[{\"type\":\"health.check\",\"client_id\":\"conn-A\"}]";
    (void)state;
    up("conn-A"); /* at T0 */
    assert_int_equal(stws_client_timeout(X.c), 25000);
    go(24999);
    cu_expect_texts(0, 1, AUTH0);
    assert_int_equal(stws_client_timeout(X.c), 1);
    go(25000);
    cu_expect_texts(0, 2, AUTH0, hc);
    /* the server answers 10 ms later: next client check 25000 after that */
    X.now = AT(25010);
    srv_health(0, "conn-A");
    cu_settle();
    assert_int_equal(stws_client_timeout(X.c), 25000);
    go(50009);
    cu_expect_texts(0, 2, AUTH0, hc);
    go(50010);
    cu_expect_texts(0, 3, AUTH0, hc, hc);
    X.now = AT(50020);
    srv_health(0, "conn-A");
    cu_settle();
    go(75019);
    cu_expect_texts(0, 3, AUTH0, hc, hc);
    go(75020);
    cu_expect_texts(0, 4, AUTH0, hc, hc, hc);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
}

static void test_server_health_check_moves_the_client_check(void **state) {
    const char *hc = "[{\"type\":\"health.check\",\"client_id\":\"id-\\\"q\\\"\"}]";
    (void)state;
    srv_ok(0, "id-\\\"q\\\""); /* a connection_id with quotes: escaped back */
    start();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CONNECTED), 1);
    assert_string_equal(stws_client_connection_id(X.c), "id-\"q\"");
    X.now = AT(20000);
    srv_health(0, "x");
    cu_settle();
    assert_int_equal(stws_client_timeout(X.c), 25000);
    go(25000);
    go(44999);
    cu_expect_texts(0, 1, AUTH0);
    go(45000);
    cu_expect_texts(0, 2, AUTH0, hc);
    /* no answer: dead 35000 after the server's check */
    go(54999);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
    go(55000);
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0)->result, STWS_ERR_DEAD);
}

static void test_custom_health_and_dead_intervals(void **state) {
    const char *hc = "[{\"type\":\"health.check\",\"client_id\":\"c\"}]";
    (void)state;
    X.d.health_interval_ms = 10000;
    X.d.dead_timeout_ms = 12000;
    up("c");
    assert_int_equal(stws_client_timeout(X.c), 10000);
    go(9999);
    cu_expect_texts(0, 1, AUTH0);
    go(10000);
    cu_expect_texts(0, 2, AUTH0, hc);
    assert_int_equal(stws_client_timeout(X.c), 2000);
    go(11999);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
    go(12000);
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0)->result, STWS_ERR_DEAD);
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_RECONNECTING, 0)->attempt, 1);
}

static void test_health_check_never_before_connection_ok(void **state) {
    (void)state;
    X.d.watchdog_ms = 100000; /* let the handshake wait long */
    start();
    go(60000);
    cu_expect_texts(0, 1, AUTH0);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
}

/* ==== §4: silence ========================================================== */

static void test_silence_drops_the_socket(void **state) {
    const cu_ev *e;
    int i;
    (void)state;
    up("c-0");
    go(34999);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
    assert_true(sock_open(0));
    go(35000);
    assert_false(sock_open(0));
    i = cu_find_ev(STWS_CLIENT_EVENT_DISCONNECTED, 0);
    assert_true(i >= 0);
    cu_expect_types(i, 2, STWS_CLIENT_EVENT_DISCONNECTED, STWS_CLIENT_EVENT_RECONNECTING);
    e = &X.ev[i];
    assert_int_equal(e->result, STWS_ERR_DEAD);
    assert_true(e->message[0] != 0);
    assert_int_equal(X.ev[i + 1].attempt, 1);
    reconnect_ok("c-1");
}

static void test_any_inbound_frame_resets_the_silence_timer(void **state) {
    cu_buf b = {0, 0, 0};
    (void)state;
    up("c-0");
    X.now = AT(20000);
    srv_ping(0); /* dead at 55000 */
    cu_settle();
    go(54999);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
    X.now = AT(54999);
    srv_health(0, "c-0"); /* dead at 89999 */
    cu_settle();
    go(89998);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
    srv_event(0, "message.new", 1); /* dead at 124998 */
    cu_settle();
    go(124997);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
    cu_frame_to(&b, 0x82, "\x01\x02", 2); /* binary: ignored, but life */
    cu_push_buf(0, &b);
    cu_settle();
    go(159996);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
    cu_frame_to(&b, 0x8A, "", 0); /* unsolicited pong */
    cu_push_buf(0, &b);
    cu_settle();
    go(194995);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
    assert_true(sock_open(0));
    go(194996);
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0)->result, STWS_ERR_DEAD);
    /* the ping was answered with a pong */
    cu_parse_sent(0);
    {
        int k, pongs = 0;
        for (k = 0; k < X.nfr; k++) pongs += X.fr[k].opcode == STWS_OP_PONG;
        assert_int_equal(pongs, 1);
    }
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_MALFORMED), 0);
}

/* ==== §5: backoff ========================================================== */

static int lo_of(int n, int cap) {
    long lo = 2000L * (n - 1);
    if (lo < 250) lo = 250;
    return (int)(lo < cap ? lo : cap);
}

static int hi_of(int n, int cap) {
    long hi = 500 + 2000L * n;
    return (int)(hi < cap ? hi : cap);
}

static void check_delay(int n, int cap, int d, uint32_t rnd) {
    int lo = lo_of(n, cap), hi = hi_of(n, cap);
    int ok = lo < hi ? (d >= lo && d < hi) : d == lo;
    if (!ok) fail_msg("n=%d cap=%d rnd=0x%08x: delay %d not in [%d, %d)", n, cap, (unsigned)rnd, d, lo, hi);
}

/* n = 1..16 consecutive failures (every connect fails, the first one
   included), several random values, the default and custom caps. */
static void test_backoff_bounds(void **state) {
    static const uint32_t rnds[] = {0u, 1u, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu, 123456789u, 0xDEADBEEFu};
    static const int caps[] = {0, 5000, 7777, 300};
    int delays[4][7][16];
    size_t ci, ri;
    int n;
    (void)state;
    for (ci = 0; ci < 4; ci++) {
        int cap = caps[ci] ? caps[ci] : 25000;
        for (ri = 0; ri < sizeof rnds / sizeof rnds[0]; ri++) {
            cu_reset();
            X.d.backoff_cap_ms = caps[ci];
            X.pin_delay = 1;
            X.delay_value = rnds[ri];
            X.fail_from = 0;
            for (n = 0; n < CU_MAX_SOCKS; n++) X.sock[n].open_result = STWS_ERR_CONNECT;
            X.now = AT(0);
            start();
            for (n = 0; n < 16; n++) {
                const cu_ev *e = last_ev();
                int d;
                if (e->type != STWS_CLIENT_EVENT_RECONNECTING) {
                    cu_dump_events(0);
                    fail_msg("n=%d: last event is not RECONNECTING", n);
                }
                assert_int_equal(e->attempt, n + 1);
                d = e->delay_ms;
                check_delay(n + 1, cap, d, rnds[ri]); /* PROTOCOL.md §5: the first attempt failed: n = 1 */
                delays[ci][ri][n] = d;
                assert_int_equal(X.nsock, n + 1);
                assert_int_equal(stws_client_timeout(X.c), d);
                if (d > 1) {
                    X.now += (uint64_t)d / 2;
                    cu_settle();
                    assert_int_equal(stws_client_timeout(X.c), d - d / 2);
                    X.now += (uint64_t)(d - d / 2 - 1);
                    cu_settle();
                    assert_int_equal(stws_client_timeout(X.c), 1);
                    assert_int_equal(X.nsock, n + 1); /* not a millisecond early */
                    X.now += 1;
                } else {
                    X.now += (uint64_t)d;
                }
                cu_settle();
                assert_int_equal(X.nsock, n + 2);
                assert_int_equal(X.open_at[n + 1], X.open_at[n] + (uint64_t)d);
                assert_int_equal(ev_of(STWS_CLIENT_EVENT_DISCONNECTED, X.nev - 2)->result, STWS_ERR_CONNECT);
            }
        }
        /* the random value matters where the range has room */
        for (n = 0; n < 16; n++) {
            int distinct = 0;
            if (hi_of(n + 1, cap) - lo_of(n + 1, cap) < 2) continue;
            for (ri = 1; ri < sizeof rnds / sizeof rnds[0]; ri++) distinct += delays[ci][ri][n] != delays[ci][0][n];
            if (!distinct) fail_msg("cap %d n %d: the delay ignores the random value", cap, n);
        }
    }
}

static void test_attempt_number_resets_after_connection_ok(void **state) {
    int i, from;
    (void)state;
    X.pin_delay = 1;
    X.delay_value = 0xFFFFFFFFu;
    up("c-0");
    X.now += STWS_CLIENT_STABLE_MS; /* a healthy socket */
    cu_settle();
    srv_eof(0);
    cu_settle();
    /* three failed attempts */
    for (i = 1; i <= 3; i++) X.sock[i].open_result = STWS_ERR_CONNECT;
    for (i = 1; i <= 4; i++) {
        const cu_ev *e = last_ev();
        assert_int_equal(e->type, STWS_CLIENT_EVENT_RECONNECTING);
        assert_int_equal(e->attempt, i);
        check_delay(i - 1, 25000, e->delay_ms, 0xFFFFFFFFu);
        if (i == 4) break;
        X.now += (uint64_t)e->delay_ms;
        cu_settle();
    }
    reconnect_ok("c-4");
    assert_int_equal(X.nsock, 5);
    X.now += STWS_CLIENT_STABLE_MS;
    cu_settle();
    from = X.nev;
    srv_eof(4);
    cu_settle();
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_RECONNECTING, from)->attempt, 1);
    check_delay(0, 25000, ev_of(STWS_CLIENT_EVENT_RECONNECTING, from)->delay_ms, 0xFFFFFFFFu);
}

/* ==== §6: connection.error codes =========================================== */

static void test_fatal_error_codes(void **state) {
    static const int codes[] = {41, 42, 43, 2, 4, 6, 40};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char msg[64];
        const cu_ev *e;
        int f;
        cu_reset();
        snprintf(msg, sizeof msg, "error text %d", codes[i]);
        srv_error(0, codes[i], codes[i] == 2 ? 404 : 401, msg);
        srv_close(0, 1000);
        srv_eof(0);
        start(); /* static token: 40 is fatal too */
        assert_int_equal(cu_count_server("connection.error"), 1);
        f = cu_find_ev(STWS_CLIENT_EVENT_FATAL, 0);
        if (f < 0) {
            cu_dump_events(0);
            fail_msg("code %d: no FATAL", codes[i]);
        }
        e = &X.ev[f];
        assert_int_equal(e->result, STWS_ERR_AUTH);
        assert_int_equal(e->error_code, codes[i]);
        if (!strstr(e->message, msg)) fail_msg("code %d: FATAL message '%s' lacks '%s'", codes[i], e->message, msg);
        assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_RECONNECTING), 0);
        assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CONNECTED), 0);
        assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_FATAL), 1);
        assert_false(sock_open(0));
        expect_dead_quiet();
        assert_int_equal(X.nsock, 1);
    }
}

/* The server sends connection.error and never closes: the client closes
   (1000) itself and still stops. */
static void test_fatal_error_without_server_close(void **state) {
    (void)state;
    srv_error(0, 43, 401, "signature invalid");
    start();
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_FATAL, 0)->error_code, 43);
    cu_parse_sent(0);
    assert_int_equal(X.fr[X.nfr - 1].opcode, STWS_OP_CLOSE);
    assert_int_equal(X.fr[X.nfr - 1].len, 2);
    assert_int_equal(X.fr[X.nfr - 1].data[0] << 8 | X.fr[X.nfr - 1].data[1], 1000);
    X.now += 1000; /* close timeout */
    cu_settle();
    assert_false(sock_open(0));
    expect_dead_quiet();
    assert_int_equal(X.nsock, 1);
}

/* A fatal connection.error, then a long pause before the next step (a game
   paused for a minute): the conn's close timer ends the socket; the
   connection.ok watchdog of the stopped attempt must not fire and log a
   misleading "no connection.ok in time" after FATAL. */
static void test_no_watchdog_after_fatal(void **state) {
    (void)state;
    srv_error(0, 43, 401, "signature invalid");
    start();
    assert_non_null(ev_of(STWS_CLIENT_EVENT_FATAL, 0));
    X.now += 60000; /* past the close timeout and the 15 s watchdog at once */
    cu_settle();
    assert_false(sock_open(0));
    if (X.log && strstr(X.log, "watchdog")) fail_msg("log after FATAL:\n%s", X.log);
    assert_int_equal(X.nsock, 1);
}

/* What stws_client_step() returns once the client stopped on a fatal
   connection.error: the FATAL event's result, not "retried". */
static void test_step_result_after_fatal_auth(void **state) {
    (void)state;
    srv_error(0, 43, 401, "signature invalid");
    srv_close(0, 1000);
    srv_eof(0);
    start();
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_FATAL, 0)->result, STWS_ERR_AUTH);
    if (X.last_step != STWS_OK && X.last_step != STWS_ERR_AUTH)
        fail_msg("stws_client_step after FATAL STWS_ERR_AUTH returns %d (%s)", (int)X.last_step,
                 stws_result_string(X.last_step));
}

static void test_transient_error_codes_reconnect(void **state) {
    static const struct {
        int code, status;
        const char *json;
    } cases[] = {
        {17, 429, NULL},
        {16, 500, NULL},
        {99, 503, NULL},
        {0, 502, "{\"type\":\"connection.error\",\"connection_id\":\"\",\"error\":{\"message\":\"bad gateway\","
                 "\"StatusCode\":502}}"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const cu_ev *e;
        int d;
        cu_reset();
        if (cases[i].json) srv_text(0, cases[i].json);
        else srv_error(0, cases[i].code, cases[i].status, "transient");
        srv_close(0, 1000); /* the server's usual close after the error */
        srv_eof(0);
        start();
        assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_FATAL), 0);
        assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CLOSED), 0);
        e = ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0);
        assert_int_equal(e->result, STWS_ERR_AUTH_TRANSIENT);
        e = ev_of(STWS_CLIENT_EVENT_RECONNECTING, 0);
        assert_int_equal(e->attempt, 1);
        d = e->delay_ms;
        check_delay(1, 25000, d, 0); /* the first attempt failed: n = 1 (PROTOCOL.md §5) */
        reconnect_ok("c-1");
        assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CONNECTED), 1);
        cu_expect_texts(1, 1, AUTH0); /* a static token stays */
    }
}

static void test_code_40_refreshes_minted_token(void **state) {
    char t1[512], t2[512], a1[1024], a2[1024];
    (void)state;
    X.d.token = NULL;
    X.d.api_secret = "topsecret";
    X.unix_s = CU_UNIX0;
    srv_error(0, 40, 401, "JWTAuth error: token is expired");
    srv_close(0, 1000);
    srv_eof(0);
    start();
    cu_expected_jwt("topsecret", "alice", CU_UNIX0 - 5, t1, sizeof t1);
    auth_min(a1, sizeof a1, t1);
    cu_expect_texts(0, 1, a1);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_FATAL), 0);
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_RECONNECTING, 0)->attempt, 1);
    X.unix_s = CU_UNIX0 + 3600;
    reconnect_ok("c-1");
    cu_expected_jwt("topsecret", "alice", CU_UNIX0 + 3600 - 5, t2, sizeof t2);
    auth_min(a2, sizeof a2, t2);
    cu_expect_texts(1, 1, a2);
    assert_true(strcmp(t1, t2) != 0);
}

static void test_code_40_refreshes_provider_token(void **state) {
    char a[256];
    (void)state;
    X.d.token = NULL;
    X.d.token_provider.fetch = cu_fetch;
    srv_error(0, 40, 401, "expired");
    srv_close(0, 1000);
    srv_eof(0);
    start();
    assert_int_equal(X.fetches, 1);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_FATAL), 0);
    /* the server keeps saying 40: every attempt refreshes once, with backoff */
    srv_error(1, 40, 401, "expired");
    srv_close(1, 1000);
    srv_eof(1);
    X.now += (uint64_t)last_delay();
    cu_settle();
    assert_int_equal(X.fetches, 2);
    auth_min(a, sizeof a, "" CU_PTOK "2");
    cu_expect_texts(1, 1, a);
    assert_int_equal(last_ev()->type, STWS_CLIENT_EVENT_RECONNECTING);
    assert_int_equal(last_ev()->attempt, 2);
    reconnect_ok("c-2");
    assert_int_equal(X.fetches, 3);
    auth_min(a, sizeof a, "" CU_PTOK "3");
    cu_expect_texts(2, 1, a);
}

static void test_code_40_with_static_token_is_fatal_no_loop(void **state) {
    const cu_ev *e;
    (void)state;
    srv_error(0, 40, 401, "JWTAuth error: token is expired");
    srv_close(0, 1000);
    srv_eof(0);
    start();
    e = ev_of(STWS_CLIENT_EVENT_FATAL, 0);
    assert_int_equal(e->result, STWS_ERR_AUTH);
    assert_int_equal(e->error_code, 40);
    assert_non_null(strstr(e->message, "JWTAuth error: token is expired"));
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_RECONNECTING), 0);
    expect_dead_quiet();
    assert_int_equal(X.nsock, 1);
    assert_int_equal(stws_client_send(X.c, "{}", 2), STWS_ERR_CLOSED);
}

/* FATAL carries Stream's message as a human-readable string: JSON escapes
   in error.message are decoded (the event's message is not JSON). */
static void test_fatal_message_is_unescaped(void **state) {
    const cu_ev *e;
    (void)state;
    srv_text(0, "{\"type\":\"connection.error\",\"connection_id\":\"\",\"error\":{\"code\":43,\"message\":"
                "\"token \\\"abc\\\" is \\u00e9 invalid\\n\",\"StatusCode\":401}}");
    srv_close(0, 1000);
    srv_eof(0);
    start();
    e = ev_of(STWS_CLIENT_EVENT_FATAL, 0);
    assert_int_equal(e->error_code, 43);
    if (!strstr(e->message, "token \"abc\" is \xC3\xA9 invalid"))
        fail_msg("FATAL message is '%s', expected the decoded text 'token \"abc\" is \xC3\xA9 invalid'", e->message);
}

/* ==== §5: close codes ====================================================== */

static void test_server_close_1000_stops(void **state) {
    int i;
    (void)state;
    up("c-0");
    srv_close(0, 1000);
    srv_eof(0);
    cu_settle();
    i = cu_find_ev(STWS_CLIENT_EVENT_DISCONNECTED, 0);
    assert_true(i >= 0);
    cu_expect_types(i, 2, STWS_CLIENT_EVENT_DISCONNECTED, STWS_CLIENT_EVENT_CLOSED);
    assert_int_equal(X.ev[i].close_code, 1000);
    assert_int_equal(X.ev[i + 1].close_code, 1000);
    /* the close was echoed */
    cu_parse_sent(0);
    assert_int_equal(X.fr[X.nfr - 1].opcode, STWS_OP_CLOSE);
    expect_dead_quiet();
    assert_int_equal(X.nsock, 1);
}

static void test_abnormal_closes_reconnect(void **state) {
    static const int codes[] = {1006, 1011, 1001, 1012, 4000};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const cu_ev *e;
        int from;
        cu_reset();
        up("c-0");
        from = X.nev;
        if (codes[i] != 1006) srv_close(0, codes[i]);
        srv_eof(0);
        cu_settle();
        e = ev_of(STWS_CLIENT_EVENT_DISCONNECTED, from);
        assert_int_equal(e->close_code, codes[i]);
        if (codes[i] == 1006) assert_int_equal(e->result, STWS_ERR_EOF);
        cu_expect_types(from, 2, STWS_CLIENT_EVENT_DISCONNECTED, STWS_CLIENT_EVENT_RECONNECTING);
        assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CLOSED), 0);
        reconnect_ok("c-1");
    }
}

static void test_transport_error_reconnects(void **state) {
    const cu_ev *e;
    int from;
    (void)state;
    up("c-0");
    from = X.nev;
    st_push_error(&X.sock[0], STWS_ERR_IO);
    cu_settle();
    e = ev_of(STWS_CLIENT_EVENT_DISCONNECTED, from);
    assert_int_equal(e->result, STWS_ERR_IO);
    assert_int_equal(e->close_code, 1006);
    cu_expect_types(from, 2, STWS_CLIENT_EVENT_DISCONNECTED, STWS_CLIENT_EVENT_RECONNECTING);
    reconnect_ok("c-1");
}

/* §5: a server close 1000 before connection.ok, without connection.error,
   is permanent too. */
static void test_server_close_1000_while_authenticating_stops(void **state) {
    int i;
    (void)state;
    srv_close(0, 1000);
    srv_eof(0);
    start();
    i = cu_find_ev(STWS_CLIENT_EVENT_DISCONNECTED, 0);
    assert_true(i >= 0);
    cu_expect_types(i, 2, STWS_CLIENT_EVENT_DISCONNECTED, STWS_CLIENT_EVENT_CLOSED);
    expect_dead_quiet();
    assert_int_equal(X.nsock, 1);
}

/* ==== §3: the handshake watchdog =========================================== */

static void test_watchdog_without_upgrade_answer(void **state) {
    int i;
    (void)state;
    X.no_answer[0] = 1;
    start();
    go(14999);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
    assert_true(sock_open(0));
    go(15000);
    assert_false(sock_open(0));
    i = cu_find_ev(STWS_CLIENT_EVENT_DISCONNECTED, 0);
    assert_true(i >= 0);
    assert_int_equal(X.ev[i].result, STWS_ERR_WATCHDOG);
    cu_expect_types(i, 2, STWS_CLIENT_EVENT_DISCONNECTED, STWS_CLIENT_EVENT_RECONNECTING);
    reconnect_ok("c-1");
}

static void test_watchdog_without_connection_ok(void **state) {
    int i, d;
    uint64_t t1;
    (void)state;
    start(); /* 101, auth sent, no connection.ok */
    cu_expect_texts(0, 1, AUTH0);
    go(14999);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
    go(15000);
    i = cu_find_ev(STWS_CLIENT_EVENT_DISCONNECTED, 0);
    assert_true(i >= 0);
    assert_int_equal(X.ev[i].result, STWS_ERR_WATCHDOG);
    assert_false(sock_open(0));
    d = last_delay();
    /* the second attempt's watchdog runs from its own start */
    X.now += (uint64_t)d;
    cu_settle();
    assert_int_equal(X.nsock, 2);
    t1 = X.open_at[1];
    X.now = t1 + 14999;
    cu_settle();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 1);
    srv_ok(1, "late-but-in-time");
    cu_settle();
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_CONNECTED, 0)->type, STWS_CLIENT_EVENT_CONNECTED);
    X.now = t1 + 15000;
    cu_settle();
    X.now = t1 + 14999 + 34999;
    cu_settle();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 1);
}

static void test_custom_watchdog(void **state) {
    (void)state;
    X.d.watchdog_ms = 4000;
    start();
    go(3999);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
    go(4000);
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0)->result, STWS_ERR_WATCHDOG);
}

/* ==== user close =========================================================== */

static void test_user_close_during_backoff(void **state) {
    int from;
    (void)state;
    X.sock[0].open_result = STWS_ERR_CONNECT;
    start();
    assert_int_equal(last_ev()->type, STWS_CLIENT_EVENT_RECONNECTING);
    from = X.nev;
    assert_int_equal(stws_client_close(X.c), STWS_OK);
    cu_settle();
    cu_expect_types(from, 1, STWS_CLIENT_EVENT_CLOSED);
    expect_dead_quiet();
    assert_int_equal(X.nsock, 1);
    assert_int_equal(X.opens, 1);
    assert_int_equal(stws_client_send(X.c, "{}", 2), STWS_ERR_CLOSED);
    assert_int_equal(stws_client_close(X.c), STWS_OK); /* again: harmless */
    cu_settle();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CLOSED), 1);
}

static void test_user_close_during_connect(void **state) {
    int from, opens;
    (void)state;
    X.sock[0].open_wants = 1000000; /* TCP connect in progress */
    cu_create();
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_step();
    cu_step();
    assert_int_equal(X.nsock, 1);
    from = X.nev;
    opens = X.opens;
    assert_int_equal(stws_client_close(X.c), STWS_OK);
    cu_settle();
    cu_expect_types(from, 1, STWS_CLIENT_EVENT_CLOSED);
    assert_int_equal(X.opens, opens);
    assert_false(X.active);
    expect_dead_quiet();
    assert_int_equal(X.nsock, 1);
}

static void test_user_close_during_upgrade(void **state) {
    int from;
    (void)state;
    X.no_answer[0] = 1;
    start();
    from = X.nev;
    assert_int_equal(stws_client_close(X.c), STWS_OK);
    cu_settle();
    cu_expect_types(from, 1, STWS_CLIENT_EVENT_CLOSED);
    assert_false(sock_open(0));
    expect_dead_quiet();
    assert_int_equal(X.nsock, 1);
}

static void test_user_close_while_authenticating(void **state) {
    int from;
    (void)state;
    start(); /* 101 done, auth sent, waiting for connection.ok */
    from = X.nev;
    assert_int_equal(stws_client_close(X.c), STWS_OK);
    cu_settle();
    srv_close(0, 1000);
    srv_eof(0);
    cu_settle();
    cu_expect_types(from, 1, STWS_CLIENT_EVENT_CLOSED);
    expect_dead_quiet();
    assert_int_equal(X.nsock, 1);
}

static void test_user_close_while_connected(void **state) {
    int from;
    (void)state;
    up("c-0");
    from = X.nev;
    assert_int_equal(stws_client_close(X.c), STWS_OK);
    cu_settle();
    /* close 1000 written, then the server's answer */
    cu_parse_sent(0);
    assert_int_equal(X.fr[X.nfr - 1].opcode, STWS_OP_CLOSE);
    assert_int_equal(X.fr[X.nfr - 1].data[0] << 8 | X.fr[X.nfr - 1].data[1], 1000);
    assert_int_equal(X.nev, from);
    srv_close(0, 1000);
    srv_eof(0);
    cu_settle();
    cu_expect_types(from, 1, STWS_CLIENT_EVENT_CLOSED);
    assert_int_equal(X.ev[from].close_code, 1000);
    assert_string_equal(stws_client_connection_id(X.c), "");
    expect_dead_quiet();
    assert_int_equal(X.nsock, 1);
}

static void test_user_close_server_silent(void **state) {
    int from;
    (void)state;
    up("c-0");
    from = X.nev;
    assert_int_equal(stws_client_close(X.c), STWS_OK);
    cu_settle();
    go(999);
    assert_int_equal(X.nev, from);
    go(1000); /* §8: wait at most 1 s for the server's close */
    cu_expect_types(from, 1, STWS_CLIENT_EVENT_CLOSED);
    assert_false(sock_open(0));
    expect_dead_quiet();
    assert_int_equal(X.nsock, 1);
}

/* ==== §5: stale events ===================================================== */

static int server_seqs(int *out, int max) {
    int i, n = 0;
    for (i = 0; i < X.nev && n < max; i++) {
        const char *p;
        if (X.ev[i].type != STWS_CLIENT_EVENT_SERVER || strcmp(X.ev[i].etype, "message.new") != 0) continue;
        p = strstr(X.ev[i].json, "\"seq\":");
        out[n++] = p ? atoi(p + 6) : -1;
    }
    return n;
}

static void expect_seqs(int n, ...) {
    int got[256], m = server_seqs(got, 256), i, ok = m == n;
    va_list ap;
    va_start(ap, n);
    for (i = 0; i < n; i++) {
        int want = va_arg(ap, int);
        if (ok && got[i] != want) ok = 0;
    }
    va_end(ap);
    if (!ok) {
        cu_dump_events(0);
        fail_msg("message.new sequence differs: got %d events", m);
    }
}

/* A close frame in the middle of a chunk: what follows it on that socket
   (in the chunk and later) is never delivered. */
static void test_no_stale_events_after_close_frame(void **state) {
    cu_buf b = {0, 0, 0};
    char j[128];
    (void)state;
    cu_text_to(&b, "{\"type\":\"connection.ok\",\"connection_id\":\"c-0\"}");
    snprintf(j, sizeof j, "{\"type\":\"message.new\",\"seq\":1}");
    cu_text_to(&b, j);
    cu_close_to(&b, 1011);
    cu_text_to(&b, "{\"type\":\"message.new\",\"seq\":99}");
    cu_push_buf(0, &b);
    srv_event(0, "message.new", 98);
    srv_eof(0);
    start();
    expect_seqs(1, 1);
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0)->close_code, 1011);
    srv_event(1, "message.new", 2);
    reconnect_ok("c-1");
    cu_settle();
    expect_seqs(2, 1, 2);
}

/* A protocol error (masked server frame) in the middle of a chunk. */
static void test_no_stale_events_after_protocol_error(void **state) {
    cu_buf b = {0, 0, 0};
    static const uint8_t masked[] = {0x81, 0x82, 1, 2, 3, 4, 'x' ^ 1, 'y' ^ 2};
    const cu_ev *e;
    (void)state;
    cu_text_to(&b, "{\"type\":\"connection.ok\",\"connection_id\":\"c-0\"}");
    cu_text_to(&b, "{\"type\":\"message.new\",\"seq\":1}");
    cu_put(&b, masked, sizeof masked);
    cu_text_to(&b, "{\"type\":\"message.new\",\"seq\":97}");
    cu_push_buf(0, &b);
    srv_event(0, "message.new", 96); /* read while draining */
    srv_eof(0);
    start();
    expect_seqs(1, 1);
    e = ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0);
    assert_int_equal(e->result, STWS_ERR_MASKED_FRAME);
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_RECONNECTING, 0)->attempt, 1);
    /* the client failed the connection with 1002 */
    cu_parse_sent(0);
    assert_int_equal(X.fr[X.nfr - 1].opcode, STWS_OP_CLOSE);
    assert_int_equal(X.fr[X.nfr - 1].data[0] << 8 | X.fr[X.nfr - 1].data[1], 1002);
    srv_event(1, "message.new", 2);
    reconnect_ok("c-1");
    cu_settle();
    expect_seqs(2, 1, 2);
}

/* Frames received but not yet pulled when a timer drops the socket are not
   delivered after the DISCONNECTED (nor after the new socket starts); frames
   the old script still holds are never read. */
static void test_no_stale_events_after_timer_drop(void **state) {
    cu_buf b = {0, 0, 0};
    stws_client_event ev;
    int i, disc;
    (void)state;
    up("c-0");
    cu_text_to(&b, "{\"type\":\"message.new\",\"seq\":1}");
    cu_text_to(&b, "{\"type\":\"message.new\",\"seq\":95}");
    cu_text_to(&b, "{\"type\":\"message.new\",\"seq\":94}");
    cu_push_buf(0, &b);
    /* by hand: read the chunk, pull one event only */
    X.in_step++;
    stws_client_step(X.c);
    X.in_step--;
    assert_int_equal(stws_client_next_event(X.c, &ev), 1);
    cu_record(&ev, 0);
    X.now += 35000;
    X.in_step++;
    stws_client_step(X.c); /* silence since the first was taken: drop */
    X.in_step--;
    srv_event(0, "message.new", 93); /* the old socket's script, after the drop */
    cu_drain();
    cu_settle();
    disc = cu_find_ev(STWS_CLIENT_EVENT_DISCONNECTED, 0);
    if (disc < 0) {
        /* no drop: the pulled-late events reset the timer; fine if they
           were all delivered before anything else */
        cu_dump_events(0);
        fail_msg("expected a drop 35 s after the last pulled frame");
    }
    for (i = disc + 1; i < X.nev; i++)
        if (X.ev[i].type == STWS_CLIENT_EVENT_SERVER) {
            cu_dump_events(0);
            fail_msg("SERVER event of the old socket after its DISCONNECTED");
        }
    srv_event(1, "message.new", 2);
    reconnect_ok("c-1");
    cu_settle();
    assert_true(st_unread_chunks(&X.sock[0]) == 0 || !sock_open(0));
    for (i = 0; i < X.nev; i++)
        if (X.ev[i].type == STWS_CLIENT_EVENT_SERVER && strstr(X.ev[i].json, "\"seq\":93"))
            fail_msg("a frame scripted after the drop was delivered");
    {
        int seqs[16], n = server_seqs(seqs, 16);
        assert_int_equal(seqs[n - 1], 2);
        for (i = 0; i < n; i++) assert_true(seqs[i] != 93);
    }
}

/* A pull-mode application that steps several times after a timer drop
   before it reads events: one DISCONNECTED, one RECONNECTING, and the next
   attempt works. */
static void test_steps_without_reading_after_drop(void **state) {
    int i;
    (void)state;
    up("c-0");
    X.now += 35000;
    for (i = 0; i < 6; i++) {
        X.in_step++;
        stws_client_step(X.c);
        X.in_step--;
        X.now += 10;
    }
    cu_drain();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 1);
    /* reading DISCONNECTED happened outside step: the retry (and its
       on_reconnecting call) is announced by the next step, due at once */
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_RECONNECTING), 0);
    assert_int_equal(stws_client_timeout(X.c), 0);
    cu_step();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_RECONNECTING), 1);
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0)->result, STWS_ERR_DEAD);
    reconnect_ok("c-1");
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 1);
}

/* ==== the send queue ======================================================= */

static void test_queue_kept_while_disconnected(void **state) {
    (void)state;
    cu_create();
    assert_int_equal(stws_client_send(X.c, "{\"m\":1}", 7), STWS_OK);
    assert_int_equal(stws_client_send(X.c, "{\"m\":22}", 8), STWS_OK);
    assert_int_equal(stws_client_queued(X.c), 15);
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle(); /* upgrade + auth; no connection.ok yet */
    assert_int_equal(stws_client_send(X.c, "{\"m\":333}", 9), STWS_OK);
    cu_settle();
    cu_expect_texts(0, 1, AUTH0);
    assert_int_equal(stws_client_queued(X.c), 24);
    srv_ok(0, "c-0");
    cu_settle();
    cu_expect_texts(0, 4, AUTH0, "{\"m\":1}", "{\"m\":22}", "{\"m\":333}");
    assert_int_equal(stws_client_queued(X.c), 0);
    assert_int_equal(stws_client_send(X.c, "{\"m\":4}", 7), STWS_OK);
    cu_settle();
    cu_expect_texts(0, 5, AUTH0, "{\"m\":1}", "{\"m\":22}", "{\"m\":333}", "{\"m\":4}");
    assert_int_equal(stws_client_queued(X.c), 0);
}

static void test_queue_order_across_three_reconnects(void **state) {
    (void)state;
    up("c-0");
    assert_int_equal(stws_client_send(X.c, "11", 2), STWS_OK);
    cu_settle();
    cu_expect_texts(0, 2, AUTH0, "11");
    /* drop 1 (EOF); two messages during the backoff */
    srv_eof(0);
    cu_settle();
    assert_int_equal(stws_client_send(X.c, "21", 2), STWS_OK);
    assert_int_equal(stws_client_send(X.c, "22", 2), STWS_OK);
    assert_int_equal(stws_client_queued(X.c), 4);
    reconnect_ok("c-1");
    cu_expect_texts(1, 3, AUTH0, "21", "22");
    /* drop 2 (silence); 31 queued; socket 2 authenticates but gets no
       connection.ok and dies at the watchdog: nothing of the queue on it */
    X.now += 35000;
    cu_settle();
    assert_int_equal(stws_client_send(X.c, "31", 2), STWS_OK);
    X.now += (uint64_t)last_delay();
    cu_settle();
    assert_int_equal(X.nsock, 3);
    assert_int_equal(stws_client_send(X.c, "32", 2), STWS_OK);
    cu_settle();
    cu_expect_texts(2, 1, AUTH0);
    X.now += 15000;
    cu_settle();
    assert_int_equal(last_ev()->type, STWS_CLIENT_EVENT_RECONNECTING);
    assert_int_equal(stws_client_send(X.c, "33", 2), STWS_OK);
    assert_int_equal(stws_client_queued(X.c), 6);
    /* reconnect 3: everything in order, then the newer 41 */
    reconnect_ok("c-3");
    assert_int_equal(stws_client_send(X.c, "41", 2), STWS_OK);
    cu_settle();
    cu_expect_texts(3, 5, AUTH0, "31", "32", "33", "41");
    assert_int_equal(stws_client_queued(X.c), 0);
    cu_expect_texts(0, 2, AUTH0, "11"); /* nothing was sent twice */
    cu_expect_texts(1, 3, AUTH0, "21", "22");
}

/* A message cut off by the drop is sent again in full; one fully written is
   not sent again. */
static void test_queue_partial_write_resent_in_full(void **state) {
    const char *A = "{\"text\":\"AAAAAAAAAAA\"}";                       /* 22 bytes */
    const char *B = "{\"text\":\"BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\"}"; /* 48 bytes */
    size_t lb = strlen(B);
    int i;
    (void)state;
    up("c-0");
    X.sock[0].send_chunk = 7;
    X.sock[0].send_block_after_write = 1;
    assert_int_equal(stws_client_send(X.c, A, strlen(A)), STWS_OK);
    assert_int_equal(stws_client_queued(X.c), strlen(A));
    for (i = 0; i < 3; i++) cu_step(); /* 21 of A's 28 frame bytes */
    assert_int_equal(stws_client_queued(X.c), strlen(A));
    cu_step(); /* the last 7 */
    cu_step();
    assert_int_equal(stws_client_queued(X.c), 0);
    cu_expect_texts(0, 2, AUTH0, A);
    /* B: one 7-byte piece, then the socket dies */
    assert_int_equal(stws_client_send(X.c, B, lb), STWS_OK);
    cu_step();
    srv_eof(0);
    cu_step();
    cu_settle();
    assert_false(sock_open(0));
    cu_parse_sent(0);
    assert_true(X.fr_partial > 0 && X.fr_partial < lb + 6);
    assert_int_equal(stws_client_queued(X.c), lb);
    reconnect_ok("c-1");
    cu_expect_texts(1, 2, AUTH0, B);
    assert_int_equal(X.fr_partial, 0);
    assert_int_equal(stws_client_queued(X.c), 0);

    /* all but the very last byte of C written when the socket dies */
    X.sock[1].send_chunk = strlen(A) + 6 - 1;
    X.sock[1].send_block_after_write = 1;
    srv_eof(1);
    assert_int_equal(stws_client_send(X.c, A, strlen(A)), STWS_OK);
    cu_step();
    cu_settle();
    assert_false(sock_open(1));
    cu_parse_sent(1);
    assert_int_equal(X.fr_partial, strlen(A) + 6 - 1);
    assert_int_equal(stws_client_queued(X.c), strlen(A));
    reconnect_ok("c-2");
    cu_expect_texts(2, 2, AUTH0, A);
    assert_int_equal(stws_client_queued(X.c), 0);
}

/* Written in full in the very step the socket dies: not sent again. */
static void test_queue_written_then_drop_not_resent(void **state) {
    (void)state;
    up("c-0");
    srv_eof(0);
    assert_int_equal(stws_client_send(X.c, "{\"last\":1}", 10), STWS_OK);
    cu_step(); /* flush, then the read sees EOF */
    cu_settle();
    cu_expect_texts(0, 2, AUTH0, "{\"last\":1}");
    assert_int_equal(stws_client_queued(X.c), 0);
    reconnect_ok("c-1");
    cu_expect_texts(1, 1, AUTH0);
}

/* Three 100 KB messages through 4 KB writes: in order, whole, the queue
   shrinking as each one is fully written. */
static void test_queue_large_messages(void **state) {
    static char big[3][100001];
    size_t queued_seen[3] = {0, 0, 0};
    int i, steps;
    (void)state;
    for (i = 0; i < 3; i++) {
        memset(big[i], 'a' + i, 100000);
        big[i][0] = big[i][99999] = '"';
        big[i][100000] = 0;
    }
    up("c-0");
    X.sock[0].send_chunk = 4096;
    X.sock[0].send_block_after_write = 1;
    for (i = 0; i < 3; i++) assert_int_equal(stws_client_send(X.c, big[i], 100000), STWS_OK);
    assert_int_equal(stws_client_queued(X.c), 300000);
    for (steps = 0; steps < 1000 && stws_client_queued(X.c); steps++) {
        size_t q;
        cu_step();
        q = stws_client_queued(X.c);
        if (q == 200000) queued_seen[0]++;
        if (q == 100000) queued_seen[1]++;
        assert_true(q == 300000 || q == 200000 || q == 100000 || q == 0);
    }
    assert_int_equal(stws_client_queued(X.c), 0);
    assert_true(queued_seen[0] > 0 && queued_seen[1] > 0);
    cu_expect_texts(0, 4, AUTH0, big[0], big[1], big[2]);
}

static void test_queue_limit(void **state) {
    char m60[61], m40[41], m100[101];
    (void)state;
    memset(m60, 'x', 60);
    memset(m40, 'y', 40);
    memset(m100, 'z', 100);
    m60[0] = m40[0] = m100[0] = '"';
    m60[59] = m40[39] = m100[99] = '"';
    m60[60] = m40[40] = m100[100] = 0;
    X.d.send_queue_limit = 100;
    cu_create();
    assert_int_equal(stws_client_send(X.c, m60, 60), STWS_OK);
    assert_int_equal(stws_client_send(X.c, m60, 41), STWS_ERR_QUEUE_FULL);
    assert_int_equal(stws_client_queued(X.c), 60);
    assert_int_equal(stws_client_send(X.c, m40, 40), STWS_OK);
    assert_int_equal(stws_client_queued(X.c), 100);
    assert_int_equal(stws_client_send(X.c, "1", 1), STWS_ERR_QUEUE_FULL);
    assert_int_equal(stws_client_send(X.c, m100, 100), STWS_ERR_QUEUE_FULL);
    assert_int_equal(stws_client_queued(X.c), 100);
    srv_ok(0, "c-0");
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
    cu_expect_texts(0, 3, AUTH0, m60, m40);
    assert_int_equal(stws_client_queued(X.c), 0);
    assert_int_equal(stws_client_send(X.c, m100, 100), STWS_OK);
    assert_int_equal(stws_client_send(X.c, "1", 1), STWS_ERR_QUEUE_FULL);
    cu_settle();
    assert_int_equal(stws_client_queued(X.c), 0);
    cu_expect_texts(0, 4, AUTH0, m60, m40, m100);
}

static void test_queue_refuses_invalid_utf8(void **state) {
    static const char *bad[] = {"\xC3\x28", "\xC0\xAF", "\xED\xA0\x80", "\xE2\x82", "ok\xFF", "\xF4\x90\x80\x80"};
    const char *good = "{\"t\":\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"}";
    size_t i;
    (void)state;
    up("c-0");
    assert_int_equal(stws_client_send(X.c, "{\"n\":1}", 7), STWS_OK);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (stws_client_send(X.c, bad[i], strlen(bad[i])) != STWS_ERR_INVALID_UTF8)
            fail_msg("invalid UTF-8 #%zu accepted", i);
    }
    assert_int_equal(stws_client_send(X.c, good, strlen(good)), STWS_OK);
    cu_settle();
    cu_expect_texts(0, 3, AUTH0, "{\"n\":1}", good);
    assert_int_equal(stws_client_send(NULL, "x", 1), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_client_send(X.c, NULL, 1), STWS_ERR_INVALID_ARG);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
}

/* ==== §3, §8: a large fragmented connection.ok =============================== */

static char big_me_id[64];
static int64_t big_last_item = -1;
static size_t big_json_len;

static void inspect_big(const stws_client_event *ev) {
    size_t n = 0;
    if (ev->type != STWS_CLIENT_EVENT_SERVER || ev->event_type.len != 13 ||
        memcmp(ev->event_type.ptr, "connection.ok", 13) != 0)
        return;
    big_json_len = ev->json.len;
    assert_int_equal(stws_json_string_at(&ev->doc, "me.id", big_me_id, sizeof big_me_id, &n), STWS_OK);
    assert_int_equal(n, strlen(big_me_id));
    assert_int_equal(stws_json_int_at(&ev->doc, "me.items[999]", &big_last_item), STWS_OK);
}

static void test_large_fragmented_connection_ok(void **state) {
    static const size_t frag_sizes[] = {1, 13, 125, 126, 127, 200, 4096, 65535, 65536, 7, 16384, 3000};
    static const size_t chunk_sizes[] = {1, 2, 3, 7, 64, 1000, 5000, 16384, 20000, 11, 333};
    cu_buf js = {0, 0, 0}, wire = {0, 0, 0};
    size_t off, fi = 0, ci = 0;
    int i;
    (void)state;
    {
        const char *h = "{\"type\":\"connection.ok\",\"connection_id\":\"big-conn\",\"me\":{\"items\":[";
        cu_put(&js, h, strlen(h));
    }
    for (i = 0; i < 1000; i++) {
        char num[16];
        int n = snprintf(num, sizeof num, "%s%d", i ? "," : "", i);
        cu_put(&js, num, (size_t)n);
    }
    cu_put(&js, "],\"bio\":\"", strlen("],\"bio\":\""));
    while (js.n < 100000) cu_put(&js, "lorem ipsum \\\" \xC3\xA9 ", strlen("lorem ipsum \\\" \xC3\xA9 "));
    cu_put(&js, "\",\"id\":\"alice-big\"}}", strlen("\",\"id\":\"alice-big\"}}"));
    assert_true(js.n > 100000);
    /* fragments of many sizes, a ping between two of them */
    for (off = 0; off < js.n; fi++) {
        size_t n = frag_sizes[fi % (sizeof frag_sizes / sizeof frag_sizes[0])];
        unsigned b0;
        if (n > js.n - off) n = js.n - off;
        b0 = (off == 0 ? 0x01u : 0x00u) | (off + n == js.n ? 0x80u : 0x00u);
        cu_frame_to(&wire, b0, js.p + off, n);
        off += n;
        if (fi == 3) cu_frame_to(&wire, 0x89, "mid", 3);
    }
    cu_text_to(&wire, "{\"type\":\"message.new\",\"seq\":1}");
    for (off = 0; off < wire.n; ci++) {
        size_t n = chunk_sizes[ci % (sizeof chunk_sizes / sizeof chunk_sizes[0])];
        if (n > wire.n - off) n = wire.n - off;
        st_push(&X.sock[0], wire.p + off, n);
        off += n;
    }
    X.inspect = inspect_big;
    start();
    X.inspect = NULL;
    assert_string_equal(ev_of(STWS_CLIENT_EVENT_CONNECTED, 0)->conn_id, "big-conn");
    assert_string_equal(big_me_id, "alice-big");
    assert_int_equal(big_last_item, 999);
    assert_int_equal(big_json_len, js.n);
    assert_int_equal(cu_count_server("connection.ok"), 1);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_MALFORMED), 0);
    expect_seqs(1, 1);
    {
        int k;
        const cu_ev *e = &X.ev[cu_find_ev(STWS_CLIENT_EVENT_SERVER, 0)];
        assert_int_equal(e->json_len, js.n);
        assert_memory_equal(e->json, js.p, js.n);
        /* the ping was answered */
        cu_parse_sent(0);
        for (k = 0; k < X.nfr && X.fr[k].opcode != STWS_OP_PONG; k++) {
        }
        assert_true(k < X.nfr);
        assert_memory_equal(X.fr[k].data, "mid", 3);
    }
    free(js.p);
    free(wire.p);
}

/* ==== malformed events ====================================================== */

static void test_malformed_events(void **state) {
    static const struct {
        const char *text;
        stws_result want;
    } cases[] = {
        {"{\"type\":\"message.new\"", STWS_ERR_JSON},
        {"[1,2,3]", STWS_ERR_EVENT_SHAPE},
        {"\"just a string\"", STWS_ERR_EVENT_SHAPE},
        {"42", STWS_ERR_EVENT_SHAPE},
        {"{\"kind\":\"message.new\"}", STWS_ERR_EVENT_SHAPE},
        {"{\"type\":5}", STWS_ERR_EVENT_SHAPE},
        {"{\"type\":null}", STWS_ERR_EVENT_SHAPE},
        {"{\"type\":{\"a\":\"b\"}}", STWS_ERR_EVENT_SHAPE},
        {"{\"type\":\"a\"} trailing", STWS_ERR_JSON},
        {"{\"type\":\"x\",}", STWS_ERR_JSON},
        {"", STWS_ERR_JSON},
        {"{\"message\":{\"type\":\"message.new\"}}", STWS_ERR_EVENT_SHAPE},
        /* found by the tokenless pass; jsmn (strict) would take each one */
        {"{\"type\":\"x\",\"a\":[1 2]}", STWS_ERR_JSON},
        {"{\"type\":\"x\" \"a\":1}", STWS_ERR_JSON},
        {"{\"type\":\"x\",\"a\":01}", STWS_ERR_JSON},
        {"{\"type\":\"x\",\"a\":tru}", STWS_ERR_JSON},
        {"{\"type\":\"x\",\"a\":\"\\q\"}", STWS_ERR_JSON},
        {"{\"type\":\"x\",\"a\":\"raw\ttab\"}", STWS_ERR_JSON},
        /* the first top-level "type" decides, compared as raw text */
        {"{\"type\":5,\"type\":\"message.new\"}", STWS_ERR_EVENT_SHAPE},
        {"{\"typ\\u0065\":\"message.new\"}", STWS_ERR_EVENT_SHAPE},
    };
    size_t i;
    int from;
    (void)state;
    start(); /* a malformed message before connection.ok too */
    srv_text(0, "{oops");
    cu_settle();
    assert_int_equal(last_ev()->type, STWS_CLIENT_EVENT_MALFORMED);
    assert_int_equal(last_ev()->result, STWS_ERR_JSON);
    srv_ok(0, "c-0");
    cu_settle();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CONNECTED), 1);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const cu_ev *e;
        from = X.nev;
        srv_text(0, cases[i].text);
        srv_event(0, "message.new", (int)i);
        cu_settle();
        if (X.nev - from != 2) {
            cu_dump_events(from);
            fail_msg("case %zu: expected MALFORMED then SERVER", i);
        }
        e = &X.ev[from];
        if (e->type != STWS_CLIENT_EVENT_MALFORMED || e->result != cases[i].want)
            fail_msg("case %zu '%s': %s result %d (%s), expected MALFORMED %d (%s)", i, cases[i].text,
                     cu_ev_name(e->type), (int)e->result, stws_result_string(e->result), (int)cases[i].want,
                     stws_result_string(cases[i].want));
        assert_string_equal(e->json, cases[i].text);
        assert_int_equal(X.ev[from + 1].type, STWS_CLIENT_EVENT_SERVER);
        assert_string_equal(X.ev[from + 1].etype, "message.new");
    }
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 0);
    assert_true(sock_open(0));
}

static void test_malformed_too_many_tokens_and_too_deep(void **state) {
    char deep[1400];
    int i;
    (void)state;
    X.d.max_json_tokens = 20;
    up("c-0");
    srv_text(0, "{\"type\":\"x\",\"a\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}");
    for (i = 0; i < 600; i++) deep[i] = '[';
    for (i = 0; i < 600; i++) deep[600 + i] = ']';
    deep[1200] = 0;
    srv_text(0, deep);
    srv_text(0, "{\"type\":\"small\"}");
    cu_settle();
    {
        int m = cu_find_ev(STWS_CLIENT_EVENT_MALFORMED, 0);
        assert_true(m >= 0);
        assert_int_equal(X.ev[m].result, STWS_ERR_JSON_TOO_BIG);
        m = cu_find_ev(STWS_CLIENT_EVENT_MALFORMED, m + 1);
        assert_true(m >= 0);
        assert_int_equal(X.ev[m].result, STWS_ERR_JSON_TOO_BIG);
    }
    assert_int_equal(cu_count_server("small"), 1);
}

/* ==== lazy look-ups ========================================================= */

static int lazy_seq[64], lazy_nseq, lazy_other, lazy_want_tokens;

/* Look-ups on live events: they walk the event's text (no tokens), none
   allocates, a copy of the event's document works too. */
static void inspect_lazy(const stws_client_event *ev) {
    long allocs = X.allocs;
    int64_t seq = -1;
    char id[16];
    size_t n = 0;
    stws_json_doc copy;
    stws_str v;
    if (ev->type != STWS_CLIENT_EVENT_SERVER) return;
    {
        /* lazy: a value is a span of the text; tokenize_events: a token */
        stws_json_value root;
        assert_int_equal(stws_json_get(&ev->doc, "", &root), STWS_JSON_OBJECT);
        assert_int_equal(root.internal != NULL, lazy_want_tokens);
    }
    if (ev->event_type.len != 11 || memcmp(ev->event_type.ptr, "message.new", 11) != 0) {
        if (ev->event_type.len == 5 && memcmp(ev->event_type.ptr, "other", 5) == 0 && lazy_other++ % 2 == 0) {
            assert_int_equal(stws_json_int_at(&ev->doc, "a[1]", &seq), STWS_OK);
            assert_int_equal(seq, 2);
        }
        return; /* the rest: never looked at, never tokenized */
    }
    assert_int_equal(stws_json_int_at(&ev->doc, "seq", &seq), STWS_OK);
    assert_int_equal(stws_json_string_at(&ev->doc, "message.user.id", id, sizeof id, &n), STWS_OK);
    assert_string_equal(id, "bob");
    copy = ev->doc;
    assert_int_equal(stws_json_find(&copy, "message.text", &v), STWS_JSON_STRING);
    assert_int_equal(v.len, 2);
    assert_memory_equal(v.ptr, "hi", 2);
    assert_int_equal(stws_json_find(&ev->doc, "message.nothing", &v), STWS_JSON_NONE);
    assert_int_equal(X.allocs, allocs);
    if (lazy_nseq < 64) lazy_seq[lazy_nseq++] = (int)seq;
}

static void lazy_lookups(int tokens) {
    int i;
    lazy_nseq = lazy_other = 0;
    lazy_want_tokens = tokens;
    X.d.tokenize_events = tokens;
    up("c-0");
    for (i = 0; i < 20; i++) {
        srv_event(0, "message.new", i);
        if (i % 3 == 0) srv_text(0, "{\"type\":\"other\",\"a\":[1,2,{\"b\":[]}]}");
        if (i % 4 == 0) srv_text(0, "{\"type\":\"broken\",\"a\":[1 2]}");
        if (i % 5 == 0) srv_text(0, "{\"type\":\"untouched\",\"big\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}");
    }
    X.inspect = inspect_lazy;
    cu_settle();
    X.inspect = NULL;
    assert_int_equal(lazy_nseq, 20);
    for (i = 0; i < 20; i++) assert_int_equal(lazy_seq[i], i);
    assert_int_equal(lazy_other, 7);
    assert_int_equal(cu_count_server("untouched"), 4);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_MALFORMED), 5);
    assert_true(sock_open(0));
}

static void test_lazy_lookups(void **state) {
    (void)state;
    lazy_lookups(0);
}

/* desc.tokenize_events: every event arrives as a jsmn token document, the
   same answers, the same MALFORMED events; iteration works on it. */
static void test_tokenized_events(void **state) {
    (void)state;
    lazy_lookups(1);
}

static void test_tokenized_too_many_tokens(void **state) {
    (void)state;
    X.d.tokenize_events = 1;
    X.d.max_json_tokens = 20;
    up("c-0");
    srv_text(0, "{\"type\":\"x\",\"a\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}");
    srv_text(0, "{\"type\":\"small\",\"m\":[{\"id\":1},{\"id\":2}]}");
    cu_settle();
    {
        int m = cu_find_ev(STWS_CLIENT_EVENT_MALFORMED, 0);
        assert_true(m >= 0);
        assert_int_equal(X.ev[m].result, STWS_ERR_JSON_TOO_BIG);
    }
    assert_int_equal(cu_count_server("small"), 1);
}

/* ==== push delivery ========================================================= */

typedef struct push_rec {
    int via;
    stws_client_event_type type;
    char etype[32];
    int seq;
} push_rec;

static push_rec pushes[256];
static int npushes;
static int push_replies;

static void push_cb(stws_client *c, const stws_client_event *ev, void *u) {
    push_rec *p;
    const char *s;
    if (!X.in_step) X.outside_calls++;
    assert_ptr_equal(c, X.c);
    if (npushes == 256) return;
    p = &pushes[npushes++];
    memset(p, 0, sizeof *p);
    p->via = (int)(intptr_t)u;
    p->type = ev->type;
    if (ev->event_type.ptr && ev->event_type.len < sizeof p->etype)
        memcpy(p->etype, ev->event_type.ptr, ev->event_type.len);
    s = ev->json.ptr ? cu_find(ev->json.ptr, ev->json.len, "\"seq\":") : NULL;
    p->seq = s ? atoi(s + 6) : -1;
    /* a handler may send: the reply goes through the queue */
    if (p->via == 2 && push_replies) {
        char r[32];
        int n = snprintf(r, sizeof r, "{\"ack\":%d}", p->seq);
        assert_int_equal(stws_client_send(c, r, (size_t)n), STWS_OK);
    }
}

static void test_push_delivery_only_inside_step_in_order(void **state) {
    static const struct {
        int via;
        const char *etype;
        int seq;
    } want[] = {
        {1, "message.new", 1}, {2, "message.new", 1}, {3, "message.new", 1},   {1, "reaction.new", 2},
        {3, "reaction.new", 2}, {1, "message.new", 3}, {2, "message.new", 3}, {3, "message.new", 3},
    };
    stws_client_event ev;
    int i, j, conn_via1 = 0, conn_via2 = 0, conn_via3 = 0, connected_via1 = 0, connected_other = 0;
    (void)state;
    npushes = 0;
    push_replies = 1;
    X.d.on_event = push_cb;
    X.d.user_data = (void *)(intptr_t)1;
    cu_create();
    assert_int_equal(stws_client_on(X.c, "message.new", push_cb, (void *)(intptr_t)2), STWS_OK);
    assert_int_equal(stws_client_on(X.c, "*", push_cb, (void *)(intptr_t)3), STWS_OK);
    srv_ok(0, "p-0");
    srv_event(0, "message.new", 1);
    srv_event(0, "reaction.new", 2);
    srv_event(0, "message.new", 3);
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    assert_int_equal(npushes, 0);
    cu_settle();
    assert_int_equal(X.outside_calls, 0);
    assert_int_equal(stws_client_next_event(X.c, &ev), 0); /* all pushed already */
    for (i = 0; i < npushes; i++) {
        if (pushes[i].type == STWS_CLIENT_EVENT_SERVER && strcmp(pushes[i].etype, "connection.ok") == 0) {
            conn_via1 += pushes[i].via == 1;
            conn_via2 += pushes[i].via == 2;
            conn_via3 += pushes[i].via == 3;
        }
        if (pushes[i].type == STWS_CLIENT_EVENT_CONNECTED) {
            connected_via1 += pushes[i].via == 1;
            connected_other += pushes[i].via != 1;
        }
    }
    assert_int_equal(conn_via1, 1);
    assert_int_equal(conn_via2, 0);
    assert_int_equal(conn_via3, 1);
    assert_int_equal(connected_via1, 1);
    assert_int_equal(connected_other, 0);
    for (i = 0, j = 0; i < npushes; i++) {
        if (pushes[i].type != STWS_CLIENT_EVENT_SERVER || strcmp(pushes[i].etype, "connection.ok") == 0) continue;
        if (j >= (int)(sizeof want / sizeof want[0]) || pushes[i].via != want[j].via ||
            strcmp(pushes[i].etype, want[j].etype) != 0 || pushes[i].seq != want[j].seq)
            fail_msg("push %d: via %d %s seq %d, expected #%d", i, pushes[i].via, pushes[i].etype, pushes[i].seq, j);
        j++;
    }
    assert_int_equal(j, sizeof want / sizeof want[0]);
    cu_expect_texts(0, 3, AUTH0, "{\"ack\":1}", "{\"ack\":3}");

    /* calls outside step never call back */
    i = npushes;
    assert_int_equal(stws_client_send(X.c, "{}", 2), STWS_OK);
    (void)stws_client_timeout(X.c);
    (void)stws_client_queued(X.c);
    assert_int_equal(stws_client_close(X.c), STWS_OK);
    assert_int_equal(npushes, i);
    srv_close(0, 1000);
    srv_eof(0);
    cu_settle();
    assert_int_equal(X.outside_calls, 0);
    assert_true(npushes > i);
    assert_int_equal(pushes[npushes - 1].type, STWS_CLIENT_EVENT_CLOSED);
    assert_int_equal(pushes[npushes - 1].via, 1);
    push_replies = 0;
}

/* ==== on_reconnecting ======================================================= */

static void test_on_reconnecting_abort(void **state) {
    int i;
    const cu_ev *e;
    (void)state;
    X.d.on_reconnecting = cu_reconnecting;
    X.rc_abort_at = 2;
    up("c-0");
    srv_eof(0);
    cu_settle();
    assert_int_equal(X.rc_calls, 1);
    e = ev_of(STWS_CLIENT_EVENT_RECONNECTING, 0);
    assert_int_equal(e->attempt, X.rc_attempt[0]);
    assert_int_equal(e->delay_ms, X.rc_delay[0]);
    X.sock[1].open_result = STWS_ERR_CONNECT;
    X.now += (uint64_t)e->delay_ms;
    i = X.nev;
    cu_settle();
    assert_int_equal(X.rc_calls, 2);
    assert_int_equal(X.rc_attempt[1], 2);
    cu_expect_types(i, 2, STWS_CLIENT_EVENT_DISCONNECTED, STWS_CLIENT_EVENT_FATAL);
    assert_int_equal(X.ev[i + 1].result, STWS_ERR_ABORTED);
    expect_dead_quiet();
    assert_int_equal(X.nsock, 2);
}

static void test_on_reconnecting_sets_token(void **state) {
    char a[256];
    (void)state;
    X.d.on_reconnecting = cu_reconnecting;
    X.rc_token = CU_JWT_HP "b3ZlcnJpZGU";
    X.rc_token_at = 1;
    up("c-0");
    srv_eof(0);
    cu_settle();
    reconnect_ok("c-1");
    auth_min(a, sizeof a, CU_JWT_HP "b3ZlcnJpZGU");
    cu_expect_texts(1, 1, a);
}

static void test_on_reconnecting_token_wins_over_provider(void **state) {
    char a[256];
    (void)state;
    X.d.token = NULL;
    X.d.token_provider.fetch = cu_fetch;
    X.d.on_reconnecting = cu_reconnecting;
    X.rc_token = CU_JWT_HP "aG9vaw";
    srv_error(0, 40, 401, "expired");
    srv_close(0, 1000);
    srv_eof(0);
    start();
    assert_int_equal(X.fetches, 1);
    reconnect_ok("c-1");
    assert_int_equal(X.fetches, 1); /* the hook's token was used instead */
    auth_min(a, sizeof a, CU_JWT_HP "aG9vaw");
    cu_expect_texts(1, 1, a);
}

static void test_on_reconnecting_sets_url(void **state) {
    char line[512];
    (void)state;
    X.d.on_reconnecting = cu_reconnecting;
    X.rc_url = "ws://127.0.0.1:8080/api/v2/connect?api_key=key123&stream-auth-type=jwt&X-Stream-Client=x&region=eu";
    up("c-0");
    srv_eof(0);
    cu_settle();
    reconnect_ok("c-1");
    request_line(1, line, sizeof line);
    assert_string_equal(line,
                        "GET /api/v2/connect?api_key=key123&stream-auth-type=jwt&X-Stream-Client=x&region=eu HTTP/1.1");
}

/* stws_client_close() called from inside on_reconnecting (which then lets
   the attempt go on): the user's close wins, no further attempt. */
static void test_close_from_on_reconnecting_wins(void **state) {
    int i;
    (void)state;
    X.d.on_reconnecting = cu_reconnecting;
    X.rc_close_at = 1;
    up("c-0");
    srv_eof(0);
    cu_settle();
    assert_int_equal(X.rc_calls, 1);
    srv_ok(1, "should-not-happen");
    X.now += 30000;
    cu_settle();
    i = cu_find_ev(STWS_CLIENT_EVENT_CLOSED, 0);
    if (i < 0 || cu_count_ev(STWS_CLIENT_EVENT_RECONNECTING) != 0 || X.nsock != 1) {
        cu_dump_events(0);
        fail_msg("close inside on_reconnecting: expected CLOSED, no RECONNECTING, no new socket; got %d CLOSED, %d "
                 "RECONNECTING, %d sockets, connection_id now '%s'",
                 cu_count_ev(STWS_CLIENT_EVENT_CLOSED), cu_count_ev(STWS_CLIENT_EVENT_RECONNECTING), X.nsock,
                 stws_client_connection_id(X.c));
    }
    expect_dead_quiet();
}

/* The header: "Callbacks run only inside the step/poll call of the object
   that owns them" -- on_reconnecting too, also for an application that
   reads events with stws_client_next_event(). */
static void test_on_reconnecting_only_inside_step(void **state) {
    (void)state;
    X.d.on_reconnecting = cu_reconnecting;
    up("c-0");
    srv_eof(0);
    cu_settle();
    X.sock[1].open_result = STWS_ERR_CONNECT;
    X.now += (uint64_t)last_delay();
    cu_settle();
    reconnect_ok("c-2");
    assert_int_equal(X.rc_calls, 2);
    if (X.rc_outside)
        fail_msg("on_reconnecting ran outside stws_client_step() in %d of %d calls (from stws_client_next_event)",
                 X.rc_outside, X.rc_calls);
}

/* ==== max_attempts ========================================================== */

static void test_max_attempts_after_drop(void **state) {
    int i;
    (void)state;
    X.d.max_attempts = 3;
    up("c-0");
    for (i = 1; i < CU_MAX_SOCKS; i++) X.sock[i].open_result = STWS_ERR_CONNECT;
    srv_eof(0);
    cu_settle();
    for (i = 1; i <= 3; i++) {
        const cu_ev *e = last_ev();
        if (e->type != STWS_CLIENT_EVENT_RECONNECTING || e->attempt != i) {
            cu_dump_events(0);
            fail_msg("expected RECONNECTING attempt %d", i);
        }
        X.now += (uint64_t)e->delay_ms;
        cu_settle();
        assert_int_equal(X.nsock, i + 1);
    }
    assert_int_equal(last_ev()->type, STWS_CLIENT_EVENT_FATAL);
    assert_int_equal(last_ev()->result, STWS_ERR_ATTEMPTS);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_RECONNECTING), 3);
    expect_dead_quiet();
    assert_int_equal(X.nsock, 4);
}

static void test_max_attempts_never_connected(void **state) {
    int i;
    (void)state;
    X.d.max_attempts = 2;
    for (i = 0; i < CU_MAX_SOCKS; i++) X.sock[i].open_result = STWS_ERR_CONNECT;
    start();
    for (i = 1; i <= 2; i++) {
        assert_int_equal(last_ev()->type, STWS_CLIENT_EVENT_RECONNECTING);
        assert_int_equal(last_ev()->attempt, i);
        X.now += (uint64_t)last_ev()->delay_ms;
        cu_settle();
    }
    assert_int_equal(last_ev()->type, STWS_CLIENT_EVENT_FATAL);
    assert_int_equal(last_ev()->result, STWS_ERR_ATTEMPTS);
    expect_dead_quiet();
    assert_int_equal(X.nsock, 3);
}

/* A healthy connection (connection.ok, then STWS_CLIENT_STABLE_MS) in
   between resets the count. */
static void test_max_attempts_counts_consecutive_only(void **state) {
    int i;
    (void)state;
    X.d.max_attempts = 2;
    up("c-0");
    for (i = 0; i < 4; i++) {
        int k = X.nsock;
        X.now += STWS_CLIENT_STABLE_MS; /* a healthy socket, then the drop */
        cu_settle();
        X.sock[k].open_result = STWS_ERR_CONNECT; /* attempt 1 fails */
        srv_eof(k - 1);
        cu_settle();
        X.now += (uint64_t)last_delay();
        cu_settle();
        assert_int_equal(last_ev()->attempt, 2);
        reconnect_ok("again");
    }
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_FATAL), 0);
}

/* ==== allocations =========================================================== */

static long alloc_create, alloc_warm, alloc_steady;

/* Events, health checks (answered), sends through the queue (also while
   disconnected), and one reconnect cycle. */
static void steady_round(int round) {
    int k = X.nsock - 1, i;
    char id[32], msg[64];
    for (i = 0; i < 100; i++) srv_event(k, "message.new", i);
    cu_settle();
    for (i = 0; i < 50; i++) {
        int n = snprintf(msg, sizeof msg, "{\"type\":\"typing.start\",\"n\":%d}", i % 10);
        assert_int_equal(stws_client_send(X.c, msg, (size_t)n), STWS_OK);
        if (i % 10 == 0) cu_settle();
    }
    cu_settle();
    for (i = 0; i < 3; i++) {
        X.now += 25000;
        cu_settle();
        srv_health(k, "s");
        cu_settle();
    }
    srv_eof(k);
    cu_settle();
    for (i = 0; i < 10; i++) assert_int_equal(stws_client_send(X.c, "{\"offline\":true}", 16), STWS_OK);
    snprintf(id, sizeof id, "round-%d", round);
    reconnect_ok(id);
    cu_settle();
    assert_int_equal(stws_client_queued(X.c), 0);
    cu_events_free();
}

static void inspect_steady(const stws_client_event *ev) {
    int64_t seq = -1;
    if (ev->type == STWS_CLIENT_EVENT_SERVER && ev->event_type.len == 11 &&
        memcmp(ev->event_type.ptr, "message.new", 11) == 0)
        assert_int_equal(stws_json_int_at(&ev->doc, "seq", &seq), STWS_OK);
}

static void test_allocations_steady_state_and_reconnect(void **state) {
    int r;
    long before;
    (void)state;
    cu_create();
    X.inspect = inspect_steady; /* look-ups on every event allocate nothing either */
    alloc_create = X.allocs;
    srv_ok(0, "a-0");
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_CONNECTED), 1);
    steady_round(0); /* warm-up */
    alloc_warm = X.allocs - alloc_create;
    before = X.allocs;
    for (r = 1; r <= 5; r++) steady_round(r);
    alloc_steady = X.allocs - before;
    print_message("[ alloc    ] create %ld, connect + warm-up round %ld, 5 steady rounds (500 events, 300 sends, "
                  "15 health checks, 5 reconnects) %ld; live %ld (%zu bytes)\n",
                  alloc_create, alloc_warm, alloc_steady, X.live, X.bytes_live);
    assert_int_equal(alloc_steady, 0);
    assert_int_equal(X.nsock, 7);
}

/* Same with an api_secret and a provider (the token is re-obtained on 40). */
static void test_allocations_token_refresh(void **state) {
    long before;
    (void)state;
    X.d.token = NULL;
    X.d.api_secret = "sec";
    cu_create();
    srv_ok(0, "a-0");
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
    srv_eof(0);
    cu_settle();
    srv_error(1, 40, 401, "expired");
    srv_close(1, 1000);
    srv_eof(1);
    X.now += (uint64_t)last_delay();
    cu_settle();
    reconnect_ok("a-2");
    before = X.allocs;
    srv_eof(2);
    cu_settle();
    srv_error(3, 40, 401, "expired");
    srv_close(3, 1000);
    srv_eof(3);
    X.now += (uint64_t)last_delay();
    cu_settle();
    assert_int_equal(X.nsock, 4);
    reconnect_ok("a-4");
    srv_eof(4);
    cu_settle();
    reconnect_ok("a-5");
    print_message("[ alloc    ] token refresh (api_secret, code 40) + reconnects after warm-up: %ld\n",
                  X.allocs - before);
    assert_int_equal(X.allocs - before, 0);
}

/* A client stopped by the user may connect again; nothing of the old
   session's error handling leaks into the new one: a later server close
   1000 is permanent again. */
static void test_restart_after_close_starts_clean(void **state) {
    int from;
    (void)state;
    X.no_answer[0] = 0;
    srv_error(0, 17, 503, "busy"); /* transient: retry_after_error */
    start();
    assert_int_equal(cu_count_server("connection.error"), 1);
    assert_int_equal(stws_client_close(X.c), STWS_OK);
    X.now += 1000;
    cu_settle();
    assert_int_equal(last_ev()->type, STWS_CLIENT_EVENT_CLOSED);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_RECONNECTING), 0);
    /* again */
    srv_ok(1, "second");
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
    assert_int_equal(X.nsock, 2);
    assert_string_equal(stws_client_connection_id(X.c), "second");
    from = X.nev;
    srv_close(1, 1000);
    srv_eof(1);
    cu_settle();
    if (cu_find_ev(STWS_CLIENT_EVENT_CLOSED, from) < 0 || cu_find_ev(STWS_CLIENT_EVENT_RECONNECTING, from) >= 0) {
        cu_dump_events(from);
        fail_msg("server close 1000 in the restarted session: expected DISCONNECTED + CLOSED, no reconnect");
    }
    expect_dead_quiet();
    assert_int_equal(X.nsock, 2);
}

/* The header's ALLOCATION section: "client: 3 plus its conn's", and a conn
   with a user transport and a random hook makes 5: 8 at create, none later
   until the first connect. */
static void test_create_allocations_match_doc(void **state) {
    long live;
    (void)state;
    cu_create();
    live = X.live;
    print_message("[ alloc    ] stws_client_create: %ld allocations, %ld live afterwards\n", X.allocs, live);
    assert_int_equal(live, 8);
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    assert_int_equal(X.allocs - X.frees, 8);
    if (X.allocs != 8) fail_msg("stws_client_create made %ld allocations (%ld live), the header says 8", X.allocs, live);
}

/* ==== misc: desc validation, timeouts ======================================= */

static void test_create_rejects_bad_desc(void **state) {
    (void)state;
    X.d.api_key = NULL;
    assert_null(stws_client_create(&X.d));
    cu_desc_defaults();
    X.d.user_id = "";
    assert_null(stws_client_create(&X.d));
    cu_desc_defaults();
    X.d.api_secret = "s"; /* token and secret */
    assert_null(stws_client_create(&X.d));
    cu_desc_defaults();
    X.d.token = NULL; /* no token source */
    assert_null(stws_client_create(&X.d));
    cu_desc_defaults();
    X.d.token = "not a \"jwt\""; /* would break the auth message */
    assert_null(stws_client_create(&X.d));
    cu_desc_defaults();
    X.d.user_custom_json = "[1,2]"; /* PROTOCOL.md §2: custom is an object */
    assert_null(stws_client_create(&X.d));
    assert_null(stws_client_create(NULL));
    assert_int_equal(X.live, 0);
}

static void test_timeout_values(void **state) {
    (void)state;
    cu_create();
    assert_int_equal(stws_client_timeout(X.c), -1); /* idle */
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
    /* authenticating: the watchdog */
    assert_int_equal(stws_client_timeout(X.c), 15000);
    X.now += 5000;
    assert_int_equal(stws_client_timeout(X.c), 10000);
    srv_ok(0, "t");
    cu_settle();
    assert_int_equal(stws_client_timeout(X.c), 25000);
    X.now += 1000;
    srv_ping(0);
    cu_settle();
    assert_int_equal(stws_client_timeout(X.c), 24000);
    assert_int_equal(stws_client_close(X.c), STWS_OK);
    srv_close(0, 1000);
    srv_eof(0);
    cu_settle();
    assert_int_equal(stws_client_timeout(X.c), -1);
}

/* ==== issue 13: reliability, second round =================================== */

/* One step, the events left unread (an app that reads later). */
static stws_result raw_step(void) {
    stws_result r;
    X.in_step++;
    r = stws_client_step(X.c);
    X.in_step--;
    return r;
}

static int log_count(const char *needle) {
    int n = 0;
    const char *p = X.log;
    while (p && (p = strstr(p, needle)) != NULL) {
        n++;
        p += strlen(needle);
    }
    return n;
}

/* Finding 2: the step saw EOF, the app calls stws_client_close() before it
   reads that step's events, then connects again: what the dead socket never
   wrote goes on the new one, in order, exactly once. */
static void test_close_before_reading_eof_keeps_the_queue(void **state) {
    (void)state;
    up("c-0");
    X.sock[0].send_mode = ST_SEND_BLOCK; /* nothing more leaves socket 0 */
    assert_int_equal(stws_client_send(X.c, "{\"m\":1}", 7), STWS_OK);
    assert_int_equal(stws_client_send(X.c, "{\"m\":22}", 8), STWS_OK);
    srv_eof(0);
    assert_int_equal(raw_step(), STWS_OK); /* reads the EOF; nobody reads the events */
    assert_false(sock_open(0));
    assert_int_equal(stws_client_close(X.c), STWS_OK);
    cu_drain();
    assert_int_equal(last_ev()->type, STWS_CLIENT_EVENT_CLOSED);
    assert_int_equal(stws_client_queued(X.c), 15);
    cu_expect_texts(0, 1, AUTH0);
    srv_ok(1, "c-1");
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
    assert_int_equal(X.nsock, 2);
    cu_expect_texts(1, 3, AUTH0, "{\"m\":1}", "{\"m\":22}");
    assert_int_equal(stws_client_queued(X.c), 0);
    /* and the next message is not taken for one of the old ones */
    assert_int_equal(stws_client_send(X.c, "{\"m\":333}", 9), STWS_OK);
    cu_settle();
    cu_expect_texts(1, 4, AUTH0, "{\"m\":1}", "{\"m\":22}", "{\"m\":333}");
    assert_int_equal(stws_client_queued(X.c), 0);
}

/* The delays of the RECONNECTING events from index `from`, in order. */
static int delays_from(int from, int *out, int max) {
    int i, n = 0;
    for (i = from; i < X.nev && n < max; i++)
        if (X.ev[i].type == STWS_CLIENT_EVENT_RECONNECTING) out[n++] = X.ev[i].delay_ms;
    return n;
}

/* Let `fails` attempts fail (refused TCP) one after the other, pinning the
   backoff draw before each failure to rnd[k]. */
static void fail_attempts(int fails, const uint32_t *rnd) {
    int k;
    X.pin_delay = 1;
    for (k = 0; k < fails; k++) {
        X.delay_value = rnd[k];
        X.sock[X.nsock].open_result = STWS_ERR_CONNECT;
        if (k == 0 && !X.nsock) {
            start();
        } else {
            X.now += (uint64_t)last_delay();
            cu_settle();
        }
    }
}

/* Finding 5 (PROTOCOL.md §5): a first attempt that fails waits in the n = 1
   window [250, 2500), a second in n = 2 [2000, 4500), then [4000, 6500),
   [6000, 8500); after a healthy socket drops n = 0 [250, 500).  Both ends of
   each window, exactly (random 0 gives lo, hi - lo - 1 gives hi - 1). */
static void test_backoff_windows_first_failures(void **state) {
    static const uint32_t zero[4] = {0, 0, 0, 0};
    static const uint32_t top_start[4] = {2249, 2499, 2499, 2499};
    static const uint32_t top_drop[4] = {249, 2249, 2499, 2499};
    int d[8], from;
    (void)state;
    /* start-up */
    fail_attempts(4, zero);
    assert_int_equal(delays_from(0, d, 8), 4);
    assert_int_equal(d[0], 250);
    assert_int_equal(d[1], 2000);
    assert_int_equal(d[2], 4000);
    assert_int_equal(d[3], 6000);
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_RECONNECTING, 0)->attempt, 1);
    cu_reset();
    fail_attempts(4, top_start);
    assert_int_equal(delays_from(0, d, 8), 4);
    assert_int_equal(d[0], 2499);
    assert_int_equal(d[1], 4499);
    assert_int_equal(d[2], 6499);
    assert_int_equal(d[3], 8499);
    /* after a healthy drop: the drop, then three failed attempts */
    cu_reset();
    up("c-0");
    X.now += STWS_CLIENT_STABLE_MS;
    cu_settle();
    from = X.nev;
    X.pin_delay = 1;
    X.delay_value = 0;
    srv_eof(0);
    cu_settle();
    fail_attempts(3, zero + 1);
    assert_int_equal(delays_from(from, d, 8), 4);
    assert_int_equal(d[0], 250);
    assert_int_equal(d[1], 250);
    assert_int_equal(d[2], 2000);
    assert_int_equal(d[3], 4000);
    cu_reset();
    up("c-0");
    X.now += STWS_CLIENT_STABLE_MS;
    cu_settle();
    from = X.nev;
    X.pin_delay = 1;
    X.delay_value = top_drop[0];
    srv_eof(0);
    cu_settle();
    fail_attempts(3, top_drop + 1);
    assert_int_equal(delays_from(from, d, 8), 4);
    assert_int_equal(d[0], 499);
    assert_int_equal(d[1], 2499);
    assert_int_equal(d[2], 4499);
    assert_int_equal(d[3], 6499);
}

/* Finding 9: a server that answers connection.ok and drops at once is a
   failure for the backoff and max_attempts; STWS_CLIENT_STABLE_MS after its
   connection.ok a socket counts as healthy. */
static void test_drop_soon_after_connection_ok_is_a_failure(void **state) {
    int d[8], i;
    const cu_ev *e;
    (void)state;
    X.pin_delay = 1;
    X.delay_value = 0;
    X.d.max_attempts = 3;
    up("c-0");
    srv_eof(0);
    cu_settle();
    for (i = 1; i <= 3; i++) {
        srv_ok(i, "flap");
        srv_eof(i);
        X.now += (uint64_t)last_delay();
        cu_settle();
        assert_int_equal(X.nsock, i + 1);
    }
    assert_int_equal(delays_from(0, d, 8), 3);
    assert_int_equal(d[0], 250);  /* n = 1 */
    assert_int_equal(d[1], 2000); /* n = 2 */
    assert_int_equal(d[2], 4000); /* n = 3 */
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_RECONNECTED), 3);
    e = ev_of(STWS_CLIENT_EVENT_FATAL, 0);
    assert_int_equal(e->result, STWS_ERR_ATTEMPTS);
    assert_int_equal(e->cause, STWS_ERR_EOF);
    expect_dead_quiet();

    /* the boundary: 1 ms short of STWS_CLIENT_STABLE_MS fails, at it is healthy */
    cu_reset();
    X.d.max_attempts = 0;
    up("c-0");
    X.now += STWS_CLIENT_STABLE_MS - 1;
    cu_settle();
    srv_eof(0);
    cu_settle();
    assert_int_equal(last_delay(), 250);
    assert_int_equal(last_ev()->attempt, 1);
    srv_ok(1, "c-1");
    X.now += 250;
    cu_settle();
    X.now += STWS_CLIENT_STABLE_MS;
    cu_settle();
    X.delay_value = 249;
    srv_eof(1);
    cu_settle();
    assert_int_equal(last_delay(), 499); /* n = 0 */
    assert_int_equal(last_ev()->attempt, 1);
}

static int n_msg_pushes, n_other_pushes, n_star_pushes;
static void count_msg_cb(stws_client *c, const stws_client_event *ev, void *u) {
    (void)c;
    (void)u;
    if (ev->type == STWS_CLIENT_EVENT_SERVER && ev->event_type.len == 11 &&
        memcmp(ev->event_type.ptr, "message.new", 11) == 0) n_msg_pushes++;
    else n_other_pushes++;
}
static void count_star_cb(stws_client *c, const stws_client_event *ev, void *u) {
    (void)c;
    (void)u;
    (void)ev;
    n_star_pushes++;
}

/* Finding 7: with stws_client_on() handlers (and no desc.on_event) the
   handlers see the server events and the lifecycle events stay pullable; a
   handler can be removed. */
static void test_handlers_leave_lifecycle_events_pullable(void **state) {
    (void)state;
    n_msg_pushes = n_other_pushes = n_star_pushes = 0;
    cu_create();
    assert_int_equal(stws_client_on(X.c, "message.new", count_msg_cb, NULL), STWS_OK);
    assert_int_equal(stws_client_on(X.c, "*", count_star_cb, NULL), STWS_OK);
    srv_ok(0, "c-0");
    srv_event(0, "message.new", 1);
    srv_event(0, "reaction.new", 2);
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
    assert_int_equal(n_msg_pushes, 1);
    assert_int_equal(n_other_pushes, 0);
    assert_int_equal(n_star_pushes, 3); /* connection.ok, message.new, reaction.new */
    cu_expect_types(0, 1, STWS_CLIENT_EVENT_CONNECTED);
    assert_string_equal(X.ev[0].conn_id, "c-0");
    /* a drop and a reconnect: DISCONNECTED, RECONNECTING, RECONNECTED pulled */
    X.now += STWS_CLIENT_STABLE_MS;
    cu_settle();
    srv_eof(0);
    cu_settle();
    reconnect_ok("c-1");
    cu_expect_types(0, 4, STWS_CLIENT_EVENT_CONNECTED, STWS_CLIENT_EVENT_DISCONNECTED,
                    STWS_CLIENT_EVENT_RECONNECTING, STWS_CLIENT_EVENT_RECONNECTED);
    assert_string_equal(X.ev[3].conn_id, "c-1");
    /* removed: the other handler goes on */
    assert_int_equal(stws_client_on(X.c, "message.new", NULL, NULL), STWS_OK);
    assert_int_equal(stws_client_on(X.c, "message.new", NULL, NULL), STWS_ERR_INVALID_ARG);
    srv_event(1, "message.new", 3);
    cu_settle();
    assert_int_equal(n_msg_pushes, 1);
    assert_int_equal(n_star_pushes, 5);
    assert_int_equal(stws_client_on(X.c, "*", NULL, NULL), STWS_OK);
    srv_event(1, "message.new", 4);
    cu_settle();
    assert_int_equal(n_star_pushes, 5);
    /* without handlers server events are pulled again */
    assert_int_equal(cu_count_server("message.new"), 1);
    assert_int_equal(cu_count_server("connection.ok"), 0);
    /* FATAL and CLOSED are pullable with handlers too */
    assert_int_equal(stws_client_on(X.c, "*", count_star_cb, NULL), STWS_OK);
    srv_close(1, 1000);
    srv_eof(1);
    cu_settle();
    assert_int_equal(last_ev()->type, STWS_CLIENT_EVENT_CLOSED);
}

/* Nobody pulls: the latest 8 lifecycle events are kept, no more. */
static void test_handlers_keep_only_the_latest_lifecycle_events(void **state) {
    stws_client_event ev;
    int i, n = 0, last_attempt = 0;
    (void)state;
    n_star_pushes = 0;
    X.fail_from = 1;
    cu_create();
    assert_int_equal(stws_client_on(X.c, "*", count_star_cb, NULL), STWS_OK);
    srv_ok(0, "c-0");
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    for (i = 0; i < 40; i++) {
        X.in_step++;
        (void)stws_client_step(X.c);
        X.in_step--;
        X.now += 30000;
        if (i == 1) srv_eof(0);
    }
    while (stws_client_next_event(X.c, &ev)) {
        n++;
        if (ev.type == STWS_CLIENT_EVENT_RECONNECTING) last_attempt = ev.attempt;
    }
    assert_int_equal(n, 8);
    assert_true(last_attempt >= 15); /* the newest ones */
}

static int destroy_calls;
static void destroy_cb(stws_client *c, const stws_client_event *ev, void *u) {
    (void)ev;
    (void)u;
    destroy_calls++;
    stws_client_destroy(c);
    assert_int_equal(stws_client_step(c), STWS_ERR_STATE); /* still alive: deferred */
    X.c = NULL;
}

static int destroy_on_reconnecting(stws_client *c, int attempt, int delay_ms, stws_reconnect_ctl *ctl, void *u) {
    (void)attempt;
    (void)delay_ms;
    (void)ctl;
    (void)u;
    destroy_calls++;
    stws_client_destroy(c);
    X.c = NULL;
    return 0;
}

static int destroy_fetch(char *buf, size_t cap, void *u) {
    (void)buf;
    (void)cap;
    (void)u;
    destroy_calls++;
    stws_client_destroy(X.c);
    X.c = NULL;
    return -1;
}

/* Finding 7: stws_client_destroy() inside a callback is deferred to the end
   of the step: no callback after it, no use after free (ASan), no leak. */
static void test_destroy_inside_callbacks(void **state) {
    stws_client *c;
    (void)state;
    /* a handler, with two more events behind the one that destroys */
    destroy_calls = 0;
    cu_create();
    c = X.c;
    assert_int_equal(stws_client_on(c, "message.new", destroy_cb, NULL), STWS_OK);
    assert_int_equal(stws_client_on(c, "*", destroy_cb, NULL), STWS_OK);
    srv_ok(0, "c-0");
    srv_event(0, "message.new", 1);
    srv_event(0, "message.new", 2);
    assert_int_equal(stws_client_connect(c), STWS_OK);
    for (int i = 0; i < 20 && X.c; i++) {
        stws_result r;
        X.in_step++;
        r = stws_client_step(c);
        X.in_step--;
        if (!X.c) assert_int_equal(r, STWS_ERR_CLOSED);
    }
    assert_null(X.c);
    assert_int_equal(destroy_calls, 1);
    assert_int_equal(X.live, 0);
    /* desc.on_event */
    cu_reset();
    destroy_calls = 0;
    X.d.on_event = destroy_cb;
    cu_create();
    c = X.c;
    srv_ok(0, "c-0");
    srv_event(0, "message.new", 1);
    assert_int_equal(stws_client_connect(c), STWS_OK);
    for (int i = 0; i < 20 && X.c; i++) {
        X.in_step++;
        (void)stws_client_step(c);
        X.in_step--;
    }
    assert_null(X.c);
    assert_int_equal(destroy_calls, 1);
    assert_int_equal(X.live, 0);
    X.d.on_event = NULL;
    /* on_reconnecting */
    cu_reset();
    destroy_calls = 0;
    X.d.on_reconnecting = destroy_on_reconnecting;
    X.fail_from = 0;
    X.sock[0].open_result = STWS_ERR_CONNECT;
    cu_create();
    c = X.c;
    assert_int_equal(stws_client_connect(c), STWS_OK);
    for (int i = 0; i < 20 && X.c; i++) {
        X.in_step++;
        (void)stws_client_step(c);
        X.in_step--;
        if (X.c) cu_drain();
    }
    assert_null(X.c);
    assert_int_equal(destroy_calls, 1);
    assert_int_equal(X.live, 0);
    X.d.on_reconnecting = NULL;
    /* the token provider */
    cu_reset();
    destroy_calls = 0;
    X.d.token = NULL;
    X.d.token_provider.fetch = destroy_fetch;
    cu_create();
    c = X.c;
    assert_int_equal(stws_client_connect(c), STWS_OK);
    X.in_step++;
    assert_int_equal(stws_client_step(c), STWS_ERR_CLOSED);
    X.in_step--;
    assert_null(X.c);
    assert_int_equal(destroy_calls, 1);
    assert_int_equal(X.nsock, 0); /* no socket opened after it */
    assert_int_equal(X.live, 0);
}

/* Finding 7: close() on a client that was never connected is refused and
   leaves no CLOSED for the next connect to deliver first. */
static void test_close_never_connected(void **state) {
    (void)state;
    cu_create();
    assert_int_equal(stws_client_close(X.c), STWS_ERR_STATE);
    assert_int_equal(cu_drain(), 0);
    assert_int_equal(stws_client_timeout(X.c), -1);
    srv_ok(0, "c-0");
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
    cu_expect_types(0, 2, STWS_CLIENT_EVENT_SERVER, STWS_CLIENT_EVENT_CONNECTED);
}

/* Finding 7: CONNECTED and RECONNECTED carry no reason of an earlier event. */
static void test_connected_event_has_no_stale_message(void **state) {
    (void)state;
    X.sock[0].open_result = STWS_ERR_CONNECT;
    start();
    assert_string_equal(ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0)->message, "connect: TCP connect failed");
    reconnect_ok("c-1");
    assert_string_equal(ev_of(STWS_CLIENT_EVENT_CONNECTED, 0)->message, "");
    srv_close(1, 4000);
    srv_eof(1);
    cu_settle();
    assert_true(ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 2)->message[0] != 0);
    reconnect_ok("c-2");
    assert_string_equal(ev_of(STWS_CLIENT_EVENT_RECONNECTED, 0)->message, "");
}

static int secret_fetch(char *buf, size_t cap, void *u) {
    (void)u;
    return snprintf(buf, cap, "%s", "Zr8qW3xk7mNpT2vY9bLcD4fGhJ6sAeUq1oIiKx5tRwVz0yE8nMbQ3uCjHlOa7dS"); /* a secret */
}

/* Finding 7: only a JWT is a token: an API secret given as token (or
   returned by a provider, or by on_reconnecting) never reaches the wire. */
static void test_token_must_be_a_jwt(void **state) {
    static const char *bad[] = {
        "Zr8qW3xk7mNpT2vY9bLcD4fGhJ6sAeUq1oIiKx5tRwVz0yE8nMbQ3uCjHlOa7dS", /* a secret */
        "static-token",
        "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoiYSJ9",          /* two parts */
        "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoiYSJ9.",         /* empty signature */
        "eyJhbGciOiJIUzI1NiJ9..c2ln",                         /* empty payload */
        ".eyJ1c2VyX2lkIjoiYSJ9.c2ln",                         /* empty header */
        "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoiYSJ9.c2ln.eHg", /* four parts */
        "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoiYSJ9.c2l+",     /* not base64url */
        "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoiYSJ9.c2l=",     /* padding */
        "YWJj.eyJ1c2VyX2lkIjoiYSJ9.c2ln",                     /* header not a JSON object */
    };
    const cu_ev *e;
    size_t i;
    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        X.d.token = bad[i];
        X.c = stws_client_create(&X.d);
        if (X.c) fail_msg("token #%zu (%s) accepted", i, bad[i]);
    }
    X.d.token = CU_TOKEN;
    cu_create();
    stws_client_destroy(X.c);
    X.c = NULL;
    assert_int_equal(X.live, 0);
    /* a provider that hands out a secret: no socket, a retry later */
    X.d.token = NULL;
    X.d.token_provider.fetch = secret_fetch;
    start();
    assert_int_equal(X.nsock, 0);
    e = ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0);
    assert_int_equal(e->result, STWS_ERR_TOKEN);
    assert_null(strstr(X.log ? X.log : "", "Zr8qW3xk"));
    /* on_reconnecting with a secret: refused, the good token stays */
    cu_reset();
    X.d.token_provider.fetch = NULL;
    X.d.token = CU_TOKEN;
    X.d.on_reconnecting = cu_reconnecting;
    X.rc_token = "Zr8qW3xk7mNpT2vY9bLcD4fGhJ6sAeUq1oIiKx5tRwVz0yE8nMbQ3uCjHlOa7dS";
    up("c-0");
    srv_eof(0);
    cu_settle();
    reconnect_ok("c-1");
    cu_expect_texts(1, 1, AUTH0);
    for (i = 0; i < 2; i++) assert_null(cu_find(X.sock[i].sent, X.sock[i].sent_len, "Zr8qW3xk"));
}

/* Finding 7: the client sends JSON only. */
static void test_send_refuses_non_json(void **state) {
    static const char *bad[] = {"hello", "{", "{\"a\":1}{}", "[1,]", "{\"a\":1} x", "{'a':1}", "\"unterminated",
                                "01", "{\"a\":}", " ", "nul", "[1]]"};
    static const char *good[] = {"{\"a\":1}", " [1, 2] ", "\"s\"", "42", "null", "[[{\"t\":\"health.check\"}]]"};
    size_t i;
    (void)state;
    up("c-0");
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (stws_client_send(X.c, bad[i], strlen(bad[i])) != STWS_ERR_JSON) fail_msg("not JSON #%zu accepted", i);
    assert_int_equal(stws_client_send(X.c, "", 0), STWS_ERR_JSON);
    assert_int_equal(stws_client_queued(X.c), 0);
    for (i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(stws_client_send(X.c, good[i], strlen(good[i])), STWS_OK);
    cu_settle();
    cu_expect_texts(0, 7, AUTH0, good[0], good[1], good[2], good[3], good[4], good[5]);
}

/* Finding 7: an upgrade answered 4xx (but 408 and 429) is permanent: FATAL
   at once with the status; 408, 429 and 5xx are retried. */
static void test_permanent_upgrade_refusals_are_fatal(void **state) {
    static const int fatal_st[] = {400, 401, 403, 404, 410};
    static const int retry_st[] = {408, 429, 500, 503};
    char answer[128], want[64];
    size_t i;
    const cu_ev *e;
    (void)state;
    for (i = 0; i < sizeof fatal_st / sizeof fatal_st[0]; i++) {
        cu_reset();
        snprintf(answer, sizeof answer, "HTTP/1.1 %d Nope\r\nContent-Length: 0\r\n\r\n", fatal_st[i]);
        X.answer[0] = answer;
        start();
        cu_expect_types(0, 2, STWS_CLIENT_EVENT_DISCONNECTED, STWS_CLIENT_EVENT_FATAL);
        assert_int_equal(X.ev[0].result, STWS_ERR_HANDSHAKE_STATUS);
        assert_int_equal(X.ev[0].http_status, fatal_st[i]);
        e = &X.ev[1];
        assert_int_equal(e->result, STWS_ERR_HANDSHAKE_STATUS);
        assert_int_equal(e->http_status, fatal_st[i]);
        snprintf(want, sizeof want, "HTTP %d", fatal_st[i]);
        if (!strstr(e->message, want)) fail_msg("FATAL message without the status: %s", e->message);
        assert_int_equal(X.last_step, STWS_ERR_HANDSHAKE_STATUS);
        expect_dead_quiet();
        assert_int_equal(X.nsock, 1);
    }
    for (i = 0; i < sizeof retry_st / sizeof retry_st[0]; i++) {
        cu_reset();
        snprintf(answer, sizeof answer, "HTTP/1.1 %d Later\r\nContent-Length: 0\r\n\r\n", retry_st[i]);
        X.answer[0] = answer;
        start();
        assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_FATAL), 0);
        assert_int_equal(ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0)->http_status, retry_st[i]);
        reconnect_ok("c-1");
    }
}

/* Finding 7: TLS failing as TLS before the upgrade (certificate, a peer that
   is no TLS server) is fatal; a TLS error on an open socket is retried. */
static void test_tls_failures_before_the_upgrade_are_fatal(void **state) {
    static const stws_result codes[] = {STWS_ERR_TLS_VERIFY, STWS_ERR_TLS};
    size_t i;
    (void)state;
    for (i = 0; i < 2; i++) {
        cu_reset();
        X.sock[0].open_result = codes[i];
        start();
        cu_expect_types(0, 2, STWS_CLIENT_EVENT_DISCONNECTED, STWS_CLIENT_EVENT_FATAL);
        assert_int_equal(X.ev[1].result, codes[i]);
        expect_dead_quiet();
    }
    /* refused TCP or a reset are retried (for comparison) */
    cu_reset();
    X.sock[0].open_result = STWS_ERR_IO;
    start();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_FATAL), 0);
    reconnect_ok("c-1");
    /* a TLS error after the upgrade: retried */
    X.now += STWS_CLIENT_STABLE_MS;
    cu_settle();
    st_push_error(&X.sock[1], STWS_ERR_TLS);
    cu_settle();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_FATAL), 0);
    reconnect_ok("c-2");
}

/* Finding 7: after max_attempts the FATAL event says what kept failing. */
static void test_attempts_exhausted_carries_the_cause(void **state) {
    const cu_ev *e;
    int i;
    (void)state;
    X.d.max_attempts = 2;
    for (i = 0; i < 3; i++) X.answer[i] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    start();
    for (i = 0; i < 2; i++) {
        X.now += (uint64_t)last_delay();
        cu_settle();
    }
    assert_int_equal(X.nsock, 3);
    e = ev_of(STWS_CLIENT_EVENT_FATAL, 0);
    assert_int_equal(e->result, STWS_ERR_ATTEMPTS);
    assert_int_equal(e->cause, STWS_ERR_HANDSHAKE_STATUS);
    assert_int_equal(e->http_status, 503);
    if (!strstr(e->message, "exhausted (2)") || !strstr(e->message, "HTTP 503"))
        fail_msg("FATAL message: %s", e->message);
    /* the connection.error code of the last attempt */
    cu_reset();
    X.d.max_attempts = 1;
    srv_error(0, 99, 503, "busy");
    srv_close(0, 1000);
    srv_eof(0);
    srv_error(1, 17, 429, "slow down");
    srv_close(1, 1000);
    srv_eof(1);
    start();
    X.now += (uint64_t)last_delay();
    cu_settle();
    e = ev_of(STWS_CLIENT_EVENT_FATAL, 0);
    assert_int_equal(e->result, STWS_ERR_ATTEMPTS);
    assert_int_equal(e->cause, STWS_ERR_AUTH_TRANSIENT);
    assert_int_equal(e->error_code, 17);
    if (!strstr(e->message, "slow down")) fail_msg("FATAL message: %s", e->message);
    /* a fatal auth code after a refused upgrade: no stale HTTP status */
    cu_reset();
    X.answer[0] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    srv_error(1, 43, 401, "bad signature");
    start();
    X.now += (uint64_t)last_delay();
    cu_settle();
    e = ev_of(STWS_CLIENT_EVENT_FATAL, 0);
    assert_int_equal(e->result, STWS_ERR_AUTH);
    assert_int_equal(e->error_code, 43);
    assert_int_equal(e->http_status, 0);
}

/* Finding 7: a drop that is retried is no ERROR in the log; the stop is. */
static void test_recovered_drop_not_logged_as_error(void **state) {
    (void)state;
    X.sock[0].open_result = STWS_ERR_CONNECT;
    start();
    reconnect_ok("c-1");
    srv_eof(1);
    cu_settle();
    reconnect_ok("c-2");
    assert_true(log_count("TCP connect failed") >= 1);
    assert_int_equal(X.log_errors, 0);
    srv_error(2, 43, 401, "bad signature");
    cu_settle();
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_FATAL), 1);
    assert_int_equal(X.log_errors, 1);
}

/* Finding 9: a message that could never be written is refused at send time
   and blocks nothing. */
static void test_send_refuses_what_can_never_be_written(void **state) {
    size_t big = ((size_t)65 << 20);
    char *m = (char *)malloc(big);
    (void)state;
    if (!m) fail_msg("no memory for the test");
    memset(m, ' ', big);
    m[0] = '"';
    m[big - 1] = '"';
    X.d.send_queue_limit = (size_t)128 << 20;
    up("c-0");
    assert_int_equal(stws_client_send(X.c, m, big), STWS_ERR_MESSAGE_TOO_BIG);
    assert_int_equal(stws_client_send(X.c, m, STWS_DEFAULT_MAX_OUTPUT_SIZE - 13), STWS_ERR_MESSAGE_TOO_BIG);
    free(m);
    assert_int_equal(stws_client_queued(X.c), 0);
    assert_int_equal(stws_client_send(X.c, "{\"after\":1}", 11), STWS_OK);
    cu_settle();
    cu_expect_texts(0, 2, AUTH0, "{\"after\":1}");
    assert_int_equal(stws_client_queued(X.c), 0);
}

/* Finding 9: the dead timer leaves a connection alone that closed already
   (its CLOSE event unread): no second abort, no repeated log line, and the
   DISCONNECTED reason stays the real one. */
static void test_dead_timer_spares_a_closed_connection(void **state) {
    int i, lines;
    (void)state;
    up("c-0");
    srv_eof(0);
    assert_int_equal(raw_step(), STWS_OK);
    assert_false(sock_open(0));
    lines = X.log ? (int)strlen(X.log) : 0;
    X.now += 35000;
    for (i = 0; i < 5; i++) assert_int_equal(raw_step(), STWS_OK);
    assert_int_equal(X.log ? (int)strlen(X.log) : 0, lines);
    assert_int_equal(log_count("no frame received"), 0);
    cu_drain();
    assert_int_equal(ev_of(STWS_CLIENT_EVENT_DISCONNECTED, 0)->result, STWS_ERR_EOF);
    assert_int_equal(cu_count_ev(STWS_CLIENT_EVENT_DISCONNECTED), 1);
}

/* Found by fuzz/fuzz_client.c (fuzz/corpus/fuzz_client/regress_close_after_eof_before_events):
   a write fails, the step sees the socket end, the app calls
   stws_client_close() before it pulls that step's events, then connect():
   the message handed to the dead socket must be written on the next one
   and stay counted in stws_client_queued() until then.  Issue 13 finding
   2. */
static void test_fuzz_close_after_failed_write_before_events(void **state) {
    const char *m = "{\"fz\":1}";
    (void)state;
    up("c-0");
    X.sock[0].send_mode = ST_SEND_FAIL; /* the next write fails */
    assert_int_equal(stws_client_send(X.c, m, strlen(m)), STWS_OK);
    X.in_step++;
    (void)stws_client_step(X.c); /* the write fails: the socket ends; its events stay unread */
    X.in_step--;
    assert_int_equal(X.active, 0);
    assert_int_equal(stws_client_close(X.c), STWS_OK);
    cu_drain();
    assert_int_equal(stws_client_queued(X.c), strlen(m));
    srv_ok(1, "c-1");
    assert_int_equal(stws_client_connect(X.c), STWS_OK);
    cu_settle();
    assert_int_equal(X.nsock, 2);
    cu_expect_texts(1, 2, AUTH0, m);
    assert_int_equal(stws_client_queued(X.c), 0);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, cu_setup, cu_teardown)
    const struct CMUnitTest tests[] = {
        T(test_upgrade_request_query),
        T(test_conn_options_nested),
        T(test_auth_message_exact),
        T(test_unusable_user_fields_never_loop),
        T(test_auth_token_from_api_secret),
        T(test_auth_token_provider_calls),
        T(test_token_provider_called_inside_the_pump),
        T(test_token_provider_failure_is_retried),
        T(test_token_provider_malformed_token),
        T(test_token_refresh_failure_is_retried),
        T(test_connection_ok_is_the_only_success),
        T(test_upgrade_refused_is_a_transport_failure),
        T(test_health_check_after_connection_ok),
        T(test_server_health_check_moves_the_client_check),
        T(test_custom_health_and_dead_intervals),
        T(test_health_check_never_before_connection_ok),
        T(test_silence_drops_the_socket),
        T(test_any_inbound_frame_resets_the_silence_timer),
        T(test_backoff_bounds),
        T(test_attempt_number_resets_after_connection_ok),
        T(test_fatal_error_codes),
        T(test_fatal_error_without_server_close),
        T(test_no_watchdog_after_fatal),
        T(test_step_result_after_fatal_auth),
        T(test_transient_error_codes_reconnect),
        T(test_code_40_refreshes_minted_token),
        T(test_code_40_refreshes_provider_token),
        T(test_code_40_with_static_token_is_fatal_no_loop),
        T(test_fatal_message_is_unescaped),
        T(test_server_close_1000_stops),
        T(test_abnormal_closes_reconnect),
        T(test_transport_error_reconnects),
        T(test_server_close_1000_while_authenticating_stops),
        T(test_watchdog_without_upgrade_answer),
        T(test_watchdog_without_connection_ok),
        T(test_custom_watchdog),
        T(test_user_close_during_backoff),
        T(test_user_close_during_connect),
        T(test_user_close_during_upgrade),
        T(test_user_close_while_authenticating),
        T(test_user_close_while_connected),
        T(test_user_close_server_silent),
        T(test_no_stale_events_after_close_frame),
        T(test_no_stale_events_after_protocol_error),
        T(test_no_stale_events_after_timer_drop),
        T(test_steps_without_reading_after_drop),
        T(test_queue_kept_while_disconnected),
        T(test_queue_order_across_three_reconnects),
        T(test_queue_partial_write_resent_in_full),
        T(test_queue_written_then_drop_not_resent),
        T(test_queue_large_messages),
        T(test_queue_limit),
        T(test_queue_refuses_invalid_utf8),
        T(test_large_fragmented_connection_ok),
        T(test_malformed_events),
        T(test_malformed_too_many_tokens_and_too_deep),
        T(test_lazy_lookups),
        T(test_tokenized_events),
        T(test_tokenized_too_many_tokens),
        T(test_push_delivery_only_inside_step_in_order),
        T(test_on_reconnecting_abort),
        T(test_on_reconnecting_sets_token),
        T(test_on_reconnecting_token_wins_over_provider),
        T(test_on_reconnecting_sets_url),
        T(test_close_from_on_reconnecting_wins),
        T(test_on_reconnecting_only_inside_step),
        T(test_max_attempts_after_drop),
        T(test_max_attempts_never_connected),
        T(test_max_attempts_counts_consecutive_only),
        T(test_allocations_steady_state_and_reconnect),
        T(test_allocations_token_refresh),
        T(test_restart_after_close_starts_clean),
        T(test_create_allocations_match_doc),
        T(test_create_rejects_bad_desc),
        T(test_timeout_values),
        T(test_close_before_reading_eof_keeps_the_queue),
        T(test_backoff_windows_first_failures),
        T(test_drop_soon_after_connection_ok_is_a_failure),
        T(test_handlers_leave_lifecycle_events_pullable),
        T(test_handlers_keep_only_the_latest_lifecycle_events),
        T(test_destroy_inside_callbacks),
        T(test_close_never_connected),
        T(test_connected_event_has_no_stale_message),
        T(test_token_must_be_a_jwt),
        T(test_send_refuses_non_json),
        T(test_permanent_upgrade_refusals_are_fatal),
        T(test_tls_failures_before_the_upgrade_are_fatal),
        T(test_attempts_exhausted_carries_the_cause),
        T(test_recovered_drop_not_logged_as_error),
        T(test_send_refuses_what_can_never_be_written),
        T(test_dead_timer_spares_a_closed_connection),
        T(test_fuzz_close_after_failed_write_before_events),
    };
#undef T
    return cmocka_run_group_tests_name("client", tests, NULL, NULL);
}
