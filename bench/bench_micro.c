/* bench_micro: the small per-event and per-connection costs of stream_ws.h:
   minting a JWT, reading an inbound event the way the Stream client does
   (the tokenless pass, then path look-ups that walk the text), the eager
   token parse and jsmn alone as references, and writing the auth message.

   bench_micro [ROUNDS] [COUNTS]  ns per call, medians of ROUNDS alternating
                                  runs (default 9); COUNTS is a file of lines
                                  "KEY INSTRUCTIONS CALLS" from callgrind
   bench_micro keys               the rows
   bench_micro count KEY N        a warm-up run and a measured run of N
                                  calls, for callgrind with
                                  --toggle-collect='bench_measured*'

   The implementation is included here: the client's per-event parse
   (stws__json_event_parse) and jsmn are static, and this is the client's
   view of them (they sit in the same translation unit as the client). */
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"
#include "workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__GNUC__) || defined(__clang__)
#define BENCH_NOINLINE __attribute__((noinline))
#else
#define BENCH_NOINLINE
#endif

#define N_EV 64               /* events cycled through: branch history stays honest */
#define MAX_ROWS 24

static void die(const char *what) {
    fprintf(stderr, "bench_micro: %s\n", what);
    exit(1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ==== fixtures =========================================================== */

static char *ev_text[N_EV];
static size_t ev_len[N_EV], ev_total;
static stws_json_doc ev_doc[N_EV];          /* parsed once, eagerly (tokens) */
static stws_json_tokens ev_tok[N_EV];
static stws_json_doc ev_ldoc[N_EV];         /* parsed once, as the client does (lazy) */
static stws_json_tokens ev_lazy[N_EV];
static int ev_ntok_total;

static stws_json_tokens scratch_tok;        /* the parse rows' reused arrays */

/* A channel with 20 members (PROTOCOL.md: channel.updated), both kinds. */
static char members_text[8192];
static size_t members_len;
static stws_json_doc members_doc, members_tdoc;
static stws_json_tokens members_tok;
static jsmntok_t jsmn_tok[4096];

static const char secret[] = "bench-secret-8c1f2e7a9b3d4c5e6f708192a3b4c5d6";
static char token[512];                     /* a real user token, for the writer */
static size_t token_len;

static volatile uint64_t sink;              /* results go here: nothing is dead code */

static void fixtures(void) {
    bw_rng r = BW_SEED;
    stws_jwt_claims cl = {"user-123", 1764653758, 1764650158};
    int i;
    (void)bw_stream; /* workload.h's whole-stream builder: not needed here */
    for (i = 0; i < N_EV; i++) {
        char buf[2100];
        size_t n = bw_event(&r, buf, sizeof buf);
        if (!n || !(ev_text[i] = (char *)malloc(n))) die("workload");
        memcpy(ev_text[i], buf, n);
        ev_len[i] = n;
        ev_total += n;
        if (stws_json_tokenize(&ev_tok[i], ev_text[i], n, &ev_doc[i]) != STWS_OK)
            die("an event of the workload does not parse");
        ev_ntok_total += ev_tok[i].count;
        if (stws__json_event_parse(ev_text[i], n, 1, &ev_lazy[i], 0, 65536, &ev_ldoc[i], NULL) !=
            STWS_OK)
            die("an event of the workload is not an event");
    }
    {
        size_t o = (size_t)snprintf(members_text, sizeof members_text,
                                    "{\"type\":\"channel.updated\",\"cid\":\"messaging:lobby\",\"members\":[");
        for (i = 0; i < 20; i++)
            o += (size_t)snprintf(members_text + o, sizeof members_text - o,
                                  "%s{\"user_id\":\"user-%d\",\"user\":{\"id\":\"user-%d\",\"name\":\"Player %d\","
                                  "\"online\":%s,\"role\":\"user\"},\"role\":\"member\","
                                  "\"created_at\":\"2026-11-30T10:%02d:00.000Z\",\"banned\":false}",
                                  i ? "," : "", i, i, i, i & 1 ? "true" : "false", i);
        o += (size_t)snprintf(members_text + o, sizeof members_text - o, "],\"member_count\":20}");
        members_len = o;
        if (stws_json_doc_init(&members_doc, members_text, members_len) != STWS_OK ||
            stws_json_tokenize(&members_tok, members_text, members_len, &members_tdoc) != STWS_OK)
            die("members fixture");
    }
    if (stws_jwt_user_token(secret, sizeof secret - 1, &cl, token, sizeof token, &token_len) != STWS_OK)
        die("stws_jwt_user_token failed");
}

/* ==== rows =============================================================== */

/* Each row makes n calls; events are taken in turn. */

static uint64_t row_jwt(size_t n) {
    stws_jwt_claims cl = {"user-123", 1764653758, 1764650158};
    char out[512];
    size_t i, len = 0;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) {
        cl.iat = 1764650158 + (int64_t)(i & 1023); /* a fresh token each time */
        if (stws_jwt_user_token(secret, sizeof secret - 1, &cl, out, sizeof out, &len) != STWS_OK)
            die("jwt");
        acc += len;
    }
    return acc;
}

/* What the client does with every inbound text message: one tokenless pass
   (RFC 8259 grammar, limits, the top-level "type"); the codec has checked the
   UTF-8 already.  No tokens: look-ups walk the checked text. */
static stws_json_tokens lazy, eager;
static uint64_t row_event_parse(size_t n) {
    size_t i;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) {
        stws_json_doc d;
        stws_str t;
        int k = (int)(i % N_EV);
        if (stws__json_event_parse(ev_text[k], ev_len[k], 1, &lazy, 0, 65536, &d, &t) != STWS_OK)
            die("event parse");
        acc += t.len;
    }
    return acc;
}

