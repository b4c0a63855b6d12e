/* stream_ws.h - v0.1.0 - RFC 6455 WebSocket client for Stream's real-time events - MIT license (end of file)

   A single-header C library: a sans-I/O RFC 6455 codec and HTTP/1.1 upgrade
   handshake, with the rest of a Stream real-time client built on top of it.

   HOW TO INCLUDE
       In exactly one C or C++ file:
           #define STREAM_WS_IMPLEMENTATION
           #include "stream_ws.h"
       Everywhere else just #include "stream_ws.h".
       Link with mbedTLS:  -lmbedtls -lmbedx509 -lmbedcrypto
       (Debian: libmbedtls-dev; 2.28 and 3.x both work.)

   CONFIGURATION MACROS (define before including the implementation)
       STWS_STATIC        make every function static (private copy per TU)
       STWS_API           linkage of public functions (default: extern, or
                          static with STWS_STATIC)
       STWS_ASSERT(c)     assertion used for internal invariants
                          (default: assert() from <assert.h>)
       STWS_NO_STDIO      no default logger to stderr; without a logger hook
                          errors are still returned as stws_result values
       STWS_MAX_URL       longest accepted URL in bytes (default 2048)

   TL;DR: THE SANS-I/O CODEC (you own the socket)

       stws_codec *c = stws_codec_create(NULL);          // defaults
       stws_codec_send(c, STWS_OP_TEXT, "hi", 2);        // queue a masked frame
       size_t n; const uint8_t *out = stws_codec_output(c, &n);
       n = my_write(fd, out, n); stws_codec_output_consumed(c, n);
       // when bytes arrive:
       size_t off = 0;
       while (off < got) {
           size_t used; stws_codec_event ev;
           stws_result r = stws_codec_parse(c, buf + off, got - off, &used, &ev);
           off += used;
           if (r < 0) { fail(stws_result_string(r), ev.close_code); break; }
           if (ev.type == STWS_EVENT_MESSAGE) handle(ev.data, ev.len);
       }
       // after every parse call: flush stws_codec_output() (pongs and close
       // replies are generated inside the codec, RFC 6455 §5.5.2/§5.5.1).
       stws_codec_destroy(c);

   ALLOCATION
       All memory comes from the desc's allocator (default malloc/free).
       stws_codec_create() makes 2 allocations (the codec, the random
       generator unless a random hook is given).  The reassembly buffer and
       the output buffer grow to the largest message seen (never past the
       limits) and are then reused: no allocation per message in steady
       state.  stws_codec_reset() keeps them for the next connection.
       The URL parser and the handshake functions never allocate.

   THREADING
       No globals, no thread-locals.  One object must not be used from two
       threads at once; distinct objects are independent.

   ERRORS
       Every fallible function returns a stws_result: 0 is success, positive
       values are informational (STWS_INCOMPLETE: feed more bytes), negative
       values are errors grouped by layer.  stws_result_string() names them.
       A codec failure is sticky and carries the close code it sent.

   LIMITS (runtime, in the desc; 0 means the default below)
       max_frame_size     16 MiB   frame payload; more -> 1009
       max_message_size   16 MiB   reassembled message; more -> 1009
       max_output_size    64 MiB   queued, unsent output bytes
       handshake response 16 KiB   (STWS_HANDSHAKE_MAX_RESPONSE)

   VERSION HISTORY
       0.1.0  (2026-11)  codec, URL parser, upgrade handshake
*/
#ifndef STREAM_WS_H
#define STREAM_WS_H

