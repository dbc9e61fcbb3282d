/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sign one request described on the command line (body on stdin) and print
 * what sigv4_sign() produced, so another implementation can check it.
 *
 *   sigv4_tool --method POST --path / [--query 'a=1&b=2'] --region us-east-1
 *              --service kinesis --time 1440938160 --access-key AKID --secret KEY
 *              [--token TOKEN] [--header 'Name:value']... [--body-stdin]
 *              [--payload-hash HEX] [--unnormalized]
 *
 * A header argument splits at its first ':'; the value is kept byte for byte
 * (leading spaces included) because trimming is what is under test.
 *
 * Output: one section per item, "== NAME LENGTH\n" then LENGTH bytes and a
 * newline, so a reader needs no escaping rules: canonical-request,
 * string-to-sign, signature, then every header to add (header:NAME).
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rarewatch/buf.h"
#include "rarewatch/sigv4.h"

static void section(const char *name, const char *p, size_t n)
{
    printf("== %s %zu\n", name, n);
    fwrite(p, 1, n, stdout);
    putchar('\n');
}

static int read_all(FILE *f, struct buf *b)
{
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        int r = buf_append(b, chunk, n);
        if (r < 0)
            return r;
    }
    return ferror(f) ? -EIO : 0;
}

static _noreturn_ void usage(void)
{
    fprintf(stderr, "usage: sigv4_tool --method M --path P [--query Q] --region R --service S\n"
                    "       --time EPOCH --access-key A --secret K [--token T]\n"
                    "       [--header Name:value]... [--body-stdin] [--payload-hash H]\n"
                    "       [--unnormalized]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"method", required_argument, NULL, 'm'},     {"path", required_argument, NULL, 'p'},
        {"query", required_argument, NULL, 'q'},      {"region", required_argument, NULL, 'r'},
        {"service", required_argument, NULL, 's'},    {"time", required_argument, NULL, 't'},
        {"access-key", required_argument, NULL, 'a'}, {"secret", required_argument, NULL, 'k'},
        {"token", required_argument, NULL, 'T'},      {"header", required_argument, NULL, 'H'},
        {"body-stdin", no_argument, NULL, 'b'},       {"payload-hash", required_argument, NULL, 'P'},
        {"unnormalized", no_argument, NULL, 'u'},     {NULL, 0, NULL, 0},
    };
    struct sigv4_request rq = {0};
    struct sigv4_credentials creds = {0};
    struct sigv4_header headers[SIGV4_MAX_HEADERS + 1];
    size_t nh = 0;
    bool body_stdin = false, have_time = false;
    _cleanup_buf_ struct buf body = BUF_INIT;
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': rq.method = optarg; break;
        case 'p': rq.path = optarg; break;
        case 'q': rq.query = optarg; break;
        case 'r': rq.region = optarg; break;
        case 's': rq.service = optarg; break;
        case 't': {
            char *end;
            errno = 0;
            long long t = strtoll(optarg, &end, 10);
            if (errno || *end || end == optarg)
                usage();
            rq.time = (time_t)t;
            have_time = true;
            break;
        }
        case 'a': creds.access_key_id = optarg; break;
        case 'k': creds.secret_access_key = optarg; break;
        case 'T': creds.session_token = optarg; break;
        case 'H': {
            char *colon = strchr(optarg, ':');
            if (!colon || nh == ELEMENTSOF(headers))
                usage();
            *colon = 0;
            headers[nh++] = (struct sigv4_header){optarg, colon + 1};
            break;
        }
        case 'b': body_stdin = true; break;
        case 'P': rq.payload_hash = optarg; break;
        case 'u': rq.keep_path_unnormalized = true; break;
        default: usage();
        }
    }
    if (optind != argc || !rq.method || !rq.region || !rq.service || !have_time ||
        !creds.access_key_id || !creds.secret_access_key)
        usage();

    if (body_stdin) {
        int r = read_all(stdin, &body);
        if (r < 0) {
            fprintf(stderr, "sigv4_tool: reading the body: %s\n", strerror(-r));
            return 1;
        }
        rq.payload = body.data;
        rq.payload_len = body.len;
    }
    rq.headers = headers;
    rq.n_headers = nh;

    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    struct sigv4_result res = SIGV4_RESULT_INIT;
    if (!kc) {
        fprintf(stderr, "sigv4_tool: OpenSSL has no HMAC-SHA256\n");
        return 1;
    }
    int r = sigv4_sign(kc, &creds, &rq, &res);
    if (r < 0) {
        fprintf(stderr, "sigv4_tool: signing failed: %s\n", strerror(-r));
        sigv4_result_free(&res);
        return 1;
    }
    section("canonical-request", res.canonical_request.data, res.canonical_request.len);
    section("string-to-sign", res.string_to_sign.data, res.string_to_sign.len);
    section("signature", res.signature, strlen(res.signature));
    for (size_t i = 0; i < res.n_headers; i++) {
        char name[64];
        snprintf(name, sizeof(name), "header:%s", res.headers[i].name);
        section(name, res.headers[i].value, strlen(res.headers[i].value));
    }
    sigv4_result_free(&res);
    return fflush(stdout) == 0 ? 0 : 1;
}