/* The same with desc.tokenize_events: the pass, jsmn into the client's
   reused tokens, the token-by-token check. */
static uint64_t row_event_parse_tokens(size_t n) {
    size_t i;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) {
        stws_json_doc d;
        stws_str t;
        int k = (int)(i % N_EV);
        if (stws__json_event_parse(ev_text[k], ev_len[k], 1, &eager, 1, 65536, &d, &t) != STWS_OK)
            die("event parse, tokens");
        acc += t.len + (uint64_t)eager.count;
    }
    return acc;
}

/* The client's path plus one look-up, as an app that reads a field of
   every event does (bench/loop_ours.c "lookup" in-process). */
static uint64_t row_event_lookup(size_t n) {
    size_t i, len;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) {
        stws_json_doc d;
        stws_str t;
        char id[64];
        int k = (int)(i % N_EV);
        if (stws__json_event_parse(ev_text[k], ev_len[k], 1, &lazy, 0, 65536, &d, &t) != STWS_OK ||
            stws_json_string_at(&d, "user.id", id, sizeof id, &len) != STWS_OK)
            die("event parse + user.id");
        acc += t.len + len;
    }
    return acc;
}

/* The same event, eagerly: the pass, UTF-8, jsmn and the token-by-token
   check (stws_json_tokenize, a user's token document). */
static uint64_t row_parse(size_t n) {
    size_t i;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) {
        stws_json_doc d;
        int k = (int)(i % N_EV);
        if (stws_json_tokenize(&scratch_tok, ev_text[k], ev_len[k], &d) != STWS_OK) die("parse");
        acc += (uint64_t)scratch_tok.count;
    }
    return acc;
}

/* jsmn alone, same configuration (strict, parent links): the tokenizer
   without the validation that makes its output safe to hand out. */
static uint64_t row_jsmn(size_t n) {
    size_t i;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) {
        jsmn_parser p;
        int k = (int)(i % N_EV), t;
        jsmn_init(&p);
        t = jsmn_parse(&p, ev_text[k], ev_len[k], jsmn_tok, sizeof jsmn_tok / sizeof jsmn_tok[0]);
        if (t < 1) die("jsmn");
        acc += (uint64_t)t;
    }
    return acc;
}