#define STWS_VERSION_MAJOR 0
#define STWS_VERSION_MINOR 1
#define STWS_VERSION_PATCH 0
#define STWS_VERSION_STRING "0.1.0"

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

    /* general: -1 .. -19 */
    STWS_ERR_INVALID_ARG = -1,
    STWS_ERR_NOMEM = -2,
    STWS_ERR_STATE = -3,            /* call not allowed in this state */
    STWS_ERR_OUTPUT_FULL = -4,      /* max_output_size reached */
    STWS_ERR_BUFFER_TOO_SMALL = -5,
    STWS_ERR_RANDOM = -6,           /* the random source failed */
    STWS_ERR_CLOSED = -7,           /* the connection is closed */

    /* URL: -20 .. -39 */
    STWS_ERR_URL_SCHEME = -20,      /* not ws:// or wss:// */
    STWS_ERR_URL_HOST = -21,        /* empty or malformed host */
    STWS_ERR_URL_PORT = -22,        /* not a number, 0, or > 65535 */
    STWS_ERR_URL_FRAGMENT = -23,    /* '#' is forbidden, RFC 6455 §3 */
    STWS_ERR_URL_CHAR = -24,        /* control character, space or non-ASCII */
    STWS_ERR_URL_TOO_LONG = -25,    /* longer than STWS_MAX_URL */
    STWS_ERR_URL_USERINFO = -26,    /* user:pass@ is not supported */

    /* framing, RFC 6455 §5 (close code in brackets): -40 .. -59 */
    STWS_ERR_RESERVED_BITS = -40,   /* RSV1-3 without extension [1002] */
    STWS_ERR_RESERVED_OPCODE = -41, /* [1002] */
    STWS_ERR_MASKED_FRAME = -42,    /* server frames must not be masked [1002] */
    STWS_ERR_BAD_LENGTH = -43,      /* 64-bit length with MSB set [1002] */
    STWS_ERR_CONTROL_TOO_LONG = -44,/* control payload > 125 [1002] */
    STWS_ERR_CONTROL_FRAGMENTED = -45, /* [1002] */
    STWS_ERR_UNEXPECTED_CONTINUATION = -46, /* no message to continue [1002] */
    STWS_ERR_EXPECTED_CONTINUATION = -47,   /* new message inside one [1002] */
    STWS_ERR_BAD_CLOSE_PAYLOAD = -48,   /* 1-byte close payload [1002] */
    STWS_ERR_BAD_CLOSE_CODE = -49,  /* [1002] */
    STWS_ERR_INVALID_UTF8 = -50,    /* text or close reason [1007] */
    STWS_ERR_FRAME_TOO_BIG = -51,   /* [1009] */
    STWS_ERR_MESSAGE_TOO_BIG = -52, /* [1009] */

    /* opening handshake, RFC 6455 §4: -60 .. -79 */
    STWS_ERR_HANDSHAKE_TOO_BIG = -60,    /* response header > limit */
    STWS_ERR_HANDSHAKE_MALFORMED = -61,  /* not HTTP/1.1 syntax */
    STWS_ERR_HANDSHAKE_STATUS = -62,     /* status is not 101 */
    STWS_ERR_HANDSHAKE_UPGRADE = -63,    /* Upgrade: websocket missing */
    STWS_ERR_HANDSHAKE_CONNECTION = -64, /* Connection: upgrade missing */
    STWS_ERR_HANDSHAKE_ACCEPT = -65,     /* Sec-WebSocket-Accept wrong */
    STWS_ERR_HANDSHAKE_EXTENSION = -66,  /* extension not requested */
    STWS_ERR_HANDSHAKE_SUBPROTOCOL = -67,/* subprotocol not requested */
    STWS_ERR_HEADER_VALUE = -68          /* CR, LF or NUL in a request field */
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
   mbedTLS's entropy source, one generator per object. */
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

/* Logger: message is one line without a newline. Never receives secrets.
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
#define STWS_HANDSHAKE_MAX_RESPONSE (16 * 1024)

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
    size_t max_response_size;         /* 0 = STWS_HANDSHAKE_MAX_RESPONSE */
} stws_handshake_desc;

typedef struct stws_handshake_response {
    int status;             /* HTTP status code (once the status line parsed) */
    size_t header_size;     /* bytes of the header block incl. the empty line;
                               what follows belongs to the codec */
    stws_str location;      /* Location header for 3xx, else empty */
    stws_str subprotocol;   /* Sec-WebSocket-Protocol chosen by the server */
} stws_handshake_response;

/* Fill key with a fresh Sec-WebSocket-Key: base64 of 16 random bytes (§4.1). */
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

