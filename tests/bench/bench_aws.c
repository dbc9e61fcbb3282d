/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Signed Kinesis requests per second over loopback, one thread: the whole
 * client path (endpoint, SigV4, libcurl with a reused connection, response
 * capture, typed-error check) against a minimal local HTTP/1.1 server that
 * answers every request with a fixed PutRecords/GetRecords-shaped body.
 * Baseline in the same run: the same requests unsigned, straight through
 * http_request(), so the table shows what signing and the client add.
 *
 * The server runs in a thread of this process; on 2 cores both threads get
 * one. Median of 5 runs of 2 s each.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rarewatch/aws.h"
#include "rarewatch/base64.h"
#include "rarewatch/conf_schema.h"
#include "rarewatch/strutil.h"

static int listen_fd;
static int port;

static void *conn_main(void *arg);

/* One thread per connection: the signed and the unsigned client each keep
 * their connection open. */
static void *server(void *arg)
{
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t t;
        pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
    return NULL;
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static const char body[] = "{\"FailedRecordCount\":0,\"Records\":[{\"SequenceNumber\":\"1\",\"ShardId\":\"shardId-000000000000\"}]}";
    char resp[512];
    int rl = snprintf(resp, sizeof(resp),
                      "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                      "x-amzn-RequestId: bench\r\nContent-Length: %zu\r\n\r\n%s",
                      sizeof(body) - 1, body);
    {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        char *buf = malloc(1 << 20);
        size_t have = 0;
        for (;;) {
            ssize_t n = read(fd, buf + have, (1 << 20) - have);
            if (n <= 0)
                break;
            have += (size_t)n;
            for (;;) {
                buf[have < (1 << 20) ? have : (1 << 20) - 1] = 0;
                char *eoh = strstr(buf, "\r\n\r\n");
                if (!eoh)
                    break;
                size_t cl = 0;
                char *c = strcasestr(buf, "\r\ncontent-length:");
                if (c && c < eoh)
                    cl = strtoul(c + 17, NULL, 10);
                size_t total = (size_t)(eoh + 4 - buf) + cl;
                if (have < total)
                    break;
                if (write(fd, resp, (size_t)rl) != rl)
                    break;
                memmove(buf, buf + total, have - total);
                have -= total;
            }
        }
        free(buf);
        close(fd);
    }
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct req {
    const char *name;
    const char *op;
    struct buf body;
};

static double run(struct aws_client *c, struct http_client *h, const char *url, struct req *r, bool signed_)
{
    struct http_response resp = { 0 };
    struct aws_error err;
    uint64_t start = now_monotonic_usec(), n = 0;
    struct http_header hd[] = { { "Content-Type", "application/x-amz-json-1.1" },
                                { "X-Amz-Target", "Kinesis_20131202.PutRecords" } };
    while (now_monotonic_usec() - start < 2 * USEC_PER_SEC) {
        int rc = signed_ ? aws_json_call(c, AWS_SVC_KINESIS, r->op, r->body.data, r->body.len, &resp, &err)
                         : http_request(h, "POST", url, hd, 2, r->body.data, r->body.len, 0, &resp, &err);
        if (rc < 0) {
            char eb[256];
            fprintf(stderr, "request failed: %s\n", aws_error_str(&err, eb, sizeof(eb)));
            exit(1);
        }
        n++;
    }
    http_response_free(&resp);
    return (double)n / ((double)(now_monotonic_usec() - start) / 1e6);
}

int main(void)
{
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(listen_fd, 16) < 0 ||
        getsockname(listen_fd, (struct sockaddr *)&a, &al) < 0)
        return 1;
    port = ntohs(a.sin_port);
    pthread_t t;
    pthread_create(&t, NULL, server, NULL);

    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", 1);
    setenv("AWS_SESSION_TOKEN", "FQoGZXIvYXdzEXAMPLETOKEN", 1);
    setenv("AWS_REGION", "eu-west-1", 1);
    setenv("AWS_ENDPOINT_URL_KINESIS", url, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    http_global_init();
    struct conf_diag d = { 0 };
    struct rw_config *cfg = NULL;
    if (conf_load_string(&rw_schema, "bench", "", &d, &cfg) < 0)
        return 1;
    struct aws_settings *s = NULL;
    struct aws_error err;
    if (aws_settings_new(cfg, &s, &err) < 0)
        return 1;
    struct aws_client *c = aws_client_new(s);
    struct http_options ho;
    http_options_init(&ho);
    struct http_client *h = http_client_new(&ho);

    struct req reqs[2] = { { "GetRecords (small body)", "GetRecords", BUF_INIT },
                           { "PutRecords, 500 records x 100 B", "PutRecords", BUF_INIT } };
    buf_puts(&reqs[0].body, "{\"ShardIterator\":\"AAAAAAAAAAF0bmV4dC1pdGVyYXRvci1leGFtcGxlLWZvci1iZW5jaC1wdXJwb3Nlcw==\",\"Limit\":10000}");
    buf_puts(&reqs[1].body, "{\"StreamName\":\"bench\",\"Records\":[");
    char payload[100];
    memset(payload, 'x', sizeof(payload));
    for (int i = 0; i < 500; i++) {
        buf_puts(&reqs[1].body, i ? ",{\"Data\":\"" : "{\"Data\":\"");
        buf_put_base64(&reqs[1].body, payload, sizeof(payload));
        buf_printf(&reqs[1].body, "\",\"PartitionKey\":\"user-%d\"}", i);
    }
    buf_puts(&reqs[1].body, "]}");

    printf("%-34s %14s %14s %12s %12s\n", "request (one thread, loopback)", "signed req/s", "unsigned req/s",
           "signed us", "unsigned us");
    for (int i = 0; i < 2; i++) {
        double sv[5], uv[5];
        for (int k = 0; k < 5; k++) {
            sv[k] = run(c, h, url, &reqs[i], true);
            uv[k] = run(c, h, url, &reqs[i], false);
        }
        qsort(sv, 5, sizeof(double), cmp);
        qsort(uv, 5, sizeof(double), cmp);
        printf("%-34s %14.0f %14.0f %12.1f %12.1f\n", reqs[i].name, sv[2], uv[2], 1e6 / sv[2], 1e6 / uv[2]);
    }
    printf("(body sizes: %zu and %zu bytes; median of 5 runs of 2 s; the difference is the cost of the\n"
           " credential lookup, SigV4 and the retry/error wrapper per request)\n",
           reqs[0].body.len, reqs[1].body.len);
    return 0;
}
