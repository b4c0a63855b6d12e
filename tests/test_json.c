/* The JSON writer, the reader (lazy and jsmn token documents, values,
   cursors, typed readers) and the client's internal per-event parse
   (stws__json_event_parse).

   This file includes the implementation itself in STWS_STATIC mode, so the
   static internals are reachable; its private copy does not clash with
   build/impl.o, which it is linked with as every suite is. */
#if defined(__GNUC__) && !defined(__clang__)
/* in static mode, API declared by other sections but not yet defined */
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#define STWS_STATIC
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define T_FN static
#define LABELED(label, cond)                                                             \
    do {                                                                                 \
        if (!(cond)) fail_msg("%s: expected %s (line %d)", (label), #cond, __LINE__);    \
    } while (0)
#define RESULT_IS(label, actual, expected)                                               \
    do {                                                                                 \
        stws_result a_ = (actual), e_ = (expected);                                      \
        if (a_ != e_)                                                                    \
            fail_msg("%s: %s is %s (%d), expected %s (%d) (line %d)", (label), #actual,  \
                     stws_result_string(a_), (int)a_, stws_result_string(e_), (int)e_,   \
                     __LINE__);                                                          \
    } while (0)

/* ---- a counting allocator -------------------------------------------------- */

typedef struct counter {
    long allocs, frees, live;
    long fail_after; /* allocations allowed before failing; < 0: never fail */
    size_t last_size;
} counter;

T_FN void *c_alloc(size_t n, void *ud) {
    counter *c = (counter *)ud;
    if (c->fail_after >= 0 && c->allocs >= c->fail_after) return NULL;
    c->allocs++;
    c->live++;
    c->last_size = n;
    return malloc(n);
}
T_FN void c_free(void *p, void *ud) {
    counter *c = (counter *)ud;
    if (!p) return;
    c->frees++;
    c->live--;
    free(p);
}
T_FN stws_allocator counting(counter *c) {
    stws_allocator a;
    memset(c, 0, sizeof *c);
    c->fail_after = -1;
    a.alloc = c_alloc;
    a.free = c_free;
    a.user_data = c;
    return a;
}

/* The test oracle of an event's shape (PROTOCOL.md §8: an object with a
   string "type"), by the public look-up on any document: the client's
   one-pass stws__json_event_parse() must agree with it. */
T_FN stws_result stws__json_event_type(const stws_json_doc *doc, stws_str *type) {
    stws_str v;
    if (type) {
        type->ptr = NULL;
        type->len = 0;
    }
    if (stws_json_find(doc, "type", &v) != STWS_JSON_STRING) return STWS_ERR_EVENT_SHAPE;
    if (type) *type = v;
    return STWS_OK;
}

/* A token document: its values carry tokens (lazy values a span). */
T_FN int is_tokens(const stws_json_doc *doc) {
    stws_json_value v;
    return stws_json_get(doc, "", &v) != STWS_JSON_NONE && v.internal != NULL;
}

/* ---- a parser with its own token array --------------------------------------- */

typedef struct parsed {
    stws_json_tokens tk;
    stws_json_doc doc;
    stws_allocator a;
    counter cnt;
} parsed;

T_FN void p_init(parsed *p) {
    memset(p, 0, sizeof *p);
    p->a = counting(&p->cnt);
}
T_FN stws_result p_parse_n(parsed *p, const char *text, size_t len, int max_tokens) {
    p->tk.max_tokens = max_tokens;
    p->tk.allocator = p->a;
    return stws_json_tokenize(&p->tk, text, len, &p->doc);
}
T_FN stws_result p_parse(parsed *p, const char *text) {
    return p_parse_n(p, text, strlen(text), 65536);
}
T_FN void p_free(parsed *p) {
    stws_json_tokens_free(&p->tk);
    assert_int_equal(p->cnt.live, 0);
}

/* Every look-up a test makes on a token document (stws__json_parse) is made
   again on a lazy twin of the same text (stws__json_event_parse), which
   walks the text instead of the tokens: both must answer the same. */
T_FN void twin_same(const stws_json_doc *doc, const char *path) {
    stws_json_tokens lz;
    stws_json_doc ld;
    stws_str ev, lv;
    stws_json_type et, lt;
    stws_result r, er, lr;
    char eb[512], lb[512];
    size_t el = 77, ll = 88, cap;
    int64_t ei = 5, li = 5;
    int ebv = 5, lbv = 5;
    if (!is_tokens(doc)) return;
    memset(&lz, 0, sizeof lz);
    r = stws__json_event_parse(doc->text, doc->len, 0, &lz, 0, 65536, &ld, NULL);
    if ((r != STWS_OK && r != STWS_ERR_EVENT_SHAPE) || !ld.internal)
        fail_msg("twin of %.40s: %s", doc->text, stws_result_string(r));
    et = stws_json_find(doc, path, &ev);
    lt = stws_json_find(&ld, path, &lv);
    if (et != lt || ev.ptr != lv.ptr || ev.len != lv.len)
        fail_msg("find(%s): tokens say %d \"%.*s\", the walk %d \"%.*s\"", path ? path : "(null)", (int)et,
                 (int)ev.len, ev.ptr ? ev.ptr : "", (int)lt, (int)lv.len, lv.ptr ? lv.ptr : "");
    for (cap = 0; cap <= sizeof eb; cap = cap < 4 ? cap + 1 : sizeof eb + 1) {
        er = stws_json_string_at(doc, path, cap ? eb : NULL, cap, &el);
        lr = stws_json_string_at(&ld, path, cap ? lb : NULL, cap, &ll);
        if (er != lr || el != ll || (er == STWS_OK && memcmp(eb, lb, el + 1) != 0))
            fail_msg("string_at(%s, cap %u) differs on the walk", path ? path : "(null)", (unsigned)cap);
    }
    er = stws_json_int_at(doc, path, &ei);
    lr = stws_json_int_at(&ld, path, &li);
    if (er != lr || ei != li) fail_msg("int_at(%s) differs on the walk", path ? path : "(null)");
    er = stws_json_bool_at(doc, path, &ebv);
    lr = stws_json_bool_at(&ld, path, &lbv);
    if (er != lr || ebv != lbv) fail_msg("bool_at(%s) differs on the walk", path ? path : "(null)");
}

T_FN void want_string(const stws_json_doc *doc, const char *path, const char *want) {
    char buf[512];
    size_t len = 99;
    stws_result r = stws_json_string_at(doc, path, buf, sizeof buf, &len);
    twin_same(doc, path);
    if (r != STWS_OK) fail_msg("string_at(%s): %s", path, stws_result_string(r));
    if (len != strlen(want) || memcmp(buf, want, len) != 0 || buf[len] != 0)
        fail_msg("string_at(%s) = \"%.*s\", expected \"%s\"", path, (int)len, buf, want);
}
T_FN void want_int(const stws_json_doc *doc, const char *path, int64_t want) {
    int64_t v = 12345;
    stws_result r = stws_json_int_at(doc, path, &v);
    twin_same(doc, path);
    if (r != STWS_OK) fail_msg("int_at(%s): %s", path, stws_result_string(r));
    if (v != want) fail_msg("int_at(%s) = %lld, expected %lld", path, (long long)v, (long long)want);
}
T_FN void want_bool(const stws_json_doc *doc, const char *path, int want) {
    int v = 7;
    stws_result r = stws_json_bool_at(doc, path, &v);
    twin_same(doc, path);
    if (r != STWS_OK) fail_msg("bool_at(%s): %s", path, stws_result_string(r));
    if (v != want) fail_msg("bool_at(%s) = %d, expected %d", path, v, want);
}
T_FN void want_type(const stws_json_doc *doc, const char *path, stws_json_type want,
                      const char *raw) {
    stws_str v;
    stws_json_type t = stws_json_find(doc, path, &v);
    twin_same(doc, path);
    if (t != want) fail_msg("find(%s) type %d, expected %d", path ? path : "(null)", (int)t, (int)want);
    if (want == STWS_JSON_NONE) {
        if (v.ptr != NULL || v.len != 0) fail_msg("find(%s): not found but a view", path);
    } else if (raw && (v.len != strlen(raw) || memcmp(v.ptr, raw, v.len) != 0)) {
        fail_msg("find(%s) raw \"%.*s\", expected \"%s\"", path, (int)v.len, v.ptr, raw);
    }
}
T_FN void want_missing(const stws_json_doc *doc, const char *path) {
    char buf[64];
    size_t len;
    int64_t i = 5;
    int b = 5;
    want_type(doc, path, STWS_JSON_NONE, NULL);
    RESULT_IS(path, stws_json_string_at(doc, path, buf, sizeof buf, &len), STWS_ERR_JSON_PATH);
    RESULT_IS(path, stws_json_int_at(doc, path, &i), STWS_ERR_JSON_PATH);
    RESULT_IS(path, stws_json_bool_at(doc, path, &b), STWS_ERR_JSON_PATH);
    LABELED(path, i == 5 && b == 5);
}

/* ---- writer ------------------------------------------------------------------- */

/* Run a writer over buf[cap] and compare with want (NULL: expect err). */
#define WRITE_CHECK(label, cap_, body, want_result, want)                              \
    do {                                                                              \
        char buf_[4096];                                                              \
        size_t len_ = 0;                                                              \
        stws_json_writer w_, *w = &w_;                                                \
        stws_result r_;                                                               \
        stws_json_write_init(w, buf_, (cap_));                                              \
        body;                                                                         \
        r_ = stws_json_write_finish(w, &len_);                                              \
        RESULT_IS(label, r_, want_result);                                            \
        if ((want) != NULL) {                                                         \
            const char *want_ = (want);                                               \
            if (len_ != strlen(want_) || memcmp(buf_, want_, len_) != 0 || buf_[len_]) \
                fail_msg("%s: wrote \"%.*s\", expected \"%s\"", (label), (int)len_,    \
                         buf_, want_);                                                \
        }                                                                             \
    } while (0)

static void writer_basic(void **state) {
    (void)state;
    WRITE_CHECK("all kinds", 4096,
                {
                    stws_json_write_object_begin(w);
                    stws_json_write_key(w, "a");
                    stws_json_write_int(w, 1);
                    stws_json_write_key(w, "b");
                    stws_json_write_array_begin(w);
                    stws_json_write_bool(w, 1);
                    stws_json_write_bool(w, 0);
                    stws_json_write_null(w);
                    stws_json_write_string(w, "x");
                    stws_json_write_object_begin(w);
                    stws_json_write_object_end(w);
                    stws_json_write_array_begin(w);
                    stws_json_write_array_end(w);
                    stws_json_write_array_end(w);
                    stws_json_write_key(w, "c");
                    stws_json_write_object_begin(w);
                    stws_json_write_key(w, "min");
                    stws_json_write_int(w, INT64_MIN);
                    stws_json_write_key(w, "max");
                    stws_json_write_int(w, INT64_MAX);
                    stws_json_write_key(w, "zero");
                    stws_json_write_int(w, 0);
                    stws_json_write_key(w, "neg");
                    stws_json_write_int(w, -42);
                    stws_json_write_object_end(w);
                    stws_json_write_key(w, "");
                    stws_json_write_string_n(w, NULL, 0);
                    stws_json_write_key(w, "raw");
                    stws_json_write_raw(w, "{\"k\": [1, 2]}", 13);
                    stws_json_write_object_end(w);
                },
                STWS_OK,
                "{\"a\":1,\"b\":[true,false,null,\"x\",{},[]],\"c\":{\"min\":-9223372036854775808,"
                "\"max\":9223372036854775807,\"zero\":0,\"neg\":-42},\"\":\"\",\"raw\":{\"k\": [1, 2]}}");
    WRITE_CHECK("top-level scalar", 64, stws_json_write_int(w, 7), STWS_OK, "7");
    WRITE_CHECK("top-level string", 64, stws_json_write_string(w, "s"), STWS_OK, "\"s\"");
    WRITE_CHECK("top-level array", 64,
                {
                    stws_json_write_array_begin(w);
                    stws_json_write_int(w, 1);
                    stws_json_write_int(w, 2);
                    stws_json_write_array_end(w);
                },
                STWS_OK, "[1,2]");
    /* the auth message of PROTOCOL.md §2 */
    WRITE_CHECK("auth message", 4096,
                {
                    stws_json_write_object_begin(w);
                    stws_json_write_key(w, "token");
                    stws_json_write_string(w, "abc.def.ghi");
                    stws_json_write_key(w, "user_details");
                    stws_json_write_object_begin(w);
                    stws_json_write_key(w, "id");
                    stws_json_write_string(w, "alice");
                    stws_json_write_key(w, "name");
                    stws_json_write_string(w, "Alice \"The\" Admin\\");
                    stws_json_write_key(w, "custom");
                    stws_json_write_raw(w, "{}", 2);
                    stws_json_write_object_end(w);
                    stws_json_write_key(w, "products");
                    stws_json_write_array_begin(w);
                    stws_json_write_string(w, "chat");
                    stws_json_write_array_end(w);
                    stws_json_write_object_end(w);
                },
                STWS_OK,
                "{\"token\":\"abc.def.ghi\",\"user_details\":{\"id\":\"alice\",\"name\":"
                "\"Alice \\\"The\\\" Admin\\\\\",\"custom\":{}},\"products\":[\"chat\"]}");
}

static void writer_escape_table(void **state) {
    static const char *const ctl[32] = {
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
        "\\b",     "\\t",     "\\n",     "\\u000b", "\\f",     "\\r",     "\\u000e", "\\u000f",
        "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
        "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f"};
    static const struct {
        const char *in, *out;
    } table[] = {
        {"\"", "\\\""},
        {"\\", "\\\\"},
        {"/", "/"},
        {"\x7f", "\\u007f"},
        {" ~", " ~"},
        {"caf\xc3\xa9", "caf\xc3\xa9"},                       /* U+00E9 */
        {"\xe2\x82\xac", "\xe2\x82\xac"},                     /* U+20AC */
        {"\xf0\x9d\x84\x9e", "\xf0\x9d\x84\x9e"},             /* U+1D11E */
        {"\xe2\x80\xa8", "\xe2\x80\xa8"},                     /* U+2028 */
        {"\xef\xbf\xbf", "\xef\xbf\xbf"},                     /* U+FFFF */
        {"\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"},             /* U+10FFFF */
        {"a\"b\\c\nd", "a\\\"b\\\\c\\nd"},
        {"</script>", "</script>"},
    };
    char in[2], want[64], label[32];
    unsigned i;
    (void)state;
    for (i = 0; i < 32; i++) {
        in[0] = (char)i;
        snprintf(want, sizeof want, "\"%s\"", ctl[i]);
        snprintf(label, sizeof label, "control 0x%02x", i);
        WRITE_CHECK(label, 64, stws_json_write_string_n(w, in, 1), STWS_OK, want);
        /* the same escape inside a key (a C string: 0x00 cannot be one) */
        snprintf(want, sizeof want, "{\"%s\":1}", ctl[i ? i : 1]);
        WRITE_CHECK(label, 64,
                    {
                        char key[2];
                        key[0] = (char)(i ? i : 1);
                        key[1] = 0;
                        stws_json_write_object_begin(w);
                        stws_json_write_key(w, key);
                        stws_json_write_int(w, 1);
                        stws_json_write_object_end(w);
                    },
                    STWS_OK, want);
    }
    for (i = 0; i < sizeof table / sizeof table[0]; i++) {
        snprintf(want, sizeof want, "\"%s\"", table[i].out);
        WRITE_CHECK(table[i].in, 64, stws_json_write_string(w, table[i].in), STWS_OK, want);
        snprintf(want, sizeof want, "{\"%s\":0}", table[i].out);
        WRITE_CHECK(table[i].in, 64,
                    {
                        stws_json_write_object_begin(w);
                        stws_json_write_key(w, table[i].in);
                        stws_json_write_int(w, 0);
                        stws_json_write_object_end(w);
                    },
                    STWS_OK, want);
    }
    /* every byte 0x00-0x7F round-trips through the reader */
    {
        char all[128], out[1024], back[256];
        size_t len, blen;
        stws_json_writer w;
        parsed p;
        for (i = 0; i < 128; i++) all[i] = (char)i;
        stws_json_write_init(&w, out, sizeof out);
        stws_json_write_string_n(&w, all, 128);
        assert_int_equal(stws_json_write_finish(&w, &len), STWS_OK);
        p_init(&p);
        assert_int_equal(p_parse_n(&p, out, len, 16), STWS_OK);
        assert_int_equal(stws_json_string_at(&p.doc, "", back, sizeof back, &blen), STWS_OK);
        assert_int_equal(blen, 128);
        assert_memory_equal(back, all, 128);
        p_free(&p);
    }
}

static void writer_invalid_utf8(void **state) {
    static const char *const bad[] = {
        "\x80",                 /* lone continuation */
        "a\xbf",                /* continuation after ASCII */
        "\xc0\xaf",             /* overlong '/' */
        "\xc1\xbf",             /* overlong */
        "\xe0\x80\xaf",         /* overlong, 3 bytes */
        "\xf0\x80\x80\xaf",     /* overlong, 4 bytes */
        "\xed\xa0\x80",         /* U+D800, a surrogate */
        "\xed\xbf\xbf",         /* U+DFFF */
        "\xf4\x90\x80\x80",     /* U+110000 */
        "\xf5\x80\x80\x80",     /* beyond */
        "\xff",                 /* never valid */
        "\xfe",
        "\xe2\x82",             /* truncated euro */
        "\xf0\x9d\x84",         /* truncated U+1D11E */
        "ok\xc3",               /* truncated at the end */
        "\xc3\x28",             /* bad continuation */
    };
    unsigned i;
    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char raw[32];
        WRITE_CHECK("string", 64, stws_json_write_string(w, bad[i]), STWS_ERR_INVALID_UTF8, NULL);
        WRITE_CHECK("string in array", 64,
                    {
                        stws_json_write_array_begin(w);
                        stws_json_write_string(w, "fine");
                        stws_json_write_string(w, bad[i]);
                        stws_json_write_array_end(w);
                    },
                    STWS_ERR_INVALID_UTF8, NULL);
        WRITE_CHECK("key", 64,
                    {
                        stws_json_write_object_begin(w);
                        stws_json_write_key(w, bad[i]);
                        stws_json_write_int(w, 1);
                        stws_json_write_object_end(w);
                    },
                    STWS_ERR_INVALID_UTF8, NULL);
        snprintf(raw, sizeof raw, "[\"%s\"]", bad[i]);
        WRITE_CHECK("raw", 64, stws_json_write_raw(w, raw, strlen(raw)), STWS_ERR_INVALID_UTF8, NULL);
    }
}

