/* stream_ws.h - v0.2.0 - RFC 6455 WebSocket client for Stream's real-time events - MIT license (end of file)

   A single-header C library, in layers you can use alone:
     handshake  HTTP/1.1 upgrade request and response check (stws_handshake_*)
     codec      sans-I/O RFC 6455 framing (stws_codec_*): bytes in, events out
     http       sans-I/O HTTP/1.1 response parser (Content-Length, chunked,
                keep-alive, 1xx, limits) and request writer (stws_http_*)
     transports TCP, HTTP CONNECT proxy, TLS over any transport, or your own
     conn       a pumped WebSocket connection (stws_conn_*)
     json/jwt   strict reader (lazy documents: one tokenless pass, look-ups
                walk the checked text; token documents: jsmn into tokens you
                own; values, cursors, int64/double), escaping writer
                (stws_json_write_*), HS256 minter
     client     Stream's protocol: auth, health checks, reconnect, token
                refresh, a send queue kept across reconnects (stws_client_*;
                "PROTOCOL.md §N" below is docs/PROTOCOL.md in the repository)

   HOW TO INCLUDE
       In exactly one C or C++ file, before any other #include:
           #define STREAM_WS_IMPLEMENTATION
           #include "stream_ws.h"
       Everywhere else just #include "stream_ws.h".
       Link with mbedTLS:  -lmbedtls -lmbedx509 -lmbedcrypto
       and with threads:   -pthread (the default resolver's helper thread and
       stws_client_post(); glibc 2.34+ has them in libc, older libcs and other
       systems need the flag; none with STWS_NO_THREADS).
       (Debian: libmbedtls-dev, libjsmn-dev.  Written for mbedTLS 2.28, 3.x and
       4.x, switching on MBEDTLS_VERSION_NUMBER; tested with 2.28, 3.6 (also
       with MBEDTLS_USE_PSA_CRYPTO and TLS 1.2 only) and 4.0, where the link
       line is -lmbedtls -lmbedx509 -ltfpsacrypto; docs/mbedtls.md.)
       Windows (MSVC or mingw-w64, Vista or later): Winsock 2, so include this
       before <windows.h> and add -lws2_32 -lbcrypt (MSVC: bcrypt.lib; ws2_32
       is asked for by a #pragma); no WSAStartup needed.  The socket handle
       is a SOCKET in the intptr_t.  Threads are Win32's (CreateThread,
       SRWLOCK: nothing to link); the lookup's and the wake's notify handle
       is a connected pair of loopback UDP sockets, so select() or WSAPoll()
       can wait on it with the connection's socket.

   CONFIGURATION MACROS (define before including the implementation)
       STWS_STATIC          every function static (a private copy per file)
       STWS_API             linkage of public functions (default extern)
       STWS_ASSERT(c)       internal invariants (default assert())
       STWS_NO_STDIO        no default logger to stderr
       STWS_NO_SOCKETS      no built-in TCP, poll() or default clock: give a
                            transport and a clock (firmware)
       STWS_NO_TLS          no TLS layer (wss:// then needs your transport)
       STWS_NO_THREADS      no threads: the default resolver calls getaddrinfo()
                            inside the step (it BLOCKS while DNS is slow: pass
                            a resolver or a numeric host), and there is no
                            stws_client_post()/stws_client_wake().  Implied by
                            STWS_NO_SOCKETS.
       STWS_NO_DEFAULT_RANDOM  no built-in CTR-DRBG, so mbedTLS's entropy,
                            CTR-DRBG and AES modules are not linked: every
                            desc needs a random hook (create fails and logs
                            without one; stws_handshake_key(NULL, ..) fails)
       STWS_MAX_URL         longest accepted URL in bytes (default 2048)
       STWS_SYSTEM_CA_FILE  default CA bundle (/etc/ssl/certs/ca-certificates.crt)

   TL;DR: STREAM EVENTS FROM YOUR OWN LOOP

       stws_client_desc d = {0};              // zero means default everywhere
       d.api_key = "key";
       d.user_id = "alice";
       d.token = jwt;                         // or .api_secret / .token_provider
       stws_client *c = stws_client_create(&d);
       stws_client_connect(c);
       while (game_running) {
           stws_client_step(c);               // never blocks; or stws_client_poll(c, ms)
           stws_client_event ev;
           while (stws_client_next_event(c, &ev)) {
               if (ev.type == STWS_CLIENT_EVENT_SERVER) {
                   char name[64]; size_t n;
                   if (stws_json_string_at(&ev.doc, "message.user.name", name, sizeof name, &n) == STWS_OK)
                       show(name);
               } else if (ev.type == STWS_CLIENT_EVENT_RECONNECTED) {
                   rewatch_channels();        // subscriptions died with the old socket
               }
           }
           stws_client_send(c, json, len);    // queued while offline (see DELIVERY)
       }
       stws_client_close(c);                  // then step until STWS_CLIENT_EVENT_CLOSED
       stws_client_destroy(c);
   External loops: stws_client_handle() (socket), stws_client_wants()
   (STWS_POLL_READ/WRITE), stws_client_timeout() (0 = step now, -1 = no timer),
   stws_client_socket_generation() (re-register when it changes); edge-triggered
   epoll works too.  The whole contract: "external loops" at stws_conn_step.

   ALLOCATION
       All memory comes from the desc's allocator (default malloc/free), at
       create time: codec 2 allocations (1 with a random hook); conn 5 with a
       user transport and a random hook, plus one per built-in transport and
       one for the default random generator; client: 3 plus its conn's (the
       conn then shares the client's random generator).  Buffers
       (reassembly, output, send queue) grow to the largest
       message seen, within the limits, and are reused: no allocation per
       message, per health check or per reconnect in steady state, with one
       exception: each lookup of a host name by the default resolver (once per
       connect to a non-numeric host, threads on) makes one small allocation
       (about 200 bytes plus the name), a helper thread and a pipe, all gone
       when the answer has been taken or the abandoned lookup ends.  The
       post inbox (THREADING) grows like the send queue and is reused.  mbedTLS
       allocates inside its TLS handshake and HMAC setup with its own calloc;
       the SSL context itself is made once and reset for each reconnect.
       The HTTP response parser: 1 at create, then its header and body
       buffers grow with the bytes received to the largest response and are
       kept across responses.
       The default random generator embeds mbedTLS's entropy context (about
       38 KB with Debian's 2.28): pass a random hook to save it.

   THREADING
       No globals, no thread-locals.  One object must not be used from two
       threads at once; distinct objects are independent.  Callbacks run
       only inside the step/poll call of the object that owns them; a
       client callback may send, close or destroy its client (destroy is
       deferred to the end of the step), never step it again.
       Exactly two functions are safe from any thread, concurrently with each
       other and with the thread that pumps the client (not with its
       create/destroy): stws_client_post() and stws_client_wake().  Posted
       messages enter the send queue in the next step, in each thread's
       order; wake makes a blocked stws_client_poll() return.  Both need
       threads (not STWS_NO_THREADS); a post that has to grow the inbox calls
       the allocator from the posting thread.
       Internally, the default resolver looks host names up on a detached
       helper thread (one per lookup, never for numeric hosts); the step
       only asks whether the answer is in, so it never blocks on DNS.  A
       close, destroy or reconnect while a lookup is pending abandons it:
       the helper frees its record (with the allocator, on its own thread)
       when getaddrinfo() returns.

   ERRORS
       Every fallible function returns a stws_result: 0 success, positive =
       informational (STWS_INCOMPLETE), negative = error, in -0x100..-0x1FF
       grouped by layer (a band mbedTLS never uses, so transports may return
       mbedTLS codes).  stws_result_string() names them; stws_conn_error_detail()
       and the client's event message say why (HTTP status, certificate
       verification flags, close code).  Nothing depends on a logger.

   TLS
       Certificate chain and host name (DNS or IP SAN) are verified by default
       against the system bundle, or desc.ca_file / desc.ca_pem (the client's:
       desc.conn.ca_file, ...).  insecure = 1 turns verification off and logs
       a warning on every connect.

   SECRETS AND HOSTILE TEXT
       Tokens, the API secret, proxy credentials and the upgrade request
       (your headers) are wiped (mbedtls_platform_zeroize) from every buffer
       before it is freed; the auth frame is wiped from the codec's output
       block as soon as it is written (the masking key beside it hides
       nothing).
       Text from the network reaches a log line, an error detail or an event
       message only escaped (see stws_logger).

   DELIVERY
       The client's send queue keeps each message across reconnects until it
       has been handed to the transport whole, and sends it once, in order.
       A message the kernel had taken when the socket died may still never
       have reached the server: TCP cannot say which bytes the peer got.  So
       a loss is possible, only at the switch between two connections, and
       never a duplicate; acknowledge at the application level if every
       message must arrive (tests/integration/test_faults.py shows both).

   LIMITS AND TIMERS (runtime, in the descs; 0 means the default below, each
   a constant STWS_DEFAULT_<field> named in the field's comment)
       max_frame_size / max_message_size   16 MiB each (more -> close 1009)
       max_output_size                     64 MiB of buffered, unsent bytes; the
                                           output buffer never grows past it + 64 KiB
       handshake response / recv buffer    16 KiB
       HTTP response header / body         16 KiB (1xx and trailers counted) / 16 MiB
       connect_timeout_ms / close_timeout_ms   10 s / 1 s
       client: health 25 s, dead 35 s, watchdog 15 s, backoff cap 25 s,
               send queue 1 MiB, JSON tokens per event: no limit beyond
               max_message_size

   VERSION HISTORY
       0.2.0  (2026-12)  API changes (rename table below).  Client desc: the
                         connection's options are nested, desc.conn (a
                         stws_conn_desc: origin, headers, subprotocols,
                         limits, close timeout are now reachable); the flat
                         transport, ca_file, ca_pem, insecure, proxy,
                         proxy_from_env, resolver and max_message_size fields
                         are gone (d.insecure -> d.conn.insecure, ...).
                         Connection: stws_conn_abort, stws_conn_set_url,
                         stws_conn_send_secret (what the client needed from
                         the conn's internals).
                         Renamed (old -> new; codec events like the other
                         layers', JSON writer verbs apart from the reader's):
                           stws_event_type      -> stws_codec_event_type
                           STWS_EVENT_NONE      -> STWS_CODEC_EVENT_NONE
                           STWS_EVENT_MESSAGE   -> STWS_CODEC_EVENT_MESSAGE
                           STWS_EVENT_PING      -> STWS_CODEC_EVENT_PING
                           STWS_EVENT_PONG      -> STWS_CODEC_EVENT_PONG
                           STWS_EVENT_CLOSE     -> STWS_CODEC_EVENT_CLOSE
                           STWS_EVENT_ERROR     -> STWS_CODEC_EVENT_ERROR
                           stws_json_init       -> stws_json_write_init
                           stws_json_object_begin -> stws_json_write_object_begin
                           stws_json_object_end -> stws_json_write_object_end
                           stws_json_array_begin -> stws_json_write_array_begin
                           stws_json_array_end  -> stws_json_write_array_end
                           stws_json_key        -> stws_json_write_key
                           stws_json_string     -> stws_json_write_string
                           stws_json_string_n   -> stws_json_write_string_n
                           stws_json_int        -> stws_json_write_int
                           stws_json_bool       -> stws_json_write_bool
                           stws_json_null       -> stws_json_write_null
                           stws_json_raw        -> stws_json_write_raw
                           stws_json_finish     -> stws_json_write_finish
                           STWS_HANDSHAKE_MAX_RESPONSE -> STWS_DEFAULT_MAX_RESPONSE_SIZE
                           STWS_HTTP_DEFAULT_MAX_HEADER_SIZE -> STWS_DEFAULT_MAX_HEADER_SIZE
                           STWS_HTTP_DEFAULT_MAX_BODY_SIZE -> STWS_DEFAULT_MAX_BODY_SIZE
                         Every default is STWS_DEFAULT_<field>; new:
                         STWS_DEFAULT_RECV_BUFFER_SIZE,
                         _CONNECT_TIMEOUT_MS, _CLOSE_TIMEOUT_MS,
                         _HEALTH_INTERVAL_MS, _DEAD_TIMEOUT_MS, _WATCHDOG_MS,
                         _BACKOFF_CAP_MS, _SEND_QUEUE_LIMIT (values unchanged).
                         "Buffered" (conn, codec) = framed bytes not yet
                         written; "queued" (client) = messages in its queue.
                         JSON reader: stws_json_doc_init (any text is a
                         document), stws_json_tokenize/stws_json_tokens (jsmn
                         tokens you own and reuse), stws_json_get/get_in/len/
                         elem/iter_init/next (linear iteration),
                         stws_json_value_* and stws_json_double_at; client
                         desc.tokenize_events.  stws_json_doc is now {text,
                         len, internal} (the unused tokens/ntokens/lazy fields
                         are gone).  Typed getters tell absent
                         (STWS_ERR_JSON_PATH) from present of another type or
                         null (new STWS_ERR_JSON_TYPE; was JSON_PATH).
       0.1.0  (2026-11)  codec, handshake, transports, connection, JSON, JWT,
                         Stream client
*/
/* The built-in sockets need POSIX.1-2008 (poll, getaddrinfo, clock_gettime),
   which strict -std=c99 hides: ask for it before any system header.  In the
   implementation file, define STREAM_WS_IMPLEMENTATION before other includes
   (or build with -D_POSIX_C_SOURCE=200809L). */
#if defined(STREAM_WS_IMPLEMENTATION) && !defined(STWS_NO_SOCKETS) && !defined(_POSIX_C_SOURCE) && \
    !defined(_GNU_SOURCE) && !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L
#endif
/* Windows (MSVC or mingw-w64): the sockets are Winsock 2 and need Vista's
   API (inet_pton, getaddrinfo), asked for here for the same reason.
   Include stream_ws.h before <windows.h>: the implementation includes
   <winsock2.h>, which must come first (or define WIN32_LEAN_AND_MEAN).  MSVC's
   "unsafe CRT" warnings are about getenv and friends, used here as C99 says. */
#if defined(STREAM_WS_IMPLEMENTATION) && defined(_WIN32)
#  if !defined(STWS_NO_SOCKETS) && !defined(_WIN32_WINNT)
#    define _WIN32_WINNT 0x0600
#  endif
#  if defined(_MSC_VER) && !defined(_CRT_SECURE_NO_WARNINGS)
#    define _CRT_SECURE_NO_WARNINGS
#  endif
#endif

#ifndef STREAM_WS_H
#define STREAM_WS_H

#define STWS_VERSION_MAJOR 0
#define STWS_VERSION_MINOR 2
#define STWS_VERSION_PATCH 0
#define STWS_VERSION_STRING "0.2.0"

#include <stddef.h>
#include <stdint.h>

#ifndef STWS_API
#  ifdef STWS_STATIC
#    if defined(__GNUC__) || defined(__clang__)
#      define STWS_API static __attribute__((unused)) /* no unused warnings */
#    else
#      define STWS_API static
#    endif
#  else
#    define STWS_API extern
#  endif
#endif

#ifndef STWS_MAX_URL
#  define STWS_MAX_URL 2048
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ==== results ============================================================ */

typedef enum stws_result {
    STWS_OK = 0,
    STWS_INCOMPLETE = 1,            /* not an error: more input needed */

    /* Errors live in -0x100 .. -0x1FF, grouped by layer: mbedTLS never uses
       -0x0080 .. -0x0FFF, so a transport may return mbedTLS codes (e.g. from
       mbedtls_net_recv) without being mistaken for one of ours. */
    /* general */
    STWS_ERR_INVALID_ARG = -0x101,
    STWS_ERR_NOMEM = -0x102,
    STWS_ERR_STATE = -0x103,            /* call not allowed in this state */
    STWS_ERR_OUTPUT_FULL = -0x104,      /* max_output_size reached */
    STWS_ERR_BUFFER_TOO_SMALL = -0x105,
    STWS_ERR_RANDOM = -0x106,           /* the random source failed */
    STWS_ERR_CLOSED = -0x107,           /* the connection is closed */

    /* URL */
    STWS_ERR_URL_SCHEME = -0x120,      /* not ws:// or wss:// */
    STWS_ERR_URL_HOST = -0x121,        /* empty or malformed host */
    STWS_ERR_URL_PORT = -0x122,        /* not a number, 0, or > 65535 */
    STWS_ERR_URL_FRAGMENT = -0x123,    /* '#' is forbidden, RFC 6455 §3 */
    STWS_ERR_URL_CHAR = -0x124,        /* control character, space or non-ASCII */
    STWS_ERR_URL_TOO_LONG = -0x125,    /* longer than STWS_MAX_URL */
    STWS_ERR_URL_USERINFO = -0x126,    /* user:pass@ is not supported */

    /* framing, RFC 6455 §5 (close code in brackets) */
    STWS_ERR_RESERVED_BITS = -0x140,   /* RSV1-3 without extension [1002] */
    STWS_ERR_RESERVED_OPCODE = -0x141, /* [1002] */
    STWS_ERR_MASKED_FRAME = -0x142,    /* server frames must not be masked [1002] */
    STWS_ERR_BAD_LENGTH = -0x143,      /* 64-bit length with MSB set [1002] */
    STWS_ERR_CONTROL_TOO_LONG = -0x144,/* control payload > 125 [1002] */
    STWS_ERR_CONTROL_FRAGMENTED = -0x145, /* [1002] */
    STWS_ERR_UNEXPECTED_CONTINUATION = -0x146, /* no message to continue [1002] */
    STWS_ERR_EXPECTED_CONTINUATION = -0x147,   /* new message inside one [1002] */
    STWS_ERR_BAD_CLOSE_PAYLOAD = -0x148,   /* 1-byte close payload [1002] */
    STWS_ERR_BAD_CLOSE_CODE = -0x149,  /* [1002] */
    STWS_ERR_INVALID_UTF8 = -0x14A,    /* text or close reason [1007] */
    STWS_ERR_FRAME_TOO_BIG = -0x14B,   /* [1009] */
    STWS_ERR_MESSAGE_TOO_BIG = -0x14C, /* [1009] */

    /* opening handshake, RFC 6455 §4 */
    STWS_ERR_HANDSHAKE_TOO_BIG = -0x160,    /* response header > limit */
    STWS_ERR_HANDSHAKE_MALFORMED = -0x161,  /* not HTTP/1.1 syntax */
    STWS_ERR_HANDSHAKE_STATUS = -0x162,     /* status is not 101 */
    STWS_ERR_HANDSHAKE_UPGRADE = -0x163,    /* Upgrade: websocket missing */
    STWS_ERR_HANDSHAKE_CONNECTION = -0x164, /* Connection: upgrade missing */
    STWS_ERR_HANDSHAKE_ACCEPT = -0x165,     /* Sec-WebSocket-Accept wrong */
    STWS_ERR_HANDSHAKE_EXTENSION = -0x166,  /* extension not requested */
    STWS_ERR_HANDSHAKE_SUBPROTOCOL = -0x167,/* subprotocol not requested */
    STWS_ERR_HEADER_VALUE = -0x168,         /* CR, LF or NUL in a request field */

    /* transport and connection */
    STWS_ERR_RESOLVE = -0x180,         /* name resolution failed */
    STWS_ERR_CONNECT = -0x181,         /* TCP connect failed */
    STWS_ERR_TIMEOUT = -0x182,         /* connect/handshake/close timer expired */
    STWS_ERR_IO = -0x183,              /* send/recv failed */
    STWS_ERR_EOF = -0x184,             /* peer closed the stream without a close frame */
    STWS_ERR_TLS = -0x185,             /* TLS failure (details: stws_conn_error_detail) */
    STWS_ERR_TLS_VERIFY = -0x186,      /* certificate verification failed */
    STWS_ERR_PROXY = -0x187,           /* HTTP proxy refused or broke the CONNECT */

    /* JSON and JWT */
    STWS_ERR_JSON = -0x1A0,         /* malformed JSON, or writer misuse */
    STWS_ERR_JSON_PATH = -0x1A1,    /* path absent */
    STWS_ERR_JSON_TOO_BIG = -0x1A2, /* more tokens than max_json_tokens */
    STWS_ERR_EVENT_SHAPE = -0x1A3,  /* not an object with a string "type" */
    STWS_ERR_JSON_TYPE = -0x1A4,    /* value present but of another type */

    /* Stream client */
    STWS_ERR_AUTH = -0x1C0,         /* connection.error: fatal code (see error_code) */
    STWS_ERR_AUTH_TRANSIENT = -0x1C1, /* connection.error: retried */
    STWS_ERR_TOKEN = -0x1C2,        /* no token could be obtained */
    STWS_ERR_QUEUE_FULL = -0x1C3,   /* send_queue_limit reached */
    STWS_ERR_ATTEMPTS = -0x1C4,     /* max_attempts consecutive failures */
    STWS_ERR_ABORTED = -0x1C5,      /* on_reconnecting said stop */
    STWS_ERR_DEAD = -0x1C6,         /* nothing received for dead_timeout_ms */
    STWS_ERR_WATCHDOG = -0x1C7,     /* no connection.ok within watchdog_ms */

    /* HTTP/1.1 client messages, RFC 9112 */
    STWS_ERR_HTTP_MALFORMED = -0x1E0,       /* not HTTP/1.x response syntax */
    STWS_ERR_HTTP_HEADERS_TOO_BIG = -0x1E1, /* header or trailer block > limit */
    STWS_ERR_HTTP_BODY_TOO_BIG = -0x1E2,    /* body > max_body_size */
    STWS_ERR_HTTP_CHUNK = -0x1E3            /* bad chunk size line, size overflow,
                                               no CRLF after a chunk, bad trailer */
} stws_result;

/* A short English description of a result ("invalid UTF-8", ...). Never NULL. */
STWS_API const char *stws_result_string(stws_result result);

/* ==== hooks (every side effect goes through one; zero means default) ===== */

/* Allocator. Both or neither; default malloc/free. free(NULL) must be a no-op. */
typedef struct stws_allocator {
    void *(*alloc)(size_t size, void *user_data);
    void (*free)(void *ptr, void *user_data);
    void *user_data;
} stws_allocator;

/* Random source: fill buf with len bytes, return 0 on success, anything else
   on failure.  Used for masking keys (RFC 6455 §5.3) and Sec-WebSocket-Key
   (§4.1), which must be unpredictable.  Default: mbedTLS CTR-DRBG seeded from
   mbedTLS's entropy source, one generator per object; none with
   STWS_NO_DEFAULT_RANDOM (the hook is then required). */
typedef struct stws_random {
    int (*fill)(void *buf, size_t len, void *user_data);
    void *user_data;
} stws_random;

typedef enum stws_log_level {
    STWS_LOG_ERROR = 0,
    STWS_LOG_WARN = 1,
    STWS_LOG_INFO = 2,
    STWS_LOG_DEBUG = 3
} stws_log_level;

/* Logger: message is one line (at most 511 bytes) without a newline.  Never
   receives secrets.  Text that came from the network (a server's error
   message, HTTP reason and Location, close reason, proxy status line) is
   escaped first, here as in stws_conn_error_detail() and the client's event
   messages: control characters and U+2028/U+2029 as \n \r \t \xHH \uHHHH,
   a backslash as \\, invalid UTF-8 as U+FFFD, long text cut with "...".
   Default: WARN and ERROR to stderr (nothing with STWS_NO_STDIO). */
typedef struct stws_logger {
    void (*func)(stws_log_level level, const char *message, void *user_data);
    void *user_data;
} stws_logger;

/* A view of bytes owned by someone else; not NUL-terminated. */
typedef struct stws_str {
    const char *ptr;
    size_t len;
} stws_str;

/* ==== UTF-8 ============================================================== */

/* Incremental UTF-8 validator (RFC 3629): rejects overlong forms,
   surrogates, code points > U+10FFFF.  Start with *state = 0.  Returns the
   number of bytes accepted: len when all of buf is valid so far, less at the
   first invalid byte.  A complete string also needs *state == 0 at its end. */
STWS_API size_t stws_utf8_validate(uint32_t *state, const void *buf, size_t len);

/* ==== URL ================================================================ */

typedef struct stws_url {
    int secure;         /* 1 for wss:// */
    stws_str host;      /* without brackets for IPv6 literals */
    uint16_t port;      /* explicit, or 80 / 443 */
    int port_explicit;  /* 1 when the URL named a port */
    int ipv6;           /* 1 when the host was a bracketed literal */
    stws_str path;      /* "/" when the URL has none */
    stws_str query;     /* without '?'; ptr is NULL when there is no query */
} stws_url;

/* Parse a ws:// or wss:// URL.  The views point into url, which must outlive
   them (path may point to a static "/").  No allocation. */
STWS_API stws_result stws_url_parse(const char *url, stws_url *out);

/* ==== opening handshake (RFC 6455 §4) ==================================== */

#define STWS_HANDSHAKE_KEY_SIZE 25      /* 24 base64 chars + NUL */
#define STWS_HANDSHAKE_ACCEPT_SIZE 29   /* 28 base64 chars + NUL */
#define STWS_DEFAULT_MAX_RESPONSE_SIZE (16 * 1024)

typedef struct stws_header {
    const char *name;
    const char *value;
} stws_header;

typedef struct stws_handshake_desc {
    const char *origin;               /* optional Origin header */
    const char *const *subprotocols;  /* optional list, num_subprotocols long */
    int num_subprotocols;
    const stws_header *headers;       /* optional extra request headers */
    int num_headers;
    size_t max_response_size;         /* 0 = STWS_DEFAULT_MAX_RESPONSE_SIZE */
} stws_handshake_desc;

typedef struct stws_handshake_response {
    int status;             /* HTTP status code (once the status line parsed) */
    size_t header_size;     /* bytes of the header block incl. the empty line;
                               what follows belongs to the codec */
    stws_str location;      /* Location header for 3xx, else empty */
    stws_str subprotocol;   /* Sec-WebSocket-Protocol chosen by the server */
} stws_handshake_response;

/* Fill key with a fresh Sec-WebSocket-Key: base64 of 16 random bytes (§4.1).
   random NULL (or without fill): a generator is made on the heap (malloc),
   seeded and freed for this one call; pass a hook to avoid that per key. */
STWS_API stws_result stws_handshake_key(const stws_random *random,
                                        char key[STWS_HANDSHAKE_KEY_SIZE]);

/* Compute Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) (§1.3, §4.2.2). */
STWS_API stws_result stws_handshake_accept(const char *key,
                                           char accept[STWS_HANDSHAKE_ACCEPT_SIZE]);

/* Write the GET request for url with key into buf (NUL-terminated).
   *len receives its length without the NUL.  Fails with
   STWS_ERR_HEADER_VALUE if any field holds CR, LF or NUL (header injection),
   or STWS_ERR_BUFFER_TOO_SMALL with *len set to the size needed. */
STWS_API stws_result stws_handshake_request(const stws_url *url,
                                            const stws_handshake_desc *desc,
                                            const char *key, char *buf,
                                            size_t cap, size_t *len);

/* Parse and validate the server's response held in buf[0..len) (the bytes
   received so far, accumulated by the caller).  Returns STWS_INCOMPLETE
   until the empty line arrives, STWS_OK when the upgrade is valid, or an
   error; out->status is set as soon as the status line is known (so a
   non-101 reply exposes its status and, for 3xx, out->location).  Views point
   into buf.  No allocation. */
STWS_API stws_result stws_handshake_response_parse(const char *buf, size_t len,
                                                   const char *key,
                                                   const stws_handshake_desc *desc,
                                                   stws_handshake_response *out);

/* ==== the sans-I/O codec (RFC 6455 §5), client role ====================== */

typedef enum stws_opcode {
    STWS_OP_CONTINUATION = 0x0,
    STWS_OP_TEXT = 0x1,
    STWS_OP_BINARY = 0x2,
    STWS_OP_CLOSE = 0x8,
    STWS_OP_PING = 0x9,
    STWS_OP_PONG = 0xA
} stws_opcode;

/* Close codes of RFC 6455 §7.4.1 that the codec itself uses. */
#define STWS_CLOSE_NORMAL 1000
#define STWS_CLOSE_GOING_AWAY 1001
#define STWS_CLOSE_PROTOCOL_ERROR 1002
#define STWS_CLOSE_NO_STATUS 1005       /* reported, never sent */
#define STWS_CLOSE_ABNORMAL 1006        /* reported, never sent */
#define STWS_CLOSE_INVALID_DATA 1007
#define STWS_CLOSE_POLICY 1008
#define STWS_CLOSE_TOO_BIG 1009
#define STWS_CLOSE_INTERNAL_ERROR 1011  /* sent when we run out of memory */

#define STWS_DEFAULT_MAX_FRAME_SIZE ((size_t)16 << 20)
#define STWS_DEFAULT_MAX_MESSAGE_SIZE ((size_t)16 << 20)
#define STWS_DEFAULT_MAX_OUTPUT_SIZE ((size_t)64 << 20)

typedef struct stws_codec_desc {
    size_t max_frame_size;     /* 0 = STWS_DEFAULT_MAX_FRAME_SIZE */
    size_t max_message_size;   /* 0 = STWS_DEFAULT_MAX_MESSAGE_SIZE */
    size_t max_output_size;    /* 0 = STWS_DEFAULT_MAX_OUTPUT_SIZE; the output
                                  buffer never grows past it plus 64 KiB of
                                  control replies (its peak heap, old and new
                                  block during the last growth, is at most
                                  1.5 times that for a cap of 512 KiB or more) */
    stws_allocator allocator;  /* default malloc/free */
    stws_random random;        /* default: own CTR-DRBG */
} stws_codec_desc;

typedef enum stws_codec_state {
    STWS_CODEC_OPEN = 0,
    STWS_CODEC_CLOSING,        /* we sent a close frame, waiting for the peer's */
    STWS_CODEC_CLOSED,         /* both close frames exchanged: close the socket */
    STWS_CODEC_FAILED          /* protocol failure: flush output, close the socket */
} stws_codec_state;

typedef enum stws_codec_event_type {
    STWS_CODEC_EVENT_NONE = 0,       /* all input consumed, nothing complete yet */
    STWS_CODEC_EVENT_MESSAGE,        /* a whole text or binary message */
    STWS_CODEC_EVENT_PING,           /* a pong has been buffered already */
    STWS_CODEC_EVENT_PONG,
    STWS_CODEC_EVENT_CLOSE,          /* the peer's close; the reply is buffered */
    STWS_CODEC_EVENT_ERROR           /* failure; the close frame is buffered */
} stws_codec_event_type;

/* One event from the codec.  data/len are valid until the next call on the
   codec, and (for messages delivered without a copy) while the input buffer
   given to stws_codec_parse() is unchanged. */
typedef struct stws_codec_event {
    stws_codec_event_type type;
    stws_opcode opcode;        /* MESSAGE: STWS_OP_TEXT or STWS_OP_BINARY */
    const uint8_t *data;       /* payload; for CLOSE the reason */
    size_t len;
    int close_code;            /* CLOSE: peer's code (1005 if none);
                                  ERROR: the code we sent */
    stws_result error;         /* ERROR: why */
} stws_codec_event;

typedef struct stws_codec stws_codec;

/* Create a client codec.  desc may be NULL.  Returns NULL when out of memory
   or when the default random generator cannot be seeded. */
STWS_API stws_codec *stws_codec_create(const stws_codec_desc *desc);
/* Free the codec and everything it owns.  NULL is ignored. */
STWS_API void stws_codec_destroy(stws_codec *codec);
/* Forget all state (for a new connection) but keep the buffers. */
STWS_API void stws_codec_reset(stws_codec *codec);

/* Parse input until one event is complete or the input is used up.  *used
   receives the bytes consumed; call again with the rest.  Returns STWS_OK
   (event in *ev, possibly STWS_CODEC_EVENT_NONE) or a negative error, in
   which case ev->type is STWS_CODEC_EVENT_ERROR, ev->close_code the close
   code buffered for the peer, and every later call returns the same error.
   Flush the output after every call. */
STWS_API stws_result stws_codec_parse(stws_codec *codec, const void *in,
                                      size_t len, size_t *used,
                                      stws_codec_event *ev);

/* Queue one whole message or control frame, masked with a fresh key.
   Text must be valid UTF-8 (STWS_ERR_INVALID_UTF8); control payloads at most
   125 bytes (STWS_ERR_INVALID_ARG); STWS_ERR_OUTPUT_FULL when the buffered
   output would pass max_output_size; STWS_ERR_STATE after a close was sent. */
STWS_API stws_result stws_codec_send(stws_codec *codec, stws_opcode opcode,
                                     const void *data, size_t len);

/* Queue a close frame (§5.5.1).  code 0 sends no status; reason must be valid
   UTF-8 and at most 123 bytes. */
STWS_API stws_result stws_codec_close(stws_codec *codec, int code,
                                      const char *reason, size_t reason_len);

/* The bytes buffered (framed, not yet written): *len receives their count.
   "Buffered" means this in every layer (stws_conn_buffered). */
STWS_API const uint8_t *stws_codec_output(const stws_codec *codec, size_t *len);
/* Tell the codec that n bytes of its output were written. */
STWS_API void stws_codec_output_consumed(stws_codec *codec, size_t n);

STWS_API stws_codec_state stws_codec_get_state(const stws_codec *codec);

/* True when a close code may appear in a close frame (§7.4, IANA registry). */
STWS_API int stws_close_code_valid(int code);

/* ==== HTTP/1.1 client messages (RFC 9112), sans-I/O ======================= */

/* A response parser and a request writer for REST over keep-alive HTTP/1.1,
   in the codec's style: bytes in, a response out, no I/O.  The parser copies
   the header block and the (de-chunked) body into buffers it owns, which grow
   to the largest response and are kept across stws_http_parser_reset(): no
   allocation per response in steady state. */

#define STWS_DEFAULT_MAX_HEADER_SIZE ((size_t)16 * 1024)
#define STWS_DEFAULT_MAX_BODY_SIZE ((size_t)16 << 20)

typedef struct stws_http_parser_desc {
    size_t max_header_size;    /* 0 = STWS_DEFAULT_MAX_HEADER_SIZE: the
                                  status line, fields and empty line of the
                                  final answer plus any 1xx answers before it;
                                  the trailer section of a chunked body too */
    size_t max_body_size;      /* 0 = STWS_DEFAULT_MAX_BODY_SIZE, after
                                  de-chunking */
    stws_allocator allocator;  /* default malloc/free */
} stws_http_parser_desc;

/* A complete response.  Every view points into the parser's buffers and is
   valid until the next stws_http_parser_reset() or _destroy(). */
typedef struct stws_http_response {
    int status;                /* 100..599 (101 is final: no body, no reuse) */
    int version;               /* 10 for HTTP/1.0, 11 for HTTP/1.1 (and 1.x) */
    stws_str reason;           /* reason phrase, possibly empty */
    int keep_alive;            /* 1: the connection may carry the next request;
                                  0: close it (Connection: close, HTTP/1.0
                                  without keep-alive, body ended by close) */
    int chunked;               /* body was Transfer-Encoding: chunked */
    int64_t content_length;    /* Content-Length, -1 when absent */
    int64_t retry_after;       /* Retry-After in seconds, -1 when absent or an
                                  HTTP-date (RFC 9110 §10.2.3) */
    stws_str content_type;     /* Content-Type value, empty when absent */
    const uint8_t *body;       /* body_len bytes, NUL-terminated, never NULL */
    size_t body_len;
    int interim;               /* number of 1xx answers skipped before this */
    stws_str fields;           /* the raw field lines, for
                                  stws_http_response_header() */
} stws_http_response;

typedef struct stws_http_parser stws_http_parser;

/* Create a parser, ready for the response to one non-HEAD request.  desc may
   be NULL.  Returns NULL when out of memory. */
STWS_API stws_http_parser *stws_http_parser_create(const stws_http_parser_desc *desc);
/* Free the parser and its buffers.  NULL is ignored. */
STWS_API void stws_http_parser_destroy(stws_http_parser *parser);
/* Forget the current response (complete, failed or partial) and expect the
   next one; head non-zero when it answers a HEAD request (no body, whatever
   the fields say: RFC 9110 §9.3.2).  Keeps the buffers. */
STWS_API void stws_http_parser_reset(stws_http_parser *parser, int head);

/* Consume response bytes.  *used receives the bytes taken; after STWS_OK the
   rest of the input belongs to the next response (pipelining, keep-alive).
   Returns STWS_INCOMPLETE (all input taken, more needed), STWS_OK (the
   response is complete: stws_http_parser_response()), STWS_ERR_STATE after OK
   until the next reset, or an error that every later call repeats until a
   reset: STWS_ERR_HTTP_MALFORMED, STWS_ERR_HTTP_HEADERS_TOO_BIG,
   STWS_ERR_HTTP_BODY_TOO_BIG, STWS_ERR_HTTP_CHUNK, STWS_ERR_NOMEM.  The
   result is the same however the input is split across calls. */
STWS_API stws_result stws_http_parser_parse(stws_http_parser *parser, const void *in,
                                            size_t len, size_t *used);

/* The peer closed the connection.  STWS_OK when that completes a body read
   until close (RFC 9112 §6.3 item 8) or the response was already complete;
   otherwise STWS_ERR_EOF (sticky), the response being truncated. */
STWS_API stws_result stws_http_parser_eof(stws_http_parser *parser);

/* Bytes of the current response consumed so far.  0 after a failed or
   closed keep-alive connection means the server sent nothing: the request
   can be sent again on a new connection. */
STWS_API size_t stws_http_parser_received(const stws_http_parser *parser);

/* The complete response, or NULL while none is. */
STWS_API const stws_http_response *stws_http_parser_response(const stws_http_parser *parser);

/* Iterate over the fields: start with *pos = 0; returns 1 and the next name
   and value (without surrounding whitespace), 0 at the end. */
STWS_API int stws_http_response_header(const stws_http_response *response, size_t *pos,
                                       stws_str *name, stws_str *value);
/* The first field called name (case-insensitive): 1 and its value, or 0. */
STWS_API int stws_http_response_find(const stws_http_response *response, const char *name,
                                     stws_str *value);

typedef struct stws_http_query {
    const char *name;          /* form-encoded on output (space as '+') */
    const char *value;         /* form-encoded; NULL writes the name alone */
} stws_http_query;

typedef struct stws_http_request_desc {
    const char *method;        /* a token; NULL = "GET" */
    const char *host;          /* host name or IP (IPv6 without brackets) */
    int port;                  /* 0 = the scheme's default */
    int secure;                /* https: default port 443, else 80 */
    const char *path;          /* origin-form, starting with '/'; visible
                                  ASCII, no '#'; NULL = "/" */
    const stws_http_query *query; /* appended after '?' (or '&' when path
                                  holds one), num_query long */
    int num_query;
    const stws_header *headers; /* extra fields: names are tokens, values
                                  without CR, LF or other controls but HTAB;
                                  never Host, Content-Length,
                                  Transfer-Encoding or Connection */
    int num_headers;
    const void *body;          /* sent with Content-Length: body_len */
    size_t body_len;
    int close;                 /* 0 = Connection: keep-alive, else close */
} stws_http_request_desc;

/* Write the request (head and body) into buf, NUL-terminated; *len receives
   its length without the NUL.  Content-Length is sent when there is a body
   and for POST, PUT and PATCH.  STWS_ERR_HEADER_VALUE when a field, the
   method, host or path would break the message (header injection),
   STWS_ERR_INVALID_ARG for a field the writer owns, or
   STWS_ERR_BUFFER_TOO_SMALL with *len set to the size needed. */
STWS_API stws_result stws_http_request_write(const stws_http_request_desc *desc, char *buf,
                                             size_t cap, size_t *len);

/* ==== transports (mbedTLS bio dialect) ==================================== */

/* Would-block codes.  They equal mbedTLS's MBEDTLS_ERR_SSL_WANT_READ/WRITE, so
   an mbedTLS bio callback can serve as a transport function unchanged. */
#define STWS_WANT_READ (-0x6900)
#define STWS_WANT_WRITE (-0x6880)

typedef enum stws_poll_flags {
    STWS_POLL_NONE = 0,
    STWS_POLL_READ = 1,
    STWS_POLL_WRITE = 2
} stws_poll_flags;

/* A byte-stream transport.  All functions are non-blocking and called only
   from the pump of the object that owns the transport.
   open:   start or continue connecting to host:port (host is the final
           destination: a proxy or TLS layer passes it on).  Returns 0 once the
           stream is up, STWS_WANT_READ/STWS_WANT_WRITE while in progress (open
           is then called again, with the same arguments, when the handle is
           ready or the caller pumps), or a negative error.
   send:   write up to len bytes; returns the count written (> 0; partial
           writes are normal and the rest is offered again later),
           STWS_WANT_WRITE/STWS_WANT_READ if nothing could be written now, or a
           negative error.  Never raises SIGPIPE.  Retry rule: after a
           would-block the next send offers the same bytes first (the same
           buffer contents from the same stream position, at least as many as
           before, possibly with more behind), as mbedtls_ssl_write() demands;
           a transport may have taken (encrypted, buffered) those bytes
           already and count them written only then.  The caller counts bytes
           as written only from a positive return.  "Written" means handed
           on: a socket's kernel may still lose them if the stream dies.
   recv:   read up to len bytes; returns the count (> 0), 0 when the peer
           closed the stream, STWS_WANT_READ/STWS_WANT_WRITE when nothing is
           available, or a negative error.  A count below len tells the pump
           the stream is empty for now (an edge-triggered loop then waits for
           the next edge): a transport that reads in records and may leave
           bytes behind says so through pending.
   close:  release the stream; open may be called again afterwards (reconnect).
           The transport object itself stays owned by whoever created it.
   handle: the OS socket for external poll loops, or -1 (optional).
   pending: bytes readable without I/O, e.g. decrypted TLS records (optional).
   Negative errors should be stws_result values (STWS_ERR_IO, ...); any
   other negative value is reported as STWS_ERR_IO. */
typedef struct stws_transport {
    int (*open)(void *ctx, const char *host, uint16_t port);
    int (*send)(void *ctx, const unsigned char *buf, size_t len);
    int (*recv)(void *ctx, unsigned char *buf, size_t len);
    void (*close)(void *ctx);
    intptr_t (*handle)(void *ctx);
    size_t (*pending)(void *ctx);
    void *ctx;
} stws_transport;

/* An IPv4 or IPv6 address, in network byte order. */
typedef struct stws_address {
    int family;          /* 4 or 6 */
    uint8_t bytes[16];
} stws_address;

/* Name resolution hook: write up to max addresses for host into out and
   return their count (> 0), STWS_WANT_READ to be asked again on a later pump
   (an asynchronous resolver), or a negative error.  Numeric hosts never reach
   it.  The default runs getaddrinfo() on a helper thread (THREADING): the
   step returns STWS_WANT_READ until the answer is in, the connect timeout
   still counts, and meanwhile the transport's handle is a pipe that turns
   readable when the answer arrives (poll it like the socket; the socket
   replaces it once the lookup is done).  With STWS_NO_THREADS the default
   calls getaddrinfo() in the step, which BLOCKS while DNS is slow or down:
   pass a resolver (or a numeric host) to avoid it. */
typedef struct stws_resolver {
    int (*resolve)(const char *host, stws_address *out, int max, void *user_data);
    void *user_data;
} stws_resolver;

typedef struct stws_tcp_desc {
    stws_resolver resolver;    /* default: getaddrinfo on a helper thread
                                  (blocking in the step with STWS_NO_THREADS) */
    stws_allocator allocator;
} stws_tcp_desc;

typedef struct stws_tcp stws_tcp;
/* Built-in non-blocking TCP (IPv4/IPv6, TCP_NODELAY, no SIGPIPE).  Not
   available with STWS_NO_SOCKETS.  1 allocation, and one per host-name
   lookup by the default resolver (see stws_resolver). */
STWS_API stws_tcp *stws_tcp_create(const stws_tcp_desc *desc);
STWS_API void stws_tcp_destroy(stws_tcp *tcp);
STWS_API stws_transport stws_tcp_transport(stws_tcp *tcp);

typedef struct stws_proxy_desc {
    stws_transport inner;      /* required: the stream to the proxy */
    const char *url;           /* http://[user:pass@]host:port */
    stws_allocator allocator;
} stws_proxy_desc;

typedef struct stws_proxy stws_proxy;
/* HTTP CONNECT tunnel (RFC 9110 §9.3.6) with optional Basic auth. */
STWS_API stws_proxy *stws_proxy_create(const stws_proxy_desc *desc);
STWS_API void stws_proxy_destroy(stws_proxy *proxy);
STWS_API stws_transport stws_proxy_transport(stws_proxy *proxy);
/* Why the last CONNECT failed, with the proxy's status line (escaped):
   "proxy refused the CONNECT: HTTP/1.1 403 Forbidden"; "" if it did not. */
STWS_API const char *stws_proxy_error_detail(const stws_proxy *proxy);
/* The proxy to use for url according to https_proxy/http_proxy/no_proxy
   (and their upper-case forms), or NULL for a direct connection. */
STWS_API const char *stws_proxy_from_env(const char *url);

typedef struct stws_tls_desc {
    stws_transport inner;      /* required: TLS runs over any transport */
    const char *ca_file;       /* PEM CA bundle; default: the system bundle */
    const char *ca_pem;        /* PEM CA certificates in memory, NUL-terminated;
                                  takes precedence over ca_file */
    int insecure;              /* 1: no certificate or host name verification;
                                  logs a warning on every connect */
    const char *server_name;   /* name to verify and send as SNI; default:
                                  the host given to open() */
    stws_random random;        /* default: own CTR-DRBG; unused with mbedTLS 4,
                                  whose TLS takes PSA's generator */
    stws_allocator allocator;
    stws_logger logger;
} stws_tls_desc;

typedef struct stws_tls stws_tls;
/* TLS client via mbedTLS over desc->inner.  Verification of the chain and the
   host name (DNS name or IP address) is on unless insecure is set.  Not
   available with STWS_NO_TLS.  The SSL context is made once and reset for
   each connect.  Returns NULL on allocation or CA loading failure (logged).
   With MBEDTLS_USE_PSA_CRYPTO or TLS 1.3 it calls psa_crypto_init() (safe to
   repeat) and never mbedtls_psa_crypto_free(): that is the application's. */
STWS_API stws_tls *stws_tls_create(const stws_tls_desc *desc);
STWS_API void stws_tls_destroy(stws_tls *tls);
STWS_API stws_transport stws_tls_transport(stws_tls *tls);
/* Why the last TLS operation failed ("certificate verify failed: ..."),
   or "" if it did not.  mbedTLS's own texts only: nothing the peer sent. */
STWS_API const char *stws_tls_error_detail(const stws_tls *tls);

/* ==== the connection ====================================================== */

/* Time.  now_ms: monotonic milliseconds (default CLOCK_MONOTONIC; Windows:
   QueryPerformanceCounter), for every timer.  unix_s: wall-clock seconds
   since 1970 (default time()), only for JWT iat/exp.  Tests drive both with
   a fake clock. */
typedef struct stws_clock {
    uint64_t (*now_ms)(void *user_data);
    int64_t (*unix_s)(void *user_data);
    void *user_data;
} stws_clock;

typedef enum stws_conn_state {
    STWS_CONN_IDLE = 0,
    STWS_CONN_CONNECTING,      /* transport open (TCP, proxy, TLS) */
    STWS_CONN_HANDSHAKE,       /* HTTP upgrade */
    STWS_CONN_OPEN,
    STWS_CONN_CLOSING,         /* close frames in flight */
    STWS_CONN_CLOSED
} stws_conn_state;

typedef enum stws_conn_event_type {
    STWS_CONN_EVENT_NONE = 0,
    STWS_CONN_EVENT_OPEN,
    STWS_CONN_EVENT_MESSAGE,   /* opcode, data, len */
    STWS_CONN_EVENT_PING,      /* already answered */
    STWS_CONN_EVENT_PONG,
    STWS_CONN_EVENT_CLOSE,     /* close_code, data/len = reason, clean */
    STWS_CONN_EVENT_ERROR      /* error, close_code sent if any */
} stws_conn_event_type;

/* data/len stay valid until the next call on the connection. */
typedef struct stws_conn_event {
    stws_conn_event_type type;
    stws_opcode opcode;
    const uint8_t *data;
    size_t len;
    int close_code;            /* CLOSE: peer's code, 1005 none, 1006 no close frame */
    int clean;                 /* CLOSE: closing handshake completed */
    stws_result error;         /* ERROR */
} stws_conn_event;

typedef struct stws_conn stws_conn;
typedef void (*stws_conn_event_fn)(stws_conn *conn, const stws_conn_event *ev, void *user_data);

#define STWS_DEFAULT_RECV_BUFFER_SIZE ((size_t)16 * 1024)
#define STWS_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define STWS_DEFAULT_CLOSE_TIMEOUT_MS 1000

typedef struct stws_conn_desc {
    const char *url;               /* ws:// or wss:// (required; copied) */
    stws_transport transport;      /* zero: built-in TCP (+ proxy) (+ TLS for wss) */
    /* built-in stack options */
    const char *ca_file;           /* see stws_tls_desc */
    const char *ca_pem;
    int insecure;
    const char *proxy;             /* http://[user:pass@]host:port; NULL none */
    int proxy_from_env;            /* 1: use https_proxy/http_proxy/no_proxy */
    stws_resolver resolver;
    /* upgrade request */
    const char *origin;
    const char *const *subprotocols;
    int num_subprotocols;
    const stws_header *headers;
    int num_headers;
    /* limits and timers */
    size_t max_frame_size;         /* 0 = STWS_DEFAULT_MAX_FRAME_SIZE (16 MiB) */
    size_t max_message_size;       /* 0 = STWS_DEFAULT_MAX_MESSAGE_SIZE (16 MiB) */
    size_t max_output_size;        /* 0 = STWS_DEFAULT_MAX_OUTPUT_SIZE: 64 MiB of
                                      buffered sends (bounds the output buffer,
                                      see stws_codec_desc) */
    size_t recv_buffer_size;       /* 0 = STWS_DEFAULT_RECV_BUFFER_SIZE (16 KiB,
                                      at least 1 KiB), also the handshake limit */
    int connect_timeout_ms;        /* 0 = STWS_DEFAULT_CONNECT_TIMEOUT_MS (10 s):
                                      connect + TLS + upgrade */
    int close_timeout_ms;          /* 0 = STWS_DEFAULT_CLOSE_TIMEOUT_MS (1 s):
                                      wait for the peer's close */
    /* optional push delivery, called only from inside the pump; the
       callback may send, close or destroy the conn (destroy is deferred to
       the end of the step), never step or poll it */
    stws_conn_event_fn on_event;
    void *user_data;
    /* hooks */
    stws_allocator allocator;
    stws_logger logger;
    stws_clock clock;
    stws_random random;
} stws_conn_desc;

/* Make a connection object (not yet connected).  NULL on bad desc (logged)
   or no memory.  Allocations, all made here: the object, the URL copy, the
   request buffer, the receive buffer, the codec, the random generator (unless
   given), and each built-in transport (TCP, proxy, TLS); with a user
   transport and a random hook that is 5.  connect, reconnect and steady-state
   messaging allocate nothing more (beyond buffers growing to the largest
   message), except inside mbedTLS's own TLS handshake and the default
   resolver's one small record per host-name lookup (ALLOCATION). */
STWS_API stws_conn *stws_conn_create(const stws_conn_desc *desc);
/* Free everything.  Inside on_event it is deferred: no callback runs after
   it and the step frees the conn on its way out (STWS_ERR_CLOSED). */
STWS_API void stws_conn_destroy(stws_conn *conn);
/* Start connecting (again, after CLOSED: buffers and TLS context are reused). */
STWS_API stws_result stws_conn_connect(stws_conn *conn);
/* Advance everything that can advance without blocking: connect, TLS,
   upgrade, writes, one read, timers.  Then read events.

   External loops (epoll, kqueue, libuv, a game loop), level- or
   edge-triggered: wait for stws_conn_handle() in the directions of
   stws_conn_wants(), at most stws_conn_timeout() ms, then step, then take the
   events; repeat.  stws_conn_timeout() is 0 (step again now) while received
   bytes wait to be parsed, while the last read filled its buffer (the socket
   may hold more and gives no new edge for it), while output waits and the
   last write did not block, and while TLS holds decrypted bytes; so stepping
   until it is not 0 reads and writes until the socket would block, as
   EPOLLET requires.  Re-register the handle whenever
   stws_conn_socket_generation() changed: while connecting, the built-in TCP
   makes a new socket for each address it tries, often under the number of
   the one it just closed (which epoll has dropped). */
STWS_API stws_result stws_conn_step(stws_conn *conn);
/* Wait for the socket or the library's next timer, whichever comes first, but
   at most timeout_ms (0 = not at all, negative = no limit of the caller's),
   then step.  Never waits while stws_conn_timeout() is 0 (buffered bytes,
   a due timer).  Without a handle (IDLE, CLOSED, a transport without one) it
   steps without waiting.  The wait is in real milliseconds computed from
   desc.clock: a user clock is taken to run at real speed (drive a fake clock
   with step and stws_conn_timeout() instead). */
STWS_API stws_result stws_conn_poll(stws_conn *conn, int timeout_ms);
/* Next event, or 0 when there is none (then step or poll again).  Events are
   parsed from the received bytes here, one at a time; views stay valid until
   the next call on the connection. */
STWS_API int stws_conn_next_event(stws_conn *conn, stws_conn_event *ev);
/* Milliseconds until stws_conn_step() has work for a timer or buffered data:
   0 = call again now, -1 = nothing but socket readiness (see stws_conn_step). */
STWS_API int stws_conn_timeout(const stws_conn *conn);
/* The socket for external loops (-1 if none) and the direction it waits for;
   while the default resolver's lookup is pending, the pipe (Windows: a UDP
   socket) that turns readable when it ends (ask again after each step). */
STWS_API intptr_t stws_conn_handle(const stws_conn *conn);
/* A number that changes whenever the socket behind stws_conn_handle() is
   replaced or closed, even when the new socket has the old number: register
   the handle again then.  With a user transport it follows the handle's
   value only. */
STWS_API unsigned stws_conn_socket_generation(const stws_conn *conn);
STWS_API int stws_conn_wants(const stws_conn *conn);  /* stws_poll_flags */
/* Queue a message (text, binary, ping).  Only while OPEN. */
STWS_API stws_result stws_conn_send(stws_conn *conn, stws_opcode opcode, const void *data, size_t len);
/* Bytes buffered (framed, in the output buffer) and not yet written to the
   transport: back-pressure. */
STWS_API size_t stws_conn_buffered(const stws_conn *conn);
/* As stws_conn_send, for a message that carries a credential (an auth
   token): its frame is wiped from the output buffer once written, or when
   the socket ends first. */
STWS_API stws_result stws_conn_send_secret(stws_conn *conn, stws_opcode opcode, const void *data, size_t len);
/* Start the closing handshake (§7.1.2); the socket closes when the peer
   answers or close_timeout_ms passes.  Before OPEN it just aborts. */
STWS_API stws_result stws_conn_close(stws_conn *conn, int code, const char *reason);
STWS_API stws_conn_state stws_conn_get_state(const stws_conn *conn);
/* Details of the last error: HTTP status of a refused upgrade (0 if none). */
STWS_API int stws_conn_http_status(const stws_conn *conn);
/* A human-readable line for the last error ("" if none); no secrets, and
   the peer's text in it (HTTP reason, Location, proxy status) escaped as
   for the logger (stws_logger). */
STWS_API const char *stws_conn_error_detail(const stws_conn *conn);
/* Bytes ever written to the transport by this object, over all its
   connects (it only grows): a sender that notes stws_conn_bytes_written() +
   stws_conn_buffered() after a send knows its message has left once the count
   reaches that offset. */
STWS_API uint64_t stws_conn_bytes_written(const stws_conn *conn);
/* 1 if the peer's close frame arrived on the current (or last) socket. */
STWS_API int stws_conn_peer_closed(const stws_conn *conn);
/* Fail the connection now, no closing handshake: the ERROR event (result,
   stws_conn_error_detail() "why: <result>") and CLOSE 1006 follow.  For a
   layer above with its own timers (a watchdog, a silence limit).  result must
   be an error (< 0); STWS_ERR_STATE if IDLE or CLOSED (nothing to end). */
STWS_API stws_result stws_conn_abort(stws_conn *conn, stws_result result, const char *why);
/* Point the next connect at another URL (copied; same scheme, as the TLS
   layer is fixed at create).  Only while IDLE or CLOSED (STWS_ERR_STATE). */
STWS_API stws_result stws_conn_set_url(stws_conn *conn, const char *url);

/* ==== JSON: reading inbound events (strict RFC 8259) ====================== */

/* A checked JSON document: a view of text.  Make one with
   stws_json_doc_init() (lazy: one tokenless check pass, then look-ups walk
   the text) or stws_json_tokenize() (eager: jsmn tokens that the caller's
   stws_json_tokens owns); a client event's doc is one of the two (desc
   tokenize_events).  Both kinds answer every look-up identically.
   Path look-ups take dotted paths with array indices: "me.id", "error.code",
   "message.user.name", "members.0.user.id" or "members[0].user.id"; a key is
   compared with its raw text (escapes as written).  A lazy look-up costs
   about the bytes before the value; nothing is allocated.  A client event's
   document is valid until the next call on the client, and a look-up counts
   as a use of the client (THREADING).  Never change text or len of a made
   document.  A doc with internal NULL (zero-initialised, text and len set by
   hand) still works, but every look-up checks the whole text first; a doc
   whose parse failed finds nothing. */
typedef struct stws_json_doc {
    const char *text;
    size_t len;
    const void *internal;   /* opaque: what checked the text (NULL: nothing, each
                               look-up checks it) */
} stws_json_doc;

/* A reusable jsmn tokenizer: zero-initialise it (or set max_tokens and
   allocator), pass it to stws_json_tokenize() for every document, and
   free it with stws_json_tokens_free().  The token array grows to the
   largest document seen and is reused: no allocation in steady state. */
typedef struct stws_json_tokens {
    void *tok;                /* jsmntok_t[count] as jsmn.h declares it with
                                 JSMN_PARENT_LINKS (type, start, end, size,
                                 parent): cast it to walk tokens the jsmn way */
    int count;                /* tokens of the last document, 0 if it failed */
    int cap;                  /* room in tok */
    int max_tokens;           /* 0 = no limit but the text's size */
    stws_allocator allocator; /* default malloc/free */
    const char *text_;        /* internal: the text tok describes */
    size_t len_;
} stws_json_tokens;

typedef enum stws_json_type {
    STWS_JSON_NONE = 0,     /* not found */
    STWS_JSON_OBJECT,
    STWS_JSON_ARRAY,
    STWS_JSON_STRING,
    STWS_JSON_NUMBER,
    STWS_JSON_BOOL,
    STWS_JSON_NULL
} stws_json_type;

/* One value of a document, found by a look-up or an iteration; valid as
   long as its document (and tokens). */
typedef struct stws_json_value {
    stws_json_type type;    /* STWS_JSON_NONE: nothing was found */
    stws_str raw;           /* its text; for strings between the quotes, still escaped */
    const void *internal;   /* opaque: the tokens of a token document, else NULL */
    int tok;                /* opaque: its token index in a token document */
} stws_json_value;

/* A cursor over the members of an object or the elements of an array:
   each stws_json_next() moves on from where the last one stopped, so
   iterating N children costs O(N) in all.  Fields are internal. */
typedef struct stws_json_iter {
    const char *text_;
    size_t pos_, end_;
    const void *tokens_;
    int next_, parent_, object_, done_;
} stws_json_iter;

/* Check text[0..len) (UTF-8, RFC 8259 grammar, nesting <= 512) and make doc
   a lazy document of it.  STWS_OK, STWS_ERR_JSON, STWS_ERR_INVALID_UTF8,
   STWS_ERR_JSON_TOO_BIG (len > INT_MAX or nesting), STWS_ERR_INVALID_ARG;
   on failure every look-up finds nothing. */
STWS_API stws_result stws_json_doc_init(stws_json_doc *doc, const char *text, size_t len);
/* The same checks, then jsmn (strict, parent links) tokenizes the text into
   tk, and every token is proved against the grammar; doc is a token document
   of tk (valid until tk's next use).  Also STWS_ERR_JSON_TOO_BIG (more than
   tk->max_tokens tokens: one per value and per key) and STWS_ERR_NOMEM (the
   old array is kept). */
STWS_API stws_result stws_json_tokenize(stws_json_tokens *tk, const char *text, size_t len,
                                        stws_json_doc *doc);
/* Free tk's token array (with tk->allocator); tk can be used again. */
STWS_API void stws_json_tokens_free(stws_json_tokens *tk);

/* The value at path ("" = the root) into *out; returns its type,
   STWS_JSON_NONE (out->type too) if the path does not exist. */
STWS_API stws_json_type stws_json_get(const stws_json_doc *doc, const char *path, stws_json_value *out);
/* The value at path relative to v (e.g. "user.id" of a member). */
STWS_API stws_json_type stws_json_get_in(const stws_json_value *v, const char *path, stws_json_value *out);
/* Number of elements of an array or members of an object (0 otherwise). */
STWS_API size_t stws_json_len(const stws_json_value *v);
/* Element i of an array (or the value of member i of an object). */
STWS_API stws_json_type stws_json_elem(const stws_json_value *v, size_t i, stws_json_value *out);
/* Start iterating container v: STWS_OK, or STWS_ERR_JSON_TYPE if v is not
   an object or an array (the iterator then yields nothing). */
STWS_API stws_result stws_json_iter_init(stws_json_iter *it, const stws_json_value *v);
/* The next member (key: a STRING value, raw still escaped; value) or
   element (key->type NONE); 1 if there was one, 0 at the end.  key may be
   NULL. */
STWS_API int stws_json_next(stws_json_iter *it, stws_json_value *key, stws_json_value *val);
/* Typed readers of a value: STWS_ERR_JSON_TYPE if it is of another type
   (null included), STWS_ERR_JSON_PATH if v is nothing (NONE). */
/* A number without fraction or exponent, within int64 (3.5, 1e2: TYPE). */
STWS_API stws_result stws_json_value_int(const stws_json_value *v, int64_t *out);
/* Any number as the nearest double, independent of the C locale; a number
   beyond the double range is STWS_ERR_JSON_TYPE. */
STWS_API stws_result stws_json_value_double(const stws_json_value *v, double *out);
/* true or false as 1 or 0. */
STWS_API stws_result stws_json_value_bool(const stws_json_value *v, int *out);
/* A string unescaped (\u escapes, surrogate pairs included, to UTF-8) into
   buf, NUL-terminated; *len is its length without the NUL, also when
   STWS_ERR_BUFFER_TOO_SMALL (buf then needs *len + 1 bytes).  "\u0000"
   gives a NUL inside: trust *len, not strlen.  Raw view: v->raw. */
STWS_API stws_result stws_json_value_string(const stws_json_value *v, char *buf, size_t cap,
                                            size_t *len);

/* Path shorthands: stws_json_get() and the typed reader.  STWS_ERR_JSON_PATH
   if absent, STWS_ERR_JSON_TYPE if present and of another type (null
   included: a null is present). */
/* The raw view of the value at path (out->ptr NULL if absent); its type. */
STWS_API stws_json_type stws_json_find(const stws_json_doc *doc, const char *path, stws_str *out);
/* stws_json_value_string of the value at path. */
STWS_API stws_result stws_json_string_at(const stws_json_doc *doc, const char *path, char *buf,
                                         size_t cap, size_t *len);
/* stws_json_value_int of the value at path. */
STWS_API stws_result stws_json_int_at(const stws_json_doc *doc, const char *path, int64_t *out);
/* stws_json_value_double of the value at path. */
STWS_API stws_result stws_json_double_at(const stws_json_doc *doc, const char *path, double *out);
/* stws_json_value_bool of the value at path. */
STWS_API stws_result stws_json_bool_at(const stws_json_doc *doc, const char *path, int *out);

/* ==== JSON: a safe writer for outbound events ============================= */

#define STWS_JSON_MAX_DEPTH 32

/* Writes JSON into a caller buffer.  Strings are escaped (RFC 8259 §7:
   quotes, backslashes, control characters); invalid UTF-8 is refused.
   Errors are sticky and reported by stws_json_write_finish(). */
typedef struct stws_json_writer {
    char *buf;
    size_t cap, len;
    int depth;
    uint8_t first[STWS_JSON_MAX_DEPTH];  /* no element yet at this depth */
    uint8_t in_object[STWS_JSON_MAX_DEPTH];
    int after_key;
    stws_result error;
} stws_json_writer;

STWS_API void stws_json_write_init(stws_json_writer *w, char *buf, size_t cap);
STWS_API void stws_json_write_object_begin(stws_json_writer *w);
STWS_API void stws_json_write_object_end(stws_json_writer *w);
STWS_API void stws_json_write_array_begin(stws_json_writer *w);
STWS_API void stws_json_write_array_end(stws_json_writer *w);
/* An object key (escaped); must be followed by exactly one value. */
STWS_API void stws_json_write_key(stws_json_writer *w, const char *key);
STWS_API void stws_json_write_string(stws_json_writer *w, const char *s);
STWS_API void stws_json_write_string_n(stws_json_writer *w, const char *s, size_t n);
STWS_API void stws_json_write_int(stws_json_writer *w, int64_t v);
STWS_API void stws_json_write_bool(stws_json_writer *w, int v);
STWS_API void stws_json_write_null(stws_json_writer *w);
/* A value that is already JSON (e.g. a user's "custom" object); it is
   validated (strict syntax, valid UTF-8) before it is copied. */
STWS_API void stws_json_write_raw(stws_json_writer *w, const char *json, size_t n);
/* NUL-terminate; returns STWS_OK and the length, or the first error:
   STWS_ERR_BUFFER_TOO_SMALL, STWS_ERR_INVALID_UTF8, STWS_ERR_JSON (misuse:
   unbalanced, value without key, bad raw JSON). */
STWS_API stws_result stws_json_write_finish(stws_json_writer *w, size_t *len);

/* ==== JWT (HS256) ========================================================= */

/* Claims of a user token (PROTOCOL.md §7); 0 means "omit". */
typedef struct stws_jwt_claims {
    const char *user_id;
    int64_t exp;
    int64_t iat;
} stws_jwt_claims;

/* Mint header.payload.signature, HMAC-SHA256 keyed with secret, base64url
   without padding, claims with sorted keys and no spaces.  The secret is
   never copied except into mbedTLS's HMAC context, which is wiped. */
STWS_API stws_result stws_jwt_user_token(const char *secret, size_t secret_len,
                                         const stws_jwt_claims *claims, char *out, size_t cap,
                                         size_t *len);
/* {"server":true}: for REST calls, never for the socket. */
STWS_API stws_result stws_jwt_server_token(const char *secret, size_t secret_len, char *out,
                                           size_t cap, size_t *len);

/* ==== the Stream client (docs/PROTOCOL.md) ================================ */

typedef enum stws_client_event_type {
    STWS_CLIENT_EVENT_NONE = 0,
    STWS_CLIENT_EVENT_CONNECTED,     /* first connection.ok: connection_id */
    STWS_CLIENT_EVENT_SERVER,        /* a server event: event_type, json, look-ups */
    STWS_CLIENT_EVENT_DISCONNECTED,  /* a socket ended: result, close_code */
    STWS_CLIENT_EVENT_RECONNECTING,  /* attempt, delay_ms */
    STWS_CLIENT_EVENT_RECONNECTED,   /* connection.ok after a drop: new connection_id;
                                        subscriptions are gone, re-watch now */
    STWS_CLIENT_EVENT_FATAL,         /* the client stopped: result, error_code, http_status,
                                        cause, message (see stws_client_connect) */
    STWS_CLIENT_EVENT_MALFORMED,     /* an inbound message that is not an event:
                                        result, json; the client goes on */
    STWS_CLIENT_EVENT_CLOSED         /* stopped after stws_client_close() or a server 1000 */
} stws_client_event_type;

/* Views stay valid until the next call on the client. */
typedef struct stws_client_event {
    stws_client_event_type type;
    stws_str event_type;       /* SERVER: "message.new", "health.check", ... */
    stws_str json;             /* SERVER, MALFORMED: the text exactly as received */
    stws_json_doc doc;         /* SERVER: for stws_json_get() and the other
                                  look-ups (lazy, or tokens: tokenize_events) */
    stws_str connection_id;    /* CONNECTED, RECONNECTED */
    int attempt;               /* RECONNECTING: 1, 2, ... */
    int delay_ms;              /* RECONNECTING */
    stws_result result;        /* DISCONNECTED, FATAL, MALFORMED */
    int close_code;            /* DISCONNECTED, CLOSED */
    int error_code;            /* FATAL: Stream's connection.error code (40, 43, ...);
                                  after max_attempts that of the last attempt, if any */
    int http_status;           /* DISCONNECTED, FATAL: the status of a refused
                                  upgrade (404, 503, ...), 0 if none */
    stws_result cause;         /* FATAL with STWS_ERR_ATTEMPTS: the last attempt's result */
    stws_str message;          /* FATAL, DISCONNECTED: human-readable reason, the
                                  server's text in it escaped (stws_logger); empty
                                  in CONNECTED, RECONNECTED */
} stws_client_event;

typedef struct stws_client stws_client;

/* Token provider: write a fresh user token into buf (cap bytes) and return
   its length, or a negative value on failure.  Called from inside the pump
   at the first connect and after an expired token (code 40). */
typedef struct stws_token_provider {
    int (*fetch)(char *buf, size_t cap, void *user_data);
    void *user_data;
} stws_token_provider;

/* What on_reconnecting may change for the next attempt. */
typedef struct stws_reconnect_ctl {
    const char *token;        /* set to use this token (copied) */
    const char *url;          /* set to use this URL (copied; e.g. new query) */
} stws_reconnect_ctl;

/* Called from the step after a disconnect, before the RECONNECTING event,
   with the attempt number and its backoff delay.  Return 0 to go on with the
   attempt, non-zero to stop the client (FATAL with STWS_ERR_ABORTED);
   stws_client_close() from inside it stops the client too (CLOSED). */
typedef int (*stws_reconnecting_fn)(stws_client *client, int attempt, int delay_ms,
                                    stws_reconnect_ctl *ctl, void *user_data);
typedef void (*stws_client_event_fn)(stws_client *client, const stws_client_event *ev,
                                     void *user_data);

#define STWS_DEFAULT_URL "wss://chat.stream-io-api.com/api/v2/connect"
#define STWS_DEFAULT_HEALTH_INTERVAL_MS 25000   /* PROTOCOL.md §4 */
#define STWS_DEFAULT_DEAD_TIMEOUT_MS 35000
#define STWS_DEFAULT_WATCHDOG_MS 15000
#define STWS_DEFAULT_BACKOFF_CAP_MS 25000
#define STWS_DEFAULT_SEND_QUEUE_LIMIT ((size_t)1 << 20)
/* A socket that ends sooner than this after its connection.ok was not a
   healthy connection: a failure for the backoff and max_attempts (a server
   that accepts and drops at once must not be retried every 250-500 ms
   forever).  5 s is well before the first health check (25 s). */
#define STWS_CLIENT_STABLE_MS 5000

typedef struct stws_client_desc {
    const char *url;               /* default STWS_DEFAULT_URL */
    const char *api_key;           /* required */
    const char *user_id;           /* required */
    const char *user_name;         /* optional user_details */
    const char *user_image;
    const char *user_custom_json;  /* optional JSON object text */
    /* exactly one of: */
    const char *token;             /* static user JWT: header.payload.signature in
                                      base64url, the header a JSON object; anything
                                      else (an API secret, say) is refused */
    const char *api_secret;        /* mint user tokens (HS256, iat = now - 5 s) */
    stws_token_provider token_provider;
    const char *products;          /* "chat,video,feeds" subset; NULL = no filter */
    const char *client_id;         /* X-Stream-Client; default "stream-ws-c-v0.2.0|os=..." */
    int health_interval_ms;        /* 0 = STWS_DEFAULT_HEALTH_INTERVAL_MS (25 s) */
    int dead_timeout_ms;           /* 0 = STWS_DEFAULT_DEAD_TIMEOUT_MS (35 s):
                                      silence -> reconnect */
    int watchdog_ms;               /* 0 = STWS_DEFAULT_WATCHDOG_MS (15 s): connect
                                      until connection.ok */
    int backoff_cap_ms;            /* 0 = STWS_DEFAULT_BACKOFF_CAP_MS (25 s) */
    int max_attempts;              /* 0 = unlimited consecutive failures (a socket
                                      that dies within STWS_CLIENT_STABLE_MS of its
                                      connection.ok counts as one) */
    size_t send_queue_limit;       /* 0 = STWS_DEFAULT_SEND_QUEUE_LIMIT: 1 MiB of
                                      queued outbound text */
    int max_json_tokens;           /* most JSON tokens (values plus keys, as jsmn
                                      counts them) in one inbound event; more is
                                      MALFORMED with STWS_ERR_JSON_TOO_BIG.
                                      0 = conn.max_message_size (its default
                                      STWS_DEFAULT_MAX_MESSAGE_SIZE): no limit
                                      but the size (a token takes at least a
                                      byte) */
    int tokenize_events;           /* 0 = lazy: an event's doc is checked in one
                                      pass and look-ups walk its text (fastest
                                      for a few look-ups); 1 = every event is
                                      tokenized by jsmn (stws_json_tokenize) into
                                      tokens the client owns and reuses */
    stws_reconnecting_fn on_reconnecting;
    stws_client_event_fn on_event; /* optional push delivery of every event (inside
                                      the pump); set, stws_client_next_event() has
                                      nothing left to return */
    void *user_data;
    /* The connection's options, see stws_conn_desc: transport, TLS (ca_file,
       ca_pem, insecure), proxy, resolver, the upgrade request's origin,
       headers and subprotocols, max_frame_size, max_message_size (also the
       most one inbound event may take), max_output_size, recv_buffer_size,
       close_timeout_ms; connect_timeout_ms 0 = watchdog_ms.  The client owns
       and ignores conn.url (built from url, api_key and client_id),
       conn.on_event, conn.user_data and the hooks (conn.allocator, logger,
       clock, random: the client's below are shared with its connection). */
    stws_conn_desc conn;
    /* hooks, shared with the connection */
    stws_allocator allocator;
    stws_logger logger;
    stws_clock clock;
    stws_random random;
} stws_client_desc;

/* Make a client (nothing connects yet).  NULL on a bad desc (logged): a
   missing or doubled token source, a token that is not a JWT (the same check
   refuses what a token provider or on_reconnecting returns), user fields
   that are not UTF-8, user_custom_json that is not a JSON object. */
STWS_API stws_client *stws_client_create(const stws_client_desc *desc);
/* Free everything.  Inside a callback (handler, on_event, on_reconnecting,
   token provider) it is deferred: no callback runs after it, and the client
   is freed when the step returns (STWS_ERR_CLOSED); do not touch it again. */
STWS_API void stws_client_destroy(stws_client *client);
/* Start connecting: the first attempt (token provider included) runs in the
   next step.  From here on the client reconnects by itself.  Also restarts
   a client that stopped (closed or fatal).
   Failures that a retry cannot mend stop the client at once (FATAL, no
   retry): a fatal connection.error code (PROTOCOL.md §6), an upgrade answered
   4xx other than 408 and 429 (result STWS_ERR_HANDSHAKE_STATUS, http_status:
   a wrong URL or key), and a TLS handshake that fails as TLS before the
   upgrade (STWS_ERR_TLS_VERIFY: the certificate; STWS_ERR_TLS: a peer that
   does not speak TLS, e.g. wss:// to a plain port).  Everything else (refused
   TCP, 5xx, 408, 429, resets, timeouts) is retried with backoff; after
   max_attempts the FATAL event (STWS_ERR_ATTEMPTS) carries the last attempt's
   result in cause, its http_status, connection.error code and reason.  A
   drop that is retried is logged at WARN or below; ERROR only when the
   client stops. */
STWS_API stws_result stws_client_connect(stws_client *client);
/* Advance without blocking (connect, auth, timers, I/O), then read events.
   Not from inside a callback (STWS_ERR_STATE). */
STWS_API stws_result stws_client_step(stws_client *client);
/* Wait for the socket, the next timer (health check, dead timer, backoff,
   watchdog) or a wake (stws_client_wake(), stws_client_post() from another
   thread), whichever first, at most timeout_ms (negative = no limit of the
   caller's), then step; as stws_conn_poll.  In backoff, with no socket, it
   sleeps until the backoff timer (real milliseconds from desc.clock). */
STWS_API stws_result stws_client_poll(stws_client *client, int timeout_ms);
/* Next event or 0.  Protocol messages (connection.ok, health.check) are
   acted on here as well as delivered.  Push and pull together: with
   desc.on_event set every event is pushed and nothing is left to pull; with
   only stws_client_on() handlers the step hands SERVER events to the
   handlers (MALFORMED ones are logged and dropped), and the lifecycle
   events (CONNECTED, DISCONNECTED, RECONNECTING, RECONNECTED, FATAL, CLOSED)
   stay here to be pulled (the latest 8 are kept when nobody pulls).  0
   inside a callback. */
STWS_API int stws_client_next_event(stws_client *client, stws_client_event *ev);
/* Push handlers by event type ("message.new"), "*" for every server event;
   called only from inside stws_client_step()/poll(), in the order they were
   added; a server event no handler matches is dropped.  fn NULL removes
   the handlers of exactly that event_type ("*" too; STWS_ERR_INVALID_ARG if
   there was none).  At most 32 (STWS_ERR_NOMEM). */
STWS_API stws_result stws_client_on(stws_client *client, const char *event_type,
                                    stws_client_event_fn fn, void *user_data);
/* 0 = step now, -1 = no timer, else ms to the next timer. */
STWS_API int stws_client_timeout(const stws_client *client);
STWS_API intptr_t stws_client_handle(const stws_client *client);
STWS_API int stws_client_wants(const stws_client *client);
/* Changes whenever the socket behind stws_client_handle() is replaced or
   closed (stws_conn_socket_generation): re-register the handle then. */
STWS_API unsigned stws_client_socket_generation(const stws_client *client);
/* Queue one text message (JSON).  Kept across reconnects, in order, and
   written after the next connection.ok; removed only once fully written.
   Refused, with nothing queued or dropped, checked in this order:
   STWS_ERR_MESSAGE_TOO_BIG (it could never be written: its frame would not
   fit the connection's 64 MiB output, STWS_DEFAULT_MAX_OUTPUT_SIZE),
   STWS_ERR_QUEUE_FULL (it would pass send_queue_limit),
   STWS_ERR_INVALID_UTF8, STWS_ERR_JSON (not exactly one JSON value, RFC 8259:
   the protocol is JSON, and a server would drop the socket for it). */
STWS_API stws_result stws_client_send(stws_client *client, const char *text, size_t len);
/* Bytes of messages waiting in the send queue (posted ones count from the
   step that moved them out of the inbox).  "Queued" is the client's own
   queue: whole messages (their text, not frames) kept across reconnects until
   their frame is fully written; it includes what is also buffered in the
   connection (stws_conn_buffered), so the counts differ. */
STWS_API size_t stws_client_queued(const stws_client *client);
/* Stop: close 1000 if connected, no more reconnects (also during backoff);
   a CLOSED event follows.  STWS_ERR_STATE (and no event) on a client that
   was never connected; STWS_OK and nothing more if already stopped. */
STWS_API stws_result stws_client_close(stws_client *client);
/* The current connection_id ("" when not connected). */
STWS_API const char *stws_client_connection_id(const stws_client *client);

#if !defined(STWS_NO_THREADS) && !defined(STWS_NO_SOCKETS)
/* Thread-safe stws_client_send() (THREADING): queue one text message from any
   thread and wake the pump.  It waits in a mutex-protected inbox that the
   next step moves into the send queue, in each posting thread's order (a
   message the queue cannot take yet, or any while the client is stopped,
   stays in the inbox, in order, nothing dropped); from there on it is a sent
   message like any other.  Refused,
   with nothing queued: STWS_ERR_INVALID_ARG, STWS_ERR_MESSAGE_TOO_BIG,
   STWS_ERR_INVALID_UTF8, STWS_ERR_JSON as for stws_client_send(), then
   STWS_ERR_CLOSED (the client was stopped at its last step) and
   STWS_ERR_QUEUE_FULL (inbox plus the send queue as of the last step would
   pass send_queue_limit). */
STWS_API stws_result stws_client_post(stws_client *client, const char *text, size_t len);
/* Make a stws_client_poll() that is waiting (or the next one) return at
   once; safe from any thread.  For external loops: stws_client_wake_handle(). */
STWS_API void stws_client_wake(stws_client *client);
/* The read end of the wake pipe (-1 if none; Windows: a UDP SOCKET): add it
   to an external loop's poll set for reading; the next step empties it. */
STWS_API intptr_t stws_client_wake_handle(const stws_client *client);
#endif

#ifdef __cplusplus
} /* extern "C" */
#endif
#endif /* STREAM_WS_H */

/* ========================================================================= */
/* ==== IMPLEMENTATION ===================================================== */
/* ========================================================================= */
#ifdef STREAM_WS_IMPLEMENTATION
#ifndef STREAM_WS_IMPLEMENTATION_DONE
#define STREAM_WS_IMPLEMENTATION_DONE

#include <string.h>
#include <stdlib.h>
#include <stdio.h>
#include <stdarg.h>
#ifndef STWS_NO_SOCKETS
#include <time.h>
#ifdef _WIN32
#include <winsock2.h> /* before windows.h, which would bring the old winsock.h */
#include <ws2tcpip.h>
#include <windows.h>
#ifdef _MSC_VER
#pragma comment(lib, "ws2_32.lib")
#endif
#else
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#endif
#endif
#if !defined(STWS_NO_THREADS) && !defined(STWS_NO_SOCKETS)
#define STWS__THREADS 1 /* Win32 threads come with <windows.h> above */
#ifndef _WIN32
#include <pthread.h>
#include <signal.h>
#endif
#endif
#ifndef STWS_ASSERT
#include <assert.h>
#define STWS_ASSERT(c) assert(c)
#endif

#include <mbedtls/version.h>
#include <mbedtls/base64.h>
#if MBEDTLS_VERSION_NUMBER >= 0x04000000
/* mbedTLS 4 (crypto in TF-PSA-Crypto): the legacy SHA-1, MD-HMAC, entropy and
   CTR-DRBG APIs are private, so SHA-1, HMAC-SHA256 and random come from PSA,
   which needs psa_crypto_init() first (idempotent; PSA holds the state). */
#define STWS__PSA_ONLY 1
#include <psa/crypto.h>
#else
#include <mbedtls/sha1.h>
#ifndef STWS_NO_DEFAULT_RANDOM
#include <mbedtls/entropy.h>
#endif
#if !defined(STWS_NO_DEFAULT_RANDOM) || !defined(STWS_NO_TLS)
#include <mbedtls/ctr_drbg.h> /* the generator; TLS uses its error code */
#endif
#endif
#include <mbedtls/platform_util.h>
#ifndef STWS_NO_TLS
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/error.h>
/* TLS and X.509 on PSA crypto (MBEDTLS_USE_PSA_CRYPTO, the firmware SDKs'
   setting) or TLS 1.3 need psa_crypto_init() before the first handshake or
   signature check; stws_tls_create calls it (idempotent: PSA keeps its own
   "initialised" state, we keep none). */
#if defined(MBEDTLS_USE_PSA_CRYPTO) || defined(MBEDTLS_SSL_PROTO_TLS1_3) || defined(STWS__PSA_ONLY)
#include <psa/crypto.h>
#define STWS__TLS_PSA_INIT 1
#endif
#endif

/* ==== util ================================================================ */

#define STWS__MIN(a, b) ((a) < (b) ? (a) : (b))
#define STWS__MAX(a, b) ((a) > (b) ? (a) : (b))

/* Timers are absolute milliseconds, 0 for none; timeouts are what poll()
   takes: milliseconds from now, 0 for "step now", -1 for none. */
static int stws__ms_until(uint64_t deadline, uint64_t now) {
    if (!deadline) return -1;
    if (now >= deadline) return 0;
    return (int)STWS__MIN(deadline - now, (uint64_t)0x7FFFFFFF);
}
static int stws__sooner(int a, int b) { return a < 0 || (b >= 0 && b < a) ? b : a; }

static void *stws__default_alloc(size_t size, void *user_data) {
    (void)user_data;
    return malloc(size);
}
static void stws__default_free(void *ptr, void *user_data) {
    (void)user_data;
    free(ptr);
}

/* Zero means default, applied in one place. */
static stws_allocator stws__allocator_def(const stws_allocator *a) {
    stws_allocator r;
    if (a && a->alloc && a->free) return *a;
    r.alloc = stws__default_alloc;
    r.free = stws__default_free;
    r.user_data = NULL;
    return r;
}
static void *stws__alloc(const stws_allocator *a, size_t size) {
    return a->alloc(size, a->user_data);
}
static void stws__free(const stws_allocator *a, void *p) {
    if (p) a->free(p, a->user_data);
}

static int stws__lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

static int stws__ieq(const char *a, size_t alen, const char *b) {
    size_t i;
    for (i = 0; i < alen; i++)
        if (!b[i] || stws__lower((unsigned char)a[i]) != stws__lower((unsigned char)b[i])) return 0;
    return b[alen] == 0;
}

/* RFC 7230 §3.2.6 token characters. */
static int stws__is_tchar(int c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void stws__default_log(stws_log_level level, const char *msg, void *user_data) {
    (void)user_data;
#ifndef STWS_NO_STDIO
    if (level <= STWS_LOG_WARN)
        fprintf(stderr, "stream_ws: %s: %s\n", level == STWS_LOG_ERROR ? "error" : "warning", msg);
#else
    (void)level;
    (void)msg;
#endif
}

/* A string as is: cut to fit cap (> 0), always terminated.  Not snprintf
   "%s": that needs a literal shared across layers, and gc-sections then keeps
   the section the compiler put it in, with all its other strings. */
static void stws__copy(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* One character of s[i..n) as it is written: its bytes into e, their count
   returned, the input bytes it took in *used. */
static size_t stws__safe_char(const uint8_t *s, size_t n, size_t i, char e[6], size_t *used) {
    static const char hex[] = "0123456789ABCDEF";
    uint8_t b = s[i];
    uint32_t cp = 0; /* a code point to write as \uHHHH when non-zero */
    size_t len;
    uint32_t st = 0;
    *used = 1;
    e[0] = (char)b;
    if (b < 0x20 || b == 0x7F || b == '\\') {
        e[0] = '\\';
        e[1] = b == '\\' ? '\\' : b == '\n' ? 'n' : b == '\r' ? 'r' : b == '\t' ? 't' : 'x';
        if (e[1] != 'x') return 2;
        e[2] = hex[b >> 4];
        e[3] = hex[b & 15];
        return 4;
    }
    if (b < 0x80) return 1;
    len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    if (i + len > n || stws_utf8_validate(&st, s + i, len) != len || st != 0) {
        e[0] = (char)0xEF; /* U+FFFD REPLACEMENT CHARACTER */
        e[1] = (char)0xBF;
        e[2] = (char)0xBD;
        return 3;
    }
    *used = len;
    if (b == 0xC2 && s[i + 1] < 0xA0) cp = s[i + 1];
    else if (b == 0xE2 && s[i + 1] == 0x80 && (s[i + 2] == 0xA8 || s[i + 2] == 0xA9))
        cp = 0x2000u | (s[i + 2] & 0x3Fu); /* 0x2028 / 0x2029 */
    if (!cp) {
        memcpy(e, s + i, len);
        return len;
    }
    e[0] = '\\';
    e[1] = 'u';
    for (len = 0; len < 4; len++) e[2 + len] = hex[(cp >> (12 - 4 * len)) & 15];
    return 6;
}

/* Text from the network (a server's error message, a refused upgrade's
   reason and Location, a close reason, a proxy's status line) made fit for a
   log line or an event's message, which promise one line of printable UTF-8:
   a hostile peer must not forge log lines or reach a terminal with escapes.
   C0 controls, DEL, C1 controls (U+0080-U+009F, 8-bit CSI among them) and
   U+2028/U+2029 (line breaks to some viewers) become \n \r \t \xHH \uHHHH,
   a backslash becomes \\ (so an escape is never ambiguous), each invalid
   UTF-8 byte becomes U+FFFD.  Cut at a character boundary to fit cap (> 0),
   "..." marking the cut (if cap > 3); always terminated.  Returns the
   length written. */
static size_t stws__copy_safe(char *dst, size_t cap, const void *src, size_t n) {
    const uint8_t *s = (const uint8_t *)src;
    size_t i = 0, o = 0, used, room = cap - 1, mark = room >= 3 ? 3 : 0;
    int rest_fits = 0;
    while (i < n) {
        char e[6];
        size_t el = stws__safe_char(s, n, i, e, &used);
        /* while more follows, keep room for the "..." unless all of it fits */
        if (!rest_fits && o + el + (i + used < n ? mark : 0) > room) {
            size_t j = i, need = 0;
            while (j < n && o + need <= room) {
                char t[6];
                size_t u;
                need += stws__safe_char(s, n, j, t, &u);
                j += u;
            }
            rest_fits = j == n && o + need <= room;
            if (!rest_fits) {
                memcpy(dst + o, "...", mark); /* fits: see the test above */
                o += mark;
                break;
            }
        }
        memcpy(dst + o, e, el);
        o += el;
        i += used;
    }
    dst[o] = 0;
    return o;
}

static stws_logger stws__logger_def(const stws_logger *l) {
    stws_logger r;
    if (l && l->func) return *l;
    r.func = stws__default_log;
    r.user_data = NULL;
    return r;
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static void stws__log(const stws_logger *l, stws_log_level level, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    l->func(level, buf, l->user_data);
}
/* A finished line (no formatting). */
static void stws__log_line(const stws_logger *l, stws_log_level level, const char *line) {
    l->func(level, line, l->user_data);
}

/* The codes are sparse (0, 1, -0x101 .. -0x1E3), so a switch becomes a jump
   table of ~480 pointers (1.8 KB on a 32-bit MCU).  Instead one list, kept
   as pairs, expands into a code array and one string of NUL-separated texts
   in the same order: 2 bytes per code, no pointers. */
#define STWS__RESULT_TEXTS(X) \
    X(STWS_OK, "ok") \
    X(STWS_INCOMPLETE, "incomplete: more input needed") \
    X(STWS_ERR_INVALID_ARG, "invalid argument") \
    X(STWS_ERR_NOMEM, "out of memory") \
    X(STWS_ERR_STATE, "not allowed in this state") \
    X(STWS_ERR_OUTPUT_FULL, "output queue full") \
    X(STWS_ERR_BUFFER_TOO_SMALL, "buffer too small") \
    X(STWS_ERR_RANDOM, "random source failed") \
    X(STWS_ERR_CLOSED, "connection closed") \
    X(STWS_ERR_URL_SCHEME, "URL scheme is not ws:// or wss://") \
    X(STWS_ERR_URL_HOST, "URL host is empty or malformed") \
    X(STWS_ERR_URL_PORT, "URL port is invalid or out of range") \
    X(STWS_ERR_URL_FRAGMENT, "URL has a fragment (forbidden by RFC 6455 section 3)") \
    X(STWS_ERR_URL_CHAR, "URL contains a control, space or non-ASCII character") \
    X(STWS_ERR_URL_TOO_LONG, "URL is too long") \
    X(STWS_ERR_URL_USERINFO, "URL user information is not supported") \
    X(STWS_ERR_RESERVED_BITS, "reserved bits set without a negotiated extension") \
    X(STWS_ERR_RESERVED_OPCODE, "reserved opcode") \
    X(STWS_ERR_MASKED_FRAME, "masked frame from the server") \
    X(STWS_ERR_BAD_LENGTH, "invalid 64-bit payload length") \
    X(STWS_ERR_CONTROL_TOO_LONG, "control frame payload over 125 bytes") \
    X(STWS_ERR_CONTROL_FRAGMENTED, "fragmented control frame") \
    X(STWS_ERR_UNEXPECTED_CONTINUATION, "continuation frame without a message to continue") \
    X(STWS_ERR_EXPECTED_CONTINUATION, "new data frame inside a fragmented message") \
    X(STWS_ERR_BAD_CLOSE_PAYLOAD, "close frame with a 1-byte payload") \
    X(STWS_ERR_BAD_CLOSE_CODE, "invalid close code") \
    X(STWS_ERR_INVALID_UTF8, "invalid UTF-8") \
    X(STWS_ERR_FRAME_TOO_BIG, "frame larger than max_frame_size") \
    X(STWS_ERR_MESSAGE_TOO_BIG, "message larger than max_message_size") \
    X(STWS_ERR_HANDSHAKE_TOO_BIG, "handshake response header too big") \
    X(STWS_ERR_HANDSHAKE_MALFORMED, "malformed handshake response") \
    X(STWS_ERR_HANDSHAKE_STATUS, "handshake status is not 101") \
    X(STWS_ERR_HANDSHAKE_UPGRADE, "handshake response lacks Upgrade: websocket") \
    X(STWS_ERR_HANDSHAKE_CONNECTION, "handshake response lacks Connection: upgrade") \
    X(STWS_ERR_HANDSHAKE_ACCEPT, "Sec-WebSocket-Accept does not match the key") \
    X(STWS_ERR_HANDSHAKE_EXTENSION, "server chose an extension that was not requested") \
    X(STWS_ERR_HANDSHAKE_SUBPROTOCOL, "server chose a subprotocol that was not requested") \
    X(STWS_ERR_HEADER_VALUE, "CR, LF, NUL or invalid character in a request header") \
    X(STWS_ERR_RESOLVE, "host name resolution failed") \
    X(STWS_ERR_CONNECT, "TCP connect failed") \
    X(STWS_ERR_TIMEOUT, "timed out") \
    X(STWS_ERR_IO, "send or receive failed") \
    X(STWS_ERR_EOF, "connection closed by the peer without a close frame") \
    X(STWS_ERR_TLS, "TLS error") \
    X(STWS_ERR_TLS_VERIFY, "TLS certificate verification failed") \
    X(STWS_ERR_PROXY, "HTTP proxy CONNECT failed") \
    X(STWS_ERR_JSON, "malformed JSON") \
    X(STWS_ERR_JSON_PATH, "JSON path not found") \
    X(STWS_ERR_JSON_TOO_BIG, "JSON has more tokens than max_json_tokens") \
    X(STWS_ERR_JSON_TYPE, "JSON value of another type") \
    X(STWS_ERR_EVENT_SHAPE, "event is not a JSON object with a string type") \
    X(STWS_ERR_AUTH, "authentication failed (fatal connection.error)") \
    X(STWS_ERR_AUTH_TRANSIENT, "connection.error (transient, retrying)") \
    X(STWS_ERR_TOKEN, "no token could be obtained") \
    X(STWS_ERR_QUEUE_FULL, "send queue full") \
    X(STWS_ERR_ATTEMPTS, "reconnect attempts exhausted") \
    X(STWS_ERR_ABORTED, "stopped by on_reconnecting") \
    X(STWS_ERR_DEAD, "connection silent for too long") \
    X(STWS_ERR_WATCHDOG, "no connection.ok in time") \
    X(STWS_ERR_HTTP_MALFORMED, "malformed HTTP response") \
    X(STWS_ERR_HTTP_HEADERS_TOO_BIG, "HTTP response header too big") \
    X(STWS_ERR_HTTP_BODY_TOO_BIG, "HTTP response body larger than max_body_size") \
    X(STWS_ERR_HTTP_CHUNK, "malformed HTTP chunk")

#define STWS__RESULT_CODE(code, text) code,
#define STWS__RESULT_TEXT(code, text) text "\0"
static const int16_t stws__result_codes[] = {STWS__RESULT_TEXTS(STWS__RESULT_CODE)};
static const char stws__result_texts[] = STWS__RESULT_TEXTS(STWS__RESULT_TEXT);
#undef STWS__RESULT_CODE
#undef STWS__RESULT_TEXT
#undef STWS__RESULT_TEXTS

const char *stws_result_string(stws_result r) {
    const char *s = stws__result_texts;
    size_t i;
    for (i = 0; i < sizeof stws__result_codes / sizeof stws__result_codes[0]; i++) {
        if (stws__result_codes[i] == (int)r) return s;
        s += strlen(s) + 1;
    }
    return "unknown result";
}

/* ---- default random: CTR-DRBG seeded from mbedTLS's entropy source ------- */

#if !defined(STWS_NO_DEFAULT_RANDOM) && defined(STWS__PSA_ONLY)
/* mbedTLS 4: PSA's own generator.  The object holds nothing but keeps the
   ownership rules of the CTR-DRBG build. */
typedef struct stws__drbg {
    int unused;
} stws__drbg;

static int stws__drbg_init(stws__drbg *d) {
    (void)d;
    return psa_crypto_init() == PSA_SUCCESS ? 0 : -1;
}
static void stws__drbg_free(stws__drbg *d) { (void)d; }
static int stws__drbg_fill(void *buf, size_t len, void *user_data) {
    (void)user_data;
    return psa_generate_random((uint8_t *)buf, len) == PSA_SUCCESS ? 0 : -1;
}
#elif !defined(STWS_NO_DEFAULT_RANDOM)
typedef struct stws__drbg {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context ctr;
} stws__drbg;

static int stws__drbg_init(stws__drbg *d) {
    static const unsigned char pers[] = "stream_ws.h";
    mbedtls_entropy_init(&d->entropy);
    mbedtls_ctr_drbg_init(&d->ctr);
    return mbedtls_ctr_drbg_seed(&d->ctr, mbedtls_entropy_func, &d->entropy, pers,
                                 sizeof pers - 1);
}
static void stws__drbg_free(stws__drbg *d) {
    mbedtls_ctr_drbg_free(&d->ctr);
    mbedtls_entropy_free(&d->entropy);
}
static int stws__drbg_fill(void *buf, size_t len, void *user_data) {
    stws__drbg *d = (stws__drbg *)user_data;
    unsigned char *p = (unsigned char *)buf;
    while (len) {
        size_t n = STWS__MIN(len, (size_t)MBEDTLS_CTR_DRBG_MAX_REQUEST);
        if (mbedtls_ctr_drbg_random(&d->ctr, p, n) != 0) return -1;
        p += n;
        len -= n;
    }
    return 0;
}
#endif

#ifndef STWS_NO_DEFAULT_RANDOM
/* Allocate and seed a generator; on success *out holds the hook. */
static stws__drbg *stws__drbg_create(const stws_allocator *a, stws_random *out) {
    stws__drbg *d = (stws__drbg *)stws__alloc(a, sizeof *d);
    if (!d) return NULL;
    if (stws__drbg_init(d) != 0) {
        stws__drbg_free(d);
        stws__free(a, d);
        return NULL;
    }
    out->fill = stws__drbg_fill;
    out->user_data = d;
    return d;
}
#define STWS__NO_RANDOM "cannot seed the default random generator"
#else
/* Firmware with a hardware RNG: no generator of our own, so mbedTLS's
   entropy, CTR-DRBG and AES modules are not linked.  The type stays
   incomplete; no object ever holds one. */
typedef struct stws__drbg stws__drbg;
static stws__drbg *stws__drbg_create(const stws_allocator *a, stws_random *out) {
    (void)a;
    (void)out;
    return NULL;
}
static void stws__drbg_free(stws__drbg *d) { (void)d; }
#define STWS__NO_RANDOM "STWS_NO_DEFAULT_RANDOM needs a random hook"
#endif

/* The random source of every layer's create: the desc's hook if it has one,
   else a generator of our own (*own, freed with stws__random_free).  Returns
   0, or -1 when there is none (log STWS__NO_RANDOM). */
static int stws__random_init(const stws_allocator *a, const stws_random *hook, stws_random *out,
                             stws__drbg **own) {
    *own = NULL;
    if (hook && hook->fill) {
        *out = *hook;
        return 0;
    }
    *own = stws__drbg_create(a, out);
    return *own ? 0 : -1;
}
static void stws__random_free(const stws_allocator *a, stws__drbg **own) {
    if (!*own) return;
    stws__drbg_free(*own);
    stws__free(a, *own);
    *own = NULL;
}

static int stws__sha1(const unsigned char *in, size_t len, unsigned char out[20]) {
#if defined(STWS__PSA_ONLY)
    size_t n;
    if (psa_crypto_init() != PSA_SUCCESS) return -1;
    return psa_hash_compute(PSA_ALG_SHA_1, in, len, out, 20, &n) == PSA_SUCCESS ? 0 : -1;
#elif MBEDTLS_VERSION_NUMBER >= 0x03000000
    return mbedtls_sha1(in, len, out);
#else
    return mbedtls_sha1_ret(in, len, out);
#endif
}

/* ==== UTF-8 (RFC 3629 §4) ================================================= */

/* The state packs what the next byte must be: bits 0-7 the continuation
   bytes still needed, 8-15 the lowest and 16-23 the highest allowed value of
   the next one.  The narrowed first-continuation ranges exclude overlong
   forms (E0, F0), surrogates (ED) and code points above U+10FFFF (F4). */
size_t stws_utf8_validate(uint32_t *state, const void *buf, size_t len) {
    const uint8_t *p = (const uint8_t *)buf;
    uint32_t st = *state;
    size_t i = 0;
    while (i < len) {
        uint8_t b;
        if (st == 0) {
            /* ASCII fast path, 8 bytes at a time (memcpy: no alignment UB). */
            while (len - i >= 8) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & UINT64_C(0x8080808080808080)) break;
                i += 8;
            }
            if (i == len) break;
            b = p[i];
            if (b < 0x80) { i++; continue; }
            if (b >= 0xC2 && b <= 0xDF) st = 1u | 0x80u << 8 | 0xBFu << 16;
            else if (b == 0xE0) st = 2u | 0xA0u << 8 | 0xBFu << 16;
            else if (b == 0xED) st = 2u | 0x80u << 8 | 0x9Fu << 16;
            else if (b >= 0xE1 && b <= 0xEF) st = 2u | 0x80u << 8 | 0xBFu << 16;
            else if (b == 0xF0) st = 3u | 0x90u << 8 | 0xBFu << 16;
            else if (b >= 0xF1 && b <= 0xF3) st = 3u | 0x80u << 8 | 0xBFu << 16;
            else if (b == 0xF4) st = 3u | 0x80u << 8 | 0x8Fu << 16;
            else break;
            i++;
        } else {
            b = p[i];
            if (b < ((st >> 8) & 0xFF) || b > ((st >> 16) & 0xFF)) break;
            st = (st & 0xFF) - 1;
            if (st) st |= 0x80u << 8 | 0xBFu << 16;
            i++;
        }
    }
    *state = st;
    return i;
}

/* ==== URL (RFC 6455 §3, RFC 3986) ========================================= */

stws_result stws_url_parse(const char *url, stws_url *out) {
    size_t n, i, hs, he, pe;
    if (!url || !out) return STWS_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    for (n = 0; url[n]; n++) {
        unsigned char c = (unsigned char)url[n];
        if (n >= STWS_MAX_URL) return STWS_ERR_URL_TOO_LONG;
        if (c <= 0x20 || c >= 0x7F) return STWS_ERR_URL_CHAR;
    }
    if (n >= 5 && stws__ieq(url, 5, "ws://")) {
        i = 5;
    } else if (n >= 6 && stws__ieq(url, 6, "wss://")) {
        out->secure = 1;
        i = 6;
    } else {
        return STWS_ERR_URL_SCHEME;
    }
    if (memchr(url, '#', n)) return STWS_ERR_URL_FRAGMENT;
    /* authority: up to the first '/', '?' */
    for (pe = i; pe < n && url[pe] != '/' && url[pe] != '?'; pe++)
        if (url[pe] == '@') return STWS_ERR_URL_USERINFO;
    if (url[i] == '[') {
        size_t colons = 0;
        hs = i + 1;
        for (he = hs; he < pe && url[he] != ']'; he++) {
            char c = url[he];
            if (c == ':') colons++;
            else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                       (c >= 'A' && c <= 'F') || c == '.'))
                return STWS_ERR_URL_HOST;
        }
        /* 45: the longest IPv6 text (RFC 4291 §2.2, IPv4 tail); this also
           bounds what stws_conn copies into its host buffer */
        if (he >= pe || he == hs || colons < 2 || he - hs > 45) return STWS_ERR_URL_HOST;
        out->ipv6 = 1;
        i = he + 1;
    } else {
        hs = i;
        for (he = hs; he < pe && url[he] != ':'; he++) {
            char c = url[he];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '-' || c == '.' || c == '_'))
                return STWS_ERR_URL_HOST;
        }
        if (he == hs || he - hs > 253) return STWS_ERR_URL_HOST;
        i = he;
    }
    out->host.ptr = url + hs;
    out->host.len = he - hs;
    out->port = out->secure ? 443 : 80;
    if (i < pe) {
        unsigned long port = 0;
        size_t d;
        if (url[i] != ':') return STWS_ERR_URL_HOST; /* junk after ']' */
        i++;
        if (i == pe || pe - i > 5) return STWS_ERR_URL_PORT;
        for (d = i; d < pe; d++) {
            if (url[d] < '0' || url[d] > '9') return STWS_ERR_URL_PORT;
            port = port * 10 + (unsigned long)(url[d] - '0');
        }
        if (port == 0 || port > 65535) return STWS_ERR_URL_PORT;
        out->port = (uint16_t)port;
        out->port_explicit = 1;
    }
    /* path and query */
    i = pe;
    {
        const char *q = (const char *)memchr(url + i, '?', n - i);
        size_t qpos = q ? (size_t)(q - url) : n;
        if (qpos > i) {
            out->path.ptr = url + i;
            out->path.len = qpos - i;
        } else {
            out->path.ptr = "/";
            out->path.len = 1;
        }
        if (q) {
            out->query.ptr = q + 1;
            out->query.len = n - qpos - 1;
        }
    }
    return STWS_OK;
}

/* ==== opening handshake (RFC 6455 §4) ===================================== */

static const char stws__ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

stws_result stws_handshake_key(const stws_random *random, char key[STWS_HANDSHAKE_KEY_SIZE]) {
    unsigned char raw[16];
    size_t olen = 0;
    int rc;
    if (!key) return STWS_ERR_INVALID_ARG;
    {
        /* a generator of our own is tens of KiB (the entropy pool): heap */
        stws_allocator a = stws__allocator_def(NULL);
        stws__drbg *own;
        stws_random rnd;
        rc = stws__random_init(&a, random, &rnd, &own);
        if (rc == 0) rc = rnd.fill(raw, sizeof raw, rnd.user_data);
        stws__random_free(&a, &own);
    }
    if (rc != 0) return STWS_ERR_RANDOM;
    if (mbedtls_base64_encode((unsigned char *)key, STWS_HANDSHAKE_KEY_SIZE, &olen, raw,
                              sizeof raw) != 0 || olen != 24)
        return STWS_ERR_RANDOM;
    key[24] = 0;
    return STWS_OK;
}

stws_result stws_handshake_accept(const char *key, char accept[STWS_HANDSHAKE_ACCEPT_SIZE]) {
    unsigned char buf[128], digest[20];
    size_t klen, olen = 0;
    if (!key || !accept) return STWS_ERR_INVALID_ARG;
    klen = strlen(key);
    if (klen > sizeof buf - (sizeof stws__ws_guid - 1)) return STWS_ERR_INVALID_ARG;
    memcpy(buf, key, klen);
    memcpy(buf + klen, stws__ws_guid, sizeof stws__ws_guid - 1);
    if (stws__sha1(buf, klen + sizeof stws__ws_guid - 1, digest) != 0) return STWS_ERR_INVALID_ARG;
    if (mbedtls_base64_encode((unsigned char *)accept, STWS_HANDSHAKE_ACCEPT_SIZE, &olen, digest,
                              sizeof digest) != 0 || olen != 28)
        return STWS_ERR_INVALID_ARG;
    accept[28] = 0;
    return STWS_OK;
}

/* Appends to a bounded buffer but keeps counting past the end, so a failed
   build reports the size it needs. */
typedef struct stws__sb {
    char *buf;
    size_t cap, len;
} stws__sb;

static void stws__sb_put(stws__sb *b, const char *s, size_t n) {
    if (b->len < b->cap) memcpy(b->buf + b->len, s, STWS__MIN(n, b->cap - b->len));
    b->len += n;
}
static void stws__sb_puts(stws__sb *b, const char *s) { stws__sb_put(b, s, strlen(s)); }

/* Header injection guard: CR and LF end a header line, NUL ends the string. */
static int stws__handshake_field_ok(const char *v) {
    for (; *v; v++)
        if (*v == '\r' || *v == '\n') return 0;
    return 1;
}
static int stws__handshake_token_ok(const char *v) {
    if (!*v) return 0;
    for (; *v; v++)
        if (!stws__is_tchar((unsigned char)*v)) return 0;
    return 1;
}

stws_result stws_handshake_request(const stws_url *url, const stws_handshake_desc *desc,
                                   const char *key, char *buf, size_t cap, size_t *len) {
    stws__sb b;
    char port[8];
    int i;
    if (!url || !key || (!buf && cap) || !len) return STWS_ERR_INVALID_ARG;
    for (i = 0; key[i]; i++)
        if (!stws__is_tchar((unsigned char)key[i]) && key[i] != '/' && key[i] != '=')
            return STWS_ERR_HEADER_VALUE; /* base64 (§4.1 item 7) */
    if (i == 0) return STWS_ERR_HEADER_VALUE;
    if (desc) {
        if (desc->origin && !stws__handshake_field_ok(desc->origin)) return STWS_ERR_HEADER_VALUE;
        if (desc->num_subprotocols < 0 || desc->num_headers < 0) return STWS_ERR_INVALID_ARG;
        for (i = 0; i < desc->num_subprotocols; i++) {
            int k;
            if (!desc->subprotocols[i] || !stws__handshake_token_ok(desc->subprotocols[i]))
                return STWS_ERR_HEADER_VALUE;
            for (k = 0; k < i; k++) /* §4.1 item 10: unique strings */
                if (strcmp(desc->subprotocols[k], desc->subprotocols[i]) == 0) return STWS_ERR_INVALID_ARG;
        }
        for (i = 0; i < desc->num_headers; i++) {
            const stws_header *h = &desc->headers[i];
            if (!h->name || !h->value || !stws__handshake_token_ok(h->name) || !stws__handshake_field_ok(h->value))
                return STWS_ERR_HEADER_VALUE;
        }
    }
    b.buf = buf;
    b.cap = cap;
    b.len = 0;
    /* §4.1: the request-target is the resource name: path and query */
    stws__sb_puts(&b, "GET ");
    stws__sb_put(&b, url->path.ptr, url->path.len);
    if (url->query.ptr) {
        stws__sb_puts(&b, "?");
        stws__sb_put(&b, url->query.ptr, url->query.len);
    }
    stws__sb_puts(&b, " HTTP/1.1\r\nHost: ");
    if (url->ipv6) stws__sb_puts(&b, "[");
    stws__sb_put(&b, url->host.ptr, url->host.len);
    if (url->ipv6) stws__sb_puts(&b, "]");
    /* §4.1 item 4: the port only when it is not the scheme's default */
    if (url->port != (url->secure ? 443 : 80)) {
        unsigned p = url->port, k = sizeof port - 1;
        port[k] = 0;
        do { port[--k] = (char)('0' + p % 10); p /= 10; } while (p);
        port[--k] = ':';
        stws__sb_puts(&b, port + k);
    }
    stws__sb_puts(&b, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    stws__sb_puts(&b, key);
    stws__sb_puts(&b, "\r\nSec-WebSocket-Version: 13\r\n");
    if (desc && desc->origin) {
        stws__sb_puts(&b, "Origin: ");
        stws__sb_puts(&b, desc->origin);
        stws__sb_puts(&b, "\r\n");
    }
    if (desc && desc->num_subprotocols > 0) {
        stws__sb_puts(&b, "Sec-WebSocket-Protocol: ");
        for (i = 0; i < desc->num_subprotocols; i++) {
            if (i) stws__sb_puts(&b, ", ");
            stws__sb_puts(&b, desc->subprotocols[i]);
        }
        stws__sb_puts(&b, "\r\n");
    }
    for (i = 0; desc && i < desc->num_headers; i++) {
        stws__sb_puts(&b, desc->headers[i].name);
        stws__sb_puts(&b, ": ");
        stws__sb_puts(&b, desc->headers[i].value);
        stws__sb_puts(&b, "\r\n");
    }
    stws__sb_puts(&b, "\r\n");
    *len = b.len;
    if (b.len >= cap) return STWS_ERR_BUFFER_TOO_SMALL;
    buf[b.len] = 0;
    return STWS_OK;
}

/* Does the comma-separated list v contain token t (case-insensitive)? */
static int stws__handshake_list_has(const char *v, size_t n, const char *t) {
    size_t i = 0;
    while (i < n) {
        size_t s, e;
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        s = i;
        while (i < n && v[i] != ',') i++;
        e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
        if (e > s && stws__ieq(v + s, e - s, t)) return 1;
    }
    return 0;
}

stws_result stws_handshake_response_parse(const char *buf, size_t len, const char *key,
                                          const stws_handshake_desc *desc,
                                          stws_handshake_response *out) {
    size_t max = (desc && desc->max_response_size) ? desc->max_response_size
                                                   : STWS_DEFAULT_MAX_RESPONSE_SIZE;
    size_t end = 0, i, line_end;
    int have_upgrade = 0, upgrade_count = 0, have_conn = 0, accept_count = 0, accept_ok = 0;
    int bad_ext = 0, proto_count = 0;
    char expect[STWS_HANDSHAKE_ACCEPT_SIZE];
    if ((!buf && len) || !key || !out) return STWS_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);

    /* The status line, as soon as it is there (RFC 7230 §3.1.2). */
    for (i = 0; i + 1 < len && i < max; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n') break;
    if (i + 1 >= len || i >= max) {
        if (len > max) return STWS_ERR_HANDSHAKE_TOO_BIG;
        return STWS_INCOMPLETE;
    }
    line_end = i;
    if (line_end < 12 || memcmp(buf, "HTTP/1.1 ", 9) != 0 || buf[9] < '1' || buf[9] > '5' ||
        buf[10] < '0' || buf[10] > '9' || buf[11] < '0' || buf[11] > '9' ||
        (line_end > 12 && buf[12] != ' '))
        return STWS_ERR_HANDSHAKE_MALFORMED;
    out->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    /* reason-phrase = *( HTAB / SP / VCHAR / obs-text ) (RFC 7230 §3.1.2) */
    for (i = 12; i < line_end; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7F) return STWS_ERR_HANDSHAKE_MALFORMED;
    }

    /* The end of the header block. */
    for (i = line_end; i + 3 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
            end = i + 4;
            break;
        }
    if (!end || end > max) {
        if ((!end && len > max) || end > max) return STWS_ERR_HANDSHAKE_TOO_BIG;
        return STWS_INCOMPLETE;
    }
    out->header_size = end;

    /* Header fields (RFC 7230 §3.2): name ":" OWS value OWS CRLF. */
    i = line_end + 2;
    while (i < end - 2) {
        size_t ns = i, ne, vs, ve;
        const char *name, *val;
        size_t nlen, vlen;
        while (i < end && buf[i] != '\r' && buf[i] != '\n' && buf[i] != ':') i++;
        if (i >= end || buf[i] != ':' || i == ns) return STWS_ERR_HANDSHAKE_MALFORMED;
        ne = i;
        for (i = ns; i < ne; i++)
            if (!stws__is_tchar((unsigned char)buf[i])) return STWS_ERR_HANDSHAKE_MALFORMED;
        i = ne + 1;
        while (i < end && (buf[i] == ' ' || buf[i] == '\t')) i++;
        vs = i;
        while (i < end && buf[i] != '\r' && buf[i] != '\n') {
            unsigned char c = (unsigned char)buf[i];
            if ((c < 0x20 && c != '\t') || c == 0x7F) return STWS_ERR_HANDSHAKE_MALFORMED;
            i++;
        }
        if (i + 1 >= end || buf[i] != '\r' || buf[i + 1] != '\n') return STWS_ERR_HANDSHAKE_MALFORMED;
        ve = i;
        while (ve > vs && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t')) ve--;
        i += 2;
        name = buf + ns;
        nlen = ne - ns;
        val = buf + vs;
        vlen = ve - vs;
        if (stws__ieq(name, nlen, "upgrade")) {
            /* repeated fields join into one list (RFC 7230 §3.2.2), which
               then is not exactly "websocket" */
            upgrade_count++;
            have_upgrade = stws__ieq(val, vlen, "websocket");
        } else if (stws__ieq(name, nlen, "connection")) {
            if (stws__handshake_list_has(val, vlen, "upgrade")) have_conn = 1;
        } else if (stws__ieq(name, nlen, "sec-websocket-accept")) {
            accept_count++;
            if (stws_handshake_accept(key, expect) == STWS_OK && vlen == 28 &&
                memcmp(val, expect, 28) == 0)
                accept_ok = 1;
        } else if (stws__ieq(name, nlen, "sec-websocket-extensions")) {
            if (vlen) bad_ext = 1; /* we never offer one (§4.1 item 9, §9.1) */
        } else if (stws__ieq(name, nlen, "sec-websocket-protocol")) {
            proto_count++;
            out->subprotocol.ptr = val;
            out->subprotocol.len = vlen;
        } else if (stws__ieq(name, nlen, "location") && out->status / 100 == 3) {
            out->location.ptr = val;
            out->location.len = vlen;
        }
    }
    if (out->status != 101) return STWS_ERR_HANDSHAKE_STATUS;
    if (!have_upgrade || upgrade_count != 1) return STWS_ERR_HANDSHAKE_UPGRADE;
    if (!have_conn) return STWS_ERR_HANDSHAKE_CONNECTION;
    if (accept_count != 1 || !accept_ok) return STWS_ERR_HANDSHAKE_ACCEPT;
    if (bad_ext) return STWS_ERR_HANDSHAKE_EXTENSION;
    /* §4.1 item 6 (client): a subprotocol the client did not offer fails. */
    if (proto_count > 1) return STWS_ERR_HANDSHAKE_SUBPROTOCOL;
    if (proto_count == 1) {
        int k, found = 0;
        for (k = 0; desc && k < desc->num_subprotocols; k++)
            if (strlen(desc->subprotocols[k]) == out->subprotocol.len &&
                memcmp(desc->subprotocols[k], out->subprotocol.ptr, out->subprotocol.len) == 0)
                found = 1;
        if (!found) return STWS_ERR_HANDSHAKE_SUBPROTOCOL;
    }
    return STWS_OK;
}

/* ==== codec (RFC 6455 §5), client role ==================================== */

/* Slack that control replies (pong, close) may use past max_output_size, so
   that a full queue never loses a close reply; a peer that floods pings while
   never reading our output is cut off at this point (policy, 1008). */
#define STWS__CONTROL_SLACK 65536

struct stws_codec {
    stws_allocator alloc;
    stws_random random;
    stws__drbg *drbg;            /* only when no random hook was given */
    size_t max_frame, max_message, max_output;

    stws_codec_state state;
    stws_result error;           /* sticky once FAILED */
    int error_close;
    int close_sent;

    /* receive: the frame being parsed */
    uint8_t hdr[14];
    uint8_t hdr_len, hdr_need;
    uint8_t in_payload, fin, opcode;
    size_t frame_len, remaining; /* set once the length passed max_frame_size
                                    (or is <= 125), so size_t holds it; no
                                    64-bit arithmetic per byte on 32-bit */

    /* receive: the message being reassembled */
    uint8_t msg_active;          /* a fragmented message awaits continuation */
    uint8_t msg_opcode;
    uint32_t utf8;
    size_t msg_len, msg_cap;
    uint8_t *msg;
    uint8_t ctrl[125];           /* control payloads are at most 125 bytes (§5.5) */
    size_t ctrl_len;
    uint8_t reset_msg;           /* the last event pointed into msg */

    /* send */
    uint8_t *out;
    size_t out_head, out_len, out_cap;
    uint64_t out_total;          /* bytes ever written, across resets: lets the
                                    Stream client know when a message left */
    uint8_t keys[64];            /* masking keys are drawn in batches */
    size_t key_pos;
    size_t secret_start, secret_end; /* output bytes [start, end) hold a secret
                                    (end 0: none), wiped once written */
};

stws_codec *stws_codec_create(const stws_codec_desc *desc) {
    stws_codec_desc d;
    stws_allocator a;
    stws_codec *c;
    if (desc) d = *desc;
    else memset(&d, 0, sizeof d);
    a = stws__allocator_def(&d.allocator);
    c = (stws_codec *)stws__alloc(&a, sizeof *c);
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->alloc = a;
    c->max_frame = d.max_frame_size ? d.max_frame_size : STWS_DEFAULT_MAX_FRAME_SIZE;
    c->max_message = d.max_message_size ? d.max_message_size : STWS_DEFAULT_MAX_MESSAGE_SIZE;
    c->max_output = d.max_output_size ? d.max_output_size : STWS_DEFAULT_MAX_OUTPUT_SIZE;
    if (stws__random_init(&a, &d.random, &c->random, &c->drbg) != 0) {
        stws__free(&a, c);
        return NULL;
    }
    c->key_pos = sizeof c->keys;
    return c;
}

void stws_codec_destroy(stws_codec *c) {
    stws_allocator a;
    if (!c) return;
    a = c->alloc;
    stws__random_free(&a, &c->drbg);
    stws__free(&a, c->msg);
    if (c->out) mbedtls_platform_zeroize(c->out, c->out_cap); /* see stws__codec_out_reserve */
    stws__free(&a, c->out);
    mbedtls_platform_zeroize(c, sizeof *c);
    stws__free(&a, c);
}

static void stws__codec_drop_secret(stws_codec *c); /* see stws__codec_secret */

void stws_codec_reset(stws_codec *c) {
    if (!c) return;
    c->state = STWS_CODEC_OPEN;
    c->error = STWS_OK;
    c->error_close = 0;
    c->close_sent = 0;
    c->hdr_len = c->hdr_need = 0;
    c->in_payload = 0;
    c->msg_active = 0;
    c->msg_len = 0;
    c->utf8 = 0;
    c->ctrl_len = 0;
    c->reset_msg = 0;
    stws__codec_drop_secret(c); /* never written: the socket is gone */
    c->out_head = c->out_len = 0;
}

stws_codec_state stws_codec_get_state(const stws_codec *c) { return c->state; }

int stws_close_code_valid(int code) {
    /* §7.4.1 defined codes that may be sent, the IANA-registered 1012-1014,
       and 3000-4999 for libraries and applications (§7.4.2). */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* ---- send ---------------------------------------------------------------- */

/* No secret left behind.  A frame that holds one (the Stream client's auth
   message: the masking key sits right before the masked token, so masking
   hides nothing) is marked after it is queued; its bytes are wiped once
   written, by stws_codec_reset() if they never are, and wherever a
   compaction leaves a stale copy.  Ordinary frames cost one test of
   secret_end per write.  An outgrown block and the last one are wiped
   whole before they are freed: growth doubles, so that is amortised
   O(1) per byte, and no frame's bytes reach freed memory. */
static void stws__codec_secret(stws_codec *c, size_t frame_len) {
    STWS_ASSERT(frame_len <= c->out_len - c->out_head);
    if (!c->secret_end) c->secret_start = c->out_len - frame_len;
    c->secret_end = c->out_len;
}
/* The socket is gone and the secret never left: wipe it now, not at the
   next connect (a client may sit in backoff for a long time). */
static void stws__codec_drop_secret(stws_codec *c) {
    if (!c->secret_end) return;
    mbedtls_platform_zeroize(c->out + c->secret_start, c->secret_end - c->secret_start);
    c->secret_end = 0;
}

/* Make room for n more output bytes: compact first, grow only if needed. */
static int stws__codec_out_reserve(stws_codec *c, size_t n) {
    size_t pending = c->out_len - c->out_head;
    if (c->out_cap - c->out_len >= n) return 1;
    if (c->out_head) {
        memmove(c->out, c->out + c->out_head, pending);
        if (c->secret_end) { /* the unwritten secret moved: wipe what the move left */
            mbedtls_platform_zeroize(c->out + pending, c->out_len - pending);
            c->secret_start = c->secret_start > c->out_head ? c->secret_start - c->out_head : 0;
            c->secret_end -= c->out_head;
        }
        c->out_head = 0;
        c->out_len = pending;
        if (c->out_cap - c->out_len >= n) return 1;
    }
    {
        /* Doubling stops at the most the queue may ever hold (data up to
           max_output_size, control replies in the slack, one close frame):
           the cap bounds the buffer, so a flood of pings cannot double it
           past the cap on its way.  With a large cap, a doubling that would
           reach it goes to that most at once: growing from the cap itself to
           cap + slack would hold two cap-sized blocks during the copy. */
        size_t most = c->max_output < (size_t)-1 - STWS__CONTROL_SLACK - 256
                          ? c->max_output + STWS__CONTROL_SLACK + 256 : (size_t)-1;
        size_t dbl = c->out_cap * 2;
        size_t want;
        uint8_t *nb;
        if (dbl >= c->max_output && c->max_output >= 8 * (size_t)STWS__CONTROL_SLACK) dbl = most;
        want = STWS__MAX(pending + n, STWS__MIN(dbl, most));
        if (want < 256) want = 256;
        nb = (uint8_t *)stws__alloc(&c->alloc, want);
        if (!nb) return 0;
        if (pending) memcpy(nb, c->out, pending);
        if (c->out) mbedtls_platform_zeroize(c->out, c->out_cap);
        stws__free(&c->alloc, c->out);
        c->out = nb;
        c->out_cap = want;
    }
    return 1;
}

/* XOR-copy with the 4-byte key (§5.3), a machine word at a time. */
static void stws__codec_mask_copy(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4]) {
    size_t i = 0;
    uint8_t k8[8];
    uint64_t kw;
    memcpy(k8, key, 4);
    memcpy(k8 + 4, key, 4);
    memcpy(&kw, k8, 8);
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= kw;
        memcpy(dst + i, &w, 8);
    }
    for (; i < len; i++) dst[i] = src[i] ^ key[i & 3];
}

static stws_result stws__codec_queue_frame(stws_codec *c, int opcode, const void *data, size_t len,
                                     size_t limit) {
    size_t hlen = len < 126 ? 2 : len <= 0xFFFF ? 4 : 10;
    uint8_t *h;
    uint8_t key[4];
    if (c->out_len - c->out_head + hlen + 4 + len > limit) return STWS_ERR_OUTPUT_FULL;
    if (c->key_pos + 4 > sizeof c->keys) {
        if (c->random.fill(c->keys, sizeof c->keys, c->random.user_data) != 0)
            return STWS_ERR_RANDOM;
        c->key_pos = 0;
    }
    if (!stws__codec_out_reserve(c, hlen + 4 + len)) return STWS_ERR_NOMEM;
    memcpy(key, c->keys + c->key_pos, 4);
    c->key_pos += 4;
    h = c->out + c->out_len;
    h[0] = (uint8_t)(0x80 | opcode); /* FIN, no RSV */
    if (hlen == 2) {
        h[1] = (uint8_t)(0x80 | len);
    } else if (hlen == 4) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
    } else {
        int k;
        size_t l = len; /* big-endian from the last byte: no 64-bit shifts on 32-bit */
        h[1] = 0x80 | 127;
        for (k = 9; k >= 2; k--, l >>= 8) h[k] = (uint8_t)l;
    }
    memcpy(h + hlen, key, 4);
    if (len) stws__codec_mask_copy(h + hlen + 4, (const uint8_t *)data, len, key);
    c->out_len += hlen + 4 + len;
    return STWS_OK;
}

static stws_result stws__codec_queue_close(stws_codec *c, int code, const char *reason, size_t rlen,
                                     size_t limit) {
    uint8_t p[125];
    size_t n = 0;
    stws_result r;
    if (code) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        if (rlen) memcpy(p + 2, reason, rlen);
        n = 2 + rlen;
    }
    r = stws__codec_queue_frame(c, STWS_OP_CLOSE, p, n, limit);
    if (r == STWS_OK) c->close_sent = 1;
    return r;
}

stws_result stws_codec_send(stws_codec *c, stws_opcode op, const void *data, size_t len) {
    if (!c || (!data && len)) return STWS_ERR_INVALID_ARG;
    if (c->close_sent || c->state != STWS_CODEC_OPEN) return STWS_ERR_STATE;
    switch (op) {
    case STWS_OP_TEXT: {
        uint32_t st = 0;
        if (stws_utf8_validate(&st, data, len) != len || st != 0) return STWS_ERR_INVALID_UTF8;
        break;
    }
    case STWS_OP_BINARY: break;
    case STWS_OP_PING:
    case STWS_OP_PONG:
        if (len > 125) return STWS_ERR_INVALID_ARG;
        break;
    default: return STWS_ERR_INVALID_ARG; /* close: stws_codec_close() */
    }
    return stws__codec_queue_frame(c, op, data, len, c->max_output);
}

stws_result stws_codec_close(stws_codec *c, int code, const char *reason, size_t rlen) {
    uint32_t st = 0;
    if (!c || (!reason && rlen)) return STWS_ERR_INVALID_ARG;
    if (c->close_sent || c->state != STWS_CODEC_OPEN) return STWS_ERR_STATE;
    if ((code && !stws_close_code_valid(code)) || (!code && rlen) || rlen > 123)
        return STWS_ERR_INVALID_ARG;
    if (stws_utf8_validate(&st, reason, rlen) != rlen || st) return STWS_ERR_INVALID_UTF8;
    {
        stws_result r = stws__codec_queue_close(c, code, reason, rlen, c->max_output + STWS__CONTROL_SLACK);
        if (r == STWS_OK) c->state = STWS_CODEC_CLOSING;
        return r;
    }
}

const uint8_t *stws_codec_output(const stws_codec *c, size_t *len) {
    *len = c->out_len - c->out_head;
    return c->out ? c->out + c->out_head : c->out; /* NULL + 0 is undefined */
}

void stws_codec_output_consumed(stws_codec *c, size_t n) {
    STWS_ASSERT(n <= c->out_len - c->out_head);
    c->out_head += n;
    c->out_total += n;
    if (c->secret_end && c->out_head >= c->secret_end) stws__codec_drop_secret(c); /* it left */
    if (c->out_head == c->out_len) c->out_head = c->out_len = 0;
}

/* ---- receive ------------------------------------------------------------- */

/* Fail the connection (§7.1.7): queue a close with the code, once. */
static stws_result stws__codec_fail(stws_codec *c, stws_result err, int close_code,
                              stws_codec_event *ev) {
    c->state = STWS_CODEC_FAILED;
    c->error = err;
    c->error_close = close_code;
    if (!c->close_sent) (void)stws__codec_queue_close(c, close_code, NULL, 0, (size_t)-1);
    ev->type = STWS_CODEC_EVENT_ERROR;
    ev->error = err;
    ev->close_code = close_code;
    return err;
}

/* The close code a receive error fails the connection with (§7.4.1, as the
   result codes list them). */
static int stws__codec_close_code_for(stws_result r) {
    if (r == STWS_ERR_INVALID_UTF8) return STWS_CLOSE_INVALID_DATA;
    if (r == STWS_ERR_FRAME_TOO_BIG || r == STWS_ERR_MESSAGE_TOO_BIG) return STWS_CLOSE_TOO_BIG;
    if (r == STWS_ERR_NOMEM) return STWS_CLOSE_INTERNAL_ERROR;
    return STWS_CLOSE_PROTOCOL_ERROR;
}

/* Check what can be known from the first two header bytes, as soon as they
   arrive, so that a bad frame fails before its payload (fail fast). */
static stws_result stws__codec_check_b0(stws_codec *c, uint8_t b0) {
    int op = b0 & 0x0F;
    if (b0 & 0x70) return STWS_ERR_RESERVED_BITS; /* §5.2: no extension negotiated */
    if ((op >= 3 && op <= 7) || op >= 0xB) return STWS_ERR_RESERVED_OPCODE;
    if (op >= 8 && !(b0 & 0x80)) return STWS_ERR_CONTROL_FRAGMENTED; /* §5.5 */
    if (op == STWS_OP_CONTINUATION && !c->msg_active) return STWS_ERR_UNEXPECTED_CONTINUATION;
    if ((op == STWS_OP_TEXT || op == STWS_OP_BINARY) && c->msg_active)
        return STWS_ERR_EXPECTED_CONTINUATION; /* §5.4 */
    return STWS_OK;
}

static int stws__codec_grow_msg(stws_codec *c, size_t need) {
    size_t cap;
    uint8_t *nb;
    if (need <= c->msg_cap) return 1;
    cap = STWS__MAX(need, STWS__MAX(c->msg_cap * 2, (size_t)1024));
    if (cap > c->max_message) cap = c->max_message;
    nb = (uint8_t *)stws__alloc(&c->alloc, cap);
    if (!nb) return 0;
    if (c->msg_len) memcpy(nb, c->msg, c->msg_len);
    stws__free(&c->alloc, c->msg);
    c->msg = nb;
    c->msg_cap = cap;
    return 1;
}

/* A control frame is complete in c->ctrl. */
static stws_result stws__codec_control_done(stws_codec *c, stws_codec_event *ev) {
    ev->data = c->ctrl;
    ev->len = c->ctrl_len;
    if (c->opcode == STWS_OP_PING) {
        ev->type = STWS_CODEC_EVENT_PING;
        /* §5.5.2: answer with a pong carrying the same payload, unless we
           already sent a close (§5.5.1: nothing may follow it). */
        if (!c->close_sent) {
            stws_result r = stws__codec_queue_frame(c, STWS_OP_PONG, c->ctrl, c->ctrl_len,
                                              c->max_output + STWS__CONTROL_SLACK);
            if (r == STWS_ERR_OUTPUT_FULL) return stws__codec_fail(c, r, STWS_CLOSE_POLICY, ev);
            if (r != STWS_OK) return stws__codec_fail(c, r, STWS_CLOSE_INTERNAL_ERROR, ev);
        }
        return STWS_OK;
    }
    if (c->opcode == STWS_OP_PONG) {
        ev->type = STWS_CODEC_EVENT_PONG;
        return STWS_OK;
    }
    /* close (§5.5.1, §7.1.5) */
    if (c->ctrl_len == 1) return stws__codec_fail(c, STWS_ERR_BAD_CLOSE_PAYLOAD, STWS_CLOSE_PROTOCOL_ERROR, ev);
    ev->close_code = STWS_CLOSE_NO_STATUS;
    if (c->ctrl_len >= 2) {
        uint32_t st = 0;
        int code = c->ctrl[0] << 8 | c->ctrl[1];
        if (!stws_close_code_valid(code))
            return stws__codec_fail(c, STWS_ERR_BAD_CLOSE_CODE, STWS_CLOSE_PROTOCOL_ERROR, ev);
        if (stws_utf8_validate(&st, c->ctrl + 2, c->ctrl_len - 2) != c->ctrl_len - 2 || st)
            return stws__codec_fail(c, STWS_ERR_INVALID_UTF8, STWS_CLOSE_INVALID_DATA, ev);
        ev->close_code = code;
        ev->data = c->ctrl + 2;
        ev->len = c->ctrl_len - 2;
    }
    ev->type = STWS_CODEC_EVENT_CLOSE;
    if (!c->close_sent) {
        /* echo the status code (§5.5.1); an empty close is echoed empty */
        stws_result r = stws__codec_queue_close(c, c->ctrl_len >= 2 ? ev->close_code : 0, NULL, 0,
                                          (size_t)-1);
        if (r != STWS_OK) return stws__codec_fail(c, r, STWS_CLOSE_INTERNAL_ERROR, ev);
    }
    c->state = STWS_CODEC_CLOSED;
    return STWS_OK;
}

stws_result stws_codec_parse(stws_codec *c, const void *in_, size_t len, size_t *used,
                             stws_codec_event *ev) {
    const uint8_t *in = (const uint8_t *)in_;
    size_t pos = 0;
    stws_result r = STWS_OK;
    if (!c || !used || !ev || (!in && len)) return STWS_ERR_INVALID_ARG;
    memset(ev, 0, sizeof *ev);
    *used = 0;
    if (c->state == STWS_CODEC_FAILED) {
        ev->type = STWS_CODEC_EVENT_ERROR;
        ev->error = c->error;
        ev->close_code = c->error_close;
        return c->error;
    }
    if (c->state == STWS_CODEC_CLOSED) { /* §5.5.1: nothing after the close */
        *used = len;
        return STWS_OK;
    }
    if (c->reset_msg) { /* the previous event's view is no longer needed */
        c->msg_len = 0;
        c->reset_msg = 0;
    }
    while (pos < len) {
        if (!c->in_payload) {
            uint8_t b = in[pos++];
            c->hdr[c->hdr_len++] = b;
            if (c->hdr_len == 1) {
                if ((r = stws__codec_check_b0(c, b)) != STWS_OK) break;
                continue;
            }
            if (c->hdr_len == 2) {
                if (b & 0x80) { r = STWS_ERR_MASKED_FRAME; break; } /* §5.1 */
                if ((c->hdr[0] & 0x0F) >= 8 && (b & 0x7F) > 125) { r = STWS_ERR_CONTROL_TOO_LONG; break; }
                c->hdr_need = (uint8_t)(2 + ((b & 0x7F) == 126 ? 2 : (b & 0x7F) == 127 ? 8 : 0));
            }
            if (c->hdr_len < c->hdr_need) continue;
            /* header complete */
            {
                uint8_t l7 = c->hdr[1] & 0x7F;
                uint64_t fl = l7;
                if (l7 == 126) {
                    fl = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
                } else if (l7 == 127) {
                    int k;
                    if (c->hdr[2] & 0x80) { r = STWS_ERR_BAD_LENGTH; break; }
                    for (fl = 0, k = 0; k < 8; k++) fl = fl << 8 | c->hdr[2 + k];
                }
                c->fin = c->hdr[0] >> 7;
                c->opcode = c->hdr[0] & 0x0F;
                c->hdr_len = 0;
                c->in_payload = 1;
                if (c->opcode >= 8) {
                    c->ctrl_len = 0;
                } else {
                    if (fl > c->max_frame) { r = STWS_ERR_FRAME_TOO_BIG; break; }
                    if (c->opcode != STWS_OP_CONTINUATION) {
                        c->msg_opcode = c->opcode;
                        c->msg_len = 0;
                        c->utf8 = 0;
                    }
                    if (fl > c->max_message - c->msg_len) { r = STWS_ERR_MESSAGE_TOO_BIG; break; }
                }
                c->frame_len = c->remaining = (size_t)fl;
            }
        }
        /* payload */
        {
            size_t avail = STWS__MIN(len - pos, c->remaining);
            const uint8_t *src = in + pos;
            if (c->opcode >= 8) {
                memcpy(c->ctrl + c->ctrl_len, src, avail);
                c->ctrl_len += avail;
            } else {
                int whole = c->fin && c->opcode != STWS_OP_CONTINUATION &&
                            c->remaining == c->frame_len && avail == c->remaining;
                if (c->msg_opcode == STWS_OP_TEXT) {
                    size_t ok = stws_utf8_validate(&c->utf8, src, avail);
                    if (ok != avail) {
                        pos += ok;
                        r = STWS_ERR_INVALID_UTF8;
                        break;
                    }
                }
                if (whole) {
                    /* unfragmented and all here: a view into the input, no copy */
                    ev->data = src;
                } else {
                    if (!stws__codec_grow_msg(c, c->msg_len + avail)) { r = STWS_ERR_NOMEM; break; }
                    if (avail) memcpy(c->msg + c->msg_len, src, avail);
                    c->msg_len += avail;
                }
            }
            pos += avail;
            c->remaining -= avail;
            if (c->remaining) continue;
        }
        /* frame complete */
        c->in_payload = 0;
        if (c->opcode >= 8) {
            r = stws__codec_control_done(c, ev);
            *used = pos;
            return r;
        }
        if (!c->fin) {
            c->msg_active = 1;
            continue;
        }
        if (c->msg_opcode == STWS_OP_TEXT && c->utf8) { /* truncated sequence at the end */
            r = STWS_ERR_INVALID_UTF8;
            break;
        }
        c->msg_active = 0;
        ev->type = STWS_CODEC_EVENT_MESSAGE;
        ev->opcode = (stws_opcode)c->msg_opcode;
        if (ev->data) {
            ev->len = c->frame_len;
        } else {
            ev->data = c->msg;
            ev->len = c->msg_len;
            c->reset_msg = 1;
        }
        *used = pos;
        return STWS_OK;
    }
    *used = pos;
    if (r != STWS_OK) return stws__codec_fail(c, r, stws__codec_close_code_for(r), ev);
    return STWS_OK;
}


/* ==== HTTP/1.1 client messages (RFC 9112) ================================= */

/* application/x-www-form-urlencoded (space as '+', '|' as %7C), PROTOCOL.md §1 */
static void stws__sb_form(stws__sb *b, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char e[3];
        if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '*') {
            stws__sb_put(b, (const char *)&ch, 1);
        } else if (ch == ' ') {
            stws__sb_put(b, "+", 1);
        } else {
            e[0] = '%';
            e[1] = hex[ch >> 4];
            e[2] = hex[ch & 15];
            stws__sb_put(b, e, 3);
        }
    }
}

/* A chunk-size line with its extensions (RFC 9112 §7.1.1) longer than this is
   refused: extensions are ignored, so only a hostile peer sends kilobytes. */
#define STWS__HTTP_MAX_CHUNK_LINE 4096

enum {
    STWS__HTTP_HEAD = 0,       /* status line and fields */
    STWS__HTTP_BODY_LEN,       /* Content-Length body */
    STWS__HTTP_BODY_CLOSE,     /* body delimited by the close */
    STWS__HTTP_CHUNK_SIZE,     /* hex digits */
    STWS__HTTP_CHUNK_EXT,      /* BWS, ";" extensions, up to the CR */
    STWS__HTTP_CHUNK_SIZE_LF,
    STWS__HTTP_CHUNK_DATA,
    STWS__HTTP_CHUNK_DATA_CR,
    STWS__HTTP_CHUNK_DATA_LF,
    STWS__HTTP_TRAILER,        /* field lines after the last chunk */
    STWS__HTTP_DONE,
    STWS__HTTP_FAILED
};

struct stws_http_parser {
    stws_allocator alloc;
    size_t max_head, max_body;
    int state, head_req;
    stws_result error;             /* sticky once FAILED */
    char *head;                    /* the header block being read */
    size_t head_len, head_cap;
    uint8_t *body;                 /* de-chunked body, kept NUL-terminated */
    size_t body_len, body_cap;
    size_t interim_bytes;          /* header bytes of skipped 1xx answers */
    size_t received;
    size_t remaining;              /* Content-Length or chunk bytes to come */
    size_t chunk;                  /* chunk size being read */
    size_t line_len;               /* chunk line or trailer bytes so far */
    int have_digit, in_ext, tstate;
    stws_http_response resp;
};

/* Grow *buf (len bytes in use) to hold need bytes, doubling, never past max
   (need <= max). */
static int stws__http_grow(const stws_allocator *a, void **buf, size_t *cap, size_t len,
                           size_t need, size_t max) {
    size_t nc;
    void *nb;
    if (need <= *cap) return 1;
    nc = *cap ? *cap : 256;
    while (nc < need) nc = nc > max / 2 ? max : nc * 2;
    if (nc > max) nc = max;
    if (nc < need) nc = need;
    nb = stws__alloc(a, nc);
    if (!nb) return 0;
    if (len) memcpy(nb, *buf, len);
    stws__free(a, *buf);
    *buf = nb;
    *cap = nc;
    return 1;
}

stws_http_parser *stws_http_parser_create(const stws_http_parser_desc *desc) {
    stws_http_parser_desc d;
    stws_allocator a;
    stws_http_parser *p;
    if (desc) d = *desc;
    else memset(&d, 0, sizeof d);
    a = stws__allocator_def(&d.allocator);
    p = (stws_http_parser *)stws__alloc(&a, sizeof *p);
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->alloc = a;
    p->max_head = d.max_header_size ? d.max_header_size : STWS_DEFAULT_MAX_HEADER_SIZE;
    p->max_body = d.max_body_size ? d.max_body_size : STWS_DEFAULT_MAX_BODY_SIZE;
    if (p->max_body == (size_t)-1) p->max_body--; /* room for the NUL */
    stws_http_parser_reset(p, 0);
    return p;
}

void stws_http_parser_destroy(stws_http_parser *p) {
    if (!p) return;
    stws__free(&p->alloc, p->head);
    stws__free(&p->alloc, p->body);
    stws__free(&p->alloc, p);
}

void stws_http_parser_reset(stws_http_parser *p, int head) {
    if (!p) return;
    p->state = STWS__HTTP_HEAD;
    p->head_req = head != 0;
    p->error = STWS_OK;
    p->head_len = p->body_len = p->interim_bytes = p->received = 0;
    p->remaining = p->chunk = p->line_len = 0;
    p->have_digit = p->in_ext = p->tstate = 0;
    memset(&p->resp, 0, sizeof p->resp);
}

/* Take header-block bytes until the empty line.  Line ends are CRLF only: a
   bare CR or LF is refused at once (RFC 9112 §2.2 lets a recipient accept a
   bare LF; refusing it leaves no two readings of one message). */
static stws_result stws__http_head_bytes(stws_http_parser *p, const uint8_t *in, size_t len,
                                         size_t *used, int *complete) {
    static const char proto[] = "HTTP/1.";
    size_t i = 0, limit = p->max_head - p->interim_bytes;
    *complete = 0;
    while (i < len) {
        size_t hl = p->head_len;
        unsigned char c = in[i];
        if (hl >= limit) {
            *used = i;
            return STWS_ERR_HTTP_HEADERS_TOO_BIG;
        }
        if (hl == p->head_cap &&
            !stws__http_grow(&p->alloc, (void **)&p->head, &p->head_cap, hl, hl + 1, p->max_head)) {
            *used = i;
            return STWS_ERR_NOMEM;
        }
        i++;
        p->head[p->head_len++] = (char)c;
        /* fail fast on what is not HTTP/1.x at all */
        if ((hl < 7 && c != (unsigned char)proto[hl]) || c == 0 ||
            (hl && p->head[hl - 1] == '\r' && c != '\n') ||
            (c == '\n' && (!hl || p->head[hl - 1] != '\r'))) {
            *used = i;
            return STWS_ERR_HTTP_MALFORMED;
        }
        if (c == '\n' && hl >= 3 && p->head[hl - 2] == '\n') {
            *complete = 1;
            break;
        }
    }
    *used = i;
    return STWS_OK;
}

/* Saturating decimal: 1*DIGIT, else -1. */
static int64_t stws__http_digits(const char *s, size_t n) {
    int64_t v = 0;
    size_t i;
    if (!n) return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v > (INT64_MAX - 9) / 10 ? INT64_MAX : v * 10 + (s[i] - '0');
    }
    return v;
}

/* The header block is complete: check it (RFC 9112 §4, §5) and choose how
   the body is delimited (§6.3). */
static stws_result stws__http_head_done(stws_http_parser *p) {
    char *buf = p->head;
    size_t n = p->head_len, i, line_end, k;
    int64_t cl = -1;
    int te = 0, te_chunked = 0, te_other = 0, conn_close = 0, conn_keep = 0;
    stws_http_response *r = &p->resp;
    int interim = r->interim;

    for (line_end = 0; buf[line_end] != '\r'; line_end++) {}
    /* status-line = HTTP-version SP status-code SP [ reason-phrase ] (§4) */
    if (line_end < 12 || buf[7] < '0' || buf[7] > '9' || buf[8] != ' ' || buf[9] < '1' ||
        buf[9] > '5' || buf[10] < '0' || buf[10] > '9' || buf[11] < '0' || buf[11] > '9' ||
        (line_end > 12 && buf[12] != ' '))
        return STWS_ERR_HTTP_MALFORMED;
    for (i = 12; i < line_end; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7F) return STWS_ERR_HTTP_MALFORMED;
    }
    memset(r, 0, sizeof *r);
    r->interim = interim;
    r->version = buf[7] == '0' ? 10 : 11;
    r->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    r->reason.ptr = buf + STWS__MIN(line_end, (size_t)13);
    r->reason.len = line_end - STWS__MIN(line_end, (size_t)13);
    r->content_length = -1;
    r->retry_after = -1;
    r->content_type.ptr = buf;

    /* obs-fold: a user agent replaces each with SP (§5.2) */
    for (k = line_end + 2; k + 2 < n; k++)
        if (buf[k - 1] == '\n' && (buf[k] == ' ' || buf[k] == '\t')) {
            if (k == line_end + 2) return STWS_ERR_HTTP_MALFORMED; /* §2.2 */
            buf[k - 2] = buf[k - 1] = ' ';
        }
    r->fields.ptr = buf + line_end + 2;
    r->fields.len = n - 2 - (line_end + 2);

    /* field-line = field-name ":" OWS field-value OWS (§5.1) */
    i = line_end + 2;
    while (i < n - 2) {
        size_t ns = i, ne, vs, ve;
        const char *val;
        size_t vlen;
        while (buf[i] != '\r' && buf[i] != ':') i++;
        if (buf[i] != ':' || i == ns) return STWS_ERR_HTTP_MALFORMED;
        ne = i;
        for (i = ns; i < ne; i++) /* no whitespace before the colon (§5.1) */
            if (!stws__is_tchar((unsigned char)buf[i])) return STWS_ERR_HTTP_MALFORMED;
        i = ne + 1;
        while (buf[i] == ' ' || buf[i] == '\t') i++;
        vs = i;
        for (; buf[i] != '\r'; i++) {
            unsigned char c = (unsigned char)buf[i];
            if ((c < 0x20 && c != '\t') || c == 0x7F) return STWS_ERR_HTTP_MALFORMED;
        }
        ve = i;
        while (ve > vs && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t')) ve--;
        i += 2;
        val = buf + vs;
        vlen = ve - vs;
        if (stws__ieq(buf + ns, ne - ns, "content-length")) {
            /* a list of identical values may be accepted (RFC 9110 §8.6) */
            size_t s = 0;
            while (s <= vlen) {
                size_t e = s, a, b;
                int64_t v;
                while (e < vlen && val[e] != ',') e++;
                a = s;
                b = e;
                while (a < b && (val[a] == ' ' || val[a] == '\t')) a++;
                while (b > a && (val[b - 1] == ' ' || val[b - 1] == '\t')) b--;
                v = stws__http_digits(val + a, b - a);
                if (v < 0 || (cl >= 0 && v != cl)) return STWS_ERR_HTTP_MALFORMED;
                cl = v;
                s = e + 1;
            }
        } else if (stws__ieq(buf + ns, ne - ns, "transfer-encoding")) {
            /* chunked must be the final coding, once (RFC 9112 §6.1); we ask
               for no other coding and decode none */
            size_t s = 0;
            te = 1;
            while (s < vlen) {
                size_t e = s, a, b;
                while (e < vlen && val[e] != ',') e++;
                a = s;
                b = e;
                while (a < b && (val[a] == ' ' || val[a] == '\t')) a++;
                while (b > a && (val[b - 1] == ' ' || val[b - 1] == '\t')) b--;
                if (b > a) {
                    if (te_chunked || !stws__ieq(val + a, b - a, "chunked")) te_other = 1;
                    else te_chunked = 1;
                }
                s = e + 1;
            }
        } else if (stws__ieq(buf + ns, ne - ns, "connection")) {
            if (stws__handshake_list_has(val, vlen, "close")) conn_close = 1;
            if (stws__handshake_list_has(val, vlen, "keep-alive")) conn_keep = 1;
        } else if (stws__ieq(buf + ns, ne - ns, "retry-after")) {
            r->retry_after = stws__http_digits(val, vlen);
        } else if (stws__ieq(buf + ns, ne - ns, "content-type") && !r->content_type.len) {
            r->content_type.ptr = val;
            r->content_type.len = vlen;
        }
    }
    if (te && (te_other || !te_chunked)) return STWS_ERR_HTTP_MALFORMED;

    if (r->status < 200 && r->status != 101) {
        /* an interim answer (RFC 9110 §15.2): skip it, read the next */
        r->interim = interim + 1;
        p->interim_bytes += n;
        p->head_len = 0;
        return STWS_OK;
    }
    /* RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with keep-alive */
    r->keep_alive = !conn_close && (r->version == 11 || conn_keep);
    r->content_length = cl;
    if (p->head_req || r->status == 101 || r->status == 204 || r->status == 304) {
        if (r->status == 101) r->keep_alive = 0; /* no longer HTTP */
        p->state = STWS__HTTP_DONE;
    } else if (te) {
        r->chunked = 1;
        /* both: Transfer-Encoding wins, and the connection is not reused
           (§6.3 item 3); a 1.0 message with it has faulty framing (§6.1) */
        if (cl >= 0 || r->version == 10) r->keep_alive = 0;
        p->state = STWS__HTTP_CHUNK_SIZE;
    } else if (cl >= 0) {
        if ((uint64_t)cl > (uint64_t)p->max_body) return STWS_ERR_HTTP_BODY_TOO_BIG;
        p->remaining = (size_t)cl;
        p->state = p->remaining ? STWS__HTTP_BODY_LEN : STWS__HTTP_DONE;
    } else {
        r->keep_alive = 0;
        p->state = STWS__HTTP_BODY_CLOSE;
    }
    return STWS_OK;
}

/* The body buffer grows with the bytes that arrived, not with what a length
   announced: a peer that claims 16 MiB and sends nothing costs nothing. */
static stws_result stws__http_body_put(stws_http_parser *p, const uint8_t *d, size_t n) {
    size_t end = p->state == STWS__HTTP_BODY_LEN ? p->body_len + p->remaining : p->max_body;
    if (n > p->max_body - p->body_len) return STWS_ERR_HTTP_BODY_TOO_BIG;
    if (!stws__http_grow(&p->alloc, (void **)&p->body, &p->body_cap, p->body_len,
                         p->body_len + n + 1, end + 1))
        return STWS_ERR_NOMEM;
    memcpy(p->body + p->body_len, d, n);
    p->body_len += n;
    return STWS_OK;
}

static int stws__http_hex(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One byte of chunked framing outside chunk data (RFC 9112 §7.1). */
static stws_result stws__http_chunk_byte(stws_http_parser *p, int c) {
    int h;
    switch (p->state) {
    case STWS__HTTP_CHUNK_SIZE:
        h = stws__http_hex(c);
        if (h >= 0) {
            if (++p->line_len > STWS__HTTP_MAX_CHUNK_LINE) return STWS_ERR_HTTP_CHUNK;
            if (p->chunk > ((size_t)-1 >> 4)) return STWS_ERR_HTTP_CHUNK; /* overflow */
            p->chunk = p->chunk * 16 + (size_t)h;
            p->have_digit = 1;
            return STWS_OK;
        }
        if (!p->have_digit) return STWS_ERR_HTTP_CHUNK;
        p->state = STWS__HTTP_CHUNK_EXT;
        return stws__http_chunk_byte(p, c);
    case STWS__HTTP_CHUNK_EXT:
        if (c == '\r') {
            p->state = STWS__HTTP_CHUNK_SIZE_LF;
        } else if (++p->line_len > STWS__HTTP_MAX_CHUNK_LINE) {
            return STWS_ERR_HTTP_CHUNK;
        } else if (c == ';') {
            p->in_ext = 1; /* chunk-ext: ignored (§7.1.1) */
        } else if ((c < 0x20 && c != '\t') || c == 0x7F ||
                   (!p->in_ext && c != ' ' && c != '\t')) {
            return STWS_ERR_HTTP_CHUNK; /* only BWS before the first ';' */
        }
        return STWS_OK;
    case STWS__HTTP_CHUNK_SIZE_LF:
        if (c != '\n') return STWS_ERR_HTTP_CHUNK;
        p->line_len = 0;
        if (p->chunk == 0) {
            p->state = STWS__HTTP_TRAILER;
            p->tstate = 0;
            return STWS_OK;
        }
        if (p->chunk > p->max_body - p->body_len) return STWS_ERR_HTTP_BODY_TOO_BIG;
        p->remaining = p->chunk;
        p->state = STWS__HTTP_CHUNK_DATA;
        return STWS_OK;
    case STWS__HTTP_CHUNK_DATA_CR:
        if (c != '\r') return STWS_ERR_HTTP_CHUNK;
        p->state = STWS__HTTP_CHUNK_DATA_LF;
        return STWS_OK;
    case STWS__HTTP_CHUNK_DATA_LF:
        if (c != '\n') return STWS_ERR_HTTP_CHUNK;
        p->state = STWS__HTTP_CHUNK_SIZE;
        p->chunk = 0;
        p->have_digit = p->in_ext = 0;
        return STWS_OK;
    default: /* STWS__HTTP_TRAILER: parsed and dropped (§7.1.2) */
        if (++p->line_len > p->max_head) return STWS_ERR_HTTP_HEADERS_TOO_BIG;
        switch (p->tstate) {
        case 0: /* line start */
            if (c == '\r') p->tstate = 4;
            else if (stws__is_tchar(c)) p->tstate = 1;
            else return STWS_ERR_HTTP_CHUNK;
            break;
        case 1: /* name */
            if (c == ':') p->tstate = 2;
            else if (!stws__is_tchar(c)) return STWS_ERR_HTTP_CHUNK;
            break;
        case 2: /* value */
            if (c == '\r') p->tstate = 3;
            else if ((c < 0x20 && c != '\t') || c == 0x7F) return STWS_ERR_HTTP_CHUNK;
            break;
        case 3: /* LF after a field */
            if (c != '\n') return STWS_ERR_HTTP_CHUNK;
            p->tstate = 0;
            break;
        default: /* LF of the empty line */
            if (c != '\n') return STWS_ERR_HTTP_CHUNK;
            p->state = STWS__HTTP_DONE;
        }
        return STWS_OK;
    }
}

static stws_result stws__http_fail(stws_http_parser *p, stws_result r) {
    p->state = STWS__HTTP_FAILED;
    p->error = r;
    return r;
}

static void stws__http_finish(stws_http_parser *p) {
    p->state = STWS__HTTP_DONE;
    if (p->body) p->body[p->body_len] = 0;
    p->resp.body = p->body ? p->body : (const uint8_t *)"";
    p->resp.body_len = p->body_len;
}

stws_result stws_http_parser_parse(stws_http_parser *p, const void *in, size_t len, size_t *used) {
    const uint8_t *s = (const uint8_t *)in;
    size_t i = 0, n;
    stws_result r = STWS_OK;
    if (used) *used = 0;
    if (!p || (!in && len) || !used) return STWS_ERR_INVALID_ARG;
    if (p->state == STWS__HTTP_FAILED) return p->error;
    if (p->state == STWS__HTTP_DONE) return STWS_ERR_STATE;
    while (p->state != STWS__HTTP_DONE && i < len && r == STWS_OK) {
        switch (p->state) {
        case STWS__HTTP_HEAD: {
            int complete;
            r = stws__http_head_bytes(p, s + i, len - i, &n, &complete);
            i += n;
            if (r == STWS_OK && complete) r = stws__http_head_done(p);
            break;
        }
        case STWS__HTTP_BODY_LEN:
        case STWS__HTTP_CHUNK_DATA:
            n = STWS__MIN(p->remaining, len - i);
            r = stws__http_body_put(p, s + i, n);
            i += n;
            p->remaining -= n;
            if (!p->remaining)
                p->state = p->state == STWS__HTTP_BODY_LEN ? STWS__HTTP_DONE
                                                           : STWS__HTTP_CHUNK_DATA_CR;
            break;
        case STWS__HTTP_BODY_CLOSE:
            r = stws__http_body_put(p, s + i, len - i);
            i = len;
            break;
        default:
            r = stws__http_chunk_byte(p, s[i++]);
        }
    }
    p->received += i;
    *used = i;
    if (r != STWS_OK) return stws__http_fail(p, r);
    if (p->state != STWS__HTTP_DONE) return STWS_INCOMPLETE;
    stws__http_finish(p);
    return STWS_OK;
}

stws_result stws_http_parser_eof(stws_http_parser *p) {
    if (!p) return STWS_ERR_INVALID_ARG;
    if (p->state == STWS__HTTP_FAILED) return p->error;
    if (p->state == STWS__HTTP_DONE) return STWS_OK;
    if (p->state != STWS__HTTP_BODY_CLOSE) return stws__http_fail(p, STWS_ERR_EOF);
    stws__http_finish(p);
    return STWS_OK;
}

size_t stws_http_parser_received(const stws_http_parser *p) { return p ? p->received : 0; }

const stws_http_response *stws_http_parser_response(const stws_http_parser *p) {
    return p && p->state == STWS__HTTP_DONE ? &p->resp : NULL;
}

/* The field lines were checked by the parser: "name:" OWS value OWS CRLF. */
int stws_http_response_header(const stws_http_response *r, size_t *pos, stws_str *name,
                              stws_str *value) {
    const char *f;
    size_t i, n, vs, ve;
    if (!r || !pos || !r->fields.ptr || *pos >= r->fields.len) return 0;
    f = r->fields.ptr;
    n = r->fields.len;
    i = *pos;
    if (name) name->ptr = f + i;
    while (f[i] != ':') i++;
    if (name) name->len = (size_t)(f + i - name->ptr);
    i++;
    while (f[i] == ' ' || f[i] == '\t') i++;
    vs = i;
    while (f[i] != '\r') i++;
    ve = i;
    while (ve > vs && (f[ve - 1] == ' ' || f[ve - 1] == '\t')) ve--;
    if (value) {
        value->ptr = f + vs;
        value->len = ve - vs;
    }
    *pos = STWS__MIN(i + 2, n);
    return 1;
}

int stws_http_response_find(const stws_http_response *r, const char *name, stws_str *value) {
    size_t pos = 0;
    stws_str n, v;
    if (!name) return 0;
    while (stws_http_response_header(r, &pos, &n, &v))
        if (stws__ieq(n.ptr, n.len, name)) {
            if (value) *value = v;
            return 1;
        }
    return 0;
}

/* field-value = *( VCHAR / obs-text / SP / HTAB ) (RFC 9110 §5.5): refusing
   every other control also refuses CR and LF, the injection (NUL ends the
   C string). */
static int stws__http_value_ok(const char *v) {
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        if ((c < 0x20 && c != '\t') || c == 0x7F) return 0;
    }
    return 1;
}

static void stws__sb_uint(stws__sb *b, size_t v) {
    char d[24];
    size_t k = sizeof d;
    do { d[--k] = (char)('0' + v % 10); v /= 10; } while (v);
    stws__sb_put(b, d + k, sizeof d - k);
}

stws_result stws_http_request_write(const stws_http_request_desc *d, char *buf, size_t cap,
                                    size_t *len) {
    static const char *const owned[] = {"host", "content-length", "transfer-encoding",
                                        "connection"};
    const char *method, *path, *q;
    stws__sb b;
    int i, k, has_q;
    if (!d || (!buf && cap) || !len || !d->host || d->num_query < 0 || d->num_headers < 0 ||
        (d->num_query && !d->query) || (d->num_headers && !d->headers) ||
        (!d->body && d->body_len) || d->port < 0 || d->port > 65535)
        return STWS_ERR_INVALID_ARG;
    method = d->method ? d->method : "GET";
    path = d->path ? d->path : "/";
    if (!stws__handshake_token_ok(method) || !*d->host || path[0] != '/') return STWS_ERR_HEADER_VALUE;
    for (q = d->host; *q; q++) /* reg-name or IP literal characters only */
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7F ||
            strchr("/?#@[]\\\"<>^`{|}", *q))
            return STWS_ERR_HEADER_VALUE;
    for (q = path; *q; q++) /* request-target: visible ASCII (RFC 9112 §3.2) */
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7F || *q == '#')
            return STWS_ERR_HEADER_VALUE;
    for (i = 0; i < d->num_query; i++)
        if (!d->query[i].name) return STWS_ERR_INVALID_ARG;
    for (i = 0; i < d->num_headers; i++) {
        const stws_header *h = &d->headers[i];
        if (!h->name || !h->value || !stws__handshake_token_ok(h->name) || !stws__http_value_ok(h->value))
            return STWS_ERR_HEADER_VALUE;
        for (k = 0; k < (int)(sizeof owned / sizeof owned[0]); k++)
            if (stws__ieq(h->name, strlen(h->name), owned[k])) return STWS_ERR_INVALID_ARG;
    }
    b.buf = buf;
    b.cap = cap;
    b.len = 0;
    stws__sb_puts(&b, method);
    stws__sb_puts(&b, " ");
    stws__sb_puts(&b, path);
    has_q = strchr(path, '?') != NULL;
    for (i = 0; i < d->num_query; i++) {
        stws__sb_puts(&b, has_q ? "&" : "?");
        has_q = 1;
        stws__sb_form(&b, d->query[i].name);
        if (d->query[i].value) {
            stws__sb_puts(&b, "=");
            stws__sb_form(&b, d->query[i].value);
        }
    }
    /* Host first (RFC 9112 §3.2), with the port unless it is the default */
    stws__sb_puts(&b, " HTTP/1.1\r\nHost: ");
    if (strchr(d->host, ':')) stws__sb_puts(&b, "[");
    stws__sb_puts(&b, d->host);
    if (strchr(d->host, ':')) stws__sb_puts(&b, "]");
    if (d->port && d->port != (d->secure ? 443 : 80)) {
        stws__sb_puts(&b, ":");
        stws__sb_uint(&b, (size_t)d->port);
    }
    stws__sb_puts(&b, "\r\n");
    for (i = 0; i < d->num_headers; i++) {
        stws__sb_puts(&b, d->headers[i].name);
        stws__sb_puts(&b, ": ");
        stws__sb_puts(&b, d->headers[i].value);
        stws__sb_puts(&b, "\r\n");
    }
    /* RFC 9110 §8.6: a user agent sends Content-Length: 0 for an empty body
       of a method that expects one */
    if (d->body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
        strcmp(method, "PATCH") == 0) {
        stws__sb_puts(&b, "Content-Length: ");
        stws__sb_uint(&b, d->body_len);
        stws__sb_puts(&b, "\r\n");
    }
    stws__sb_puts(&b, d->close ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n");
    if (d->body_len) stws__sb_put(&b, (const char *)d->body, d->body_len);
    *len = b.len;
    if (b.len >= cap) return STWS_ERR_BUFFER_TOO_SMALL;
    buf[b.len] = 0;
    return STWS_OK;
}

/* ==== platform: sockets and threads (POSIX, or Winsock 2 and Win32) ======= */
/* Everything below this section is written once, against these few
   primitives; only they differ between the platforms.  Sockets: the
   built-in TCP transport and the poll helpers.  Threads: only two users,
   the default resolver's helper thread (one per host-name lookup,
   detached) and the client's post inbox; they need a mutex, a detached
   thread, and a "notify" pair whose read end a wait can watch next to the
   connection's socket (a pipe on POSIX; on Windows, where select() takes
   only sockets, a connected pair of loopback UDP sockets). */
#ifndef STWS_NO_SOCKETS
#ifdef _WIN32
typedef SOCKET stws__sock;
#define STWS__NO_SOCK INVALID_SOCKET
/* Winsock counts WSAStartup calls: each TCP object (and each notify pair)
   holds one, so there is no process-wide setup for the user to do and no
   hidden global of ours. */
static int stws__sock_init(void) {
    WSADATA wd;
    return WSAStartup(MAKEWORD(2, 2), &wd) == 0 ? 0 : -1;
}
static void stws__sock_fini(void) { (void)WSACleanup(); }
static int stws__sock_errno(void) { return WSAGetLastError(); }
static int stws__sock_would_block(int e) { return e == WSAEWOULDBLOCK; }
/* a non-blocking connect() says WSAEWOULDBLOCK where POSIX says EINPROGRESS */
static int stws__sock_in_progress(int e) { return e == WSAEWOULDBLOCK || e == WSAEINPROGRESS; }
static void stws__sock_close(stws__sock s) { (void)closesocket(s); }
/* The text of a socket error: strerror() knows no WSAE* code. */
static const char *stws__sock_strerror(int e, char *buf, size_t n) {
    DWORD k = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, (DWORD)e, 0, buf,
                             (DWORD)n, NULL);
    while (k > 0 && (buf[k - 1] == '\n' || buf[k - 1] == '\r' || buf[k - 1] == '.')) buf[--k] = 0;
    if (!k) snprintf(buf, n, "Winsock error");
    return buf;
}
static int stws__sock_nonblock(stws__sock s) {
    u_long on = 1;
    /* what FD_CLOEXEC is on POSIX: a child process must not inherit it */
    (void)SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
    return ioctlsocket(s, FIONBIO, &on) == 0 ? 0 : -1;
}
/* No SIGPIPE on Windows; Winsock counts in int. */
static int stws__sock_send(stws__sock s, const unsigned char *buf, size_t len) {
    return send(s, (const char *)buf, (int)len, 0);
}
static int stws__sock_recv(stws__sock s, unsigned char *buf, size_t len) {
    return recv(s, (char *)buf, (int)len, 0);
}
/* Wait up to timeout_ms (-1: no limit) until s is ready for events
   (STWS_POLL_*) or s2 (a notify pair's read end) is readable; either may be
   STWS__NO_SOCK, both to just wait.  Returns > 0 ready, 0 timed out, < 0
   error.  select(), not WSAPoll(): before Windows 10 2004 WSAPoll never
   reported a failed connect, select() puts it in exceptfds. */
static int stws__sock_wait(stws__sock s, int events, stws__sock s2, int timeout_ms) {
    fd_set rs, ws, xs;
    struct timeval tv;
    if (s == STWS__NO_SOCK && s2 == STWS__NO_SOCK) {
        Sleep(timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
        return 0;
    }
    FD_ZERO(&rs);
    FD_ZERO(&ws);
    FD_ZERO(&xs);
    if (s != STWS__NO_SOCK) {
        if (events & STWS_POLL_READ) FD_SET(s, &rs);
        if (events & STWS_POLL_WRITE) FD_SET(s, &ws);
        FD_SET(s, &xs);
    }
    if (s2 != STWS__NO_SOCK) FD_SET(s2, &rs);
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return select(0, &rs, &ws, &xs, timeout_ms < 0 ? NULL : &tv);
}
#else
typedef int stws__sock;
#define STWS__NO_SOCK (-1)
static int stws__sock_init(void) { return 0; }
static void stws__sock_fini(void) {}
static int stws__sock_errno(void) { return errno; }
static int stws__sock_would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK; }
static int stws__sock_in_progress(int e) { return e == EINPROGRESS || e == EINTR; }
static void stws__sock_close(stws__sock s) { (void)close(s); }
static const char *stws__sock_strerror(int e, char *buf, size_t n) {
    (void)buf;
    (void)n;
    return strerror(e);
}
static int stws__sock_nonblock(stws__sock s) {
    int fl = fcntl(s, F_GETFL, 0);
    if (fl < 0 || fcntl(s, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    (void)fcntl(s, F_SETFD, FD_CLOEXEC);
#ifdef SO_NOSIGPIPE
    {
        int one = 1;
        (void)setsockopt(s, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
    }
#endif
    return 0;
}
/* One send or recv, retried on EINTR: the count, or -1 and stws__sock_errno(). */
static int stws__sock_send(stws__sock s, const unsigned char *buf, size_t len) {
    ssize_t n;
    int flags = 0;
#ifdef MSG_NOSIGNAL
    flags = MSG_NOSIGNAL;
#endif
    do n = send(s, buf, len, flags); while (n < 0 && errno == EINTR);
    return (int)n;
}
static int stws__sock_recv(stws__sock s, unsigned char *buf, size_t len) {
    ssize_t n;
    do n = recv(s, buf, len, 0); while (n < 0 && errno == EINTR);
    return (int)n;
}
/* Wait up to timeout_ms (-1: no limit) until s is ready for events
   (STWS_POLL_*) or s2 (a notify pair's read end) is readable; either may be
   STWS__NO_SOCK, both to just wait.  Returns > 0 ready, 0 timed out, < 0
   error. */
static int stws__sock_wait(stws__sock s, int events, stws__sock s2, int timeout_ms) {
    struct pollfd pfd[2];
    nfds_t n = 0;
    if (s != STWS__NO_SOCK) {
        pfd[n].fd = s;
        pfd[n].events = (short)(((events & STWS_POLL_READ) ? POLLIN : 0) | ((events & STWS_POLL_WRITE) ? POLLOUT : 0));
        pfd[n++].revents = 0;
    }
    if (s2 != STWS__NO_SOCK) {
        pfd[n].fd = s2;
        pfd[n].events = POLLIN;
        pfd[n++].revents = 0;
    }
    return poll(pfd, n, timeout_ms);
}
#endif
#endif /* STWS_NO_SOCKETS */

#ifdef STWS__THREADS
#ifdef _WIN32
typedef SRWLOCK stws__mutex;
#define STWS__THREAD_FN(name, arg) DWORD WINAPI name(LPVOID arg)
#define STWS__THREAD_RETURN return 0
typedef LPTHREAD_START_ROUTINE stws__thread_fn;
static int stws__mutex_init(stws__mutex *m) { InitializeSRWLock(m); return 0; }
static void stws__mutex_destroy(stws__mutex *m) { (void)m; }
static void stws__mutex_lock(stws__mutex *m) { AcquireSRWLockExclusive(m); }
static void stws__mutex_unlock(stws__mutex *m) { ReleaseSRWLockExclusive(m); }
static int stws__thread_start(stws__thread_fn fn, void *arg) {
    HANDLE h = CreateThread(NULL, 0, fn, arg, 0, NULL);
    if (!h) return -1;
    CloseHandle(h); /* detached */
    return 0;
}
static void stws__notify_close(stws__sock fds[2]) {
    if (fds[0] == STWS__NO_SOCK && fds[1] == STWS__NO_SOCK) return;
    if (fds[0] != STWS__NO_SOCK) stws__sock_close(fds[0]);
    if (fds[1] != STWS__NO_SOCK) stws__sock_close(fds[1]);
    fds[0] = fds[1] = STWS__NO_SOCK;
    stws__sock_fini();
}
/* Two non-blocking UDP sockets on 127.0.0.1, each connected to the other
   (so each takes datagrams only from its twin): select() can wait on
   fds[0] with the connection's socket.  Holds its own WSAStartup. */
static int stws__notify_open(stws__sock fds[2]) {
    struct sockaddr_in a[2];
    int i, len;
    fds[0] = fds[1] = STWS__NO_SOCK;
    if (stws__sock_init() != 0) return -1;
    for (i = 0; i < 2; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].sin_family = AF_INET;
        a[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = (int)sizeof a[i];
        fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
        if (fds[i] == STWS__NO_SOCK || bind(fds[i], (struct sockaddr *)&a[i], len) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&a[i], &len) != 0 || stws__sock_nonblock(fds[i]) != 0)
            break;
    }
    if (i == 2 && connect(fds[0], (struct sockaddr *)&a[1], (int)sizeof a[1]) == 0 &&
        connect(fds[1], (struct sockaddr *)&a[0], (int)sizeof a[0]) == 0)
        return 0;
    for (i = 0; i < 2; i++)
        if (fds[i] != STWS__NO_SOCK) stws__sock_close(fds[i]);
    fds[0] = fds[1] = STWS__NO_SOCK;
    stws__sock_fini();
    return -1;
}
static void stws__notify_signal(stws__sock fd) {
    char b = 1;
    (void)send(fd, &b, 1, 0); /* would block: already signalled */
}
static void stws__notify_drain(stws__sock fd) {
    char b[64];
    while (recv(fd, b, (int)sizeof b, 0) > 0) {}
}
#else
typedef pthread_mutex_t stws__mutex;
#define STWS__THREAD_FN(name, arg) void *name(void *arg)
#define STWS__THREAD_RETURN return NULL
typedef void *(*stws__thread_fn)(void *);
static int stws__mutex_init(stws__mutex *m) { return pthread_mutex_init(m, NULL) == 0 ? 0 : -1; }
static void stws__mutex_destroy(stws__mutex *m) { (void)pthread_mutex_destroy(m); }
static void stws__mutex_lock(stws__mutex *m) { (void)pthread_mutex_lock(m); }
static void stws__mutex_unlock(stws__mutex *m) { (void)pthread_mutex_unlock(m); }
static int stws__thread_start(stws__thread_fn fn, void *arg) {
    pthread_attr_t at;
    pthread_t th;
    sigset_t all, old;
    int r;
    if (pthread_attr_init(&at) != 0) return -1;
    r = pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    /* the helper takes no signal meant for the application's threads: it
       starts with every signal blocked (the caller's mask is restored) */
    (void)sigfillset(&all);
    if (r == 0) r = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (r == 0) {
        r = pthread_create(&th, &at, fn, arg);
        (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    (void)pthread_attr_destroy(&at);
    return r == 0 ? 0 : -1;
}
/* A non-blocking, close-on-exec pipe: one byte in it means "look again". */
static int stws__notify_open(stws__sock fds[2]) {
    int i;
    if (pipe(fds) != 0) {
        fds[0] = fds[1] = -1;
        return -1;
    }
    for (i = 0; i < 2; i++) {
        (void)fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL, 0) | O_NONBLOCK);
        (void)fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    return 0;
}
static void stws__notify_signal(stws__sock fd) {
    unsigned char b = 1;
    ssize_t n;
    do n = write(fd, &b, 1); while (n < 0 && errno == EINTR); /* full: already signalled */
}
static void stws__notify_drain(stws__sock fd) {
    unsigned char b[64];
    ssize_t n;
    do n = read(fd, b, sizeof b); while (n > 0 || (n < 0 && errno == EINTR));
}
static void stws__notify_close(stws__sock fds[2]) {
    if (fds[0] >= 0) close(fds[0]);
    if (fds[1] >= 0) close(fds[1]);
    fds[0] = fds[1] = -1;
}
#endif
#endif /* STWS__THREADS */

/* ==== transport: TCP ====================================================== */
#ifndef STWS_NO_SOCKETS

#define STWS__MAX_ADDRS 8

typedef struct stws__lookup stws__lookup;

struct stws_tcp {
    stws_allocator alloc;
    stws_resolver resolver;
    stws__lookup *lookup;      /* the default resolver's pending lookup, or NULL */
    stws__sock fd;
    int connecting;            /* a non-blocking connect is in flight */
    int naddr, ai;             /* resolved addresses, the one being tried */
    stws_address addrs[STWS__MAX_ADDRS];
    uint16_t port;
    unsigned gen;              /* sockets made so far: tells a new socket from
                                  an old one that had the same number */
    char detail[160];          /* why the last connect failed: address, errno */
};

static int stws__default_resolve(const char *host, stws_address *out, int max, void *user_data) {
    struct addrinfo hints, *res = NULL, *ai;
    int n = 0;
    (void)user_data;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0) return STWS_ERR_RESOLVE;
    for (ai = res; ai && n < max; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            out[n].family = 4;
            memcpy(out[n].bytes, &((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr, 4);
            n++;
        } else if (ai->ai_family == AF_INET6) {
            out[n].family = 6;
            memcpy(out[n].bytes, &((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr, 16);
            n++;
        }
    }
    freeaddrinfo(res);
    return n ? n : STWS_ERR_RESOLVE;
}

#ifdef STWS__THREADS
/* One host-name lookup on a detached helper thread, so the step never waits
   for DNS (issue 11).  The record is shared by the transport and the thread;
   each holds a reference and the last one to let go frees it, so a
   transport that closes (destroy, reconnect, connect timeout) while the
   lookup is pending just lets go: the thread finishes getaddrinfo(), which
   cannot be cancelled safely, and frees the record itself. */
struct stws__lookup {
    stws__mutex mu;
    int refs;                   /* under mu: transport + thread */
    int done, result;           /* under mu: result is a count or an error */
    stws_address addrs[STWS__MAX_ADDRS]; /* under mu */
    stws__sock fds[2];          /* notify pair: readable once done (fixed after start);
                                   on Windows its WSAStartup keeps Winsock up for
                                   the helper's getaddrinfo() after the transport
                                   has gone */
    stws_allocator alloc;
    char host[1];               /* the name, allocated to fit (fixed after start) */
};

static void stws__lookup_release(stws__lookup *lk) {
    int left;
    stws_allocator a;
    stws__mutex_lock(&lk->mu);
    left = --lk->refs;
    stws__mutex_unlock(&lk->mu);
    if (left) return;
    a = lk->alloc;
    stws__notify_close(lk->fds);
    stws__mutex_destroy(&lk->mu);
    stws__free(&a, lk);
}

static STWS__THREAD_FN(stws__lookup_main, arg) {
    stws__lookup *lk = (stws__lookup *)arg;
    stws_address out[STWS__MAX_ADDRS];
    int r = stws__default_resolve(lk->host, out, STWS__MAX_ADDRS, NULL);
    stws__mutex_lock(&lk->mu);
    if (r > 0) memcpy(lk->addrs, out, (size_t)r * sizeof *out);
    lk->result = r;
    lk->done = 1;
    if (lk->fds[1] != STWS__NO_SOCK) stws__notify_signal(lk->fds[1]);
    stws__mutex_unlock(&lk->mu);
    stws__lookup_release(lk);
    STWS__THREAD_RETURN;
}

/* Let a pending lookup go (nothing if none). */
static void stws__lookup_abandon(stws_tcp *t) {
    if (!t->lookup) return;
    stws__lookup_release(t->lookup);
    t->lookup = NULL;
}

/* Start a lookup of host, or collect the one pending: the address count,
   STWS_WANT_READ while it runs, or an error. */
static int stws__lookup_poll(stws_tcp *t, const char *host) {
    stws__lookup *lk = t->lookup;
    int done, r;
    if (lk && strcmp(lk->host, host) != 0) stws__lookup_abandon(t); /* another host now */
    if (!t->lookup) {
        size_t n = strlen(host);
        lk = (stws__lookup *)stws__alloc(&t->alloc, sizeof *lk + n);
        if (!lk) return STWS_ERR_NOMEM;
        memset(lk, 0, sizeof *lk);
        lk->alloc = t->alloc;
        memcpy(lk->host, host, n + 1);
        lk->refs = 2;
        if (stws__mutex_init(&lk->mu) != 0) {
            stws__free(&t->alloc, lk);
            return STWS_ERR_RESOLVE;
        }
        if (stws__notify_open(lk->fds) != 0 || stws__thread_start(stws__lookup_main, lk) != 0) {
            stws__notify_close(lk->fds);
            stws__mutex_destroy(&lk->mu);
            stws__free(&t->alloc, lk);
            return STWS_ERR_RESOLVE; /* out of threads or descriptors: the caller retries */
        }
        t->lookup = lk;
        return STWS_WANT_READ;
    }
    stws__mutex_lock(&lk->mu);
    done = lk->done;
    r = lk->result;
    if (done && r > 0) memcpy(t->addrs, lk->addrs, (size_t)r * sizeof *lk->addrs);
    stws__mutex_unlock(&lk->mu);
    if (!done) return STWS_WANT_READ;
    stws__lookup_abandon(t); /* taken: the last of the two to let go frees it */
    return r;
}
#endif

static void stws__tcp_close(void *ctx) {
    stws_tcp *t = (stws_tcp *)ctx;
    if (t->fd != STWS__NO_SOCK) stws__sock_close(t->fd);
    t->fd = STWS__NO_SOCK;
    t->connecting = 0;
    t->naddr = 0;
#ifdef STWS__THREADS
    stws__lookup_abandon(t);
#endif
}

/* Note why the connect to addrs[ai] failed (errno err), for the error
   detail: "127.0.0.1:80: Connection refused (errno 111)". */
static void stws__tcp_note(stws_tcp *t, int err) {
    const stws_address *a = &t->addrs[t->ai];
    char ip[INET6_ADDRSTRLEN], msg[96];
    if (!inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->bytes, ip, sizeof ip)) ip[0] = 0;
    snprintf(t->detail, sizeof t->detail, a->family == 4 ? "%s:%u: %.80s (errno %d)" : "[%s]:%u: %.80s (errno %d)",
             ip, (unsigned)t->port, stws__sock_strerror(err, msg, sizeof msg), err);
}

/* Start a non-blocking connect to addrs[ai]; 0 connected, WANT_WRITE in
   progress, negative when this address failed at once. */
static int stws__tcp_start(stws_tcp *t) {
    const stws_address *a = &t->addrs[t->ai];
    struct sockaddr_storage ss;
    socklen_t sl;
    int one = 1, e;
    memset(&ss, 0, sizeof ss);
    if (a->family == 4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(t->port);
        memcpy(&s4->sin_addr, a->bytes, 4);
        sl = sizeof *s4;
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(t->port);
        memcpy(&s6->sin6_addr, a->bytes, 16);
        sl = sizeof *s6;
    }
    t->fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (t->fd == STWS__NO_SOCK) {
        stws__tcp_note(t, stws__sock_errno());
        return STWS_ERR_CONNECT;
    }
    t->gen++;
    if (stws__sock_nonblock(t->fd) != 0) {
        stws__tcp_note(t, stws__sock_errno());
        return STWS_ERR_CONNECT;
    }
    /* small frames (pongs, health checks) must not wait for Nagle */
    (void)setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, (socklen_t)sizeof one);
    if (connect(t->fd, (struct sockaddr *)&ss, sl) == 0) return 0;
    e = stws__sock_errno();
    if (stws__sock_in_progress(e)) {
        t->connecting = 1;
        return STWS_WANT_WRITE;
    }
    stws__tcp_note(t, e);
    return STWS_ERR_CONNECT;
}

static int stws__tcp_open(void *ctx, const char *host, uint16_t port) {
    stws_tcp *t = (stws_tcp *)ctx;
    int r;
    if (t->fd != STWS__NO_SOCK && !t->connecting) return 0;
    if (!t->naddr) {
        /* numeric hosts never reach the resolver */
        if (inet_pton(AF_INET, host, t->addrs[0].bytes) == 1) {
            t->addrs[0].family = 4;
            t->naddr = 1;
        } else if (inet_pton(AF_INET6, host, t->addrs[0].bytes) == 1) {
            t->addrs[0].family = 6;
            t->naddr = 1;
        } else {
#ifdef STWS__THREADS
            if (t->resolver.resolve == stws__default_resolve) r = stws__lookup_poll(t, host);
            else
#endif
            r = t->resolver.resolve(host, t->addrs, STWS__MAX_ADDRS, t->resolver.user_data);
            if (r == STWS_WANT_READ || r == STWS_WANT_WRITE) return r;
            if (r <= 0) return r < 0 ? r : STWS_ERR_RESOLVE;
            t->naddr = STWS__MIN(r, STWS__MAX_ADDRS);
        }
        t->ai = 0;
        t->port = port;
        t->fd = STWS__NO_SOCK;
        t->detail[0] = 0; /* a new attempt: no reason from an older one */
    }
    for (;;) {
        if (t->fd == STWS__NO_SOCK) {
            r = stws__tcp_start(t);
            if (r == 0) return 0;
            if (r == STWS_WANT_WRITE) return r;
        } else {
            /* the pump may call us before the socket is writable: ask, never wait */
            int err = 0;
            socklen_t el = (socklen_t)sizeof err;
            if (stws__sock_wait(t->fd, STWS_POLL_WRITE, STWS__NO_SOCK, 0) == 0) return STWS_WANT_WRITE;
            if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, (char *)&err, &el) != 0) err = stws__sock_errno();
            if (err == 0) {
                t->connecting = 0;
                return 0;
            }
            stws__tcp_note(t, err);
        }
        /* this address failed: try the next one */
        stws__sock_close(t->fd);
        t->fd = STWS__NO_SOCK;
        t->connecting = 0;
        if (++t->ai >= t->naddr) {
            t->naddr = 0;
            return STWS_ERR_CONNECT;
        }
    }
}

static int stws__tcp_send(void *ctx, const unsigned char *buf, size_t len) {
    stws_tcp *t = (stws_tcp *)ctx;
    int n;
    if (len > 0x40000000) len = 0x40000000; /* keep the count within int */
    n = stws__sock_send(t->fd, buf, len);
    if (n >= 0) return n;
    if (stws__sock_would_block(stws__sock_errno())) return STWS_WANT_WRITE;
    return STWS_ERR_IO;
}

static int stws__tcp_recv(void *ctx, unsigned char *buf, size_t len) {
    stws_tcp *t = (stws_tcp *)ctx;
    int n;
    if (len > 0x40000000) len = 0x40000000;
    n = stws__sock_recv(t->fd, buf, len);
    if (n >= 0) return n;
    if (stws__sock_would_block(stws__sock_errno())) return STWS_WANT_READ;
    return STWS_ERR_IO;
}

static intptr_t stws__tcp_handle(void *ctx) {
    stws_tcp *t = (stws_tcp *)ctx;
#ifdef STWS__THREADS
    if (t->fd == STWS__NO_SOCK && t->lookup && t->lookup->fds[0] != STWS__NO_SOCK)
        return (intptr_t)t->lookup->fds[0]; /* readable when the answer is in */
#endif
    return t->fd == STWS__NO_SOCK ? -1 : (intptr_t)t->fd; /* a SOCKET fits */
}

stws_tcp *stws_tcp_create(const stws_tcp_desc *desc) {
    stws_allocator a = stws__allocator_def(desc ? &desc->allocator : NULL);
    stws_tcp *t = (stws_tcp *)stws__alloc(&a, sizeof *t);
    if (!t) return NULL;
    if (stws__sock_init() != 0) {
        stws__free(&a, t);
        return NULL;
    }
    memset(t, 0, sizeof *t);
    t->alloc = a;
    t->fd = STWS__NO_SOCK;
    if (desc && desc->resolver.resolve) t->resolver = desc->resolver;
    else t->resolver.resolve = stws__default_resolve;
    return t;
}

void stws_tcp_destroy(stws_tcp *t) {
    if (!t) return;
    stws__tcp_close(t);
    stws__sock_fini();
    stws__free(&t->alloc, t);
}

stws_transport stws_tcp_transport(stws_tcp *t) {
    stws_transport tr;
    memset(&tr, 0, sizeof tr);
    tr.open = stws__tcp_open;
    tr.send = stws__tcp_send;
    tr.recv = stws__tcp_recv;
    tr.close = stws__tcp_close;
    tr.handle = stws__tcp_handle;
    tr.ctx = t;
    return tr;
}

static uint64_t stws__default_now_ms(void *user_data) {
#ifdef _WIN32
    /* the performance counter is monotonic and never fails since XP; split
       so that count * 1000 cannot overflow */
    LARGE_INTEGER f, c;
    (void)user_data;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (uint64_t)(c.QuadPart / f.QuadPart) * 1000u +
           (uint64_t)(c.QuadPart % f.QuadPart) * 1000u / (uint64_t)f.QuadPart;
#else
    struct timespec ts;
    (void)user_data;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
#endif
}
#endif /* STWS_NO_SOCKETS */

/* Map whatever a transport returned to a result: would-block and known
   results pass, anything else is an I/O error. */
static int stws__tr_err(int r) {
    if (r == STWS_WANT_READ || r == STWS_WANT_WRITE) return r;
    if ((r <= STWS_ERR_RESOLVE && r >= STWS_ERR_PROXY) || r == STWS_ERR_NOMEM) return r;
    return STWS_ERR_IO; /* e.g. an MBEDTLS_ERR_NET_* code from a user transport */
}

/* ==== transport: HTTP CONNECT proxy ======================================= */

struct stws_proxy {
    stws_allocator alloc;
    stws_transport inner;
    char host[256];             /* the proxy itself */
    uint16_t port;
    char auth[208];             /* "Proxy-Authorization: Basic <base64 user:pass>\r\n", or "" */
    int state;                  /* 0 connect, 1 send request, 2 read reply, 3 tunnel */
    int status_seen;            /* the reply's status line passed its check */
    char buf[1024];             /* request, then reply: the limit of a reply header */
    size_t len, off;
    char detail[192];           /* why the CONNECT failed, "" if it did not */
};

/* A refused or broken CONNECT: the reason, with the proxy's own status line
   (escaped: it is the peer's text) when there is one. */
static int stws__proxy_fail(stws_proxy *p, const char *why, int with_line) {
    size_t n = strlen(why), k = 0;
    memcpy(p->detail, why, n); /* the callers' reasons are short literals */
    if (with_line) {
        while (k < p->len && p->buf[k] != '\r' && p->buf[k] != '\n') k++;
        memcpy(p->detail + n, ": ", 2);
        n += 2;
        n += stws__copy_safe(p->detail + n, sizeof p->detail - n, p->buf, k);
    }
    p->detail[n] = 0;
    return STWS_ERR_PROXY;
}

/* RFC 9112 §4: status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ],
   checked as soon as its CR LF is in; the reply ends at the empty line.
   Returns 0 to read on, 1 for a 2xx, or STWS_ERR_PROXY. */
static int stws__proxy_reply(stws_proxy *p) {
    const char *b = p->buf;
    size_t n = p->len, i;
    if (n <= 7 && memcmp(b, "HTTP/1.", n) != 0) return stws__proxy_fail(p, "proxy reply is not HTTP", 1);
    if (b[n - 1] == 0) return stws__proxy_fail(p, "NUL byte in the proxy reply", 0);
    if (!p->status_seen && n >= 2 && b[n - 2] == '\r' && b[n - 1] == '\n') {
        if (n < 14 || (b[7] != '0' && b[7] != '1') || b[8] != ' ' || (n > 14 && b[12] != ' '))
            return stws__proxy_fail(p, "malformed proxy status line", 1);
        for (i = 9; i < 12; i++)
            if (b[i] < '0' || b[i] > '9') return stws__proxy_fail(p, "malformed proxy status line", 1);
        if (b[9] == '4' && b[10] == '0' && b[11] == '7')
            return stws__proxy_fail(p, p->auth[0] ? "proxy refused the credentials" : "proxy needs credentials", 1);
        if (b[9] != '2') return stws__proxy_fail(p, "proxy refused the CONNECT", 1);
        p->status_seen = 1;
    }
    if (n >= 4 && memcmp(b + n - 4, "\r\n\r\n", 4) == 0) return p->status_seen ? 1 : stws__proxy_fail(p, "malformed proxy status line", 1);
    if (n == sizeof p->buf)
        return stws__proxy_fail(p, p->status_seen ? "proxy reply header over 1024 bytes" : "proxy status line over 1024 bytes", 1);
    return 0;
}

static int stws__proxy_open(void *ctx, const char *host, uint16_t port) {
    stws_proxy *p = (stws_proxy *)ctx;
    int r;
    if (p->state == 0) {
        /* RFC 9110 §9.3.6: CONNECT authority-form, IPv6 literals in
           brackets.  Whole formats, so that no string here is shared with
           another function (a firmware build that never makes a proxy would
           keep them all, see stws__copy). */
        const char *fmt = strchr(host, ':') ? "CONNECT [%s]:%u HTTP/1.1\r\nHost: [%s]:%u\r\n%s\r\n"
                                            : "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\n%s\r\n";
        int n;
        r = p->inner.open(p->inner.ctx, p->host, p->port);
        if (r != 0) return stws__tr_err(r);
        p->detail[0] = 0;
        p->status_seen = 0;
        n = snprintf(p->buf, sizeof p->buf, fmt, host, (unsigned)port, host, (unsigned)port, p->auth);
        if (n < 0 || (size_t)n >= sizeof p->buf) return STWS_ERR_PROXY;
        p->len = (size_t)n;
        p->off = 0;
        p->state = 1;
    }
    while (p->state == 1) {
        r = p->inner.send(p->inner.ctx, (const unsigned char *)p->buf + p->off, p->len - p->off);
        if (r <= 0) return stws__tr_err(r ? r : STWS_ERR_IO);
        p->off += (size_t)r;
        if (p->off == p->len) {
            mbedtls_platform_zeroize(p->buf, p->len); /* Proxy-Authorization */
            p->state = 2;
            p->len = 0;
        }
    }
    while (p->state == 2) {
        /* read byte-wise up to the blank line, so no tunnel byte is taken;
           the reply fits the buffer or fails, and a proxy that drips or
           stalls meets the connection's connect timer */
        r = p->inner.recv(p->inner.ctx, (unsigned char *)p->buf + p->len, 1);
        if (r == 0) return stws__proxy_fail(p, "proxy closed the stream before its reply ended", p->len > 0);
        if (r < 0) return stws__tr_err(r);
        p->len++;
        r = stws__proxy_reply(p);
        if (r < 0) return r;
        if (r == 1) p->state = 3;
    }
    return 0;
}

const char *stws_proxy_error_detail(const stws_proxy *p) { return p ? p->detail : ""; }

static int stws__proxy_send(void *ctx, const unsigned char *buf, size_t len) {
    stws_proxy *p = (stws_proxy *)ctx;
    return p->inner.send(p->inner.ctx, buf, len);
}
static int stws__proxy_recv(void *ctx, unsigned char *buf, size_t len) {
    stws_proxy *p = (stws_proxy *)ctx;
    return p->inner.recv(p->inner.ctx, buf, len);
}
static void stws__proxy_close(void *ctx) {
    stws_proxy *p = (stws_proxy *)ctx;
    p->inner.close(p->inner.ctx);
    p->state = 0;
}
static intptr_t stws__proxy_handle(void *ctx) {
    stws_proxy *p = (stws_proxy *)ctx;
    return p->inner.handle ? p->inner.handle(p->inner.ctx) : -1;
}

/* Percent-decoding for the user:pass part of a proxy URL. */
static size_t stws__proxy_pct_decode(const char *s, size_t n, char *out) {
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n) {
            int hi = s[i + 1], lo = s[i + 2], v = 0, k;
            int ok = 1;
            for (k = 0; k < 2; k++) {
                int c = k ? lo : hi;
                v <<= 4;
                if (c >= '0' && c <= '9') v |= c - '0';
                else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
                else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
                else ok = 0;
            }
            if (ok) {
                out[o++] = (char)v;
                i += 2;
                continue;
            }
        }
        out[o++] = s[i];
    }
    return o;
}

stws_proxy *stws_proxy_create(const stws_proxy_desc *desc) {
    stws_allocator a;
    stws_proxy *p;
    const char *u, *at, *hs, *he, *end, *colon;
    unsigned long port = 0;
    if (!desc || !desc->url || !desc->inner.open) return NULL;
    a = stws__allocator_def(&desc->allocator);
    u = desc->url;
    if (strncmp(u, "http://", 7) == 0) u += 7;
    else if (strstr(u, "://")) return NULL; /* only plain HTTP proxies */
    end = u + strcspn(u, "/?#");
    p = (stws_proxy *)stws__alloc(&a, sizeof *p);
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->alloc = a;
    p->inner = desc->inner;
    at = (const char *)memchr(u, '@', (size_t)(end - u));
    hs = u;
    if (at) {
        static const char field[] = "Proxy-Authorization: Basic ";
        const size_t fl = sizeof field - 1;
        char cred[128];
        size_t olen = 0, n = (size_t)(at - u);
        int rc;
        if (n >= sizeof cred) goto fail;
        n = stws__proxy_pct_decode(u, n, cred);
        memcpy(p->auth, field, fl);
        /* room left for CR LF after the base64 and its NUL */
        rc = mbedtls_base64_encode((unsigned char *)p->auth + fl, sizeof p->auth - fl - 2, &olen,
                                   (const unsigned char *)cred, n);
        mbedtls_platform_zeroize(cred, sizeof cred);
        if (rc != 0) goto fail;
        p->auth[fl + olen] = '\r';
        p->auth[fl + olen + 1] = '\n';
        p->auth[fl + olen + 2] = 0;
        hs = at + 1;
    }
    if (*hs == '[') {
        he = (const char *)memchr(hs, ']', (size_t)(end - hs));
        if (!he) goto fail;
        hs++;
        colon = he + 1;
    } else {
        colon = (const char *)memchr(hs, ':', (size_t)(end - hs));
        he = colon ? colon : end;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof p->host) goto fail;
    memcpy(p->host, hs, (size_t)(he - hs));
    if (colon && colon < end && *colon == ':') {
        const char *d;
        for (d = colon + 1; d < end; d++) {
            if (*d < '0' || *d > '9' || port > 65535) goto fail;
            port = port * 10 + (unsigned long)(*d - '0');
        }
    } else {
        port = 80;
    }
    if (port == 0 || port > 65535) goto fail;
    p->port = (uint16_t)port;
    return p;
fail:
    mbedtls_platform_zeroize(p, sizeof *p);
    stws__free(&a, p);
    return NULL;
}

void stws_proxy_destroy(stws_proxy *p) {
    stws_allocator a;
    if (!p) return;
    a = p->alloc;
    mbedtls_platform_zeroize(p, sizeof *p); /* the credentials */
    stws__free(&a, p);
}

stws_transport stws_proxy_transport(stws_proxy *p) {
    stws_transport tr;
    memset(&tr, 0, sizeof tr);
    tr.open = stws__proxy_open;
    tr.send = stws__proxy_send;
    tr.recv = stws__proxy_recv;
    tr.close = stws__proxy_close;
    tr.handle = stws__proxy_handle;
    tr.ctx = p;
    return tr;
}

const char *stws_proxy_from_env(const char *url) {
    stws_url u;
    const char *proxy, *np;
    if (stws_url_parse(url, &u) != STWS_OK) return NULL;
    proxy = u.secure ? getenv("https_proxy") : getenv("http_proxy");
    if (!proxy || !*proxy) proxy = u.secure ? getenv("HTTPS_PROXY") : getenv("HTTP_PROXY");
    if (!proxy || !*proxy) return NULL;
    np = getenv("no_proxy");
    if (!np || !*np) np = getenv("NO_PROXY");
    while (np && *np) {
        /* comma-separated host suffixes; "*" matches every host */
        size_t n = strcspn(np, ","), s = 0;
        while (s < n && np[s] == ' ') s++;
        while (n > s && np[n - 1] == ' ') n--;
        if (n - s == 1 && np[s] == '*') return NULL;
        if (np[s] == '.') s++;
        if (n > s && u.host.len >= n - s) {
            const char *tail = u.host.ptr + u.host.len - (n - s);
            size_t k;
            int eq = 1;
            for (k = 0; k < n - s; k++)
                if (stws__lower((unsigned char)tail[k]) != stws__lower((unsigned char)np[s + k])) eq = 0;
            if (eq && (u.host.len == n - s || tail[-1] == '.')) return NULL;
        }
        np += strcspn(np, ",");
        if (*np == ',') np++;
    }
    return proxy;
}

/* ==== transport: TLS over any transport (mbedTLS) ========================= */
#ifndef STWS_NO_TLS

#ifndef STWS_SYSTEM_CA_FILE
#define STWS_SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#endif

struct stws_tls {
    stws_allocator alloc;
    stws_logger log;
    stws_transport inner;
    stws_random random;
    stws__drbg *drbg;
    int insecure;
    int state;                  /* 0 inner open, 1 TLS handshake, 2 up */
    int fixed_name;             /* server_name came from the desc */
    int ip_host;                /* verify an IP SAN ourselves (see below) */
    uint8_t ip[16];
    size_t ip_len;
    int wblocked;               /* a write of wlen bytes would-blocked: its
                                   record waits in mbedTLS's output buffer */
    size_t wlen;
    int wfailed;                /* a write failed: its record may be half out
                                   (no close_notify then: stws__tls_close) */
    char server_name[256];
    char detail[256];
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca;
};

#ifndef STWS__PSA_ONLY
static int stws__tls_rng(void *p, unsigned char *out, size_t len) {
    stws_random *r = (stws_random *)p;
    return r->fill(out, len, r->user_data) == 0 ? 0 : MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
}
#endif

/* The inner transport already speaks the bio dialect: same return values. */
static int stws__tls_bio_send(void *ctx, const unsigned char *buf, size_t len) {
    stws_tls *t = (stws_tls *)ctx;
    return t->inner.send(t->inner.ctx, buf, len);
}
static int stws__tls_bio_recv(void *ctx, unsigned char *buf, size_t len) {
    stws_tls *t = (stws_tls *)ctx;
    return t->inner.recv(t->inner.ctx, buf, len);
}

/* mbedTLS 2.28 matches the host name against DNS names only, so for an IP
   literal we check the certificate's iPAddress SANs (RFC 5280 §4.2.1.6)
   ourselves and tell mbedTLS there is no name to match. */
static int stws__tls_verify(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
    stws_tls *t = (stws_tls *)ctx;
    const mbedtls_x509_sequence *san;
    if (depth != 0 || !t->ip_host) return 0;
    for (san = &crt->subject_alt_names; san && san->buf.p; san = san->next)
        if ((san->buf.tag & 0x1F) == 7 && san->buf.len == t->ip_len &&
            memcmp(san->buf.p, t->ip, t->ip_len) == 0)
            return 0;
    *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

static int stws__tls_fail(stws_tls *t, int mret) {
    uint32_t vf = mbedtls_ssl_get_verify_result(&t->ssl);
    if (mret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED || (vf && vf != (uint32_t)-1 && !t->insecure)) {
        char info[200];
        size_t n;
        int k = mbedtls_x509_crt_verify_info(info, sizeof info, "", vf);
        n = k > 0 ? (size_t)k : 0;
        while (n && (info[n - 1] == '\n' || info[n - 1] == ' ')) info[--n] = 0;
        for (k = 0; info[k]; k++)
            if (info[k] == '\n') info[k] = ';';
        snprintf(t->detail, sizeof t->detail, "certificate verify failed for %.64s: %.150s",
                 t->server_name, n ? info : "unknown reason");
        return STWS_ERR_TLS_VERIFY;
    }
    if (mret <= STWS_ERR_RESOLVE && mret >= STWS_ERR_PROXY) return mret; /* inner error */
#ifdef MBEDTLS_ERROR_C
    {
        char e[128];
        mbedtls_strerror(mret, e, sizeof e);
        snprintf(t->detail, sizeof t->detail, "TLS error -0x%04X: %s", (unsigned)-mret, e);
    }
#else
    snprintf(t->detail, sizeof t->detail, "TLS error -0x%04X", (unsigned)-mret);
#endif
    return STWS_ERR_TLS;
}

static int stws__tls_open(void *ctx, const char *host, uint16_t port) {
    stws_tls *t = (stws_tls *)ctx;
    int r;
    if (t->state == 0) {
        r = t->inner.open(t->inner.ctx, host, port);
        if (r != 0) return stws__tr_err(r);
        t->detail[0] = 0;
        /* the SSL context is made once and reset for each connection; a write
           the old one would-blocked on is forgotten with it */
        mbedtls_ssl_session_reset(&t->ssl);
        t->wblocked = 0;
        t->wlen = 0;
        t->wfailed = 0;
        {
            const char *name = t->fixed_name ? t->server_name : host;
            t->ip_host = 0;
#ifndef STWS_NO_SOCKETS
            if (inet_pton(AF_INET, name, t->ip) == 1) {
                t->ip_len = 4;
                t->ip_host = 1;
            } else if (inet_pton(AF_INET6, name, t->ip) == 1) {
                t->ip_len = 16;
                t->ip_host = 1;
            }
#endif
            if (!t->fixed_name) stws__copy(t->server_name, sizeof t->server_name, host);
            /* RFC 6066 §3: no IP literal in SNI; IPs are checked by SAN above */
            if (mbedtls_ssl_set_hostname(&t->ssl, t->ip_host ? NULL : name) != 0)
                return STWS_ERR_TLS;
        }
        mbedtls_ssl_set_bio(&t->ssl, t, stws__tls_bio_send, stws__tls_bio_recv, NULL);
        if (t->insecure)
            stws__log(&t->log, STWS_LOG_WARN,
                      "TLS certificate verification is DISABLED (insecure) for %s", host);
        t->state = 1;
    }
    if (t->state == 1) {
        r = mbedtls_ssl_handshake(&t->ssl);
        if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) return r;
        if (r != 0) return stws__tls_fail(t, r);
        t->state = 2;
    }
    return 0;
}

/* out_left: encrypted bytes mbedTLS holds for the socket (a record it could
   not flush yet); in_left: bytes of an incoming record read so far.  Neither
   has an accessor in 2.28, 3.x or 4.0, so the fields are read directly
   (3.x and 4.0 name them through MBEDTLS_PRIVATE, 2.28 plainly). */
#if defined(MBEDTLS_VERSION_NUMBER) && MBEDTLS_VERSION_NUMBER >= 0x03000000
#define STWS__TLS_OUT_LEFT(t) ((t)->ssl.MBEDTLS_PRIVATE(out_left))
#define STWS__TLS_IN_LEFT(t) ((t)->ssl.MBEDTLS_PRIVATE(in_left))
#else
#define STWS__TLS_OUT_LEFT(t) ((t)->ssl.out_left)
#define STWS__TLS_IN_LEFT(t) ((t)->ssl.in_left)
#endif

/* mbedtls_ssl_write() encrypts min(len, record payload limit) bytes into one
   record and, when the transport would block, keeps that record and returns
   WANT_WRITE/WANT_READ.  Its next call must pass the same length (ssl.h): it
   then only flushes the kept record and returns the length it was GIVEN, in
   2.28 and 3.6 alike (ssl_write_real: "out_left != 0" takes the flush path).
   A caller that offers more the second time (the conn offers all its queued
   output) would be told that bytes were written which never were.  So:
   - each call covers at most one record (we cut len to the payload limit),
     and a would-blocked length is remembered and retried exactly; the
     transport contract makes the caller offer the same bytes first, with
     possibly more behind (stws_transport);
   - the kept record can also leave through another path (an alert the
     read path sends flushes pending output first): then it was written,
     and is reported so rather than encrypted a second time (a close never
     flushes it: stws__tls_close);
   - a record that is not ours (an alert the read path could not flush) is
     flushed with a zero-length write first, so our bytes are not counted
     against it. */
static int stws__tls_send(void *ctx, const unsigned char *buf, size_t len) {
    stws_tls *t = (stws_tls *)ctx;
    int r, max;
    if (t->wblocked) {
        if (len < t->wlen) {
            snprintf(t->detail, sizeof t->detail,
                     "TLS send retried with %lu bytes, fewer than the %lu it would-blocked on",
                     (unsigned long)len, (unsigned long)t->wlen);
            return STWS_ERR_STATE;
        }
        if (STWS__TLS_OUT_LEFT(t) == 0) { /* flushed by another path */
            t->wblocked = 0;
            return (int)t->wlen;
        }
        len = t->wlen;
    } else {
        if (STWS__TLS_OUT_LEFT(t) != 0) {
            r = mbedtls_ssl_write(&t->ssl, buf, 0); /* flush only: returns 0 */
            if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) return r;
            if (r < 0) {
                t->wfailed = 1;
                return stws__tls_fail(t, r);
            }
        }
        max = mbedtls_ssl_get_max_out_record_payload(&t->ssl);
        if (max > 0 && len > (size_t)max) len = (size_t)max;
    }
    r = mbedtls_ssl_write(&t->ssl, buf, len);
    if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
        /* only pending output means a record of ours is kept */
        t->wblocked = STWS__TLS_OUT_LEFT(t) != 0;
        t->wlen = len;
        return r;
    }
    t->wblocked = 0;
    if (r >= 0) return r;
    t->wfailed = 1;
    return stws__tls_fail(t, r);
}

static int stws__tls_recv(void *ctx, unsigned char *buf, size_t len) {
    stws_tls *t = (stws_tls *)ctx;
    int r = mbedtls_ssl_read(&t->ssl, buf, len);
    if (r > 0 || r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) return r;
    if (r == 0) {
        /* mbedtls_ssl_read() returns 0 when the stream ends WITHOUT
           close_notify (2.28 and 3.6 map MBEDTLS_ERR_SSL_CONN_EOF to 0): a
           truncation (RFC 8446 §6.1).  The WebSocket layer decides whether
           it matters (after a closing handshake it does not); the detail
           says what happened, and whether it cut a record. */
        if (STWS__TLS_IN_LEFT(t))
            snprintf(t->detail, sizeof t->detail,
                     "TLS record cut short: the stream ended %lu bytes into a record",
                     (unsigned long)STWS__TLS_IN_LEFT(t));
        else
            stws__copy(t->detail, sizeof t->detail, "TLS stream truncated (no close_notify)");
        return 0;
    }
    if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) return 0;
    if (r <= STWS_ERR_RESOLVE && r >= STWS_ERR_PROXY && STWS__TLS_IN_LEFT(t))
        snprintf(t->detail, sizeof t->detail, "the transport failed %lu bytes into a TLS record",
                 (unsigned long)STWS__TLS_IN_LEFT(t));
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
    if (r == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) return MBEDTLS_ERR_SSL_WANT_READ;
#endif
    if (r == MBEDTLS_ERR_SSL_CONN_EOF) {
        /* the stream ended without close_notify: a truncation (RFC 8446 §6.1) */
        stws__copy(t->detail, sizeof t->detail, "TLS stream truncated (no close_notify)");
        return STWS_ERR_EOF;
    }
    return stws__tls_fail(t, r);
}

/* close_notify (RFC 8446 §6.1, RFC 5246 §7.2.1) says the data before it is
   complete: each side must send one before closing its write side, unless
   it sent an error alert.  But an alert is a record, and records follow
   each other whole in the byte stream: mbedtls_ssl_close_notify() first
   flushes whatever a write left behind, the rest of a record whose write
   failed half way, or a would-blocked record the caller was told was NOT
   written (it offers those bytes again on its next socket).  Completing it
   hands the peer data reported unsent, then the same data again: a
   duplicate.  A half-sent record cannot be withdrawn, so no alert of any
   kind can follow it honestly: after a failed or unfinished write (or any
   output still pending) the stream is aborted like a broken socket, and
   the peer sees a truncation (§6.1: a close without close_notify), which is
   what happened.  Otherwise one best-effort try, never waiting for the
   peer's close_notify (§6.1 and §7.2.1 allow that). */
static void stws__tls_close(void *ctx) {
    stws_tls *t = (stws_tls *)ctx;
    if (t->state == 2 && !t->wfailed && !t->wblocked && STWS__TLS_OUT_LEFT(t) == 0)
        (void)mbedtls_ssl_close_notify(&t->ssl);
    t->inner.close(t->inner.ctx);
    t->state = 0;
    t->wblocked = 0;
    t->wlen = 0;
    t->wfailed = 0;
}

static intptr_t stws__tls_handle(void *ctx) {
    stws_tls *t = (stws_tls *)ctx;
    return t->inner.handle ? t->inner.handle(t->inner.ctx) : -1;
}

/* Decrypted bytes mbedTLS holds: the pump must not sleep on the socket then. */
static size_t stws__tls_pending(void *ctx) {
    stws_tls *t = (stws_tls *)ctx;
    if (t->state != 2) return 0;
    return mbedtls_ssl_get_bytes_avail(&t->ssl) + (size_t)mbedtls_ssl_check_pending(&t->ssl);
}

stws_tls *stws_tls_create(const stws_tls_desc *desc) {
    stws_allocator a;
    stws_tls *t;
    int r;
    if (!desc || !desc->inner.open || !desc->inner.send || !desc->inner.recv) return NULL;
    a = stws__allocator_def(&desc->allocator);
    t = (stws_tls *)stws__alloc(&a, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->alloc = a;
    t->log = stws__logger_def(&desc->logger);
    t->inner = desc->inner;
    t->insecure = desc->insecure;
    if (desc->server_name) {
        stws__copy(t->server_name, sizeof t->server_name, desc->server_name);
        t->fixed_name = 1;
    }
    mbedtls_ssl_init(&t->ssl);
    mbedtls_ssl_config_init(&t->conf);
    mbedtls_x509_crt_init(&t->ca);
#ifdef STWS__TLS_PSA_INIT
    /* before CA parsing and the handshake; never undone here (other users of
       PSA in the process may rely on it: mbedtls_psa_crypto_free is theirs) */
    if ((r = (int)psa_crypto_init()) != 0) {
        stws__log(&t->log, STWS_LOG_ERROR, "TLS: psa_crypto_init failed (%d)", r);
        goto fail;
    }
#endif
#ifndef STWS__PSA_ONLY /* mbedTLS 4's TLS draws from PSA's generator only */
    if (stws__random_init(&a, &desc->random, &t->random, &t->drbg) != 0) {
        stws__log(&t->log, STWS_LOG_ERROR, "TLS: %s", STWS__NO_RANDOM);
        goto fail;
    }
#endif
    if (!t->insecure) {
        if (desc->ca_pem) {
            r = mbedtls_x509_crt_parse(&t->ca, (const unsigned char *)desc->ca_pem,
                                       strlen(desc->ca_pem) + 1);
        } else {
            r = mbedtls_x509_crt_parse_file(&t->ca, desc->ca_file ? desc->ca_file : STWS_SYSTEM_CA_FILE);
        }
        /* a bundle may hold certificates mbedTLS cannot parse (r > 0): the
           others still count; none at all is an error */
        if (r < 0 || !t->ca.raw.p) {
            stws__log(&t->log, STWS_LOG_ERROR, "TLS: cannot load CA certificates from %s (-0x%04X)",
                      desc->ca_pem ? "ca_pem" : desc->ca_file ? desc->ca_file : STWS_SYSTEM_CA_FILE,
                      (unsigned)(r < 0 ? -r : 0));
            goto fail;
        }
    }
    if (mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0)
        goto fail;
#ifndef STWS__PSA_ONLY
    mbedtls_ssl_conf_rng(&t->conf, stws__tls_rng, &t->random);
#endif
    if (t->insecure) {
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_NONE);
    } else {
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
        mbedtls_ssl_conf_verify(&t->conf, stws__tls_verify, t);
    }
    if (mbedtls_ssl_setup(&t->ssl, &t->conf) != 0) goto fail;
    return t;
fail:
    stws_tls_destroy(t);
    return NULL;
}

void stws_tls_destroy(stws_tls *t) {
    stws_allocator a;
    if (!t) return;
    a = t->alloc;
    mbedtls_ssl_free(&t->ssl);
    mbedtls_ssl_config_free(&t->conf);
    mbedtls_x509_crt_free(&t->ca);
    stws__random_free(&a, &t->drbg);
    stws__free(&a, t);
}

stws_transport stws_tls_transport(stws_tls *t) {
    stws_transport tr;
    memset(&tr, 0, sizeof tr);
    tr.open = stws__tls_open;
    tr.send = stws__tls_send;
    tr.recv = stws__tls_recv;
    tr.close = stws__tls_close;
    tr.handle = stws__tls_handle;
    tr.pending = stws__tls_pending;
    tr.ctx = t;
    return tr;
}

const char *stws_tls_error_detail(const stws_tls *t) { return t ? t->detail : ""; }
#endif /* STWS_NO_TLS */

/* ==== connection ========================================================== */

#define STWS__MAX_LIFECYCLE 4

struct stws_conn {
    stws_allocator alloc;
    stws_logger log;
    stws_clock clock;
    stws_random random;
    stws__drbg *drbg;
    stws_conn_event_fn on_event;
    void *user_data;
    int in_callback;            /* on_event is running (inside the step) */
    int doomed;                 /* stws_conn_destroy() was called from it */

    char *url_copy;
    stws_url url;
    char host[256];             /* NUL-terminated for the transports */
    stws_handshake_desc hs;

    stws_transport tr;          /* top of the stack */
#ifndef STWS_NO_SOCKETS
    stws_tcp *tcp;
    stws_proxy *proxy;          /* only ever over our own TCP */
#endif
#ifndef STWS_NO_TLS
    stws_tls *tls;
#endif
    stws_codec *codec;

    stws_conn_state state;
    int want;                   /* stws_poll_flags of the last would-block */
    int transport_open;
    uint64_t deadline;          /* connect or close timer; 0 = none */
    int connect_timeout, close_timeout;

    char key[STWS_HANDSHAKE_KEY_SIZE];
    char *req;
    size_t req_cap, req_len, req_off;

    uint8_t *rx;
    size_t rx_cap, rx_pos, rx_len;
    int rx_more;                /* the last read did not see the stream run dry */
    int tx_blocked;             /* the last write would have blocked */
    /* the socket an external loop registered: see stws_conn_socket_generation */
    intptr_t sock_h;
    unsigned sock_id, sock_gen;

    /* lifecycle events waiting for stws_conn_next_event() */
    stws_conn_event pending[STWS__MAX_LIFECYCLE];
    int npending;
    int close_code;             /* for the final CLOSE event */
    int failed;                 /* we failed the connection (§7.1.7) */
    int peer_closed;            /* the peer's close frame arrived */
    char close_reason[124];
    size_t close_reason_len;
    stws_result last_error;
    int http_status;
    char detail[256];
};

static uint64_t stws__conn_now(const stws_conn *c) { return c->clock.now_ms(c->clock.user_data); }

static void stws__conn_push(stws_conn *c, stws_conn_event_type type, stws_result err, int code, int clean) {
    stws_conn_event *e;
    if (c->npending == STWS__MAX_LIFECYCLE) return;
    e = &c->pending[c->npending++];
    memset(e, 0, sizeof *e);
    e->type = type;
    e->error = err;
    e->close_code = code;
    e->clean = clean;
}

/* Count replacements of the socket behind stws_conn_handle(): the built-in
   TCP makes a new socket per address and attempt, and the OS often gives it
   the number of the one just closed, which an epoll set has forgotten. */
static void stws__conn_track_socket(stws_conn *c) {
    intptr_t h = c->transport_open && c->tr.handle ? c->tr.handle(c->tr.ctx) : -1;
    unsigned id = 0;
#ifndef STWS_NO_SOCKETS
    if (c->tcp) id = c->tcp->gen;
#endif
    if (h != c->sock_h || id != c->sock_id) {
        c->sock_h = h;
        c->sock_id = id;
        c->sock_gen++;
    }
}

static void stws__conn_teardown(stws_conn *c, int clean) {
    size_t unsent = 0;
    (void)stws_codec_output(c->codec, &unsent);
    if (unsent) clean = 0; /* our close frame never left */
    stws__codec_drop_secret(c->codec); /* nor will an auth frame still queued */
    if (!clean && (c->failed || !c->peer_closed)) c->close_code = STWS_CLOSE_ABNORMAL;
    if (c->transport_open) c->tr.close(c->tr.ctx);
    c->transport_open = 0;
    c->state = STWS_CONN_CLOSED;
    c->deadline = 0;
    c->want = 0;
    c->rx_more = c->tx_blocked = 0;
    stws__conn_track_socket(c);
    stws__conn_push(c, STWS_CONN_EVENT_CLOSE, STWS_OK, c->close_code, clean);
}

/* A failure that ends the connection without a closing handshake.  Once per
   connection: a conn that has ended already (its ERROR and CLOSE events may
   still be unread) keeps the reason it ended with. */
static stws_result stws__conn_abort(stws_conn *c, stws_result err, const char *what) {
    if (c->state == STWS_CONN_CLOSED || c->state == STWS_CONN_IDLE) return err;
    c->last_error = err;
    if (!c->detail[0]) {
        const char *sub = ""; /* a layer's own reason: TCP's (address, errno), the
                                 proxy's (escaped there), TLS's */
#ifndef STWS_NO_SOCKETS
        if (err == STWS_ERR_CONNECT && c->tcp) sub = c->tcp->detail;
        if (!sub[0] && c->proxy && err == STWS_ERR_PROXY) sub = stws_proxy_error_detail(c->proxy);
#endif
#ifndef STWS_NO_TLS
        if (!sub[0] && c->tls) sub = stws_tls_error_detail(c->tls);
#endif
        if (sub[0])
            snprintf(c->detail, sizeof c->detail, "%s: %s: %.200s", what, stws_result_string(err), sub);
        else
            snprintf(c->detail, sizeof c->detail, "%s: %s", what, stws_result_string(err));
    }
    stws__log_line(&c->log, STWS_LOG_ERROR, c->detail);
    stws__conn_push(c, STWS_CONN_EVENT_ERROR, err, 0, 0);
    c->close_code = STWS_CLOSE_ABNORMAL;
    stws__conn_teardown(c, 0);
    return err;
}

/* Point the connection at a URL: at create, and when a reconnect hook
   changes it (rare: allocation is fine here).  The request is the same size
   on every connect (the key has a fixed length), so its buffer is made here;
   this also validates the request fields. */
static stws_result stws__conn_set_url(stws_conn *c, const char *url) {
    stws_url u;
    size_t n = strlen(url), need = 0;
    char *copy, *req;
    stws_result r;
    if (c->state != STWS_CONN_IDLE && c->state != STWS_CONN_CLOSED) return STWS_ERR_STATE;
    if (n >= sizeof c->host + STWS_MAX_URL) return STWS_ERR_URL_TOO_LONG;
    copy = (char *)stws__alloc(&c->alloc, n + 1);
    if (!copy) return STWS_ERR_NOMEM;
    memcpy(copy, url, n + 1);
    if ((r = stws_url_parse(copy, &u)) != STWS_OK) goto fail;
    r = STWS_ERR_URL_SCHEME; /* the TLS layer is fixed at create */
    if (c->url_copy && u.secure != c->url.secure) goto fail;
    if ((r = stws_handshake_request(&u, &c->hs, c->key, NULL, 0, &need)) != STWS_ERR_BUFFER_TOO_SMALL)
        goto fail;
    if (need + 1 > c->req_cap) {
        r = STWS_ERR_NOMEM;
        if (!(req = (char *)stws__alloc(&c->alloc, need + 1))) goto fail;
        if (c->req) mbedtls_platform_zeroize(c->req, c->req_cap); /* see stws_conn_destroy */
        stws__free(&c->alloc, c->req);
        c->req = req;
        c->req_cap = need + 1;
    }
    if (c->url_copy) mbedtls_platform_zeroize(c->url_copy, strlen(c->url_copy));
    stws__free(&c->alloc, c->url_copy);
    c->url_copy = copy;
    c->url = u;
    n = STWS__MIN(u.host.len, sizeof c->host - 1); /* <= 253 after stws_url_parse */
    memcpy(c->host, u.host.ptr, n);
    c->host[n] = 0;
    return STWS_OK;
fail:
    mbedtls_platform_zeroize(copy, n);
    stws__free(&c->alloc, copy);
    return r;
}

/* Every default of stws_conn_desc, in one place (the codec's own are in
   stws_codec_create); the hooks get theirs where they are made. */
static stws_conn_desc stws__conn_desc_defaults(const stws_conn_desc *in) {
    stws_conn_desc d = *in;
    if (!d.max_frame_size) d.max_frame_size = STWS_DEFAULT_MAX_FRAME_SIZE;
    if (!d.max_message_size) d.max_message_size = STWS_DEFAULT_MAX_MESSAGE_SIZE;
    if (!d.max_output_size) d.max_output_size = STWS_DEFAULT_MAX_OUTPUT_SIZE;
    if (!d.recv_buffer_size) d.recv_buffer_size = STWS_DEFAULT_RECV_BUFFER_SIZE;
    if (d.recv_buffer_size < 1024) d.recv_buffer_size = 1024;
    if (d.connect_timeout_ms <= 0) d.connect_timeout_ms = STWS_DEFAULT_CONNECT_TIMEOUT_MS;
    if (d.close_timeout_ms <= 0) d.close_timeout_ms = STWS_DEFAULT_CLOSE_TIMEOUT_MS;
    return d;
}

stws_conn *stws_conn_create(const stws_conn_desc *user_desc) {
    stws_conn_desc dd;
    const stws_conn_desc *desc = &dd;
    stws_allocator a;
    stws_logger lg;
    stws_conn *c;
    stws_codec_desc cd;
    stws_result r;
    if (!user_desc) return NULL;
    dd = stws__conn_desc_defaults(user_desc);
    lg = stws__logger_def(&desc->logger);
    if (!desc->url) {
        stws__log(&lg, STWS_LOG_ERROR, "conn: desc.url is required");
        return NULL;
    }
    a = stws__allocator_def(&desc->allocator);
    c = (stws_conn *)stws__alloc(&a, sizeof *c);
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->alloc = a;
    c->log = lg;
    c->on_event = desc->on_event;
    c->user_data = desc->user_data;
    c->clock = desc->clock;
#ifndef STWS_NO_SOCKETS
    if (!c->clock.now_ms) c->clock.now_ms = stws__default_now_ms;
#endif
    if (!c->clock.now_ms) {
        stws__log(&lg, STWS_LOG_ERROR, "conn: STWS_NO_SOCKETS needs a clock hook");
        goto fail;
    }
    c->hs.origin = desc->origin;
    c->hs.subprotocols = desc->subprotocols;
    c->hs.num_subprotocols = desc->num_subprotocols;
    c->hs.headers = desc->headers;
    c->hs.num_headers = desc->num_headers;
    c->rx_cap = desc->recv_buffer_size;
    c->hs.max_response_size = c->rx_cap;
    c->sock_h = -1;
    c->connect_timeout = desc->connect_timeout_ms;
    c->close_timeout = desc->close_timeout_ms;

    memset(c->key, 'A', 24); /* a stand-in of the right length */
    if ((r = stws__conn_set_url(c, desc->url)) != STWS_OK) {
        stws__log(&lg, STWS_LOG_ERROR, "conn: bad URL or request field: %s", stws_result_string(r));
        goto fail;
    }
    c->rx = (uint8_t *)stws__alloc(&a, c->rx_cap);
    if (!c->rx) goto fail;

    if (stws__random_init(&a, &desc->random, &c->random, &c->drbg) != 0) {
        stws__log(&lg, STWS_LOG_ERROR, "conn: %s", STWS__NO_RANDOM);
        goto fail;
    }
    memset(&cd, 0, sizeof cd);
    cd.max_frame_size = desc->max_frame_size;
    cd.max_message_size = desc->max_message_size;
    cd.max_output_size = desc->max_output_size;
    cd.allocator = a;
    cd.random = c->random;
    if (!(c->codec = stws_codec_create(&cd))) goto fail;

    if (desc->transport.open) {
        c->tr = desc->transport;
    } else {
#ifdef STWS_NO_SOCKETS
        stws__log(&lg, STWS_LOG_ERROR, "conn: STWS_NO_SOCKETS needs a transport");
        goto fail;
#else
        stws_tcp_desc td;
        const char *proxy = desc->proxy;
        memset(&td, 0, sizeof td);
        td.resolver = desc->resolver;
        td.allocator = a;
        if (!(c->tcp = stws_tcp_create(&td))) goto fail;
        c->tr = stws_tcp_transport(c->tcp);
        if (!proxy && desc->proxy_from_env) proxy = stws_proxy_from_env(c->url_copy);
        if (proxy) {
            stws_proxy_desc pd;
            memset(&pd, 0, sizeof pd);
            pd.inner = c->tr;
            pd.url = proxy;
            pd.allocator = a;
            if (!(c->proxy = stws_proxy_create(&pd))) {
                stws__log(&lg, STWS_LOG_ERROR, "conn: bad proxy URL");
                goto fail;
            }
            c->tr = stws_proxy_transport(c->proxy);
        }
#endif
    }
    if (c->url.secure && !desc->transport.open) {
#ifdef STWS_NO_TLS
        stws__log(&lg, STWS_LOG_ERROR, "conn: wss:// needs TLS (built with STWS_NO_TLS)");
        goto fail;
#else
        stws_tls_desc tdsc;
        memset(&tdsc, 0, sizeof tdsc);
        tdsc.inner = c->tr;
        tdsc.ca_file = desc->ca_file;
        tdsc.ca_pem = desc->ca_pem;
        tdsc.insecure = desc->insecure;
        tdsc.random = c->random;
        tdsc.allocator = a;
        tdsc.logger = lg;
        if (!(c->tls = stws_tls_create(&tdsc))) goto fail;
        c->tr = stws_tls_transport(c->tls);
#endif
    }
    c->state = STWS_CONN_IDLE;
    return c;
fail:
    stws_conn_destroy(c);
    return NULL;
}

void stws_conn_destroy(stws_conn *c) {
    stws_allocator a;
    if (!c) return;
    if (c->in_callback) { /* the step frees it once the callback returns */
        c->doomed = 1;
        return;
    }
    a = c->alloc;
    if (c->transport_open) c->tr.close(c->tr.ctx);
#ifndef STWS_NO_TLS
    stws_tls_destroy(c->tls);
#endif
#ifndef STWS_NO_SOCKETS
    stws_proxy_destroy(c->proxy);
    stws_tcp_destroy(c->tcp);
#endif
    stws_codec_destroy(c->codec);
    stws__random_free(&a, &c->drbg);
    /* the request may carry the user's headers (Authorization...), the URL
       a query with credentials: no secret left behind */
    if (c->req) mbedtls_platform_zeroize(c->req, c->req_cap);
    if (c->url_copy) mbedtls_platform_zeroize(c->url_copy, strlen(c->url_copy));
    stws__free(&a, c->req);
    stws__free(&a, c->rx);
    stws__free(&a, c->url_copy);
    stws__free(&a, c);
}

stws_result stws_conn_connect(stws_conn *c) {
    stws_result r;
    if (!c) return STWS_ERR_INVALID_ARG;
    if (c->state != STWS_CONN_IDLE && c->state != STWS_CONN_CLOSED) return STWS_ERR_STATE;
    stws_codec_reset(c->codec);
    c->rx_pos = c->rx_len = 0;
    c->rx_more = c->tx_blocked = 0;
    c->req_off = 0;
    c->failed = 0;
    c->peer_closed = 0;
    c->close_code = 0;
    c->close_reason_len = 0;
    c->last_error = STWS_OK;
    c->http_status = 0;
    c->detail[0] = 0;
#ifndef STWS_NO_TLS
    if (c->tls) c->tls->detail[0] = 0; /* no reason left from an older attempt */
#endif
#ifndef STWS_NO_SOCKETS
    if (c->tcp) c->tcp->detail[0] = 0;
#endif
    c->npending = 0;
    /* §4.1: a fresh random key for every opening handshake */
    if ((r = stws_handshake_key(&c->random, c->key)) != STWS_OK) return r;
    if ((r = stws_handshake_request(&c->url, &c->hs, c->key, c->req, c->req_cap, &c->req_len)) != STWS_OK)
        return r;
    c->state = STWS_CONN_CONNECTING;
    c->deadline = stws__conn_now(c) + (uint64_t)c->connect_timeout;
    c->transport_open = 1;
    c->want = STWS_POLL_WRITE;
    return STWS_OK;
}

/* w from the transport is a would-block: remember which way to poll (added
   to, or instead of, what is already wanted).  0 if w is not one. */
static int stws__conn_would_block(stws_conn *c, int w, int add) {
    int f;
    if (w == STWS_WANT_WRITE) f = STWS_POLL_WRITE;
    else if (w == STWS_WANT_READ) f = STWS_POLL_READ;
    else return 0;
    c->want = add ? c->want | f : f;
    return 1;
}

/* Write queued codec output until it is gone or the transport would block. */
static stws_result stws__conn_flush(stws_conn *c) {
    for (;;) {
        size_t n;
        const uint8_t *out = stws_codec_output(c->codec, &n);
        int w;
        if (!n) return STWS_OK;
        w = c->tr.send(c->tr.ctx, out, n);
        if (w > 0) {
            stws_codec_output_consumed(c->codec, (size_t)w);
            c->tx_blocked = 0;
            continue;
        }
        if (stws__conn_would_block(c, w, 1)) {
            c->tx_blocked = 1; /* the socket will say when it can take more */
            return STWS_OK;
        }
        return (stws_result)stws__tr_err(w ? w : STWS_ERR_IO);
    }
}

/* A read returned n of the asked bytes: may the stream hold more?  An
   edge-triggered loop gets no new edge for what is left, so
   stws_conn_timeout() says 0 until a read comes up short.  A short read
   empties a byte stream (recv takes what is queued, up to len), but the
   built-in TLS reads one record at a time and leaves the next ones in the
   socket: over it only a would-block proves the stream dry. */
static void stws__conn_more(stws_conn *c, size_t n, size_t asked) {
    c->rx_more = n >= asked;
#ifndef STWS_NO_TLS
    if (c->tls && c->tr.ctx == (void *)c->tls) c->rx_more = 1;
#endif
}

static stws_result stws__conn_handshake(stws_conn *c) {
    int w;
    stws_handshake_response resp;
    stws_result r;
    while (c->req_off < c->req_len) {
        w = c->tr.send(c->tr.ctx, (const unsigned char *)c->req + c->req_off, c->req_len - c->req_off);
        if (stws__conn_would_block(c, w, 0)) return STWS_OK;
        if (w <= 0) return stws__conn_abort(c, (stws_result)stws__tr_err(w ? w : STWS_ERR_IO), "upgrade request");
        c->req_off += (size_t)w;
    }
    for (;;) {
        if (c->rx_len == c->rx_cap)
            return stws__conn_abort(c, STWS_ERR_HANDSHAKE_TOO_BIG, "upgrade response");
        w = c->tr.recv(c->tr.ctx, c->rx + c->rx_len, c->rx_cap - c->rx_len);
        if (stws__conn_would_block(c, w, 0)) return STWS_OK;
        if (w == 0) return stws__conn_abort(c, STWS_ERR_EOF, "upgrade response");
        if (w < 0) return stws__conn_abort(c, (stws_result)stws__tr_err(w), "upgrade response");
        c->rx_len += (size_t)w;
        stws__conn_more(c, (size_t)w, c->rx_cap - (c->rx_len - (size_t)w)); /* frames may follow */
        r = stws_handshake_response_parse((const char *)c->rx, c->rx_len, c->key, &c->hs, &resp);
        if (r == STWS_INCOMPLETE) continue;
        if (r != STWS_OK) {
            c->http_status = resp.status;
            if (r == STWS_ERR_HANDSHAKE_STATUS) {
                /* the server's reason phrase and Location, escaped: the
                   parser lets tabs and obs-text (8-bit CSI...) through */
                const char *sl = (const char *)c->rx, *cr = (const char *)memchr(sl, '\r', c->rx_len);
                char why[64], loc[150];
                size_t wn = cr && cr - sl > 13 ? (size_t)(cr - sl) - 13 : 0;
                stws__copy_safe(why, sizeof why, sl + 13, wn);
                stws__copy_safe(loc, sizeof loc, resp.location.ptr, resp.location.len);
                snprintf(c->detail, sizeof c->detail, "upgrade refused: HTTP %d%s%s%s%s", resp.status,
                         why[0] ? " " : "", why, loc[0] ? ", Location: " : "", loc);
            }
            return stws__conn_abort(c, r, "upgrade response");
        }
        /* bytes after the header block are the first frames (§4.1) */
        c->http_status = resp.status;
        c->rx_len -= resp.header_size;
        memmove(c->rx, c->rx + resp.header_size, c->rx_len);
        c->rx_pos = 0;
        c->state = STWS_CONN_OPEN;
        c->deadline = 0;
        c->want = STWS_POLL_READ;
        stws__conn_push(c, STWS_CONN_EVENT_OPEN, STWS_OK, 0, 0);
        return STWS_OK;
    }
}

/* Read once into the receive buffer, if it has been fully parsed. */
static stws_result stws__conn_read(stws_conn *c) {
    int w;
    if (c->failed) c->rx_pos = c->rx_len; /* draining after a failure: input is ignored */
    if (c->rx_pos < c->rx_len) return STWS_OK;
    c->rx_pos = c->rx_len = 0;
    w = c->tr.recv(c->tr.ctx, c->rx, c->rx_cap);
    if (w > 0) {
        c->rx_len = (size_t)w;
        stws__conn_more(c, (size_t)w, c->rx_cap);
        return STWS_OK;
    }
    c->rx_more = 0;
    if (stws__conn_would_block(c, w, 1)) return STWS_OK;
    if (w == 0) {
        stws_codec_state cs = stws_codec_get_state(c->codec);
        /* §7.1.1: after the closing handshake the server closes TCP first */
        if (cs == STWS_CODEC_CLOSED) {
            stws__conn_teardown(c, 1);
            return STWS_OK;
        }
        if (c->failed) {
            stws__conn_teardown(c, 0);
            return STWS_OK;
        }
        return stws__conn_abort(c, STWS_ERR_EOF, "receive");
    }
    if (c->failed || stws_codec_get_state(c->codec) == STWS_CODEC_CLOSED) {
        stws__conn_teardown(c, stws_codec_get_state(c->codec) == STWS_CODEC_CLOSED && !c->failed);
        return STWS_OK;
    }
    return stws__conn_abort(c, (stws_result)stws__tr_err(w), "receive");
}

stws_result stws_conn_step(stws_conn *c) {
    stws_result r = STWS_OK;
    uint64_t now;
    int w;
    if (!c) return STWS_ERR_INVALID_ARG;
    if (c->in_callback) return STWS_ERR_STATE; /* no re-entry from on_event */
    now = stws__conn_now(c);
    switch (c->state) {
    case STWS_CONN_IDLE:
    case STWS_CONN_CLOSED:
        break;
    case STWS_CONN_CONNECTING:
        w = c->tr.open(c->tr.ctx, c->host, c->url.port);
        if (stws__conn_would_block(c, w, 0)) break;
        if (w != 0) {
            r = stws__conn_abort(c, (stws_result)stws__tr_err(w), "connect");
            break;
        }
        c->state = STWS_CONN_HANDSHAKE;
        /* fall through */
    case STWS_CONN_HANDSHAKE:
        r = stws__conn_handshake(c);
        break;
    case STWS_CONN_OPEN:
    case STWS_CONN_CLOSING:
        c->want = STWS_POLL_READ;
        if ((r = stws__conn_flush(c)) != STWS_OK) {
            r = stws__conn_abort(c, r, "send");
            break;
        }
        r = stws__conn_read(c);
        break;
    }
    if (c->deadline && c->state != STWS_CONN_CLOSED && now >= c->deadline) {
        if (c->state == STWS_CONN_CLOSING) {
            /* the peer did not finish the closing handshake in time */
            int clean = stws_codec_get_state(c->codec) == STWS_CODEC_CLOSED && !c->failed;
            if (!clean && !c->failed) c->close_code = STWS_CLOSE_ABNORMAL;
            stws__conn_teardown(c, clean);
        } else {
            r = stws__conn_abort(c, STWS_ERR_TIMEOUT,
                                 c->state == STWS_CONN_CONNECTING ? "connect" : "upgrade");
        }
    }
    stws__conn_track_socket(c);
    if (c->on_event) {
        stws_conn_event ev;
        c->in_callback = 1;
        while (!c->doomed && stws_conn_next_event(c, &ev)) c->on_event(c, &ev, c->user_data);
        c->in_callback = 0;
        if (c->doomed) {
            stws_conn_destroy(c);
            return STWS_ERR_CLOSED;
        }
    }
    return r;
}

int stws_conn_next_event(stws_conn *c, stws_conn_event *ev) {
    memset(ev, 0, sizeof *ev);
    if (!c) return 0;
    /* OPEN comes before the frames that arrived with it */
    if (c->npending && (c->pending[0].type == STWS_CONN_EVENT_OPEN || c->rx_pos >= c->rx_len ||
                        c->state == STWS_CONN_CLOSED)) {
        *ev = c->pending[0];
        if (ev->type == STWS_CONN_EVENT_CLOSE) {
            ev->data = (const uint8_t *)c->close_reason;
            ev->len = c->close_reason_len;
        }
        memmove(c->pending, c->pending + 1, (size_t)(c->npending - 1) * sizeof *c->pending);
        c->npending--;
        return 1;
    }
    while ((c->state == STWS_CONN_OPEN || c->state == STWS_CONN_CLOSING) && c->rx_pos < c->rx_len) {
        stws_codec_event ce;
        size_t used = 0;
        stws_result r;
        if (c->failed) { /* draining after a failure: input is ignored */
            c->rx_pos = c->rx_len;
            break;
        }
        ce.close_code = STWS_CLOSE_PROTOCOL_ERROR; /* read on errors; the parse sets it on
                                                      all but its argument check */
        r = stws_codec_parse(c->codec, c->rx + c->rx_pos, c->rx_len - c->rx_pos, &used, &ce);
        c->rx_pos += used;
        if (r != STWS_OK) {
            /* §7.1.7: fail the connection; the close frame is queued, and we
               keep reading until the server closes or the timer fires */
            c->failed = 1;
            c->last_error = r;
            c->close_code = ce.close_code;
            snprintf(c->detail, sizeof c->detail, "protocol error: %s (sent close %d)",
                     stws_result_string(r), ce.close_code);
            stws__log_line(&c->log, STWS_LOG_ERROR, c->detail);
            c->state = STWS_CONN_CLOSING;
            c->deadline = stws__conn_now(c) + (uint64_t)c->close_timeout;
            c->rx_pos = c->rx_len;
            ev->type = STWS_CONN_EVENT_ERROR;
            ev->error = r;
            ev->close_code = ce.close_code;
            return 1;
        }
        switch (ce.type) {
        case STWS_CODEC_EVENT_NONE: continue;
        case STWS_CODEC_EVENT_MESSAGE: ev->type = STWS_CONN_EVENT_MESSAGE; break;
        case STWS_CODEC_EVENT_PING: ev->type = STWS_CONN_EVENT_PING; break;
        case STWS_CODEC_EVENT_PONG: ev->type = STWS_CONN_EVENT_PONG; break;
        case STWS_CODEC_EVENT_CLOSE:
            /* the reply is queued; the CLOSE event comes when TCP closes */
            c->close_code = ce.close_code;
            c->peer_closed = 1;
            c->close_reason_len = STWS__MIN(ce.len, sizeof c->close_reason);
            if (ce.len) memcpy(c->close_reason, ce.data, c->close_reason_len);
            if (c->state == STWS_CONN_OPEN) c->deadline = stws__conn_now(c) + (uint64_t)c->close_timeout;
            c->state = STWS_CONN_CLOSING;
            continue;
        case STWS_CODEC_EVENT_ERROR: continue; /* not returned with STWS_OK */
        }
        ev->opcode = ce.opcode;
        ev->data = ce.data;
        ev->len = ce.len;
        return 1;
    }
    if (c->npending) return stws_conn_next_event(c, ev);
    return 0;
}

int stws_conn_timeout(const stws_conn *c) {
    if (!c) return -1;
    if (c->npending) return 0;
    if (c->state == STWS_CONN_OPEN || c->state == STWS_CONN_CLOSING) {
        size_t out = 0;
        if (!c->failed && c->rx_pos < c->rx_len) return 0; /* received, not yet parsed */
        if (c->rx_more) return 0; /* the stream may hold more (edge-triggered loops) */
        (void)stws_codec_output(c->codec, &out);
        if (out && !c->tx_blocked) return 0; /* queued, and the socket never said no */
    }
    if (c->tr.pending && c->transport_open && c->tr.pending(c->tr.ctx)) return 0;
    if (!c->deadline) return -1;
    return stws__ms_until(c->deadline, stws__conn_now(c));
}

intptr_t stws_conn_handle(const stws_conn *c) {
    if (!c || !c->transport_open || !c->tr.handle) return -1;
    return c->tr.handle(c->tr.ctx);
}

int stws_conn_wants(const stws_conn *c) {
    size_t n = 0;
    int w;
    if (!c || !c->transport_open) return STWS_POLL_NONE;
    w = c->want;
    if (c->state == STWS_CONN_OPEN || c->state == STWS_CONN_CLOSING) {
        w |= STWS_POLL_READ;
        (void)stws_codec_output(c->codec, &n);
        if (n) w |= STWS_POLL_WRITE;
    }
    return w;
}

#ifndef STWS_NO_SOCKETS
stws_result stws_conn_poll(stws_conn *c, int timeout_ms) {
    int t;
    intptr_t h;
    if (!c) return STWS_ERR_INVALID_ARG;
    if (c->in_callback) return STWS_ERR_STATE; /* no re-entry from on_event */
    /* the sooner of the library's next work and the caller's limit: a
       negative timeout_ms drops the caller's limit, never the timers */
    t = stws__sooner(stws_conn_timeout(c), timeout_ms);
    h = stws_conn_handle(c);
    if (t != 0 && h >= 0) (void)stws__sock_wait((stws__sock)h, stws_conn_wants(c), STWS__NO_SOCK, t);
    return stws_conn_step(c);
}
#endif

stws_result stws_conn_send(stws_conn *c, stws_opcode op, const void *data, size_t len) {
    stws_result r;
    if (!c) return STWS_ERR_INVALID_ARG;
    if (c->state != STWS_CONN_OPEN) return STWS_ERR_STATE;
    r = stws_codec_send(c->codec, op, data, len);
    if (r == STWS_OK) c->want |= STWS_POLL_WRITE;
    return r;
}

size_t stws_conn_buffered(const stws_conn *c) {
    size_t n = 0;
    if (c) (void)stws_codec_output(c->codec, &n);
    return n;
}

stws_result stws_conn_close(stws_conn *c, int code, const char *reason) {
    stws_result r;
    if (!c) return STWS_ERR_INVALID_ARG;
    switch (c->state) {
    case STWS_CONN_IDLE:
    case STWS_CONN_CLOSED:
        return STWS_ERR_STATE;
    case STWS_CONN_CONNECTING:
    case STWS_CONN_HANDSHAKE:
        c->close_code = STWS_CLOSE_ABNORMAL;
        stws__conn_teardown(c, 0);
        return STWS_OK;
    case STWS_CONN_CLOSING:
        return STWS_OK;
    case STWS_CONN_OPEN:
        break;
    }
    r = stws_codec_close(c->codec, code, reason, reason ? strlen(reason) : 0);
    if (r != STWS_OK) return r;
    c->state = STWS_CONN_CLOSING;
    c->close_code = code ? code : STWS_CLOSE_NO_STATUS;
    c->deadline = stws__conn_now(c) + (uint64_t)c->close_timeout;
    c->want |= STWS_POLL_WRITE;
    return STWS_OK;
}

stws_conn_state stws_conn_get_state(const stws_conn *c) { return c ? c->state : STWS_CONN_CLOSED; }
int stws_conn_http_status(const stws_conn *c) { return c ? c->http_status : 0; }
const char *stws_conn_error_detail(const stws_conn *c) { return c ? c->detail : ""; }
uint64_t stws_conn_bytes_written(const stws_conn *c) { return c ? c->codec->out_total : 0; }
int stws_conn_peer_closed(const stws_conn *c) { return c ? c->peer_closed : 0; }

stws_result stws_conn_send_secret(stws_conn *c, stws_opcode opcode, const void *data, size_t len) {
    size_t before = stws_conn_buffered(c);
    stws_result r = stws_conn_send(c, opcode, data, len);
    if (r == STWS_OK) stws__codec_secret(c->codec, stws_conn_buffered(c) - before);
    return r;
}

stws_result stws_conn_abort(stws_conn *c, stws_result result, const char *why) {
    if (!c || result >= 0) return STWS_ERR_INVALID_ARG;
    if (c->state == STWS_CONN_CLOSED || c->state == STWS_CONN_IDLE) return STWS_ERR_STATE;
    (void)stws__conn_abort(c, result, why ? why : "aborted");
    return STWS_OK;
}

stws_result stws_conn_set_url(stws_conn *c, const char *url) {
    if (!c || !url) return STWS_ERR_INVALID_ARG;
    return stws__conn_set_url(c, url);
}
unsigned stws_conn_socket_generation(const stws_conn *c) { return c ? c->sock_gen : 0; }

/* ==== json + jwt ========================================================== */
/* (JSON writer, reader, HS256 JWT minter)

   Reader.  Every text is first checked by stws__json_scan(), one tokenless
   pass of the RFC 8259 grammar that also enforces the limits (nesting,
   token count: it counts what jsmn would make) and finds an event's "type".
   A lazy document (stws_json_doc_init, and a client event by default) is
   never tokenized: a look-up walks the checked text (stws__json_walk),
   skipping the values it does not enter, so it costs about the bytes
   before the value it finds and allocates nothing (tokens pay only for an
   app that looks up many paths of every event: bench/RESULTS.md has the
   break-even).

   stws_json_tokenize() (and a client with tokenize_events) runs jsmn
   (Debian libjsmn-dev, strict mode, parent links) after the pass, into the
   caller's stws_json_tokens, grown to exactly the counted size.  jsmn alone
   is not a validator (even strict it takes `[1 2]`, `{"a" "b"}`, `[1,]`,
   `tru`, `01`, raw control characters in strings, and stops at a NUL), so
   stws__json_check() proves, token by token, that type, start, end and
   parent are what the grammar says and that the count is exact; only then
   are tokens handed out.  Look-ups on tokens use start/end/parent only
   (never jsmn's `size`), check every index and offset they use, and so
   stay in bounds even on tokens a user changed.

   Values (stws_json_value) and cursors (stws_json_iter) carry either an
   offset span of the text (lazy) or a token index; an iteration resumes
   where the last step stopped, so walking N children is linear on both.

   Paths: keys separated by '.', array elements as ".N" or "[N]" ("members.0.id",
   "members[0].id", "[2]" on a top-level array); "" is the whole document.
   A key segment is compared byte for byte with the key's raw text as it
   appears in the JSON, escapes included (a key written "a\u0062" is found
   as "a\u0062", not "ab"); keys holding '.' or '[' cannot be addressed (an
   iteration reaches them).  A digit segment after '.' indexes an array (at
   most 9 digits), or names a key of an object.  With duplicate keys the
   first one wins.  Both kinds of document cut paths with
   stws__json_seg_next(), so they read them alike.

   Internal API for the Stream client (static):
     stws__json_event_parse(text, len, utf8_known, &rec, eager, max_tokens, &doc, &type)
                                            the client's per-message path */

/* jsmn.h is configured by macros at its first inclusion, and this reader
   needs strict mode with parent links (tokens of another layout would be
   misread).  A jsmn.h included earlier in this file without them cannot be
   re-configured: say so plainly. */
#if defined(JSMN_H) && (!defined(JSMN_PARENT_LINKS) || !defined(JSMN_STRICT))
#error "stream_ws.h: jsmn.h was included before the implementation without JSMN_PARENT_LINKS and JSMN_STRICT; define both before that #include, or include jsmn.h after stream_ws.h's implementation"
#endif
#ifndef JSMN_STATIC
#define JSMN_STATIC
#endif
#ifndef JSMN_STRICT
#define JSMN_STRICT
#endif
#ifndef JSMN_PARENT_LINKS
#define JSMN_PARENT_LINKS
#endif
#include <jsmn.h>
#ifndef STWS__PSA_ONLY
#include <mbedtls/md.h>
#endif
#include <limits.h>

/* (and a copy of jsmn.h of another layout: refuse to build) */
typedef char stws__jsmn_has_parent_links[sizeof(jsmntok_t) == 5 * sizeof(int) ? 1 : -1];

/* jsmn walks up the parent chain at every closing bracket, which is
   quadratic in the nesting depth; real events nest a dozen levels. */
#define STWS__JSON_MAX_NESTING 512
#define STWS__JSON_FIRST_TOKENS 64
#define STWS__JSON_BAD ((size_t)-1)

/* ---- RFC 8259 grammar ------------------------------------------------------ */

static size_t stws__json_ws(const char *s, size_t len, size_t p) {
    while (p < len && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r')) p++;
    return p;
}

/* Whitespace is rare in events: test one byte before calling the loop. */
#define STWS__JSON_WS(s, len, p) ((p) < (len) && (unsigned char)(s)[p] <= ' ' ? stws__json_ws(s, len, p) : (p))

static int stws__json_hex(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Four hex digits at s (caller checked the length), or -1. */
static long stws__json_hex4(const char *s) {
    long v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        int h = stws__json_hex((unsigned char)s[i]);
        if (h < 0) return -1;
        v = v << 4 | h;
    }
    return v;
}

#define STWS__ONES UINT64_C(0x0101010101010101)
#define STWS__HIGHS UINT64_C(0x8080808080808080)

/* On little-endian targets byte i of a word loaded with memcpy is bits
   8i..8i+7, so the count of trailing zeros of a byte mask is 8 times the
   index of the first marked byte; elsewhere the bytes are looked at one by
   one (same result, a few more instructions). */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__BYTE_ORDER__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define STWS__LE_CTZ 1
#endif

/* The top bit of each byte of w that is a '"', a '\\' or below 0x20, at
   least in the lowest such byte: for any byte value x and n <= 128,
   (x - n) & ~x has its top bit set in the lowest byte below n, and no borrow
   reaches that byte from the ones under it (those are >= n), so the mask is
   non-zero exactly when some byte matches and its lowest set bit marks the
   first match (bits above it may be false: a borrow).  A byte equal to q is
   a byte of w ^ q below 1. */
static uint64_t stws__json_specials(uint64_t w) {
    uint64_t q = w ^ (STWS__ONES * '"'), b = w ^ (STWS__ONES * '\\');
    return (((q - STWS__ONES) & ~q) | ((b - STWS__ONES) & ~b) | ((w - STWS__ONES * 0x20) & ~w)) &
           STWS__HIGHS;
}

/* §7: the body of a string from p (after the opening quote); returns the
   offset of the closing quote.  Escapes are checked for form only here;
   surrogate pairing is checked when a string is unescaped.  Most of an
   event is string bodies with nothing to look at, so plain runs are skipped
   8 bytes at a time (memcpy: no alignment assumption). */
static size_t stws__json_scan_string(const char *s, size_t len, size_t p) {
    for (;;) {
        unsigned char c;
        while (len - p >= 8) {
            uint64_t w, m;
            memcpy(&w, s + p, 8);
            m = stws__json_specials(w);
            if (m) {
#ifdef STWS__LE_CTZ
                p += (size_t)__builtin_ctzll(m) >> 3; /* the first special byte */
#endif
                break;
            }
            p += 8;
        }
        /* the special byte is within the next 8, or this is the tail */
        while (p < len && (c = (unsigned char)s[p]) >= 0x20 && c != '"' && c != '\\') p++;
        if (p >= len) return STWS__JSON_BAD;
        c = (unsigned char)s[p];
        if (c == '"') return p;
        if (c < 0x20) return STWS__JSON_BAD; /* must be escaped */
        if (len - p < 2) return STWS__JSON_BAD;
        switch (s[p + 1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            p += 2;
            break;
        case 'u':
            if (len - p < 6 || stws__json_hex4(s + p + 2) < 0) return STWS__JSON_BAD;
            p += 6;
            break;
        default:
            return STWS__JSON_BAD;
        }
    }
}

static int stws__json_digit(const char *s, size_t len, size_t p) {
    return p < len && s[p] >= '0' && s[p] <= '9';
}

/* §3 literals and §6 numbers: the end offset of the one starting at p. */
static size_t stws__json_scan_primitive(const char *s, size_t len, size_t p) {
    if (p >= len) return STWS__JSON_BAD;
    switch (s[p]) {
    case 't': return len - p >= 4 && memcmp(s + p, "true", 4) == 0 ? p + 4 : STWS__JSON_BAD;
    case 'f': return len - p >= 5 && memcmp(s + p, "false", 5) == 0 ? p + 5 : STWS__JSON_BAD;
    case 'n': return len - p >= 4 && memcmp(s + p, "null", 4) == 0 ? p + 4 : STWS__JSON_BAD;
    case '-': p++; break;
    default: break;
    }
    if (!stws__json_digit(s, len, p)) return STWS__JSON_BAD;
    if (s[p] == '0') p++;
    else
        while (stws__json_digit(s, len, p)) p++;
    if (p < len && s[p] == '.') {
        p++;
        if (!stws__json_digit(s, len, p)) return STWS__JSON_BAD;
        while (stws__json_digit(s, len, p)) p++;
    }
    if (p < len && (s[p] == 'e' || s[p] == 'E')) {
        p++;
        if (p < len && (s[p] == '+' || s[p] == '-')) p++;
        if (!stws__json_digit(s, len, p)) return STWS__JSON_BAD;
        while (stws__json_digit(s, len, p)) p++;
    }
    return p;
}

/* What the tokenless pass learns about a valid document. */
typedef struct stws__json_info {
    size_t ntokens;      /* jsmn's count: one per value and one per key */
    char root;           /* first byte of the top-level value */
    int type_state;      /* the first key "type" of a top-level object: 0 none,
                            1 its value is a string, -1 it is something else */
    size_t type_start, type_end; /* state 1: the string's body (still escaped) */
} stws__json_info;

/* Is s[0..len) exactly one JSON value (whitespace around it allowed)?  One
   pass, no tokens, no recursion: STWS_OK (info filled), STWS_ERR_JSON, or
   STWS_ERR_JSON_TOO_BIG when nesting passes max_depth (<= 512) or the
   token count passes max_tokens; whichever problem comes first in the text
   is the one reported.  A container counts when its bracket is seen, a
   string or a primitive once it has been scanned, as jsmn counts them.  It
   also finds the event type (PROTOCOL.md §8), so a delivered event needs no
   tokens at all until someone looks a path up.  UTF-8 is the callers'. */
static stws_result stws__json_scan(const char *s, size_t len, size_t max_tokens, int max_depth,
                                   stws__json_info *info) {
    enum { S_VALUE, S_KEY, S_AFTER } st = S_VALUE;
    uint64_t objects[STWS__JSON_MAX_NESTING / 64] = {0}; /* bit d: level d is an object */
    size_t p = STWS__JSON_WS(s, len, 0), e, ntok = 0;
    int depth = 0, want_type = 0;
    memset(info, 0, sizeof *info);
    if (max_depth < 0) max_depth = 0;
    if (max_depth > STWS__JSON_MAX_NESTING) max_depth = STWS__JSON_MAX_NESTING;
    if (p < len) info->root = s[p];
    for (;;) {
        int is_obj;
        char c;
        switch (st) {
        case S_VALUE:
            if (p >= len) return STWS_ERR_JSON;
            c = s[p];
            if (c == '{' || c == '[') {
                if (++ntok > max_tokens || depth >= max_depth) return STWS_ERR_JSON_TOO_BIG;
                if (want_type) info->type_state = -1;
                want_type = 0;
                if (c == '{') objects[depth >> 6] |= (uint64_t)1 << (depth & 63);
                else objects[depth >> 6] &= ~((uint64_t)1 << (depth & 63));
                depth++;
                p = STWS__JSON_WS(s, len, p + 1);
                if (p < len && s[p] == (c == '{' ? '}' : ']')) goto close_container;
                st = c == '{' ? S_KEY : S_VALUE;
                continue;
            }
            if (c == '"') {
                e = stws__json_scan_string(s, len, p + 1);
                if (e == STWS__JSON_BAD) return STWS_ERR_JSON;
                if (want_type) {
                    info->type_state = 1;
                    info->type_start = p + 1;
                    info->type_end = e;
                }
                p = e + 1;
            } else {
                e = stws__json_scan_primitive(s, len, p);
                if (e == STWS__JSON_BAD) return STWS_ERR_JSON;
                if (want_type) info->type_state = -1;
                p = e;
            }
            if (++ntok > max_tokens) return STWS_ERR_JSON_TOO_BIG;
            want_type = 0;
            st = S_AFTER;
            continue;
        case S_KEY:
            if (p >= len || s[p] != '"') return STWS_ERR_JSON;
            e = stws__json_scan_string(s, len, p + 1);
            if (e == STWS__JSON_BAD) return STWS_ERR_JSON;
            if (++ntok > max_tokens) return STWS_ERR_JSON_TOO_BIG;
            /* raw comparison, like path look-ups; the first "type" wins */
            if (depth == 1 && info->type_state == 0 && e - p == 5 && memcmp(s + p + 1, "type", 4) == 0)
                want_type = 1;
            p = STWS__JSON_WS(s, len, e + 1);
            if (p >= len || s[p] != ':') return STWS_ERR_JSON;
            p = STWS__JSON_WS(s, len, p + 1);
            st = S_VALUE;
            continue;
        case S_AFTER:
            p = STWS__JSON_WS(s, len, p);
            if (depth == 0) {
                if (p != len) return STWS_ERR_JSON;
                info->ntokens = ntok;
                return STWS_OK;
            }
            is_obj = (int)((objects[(depth - 1) >> 6] >> ((depth - 1) & 63)) & 1);
            if (p < len && s[p] == ',') {
                p = STWS__JSON_WS(s, len, p + 1);
                st = is_obj ? S_KEY : S_VALUE;
                continue;
            }
            if (p < len && s[p] == (is_obj ? '}' : ']')) goto close_container;
            return STWS_ERR_JSON;
        }
        return STWS_ERR_JSON;
    close_container: /* s[p] closes the innermost container */
        depth--;
        p++;
        st = S_AFTER;
    }
}

/* Does token k say (type, start, end, parent)?  end < 0: not known yet. */
static int stws__json_tok_is(const jsmntok_t *t, int n, int k, jsmntype_t type, size_t start, long end,
                        int parent) {
    if (k < 0 || k >= n) return 0;
    return t[k].type == type && t[k].start >= 0 && (size_t)t[k].start == start &&
           (end < 0 || t[k].end == end) && t[k].parent == parent;
}

/* Do jsmn's tokens t[0..n) describe exactly the JSON value s[0..len)?
   Walks the text with the RFC 8259 grammar and proves, token by token, that
   type, start, end and parent are what the grammar says and that the count
   is exact; the open containers are found through the verified parent
   links.  Iterative, so deep nesting costs no stack. */
static int stws__json_check(const char *s, size_t len, const jsmntok_t *t, int n) {
    enum { S_VALUE, S_KEY, S_AFTER } st = S_VALUE;
    size_t p = STWS__JSON_WS(s, len, 0), e;
    int k = 0;         /* next token */
    int parent = -1;   /* parent token of the next value: container or key */
    int cont = -1;     /* innermost open container token */
    int depth = 0;
    for (;;) {
        int is_obj;
        char c;
        switch (st) {
        case S_VALUE:
            if (p >= len) return 0;
            c = s[p];
            if (c == '{' || c == '[') {
                if (!stws__json_tok_is(t, n, k, c == '{' ? JSMN_OBJECT : JSMN_ARRAY, p, -1, parent))
                    return 0;
                cont = parent = k++;
                depth++;
                p = STWS__JSON_WS(s, len, p + 1);
                if (p < len && s[p] == (c == '{' ? '}' : ']')) goto close_container;
                st = c == '{' ? S_KEY : S_VALUE;
                continue;
            }
            if (c == '"') {
                e = stws__json_scan_string(s, len, p + 1);
                if (e == STWS__JSON_BAD) return 0;
                if (!stws__json_tok_is(t, n, k++, JSMN_STRING, p + 1, (long)e, parent)) return 0;
                p = e + 1;
            } else {
                e = stws__json_scan_primitive(s, len, p);
                if (e == STWS__JSON_BAD) return 0;
                if (!stws__json_tok_is(t, n, k++, JSMN_PRIMITIVE, p, (long)e, parent)) return 0;
                p = e;
            }
            st = S_AFTER;
            continue;
        case S_KEY:
            if (p >= len || s[p] != '"') return 0;
            e = stws__json_scan_string(s, len, p + 1);
            if (e == STWS__JSON_BAD) return 0;
            if (!stws__json_tok_is(t, n, k, JSMN_STRING, p + 1, (long)e, cont)) return 0;
            parent = k++;
            p = STWS__JSON_WS(s, len, e + 1);
            if (p >= len || s[p] != ':') return 0;
            p = STWS__JSON_WS(s, len, p + 1);
            st = S_VALUE;
            continue;
        case S_AFTER:
            p = STWS__JSON_WS(s, len, p);
            if (depth == 0) return p == len && k == n;
            is_obj = t[cont].type == JSMN_OBJECT;
            if (p < len && s[p] == ',') {
                p = STWS__JSON_WS(s, len, p + 1);
                parent = cont;
                st = is_obj ? S_KEY : S_VALUE;
                continue;
            }
            if (p < len && s[p] == (is_obj ? '}' : ']')) goto close_container;
            return 0;
        }
        return 0;
    close_container: /* s[p] closes the innermost container */
        {
            int q;
            if (t[cont].end < 0 || (size_t)t[cont].end != p + 1) return 0;
            q = t[cont].parent; /* verified when cont was opened */
            cont = q >= 0 && t[q].type == JSMN_STRING ? t[q].parent : q;
        }
        depth--;
        p++;
        st = S_AFTER;
    }
}

static int stws__utf8_ok(const char *s, size_t n) {
    uint32_t st = 0;
    return stws_utf8_validate(&st, s, n) == n && st == 0;
}

/* ---- parsing ------------------------------------------------------------------ */

/* What doc->internal says (the public doc keeps one opaque pointer):
     NULL                       made by hand, nothing checked the text:
                                each look-up checks it first (stws__json_kind)
     &stws__json_mark[0]        stws_json_doc_init() checked it: lazy
     &stws__json_mark[1]        a parse refused it: nothing is found
     a stws_json_tokens         whose text_/len_ are the doc's: lazy when
                                count is 0 (the client's record of the event
                                it checked), a token document otherwise.
   A record that has moved on to another text (a doc kept past its event)
   no longer matches, and nothing is found (the text may be gone). */
static const char stws__json_mark[2] = {0, 0};

enum { STWS__DOC_NONE, STWS__DOC_LAZY, STWS__DOC_TOKENS };

/* Room for n tokens (1 <= n <= max_tokens) in tk.  Grows to a power of two
   from 64, never past max_tokens; the old array is kept on failure.  Once
   big enough it is reused, so documents of a size seen before allocate
   nothing. */
static stws_result stws__json_reserve(stws_json_tokens *tk, int n, int max_tokens) {
    stws_allocator al;
    int want = STWS__JSON_FIRST_TOKENS;
    jsmntok_t *nt;
    if (n <= tk->cap && tk->tok) return STWS_OK;
    while (want < n) want = want > INT_MAX / 2 ? INT_MAX : want * 2;
    want = STWS__MIN(want, max_tokens);
    if ((size_t)want > (size_t)-1 / sizeof(jsmntok_t)) return STWS_ERR_NOMEM;
    al = stws__allocator_def(&tk->allocator);
    nt = (jsmntok_t *)stws__alloc(&al, (size_t)want * sizeof(jsmntok_t));
    if (!nt) return STWS_ERR_NOMEM;
    stws__free(&al, tk->tok);
    tk->tok = nt;
    tk->cap = want;
    return STWS_OK;
}

/* Tokenize a document the pass found valid with `count` tokens into t (room
   for count), then prove the tokens (stws__json_check).  Returns count, or
   -1 if jsmn does not agree with the grammar. */
static int stws__json_tokenize(const char *text, size_t len, jsmntok_t *t, int count) {
    size_t p = STWS__JSON_WS(text, len, 0);
    int n;
    if (count < 1 || p >= len) return -1;
    if (text[p] == '{' || text[p] == '[' || text[p] == '"') {
        jsmn_parser jp;
        jsmn_init(&jp);
        n = jsmn_parse(&jp, text, len, t, (unsigned)count);
    } else {
        /* A bare number or literal: jsmn's strict mode wants a delimiter
           after it, which the end of the text is not. */
        size_t e = stws__json_scan_primitive(text, len, p);
        if (e == STWS__JSON_BAD) return -1;
        t[0].type = JSMN_PRIMITIVE;
        t[0].start = (int)p;
        t[0].end = (int)e;
        t[0].size = 0;
        t[0].parent = -1;
        n = 1;
    }
    if (n != count || !stws__json_check(text, len, t, n)) return -1;
    return n;
}

/* The checks every parse makes, in this order: arguments, size, UTF-8, the
   tokenless pass (info filled on STWS_OK). */
static stws_result stws__json_validate(const char *text, size_t len, int utf8_known, int max_tokens,
                                       stws__json_info *info) {
    if ((!text && len) || max_tokens < 1) return STWS_ERR_INVALID_ARG;
    if (len > (size_t)INT_MAX) return STWS_ERR_JSON_TOO_BIG; /* jsmn offsets are int */
    if (!utf8_known && !stws__utf8_ok(text, len)) return STWS_ERR_INVALID_UTF8;
    return stws__json_scan(text, len, (size_t)max_tokens, STWS__JSON_MAX_NESTING, info);
}

static void stws__json_doc_reset(stws_json_doc *doc, const char *text, size_t len) {
    doc->text = text;
    doc->len = len;
    doc->internal = &stws__json_mark[1];
}

stws_result stws_json_doc_init(stws_json_doc *doc, const char *text, size_t len) {
    stws__json_info info;
    stws_result r;
    if (!doc) return STWS_ERR_INVALID_ARG;
    stws__json_doc_reset(doc, text, len);
    r = stws__json_validate(text, len, 0, INT_MAX, &info);
    if (r == STWS_OK) doc->internal = &stws__json_mark[0];
    return r;
}

/* stws_json_tokenize with the client's knowledge: utf8_known (the codec
   checked it, RFC 6455 §8.1) and the pass's info handed back. */
static stws_result stws__json_tokenize_doc(stws_json_tokens *tk, const char *text, size_t len,
                                           int utf8_known, stws_json_doc *doc, stws__json_info *info) {
    stws_result r;
    int n, max = tk->max_tokens > 0 ? tk->max_tokens : INT_MAX;
    stws__json_doc_reset(doc, text, len);
    tk->count = 0;
    tk->text_ = NULL;
    tk->len_ = 0;
    if (tk->cap < 0 || (!tk->tok && tk->cap)) return STWS_ERR_INVALID_ARG;
    r = stws__json_validate(text, len, utf8_known, max, info);
    if (r == STWS_OK) r = stws__json_reserve(tk, (int)info->ntokens, max);
    if (r != STWS_OK) return r;
    n = stws__json_tokenize(text, len, (jsmntok_t *)tk->tok, (int)info->ntokens);
    if (n < 1) return STWS_ERR_JSON;
    tk->count = n;
    tk->text_ = text;
    tk->len_ = len;
    doc->internal = tk;
    return STWS_OK;
}

stws_result stws_json_tokenize(stws_json_tokens *tk, const char *text, size_t len, stws_json_doc *doc) {
    stws__json_info info;
    if (!doc) return STWS_ERR_INVALID_ARG;
    if (!tk) {
        stws__json_doc_reset(doc, text, len);
        return STWS_ERR_INVALID_ARG;
    }
    return stws__json_tokenize_doc(tk, text, len, 0, doc, &info);
}

void stws_json_tokens_free(stws_json_tokens *tk) {
    stws_allocator al;
    if (!tk) return;
    al = stws__allocator_def(&tk->allocator);
    stws__free(&al, tk->tok);
    tk->tok = NULL;
    tk->cap = tk->count = 0;
    tk->text_ = NULL;
    tk->len_ = 0;
}

/* The Stream client's per-message path: the checks of stws_json_doc_init()
   (UTF-8 only when !utf8_known) with max_tokens, and the event's shape
   (PROTOCOL.md §8: an object with a string "type"), in one pass.  Lazy
   (eager == 0): no tokens, rec only records which text was checked
   (rec->count 0); eager: rec tokenizes it.  Whenever the text is valid
   JSON (STWS_OK, STWS_ERR_EVENT_SHAPE) doc is usable (doc->internal = rec);
   on STWS_OK *type is the event type's raw view.  rec must outlive doc. */
static stws_result stws__json_event_parse(const char *text, size_t len, int utf8_known,
                                          stws_json_tokens *rec, int eager, int max_tokens,
                                          stws_json_doc *doc, stws_str *type) {
    stws__json_info info;
    stws_result r;
    if (!doc || !rec) return STWS_ERR_INVALID_ARG;
    stws__json_doc_reset(doc, text, len);
    if (type) {
        type->ptr = NULL;
        type->len = 0;
    }
    rec->text_ = NULL;
    rec->len_ = 0;
    rec->count = 0;
    if (eager) {
        rec->max_tokens = max_tokens;
        if (max_tokens < 1) return STWS_ERR_INVALID_ARG;
        r = stws__json_tokenize_doc(rec, text, len, utf8_known, doc, &info);
        if (r != STWS_OK) return r;
    } else {
        r = stws__json_validate(text, len, utf8_known, max_tokens, &info);
        if (r != STWS_OK) return r;
        rec->text_ = text;
        rec->len_ = len;
        doc->internal = rec; /* valid JSON: look-ups work even when it is no event */
    }
    if (info.root != '{' || info.type_state != 1) return STWS_ERR_EVENT_SHAPE;
    if (type) {
        type->ptr = text + info.type_start;
        type->len = info.type_end - info.type_start;
    }
    return STWS_OK;
}

/* ---- look-ups ---------------------------------------------------------------- */

/* Both kinds of document take one path syntax (section comment): a path is
   cut into segments here, and both apply a segment by the same rule.  A
   "[N]" segment (kind 1) indexes an array; a plain one (kind 2) names a key
   of an object or, when it is 1 to 9 digits, indexes an array. */
typedef struct stws__json_seg {
    int kind;              /* 0 end of the path, 1 "[N]", 2 plain, -1 bad syntax */
    int is_index;          /* kind 1, or kind 2 of 1 to 9 digits: index is set */
    unsigned long index;
    const char *key;       /* kind 2: the segment's bytes, compared raw with keys */
    size_t klen;
} stws__json_seg;

/* The segment of path at *i; *i moves past it. */
static void stws__json_seg_next(const char *path, size_t *i, stws__json_seg *g) {
    size_t k = *i, s;
    memset(g, 0, sizeof *g);
    if (!path[k]) return;
    g->kind = -1;
    if (path[k] == '[') {
        for (s = ++k; path[k] >= '0' && path[k] <= '9'; k++) {
            if (g->index > (unsigned long)INT_MAX / 10) return; /* no array is that long */
            g->index = g->index * 10 + (unsigned long)(path[k] - '0');
        }
        if (k == s || path[k] != ']') return;
        *i = k + 1;
        g->kind = 1;
        g->is_index = 1;
        return;
    }
    if (k > 0) {
        if (path[k] != '.') return; /* "a[0]b" */
        k++;
    }
    g->is_index = 1;
    for (s = k; path[k] && path[k] != '.' && path[k] != '['; k++)
        if (path[k] < '0' || path[k] > '9') g->is_index = 0;
    if (k == s) return; /* empty segment: "a..b", ".a", "a." */
    g->key = path + s;
    g->klen = k - s;
    if (g->klen > 9) g->is_index = 0;
    for (; g->is_index && s < k; s++) g->index = g->index * 10 + (unsigned long)(path[s] - '0');
    *i = k;
    g->kind = 2;
}

/* -- on tokens (stws_json_tokenize, the client, or a record made by hand) -- */

/* Token k of rec if its offsets lie inside the text, else NULL. */
static const jsmntok_t *stws__json_tok(const stws_json_tokens *rec, int k) {
    const jsmntok_t *t;
    if (!rec || !rec->tok || !rec->text_ || k < 0 || k >= rec->count || k >= rec->cap) return NULL;
    t = (const jsmntok_t *)rec->tok + k;
    if (t->start < 0 || t->end < t->start || (size_t)t->end > rec->len_) return NULL;
    if (t->type != JSMN_OBJECT && t->type != JSMN_ARRAY && t->type != JSMN_STRING &&
        t->type != JSMN_PRIMITIVE)
        return NULL;
    return t;
}

/* The first direct child of container c at or after token j (for objects:
   a key), or -1.  Children follow their container in document order, so a
   cursor that resumes after the last child it found visits every token of
   the container once in all. */
static int stws__json_child_from(const stws_json_tokens *rec, int c, int j) {
    const jsmntok_t *ct = stws__json_tok(rec, c), *t;
    if (j <= c) j = c + 1;
    for (; ct && (t = stws__json_tok(rec, j)) != NULL && t->start < ct->end; j++)
        if (t->parent == c) return j;
    return -1;
}

/* The index-th direct child of container c (for objects: the index-th key),
   or -1. */
static int stws__json_child_at(const stws_json_tokens *rec, int c, unsigned long index) {
    int j = stws__json_child_from(rec, c, c + 1);
    while (j >= 0 && index-- > 0) j = stws__json_child_from(rec, c, j + 1);
    return j;
}

/* The value of key (raw text key[0..klen)) in object c, or -1. */
static int stws__json_member(const stws_json_tokens *rec, int c, const char *key, size_t klen) {
    const jsmntok_t *ct = stws__json_tok(rec, c), *t, *v;
    int j;
    if (!ct || ct->type != JSMN_OBJECT) return -1;
    for (j = c + 1; (t = stws__json_tok(rec, j)) != NULL && t->start < ct->end; j++) {
        if (t->parent != c || t->type != JSMN_STRING) continue;
        if ((size_t)(t->end - t->start) == klen && memcmp(rec->text_ + t->start, key, klen) == 0) {
            v = stws__json_tok(rec, j + 1);
            return v && v->parent == j ? j + 1 : -1;
        }
    }
    return -1;
}

/* Token index of path relative to token cur, or -1. */
static int stws__json_path(const stws_json_tokens *rec, int cur, const char *path) {
    size_t i = 0;
    if (!path || !stws__json_tok(rec, cur)) return -1;
    for (;;) {
        const jsmntok_t *ct = stws__json_tok(rec, cur);
        stws__json_seg g;
        stws__json_seg_next(path, &i, &g);
        if (g.kind == 0) return cur;
        if (g.kind < 0 || !ct) return -1;
        if (ct->type == JSMN_ARRAY && g.is_index) cur = stws__json_child_at(rec, cur, g.index);
        else if (ct->type == JSMN_OBJECT && g.kind == 2) cur = stws__json_member(rec, cur, g.key, g.klen);
        else return -1;
        if (cur < 0) return -1;
    }
}

/* -- on text the pass proved valid (a lazy document) --

   Nothing needs checking again, so a look-up only finds its way: it scans
   from the root, compares the keys of the objects on the path and skips
   every value it does not enter (a string to its closing quote; a
   container by counting brackets outside strings; a number or literal to
   its delimiter).  It costs about the bytes before the value it finds,
   against tokenizing once and scanning tokens per look-up (bench/micro.sh
   measures both; bench/RESULTS.md).  The walk is bounds-safe on any text
   (it never reads past len and always moves on), but answers only for
   valid JSON. */

/* The offset past the closing quote of the string whose body starts at p
   (len if there is none).  Keys and most values are short: the first 8
   bytes are looked at in one word.  Past them, memchr finds the next quote
   and the backslashes just before it say whether it ends the string: in a
   valid body a run of backslashes is whole "\\" escapes, plus one if it
   escapes the quote (the byte before the run is no backslash, and no escape
   but "\\" ends with one), so an even run means the end. */
static size_t stws__json_skip_string(const char *s, size_t len, size_t p) {
#ifdef STWS__LE_CTZ
    if (len - p >= 8) {
        uint64_t w, m;
        memcpy(&w, s + p, 8);
        m = stws__json_specials(w); /* '"', '\\' or (only in invalid text) a control byte */
        if (m) {
            size_t q = p + ((size_t)__builtin_ctzll(m) >> 3); /* the first of them */
            if (s[q] == '"') return q + 1;
        }
    }
#endif
    for (;;) {
        const char *q = p < len ? (const char *)memchr(s + p, '"', len - p) : NULL;
        size_t e, k;
        if (!q) return len;
        e = (size_t)(q - s);
        for (k = e; k > p && s[k - 1] == '\\'; k--) {}
        if (((e - k) & 1) == 0) return e + 1;
        p = e + 1;
    }
}

/* The end of the value that starts at p. */
static size_t stws__json_skip_value(const char *s, size_t len, size_t p) {
    size_t depth = 0;
    unsigned char c;
    if (p >= len) return len;
    c = (unsigned char)s[p];
    if (c == '"') return stws__json_skip_string(s, len, p + 1);
    if ((c | 0x20) != '{') { /* a number or a literal: up to a delimiter */
        while (p < len && (c = (unsigned char)s[p]) > ' ' && c != ',' && (c | 0x20) != '}') p++;
        return p;
    }
    for (;;) { /* an object or array: '{' or '[' (c | 0x20 == '{'), '}' or ']' */
        c = (unsigned char)s[p++];
        if (c == '"') p = stws__json_skip_string(s, len, p);
        else if ((c | 0x20) == '{') depth++;
        else if ((c | 0x20) == '}' && --depth == 0) return p;
        if (p >= len) return len;
    }
}

/* Where path leads in s[0..len): 1 and the value's span [*vs, *ve) (quotes
   included), or 0.  Duplicate keys: the first one wins, as on tokens. */
static int stws__json_walk(const char *s, size_t len, const char *path, size_t *vs, size_t *ve) {
    size_t p = STWS__JSON_WS(s, len, 0), i = 0;
    if (!path) return 0;
    for (;;) {
        stws__json_seg g;
        if (p >= len) return 0;
        stws__json_seg_next(path, &i, &g);
        if (g.kind == 0) break;
        if (g.kind < 0) return 0;
        if (s[p] == '[' && g.is_index) {
            unsigned long k;
            p = STWS__JSON_WS(s, len, p + 1);
            if (p >= len || s[p] == ']') return 0;
            for (k = 0; k < g.index; k++) {
                p = stws__json_skip_value(s, len, p);
                p = STWS__JSON_WS(s, len, p);
                if (p >= len || s[p] != ',') return 0;
                p = STWS__JSON_WS(s, len, p + 1);
            }
        } else if (s[p] == '{' && g.kind == 2) {
            for (p = STWS__JSON_WS(s, len, p + 1);; p = STWS__JSON_WS(s, len, p + 1)) {
                size_t ke;
                int hit;
                if (p >= len || s[p] != '"') return 0; /* '}': not there */
                ke = stws__json_skip_string(s, len, p + 1);
                hit = ke - p == g.klen + 2 && memcmp(s + p + 1, g.key, g.klen) == 0;
                p = STWS__JSON_WS(s, len, ke);
                if (p >= len || s[p] != ':') return 0;
                p = STWS__JSON_WS(s, len, p + 1);
                if (hit) break;
                p = stws__json_skip_value(s, len, p);
                p = STWS__JSON_WS(s, len, p);
                if (p >= len || s[p] != ',') return 0;
            }
        } else {
            return 0;
        }
    }
    *vs = p;
    *ve = stws__json_skip_value(s, len, p);
    return 1;
}

/* Append code point cp as UTF-8 (RFC 3629 §3). */
static size_t stws__utf8_put(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* RFC 8259 §7: unescape s[0..n) into buf.  \uD800-\uDBFF must be followed by
   \uDC00-\uDFFF (one code point, §7 / RFC 3629 §3); a lone half is an error.
   Bytes past cap are counted, not written.  The runs between escapes are
   copied whole (most strings have no escape at all). */
static stws_result stws__json_unescape(const char *s, size_t n, char *buf, size_t cap,
                                       size_t *len) {
    size_t i = 0, o = 0;
    for (;;) {
        const char *bs = n > i ? (const char *)memchr(s + i, '\\', n - i) : NULL;
        size_t run = bs ? (size_t)(bs - (s + i)) : n - i;
        char u[4];
        size_t un = 1, k;
        if (run && o < cap) memcpy(buf + o, s + i, STWS__MIN(run, cap - o));
        o += run;
        i += run;
        if (i >= n) break;
        /* s[i] is a backslash */
        if (n - i < 2) return STWS_ERR_JSON;
        switch (s[i + 1]) {
        case '"': case '\\': case '/': u[0] = s[i + 1]; break;
        case 'b': u[0] = '\b'; break;
        case 'f': u[0] = '\f'; break;
        case 'n': u[0] = '\n'; break;
        case 'r': u[0] = '\r'; break;
        case 't': u[0] = '\t'; break;
        case 'u': {
            long cp, lo;
            if (n - i < 6 || (cp = stws__json_hex4(s + i + 2)) < 0) return STWS_ERR_JSON;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return STWS_ERR_JSON; /* lone low half */
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (n - i < 12 || s[i + 6] != '\\' || s[i + 7] != 'u') return STWS_ERR_JSON;
                lo = stws__json_hex4(s + i + 8);
                if (lo < 0xDC00 || lo > 0xDFFF) return STWS_ERR_JSON;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
            un = stws__utf8_put((uint32_t)cp, u);
            i += 4; /* plus the 2 below */
            break;
        }
        default: return STWS_ERR_JSON;
        }
        i += 2;
        for (k = 0; k < un; k++, o++)
            if (o < cap) buf[o] = u[k];
    }
    *len = o;
    if (o >= cap) {
        if (cap) buf[0] = 0;
        return STWS_ERR_BUFFER_TOO_SMALL;
    }
    buf[o] = 0;
    return STWS_OK;
}

/* -- documents and values (both kinds) -- */

/* Which kind doc is (*rec: its tokens when TOKENS).  A doc made by hand
   (internal NULL) is checked here, at every look-up: it works, at the price
   of a pass over the text each time. */
static int stws__json_kind(const stws_json_doc *doc, const stws_json_tokens **rec) {
    const stws_json_tokens *r;
    stws__json_info info;
    *rec = NULL;
    if (!doc || !doc->text) return STWS__DOC_NONE;
    if (!doc->internal)
        return stws__json_validate(doc->text, doc->len, 0, INT_MAX, &info) == STWS_OK ? STWS__DOC_LAZY
                                                                                      : STWS__DOC_NONE;
    if (doc->internal == (const void *)&stws__json_mark[0]) return STWS__DOC_LAZY;
    if (doc->internal == (const void *)&stws__json_mark[1]) return STWS__DOC_NONE;
    r = (const stws_json_tokens *)doc->internal;
    if (r->text_ != doc->text || r->len_ != doc->len) return STWS__DOC_NONE;
    if (r->count == 0) return STWS__DOC_LAZY;
    *rec = r;
    return STWS__DOC_TOKENS;
}

static stws_json_type stws__json_none(stws_json_value *out) {
    memset(out, 0, sizeof *out);
    out->tok = -1;
    return STWS_JSON_NONE;
}

/* The value spanning s[vs, ve) (quotes included) of a lazy document. */
static stws_json_type stws__json_value_span(const char *s, size_t vs, size_t ve, stws_json_value *out) {
    stws_json_type type;
    stws__json_none(out);
    if (ve <= vs) return STWS_JSON_NONE;
    switch (s[vs]) {
    case '{': type = STWS_JSON_OBJECT; break;
    case '[': type = STWS_JSON_ARRAY; break;
    case '"':
        if (ve - vs < 2) return STWS_JSON_NONE;
        type = STWS_JSON_STRING;
        vs++;
        ve--;
        break;
    case 't': case 'f': type = STWS_JSON_BOOL; break;
    case 'n': type = STWS_JSON_NULL; break;
    default: type = STWS_JSON_NUMBER; break;
    }
    out->type = type;
    out->raw.ptr = s + vs;
    out->raw.len = ve - vs;
    return type;
}

/* The value of token k of a token document. */
static stws_json_type stws__json_value_tok(const stws_json_tokens *rec, int k, stws_json_value *out) {
    const jsmntok_t *t = stws__json_tok(rec, k);
    stws_json_type type;
    stws__json_none(out);
    if (!t) return STWS_JSON_NONE;
    switch (t->type) {
    case JSMN_OBJECT: type = STWS_JSON_OBJECT; break;
    case JSMN_ARRAY: type = STWS_JSON_ARRAY; break;
    case JSMN_STRING: type = STWS_JSON_STRING; break;
    case JSMN_PRIMITIVE:
        if (t->end == t->start) return STWS_JSON_NONE;
        switch (rec->text_[t->start]) {
        case 't': case 'f': type = STWS_JSON_BOOL; break;
        case 'n': type = STWS_JSON_NULL; break;
        default: type = STWS_JSON_NUMBER; break;
        }
        break;
    default: return STWS_JSON_NONE;
    }
    out->type = type;
    out->raw.ptr = rec->text_ + t->start;
    out->raw.len = (size_t)(t->end - t->start);
    out->internal = rec;
    out->tok = k;
    return type;
}

/* v's tokens if v is a value of a token document whose tokens still
   describe it, else NULL. */
static const stws_json_tokens *stws__json_vrec(const stws_json_value *v) {
    const stws_json_tokens *rec = (const stws_json_tokens *)v->internal;
    const jsmntok_t *t = stws__json_tok(rec, v->tok);
    return t && rec->text_ + t->start == v->raw.ptr ? rec : NULL;
}

/* The whole text of a lazy value (quotes included). */
static void stws__json_span(const stws_json_value *v, const char **s, size_t *n) {
    int q = v->type == STWS_JSON_STRING;
    *s = v->raw.ptr - q;
    *n = v->raw.len + 2 * (size_t)q;
}

stws_json_type stws_json_get(const stws_json_doc *doc, const char *path, stws_json_value *out) {
    stws_json_value tmp;
    const stws_json_tokens *rec;
    size_t vs, ve;
    if (!out) out = &tmp;
    stws__json_none(out);
    switch (stws__json_kind(doc, &rec)) {
    case STWS__DOC_LAZY:
        if (!stws__json_walk(doc->text, doc->len, path, &vs, &ve)) return STWS_JSON_NONE;
        return stws__json_value_span(doc->text, vs, ve, out);
    case STWS__DOC_TOKENS: return stws__json_value_tok(rec, stws__json_path(rec, 0, path), out);
    default: return STWS_JSON_NONE;
    }
}

stws_json_type stws_json_get_in(const stws_json_value *v, const char *path, stws_json_value *out) {
    stws_json_value tmp, in;
    const char *s;
    size_t n, vs, ve;
    if (!out) out = &tmp;
    if (!v || v->type == STWS_JSON_NONE || !v->raw.ptr) return stws__json_none(out);
    in = *v; /* out may be v */
    stws__json_none(out);
    if (in.internal) {
        const stws_json_tokens *rec = stws__json_vrec(&in);
        return rec ? stws__json_value_tok(rec, stws__json_path(rec, in.tok, path), out) : STWS_JSON_NONE;
    }
    stws__json_span(&in, &s, &n);
    if (!stws__json_walk(s, n, path, &vs, &ve)) return STWS_JSON_NONE;
    return stws__json_value_span(s, vs, ve, out);
}

stws_result stws_json_iter_init(stws_json_iter *it, const stws_json_value *v) {
    if (!it) return STWS_ERR_INVALID_ARG;
    memset(it, 0, sizeof *it);
    it->done_ = 1;
    if (!v || (v->type != STWS_JSON_OBJECT && v->type != STWS_JSON_ARRAY) || !v->raw.ptr)
        return STWS_ERR_JSON_TYPE;
    it->object_ = v->type == STWS_JSON_OBJECT;
    if (v->internal) {
        const stws_json_tokens *rec = stws__json_vrec(v);
        if (!rec) return STWS_ERR_JSON_TYPE;
        it->tokens_ = rec;
        it->parent_ = v->tok;
        it->next_ = v->tok + 1;
    } else {
        it->text_ = v->raw.ptr;
        it->end_ = v->raw.len;
        it->pos_ = STWS__JSON_WS(it->text_, it->end_, 1);
    }
    it->done_ = 0;
    return STWS_OK;
}

static int stws__json_iter_end(stws_json_iter *it) {
    it->done_ = 1;
    return 0;
}

int stws_json_next(stws_json_iter *it, stws_json_value *key, stws_json_value *val) {
    stws_json_value kt, vt;
    const char *s;
    size_t n, p, ke, ve;
    if (!key) key = &kt;
    if (!val) val = &vt;
    stws__json_none(key);
    stws__json_none(val);
    if (!it || it->done_) return 0;
    if (it->tokens_) {
        const stws_json_tokens *rec = (const stws_json_tokens *)it->tokens_;
        int j = stws__json_child_from(rec, it->parent_, it->next_);
        if (j < 0) return stws__json_iter_end(it);
        if (it->object_) {
            const jsmntok_t *v = stws__json_tok(rec, j + 1);
            if (stws__json_value_tok(rec, j, key) != STWS_JSON_STRING || !v || v->parent != j)
                return stws__json_iter_end(it);
            j++;
        }
        if (stws__json_value_tok(rec, j, val) == STWS_JSON_NONE) return stws__json_iter_end(it);
        it->next_ = j + 1;
        return 1;
    }
    /* lazy: text_[pos_] is the next key or element, or the closing bracket */
    s = it->text_;
    n = it->end_;
    p = it->pos_;
    if (p >= n || s[p] == '}' || s[p] == ']') return stws__json_iter_end(it);
    if (it->object_) {
        if (s[p] != '"') return stws__json_iter_end(it);
        ke = stws__json_skip_string(s, n, p + 1);
        if (stws__json_value_span(s, p, ke, key) != STWS_JSON_STRING) return stws__json_iter_end(it);
        p = STWS__JSON_WS(s, n, ke);
        if (p >= n || s[p] != ':') return stws__json_iter_end(it);
        p = STWS__JSON_WS(s, n, p + 1);
    }
    ve = stws__json_skip_value(s, n, p);
    if (stws__json_value_span(s, p, ve, val) == STWS_JSON_NONE) return stws__json_iter_end(it);
    p = STWS__JSON_WS(s, n, ve);
    if (p < n && s[p] == ',') p = STWS__JSON_WS(s, n, p + 1);
    it->pos_ = p;
    return 1;
}

size_t stws_json_len(const stws_json_value *v) {
    stws_json_iter it;
    size_t n = 0;
    if (stws_json_iter_init(&it, v) != STWS_OK) return 0;
    while (stws_json_next(&it, NULL, NULL)) n++;
    return n;
}

stws_json_type stws_json_elem(const stws_json_value *v, size_t i, stws_json_value *out) {
    stws_json_iter it;
    stws_json_value tmp, e;
    if (!out) out = &tmp;
    if (stws_json_iter_init(&it, v) != STWS_OK) return stws__json_none(out);
    while (stws_json_next(&it, NULL, &e))
        if (i-- == 0) {
            *out = e;
            return e.type;
        }
    return stws__json_none(out);
}

/* -- typed readers -- */

stws_result stws_json_value_string(const stws_json_value *v, char *buf, size_t cap, size_t *len) {
    if (!len || (!buf && cap)) return STWS_ERR_INVALID_ARG;
    *len = 0;
    if (cap) buf[0] = 0;
    if (!v || v->type == STWS_JSON_NONE) return STWS_ERR_JSON_PATH;
    if (v->type != STWS_JSON_STRING) return STWS_ERR_JSON_TYPE;
    return stws__json_unescape(v->raw.ptr, v->raw.len, buf, cap, len);
}

/* Only -?digits: a fraction, an exponent or a value outside int64 is
   STWS_ERR_JSON_TYPE (not an int64).  *out is left alone on failure. */
stws_result stws_json_value_int(const stws_json_value *v, int64_t *out) {
    size_t i = 0;
    uint64_t mag = 0, limit;
    int neg;
    if (!out) return STWS_ERR_INVALID_ARG;
    if (!v || v->type == STWS_JSON_NONE) return STWS_ERR_JSON_PATH;
    if (v->type != STWS_JSON_NUMBER) return STWS_ERR_JSON_TYPE;
    neg = v->raw.len > 0 && v->raw.ptr[0] == '-';
    i = (size_t)neg;
    if (i == v->raw.len) return STWS_ERR_JSON_TYPE;
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < v->raw.len; i++) {
        unsigned d;
        if (v->raw.ptr[i] < '0' || v->raw.ptr[i] > '9') return STWS_ERR_JSON_TYPE;
        d = (unsigned)(v->raw.ptr[i] - '0');
        if (mag > (limit - d) / 10) return STWS_ERR_JSON_TYPE;
        mag = mag * 10 + d;
    }
    if (!neg) *out = (int64_t)mag;
    else if (mag == (uint64_t)INT64_MAX + 1) *out = INT64_MIN;
    else *out = -(int64_t)mag;
    return STWS_OK;
}

/* Exact comparison for the double reader: m * 10^e10 against h * 2^e2 in
   integers of up to 64 * 32 bits (m < 2^64, |e10| <= 362, h < 2^55 and
   |e2| <= 1100 need at most some 1700).  -1, 0 or 1. */
#define STWS__BIG_LIMBS 64
typedef struct stws__big {
    uint32_t d[STWS__BIG_LIMBS]; /* little-endian limbs */
    int n;
} stws__big;

static void stws__json_big_set(stws__big *b, uint64_t v) {
    b->n = 0;
    while (v) {
        b->d[b->n++] = (uint32_t)v;
        v >>= 32;
    }
}

static void stws__json_big_mul(stws__big *b, uint32_t k) {
    uint64_t carry = 0;
    int i;
    for (i = 0; i < b->n; i++) {
        uint64_t t = (uint64_t)b->d[i] * k + carry;
        b->d[i] = (uint32_t)t;
        carry = t >> 32;
    }
    if (carry && b->n < STWS__BIG_LIMBS) b->d[b->n++] = (uint32_t)carry;
}

static void stws__json_big_pow5(stws__big *b, long k) {
    for (; k >= 13; k -= 13) stws__json_big_mul(b, 1220703125u); /* 5^13 */
    for (; k > 0; k--) stws__json_big_mul(b, 5);
}

static void stws__json_big_shl(stws__big *b, long bits) {
    int limbs = (int)(bits / 32), sh = (int)(bits % 32), i;
    if (!b->n || bits <= 0) return;
    if (b->n + limbs + 1 > STWS__BIG_LIMBS) limbs = STWS__BIG_LIMBS - b->n - 1; /* cannot happen */
    b->d[b->n + limbs] = 0;
    for (i = b->n - 1; i >= 0; i--) {
        uint64_t w = (uint64_t)b->d[i] << sh;
        b->d[i + limbs + 1] |= (uint32_t)(w >> 32);
        b->d[i + limbs] = (uint32_t)w;
    }
    for (i = 0; i < limbs; i++) b->d[i] = 0;
    b->n += limbs + 1;
    while (b->n && !b->d[b->n - 1]) b->n--;
}

static int stws__json_big_cmp(const stws__big *a, const stws__big *b) {
    int i;
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    for (i = a->n - 1; i >= 0; i--)
        if (a->d[i] != b->d[i]) return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

static int stws__json_dec_cmp(uint64_t m, long e10, uint64_t h, long e2) {
    stws__big a, b;
    long a2 = e10 > 0 ? e10 : 0, b2 = (e10 < 0 ? -e10 : 0) + e2, low;
    stws__json_big_set(&a, m);
    stws__json_big_set(&b, h);
    if (e10 > 0) stws__json_big_pow5(&a, e10);
    else stws__json_big_pow5(&b, -e10);
    low = a2 < b2 ? a2 : b2;
    stws__json_big_shl(&a, a2 - low);
    stws__json_big_shl(&b, b2 - low);
    return stws__json_big_cmp(&a, &b);
}

/* x (m * 10^e10, or strictly between that and (m + 1) * 10^e10 when digits
   were dropped) against h * 2^e2: -1, 0, 1, or 2 when that cannot tell. */
static int stws__json_dec_side(uint64_t m, int dropped, long e10, uint64_t h, long e2) {
    int lo = stws__json_dec_cmp(m, e10, h, e2);
    if (!dropped) return lo;
    if (lo >= 0) return 1;
    if (m == UINT64_MAX) return 2;
    return stws__json_dec_cmp(m + 1, e10, h, e2) <= 0 ? -1 : 2;
}

/* Round d (positive, finite, within an ulp or so of x) to the double
   nearest x, ties to even: compare x with the halfway points around d. */
static double stws__json_dec_correct(double d, uint64_t m, int dropped, long e10) {
    int k;
    for (k = 0; k < 4; k++) {
        uint64_t bits, f, M;
        long E;
        int ef, c;
        memcpy(&bits, &d, 8);
        ef = (int)(bits >> 52);
        f = bits & ((UINT64_C(1) << 52) - 1);
        if (ef == 0x7FF) return d;
        M = ef ? f | (UINT64_C(1) << 52) : f;
        E = ef ? ef - 1075 : -1074;
        c = stws__json_dec_side(m, dropped, e10, 2 * M + 1, E - 1); /* halfway above */
        if (c == 2) return d;
        if (c > 0 || (c == 0 && (M & 1))) {
            bits++;
            memcpy(&d, &bits, 8);
            continue;
        }
        if (M == 0) return d;
        if (f == 0 && ef > 1) c = stws__json_dec_side(m, dropped, e10, 4 * M - 1, E - 2); /* closer below */
        else c = stws__json_dec_side(m, dropped, e10, 2 * M - 1, E - 1);
        if (c == 2) return d;
        if (c < 0 || (c == 0 && (M & 1))) {
            bits--;
            memcpy(&d, &bits, 8);
            continue;
        }
        return d;
    }
    return d;
}

/* RFC 8259 §6 number text (already checked) to the nearest double, without
   strtod (whose decimal point is the C locale's).  The first 19
   significant digits go into a uint64 m and the rest only shift the decimal
   exponent.  When m <= 2^53 and no digit was dropped, m and 10^|e| <= 10^22
   are exact doubles and one multiplication or division rounds once:
   correctly rounded (Clinger's fast path), which covers nearly every number
   an event carries.  Otherwise the scaling runs in long double (an
   estimate within an ulp or so) and stws__json_dec_correct() settles the last
   bit by comparing the decimal exactly, in big integers, with the halfway
   points around it: correctly rounded, ties to even.  The one exception:
   past 19 significant digits the rest are only known to be non-zero, so a
   halfway point inside that last-digit interval (some 1 in 2000 of such
   inputs) keeps the estimate.  0: not finite. */
static int stws__json_to_double(const char *s, size_t n, double *out) {
    static const double p10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    static const long double b10[9] = {1e1L, 1e2L, 1e4L, 1e8L, 1e16L, 1e32L, 1e64L, 1e128L, 1e256L};
    size_t i = 0;
    uint64_t m = 0;
    int nd = 0, neg = 0, dropped = 0, k;
    long e10 = 0, ex = 0;
    double d;
    long double ld;
    if (i < n && s[i] == '-') {
        neg = 1;
        i++;
    }
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (nd < 19) {
            m = m * 10 + (uint64_t)(s[i] - '0');
            if (m) nd++;
        } else {
            e10++;
            dropped |= s[i] != '0';
        }
    }
    if (i < n && s[i] == '.')
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            if (nd < 19) {
                m = m * 10 + (uint64_t)(s[i] - '0');
                if (m) nd++;
                e10--;
            } else {
                dropped |= s[i] != '0';
            }
        }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            if (ex < 100000) ex = ex * 10 + (s[i] - '0');
        e10 += eneg ? -ex : ex;
    }
    if (m == 0) {
        *out = neg ? -0.0 : 0.0;
        return 1;
    }
    if (!dropped && m <= (UINT64_C(1) << 53)) {
        if (e10 >= 0 && e10 <= 22) {
            d = (double)m * p10[e10];
            *out = neg ? -d : d;
            return 1;
        }
        if (e10 < 0 && e10 >= -22) {
            d = (double)m / p10[-e10];
            *out = neg ? -d : d;
            return 1;
        }
    }
    if (e10 + nd - 1 > 309) return 0;     /* at least 1e310 */
    if (e10 + nd - 1 < -343) {            /* below half the smallest subnormal */
        *out = neg ? -0.0 : 0.0;
        return 1;
    }
    ld = (long double)m;
    ex = e10 < 0 ? -e10 : e10;
    for (k = 0; ex; k++, ex >>= 1)
        if (ex & 1) ld = e10 < 0 ? ld / b10[k] : ld * b10[k];
    d = (double)ld;
    if (d - d != 0.0) return 0; /* infinite */
    if (d == 0.0) d = 4.9406564584124654e-324; /* the estimate underflowed: start at the least */
    d = stws__json_dec_correct(d, m, dropped, e10);
    if (d - d != 0.0) return 0;
    *out = neg ? -d : d;
    return 1;
}

stws_result stws_json_value_double(const stws_json_value *v, double *out) {
    if (!out) return STWS_ERR_INVALID_ARG;
    if (!v || v->type == STWS_JSON_NONE) return STWS_ERR_JSON_PATH;
    if (v->type != STWS_JSON_NUMBER) return STWS_ERR_JSON_TYPE;
    return stws__json_to_double(v->raw.ptr, v->raw.len, out) ? STWS_OK : STWS_ERR_JSON_TYPE;
}

stws_result stws_json_value_bool(const stws_json_value *v, int *out) {
    if (!out) return STWS_ERR_INVALID_ARG;
    if (!v || v->type == STWS_JSON_NONE) return STWS_ERR_JSON_PATH;
    if (v->type != STWS_JSON_BOOL) return STWS_ERR_JSON_TYPE;
    if (v->raw.len == 4 && memcmp(v->raw.ptr, "true", 4) == 0) *out = 1;
    else if (v->raw.len == 5 && memcmp(v->raw.ptr, "false", 5) == 0) *out = 0;
    else return STWS_ERR_JSON_TYPE;
    return STWS_OK;
}

stws_json_type stws_json_find(const stws_json_doc *doc, const char *path, stws_str *out) {
    stws_json_value v;
    stws_json_get(doc, path, &v);
    if (out) *out = v.raw;
    return v.type;
}

stws_result stws_json_string_at(const stws_json_doc *doc, const char *path, char *buf, size_t cap,
                                size_t *len) {
    stws_json_value v;
    if (!len || (!buf && cap)) return STWS_ERR_INVALID_ARG;
    stws_json_get(doc, path, &v);
    return stws_json_value_string(&v, buf, cap, len);
}

stws_result stws_json_int_at(const stws_json_doc *doc, const char *path, int64_t *out) {
    stws_json_value v;
    if (!out) return STWS_ERR_INVALID_ARG;
    stws_json_get(doc, path, &v);
    return stws_json_value_int(&v, out);
}

stws_result stws_json_double_at(const stws_json_doc *doc, const char *path, double *out) {
    stws_json_value v;
    if (!out) return STWS_ERR_INVALID_ARG;
    stws_json_get(doc, path, &v);
    return stws_json_value_double(&v, out);
}

stws_result stws_json_bool_at(const stws_json_doc *doc, const char *path, int *out) {
    stws_json_value v;
    if (!out) return STWS_ERR_INVALID_ARG;
    stws_json_get(doc, path, &v);
    return stws_json_value_bool(&v, out);
}

/* ---- writer ------------------------------------------------------------------ */

/* RFC 8259 §7: the escape for byte c (into out), or 0 if it goes as is.
   DEL is escaped too, so logs of what we send stay printable. */
static size_t stws__json_escape(unsigned char c, char out[6]) {
    static const char hex[] = "0123456789abcdef";
    switch (c) {
    case '"': out[1] = '"'; break;
    case '\\': out[1] = '\\'; break;
    case '\b': out[1] = 'b'; break;
    case '\f': out[1] = 'f'; break;
    case '\n': out[1] = 'n'; break;
    case '\r': out[1] = 'r'; break;
    case '\t': out[1] = 't'; break;
    default:
        if (c >= 0x20 && c != 0x7F) return 0;
        memcpy(out, "\\u00", 4);
        out[4] = hex[c >> 4];
        out[5] = hex[c & 15];
        return 6;
    }
    out[0] = '\\';
    return 2;
}

/* Decimal digits of v into out (no NUL); returns the length. */
static size_t stws__json_i64_dec(int64_t v, char out[20]) {
    char tmp[20];
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + (int)(m % 10));
        m /= 10;
    } while (m);
    i = 0;
    if (v < 0) out[i++] = '-';
    while (n) out[i++] = tmp[--n];
    return i;
}

/* Running out of room is not fatal to the count: the writer goes on
   measuring, so stws_json_write_finish() can say how much is needed.  Any other
   error stops it. */
static int stws__json_write_live(const stws_json_writer *w) {
    return w && (w->error == STWS_OK || w->error == STWS_ERR_BUFFER_TOO_SMALL);
}

static void stws__json_write_fail(stws_json_writer *w, stws_result e) {
    if (stws__json_write_live(w)) w->error = e;
}

static void stws__json_write_put(stws_json_writer *w, const char *s, size_t n) {
    if (n > (size_t)-1 - 1 - w->len) {
        stws__json_write_fail(w, STWS_ERR_BUFFER_TOO_SMALL);
        return;
    }
    if (n && w->len < w->cap) memcpy(w->buf + w->len, s, STWS__MIN(n, w->cap - w->len));
    w->len += n;
    if (w->len >= w->cap && w->error == STWS_OK) w->error = STWS_ERR_BUFFER_TOO_SMALL; /* + NUL */
}

/* Room for one value here?  Places the comma. */
static int stws__json_write_value(stws_json_writer *w) {
    int d;
    if (!stws__json_write_live(w)) return 0;
    if (w->depth == 0) {
        if (w->len == 0) return 1;
        stws__json_write_fail(w, STWS_ERR_JSON); /* a second top-level value */
        return 0;
    }
    d = w->depth - 1;
    if (w->in_object[d]) {
        if (!w->after_key) {
            stws__json_write_fail(w, STWS_ERR_JSON); /* value without key */
            return 0;
        }
        w->after_key = 0;
        return 1;
    }
    if (!w->first[d]) stws__json_write_put(w, ",", 1);
    w->first[d] = 0;
    return 1;
}

/* A quoted, escaped string; invalid UTF-8 (RFC 8259 §8.1) is refused. */
static void stws__json_write_quoted(stws_json_writer *w, const char *s, size_t n) {
    size_t i, run = 0;
    stws__json_write_put(w, "\"", 1);
    for (i = 0; i < n; i++) {
        char esc[6];
        size_t k = stws__json_escape((unsigned char)s[i], esc);
        if (!k) continue;
        stws__json_write_put(w, s + run, i - run);
        stws__json_write_put(w, esc, k);
        run = i + 1;
    }
    stws__json_write_put(w, s + run, n - run);
    stws__json_write_put(w, "\"", 1);
}

static int stws__json_write_text_ok(stws_json_writer *w, const char *s, size_t n) {
    if (!s && n) {
        stws__json_write_fail(w, STWS_ERR_INVALID_ARG);
        return 0;
    }
    if (n && !stws__utf8_ok(s, n)) {
        stws__json_write_fail(w, STWS_ERR_INVALID_UTF8);
        return 0;
    }
    return 1;
}

void stws_json_write_init(stws_json_writer *w, char *buf, size_t cap) {
    if (!w) return;
    memset(w, 0, sizeof *w);
    w->buf = buf;
    w->cap = buf ? cap : 0;
}

static void stws__json_write_begin(stws_json_writer *w, int object) {
    if (!stws__json_write_live(w)) return;
    if (w->depth >= STWS_JSON_MAX_DEPTH) {
        stws__json_write_fail(w, STWS_ERR_JSON);
        return;
    }
    if (!stws__json_write_value(w)) return;
    stws__json_write_put(w, object ? "{" : "[", 1);
    w->first[w->depth] = 1;
    w->in_object[w->depth] = (uint8_t)object;
    w->depth++;
}

static void stws__json_write_end(stws_json_writer *w, int object) {
    if (!stws__json_write_live(w)) return;
    if (w->depth == 0 || w->in_object[w->depth - 1] != object || w->after_key) {
        stws__json_write_fail(w, STWS_ERR_JSON); /* unbalanced, or a key left without value */
        return;
    }
    stws__json_write_put(w, object ? "}" : "]", 1);
    w->depth--;
}

void stws_json_write_object_begin(stws_json_writer *w) { stws__json_write_begin(w, 1); }
void stws_json_write_object_end(stws_json_writer *w) { stws__json_write_end(w, 1); }
void stws_json_write_array_begin(stws_json_writer *w) { stws__json_write_begin(w, 0); }
void stws_json_write_array_end(stws_json_writer *w) { stws__json_write_end(w, 0); }

void stws_json_write_key(stws_json_writer *w, const char *key) {
    int d;
    size_t n;
    if (!stws__json_write_live(w)) return;
    if (!key) {
        stws__json_write_fail(w, STWS_ERR_INVALID_ARG);
        return;
    }
    n = strlen(key);
    d = w->depth - 1;
    if (d < 0 || !w->in_object[d] || w->after_key) {
        stws__json_write_fail(w, STWS_ERR_JSON); /* key outside an object, or twice */
        return;
    }
    if (!stws__json_write_text_ok(w, key, n)) return;
    if (!w->first[d]) stws__json_write_put(w, ",", 1);
    w->first[d] = 0;
    stws__json_write_quoted(w, key, n);
    stws__json_write_put(w, ":", 1);
    w->after_key = 1;
}

void stws_json_write_string_n(stws_json_writer *w, const char *s, size_t n) {
    if (!stws__json_write_live(w) || !stws__json_write_text_ok(w, s, n) || !stws__json_write_value(w)) return;
    if (!n) s = ""; /* NULL with 0 */
    stws__json_write_quoted(w, s, n);
}

void stws_json_write_string(stws_json_writer *w, const char *s) {
    if (!s) {
        stws__json_write_fail(w, STWS_ERR_INVALID_ARG);
        return;
    }
    stws_json_write_string_n(w, s, strlen(s));
}

void stws_json_write_int(stws_json_writer *w, int64_t v) {
    char d[20];
    size_t n = stws__json_i64_dec(v, d);
    if (stws__json_write_value(w)) stws__json_write_put(w, d, n);
}

void stws_json_write_bool(stws_json_writer *w, int v) {
    if (stws__json_write_value(w)) stws__json_write_put(w, v ? "true" : "false", v ? 4 : 5);
}

void stws_json_write_null(stws_json_writer *w) {
    if (stws__json_write_value(w)) stws__json_write_put(w, "null", 4);
}

/* Checked with the tokenless RFC 8259 pass that checks inbound events (the
   writer has no allocator for a token array); its nesting counts against
   STWS_JSON_MAX_DEPTH.  Copied as given, surrounding whitespace included. */
void stws_json_write_raw(stws_json_writer *w, const char *json, size_t n) {
    stws__json_info info;
    if (!stws__json_write_live(w) || !stws__json_write_text_ok(w, json, n)) return;
    if (!n || stws__json_scan(json, n, (size_t)-1, STWS_JSON_MAX_DEPTH - w->depth, &info) != STWS_OK) {
        stws__json_write_fail(w, STWS_ERR_JSON);
        return;
    }
    if (stws__json_write_value(w)) stws__json_write_put(w, json, n);
}

/* *len: the length without the NUL, also on STWS_ERR_BUFFER_TOO_SMALL
   (the buffer then needs *len + 1 bytes).  On any error buf holds "". */
stws_result stws_json_write_finish(stws_json_writer *w, size_t *len) {
    if (!w) return STWS_ERR_INVALID_ARG;
    if (stws__json_write_live(w) && (w->depth != 0 || w->after_key || w->len == 0))
        stws__json_write_fail(w, STWS_ERR_JSON); /* open containers, or nothing written */
    if (len) *len = w->len;
    if (w->error == STWS_OK && w->len < w->cap) {
        w->buf[w->len] = 0;
        return STWS_OK;
    }
    if (w->error == STWS_OK) w->error = STWS_ERR_BUFFER_TOO_SMALL;
    if (w->cap) w->buf[0] = 0;
    return w->error;
}

/* ---- JWT (RFC 7519, HS256 per RFC 7518 §3.2) ---------------------------------- */

/* Streaming base64url without padding (RFC 7515 §2, RFC 4648 §5): 48 bytes
   (a multiple of 3, so no padding in between) at a time through
   mbedtls_base64_encode, then '+' '/' become '-' '_' and '=' goes. */
typedef struct stws__b64u {
    stws__sb *sb;
    unsigned char pend[48];
    size_t n;
} stws__b64u;

static void stws__jwt_b64u_flush(stws__b64u *e) {
    unsigned char tmp[65];
    size_t olen = 0, i;
    if (!e->n) return;
    if (mbedtls_base64_encode(tmp, sizeof tmp, &olen, e->pend, e->n) != 0) olen = 0; /* cannot fail */
    for (i = 0; i < olen; i++) {
        if (tmp[i] == '+') tmp[i] = '-';
        else if (tmp[i] == '/') tmp[i] = '_';
        else if (tmp[i] == '=') break;
    }
    stws__sb_put(e->sb, (const char *)tmp, i);
    mbedtls_platform_zeroize(tmp, sizeof tmp);
    mbedtls_platform_zeroize(e->pend, sizeof e->pend);
    e->n = 0;
}

static void stws__jwt_b64u_put(stws__b64u *e, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    while (n) {
        size_t k = STWS__MIN(n, sizeof e->pend - e->n);
        memcpy(e->pend + e->n, p, k);
        e->n += k;
        p += k;
        n -= k;
        if (e->n == sizeof e->pend) stws__jwt_b64u_flush(e);
    }
}

static void stws__jwt_b64u_puts(stws__b64u *e, const char *s) { stws__jwt_b64u_put(e, s, strlen(s)); }

static void stws__jwt_b64u_int(stws__b64u *e, int64_t v) {
    char d[20];
    stws__jwt_b64u_put(e, d, stws__json_i64_dec(v, d));
}

/* HMAC-SHA256 (RFC 2104) of msg; 0 or an mbedTLS / PSA error code. */
#ifdef STWS__PSA_ONLY
#define STWS__HS256_NOMEM PSA_ERROR_INSUFFICIENT_MEMORY
/* mbedTLS 4: HMAC only through PSA, keyed by a volatile imported key.  A key
   longer than SHA-256's 64-byte block is hashed first, as RFC 2104 §3 does
   itself, so any secret length works (PSA caps key sizes). */
static int stws__jwt_hs256(const unsigned char *key, size_t key_len, const unsigned char *msg,
                       size_t msg_len, unsigned char mac[32]) {
    psa_key_attributes_t at = psa_key_attributes_init();
    mbedtls_svc_key_id_t id = MBEDTLS_SVC_KEY_ID_INIT;
    unsigned char kh[32];
    size_t n;
    psa_status_t st = psa_crypto_init();
    if (st == PSA_SUCCESS && key_len > 64) {
        st = psa_hash_compute(PSA_ALG_SHA_256, key, key_len, kh, sizeof kh, &n);
        key = kh;
        key_len = sizeof kh;
    }
    psa_set_key_type(&at, PSA_KEY_TYPE_HMAC);
    psa_set_key_usage_flags(&at, PSA_KEY_USAGE_SIGN_MESSAGE);
    psa_set_key_algorithm(&at, PSA_ALG_HMAC(PSA_ALG_SHA_256));
    if (st == PSA_SUCCESS) st = psa_import_key(&at, key, key_len, &id);
    if (st == PSA_SUCCESS)
        st = psa_mac_compute(id, PSA_ALG_HMAC(PSA_ALG_SHA_256), msg, msg_len, mac, 32, &n);
    (void)psa_destroy_key(id); /* wipes the key copy; the null id is a no-op */
    psa_reset_key_attributes(&at);
    mbedtls_platform_zeroize(kh, sizeof kh);
    return (int)st;
}
#else
#define STWS__HS256_NOMEM MBEDTLS_ERR_MD_ALLOC_FAILED
static int stws__jwt_hs256(const unsigned char *key, size_t key_len, const unsigned char *msg,
                       size_t msg_len, unsigned char mac[32]) {
    mbedtls_md_context_t md;
    const mbedtls_md_info_t *info;
    int rc;
    mbedtls_md_init(&md);
    info = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    rc = info ? mbedtls_md_setup(&md, info, 1) : -1;
    if (rc == 0) rc = mbedtls_md_hmac_starts(&md, key, key_len);
    if (rc == 0) rc = mbedtls_md_hmac_update(&md, msg, msg_len);
    if (rc == 0) rc = mbedtls_md_hmac_finish(&md, mac);
    mbedtls_md_free(&md); /* zeroizes the inner/outer padded keys */
    mbedtls_platform_zeroize(&md, sizeof md);
    return rc;
}
#endif

/* payload is NULL for a user token (claims), else the literal claims set. */
static stws_result stws__jwt(const char *secret, size_t secret_len, const stws_jwt_claims *claims,
                             const char *payload, char *out, size_t cap, size_t *len) {
    stws__sb sb;
    stws__b64u e;
    unsigned char mac[32];
    size_t total;
    int rc;
    if (!len) return STWS_ERR_INVALID_ARG;
    *len = 0;
    if (out && cap) out[0] = 0;
    if (!secret || !secret_len || (!out && cap) || (!payload && !claims)) return STWS_ERR_INVALID_ARG;
    if (claims && claims->user_id && !stws__utf8_ok(claims->user_id, strlen(claims->user_id)))
        return STWS_ERR_INVALID_UTF8;
    sb.buf = out;
    sb.cap = cap;
    sb.len = 0;
    e.sb = &sb;
    e.n = 0;
    stws__jwt_b64u_puts(&e, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
    stws__jwt_b64u_flush(&e);
    stws__sb_put(&sb, ".", 1);
    if (payload) {
        stws__jwt_b64u_puts(&e, payload);
    } else {
        /* keys sorted, no spaces (PROTOCOL.md §7); 0 / NULL omitted */
        const char *sep = "";
        stws__jwt_b64u_puts(&e, "{");
        if (claims->exp) {
            stws__jwt_b64u_puts(&e, "\"exp\":");
            stws__jwt_b64u_int(&e, claims->exp);
            sep = ",";
        }
        if (claims->iat) {
            stws__jwt_b64u_puts(&e, sep);
            stws__jwt_b64u_puts(&e, "\"iat\":");
            stws__jwt_b64u_int(&e, claims->iat);
            sep = ",";
        }
        if (claims->user_id) {
            const char *u = claims->user_id;
            stws__jwt_b64u_puts(&e, sep);
            stws__jwt_b64u_puts(&e, "\"user_id\":\"");
            for (; *u; u++) {
                char esc[6];
                size_t k = stws__json_escape((unsigned char)*u, esc);
                if (k) stws__jwt_b64u_put(&e, esc, k);
                else stws__jwt_b64u_put(&e, u, 1);
            }
            stws__jwt_b64u_puts(&e, "\"");
        }
        stws__jwt_b64u_puts(&e, "}");
    }
    stws__jwt_b64u_flush(&e);
    total = sb.len + 1 + 43; /* "." + 32 bytes of MAC in unpadded base64url */
    *len = total;
    if (total >= cap) {
        if (cap) out[0] = 0;
        return STWS_ERR_BUFFER_TOO_SMALL;
    }
    /* RFC 7515 §5.1: the MAC covers the ASCII of header "." payload */
    rc = stws__jwt_hs256((const unsigned char *)secret, secret_len, (const unsigned char *)out, sb.len, mac);
    if (rc == 0) {
        stws__sb_put(&sb, ".", 1);
        stws__jwt_b64u_put(&e, mac, sizeof mac);
        stws__jwt_b64u_flush(&e);
    }
    mbedtls_platform_zeroize(mac, sizeof mac);
    if (rc != 0 || sb.len != total) {
        out[0] = 0;
        *len = 0;
        return rc == STWS__HS256_NOMEM ? STWS_ERR_NOMEM : STWS_ERR_INVALID_ARG;
    }
    out[total] = 0;
    return STWS_OK;
}

stws_result stws_jwt_user_token(const char *secret, size_t secret_len, const stws_jwt_claims *claims,
                                char *out, size_t cap, size_t *len) {
    if (!claims) {
        if (len) *len = 0;
        return STWS_ERR_INVALID_ARG;
    }
    return stws__jwt(secret, secret_len, claims, NULL, out, cap, len);
}

stws_result stws_jwt_server_token(const char *secret, size_t secret_len, char *out, size_t cap,
                                  size_t *len) {
    return stws__jwt(secret, secret_len, NULL, "{\"server\":true}", out, cap, len);
}

/* ==== end json + jwt ====================================================== */

/* ==== the Stream client (PROTOCOL.md §1-§6) =============================== */

#define STWS__MAX_HANDLERS 32
#define STWS__MAX_TOKEN 4096
#define STWS__QHDR 12           /* queue entry: u32 length, u64 end offset */

typedef enum stws__cstate {
    STWS__C_IDLE = 0,
    STWS__C_CONNECTING,         /* socket, TLS, upgrade */
    STWS__C_AUTH,               /* auth message sent, waiting for connection.ok */
    STWS__C_CONNECTED,
    STWS__C_BACKOFF,            /* waiting before the next attempt */
    STWS__C_STOPPED
} stws__cstate;

typedef struct stws__handler {
    char type[64];
    stws_client_event_fn fn;
    void *user_data;
} stws__handler;

struct stws_client {
    stws_allocator alloc;
    stws_logger log;
    stws_clock clock;
    stws_random random;
    stws__drbg *drbg;
    stws_conn *conn;

    /* configuration (strings copied into one block) */
    char *strings;
    size_t strings_len;         /* to wipe the block (it holds the secret) */
    const char *api_key, *user_id, *user_name, *user_image, *user_custom, *static_token, *secret,
        *products, *client_id, *base_url;
    stws_token_provider provider;
    int health_ms, dead_ms, watchdog_ms, cap_ms, max_attempts, max_tokens;
    size_t queue_limit;
    stws_reconnecting_fn on_reconnecting;
    stws_client_event_fn on_event;
    void *user_data;
    stws__handler handlers[STWS__MAX_HANDLERS];
    int nhandlers;

    stws__cstate state;
    int failures;               /* consecutive failed attempts: n of PROTOCOL.md §5 */
    int retries;                /* retries since the last healthy socket (max_attempts) */
    uint64_t ok_at;             /* when connection.ok arrived (STWS_CLIENT_STABLE_MS) */
    int last_http;              /* the ended socket's refused-upgrade status, 0 none */
    int last_code;              /* its connection.error code, 0 none */
    int depth;                  /* inside stws_client_step() (callbacks run there) */
    int doomed;                 /* destroy was called inside a callback */
    int ever_connected;
    int refresh_token;          /* fetch or mint a new token before the next attempt */
    int retry_after_error;      /* connection.error handled: its close 1000 is not a stop */
    int fatal;
    int user_closed;
    int rc_due;                 /* a retry is scheduled; on_reconnecting not yet asked */
    int rc_attempt, rc_delay, rc_code;
    stws_result last_error;
    uint64_t watchdog_at, health_at, dead_at, backoff_until;
    char connection_id[128];
    char token[STWS__MAX_TOKEN];
    char message[256];          /* the latest reason, copied into each event */
    char event_msg[256];        /* the delivered event's reason */
    char *scratch;              /* auth message */
    size_t scratch_cap;

    /* the send queue: entries [u32 len][u64 end][bytes], oldest first */
    uint8_t *q;
    size_t q_cap, q_len, q_moved; /* q_moved: bytes of entries handed to the codec */
    size_t q_payload;           /* sum of entry lengths (the limit counts these) */
#ifdef STWS__THREADS
    /* stws_client_post()'s inbox: entries as in q (4-byte length, the text),
       moved into q by the step; every field under in_mu */
    stws__mutex in_mu;
    int in_mu_ok;               /* in_mu was initialised (fixed after create) */
    uint8_t *in;
    size_t in_cap, in_len, in_payload;
    size_t in_q_payload;        /* q_payload as the last step left it */
    int in_stopped;             /* the client was stopped at the last step */
    int wake_pending;           /* a byte is in the wake pipe */
    stws__sock wake_fds[2];     /* notify pair (fixed after create) */
#endif

    /* lifecycle events waiting for delivery, each with its own reason text */
    stws_client_event pending[8];
    char pending_msg[8][256];
    int npending;
    /* handlers only: lifecycle events the step kept for the pull API */
    stws_client_event kept[8];
    char kept_msg[8][256];
    int nkept;

    stws_json_tokens json;      /* the delivered event's checked text, and its
                                   tokens with tokenize_events */
    int tokenize_events;
};

static uint64_t stws__client_now(const stws_client *c) { return c->clock.now_ms(c->clock.user_data); }

/* Queue a lifecycle event with the current message; NULL when the queue is
   full (the event is dropped). */
static stws_client_event *stws__client_push(stws_client *c, stws_client_event_type type, stws_result r, int code) {
    stws_client_event *e;
    if (c->npending == (int)(sizeof c->pending / sizeof c->pending[0])) return NULL;
    if (type == STWS_CLIENT_EVENT_CONNECTED || type == STWS_CLIENT_EVENT_RECONNECTED)
        c->pending_msg[c->npending][0] = 0; /* not the reason of the drop before */
    else
        memcpy(c->pending_msg[c->npending], c->message, sizeof c->pending_msg[0]);
    e = &c->pending[c->npending++];
    memset(e, 0, sizeof *e);
    e->type = type;
    e->result = r;
    e->close_code = code;
    e->error_code = code;
    return e;
}



#ifndef STWS_NO_SOCKETS
static int64_t stws__default_unix_s(void *user_data) {
    (void)user_data;
    return (int64_t)time(NULL);
}
#endif

/* A JWT (RFC 7519 §7.2, RFC 7515 §7.1): three non-empty base64url parts
   joined by dots, the first a JSON object ("{" once decoded: its first
   character 'e').  Anything else, an API secret given as the token above
   all, is refused before it reaches the wire (and a retry loop).  No
   character of it needs a JSON escape. */
static int stws__jwt_ok(const char *t, size_t n) {
    size_t i, part = 0, dots = 0;
    if (!n || n >= STWS__MAX_TOKEN || t[0] != 'e') return 0;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)t[i];
        if (ch == '.') {
            if (!part || ++dots > 2) return 0;
            part = 0;
        } else if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                   ch == '_') {
            part++;
        } else {
            return 0;
        }
    }
    return dots == 2 && part > 0;
}

/* Get the token for the next attempt: static, provider, or minted. */
static stws_result stws__client_token(stws_client *c) {
    if (c->provider.fetch) {
        int n = c->provider.fetch(c->token, sizeof c->token, c->provider.user_data);
        if (n <= 0 || !stws__jwt_ok(c->token, (size_t)n)) {
            c->token[0] = 0; /* never send what a failed fetch left behind */
            return STWS_ERR_TOKEN;
        }
        c->token[n] = 0;
    } else if (c->secret) {
        stws_jwt_claims cl;
        size_t len = 0;
        int64_t now = c->clock.unix_s ? c->clock.unix_s(c->clock.user_data) : 0;
        memset(&cl, 0, sizeof cl);
        cl.user_id = c->user_id;
        cl.iat = now - 5; /* PROTOCOL.md §6 code 42: allow for clock skew */
        if (stws_jwt_user_token(c->secret, strlen(c->secret), &cl, c->token, sizeof c->token, &len) != STWS_OK) {
            c->token[0] = 0;
            return STWS_ERR_TOKEN;
        }
    }
    c->refresh_token = 0;
    return STWS_OK;
}

/* PROTOCOL.md §2: {"token":..,"user_details":{..},"products":[..]} into
   scratch.  Create builds it once with an empty token, so that a field that
   cannot be written is refused there and never becomes a reconnect loop. */
static stws_result stws__client_auth_build(stws_client *c, const char *token, size_t *len) {
    stws_json_writer w;
    stws_json_write_init(&w, c->scratch, c->scratch_cap);
    stws_json_write_object_begin(&w);
    stws_json_write_key(&w, "token");
    stws_json_write_string(&w, token);
    stws_json_write_key(&w, "user_details");
    stws_json_write_object_begin(&w);
    stws_json_write_key(&w, "id");
    stws_json_write_string(&w, c->user_id);
    if (c->user_name) {
        stws_json_write_key(&w, "name");
        stws_json_write_string(&w, c->user_name);
    }
    if (c->user_image) {
        stws_json_write_key(&w, "image");
        stws_json_write_string(&w, c->user_image);
    }
    if (c->user_custom) {
        stws_json_write_key(&w, "custom");
        stws_json_write_raw(&w, c->user_custom, strlen(c->user_custom));
    }
    stws_json_write_object_end(&w);
    if (c->products) {
        const char *p = c->products;
        stws_json_write_key(&w, "products");
        stws_json_write_array_begin(&w);
        while (*p) {
            size_t n = strcspn(p, ",");
            if (n) stws_json_write_string_n(&w, p, n);
            p += n;
            if (*p == ',') p++;
        }
        stws_json_write_array_end(&w);
    }
    stws_json_write_object_end(&w);
    return stws_json_write_finish(&w, len);
}

static stws_result stws__client_auth(stws_client *c) {
    size_t len = 0;
    stws_result r = stws__client_auth_build(c, c->token, &len);
    /* the frame holds the token (masked, key beside it): wiped once written */
    if (r == STWS_OK) r = stws_conn_send_secret(c->conn, STWS_OP_TEXT, c->scratch, len);
    /* held the token; all of it if the build stopped half-way */
    mbedtls_platform_zeroize(c->scratch, r == STWS_OK ? STWS__MIN(len + 1, c->scratch_cap) : c->scratch_cap);
    return r;
}

/* PROTOCOL.md §4: the array form of the client's health check. */
static void stws__client_health(stws_client *c) {
    char buf[256];
    stws_json_writer w;
    size_t len = 0;
    stws_json_write_init(&w, buf, sizeof buf);
    stws_json_write_array_begin(&w);
    stws_json_write_object_begin(&w);
    stws_json_write_key(&w, "type");
    stws_json_write_string(&w, "health.check");
    stws_json_write_key(&w, "client_id");
    stws_json_write_string(&w, c->connection_id);
    stws_json_write_object_end(&w);
    stws_json_write_array_end(&w);
    if (stws_json_write_finish(&w, &len) == STWS_OK) (void)stws_conn_send(c->conn, STWS_OP_TEXT, buf, len);
    c->health_at = stws__client_now(c) + (uint64_t)c->health_ms;
}

static void stws__client_stop(stws_client *c) {
    c->state = STWS__C_STOPPED;
    c->rc_due = 0;
    c->watchdog_at = c->health_at = c->dead_at = c->backoff_until = 0;
    c->connection_id[0] = 0;
}

/* msg NULL: the result's own text says it all. */
static void stws__client_fatal(stws_client *c, stws_result r, int code, const char *msg) {
    stws_client_event *e;
    stws__copy(c->message, 201, msg ? msg : stws_result_string(r)); /* at most 200 bytes of the server's text */
    if ((e = stws__client_push(c, STWS_CLIENT_EVENT_FATAL, r, code)) != NULL) e->http_status = c->last_http;
    stws__log(&c->log, STWS_LOG_ERROR, "client stopped: %s (code %d): %s", stws_result_string(r), code,
              c->message);
    c->fatal = 1;
    c->last_error = r;
}

static void stws__client_socket_ended(stws_client *c, int close_code, int peer_close);
static void stws__client_queue_settle(stws_client *c, int socket_gone);

/* Start one connection attempt (inside step: the token provider is user code). */
static void stws__client_attempt(stws_client *c) {
    stws_result r = STWS_OK;
    c->state = STWS__C_CONNECTING;
    c->backoff_until = 0;
    c->last_code = c->last_http = 0;
    c->last_error = STWS_OK; /* this attempt's own results, not the ones before */
    stws__client_queue_settle(c, 1); /* what the old socket did not write goes on this one */
    if (c->refresh_token || !c->token[0]) r = stws__client_token(c);
    if (c->doomed) return; /* the token provider destroyed the client */
    if (r == STWS_OK) r = stws_conn_connect(c->conn);
    if (r != STWS_OK) {
        /* no socket was opened: a failed attempt, like a refused connect */
        c->last_error = r;
        stws__copy(c->message, sizeof c->message, stws_result_string(r));
        stws__client_socket_ended(c, STWS_CLOSE_ABNORMAL, 0);
        return;
    }
    c->watchdog_at = stws__client_now(c) + (uint64_t)c->watchdog_ms;
}

/* Uniform in [lo, hi) (PROTOCOL.md §5). */
static int stws__client_delay(stws_client *c, int n) {
    int64_t hi = 500 + 2000 * (int64_t)n, lo = 2000 * ((int64_t)n - 1);
    uint32_t rnd = 0;
    if (lo < 250) lo = 250;
    if (hi > c->cap_ms) hi = c->cap_ms;
    if (lo > c->cap_ms) lo = c->cap_ms;
    if (hi <= lo) return (int)lo;
    (void)c->random.fill(&rnd, sizeof rnd, c->random.user_data);
    return (int)(lo + (int64_t)(rnd % (uint32_t)(hi - lo)));
}

/* Queue entries that were fully written leave the queue; the rest become
   unsent again when the socket is gone: told so, or seen here (a closed
   connection whose CLOSE event nobody read yet, stws_client_close() in
   between: every path to the next socket passes here first). */
static void stws__client_queue_settle(stws_client *c, int socket_gone) {
    uint64_t written = stws_conn_bytes_written(c->conn);
    stws_conn_state cs = stws_conn_get_state(c->conn);
    if (cs == STWS_CONN_CLOSED || cs == STWS_CONN_IDLE) socket_gone = 1;
    size_t off = 0;
    while (off < c->q_moved) {
        uint32_t n;
        uint64_t end;
        memcpy(&n, c->q + off, 4);
        memcpy(&end, c->q + off + 4, 8);
        if (end > written) break;
        off += STWS__QHDR + n;
        c->q_payload -= n;
    }
    if (off) {
        memmove(c->q, c->q + off, c->q_len - off);
        c->q_len -= off;
        c->q_moved -= off;
    }
    if (socket_gone) c->q_moved = 0;
}

/* Hand queued entries to the connection, oldest first, while its output is
   small; each remembers the output offset at which it is fully written. */
static void stws__client_queue_pump(stws_client *c) {
    stws__client_queue_settle(c, 0);
    if (c->state != STWS__C_CONNECTED) return;
    while (c->q_moved < c->q_len && stws_conn_buffered(c->conn) < 65536) {
        uint32_t n;
        uint64_t end;
        memcpy(&n, c->q + c->q_moved, 4);
        if (stws_conn_send(c->conn, STWS_OP_TEXT, c->q + c->q_moved + STWS__QHDR, n) != STWS_OK) break;
        end = stws_conn_bytes_written(c->conn) + stws_conn_buffered(c->conn);
        memcpy(c->q + c->q_moved + 4, &end, 8);
        c->q_moved += STWS__QHDR + n;
    }
}

/* The checks of stws_client_send() that depend on the text alone. */
static stws_result stws__client_send_check_text(const char *text, size_t len) {
    uint32_t st = 0;
    if (stws_utf8_validate(&st, text, len) != len || st) return STWS_ERR_INVALID_UTF8;
    {
        stws__json_info info; /* the reader's strict one-pass check, no tokens */
        if (!len || stws__json_scan(text, len, (size_t)-1, STWS__JSON_MAX_NESTING, &info) != STWS_OK)
            return STWS_ERR_JSON;
    }
    return STWS_OK;
}

/* Append a checked message to the send queue. */
static stws_result stws__client_queue_append(stws_client *c, const char *text, size_t len);

stws_result stws_client_send(stws_client *c, const char *text, size_t len) {
    stws_result r;
    if (!c || (!text && len) || len > 0xFFFFFFFFu) return STWS_ERR_INVALID_ARG;
    if (c->state == STWS__C_STOPPED) return STWS_ERR_CLOSED;
    /* the codec takes a message only if its frame (header <= 14 bytes) fits
       the output cap: anything bigger would sit at the head of the queue
       forever, blocking every later message */
    if (len > STWS_DEFAULT_MAX_OUTPUT_SIZE - 14) return STWS_ERR_MESSAGE_TOO_BIG;
    if (c->q_payload + len > c->queue_limit) return STWS_ERR_QUEUE_FULL;
    if ((r = stws__client_send_check_text(text, len)) != STWS_OK) return r;
    if ((r = stws__client_queue_append(c, text, len)) != STWS_OK) return r;
    stws__client_queue_pump(c);
    return STWS_OK;
}

static stws_result stws__client_queue_append(stws_client *c, const char *text, size_t len) {
    uint32_t n32;
    uint64_t zero = 0;
    if (c->q_cap - c->q_len < STWS__QHDR + len) {
        size_t want = STWS__MAX(c->q_len + STWS__QHDR + len, c->q_cap * 2);
        uint8_t *nq;
        if (want < 4096) want = 4096;
        nq = (uint8_t *)stws__alloc(&c->alloc, want);
        if (!nq) return STWS_ERR_NOMEM;
        if (c->q_len) memcpy(nq, c->q, c->q_len);
        stws__free(&c->alloc, c->q);
        c->q = nq;
        c->q_cap = want;
    }
    n32 = (uint32_t)len;
    memcpy(c->q + c->q_len, &n32, 4);
    memcpy(c->q + c->q_len + 4, &zero, 8);
    if (len) memcpy(c->q + c->q_len + STWS__QHDR, text, len);
    c->q_len += STWS__QHDR + len;
    c->q_payload += len;
    return STWS_OK;
}

#ifdef STWS__THREADS
stws_result stws_client_post(stws_client *c, const char *text, size_t len) {
    stws_result r;
    uint32_t n32 = (uint32_t)len;
    if (!c || (!text && len) || len > 0xFFFFFFFFu) return STWS_ERR_INVALID_ARG;
    if (len > STWS_DEFAULT_MAX_OUTPUT_SIZE - 14) return STWS_ERR_MESSAGE_TOO_BIG;
    /* outside the lock: posters check their texts in parallel */
    if ((r = stws__client_send_check_text(text, len)) != STWS_OK) return r;
    stws__mutex_lock(&c->in_mu);
    if (c->in_stopped) r = STWS_ERR_CLOSED;
    else if (c->in_q_payload + c->in_payload + len > c->queue_limit) r = STWS_ERR_QUEUE_FULL;
    else if (c->in_cap - c->in_len < 4 + len) {
        /* grows like the send queue, and is reused: no allocation per message */
        size_t want = STWS__MAX(c->in_len + 4 + len, c->in_cap * 2);
        uint8_t *ni;
        if (want < 4096) want = 4096;
        ni = (uint8_t *)stws__alloc(&c->alloc, want);
        if (!ni) r = STWS_ERR_NOMEM;
        else {
            if (c->in_len) memcpy(ni, c->in, c->in_len);
            stws__free(&c->alloc, c->in);
            c->in = ni;
            c->in_cap = want;
        }
    }
    if (r == STWS_OK) {
        memcpy(c->in + c->in_len, &n32, 4);
        if (len) memcpy(c->in + c->in_len + 4, text, len);
        c->in_len += 4 + len;
        c->in_payload += len;
        if (!c->wake_pending && c->wake_fds[1] != STWS__NO_SOCK) {
            c->wake_pending = 1;
            stws__notify_signal(c->wake_fds[1]);
        }
    }
    stws__mutex_unlock(&c->in_mu);
    return r;
}

void stws_client_wake(stws_client *c) {
    if (!c) return;
    stws__mutex_lock(&c->in_mu);
    if (!c->wake_pending && c->wake_fds[1] != STWS__NO_SOCK) {
        c->wake_pending = 1;
        stws__notify_signal(c->wake_fds[1]);
    }
    stws__mutex_unlock(&c->in_mu);
}

intptr_t stws_client_wake_handle(const stws_client *c) {
    return c && c->wake_fds[0] != STWS__NO_SOCK ? (intptr_t)c->wake_fds[0] : -1;
}

/* In the step: empty the wake pipe, move what the queue can take from the
   inbox (in order; the rest waits there), and leave the state posters check. */
static void stws__client_inbox_move(stws_client *c) {
    size_t off = 0, moved = 0;
    stws__mutex_lock(&c->in_mu);
    if (c->wake_pending) {
        stws__notify_drain(c->wake_fds[0]);
        c->wake_pending = 0;
    }
    while (c->state != STWS__C_STOPPED && off < c->in_len) {
        uint32_t n;
        memcpy(&n, c->in + off, 4);
        if (c->q_payload + n > c->queue_limit) break; /* the pump's own sends filled it */
        if (stws__client_queue_append(c, (const char *)c->in + off + 4, n) != STWS_OK) break;
        off += 4 + (size_t)n;
        moved += n;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
        c->in_payload -= moved;
    }
    c->in_q_payload = c->q_payload;
    c->in_stopped = c->state == STWS__C_STOPPED;
    stws__mutex_unlock(&c->in_mu);
}
#endif

size_t stws_client_queued(const stws_client *c) { return c ? c->q_payload : 0; }

/* A retry cannot mend it (stws_client_connect): a 4xx upgrade answer but
   408/429, or TLS failing as TLS before the upgrade (the transport's own
   errors, a reset say, come through as themselves, not as STWS_ERR_TLS). */
static int stws__client_permanent(const stws_client *c) {
    if (c->state != STWS__C_CONNECTING) return 0;
    if (c->last_error == STWS_ERR_HANDSHAKE_STATUS)
        return c->last_http >= 400 && c->last_http < 500 && c->last_http != 408 && c->last_http != 429;
    return c->last_error == STWS_ERR_TLS || c->last_error == STWS_ERR_TLS_VERIFY;
}

/* A socket ended (CLOSE from the connection): stop or schedule a retry. */
static void stws__client_socket_ended(stws_client *c, int close_code, int peer_close) {
    int delay, attempt, healthy;
    stws_client_event *e;
    stws__client_queue_settle(c, 1);
    /* PROTOCOL.md §5: n counts the attempts that failed since the last
       healthy socket; one that lived less than STWS_CLIENT_STABLE_MS past
       its connection.ok is a failure too */
    healthy = c->state == STWS__C_CONNECTED && stws__client_now(c) - c->ok_at >= STWS_CLIENT_STABLE_MS;
    c->last_http = c->last_error == STWS_ERR_HANDSHAKE_STATUS ? stws_conn_http_status(c->conn) : 0;
    c->connection_id[0] = 0;
    c->health_at = c->dead_at = c->watchdog_at = 0;
    if (c->fatal) {
        stws__client_stop(c);
        return;
    }
    if (c->user_closed) {
        stws__client_push(c, STWS_CLIENT_EVENT_CLOSED, STWS_OK, close_code);
        stws__client_stop(c);
        return;
    }
    if ((e = stws__client_push(c, STWS_CLIENT_EVENT_DISCONNECTED, c->last_error, close_code)) != NULL)
        e->http_status = c->last_http;
    if (stws__client_permanent(c)) {
        char msg[201];
        snprintf(msg, sizeof msg, "not retried: %.180s", c->message);
        stws__client_fatal(c, c->last_error, 0, msg);
        stws__client_stop(c);
        return;
    }
    /* PROTOCOL.md §5: a server close 1000 is permanent, unless it follows a
       connection.error we decided to retry */
    if (peer_close && close_code == STWS_CLOSE_NORMAL && !c->retry_after_error) {
        stws__copy(c->message, sizeof c->message, "server closed the connection (1000)");
        stws__client_push(c, STWS_CLIENT_EVENT_CLOSED, STWS_OK, close_code);
        stws__client_stop(c);
        return;
    }
    c->retry_after_error = 0;
    if (healthy) c->failures = c->retries = 0;
    else c->failures++;
    delay = stws__client_delay(c, c->failures);
    attempt = ++c->retries;
    if (c->max_attempts > 0 && attempt > c->max_attempts) {
        char msg[201];
        stws_result cause = c->last_error;
        snprintf(msg, sizeof msg, "reconnect attempts exhausted (%d), last: %.150s", c->max_attempts, c->message);
        stws__client_fatal(c, STWS_ERR_ATTEMPTS, c->last_code, msg);
        if (c->npending && c->pending[c->npending - 1].type == STWS_CLIENT_EVENT_FATAL)
            c->pending[c->npending - 1].cause = cause;
        stws__client_stop(c);
        return;
    }
    c->state = STWS__C_BACKOFF;
    c->backoff_until = stws__client_now(c) + (uint64_t)delay;
    c->rc_due = 1; /* on_reconnecting and RECONNECTING come from the next step */
    c->rc_attempt = attempt;
    c->rc_delay = delay;
    c->rc_code = close_code;
}

/* A retry was scheduled: let on_reconnecting abort it or change the token
   or URL, then announce it.  Only from step, so that the hook, like every
   callback, runs inside the pump. */
static void stws__client_reconnecting(stws_client *c) {
    stws_client_event *e;
    c->rc_due = 0;
    if (c->on_reconnecting) {
        stws_reconnect_ctl ctl;
        int stop;
        memset(&ctl, 0, sizeof ctl);
        stop = c->on_reconnecting(c, c->rc_attempt, c->rc_delay, &ctl, c->user_data);
        if (c->state != STWS__C_BACKOFF) return; /* stws_client_close() inside the hook won */
        if (stop) {
            stws__client_fatal(c, STWS_ERR_ABORTED, 0, NULL); /* "stopped by on_reconnecting" */
            stws__client_stop(c);
            return;
        }
        if (ctl.token && stws__jwt_ok(ctl.token, strlen(ctl.token))) {
            stws__copy(c->token, sizeof c->token, ctl.token);
            c->refresh_token = 0;
        } else if (ctl.token) {
            stws__log(&c->log, STWS_LOG_WARN, "on_reconnecting: malformed token refused");
        }
        if (ctl.url && stws_conn_set_url(c->conn, ctl.url) != STWS_OK)
            stws__log(&c->log, STWS_LOG_WARN, "on_reconnecting: URL refused, keeping the old one");
    }
    if ((e = stws__client_push(c, STWS_CLIENT_EVENT_RECONNECTING, c->last_error, c->rc_code)) != NULL) {
        e->attempt = c->rc_attempt;
        e->delay_ms = c->rc_delay;
    }
    stws__log(&c->log, STWS_LOG_INFO, "reconnecting: attempt %d in %d ms", c->rc_attempt, c->rc_delay);
}

/* PROTOCOL.md §6 */
static void stws__client_conn_error(stws_client *c, const stws_json_doc *doc) {
    int64_t code = 0;
    char text[512], msg[200];
    size_t n = 0;
    (void)stws_json_int_at(doc, "error.code", &code);
    if (stws_json_string_at(doc, "error.message", text, sizeof text, &n) != STWS_OK) {
        stws_str raw = {"", 0}; /* too long to unescape here: the raw text, cut */
        (void)stws_json_find(doc, "error.message", &raw);
        n = STWS__MIN(raw.len, sizeof text);
        memcpy(text, raw.ptr, n);
    }
    /* the server's words go to the log and the events: escaped (\n, ESC...) */
    stws__copy_safe(msg, sizeof msg, text, n);
    c->last_error = STWS_ERR_AUTH_TRANSIENT;
    c->last_code = (int)code;
    snprintf(c->message, sizeof c->message, "connection.error %d: %s", (int)code, msg);
    if (code == 40 && (c->secret || c->provider.fetch)) {
        c->refresh_token = 1; /* refresh only on an auth code, never on every reconnect */
        c->retry_after_error = 1;
    } else if (code == 40 || code == 41 || code == 42 || code == 43 || code == 2 || code == 4 ||
               code == 6) {
        stws__client_fatal(c, STWS_ERR_AUTH, (int)code, msg); /* its event carries the code */
    } else {
        c->retry_after_error = 1; /* other codes and 5xx: transient */
    }
    /* the server closes with 1000 next; close from our side too so that a
       server that does not never holds the client (PROTOCOL.md §3) */
    (void)stws_conn_close(c->conn, STWS_CLOSE_NORMAL, NULL);
}

static int stws__client_next(stws_client *c, stws_client_event *ev) {
    stws_conn_event ce;
    memset(ev, 0, sizeof *ev);
    for (;;) {
        if (c->npending) {
            *ev = c->pending[0];
            /* the view must outlive the queue shift below */
            memcpy(c->event_msg, c->pending_msg[0], sizeof c->event_msg);
            ev->message.ptr = c->event_msg;
            ev->message.len = strlen(c->event_msg);
            if (ev->type == STWS_CLIENT_EVENT_CONNECTED || ev->type == STWS_CLIENT_EVENT_RECONNECTED) {
                ev->connection_id.ptr = c->connection_id;
                ev->connection_id.len = strlen(c->connection_id);
            }
            memmove(c->pending, c->pending + 1, (size_t)(c->npending - 1) * sizeof c->pending[0]);
            memmove(c->pending_msg, c->pending_msg + 1, (size_t)(c->npending - 1) * sizeof c->pending_msg[0]);
            c->npending--;
            return 1;
        }
        if (c->state == STWS__C_IDLE || c->state == STWS__C_BACKOFF || c->state == STWS__C_STOPPED ||
            !stws_conn_next_event(c->conn, &ce))
            return 0;
        switch (ce.type) {
        case STWS_CONN_EVENT_OPEN: {
            stws_result r = stws__client_auth(c); /* fields and token were checked: only NOMEM/state */
            c->state = STWS__C_AUTH;
            /* a conn that ended already (its ERROR and CLOSE are next) has its reason */
            if (r != STWS_OK && stws_conn_get_state(c->conn) != STWS_CONN_CLOSED) {
                c->last_error = r;
                stws_conn_abort(c->conn, r, "auth message not sent");
            }
            continue;
        }
        case STWS_CONN_EVENT_PING:
        case STWS_CONN_EVENT_PONG:
        case STWS_CONN_EVENT_MESSAGE: {
            stws_result r;
            c->dead_at = stws__client_now(c) + (uint64_t)c->dead_ms; /* any frame is life */
            if (ce.type != STWS_CONN_EVENT_MESSAGE || ce.opcode != STWS_OP_TEXT)
                continue; /* §8: binary is ignored */
            ev->json.ptr = (const char *)ce.data;
            ev->json.len = ce.len;
            /* one tokenless pass: grammar, limits and the type; look-ups
               walk the checked text.  UTF-8: the codec checked text
               messages already (RFC 6455 §8.1). */
            r = stws__json_event_parse((const char *)ce.data, ce.len, 1, &c->json, c->tokenize_events,
                                       c->max_tokens, &ev->doc, &ev->event_type);
            if (r != STWS_OK) {
                ev->type = STWS_CLIENT_EVENT_MALFORMED;
                ev->result = r;
                stws__log(&c->log, STWS_LOG_WARN, "malformed event ignored: %s", stws_result_string(r));
                return 1;
            }
            ev->type = STWS_CLIENT_EVENT_SERVER;
            if (stws__ieq(ev->event_type.ptr, ev->event_type.len, "connection.ok") && c->state == STWS__C_AUTH) {
                size_t n = 0;
                /* PROTOCOL.md §3: only connection.ok is success */
                if (stws_json_string_at(&ev->doc, "connection_id", c->connection_id, sizeof c->connection_id,
                                        &n) != STWS_OK)
                    c->connection_id[0] = 0;
                c->state = STWS__C_CONNECTED;
                c->ok_at = stws__client_now(c); /* failures reset once it proves healthy */
                c->watchdog_at = 0;
                c->last_error = STWS_OK;
                stws__client_push(c, c->ever_connected ? STWS_CLIENT_EVENT_RECONNECTED : STWS_CLIENT_EVENT_CONNECTED,
                            STWS_OK, 0);
                c->ever_connected = 1;
            } else if (stws__ieq(ev->event_type.ptr, ev->event_type.len, "connection.error")) {
                stws__client_conn_error(c, &ev->doc);
                return 1;
            } else if (!stws__ieq(ev->event_type.ptr, ev->event_type.len, "health.check")) {
                return 1;
            }
            /* connection.ok or health.check: the next check is due in health_ms (§4) */
            if (c->state == STWS__C_CONNECTED) c->health_at = stws__client_now(c) + (uint64_t)c->health_ms;
            return 1;
        }
        case STWS_CONN_EVENT_ERROR:
            if (c->last_error == STWS_OK || c->last_error == STWS_ERR_AUTH_TRANSIENT)
                c->last_error = ce.error;
            stws__copy(c->message, sizeof c->message, stws_conn_error_detail(c->conn));
            continue;
        case STWS_CONN_EVENT_CLOSE: {
            int peer = stws_conn_peer_closed(c->conn);
            if (!c->message[0] || c->last_error == STWS_OK) {
                char why[128]; /* the peer's close reason, escaped */
                stws__copy_safe(why, sizeof why, ce.data, ce.len);
                snprintf(c->message, sizeof c->message, "socket closed (code %d%s%s)", ce.close_code,
                         why[0] ? ": " : "", why);
            }
            stws__client_socket_ended(c, ce.close_code, peer);
            continue;
        }
        default: continue;
        }
    }
}

int stws_client_next_event(stws_client *c, stws_client_event *ev) {
    if (!c || !ev) return 0;
    if (c->depth) return 0; /* inside a callback: the step is delivering */
    if (c->nkept) { /* handlers only: the lifecycle events the step kept */
        *ev = c->kept[0];
        memcpy(c->event_msg, c->kept_msg[0], sizeof c->event_msg);
        ev->message.ptr = c->event_msg;
        ev->message.len = strlen(c->event_msg);
        if (ev->type == STWS_CLIENT_EVENT_CONNECTED || ev->type == STWS_CLIENT_EVENT_RECONNECTED) {
            ev->connection_id.ptr = c->connection_id;
            ev->connection_id.len = strlen(c->connection_id);
        }
        memmove(c->kept, c->kept + 1, (size_t)(c->nkept - 1) * sizeof c->kept[0]);
        memmove(c->kept_msg, c->kept_msg + 1, (size_t)(c->nkept - 1) * sizeof c->kept_msg[0]);
        c->nkept--;
        return 1;
    }
    return stws__client_next(c, ev);
}

/* Keep a lifecycle event for the pull API (the oldest goes when full). */
static void stws__client_keep(stws_client *c, const stws_client_event *ev) {
    int cap = (int)(sizeof c->kept / sizeof c->kept[0]);
    if (c->nkept == cap) {
        memmove(c->kept, c->kept + 1, (size_t)(cap - 1) * sizeof c->kept[0]);
        memmove(c->kept_msg, c->kept_msg + 1, (size_t)(cap - 1) * sizeof c->kept_msg[0]);
        c->nkept--;
    }
    c->kept[c->nkept] = *ev;
    c->kept[c->nkept].message.ptr = NULL; /* views are set again when pulled */
    c->kept[c->nkept].message.len = 0;
    c->kept[c->nkept].connection_id.ptr = NULL;
    c->kept[c->nkept].connection_id.len = 0;
    stws__copy(c->kept_msg[c->nkept], sizeof c->kept_msg[0], ev->message.ptr ? ev->message.ptr : "");
    c->nkept++;
}

/* Push delivery (stws_client_next_event: who sees what).  A callback may
   destroy the client: then nothing more is called. */
static void stws__client_dispatch(stws_client *c) {
    stws_client_event ev;
    while (!c->doomed && stws__client_next(c, &ev)) {
        int i;
        if (c->on_event) {
            c->on_event(c, &ev, c->user_data);
        } else if (ev.type != STWS_CLIENT_EVENT_SERVER && ev.type != STWS_CLIENT_EVENT_MALFORMED) {
            stws__client_keep(c, &ev);
            continue;
        }
        if (ev.type != STWS_CLIENT_EVENT_SERVER) continue;
        for (i = 0; i < c->nhandlers && !c->doomed; i++)
            if (strcmp(c->handlers[i].type, "*") == 0 ||
                stws__ieq(ev.event_type.ptr, ev.event_type.len, c->handlers[i].type))
                c->handlers[i].fn(c, &ev, c->handlers[i].user_data);
    }
}

static void stws__client_free(stws_client *c);
static stws_result stws__client_step(stws_client *c);

stws_result stws_client_step(stws_client *c) {
    stws_result r;
    if (!c) return STWS_ERR_INVALID_ARG;
    if (c->depth) return STWS_ERR_STATE; /* from inside a callback */
    c->depth = 1;
    r = stws__client_step(c);
    c->depth = 0;
    if (c->doomed) { /* stws_client_destroy() inside a callback */
        stws__client_free(c);
        return STWS_ERR_CLOSED;
    }
    return r;
}

static stws_result stws__client_step(stws_client *c) {
    uint64_t now;
    if (c->rc_due) stws__client_reconnecting(c); /* the pull API saw the socket end */
    if (c->doomed) return STWS_ERR_CLOSED;
#ifdef STWS__THREADS
    stws__client_inbox_move(c);
#endif
    now = stws__client_now(c);
    switch (c->state) {
    case STWS__C_BACKOFF:
        if (now >= c->backoff_until) stws__client_attempt(c);
        if (c->doomed) return STWS_ERR_CLOSED;
        break;
    case STWS__C_CONNECTING:
    case STWS__C_AUTH:
        /* PROTOCOL.md §3: no connection.ok in time is a transport failure
           (a closed conn has its CLOSE event on the way already; after a
           fatal connection.error the conn's close timer ends the socket) */
        if (c->watchdog_at && now >= c->watchdog_at && !c->fatal &&
            stws_conn_get_state(c->conn) != STWS_CONN_CLOSED) {
            c->last_error = STWS_ERR_WATCHDOG;
            stws_conn_abort(c->conn, STWS_ERR_WATCHDOG, "connection.ok watchdog");
        }
        break;
    case STWS__C_CONNECTED:
        /* a connection that closed already has its CLOSE event on the way:
           aborting it again would log the old error and overwrite the reason */
        if (stws_conn_get_state(c->conn) == STWS_CONN_CLOSED) break;
        if (c->dead_at && now >= c->dead_at) {
            c->last_error = STWS_ERR_DEAD; /* §4: 35 s of silence */
            stws_conn_abort(c->conn, STWS_ERR_DEAD, "no frame received");
        } else if (c->health_at && now >= c->health_at) {
            stws__client_health(c);
        }
        break;
    default: break;
    }
    if (c->state != STWS__C_BACKOFF && c->state != STWS__C_STOPPED && c->state != STWS__C_IDLE)
        (void)stws_conn_step(c->conn);
    stws__client_queue_pump(c);
    if (c->on_event || c->nhandlers) {
        stws__client_dispatch(c);
        if (c->rc_due && !c->doomed) {
            stws__client_reconnecting(c);
            stws__client_dispatch(c);
        }
    }
    if (c->doomed) return STWS_ERR_CLOSED;
    return c->fatal ? c->last_error : STWS_OK;
}

int stws_client_timeout(const stws_client *c) {
    uint64_t now, cand[3];
    int t, i;
    if (!c) return -1;
    if (c->npending || c->rc_due) return 0; /* kept events need no step */
    if (c->state == STWS__C_STOPPED || c->state == STWS__C_IDLE) return -1;
    now = stws__client_now(c);
    /* in backoff only its own timer counts: there is no socket */
    cand[0] = c->state == STWS__C_BACKOFF ? c->backoff_until : c->watchdog_at;
    cand[1] = c->state == STWS__C_CONNECTED ? c->health_at : 0;
    cand[2] = c->state == STWS__C_CONNECTED ? c->dead_at : 0;
    t = c->state == STWS__C_BACKOFF ? -1 : stws_conn_timeout(c->conn);
    for (i = 0; i < 3; i++) t = stws__sooner(t, stws__ms_until(cand[i], now));
    return t;
}

intptr_t stws_client_handle(const stws_client *c) {
    if (!c || c->state == STWS__C_BACKOFF || c->state == STWS__C_STOPPED) return -1;
    return stws_conn_handle(c->conn);
}

int stws_client_wants(const stws_client *c) {
    if (!c || c->state == STWS__C_BACKOFF || c->state == STWS__C_STOPPED) return STWS_POLL_NONE;
    return stws_conn_wants(c->conn);
}

#ifndef STWS_NO_SOCKETS
/* The wake pair's read end, or STWS__NO_SOCK when there is none. */
static stws__sock stws__client_wake_sock(const stws_client *c) {
#ifdef STWS__THREADS
    return c->wake_fds[0];
#else
    (void)c;
    return STWS__NO_SOCK;
#endif
}

stws_result stws_client_poll(stws_client *c, int timeout_ms) {
    int t;
    intptr_t h;
    if (!c) return STWS_ERR_INVALID_ARG;
    t = stws__sooner(stws_client_timeout(c), timeout_ms); /* see stws_conn_poll */
    h = stws_client_handle(c);
    if (t != 0 && h >= 0)
        (void)stws__sock_wait((stws__sock)h, stws_client_wants(c), stws__client_wake_sock(c), t);
    else if (t > 0) /* backoff: nothing to watch but the timer (and a wake) */
        (void)stws__sock_wait(STWS__NO_SOCK, 0, stws__client_wake_sock(c), t);
    return stws_client_step(c);
}
#endif

stws_result stws_client_connect(stws_client *c) {
    if (!c) return STWS_ERR_INVALID_ARG;
    if (c->state != STWS__C_IDLE && c->state != STWS__C_STOPPED) return STWS_ERR_STATE;
    c->failures = c->retries = 0;
    c->fatal = 0;
    c->user_closed = 0;
    c->retry_after_error = 0;
    c->last_error = STWS_OK;
    c->message[0] = 0;
    /* the first attempt runs in the first step: the token provider is a
       callback, and callbacks run only inside the pump */
    c->state = STWS__C_BACKOFF;
    c->backoff_until = stws__client_now(c);
    return STWS_OK;
}

stws_result stws_client_close(stws_client *c) {
    if (!c) return STWS_ERR_INVALID_ARG;
    if (c->state == STWS__C_IDLE) return STWS_ERR_STATE; /* a CLOSED now would greet the next connect */
    if (c->state == STWS__C_STOPPED || c->user_closed) return STWS_OK;
    c->user_closed = 1; /* wins over backoff and connect (issue: a user close always wins) */
    switch (stws_conn_get_state(c->conn)) {
    case STWS_CONN_OPEN:
    case STWS_CONN_CONNECTING: /* these two just drop the socket */
    case STWS_CONN_HANDSHAKE:
        (void)stws_conn_close(c->conn, STWS_CLOSE_NORMAL, NULL);
        break;
    case STWS_CONN_CLOSING: break;
    default: /* no socket (backoff), or one whose CLOSE event is unread */
        stws__client_queue_settle(c, 1);
        stws__client_push(c, STWS_CLIENT_EVENT_CLOSED, STWS_OK, 0);
        stws__client_stop(c);
    }
    return STWS_OK;
}

const char *stws_client_connection_id(const stws_client *c) { return c ? c->connection_id : ""; }
unsigned stws_client_socket_generation(const stws_client *c) {
    return c ? stws_conn_socket_generation(c->conn) : 0;
}

stws_result stws_client_on(stws_client *c, const char *type, stws_client_event_fn fn, void *ud) {
    if (!c || !type || strlen(type) >= sizeof c->handlers[0].type) return STWS_ERR_INVALID_ARG;
    if (!fn) { /* remove: the order of the others stays */
        int i, n = 0;
        for (i = 0; i < c->nhandlers; i++)
            if (strcmp(c->handlers[i].type, type) != 0) c->handlers[n++] = c->handlers[i];
        if (n == c->nhandlers) return STWS_ERR_INVALID_ARG;
        c->nhandlers = n;
        return STWS_OK;
    }
    if (c->nhandlers == STWS__MAX_HANDLERS) return STWS_ERR_NOMEM;
    stws__copy(c->handlers[c->nhandlers].type, sizeof c->handlers[0].type, type);
    c->handlers[c->nhandlers].fn = fn;
    c->handlers[c->nhandlers].user_data = ud;
    c->nhandlers++;
    return STWS_OK;
}

#if defined(__linux__)
#define STWS__OS_NAME "linux"
#elif defined(__APPLE__)
#define STWS__OS_NAME "darwin"
#elif defined(_WIN32)
#define STWS__OS_NAME "windows"
#else
#define STWS__OS_NAME "embedded"
#endif
/* PROTOCOL.md §1: the default X-Stream-Client, fixed at compile time */
#define STWS__CLIENT_ID "stream-ws-c-v" STWS_VERSION_STRING "|os=" STWS__OS_NAME

/* The connection's log lines, one level down from ERROR: a socket that fails
   is retried, and the client logs ERROR itself when it stops (FATAL). */
static void stws__client_conn_log(stws_log_level level, const char *msg, void *user_data) {
    stws_client *c = (stws_client *)user_data;
    c->log.func(level == STWS_LOG_ERROR ? STWS_LOG_WARN : level, msg, c->log.user_data);
}

/* Every default of stws_client_desc, in one place (desc.conn's are the
   conn's, but for connect_timeout_ms); the hooks get theirs where they are
   made. */
static stws_client_desc stws__client_desc_defaults(const stws_client_desc *in) {
    stws_client_desc d = *in;
    if (!d.url) d.url = STWS_DEFAULT_URL;
    if (!d.client_id) d.client_id = STWS__CLIENT_ID;
    if (d.health_interval_ms <= 0) d.health_interval_ms = STWS_DEFAULT_HEALTH_INTERVAL_MS;
    if (d.dead_timeout_ms <= 0) d.dead_timeout_ms = STWS_DEFAULT_DEAD_TIMEOUT_MS;
    if (d.watchdog_ms <= 0) d.watchdog_ms = STWS_DEFAULT_WATCHDOG_MS;
    if (d.backoff_cap_ms <= 0) d.backoff_cap_ms = STWS_DEFAULT_BACKOFF_CAP_MS;
    if (d.max_attempts < 0) d.max_attempts = 0;
    if (!d.send_queue_limit) d.send_queue_limit = STWS_DEFAULT_SEND_QUEUE_LIMIT;
    if (!d.conn.max_message_size) d.conn.max_message_size = STWS_DEFAULT_MAX_MESSAGE_SIZE;
    /* a token takes at least one byte: by default max_message_size is the
       only limit, so every event the size limit admits is parsed */
    if (d.max_json_tokens <= 0) d.max_json_tokens = (int)STWS__MIN(d.conn.max_message_size, (size_t)0x7FFFFFFF);
    if (d.conn.connect_timeout_ms <= 0) d.conn.connect_timeout_ms = d.watchdog_ms;
    return d;
}

stws_client *stws_client_create(const stws_client_desc *user_desc) {
    stws_client_desc dd;
    const stws_client_desc *desc = &dd;
    stws_allocator a;
    stws_logger lg;
    stws_client *c;
    stws_conn_desc cd;
    stws__sb b;
    size_t total = 0, k, auth_cap;
    char *p;
    const char *src[10];
    const char **dst[10];
    int nsrc = 0, sources;
    if (!user_desc) return NULL;
    dd = stws__client_desc_defaults(user_desc);
    lg = stws__logger_def(&desc->logger);
    if (!desc->api_key || !desc->user_id || !*desc->api_key || !*desc->user_id) {
        stws__log(&lg, STWS_LOG_ERROR, "client: api_key and user_id are required");
        return NULL;
    }
    sources = (desc->token != NULL) + (desc->api_secret != NULL) + (desc->token_provider.fetch != NULL);
    if (sources != 1) {
        stws__log(&lg, STWS_LOG_ERROR, "client: give exactly one of token, api_secret, token_provider");
        return NULL;
    }
    if (desc->token && !stws__jwt_ok(desc->token, strlen(desc->token))) {
        stws__log(&lg, STWS_LOG_ERROR, "client: token empty, too long or not a JWT");
        return NULL;
    }
    a = stws__allocator_def(&desc->allocator);
    c = (stws_client *)stws__alloc(&a, sizeof *c);
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->alloc = a;
    c->log = lg;
    c->clock = desc->clock;
#ifdef STWS__THREADS
    c->wake_fds[0] = c->wake_fds[1] = STWS__NO_SOCK;
    if (stws__mutex_init(&c->in_mu) != 0) {
        stws__log(&lg, STWS_LOG_ERROR, "client: cannot make the post inbox's mutex");
        goto fail;
    }
    c->in_mu_ok = 1;
    if (stws__notify_open(c->wake_fds) != 0) /* no wake: stws_client_poll() waits for its timeout */
        stws__log(&lg, STWS_LOG_WARN, "client: no wake pipe (out of descriptors?)");
#endif
#ifndef STWS_NO_SOCKETS
    if (!c->clock.now_ms) c->clock.now_ms = stws__default_now_ms;
    if (!c->clock.unix_s) c->clock.unix_s = stws__default_unix_s;
#endif
    if (!c->clock.now_ms) goto fail;
    /* one block for every string the client keeps */
#define STWS__KEEP(field, value) do { src[nsrc] = (value); dst[nsrc] = &c->field; nsrc++; } while (0)
    STWS__KEEP(api_key, desc->api_key);
    STWS__KEEP(user_id, desc->user_id);
    STWS__KEEP(user_name, desc->user_name);
    STWS__KEEP(user_image, desc->user_image);
    STWS__KEEP(user_custom, desc->user_custom_json);
    STWS__KEEP(static_token, desc->token);
    STWS__KEEP(secret, desc->api_secret);
    STWS__KEEP(products, desc->products);
    STWS__KEEP(client_id, desc->client_id);
    STWS__KEEP(base_url, desc->url);
#undef STWS__KEEP
    for (k = 0; k < (size_t)nsrc; k++) total += src[k] ? strlen(src[k]) + 1 : 0;
    c->strings = (char *)stws__alloc(&a, total);
    if (!c->strings) goto fail;
    c->strings_len = total;
    for (p = c->strings, k = 0; k < (size_t)nsrc; k++) {
        if (!src[k]) continue;
        memcpy(p, src[k], strlen(src[k]) + 1);
        *dst[k] = p;
        p += strlen(src[k]) + 1;
    }
    c->provider = desc->token_provider;
    if (c->static_token) stws__copy(c->token, sizeof c->token, c->static_token);
    c->health_ms = desc->health_interval_ms;
    c->dead_ms = desc->dead_timeout_ms;
    c->watchdog_ms = desc->watchdog_ms;
    c->cap_ms = desc->backoff_cap_ms;
    c->max_attempts = desc->max_attempts;
    c->queue_limit = desc->send_queue_limit;
    c->max_tokens = desc->max_json_tokens;
    c->tokenize_events = desc->tokenize_events != 0;
    c->json.allocator = c->alloc;
    c->on_reconnecting = desc->on_reconnecting;
    c->on_event = desc->on_event;
    c->user_data = desc->user_data;
    if (stws__random_init(&a, &desc->random, &c->random, &c->drbg) != 0) {
        stws__log(&lg, STWS_LOG_ERROR, "client: %s", STWS__NO_RANDOM);
        goto fail;
    }

    /* PROTOCOL.md §2: custom is an object; every field must make valid JSON,
       or each attempt would fail the same way.  Built without a buffer, the
       auth message is measured: with an empty token, as a token is written
       as is (stws__jwt_ok: no character needs an escape). */
    k = c->user_custom ? strspn(c->user_custom, " \t\r\n") : 0;
    if ((c->user_custom && c->user_custom[k] != '{') ||
        stws__client_auth_build(c, "", &auth_cap) != STWS_ERR_BUFFER_TOO_SMALL) {
        stws__log(&lg, STWS_LOG_ERROR, "client: user_custom_json is not a JSON object, or a user field is not UTF-8");
        goto fail;
    }
    auth_cap += STWS__MAX_TOKEN; /* the longest token and the NUL */

    /* The scratch buffer holds the auth message; first it holds the connect
       URL, which the conn copies.  PROTOCOL.md §1:
       ?api_key=..&stream-auth-type=jwt&X-Stream-Client=.. */
    b.buf = NULL;
    b.cap = 0;
    for (k = 0; k < 2; k++) {
        b.len = 0;
        stws__sb_puts(&b, c->base_url);
        stws__sb_puts(&b, strchr(c->base_url, '?') ? "&api_key=" : "?api_key=");
        stws__sb_form(&b, c->api_key);
        stws__sb_puts(&b, "&stream-auth-type=jwt&X-Stream-Client=");
        stws__sb_form(&b, c->client_id);
        if (k == 0) {
            c->scratch_cap = STWS__MAX(auth_cap, b.len + 1);
            c->scratch = (char *)stws__alloc(&a, c->scratch_cap);
            if (!c->scratch) goto fail;
            b.buf = c->scratch;
            b.cap = c->scratch_cap;
        }
    }
    c->scratch[b.len] = 0;

    cd = desc->conn; /* then what the client owns */
    cd.url = c->scratch;
    cd.on_event = NULL; /* the client pulls its conn's events */
    cd.user_data = NULL;
    cd.allocator = a;
    cd.logger.func = stws__client_conn_log; /* the client decides what is an error */
    cd.logger.user_data = c;
    cd.clock = c->clock;
    cd.random = c->random;
    c->conn = stws_conn_create(&cd);
    if (!c->conn) {
        stws__log(&lg, STWS_LOG_ERROR, "client: connection options refused (see above)");
        goto fail;
    }
    c->state = STWS__C_IDLE;
    return c;
fail:
    stws_client_destroy(c);
    return NULL;
}

void stws_client_destroy(stws_client *c) {
    if (!c) return;
    if (c->depth) { /* inside a callback: the step frees it on its way out */
        c->doomed = 1;
        return;
    }
    stws__client_free(c);
}

static void stws__client_free(stws_client *c) {
    stws_allocator a = c->alloc;
    stws_conn_destroy(c->conn);
    stws__random_free(&a, &c->drbg);
    if (c->strings) mbedtls_platform_zeroize(c->strings, c->strings_len); /* the secret, a token */
    stws__free(&a, c->strings);
    stws__free(&a, c->scratch);
    stws__free(&a, c->q);
#ifdef STWS__THREADS
    if (c->in_mu_ok) stws__mutex_destroy(&c->in_mu);
    stws__notify_close(c->wake_fds);
    if (c->in) mbedtls_platform_zeroize(c->in, c->in_cap);
    stws__free(&a, c->in);
#endif
    stws_json_tokens_free(&c->json);
    mbedtls_platform_zeroize(c, sizeof *c);
    stws__free(&a, c);
}

#endif /* STREAM_WS_IMPLEMENTATION_DONE */
#endif /* STREAM_WS_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
MIT License

Copyright (c) 2026 the stream_ws.h authors

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
*/
