/* stws — a command-line WebSocket client built on stream_ws.h.

   stws echo URL [options]   echo every message back (conformance client)
   stws cat URL [options]    stdin lines -> messages, messages -> stdout lines
   stws listen [options]     a Stream client: events -> stdout lines, stdin -> send queue

   options: --binary  --header 'K: V'  --subprotocol P  --origin O
            --ca FILE  --insecure  --proxy URL  --proxy-env  --timeout SECONDS
            --events (also print "stws: event error: RESULT: DETAIL" and
            "stws: event close: code=N clean=0|1" on stderr, for tests)
   Exit status (echo, cat): 0 after a clean closing handshake, 1 on any other
   end (with a one-line reason on stderr), 2 on a usage error.
   Exit status (listen): 0 on a normal end (server close 1000, --max-events
   reached), 3 on a fatal auth error, 4 when attempts are exhausted, 2 on a
   usage error, 1 otherwise. */
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"

#include <errno.h>
#include <signal.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LIST 32

typedef struct options {
    const char *mode, *url;
    int binary, insecure, proxy_env, events;
    const char *ca, *proxy, *origin;
    int timeout_ms;
    stws_header headers[MAX_LIST];
    int nheaders;
    const char *protos[MAX_LIST];
    int nprotos;
    char header_store[MAX_LIST][512];
} options;

static int usage(const char *why) {
    fprintf(stderr, "stws: %s\n"
            "usage: stws echo URL [--ca FILE] [--insecure] [--proxy URL] [--timeout S]\n"
            "       stws cat URL [--binary] [--header 'K: V'] [--subprotocol P] [--origin O]\n"
            "                    [--ca FILE] [--insecure] [--proxy URL] [--proxy-env] [--timeout S]\n"
            "       stws listen [--url URL] --api-key KEY --user-id ID (--secret S | --token JWT)\n"
            "                   [--products LIST] [--max-events N] [--user-name NAME] [--max-attempts N]\n"
            "                   [--ca FILE] [--insecure] [--health-interval MS] [--dead-timeout MS]\n"
            "                   [--backoff-cap MS]\n"
            "         env: STREAM_WS_URL STREAM_API_KEY STREAM_API_SECRET STREAM_USER_ID STREAM_TOKEN\n",
            why);
    return 2;
}

static void quiet_log(stws_log_level level, const char *msg, void *ud) {
    (void)ud;
    /* errors are reported once, as the exit reason; warnings (insecure) go out */
    if (level == STWS_LOG_WARN) fprintf(stderr, "stws: warning: %s\n", msg);
}

static int parse_args(int argc, char **argv, options *o) {
    int i;
    memset(o, 0, sizeof *o);
    if (argc < 2) return usage("missing mode");
    o->mode = argv[1];
    if (strcmp(o->mode, "echo") != 0 && strcmp(o->mode, "cat") != 0) return usage("unknown mode");
    for (i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--binary") == 0) o->binary = 1;
        else if (strcmp(a, "--insecure") == 0) o->insecure = 1;
        else if (strcmp(a, "--proxy-env") == 0) o->proxy_env = 1;
        else if (strcmp(a, "--events") == 0) o->events = 1;
        else if (a[0] == '-' && a[1] == '-' && !v) return usage("option needs a value");
        else if (strcmp(a, "--ca") == 0) o->ca = argv[++i];
        else if (strcmp(a, "--proxy") == 0) o->proxy = argv[++i];
        else if (strcmp(a, "--origin") == 0) o->origin = argv[++i];
        else if (strcmp(a, "--timeout") == 0) {
            double s = atof(argv[++i]);
            if (s <= 0) return usage("bad --timeout");
            o->timeout_ms = (int)(s * 1000);
        } else if (strcmp(a, "--subprotocol") == 0) {
            if (o->nprotos == MAX_LIST) return usage("too many subprotocols");
            o->protos[o->nprotos++] = argv[++i];
        } else if (strcmp(a, "--header") == 0) {
            char *h, *colon;
            if (o->nheaders == MAX_LIST) return usage("too many headers");
            h = o->header_store[o->nheaders];
            snprintf(h, sizeof o->header_store[0], "%s", argv[++i]);
            colon = strchr(h, ':');
            if (!colon) return usage("--header needs 'Name: value'");
            *colon++ = 0;
            while (*colon == ' ') colon++;
            o->headers[o->nheaders].name = h;
            o->headers[o->nheaders].value = colon;
            o->nheaders++;
        } else if (a[0] == '-' && a[1] == '-') return usage("unknown option");
        else if (!o->url) o->url = a;
        else return usage("more than one URL");
    }
    if (!o->url) return usage("missing URL");
    return 0;
}

