/* STWS_NO_DEFAULT_RANDOM: no built-in generator.  Every object then needs a
   random hook; without one, create fails (and says why, where there is a
   logger) instead of running without unpredictable masking keys.  This file
   carries its own implementation (STWS_STATIC, so it does not clash with the
   default build in impl.o). */
#define STWS_NO_DEFAULT_RANDOM
#define STWS_STATIC
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

static int logs;
static char last_log[512];

static void logger(stws_log_level level, const char *message, void *user_data) {
    (void)level;
    (void)user_data;
    logs++;
    strncpy(last_log, message, sizeof last_log - 1);
}

static int counter_random(void *buf, size_t len, void *user_data) {
    unsigned char *p = (unsigned char *)buf;
    size_t i;
    for (i = 0; i < len; i++) p[i] = (unsigned char)(++*(unsigned *)user_data);
    return 0;
}

static uint64_t zero_clock(void *user_data) {
    (void)user_data;
    return 0;
}

static unsigned seq;

static void codec_needs_a_hook(void **state) {
    stws_codec_desc d;
    stws_codec *c;
    (void)state;
    assert_null(stws_codec_create(NULL));
    memset(&d, 0, sizeof d);
    assert_null(stws_codec_create(&d));
    d.random.fill = counter_random;
    d.random.user_data = &seq;
    c = stws_codec_create(&d);
    assert_non_null(c);
    assert_int_equal(stws_codec_send(c, STWS_OP_TEXT, "hi", 2), STWS_OK);
    stws_codec_destroy(c);
}

static void handshake_key_needs_a_hook(void **state) {
    char key[STWS_HANDSHAKE_KEY_SIZE];
    stws_random r;
    (void)state;
    assert_int_equal(stws_handshake_key(NULL, key), STWS_ERR_RANDOM);
    memset(&r, 0, sizeof r);
    assert_int_equal(stws_handshake_key(&r, key), STWS_ERR_RANDOM);
    r.fill = counter_random;
    r.user_data = &seq;
    assert_int_equal(stws_handshake_key(&r, key), STWS_OK);
    assert_int_equal(strlen(key), 24);
}

static void conn_needs_a_hook(void **state) {
    stws_conn_desc d;
    stws_conn *c;
    (void)state;
    memset(&d, 0, sizeof d);
    d.url = "ws://127.0.0.1:9/";
    d.clock.now_ms = zero_clock;
    d.logger.func = logger;
    logs = 0;
    assert_null(stws_conn_create(&d));
    assert_int_equal(logs, 1);
    assert_non_null(strstr(last_log, "needs a random hook"));
    d.random.fill = counter_random;
    d.random.user_data = &seq;
    logs = 0;
    c = stws_conn_create(&d);
    assert_non_null(c);
    assert_int_equal(logs, 0);
    stws_conn_destroy(c);
}

static void client_needs_a_hook(void **state) {
    stws_client_desc d;
    stws_client *c;
    (void)state;
    memset(&d, 0, sizeof d);
    d.api_key = "key";
    d.user_id = "alice";
    d.token = "a.b.c";
    d.url = "ws://127.0.0.1:9/connect";
    d.clock.now_ms = zero_clock;
    d.logger.func = logger;
    logs = 0;
    assert_null(stws_client_create(&d));
    assert_int_equal(logs, 1);
    assert_non_null(strstr(last_log, "needs a random hook"));
    d.random.fill = counter_random;
    d.random.user_data = &seq;
    logs = 0;
    c = stws_client_create(&d);
    assert_non_null(c);
    assert_int_equal(logs, 0);
    stws_client_destroy(c);
}

#ifndef STWS_NO_TLS
static int tr_open(void *ctx, const char *host, uint16_t port) {
    (void)ctx; (void)host; (void)port;
    return 0;
}
static int tr_send(void *ctx, const unsigned char *buf, size_t len) {
    (void)ctx; (void)buf;
    return (int)len;
}
static int tr_recv(void *ctx, unsigned char *buf, size_t len) {
    (void)ctx; (void)buf; (void)len;
    return STWS_WANT_READ;
}

static void tls_needs_a_hook(void **state) {
    stws_tls_desc d;
    stws_tls *t;
    (void)state;
    memset(&d, 0, sizeof d);
    d.inner.open = tr_open;
    d.inner.send = tr_send;
    d.inner.recv = tr_recv;
    d.insecure = 1; /* no CA bundle needed */
    d.logger.func = logger;
    logs = 0;
#if MBEDTLS_VERSION_NUMBER >= 0x04000000
    /* mbedTLS 4's TLS takes PSA's generator, never a hook: no hook needed */
    t = stws_tls_create(&d);
    assert_non_null(t);
    assert_int_equal(logs, 0);
    stws_tls_destroy(t);
#else
    assert_null(stws_tls_create(&d));
    assert_true(logs >= 1);
    assert_non_null(strstr(last_log, "needs a random hook"));
#endif
    d.random.fill = counter_random;
    d.random.user_data = &seq;
    t = stws_tls_create(&d);
    assert_non_null(t);
    stws_tls_destroy(t);
}
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codec_needs_a_hook),
        cmocka_unit_test(handshake_key_needs_a_hook),
        cmocka_unit_test(conn_needs_a_hook),
        cmocka_unit_test(client_needs_a_hook),
#ifndef STWS_NO_TLS
        cmocka_unit_test(tls_needs_a_hook),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
