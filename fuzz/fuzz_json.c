/* libFuzzer target: the JSON reader (stws__json_parse, look-ups, unescaping)
   and the writer's raw validation, on arbitrary input.

   Input: byte 0 is the configuration, the rest is "JSON" or
   "JSON \0 path \n path \n ...".
     bits 0-1  max_tokens: 65536, 256, 17, 2
     bit 2     start from a 5-token array instead of none
     bit 3     parse twice (the second must allocate nothing, same tokens)
   The JSON is copied into an exactly sized heap block, so ASan reports any
   read past it.

   Invariants (a violation is __builtin_trap()):
     - the result is OK, JSON, INVALID_UTF8 or JSON_TOO_BIG; tokens never
       pass max_tokens; on failure the document is empty
     - OK: every token lies inside the text, parents come before children;
       the event-type check agrees with the top-level token
     - stws_json_raw() agrees with the parser (both OK, or both JSON /
       INVALID_UTF8) whenever the parser was not stopped by a limit
     - every string token unescapes to valid UTF-8, or fails with JSON only
       for a bad surrogate; written back with the writer and parsed again it
       is the same string
     - a path built from each token's keys and indices finds exactly that
       token when the document has no duplicate keys; numbers agree with
       strtoll; booleans with their text
     - paths from the input: any answer, inside the text
     - the client's lazy path (stws__json_event_parse) gives the result of
       the parse and the shape check and the same type view, allocates
       nothing and makes no tokens; its look-ups walk the text, and must
       give the token document's answers (find, string_at at several
       capacities, int_at, bool_at) for every token's path, variants of it
       (other index forms, one segment more) and every path of the input
     - the walk stays inside any text, valid or not, and always ends */
#define STREAM_WS_IMPLEMENTATION
#include "stream_ws.h"

#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                    \
    do {                            \
        if (!(c)) __builtin_trap(); \
    } while (0)

typedef struct fz_count {
    unsigned long allocs;
} fz_count;

static void *fz_alloc(size_t n, void *ud) {
    ((fz_count *)ud)->allocs++;
    return malloc(n);
}
static void fz_free(void *p, void *ud) {
    (void)ud;
    free(p);
}

/* Strict UTF-8 (RFC 3629), written independently of stws_utf8_validate. */
static int utf8_ok(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k, need;
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        if ((b & 0xE0) == 0xC0) need = 1, cp = b & 0x1F;
        else if ((b & 0xF0) == 0xE0) need = 2, cp = b & 0x0F;
        else if ((b & 0xF8) == 0xF0) need = 3, cp = b & 0x07;
        else return 0;
        if (n - i - 1 < need) return 0;
        for (k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000))
            return 0;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += need + 1;
    }
    return 1;
}

static const jsmntok_t *toks(const stws_json_doc *d) { return (const jsmntok_t *)d->tokens; }

/* Write s[0..n) as a JSON string, parse it back, compare. */
static void roundtrip(const char *s, size_t n) {
    size_t wn = n * 6 + 3, len = 0, blen = 0;
    char *w = (char *)malloc(wn), *back = (char *)malloc(n + 1);
    stws_json_writer jw;
    jsmntok_t *tk = NULL;
    int cap = 0;
    stws_json_doc doc;
    CHECK(w && back);
    stws_json_init(&jw, w, wn);
    stws_json_string_n(&jw, s, n);
    CHECK(stws_json_finish(&jw, &len) == STWS_OK);
    CHECK(stws__json_parse(w, len, &tk, &cap, 4, NULL, &doc) == STWS_OK);
    CHECK(doc.ntokens == 1);
    CHECK(stws_json_string_at(&doc, "", back, n + 1, &blen) == STWS_OK);
    CHECK(blen == n && memcmp(back, s, n) == 0);
    free(tk);
    free(w);
    free(back);
}

/* The path of token k from its parent chain into buf; 0 if not expressible
   (a key holding '.', '[' or nothing, or no room). */