/* Lines from stdin, sent once the connection is open. */
typedef struct line_reader {
    char *buf;
    size_t len, cap;
    int eof;
} line_reader;

#define MAX_LINE ((size_t)16 << 20) /* the default max_message_size */

static int send_line(stws_conn *c, const options *o, const char *p, size_t n) {
    stws_result r = stws_conn_send(c, o->binary ? STWS_OP_BINARY : STWS_OP_TEXT, p, n);
    if (r != STWS_OK) {
        fprintf(stderr, "stws: send: %s\n", stws_result_string(r));
        return -1;
    }
    return 0;
}

static int read_stdin(stws_conn *c, const options *o, line_reader *lr) {
    ssize_t n;
    size_t start = 0, i;
    if (lr->cap - lr->len < 4096 && lr->cap < MAX_LINE) {
        size_t cap = lr->cap ? lr->cap * 2 : 65536;
        char *nb = (char *)realloc(lr->buf, cap);
        if (!nb) return -1;
        lr->buf = nb;
        lr->cap = cap;
    }
    n = read(0, lr->buf + lr->len, lr->cap - lr->len);
    if (n < 0) return errno == EINTR || errno == EAGAIN ? 0 : -1;
    if (n == 0) {
        lr->eof = 1;
        if (lr->len && send_line(c, o, lr->buf, lr->len) < 0) return -1;
        lr->len = 0;
        return 0;
    }
    lr->len += (size_t)n;
    for (i = 0; i < lr->len; i++) {
        if (lr->buf[i] != '\n') continue;
        if (send_line(c, o, lr->buf + start, i - start) < 0) return -1;
        start = i + 1;
    }
    memmove(lr->buf, lr->buf + start, lr->len - start);
    lr->len -= start;
    if (lr->len == MAX_LINE) { /* a line over the message limit goes in pieces */
        if (send_line(c, o, lr->buf, lr->len) < 0) return -1;
        lr->len = 0;
    }
    return 0;
}

static int listen_main(int argc, char **argv);