static uint64_t row_event_type(size_t n) {
    size_t i;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) {
        stws_str t;
        if (stws_json_find(&ev_doc[i % N_EV], "type", &t) != STWS_JSON_STRING) die("event type");
        acc += t.len;
    }
    return acc;
}

static uint64_t row_find(size_t n) {
    size_t i;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) {
        stws_str v;
        if (stws_json_find(&ev_ldoc[i % N_EV], "message.text", &v) != STWS_JSON_STRING) die("find");
        acc += v.len;
    }
    return acc;
}

static uint64_t row_find_tokens(size_t n) {
    size_t i;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) {
        stws_str v;
        if (stws_json_find(&ev_doc[i % N_EV], "message.text", &v) != STWS_JSON_STRING) die("find");
        acc += v.len;
    }
    return acc;
}

/* Five look-ups on one event: is a walk per look-up still cheaper than
   tokens?  (On tokens add the eager parse's jsmn and check to this row.) */
static uint64_t five(const stws_json_doc *d) {
    static const char *const paths[5] = {"type", "user.id", "user.name", "message.id", "message.text"};
    uint64_t acc = 0;
    int j;
    for (j = 0; j < 5; j++) {
        stws_str v;
        if (stws_json_find(d, paths[j], &v) != STWS_JSON_STRING) die("five");
        acc += v.len;
    }
    return acc;
}
static uint64_t row_five(size_t n) {
    size_t i;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) acc += five(&ev_ldoc[i % N_EV]);
    return acc;
}
static uint64_t row_five_tokens(size_t n) {
    size_t i;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) acc += five(&ev_doc[i % N_EV]);
    return acc;
}

static uint64_t row_string_name(size_t n) {
    size_t i, len;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) {
        char buf[64];
        if (stws_json_string_at(&ev_ldoc[i % N_EV], "user.name", buf, sizeof buf, &len) != STWS_OK)
            die("user.name");
        acc += len;
    }
    return acc;
}

static uint64_t row_string_text(size_t n) {
    size_t i, len;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) {
        char buf[2100];
        if (stws_json_string_at(&ev_ldoc[i % N_EV], "message.text", buf, sizeof buf, &len) != STWS_OK)
            die("message.text");
        acc += len;
    }
    return acc;
}

static uint64_t row_bool(size_t n) {
    size_t i;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) {
        int b;
        if (stws_json_bool_at(&ev_ldoc[i % N_EV], "user.online", &b) != STWS_OK) die("user.online");
        acc += (uint64_t)b;
    }
    return acc;
}

/* Every member's user.id of a 20-member channel: a cursor over "members"
   and a look-up relative to each member (linear in all). */
static uint64_t iterate20(const stws_json_doc *d) {
    stws_json_value m, e, id;
    stws_json_iter it;
    uint64_t acc = 0;
    if (stws_json_get(d, "members", &m) != STWS_JSON_ARRAY || stws_json_iter_init(&it, &m) != STWS_OK)
        die("members");
    while (stws_json_next(&it, NULL, &e)) {
        if (stws_json_get_in(&e, "user.id", &id) != STWS_JSON_STRING) die("member user.id");
        acc += id.raw.len;
    }
    if (acc != 10 * 6 + 10 * 7) die("iterate20 sum");
    return acc;
}
static uint64_t row_iterate20(size_t n) {
    size_t i;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) acc += iterate20(&members_doc);
    return acc;
}
static uint64_t row_iterate20_tokens(size_t n) {
    size_t i;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) acc += iterate20(&members_tdoc);
    return acc;
}
/* The way without cursors: "members.N.user.id" for N = 0..19, each from
   the root (quadratic in the members). */
static uint64_t row_probe20(size_t n) {
    size_t i;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) {
        int k;
        for (k = 0; k < 20; k++) {
            char path[32];
            stws_str v;
            snprintf(path, sizeof path, "members.%d.user.id", k);
            if (stws_json_find(&members_doc, path, &v) != STWS_JSON_STRING) die("probe");
            acc += v.len;
        }
    }
    return acc;
}

/* The shape of the client's auth message (PROTOCOL.md §2), with a real
   token and a custom object, which the writer re-validates as raw JSON. */