static int path_of(const stws_json_doc *d, int k, char *buf, size_t cap) {
    const jsmntok_t *t = toks(d);
    int chain[64], n = 0, i;
    size_t o = 0;
    while (k > 0) {
        int p = t[k].parent;
        if (n == 64 || p < 0) return 0;
        chain[n++] = k;
        k = p;
        if (t[k].type == JSMN_STRING) k = t[k].parent; /* the key's object */
    }
    buf[0] = 0;
    for (i = n - 1; i >= 0; i--) {
        int c = chain[i], par = t[c].parent;
        if (t[par].type == JSMN_STRING) {
            /* value of key par */
            size_t kl = (size_t)(t[par].end - t[par].start), j;
            const char *key = d->text + t[par].start;
            if (kl == 0) return 0;
            for (j = 0; j < kl; j++)
                if (key[j] == '.' || key[j] == '[') return 0;
            /* an all-digit key is an index when the parent is an array; here
               it is an object, and ".N" on an object names the key: fine */
            if (o + kl + 2 >= cap) return 0;
            if (o) buf[o++] = '.';
            memcpy(buf + o, key, kl);
            o += kl;
        } else {
            /* element of array par: its position, as ".N" or "[N]" by parity */
            int idx = 0, j;
            for (j = par + 1; j < c; j++)
                if (t[j].parent == par) idx++;
            if (o + 16 >= cap) return 0;
            if (idx & 1) o += (size_t)snprintf(buf + o, cap - o, "[%d]", idx);
            else o += (size_t)snprintf(buf + o, cap - o, "%s%d", o ? "." : "", idx);
        }
    }
    buf[o] = 0;
    return 1;
}

static int has_duplicate_keys(const stws_json_doc *d) {
    const jsmntok_t *t = toks(d);
    int i, j;
    for (i = 0; i < d->ntokens; i++) {
        if (t[i].type != JSMN_STRING || t[i].parent < 0 || t[t[i].parent].type != JSMN_OBJECT) continue;
        for (j = i + 1; j < d->ntokens && t[j].start < t[t[i].parent].end; j++)
            if (t[j].parent == t[i].parent && t[j].end - t[j].start == t[i].end - t[i].start &&
                memcmp(d->text + t[j].start, d->text + t[i].start, (size_t)(t[i].end - t[i].start)) == 0)
                return 1;
    }
    return 0;
}

/* The lazy document (a walk of the text) answers as the token document. */
static void same_answers(const stws_json_doc *ed, const stws_json_doc *ld, const char *path) {
    static const size_t caps[] = {0, 1, 3, 16, 4096};
    stws_str ev, lv;
    char eb[4096], lb[4096];
    size_t el = 1, ll = 2, k;
    int64_t ei = 3, li = 3;
    int eb_ = 4, lb_ = 4;
    CHECK(stws_json_find(ed, path, &ev) == stws_json_find(ld, path, &lv));
    CHECK(ev.ptr == lv.ptr && ev.len == lv.len);
    for (k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        stws_result er = stws_json_string_at(ed, path, caps[k] ? eb : NULL, caps[k], &el);
        stws_result lr = stws_json_string_at(ld, path, caps[k] ? lb : NULL, caps[k], &ll);
        CHECK(er == lr && el == ll);
        if (er == STWS_OK) CHECK(memcmp(eb, lb, el + 1) == 0);
    }
    CHECK(stws_json_int_at(ed, path, &ei) == stws_json_int_at(ld, path, &li) && ei == li);
    CHECK(stws_json_bool_at(ed, path, &eb_) == stws_json_bool_at(ld, path, &lb_) && eb_ == lb_);
}

/* path, then path with its indices written the other way (".N" <-> "[N]",
   a leading zero), then with one more segment: all the same on both. */
