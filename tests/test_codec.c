/* Unit tests for the sans-I/O RFC 6455 codec (client role) of stream_ws.h:
   parsing server->client frames, the failures and close codes of every
   protocol violation, fail-fast UTF-8, chunking equivalence, sending masked
   frames, output back-pressure, the closing handshake and allocation
   behaviour.  Everything is deterministic: fixed seeds, injected random. */
#include "codec_util.h"

static const uint8_t HELLO_FRAME[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};

/* A codec with a deterministic random hook (and optional limits). */
static stws_codec *new_codec(det_rng *rng, size_t max_frame, size_t max_message,
                             size_t max_output) {
    stws_codec_desc d;
    stws_codec *c;
    memset(&d, 0, sizeof d);
    d.max_frame_size = max_frame;
    d.max_message_size = max_message;
    d.max_output_size = max_output;
    if (rng) d.random = det_random(rng);
    c = stws_codec_create(&d);
    assert_non_null(c);
    return c;
}

/* After a failure: the result, the event, the one queued close frame (and
   nothing else), stickiness, the FAILED state and that sending is refused.
   The caller has drained any output from before the failing input. */
static void expect_failed(stws_codec *c, stws_result r, const stws_codec_event *ev,
                          stws_result err, int code, const char *label) {
    cframes fs;
    stws_codec_event ev2;
    size_t used = 12345, n = 1;
    EXPECT_EQ(label, r, err);
    EXPECT_EQ(label, ev->type, STWS_CODEC_EVENT_ERROR);
    EXPECT_EQ(label, ev->error, err);
    EXPECT_EQ(label, ev->close_code, code);
    EXPECT_EQ(label, stws_codec_get_state(c), STWS_CODEC_FAILED);
    take_output(c, &fs, label);
    EXPECT_EQ(label, fs.n, 1);
    expect_close_frame(&fs.f[0], code, label);
    cframes_free(&fs);
    /* sticky, with fresh valid input and with none */
    EXPECT_EQ(label, stws_codec_parse(c, HELLO_FRAME, sizeof HELLO_FRAME, &used, &ev2), err);
    EXPECT_EQ(label, used, 0);
    EXPECT_EQ(label, ev2.type, STWS_CODEC_EVENT_ERROR);
    EXPECT_EQ(label, ev2.error, err);
    EXPECT_EQ(label, ev2.close_code, code);
    EXPECT_EQ(label, stws_codec_parse(c, HELLO_FRAME, 0, &used, &ev2), err);
    EXPECT_EQ(label, ev2.type, STWS_CODEC_EVENT_ERROR);
    EXPECT_EQ(label, ev2.close_code, code);
    EXPECT_EQ(label, stws_codec_get_state(c), STWS_CODEC_FAILED);
    EXPECT_EQ(label, stws_codec_send(c, STWS_OP_TEXT, "x", 1), STWS_ERR_STATE);
    EXPECT_EQ(label, stws_codec_send(c, STWS_OP_BINARY, "x", 1), STWS_ERR_STATE);
    EXPECT_EQ(label, stws_codec_send(c, STWS_OP_PING, "x", 1), STWS_ERR_STATE);
    EXPECT_EQ(label, stws_codec_close(c, 1000, NULL, 0), STWS_ERR_STATE);
    (void)stws_codec_output(c, &n);
    EXPECT_EQ(label, n, 0); /* no second close, nothing else */
}

/* Feed bytes in one call to a fresh codec and expect a failure. */
static void expect_bytes_fail(const uint8_t *in, size_t len, size_t max_frame, size_t max_message,
                              stws_result err, int code, const char *label) {
    det_rng rng = {11, 0, 0, 0};
    stws_codec *c = new_codec(&rng, max_frame, max_message, 0);
    stws_codec_event ev;
    size_t used = 0;
    stws_result r = stws_codec_parse(c, in, len, &used, &ev);
    EXPECT_TRUE(label, used <= len);
    expect_failed(c, r, &ev, err, code, label);
    stws_codec_destroy(c);
}

static void expect_tbuf_fail(tbuf *b, stws_result err, int code, const char *label) {
    expect_bytes_fail(b->p, b->len, 0, 0, err, code, label);
    tbuf_free(b);
}

/* ==== 1. RFC 6455 §5.7 examples =========================================== */

static void rfc_single_frame_text(void **state) {
    det_rng rng = {1, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    size_t used = 0, n = 1;
    (void)state;
    assert_int_equal(stws_codec_parse(c, HELLO_FRAME, sizeof HELLO_FRAME, &used, &ev), STWS_OK);
    assert_int_equal(used, sizeof HELLO_FRAME);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.opcode, STWS_OP_TEXT);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_OPEN);
    stws_codec_destroy(c);
}

static void rfc_fragmented_text(void **state) {
    static const uint8_t f[] = {0x01, 0x03, 'H', 'e', 'l', 0x80, 0x02, 'l', 'o'};
    det_rng rng = {1, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    size_t used = 0, n = 1;
    (void)state;
    /* in one call */
    assert_int_equal(stws_codec_parse(c, f, sizeof f, &used, &ev), STWS_OK);
    assert_int_equal(used, sizeof f);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.opcode, STWS_OP_TEXT);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
    /* one frame per call: the first yields nothing */
    assert_int_equal(stws_codec_parse(c, f, 5, &used, &ev), STWS_OK);
    assert_int_equal(used, 5);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_NONE);
    assert_int_equal(stws_codec_parse(c, f + 5, 4, &used, &ev), STWS_OK);
    assert_int_equal(used, 4);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.opcode, STWS_OP_TEXT);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    stws_codec_destroy(c);
}

static void rfc_ping_gets_masked_pong(void **state) {
    static const uint8_t f[] = {0x89, 0x05, 'H', 'e', 'l', 'l', 'o'};
    det_rng rng = {2, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    size_t used = 0, n = 0, i;
    const uint8_t *out;
    (void)state;
    assert_int_equal(stws_codec_parse(c, f, sizeof f, &used, &ev), STWS_OK);
    assert_int_equal(used, sizeof f);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_PING);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
    /* the pong, byte by byte: 0x8A, MASK|5, key, masked "Hello" */
    out = stws_codec_output(c, &n);
    assert_int_equal(n, 2 + 4 + 5);
    assert_int_equal(out[0], 0x8A);
    assert_int_equal(out[1], 0x85);
    for (i = 0; i < 4; i++) assert_int_equal(out[2 + i], rng_stream_byte(2, i));
    for (i = 0; i < 5; i++) assert_int_equal(out[6 + i] ^ out[2 + (i & 3)], "Hello"[i]);
    stws_codec_output_consumed(c, n);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_OPEN);
    stws_codec_destroy(c);
}

static void rfc_unmasked_pong(void **state) {
    static const uint8_t f[] = {0x8A, 0x05, 'H', 'e', 'l', 'l', 'o'};
    det_rng rng = {2, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    size_t used = 0, n = 1;
    (void)state;
    assert_int_equal(stws_codec_parse(c, f, sizeof f, &used, &ev), STWS_OK);
    assert_int_equal(used, sizeof f);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_PONG);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0); /* a pong is not answered */
    stws_codec_destroy(c);
}

static void rfc_binary_16bit_length(void **state) {
    det_rng rng = {3, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    uint8_t f[4 + 256], payload[256];
    size_t used = 0, i;
    (void)state;
    for (i = 0; i < 256; i++) payload[i] = (uint8_t)(255 - i);
    f[0] = 0x82;
    f[1] = 0x7E;
    f[2] = 0x01;
    f[3] = 0x00;
    memcpy(f + 4, payload, 256);
    assert_int_equal(stws_codec_parse(c, f, sizeof f, &used, &ev), STWS_OK);
    assert_int_equal(used, sizeof f);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.opcode, STWS_OP_BINARY);
    assert_int_equal(ev.len, 256);
    assert_memory_equal(ev.data, payload, 256);
    stws_codec_destroy(c);
}

static void rfc_binary_64bit_length(void **state) {
    det_rng rng = {3, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    const size_t n = 65536;
    uint8_t *f = (uint8_t *)malloc(10 + n);
    size_t used = 0, i;
    static const uint8_t hdr[10] = {0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
    (void)state;
    assert_non_null(f);
    memcpy(f, hdr, 10);
    for (i = 0; i < n; i++) f[10 + i] = (uint8_t)(i * 7 + (i >> 8));
    assert_int_equal(stws_codec_parse(c, f, 10 + n, &used, &ev), STWS_OK);
    assert_int_equal(used, 10 + n);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.opcode, STWS_OP_BINARY);
    assert_int_equal(ev.len, n);
    assert_memory_equal(ev.data, f + 10, n);
    /* and again split in two calls: header + half, then the rest */
    assert_int_equal(stws_codec_parse(c, f, 10 + n / 2, &used, &ev), STWS_OK);
    assert_int_equal(used, 10 + n / 2);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_NONE);
    assert_int_equal(stws_codec_parse(c, f + 10 + n / 2, n / 2, &used, &ev), STWS_OK);
    assert_int_equal(used, n / 2);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.len, n);
    assert_memory_equal(ev.data, f + 10, n);
    free(f);
    stws_codec_destroy(c);
}

static void rfc_masked_text_is_rejected(void **state) {
    static const uint8_t f[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    static const uint8_t masked_ping[] = {0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    (void)state;
    expect_bytes_fail(f, sizeof f, 0, 0, STWS_ERR_MASKED_FRAME, 1002, "masked text");
    expect_bytes_fail(masked_ping, sizeof masked_ping, 0, 0, STWS_ERR_MASKED_FRAME, 1002, "masked ping");
    /* fail fast: the second header byte is enough */
    expect_bytes_fail(f, 2, 0, 0, STWS_ERR_MASKED_FRAME, 1002, "masked text, header only");
}

/* Each call yields at most one event and consumes exactly its frames. */
static void one_event_per_call(void **state) {
    tbuf in = {0};
    det_rng rng = {4, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    size_t used = 0, off = 0;
    (void)state;
    srv_str(&in, 0x81, "one");
    srv_str(&in, 0x89, "p");
    srv_str(&in, 0x82, "two");
    srv_str(&in, 0x01, "th"); /* plus a partial frame */
    tbuf_byte(&in, 0x80);
    assert_int_equal(stws_codec_parse(c, in.p, in.len, &used, &ev), STWS_OK);
    assert_int_equal(used, 5);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_memory_equal(ev.data, "one", 3);
    off += used;
    assert_int_equal(stws_codec_parse(c, in.p + off, in.len - off, &used, &ev), STWS_OK);
    assert_int_equal(used, 3);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_PING);
    off += used;
    assert_int_equal(stws_codec_parse(c, in.p + off, in.len - off, &used, &ev), STWS_OK);
    assert_int_equal(used, 5);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.opcode, STWS_OP_BINARY);
    assert_memory_equal(ev.data, "two", 3);
    off += used;
    assert_int_equal(stws_codec_parse(c, in.p + off, in.len - off, &used, &ev), STWS_OK);
    assert_int_equal(used, in.len - off);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_NONE);
    /* finish: 0x80 was the first byte of the final fragment */
    {
        static const uint8_t rest[] = {0x01, 'r'};
        assert_int_equal(stws_codec_parse(c, rest, 2, &used, &ev), STWS_OK);
        assert_int_equal(used, 2);
        assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
        assert_int_equal(ev.opcode, STWS_OP_TEXT);
        assert_int_equal(ev.len, 3);
        assert_memory_equal(ev.data, "thr", 3);
    }
    tbuf_free(&in);
    stws_codec_destroy(c);
}

