/* A scripted stws_transport for deterministic connection tests: no sockets,
   no threads, no sleeping.

   Inbound: a queue of chunks returned by recv() in order: bytes, a one-shot
   would-block, end of stream (0) or an error.  End of stream and errors are
   sticky (every later recv() returns them again).  An exhausted queue returns
   `empty_result` (STWS_WANT_READ by default).  `recv_max` caps the bytes one
   recv() hands out (1 = a byte per call).

   Outbound: everything accepted by send() is appended to `sent`.  Behaviour:
   accept all, accept at most `send_chunk` bytes per call, optionally would-block
   on the call after each accepted write (`send_block_after_write`, so a pump
   writes exactly one chunk per step), would-block always, or fail.

   Open: returns `open_want_code` `open_wants` times, then `open_result`.
   Close: drops whatever the script still held (a reconnect starts empty).

   The library's use of the transport is checked as it goes: send() or recv()
   on a stream that is not open, or open() on an open one, count as misuse. */
#ifndef SCRIPT_TRANSPORT_H
#define SCRIPT_TRANSPORT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../stream_ws.h"

#if defined(__GNUC__) || defined(__clang__)
#define ST_FN static __attribute__((unused))
#else
#define ST_FN static
#endif

typedef enum st_kind { ST_DATA, ST_BLOCK, ST_EOF, ST_ERROR } st_kind;

typedef struct st_chunk {
    st_kind kind;
    int code;          /* ST_ERROR: what recv() returns */
    size_t off, len;   /* ST_DATA: bytes in the pool */
    size_t pos;        /* ST_DATA: bytes already handed out */
} st_chunk;

typedef enum st_send_mode { ST_SEND_ACCEPT, ST_SEND_BLOCK, ST_SEND_FAIL } st_send_mode;

typedef struct st_transport {
    /* inbound script */
    st_chunk *chunks;
    size_t nchunks, chunks_cap, next;
    unsigned char *pool;
    size_t pool_len, pool_cap;
    size_t recv_max;            /* 0 = no cap */
    int empty_result;           /* recv() when the script is used up */
    size_t bytes_received;      /* total data handed out by recv() */

    /* outbound capture and behaviour */
    unsigned char *sent;
    size_t sent_len, sent_cap;
    st_send_mode send_mode;
    size_t send_chunk;          /* 0 = accept everything offered */
    int send_block_after_write; /* WANT_WRITE once after every accepted write */
    int send_blocked_next;
    int send_block_code;        /* STWS_WANT_WRITE by default */
    int send_fail_code;         /* ST_SEND_FAIL result */

    /* open */
    int open_wants;             /* this many in-progress answers first */
    int open_want_code;         /* STWS_WANT_WRITE by default */
    int open_result;            /* then this (0 = connected) */
    char host[256];
    unsigned port;

    /* bookkeeping */
    int open_calls, send_calls, recv_calls, close_calls, handle_calls;
    int is_open, misuse;
    intptr_t handle_value;
} st_transport;

ST_FN void st_init(st_transport *t) {
    memset(t, 0, sizeof *t);
    t->empty_result = STWS_WANT_READ;
    t->send_block_code = STWS_WANT_WRITE;
    t->send_fail_code = STWS_ERR_IO;
    t->open_want_code = STWS_WANT_WRITE;
    t->handle_value = 42;
}

ST_FN void st_free(st_transport *t) {
    free(t->chunks);
    free(t->pool);
    free(t->sent);
    memset(t, 0, sizeof *t);
}

ST_FN st_chunk *st__add(st_transport *t, st_kind kind) {
    st_chunk *c;
    if (t->nchunks == t->chunks_cap) {
        size_t cap = t->chunks_cap ? t->chunks_cap * 2 : 64;
        st_chunk *n = (st_chunk *)realloc(t->chunks, cap * sizeof *n);
        if (!n) abort();
        t->chunks = n;
        t->chunks_cap = cap;
    }
    c = &t->chunks[t->nchunks++];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    return c;
}

/* Queue bytes returned by recv() (one chunk: never merged with others). */
ST_FN void st_push(st_transport *t, const void *data, size_t len) {
    st_chunk *c;
    if (t->pool_len + len > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap : 4096;
        unsigned char *n;
        while (cap < t->pool_len + len) cap *= 2;
        n = (unsigned char *)realloc(t->pool, cap);
        if (!n) abort();
        t->pool = n;
        t->pool_cap = cap;
    }
    if (len) memcpy(t->pool + t->pool_len, data, len);
    c = st__add(t, ST_DATA);
    c->off = t->pool_len;
    c->len = len;
    t->pool_len += len;
}

