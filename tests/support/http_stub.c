/* SPDX-License-Identifier: Apache-2.0 */
#include "http_stub.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct stub {
    int fd;
    http_stub_handler fn;
    void *ud;
};

struct conn {
    struct stub *s;
    int fd;
};

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    int fd = c->fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    size_t cap = 16 << 20, have = 0;
    char *buf = malloc(cap + 1);
    struct buf resp = BUF_INIT, body = BUF_INIT;
    bool continued = false;
    for (ssize_t n; buf && (n = read(fd, buf + have, cap - have)) > 0;) {
        have += (size_t)n;
        for (;;) {
            buf[have] = 0;
            char *eoh = strstr(buf, "\r\n\r\n");
            if (!eoh)
                break;
            size_t cl = 0;
            char *h = strcasestr(buf, "\r\ncontent-length:");
            if (h && h < eoh)
                cl = strtoul(h + 17, NULL, 10);
            size_t total = (size_t)(eoh + 4 - buf) + cl;
            if (have < total) {
                /* curl asks before sending a body over 1 MiB; AWS answers. */
                char *e = strcasestr(buf, "\r\nexpect: 100-continue");
                if (e && e < eoh && !continued) {
                    continued = true;
                    if (write(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 25)
                        goto out;
                }
                break;
            }
            continued = false;
            buf_reset(&body);
            c->s->fn(eoh + 4, cl, &body, c->s->ud);
            buf_reset(&resp);
            buf_printf(&resp, "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                              "x-amzn-RequestId: stub\r\nContent-Length: %zu\r\n\r\n", body.len);
            buf_append(&resp, body.data ? body.data : "", body.len);
            if (write(fd, resp.data, resp.len) != (ssize_t)resp.len)
                goto out;
            memmove(buf, buf + total, have - total);
            have -= total;
        }
    }
out:
    buf_free(&resp);
    buf_free(&body);
    free(buf);
    close(fd);
    free(c);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct stub *s = arg;
    for (;;) {
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL;
        }
        struct conn *c = malloc(sizeof(*c));
        pthread_t t;
        if (!c) {
            close(fd);
            continue;
        }
        *c = (struct conn){ s, fd };
        if (pthread_create(&t, NULL, conn_main, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        pthread_detach(t);
    }
}

int http_stub_start(http_stub_handler fn, void *ud)
{
    struct stub *s = calloc(1, sizeof(*s)); /* lives as long as the process */
    if (!s)
        return -ENOMEM;
    *s = (struct stub){ socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), fn, ud };
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    pthread_t t;
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s->fd, 16) < 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &al) < 0 || pthread_create(&t, NULL, accept_main, s) != 0)
        return -errno;
    pthread_detach(t);
    return ntohs(a.sin_port);
}

size_t http_stub_firehose_ok(const char *body, size_t len, struct buf *resp_body)
{
    size_t recs = 0;
    for (const char *p = body; (p = memmem(p, (size_t)(body + len - p), "{\"Data\":", 8)); p += 8)
        recs++;
    buf_puts(resp_body, "{\"FailedPutCount\":0,\"Encrypted\":false,\"RequestResponses\":[");
    for (size_t i = 0; i < recs; i++)
        buf_puts(resp_body, i ? ",{\"RecordId\":\"r\"}" : "{\"RecordId\":\"r\"}");
    buf_puts(resp_body, "]}");
    return recs;
}
