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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rarewatch/aws.h"
#include "rarewatch/base64.h"
#include "rarewatch/conf_schema.h"
#include "rarewatch/strutil.h"
#include "http_stub.h"

static void on_request(const char *body, size_t len, struct buf *resp, void *ud)
{
    buf_puts(resp, "{\"FailedRecordCount\":0,\"Records\":[{\"SequenceNumber\":\"1\","
                   "\"ShardId\":\"shardId-000000000000\"}]}");
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
    int port = http_stub_start(on_request, NULL);
    if (port < 0)
        return 1;
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