static void writer_misuse(void **state) {
    int i;
    (void)state;
    WRITE_CHECK("value without key", 64,
                {
                    stws_json_write_object_begin(w);
                    stws_json_write_int(w, 1);
                    stws_json_write_object_end(w);
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("string without key", 64,
                {
                    stws_json_write_object_begin(w);
                    stws_json_write_string(w, "v");
                    stws_json_write_object_end(w);
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("container without key", 64,
                {
                    stws_json_write_object_begin(w);
                    stws_json_write_array_begin(w);
                    stws_json_write_array_end(w);
                    stws_json_write_object_end(w);
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("key in array", 64,
                {
                    stws_json_write_array_begin(w);
                    stws_json_write_key(w, "k");
                    stws_json_write_int(w, 1);
                    stws_json_write_array_end(w);
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("key at top level", 64, stws_json_write_key(w, "k"), STWS_ERR_JSON, NULL);
    WRITE_CHECK("two keys", 64,
                {
                    stws_json_write_object_begin(w);
                    stws_json_write_key(w, "a");
                    stws_json_write_key(w, "b");
                    stws_json_write_int(w, 1);
                    stws_json_write_object_end(w);
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("key without value", 64,
                {
                    stws_json_write_object_begin(w);
                    stws_json_write_key(w, "a");
                    stws_json_write_object_end(w);
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("key without value at finish", 64,
                {
                    stws_json_write_object_begin(w);
                    stws_json_write_key(w, "a");
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("object closed as array", 64,
                {
                    stws_json_write_object_begin(w);
                    stws_json_write_array_end(w);
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("array closed as object", 64,
                {
                    stws_json_write_array_begin(w);
                    stws_json_write_object_end(w);
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("end at depth 0", 64, stws_json_write_object_end(w), STWS_ERR_JSON, NULL);
    WRITE_CHECK("end at depth 0 after a value", 64,
                {
                    stws_json_write_array_begin(w);
                    stws_json_write_array_end(w);
                    stws_json_write_array_end(w);
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("open at finish", 64,
                {
                    stws_json_write_array_begin(w);
                    stws_json_write_object_begin(w);
                    stws_json_write_key(w, "a");
                    stws_json_write_int(w, 1);
                    stws_json_write_object_end(w);
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("two top-level values", 64,
                {
                    stws_json_write_int(w, 1);
                    stws_json_write_int(w, 2);
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("two top-level objects", 64,
                {
                    stws_json_write_object_begin(w);
                    stws_json_write_object_end(w);
                    stws_json_write_object_begin(w);
                    stws_json_write_object_end(w);
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("nothing written", 64, (void)w, STWS_ERR_JSON, NULL);
    WRITE_CHECK("NULL string", 64, stws_json_write_string(w, NULL), STWS_ERR_INVALID_ARG, NULL);
    WRITE_CHECK("NULL key", 64,
                {
                    stws_json_write_object_begin(w);
                    stws_json_write_key(w, NULL);
                },
                STWS_ERR_INVALID_ARG, NULL);
    WRITE_CHECK("NULL string_n with length", 64, stws_json_write_string_n(w, NULL, 3),
                STWS_ERR_INVALID_ARG, NULL);
    /* STWS_JSON_MAX_DEPTH containers nest; one more does not */
    WRITE_CHECK("max depth", 4096,
                {
                    for (i = 0; i < STWS_JSON_MAX_DEPTH; i++) stws_json_write_array_begin(w);
                    for (i = 0; i < STWS_JSON_MAX_DEPTH; i++) stws_json_write_array_end(w);
                },
                STWS_OK, NULL);
    WRITE_CHECK("too deep", 4096,
                {
                    for (i = 0; i <= STWS_JSON_MAX_DEPTH; i++) stws_json_write_array_begin(w);
                    for (i = 0; i <= STWS_JSON_MAX_DEPTH; i++) stws_json_write_array_end(w);
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("too deep with objects", 4096,
                {
                    for (i = 0; i <= STWS_JSON_MAX_DEPTH; i++) {
                        if (i) stws_json_write_key(w, "k");
                        stws_json_write_object_begin(w);
                    }
                },
                STWS_ERR_JSON, NULL);
    /* errors are sticky: the first one is reported and nothing more is written */
    {
        char buf[64];
        size_t len, before;
        stws_json_writer w;
        stws_json_write_init(&w, buf, sizeof buf);
        stws_json_write_array_begin(&w);
        stws_json_write_string(&w, "\xff");
        before = w.len;
        stws_json_write_int(&w, 1);
        stws_json_write_key(&w, "k");
        stws_json_write_array_end(&w);
        stws_json_write_raw(&w, "1", 1);
        assert_int_equal(w.len, before);
        assert_int_equal(stws_json_write_finish(&w, &len), STWS_ERR_INVALID_UTF8);
        assert_int_equal(stws_json_write_finish(&w, &len), STWS_ERR_INVALID_UTF8);
        assert_int_equal(buf[0], 0);
        /* NULL writer: no crash */
        stws_json_write_init(NULL, buf, sizeof buf);
        stws_json_write_int(NULL, 1);
        stws_json_write_object_begin(NULL);
        stws_json_write_key(NULL, "k");
        assert_int_equal(stws_json_write_finish(NULL, &len), STWS_ERR_INVALID_ARG);
    }
    /* a misuse after running out of room is still reported as misuse */
    WRITE_CHECK("misuse after overflow", 4,
                {
                    stws_json_write_array_begin(w);
                    stws_json_write_string(w, "long enough to overflow");
                    stws_json_write_key(w, "k");
                },
                STWS_ERR_JSON, NULL);
}

/* A document touching every writer path, written into buf[cap]. */
T_FN stws_result write_sample(char *buf, size_t cap, size_t *len) {
    stws_json_writer w;
    stws_json_write_init(&w, buf, cap);
    stws_json_write_object_begin(&w);
    stws_json_write_key(&w, "type");
    stws_json_write_string(&w, "message.new");
    stws_json_write_key(&w, "text");
    stws_json_write_string(&w, "say \"hi\"\n\t\x01 caf\xc3\xa9 \xf0\x9f\x98\x80");
    stws_json_write_key(&w, "n");
    stws_json_write_array_begin(&w);
    stws_json_write_int(&w, -1);
    stws_json_write_int(&w, 1234567890123LL);
    stws_json_write_bool(&w, 1);
    stws_json_write_null(&w);
    stws_json_write_array_end(&w);
    stws_json_write_key(&w, "custom");
    stws_json_write_raw(&w, "{\"x\":[1,{\"y\":\"z\"}]}", 19);
    stws_json_write_key(&w, "k\"ey");
    stws_json_write_object_begin(&w);
    stws_json_write_object_end(&w);
    stws_json_write_object_end(&w);
    return stws_json_write_finish(&w, len);
}

static void writer_overflow_every_cap(void **state) {
    char full[512];
    size_t need, cap;
    (void)state;
    assert_int_equal(write_sample(full, sizeof full, &need), STWS_OK);
    assert_int_equal(strlen(full), need);
    /* sizing with no buffer at all */
    {
        size_t len = 0;
        assert_int_equal(write_sample(NULL, 0, &len), STWS_ERR_BUFFER_TOO_SMALL);
        assert_int_equal(len, need);
        assert_int_equal(write_sample(NULL, 100, &len), STWS_ERR_BUFFER_TOO_SMALL);
        assert_int_equal(len, need);
    }
    for (cap = 0; cap <= need + 1; cap++) {
        char *buf = (char *)malloc(cap + 1);
        size_t len = 0, i;
        stws_result r;
        assert_non_null(buf);
        memset(buf, 0x5A, cap);
        buf[cap] = (char)0xA5; /* guard */
        r = write_sample(buf, cap, &len);
        if ((unsigned char)buf[cap] != 0xA5) fail_msg("cap %zu: wrote past the end", cap);
        if (cap <= need) {
            if (r != STWS_ERR_BUFFER_TOO_SMALL) fail_msg("cap %zu: %s", cap, stws_result_string(r));
            if (len != need) fail_msg("cap %zu: needs %zu, said %zu", cap, need, len);
            if (cap && buf[0] != 0) fail_msg("cap %zu: not emptied", cap);
            /* what was written is a prefix of the real thing */
            for (i = 1; i < cap; i++)
                if (buf[i] != full[i] && buf[i] != 0x5A) fail_msg("cap %zu: byte %zu", cap, i);
        } else {
            assert_int_equal(r, STWS_OK);
            assert_int_equal(len, need);
            assert_memory_equal(buf, full, need + 1);
        }
        free(buf);
    }
}

static void writer_raw(void **state) {
    static const char *const good[] = {
        "{\"a\":[1,2.5e-3,true,null,\"x\\u00e9\"]}",
        " 42 ",
        "-0",
        "0.5E+10",
        "\"s\"",
        "[]",
        "{}",
        "true",
        "null",
        "\t[ {\"a\" : { } } ]\r\n",
        "\"\\ud83d\\ude00\"",
        "{\"\":\"\"}",
        "[[[[[[[[[[1]]]]]]]]]]",
    };
    static const char *const bad[] = {
        "",       " ",          "{",           "}",         "{\"a\":1}x", "{\"a\":1} {}",
        "[1 2]",  "{\"a\" \"b\"}", "[1,]",      "[,1]",      "{,}",        "{\"a\":1,}",
        "tru",    "truex",      "nul",         "01",        "1.",         ".5",
        "-",      "1e",         "+1",          "0x10",      "'a'",        "{a:1}",
        "NaN",    "Infinity",   "-Infinity",   "[1]]",      "[[1]",       "[}",
        "{]",     "\"\\q\"",    "\"\\u12\"",   "\"\t\"",    "\"\n\"",     "{\"a\"}",
        "{\"a\":}", "{\"a\"::1}", "[1:2]",     "{1:2}",     "/**/1",      "1//",
        "\"abc",  "[\"a\",]",   "{\"a\":1 \"b\":2}", "[true false]", "{\"a\":[}", "1 2",
    };
    unsigned i;
    (void)state;
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        char want[128];
        snprintf(want, sizeof want, "[%s]", good[i]);
        WRITE_CHECK(good[i], 256,
                    {
                        stws_json_write_array_begin(w);
                        stws_json_write_raw(w, good[i], strlen(good[i]));
                        stws_json_write_array_end(w);
                    },
                    STWS_OK, want);
    }
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        WRITE_CHECK(bad[i], 256, stws_json_write_raw(w, bad[i], strlen(bad[i])), STWS_ERR_JSON, NULL);
    /* n bounds the value: a valid prefix of a longer buffer is accepted */
    WRITE_CHECK("prefix", 64, stws_json_write_raw(w, "[1]garbage", 3), STWS_OK, "[1]");
    /* a NUL inside n is not the end of the text */
    WRITE_CHECK("embedded NUL", 64, stws_json_write_raw(w, "{}\0", 3), STWS_ERR_JSON, NULL);
    WRITE_CHECK("NULL raw", 64, stws_json_write_raw(w, NULL, 2), STWS_ERR_INVALID_ARG, NULL);
    WRITE_CHECK("NULL raw, 0", 64, stws_json_write_raw(w, NULL, 0), STWS_ERR_JSON, NULL);
    /* raw nesting counts against STWS_JSON_MAX_DEPTH */
    WRITE_CHECK("raw at the depth limit", 4096,
                {
                    for (i = 0; i < STWS_JSON_MAX_DEPTH - 2; i++) stws_json_write_array_begin(w);
                    stws_json_write_raw(w, "[[1]]", 5);
                    for (i = 0; i < STWS_JSON_MAX_DEPTH - 2; i++) stws_json_write_array_end(w);
                },
                STWS_OK, NULL);
    WRITE_CHECK("raw past the depth limit", 4096,
                {
                    for (i = 0; i < STWS_JSON_MAX_DEPTH - 2; i++) stws_json_write_array_begin(w);
                    stws_json_write_raw(w, "[[[1]]]", 7);
                    for (i = 0; i < STWS_JSON_MAX_DEPTH - 2; i++) stws_json_write_array_end(w);
                },
                STWS_ERR_JSON, NULL);
    WRITE_CHECK("raw as an object member", 64,
                {
                    stws_json_write_object_begin(w);
                    stws_json_write_key(w, "custom");
                    stws_json_write_raw(w, "{\"vip\":true}", 12);
                    stws_json_write_key(w, "n");
                    stws_json_write_raw(w, "1", 1);
                    stws_json_write_object_end(w);
                },
                STWS_OK, "{\"custom\":{\"vip\":true},\"n\":1}");
    WRITE_CHECK("raw without key", 64,
                {
                    stws_json_write_object_begin(w);
                    stws_json_write_raw(w, "{}", 2);
                    stws_json_write_object_end(w);
                },
                STWS_ERR_JSON, NULL);
}

/* ---- reader: realistic events ------------------------------------------------------ */

static const char CONNECTION_OK[] =
    "{\"type\":\"connection.ok\",\"connection_id\":\"6a5d1e36-0a0e-4f47-8d2a-7a3c0b1f2e3d\","
    "\"created_at\":\"2024-05-02T10:11:12.123456789Z\",\"me\":{\"id\":\"alice\",\"name\":\"Alice "
    "\\\"Al\\\" L\\u00f6we\",\"role\":\"user\",\"image\":\"https:\\/\\/example.com\\/a.png\","
    "\"created_at\":\"2023-01-01T00:00:00Z\",\"online\":true,\"banned\":false,\"invisible\":false,"
    "\"total_unread_count\":3,\"unread_channels\":2,\"last_active\":null,"
    "\"teams\":[],\"mutes\":[],\"channel_mutes\":[],"
    "\"devices\":[{\"id\":\"dev-1\",\"push_provider\":\"firebase\",\"created_at\":\"2024-01-01T00:00:00Z\"},"
    "{\"id\":\"dev-2\",\"push_provider\":\"apn\",\"disabled\":true}],"
    "\"privacy_settings\":{\"typing_indicators\":{\"enabled\":true},\"read_receipts\":{\"enabled\":false}},"
    "\"custom\":{\"vip\":true,\"score\":-17,\"ratio\":0.75,\"tags\":[\"a\",\"b\"]}}}";

static void reader_connection_ok(void **state) {
    parsed p;
    stws_str t;
    (void)state;
    p_init(&p);
    assert_int_equal(p_parse(&p, CONNECTION_OK), STWS_OK);
    assert_int_equal(stws__json_event_type(&p.doc, &t), STWS_OK);
    assert_int_equal(t.len, 13);
    assert_memory_equal(t.ptr, "connection.ok", 13);
    want_string(&p.doc, "type", "connection.ok");
    want_string(&p.doc, "connection_id", "6a5d1e36-0a0e-4f47-8d2a-7a3c0b1f2e3d");
    want_string(&p.doc, "created_at", "2024-05-02T10:11:12.123456789Z");
    want_string(&p.doc, "me.id", "alice");
    want_string(&p.doc, "me.name", "Alice \"Al\" L\xc3\xb6we");
    want_type(&p.doc, "me.name", STWS_JSON_STRING, "Alice \\\"Al\\\" L\\u00f6we");
    want_string(&p.doc, "me.image", "https://example.com/a.png");
    want_bool(&p.doc, "me.online", 1);
    want_bool(&p.doc, "me.banned", 0);
    want_int(&p.doc, "me.total_unread_count", 3);
    want_int(&p.doc, "me.custom.score", -17);
    want_bool(&p.doc, "me.custom.vip", 1);
    want_bool(&p.doc, "me.privacy_settings.read_receipts.enabled", 0);
    want_bool(&p.doc, "me.privacy_settings.typing_indicators.enabled", 1);
    want_string(&p.doc, "me.devices.0.id", "dev-1");
    want_string(&p.doc, "me.devices[0].push_provider", "firebase");
    want_string(&p.doc, "me.devices[1].id", "dev-2");
    want_bool(&p.doc, "me.devices.1.disabled", 1);
    want_string(&p.doc, "me.custom.tags[1]", "b");
    want_string(&p.doc, "me.custom.tags.0", "a");
    want_type(&p.doc, "me", STWS_JSON_OBJECT, NULL);
    want_type(&p.doc, "me.teams", STWS_JSON_ARRAY, "[]");
    want_type(&p.doc, "me.devices", STWS_JSON_ARRAY, NULL);
    want_type(&p.doc, "me.last_active", STWS_JSON_NULL, "null");
    want_type(&p.doc, "me.custom.ratio", STWS_JSON_NUMBER, "0.75");
    want_type(&p.doc, "me.online", STWS_JSON_BOOL, "true");
    want_type(&p.doc, "me.privacy_settings.read_receipts", STWS_JSON_OBJECT, "{\"enabled\":false}");
    want_type(&p.doc, "", STWS_JSON_OBJECT, CONNECTION_OK);
    /* nested keys are not found at the top level, nor top-level ones below */
    want_missing(&p.doc, "id");
    want_missing(&p.doc, "me.type");
    want_missing(&p.doc, "me.devices.2");
    want_missing(&p.doc, "me.devices[2].id");
    want_missing(&p.doc, "me.teams.0");
    want_missing(&p.doc, "me.custom.tags.0.x");
    p_free(&p);
}

static const char CONNECTION_ERROR[] =
    "{\"type\":\"connection.error\",\"connection_id\":\"\",\"created_at\":\"2024-05-02T10:11:12.1Z\","
    "\"error\":{\"code\":40,\"message\":\"JWTAuth error: token is expired (exp: 1566941272)\","
    "\"StatusCode\":401,\"duration\":\"\",\"more_info\":\"https://getstream.io/chat/docs/api_errors_response\","
    "\"details\":[]}}";

static void reader_connection_error(void **state) {
    parsed p;
    stws_str t;
    (void)state;
    p_init(&p);
    assert_int_equal(p_parse(&p, CONNECTION_ERROR), STWS_OK);
    assert_int_equal(stws__json_event_type(&p.doc, &t), STWS_OK);
    assert_int_equal(t.len, 16);
    assert_memory_equal(t.ptr, "connection.error", 16);
    want_int(&p.doc, "error.code", 40);
    want_int(&p.doc, "error.StatusCode", 401);
    want_string(&p.doc, "error.message", "JWTAuth error: token is expired (exp: 1566941272)");
    want_string(&p.doc, "connection_id", "");
    want_type(&p.doc, "error.details", STWS_JSON_ARRAY, "[]");
    want_missing(&p.doc, "error.statuscode"); /* keys are case-sensitive */
    want_missing(&p.doc, "error.details.0");
    want_missing(&p.doc, "code");
    p_free(&p);
}

static const char MESSAGE_NEW[] =
    "{\n  \"type\": \"message.new\",\n  \"cid\": \"messaging:general\",\n  \"channel_type\": \"messaging\",\n"
    "  \"channel_id\": \"general\",\n  \"message\": {\n    \"id\": \"msg-1\",\n"
    "    \"text\": \"Hello\\n\\tworld \\ud83d\\ude00 \\u20ac\",\n    \"type\": \"regular\",\n"
    "    \"user\": {\"id\": \"bob\", \"name\": \"Bob \\\"B\\\" Builder\", \"role\": \"admin\", \"online\": true},\n"
    "    \"attachments\": [\n      {\"type\": \"image\", \"image_url\": \"https://x/y.png\", \"original_width\": 640},\n"
    "      {\"type\": \"file\", \"file_size\": 1048576, \"title\": \"report.pdf\"}\n    ],\n"
    "    \"mentioned_users\": [{\"id\": \"carol\"}, {\"id\": \"dave\"}],\n"
    "    \"latest_reactions\": [], \"reaction_counts\": {\"like\": 2}, \"reply_count\": 0,\n"
    "    \"pinned\": false, \"pinned_at\": null, \"silent\": false, \"shadowed\": false\n  },\n"
    "  \"user\": {\"id\": \"bob\"},\n  \"watcher_count\": 5,\n  \"total_unread_count\": 12,\n"
    "  \"unread_channels\": 1,\n  \"created_at\": \"2024-05-02T10:11:12.000000001Z\"\n}\n";

static void reader_message_new(void **state) {
    parsed p;
    stws_str t;
    (void)state;
    p_init(&p);
    assert_int_equal(p_parse(&p, MESSAGE_NEW), STWS_OK);
    assert_int_equal(stws__json_event_type(&p.doc, &t), STWS_OK);
    assert_int_equal(t.len, 11);
    assert_memory_equal(t.ptr, "message.new", 11);
    want_string(&p.doc, "message.user.name", "Bob \"B\" Builder");
    want_string(&p.doc, "message.user.id", "bob");
    want_string(&p.doc, "message.text", "Hello\n\tworld \xf0\x9f\x98\x80 \xe2\x82\xac");
    want_string(&p.doc, "message.type", "regular");
    want_string(&p.doc, "message.attachments[1].type", "file");
    want_int(&p.doc, "message.attachments[1].file_size", 1048576);
    want_int(&p.doc, "message.attachments.0.original_width", 640);
    want_string(&p.doc, "message.mentioned_users.1.id", "dave");
    want_string(&p.doc, "message.mentioned_users[0].id", "carol");
    want_int(&p.doc, "message.reaction_counts.like", 2);
    want_int(&p.doc, "watcher_count", 5);
    want_bool(&p.doc, "message.user.online", 1);
    want_type(&p.doc, "message.pinned_at", STWS_JSON_NULL, "null");
    want_type(&p.doc, "message.latest_reactions", STWS_JSON_ARRAY, "[]");
    want_string(&p.doc, "user.id", "bob");
    want_string(&p.doc, "cid", "messaging:general");
    want_missing(&p.doc, "message.attachments[2]");
    want_missing(&p.doc, "message.mentioned_users.2.id");
    p_free(&p);
}

static void reader_lookup_errors(void **state) {
    static const char doc[] =
        "{\"s\":\"str\",\"n\":12,\"f\":1.5,\"e\":1e3,\"E\":-2E-2,\"t\":true,\"z\":null,\"o\":{\"0\":\"zero\","
        "\"k\":[10,20,[30,[40]]]},\"a\":[\"x\",{\"y\":\"why\"}],\"big\":9223372036854775807,"
        "\"small\":-9223372036854775808,\"over\":9223372036854775808,\"under\":-9223372036854775809,"
        "\"huge\":123456789012345678901234567890,\"negzero\":-0,\"a.b\":1,\"c[0]\":2}";
    static const char *const bad_paths[] = {
        "a..b", ".s", "s.", "a[", "a[x]", "a[0", "a[0]x", "a[]", "[0]", "a.[0]", "a[-1]",
        "a[99999999999999999999]", "a.99999999999999999999", "s.x", "s[0]", "o[0]", "o.1",
        "t.x", "z.x", "n.0", "a.b", "c[0]", "missing", "o.k.3", "o.k[2][2]", "a[1].y.z",
    };
    parsed p;
    char buf[32];
    size_t len = 9;
    int64_t iv = 5;
    int bv = 5;
    unsigned i;
    (void)state;
    p_init(&p);
    assert_int_equal(p_parse(&p, doc), STWS_OK);
    for (i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) want_missing(&p.doc, bad_paths[i]);
    want_type(&p.doc, NULL, STWS_JSON_NONE, NULL);
    /* ".N" on an object names the key "N"; "[N]" requires an array */
    want_string(&p.doc, "o.0", "zero");
    want_int(&p.doc, "o.k.1", 20);
    want_int(&p.doc, "o.k[2][0]", 30);
    want_int(&p.doc, "o.k.2.1.0", 40);
    want_int(&p.doc, "o.k[2].1[0]", 40);
    want_string(&p.doc, "a[1].y", "why");
    /* wrong types */
    RESULT_IS("int of string", stws_json_int_at(&p.doc, "s", &iv), STWS_ERR_JSON_TYPE);
    RESULT_IS("int of fraction", stws_json_int_at(&p.doc, "f", &iv), STWS_ERR_JSON_TYPE);
    RESULT_IS("int of exponent", stws_json_int_at(&p.doc, "e", &iv), STWS_ERR_JSON_TYPE);
    RESULT_IS("int of exponent", stws_json_int_at(&p.doc, "E", &iv), STWS_ERR_JSON_TYPE);
    RESULT_IS("int of bool", stws_json_int_at(&p.doc, "t", &iv), STWS_ERR_JSON_TYPE);
    RESULT_IS("int of null", stws_json_int_at(&p.doc, "z", &iv), STWS_ERR_JSON_TYPE);
    RESULT_IS("int of object", stws_json_int_at(&p.doc, "o", &iv), STWS_ERR_JSON_TYPE);
    RESULT_IS("int overflow", stws_json_int_at(&p.doc, "over", &iv), STWS_ERR_JSON_TYPE);
    RESULT_IS("int underflow", stws_json_int_at(&p.doc, "under", &iv), STWS_ERR_JSON_TYPE);
    RESULT_IS("int huge", stws_json_int_at(&p.doc, "huge", &iv), STWS_ERR_JSON_TYPE);
    assert_int_equal(iv, 5);
    RESULT_IS("bool of number", stws_json_bool_at(&p.doc, "n", &bv), STWS_ERR_JSON_TYPE);
    RESULT_IS("bool of null", stws_json_bool_at(&p.doc, "z", &bv), STWS_ERR_JSON_TYPE);
    RESULT_IS("bool of string", stws_json_bool_at(&p.doc, "s", &bv), STWS_ERR_JSON_TYPE);
    assert_int_equal(bv, 5);
    RESULT_IS("string of number", stws_json_string_at(&p.doc, "n", buf, sizeof buf, &len),
              STWS_ERR_JSON_TYPE);
    RESULT_IS("string of object", stws_json_string_at(&p.doc, "o", buf, sizeof buf, &len),
              STWS_ERR_JSON_TYPE);
    RESULT_IS("string of array", stws_json_string_at(&p.doc, "a", buf, sizeof buf, &len),
              STWS_ERR_JSON_TYPE);
    want_int(&p.doc, "big", INT64_MAX);
    want_int(&p.doc, "small", INT64_MIN);
    want_int(&p.doc, "negzero", 0);
    want_int(&p.doc, "n", 12);
    /* NULL outputs */
    RESULT_IS("int NULL out", stws_json_int_at(&p.doc, "n", NULL), STWS_ERR_INVALID_ARG);
    RESULT_IS("bool NULL out", stws_json_bool_at(&p.doc, "t", NULL), STWS_ERR_INVALID_ARG);
    RESULT_IS("string NULL len", stws_json_string_at(&p.doc, "s", buf, sizeof buf, NULL),
              STWS_ERR_INVALID_ARG);
    RESULT_IS("string NULL buf", stws_json_string_at(&p.doc, "s", NULL, 4, &len),
              STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_json_find(&p.doc, "s", NULL), STWS_JSON_STRING);
    /* NULL and empty documents */
    {
        stws_json_doc empty;
        memset(&empty, 0, sizeof empty);
        want_missing(&empty, "");
        want_missing(&empty, "s");
        want_missing(NULL, "s");
    }
    p_free(&p);
}

static void reader_escapes(void **state) {
    static const struct {
        const char *json;   /* a top-level string */
        const char *want;   /* NULL: STWS_ERR_JSON */
        size_t want_len;
    } table[] = {
        {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8},
        {"\"\\u0041\\u00e9\\u00E9\"", "A\xc3\xa9\xc3\xa9", 5},
        {"\"\\u20ac\\u20AC\"", "\xe2\x82\xac\xe2\x82\xac", 6},
        {"\"\\u07ff\\u0800\\uffff\"", "\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", 8},
        {"\"\\ud834\\udd1e\"", "\xf0\x9d\x84\x9e", 4},
        {"\"\\uD83D\\uDE00!\"", "\xf0\x9f\x98\x80!", 5},
        {"\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf", 4},
        {"\"\\ud800\\udc00\"", "\xf0\x90\x80\x80", 4},
        {"\"a\\u0000b\"", "a\0b", 3},
        {"\"raw \xc3\xa9 \xf0\x9f\x98\x80\"", "raw \xc3\xa9 \xf0\x9f\x98\x80", 11},
        {"\"\\ud834\"", NULL, 0},               /* lone high half at the end */
        {"\"\\ud834x\"", NULL, 0},              /* high half, then a character */
        {"\"\\ud834\\n\"", NULL, 0},            /* high half, then another escape */
        {"\"\\ud834\\ud834\"", NULL, 0},        /* two high halves */
        {"\"\\ud834\\u0041\"", NULL, 0},        /* high half, then a BMP escape */
        {"\"\\udd1e\"", NULL, 0},               /* lone low half */
        {"\"\\udd1e\\ud834\"", NULL, 0},        /* halves reversed */
        {"\"x\\udfff\"", NULL, 0},
    };
    unsigned i;
    (void)state;
    for (i = 0; i < sizeof table / sizeof table[0]; i++) {
        parsed p;
        char buf[64];
        size_t len = 99;
        stws_result r;
        p_init(&p);
        /* the tokenizer accepts every one of them: pairing is checked when
           a string is unescaped */
        RESULT_IS(table[i].json, p_parse(&p, table[i].json), STWS_OK);
        r = stws_json_string_at(&p.doc, "", buf, sizeof buf, &len);
        if (table[i].want) {
            RESULT_IS(table[i].json, r, STWS_OK);
            if (len != table[i].want_len || memcmp(buf, table[i].want, len) != 0 || buf[len])
                fail_msg("%s: wrong unescaping", table[i].json);
        } else {
            RESULT_IS(table[i].json, r, STWS_ERR_JSON);
        }
        p_free(&p);
    }
}

static void reader_string_buffer(void **state) {
    parsed p;
    const char *want = "L\xc3\xb6we \xf0\x9f\x98\x80 \"q\"";
    size_t need = strlen(want), cap;
    (void)state;
    p_init(&p);
    assert_int_equal(p_parse(&p, "{\"n\":\"L\\u00f6we \\ud83d\\ude00 \\\"q\\\"\"}"), STWS_OK);
    for (cap = 0; cap <= need + 1; cap++) {
        char *buf = (char *)malloc(cap + 1);
        size_t len = 0;
        stws_result r;
        assert_non_null(buf);
        memset(buf, 'x', cap);
        buf[cap] = (char)0xA5;
        r = stws_json_string_at(&p.doc, "n", cap ? buf : NULL, cap, &len);
        if ((unsigned char)buf[cap] != 0xA5) fail_msg("cap %zu: wrote past the end", cap);
        assert_int_equal(len, need);
        if (cap <= need) {
            RESULT_IS("too small", r, STWS_ERR_BUFFER_TOO_SMALL);
            if (cap) assert_int_equal(buf[0], 0);
        } else {
            RESULT_IS("fits", r, STWS_OK);
            assert_memory_equal(buf, want, need + 1);
        }
        free(buf);
    }
    p_free(&p);
}

/* stws_json_string_at copies the runs between escapes whole: runs of every
   length from none to long, before, between and after escapes of every
   kind, at every capacity, on both kinds of document. */
static void reader_unescape_runs(void **state) {
    static const struct {
        const char *esc, *out;
    } escs[] = {{"\\n", "\n"}, {"\\\"", "\""}, {"\\\\", "\\"}, {"\\/", "/"}, {"\\u00e9", "\xc3\xa9"},
                {"\\ud83d\\ude00", "\xf0\x9f\x98\x80"}, {"\\t", "\t"}, {"\\u0000", "\0"}};
    static const size_t runs[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 33, 130};
    unsigned e, r1, r2;
    (void)state;
    for (e = 0; e < sizeof escs / sizeof escs[0]; e++)
        for (r1 = 0; r1 < sizeof runs / sizeof runs[0]; r1++)
            for (r2 = 0; r2 < sizeof runs / sizeof runs[0]; r2 += 3) {
                char text[800], want[400];
                size_t t = 0, w = 0, k, cap, elen = strlen(escs[e].esc);
                size_t olen = escs[e].out[0] ? strlen(escs[e].out) : 1;
                parsed p;
                stws_json_tokens lz;
                stws_json_doc ld;
                t += (size_t)sprintf(text, "{\"s\":\"");
                for (k = 0; k < runs[r1]; k++) text[t++] = want[w++] = (char)('a' + k % 26);
                memcpy(text + t, escs[e].esc, elen);
                t += elen;
                memcpy(want + w, escs[e].out, olen);
                w += olen;
                for (k = 0; k < runs[r2]; k++) text[t++] = want[w++] = (char)('A' + k % 26);
                memcpy(text + t, escs[e].esc, elen); /* a second escape ends the string */
                t += elen;
                memcpy(want + w, escs[e].out, olen);
                w += olen;
                t += (size_t)sprintf(text + t, "\"}");
                p_init(&p);
                assert_int_equal(p_parse_n(&p, text, t, 64), STWS_OK);
                memset(&lz, 0, sizeof lz);
                assert_int_equal(stws__json_event_parse(text, t, 0, &lz, 0, 64, &ld, NULL), STWS_ERR_EVENT_SHAPE);
                for (cap = 0; cap <= w + 1; cap++) {
                    const stws_json_doc *docs[2];
                    int d;
                    docs[0] = &p.doc;
                    docs[1] = &ld;
                    for (d = 0; d < 2; d++) {
                        char buf[400];
                        size_t len = 0;
                        stws_result r;
                        memset(buf, 'x', sizeof buf);
                        r = stws_json_string_at(docs[d], "s", cap ? buf : NULL, cap, &len);
                        assert_int_equal(len, w);
                        assert_int_equal((unsigned char)buf[cap], 'x'); /* nothing past cap */
                        if (cap <= w) {
                            RESULT_IS("too small", r, STWS_ERR_BUFFER_TOO_SMALL);
                            if (cap) assert_int_equal(buf[0], 0);
                        } else {
                            RESULT_IS("fits", r, STWS_OK);
                            assert_memory_equal(buf, want, w);
                            assert_int_equal(buf[w], 0);
                        }
                    }
                }
                p_free(&p);
            }
}

static void reader_escaped_keys(void **state) {
    parsed p;
    (void)state;
    p_init(&p);
    assert_int_equal(p_parse(&p, "{\"a\\u0062\":1,\"ab\":2,\"q\\\"k\":3,\"sp ace\":4,\"\xc3\xa9\":5,\"\":6}"),
                     STWS_OK);
    /* keys match their raw text, escapes and all */
    want_int(&p.doc, "a\\u0062", 1);
    want_int(&p.doc, "ab", 2);
    want_int(&p.doc, "q\\\"k", 3);
    want_int(&p.doc, "sp ace", 4);
    want_int(&p.doc, "\xc3\xa9", 5);
    want_missing(&p.doc, "q\"k");
    want_missing(&p.doc, "a\\u0063");
    p_free(&p);
    /* duplicate keys: the first wins */
    p_init(&p);
    assert_int_equal(p_parse(&p, "{\"k\":1,\"k\":2,\"o\":{\"k\":3}}"), STWS_OK);
    want_int(&p.doc, "k", 1);
    want_int(&p.doc, "o.k", 3);
    p_free(&p);
}

/* ---- reader: parsing ---------------------------------------------------------------- */

static void reader_malformed(void **state) {
    static const char *const bad[] = {
        "",
        " \n\t ",
        "{\"type\":\"x\"}x",
        "{\"type\":\"x\"}{}",
        "{\"type\":\"x\"},",
        "{\"type\":\"x\"} 1",
        "{\"type\":\"x\"}]",
        "{'type':'x'}",
        "{\"type\":'x'}",
        "{type:\"x\"}",
        "{\"type\":\"x\",next:1}",
        "{\"n\":NaN}",
        "{\"n\":Infinity}",
        "{\"n\":-Infinity}",
        "{\"n\":nan}",
        "[1 2]",
        "{\"a\" \"b\"}",
        "{\"a\":1 \"b\":2}",
        "{\"a\":1,}",
        "[1,]",
        "[,1]",
        "{,}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\"::1}",
        "{\"a\":1:2}",
        "[1:2]",
        "{1:2}",
        "{\"a\":tru}",
        "{\"a\":truex}",
        "{\"a\":nul}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.1}",
        "{\"a\":+1}",
        "{\"a\":0x10}",
        "{\"a\":1e}",
        "{\"a\":--1}",
        "{\"a\":-}",
        "{\"a\":\"tab\there\"}",
        "{\"a\":\"new\nline\"}",
        "{\"a\":\"\\x41\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\u12g4\"}",
        "{\"a\":\"\\\"}",
        "}",
        "]",
        "[}",
        "{]",
        "[[]",
        "[]]",
        "{\"a\":{\"b\":1}",
        "{\"a\":[1,2}",
        "/* c */ {}",
        "{} // c",
        "\xef\xbb\xbf{}", /* a BOM is not JSON text (RFC 8259 §8.1 lets us refuse it) */
        "1 2",
        "\"a\" \"b\"",
        "truefalse",
        "tru",
    };
    unsigned i;
    size_t n;
    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        parsed p;
        p_init(&p);
        RESULT_IS(bad[i], p_parse(&p, bad[i]), STWS_ERR_JSON);
        assert_int_equal(p.tk.count, 0);
        want_missing(&p.doc, "");
        p_free(&p);
    }
    /* a NUL inside the text */
    {
        static const char nul[] = "{\"type\":\"x\"}\0";
        static const char nul2[] = "{\"type\":\"x\0\"}";
        parsed p;
        p_init(&p);
        RESULT_IS("trailing NUL", p_parse_n(&p, nul, sizeof nul - 1, 64), STWS_ERR_JSON);
        RESULT_IS("NUL in string", p_parse_n(&p, nul2, sizeof nul2 - 1, 64), STWS_ERR_JSON);
        p_free(&p);
    }
    /* every proper prefix of real events is truncated JSON */
    for (n = 0; n < sizeof CONNECTION_ERROR - 1; n++) {
        parsed p;
        p_init(&p);
        if (p_parse_n(&p, CONNECTION_ERROR, n, 65536) != STWS_ERR_JSON)
            fail_msg("prefix of %zu bytes accepted", n);
        p_free(&p);
    }
    for (n = 0; n < sizeof MESSAGE_NEW - 1; n++) {
        parsed p;
        stws_result r;
        p_init(&p);
        r = p_parse_n(&p, MESSAGE_NEW, n, 65536);
        /* MESSAGE_NEW ends in "}\n": without the newline it is complete */
        if (r != (n == sizeof MESSAGE_NEW - 2 ? STWS_OK : STWS_ERR_JSON))
            fail_msg("prefix of %zu bytes: %s", n, stws_result_string(r));
        p_free(&p);
    }
    /* invalid UTF-8 is refused before tokenizing */
    {
        parsed p;
        p_init(&p);
        RESULT_IS("invalid UTF-8", p_parse(&p, "{\"type\":\"\xc3\x28\"}"), STWS_ERR_INVALID_UTF8);
        RESULT_IS("surrogate in UTF-8", p_parse(&p, "{\"type\":\"\xed\xa0\x80\"}"), STWS_ERR_INVALID_UTF8);
        p_free(&p);
    }
}

static void reader_valid_oddities(void **state) {
    static const struct {
        const char *json;
        stws_json_type type;
        const char *raw;
    } table[] = {
        {"42", STWS_JSON_NUMBER, "42"},
        {" -0.5e+10 ", STWS_JSON_NUMBER, "-0.5e+10"},
        {"true", STWS_JSON_BOOL, "true"},
        {"false\n", STWS_JSON_BOOL, "false"},
        {"null", STWS_JSON_NULL, "null"},
        {"\"str\"", STWS_JSON_STRING, "str"},
        {" [ ] ", STWS_JSON_ARRAY, "[ ]"},
        {"{}", STWS_JSON_OBJECT, "{}"},
        {"{\"\":\"\"}", STWS_JSON_OBJECT, "{\"\":\"\"}"},
        {"\r\n\t{ \"a\" : [ 1 , { } ] }\r\n\t", STWS_JSON_OBJECT, "{ \"a\" : [ 1 , { } ] }"},
        {"0", STWS_JSON_NUMBER, "0"},
        {"-0", STWS_JSON_NUMBER, "-0"},
        {"1E400", STWS_JSON_NUMBER, "1E400"},
    };
    unsigned i;
    (void)state;
    for (i = 0; i < sizeof table / sizeof table[0]; i++) {
        parsed p;
        p_init(&p);
        RESULT_IS(table[i].json, p_parse(&p, table[i].json), STWS_OK);
        want_type(&p.doc, "", table[i].type, table[i].raw);
        p_free(&p);
    }
    /* nesting: 512 levels parse, 513 are refused before jsmn sees them */
    {
        char deep[2 * 513 + 1];
        parsed p;
        int d;
        for (d = 512; d <= 513; d++) {
            memset(deep, '[', (size_t)d);
            memset(deep + d, ']', (size_t)d);
            p_init(&p);
            RESULT_IS("deep", p_parse_n(&p, deep, 2 * (size_t)d, 65536),
                      d == 512 ? STWS_OK : STWS_ERR_JSON_TOO_BIG);
            if (d == 512) want_type(&p.doc, "[0][0][0]", STWS_JSON_ARRAY, NULL);
            p_free(&p);
        }
    }
}

static void reader_shape(void **state) {
    static const char *const not_events[] = {
        "[{\"type\":\"x\"}]",
        "{}",
        "{\"type\":1}",
        "{\"type\":null}",
        "{\"type\":true}",
        "{\"type\":{\"name\":\"x\"}}",
        "{\"type\":[\"x\"]}",
        "\"type\"",
        "42",
        "{\"a\":{\"type\":\"x\"}}",
        "{\"kind\":\"type\",\"x\":\"type\"}",
        "{\"Type\":\"x\"}",
        "{\"typ\\u0065\":\"x\"}",
        "[\"type\",\"x\"]",
    };
    unsigned i;
    stws_str t;
    parsed p;
    (void)state;
    for (i = 0; i < sizeof not_events / sizeof not_events[0]; i++) {
        p_init(&p);
        RESULT_IS(not_events[i], p_parse(&p, not_events[i]), STWS_OK);
        t.ptr = "junk";
        t.len = 4;
        RESULT_IS(not_events[i], stws__json_event_type(&p.doc, &t), STWS_ERR_EVENT_SHAPE);
        assert_null(t.ptr);
        assert_int_equal(t.len, 0);
        p_free(&p);
    }
    p_init(&p);
    assert_int_equal(p_parse(&p, "{\"created_at\":\"t\",\"x\":{\"type\":\"inner\"},\"type\":\"health.check\"}"),
                     STWS_OK);
    assert_int_equal(stws__json_event_type(&p.doc, &t), STWS_OK);
    assert_int_equal(t.len, 12);
    assert_memory_equal(t.ptr, "health.check", 12);
    /* the view is raw: escapes stay */
    assert_int_equal(p_parse(&p, "{\"type\":\"a\\\"b\"}"), STWS_OK);
    assert_int_equal(stws__json_event_type(&p.doc, &t), STWS_OK);
    assert_int_equal(t.len, 4);
    assert_memory_equal(t.ptr, "a\\\"b", 4);
    /* a failed parse leaves no document */
    assert_int_equal(p_parse(&p, "{\"type\":\"x\""), STWS_ERR_JSON);
    assert_int_equal(stws__json_event_type(&p.doc, &t), STWS_ERR_EVENT_SHAPE);
    assert_int_equal(stws__json_event_type(NULL, &t), STWS_ERR_EVENT_SHAPE);
    p_free(&p);
}

/* A connection.ok of about `bytes` bytes: a `me` with many custom fields. */
T_FN char *big_event(size_t bytes, int variant, int *fields) {
    char *s = (char *)malloc(bytes + 4096);
    size_t n = 0;
    int i = 0;
    assert_non_null(s);
    n += (size_t)sprintf(s + n, "{\"type\":\"connection.ok\",\"connection_id\":\"c-%d\",\"me\":{\"id\":\"alice\","
                                "\"custom\":{", variant);
    while (n < bytes) {
        n += (size_t)sprintf(s + n, "%s\"field_%05d\":{\"v\":\"value %d of variant %d \\u00e9\",\"n\":%d,\"l\":[%d,true,null]}",
                             i ? "," : "", i, i, variant, i * 7 + variant, i);
        i++;
    }
    n += (size_t)sprintf(s + n, "},\"online\":true,\"last\":\"end-%d\"}}", variant);
    s[n] = 0;
    *fields = i;
    return s;
}

static void reader_huge_event(void **state) {
    parsed p;
    int fields, fields2, i, tokens;
    char *a = big_event(100 * 1024, 1, &fields);
    char *b = big_event(100 * 1024, 2, &fields2);
    char path[64];
    (void)state;
    assert_int_equal(fields, fields2);
    p_init(&p);
    /* first parse: the tokens are counted first, so the array is allocated
       once, at the power of two from 64 that holds them */
    assert_int_equal(p_parse(&p, a), STWS_OK);
    tokens = p.tk.count;
    assert_true(tokens > 10000);
    assert_true(p.tk.cap >= tokens && p.tk.cap / 2 < tokens);
    assert_true(p.tk.cap % 64 == 0 && ((p.tk.cap / 64) & (p.tk.cap / 64 - 1)) == 0); /* 64 * 2^k */
    assert_int_equal(p.cnt.allocs, 1);
    assert_int_equal(p.cnt.live, 1);
    want_string(&p.doc, "me.id", "alice");
    want_string(&p.doc, "me.last", "end-1");
    want_bool(&p.doc, "me.online", 1);
    snprintf(path, sizeof path, "me.custom.field_%05d.n", fields - 1);
    want_int(&p.doc, path, (fields - 1) * 7 + 1);
    snprintf(path, sizeof path, "me.custom.field_%05d.l[0]", fields / 2);
    want_int(&p.doc, path, fields / 2);
    snprintf(path, sizeof path, "me.custom.field_%05d.v", 123);
    want_string(&p.doc, path, "value 123 of variant 1 \xc3\xa9");
    /* the same size again, and another event of that size: no allocation */
    p.cnt.allocs = 0;
    for (i = 0; i < 3; i++) {
        assert_int_equal(p_parse(&p, i == 1 ? b : a), STWS_OK);
        assert_int_equal(p.tk.count, tokens);
    }
    want_string(&p.doc, "me.last", "end-1");
    assert_int_equal(p_parse(&p, CONNECTION_OK), STWS_OK);
    assert_int_equal(p_parse(&p, b), STWS_OK);
    want_string(&p.doc, "me.last", "end-2");
    assert_int_equal(p.cnt.allocs, 0);
    p_free(&p);

    /* max_tokens: exactly enough works, one fewer is too big */
    p_init(&p);
    assert_int_equal(p_parse_n(&p, a, strlen(a), tokens), STWS_OK);
    assert_int_equal(p.tk.cap, tokens);
    assert_true(p.cnt.last_size == (size_t)tokens * sizeof(jsmntok_t));
    p_free(&p);
    p_init(&p);
    assert_int_equal(p_parse_n(&p, a, strlen(a), tokens - 1), STWS_ERR_JSON_TOO_BIG);
    assert_true(p.tk.cap <= tokens - 1);
    assert_int_equal(p.tk.count, 0);
    want_missing(&p.doc, "type");
    /* a small limit with a big array left from before: the limit wins */
    assert_int_equal(p_parse_n(&p, a, strlen(a), 100), STWS_ERR_JSON_TOO_BIG);
    assert_int_equal(p_parse_n(&p, CONNECTION_OK, strlen(CONNECTION_OK), 1000), STWS_OK);
    assert_int_equal(p_parse_n(&p, CONNECTION_OK, strlen(CONNECTION_OK), 10), STWS_ERR_JSON_TOO_BIG);
    p_free(&p);
    free(a);
    free(b);
}

/* ---- reader: the Stream client's lazy per-message path -------------------------- */

/* stws__json_event_parse() must answer exactly what the eager parse followed
   by the shape check answers, never tokenize or allocate, and its look-ups
   (walks of the text) must find what the eager document's tokens find. */
static void reader_lazy_event(void **state) {
    static const char *const texts[] = {
        ("{\"type\":\"message.new\",\"cid\":\"messaging:general\",\"message\":{\"id\":\"m-1\",\"text\":\"hi \\\"you\\\" \xc3\xa9\","
         "\"user\":{\"id\":\"bob\",\"name\":\"Bob\"},\"mentioned\":[{\"id\":\"a\"},{\"id\":\"b\"}],\"n\":-42,\"ok\":true,\"x\":null}}"),
        "{\"created_at\":\"t\",\"x\":{\"type\":\"inner\"},\"type\":\"health.check\"}",
        " \t\r\n{ \"type\" : \"spaced\" , \"a\" : [ 1 , { } , [ ] ] } \n",
        "{\"type\":\"a\\\"b\"}",
        "{\"type\":\"first\",\"type\":\"second\"}",
        "{\"type\":5,\"type\":\"second\"}",
        "{\"type\":{\"type\":\"x\"}}",
        "{\"typ\\u0065\":\"x\"}",
        "{\"Type\":\"x\"}",
        "{\"a\":{\"type\":\"x\"}}",
        "[{\"type\":\"x\"}]",
        "\"type\"",
        "42",
        "-0.5e+3",
        "true",
        "null",
        "{}",
        "[]",
        "{\"type\":\"x\",\"long\":\"0123456789abcdef0123456789abcdef\\n0123456789abcdef\\u00e9xyz\"}",
        /* malformed: jsmn (strict) takes most of these, the grammar does not */
        "",
        "  ",
        "{\"type\":\"message.new\"",
        "{\"type\":\"x\"} trailing",
        "{\"type\":\"x\",}",
        "{\"type\":\"x\",\"a\":[1 2]}",
        "{\"type\":\"x\" \"b\":1}",
        "{\"type\":\"x\",\"a\":[1,]}",
        "{\"type\":\"x\",\"a\":tru}",
        "{\"type\":\"x\",\"a\":01}",
        "{\"type\":\"x\",\"a\":\"tab\there\"}",
        "{\"type\":\"x\",\"a\":\"\\x41\"}",
        "{\"type\":\"x\",\"a\":\"\\u12g4\"}",
        "{\"type\":\"x\",\"a\":{\"b\":1}",
        "{\"type\":\"x\"}]",
        "{\"type\":\"unterminated",
        "{\"type\":\"0123456789abcdef0123456789",
        "[1,2,3",
        "{\"type\":\"x\",\"a\":[1,2,3]}x",
    };
    static const int limits[] = {65536, 12, 5, 4, 3, 1};
    static const char *const paths[] = {"", "type", "message.user.name", "message.mentioned[1].id",
                                        "message.mentioned.0.id", "message.n", "message.ok",
                                        "message.x", "message.text", "a", "a[0]", "a.2", "x.type",
                                        "[0].type", "long", "nothing", "type.type"};
    unsigned i, j, k;
    (void)state;
    for (i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        for (j = 0; j < sizeof limits / sizeof limits[0]; j++) {
            const char *text = texts[i];
            size_t len = strlen(text);
            parsed p;
            stws_json_tokens lz;
            stws_json_doc doc, copy;
            stws_str et = {NULL, 0}, lt;
            stws_result want, got;
            char label[160];
            snprintf(label, sizeof label, "text %u, max_tokens %d", i, limits[j]);
            p_init(&p);
            memset(&lz, 0x5A, sizeof lz); /* the parse must set every field it reads */
            want = p_parse_n(&p, text, len, limits[j]);
            if (want == STWS_OK) want = stws__json_event_type(&p.doc, &et);
            got = stws__json_event_parse(text, len, 0, &lz, 0, limits[j], &doc, &lt);
            RESULT_IS(label, got, want);
            LABELED(label, doc.text == text && doc.len == len && lz.count == 0);
            if (got == STWS_OK) {
                LABELED(label, lt.ptr == et.ptr && lt.len == et.len);
            } else {
                LABELED(label, lt.ptr == NULL && lt.len == 0);
            }
            if (p.tk.count == 0) {
                /* not JSON: not lazy, nothing found */
                LABELED(label, doc.internal != &lz && lz.text_ == NULL);
                want_missing(&doc, "");
                p_free(&p);
                continue;
            }
            /* valid JSON (an event or not): lazy, its text recorded */
            LABELED(label, doc.internal == &lz && lz.text_ == text && lz.len_ == len);
            copy = doc;
            for (k = 0; k < sizeof paths / sizeof paths[0]; k++) {
                stws_str ev, lv;
                stws_json_type et2 = stws_json_find(&p.doc, paths[k], &ev);
                stws_json_type lt2 = stws_json_find(k & 1 ? &copy : &doc, paths[k], &lv);
                if (et2 != lt2 || ev.ptr != lv.ptr || ev.len != lv.len)
                    fail_msg("%s: find(%s) differs from the eager document", label, paths[k]);
                twin_same(&p.doc, paths[k]); /* and the typed look-ups */
            }
            if (text[0] == '"') want_string(&doc, "", "type");
            p_free(&p);
        }
    }
}

/* A lazy document of text (valid JSON), in lz. */
T_FN stws_json_doc lazy_doc(const char *text, stws_json_tokens *lz) {
    stws_json_doc d;
    stws_result r;
    memset(lz, 0, sizeof *lz);
    r = stws__json_event_parse(text, strlen(text), 0, lz, 0, 65536, &d, NULL);
    if ((r != STWS_OK && r != STWS_ERR_EVENT_SHAPE) || d.internal != lz) fail_msg("lazy_doc: %s", stws_result_string(r));
    return d;
}

typedef struct walk_case {
    const char *path;
    stws_json_type type;
    const char *raw; /* the view; NULL: not compared */
} walk_case;

/* Each case on the lazy document (a walk of the text) and on the token
   document (want_type compares the two as well). */
T_FN void walk_cases(const char *text, const walk_case *c, size_t n) {
    parsed p;
    stws_json_tokens lz;
    stws_json_doc ld = lazy_doc(text, &lz);
    size_t i;
    p_init(&p);
    assert_int_equal(p_parse(&p, text), STWS_OK);
    for (i = 0; i < n; i++) {
        want_type(&ld, c[i].path, c[i].type, c[i].raw);
        want_type(&p.doc, c[i].path, c[i].type, c[i].raw);
    }
    p_free(&p);
}

/* Look-ups on a lazy document walk the text: every path form (keys, ".N",
   "[N]", escaped keys, duplicates, deep nesting, missing paths, type
   mismatches, bad syntax), values the walk must skip whole (strings holding
   brackets, quotes and backslashes, nested containers), whitespace
   everywhere. */
static void reader_walk_paths(void **state) {
    static const char text[] =
        " \t{\"type\" : \"walk\" ,\n"
        "  \"s\":\"a \\\"quoted\\\" ] } [ { \\\\\",\r\n"
        "  \"skip\" : { \"x\" : \"}}]]\" , \"y\" : [ {\"z\":\"{[\"} , [ ] , { } ] , \"w\" : \"\\\\\\\\\" } ,\n"
        "  \"arr\":[ 10 , \"two\" , [ 3 , [ 4 ] ] , { \"five\" : 5 } , true , null , -1.5e3 , \"\" ],\n"
        "  \"dup\":1,\"dup\":2,\n"
        "  \"d\":{\"dup\":{\"k\":\"first\"},\"dup\":{\"k\":\"second\"}},\n"
        "  \"a\\u0062\":\"escaped key\",\"ab\":\"plain key\",\n"
        "  \"q\\\"k\":\"quote in key\",\"b\\\\k\":\"backslash in key\",\"br]k\":\"bracket in key\",\n"
        "  \"0\":\"zero key\",\"007\":\"digits key\",\"1234567890\":\"ten digits\",\n"
        "  \"nums\":[0,1,2,3,4,5,6,7,8,9,10,11],\n"
        "  \"e\":{},\"ea\":[],\"t\":true,\"f\":false,\"n\":null,\"\":\"empty key\",\n"
        "  \"deep\":[[[[[[[[[[{\"x\":[[[[[\"bottom\"]]]]]}]]]]]]]]]],\n"
        "  \"last\" : 7 }\n ";
    static const walk_case cases[] = {
        {"type", STWS_JSON_STRING, "walk"},
        {"s", STWS_JSON_STRING, "a \\\"quoted\\\" ] } [ { \\\\"},
        {"skip", STWS_JSON_OBJECT, NULL},
        {"skip.x", STWS_JSON_STRING, "}}]]"},
        {"skip.y[0].z", STWS_JSON_STRING, "{["},
        {"skip.y.1", STWS_JSON_ARRAY, "[ ]"},
        {"skip.y.2", STWS_JSON_OBJECT, "{ }"},
        {"skip.w", STWS_JSON_STRING, "\\\\\\\\"},
        {"arr", STWS_JSON_ARRAY, "[ 10 , \"two\" , [ 3 , [ 4 ] ] , { \"five\" : 5 } , true , null , -1.5e3 , \"\" ]"},
        {"arr.0", STWS_JSON_NUMBER, "10"},
        {"arr[0]", STWS_JSON_NUMBER, "10"},
        {"arr.00", STWS_JSON_NUMBER, "10"},
        {"arr[000001]", STWS_JSON_STRING, "two"},
        {"arr.2", STWS_JSON_ARRAY, "[ 3 , [ 4 ] ]"},
        {"arr.2.1.0", STWS_JSON_NUMBER, "4"},
        {"arr[2][1][0]", STWS_JSON_NUMBER, "4"},
        {"arr[2].1[0]", STWS_JSON_NUMBER, "4"},
        {"arr[3].five", STWS_JSON_NUMBER, "5"},
        {"arr.4", STWS_JSON_BOOL, "true"},
        {"arr.5", STWS_JSON_NULL, "null"},
        {"arr.6", STWS_JSON_NUMBER, "-1.5e3"},
        {"arr.7", STWS_JSON_STRING, ""},
        {"dup", STWS_JSON_NUMBER, "1"},
        {"d.dup.k", STWS_JSON_STRING, "first"},
        {"a\\u0062", STWS_JSON_STRING, "escaped key"},
        {"ab", STWS_JSON_STRING, "plain key"},
        {"q\\\"k", STWS_JSON_STRING, "quote in key"},
        {"b\\\\k", STWS_JSON_STRING, "backslash in key"},
        {"br]k", STWS_JSON_STRING, "bracket in key"},
        {"0", STWS_JSON_STRING, "zero key"},
        {"007", STWS_JSON_STRING, "digits key"},
        {"1234567890", STWS_JSON_STRING, "ten digits"},
        {"nums.11", STWS_JSON_NUMBER, "11"},
        {"nums[11]", STWS_JSON_NUMBER, "11"},
        {"nums.000000011", STWS_JSON_NUMBER, "11"},
        {"nums[0000000000000000000011]", STWS_JSON_NUMBER, "11"},
        {"e", STWS_JSON_OBJECT, "{}"},
        {"ea", STWS_JSON_ARRAY, "[]"},
        {"t", STWS_JSON_BOOL, "true"},
        {"f", STWS_JSON_BOOL, "false"},
        {"n", STWS_JSON_NULL, "null"},
        {"deep.0.0.0.0.0.0.0.0.0.0.x.0.0.0.0.0", STWS_JSON_STRING, "bottom"},
        {"deep[0][0][0][0][0][0][0][0][0][0].x[0][0][0][0][0]", STWS_JSON_STRING, "bottom"},
        {"deep.0.0.0.0.0.0.0.0.0.0.x.0.0.0.0", STWS_JSON_ARRAY, "[\"bottom\"]"},
        {"last", STWS_JSON_NUMBER, "7"},
        /* missing */
        {"nothing", STWS_JSON_NONE, NULL},
        {"arr.8", STWS_JSON_NONE, NULL},
        {"arr[8]", STWS_JSON_NONE, NULL},
        {"nums.012", STWS_JSON_NONE, NULL},
        {"nums.0000000011", STWS_JSON_NONE, NULL}, /* 10 digits: not an index */
        {"arr.1234567890", STWS_JSON_NONE, NULL},
        {"arr[2147483647]", STWS_JSON_NONE, NULL},
        {"arr[4294967296]", STWS_JSON_NONE, NULL},
        {"arr[99999999999999999999]", STWS_JSON_NONE, NULL},
        {"e.x", STWS_JSON_NONE, NULL},
        {"e.0", STWS_JSON_NONE, NULL},
        {"ea.0", STWS_JSON_NONE, NULL},
        {"ea[0]", STWS_JSON_NONE, NULL},
        {"skip.y[3]", STWS_JSON_NONE, NULL},
        {"d.dup.x", STWS_JSON_NONE, NULL},
        {"deep.0.0.0.0.0.0.0.0.0.0.x.0.0.0.0.0.0", STWS_JSON_NONE, NULL},
        {"aB", STWS_JSON_NONE, NULL},
        {"a", STWS_JSON_NONE, NULL},
        {"typ", STWS_JSON_NONE, NULL},
        {"types", STWS_JSON_NONE, NULL},
        /* type mismatches */
        {"type.x", STWS_JSON_NONE, NULL},
        {"type[0]", STWS_JSON_NONE, NULL},
        {"type.0", STWS_JSON_NONE, NULL},
        {"t.x", STWS_JSON_NONE, NULL},
        {"n[0]", STWS_JSON_NONE, NULL},
        {"last.0", STWS_JSON_NONE, NULL},
        {"arr.3.five.x", STWS_JSON_NONE, NULL},
        {"arr.x", STWS_JSON_NONE, NULL},
        {"skip[0]", STWS_JSON_NONE, NULL},
        {"[0]", STWS_JSON_NONE, NULL},
        /* bad syntax */
        {"arr[0]x", STWS_JSON_NONE, NULL},
        {"arr[0", STWS_JSON_NONE, NULL},
        {"arr[]", STWS_JSON_NONE, NULL},
        {"arr[-1]", STWS_JSON_NONE, NULL},
        {"arr[ 0]", STWS_JSON_NONE, NULL},
        {"arr.[0]", STWS_JSON_NONE, NULL},
        {"arr..0", STWS_JSON_NONE, NULL},
        {".arr", STWS_JSON_NONE, NULL},
        {"arr.", STWS_JSON_NONE, NULL},
        {".", STWS_JSON_NONE, NULL},
        {"[", STWS_JSON_NONE, NULL},
        {"arr[0]]", STWS_JSON_NONE, NULL},
    };
    static const walk_case top_array[] = {
        {"", STWS_JSON_ARRAY, "[ {\"a\":1} , [2] , \"x\" ]"},
        {"[0].a", STWS_JSON_NUMBER, "1"},
        {"0.a", STWS_JSON_NUMBER, "1"},
        {"[1][0]", STWS_JSON_NUMBER, "2"},
        {"1.0", STWS_JSON_NUMBER, "2"},
        {"1[0]", STWS_JSON_NUMBER, "2"},
        {"2", STWS_JSON_STRING, "x"},
        {"[3]", STWS_JSON_NONE, NULL},
        {"a", STWS_JSON_NONE, NULL},
        {"[0].a.b", STWS_JSON_NONE, NULL},
    };
    static const walk_case top_number[] = {
        {"", STWS_JSON_NUMBER, "-0.5e+3"}, {"x", STWS_JSON_NONE, NULL}, {"0", STWS_JSON_NONE, NULL},
        {"[0]", STWS_JSON_NONE, NULL},
    };
    static const walk_case top_string[] = {
        {"", STWS_JSON_STRING, "s\\\"t"}, {"s", STWS_JSON_NONE, NULL}, {"[0]", STWS_JSON_NONE, NULL},
    };
    static const walk_case top_literal[] = {{"", STWS_JSON_BOOL, "false"}, {"f", STWS_JSON_NONE, NULL}};
    stws_json_tokens lz;
    stws_json_doc ld;
    char buf[64];
    size_t len;
    int64_t iv = 5;
    int bv = 5;
    (void)state;
    walk_cases(text, cases, sizeof cases / sizeof cases[0]);
    walk_cases(" [ {\"a\":1} , [2] , \"x\" ] ", top_array, sizeof top_array / sizeof top_array[0]);
    walk_cases("-0.5e+3", top_number, sizeof top_number / sizeof top_number[0]);
    walk_cases(" \"s\\\"t\"\n", top_string, sizeof top_string / sizeof top_string[0]);
    walk_cases("false", top_literal, sizeof top_literal / sizeof top_literal[0]);
    /* typed look-ups on the walk */
    ld = lazy_doc(text, &lz);
    want_string(&ld, "s", "a \"quoted\" ] } [ { \\");
    want_string(&ld, "skip.w", "\\\\");
    want_string(&ld, "a\\u0062", "escaped key");
    want_string(&ld, "arr.7", "");
    want_int(&ld, "arr[0]", 10);
    want_int(&ld, "nums.11", 11);
    want_int(&ld, "last", 7);
    want_bool(&ld, "t", 1);
    want_bool(&ld, "f", 0);
    want_bool(&ld, "arr.4", 1);
    RESULT_IS("int of fraction", stws_json_int_at(&ld, "arr.6", &iv), STWS_ERR_JSON_TYPE);
    RESULT_IS("int of string", stws_json_int_at(&ld, "type", &iv), STWS_ERR_JSON_TYPE);
    RESULT_IS("int of null", stws_json_int_at(&ld, "n", &iv), STWS_ERR_JSON_TYPE);
    RESULT_IS("int of object", stws_json_int_at(&ld, "skip", &iv), STWS_ERR_JSON_TYPE);
    RESULT_IS("bool of null", stws_json_bool_at(&ld, "n", &bv), STWS_ERR_JSON_TYPE);
    RESULT_IS("bool of number", stws_json_bool_at(&ld, "last", &bv), STWS_ERR_JSON_TYPE);
    RESULT_IS("bool of string", stws_json_bool_at(&ld, "type", &bv), STWS_ERR_JSON_TYPE);
    RESULT_IS("string of array", stws_json_string_at(&ld, "arr", buf, sizeof buf, &len), STWS_ERR_JSON_TYPE);
    RESULT_IS("string of number", stws_json_string_at(&ld, "last", buf, sizeof buf, &len), STWS_ERR_JSON_TYPE);
    RESULT_IS("string too small", stws_json_string_at(&ld, "type", buf, 4, &len), STWS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(len, 4);
    assert_int_equal(iv, 5);
    assert_int_equal(bv, 5);
    {
        stws_str t;
        assert_int_equal(stws__json_event_type(&ld, &t), STWS_OK);
        assert_int_equal(t.len, 4);
        assert_memory_equal(t.ptr, "walk", 4);
    }
}

/* The walk never leaves the text, and ends, whatever the text: it is only
   used on text the pass proved valid, but a document is a plain struct. */
static void reader_walk_any_text(void **state) {
    static const char *const texts[] = {
        "{\"a\":", "{\"a\"", "{\"a", "{\"", "{", "[", "[1,", "[1", "\"", "\"\\", "\"\\u12",
        "{\"a\":\"\\", "{\"a\":[1,[2,{\"b\":\"x", "{,:}", "[,,,]", "{\"a\"::1}", "}}}", "]]",
        "{\"a\":1,\"a\":}", "[\"]\",", "{\"a\":{\"b\":{\"c\":[[[", "{\"a\" 1}", "{\"a\":1 \"b\":2}",
        "{\"x\":\"0123456789abcdef\\\"0123456789abcdef", "tru", "-", "{\"a\":tru,\"b\":1}",
    };
    static const char *const paths[] = {"", "a", "a.b", "a.b.c", "a[0]", "[0]", "[1]", "[5]", "0",
                                        "a.0.0", "x", "b", "a[1][1].b"};
    unsigned i, j;
    (void)state;
    for (i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        size_t n = strlen(texts[i]), k;
        for (k = 0; k <= n; k++) {
            /* an exactly sized copy of every prefix: ASan sees a read past it */
            char *t = (char *)malloc(k ? k : 1);
            stws_json_tokens lz;
            stws_json_doc d;
            assert_non_null(t);
            memcpy(t, texts[i], k);
            memset(&d, 0, sizeof d);
            d.text = t;
            d.len = k;
            d.internal = &lz;
            memset(&lz, 0, sizeof lz);
            lz.text_ = t;
            lz.len_ = k; /* claims the pass saw it: it did not */
            for (j = 0; j < sizeof paths / sizeof paths[0]; j++) {
                stws_str v;
                char buf[8];
                size_t len;
                int64_t iv;
                int bv;
                if (stws_json_find(&d, paths[j], &v) != STWS_JSON_NONE)
                    assert_true(v.ptr >= t && v.ptr + v.len <= t + k);
                (void)stws_json_string_at(&d, paths[j], buf, sizeof buf, &len);
                (void)stws_json_int_at(&d, paths[j], &iv);
                (void)stws_json_bool_at(&d, paths[j], &bv);
            }
            free(t);
        }
    }
}

/* The lazy state belongs to the latest document; limits, UTF-8, memory. */
static void reader_lazy_state(void **state) {
    static const char a_text[] = "{\"type\":\"a\",\"v\":\"first\"}";
    static const char b_text[] = "{\"type\":\"b\",\"v\":\"second\",\"w\":[1,2,3]}";
    stws_json_tokens lz;
    stws_json_doc da, db;
    stws_str t;
    char deep[1100];
    int i;
    (void)state;
    memset(&lz, 0, sizeof lz);
    assert_int_equal(stws__json_event_parse(a_text, strlen(a_text), 1, &lz, 0, 64, &da, &t), STWS_OK);
    want_string(&da, "v", "first");
    /* the next message takes the state over: the old view finds nothing
       (it is past its lifetime; this only keeps it harmless) */
    assert_int_equal(stws__json_event_parse(b_text, strlen(b_text), 1, &lz, 0, 64, &db, &t), STWS_OK);
    want_missing(&da, "v");
    want_string(&db, "v", "second");
    want_int(&db, "w[2]", 3);
    want_missing(&da, "v");
    /* the same text at another address, or shorter, is another document */
    {
        char copy[sizeof b_text];
        stws_json_doc moved = db;
        memcpy(copy, b_text, sizeof b_text);
        moved.text = copy;
        want_missing(&moved, "v");
        moved = db;
        moved.len--;
        want_missing(&moved, "");
        moved = db;
        moved.text = NULL;
        want_missing(&moved, "");
    }
    /* a document pointing at the record of another text finds nothing */
    {
        parsed p;
        p_init(&p);
        assert_int_equal(p_parse(&p, a_text), STWS_OK);
        p.doc.internal = &lz;
        want_missing(&p.doc, "v");
        p_free(&p);
    }
    /* documents in turn (nothing is allocated: there is no allocator) */
    for (i = 0; i < 100; i++) {
        const char *x = i & 1 ? a_text : b_text;
        assert_int_equal(stws__json_event_parse(x, strlen(x), 0, &lz, 0, 64, &da, &t), STWS_OK);
        assert_int_equal(t.len, 1);
        assert_int_equal(t.ptr[0], i & 1 ? 'a' : 'b');
        if (i % 3 == 0) want_string(&da, "type", i & 1 ? "a" : "b");
    }
    /* exactly max_tokens is enough; one fewer is too big */
    assert_int_equal(stws__json_event_parse(b_text, strlen(b_text), 1, &lz, 0, 10, &db, &t), STWS_OK);
    assert_int_equal(stws__json_event_parse(b_text, strlen(b_text), 1, &lz, 0, 9, &db, &t),
                     STWS_ERR_JSON_TOO_BIG);
    assert_null(lz.text_);
    want_missing(&db, "v");
    /* nesting: 512 levels are fine, 513 are too deep */
    for (i = 0; i < 513; i++) deep[i] = '[';
    for (i = 0; i < 513; i++) deep[513 + i] = ']';
    assert_int_equal(stws__json_event_parse(deep + 1, 1024, 1, &lz, 0, 65536, &db, &t), STWS_ERR_EVENT_SHAPE);
    assert_int_equal(stws_json_find(&db, "[0][0][0]", NULL), STWS_JSON_ARRAY); /* valid JSON: lazy */
    assert_int_equal(stws__json_event_parse(deep, 1026, 1, &lz, 0, 65536, &db, &t), STWS_ERR_JSON_TOO_BIG);
    /* UTF-8 is checked only when the caller has not */
    assert_int_equal(stws__json_event_parse("{\"type\":\"\xc3\x28\"}", 12, 0, &lz, 0, 64, &db, &t),
                     STWS_ERR_INVALID_UTF8);
    /* a big event */
    {
        char *big = (char *)malloc(4000);
        size_t n = 0;
        assert_non_null(big);
        n += (size_t)sprintf(big, "{\"type\":\"big\",\"a\":[");
        for (i = 0; i < 600; i++) n += (size_t)sprintf(big + n, "%s%d", i ? "," : "", i % 10);
        n += (size_t)sprintf(big + n, "]}");
        assert_int_equal(stws__json_event_parse(big, n, 1, &lz, 0, 65536, &db, &t), STWS_OK);
        want_int(&db, "a[599]", 9);
        want_int(&db, "a.598", 8);
        want_missing(&db, "a[600]");
        free(big);
    }
    /* bad arguments */
    assert_int_equal(stws__json_event_parse(a_text, 3, 1, NULL, 0, 64, &db, &t), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws__json_event_parse(a_text, 3, 1, &lz, 0, 64, NULL, &t), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws__json_event_parse(a_text, 3, 1, &lz, 0, 0, &db, &t), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws__json_event_parse(NULL, 3, 1, &lz, 0, 64, &db, &t), STWS_ERR_INVALID_ARG);
}

static void reader_zero_alloc_steady(void **state) {
    parsed p;
    int i;
    (void)state;
    p_init(&p);
    assert_int_equal(p_parse(&p, MESSAGE_NEW), STWS_OK);
    assert_int_equal(p_parse(&p, CONNECTION_OK), STWS_OK);
    assert_int_equal(p_parse(&p, CONNECTION_ERROR), STWS_OK);
    assert_true(p.cnt.allocs >= 1 && p.cnt.allocs <= 2); /* 64, maybe 128 tokens */
    p.cnt.allocs = 0;
    for (i = 0; i < 100; i++) {
        assert_int_equal(p_parse(&p, i % 3 == 0 ? MESSAGE_NEW : i % 3 == 1 ? CONNECTION_OK : CONNECTION_ERROR),
                         STWS_OK);
        assert_int_equal(p_parse(&p, "{\"type\":\"health.check\",\"connection_id\":\"c\",\"custom\":{}}"),
                         STWS_OK);
        assert_int_equal(p_parse(&p, "{\"broken\""), STWS_ERR_JSON);
    }
    assert_int_equal(p.cnt.allocs, 0);
    p_free(&p);
}

static void reader_parse_args(void **state) {
    parsed p;
    stws_json_doc doc;
    stws_json_tokens tk;
    (void)state;
    p_init(&p);
    memset(&tk, 0, sizeof tk);
    assert_int_equal(stws_json_tokenize(&tk, "{}", 2, NULL), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_json_tokenize(NULL, "{}", 2, &doc), STWS_ERR_INVALID_ARG);
    want_missing(&doc, ""); /* refused: finds nothing, though the text is JSON */
    assert_int_equal(stws_json_tokenize(&tk, NULL, 2, &doc), STWS_ERR_INVALID_ARG);
    tk.cap = 5; /* a capacity without an array */
    assert_int_equal(stws_json_tokenize(&tk, "{}", 2, &doc), STWS_ERR_INVALID_ARG);
    tk.cap = 0;
    assert_int_equal(stws_json_tokenize(&tk, NULL, 0, &doc), STWS_ERR_JSON);
    assert_int_equal(stws_json_doc_init(NULL, "{}", 2), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_json_doc_init(&doc, NULL, 2), STWS_ERR_INVALID_ARG);
    assert_int_equal(stws_json_doc_init(&doc, NULL, 0), STWS_ERR_JSON);
    /* default allocator, max_tokens 0: no limit */
    assert_int_equal(stws_json_tokenize(&tk, "{\"a\":[1]}", 9, &doc), STWS_OK);
    assert_int_equal(tk.count, 4);
    assert_int_equal(tk.cap, 64);
    stws_json_tokens_free(&tk);
    assert_null(tk.tok);
    stws_json_tokens_free(&tk); /* twice is fine */
    stws_json_tokens_free(NULL);
    /* max_tokens smaller than the first block */
    tk.max_tokens = 3;
    assert_int_equal(stws_json_tokenize(&tk, "[1,2]", 5, &doc), STWS_OK);
    assert_int_equal(tk.cap, 3);
    assert_int_equal(stws_json_tokenize(&tk, "[1,2,3]", 7, &doc), STWS_ERR_JSON_TOO_BIG);
    assert_int_equal(tk.count, 0);
    assert_int_equal(stws_json_find(&doc, "", NULL), STWS_JSON_NONE); /* refused: nothing */
    tk.max_tokens = 1;
    assert_int_equal(stws_json_tokenize(&tk, "1", 1, &doc), STWS_OK);
    stws_json_tokens_free(&tk);
    /* out of memory: the error, and the old array is kept */
    p.cnt.fail_after = 0;
    RESULT_IS("no memory", p_parse(&p, "{}"), STWS_ERR_NOMEM);
    assert_null(p.tk.tok);
    p.cnt.fail_after = 1;
    assert_int_equal(p_parse(&p, "{}"), STWS_OK);
    assert_int_equal(p.tk.cap, 64);
    {
        int fields;
        char *big = big_event(8 * 1024, 0, &fields);
        RESULT_IS("no memory to grow", p_parse(&p, big), STWS_ERR_NOMEM);
        assert_int_equal(p.tk.cap, 64);
        assert_non_null(p.tk.tok);
        assert_int_equal(p_parse(&p, CONNECTION_ERROR), STWS_OK);
        want_int(&p.doc, "error.code", 40);
        free(big);
    }
    p_free(&p);
}

/* Lookups on documents that did not come from the parser stay in bounds. */
static void reader_hostile_doc(void **state) {
    static const char text[] = "{\"a\":{\"b\":[1,\"s\\u12\",true]}}";
    jsmntok_t t[8];
    stws_json_tokens rec;
    stws_json_doc doc;
    stws_json_value v, e, kk;
    stws_json_iter it;
    char buf[16];
    size_t len;
    int64_t iv;
    int bv, i, k;
    (void)state;
    for (k = 0; k < 2000; k++) {
        /* deterministic garbage tokens */
        unsigned x = 2463534242u + (unsigned)k * 2654435761u;
        for (i = 0; i < 8; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            t[i].type = (jsmntype_t)(x % 6);
            t[i].start = (int)(x >> 8) % 40 - 5;
            t[i].end = (int)(x >> 16) % 40 - 5;
            t[i].size = (int)(x % 3);
            t[i].parent = (int)((x >> 4) % 10) - 2;
        }
        memset(&rec, 0, sizeof rec);
        rec.tok = t;
        rec.count = rec.cap = 8;
        rec.text_ = text;
        rec.len_ = sizeof text - 1;
        doc.text = text;
        doc.len = sizeof text - 1;
        doc.internal = &rec;
        if (stws_json_get(&doc, "", &v) != STWS_JSON_NONE) {
            int steps = 0;
            (void)stws_json_len(&v);
            (void)stws_json_elem(&v, 1, &e);
            (void)stws_json_get_in(&v, "a.b", &e);
            if (stws_json_iter_init(&it, &v) == STWS_OK)
                while (stws_json_next(&it, &kk, &e) && steps < 100) {
                    (void)stws_json_len(&e);
                    steps++;
                }
            assert_true(steps < 100);
        }
        (void)stws_json_find(&doc, "a.b[1]", NULL);
        (void)stws_json_find(&doc, "a.b.2", NULL);
        (void)stws_json_string_at(&doc, "a", buf, sizeof buf, &len);
        (void)stws_json_string_at(&doc, "", buf, sizeof buf, &len);
        (void)stws_json_int_at(&doc, "", &iv);
        (void)stws_json_int_at(&doc, "a.b.0", &iv);
        (void)stws_json_bool_at(&doc, "a.b[2]", &bv);
        (void)stws__json_event_type(&doc, NULL);
    }
    /* a truncated escape in a string the parser never saw */
    t[0].type = JSMN_STRING;
    t[0].start = 14;
    t[0].end = 19; /* s\u12 */
    t[0].parent = -1;
    rec.count = 1;
    assert_int_equal(stws_json_string_at(&doc, "", buf, sizeof buf, &len), STWS_ERR_JSON);
    t[0].end = 16; /* s\ */
    assert_int_equal(stws_json_string_at(&doc, "", buf, sizeof buf, &len), STWS_ERR_JSON);
}

/* ---- iteration and typed values, on both kinds of document ----------------- */

/* Both documents of one text: lazy (stws_json_doc_init) and tokens. */
typedef struct twins {
    stws_json_doc lazy;
    parsed p;
} twins;

T_FN void twins_make(twins *t, const char *text, size_t len) {
    p_init(&t->p);
    RESULT_IS("doc_init", stws_json_doc_init(&t->lazy, text, len), STWS_OK);
    RESULT_IS("tokenize", p_parse_n(&t->p, text, len, 1 << 20), STWS_OK);
}

/* A canonical dump of v built only by iteration (cursors, keys, raw views):
   objects {k:v,...}, arrays [v,...], scalars as their raw text, strings
   "raw".  Also checks stws_json_len and stws_json_elem against the cursor. */
T_FN void dump(const stws_json_value *v, char *out, size_t cap, size_t *o) {
    stws_json_iter it;
    stws_json_value k, e, x;
    size_t n = 0;
#define PUT(str, l)                                                                        \
    do {                                                                                   \
        size_t l_ = (l);                                                                   \
        if (*o + l_ >= cap) fail_msg("dump too long");                                     \
        memcpy(out + *o, (str), l_);                                                       \
        *o += l_;                                                                          \
        out[*o] = 0;                                                                       \
    } while (0)
    switch (v->type) {
    case STWS_JSON_OBJECT:
    case STWS_JSON_ARRAY:
        assert_int_equal(stws_json_iter_init(&it, v), STWS_OK);
        PUT(v->type == STWS_JSON_OBJECT ? "{" : "[", 1);
        while (stws_json_next(&it, &k, &e)) {
            if (n) PUT(",", 1);
            if (v->type == STWS_JSON_OBJECT) {
                assert_int_equal(k.type, STWS_JSON_STRING);
                PUT(k.raw.ptr, k.raw.len);
                PUT(":", 1);
            } else {
                assert_int_equal(k.type, STWS_JSON_NONE);
            }
            /* element n is what the cursor gave */
            assert_int_equal(stws_json_elem(v, n, &x), e.type);
            assert_ptr_equal(x.raw.ptr, e.raw.ptr);
            assert_int_equal(x.raw.len, e.raw.len);
            dump(&e, out, cap, o);
            n++;
        }
        assert_int_equal(stws_json_next(&it, &k, &e), 0); /* stays at the end */
        assert_int_equal(e.type, STWS_JSON_NONE);
        assert_int_equal(stws_json_len(v), n);
        assert_int_equal(stws_json_elem(v, n, &x), STWS_JSON_NONE);
        PUT(v->type == STWS_JSON_OBJECT ? "}" : "]", 1);
        break;
    case STWS_JSON_STRING:
        assert_int_equal(stws_json_iter_init(&it, v), STWS_ERR_JSON_TYPE);
        assert_int_equal(stws_json_next(&it, &k, &e), 0);
        assert_int_equal(stws_json_len(v), 0);
        PUT("\"", 1);
        PUT(v->raw.ptr, v->raw.len);
        PUT("\"", 1);
        break;
    default:
        assert_int_equal(stws_json_len(v), 0);
        PUT(v->raw.ptr, v->raw.len);
        break;
    }
#undef PUT
}

/* Dump path of both twins: the same text, and (when want) the expected one. */
T_FN void twins_dump(twins *t, const char *path, const char *want) {
    static char a[1 << 16], b[1 << 16];
    stws_json_value va, vb;
    size_t oa = 0, ob = 0;
    a[0] = b[0] = 0;
    assert_int_equal(stws_json_get(&t->lazy, path, &va), stws_json_get(&t->p.doc, path, &vb));
    assert_ptr_equal(va.raw.ptr, vb.raw.ptr);
    assert_int_equal(va.raw.len, vb.raw.len);
    if (va.type == STWS_JSON_NONE) return;
    assert_null(va.internal);     /* lazy values carry a span */
    assert_non_null(vb.internal); /* token values their token */
    dump(&va, a, sizeof a, &oa);
    dump(&vb, b, sizeof b, &ob);
    if (strcmp(a, b) != 0) fail_msg("%s: lazy %s, tokens %s", path, a, b);
    if (want && strcmp(a, want) != 0) fail_msg("%s: %s, expected %s", path, a, want);
}

static void reader_iterate(void **state) {
    static const char *cases[][2] = {
        {"{}", "{}"},
        {"[]", "[]"},
        {" [ ] ", "[]"},
        {"{ }", "{}"},
        {"7", "7"},
        {"\"s\"", "\"s\""},
        {"[1,\"two\",true,null,{},[],-3.5e2]", "[1,\"two\",true,null,{},[],-3.5e2]"},
        {"{\"a\":{\"b\":[{\"c\":[[1],[2,[3]]]}]},\"d\":\"x\"}", "{a:{b:[{c:[[1],[2,[3]]]}]},d:\"x\"}"},
        {"{ \"k\" : [ 1 , 2 ] , \"l\" : { } }", "{k:[1,2],l:{}}"},
        /* escaped keys and values stay raw; \" and \\ inside do not end them */
        {"{\"a\\\"b\":1,\"c\\\\\":\"d\\\\\",\"\\u00e9\":[\"\\\"\"]}",
         "{a\\\"b:1,c\\\\:\"d\\\\\",\\u00e9:[\"\\\"\"]}"},
        /* reaction_counts: dynamic keys */
        {"{\"reaction_counts\":{\"like\":3,\"love\":1,\"\\ud83d\\ude00\":2}}",
         "{reaction_counts:{like:3,love:1,\\ud83d\\ude00:2}}"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        twins t;
        twins_make(&t, cases[i][0], strlen(cases[i][0]));
        twins_dump(&t, "", cases[i][1]);
        p_free(&t.p);
    }
    {
        /* relative paths from an iterated member, and dynamic keys */
        static const char ev[] =
            "{\"type\":\"channel.updated\",\"members\":[{\"user\":{\"id\":\"ann\"},\"role\":\"owner\"},"
            "{\"user\":{\"id\":\"bob\"}},{\"user\":{\"id\":\"c\\\"d\"},\"banned\":null}],"
            "\"message\":{\"reaction_counts\":{\"like\":3,\"wow\":12}}}";
        static const char *ids[] = {"ann", "bob", "c\"d"};
        twins t;
        int kind;
        twins_make(&t, ev, strlen(ev));
        twins_dump(&t, "members", NULL);
        for (kind = 0; kind < 2; kind++) {
            const stws_json_doc *d = kind ? &t.p.doc : &t.lazy;
            stws_json_value m, e, x, k;
            stws_json_iter it;
            char buf[16];
            size_t len, n = 0;
            int64_t iv, sum = 0;
            assert_int_equal(stws_json_get(d, "members", &m), STWS_JSON_ARRAY);
            assert_int_equal(stws_json_len(&m), 3);
            assert_int_equal(stws_json_iter_init(&it, &m), STWS_OK);
            while (stws_json_next(&it, NULL, &e)) {
                assert_int_equal(stws_json_get_in(&e, "user.id", &x), STWS_JSON_STRING);
                assert_int_equal(stws_json_value_string(&x, buf, sizeof buf, &len), STWS_OK);
                assert_string_equal(buf, ids[n]);
                assert_int_equal(len, strlen(ids[n]));
                /* absent, null, present: told apart */
                assert_int_equal(stws_json_get_in(&e, "banned", &x), n == 2 ? STWS_JSON_NULL : STWS_JSON_NONE);
                assert_int_equal(stws_json_value_string(&x, buf, sizeof buf, &len),
                                 n == 2 ? STWS_ERR_JSON_TYPE : STWS_ERR_JSON_PATH);
                n++;
            }
            assert_int_equal(n, 3);
            assert_int_equal(stws_json_get_in(&m, "[1].user.id", &x), STWS_JSON_STRING);
            assert_int_equal(x.raw.len, 3);
            assert_int_equal(stws_json_get_in(&m, "5", &x), STWS_JSON_NONE);
            assert_int_equal(stws_json_get_in(&m, "", &x), STWS_JSON_ARRAY); /* itself */
            assert_int_equal(stws_json_get_in(&m, "", &m), STWS_JSON_ARRAY); /* in place */
            assert_int_equal(stws_json_get_in(NULL, "", &x), STWS_JSON_NONE);
            /* dynamic keys */
            assert_int_equal(stws_json_get(d, "message.reaction_counts", &m), STWS_JSON_OBJECT);
            assert_int_equal(stws_json_iter_init(&it, &m), STWS_OK);
            n = 0;
            while (stws_json_next(&it, &k, &e)) {
                assert_int_equal(stws_json_value_int(&e, &iv), STWS_OK);
                sum += iv;
                assert_true(k.raw.len == 4 || k.raw.len == 3);
                n++;
            }
            assert_int_equal(n, 2);
            assert_int_equal(sum, 15);
            assert_int_equal(stws_json_elem(&m, 1, &e), STWS_JSON_NUMBER);
            assert_int_equal(stws_json_value_int(&e, &iv), STWS_OK);
            assert_int_equal(iv, 12);
            /* not containers */
            assert_int_equal(stws_json_get(d, "type", &x), STWS_JSON_STRING);
            assert_int_equal(stws_json_iter_init(&it, &x), STWS_ERR_JSON_TYPE);
            assert_int_equal(stws_json_iter_init(&it, NULL), STWS_ERR_JSON_TYPE);
            assert_int_equal(stws_json_iter_init(NULL, &m), STWS_ERR_INVALID_ARG);
            assert_int_equal(stws_json_next(NULL, &k, &e), 0);
            assert_int_equal(stws_json_len(NULL), 0);
            assert_int_equal(stws_json_elem(NULL, 0, &x), STWS_JSON_NONE);
        }
        p_free(&t.p);
    }
}

/* A huge array near the token limit: iterating it is linear on both kinds
   (a quadratic cursor would take minutes here), and the limit holds. */
static void reader_iterate_huge(void **state) {
    enum { N = 200000 };
    char *text = (char *)malloc(N * 2 + 2);
    size_t n = 0, i, count;
    int kind;
    twins t;
    (void)state;
    assert_non_null(text);
    text[n++] = '[';
    for (i = 0; i < N; i++) {
        text[n++] = (char)('0' + i % 10);
        text[n++] = i + 1 < N ? ',' : ']';
    }
    twins_make(&t, text, n);
    assert_int_equal(t.p.tk.count, N + 1);
    for (kind = 0; kind < 2; kind++) {
        const stws_json_doc *d = kind ? &t.p.doc : &t.lazy;
        stws_json_value a, e;
        stws_json_iter it;
        int64_t iv;
        assert_int_equal(stws_json_get(d, "", &a), STWS_JSON_ARRAY);
        assert_int_equal(stws_json_len(&a), N);
        assert_int_equal(stws_json_iter_init(&it, &a), STWS_OK);
        for (count = 0; stws_json_next(&it, NULL, &e); count++) {
            assert_int_equal(stws_json_value_int(&e, &iv), STWS_OK);
            if (iv != (int64_t)(count % 10)) fail_msg("element %u", (unsigned)count);
        }
        assert_int_equal(count, N);
        assert_int_equal(stws_json_elem(&a, N - 1, &e), STWS_JSON_NUMBER);
        assert_int_equal(stws_json_get(d, "199999", &e), STWS_JSON_NUMBER);
        assert_int_equal(stws_json_get(d, "200000", &e), STWS_JSON_NONE);
    }
    /* exactly at the limit; one over is refused */
    RESULT_IS("at limit", p_parse_n(&t.p, text, n, N + 1), STWS_OK);
    RESULT_IS("over limit", p_parse_n(&t.p, text, n, N), STWS_ERR_JSON_TOO_BIG);
    assert_int_equal(stws_json_find(&t.p.doc, "0", NULL), STWS_JSON_NONE);
    p_free(&t.p);
    free(text);
}

/* Invalid text: both makers refuse it with the same result and nothing is
   iterable. */
static void reader_iterate_invalid(void **state) {
    static const char *bad[] = {"", "[1,]", "{\"a\"}", "[1 2]", "{\"a\":1,}", "tru", "01",
                                "[\"\x01\"]", "{\"a\":[}", "\"\\x\"", "[1]]", "\xff"};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        stws_json_doc d;
        stws_json_value v;
        stws_json_iter it;
        parsed p;
        stws_result rl, rt;
        p_init(&p);
        rl = stws_json_doc_init(&d, bad[i], strlen(bad[i]));
        rt = p_parse(&p, bad[i]);
        RESULT_IS(bad[i], rl, rt);
        LABELED(bad[i], rl == STWS_ERR_JSON || rl == STWS_ERR_INVALID_UTF8);
        assert_int_equal(stws_json_get(&d, "", &v), STWS_JSON_NONE);
        assert_int_equal(stws_json_iter_init(&it, &v), STWS_ERR_JSON_TYPE);
        assert_int_equal(stws_json_get(&p.doc, "", &v), STWS_JSON_NONE);
        /* a hand-made doc of the same text: checked on use, nothing found */
        memset(&d, 0, sizeof d);
        d.text = bad[i];
        d.len = strlen(bad[i]);
        assert_int_equal(stws_json_get(&d, "", &v), STWS_JSON_NONE);
        p_free(&p);
    }
}

/* Found as a new user: any text (a conn message, a REST body) is a document
   through the public API; a zero-initialised doc works too. */
static void reader_any_text(void **state) {
    static const char body[] = "{\"duration\":\"1.2ms\",\"users\":{\"ann\":{\"id\":\"ann\",\"n\":3.5}}}";
    stws_json_doc d;
    char buf[8];
    size_t len = 99;
    int64_t iv = 7;
    double dv = 0;
    (void)state;
    assert_int_equal(stws_json_doc_init(&d, body, strlen(body)), STWS_OK);
    want_string(&d, "users.ann.id", "ann");
    memset(&d, 0, sizeof d);
    d.text = body;
    d.len = strlen(body);
    want_string(&d, "users.ann.id", "ann");
    /* *len is the length without the NUL, also when too small */
    assert_int_equal(stws_json_string_at(&d, "duration", buf, 4, &len), STWS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(len, 5);
    assert_int_equal(stws_json_string_at(&d, "duration", buf, len + 1, &len), STWS_OK);
    assert_string_equal(buf, "1.2ms");
    /* int_at on 3.5: of another type; the double reader reads it */
    assert_int_equal(stws_json_int_at(&d, "users.ann.n", &iv), STWS_ERR_JSON_TYPE);
    assert_int_equal(iv, 7);
    assert_int_equal(stws_json_double_at(&d, "users.ann.n", &dv), STWS_OK);
    assert_true(dv == 3.5);
    assert_int_equal(stws_json_double_at(&d, "users.ann.x", &dv), STWS_ERR_JSON_PATH);
    assert_int_equal(stws_json_double_at(&d, "users.ann.id", &dv), STWS_ERR_JSON_TYPE);
    assert_int_equal(stws_json_int_at(&d, "users", &iv), STWS_ERR_JSON_TYPE);
}

/* The double reader against known values, bit for bit. */
static void reader_double(void **state) {
    static const struct {
        const char *text;
        uint64_t bits;
    } known[] = {
        {"0", 0}, {"-0", UINT64_C(0x8000000000000000)}, {"0.0e5", 0},
        {"1", UINT64_C(0x3FF0000000000000)}, {"-2", UINT64_C(0xC000000000000000)},
        {"0.1", UINT64_C(0x3FB999999999999A)}, {"3.5", UINT64_C(0x400C000000000000)},
        {"1e23", UINT64_C(0x44B52D02C7E14AF6)},  /* the classic hard case */
        {"8.98846567431158e307", UINT64_C(0x7FE0000000000000)},
        {"1.7976931348623157e308", UINT64_C(0x7FEFFFFFFFFFFFFF)},   /* DBL_MAX */
        {"2.2250738585072014e-308", UINT64_C(0x0010000000000000)},  /* DBL_MIN */
        {"4.9406564584124654e-324", UINT64_C(0x0000000000000001)},  /* smallest subnormal */
        {"9007199254740993", UINT64_C(0x4340000000000000)},         /* 2^53+1: ties to even */
        {"123456789012345678901234567890", UINT64_C(0x45F8EE90FF6C373E)},
        {"1e-400", 0}, {"0.000001", UINT64_C(0x3EB0C6F7A0B5ED8D)},
        {"1E+2", UINT64_C(0x4059000000000000)}, {"-1.5E-3", UINT64_C(0xBF589374BC6A7EFA)},
        {"3.141592653589793", UINT64_C(0x400921FB54442D18)},
        {"100000000000000000000000", UINT64_C(0x44B52D02C7E14AF6)},
        /* halfway cases: ties to even, and a digit past the tie rounds up */
        {"9007199254740995", UINT64_C(0x4340000000000002)},
        {"9007199254740993.0000000000000000001", UINT64_C(0x4340000000000001)},
        {"2.4703282292062327e-324", 0},                              /* below half the least */
        {"2.4703282292062328e-324", UINT64_C(0x0000000000000001)},   /* above it */
        {"7.2057594037927933e16", UINT64_C(0x4370000000000000)},
        {"1.448997445238699", UINT64_C(0x3FF72F17F1F49AAD)},
        {"5e-324", UINT64_C(0x0000000000000001)},
        {"1.7976931348623158e308", UINT64_C(0x7FEFFFFFFFFFFFFF)},
    };
    static const char *too_big[] = {"1e309", "-1e400", "1.8e308", "1e99999999999"};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof known / sizeof known[0]; i++) {
        stws_json_doc d;
        double v = 42;
        uint64_t bits;
        assert_int_equal(stws_json_doc_init(&d, known[i].text, strlen(known[i].text)), STWS_OK);
        RESULT_IS(known[i].text, stws_json_double_at(&d, "", &v), STWS_OK);
        memcpy(&bits, &v, 8);
        if (bits != known[i].bits)
            fail_msg("%s: %016llx, expected %016llx", known[i].text, (unsigned long long)bits,
                     (unsigned long long)known[i].bits);
    }
    for (i = 0; i < sizeof too_big / sizeof too_big[0]; i++) {
        stws_json_doc d;
        double v = 42;
        assert_int_equal(stws_json_doc_init(&d, too_big[i], strlen(too_big[i])), STWS_OK);
        RESULT_IS(too_big[i], stws_json_double_at(&d, "", &v), STWS_ERR_JSON_TYPE);
    }
    /* random values of up to 17 digits and any exponent, against strtod in
       the C locale (this test process never calls setlocale) */
    {
        unsigned x = 12345u, miss = 0, k;
        for (k = 0; k < 200000; k++) {
            char t[64];
            stws_json_doc d;
            double v, want;
            uint64_t m;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            m = ((uint64_t)x << 32 | (x * 2654435761u)) % UINT64_C(100000000000000000);
            snprintf(t, sizeof t, "%llu.%ue%d", (unsigned long long)(m / 1000), (unsigned)(m % 1000),
                     (int)(x % 580) - 300);
            assert_int_equal(stws_json_doc_init(&d, t, strlen(t)), STWS_OK);
            assert_int_equal(stws_json_double_at(&d, "", &v), STWS_OK);
            want = strtod(t, NULL);
            if (memcmp(&v, &want, 8) != 0) {
                uint64_t a, b;
                memcpy(&a, &v, 8);
                memcpy(&b, &want, 8);
                if (a - b + 1 > 2) fail_msg("%s: more than 1 ulp off", t);
                miss++;
            }
        }
        /* up to 19 significant digits: correctly rounded, every one */
        if (miss) fail_msg("double reader: %u of 200000 not correctly rounded", miss);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(writer_basic),
        cmocka_unit_test(writer_escape_table),
        cmocka_unit_test(writer_invalid_utf8),
        cmocka_unit_test(writer_misuse),
        cmocka_unit_test(writer_overflow_every_cap),
        cmocka_unit_test(writer_raw),
        cmocka_unit_test(reader_connection_ok),
        cmocka_unit_test(reader_connection_error),
        cmocka_unit_test(reader_message_new),
        cmocka_unit_test(reader_lookup_errors),
        cmocka_unit_test(reader_escapes),
        cmocka_unit_test(reader_string_buffer),
        cmocka_unit_test(reader_unescape_runs),
        cmocka_unit_test(reader_escaped_keys),
        cmocka_unit_test(reader_malformed),
        cmocka_unit_test(reader_valid_oddities),
        cmocka_unit_test(reader_shape),
        cmocka_unit_test(reader_huge_event),
        cmocka_unit_test(reader_lazy_event),
        cmocka_unit_test(reader_lazy_state),
        cmocka_unit_test(reader_walk_paths),
        cmocka_unit_test(reader_walk_any_text),
        cmocka_unit_test(reader_zero_alloc_steady),
        cmocka_unit_test(reader_parse_args),
        cmocka_unit_test(reader_hostile_doc),
        cmocka_unit_test(reader_iterate),
        cmocka_unit_test(reader_iterate_huge),
        cmocka_unit_test(reader_iterate_invalid),
        cmocka_unit_test(reader_any_text),
        cmocka_unit_test(reader_double),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