static void parse_argument_checks(void **state) {
    det_rng rng = {4, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    size_t used = 99;
    (void)state;
    assert_int_equal(stws_codec_parse(NULL, HELLO_FRAME, 7, &used, &ev), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_parse(c, NULL, 7, &used, &ev), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_parse(c, HELLO_FRAME, 7, NULL, &ev), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_parse(c, HELLO_FRAME, 7, &used, NULL), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_parse(c, NULL, 0, &used, &ev), STWS_OK);
    assert_int_equal(used, 0);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_NONE);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_OPEN);
    assert_int_equal(stws_codec_send(NULL, STWS_OP_TEXT, "a", 1), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, NULL, 1), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_send(c, STWS_OP_CLOSE, "ab", 2), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_send(c, STWS_OP_CONTINUATION, "ab", 2), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_send(c, (stws_opcode)3, "ab", 2), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_send(c, (stws_opcode)0xB, "ab", 2), STWS_ERR_INVALID_ARG);
    /* still healthy */
    assert_int_equal(stws_codec_parse(c, HELLO_FRAME, 7, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    stws_codec_destroy(NULL);
    stws_codec_destroy(c);
}

/* ==== 2. protocol violations and their close codes ====================== */

static void violation_reserved_bits(void **state) {
    static const int rsv[] = {0x40, 0x20, 0x10, 0x70};
    static const int ops[] = {0x1, 0x2, 0x9, 0xA, 0x8};
    size_t i, j;
    char label[96];
    (void)state;
    for (i = 0; i < 4; i++)
        for (j = 0; j < 5; j++) {
            uint8_t f[2];
            f[0] = (uint8_t)(0x80 | rsv[i] | ops[j]);
            f[1] = 0;
            snprintf(label, sizeof label, "RSV 0x%02x opcode %d", rsv[i], ops[j]);
            expect_bytes_fail(f, 2, 0, 0, STWS_ERR_RESERVED_BITS, 1002, label);
            /* fail fast: on the first byte alone */
            expect_bytes_fail(f, 1, 0, 0, STWS_ERR_RESERVED_BITS, 1002, label);
        }
    /* RSV on a continuation inside a fragmented message */
    {
        tbuf b = {0};
        srv_str(&b, 0x01, "a");
        srv_str(&b, 0x80 | 0x40, "b");
        expect_tbuf_fail(&b, STWS_ERR_RESERVED_BITS, 1002, "RSV1 on continuation");
    }
}

static void violation_reserved_opcodes(void **state) {
    static const int ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    size_t i;
    char label[96];
    (void)state;
    for (i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        uint8_t f[3];
        tbuf b = {0};
        f[0] = (uint8_t)(0x80 | ops[i]);
        f[1] = 1;
        f[2] = 'x';
        snprintf(label, sizeof label, "opcode 0x%X", ops[i]);
        expect_bytes_fail(f, 3, 0, 0, STWS_ERR_RESERVED_OPCODE, 1002, label);
        expect_bytes_fail(f, 1, 0, 0, STWS_ERR_RESERVED_OPCODE, 1002, label);
        snprintf(label, sizeof label, "opcode 0x%X inside a fragmented message", ops[i]);
        srv_str(&b, 0x01, "a");
        tbuf_put(&b, f, 3);
        expect_tbuf_fail(&b, STWS_ERR_RESERVED_OPCODE, 1002, label);
    }
}

static void violation_control_too_long(void **state) {
    static const int ops[] = {0x89, 0x8A, 0x88};
    uint8_t f[4 + 126], g[10 + 126];
    size_t i;
    char label[64];
    (void)state;
    for (i = 0; i < 3; i++) {
        memset(f, 'a', sizeof f);
        f[0] = (uint8_t)ops[i];
        f[1] = 126;
        f[2] = 0;
        f[3] = 126;
        if (ops[i] == 0x88) f[4] = 0x03, f[5] = 0xE8;
        snprintf(label, sizeof label, "control 0x%02X with 126 bytes", ops[i]);
        expect_bytes_fail(f, sizeof f, 0, 0, STWS_ERR_CONTROL_TOO_LONG, 1002, label);
        expect_bytes_fail(f, 2, 0, 0, STWS_ERR_CONTROL_TOO_LONG, 1002, label); /* fail fast */
        memset(g, 'a', sizeof g);
        memset(g + 2, 0, 8);
        g[0] = (uint8_t)ops[i];
        g[1] = 127;
        g[9] = 126;
        snprintf(label, sizeof label, "control 0x%02X with 64-bit length", ops[i]);
        expect_bytes_fail(g, sizeof g, 0, 0, STWS_ERR_CONTROL_TOO_LONG, 1002, label);
    }
    /* 125 is the maximum and is fine: the pong echoes all of it */
    {
        uint8_t p[2 + 125];
        det_rng rng = {5, 0, 0, 0};
        stws_codec *c = new_codec(&rng, 0, 0, 0);
        stws_codec_event ev;
        cframes fs;
        size_t used;
        p[0] = 0x89;
        p[1] = 125;
        for (i = 0; i < 125; i++) p[2 + i] = (uint8_t)(i * 3);
        assert_int_equal(stws_codec_parse(c, p, sizeof p, &used, &ev), STWS_OK);
        assert_int_equal(used, sizeof p);
        assert_int_equal(ev.type, STWS_CODEC_EVENT_PING);
        assert_int_equal(ev.len, 125);
        assert_memory_equal(ev.data, p + 2, 125);
        take_output(c, &fs, "pong 125");
        assert_int_equal(fs.n, 1);
        assert_int_equal(fs.f[0].opcode, STWS_OP_PONG);
        assert_int_equal(fs.f[0].len, 125);
        assert_memory_equal(fs.f[0].payload, p + 2, 125);
        cframes_free(&fs);
        stws_codec_destroy(c);
    }
}

static void violation_control_fragmented(void **state) {
    static const int ops[] = {0x09, 0x0A, 0x08};
    size_t i;
    char label[64];
    (void)state;
    for (i = 0; i < 3; i++) {
        uint8_t f[4];
        tbuf b = {0};
        f[0] = (uint8_t)ops[i];
        f[1] = 2;
        f[2] = 0x03;
        f[3] = 0xE8;
        snprintf(label, sizeof label, "control 0x%X without FIN", ops[i]);
        expect_bytes_fail(f, 4, 0, 0, STWS_ERR_CONTROL_FRAGMENTED, 1002, label);
        expect_bytes_fail(f, 1, 0, 0, STWS_ERR_CONTROL_FRAGMENTED, 1002, label);
        srv_str(&b, 0x01, "ab");
        tbuf_put(&b, f, 4);
        snprintf(label, sizeof label, "control 0x%X without FIN inside a message", ops[i]);
        expect_tbuf_fail(&b, STWS_ERR_CONTROL_FRAGMENTED, 1002, label);
    }
}

static void violation_unexpected_continuation(void **state) {
    static const uint8_t a[] = {0x80, 0x00};
    static const uint8_t b[] = {0x00, 0x00};
    static const uint8_t c3[] = {0x80, 0x03, 'a', 'b', 'c'};
    (void)state;
    expect_bytes_fail(a, 2, 0, 0, STWS_ERR_UNEXPECTED_CONTINUATION, 1002, "final continuation first");
    expect_bytes_fail(b, 2, 0, 0, STWS_ERR_UNEXPECTED_CONTINUATION, 1002, "continuation first");
    expect_bytes_fail(c3, 5, 0, 0, STWS_ERR_UNEXPECTED_CONTINUATION, 1002, "continuation with data");
    expect_bytes_fail(c3, 1, 0, 0, STWS_ERR_UNEXPECTED_CONTINUATION, 1002, "continuation, first byte");
    /* after a complete message (the message is delivered first) */
    {
        tbuf in = {0};
        det_rng rng = {6, 0, 0, 0};
        stws_codec *c = new_codec(&rng, 0, 0, 0);
        stws_codec_event ev;
        size_t used;
        srv_str(&in, 0x01, "a");
        srv_str(&in, 0x80, "b");
        srv_str(&in, 0x80, "c");
        assert_int_equal(stws_codec_parse(c, in.p, in.len, &used, &ev), STWS_OK);
        assert_int_equal(used, 6);
        assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
        assert_int_equal(ev.len, 2);
        assert_memory_equal(ev.data, "ab", 2);
        expect_failed(c, stws_codec_parse(c, in.p + used, in.len - used, &used, &ev), &ev,
                      STWS_ERR_UNEXPECTED_CONTINUATION, 1002, "continuation after the end");
        tbuf_free(&in);
        stws_codec_destroy(c);
    }
}

static void violation_expected_continuation(void **state) {
    static const int first[] = {0x01, 0x02};
    static const int second[] = {0x81, 0x82, 0x01, 0x02};
    size_t i, j;
    char label[96];
    (void)state;
    for (i = 0; i < 2; i++)
        for (j = 0; j < 4; j++) {
            tbuf b = {0};
            srv_str(&b, first[i], "ab");
            srv_str(&b, 0x00, "cd");
            srv_str(&b, 0x89, "p");
            srv_str(&b, second[j], "x");
            snprintf(label, sizeof label, "0x%02X inside a message begun by 0x%02X", second[j], first[i]);
            {
                det_rng rng = {7, 0, 0, 0};
                stws_codec *c = new_codec(&rng, 0, 0, 0);
                stws_codec_event ev;
                size_t used, off;
                cframes fs;
                assert_int_equal(stws_codec_parse(c, b.p, b.len, &used, &ev), STWS_OK);
                assert_int_equal(ev.type, STWS_CODEC_EVENT_PING);
                take_output(c, &fs, label); /* the pong */
                EXPECT_EQ(label, fs.n, 1);
                EXPECT_EQ(label, fs.f[0].opcode, STWS_OP_PONG);
                cframes_free(&fs);
                off = used;
                expect_failed(c, stws_codec_parse(c, b.p + off, b.len - off, &used, &ev), &ev,
                              STWS_ERR_EXPECTED_CONTINUATION, 1002, label);
                stws_codec_destroy(c);
            }
            tbuf_free(&b);
        }
}

static void violation_bad_length(void **state) {
    static const uint8_t msb[] = {0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t all[] = {0x82, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    static const uint8_t txt[] = {0x81, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0x05, 'a'};
    (void)state;
    expect_bytes_fail(msb, sizeof msb, 0, 0, STWS_ERR_BAD_LENGTH, 1002, "length 2^63");
    expect_bytes_fail(all, sizeof all, 0, 0, STWS_ERR_BAD_LENGTH, 1002, "length 2^64-1");
    expect_bytes_fail(txt, sizeof txt, 0, 0, STWS_ERR_BAD_LENGTH, 1002, "text length MSB");
    {
        tbuf b = {0};
        srv_str(&b, 0x01, "a");
        tbuf_put(&b, msb, sizeof msb);
        b.p[3] = 0x80; /* the second frame becomes the final continuation */
        expect_tbuf_fail(&b, STWS_ERR_BAD_LENGTH, 1002, "continuation length MSB");
    }
}

static void violation_close_one_byte(void **state) {
    static const uint8_t f[] = {0x88, 0x01, 0x03};
    (void)state;
    expect_bytes_fail(f, sizeof f, 0, 0, STWS_ERR_BAD_CLOSE_PAYLOAD, 1002, "1-byte close");
}

static void violation_bad_close_codes(void **state) {
    static const int bad[] = {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
    size_t i;
    char label[64];
    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tbuf b = {0};
        snprintf(label, sizeof label, "close code %d", bad[i]);
        EXPECT_EQ(label, stws_close_code_valid(bad[i]), 0);
        srv_close(&b, bad[i], NULL, 0);
        expect_tbuf_fail(&b, STWS_ERR_BAD_CLOSE_CODE, 1002, label);
        snprintf(label, sizeof label, "close code %d with reason", bad[i]);
        srv_close(&b, bad[i], "why", 3);
        expect_tbuf_fail(&b, STWS_ERR_BAD_CLOSE_CODE, 1002, label);
    }
}

static void valid_close_codes_are_echoed(void **state) {
    static const int good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                               1012, 1013, 1014, 3000, 3999, 4000, 4999};
    size_t i;
    char label[64];
    (void)state;
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        int with_reason;
        for (with_reason = 0; with_reason < 2; with_reason++) {
            det_rng rng = {8, 0, 0, 0};
            stws_codec *c = new_codec(&rng, 0, 0, 0);
            stws_codec_event ev;
            tbuf b = {0};
            cframes fs;
            size_t used, n = 1;
            snprintf(label, sizeof label, "close code %d%s", good[i], with_reason ? " + reason" : "");
            EXPECT_EQ(label, stws_close_code_valid(good[i]), 1);
            srv_close(&b, good[i], "\xC3\xA9t\xC3\xA9", with_reason ? 5 : 0);
            EXPECT_EQ(label, stws_codec_parse(c, b.p, b.len, &used, &ev), STWS_OK);
            EXPECT_EQ(label, used, b.len);
            EXPECT_EQ(label, ev.type, STWS_CODEC_EVENT_CLOSE);
            EXPECT_EQ(label, ev.close_code, good[i]);
            EXPECT_EQ(label, ev.len, with_reason ? 5 : 0);
            if (with_reason) EXPECT_MEM(label, ev.data, "\xC3\xA9t\xC3\xA9", 5);
            EXPECT_EQ(label, stws_codec_get_state(c), STWS_CODEC_CLOSED);
            take_output(c, &fs, label);
            EXPECT_EQ(label, fs.n, 1);
            expect_close_frame(&fs.f[0], good[i], label); /* exactly the 2 code bytes */
            cframes_free(&fs);
            /* nothing more: input after the close is ignored, sends refused */
            EXPECT_EQ(label, stws_codec_parse(c, HELLO_FRAME, 7, &used, &ev), STWS_OK);
            EXPECT_EQ(label, ev.type, STWS_CODEC_EVENT_NONE);
            EXPECT_EQ(label, stws_codec_send(c, STWS_OP_TEXT, "x", 1), STWS_ERR_STATE);
            EXPECT_EQ(label, stws_codec_close(c, 1000, NULL, 0), STWS_ERR_STATE);
            (void)stws_codec_output(c, &n);
            EXPECT_EQ(label, n, 0);
            EXPECT_EQ(label, stws_codec_get_state(c), STWS_CODEC_CLOSED);
            tbuf_free(&b);
            stws_codec_destroy(c);
        }
    }
}

static void close_code_valid_table(void **state) {
    int code;
    (void)state;
    for (code = -2; code <= 70000; code++) {
        int want = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                   (code >= 3000 && code <= 4999);
        if (stws_close_code_valid(code) != want)
            fail_msg("stws_close_code_valid(%d) is %d, expected %d", code,
                     stws_close_code_valid(code), want);
    }
}

static void empty_close_is_1005_and_echoed_empty(void **state) {
    static const uint8_t f[] = {0x88, 0x00};
    det_rng rng = {9, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    cframes fs;
    size_t used;
    (void)state;
    assert_int_equal(stws_codec_parse(c, f, 2, &used, &ev), STWS_OK);
    assert_int_equal(used, 2);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_CLOSE);
    assert_int_equal(ev.close_code, 1005);
    assert_int_equal(ev.len, 0);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_CLOSED);
    take_output(c, &fs, "empty close");
    assert_int_equal(fs.n, 1);
    expect_close_frame(&fs.f[0], -1, "empty close reply");
    cframes_free(&fs);
    stws_codec_destroy(c);
}

static void close_reason_invalid_utf8(void **state) {
    static const struct { const char *s; size_t n; } bad[] = {
        {"\xFF", 1}, {"ok\xC3", 3}, {"\xED\xA0\x80", 3}, {"\xC0\xAF", 2}, {"a\x80", 2}};
    size_t i;
    char label[64];
    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tbuf b = {0};
        snprintf(label, sizeof label, "close reason #%zu", i);
        srv_close(&b, 1000, bad[i].s, bad[i].n);
        expect_tbuf_fail(&b, STWS_ERR_INVALID_UTF8, 1007, label);
    }
}

static void text_invalid_utf8(void **state) {
    static const uint8_t f[] = {0x81, 0x02, 0xC3, 0x28};
    static const uint8_t g[] = {0x81, 0x03, 'a', 0xFF, 'b'};
    (void)state;
    expect_bytes_fail(f, sizeof f, 0, 0, STWS_ERR_INVALID_UTF8, 1007, "C3 28");
    expect_bytes_fail(g, sizeof g, 0, 0, STWS_ERR_INVALID_UTF8, 1007, "a FF b");
}

