/* custom_transport.c — bring your own transport, layer TLS over it.

   build/examples/custom_transport wss://127.0.0.1:PORT/ CA.pem

   The transport below stands for a console SDK's or lwIP's socket API: five
   functions in mbedTLS's bio dialect.  stws_tls runs TLS over it, and the
   connection runs over that.  It sends "hello" and prints the echo. */
#define STREAM_WS_IMPLEMENTATION
#include "../stream_ws.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct my_socket { int fd; int connecting; } my_socket;

static int my_open(void *ctx, const char *host, uint16_t port) {
    my_socket *s = (my_socket *)ctx;
    struct sockaddr_in a;
    if (s->fd >= 0 && !s->connecting) return 0;
    if (s->fd < 0) { /* this toy resolves only IPv4 literals */
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        if (inet_pton(AF_INET, host, &a.sin_addr) != 1) return STWS_ERR_RESOLVE;
        s->fd = socket(AF_INET, SOCK_STREAM, 0);
        fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL, 0) | O_NONBLOCK);
        if (connect(s->fd, (struct sockaddr *)&a, sizeof a) == 0) return 0;
        if (errno != EINPROGRESS) return STWS_ERR_CONNECT;
        s->connecting = 1;
    }
    {
        struct pollfd p = {s->fd, POLLOUT, 0};
        int err = 0;
        socklen_t l = sizeof err;
        if (poll(&p, 1, 0) == 0) return STWS_WANT_WRITE;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) return STWS_ERR_CONNECT;
        s->connecting = 0;
        return 0;
    }
}
static int my_send(void *ctx, const unsigned char *buf, size_t len) {
    ssize_t n = send(((my_socket *)ctx)->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return (int)n;
    return errno == EAGAIN ? STWS_WANT_WRITE : STWS_ERR_IO;
}
static int my_recv(void *ctx, unsigned char *buf, size_t len) {
    ssize_t n = recv(((my_socket *)ctx)->fd, buf, len, 0);
    if (n >= 0) return (int)n;
    return errno == EAGAIN ? STWS_WANT_READ : STWS_ERR_IO;
}
static void my_close(void *ctx) {
    my_socket *s = (my_socket *)ctx;
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
    s->connecting = 0;
}
static intptr_t my_handle(void *ctx) { return ((my_socket *)ctx)->fd; }

int main(int argc, char **argv) {
    my_socket sock = {-1, 0};
    stws_transport mine = {my_open, my_send, my_recv, my_close, my_handle, NULL, &sock};
    stws_tls_desc td;
    stws_conn_desc cd;
    stws_tls *tls;
    stws_conn *conn;
    int status = 1, done = 0;
    if (argc < 3) {
        fprintf(stderr, "usage: custom_transport wss://127.0.0.1:PORT/ CA.pem\n");
        return 2;
    }
    memset(&td, 0, sizeof td);
    td.inner = mine;       /* TLS over the user's transport */
    td.ca_file = argv[2];  /* chain and host name verified */
    tls = stws_tls_create(&td);
    memset(&cd, 0, sizeof cd);
    cd.url = argv[1];
    cd.transport = stws_tls_transport(tls);
    conn = tls ? stws_conn_create(&cd) : NULL;
    if (!conn || stws_conn_connect(conn) != STWS_OK) return 1;
    while (!done) {
        stws_conn_event ev;
        stws_conn_poll(conn, 1000);
        while (stws_conn_next_event(conn, &ev)) {
            if (ev.type == STWS_CONN_EVENT_OPEN) stws_conn_send(conn, STWS_OP_TEXT, "hello", 5);
            if (ev.type == STWS_CONN_EVENT_MESSAGE) {
                printf("%.*s\n", (int)ev.len, ev.data);
                stws_conn_close(conn, 1000, "done");
            }
            if (ev.type == STWS_CONN_EVENT_ERROR) fprintf(stderr, "error: %s\n", stws_conn_error_detail(conn));
            if (ev.type == STWS_CONN_EVENT_CLOSE) {
                status = ev.clean ? 0 : 1;
                done = 1;
            }
        }
    }
    stws_conn_destroy(conn);
    stws_tls_destroy(tls);
    return status;
}