static uint64_t row_writer(size_t n) {
    static const char custom[] = "{\"level\":12,\"team\":\"red\",\"badges\":[\"gg\",\"mvp\"]}";
    size_t i, len = 0;
    uint64_t acc = 0;
    for (i = 0; i < n; i++) {
        char out[1024];
        stws_json_writer w;
        stws_json_write_init(&w, out, sizeof out);
        stws_json_write_object_begin(&w);
        stws_json_write_key(&w, "token");
        stws_json_write_string_n(&w, token, token_len);
        stws_json_write_key(&w, "user_details");
        stws_json_write_object_begin(&w);
        stws_json_write_key(&w, "id");
        stws_json_write_string(&w, "user-123");
        stws_json_write_key(&w, "name");
        stws_json_write_string(&w, "Player 123 \xF0\x9F\x8E\xAE");
        stws_json_write_key(&w, "image");
        stws_json_write_string(&w, "https://example.com/avatars/user-123.png?size=128");
        stws_json_write_key(&w, "custom");
        stws_json_write_raw(&w, custom, sizeof custom - 1);
        stws_json_write_object_end(&w);
        stws_json_write_key(&w, "products");
        stws_json_write_array_begin(&w);
        stws_json_write_string(&w, "chat");
        stws_json_write_string(&w, "video");
        stws_json_write_array_end(&w);
        stws_json_write_object_end(&w);
        if (stws_json_write_finish(&w, &len) != STWS_OK) die("writer");
        acc += len;
    }
    return acc;
}

typedef struct row {
    const char *key, *what;
    uint64_t (*fn)(size_t n);
} row;

static const row rows[] = {
    {"jwt", "JWT mint, HS256 user token (`stws_jwt_user_token`)", row_jwt},
    {"event-parse", "event parse as the client: tokenless pass + type (`stws__json_event_parse`, lazy default)", row_event_parse},
    {"event-parse-tokens", "event parse with desc.tokenize_events: pass + jsmn + token check, reused tokens", row_event_parse_tokens},
    {"event-lookup", "event parse + `stws_json_string_at(doc, \"user.id\")` (an app reading one field)", row_event_lookup},
    {"parse", "eager parse: pass + UTF-8 + jsmn + token check (`stws_json_tokenize`)", row_parse},
    {"jsmn", "reference: `jsmn_parse` alone, same events (strict, parent links)", row_jsmn},
    {"event-type", "event type from tokens (`stws_json_find(doc, \"type\")`, token document)", row_event_type},
    {"find", "`stws_json_find(doc, \"message.text\")` (raw view, walk)", row_find},
    {"find-tokens", "the same on the eager document's tokens", row_find_tokens},
    {"five", "five `stws_json_find` (type, user.id, user.name, message.id, message.text), walk", row_five},
    {"five-tokens", "the same five on tokens (plus jsmn and the check to get them)", row_five_tokens},
    {"string-name", "`stws_json_string_at(doc, \"user.name\")` (unescaped copy)", row_string_name},
    {"string-text", "`stws_json_string_at(doc, \"message.text\")` (unescaped copy)", row_string_text},
    {"bool", "`stws_json_bool_at(doc, \"user.online\")`", row_bool},
    {"iterate20", "20 members: cursor over `members` + `stws_json_get_in(member, \"user.id\")`, lazy", row_iterate20},
    {"iterate20-tokens", "the same on a token document", row_iterate20_tokens},
    {"probe20", "the same by index paths `members.N.user.id` from the root, lazy (no cursor)", row_probe20},
    {"writer", "JSON writer: auth message (token, user_details, raw custom, products)", row_writer},
};
#define N_ROWS ((int)(sizeof rows / sizeof rows[0]))

/* ==== timing ============================================================= */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Calls per run so that one run lasts about 20 ms: long against the clock
   and a scheduler tick, short enough for many alternating runs. */
static size_t calibrate(const row *r) {
    size_t n = 16;
    for (;;) {
        double t0 = now(), t;
        sink += r->fn(n);
        t = now() - t0;
        if (t >= 0.005) return (size_t)((double)n * 0.020 / t) + 1;
        n *= 2;
    }
}