static void binary_is_not_utf8_checked(void **state) {
    static const uint8_t f[] = {0x82, 0x04, 0xFF, 0xC0, 0xED, 0xA0};
    det_rng rng = {9, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    size_t used;
    (void)state;
    assert_int_equal(stws_codec_parse(c, f, sizeof f, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.opcode, STWS_OP_BINARY);
    assert_int_equal(ev.len, 4);
    assert_memory_equal(ev.data, f + 2, 4);
    stws_codec_destroy(c);
}

static void frame_too_big(void **state) {
    uint8_t f[2 + 17], g[4 + 300], h[10];
    (void)state;
    memset(f, 'a', sizeof f);
    f[0] = 0x82;
    f[1] = 17;
    expect_bytes_fail(f, sizeof f, 16, 64, STWS_ERR_FRAME_TOO_BIG, 1009, "17 > max_frame 16");
    expect_bytes_fail(f, 2, 16, 64, STWS_ERR_FRAME_TOO_BIG, 1009, "header alone");
    f[0] = 0x01; /* first fragment of a text message */
    expect_bytes_fail(f, sizeof f, 16, 64, STWS_ERR_FRAME_TOO_BIG, 1009, "17-byte fragment");
    memset(g, 'b', sizeof g);
    g[0] = 0x81;
    g[1] = 126;
    g[2] = 300 >> 8;
    g[3] = 300 & 0xFF;
    expect_bytes_fail(g, sizeof g, 299, 0, STWS_ERR_FRAME_TOO_BIG, 1009, "300 > 299, 16-bit");
    memset(h, 0, sizeof h);
    h[0] = 0x82;
    h[1] = 127;
    h[4] = 1; /* 2^40 */
    expect_bytes_fail(h, sizeof h, 0, 0, STWS_ERR_FRAME_TOO_BIG, 1009, "2^40 > default 16 MiB");
    /* exactly max_frame_size is fine */
    {
        det_rng rng = {10, 0, 0, 0};
        stws_codec *c = new_codec(&rng, 16, 64, 0);
        stws_codec_event ev;
        size_t used;
        f[0] = 0x82;
        f[1] = 16;
        assert_int_equal(stws_codec_parse(c, f, 18, &used, &ev), STWS_OK);
        assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
        assert_int_equal(ev.len, 16);
        stws_codec_destroy(c);
    }
}

static void message_too_big(void **state) {
    uint8_t p[40];
    (void)state;
    memset(p, 'm', sizeof p);
    {
        tbuf b = {0};
        srv_frame(&b, 0x02, p, 16);
        srv_frame(&b, 0x80, p, 5); /* 21 > 20 */
        expect_bytes_fail(b.p, b.len, 16, 20, STWS_ERR_MESSAGE_TOO_BIG, 1009, "16 + 5 > 20");
        tbuf_free(&b);
    }
    {
        tbuf b = {0};
        srv_frame(&b, 0x01, p, 10);
        srv_frame(&b, 0x00, p, 10);
        srv_frame(&b, 0x89, "x", 1);
        srv_frame(&b, 0x80, p, 1); /* 21 > 20 */
        {
            det_rng rng = {12, 0, 0, 0};
            stws_codec *c = new_codec(&rng, 16, 20, 0);
            stws_codec_event ev;
            size_t used;
            assert_int_equal(stws_codec_parse(c, b.p, b.len, &used, &ev), STWS_OK);
            assert_int_equal(ev.type, STWS_CODEC_EVENT_PING);
            drain(c, NULL);
            expect_failed(c, stws_codec_parse(c, b.p + used, b.len - used, &used, &ev), &ev,
                          STWS_ERR_MESSAGE_TOO_BIG, 1009, "10 + 10 + 1 > 20");
            stws_codec_destroy(c);
        }
        tbuf_free(&b);
    }
    {
        tbuf b = {0};
        srv_frame(&b, 0x82, p, 21); /* one frame: max_frame allows it, max_message not */
        expect_bytes_fail(b.p, b.len, 100, 20, STWS_ERR_MESSAGE_TOO_BIG, 1009, "single 21 > 20");
        expect_bytes_fail(b.p, 2, 100, 20, STWS_ERR_MESSAGE_TOO_BIG, 1009, "single, header only");
        tbuf_free(&b);
    }
}

/* ==== 3. fail fast ======================================================== */

static void fail_fast_incomplete_text_frame(void **state) {
    /* header says 20 bytes; 5 arrive; the third is invalid */
    static const uint8_t f[] = {0x81, 20, 'a', 'b', 0xFF, 'c', 'd'};
    static const uint8_t g[] = {0x81, 20, 'a', 'b', 0xED, 0xA0};  /* surrogate */
    static const uint8_t h[] = {0x81, 126, 0x01, 0x00, 0xE0, 0x80}; /* overlong, 16-bit */
    (void)state;
    expect_bytes_fail(f, sizeof f, 0, 0, STWS_ERR_INVALID_UTF8, 1007, "FF at payload byte 3 of 20");
    expect_bytes_fail(f, 5, 0, 0, STWS_ERR_INVALID_UTF8, 1007, "FF as the last byte fed");
    expect_bytes_fail(g, sizeof g, 0, 0, STWS_ERR_INVALID_UTF8, 1007, "ED A0 in an incomplete frame");
    expect_bytes_fail(h, sizeof h, 0, 0, STWS_ERR_INVALID_UTF8, 1007, "E0 80 in an incomplete frame");
    /* same, with the header and the bytes before the bad one in earlier calls */
    {
        det_rng rng = {13, 0, 0, 0};
        stws_codec *c = new_codec(&rng, 0, 0, 0);
        stws_codec_event ev;
        size_t used;
        assert_int_equal(stws_codec_parse(c, f, 4, &used, &ev), STWS_OK);
        assert_int_equal(used, 4);
        assert_int_equal(ev.type, STWS_CODEC_EVENT_NONE);
        expect_failed(c, stws_codec_parse(c, f + 4, 1, &used, &ev), &ev, STWS_ERR_INVALID_UTF8, 1007,
                      "FF alone");
        stws_codec_destroy(c);
    }
}

static void fail_fast_later_fragment(void **state) {
    tbuf b = {0};
    det_rng rng = {14, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    size_t used, f1, f2;
    (void)state;
    srv_str(&b, 0x01, "abc");
    f1 = b.len;
    srv_str(&b, 0x00, "de");
    f2 = b.len;
    srv_frame(&b, 0x00, "f\xC0g", 3);
    srv_str(&b, 0x80, "h");
    assert_int_equal(stws_codec_parse(c, b.p, f1, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_NONE);
    assert_int_equal(stws_codec_parse(c, b.p + f1, f2 - f1, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_NONE);
    /* the bad fragment, only its header and the first two payload bytes */
    expect_failed(c, stws_codec_parse(c, b.p + f2, 4, &used, &ev), &ev, STWS_ERR_INVALID_UTF8, 1007,
                  "C0 in the third fragment");
    tbuf_free(&b);
    stws_codec_destroy(c);
}

static void code_point_split_across_fragments(void **state) {
    /* U+1F600 F0 9F 98 80 over three fragments, a ping in between; then
       U+03BA CE BA split 1+1; then U+20AC E2 82 AC split 2+1 */
    tbuf b = {0};
    det_rng rng = {15, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    size_t used, off = 0;
    (void)state;
    srv_frame(&b, 0x01, "x\xF0\x9F", 3);
    srv_frame(&b, 0x00, "\x98", 1);
    srv_frame(&b, 0x89, "", 0);
    srv_frame(&b, 0x80, "\x80y", 2);
    srv_frame(&b, 0x01, "\xCE", 1);
    srv_frame(&b, 0x80, "\xBA", 1);
    srv_frame(&b, 0x01, "\xE2\x82", 2);
    srv_frame(&b, 0x80, "\xAC", 1);
    assert_int_equal(stws_codec_parse(c, b.p, b.len, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_PING);
    off += used;
    assert_int_equal(stws_codec_parse(c, b.p + off, b.len - off, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.opcode, STWS_OP_TEXT);
    assert_int_equal(ev.len, 6);
    assert_memory_equal(ev.data, "x\xF0\x9F\x98\x80y", 6);
    off += used;
    assert_int_equal(stws_codec_parse(c, b.p + off, b.len - off, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.len, 2);
    assert_memory_equal(ev.data, "\xCE\xBA", 2);
    off += used;
    assert_int_equal(stws_codec_parse(c, b.p + off, b.len - off, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.len, 3);
    assert_memory_equal(ev.data, "\xE2\x82\xAC", 3);
    off += used;
    assert_int_equal(off, b.len);
    tbuf_free(&b);
    stws_codec_destroy(c);
}

static void truncated_sequence_at_end(void **state) {
    static const uint8_t one[] = {0x81, 0x01, 0xCE};
    static const uint8_t two[] = {0x81, 0x02, 0xE2, 0x82};
    static const uint8_t three[] = {0x81, 0x04, 'a', 0xF0, 0x9F, 0x98};
    (void)state;
    expect_bytes_fail(one, sizeof one, 0, 0, STWS_ERR_INVALID_UTF8, 1007, "CE at the end");
    expect_bytes_fail(two, sizeof two, 0, 0, STWS_ERR_INVALID_UTF8, 1007, "E2 82 at the end");
    expect_bytes_fail(three, sizeof three, 0, 0, STWS_ERR_INVALID_UTF8, 1007, "F0 9F 98 at the end");
    {
        tbuf b = {0};
        srv_str(&b, 0x01, "ab\xE2");
        srv_frame(&b, 0x80, "\x82", 1);
        expect_tbuf_fail(&b, STWS_ERR_INVALID_UTF8, 1007, "E2 | 82 at the end of the final fragment");
    }
    {
        tbuf b = {0};
        srv_str(&b, 0x01, "ab\xC3");
        srv_frame(&b, 0x80, "", 0); /* an empty final fragment leaves it truncated */
        expect_tbuf_fail(&b, STWS_ERR_INVALID_UTF8, 1007, "C3 | empty final fragment");
    }
    /* a truncated prefix is not an error until the frame ends */
    {
        det_rng rng = {16, 0, 0, 0};
        stws_codec *c = new_codec(&rng, 0, 0, 0);
        stws_codec_event ev;
        size_t used;
        assert_int_equal(stws_codec_parse(c, three, 5, &used, &ev), STWS_OK);
        assert_int_equal(ev.type, STWS_CODEC_EVENT_NONE);
        expect_failed(c, stws_codec_parse(c, three + 5, 1, &used, &ev), &ev, STWS_ERR_INVALID_UTF8,
                      1007, "F0 9F 98 then the end");
        stws_codec_destroy(c);
    }
}

/* ==== 4. control frames inside a fragmented message ====================== */

static void interleaved_control_frames(void **state) {
    tbuf b = {0};
    det_rng rng = {17, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    cframes fs;
    size_t used, off = 0;
    (void)state;
    srv_str(&b, 0x01, "Hel");
    srv_str(&b, 0x89, "p1");
    srv_str(&b, 0x00, "l");
    srv_str(&b, 0x8A, "");
    srv_str(&b, 0x89, "p2");
    srv_str(&b, 0x80, "o");
    assert_int_equal(stws_codec_parse(c, b.p, b.len, &used, &ev), STWS_OK);
    assert_int_equal(used, 5 + 4);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_PING);
    assert_int_equal(ev.len, 2);
    assert_memory_equal(ev.data, "p1", 2);
    off += used;
    take_output(c, &fs, "pong p1");
    assert_int_equal(fs.n, 1);
    assert_int_equal(fs.f[0].opcode, STWS_OP_PONG);
    assert_int_equal(fs.f[0].len, 2);
    assert_memory_equal(fs.f[0].payload, "p1", 2);
    cframes_free(&fs);
    assert_int_equal(stws_codec_parse(c, b.p + off, b.len - off, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_PONG);
    assert_int_equal(ev.len, 0);
    off += used;
    assert_int_equal(stws_codec_parse(c, b.p + off, b.len - off, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_PING);
    assert_memory_equal(ev.data, "p2", 2);
    off += used;
    assert_int_equal(stws_codec_parse(c, b.p + off, b.len - off, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.opcode, STWS_OP_TEXT);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
    off += used;
    assert_int_equal(off, b.len);
    take_output(c, &fs, "pong p2");
    assert_int_equal(fs.n, 1);
    assert_int_equal(fs.f[0].opcode, STWS_OP_PONG);
    assert_memory_equal(fs.f[0].payload, "p2", 2);
    cframes_free(&fs);
    tbuf_free(&b);
    stws_codec_destroy(c);
}

static void close_inside_fragmented_message(void **state) {
    tbuf b = {0};
    det_rng rng = {18, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    cframes fs;
    size_t used;
    (void)state;
    srv_str(&b, 0x01, "Hel");
    srv_close(&b, 1001, "away", 4);
    srv_str(&b, 0x80, "lo");
    assert_int_equal(stws_codec_parse(c, b.p, b.len, &used, &ev), STWS_OK);
    assert_int_equal(used, 5 + 8);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_CLOSE);
    assert_int_equal(ev.close_code, 1001);
    assert_int_equal(ev.len, 4);
    assert_memory_equal(ev.data, "away", 4);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_CLOSED);
    take_output(c, &fs, "close reply");
    assert_int_equal(fs.n, 1);
    expect_close_frame(&fs.f[0], 1001, "close reply");
    cframes_free(&fs);
    /* the rest of the message is never delivered */
    assert_int_equal(stws_codec_parse(c, b.p + used, b.len - used, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_NONE);
    tbuf_free(&b);
    stws_codec_destroy(c);
}

/* ==== 5. chunking equivalence ============================================= */

typedef struct rev {
    stws_codec_event_type type;
    stws_opcode opcode;
    int close_code;
    stws_result error;
    uint8_t *data;
    size_t len;
} rev;

typedef struct run_t {
    rev *e;
    size_t n;
    stws_result final;
    stws_codec_state state;
    tbuf out;
} run_t;

static void run_free(run_t *r) {
    size_t i;
    for (i = 0; i < r->n; i++) free(r->e[i].data);
    free(r->e);
    tbuf_free(&r->out);
    memset(r, 0, sizeof *r);
}

static void run_record(run_t *r, const stws_codec_event *ev) {
    rev x;
    memset(&x, 0, sizeof x);
    x.type = ev->type;
    x.opcode = ev->type == STWS_CODEC_EVENT_MESSAGE ? ev->opcode : (stws_opcode)0;
    x.close_code = (ev->type == STWS_CODEC_EVENT_CLOSE || ev->type == STWS_CODEC_EVENT_ERROR) ? ev->close_code : 0;
    x.error = ev->type == STWS_CODEC_EVENT_ERROR ? ev->error : STWS_OK;
    if (ev->type != STWS_CODEC_EVENT_ERROR) {
        x.len = ev->len;
        if (ev->len) {
            assert_non_null(ev->data);
            x.data = (uint8_t *)malloc(ev->len);
            assert_non_null(x.data);
            memcpy(x.data, ev->data, ev->len);
        }
    }
    r->e = (rev *)realloc(r->e, (r->n + 1) * sizeof *r->e);
    assert_non_null(r->e);
    r->e[r->n++] = x;
}

enum { CH_WHOLE, CH_BYTE, CH_RANDOM };

/* Feed in to a fresh codec in chunks; each chunk lives in its own heap
   buffer that is poisoned and freed once parsed, as a reused receive buffer
   would be, so that a view kept past its call is caught by ASan. */
static void run_stream(const stws_codec_desc *desc0, const uint8_t *in, size_t len, int mode,
                       uint64_t seed, run_t *res) {
    stws_codec_desc desc = *desc0;
    det_rng rng = {0, 0, 0, 0};
    stws_codec *c;
    size_t off = 0;
    int failed = 0;
    uint64_t ps = seed;
    memset(res, 0, sizeof *res);
    rng.seed = seed * 7 + 1; /* different masking keys per run */
    desc.random = det_random(&rng);
    c = stws_codec_create(&desc);
    assert_non_null(c);
    while (off < len && !failed) {
        size_t n, p = 0, guard = 0;
        uint8_t *chunk;
        if (mode == CH_WHOLE) {
            n = len - off;
        } else if (mode == CH_BYTE) {
            n = 1;
        } else {
            switch (prng_next(&ps) % 4) {
            case 0: n = prng_range(&ps, 1, 4); break;
            case 1: n = prng_range(&ps, 1, 40); break;
            case 2: n = prng_range(&ps, 1, 1500); break;
            default: n = prng_range(&ps, 1, 100000); break;
            }
            if (n > len - off) n = len - off;
        }
        chunk = (uint8_t *)malloc(n);
        assert_non_null(chunk);
        memcpy(chunk, in + off, n);
        while (p < n) {
            stws_codec_event ev;
            size_t used = 0;
            stws_result r = stws_codec_parse(c, chunk + p, n - p, &used, &ev);
            assert_true(used <= n - p);
            drain(c, &res->out);
            if (r < 0) {
                assert_int_equal(ev.type, STWS_CODEC_EVENT_ERROR);
                assert_int_equal(ev.error, r);
                run_record(res, &ev);
                res->final = r;
                failed = 1;
                break;
            }
            assert_int_equal(r, STWS_OK);
            p += used;
            if (ev.type == STWS_CODEC_EVENT_NONE) {
                assert_int_equal(p, n); /* NONE: all input consumed */
                break;
            }
            run_record(res, &ev);
            assert_true(++guard < 1000000);
        }
        memset(chunk, 0xA5, n);
        free(chunk);
        off += n;
    }
    if (failed) { /* sticky */
        stws_codec_event ev;
        size_t used = 1;
        assert_int_equal(stws_codec_parse(c, HELLO_FRAME, 7, &used, &ev), res->final);
        assert_int_equal(used, 0);
        drain(c, &res->out);
    }
    res->state = stws_codec_get_state(c);
    stws_codec_destroy(c);
}

/* The output compared as frames: opcode, FIN and unmasked payload. */
static void compare_output(const tbuf *a, const tbuf *b, const char *label) {
    cframes fa, fb;
    size_t i;
    decode_client(a->p, a->len, &fa, label);
    decode_client(b->p, b->len, &fb, label);
    EXPECT_EQ(label, fb.n, fa.n);
    for (i = 0; i < fa.n; i++) {
        EXPECT_EQ(label, fb.f[i].opcode, fa.f[i].opcode);
        EXPECT_EQ(label, fb.f[i].fin, fa.f[i].fin);
        EXPECT_EQ(label, fb.f[i].len, fa.f[i].len);
        EXPECT_MEM(label, fb.f[i].payload, fa.f[i].payload, fa.f[i].len);
    }
    cframes_free(&fa);
    cframes_free(&fb);
}

static void compare_runs(const run_t *a, const run_t *b, const char *label) {
    size_t i;
    EXPECT_EQ(label, b->n, a->n);
    for (i = 0; i < a->n; i++) {
        EXPECT_EQ(label, b->e[i].type, a->e[i].type);
        EXPECT_EQ(label, b->e[i].opcode, a->e[i].opcode);
        EXPECT_EQ(label, b->e[i].close_code, a->e[i].close_code);
        EXPECT_EQ(label, b->e[i].error, a->e[i].error);
        EXPECT_EQ(label, b->e[i].len, a->e[i].len);
        EXPECT_MEM(label, b->e[i].data, a->e[i].data, a->e[i].len);
    }
    EXPECT_EQ(label, b->final, a->final);
    EXPECT_EQ(label, b->state, a->state);
    compare_output(&a->out, &b->out, label);
}

/* What a scenario must produce. */
typedef struct xev {
    stws_codec_event_type type;
    stws_opcode opcode;
    const void *data;
    size_t len;
    int close_code;
    stws_result error;
} xev;

typedef struct xout {
    int opcode;
    const void *data;
    size_t len;
} xout;

#define MAXX 16
typedef struct scenario {
    char name[64];
    size_t max_frame, max_message;
    tbuf in;
    xev ev[MAXX];
    size_t nev;
    stws_result final;
    stws_codec_state state;
    xout out[MAXX];
    size_t nout;
} scenario;

static uint8_t g_pattern[70000];
static uint8_t g_text[70000]; /* valid UTF-8 mixing 1-4 byte sequences */

static void init_patterns(void) {
    static const char *pieces[] = {"a", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", " ",
                                   "\xEF\xBF\xBF", "\xF4\x8F\xBF\xBF", "\xED\x9F\xBF", "z"};
    size_t i = 0, k = 0;
    for (i = 0; i < sizeof g_pattern; i++) g_pattern[i] = (uint8_t)(i * 131 + (i >> 7));
    i = 0;
    while (i < sizeof g_text) {
        const char *p = pieces[k++ % 9];
        size_t n = strlen(p);
        if (i + n > sizeof g_text) p = "a", n = 1;
        memcpy(g_text + i, p, n);
        i += n;
    }
}

static void sc_ev(scenario *s, stws_codec_event_type t, stws_opcode op, const void *d, size_t n, int code,
                  stws_result err) {
    xev *x = &s->ev[s->nev++];
    assert_true(s->nev <= MAXX);
    x->type = t;
    x->opcode = op;
    x->data = d;
    x->len = n;
    x->close_code = code;
    x->error = err;
}
static void sc_msg(scenario *s, stws_opcode op, const void *d, size_t n) {
    sc_ev(s, STWS_CODEC_EVENT_MESSAGE, op, d, n, 0, STWS_OK);
}
static void sc_out(scenario *s, int op, const void *d, size_t n) {
    xout *x = &s->out[s->nout++];
    assert_true(s->nout <= MAXX);
    x->opcode = op;
    x->data = d;
    x->len = n;
}
static const uint8_t CODE_1000[] = {0x03, 0xE8};
static const uint8_t CODE_1002[] = {0x03, 0xEA};
static const uint8_t CODE_1007[] = {0x03, 0xEF};
static const uint8_t CODE_1009[] = {0x03, 0xF1};
static const uint8_t CODE_3001[] = {0x0B, 0xB9};
static void sc_fail(scenario *s, stws_result err, int code, const uint8_t *code_bytes) {
    sc_ev(s, STWS_CODEC_EVENT_ERROR, (stws_opcode)0, NULL, 0, code, err);
    s->final = err;
    s->state = STWS_CODEC_FAILED;
    sc_out(s, STWS_OP_CLOSE, code_bytes, 2);
}

#define NSCEN 16
static size_t build_scenarios(scenario *sc) {
    size_t n = 0;
    scenario *s;
    memset(sc, 0, NSCEN * sizeof *sc);
    init_patterns();

    /* several messages of every length form, control frames, a close, junk after it */
    s = &sc[n++];
    strcpy(s->name, "messages then close");
    srv_str(&s->in, 0x81, "Hello");
    srv_frame(&s->in, 0x82, g_pattern, 300);
    srv_frame(&s->in, 0x81, g_text, sizeof g_text);
    srv_frame(&s->in, 0x81, "", 0);
    srv_frame(&s->in, 0x82, "", 0);
    srv_str(&s->in, 0x89, "ping1");
    srv_str(&s->in, 0x8A, "pong1");
    srv_str(&s->in, 0x81, "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5");
    srv_frame(&s->in, 0x82, g_pattern, 65536);
    srv_close(&s->in, 1000, "done", 4);
    tbuf_byte(&s->in, 0xFF); /* ignored after the close */
    tbuf_byte(&s->in, 0x00);
    sc_msg(s, STWS_OP_TEXT, "Hello", 5);
    sc_msg(s, STWS_OP_BINARY, g_pattern, 300);
    sc_msg(s, STWS_OP_TEXT, g_text, sizeof g_text);
    sc_msg(s, STWS_OP_TEXT, "", 0);
    sc_msg(s, STWS_OP_BINARY, "", 0);
    sc_ev(s, STWS_CODEC_EVENT_PING, 0, "ping1", 5, 0, STWS_OK);
    sc_ev(s, STWS_CODEC_EVENT_PONG, 0, "pong1", 5, 0, STWS_OK);
    sc_msg(s, STWS_OP_TEXT, "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", 11);
    sc_msg(s, STWS_OP_BINARY, g_pattern, 65536);
    sc_ev(s, STWS_CODEC_EVENT_CLOSE, 0, "done", 4, 1000, STWS_OK);
    s->state = STWS_CODEC_CLOSED;
    sc_out(s, STWS_OP_PONG, "ping1", 5);
    sc_out(s, STWS_OP_CLOSE, CODE_1000, 2);

    /* fragmented messages: split code points, zero-length fragments, pings */
    s = &sc[n++];
    strcpy(s->name, "fragmented with pings");
    srv_frame(&s->in, 0x01, "\xCE", 1);
    srv_str(&s->in, 0x89, "a");
    srv_frame(&s->in, 0x00, "\xBA \xF0\x9F", 4);
    srv_frame(&s->in, 0x00, "", 0);
    srv_frame(&s->in, 0x8A, "", 0);
    srv_frame(&s->in, 0x00, "\x98", 1);
    srv_frame(&s->in, 0x80, "\x80!", 2);
    srv_frame(&s->in, 0x02, g_pattern, 200);
    srv_str(&s->in, 0x89, "b");
    srv_frame(&s->in, 0x00, "", 0);
    srv_frame(&s->in, 0x80, g_pattern + 200, 70);
    srv_frame(&s->in, 0x01, "", 0);
    srv_frame(&s->in, 0x80, "", 0);
    srv_frame(&s->in, 0x01, g_text, 1000);
    srv_frame(&s->in, 0x00, g_text + 1000, 69000);
    srv_frame(&s->in, 0x80, g_text + 70000 - 0, 0);
    srv_close(&s->in, -1, NULL, 0);
    sc_ev(s, STWS_CODEC_EVENT_PING, 0, "a", 1, 0, STWS_OK);
    sc_ev(s, STWS_CODEC_EVENT_PONG, 0, "", 0, 0, STWS_OK);
    sc_msg(s, STWS_OP_TEXT, "\xCE\xBA \xF0\x9F\x98\x80!", 8);
    sc_ev(s, STWS_CODEC_EVENT_PING, 0, "b", 1, 0, STWS_OK);
    sc_msg(s, STWS_OP_BINARY, g_pattern, 270);
    sc_msg(s, STWS_OP_TEXT, "", 0);
    sc_msg(s, STWS_OP_TEXT, g_text, 70000);
    sc_ev(s, STWS_CODEC_EVENT_CLOSE, 0, "", 0, 1005, STWS_OK);
    s->state = STWS_CODEC_CLOSED;
    sc_out(s, STWS_OP_PONG, "a", 1);
    sc_out(s, STWS_OP_PONG, "b", 1);
    sc_out(s, STWS_OP_CLOSE, "", 0);

    s = &sc[n++];
    strcpy(s->name, "reserved opcode mid-message");
    srv_str(&s->in, 0x81, "one");
    srv_str(&s->in, 0x01, "tw");
    srv_str(&s->in, 0x89, "p");
    srv_str(&s->in, 0x83, "zz");
    sc_msg(s, STWS_OP_TEXT, "one", 3);
    sc_ev(s, STWS_CODEC_EVENT_PING, 0, "p", 1, 0, STWS_OK);
    sc_out(s, STWS_OP_PONG, "p", 1);
    sc_fail(s, STWS_ERR_RESERVED_OPCODE, 1002, CODE_1002);

    s = &sc[n++];
    strcpy(s->name, "invalid UTF-8 in the third fragment");
    srv_str(&s->in, 0x01, "abc");
    srv_frame(&s->in, 0x89, "", 0);
    srv_str(&s->in, 0x00, "d\xC3");
    srv_frame(&s->in, 0x00, "\xA9 f\xC0g and more bytes that never matter", 38);
    srv_str(&s->in, 0x80, "h");
    sc_ev(s, STWS_CODEC_EVENT_PING, 0, "", 0, 0, STWS_OK);
    sc_out(s, STWS_OP_PONG, "", 0);
    sc_fail(s, STWS_ERR_INVALID_UTF8, 1007, CODE_1007);

    s = &sc[n++];
    strcpy(s->name, "masked frame after a message");
    srv_str(&s->in, 0x82, "bin");
    {
        static const uint8_t m[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
        tbuf_put(&s->in, m, sizeof m);
    }
    sc_msg(s, STWS_OP_BINARY, "bin", 3);
    sc_fail(s, STWS_ERR_MASKED_FRAME, 1002, CODE_1002);

    s = &sc[n++];
    strcpy(s->name, "close with code 1005");
    srv_str(&s->in, 0x81, "x");
    srv_close(&s->in, 1005, NULL, 0);
    sc_msg(s, STWS_OP_TEXT, "x", 1);
    sc_fail(s, STWS_ERR_BAD_CLOSE_CODE, 1002, CODE_1002);

    s = &sc[n++];
    strcpy(s->name, "frame too big");
    s->max_frame = 1000;
    s->max_message = 1500;
    srv_frame(&s->in, 0x82, g_pattern, 1000);
    srv_frame(&s->in, 0x02, g_pattern, 600);
    srv_frame(&s->in, 0x80, g_pattern + 600, 600);
    srv_frame(&s->in, 0x82, g_pattern, 1001);
    sc_msg(s, STWS_OP_BINARY, g_pattern, 1000);
    sc_msg(s, STWS_OP_BINARY, g_pattern, 1200);
    sc_fail(s, STWS_ERR_FRAME_TOO_BIG, 1009, CODE_1009);

    s = &sc[n++];
    strcpy(s->name, "message too big");
    s->max_frame = 1000;
    s->max_message = 1500;
    srv_frame(&s->in, 0x02, g_pattern, 1000);
    srv_frame(&s->in, 0x80, g_pattern + 1000, 500); /* exactly 1500 */
    srv_frame(&s->in, 0x02, g_pattern, 1000);
    srv_str(&s->in, 0x89, "x");
    srv_frame(&s->in, 0x80, g_pattern, 501);
    sc_msg(s, STWS_OP_BINARY, g_pattern, 1500);
    sc_ev(s, STWS_CODEC_EVENT_PING, 0, "x", 1, 0, STWS_OK);
    sc_out(s, STWS_OP_PONG, "x", 1);
    sc_fail(s, STWS_ERR_MESSAGE_TOO_BIG, 1009, CODE_1009);

    s = &sc[n++];
    strcpy(s->name, "close reason with a surrogate");
    srv_str(&s->in, 0x89, "zz");
    srv_close(&s->in, 1000, "ok\xED\xA0\x80", 5);
    sc_ev(s, STWS_CODEC_EVENT_PING, 0, "zz", 2, 0, STWS_OK);
    sc_out(s, STWS_OP_PONG, "zz", 2);
    sc_fail(s, STWS_ERR_INVALID_UTF8, 1007, CODE_1007);

    s = &sc[n++];
    strcpy(s->name, "truncated at the end of the final fragment");
    srv_str(&s->in, 0x81, "fine");
    srv_str(&s->in, 0x01, "ab\xE2");
    srv_frame(&s->in, 0x80, "\x82", 1);
    sc_msg(s, STWS_OP_TEXT, "fine", 4);
    sc_fail(s, STWS_ERR_INVALID_UTF8, 1007, CODE_1007);

    s = &sc[n++];
    strcpy(s->name, "continuation after the end");
    srv_str(&s->in, 0x81, "a");
    srv_str(&s->in, 0x80, "b");
    sc_msg(s, STWS_OP_TEXT, "a", 1);
    sc_fail(s, STWS_ERR_UNEXPECTED_CONTINUATION, 1002, CODE_1002);

    s = &sc[n++];
    strcpy(s->name, "ping too long mid-message");
    srv_str(&s->in, 0x01, "a");
    srv_frame(&s->in, 0x89, g_pattern, 126);
    sc_fail(s, STWS_ERR_CONTROL_TOO_LONG, 1002, CODE_1002);

    s = &sc[n++];
    strcpy(s->name, "64-bit length with MSB set");
    srv_str(&s->in, 0x81, "ok");
    {
        static const uint8_t m[] = {0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 1, 'x'};
        tbuf_put(&s->in, m, sizeof m);
    }
    sc_msg(s, STWS_OP_TEXT, "ok", 2);
    sc_fail(s, STWS_ERR_BAD_LENGTH, 1002, CODE_1002);

    s = &sc[n++];
    strcpy(s->name, "RSV1 after a message");
    srv_str(&s->in, 0x81, "a");
    srv_str(&s->in, 0xC1, "b");
    sc_msg(s, STWS_OP_TEXT, "a", 1);
    sc_fail(s, STWS_ERR_RESERVED_BITS, 1002, CODE_1002);

    s = &sc[n++];
    strcpy(s->name, "text inside a fragmented binary");
    srv_frame(&s->in, 0x02, g_pattern, 130);
    srv_str(&s->in, 0x81, "t");
    sc_fail(s, STWS_ERR_EXPECTED_CONTINUATION, 1002, CODE_1002);

    s = &sc[n++];
    strcpy(s->name, "application close code with reason");
    srv_frame(&s->in, 0x01, g_text, 2); /* 'a' and half of U+00E9 */
    srv_frame(&s->in, 0x80, g_text + 2, 4);
    srv_close(&s->in, 3001, "\xE2\x82\xAC", 3);
    srv_str(&s->in, 0x81, "never");
    sc_msg(s, STWS_OP_TEXT, g_text, 6);
    sc_ev(s, STWS_CODEC_EVENT_CLOSE, 0, "\xE2\x82\xAC", 3, 3001, STWS_OK);
    s->state = STWS_CODEC_CLOSED;
    sc_out(s, STWS_OP_CLOSE, CODE_3001, 2);

    assert_true(n <= NSCEN);
    return n;
}

static void check_scenario(const scenario *s, const run_t *r) {
    size_t i;
    cframes fs;
    const char *label = s->name;
    EXPECT_EQ(label, r->n, s->nev);
    for (i = 0; i < s->nev; i++) {
        EXPECT_EQ(label, r->e[i].type, s->ev[i].type);
        EXPECT_EQ(label, r->e[i].opcode, s->ev[i].opcode);
        EXPECT_EQ(label, r->e[i].close_code, s->ev[i].close_code);
        EXPECT_EQ(label, r->e[i].error, s->ev[i].error);
        EXPECT_EQ(label, r->e[i].len, s->ev[i].len);
        EXPECT_MEM(label, r->e[i].data, s->ev[i].data, s->ev[i].len);
    }
    EXPECT_EQ(label, r->final, s->final);
    EXPECT_EQ(label, r->state, s->state);
    decode_client(r->out.p, r->out.len, &fs, label);
    EXPECT_EQ(label, fs.n, s->nout);
    for (i = 0; i < s->nout; i++) {
        EXPECT_EQ(label, fs.f[i].opcode, s->out[i].opcode);
        EXPECT_EQ(label, fs.f[i].fin, 1);
        EXPECT_EQ(label, fs.f[i].len, s->out[i].len);
        EXPECT_MEM(label, fs.f[i].payload, s->out[i].data, s->out[i].len);
    }
    cframes_free(&fs);
}

static void chunking_equivalence(void **state) {
    static scenario sc[NSCEN];
    size_t n = build_scenarios(sc), i;
    char label[128];
    (void)state;
    for (i = 0; i < n; i++) {
        stws_codec_desc d;
        run_t whole, other;
        uint64_t seed;
        memset(&d, 0, sizeof d);
        d.max_frame_size = sc[i].max_frame;
        d.max_message_size = sc[i].max_message;
        run_stream(&d, sc[i].in.p, sc[i].in.len, CH_WHOLE, 1, &whole);
        check_scenario(&sc[i], &whole);
        snprintf(label, sizeof label, "%.60s, one byte at a time", sc[i].name);
        run_stream(&d, sc[i].in.p, sc[i].in.len, CH_BYTE, 2, &other);
        compare_runs(&whole, &other, label);
        run_free(&other);
        for (seed = 1; seed <= 150; seed++) {
            snprintf(label, sizeof label, "%.60s, random chunks, seed %llu", sc[i].name,
                     (unsigned long long)seed);
            run_stream(&d, sc[i].in.p, sc[i].in.len, CH_RANDOM, seed, &other);
            compare_runs(&whole, &other, label);
            run_free(&other);
        }
        run_free(&whole);
        tbuf_free(&sc[i].in);
    }
}

/* ==== 6. UTF-8 ============================================================ */

#define VALID ((size_t)-1)
typedef struct u8vec {
    const char *name;
    const char *s;
    size_t len;
    size_t bad;     /* index of the first invalid byte, VALID if none */
    int truncated;  /* valid so far but ends inside a sequence */
} u8vec;
#define V(name, lit, bad, trunc) {name, lit, sizeof(lit) - 1, bad, trunc}

static const u8vec U8[] = {
    V("empty", "", VALID, 0),
    V("ascii", "hello, world", VALID, 0),
    V("NUL", "\x00", VALID, 0),
    V("kosme", "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", VALID, 0),
    /* first and last sequences of each length (Kuhn 2.1, 2.2) */
    V("U+007F", "\x7F", VALID, 0),
    V("U+0080", "\xC2\x80", VALID, 0),
    V("U+07FF", "\xDF\xBF", VALID, 0),
    V("U+0800", "\xE0\xA0\x80", VALID, 0),
    V("U+FFFF", "\xEF\xBF\xBF", VALID, 0),
    V("U+10000", "\xF0\x90\x80\x80", VALID, 0),
    V("U+10FFFF", "\xF4\x8F\xBF\xBF", VALID, 0),
    /* other boundaries (Kuhn 2.3) */
    V("U+D7FF", "\xED\x9F\xBF", VALID, 0),
    V("U+E000", "\xEE\x80\x80", VALID, 0),
    V("U+FFFD", "\xEF\xBF\xBD", VALID, 0),
    V("U+FFFE", "\xEF\xBF\xBE", VALID, 0),
    V("U+FDD0", "\xEF\xB7\x90", VALID, 0),
    V("U+1FFFF", "\xF0\x9F\xBF\xBF", VALID, 0),
    V("U+3FFFF", "\xF0\xBF\xBF\xBF", VALID, 0),
    V("U+40000", "\xF1\x80\x80\x80", VALID, 0),
    V("U+FFFFF", "\xF3\xBF\xBF\xBF", VALID, 0),
    V("U+100000", "\xF4\x80\x80\x80", VALID, 0),
    V("mixed over the 8-byte fast path", "abcdefgh\xC3\xA9ijklmnop\xE2\x82\xACqrstuvwx\xF0\x9F\x98\x80yz", VALID, 0),
    V("multibyte inside a word", "abc\xE2\x82\xAC" "defghijklmnop", VALID, 0),
    /* overlong forms (Kuhn 4) */
    V("C0 80", "\xC0\x80", 0, 0),
    V("C1 BF", "\xC1\xBF", 0, 0),
    V("C0 AF", "\xC0\xAF", 0, 0),
    V("E0 80 80", "\xE0\x80\x80", 1, 0),
    V("E0 9F BF", "\xE0\x9F\xBF", 1, 0),
    V("E0 80 AF", "\xE0\x80\xAF", 1, 0),
    V("F0 80 80 80", "\xF0\x80\x80\x80", 1, 0),
    V("F0 8F BF BF", "\xF0\x8F\xBF\xBF", 1, 0),
    V("F0 80 80 AF", "\xF0\x80\x80\xAF", 1, 0),
    V("F8 overlong", "\xF8\x80\x80\x80\xAF", 0, 0),
    V("FC overlong", "\xFC\x80\x80\x80\x80\xAF", 0, 0),
    /* surrogates (Kuhn 5) */
    V("ED A0 80", "\xED\xA0\x80", 1, 0),
    V("ED AD BF", "\xED\xAD\xBF", 1, 0),
    V("ED AE 80", "\xED\xAE\x80", 1, 0),
    V("ED B0 80", "\xED\xB0\x80", 1, 0),
    V("ED BF BF", "\xED\xBF\xBF", 1, 0),
    V("surrogate pair", "\xED\xA0\x80\xED\xB0\x80", 1, 0),
    V("surrogate after text", "abcdefghij\xED\xBF\xBF", 11, 0),
    /* beyond U+10FFFF */
    V("F4 90 80 80", "\xF4\x90\x80\x80", 1, 0),
    V("F4 BF BF BF", "\xF4\xBF\xBF\xBF", 1, 0),
    V("F5", "\xF5\x80\x80\x80", 0, 0),
    V("F7 BF BF BF", "\xF7\xBF\xBF\xBF", 0, 0),
    V("F8 88 80 80 80", "\xF8\x88\x80\x80\x80", 0, 0),
    V("FC 84 80 80 80 80", "\xFC\x84\x80\x80\x80\x80", 0, 0),
    V("FE", "\xFE", 0, 0),
    V("FF", "\xFF", 0, 0),
    V("FE FE FF FF", "\xFE\xFE\xFF\xFF", 0, 0),
    /* lone and extra continuation bytes (Kuhn 3.1) */
    V("80", "\x80", 0, 0),
    V("BF", "\xBF", 0, 0),
    V("80 BF 80 BF", "\x80\xBF\x80\xBF", 0, 0),
    V("a 80", "a\x80", 1, 0),
    V("C3 A9 A9", "\xC3\xA9\xA9", 2, 0),
    V("E2 82 AC 80", "\xE2\x82\xAC\x80", 3, 0),
    V("continuation after 16 ASCII", "abcdefghijklmnop\x80", 16, 0),
    V("C0 after 9 ASCII", "abcdefghi\xC0", 9, 0),
    /* a lead byte followed by something else (Kuhn 3.2, 3.3) */
    V("C2 41", "\xC2\x41", 1, 0),
    V("C3 28", "\xC3\x28", 1, 0),
    V("E2 28 A1", "\xE2\x28\xA1", 1, 0),
    V("E2 82 28", "\xE2\x82\x28", 2, 0),
    V("E0 A0 41", "\xE0\xA0\x41", 2, 0),
    V("F0 90 80 41", "\xF0\x90\x80\x41", 3, 0),
    V("F0 28 8C BC", "\xF0\x28\x8C\xBC", 1, 0),
    V("C2 C2", "\xC2\xC2", 1, 0),
    V("E1 C0", "\xE1\xC0", 1, 0),
    V("lead then lead", "\xDF\xE0\xA0\x80", 1, 0),
    /* truncated at the end (Kuhn 3.3) */
    V("C2 end", "\xC2", VALID, 1),
    V("DF end", "\xDF", VALID, 1),
    V("E2 82 end", "\xE2\x82", VALID, 1),
    V("E0 A0 end", "\xE0\xA0", VALID, 1),
    V("ED end", "\xED", VALID, 1),
    V("EF BF end", "\xEF\xBF", VALID, 1),
    V("F0 9F 98 end", "\xF0\x9F\x98", VALID, 1),
    V("F4 8F BF end", "\xF4\x8F\xBF", VALID, 1),
    V("F1 end", "\xF1", VALID, 1),
    V("text then E2 end", "abcdefghijk\xE2", VALID, 1),
};
#define NU8 (sizeof U8 / sizeof U8[0])

static size_t u8_expected_index(const u8vec *v) { return v->bad == VALID ? v->len : v->bad; }
static int u8_complete(const u8vec *v) { return v->bad == VALID && !v->truncated; }

static void utf8_validate_vectors(void **state) {
    size_t i, k;
    char label[128];
    (void)state;
    for (i = 0; i < NU8; i++) {
        const u8vec *v = &U8[i];
        uint32_t st = 0;
        size_t got = stws_utf8_validate(&st, v->s, v->len);
        snprintf(label, sizeof label, "utf8 vector '%s'", v->name);
        EXPECT_EQ(label, got, u8_expected_index(v));
        if (v->bad == VALID) EXPECT_EQ(label, st != 0, v->truncated);
        /* incrementally, split at every position */
        for (k = 0; k <= v->len; k++) {
            size_t a, idx;
            st = 0;
            a = stws_utf8_validate(&st, v->s, k);
            if (a < k) {
                idx = a;
            } else {
                idx = k + stws_utf8_validate(&st, v->s + k, v->len - k);
            }
            snprintf(label, sizeof label, "utf8 vector '%s' split at %zu", v->name, k);
            EXPECT_EQ(label, idx, u8_expected_index(v));
            if (v->bad == VALID) EXPECT_EQ(label, st != 0, v->truncated);
        }
        /* one byte at a time */
        st = 0;
        for (k = 0; k < v->len; k++)
            if (stws_utf8_validate(&st, v->s + k, 1) != 1) break;
        snprintf(label, sizeof label, "utf8 vector '%s' bytewise", v->name);
        EXPECT_EQ(label, k, u8_expected_index(v));
        if (v->bad == VALID) EXPECT_EQ(label, st != 0, v->truncated);
    }
}

/* Every 1- and 2-byte string and the 3- and 4-byte strings around the
   continuation range, against a straightforward reference decoder. */
static int ref_utf8_ok(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t need, k;
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        if (b >= 0xC0 && b < 0xE0) need = 2, cp = b & 0x1F;
        else if (b >= 0xE0 && b < 0xF0) need = 3, cp = b & 0x0F;
        else if (b >= 0xF0 && b < 0xF8) need = 4, cp = b & 0x07;
        else return 0;
        if (n - i < need) return 0;
        for (k = 1; k < need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((need == 2 && cp < 0x80) || (need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000))
            return 0;
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return 0;
        i += need;
    }
    return 1;
}

static void utf8_exhaustive_sequences(void **state) {
    uint8_t s[4];
    uint32_t a, b, c2, d;
    (void)state;
    for (a = 0; a < 256; a++) {
        uint32_t st = 0;
        s[0] = (uint8_t)a;
        if ((stws_utf8_validate(&st, s, 1) == 1 && st == 0) != ref_utf8_ok(s, 1))
            fail_msg("1-byte %02X", a);
        for (b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            st = 0;
            if ((stws_utf8_validate(&st, s, 2) == 2 && st == 0) != ref_utf8_ok(s, 2))
                fail_msg("2-byte %02X %02X", a, b);
            if (a < 0xE0 || a > 0xF4) continue;
            for (c2 = 0x70; c2 < 0xD0; c2++) { /* around the continuation range */
                s[2] = (uint8_t)c2;
                st = 0;
                if ((stws_utf8_validate(&st, s, 3) == 3 && st == 0) != ref_utf8_ok(s, 3))
                    fail_msg("3-byte %02X %02X %02X", a, b, c2);
                if (a < 0xF0 || (b & 0xC0) != 0x80 || (c2 & 0xC0) != 0x80) continue;
                for (d = 0x70; d < 0xD0; d++) {
                    s[3] = (uint8_t)d;
                    st = 0;
                    if ((stws_utf8_validate(&st, s, 4) == 4 && st == 0) != ref_utf8_ok(s, 4))
                        fail_msg("4-byte %02X %02X %02X %02X", a, b, c2, d);
                }
            }
        }
    }
}

static void utf8_vectors_through_the_codec(void **state) {
    size_t i, k;
    char label[128];
    (void)state;
    for (i = 0; i < NU8; i++) {
        const u8vec *v = &U8[i];
        int ok = u8_complete(v);
        /* one text frame, fed a byte at a time: the error comes with the
           first invalid byte (or the last byte, for a truncated end) */
        {
            det_rng rng = {20, 0, 0, 0};
            stws_codec *c = new_codec(&rng, 0, 0, 0);
            tbuf b = {0};
            size_t fail_at, hdr = 2;
            snprintf(label, sizeof label, "text frame '%s'", v->name);
            srv_frame(&b, 0x81, v->s, v->len);
            fail_at = v->bad != VALID ? hdr + v->bad : (v->truncated ? b.len - 1 : (size_t)-1);
            for (k = 0; k < b.len; k++) {
                stws_codec_event ev;
                size_t used;
                stws_result r = stws_codec_parse(c, b.p + k, 1, &used, &ev);
                if (k == fail_at) {
                    expect_failed(c, r, &ev, STWS_ERR_INVALID_UTF8, 1007, label);
                    break;
                }
                EXPECT_EQ(label, r, STWS_OK);
                EXPECT_EQ(label, used, 1);
                if (k + 1 < b.len) {
                    EXPECT_EQ(label, ev.type, STWS_CODEC_EVENT_NONE);
                } else {
                    EXPECT_TRUE(label, ok);
                    EXPECT_EQ(label, ev.type, STWS_CODEC_EVENT_MESSAGE);
                    EXPECT_EQ(label, ev.opcode, STWS_OP_TEXT);
                    EXPECT_EQ(label, ev.len, v->len);
                    EXPECT_MEM(label, ev.data, v->s, v->len);
                }
            }
            if (v->len == 0) { /* the 2-byte header alone completes it */
                EXPECT_TRUE(label, ok);
            }
            tbuf_free(&b);
            stws_codec_destroy(c);
        }
        /* two fragments split at every position, fed whole */
        for (k = 0; k <= v->len; k++) {
            det_rng rng = {21, 0, 0, 0};
            stws_codec *c = new_codec(&rng, 0, 0, 0);
            tbuf b = {0};
            stws_codec_event ev;
            size_t used;
            stws_result r;
            snprintf(label, sizeof label, "fragmented text '%s' split at %zu", v->name, k);
            srv_frame(&b, 0x01, v->s, k);
            srv_frame(&b, 0x80, v->s + k, v->len - k);
            r = stws_codec_parse(c, b.p, b.len, &used, &ev);
            if (ok) {
                EXPECT_EQ(label, r, STWS_OK);
                EXPECT_EQ(label, used, b.len);
                EXPECT_EQ(label, ev.type, STWS_CODEC_EVENT_MESSAGE);
                EXPECT_EQ(label, ev.len, v->len);
                EXPECT_MEM(label, ev.data, v->s, v->len);
            } else {
                expect_failed(c, r, &ev, STWS_ERR_INVALID_UTF8, 1007, label);
            }
            tbuf_free(&b);
            stws_codec_destroy(c);
        }
        /* as a close reason */
        {
            det_rng rng = {22, 0, 0, 0};
            stws_codec *c = new_codec(&rng, 0, 0, 0);
            tbuf b = {0};
            stws_codec_event ev;
            size_t used;
            stws_result r;
            snprintf(label, sizeof label, "close reason '%s'", v->name);
            srv_close(&b, 1000, v->s, v->len);
            r = stws_codec_parse(c, b.p, b.len, &used, &ev);
            if (ok) {
                EXPECT_EQ(label, r, STWS_OK);
                EXPECT_EQ(label, ev.type, STWS_CODEC_EVENT_CLOSE);
                EXPECT_EQ(label, ev.close_code, 1000);
                EXPECT_EQ(label, ev.len, v->len);
                EXPECT_MEM(label, ev.data, v->s, v->len);
            } else {
                expect_failed(c, r, &ev, STWS_ERR_INVALID_UTF8, 1007, label);
            }
            tbuf_free(&b);
            stws_codec_destroy(c);
        }
        /* sending it: text and close reason */
        {
            det_rng rng = {23, 0, 0, 0};
            stws_codec *c = new_codec(&rng, 0, 0, 0);
            size_t n = 1;
            snprintf(label, sizeof label, "send text '%s'", v->name);
            EXPECT_EQ(label, stws_codec_send(c, STWS_OP_TEXT, v->s, v->len),
                      ok ? STWS_OK : STWS_ERR_INVALID_UTF8);
            (void)stws_codec_output(c, &n);
            EXPECT_EQ(label, n, ok ? 2 + 4 + v->len : 0);
            drain(c, NULL);
            snprintf(label, sizeof label, "send close reason '%s'", v->name);
            EXPECT_EQ(label, stws_codec_close(c, 1000, v->s, v->len), ok ? STWS_OK : STWS_ERR_INVALID_UTF8);
            EXPECT_EQ(label, stws_codec_get_state(c), ok ? STWS_CODEC_CLOSING : STWS_CODEC_OPEN);
            (void)stws_codec_output(c, &n);
            EXPECT_EQ(label, n, ok ? 2 + 4 + 2 + v->len : 0);
            stws_codec_destroy(c);
        }
    }
}

/* ==== 7. sending ========================================================== */

static void send_length_encodings(void **state) {
    static const size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
    size_t i;
    char label[64];
    (void)state;
    init_patterns();
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int text;
        for (text = 0; text < 2; text++) {
            size_t n = sizes[i], hlen = n < 126 ? 2 : n <= 0xFFFF ? 4 : 10, len = 0, k;
            det_rng rng = {100 + i, 0, 0, 0};
            stws_codec *c = new_codec(&rng, 0, 0, 0);
            uint8_t *src = (uint8_t *)malloc(n + 1);
            const uint8_t *out, *key;
            uint8_t *unm;
            assert_non_null(src);
            snprintf(label, sizeof label, "send %s of %zu bytes", text ? "text" : "binary", n);
            if (text) { /* multibyte text cut at a code point, padded with ASCII */
                uint32_t st = 0;
                size_t m = n;
                while (m > 0 && (stws_utf8_validate(&st, g_text, m) != m || st)) m--, st = 0;
                memcpy(src, g_text, m);
                memset(src + m, 'a', n - m);
            } else {
                memcpy(src, g_pattern, n);
            }
            EXPECT_EQ(label, stws_codec_send(c, text ? STWS_OP_TEXT : STWS_OP_BINARY, src, n), STWS_OK);
            out = stws_codec_output(c, &len);
            EXPECT_EQ(label, len, hlen + 4 + n);
            EXPECT_EQ(label, out[0], text ? 0x81 : 0x82); /* FIN, no RSV */
            EXPECT_EQ(label, out[1] & 0x80, 0x80);       /* MASK */
            if (hlen == 2) {
                EXPECT_EQ(label, out[1] & 0x7F, n);
            } else if (hlen == 4) {
                EXPECT_EQ(label, out[1] & 0x7F, 126);
                EXPECT_EQ(label, out[2], n >> 8);
                EXPECT_EQ(label, out[3], n & 0xFF);
            } else {
                EXPECT_EQ(label, out[1] & 0x7F, 127);
                for (k = 0; k < 8; k++) EXPECT_EQ(label, out[2 + k], ((uint64_t)n >> (56 - 8 * k)) & 0xFF);
            }
            key = out + hlen;
            for (k = 0; k < 4; k++) EXPECT_EQ(label, key[k], rng_stream_byte(100 + i, k));
            unm = (uint8_t *)malloc(n + 1);
            assert_non_null(unm);
            for (k = 0; k < n; k++) unm[k] = out[hlen + 4 + k] ^ key[k & 3];
            EXPECT_MEM(label, unm, src, n);
            /* the payload really is masked (a key of four zero bytes aside) */
            if (n >= 8 && (key[0] | key[1] | key[2] | key[3]))
                EXPECT_TRUE(label, memcmp(out + hlen + 4, src, n) != 0);
            free(unm);
            free(src);
            stws_codec_destroy(c);
        }
    }
}

static void send_control_frames(void **state) {
    det_rng rng = {30, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    uint8_t p[126];
    cframes fs;
    size_t n = 1;
    (void)state;
    memset(p, 'q', sizeof p);
    assert_int_equal(stws_codec_send(c, STWS_OP_PING, p, 125), STWS_OK);
    assert_int_equal(stws_codec_send(c, STWS_OP_PONG, p, 0), STWS_OK);
    assert_int_equal(stws_codec_send(c, STWS_OP_PING, "", 0), STWS_OK);
    take_output(c, &fs, "control sends");
    assert_int_equal(fs.n, 3);
    assert_int_equal(fs.f[0].opcode, STWS_OP_PING);
    assert_int_equal(fs.f[0].len, 125);
    assert_memory_equal(fs.f[0].payload, p, 125);
    assert_int_equal(fs.f[1].opcode, STWS_OP_PONG);
    assert_int_equal(fs.f[1].len, 0);
    assert_int_equal(fs.f[2].opcode, STWS_OP_PING);
    cframes_free(&fs);
    assert_int_equal(stws_codec_send(c, STWS_OP_PING, p, 126), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_send(c, STWS_OP_PONG, p, 126), STWS_ERR_INVALID_ARG);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_OPEN);
    stws_codec_destroy(c);
}

static void send_keys_come_from_the_hook(void **state) {
    det_rng rng = {31, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    cframes fs;
    size_t i, j, k;
    (void)state;
    for (i = 0; i < 40; i++) assert_int_equal(stws_codec_send(c, STWS_OP_BINARY, "abcdef", 6), STWS_OK);
    take_output(c, &fs, "keys");
    assert_int_equal(fs.n, 40);
    for (i = 0; i < 40; i++) {
        for (k = 0; k < 4; k++)
            if (fs.f[i].key[k] != rng_stream_byte(31, 4 * i + k))
                fail_msg("frame %zu key byte %zu is %02X, the hook's byte %zu was %02X", i, k,
                         fs.f[i].key[k], 4 * i + k, rng_stream_byte(31, 4 * i + k));
        assert_memory_equal(fs.f[i].payload, "abcdef", 6);
        for (j = 0; j < i; j++)
            if (memcmp(fs.f[i].key, fs.f[j].key, 4) == 0) fail_msg("frames %zu and %zu share a key", j, i);
    }
    cframes_free(&fs);
    assert_true(rng.calls >= 1);
    stws_codec_destroy(c);
}

static void send_default_random_keys_differ(void **state) {
    stws_codec *c = stws_codec_create(NULL);
    cframes fs;
    size_t i, distinct = 0;
    (void)state;
    assert_non_null(c);
    for (i = 0; i < 32; i++) assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "same", 4), STWS_OK);
    take_output(c, &fs, "default keys");
    assert_int_equal(fs.n, 32);
    for (i = 1; i < 32; i++) {
        assert_memory_equal(fs.f[i].payload, "same", 4);
        if (memcmp(fs.f[i].key, fs.f[i - 1].key, 4) != 0) distinct++;
    }
    assert_true(distinct >= 30); /* a repeat has probability 2^-32 */
    cframes_free(&fs);
    stws_codec_destroy(c);
}

static void send_random_failure(void **state) {
    det_rng rng = {32, 0, 0, 1};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    size_t n = 1;
    (void)state;
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "hi", 2), STWS_ERR_RANDOM);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    rng.fail = 0;
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "hi", 2), STWS_OK);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 8);
    stws_codec_destroy(c);
}

static void send_invalid_utf8_refused(void **state) {
    det_rng rng = {33, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    size_t n = 1;
    (void)state;
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "ok", 2), STWS_OK);
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "a\xFF", 2), STWS_ERR_INVALID_UTF8);
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "\xC3", 1), STWS_ERR_INVALID_UTF8);
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "\xED\xA0\x80", 3), STWS_ERR_INVALID_UTF8);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 2 + 4 + 2); /* only the first frame */
    assert_int_equal(stws_codec_send(c, STWS_OP_BINARY, "a\xFF", 2), STWS_OK); /* binary: anything */
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_OPEN);
    stws_codec_destroy(c);
}