static void same_variants(const stws_json_doc *ed, const stws_json_doc *ld, const char *path) {
    static const char *const more[] = {".0", "[0]", "[1]", ".a", ".type", ".", "[", "[]", "x"};
    char v[600];
    size_t n = strlen(path), i, o = 0, k;
    if (n > 400) return;
    same_answers(ed, ld, path);
    for (i = 0; i < n && o + 4 < sizeof v; i++) {
        if (path[i] == '[') {
            if (o) v[o++] = '.';
            v[o++] = '0';
        } else if (path[i] == ']') {
        } else if (path[i] == '.' && i + 1 < n && path[i + 1] >= '0' && path[i + 1] <= '9') {
            v[o++] = '[';
            for (i++; i < n && path[i] >= '0' && path[i] <= '9'; i++) v[o++] = path[i];
            v[o++] = ']';
            i--;
        } else {
            v[o++] = path[i];
        }
    }
    v[o] = 0;
    same_answers(ed, ld, v);
    for (k = 0; k < sizeof more / sizeof more[0]; k++) {
        memcpy(v, path, n);
        strcpy(v + n, more[k]);
        same_answers(ed, ld, v);
    }
}

/* The walk on text the pass never saw (a forged lazy document): any
   answer, but inside the text. */
static void walk_any(const char *json, size_t jn, const char *path) {
    stws__json_lazy lz;
    stws_json_doc d;
    stws_str v;
    char buf[16];
    size_t len;
    int64_t iv;
    int bv;
    memset(&lz, 0, sizeof lz);
    memset(&d, 0, sizeof d);
    lz.text = d.text = json;
    lz.len = d.len = jn;
    d.lazy = &lz;
    if (stws_json_find(&d, path, &v) != STWS_JSON_NONE) CHECK(v.ptr >= json && v.ptr + v.len <= json + jn);
    (void)stws_json_string_at(&d, path, buf, sizeof buf, &len);
    (void)stws_json_int_at(&d, path, &iv);
    (void)stws_json_bool_at(&d, path, &bv);
}

static void check_value(const stws_json_doc *d, const char *path) {
    stws_str v;
    stws_json_type ty = stws_json_find(d, path, &v);
    char buf[64];
    size_t len;
    int64_t iv = 0;
    int bv = 0;
    stws_result r;
    if (ty == STWS_JSON_NONE) {
        CHECK(v.ptr == NULL && v.len == 0);
        CHECK(stws_json_int_at(d, path, &iv) == STWS_ERR_JSON_PATH);
        return;
    }
    CHECK(v.ptr >= d->text && v.ptr + v.len <= d->text + d->len);
    r = stws_json_string_at(d, path, buf, sizeof buf, &len);
    if (ty == STWS_JSON_STRING)
        CHECK(r == STWS_OK || r == STWS_ERR_BUFFER_TOO_SMALL || r == STWS_ERR_JSON);
    else
        CHECK(r == STWS_ERR_JSON_PATH);
    r = stws_json_int_at(d, path, &iv);
    if (ty == STWS_JSON_NUMBER) {
        size_t i = v.len && v.ptr[0] == '-';
        int digits = i < v.len;
        char num[32];
        for (; i < v.len; i++)
            if (v.ptr[i] < '0' || v.ptr[i] > '9') digits = 0;
        if (digits && v.len < sizeof num) {
            long long ref;
            memcpy(num, v.ptr, v.len);
            num[v.len] = 0;
            errno = 0;
            ref = strtoll(num, NULL, 10);
            if (errno == ERANGE) CHECK(r == STWS_ERR_JSON_PATH);
            else CHECK(r == STWS_OK && iv == ref);
        } else {
            CHECK(r == STWS_ERR_JSON_PATH);
        }
    } else {
        CHECK(r == STWS_ERR_JSON_PATH);
    }
    r = stws_json_bool_at(d, path, &bv);
    if (ty == STWS_JSON_BOOL) CHECK(r == STWS_OK && bv == (v.ptr[0] == 't'));
    else CHECK(r == STWS_ERR_JSON_PATH);
}

