/* The public test kit (stream_ws_test.h): each function does what its doc
   comment says, on its own (the transport driven by hand) and under the
   real client (the 101 accepted, connection.ok -> CONNECTED, a fatal
   connection.error, a drop -> RECONNECTING in PROTOCOL.md §5's window on the
   fake clock). */
#define STREAM_WS_TEST_IMPLEMENTATION
#include "../stream_ws_test.h"
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define JWT "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoiYWxpY2UifQ.c2lnbmF0dXJl"
#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="         /* RFC 6455 §1.3 */
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define REQ "GET /connect HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Key: " RFC_KEY "\r\n\r\n"

typedef struct ev_rec {
    stws_client_event_type type;
    char etype[64], conn_id[64];
    char json[512];
    int delay_ms, attempt, error_code, close_code;
    stws_result result;
    uint64_t at;
} ev_rec;

typedef struct fx {
    stws_test_clock clk;
    stws_test_random rnd;
    stws_test_transport t;
    stws_transport tr;
    stws_client_desc d;
    stws_client *c;
    ev_rec ev[64];
    int nev;
} fx;

static int setup(void **state) {
    fx *f = (fx *)calloc(1, sizeof *f);
    if (!f) return -1;
    stws_test_clock_init(&f->clk, 1000000, 1767225600);
    stws_test_random_init(&f->rnd, 7);
    stws_test_transport_init(&f->t);
    f->tr = stws_test_transport_hook(&f->t);
    f->d.url = "ws://coordinator.test/api/v2/connect";
    f->d.api_key = "key";
    f->d.user_id = "alice";
    f->d.token = JWT;
    f->d.conn.transport = f->tr;
    f->d.clock = stws_test_clock_hook(&f->clk);
    f->d.random = stws_test_random_hook(&f->rnd);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = (fx *)*state;
    int misuse = f->t.misuse;
    stws_client_destroy(f->c);
    stws_test_transport_free(&f->t);
    free(f);
    return misuse ? -1 : 0;
}

static void copy_str(char *dst, size_t cap, stws_str s) {
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n) memcpy(dst, s.ptr, n);
    dst[n] = 0;
}

static void record(stws_client *c, const stws_client_event *e, void *user) {
    fx *f = (fx *)user;
    ev_rec *r;
    (void)c;
    if (f->nev == 64) fail_msg("more than 64 events");
    r = &f->ev[f->nev++];
    memset(r, 0, sizeof *r);
    r->type = e->type;
    copy_str(r->etype, sizeof r->etype, e->event_type);
    copy_str(r->conn_id, sizeof r->conn_id, e->connection_id);
    copy_str(r->json, sizeof r->json, e->json);
    r->delay_ms = e->delay_ms;
    r->attempt = e->attempt;
    r->error_code = e->error_code;
    r->close_code = e->close_code;
    r->result = e->result;
    r->at = f->clk.now_ms;
}

static void settle(fx *f) {
    assert_true(stws_test_settle(f->c, &f->t, record, f) > 0);
}

static int count(const fx *f, stws_client_event_type type) {
    int i, n = 0;
    for (i = 0; i < f->nev; i++) n += f->ev[i].type == type;
    return n;
}

static int find(const fx *f, stws_client_event_type type) {
    int i;
    for (i = 0; i < f->nev; i++)
        if (f->ev[i].type == type) return i;
    return -1;
}

/* Open the transport by hand and write the RFC's sample request. */
static void open_with_request(fx *f) {
    assert_int_equal(f->tr.open(f->tr.ctx, "h", 80), 0);
    assert_int_equal(f->tr.send(f->tr.ctx, (const unsigned char *)REQ, strlen(REQ)), (int)strlen(REQ));
}