static void send_output_full(void **state) {
    det_rng rng = {34, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 100);
    uint8_t a[94], b[44], snap[100];
    const uint8_t *out;
    tbuf sink = {0};
    cframes fs;
    stws_codec_event ev;
    size_t n = 0, used;
    static const uint8_t ping[] = {0x89, 0x02, 'h', 'i'};
    static const uint8_t close_frame[] = {0x88, 0x02, 0x03, 0xE8};
    (void)state;
    memset(a, 'A', sizeof a);
    memset(b, 'B', sizeof b);
    assert_int_equal(stws_codec_send(c, STWS_OP_BINARY, a, 94), STWS_OK); /* exactly 100 */
    out = stws_codec_output(c, &n);
    assert_int_equal(n, 100);
    memcpy(snap, out, 100);
    assert_int_equal(stws_codec_send(c, STWS_OP_BINARY, "", 0), STWS_ERR_OUTPUT_FULL);
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "x", 1), STWS_ERR_OUTPUT_FULL);
    assert_int_equal(stws_codec_send(c, STWS_OP_PING, "", 0), STWS_ERR_OUTPUT_FULL);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_OPEN);
    out = stws_codec_output(c, &n);
    assert_int_equal(n, 100);
    assert_memory_equal(out, snap, 100); /* nothing queued was lost or changed */
    /* half goes out; the freed room takes a 50-byte frame, not one more byte */
    tbuf_put(&sink, out, 50);
    stws_codec_output_consumed(c, 50);
    assert_int_equal(stws_codec_send(c, STWS_OP_BINARY, b, 45), STWS_ERR_OUTPUT_FULL);
    assert_int_equal(stws_codec_send(c, STWS_OP_BINARY, b, 44), STWS_OK);
    out = stws_codec_output(c, &n);
    assert_int_equal(n, 100);
    assert_memory_equal(out, snap + 50, 50);
    /* control replies still get through a full queue */
    assert_int_equal(stws_codec_parse(c, ping, sizeof ping, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_PING);
    assert_int_equal(stws_codec_parse(c, close_frame, sizeof close_frame, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_CLOSE);
    drain(c, &sink);
    decode_client(sink.p, sink.len, &fs, "output full");
    assert_int_equal(fs.n, 4);
    assert_int_equal(fs.f[0].opcode, STWS_OP_BINARY);
    assert_int_equal(fs.f[0].len, 94);
    assert_memory_equal(fs.f[0].payload, a, 94);
    assert_int_equal(fs.f[1].opcode, STWS_OP_BINARY);
    assert_int_equal(fs.f[1].len, 44);
    assert_memory_equal(fs.f[1].payload, b, 44);
    assert_int_equal(fs.f[2].opcode, STWS_OP_PONG);
    assert_memory_equal(fs.f[2].payload, "hi", 2);
    expect_close_frame(&fs.f[3], 1000, "close reply past a full queue");
    cframes_free(&fs);
    tbuf_free(&sink);
    stws_codec_destroy(c);
}

static void send_partial_consumption(void **state) {
    det_rng rng = {35, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    tbuf expect = {0}, sink = {0};
    cframes fs;
    uint64_t ps = 99;
    size_t consumed = 0, n = 0, round = 0;
    const uint8_t *out;
    (void)state;
    init_patterns();
    stws_codec_output_consumed(c, 0); /* a no-op on an empty queue */
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "0123456789", 10), STWS_OK);
    assert_int_equal(stws_codec_send(c, STWS_OP_BINARY, g_pattern, 200), STWS_OK);
    assert_int_equal(stws_codec_send(c, STWS_OP_BINARY, g_pattern, 70000), STWS_OK);
    out = stws_codec_output(c, &n);
    tbuf_put(&expect, out, n);
    while (consumed < expect.len) {
        size_t k = prng_range(&ps, 0, 700);
        out = stws_codec_output(c, &n);
        assert_int_equal(n, expect.len - consumed);
        assert_memory_equal(out, expect.p + consumed, n); /* resumes exactly */
        if (k > n) k = n;
        tbuf_put(&sink, out, k);
        stws_codec_output_consumed(c, k);
        consumed += k;
        if (++round == 50) { /* more output while part is still queued */
            assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "late", 4), STWS_OK);
            out = stws_codec_output(c, &n);
            assert_int_equal(n, expect.len - consumed + 2 + 4 + 4);
            assert_memory_equal(out, expect.p + consumed, expect.len - consumed);
            tbuf_put(&expect, out + (expect.len - consumed), 10);
        }
    }
    out = stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    assert_true(round > 50);
    assert_int_equal(sink.len, expect.len);
    assert_memory_equal(sink.p, expect.p, sink.len);
    decode_client(sink.p, sink.len, &fs, "partial consumption");
    assert_int_equal(fs.n, 4);
    assert_int_equal(fs.f[0].opcode, STWS_OP_TEXT);
    assert_memory_equal(fs.f[0].payload, "0123456789", 10);
    assert_int_equal(fs.f[1].len, 200);
    assert_memory_equal(fs.f[1].payload, g_pattern, 200);
    assert_int_equal(fs.f[2].len, 70000);
    assert_memory_equal(fs.f[2].payload, g_pattern, 70000);
    assert_int_equal(fs.f[3].opcode, STWS_OP_TEXT);
    assert_memory_equal(fs.f[3].payload, "late", 4);
    cframes_free(&fs);
    tbuf_free(&sink);
    tbuf_free(&expect);
    stws_codec_destroy(c);
}