#define STWS_DEFAULT_MAX_FRAME_SIZE ((size_t)16 << 20)
#define STWS_DEFAULT_MAX_MESSAGE_SIZE ((size_t)16 << 20)
#define STWS_DEFAULT_MAX_OUTPUT_SIZE ((size_t)64 << 20)

typedef struct stws_codec_desc {
    size_t max_frame_size;     /* 0 = STWS_DEFAULT_MAX_FRAME_SIZE */
    size_t max_message_size;   /* 0 = STWS_DEFAULT_MAX_MESSAGE_SIZE */
    size_t max_output_size;    /* 0 = STWS_DEFAULT_MAX_OUTPUT_SIZE */
    stws_allocator allocator;  /* default malloc/free */
    stws_random random;        /* default: own CTR-DRBG */
} stws_codec_desc;

typedef enum stws_codec_state {
    STWS_CODEC_OPEN = 0,
    STWS_CODEC_CLOSING,        /* we sent a close frame, waiting for the peer's */
    STWS_CODEC_CLOSED,         /* both close frames exchanged: close the socket */
    STWS_CODEC_FAILED          /* protocol failure: flush output, close the socket */
} stws_codec_state;

typedef enum stws_event_type {
    STWS_EVENT_NONE = 0,       /* all input consumed, nothing complete yet */
    STWS_EVENT_MESSAGE,        /* a whole text or binary message */
    STWS_EVENT_PING,           /* a pong has been queued already */
    STWS_EVENT_PONG,
    STWS_EVENT_CLOSE,          /* the peer's close; the reply is queued */
    STWS_EVENT_ERROR           /* failure; the close frame is queued */
} stws_event_type;

/* One event from the codec.  data/len are valid until the next call on the
   codec, and (for messages delivered without a copy) while the input buffer
   given to stws_codec_parse() is unchanged. */