/* A masked client frame, as a client must write it (§5.3). */
static size_t client_frame(unsigned char *out, unsigned b0, const unsigned char *data, size_t len) {
    static const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t h = 2, i;
    out[0] = (unsigned char)b0;
    if (len < 126) {
        out[1] = (unsigned char)(0x80 | len);
    } else if (len <= 0xFFFF) {
        out[1] = 0x80 | 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        h = 4;
    } else {
        int k;
        out[1] = 0x80 | 127;
        for (k = 0; k < 8; k++) out[2 + k] = (unsigned char)((uint64_t)len >> (8 * (7 - k)));
        h = 10;
    }
    memcpy(out + h, key, 4);
    h += 4;
    for (i = 0; i < len; i++) out[h + i] = data[i] ^ key[i & 3];
    return h + len;
}

/* ==== the kit by hand ===================================================== */

static void clock_and_random(void **state) {
    fx *f = (fx *)*state;
    stws_clock ck = stws_test_clock_hook(&f->clk);
    stws_random rh = stws_test_random_hook(&f->rnd);
    stws_test_random r2;
    unsigned char a[16], b[16];
    uint32_t v;
    assert_int_equal(ck.now_ms(ck.user_data), 1000000);
    stws_test_clock_advance(&f->clk, 1500);
    assert_int_equal(ck.now_ms(ck.user_data), 1001500);
    assert_int_equal(ck.unix_s(ck.user_data), 1767225601); /* 1.5 s: one whole second */
    stws_test_clock_advance(&f->clk, 500);
    assert_int_equal(ck.unix_s(ck.user_data), 1767225602); /* the half seconds add up */
    /* the same seed, the same bytes; another seed, others */
    stws_test_random_init(&r2, 7);
    assert_int_equal(rh.fill(a, sizeof a, rh.user_data), 0);
    assert_int_equal(stws_test_random_hook(&r2).fill(b, sizeof b, &r2), 0);
    assert_memory_equal(a, b, sizeof a);
    stws_test_random_init(&r2, 8);
    assert_int_equal(stws_test_random_hook(&r2).fill(b, sizeof b, &r2), 0);
    assert_memory_not_equal(a, b, sizeof a);
    stws_test_random_pin_u32(&f->rnd, 12345);
    assert_int_equal(rh.fill(&v, 4, rh.user_data), 0);
    assert_int_equal(v, 12345);
    assert_int_equal(f->rnd.draws4, 1);
    assert_int_equal(rh.fill(a, 3, rh.user_data), 0); /* other sizes stay random */
    assert_int_equal(f->rnd.fills, 3);
}

static void recv_script(void **state) {
    fx *f = (fx *)*state;
    unsigned char buf[16];
    f->t.recv_max = 2;
    stws_test_push(&f->t, "abc", 3);
    stws_test_push_block(&f->t);
    stws_test_push(&f->t, "de", 2);
    assert_int_equal(stws_test_unread(&f->t), 3);
    assert_int_equal(f->tr.open(f->tr.ctx, "host.test", 443), 0);
    assert_string_equal(f->t.host, "host.test");
    assert_int_equal(f->t.port, 443);
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), 2);
    assert_memory_equal(buf, "ab", 2);
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), 1); /* a chunk is never merged */
    assert_int_equal(buf[0], 'c');
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), STWS_WANT_READ); /* the block */
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, 1), 1);                      /* len caps too */
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), 1);
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), STWS_WANT_READ); /* used up */
    assert_int_equal(f->t.bytes_received, 5);
    /* EOF and errors are sticky */
    stws_test_drop(&f->t);
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), 0);
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), 0);
    /* close drops the rest of this connection's script, up to the mark */
    stws_test_push(&f->t, "lost", 4);
    stws_test_next_socket(&f->t);
    stws_test_reset(&f->t);
    f->tr.close(f->tr.ctx);
    assert_int_equal(f->t.closes, 1);
    assert_int_equal(f->tr.open(f->tr.ctx, "h", 80), 0);
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), STWS_ERR_IO);
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), STWS_ERR_IO);
    f->tr.close(f->tr.ctx);
    /* recv() never reads past a mark */
    f->t.recv_max = 0;
    stws_test_transport_free(&f->t);
    stws_test_transport_init(&f->t);
    stws_test_push(&f->t, "one", 3);
    stws_test_next_socket(&f->t);
    stws_test_push(&f->t, "two", 3);
    assert_int_equal(f->tr.open(f->tr.ctx, "h", 80), 0);
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), 3);
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), STWS_WANT_READ);
    f->tr.close(f->tr.ctx);
    assert_int_equal(f->tr.open(f->tr.ctx, "h", 80), 0);
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), 3);
    assert_memory_equal(buf, "two", 3);
    assert_int_equal(f->t.misuse, 0);
    f->tr.close(f->tr.ctx);
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), STWS_WANT_READ);
    assert_int_equal(f->t.misuse, 1); /* recv on a closed stream is counted */
    f->t.misuse = 0;
}