/* A small frame handed out one byte at a time, then all but the last byte. */
static void output_consumed_bytewise(void **state) {
    det_rng rng = {47, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    uint8_t snap[64];
    const uint8_t *out;
    size_t n = 0, k, total;
    (void)state;
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "abcdefghij", 10), STWS_OK);
    assert_int_equal(stws_codec_send(c, STWS_OP_BINARY, "xyz", 3), STWS_OK);
    out = stws_codec_output(c, &total);
    assert_int_equal(total, 16 + 9);
    memcpy(snap, out, total);
    for (k = 0; k < total; k++) {
        out = stws_codec_output(c, &n);
        assert_int_equal(n, total - k);
        assert_memory_equal(out, snap + k, n);
        stws_codec_output_consumed(c, 1);
    }
    out = stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    /* all but the last byte, then the last byte alone */
    assert_int_equal(stws_codec_send(c, STWS_OP_PING, "p", 1), STWS_OK);
    out = stws_codec_output(c, &total);
    assert_int_equal(total, 7);
    memcpy(snap, out, total);
    stws_codec_output_consumed(c, total - 1);
    out = stws_codec_output(c, &n);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], snap[6]);
    stws_codec_output_consumed(c, 1);
    out = stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    stws_codec_destroy(c);
}

/* A violation after our close: the connection fails, but a second close
   frame must not follow the first (RFC 6455 §5.5.1). */
