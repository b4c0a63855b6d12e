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
    assert_int_equal(ev.type, STWS_EVENT_MESSAGE);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
    stws_codec_destroy(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(hello)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