static void send_behaviour(void **state) {
    fx *f = (fx *)*state;
    const unsigned char *p = (const unsigned char *)"abcdefgh";
    f->t.open_wants = 2;
    assert_int_equal(f->tr.open(f->tr.ctx, "h", 80), STWS_WANT_WRITE);
    assert_int_equal(f->tr.open(f->tr.ctx, "h", 80), STWS_WANT_WRITE);
    assert_int_equal(f->t.is_open, 0);
    assert_int_equal(f->tr.open(f->tr.ctx, "h", 80), 0);
    assert_int_equal(f->t.is_open, 1);
    f->t.send_max = 3; /* partial writes */
    assert_int_equal(f->tr.send(f->tr.ctx, p, 8), 3);
    f->t.send_blocks = 2; /* would-block, twice */
    assert_int_equal(f->tr.send(f->tr.ctx, p + 3, 5), STWS_WANT_WRITE);
    assert_int_equal(f->tr.send(f->tr.ctx, p + 3, 5), STWS_WANT_WRITE);
    assert_int_equal(f->tr.send(f->tr.ctx, p + 3, 5), 3);
    f->t.send_max = 0;
    assert_int_equal(f->tr.send(f->tr.ctx, p + 6, 2), 2);
    assert_int_equal(f->t.bytes_sent, 8);
    assert_int_equal(stws_test_unread_sent(&f->t), 8); /* no request seen: all unread */
    assert_null(stws_test_request(&f->t));
    f->t.send_result = STWS_ERR_IO;
    assert_int_equal(f->tr.send(f->tr.ctx, p, 8), STWS_ERR_IO);
    assert_int_equal(f->t.bytes_sent, 8);
    f->tr.close(f->tr.ctx);
    f->t.open_result = STWS_ERR_CONNECT;
    assert_int_equal(f->tr.open(f->tr.ctx, "h", 80), STWS_ERR_CONNECT);
    assert_int_equal(f->t.is_open, 0);
    assert_int_equal(f->t.opens, 4);
    assert_int_equal(f->t.misuse, 0);
}

/* Client frames of each length encoding (§5.2: 7, 16 and 64 bits), masked,
   decoded back; a cut-off frame waits. */