static void violation_after_our_close(void **state) {
    det_rng rng = {48, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    static const uint8_t bad[] = {0x83, 0x00};
    stws_codec_event ev;
    cframes fs;
    size_t used, n = 1;
    (void)state;
    assert_int_equal(stws_codec_close(c, 1001, NULL, 0), STWS_OK);
    take_output(c, &fs, "our close");
    assert_int_equal(fs.n, 1);
    expect_close_frame(&fs.f[0], 1001, "our close");
    cframes_free(&fs);
    assert_int_equal(stws_codec_parse(c, bad, sizeof bad, &used, &ev), STWS_ERR_RESERVED_OPCODE);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_ERROR);
    assert_int_equal(ev.error, STWS_ERR_RESERVED_OPCODE);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_FAILED);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    assert_int_equal(stws_codec_parse(c, bad, sizeof bad, &used, &ev), STWS_ERR_RESERVED_OPCODE);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    stws_codec_destroy(c);
}

/* A peer that pings without ever reading our output: the pongs may use some
   room past max_output_size, but the queue stays bounded and the connection
   fails with STWS_ERR_OUTPUT_FULL (close 1008) instead of growing forever. */
static void ping_flood_is_bounded(void **state) {
    det_rng rng = {49, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 1000);
    uint8_t ping[2 + 125];
    stws_codec_event ev;
    cframes fs;
    size_t i, used, n = 0, pings = 0;
    stws_result r = STWS_OK;
    const uint8_t *out;
    tbuf sink = {0};
    (void)state;
    ping[0] = 0x89;
    ping[1] = 125;
    memset(ping + 2, 'f', 125);
    for (i = 0; i < 100000 && r == STWS_OK; i++) {
        r = stws_codec_parse(c, ping, sizeof ping, &used, &ev);
        if (r == STWS_OK) {
            assert_int_equal(ev.type, STWS_CODEC_EVENT_PING);
            pings++;
        }
    }
    assert_int_equal(r, STWS_ERR_OUTPUT_FULL);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_ERROR);
    assert_int_equal(ev.close_code, 1008);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_FAILED);
    out = stws_codec_output(c, &n);
    assert_true(n < ((size_t)1 << 20));
    assert_true(pings >= 1000 / (6 + 125)); /* at least what fits in max_output */
    tbuf_put(&sink, out, n);
    decode_client(sink.p, sink.len, &fs, "ping flood");
    assert_int_equal(fs.n, pings + 1);
    assert_int_equal(fs.f[0].opcode, STWS_OP_PONG);
    assert_int_equal(fs.f[pings - 1].opcode, STWS_OP_PONG);
    assert_int_equal(fs.f[pings - 1].len, 125);
    expect_close_frame(&fs.f[pings], 1008, "ping flood close");
    cframes_free(&fs);
    tbuf_free(&sink);
    stws_codec_destroy(c);
}

