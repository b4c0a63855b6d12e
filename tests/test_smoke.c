/* Quick end-to-end check of the RFC 6455 §5.7 single-frame text example. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include "../stream_ws.h"

static void hello(void **state) {
    static const uint8_t f[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    stws_codec *c = stws_codec_create(NULL);
    stws_codec_event ev;
    size_t used;
    (void)state;
    assert_non_null(c);
    assert_int_equal(stws_codec_parse(c, f, sizeof f, &used, &ev), STWS_OK);
    assert_int_equal(used, sizeof f);
    assert_int_equal(ev.type, STWS_CODEC_EVENT_MESSAGE);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
    stws_codec_destroy(c);
}

/* Every result has its own text, and only results do.  The switch has no
   default, so -Wswitch (-Wall -Werror) stops the build when a code is added
   to the enum but not here; the test then fails until the header's text
   table has it too. */
static int known_result(stws_result r) {
    switch (r) {
    case STWS_OK:
    case STWS_INCOMPLETE:
    case STWS_ERR_INVALID_ARG:
    case STWS_ERR_NOMEM:
    case STWS_ERR_STATE:
    case STWS_ERR_OUTPUT_FULL:
    case STWS_ERR_BUFFER_TOO_SMALL:
    case STWS_ERR_RANDOM:
    case STWS_ERR_CLOSED:
    case STWS_ERR_URL_SCHEME:
    case STWS_ERR_URL_HOST:
    case STWS_ERR_URL_PORT:
    case STWS_ERR_URL_FRAGMENT:
    case STWS_ERR_URL_CHAR:
    case STWS_ERR_URL_TOO_LONG:
    case STWS_ERR_URL_USERINFO:
    case STWS_ERR_RESERVED_BITS:
    case STWS_ERR_RESERVED_OPCODE:
    case STWS_ERR_MASKED_FRAME:
    case STWS_ERR_BAD_LENGTH:
    case STWS_ERR_CONTROL_TOO_LONG:
    case STWS_ERR_CONTROL_FRAGMENTED:
    case STWS_ERR_UNEXPECTED_CONTINUATION:
    case STWS_ERR_EXPECTED_CONTINUATION:
    case STWS_ERR_BAD_CLOSE_PAYLOAD:
    case STWS_ERR_BAD_CLOSE_CODE:
    case STWS_ERR_INVALID_UTF8:
    case STWS_ERR_FRAME_TOO_BIG:
    case STWS_ERR_MESSAGE_TOO_BIG:
    case STWS_ERR_HANDSHAKE_TOO_BIG:
    case STWS_ERR_HANDSHAKE_MALFORMED:
    case STWS_ERR_HANDSHAKE_STATUS:
    case STWS_ERR_HANDSHAKE_UPGRADE:
    case STWS_ERR_HANDSHAKE_CONNECTION:
    case STWS_ERR_HANDSHAKE_ACCEPT:
    case STWS_ERR_HANDSHAKE_EXTENSION:
    case STWS_ERR_HANDSHAKE_SUBPROTOCOL:
    case STWS_ERR_HEADER_VALUE:
    case STWS_ERR_RESOLVE:
    case STWS_ERR_CONNECT:
    case STWS_ERR_TIMEOUT:
    case STWS_ERR_IO:
    case STWS_ERR_EOF:
    case STWS_ERR_TLS:
    case STWS_ERR_TLS_VERIFY:
    case STWS_ERR_PROXY:
    case STWS_ERR_JSON:
    case STWS_ERR_JSON_PATH:
    case STWS_ERR_JSON_TOO_BIG:
    case STWS_ERR_EVENT_SHAPE:
    case STWS_ERR_JSON_TYPE:
    case STWS_ERR_AUTH:
    case STWS_ERR_AUTH_TRANSIENT:
    case STWS_ERR_TOKEN:
    case STWS_ERR_QUEUE_FULL:
    case STWS_ERR_ATTEMPTS:
    case STWS_ERR_ABORTED:
    case STWS_ERR_DEAD:
    case STWS_ERR_WATCHDOG:
    case STWS_ERR_HTTP_MALFORMED:
    case STWS_ERR_HTTP_HEADERS_TOO_BIG:
    case STWS_ERR_HTTP_BODY_TOO_BIG:
    case STWS_ERR_HTTP_CHUNK:
        return 1;
    }
    return 0;
}

static void result_strings(void **state) {
    const char *seen[128];
    int r, n = 0, k;
    (void)state;
    for (r = -0x300; r <= 0x10; r++) {
        const char *s = stws_result_string((stws_result)r);
        assert_non_null(s);
        if (!known_result((stws_result)r)) {
            assert_string_equal(s, "unknown result");
            continue;
        }
        assert_true(strcmp(s, "unknown result") != 0 && s[0] != 0);
        for (k = 0; k < n; k++) assert_true(strcmp(seen[k], s) != 0);
        assert_true(n < 128);
        seen[n++] = s;
    }
    assert_int_equal(n, 63);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(hello), cmocka_unit_test(result_strings)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