static void decodes_client_frames(void **state) {
    fx *f = (fx *)*state;
    static unsigned char big[70000], wire[70000 + 14];
    stws_test_frame_info fr;
    size_t i, n, sizes[3] = {5, 300, 70000};
    int k;
    for (i = 0; i < sizeof big; i++) big[i] = (unsigned char)(i * 7 + 3);
    open_with_request(f);
    assert_string_equal(stws_test_request(&f->t), REQ);
    assert_int_equal(stws_test_next_frame(&f->t, &fr), 0);
    for (k = 0; k < 3; k++) {
        n = client_frame(wire, 0x82, big, sizes[k]);
        assert_int_equal(n, sizes[k] + (k == 0 ? 6 : k == 1 ? 8 : 14));
        /* all but the last byte: nothing yet */
        assert_int_equal(f->tr.send(f->tr.ctx, wire, n - 1), (int)(n - 1));
        assert_int_equal(stws_test_next_frame(&f->t, &fr), 0);
        assert_int_equal(stws_test_unread_sent(&f->t), n - 1);
        assert_int_equal(f->tr.send(f->tr.ctx, wire + n - 1, 1), 1);
        assert_int_equal(stws_test_next_frame(&f->t, &fr), 1);
        assert_int_equal(fr.opcode, STWS_OP_BINARY);
        assert_int_equal(fr.fin, 1);
        assert_int_equal(fr.masked, 1);
        assert_int_equal(fr.rsv, 0);
        assert_int_equal(fr.len, sizes[k]);
        assert_memory_equal(fr.data, big, sizes[k]);
        assert_int_equal(fr.data[fr.len], 0);
        assert_int_equal(stws_test_unread_sent(&f->t), 0);
    }
    /* an unmasked frame is reported as such (a client bug a test can catch) */
    assert_int_equal(f->tr.send(f->tr.ctx, (const unsigned char *)"\x81\x02hi", 4), 4);
    assert_int_equal(stws_test_next_frame(&f->t, &fr), 1);
    assert_int_equal(fr.masked, 0);
    assert_string_equal((const char *)fr.data, "hi");
    /* a close frame's status */
    n = client_frame(wire, 0x88, (const unsigned char *)"\x03\xe8", 2);
    assert_int_equal(f->tr.send(f->tr.ctx, wire, n), (int)n);
    assert_int_equal(stws_test_next_frame(&f->t, &fr), 1);
    assert_int_equal(fr.opcode, STWS_OP_CLOSE);
    assert_int_equal(fr.close_code, 1000);
}

/* next_text joins a fragmented client message (§5.4), skipping a ping sent
   between its fragments (§5.5: control frames may interleave), and waits
   while the last fragment is missing. */
static void next_text_joins_fragments(void **state) {
    fx *f = (fx *)*state;
    unsigned char wire[64];
    size_t n, len = 0;
    const char *s;
    open_with_request(f);
    n = client_frame(wire, 0x01, (const unsigned char *)"{\"a\":", 5);
    f->tr.send(f->tr.ctx, wire, n);
    n = client_frame(wire, 0x89, (const unsigned char *)"p", 1);
    f->tr.send(f->tr.ctx, wire, n);
    assert_null(stws_test_next_text(&f->t, &len));
    n = client_frame(wire, 0x80, (const unsigned char *)"1}", 2);
    f->tr.send(f->tr.ctx, wire, n);
    s = stws_test_next_text(&f->t, &len);
    assert_non_null(s);
    assert_string_equal(s, "{\"a\":1}");
    assert_int_equal(len, 7);
    assert_null(stws_test_next_text(&f->t, &len));
    /* the first text frame is the auth message, read or not */
    assert_string_equal(stws_test_auth(&f->t), "{\"a\":");
}

/* The 101 carries the RFC's sample accept for the RFC's sample key (§1.3);
   accept before the request waits for it and goes in front of the script. */