/* Bracket depth outside strings: exact for valid JSON. */
static int max_nesting(const char *s, size_t n) {
    size_t i;
    int depth = 0, best = 0, in_str = 0;
    for (i = 0; i < n; i++) {
        if (in_str) {
            if (s[i] == '\\') i++;
            else if (s[i] == '"') in_str = 0;
        } else if (s[i] == '"') {
            in_str = 1;
        } else if (s[i] == '{' || s[i] == '[') {
            if (++depth > best) best = depth;
        } else if (s[i] == '}' || s[i] == ']') {
            depth--;
        }
    }
    return best;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int limits[4] = {65536, 256, 17, 2};
    fz_count cnt;
    stws_allocator a;
    jsmntok_t *tk = NULL;
    int cap = 0, max_tokens, i;
    stws_json_doc doc, ldoc;
    stws__json_lazy lz;
    stws_result r;
    const uint8_t *sep;
    size_t jn, pn = 0;
    char *json, *paths = NULL;
    if (size < 1) return 0;
    max_tokens = limits[data[0] & 3];
    data++;
    size--;
    sep = (const uint8_t *)memchr(data, 0, size);
    jn = sep ? (size_t)(sep - data) : size;
    json = (char *)malloc(jn ? jn : 1);
    CHECK(json != NULL);
    if (jn) memcpy(json, data, jn);
    if (sep) {
        pn = size - jn - 1;
        paths = (char *)malloc(pn + 1);
        CHECK(paths != NULL);
        memcpy(paths, sep + 1, pn);
        paths[pn] = 0;
    }

    memset(&cnt, 0, sizeof cnt);
    a.alloc = fz_alloc;
    a.free = fz_free;
    a.user_data = &cnt;
    if (data[-1] & 4) {
        tk = (jsmntok_t *)malloc(5 * sizeof *tk);
        CHECK(tk != NULL);
        cap = 5;
    }
    r = stws__json_parse(json, jn, &tk, &cap, max_tokens, &a, &doc);
    CHECK(r == STWS_OK || r == STWS_ERR_JSON || r == STWS_ERR_INVALID_UTF8 || r == STWS_ERR_JSON_TOO_BIG);
    CHECK(doc.text == json && doc.len == jn);
    CHECK(cap >= 0 && (cap <= max_tokens || cap == 5));
    {
        stws_str et = {NULL, 0}, lt;
        stws_result want = r, lr;
        unsigned long before = cnt.allocs;
        if (want == STWS_OK) want = stws__json_event_type(&doc, &et);
        memset(&lz, 0x5A, sizeof lz); /* the parse must set every field it reads */
        lr = stws__json_event_parse(json, jn, 0, &lz, max_tokens, &ldoc, &lt);
        CHECK(lr == want && lt.ptr == et.ptr && lt.len == et.len);
        CHECK(ldoc.text == json && ldoc.len == jn && !ldoc.tokens && !ldoc.ntokens);
        CHECK((ldoc.lazy != NULL) == (r == STWS_OK));
        CHECK(cnt.allocs == before);
        if (r == STWS_OK) {
            same_answers(&doc, &ldoc, "");
            if (lr == STWS_OK) CHECK(stws__json_event_type(&ldoc, &lt) == STWS_OK && lt.ptr == et.ptr);
            CHECK(cnt.allocs == before);
        }
    }
    if (r != STWS_OK) {
        stws_str t;
        CHECK(doc.ntokens == 0);
        CHECK(stws_json_find(&doc, "", NULL) == STWS_JSON_NONE);
        CHECK(stws__json_event_type(&doc, &t) == STWS_ERR_EVENT_SHAPE);
    } else {
        const jsmntok_t *t = toks(&doc);
        stws_str ty;
        CHECK(doc.tokens == tk && doc.ntokens >= 1 && doc.ntokens <= max_tokens && doc.ntokens <= cap);
        for (i = 0; i < doc.ntokens; i++) {
            CHECK(t[i].start >= 0 && t[i].start <= t[i].end && (size_t)t[i].end <= jn);
            CHECK(t[i].parent < i && (i == 0) == (t[i].parent < 0));
        }
        if (stws__json_event_type(&doc, &ty) == STWS_OK) {
            CHECK(t[0].type == JSMN_OBJECT);
            CHECK(ty.ptr >= json && ty.ptr + ty.len <= json + jn);
        }
        if (data[-1] & 8) {
            int n = doc.ntokens;
            unsigned long before = cnt.allocs;
            CHECK(stws__json_parse(json, jn, &tk, &cap, max_tokens, &a, &doc) == STWS_OK);
            CHECK(cnt.allocs == before && doc.ntokens == n);
            t = toks(&doc);
        }
        /* strings: unescape, then back through the writer */
        for (i = 0; i < doc.ntokens; i++) {
            size_t n = (size_t)(t[i].end - t[i].start), len = 0;
            stws_result ur;
            char *u;
            if (t[i].type != JSMN_STRING) continue;
            u = (char *)malloc(n + 1);
            CHECK(u != NULL);
            ur = stws__json_unescape(json + t[i].start, n, u, n + 1, &len);
            CHECK(ur == STWS_OK || ur == STWS_ERR_JSON);
            if (ur == STWS_OK) {
                CHECK(len <= n && utf8_ok((const uint8_t *)u, len));
                roundtrip(u, len);
            } else {
                size_t k, esc_u = 0;
                for (k = 0; k + 1 < n; k++)
                    if (json[t[i].start + k] == '\\' && json[t[i].start + k + 1] == 'u') esc_u = 1;
                CHECK(esc_u); /* only surrogates fail */
            }
            free(u);
        }
        /* every value by its own path */
        if (doc.ntokens <= 400) {
            int dup = has_duplicate_keys(&doc);
            for (i = 0; i < doc.ntokens; i++) {
                char path[512];
                stws_str v;
                if (t[i].type == JSMN_STRING && t[i].parent >= 0 && t[t[i].parent].type == JSMN_OBJECT)
                    continue; /* a key */
                if (!path_of(&doc, i, path, sizeof path)) continue;
                if (!dup) {
                    stws_json_type want = t[i].type == JSMN_OBJECT ? STWS_JSON_OBJECT
                                        : t[i].type == JSMN_ARRAY  ? STWS_JSON_ARRAY
                                        : t[i].type == JSMN_STRING ? STWS_JSON_STRING
                                        : json[t[i].start] == 't' || json[t[i].start] == 'f' ? STWS_JSON_BOOL
                                        : json[t[i].start] == 'n' ? STWS_JSON_NULL
                                                                  : STWS_JSON_NUMBER;
                    CHECK(stws_json_find(&doc, path, &v) == want);
                    CHECK(v.ptr == json + t[i].start && v.len == (size_t)(t[i].end - t[i].start));
                }
                check_value(&doc, path);
                if (doc.ntokens <= 64) same_variants(&doc, &ldoc, path);
                else same_answers(&doc, &ldoc, path);
            }
        }
    }
    /* the writer's raw validation agrees with the parser */
    if (r != STWS_ERR_JSON_TOO_BIG && (r != STWS_OK || max_nesting(json, jn) <= STWS_JSON_MAX_DEPTH)) {
        char *out = (char *)malloc(jn + 1);
        size_t len = 0;
        stws_json_writer w;
        stws_result wr;
        CHECK(out != NULL);
        stws_json_init(&w, out, jn + 1);
        stws_json_raw(&w, json, jn);
        wr = stws_json_finish(&w, &len);
        if (r == STWS_OK) CHECK(wr == STWS_OK && len == jn && memcmp(out, json, jn) == 0);
        else CHECK(wr == r || (jn == 0 && wr == STWS_ERR_JSON));
        free(out);
    }
    /* paths from the input */
    if (paths) {
        char *p = paths;
        for (;;) {
            char *nl = strchr(p, '\n');
            if (nl) *nl = 0;
            check_value(&doc, p);
            if (r == STWS_OK) same_variants(&doc, &ldoc, p);
            walk_any(json, jn, p);
            if (!nl) break;
            p = nl + 1;
        }
    }
    /* the walk on any text, valid or not */
    walk_any(json, jn, "");
    walk_any(json, jn, "a");
    walk_any(json, jn, "[1]");
    walk_any(json, jn, "a.b.0");
    free(tk);
    free(json);
    free(paths);
    return 0;
}