static double lookup_count(const char *path, const char *key) {
    char k[64];
    double ins;
    unsigned long calls;
    FILE *f;
    if (!path || !(f = fopen(path, "r"))) return -1;
    while (fscanf(f, "%63s %lf %lu", k, &ins, &calls) == 3)
        if (!strcmp(k, key) && calls) {
            fclose(f);
            return ins / (double)calls;
        }
    fclose(f);
    return -1;
}

static void run_table(int rounds, const char *counts) {
    size_t iters[MAX_ROWS];
    double t[MAX_ROWS][64];
    int i, k;
    for (i = 0; i < N_ROWS; i++) iters[i] = calibrate(&rows[i]);
    for (k = 0; k < rounds; k++)
        for (i = 0; i < N_ROWS; i++) {
            double t0 = now();
            sink += rows[i].fn(iters[i]);
            t[i][k] = (now() - t0) / (double)iters[i];
        }
    printf("**Micro: per call, %d Stream events of mean %.0f B and %.0f tokens in turn**, median of %d "
           "alternating runs\n\n",
           N_EV, (double)ev_total / N_EV, (double)ev_ntok_total / N_EV, rounds);
    printf("| Operation | ns/call | instructions/call |\n|---|--:|--:|\n");
    for (i = 0; i < N_ROWS; i++) {
        double ins = lookup_count(counts, rows[i].key);
        char cell[32];
        qsort(t[i], (size_t)rounds, sizeof t[i][0], cmp_double);
        if (ins >= 0) snprintf(cell, sizeof cell, "%.0f", ins);
        else snprintf(cell, sizeof cell, "-");
        printf("| %s | %.0f | %s |\n", rows[i].what, t[i][rounds / 2] * 1e9, cell);
    }
    printf("\nNotes: the auth message is %zu B with a %zu B token.  Look-ups run on documents parsed "
           "beforehand, as the client delivers them (lazy: each look-up walks the text) unless the row "
           "says tokens; the eager parse row reuses one token array.  JWT minting "
           "includes mbedTLS's HMAC set-up, which allocates.\n",
           (size_t)row_writer(1), token_len);
}

/* ==== instruction counts ================================================= */

/* Only bench_measured is collected (--toggle-collect): fixtures and the
   warm-up run (first-time growth of the token array) are left out. */
BENCH_NOINLINE uint64_t bench_warm(const row *r, size_t n);
BENCH_NOINLINE uint64_t bench_measured(const row *r, size_t n);
BENCH_NOINLINE uint64_t bench_warm(const row *r, size_t n) { return r->fn(n); }
BENCH_NOINLINE uint64_t bench_measured(const row *r, size_t n) { return r->fn(n); }

int main(int argc, char **argv) {
    int i;
    fixtures();
    if (argc >= 2 && !strcmp(argv[1], "keys")) {
        for (i = 0; i < N_ROWS; i++) printf("%s\n", rows[i].key);
    } else if (argc >= 4 && !strcmp(argv[1], "count")) {
        size_t n = (size_t)strtoul(argv[3], NULL, 10);
        for (i = 0; i < N_ROWS && strcmp(rows[i].key, argv[2]); i++) {}
        if (i == N_ROWS || !n) die("count: unknown row or zero calls");
        sink += bench_warm(&rows[i], n);
        sink += bench_measured(&rows[i], n);
        printf("%s %zu\n", rows[i].key, n);
    } else {
        int rounds = argc >= 2 ? atoi(argv[1]) : 9;
        if (rounds < 1 || rounds > 64) die("rounds: 1..64");
        run_table(rounds, argc >= 3 ? argv[2] : NULL);
    }
    for (i = 0; i < N_EV; i++) {
        free(ev_text[i]);
        stws_json_tokens_free(&ev_tok[i]);
    }
    stws_json_tokens_free(&scratch_tok);
    stws_json_tokens_free(&eager);
    stws_json_tokens_free(&members_tok);
    return 0;
}