static void accept_answers_the_request(void **state) {
    fx *f = (fx *)*state;
    char buf[512];
    int n;
    stws_test_connection_ok(&f->t, "c1");
    assert_int_equal(stws_test_accept(&f->t), 0);
    assert_int_equal(f->tr.open(f->tr.ctx, "h", 80), 0);
    assert_int_equal(stws_test_unread(&f->t), 1); /* not yet */
    assert_int_equal(f->tr.send(f->tr.ctx, (const unsigned char *)REQ, strlen(REQ)), (int)strlen(REQ));
    assert_int_equal(stws_test_unread(&f->t), 2);
    n = f->tr.recv(f->tr.ctx, (unsigned char *)buf, sizeof buf - 1);
    assert_true(n > 0);
    buf[n] = 0;
    assert_string_equal(buf, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n");
    n = f->tr.recv(f->tr.ctx, (unsigned char *)buf, sizeof buf - 1);
    assert_true(n > 2);
    assert_int_equal((unsigned char)buf[0], 0x81);
    assert_int_equal(stws_test_accept(&f->t), -1); /* answered already */
    /* between connections it is for the next one */
    f->tr.close(f->tr.ctx);
    assert_int_equal(stws_test_accept(&f->t), 0);
    assert_int_equal(f->tr.open(f->tr.ctx, "h", 80), 0);
    assert_null(stws_test_request(&f->t)); /* a new capture */
    assert_int_equal(f->tr.send(f->tr.ctx, (const unsigned char *)REQ, strlen(REQ)), (int)strlen(REQ));
    n = f->tr.recv(f->tr.ctx, (unsigned char *)buf, sizeof buf - 1);
    assert_true(n > 0);
    buf[n] = 0;
    assert_non_null(strstr(buf, "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"));
}

/* Server frames: the length encodings and fragments as the kit writes them. */
static void server_frames(void **state) {
    fx *f = (fx *)*state;
    static unsigned char big[70000], in[70100];
    unsigned char buf[64];
    int n;
    memset(big, 'x', sizeof big);
    stws_test_frame(&f->t, 0x82, big, 125);
    stws_test_frame(&f->t, 0x82, big, 126);
    stws_test_frame(&f->t, 0x82, big, 70000);
    stws_test_fragments(&f->t, STWS_OP_TEXT, "abcdefg", 7, 3);
    stws_test_close(&f->t, 4000);
    stws_test_close(&f->t, 0);
    assert_int_equal(stws_test_unread(&f->t), 6); /* the fragments are one chunk */
    assert_int_equal(f->tr.open(f->tr.ctx, "h", 80), 0);
    assert_int_equal(f->tr.recv(f->tr.ctx, in, sizeof in), 127);
    assert_int_equal(in[1], 125);
    assert_int_equal(f->tr.recv(f->tr.ctx, in, sizeof in), 130);
    assert_int_equal(in[1], 126);
    assert_int_equal(in[2] << 8 | in[3], 126);
    assert_int_equal(f->tr.recv(f->tr.ctx, in, sizeof in), 70010);
    assert_int_equal(in[1], 127);
    assert_memory_equal(in + 2, "\0\0\0\0\0\x01\x11\x70", 8);
    n = f->tr.recv(f->tr.ctx, buf, sizeof buf);
    assert_int_equal(n, 13);
    assert_memory_equal(buf, "\x01\x03" "abc" "\x00\x03" "def" "\x80\x01" "g", 13);
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), 4);
    assert_memory_equal(buf, "\x88\x02\x0f\xa0", 4);
    assert_int_equal(f->tr.recv(f->tr.ctx, buf, sizeof buf), 2);
    assert_memory_equal(buf, "\x88\x00", 2);
}

/* ==== under the real client =============================================== */

static void connect_ok(fx *f, const char *id) {
    f->t.auto_accept = 1;
    stws_test_connection_ok(&f->t, id);
    f->c = stws_client_create(&f->d);
    assert_non_null(f->c);
    assert_int_equal(stws_client_connect(f->c), STWS_OK);
    settle(f);
}

