/* bench/size_main.c: the tiny firmware mains that bench/size.sh links with
   --gc-sections against one implementation object, so that only what a
   configuration reaches is counted.

   -DSIZE_CONFIG=1  the codec alone (stws_codec_*)
   -DSIZE_CONFIG=2  codec + handshake + connection (stws_conn_*, which drives
                    the handshake itself) over a user transport and clock
   -DSIZE_CONFIG=3  the whole Stream client (stws_client_*), JSON writer and
                    reader, JWT minter

   Every hook a firmware build must or would supply is given (allocator,
   random source, transport, clock), as an application would.  The values
   come from a volatile so the compiler cannot fold the calls away; nothing
   here is meant to run. */
#include "stream_ws.h"
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef SIZE_CONFIG
#define SIZE_CONFIG 3
#endif

volatile uintptr_t size_sink;
static unsigned char arena[64];

static void *fw_alloc(size_t n, void *ud) { (void)ud; return n <= sizeof arena ? arena : NULL; }
static void fw_free(void *p, void *ud) { (void)p; (void)ud; }
static int fw_random(void *buf, size_t len, void *ud) {
    unsigned char *b = (unsigned char *)buf;
    size_t i;
    (void)ud;
    for (i = 0; i < len; i++) b[i] = (unsigned char)(size_sink + i); /* a TRNG register */
    return 0;
}

#if SIZE_CONFIG == 3
static void on_message(stws_client *c, const stws_client_event *ev, void *ud) {
    (void)c; (void)ud;
    size_sink += ev->json.len;
}
#endif

#if SIZE_CONFIG >= 2
static int fw_open(void *ctx, const char *host, uint16_t port) {
    (void)ctx; (void)host; (void)port; return 0;
}
static int fw_send(void *ctx, const unsigned char *buf, size_t len) {
    (void)ctx; (void)buf; return (int)len;
}
static int fw_recv(void *ctx, unsigned char *buf, size_t len) {
    (void)ctx; (void)buf; (void)len; return STWS_WANT_READ;
}
static void fw_close(void *ctx) { (void)ctx; }
static uint64_t fw_now_ms(void *ud) { (void)ud; return (uint64_t)size_sink; }
static int64_t fw_unix_s(void *ud) { (void)ud; return (int64_t)size_sink; }
static stws_transport fw_transport(void) {
    stws_transport t;
    memset(&t, 0, sizeof t);
    t.open = fw_open;
    t.send = fw_send;
    t.recv = fw_recv;
    t.close = fw_close;
    return t;
}
#endif