int main(int argc, char **argv) {
    options o;
    stws_conn_desc d;
    stws_conn *c;
    stws_url u;
    stws_result r;
    line_reader *lr = NULL;
    int echo, status = 1, done = 0, stdin_open;
    char reason[300] = "";

    if (argc >= 2 && strcmp(argv[1], "listen") == 0) return listen_main(argc, argv);
    if ((status = parse_args(argc, argv, &o)) != 0) return status;
    if ((r = stws_url_parse(o.url, &u)) != STWS_OK) {
        fprintf(stderr, "stws: bad URL: %s\n", stws_result_string(r));
        return 2;
    }
    echo = strcmp(o.mode, "echo") == 0;
    memset(&d, 0, sizeof d);
    d.url = o.url;
    d.ca_file = o.ca;
    d.insecure = o.insecure;
    d.proxy = o.proxy;
    d.proxy_from_env = o.proxy_env;
    d.origin = o.origin;
    d.headers = o.headers;
    d.num_headers = o.nheaders;
    d.subprotocols = o.protos;
    d.num_subprotocols = o.nprotos;
    d.connect_timeout_ms = o.timeout_ms;
    d.close_timeout_ms = o.timeout_ms;
    d.logger.func = quiet_log;
    c = stws_conn_create(&d);
    if (!c) {
        fprintf(stderr, "stws: cannot set up the connection (bad header, proxy URL or CA file?)\n");
        return 1;
    }
    if ((r = stws_conn_connect(c)) != STWS_OK) {
        fprintf(stderr, "stws: connect: %s\n", stws_result_string(r));
        stws_conn_destroy(c);
        return 1;
    }
    if (!echo) {
        lr = (line_reader *)calloc(1, sizeof *lr);
        if (!lr) return 1;
    }
    stdin_open = !echo;
    status = 1;
    while (!done) {
        stws_conn_event ev;
        struct pollfd p[2];
        int np = 0, t = stws_conn_timeout(c), w = stws_conn_wants(c);
        intptr_t h = stws_conn_handle(c);
        if (h >= 0 && w) {
            p[np].fd = (int)h;
            p[np].events = (short)(((w & STWS_POLL_READ) ? POLLIN : 0) | ((w & STWS_POLL_WRITE) ? POLLOUT : 0));
            p[np].revents = 0;
            np++;
        }
        if (stdin_open && stws_conn_get_state(c) == STWS_CONN_OPEN && stws_conn_buffered(c) < (1u << 20)) {
            p[np].fd = 0;
            p[np].events = POLLIN;
            p[np].revents = 0;
            np++;
        }
        if (t < 0 || t > 1000) t = 1000;
        if (np) (void)poll(p, (nfds_t)np, t);
        if (np && p[np - 1].fd == 0 && (p[np - 1].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (read_stdin(c, &o, lr) < 0) {
                snprintf(reason, sizeof reason, "stdin read failed");
                stws_conn_close(c, STWS_CLOSE_NORMAL, NULL);
                stdin_open = 0;
            } else if (lr->eof) {
                stdin_open = 0;
                stws_conn_close(c, STWS_CLOSE_NORMAL, NULL);
            }
        }
        stws_conn_step(c);
        while (!done && stws_conn_next_event(c, &ev)) {
            switch (ev.type) {
            case STWS_CONN_EVENT_MESSAGE:
                if (echo) {
                    r = stws_conn_send(c, ev.opcode, ev.data, ev.len);
                    if (r != STWS_OK && !reason[0])
                        snprintf(reason, sizeof reason, "echo: %s", stws_result_string(r));
                } else {
                    fwrite(ev.data, 1, ev.len, stdout);
                    fputc('\n', stdout);
                    fflush(stdout);
                }
                break;
            case STWS_CONN_EVENT_ERROR:
                if (!reason[0]) snprintf(reason, sizeof reason, "%s", stws_conn_error_detail(c));
                if (o.events)
                    fprintf(stderr, "stws: event error: %s: %s\n", stws_result_string(ev.error),
                            stws_conn_error_detail(c));
                break;
            case STWS_CONN_EVENT_CLOSE:
                if (o.events) fprintf(stderr, "stws: event close: code=%d clean=%d\n", ev.close_code, ev.clean);
                done = 1;
                if (ev.clean && !reason[0]) {
                    status = 0;
                } else {
                    status = 1;
                    if (!reason[0])
                        snprintf(reason, sizeof reason, "connection closed abnormally (code %d)", ev.close_code);
                }
                break;
            default: break;
            }
        }
    }
    if (status != 0) fprintf(stderr, "stws: %s\n", reason);
    stws_conn_destroy(c);
    if (lr) free(lr->buf);
    free(lr);
    return status;
}

/* ---- listen: the Stream client ------------------------------------------ */

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

typedef struct listen_state {
    long max_events, printed;
    int exit_status, done;
} listen_state;

static void listen_log(stws_log_level level, const char *msg, void *ud) {
    (void)ud;
    /* errors arrive as DISCONNECTED/FATAL events and are printed there */
    if (level == STWS_LOG_WARN) fprintf(stderr, "stws: warning: %s\n", msg);
}

static int listen_usage(const char *why) {
    fprintf(stderr, "stws: %s\n"
            "usage: stws listen [--url URL] --api-key KEY --user-id ID (--secret SECRET | --token JWT)\n"
            "                   [--products LIST] [--max-events N] [--user-name NAME] [--max-attempts N]\n"
            "                   [--ca FILE] [--insecure] [--health-interval MS] [--dead-timeout MS]\n"
            "                   [--backoff-cap MS]\n"
            "       fallbacks: STREAM_WS_URL STREAM_API_KEY STREAM_API_SECRET STREAM_USER_ID STREAM_TOKEN\n",
            why);
    return 2;
}

static const char *env_or(const char *v, const char *name) {
    const char *e;
    if (v) return v;
    e = getenv(name);
    return e && *e ? e : NULL;
}

static int listen_main(int argc, char **argv) {
    stws_client_desc d;
    stws_client *c;
    listen_state st;
    line_reader lr;
    const char *url = NULL, *key = NULL, *uid = NULL, *secret = NULL, *token = NULL;
    int i, stdin_open = 1;
    memset(&d, 0, sizeof d);
    memset(&st, 0, sizeof st);
    memset(&lr, 0, sizeof lr);
    st.max_events = -1;
    for (i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--insecure") == 0) { d.conn.insecure = 1; continue; }
        if (a[0] != '-' || a[1] != '-') return listen_usage("unexpected argument");
        if (!v) return listen_usage("option needs a value");
        i++;
        if (strcmp(a, "--url") == 0) url = v;
        else if (strcmp(a, "--api-key") == 0) key = v;
        else if (strcmp(a, "--user-id") == 0) uid = v;
        else if (strcmp(a, "--secret") == 0) secret = v;
        else if (strcmp(a, "--token") == 0) token = v;
        else if (strcmp(a, "--products") == 0) d.products = v;
        else if (strcmp(a, "--user-name") == 0) d.user_name = v;
        else if (strcmp(a, "--ca") == 0) d.conn.ca_file = v;
        else if (strcmp(a, "--max-events") == 0) {
            char *end;
            st.max_events = strtol(v, &end, 10);
            if (*end || st.max_events <= 0) return listen_usage("bad --max-events");
        } else if (strcmp(a, "--max-attempts") == 0) d.max_attempts = atoi(v);
        else if (strcmp(a, "--health-interval") == 0) d.health_interval_ms = atoi(v);
        else if (strcmp(a, "--dead-timeout") == 0) d.dead_timeout_ms = atoi(v);
        else if (strcmp(a, "--backoff-cap") == 0) d.backoff_cap_ms = atoi(v);
        else return listen_usage("unknown option");
    }
    url = env_or(url, "STREAM_WS_URL");
    key = env_or(key, "STREAM_API_KEY");
    uid = env_or(uid, "STREAM_USER_ID");
    if (!secret && !token) {
        secret = env_or(NULL, "STREAM_API_SECRET");
        token = secret ? NULL : env_or(NULL, "STREAM_TOKEN");
    }
    if (!key) return listen_usage("missing --api-key (or STREAM_API_KEY)");
    if (!uid) return listen_usage("missing --user-id (or STREAM_USER_ID)");
    if (!secret && !token) return listen_usage("missing --secret or --token (or STREAM_API_SECRET / STREAM_TOKEN)");
    if (secret && token) return listen_usage("give --secret or --token, not both");
    if (url) {
        stws_url u;
        if (stws_url_parse(url, &u) != STWS_OK) return listen_usage("bad --url");
    }
    d.url = url;
    d.api_key = key;
    d.user_id = uid;
    d.api_secret = secret;
    d.token = token;
    d.logger.func = listen_log;
    c = stws_client_create(&d);
    if (!c) return listen_usage("invalid settings");
    if (stws_client_connect(c) != STWS_OK) return 1;
    {
        /* Ctrl-C / SIGTERM: close 1000 and end normally */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    st.exit_status = 1;
    while (!st.done) {
        if (stop_requested == 1) {
            stop_requested = 2;
            st.exit_status = 0;
            stws_client_close(c);
        }
        stws_client_event ev;
        struct pollfd p[2];
        int np = 0, t = stws_client_timeout(c), w = stws_client_wants(c);
        intptr_t h = stws_client_handle(c);
        if (h >= 0 && w) {
            p[np].fd = (int)h;
            p[np].events = (short)(((w & STWS_POLL_READ) ? POLLIN : 0) | ((w & STWS_POLL_WRITE) ? POLLOUT : 0));
            p[np].revents = 0;
            np++;
        }
        if (stdin_open && stws_client_queued(c) < (512u << 10)) {
            p[np].fd = 0;
            p[np].events = POLLIN;
            p[np].revents = 0;
            np++;
        }
        if (t < 0 || t > 1000) t = 1000;
        (void)poll(np ? p : NULL, (nfds_t)np, t);
        if (np && p[np - 1].fd == 0 && (p[np - 1].revents & (POLLIN | POLLHUP | POLLERR))) {
            /* each line goes through the send queue, so none is lost across drops */
            ssize_t n;
            size_t start = 0, k;
            if (lr.cap - lr.len < 4096) {
                size_t cap = lr.cap ? lr.cap * 2 : 65536;
                char *nb = (char *)realloc(lr.buf, cap);
                if (!nb) break;
                lr.buf = nb;
                lr.cap = cap;
            }
            n = read(0, lr.buf + lr.len, lr.cap - lr.len);
            if (n <= 0) {
                if (n == 0 || (errno != EINTR && errno != EAGAIN)) stdin_open = 0;
                if (n == 0 && lr.len) (void)stws_client_send(c, lr.buf, lr.len);
                lr.len = 0;
            } else {
                lr.len += (size_t)n;
                for (k = 0; k < lr.len; k++) {
                    size_t e = k;
                    stws_result r;
                    if (lr.buf[k] != '\n') continue;
                    if (e > start && lr.buf[e - 1] == '\r') e--;
                    /* a line is one JSON message (the client refuses anything
                       else); a blank line is skipped */
                    r = e > start ? stws_client_send(c, lr.buf + start, e - start) : STWS_OK;
                    if (r != STWS_OK) fprintf(stderr, "stws: send: %s\n", stws_result_string(r));
                    start = k + 1;
                }
                memmove(lr.buf, lr.buf + start, lr.len - start);
                lr.len -= start;
            }
        }
        stws_client_step(c);
        while (!st.done && stws_client_next_event(c, &ev)) {
            switch (ev.type) {
            case STWS_CLIENT_EVENT_SERVER:
                /* events still arriving during the closing handshake are not printed */
                if (st.max_events > 0 && st.printed >= st.max_events) break;
                fwrite(ev.json.ptr, 1, ev.json.len, stdout);
                fputc('\n', stdout);
                fflush(stdout);
                if (st.max_events > 0 && ++st.printed >= st.max_events) {
                    st.exit_status = 0;
                    stws_client_close(c);
                }
                break;
            case STWS_CLIENT_EVENT_CONNECTED:
                fprintf(stderr, "stws: connected connection_id=%.*s\n", (int)ev.connection_id.len, ev.connection_id.ptr);
                break;
            case STWS_CLIENT_EVENT_RECONNECTED:
                fprintf(stderr, "stws: reconnected connection_id=%.*s\n", (int)ev.connection_id.len, ev.connection_id.ptr);
                break;
            case STWS_CLIENT_EVENT_DISCONNECTED:
                fprintf(stderr, "stws: disconnected (code %d): %.*s\n", ev.close_code, (int)ev.message.len, ev.message.ptr);
                break;
            case STWS_CLIENT_EVENT_RECONNECTING:
                fprintf(stderr, "stws: reconnecting: attempt %d in %d ms\n", ev.attempt, ev.delay_ms);
                break;
            case STWS_CLIENT_EVENT_MALFORMED:
                fprintf(stderr, "stws: malformed event ignored: %s\n", stws_result_string(ev.result));
                break;
            case STWS_CLIENT_EVENT_FATAL:
                fprintf(stderr, "stws: fatal: %s (code %d): %.*s\n", stws_result_string(ev.result), ev.error_code,
                        (int)ev.message.len, ev.message.ptr);
                st.exit_status = ev.result == STWS_ERR_AUTH ? 3 : ev.result == STWS_ERR_ATTEMPTS ? 4 : 1;
                st.done = 1;
                break;
            case STWS_CLIENT_EVENT_CLOSED:
                fprintf(stderr, "stws: closed\n");
                if (st.max_events < 0 || st.printed < st.max_events) st.exit_status = 0; /* server 1000 */
                st.done = 1;
                break;
            default: break;
            }
        }
    }
    stws_client_destroy(c);
    free(lr.buf);
    return st.exit_status;
}