static void connected_auth_events_and_sends(void **state) {
    fx *f = (fx *)*state;
    const char *auth, *s;
    size_t len;
    connect_ok(f, "conn-1");
    assert_int_equal(f->t.opens, 1);
    assert_non_null(stws_test_request(&f->t));
    assert_non_null(strstr(stws_test_request(&f->t), "GET /api/v2/connect?"));
    assert_int_equal(count(f, STWS_CLIENT_EVENT_CONNECTED), 1);
    assert_string_equal(f->ev[find(f, STWS_CLIENT_EVENT_CONNECTED)].conn_id, "conn-1");
    assert_string_equal(stws_client_connection_id(f->c), "conn-1");
    auth = stws_test_auth(&f->t);
    assert_non_null(auth);
    assert_non_null(strstr(auth, "\"token\":\"" JWT "\""));
    assert_non_null(strstr(auth, "\"user_details\":{\"id\":\"alice\"}"));
    s = stws_test_next_text(&f->t, &len);
    assert_string_equal(s, auth); /* the first text message is the auth */
    /* an event, a fragmented event, a health check */
    stws_test_event(&f->t, "{\"type\":\"message.new\",\"text\":\"hi\"}");
    {
        const char *frag = "{\"type\":\"typing.start\",\"user\":\"bob\"}";
        stws_test_fragments(&f->t, STWS_OP_TEXT, frag, strlen(frag), 10);
    }
    stws_test_health_check(&f->t, "conn-1");
    f->nev = 0;
    settle(f);
    assert_int_equal(f->nev, 3);
    assert_string_equal(f->ev[0].etype, "message.new");
    assert_string_equal(f->ev[0].json, "{\"type\":\"message.new\",\"text\":\"hi\"}");
    assert_string_equal(f->ev[1].etype, "typing.start");
    assert_string_equal(f->ev[1].json, "{\"type\":\"typing.start\",\"user\":\"bob\"}");
    assert_string_equal(f->ev[2].etype, "health.check");
    /* what the app sends is read back, unmasked */
    assert_int_equal(stws_client_send(f->c, "{\"type\":\"ping\",\"n\":1}", 21), STWS_OK);
    settle(f);
    assert_string_equal(stws_test_next_text(&f->t, &len), "{\"type\":\"ping\",\"n\":1}");
    assert_int_equal(len, 21);
    assert_null(stws_test_next_text(&f->t, &len));
    assert_int_equal(stws_test_unread(&f->t), 0);
}

/* connection.error 43 (PROTOCOL.md §6: fatal) -> FATAL with the code, and no
   further attempt however long the clock runs. */
static void connection_error_43_is_fatal(void **state) {
    fx *f = (fx *)*state;
    f->t.auto_accept = 1;
    stws_test_connection_error(&f->t, 43, 401, "JWTAuth error: token signature is invalid");
    f->c = stws_client_create(&f->d);
    assert_non_null(f->c);
    assert_int_equal(stws_client_connect(f->c), STWS_OK);
    settle(f);
    assert_int_equal(count(f, STWS_CLIENT_EVENT_FATAL), 1);
    assert_int_equal(f->ev[find(f, STWS_CLIENT_EVENT_FATAL)].error_code, 43);
    assert_int_equal(count(f, STWS_CLIENT_EVENT_CONNECTED), 0);
    assert_int_equal(count(f, STWS_CLIENT_EVENT_RECONNECTING), 0);
    stws_test_clock_advance(&f->clk, 60000);
    settle(f);
    assert_int_equal(f->t.opens, 1);
}

/* A drop after a healthy connection (> STWS_CLIENT_STABLE_MS): n = 0, the
   next attempt after [250, 500) ms (§5); pinned to 0 it is exactly 250 ms:
   nothing at 249, the new socket at 250, RECONNECTED with its id. */
static void drop_reconnects_in_the_window(void **state) {
    fx *f = (fx *)*state;
    int r;
    connect_ok(f, "conn-1");
    stws_test_clock_advance(&f->clk, STWS_CLIENT_STABLE_MS + 1000);
    settle(f);
    stws_test_random_pin_u32(&f->rnd, 0);
    f->nev = 0;
    stws_test_drop(&f->t);
    settle(f);
    assert_int_equal(count(f, STWS_CLIENT_EVENT_DISCONNECTED), 1);
    r = find(f, STWS_CLIENT_EVENT_RECONNECTING);
    assert_true(r >= 0);
    assert_int_equal(f->ev[r].attempt, 1);
    assert_int_equal(f->ev[r].delay_ms, 250);
    assert_int_equal(f->t.opens, 1);
    assert_int_equal(f->t.closes, 1);
    stws_test_connection_ok(&f->t, "conn-2"); /* the next socket's script */
    stws_test_clock_advance(&f->clk, 249);
    settle(f);
    assert_int_equal(f->t.opens, 1);
    stws_test_clock_advance(&f->clk, 1);
    settle(f);
    assert_int_equal(f->t.opens, 2);
    r = find(f, STWS_CLIENT_EVENT_RECONNECTED);
    assert_true(r >= 0);
    assert_string_equal(f->ev[r].conn_id, "conn-2");
    assert_string_equal(stws_client_connection_id(f->c), "conn-2");
}