int main(void) {
    uintptr_t acc = 0;
#if SIZE_CONFIG == 1
    stws_codec_desc d;
    stws_codec_event ev;
    stws_codec *c;
    size_t used = 0, n = 0;
    memset(&d, 0, sizeof d);
    d.allocator.alloc = fw_alloc;
    d.allocator.free = fw_free;
    d.random.fill = fw_random;
    c = stws_codec_create(&d);
    acc += (uintptr_t)stws_codec_parse(c, arena, (size_t)size_sink, &used, &ev);
    acc += (uintptr_t)stws_codec_send(c, STWS_OP_TEXT, arena, (size_t)size_sink);
    acc += (uintptr_t)stws_codec_close(c, STWS_CLOSE_NORMAL, "bye", 3);
    acc += (uintptr_t)stws_codec_output(c, &n);
    stws_codec_output_consumed(c, n);
    acc += (uintptr_t)stws_codec_get_state(c);
    stws_codec_reset(c);
    stws_codec_destroy(c);
    acc += used + (uintptr_t)ev.type;
#elif SIZE_CONFIG == 2
    stws_conn_desc d;
    stws_conn_event ev;
    stws_conn *c;
    memset(&d, 0, sizeof d);
    d.url = "ws://192.0.2.1/socket";
    d.transport = fw_transport();
    d.allocator.alloc = fw_alloc;
    d.allocator.free = fw_free;
    d.random.fill = fw_random;
    d.clock.now_ms = fw_now_ms;
    d.clock.unix_s = fw_unix_s;
    c = stws_conn_create(&d);
    acc += (uintptr_t)stws_conn_connect(c);
    acc += (uintptr_t)stws_conn_step(c);
    while (stws_conn_next_event(c, &ev)) acc += (uintptr_t)ev.len;
    acc += (uintptr_t)stws_conn_send(c, STWS_OP_TEXT, "hi", 2);
    acc += (uintptr_t)stws_conn_timeout(c) + (uintptr_t)stws_conn_wants(c);
    acc += (uintptr_t)stws_conn_buffered(c) + (uintptr_t)stws_conn_get_state(c);
    acc += (uintptr_t)stws_conn_close(c, STWS_CLOSE_NORMAL, "bye");
    acc += (uintptr_t)stws_conn_error_detail(c) + (uintptr_t)stws_conn_http_status(c);
    stws_conn_destroy(c);
#else
    stws_client_desc d;
    stws_client_event ev;
    stws_client *c;
    stws_json_writer w;
    char buf[256];
    int64_t iv = 0;
    int bv = 0;
    size_t n = 0;
    memset(&d, 0, sizeof d);
    d.url = "wss://chat.stream-io-api.com/api/v2/connect";
    d.api_key = "key";
    d.user_id = "device-1";
    d.api_secret = "secret";
    d.conn.transport = fw_transport(); /* e.g. the vendor's TLS socket */
    d.allocator.alloc = fw_alloc;
    d.allocator.free = fw_free;
    d.random.fill = fw_random;
    d.clock.now_ms = fw_now_ms;
    d.clock.unix_s = fw_unix_s;
    c = stws_client_create(&d);
    acc += (uintptr_t)stws_client_on(c, "message.new", on_message, NULL);
    acc += (uintptr_t)stws_client_connect(c);
    acc += (uintptr_t)stws_client_step(c);
    while (stws_client_next_event(c, &ev)) {
        if (stws_json_string_at(&ev.doc, "message.user.name", buf, sizeof buf, &n) == STWS_OK) acc += n;
        if (stws_json_int_at(&ev.doc, "watcher_count", &iv) == STWS_OK) acc += (uintptr_t)iv;
        if (stws_json_bool_at(&ev.doc, "message.silent", &bv) == STWS_OK) acc += (uintptr_t)bv;
        acc += (uintptr_t)stws_json_find(&ev.doc, "type", &ev.json);
    }
    stws_json_write_init(&w, buf, sizeof buf);
    stws_json_write_object_begin(&w);
    stws_json_write_key(&w, "type");
    stws_json_write_string(&w, "typing.start");
    stws_json_write_key(&w, "n");
    stws_json_write_int(&w, (int64_t)size_sink);
    stws_json_write_key(&w, "ok");
    stws_json_write_bool(&w, 1);
    stws_json_write_key(&w, "x");
    stws_json_write_null(&w);
    stws_json_write_key(&w, "custom");
    stws_json_write_raw(&w, "{}", 2);
    stws_json_write_key(&w, "list");
    stws_json_write_array_begin(&w);
    stws_json_write_string_n(&w, "a", 1);
    stws_json_write_array_end(&w);
    stws_json_write_object_end(&w);
    if (stws_json_write_finish(&w, &n) == STWS_OK) acc += (uintptr_t)stws_client_send(c, buf, n);
    acc += (uintptr_t)stws_jwt_user_token("secret", 6, NULL, buf, sizeof buf, &n);
    acc += (uintptr_t)stws_client_timeout(c) + (uintptr_t)stws_client_wants(c);
    acc += (uintptr_t)stws_client_queued(c) + (uintptr_t)stws_client_connection_id(c);
    acc += (uintptr_t)stws_client_close(c);
    stws_client_destroy(c);
#endif
    size_sink = acc;
    return 0;
}