static void closing_handshake_client_first(void **state) {
    det_rng rng = {36, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    stws_codec_event ev;
    cframes fs;
    size_t used, n = 1;
    static const uint8_t text[] = {0x81, 0x02, 'h', 'i'};
    static const uint8_t ping[] = {0x89, 0x01, 'p'};
    static const uint8_t close_frame[] = {0x88, 0x02, 0x03, 0xE8};
    (void)state;
    assert_int_equal(stws_codec_close(c, 1000, "bye", 3), STWS_OK);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_CLOSING);
    take_output(c, &fs, "our close");
    assert_int_equal(fs.n, 1);
    assert_int_equal(fs.f[0].opcode, STWS_OP_CLOSE);
    assert_int_equal(fs.f[0].len, 5);
    assert_memory_equal(fs.f[0].payload, "\x03\xE8" "bye", 5);
    cframes_free(&fs);
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "x", 1), STWS_ERR_STATE);
    assert_int_equal(stws_codec_send(c, STWS_OP_PING, "x", 1), STWS_ERR_STATE);
    assert_int_equal(stws_codec_close(c, 1000, NULL, 0), STWS_ERR_STATE);
    /* the server may still send data; a ping is not answered after our close */
    assert_int_equal(stws_codec_parse(c, text, sizeof text, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_memory_equal(ev.data, "hi", 2);
    assert_int_equal(stws_codec_parse(c, ping, sizeof ping, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_PING);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_CLOSING);
    /* the server's close completes the handshake; no second close is queued */
    assert_int_equal(stws_codec_parse(c, close_frame, sizeof close_frame, &used, &ev), STWS_OK);
    assert_int_equal(used, sizeof close_frame);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_CLOSE);
    assert_int_equal(ev.close_code, 1000);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_CLOSED);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "x", 1), STWS_ERR_STATE);
    assert_int_equal(stws_codec_close(c, 1000, NULL, 0), STWS_ERR_STATE);
    stws_codec_destroy(c);
}

static void close_arguments(void **state) {
    det_rng rng = {37, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    char reason[124];
    cframes fs;
    size_t n = 1;
    (void)state;
    memset(reason, 'r', sizeof reason);
    assert_int_equal(stws_codec_close(c, 1005, NULL, 0), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_close(c, 1006, NULL, 0), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_close(c, 999, NULL, 0), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_close(c, 5000, NULL, 0), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_close(c, 0, "why", 3), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_close(c, 1000, reason, 124), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_close(c, 1000, NULL, 3), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_codec_close(c, 1000, "\xC3", 1), STWS_ERR_INVALID_UTF8);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_OPEN);
    assert_int_equal(stws_codec_close(c, 4999, reason, 123), STWS_OK);
    take_output(c, &fs, "close 4999 + 123");
    assert_int_equal(fs.n, 1);
    assert_int_equal(fs.f[0].len, 125);
    assert_int_equal(fs.f[0].payload[0], 4999 >> 8);
    assert_int_equal(fs.f[0].payload[1], 4999 & 0xFF);
    assert_memory_equal(fs.f[0].payload + 2, reason, 123);
    cframes_free(&fs);
    stws_codec_destroy(c);
    /* code 0: an empty close */
    c = new_codec(&rng, 0, 0, 0);
    assert_int_equal(stws_codec_close(c, 0, NULL, 0), STWS_OK);
    take_output(c, &fs, "close without code");
    assert_int_equal(fs.n, 1);
    expect_close_frame(&fs.f[0], -1, "close without code");
    cframes_free(&fs);
    stws_codec_destroy(c);
}

static void server_close_first_then_client_close_refused(void **state) {
    det_rng rng = {38, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    static const uint8_t close_frame[] = {0x88, 0x02, 0x03, 0xE9};
    stws_codec_event ev;
    cframes fs;
    size_t used;
    (void)state;
    assert_int_equal(stws_codec_parse(c, close_frame, sizeof close_frame, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_CLOSE);
    assert_int_equal(ev.close_code, 1001);
    assert_int_equal(stws_codec_close(c, 1000, NULL, 0), STWS_ERR_STATE);
    take_output(c, &fs, "echo only");
    assert_int_equal(fs.n, 1);
    expect_close_frame(&fs.f[0], 1001, "echo only");
    cframes_free(&fs);
    stws_codec_destroy(c);
}

/* Nothing queued yet: an empty view (the typical first call of a flush
   loop).  It runs first so that a sanitizer abort here is attributed to it. */
static void output_on_a_fresh_codec(void **state) {
    det_rng rng = {39, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    size_t n = 77;
    (void)state;
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    stws_codec_output_consumed(c, 0);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    stws_codec_destroy(c);
}

/* ==== 8. allocation ======================================================= */

static stws_codec *counted_codec(counting *a, det_rng *rng, size_t max_message) {
    stws_codec_desc d;
    stws_codec *c;
    memset(&d, 0, sizeof d);
    d.allocator = counting_allocator(a);
    if (rng) d.random = det_random(rng);
    d.max_message_size = max_message;
    c = stws_codec_create(&d);
    assert_non_null(c);
    return c;
}

static void create_allocations(void **state) {
    counting a = {0, 0, 0, -1, 0};
    det_rng rng = {40, 0, 0, 0};
    stws_codec *c;
    (void)state;
    c = counted_codec(&a, &rng, 0);
    assert_int_equal(a.allocs, 1); /* just the codec with a random hook */
    stws_codec_destroy(c);
    assert_int_equal(a.live, 0);
    memset(&a, 0, sizeof a);
    a.budget = -1;
    c = counted_codec(&a, NULL, 0);
    assert_int_equal(a.allocs, 2); /* the codec and its generator */
    stws_codec_destroy(c);
    assert_int_equal(a.live, 0);
    /* out of memory in create: NULL and nothing leaked */
    {
        stws_codec_desc d;
        long budget;
        for (budget = 0; budget < 2; budget++) {
            memset(&a, 0, sizeof a);
            a.budget = budget;
            memset(&d, 0, sizeof d);
            d.allocator = counting_allocator(&a);
            assert_null(stws_codec_create(&d));
            assert_int_equal(a.live, 0);
            assert_true(a.failed >= 1);
        }
    }
}

/* Feed a stream in PRNG-sized chunks, draining output after each call;
   returns the number of MESSAGE events and checks the last one. */
static size_t feed_chunked(stws_codec *c, const uint8_t *in, size_t len, uint64_t *ps,
                           const uint8_t *want, size_t want_len, int want_op) {
    size_t off = 0, msgs = 0;
    while (off < len) {
        size_t n = prng_range(ps, 1, 600), p = 0;
        if (n > len - off) n = len - off;
        while (p < n) {
            stws_codec_event ev;
            size_t used;
            stws_result r = stws_codec_parse(c, in + off + p, n - p, &used, &ev);
            assert_int_equal(r, STWS_OK);
            drain(c, NULL);
            p += used;
            if (ev.type == STWS_CODEC_EVENT_MESSAGE) {
                msgs++;
                assert_int_equal(ev.opcode, want_op);
                assert_int_equal(ev.len, want_len);
                assert_memory_equal(ev.data, want, want_len);
            }
            if (ev.type == STWS_CODEC_EVENT_NONE) break;
        }
        off += n;
    }
    return msgs;
}

/* A message of len bytes in nfrag fragments, a ping after the first. */
static void build_fragmented(tbuf *b, int op, const uint8_t *data, size_t len, size_t nfrag, int ping) {
    size_t i, off = 0;
    b->len = 0;
    for (i = 0; i < nfrag; i++) {
        size_t part = i + 1 == nfrag ? len - off : len / nfrag;
        srv_frame(b, (i == 0 ? op : 0) | (i + 1 == nfrag ? 0x80 : 0), data + off, part);
        off += part;
        if (i == 0 && ping) srv_str(b, 0x89, "steady");
    }
}

static void traffic(stws_codec *c, uint64_t *ps, size_t N, size_t rounds) {
    tbuf b = {0};
    size_t i;
    for (i = 0; i < rounds; i++) {
        size_t len = prng_range(ps, 0, N), nfrag = prng_range(ps, 2, 6);
        int op = (i & 1) ? 0x2 : 0x1;
        const uint8_t *src = op == 0x1 ? g_text : g_pattern + (i % 100);
        if (op == 0x1) { /* a code point boundary */
            uint32_t st = 0;
            while (len > 0 && (stws_utf8_validate(&st, g_text, len) != len || st)) len--, st = 0;
        }
        build_fragmented(&b, op, src, len, nfrag, i % 7 == 0);
        assert_int_equal(feed_chunked(c, b.p, b.len, ps, src, len, op), 1);
        /* sends, output consumed as the socket would */
        assert_int_equal(stws_codec_send(c, STWS_OP_BINARY, g_pattern, prng_range(ps, 0, N)), STWS_OK);
        drain(c, NULL);
        assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "tick", 4), STWS_OK);
        if (i % 5 == 0) assert_int_equal(stws_codec_send(c, STWS_OP_PING, "k", 1), STWS_OK);
        drain(c, NULL);
    }
    tbuf_free(&b);
}

static void steady_state_no_allocation(void **state) {
    counting a = {0, 0, 0, -1, 0};
    det_rng rng = {41, 0, 0, 0};
    const size_t N = 4096;
    stws_codec *c;
    tbuf b = {0};
    uint64_t ps = 2024;
    size_t base;
    (void)state;
    init_patterns();
    c = counted_codec(&a, &rng, 0);
    /* warm-up: one fragmented message of N bytes and one send of N bytes */
    build_fragmented(&b, 0x2, g_pattern, N, 4, 1);
    assert_int_equal(feed_chunked(c, b.p, b.len, &ps, g_pattern, N, STWS_OP_BINARY), 1);
    assert_int_equal(stws_codec_send(c, STWS_OP_BINARY, g_pattern, N), STWS_OK);
    drain(c, NULL);
    base = a.allocs;
    traffic(c, &ps, N, 1000);
    if (a.allocs != base)
        fail_msg("%zu allocations in steady state after a %zu-byte warm-up", a.allocs - base, N);
    /* a new connection on the same codec: buffers kept */
    stws_codec_reset(c);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_OPEN);
    traffic(c, &ps, N, 200);
    if (a.allocs != base) fail_msg("%zu allocations after stws_codec_reset", a.allocs - base);
    stws_codec_destroy(c);
    assert_int_equal(a.live, 0);
    assert_int_equal(a.frees, a.allocs);
    tbuf_free(&b);
}

static void reset_forgets_state(void **state) {
    det_rng rng = {42, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    static const uint8_t bad[] = {0x83, 0x00};
    static const uint8_t half[] = {0x01, 0x02, 'a'};
    static const uint8_t cont[] = {0x80, 0x01, 'b'};
    stws_codec_event ev;
    size_t used, n = 1;
    (void)state;
    /* from FAILED: output (the close) is discarded, the codec works again */
    assert_true(stws_codec_parse(c, bad, 2, &used, &ev) == STWS_ERR_RESERVED_OPCODE);
    stws_codec_reset(c);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_OPEN);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    assert_int_equal(stws_codec_parse(c, HELLO_FRAME, 7, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_memory_equal(ev.data, "Hello", 5);
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "x", 1), STWS_OK);
    stws_codec_reset(c);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    /* mid-frame and mid-message state is forgotten */
    assert_int_equal(stws_codec_parse(c, half, 3, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_NONE);
    stws_codec_reset(c);
    assert_int_equal(stws_codec_parse(c, HELLO_FRAME, 7, &used, &ev), STWS_OK);
    assert_int_equal(used, 7);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_memory_equal(ev.data, "Hello", 5);
    assert_int_equal(stws_codec_parse(c, half, 1 + 1 + 1, &used, &ev), STWS_OK);
    assert_int_equal(stws_codec_parse(c, "b", 1, &used, &ev), STWS_OK);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_NONE); /* fragment done, message open */
    stws_codec_reset(c);
    drain(c, NULL);
    assert_int_equal(stws_codec_parse(c, cont, 3, &used, &ev), STWS_ERR_UNEXPECTED_CONTINUATION);
    stws_codec_reset(c);
    /* from CLOSING and CLOSED */
    assert_int_equal(stws_codec_close(c, 1000, NULL, 0), STWS_OK);
    stws_codec_reset(c);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_OPEN);
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "again", 5), STWS_OK);
    assert_int_equal(stws_codec_close(c, 1000, NULL, 0), STWS_OK);
    stws_codec_destroy(c);
}

/* Out of memory while reassembling: STWS_ERR_NOMEM, and whatever close frame
   is queued must carry a code that may be sent (RFC 6455 §7.4.1: 1006 is
   reserved and MUST NOT be set in a close frame; the header says the same). */
static void nomem_while_reassembling(void **state) {
    counting a = {0, 0, 0, -1, 0};
    det_rng rng = {43, 0, 0, 0};
    stws_codec *c = counted_codec(&a, &rng, 0);
    static const uint8_t frag[] = {0x01, 0x03, 'H', 'e', 'l'};
    stws_codec_event ev;
    cframes fs;
    size_t used, nframes, plen = 0;
    int opcode = -1, code = -1;
    stws_result r;
    stws_codec_state st;
    (void)state;
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "warm", 4), STWS_OK); /* output buffer exists */
    drain(c, NULL);
    a.budget = 0;
    r = stws_codec_parse(c, frag, sizeof frag, &used, &ev);
    st = stws_codec_get_state(c);
    take_output(c, &fs, "close after NOMEM");
    nframes = fs.n;
    if (fs.n == 1) {
        opcode = fs.f[0].opcode;
        plen = fs.f[0].len;
        if (plen >= 2) code = fs.f[0].payload[0] << 8 | fs.f[0].payload[1];
    }
    cframes_free(&fs);
    a.budget = -1;
    stws_codec_destroy(c);
    /* everything is released before the checks, so a failure leaks nothing */
    assert_int_equal(a.live, 0);
    assert_int_equal(r, STWS_ERR_NOMEM);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_ERROR);
    assert_int_equal(ev.error, STWS_ERR_NOMEM);
    assert_int_equal(st, STWS_CODEC_FAILED);
    assert_true(nframes <= 1);
    if (nframes == 1) {
        assert_int_equal(opcode, STWS_OP_CLOSE);
        assert_true(plen == 0 || plen == 2);
        if (plen == 2 && !stws_close_code_valid(code))
            fail_msg("after STWS_ERR_NOMEM the codec queued a close frame with code %d, "
                     "which must never be sent (RFC 6455 7.4.1)", code);
        if (plen == 2) assert_int_equal(ev.close_code, code);
    }
}