/* Unpinned draws: a drop within STWS_CLIENT_STABLE_MS of connection.ok is a
   failure (n = 1, [250, 2500)); then a reset before connection.ok (n = 2,
   [2000, 4500)). */
static void early_drop_and_reset_windows(void **state) {
    fx *f = (fx *)*state;
    int r;
    connect_ok(f, "conn-1");
    stws_test_reset(&f->t); /* socket 1: reset at once */
    stws_test_next_socket(&f->t);
    stws_test_drop(&f->t);  /* socket 2: the 101, then EOF */
    f->nev = 0;
    settle(f);
    r = find(f, STWS_CLIENT_EVENT_RECONNECTING);
    assert_true(r >= 0);
    assert_true(f->ev[r].delay_ms >= 250 && f->ev[r].delay_ms < 2500);
    stws_test_clock_advance(&f->clk, (uint64_t)f->ev[r].delay_ms);
    f->nev = 0;
    settle(f);
    assert_int_equal(f->t.opens, 2);
    r = find(f, STWS_CLIENT_EVENT_RECONNECTING);
    assert_true(r >= 0);
    assert_int_equal(f->ev[r].attempt, 2);
    assert_true(f->ev[r].delay_ms >= 2000 && f->ev[r].delay_ms < 4500);
}

/* A server close 1000 ends the client (§5: never reconnect); the client's
   own close is read back with its code. */
static void closes(void **state) {
    fx *f = (fx *)*state;
    stws_test_frame_info fr;
    int saw = 0;
    connect_ok(f, "conn-1");
    assert_int_equal(stws_client_close(f->c), STWS_OK);
    settle(f);
    while (stws_test_next_frame(&f->t, &fr))
        if (fr.opcode == STWS_OP_CLOSE) {
            saw = 1;
            assert_int_equal(fr.close_code, 1000);
            assert_int_equal(fr.masked, 1);
        }
    assert_true(saw);
    stws_client_destroy(f->c);
    f->c = NULL;
    /* a new client, closed by the server */
    stws_test_transport_free(&f->t);
    stws_test_transport_init(&f->t);
    f->nev = 0;
    connect_ok(f, "conn-9");
    stws_test_close(&f->t, 1000);
    settle(f);
    /* the client answers and waits for the server to close TCP (§7.1.1) */
    assert_int_equal(count(f, STWS_CLIENT_EVENT_CLOSED), 0);
    assert_int_equal(f->t.closes, 0);
    stws_test_drop(&f->t);
    settle(f);
    assert_int_equal(f->t.closes, 1);
    assert_int_equal(count(f, STWS_CLIENT_EVENT_DISCONNECTED), 1);
    assert_int_equal(f->ev[find(f, STWS_CLIENT_EVENT_DISCONNECTED)].close_code, 1000);
    assert_int_equal(count(f, STWS_CLIENT_EVENT_CLOSED), 1);
    stws_test_clock_advance(&f->clk, 60000);
    settle(f);
    assert_int_equal(f->t.opens, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(clock_and_random, setup, teardown),
        cmocka_unit_test_setup_teardown(recv_script, setup, teardown),
        cmocka_unit_test_setup_teardown(send_behaviour, setup, teardown),
        cmocka_unit_test_setup_teardown(decodes_client_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(next_text_joins_fragments, setup, teardown),
        cmocka_unit_test_setup_teardown(accept_answers_the_request, setup, teardown),
        cmocka_unit_test_setup_teardown(server_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(connected_auth_events_and_sends, setup, teardown),
        cmocka_unit_test_setup_teardown(connection_error_43_is_fatal, setup, teardown),
        cmocka_unit_test_setup_teardown(drop_reconnects_in_the_window, setup, teardown),
        cmocka_unit_test_setup_teardown(early_drop_and_reset_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(closes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
