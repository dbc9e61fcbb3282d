/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Resolve AWS credentials with the default chain and print what was found:
 * the provider, the access key id and the expiry, never the secret or the
 * token. Driven by tests/integration/test_creds.py.
 *
 *   creds_tool [--profile P] [--region R] [--refresh-ahead SECS]
 *              [--process-timeout MS] [--gets N] [--step] [--invalidate]
 *              [--sts-identity]
 *
 * Each get prints one line:
 *   provider=imds access_key_id=ASIA... expiration=1795842600 token=yes
 * --step waits for a line on stdin before each get after the first, so the
 * test can change the world (rotate a token file) at a known point.
 * --invalidate calls aws_creds_invalidate() before each later get.
 * --sts-identity finally calls STS GetCallerIdentity signed with the last
 * credentials and prints identity_arn=..., proving the service accepts
 * them. Exit 0, 1 when credentials could not be resolved, 2 when STS
 * refused them.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/aws.h"
#include "rarewatch/aws_creds.h"
#include "rarewatch/log.h"
#include "rarewatch/sigv4.h"
#include "rarewatch/xml_extract.h"

static int caller_identity(const struct aws_credentials *c, const char *region)
{
    char url[512], buf[1024];
    const char *src;
    struct aws_error err = { 0 };
    struct http_options ho;
    struct http_response resp = { 0 };
    static const char form[] = "Action=GetCallerIdentity&Version=2011-06-15";
    struct http_header h[] = { { "Content-Type", "application/x-www-form-urlencoded; charset=utf-8" } };

    if (aws_endpoint_resolve(AWS_SVC_STS, region, NULL, url, sizeof(url), &src) < 0) {
        fprintf(stderr, "error: no STS endpoint for region %s\n", region);
        return 2;
    }
    http_options_init(&ho);
    _cleanup_(http_client_freep) struct http_client *http = http_client_new(&ho);
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    if (!http || !kc)
        return 2;
    int r = aws_send_once(http, kc, c, region, AWS_SVC_STS, url, h, ELEMENTSOF(h), form,
                          strlen(form), 0, &resp, &err);
    if (r < 0) {
        fprintf(stderr, "error: GetCallerIdentity: %s\n", aws_error_str(&err, buf, sizeof(buf)));
        http_response_free(&resp);
        return 2;
    }
    r = xml_extract_to(resp.body.data ? resp.body.data : "", resp.body.len,
                       "GetCallerIdentityResult/Arn", buf, sizeof(buf));
    http_response_free(&resp);
    if (r < 0) {
        fprintf(stderr, "error: GetCallerIdentity: no Arn in the response\n");
        return 2;
    }
    printf("identity_arn=%s\n", buf);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "profile", required_argument, NULL, 'p' },
        { "region", required_argument, NULL, 'r' },
        { "refresh-ahead", required_argument, NULL, 'a' },
        { "process-timeout", required_argument, NULL, 't' },
        { "gets", required_argument, NULL, 'n' },
        { "step", no_argument, NULL, 's' },
        { "invalidate", no_argument, NULL, 'i' },
        { "sts-identity", no_argument, NULL, 'c' },
        {},
    };
    struct aws_creds_options o = { 0 };
    const char *region = NULL;
    int gets = 1, c;
    bool step = false, invalidate = false, identity = false;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
        switch (c) {
        case 'p': o.profile = optarg; break;
        case 'r': region = optarg; break;
        case 'a': o.refresh_ahead_usec = strtoull(optarg, NULL, 10) * USEC_PER_SEC; break;
        case 't': o.process_timeout_usec = strtoull(optarg, NULL, 10) * USEC_PER_MSEC; break;
        case 'n': gets = atoi(optarg); break;
        case 's': step = true; break;
        case 'i': invalidate = true; break;
        case 'c': identity = true; break;
        default: return 64;
        }
    }
    if (!region)
        region = getenv("AWS_REGION") ? getenv("AWS_REGION") : "us-east-1";
    o.region = region;
    log_setup(LOG_TARGET_STDERR);
    if (http_global_init() < 0)
        return 1;

    _cleanup_(aws_creds_provider_freep) struct aws_creds_provider *p = aws_creds_chain_new(&o);
    _cleanup_(aws_credentials_unrefp) struct aws_credentials *last = NULL;
    if (!p)
        return 1;
    for (int i = 0; i < gets; i++) {
        struct aws_error err = { 0 };
        struct aws_credentials *cr = NULL;
        char buf[1024], line[64];
        if (i > 0 && step && !fgets(line, sizeof(line), stdin))
            return 1;
        if (i > 0 && invalidate)
            aws_creds_invalidate(p);
        if (aws_creds_get(p, &cr, &err) < 0) {
            printf("error code=%s\n", err.code);
            fprintf(stderr, "error: %s\n", aws_error_str(&err, buf, sizeof(buf)));
            fflush(stdout);
            return 1;
        }
        printf("provider=%s access_key_id=%s expiration=%lld token=%s source=%s\n", cr->provider,
               cr->access_key_id, cr->expiration, cr->session_token ? "yes" : "no",
               aws_creds_source(p));
        fflush(stdout);
        aws_credentials_unref(last);
        last = cr;
    }
    return identity ? caller_identity(last, region) : 0;
}