typedef struct stws_codec_event {
    stws_event_type type;
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
   (event in *ev, possibly STWS_EVENT_NONE) or a negative error, in which case
   ev->type is STWS_EVENT_ERROR, ev->close_code the close code queued for the
   peer, and every later call returns the same error.  Flush the output after
   every call. */
STWS_API stws_result stws_codec_parse(stws_codec *codec, const void *in,
                                      size_t len, size_t *used,
                                      stws_codec_event *ev);

/* Queue one whole message or control frame, masked with a fresh key.
   Text must be valid UTF-8 (STWS_ERR_INVALID_UTF8); control payloads at most
   125 bytes (STWS_ERR_INVALID_ARG); STWS_ERR_OUTPUT_FULL when the queued
   output would pass max_output_size; STWS_ERR_STATE after a close was sent. */
STWS_API stws_result stws_codec_send(stws_codec *codec, stws_opcode opcode,
                                     const void *data, size_t len);

/* Queue a close frame (§5.5.1).  code 0 sends no status; reason must be valid
   UTF-8 and at most 123 bytes. */
STWS_API stws_result stws_codec_close(stws_codec *codec, int code,
                                      const char *reason, size_t reason_len);

/* The bytes waiting to be written: *len receives their count. */
STWS_API const uint8_t *stws_codec_output(const stws_codec *codec, size_t *len);
/* Tell the codec that n bytes of its output were written. */
STWS_API void stws_codec_output_consumed(stws_codec *codec, size_t n);

STWS_API stws_codec_state stws_codec_get_state(const stws_codec *codec);

/* True when a close code may appear in a close frame (§7.4, IANA registry). */
STWS_API int stws_close_code_valid(int code);

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
#ifndef STWS_NO_STDIO
#include <stdio.h>
#endif
#ifndef STWS_ASSERT
#include <assert.h>
#define STWS_ASSERT(c) assert(c)
#endif

#include <mbedtls/version.h>
#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/platform_util.h>

/* ==== util ================================================================ */

#define STWS__MIN(a, b) ((a) < (b) ? (a) : (b))
#define STWS__MAX(a, b) ((a) > (b) ? (a) : (b))

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

const char *stws_result_string(stws_result r) {
    switch (r) {
    case STWS_OK: return "ok";
    case STWS_INCOMPLETE: return "incomplete: more input needed";
    case STWS_ERR_INVALID_ARG: return "invalid argument";
    case STWS_ERR_NOMEM: return "out of memory";
    case STWS_ERR_STATE: return "not allowed in this state";
    case STWS_ERR_OUTPUT_FULL: return "output queue full";
    case STWS_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case STWS_ERR_RANDOM: return "random source failed";
    case STWS_ERR_CLOSED: return "connection closed";
    case STWS_ERR_URL_SCHEME: return "URL scheme is not ws:// or wss://";
    case STWS_ERR_URL_HOST: return "URL host is empty or malformed";
    case STWS_ERR_URL_PORT: return "URL port is invalid or out of range";
    case STWS_ERR_URL_FRAGMENT: return "URL has a fragment (forbidden by RFC 6455 section 3)";
    case STWS_ERR_URL_CHAR: return "URL contains a control, space or non-ASCII character";
    case STWS_ERR_URL_TOO_LONG: return "URL is too long";
    case STWS_ERR_URL_USERINFO: return "URL user information is not supported";
    case STWS_ERR_RESERVED_BITS: return "reserved bits set without a negotiated extension";
    case STWS_ERR_RESERVED_OPCODE: return "reserved opcode";
    case STWS_ERR_MASKED_FRAME: return "masked frame from the server";
    case STWS_ERR_BAD_LENGTH: return "invalid 64-bit payload length";
    case STWS_ERR_CONTROL_TOO_LONG: return "control frame payload over 125 bytes";
    case STWS_ERR_CONTROL_FRAGMENTED: return "fragmented control frame";
    case STWS_ERR_UNEXPECTED_CONTINUATION: return "continuation frame without a message to continue";
    case STWS_ERR_EXPECTED_CONTINUATION: return "new data frame inside a fragmented message";
    case STWS_ERR_BAD_CLOSE_PAYLOAD: return "close frame with a 1-byte payload";
    case STWS_ERR_BAD_CLOSE_CODE: return "invalid close code";
    case STWS_ERR_INVALID_UTF8: return "invalid UTF-8";
    case STWS_ERR_FRAME_TOO_BIG: return "frame larger than max_frame_size";
    case STWS_ERR_MESSAGE_TOO_BIG: return "message larger than max_message_size";
    case STWS_ERR_HANDSHAKE_TOO_BIG: return "handshake response header too big";
    case STWS_ERR_HANDSHAKE_MALFORMED: return "malformed handshake response";
    case STWS_ERR_HANDSHAKE_STATUS: return "handshake status is not 101";
    case STWS_ERR_HANDSHAKE_UPGRADE: return "handshake response lacks Upgrade: websocket";
    case STWS_ERR_HANDSHAKE_CONNECTION: return "handshake response lacks Connection: upgrade";
    case STWS_ERR_HANDSHAKE_ACCEPT: return "Sec-WebSocket-Accept does not match the key";
    case STWS_ERR_HANDSHAKE_EXTENSION: return "server chose an extension that was not requested";
    case STWS_ERR_HANDSHAKE_SUBPROTOCOL: return "server chose a subprotocol that was not requested";
    case STWS_ERR_HEADER_VALUE: return "CR, LF, NUL or invalid character in a request header";
    }
    return "unknown result";
}

/* ---- default random: CTR-DRBG seeded from mbedTLS's entropy source ------- */

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

static int stws__sha1(const unsigned char *in, size_t len, unsigned char out[20]) {
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
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
        if (he >= pe || he == hs || colons < 2) return STWS_ERR_URL_HOST;
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
    if (random && random->fill) {
        rc = random->fill(raw, sizeof raw, random->user_data);
    } else {
        stws__drbg d;
        rc = stws__drbg_init(&d);
        if (rc == 0) rc = stws__drbg_fill(raw, sizeof raw, &d);
        stws__drbg_free(&d);
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
static int stws__field_ok(const char *v) {
    for (; *v; v++)
        if (*v == '\r' || *v == '\n') return 0;
    return 1;
}
static int stws__token_ok(const char *v) {
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
    if (!stws__token_ok(key)) return STWS_ERR_HEADER_VALUE;
    if (desc) {
        if (desc->origin && !stws__field_ok(desc->origin)) return STWS_ERR_HEADER_VALUE;
        if (desc->num_subprotocols < 0 || desc->num_headers < 0) return STWS_ERR_INVALID_ARG;
        for (i = 0; i < desc->num_subprotocols; i++)
            if (!desc->subprotocols[i] || !stws__token_ok(desc->subprotocols[i]))
                return STWS_ERR_HEADER_VALUE;
        for (i = 0; i < desc->num_headers; i++) {
            const stws_header *h = &desc->headers[i];
            if (!h->name || !h->value || !stws__token_ok(h->name) || !stws__field_ok(h->value))
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
static int stws__list_has(const char *v, size_t n, const char *t) {
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
                                                   : STWS_HANDSHAKE_MAX_RESPONSE;
    size_t end = 0, i, line_end;
    int have_upgrade = 0, have_conn = 0, accept_count = 0, accept_ok = 0;
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
            have_upgrade = stws__ieq(val, vlen, "websocket");
        } else if (stws__ieq(name, nlen, "connection")) {
            if (stws__list_has(val, vlen, "upgrade")) have_conn = 1;
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
        } else if (stws__ieq(name, nlen, "location")) {
            out->location.ptr = val;
            out->location.len = vlen;
        }
    }
    if (out->status / 100 != 3) out->location.ptr = NULL, out->location.len = 0;
    if (out->status != 101) return STWS_ERR_HANDSHAKE_STATUS;
    if (!have_upgrade) return STWS_ERR_HANDSHAKE_UPGRADE;
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
    uint64_t frame_len, remaining;

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
    uint8_t keys[64];            /* masking keys are drawn in batches */
    size_t key_pos;
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
    if (d.random.fill) {
        c->random = d.random;
    } else if (!(c->drbg = stws__drbg_create(&a, &c->random))) {
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
    if (c->drbg) {
        stws__drbg_free(c->drbg);
        stws__free(&a, c->drbg);
    }
    stws__free(&a, c->msg);
    stws__free(&a, c->out);
    mbedtls_platform_zeroize(c, sizeof *c);
    stws__free(&a, c);
}

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

/* Make room for n more output bytes: compact first, grow only if needed. */
static int stws__out_reserve(stws_codec *c, size_t n) {
    size_t pending = c->out_len - c->out_head;
    if (c->out_cap - c->out_len >= n) return 1;
    if (c->out_head) {
        memmove(c->out, c->out + c->out_head, pending);
        c->out_head = 0;
        c->out_len = pending;
        if (c->out_cap - c->out_len >= n) return 1;
    }
    {
        size_t want = STWS__MAX(pending + n, c->out_cap * 2);
        uint8_t *nb;
        if (want < 256) want = 256;
        nb = (uint8_t *)stws__alloc(&c->alloc, want);
        if (!nb) return 0;
        if (pending) memcpy(nb, c->out, pending);
        stws__free(&c->alloc, c->out);
        c->out = nb;
        c->out_cap = want;
    }
    return 1;
}

/* XOR-copy with the 4-byte key (§5.3), a machine word at a time. */
static void stws__mask_copy(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4]) {
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

static stws_result stws__queue_frame(stws_codec *c, int opcode, const void *data, size_t len,
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
    if (!stws__out_reserve(c, hlen + 4 + len)) return STWS_ERR_NOMEM;
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
        uint64_t l = (uint64_t)len;
        h[1] = 0x80 | 127;
        for (k = 0; k < 8; k++) h[2 + k] = (uint8_t)(l >> (56 - 8 * k));
    }
    memcpy(h + hlen, key, 4);
    if (len) stws__mask_copy(h + hlen + 4, (const uint8_t *)data, len, key);
    c->out_len += hlen + 4 + len;
    return STWS_OK;
}

static stws_result stws__queue_close(stws_codec *c, int code, const char *reason, size_t rlen,
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
    r = stws__queue_frame(c, STWS_OP_CLOSE, p, n, limit);
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
    return stws__queue_frame(c, op, data, len, c->max_output);
}

stws_result stws_codec_close(stws_codec *c, int code, const char *reason, size_t rlen) {
    uint32_t st = 0;
    if (!c || (!reason && rlen)) return STWS_ERR_INVALID_ARG;
    if (c->close_sent || c->state != STWS_CODEC_OPEN) return STWS_ERR_STATE;
    if ((code && !stws_close_code_valid(code)) || (!code && rlen) || rlen > 123)
        return STWS_ERR_INVALID_ARG;
    if (stws_utf8_validate(&st, reason, rlen) != rlen || st) return STWS_ERR_INVALID_UTF8;
    {
        stws_result r = stws__queue_close(c, code, reason, rlen, c->max_output + STWS__CONTROL_SLACK);
        if (r == STWS_OK) c->state = STWS_CODEC_CLOSING;
        return r;
    }
}

const uint8_t *stws_codec_output(const stws_codec *c, size_t *len) {
    *len = c->out_len - c->out_head;
    return c->out + c->out_head;
}

void stws_codec_output_consumed(stws_codec *c, size_t n) {
    STWS_ASSERT(n <= c->out_len - c->out_head);
    c->out_head += n;
    if (c->out_head == c->out_len) c->out_head = c->out_len = 0;
}

/* ---- receive ------------------------------------------------------------- */

/* Fail the connection (§7.1.7): queue a close with the code, once. */
static stws_result stws__fail(stws_codec *c, stws_result err, int close_code,
                              stws_codec_event *ev) {
    c->state = STWS_CODEC_FAILED;
    c->error = err;
    c->error_close = close_code;
    if (!c->close_sent) (void)stws__queue_close(c, close_code, NULL, 0, (size_t)-1);
    ev->type = STWS_EVENT_ERROR;
    ev->error = err;
    ev->close_code = close_code;
    return err;
}

/* Check what can be known from the first two header bytes, as soon as they
   arrive, so that a bad frame fails before its payload (fail fast). */
static stws_result stws__check_b0(stws_codec *c, uint8_t b0, int *close_code) {
    int op = b0 & 0x0F;
    *close_code = STWS_CLOSE_PROTOCOL_ERROR;
    if (b0 & 0x70) return STWS_ERR_RESERVED_BITS; /* §5.2: no extension negotiated */
    if ((op >= 3 && op <= 7) || op >= 0xB) return STWS_ERR_RESERVED_OPCODE;
    if (op >= 8 && !(b0 & 0x80)) return STWS_ERR_CONTROL_FRAGMENTED; /* §5.5 */
    if (op == STWS_OP_CONTINUATION && !c->msg_active) return STWS_ERR_UNEXPECTED_CONTINUATION;
    if ((op == STWS_OP_TEXT || op == STWS_OP_BINARY) && c->msg_active)
        return STWS_ERR_EXPECTED_CONTINUATION; /* §5.4 */
    return STWS_OK;
}

static int stws__grow_msg(stws_codec *c, size_t need) {
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
static stws_result stws__control_done(stws_codec *c, stws_codec_event *ev) {
    ev->data = c->ctrl;
    ev->len = c->ctrl_len;
    if (c->opcode == STWS_OP_PING) {
        ev->type = STWS_EVENT_PING;
        /* §5.5.2: answer with a pong carrying the same payload, unless we
           already sent a close (§5.5.1: nothing may follow it). */
        if (!c->close_sent) {
            stws_result r = stws__queue_frame(c, STWS_OP_PONG, c->ctrl, c->ctrl_len,
                                              c->max_output + STWS__CONTROL_SLACK);
            if (r == STWS_ERR_OUTPUT_FULL) return stws__fail(c, r, STWS_CLOSE_POLICY, ev);
            if (r != STWS_OK) return stws__fail(c, r, STWS_CLOSE_ABNORMAL, ev);
        }
        return STWS_OK;
    }
    if (c->opcode == STWS_OP_PONG) {
        ev->type = STWS_EVENT_PONG;
        return STWS_OK;
    }
    /* close (§5.5.1, §7.1.5) */
    if (c->ctrl_len == 1) return stws__fail(c, STWS_ERR_BAD_CLOSE_PAYLOAD, STWS_CLOSE_PROTOCOL_ERROR, ev);
    ev->close_code = STWS_CLOSE_NO_STATUS;
    if (c->ctrl_len >= 2) {
        uint32_t st = 0;
        int code = c->ctrl[0] << 8 | c->ctrl[1];
        if (!stws_close_code_valid(code))
            return stws__fail(c, STWS_ERR_BAD_CLOSE_CODE, STWS_CLOSE_PROTOCOL_ERROR, ev);
        if (stws_utf8_validate(&st, c->ctrl + 2, c->ctrl_len - 2) != c->ctrl_len - 2 || st)
            return stws__fail(c, STWS_ERR_INVALID_UTF8, STWS_CLOSE_INVALID_DATA, ev);
        ev->close_code = code;
        ev->data = c->ctrl + 2;
        ev->len = c->ctrl_len - 2;
    }
    ev->type = STWS_EVENT_CLOSE;
    if (!c->close_sent) {
        /* echo the status code (§5.5.1); an empty close is echoed empty */
        stws_result r = stws__queue_close(c, c->ctrl_len >= 2 ? ev->close_code : 0, NULL, 0,
                                          (size_t)-1);
        if (r != STWS_OK) return stws__fail(c, r, STWS_CLOSE_ABNORMAL, ev);
    }
    c->state = STWS_CODEC_CLOSED;
    return STWS_OK;
}

stws_result stws_codec_parse(stws_codec *c, const void *in_, size_t len, size_t *used,
                             stws_codec_event *ev) {
    const uint8_t *in = (const uint8_t *)in_;
    size_t pos = 0;
    int cc = 0;
    stws_result r = STWS_OK;
    if (!c || !used || !ev || (!in && len)) return STWS_ERR_INVALID_ARG;
    memset(ev, 0, sizeof *ev);
    *used = 0;
    if (c->state == STWS_CODEC_FAILED) {
        ev->type = STWS_EVENT_ERROR;
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
                if ((r = stws__check_b0(c, b, &cc)) != STWS_OK) break;
                continue;
            }
            if (c->hdr_len == 2) {
                cc = STWS_CLOSE_PROTOCOL_ERROR;
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
                    if (c->hdr[2] & 0x80) { r = STWS_ERR_BAD_LENGTH; cc = STWS_CLOSE_PROTOCOL_ERROR; break; }
                    for (fl = 0, k = 0; k < 8; k++) fl = fl << 8 | c->hdr[2 + k];
                }
                c->fin = c->hdr[0] >> 7;
                c->opcode = c->hdr[0] & 0x0F;
                c->frame_len = c->remaining = fl;
                c->hdr_len = 0;
                c->in_payload = 1;
                cc = STWS_CLOSE_TOO_BIG;
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
            }
        }
        /* payload */
        {
            size_t avail = (size_t)STWS__MIN((uint64_t)(len - pos), c->remaining);
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
                        cc = STWS_CLOSE_INVALID_DATA;
                        break;
                    }
                }
                if (whole) {
                    /* unfragmented and all here: a view into the input, no copy */
                    ev->data = src;
                } else {
                    if (!stws__grow_msg(c, c->msg_len + avail)) { r = STWS_ERR_NOMEM; cc = STWS_CLOSE_ABNORMAL; break; }
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
            r = stws__control_done(c, ev);
            *used = pos;
            return r;
        }
        if (!c->fin) {
            c->msg_active = 1;
            continue;
        }
        if (c->msg_opcode == STWS_OP_TEXT && c->utf8) { /* truncated sequence at the end */
            r = STWS_ERR_INVALID_UTF8;
            cc = STWS_CLOSE_INVALID_DATA;
            break;
        }
        c->msg_active = 0;
        ev->type = STWS_EVENT_MESSAGE;
        ev->opcode = (stws_opcode)c->msg_opcode;
        if (ev->data) {
            ev->len = (size_t)c->frame_len;
        } else {
            ev->data = c->msg;
            ev->len = c->msg_len;
            c->reset_msg = 1;
        }
        *used = pos;
        return STWS_OK;
    }
    *used = pos;
    if (r != STWS_OK) return stws__fail(c, r, cc, ev);
    return STWS_OK;
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
