/* libFuzzer target: the JSON reader (stws_json_tokenize, stws_json_doc_init,
   look-ups, values, cursors, the double reader, unescaping)
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
     - stws_json_write_raw() agrees with the parser (both OK, or both JSON /
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
       capacities, int_at, double_at, bool_at, and the iteration calls:
       get, get_in, len, elem, every member/element of a cursor) for every
       token's path, variants of it (other index forms, one segment more) and
       every path of the input; so do stws_json_doc_init's document, a
       hand-made one (internal NULL) and the client's eager event path
     - double_at agrees with strtod (C locale): bit for bit up to 19
       digits, within one ulp past them
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

/* The tokens of the document under test (the tokenizer of this run). */
static const stws_json_tokens *g_tk;
static const jsmntok_t *toks(const stws_json_doc *d) {
    (void)d;
    return (const jsmntok_t *)g_tk->tok;
}
#define NTOK(d) (g_tk->count)

/* The oracle of an event's shape (PROTOCOL.md §8), by the public look-up. */
static stws_result event_type(const stws_json_doc *doc, stws_str *type) {
    stws_str v;
    if (type) {
        type->ptr = NULL;
        type->len = 0;
    }
    if (stws_json_find(doc, "type", &v) != STWS_JSON_STRING) return STWS_ERR_EVENT_SHAPE;
    if (type) *type = v;
    return STWS_OK;
}

/* Write s[0..n) as a JSON string, parse it back, compare. */
static void roundtrip(const char *s, size_t n) {
    size_t wn = n * 6 + 3, len = 0, blen = 0;
    char *w = (char *)malloc(wn), *back = (char *)malloc(n + 1);
    stws_json_writer jw;
    stws_json_tokens tk;
    stws_json_doc doc;
    CHECK(w && back);
    memset(&tk, 0, sizeof tk);
    tk.max_tokens = 4;
    stws_json_write_init(&jw, w, wn);
    stws_json_write_string_n(&jw, s, n);
    CHECK(stws_json_write_finish(&jw, &len) == STWS_OK);
    CHECK(stws_json_tokenize(&tk, w, len, &doc) == STWS_OK);
    CHECK(tk.count == 1);
    CHECK(stws_json_string_at(&doc, "", back, n + 1, &blen) == STWS_OK);
    CHECK(blen == n && memcmp(back, s, n) == 0);
    stws_json_tokens_free(&tk);
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
    for (i = 0; i < NTOK(d); i++) {
        if (t[i].type != JSMN_STRING || t[i].parent < 0 || t[t[i].parent].type != JSMN_OBJECT) continue;
        for (j = i + 1; j < NTOK(d) && t[j].start < t[t[i].parent].end; j++)
            if (t[j].parent == t[i].parent && t[j].end - t[j].start == t[i].end - t[i].start &&
                memcmp(d->text + t[j].start, d->text + t[i].start, (size_t)(t[i].end - t[i].start)) == 0)
                return 1;
    }
    return 0;
}

static void same_value(const stws_json_value *a, const stws_json_value *b) {
    CHECK(a->type == b->type && a->raw.ptr == b->raw.ptr && a->raw.len == b->raw.len);
}