/* Same when the pong cannot be queued: the output buffer has room for a
   close frame but not for the pong, and it cannot grow. */
static void nomem_while_answering_ping(void **state) {
    counting a = {0, 0, 0, -1, 0};
    det_rng rng = {50, 0, 0, 0};
    stws_codec *c = counted_codec(&a, &rng, 0);
    uint8_t ping[2 + 125], blob[200];
    stws_codec_event ev;
    cframes fs;
    size_t used, nframes, plen = 0;
    int opcode = -1, code = -1, first_op = -1;
    stws_result r;
    stws_codec_state st;
    (void)state;
    ping[0] = 0x89;
    ping[1] = 125;
    memset(ping + 2, 'p', 125);
    memset(blob, 'b', sizeof blob);
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "warm", 4), STWS_OK);
    drain(c, NULL);
    assert_int_equal(stws_codec_send(c, STWS_OP_BINARY, blob, sizeof blob), STWS_OK); /* still queued */
    a.budget = 0;
    r = stws_codec_parse(c, ping, sizeof ping, &used, &ev);
    st = stws_codec_get_state(c);
    take_output(c, &fs, "after a pong that did not fit");
    nframes = fs.n;
    if (fs.n >= 1) first_op = fs.f[0].opcode;
    if (fs.n == 2) {
        opcode = fs.f[1].opcode;
        plen = fs.f[1].len;
        if (plen >= 2) code = fs.f[1].payload[0] << 8 | fs.f[1].payload[1];
    }
    cframes_free(&fs);
    a.budget = -1;
    stws_codec_destroy(c);
    assert_int_equal(a.live, 0);
    if (r == STWS_OK) { /* the pong fitted after all: nothing to check here */
        assert_int_equal(ev.type, STWS_CODEC_EVENT_PING);
        return;
    }
    assert_int_equal(r, STWS_ERR_NOMEM);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_ERROR);
    assert_int_equal(st, STWS_CODEC_FAILED);
    assert_true(nframes == 1 || nframes == 2);
    assert_int_equal(first_op, STWS_OP_BINARY); /* what was queued is kept */
    if (nframes == 2) {
        assert_int_equal(opcode, STWS_OP_CLOSE);
        assert_true(plen == 0 || plen == 2);
        if (plen == 2 && !stws_close_code_valid(code))
            fail_msg("after STWS_ERR_NOMEM for a pong the codec queued a close frame with code %d, "
                     "which must never be sent (RFC 6455 7.4.1)", code);
        if (plen == 2) assert_int_equal(ev.close_code, code);
    }
}

static void nomem_while_sending(void **state) {
    counting a = {0, 0, 0, -1, 0};
    det_rng rng = {44, 0, 0, 0};
    stws_codec *c = counted_codec(&a, &rng, 0);
    size_t n = 1;
    (void)state;
    a.budget = 0;
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "hi", 2), STWS_ERR_NOMEM);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 0);
    assert_int_equal(stws_codec_get_state(c), STWS_CODEC_OPEN);
    a.budget = -1;
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "hi", 2), STWS_OK);
    (void)stws_codec_output(c, &n);
    assert_int_equal(n, 8);
    stws_codec_destroy(c);
    assert_int_equal(a.live, 0);
}

/* ==== 9. zero-length frames and limits ===================================== */

static void zero_length_messages(void **state) {
    det_rng rng = {45, 0, 0, 0};
    stws_codec *c = new_codec(&rng, 0, 0, 0);
    tbuf b = {0};
    stws_codec_event ev;
    cframes fs;
    size_t used, off = 0;
    (void)state;
    srv_frame(&b, 0x81, "", 0);           /* 0-byte text */
    srv_frame(&b, 0x82, "", 0);           /* 0-byte binary */
    srv_frame(&b, 0x01, "", 0);           /* 0-byte fragmented text */
    srv_frame(&b, 0x80, "", 0);
    srv_frame(&b, 0x02, "", 0);           /* three empty fragments and a ping */
    srv_frame(&b, 0x89, "", 0);
    srv_frame(&b, 0x00, "", 0);
    srv_frame(&b, 0x80, "", 0);
    srv_frame(&b, 0x01, "", 0);           /* empty fragments around data */
    srv_frame(&b, 0x00, "abc", 3);
    srv_frame(&b, 0x00, "", 0);
    srv_frame(&b, 0x80, "", 0);
    srv_frame(&b, 0x8A, "", 0);           /* empty pong */
    {
        static const struct { stws_codec_event_type t; stws_opcode op; size_t len; } want[] = {
            {STWS_CODEC_EVENT_MESSAGE, STWS_OP_TEXT, 0},   {STWS_CODEC_EVENT_MESSAGE, STWS_OP_BINARY, 0},
            {STWS_CODEC_EVENT_MESSAGE, STWS_OP_TEXT, 0},   {STWS_CODEC_EVENT_PING, (stws_opcode)0, 0},
            {STWS_CODEC_EVENT_MESSAGE, STWS_OP_BINARY, 0}, {STWS_CODEC_EVENT_MESSAGE, STWS_OP_TEXT, 3},
            {STWS_CODEC_EVENT_PONG, (stws_opcode)0, 0}};
        size_t i;
        for (i = 0; i < sizeof want / sizeof want[0]; i++) {
            char label[48];
            snprintf(label, sizeof label, "zero-length event %zu", i);
            EXPECT_EQ(label, stws_codec_parse(c, b.p + off, b.len - off, &used, &ev), STWS_OK);
            EXPECT_EQ(label, ev.type, want[i].t);
            if (want[i].t == STWS_CODEC_EVENT_MESSAGE) EXPECT_EQ(label, ev.opcode, want[i].op);
            EXPECT_EQ(label, ev.len, want[i].len);
            if (want[i].len) EXPECT_MEM(label, ev.data, "abc", 3);
            off += used;
        }
        assert_int_equal(off, b.len);
    }
    take_output(c, &fs, "pong for the empty ping");
    assert_int_equal(fs.n, 1);
    assert_int_equal(fs.f[0].opcode, STWS_OP_PONG);
    assert_int_equal(fs.f[0].len, 0);
    cframes_free(&fs);
    /* the same stream a byte at a time gives the same events */
    {
        size_t k, events = 0;
        stws_codec_reset(c);
        for (k = 0; k < b.len; k++) {
            assert_int_equal(stws_codec_parse(c, b.p + k, 1, &used, &ev), STWS_OK);
            assert_int_equal(used, 1);
            if (ev.type != STWS_CODEC_EVENT_NONE) events++;
        }
        assert_int_equal(events, 7);
    }
    tbuf_free(&b);
    stws_codec_destroy(c);
}

static void message_of_exactly_max_size(void **state) {
    uint8_t p[65];
    size_t split;
    (void)state;
    memset(p, 'x', sizeof p);
    for (split = 0; split <= 64; split += 8) {
        det_rng rng = {46, 0, 0, 0};
        stws_codec *c = new_codec(&rng, 64, 64, 0);
        tbuf b = {0};
        stws_codec_event ev;
        size_t used, k, got = 0;
        char label[48];
        snprintf(label, sizeof label, "64 of 64 split at %zu", split);
        if (split == 0) {
            srv_frame(&b, 0x81, p, 64);
        } else {
            srv_frame(&b, 0x01, p, split);
            srv_frame(&b, 0x80, p, 64 - split);
        }
        /* whole */
        EXPECT_EQ(label, stws_codec_parse(c, b.p, b.len, &used, &ev), STWS_OK);
        EXPECT_EQ(label, ev.type, STWS_CODEC_EVENT_MESSAGE);
        EXPECT_EQ(label, ev.len, 64);
        /* bytewise (the copying path) */
        for (k = 0; k < b.len; k++) {
            EXPECT_EQ(label, stws_codec_parse(c, b.p + k, 1, &used, &ev), STWS_OK);
            if (ev.type == STWS_CODEC_EVENT_MESSAGE) {
                got++;
                EXPECT_EQ(label, ev.len, 64);
                EXPECT_MEM(label, ev.data, p, 64);
            }
        }
        EXPECT_EQ(label, got, 1);
        tbuf_free(&b);
        stws_codec_destroy(c);
    }
    {
        tbuf b = {0};
        srv_frame(&b, 0x01, p, 32);
        srv_frame(&b, 0x80, p, 33);
        expect_bytes_fail(b.p, b.len, 64, 64, STWS_ERR_MESSAGE_TOO_BIG, 1009, "65 of 64");
        tbuf_free(&b);
    }
}

/* ==== 9. the output cap bounds memory (issue 13, finding 9) ================ */

/* An allocator that knows each block's size: live bytes, their peak, and the
   largest block ever made. */
typedef struct peak_alloc {
    size_t live, peak, largest;
} peak_alloc;

static void *peak_alloc_fn(size_t size, void *user) {
    peak_alloc *a = (peak_alloc *)user;
    unsigned char *p = (unsigned char *)malloc(size + 16);
    if (!p) return NULL;
    memcpy(p, &size, sizeof size);
    a->live += size;
    if (a->live > a->peak) a->peak = a->live;
    if (size > a->largest) a->largest = size;
    return p + 16;
}

static void peak_free_fn(void *ptr, void *user) {
    peak_alloc *a = (peak_alloc *)user;
    size_t size;
    if (!ptr) return;
    memcpy(&size, (unsigned char *)ptr - 16, sizeof size);
    a->live -= size;
    free((unsigned char *)ptr - 16);
}

/* A peer floods 125-byte pings and never reads our pongs.  Pongs may use
   64 KiB of slack past max_output_size, then the connection fails with 1008
   and a close frame.  The output buffer must never grow past cap + slack
   (+ the close frame): it used to double from the cap to twice the cap,
   holding both blocks at once (64 MiB cap: 192 MiB peak, 128 MiB kept). */
static void ping_flood_memory_is_bounded_by_the_output_cap(void **state) {
    const size_t cap = (size_t)1 << 20, slack = 65536, pong = 2 + 4 + 125;
    const size_t most = cap + slack + 256; /* the documented bound of the buffer */
    peak_alloc pa = {0, 0, 0};
    det_rng rng = {7, 0, 0, 0};
    stws_codec_desc d;
    stws_codec *c;
    stws_codec_event ev;
    uint8_t ping[127], payload[125];
    size_t used, n, pongs = 0, out_len, base, i;
    const uint8_t *out;
    stws_result r = STWS_OK;
    cframes fs;
    (void)state;
    memset(payload, 'p', sizeof payload);
    ping[0] = 0x89;
    ping[1] = 125;
    memcpy(ping + 2, payload, 125);
    memset(&d, 0, sizeof d);
    d.max_output_size = cap;
    d.allocator.alloc = peak_alloc_fn;
    d.allocator.free = peak_free_fn;
    d.allocator.user_data = &pa;
    d.random = det_random(&rng);
    c = stws_codec_create(&d);
    assert_non_null(c);
    base = pa.live; /* the codec itself */
    for (i = 0; i < 2 * (cap + slack) / pong && r == STWS_OK; i++) {
        r = stws_codec_parse(c, ping, sizeof ping, &used, &ev);
        if (r == STWS_OK) {
            assert_int_equal(ev.type, STWS_CODEC_EVENT_PING);
            assert_int_equal(used, sizeof ping);
            pongs++;
        }
    }
    /* the exact outcome: as many pongs as fit in cap + slack, then 1008 */
    assert_int_equal(r, STWS_ERR_OUTPUT_FULL);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_ERROR);
    assert_int_equal(ev.close_code, STWS_CLOSE_POLICY);
    assert_int_equal(pongs, (cap + slack) / pong);
    out = stws_codec_output(c, &out_len);
    assert_int_equal(out_len, pongs * pong + 2 + 4 + 2);
    decode_client(out, out_len, &fs, "flood");
    assert_int_equal(fs.n, pongs + 1);
    assert_int_equal(fs.f[0].opcode, STWS_OP_PONG);
    assert_memory_equal(fs.f[0].payload, payload, 125);
    expect_close_frame(&fs.f[fs.n - 1], STWS_CLOSE_POLICY, "flood");
    cframes_free(&fs);
    /* memory: no block past the bound, and the peak (old and new block
       during the last growth) within 1.5 times it */
    if (pa.largest > most)
        fail_msg("an output block of %zu bytes for a cap of %zu (bound %zu)", pa.largest, cap, most);
    if (pa.peak - base > most + most / 2)
        fail_msg("peak heap %zu bytes for a cap of %zu (bound %zu)", pa.peak - base, cap, most + most / 2);
    n = pa.live - base;
    assert_true(n <= most);
    stws_codec_destroy(c);
    assert_int_equal(pa.live, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(output_on_a_fresh_codec),
        cmocka_unit_test(rfc_single_frame_text),
        cmocka_unit_test(rfc_fragmented_text),
        cmocka_unit_test(rfc_ping_gets_masked_pong),
        cmocka_unit_test(rfc_unmasked_pong),
        cmocka_unit_test(rfc_binary_16bit_length),
        cmocka_unit_test(rfc_binary_64bit_length),
        cmocka_unit_test(rfc_masked_text_is_rejected),
        cmocka_unit_test(one_event_per_call),
        cmocka_unit_test(parse_argument_checks),
        cmocka_unit_test(violation_reserved_bits),
        cmocka_unit_test(violation_reserved_opcodes),
        cmocka_unit_test(violation_control_too_long),
        cmocka_unit_test(violation_control_fragmented),
        cmocka_unit_test(violation_unexpected_continuation),
        cmocka_unit_test(violation_expected_continuation),
        cmocka_unit_test(violation_bad_length),
        cmocka_unit_test(violation_close_one_byte),
        cmocka_unit_test(violation_bad_close_codes),
        cmocka_unit_test(valid_close_codes_are_echoed),
        cmocka_unit_test(close_code_valid_table),
        cmocka_unit_test(empty_close_is_1005_and_echoed_empty),
        cmocka_unit_test(close_reason_invalid_utf8),
        cmocka_unit_test(text_invalid_utf8),
        cmocka_unit_test(binary_is_not_utf8_checked),
        cmocka_unit_test(frame_too_big),
        cmocka_unit_test(message_too_big),
        cmocka_unit_test(fail_fast_incomplete_text_frame),
        cmocka_unit_test(fail_fast_later_fragment),
        cmocka_unit_test(code_point_split_across_fragments),
        cmocka_unit_test(truncated_sequence_at_end),
        cmocka_unit_test(interleaved_control_frames),
        cmocka_unit_test(close_inside_fragmented_message),
        cmocka_unit_test(chunking_equivalence),
        cmocka_unit_test(utf8_validate_vectors),
        cmocka_unit_test(utf8_exhaustive_sequences),
        cmocka_unit_test(utf8_vectors_through_the_codec),
        cmocka_unit_test(send_length_encodings),
        cmocka_unit_test(send_control_frames),
        cmocka_unit_test(send_keys_come_from_the_hook),
        cmocka_unit_test(send_default_random_keys_differ),
        cmocka_unit_test(send_random_failure),
        cmocka_unit_test(send_invalid_utf8_refused),
        cmocka_unit_test(send_output_full),
        cmocka_unit_test(send_partial_consumption),
        cmocka_unit_test(output_consumed_bytewise),
        cmocka_unit_test(violation_after_our_close),
        cmocka_unit_test(ping_flood_is_bounded),
        cmocka_unit_test(closing_handshake_client_first),
        cmocka_unit_test(close_arguments),
        cmocka_unit_test(server_close_first_then_client_close_refused),
        cmocka_unit_test(create_allocations),
        cmocka_unit_test(ping_flood_memory_is_bounded_by_the_output_cap),
        cmocka_unit_test(steady_state_no_allocation),
        cmocka_unit_test(reset_forgets_state),
        cmocka_unit_test(nomem_while_reassembling),
        cmocka_unit_test(nomem_while_answering_ping),
        cmocka_unit_test(nomem_while_sending),
        cmocka_unit_test(zero_length_messages),
        cmocka_unit_test(message_of_exactly_max_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