/* Queue bytes as separate chunks of at most `piece` bytes each. */
ST_FN void st_push_split(st_transport *t, const void *data, size_t len, size_t piece) {
    const unsigned char *p = (const unsigned char *)data;
    while (len) {
        size_t n = len < piece ? len : piece;
        st_push(t, p, n);
        p += n;
        len -= n;
    }
}

ST_FN void st_push_block(st_transport *t) { (void)st__add(t, ST_BLOCK); }
ST_FN void st_push_eof(st_transport *t) { (void)st__add(t, ST_EOF); }
ST_FN void st_push_error(st_transport *t, int code) { st__add(t, ST_ERROR)->code = code; }

/* Chunks not yet (fully) consumed. */
ST_FN size_t st_unread_chunks(const st_transport *t) { return t->nchunks - t->next; }

ST_FN void st__capture(st_transport *t, const unsigned char *buf, size_t n) {
    if (t->sent_len + n > t->sent_cap) {
        size_t cap = t->sent_cap ? t->sent_cap : 4096;
        unsigned char *nb;
        while (cap < t->sent_len + n) cap *= 2;
        nb = (unsigned char *)realloc(t->sent, cap);
        if (!nb) abort();
        t->sent = nb;
        t->sent_cap = cap;
    }
    memcpy(t->sent + t->sent_len, buf, n);
    t->sent_len += n;
}

ST_FN int st__open(void *ctx, const char *host, uint16_t port) {
    st_transport *t = (st_transport *)ctx;
    t->open_calls++;
    if (t->is_open) t->misuse++;
    strncpy(t->host, host ? host : "", sizeof t->host - 1);
    t->host[sizeof t->host - 1] = 0;
    t->port = port;
    if (t->open_wants > 0) {
        t->open_wants--;
        return t->open_want_code;
    }
    if (t->open_result == 0) t->is_open = 1;
    return t->open_result;
}

ST_FN int st__send(void *ctx, const unsigned char *buf, size_t len) {
    st_transport *t = (st_transport *)ctx;
    size_t n = len;
    t->send_calls++;
    if (!t->is_open || len == 0) t->misuse++;
    switch (t->send_mode) {
    case ST_SEND_BLOCK: return t->send_block_code;
    case ST_SEND_FAIL: return t->send_fail_code;
    case ST_SEND_ACCEPT: break;
    }
    if (t->send_blocked_next) {
        t->send_blocked_next = 0;
        return t->send_block_code;
    }
    if (t->send_chunk && n > t->send_chunk) n = t->send_chunk;
    st__capture(t, buf, n);
    if (t->send_block_after_write) t->send_blocked_next = 1;
    return (int)n;
}

ST_FN int st__recv(void *ctx, unsigned char *buf, size_t len) {
    st_transport *t = (st_transport *)ctx;
    st_chunk *c;
    size_t n;
    t->recv_calls++;
    if (!t->is_open || len == 0) t->misuse++;
    while (t->next < t->nchunks && t->chunks[t->next].kind == ST_DATA &&
           t->chunks[t->next].pos == t->chunks[t->next].len)
        t->next++; /* empty data chunks */
    if (t->next == t->nchunks) return t->empty_result;
    c = &t->chunks[t->next];
    switch (c->kind) {
    case ST_BLOCK: t->next++; return STWS_WANT_READ;
    case ST_EOF: return 0;
    case ST_ERROR: return c->code;
    case ST_DATA: break;
    }
    n = c->len - c->pos;
    if (n > len) n = len;
    if (t->recv_max && n > t->recv_max) n = t->recv_max;
    memcpy(buf, t->pool + c->off + c->pos, n);
    c->pos += n;
    if (c->pos == c->len) t->next++;
    t->bytes_received += n;
    return (int)n;
}

ST_FN void st__close(void *ctx) {
    st_transport *t = (st_transport *)ctx;
    t->close_calls++;
    t->is_open = 0;
    t->send_blocked_next = 0;
    t->next = t->nchunks; /* the stream is gone: what it had not delivered too */
}

ST_FN intptr_t st__handle(void *ctx) {
    st_transport *t = (st_transport *)ctx;
    t->handle_calls++;
    return t->handle_value;
}

/* The vtable; with_handle = 0 leaves handle (and pending) NULL. */
ST_FN stws_transport st_transport_vtable(st_transport *t, int with_handle) {
    stws_transport tr;
    memset(&tr, 0, sizeof tr);
    tr.open = st__open;
    tr.send = st__send;
    tr.recv = st__recv;
    tr.close = st__close;
    tr.handle = with_handle ? st__handle : NULL;
    tr.pending = NULL;
    tr.ctx = t;
    return tr;
}

#endif /* SCRIPT_TRANSPORT_H */