/* The iteration calls answer alike on two documents of one text. */
static void same_iteration(const stws_json_doc *ed, const stws_json_doc *ld, const char *path) {
    static const char *const rel[] = {"", "0", "[1]", "type", "a.b", "x"};
    stws_json_value ev, lv, ek, lk, ee, le, x, y;
    stws_json_iter ei, li;
    size_t n = 0, k;
    int more;
    double ed_ = 1, ld_ = 1;
    stws_result er, lr;
    stws_json_get(ed, path, &ev);
    stws_json_get(ld, path, &lv);
    same_value(&ev, &lv);
    er = stws_json_value_double(&ev, &ed_);
    lr = stws_json_value_double(&lv, &ld_);
    CHECK(er == lr && memcmp(&ed_, &ld_, sizeof ed_) == 0);
    for (k = 0; k < sizeof rel / sizeof rel[0]; k++) {
        stws_json_get_in(&ev, rel[k], &x);
        stws_json_get_in(&lv, rel[k], &y);
        same_value(&x, &y);
    }
    CHECK(stws_json_iter_init(&ei, &ev) == stws_json_iter_init(&li, &lv));
    do {
        more = stws_json_next(&ei, &ek, &ee);
        CHECK(more == stws_json_next(&li, &lk, &le));
        same_value(&ek, &lk);
        same_value(&ee, &le);
        if (more) {
            CHECK(ee.raw.ptr >= ed->text && ee.raw.ptr + ee.raw.len <= ed->text + ed->len);
            CHECK((ek.type == STWS_JSON_STRING) == (ev.type == STWS_JSON_OBJECT));
            if (n < 4) {
                stws_json_elem(&ev, n, &x);
                stws_json_elem(&lv, n, &y);
                same_value(&x, &y);
                same_value(&x, &ee);
                CHECK(stws_json_len(&ee) == stws_json_len(&le));
            }
            n++;
        }
    } while (more);
    CHECK(stws_json_len(&ev) == n && stws_json_len(&lv) == n);
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
    same_iteration(ed, ld, path);
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
    stws_json_tokens lz;
    stws_json_doc d;
    stws_json_value val, e;
    stws_json_iter it;
    stws_str v;
    char buf[16];
    size_t len, n = 0;
    int64_t iv;
    int bv;
    memset(&lz, 0, sizeof lz);
    memset(&d, 0, sizeof d);
    lz.text_ = d.text = json;
    lz.len_ = d.len = jn;
    d.internal = &lz;
    if (stws_json_find(&d, path, &v) != STWS_JSON_NONE) CHECK(v.ptr >= json && v.ptr + v.len <= json + jn);
    /* cursors on unchecked text: inside it, and they end */
    stws_json_get(&d, path, &val);
    if (stws_json_iter_init(&it, &val) == STWS_OK)
        while (stws_json_next(&it, NULL, &e)) {
            CHECK(e.raw.ptr >= json && e.raw.ptr + e.raw.len <= json + jn);
            CHECK(++n <= jn);
        }
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
        CHECK(r == STWS_ERR_JSON_TYPE);
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
            if (errno == ERANGE) CHECK(r == STWS_ERR_JSON_TYPE);
            else CHECK(r == STWS_OK && iv == ref);
        } else {
            CHECK(r == STWS_ERR_JSON_TYPE);
        }
        if (v.len < 400) {
            char num[400];
            double dv = 0, ref;
            memcpy(num, v.ptr, v.len);
            num[v.len] = 0;
            errno = 0;
            ref = strtod(num, NULL);
            r = stws_json_double_at(d, path, &dv);
            if (r == STWS_OK) {
                uint64_t x, y;
                memcpy(&x, &dv, 8);
                memcpy(&y, &ref, 8);
                size_t q, digits = 0;
                for (q = 0; q < v.len && v.ptr[q] != 'e' && v.ptr[q] != 'E'; q++)
                    digits += v.ptr[q] >= '0' && v.ptr[q] <= '9';
                /* exact up to 19 digits (leading zeros count here: safe side) */
                if (digits <= 19) CHECK(x == y);
                else CHECK(x - y + 1 <= 2 || (dv == 0 && ref == 0)); /* one ulp at most */
            } else {
                CHECK(r == STWS_ERR_JSON_TYPE && errno == ERANGE && ref != 0);
            }
        }
    } else {
        CHECK(r == STWS_ERR_JSON_TYPE);
    }
    r = stws_json_bool_at(d, path, &bv);
    if (ty == STWS_JSON_BOOL) CHECK(r == STWS_OK && bv == (v.ptr[0] == 't'));
    else CHECK(r == STWS_ERR_JSON_TYPE);
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
    stws_json_tokens tkz, lz, ez;
    int max_tokens, i;
    stws_json_doc doc, ldoc, idoc, hdoc, edoc;
    stws_json_doc *const docs[3] = {&ldoc, &idoc, &hdoc};
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
    memset(&tkz, 0, sizeof tkz);
    memset(&ez, 0, sizeof ez);
    tkz.allocator = a;
    tkz.max_tokens = max_tokens;
    ez.allocator = a;
    g_tk = &tkz;
    if (data[-1] & 4) {
        tkz.tok = malloc(5 * sizeof(jsmntok_t));
        CHECK(tkz.tok != NULL);
        tkz.cap = 5;
    }
    r = stws_json_tokenize(&tkz, json, jn, &doc);
    CHECK(r == STWS_OK || r == STWS_ERR_JSON || r == STWS_ERR_INVALID_UTF8 || r == STWS_ERR_JSON_TOO_BIG);
    CHECK(doc.text == json && doc.len == jn);
    CHECK(tkz.cap >= 0 && (tkz.cap <= max_tokens || tkz.cap == 5));
    /* the other documents of the same text */
    {
        stws_result ir = stws_json_doc_init(&idoc, json, jn);
        CHECK(ir == r || r == STWS_ERR_JSON_TOO_BIG); /* no token limit: it may read further */
        hdoc.text = json;
        hdoc.len = jn;
        hdoc.internal = NULL;
    }
    {
        stws_str et = {NULL, 0}, lt;
        stws_result want = r, lr;
        unsigned long before = cnt.allocs;
        if (want == STWS_OK) want = event_type(&doc, &et);
        memset(&lz, 0x5A, sizeof lz); /* the parse must set every field it reads */
        lr = stws__json_event_parse(json, jn, 0, &lz, 0, max_tokens, &ldoc, &lt);
        CHECK(lr == want && lt.ptr == et.ptr && lt.len == et.len);
        CHECK(ldoc.text == json && ldoc.len == jn && lz.count == 0);
        CHECK((ldoc.internal == &lz) == (r == STWS_OK));
        CHECK(cnt.allocs == before);
        /* the client's eager path: the same result, a token document */
        CHECK(stws__json_event_parse(json, jn, 0, &ez, 1, max_tokens, &edoc, &lt) == want);
        CHECK(lt.ptr == et.ptr && lt.len == et.len);
        CHECK((edoc.internal == &ez) == (r == STWS_OK) && (ez.count == tkz.count));
        if (r == STWS_OK) {
            before = cnt.allocs;
            same_answers(&doc, &ldoc, "");
            same_answers(&doc, &edoc, "");
            if (lr == STWS_OK) CHECK(event_type(&ldoc, &lt) == STWS_OK && lt.ptr == et.ptr);
            CHECK(cnt.allocs == before);
        }
    }
    if (r != STWS_OK) {
        stws_str t;
        CHECK(NTOK(&doc) == 0);
        CHECK(stws_json_find(&doc, "", NULL) == STWS_JSON_NONE);
        CHECK(event_type(&doc, &t) == STWS_ERR_EVENT_SHAPE);
    } else {
        const jsmntok_t *t = toks(&doc);
        stws_str ty;
        CHECK(doc.internal == &tkz && NTOK(&doc) >= 1 && NTOK(&doc) <= max_tokens && NTOK(&doc) <= tkz.cap);
        for (i = 0; i < NTOK(&doc); i++) {
            CHECK(t[i].start >= 0 && t[i].start <= t[i].end && (size_t)t[i].end <= jn);
            CHECK(t[i].parent < i && (i == 0) == (t[i].parent < 0));
        }
        if (event_type(&doc, &ty) == STWS_OK) {
            CHECK(t[0].type == JSMN_OBJECT);
            CHECK(ty.ptr >= json && ty.ptr + ty.len <= json + jn);
        }
        if (data[-1] & 8) {
            int n = NTOK(&doc);
            unsigned long before = cnt.allocs;
            CHECK(stws_json_tokenize(&tkz, json, jn, &doc) == STWS_OK);
            CHECK(cnt.allocs == before && NTOK(&doc) == n);
            t = toks(&doc);
        }
        /* strings: unescape, then back through the writer */
        for (i = 0; i < NTOK(&doc); i++) {
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
        if (NTOK(&doc) <= 400) {
            int dup = has_duplicate_keys(&doc);
            for (i = 0; i < NTOK(&doc); i++) {
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
                if (NTOK(&doc) <= 64) {
                    int m;
                    for (m = 0; m < 3; m++) same_variants(&doc, docs[m], path);
                } else {
                    same_answers(&doc, &ldoc, path);
                }
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
        stws_json_write_init(&w, out, jn + 1);
        stws_json_write_raw(&w, json, jn);
        wr = stws_json_write_finish(&w, &len);
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
            if (r == STWS_OK) {
                same_variants(&doc, &ldoc, p);
                same_answers(&doc, &idoc, p);
            }
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
    stws_json_tokens_free(&tkz);
    stws_json_tokens_free(&ez);
    free(json);
    free(paths);
    return 0;
}
