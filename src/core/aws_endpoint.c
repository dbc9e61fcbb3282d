/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/aws_endpoint.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rarewatch/macro.h"
#include "rarewatch/strutil.h"

static const struct aws_service_info services[AWS_SVC__COUNT] = {
    [AWS_SVC_KINESIS] = { "kinesis", "KINESIS", "kinesis", "kinesis", "Kinesis_20131202", "1.1", NULL },
    [AWS_SVC_FIREHOSE] = { "firehose", "FIREHOSE", "firehose", "firehose", "Firehose_20150804", "1.1", NULL },
    [AWS_SVC_CLOUDWATCH] = { "cloudwatch", "CLOUDWATCH", "monitoring", "monitoring", NULL, NULL, "2010-08-01" },
    [AWS_SVC_DYNAMODB] = { "dynamodb", "DYNAMODB", "dynamodb", "dynamodb", "DynamoDB_20120810", "1.0", NULL },
    [AWS_SVC_STS] = { "sts", "STS", "sts", "sts", NULL, NULL, "2011-06-15" },
};

const struct aws_service_info *aws_service_info(enum aws_service s)
{
    return (unsigned)s < AWS_SVC__COUNT ? &services[s] : NULL;
}

const char *aws_partition(const char *region)
{
    if (startswith(region, "cn-"))
        return "aws-cn";
    if (startswith(region, "us-gov-"))
        return "aws-us-gov";
    return "aws";
}

static bool valid_region(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n > 40)
        return false;
    for (const char *p = r; *p; p++)
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-')
            return false;
    return true;
}

static bool valid_url(const char *u)
{
    return (startswith(u, "http://") || startswith(u, "https://")) && strlen(u) < 480 &&
           !strpbrk(u, " \t\r\n");
}

static bool env_true(const char *name)
{
    const char *v = getenv(name);
    bool b = false;
    return v && parse_bool(v, &b) == 0 && b;
}

int aws_endpoint_resolve(enum aws_service s, const char *region,
                         const struct aws_endpoint_config *cfg, char *out, size_t n,
                         const char **source)
{
    const struct aws_service_info *si = aws_service_info(s);
    if (!si)
        return -EINVAL;
    char envname[64];
    snprintf(envname, sizeof(envname), "AWS_ENDPOINT_URL_%s", si->env_suffix);
    bool ignore_env = env_true("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
    struct {
        const char *value;
        const char *source;
    } cands[] = {
        { cfg ? cfg->service_url[s] : NULL, "config" },
        { cfg ? cfg->url : NULL, "config endpoint_url" },
        { ignore_env ? NULL : getenv(envname), NULL },
        { ignore_env ? NULL : getenv("AWS_ENDPOINT_URL"), "AWS_ENDPOINT_URL" },
        { ignore_env || !cfg ? NULL : cfg->profile_url, "profile endpoint_url" },
    };
    static _Thread_local char envsrc[64];
    for (size_t i = 0; i < ELEMENTSOF(cands); i++) {
        const char *v = cands[i].value;
        if (!v || !*v)
            continue;
        if (!valid_url(v))
            return -EINVAL;
        snprintf(out, n, "%s", v);
        /* "http://host:port/" and "http://host:port" are the same endpoint;
         * we append the request path ourselves. */
        size_t l = strlen(out);
        while (l > 8 && out[l - 1] == '/')
            out[--l] = 0;
        if (source) {
            if (cands[i].source)
                *source = cands[i].source;
            else {
                snprintf(envsrc, sizeof(envsrc), "%s", envname);
                *source = envsrc;
            }
        }
        return 0;
    }
    if (!region || !valid_region(region))
        return -EINVAL;
    const char *suffix = streq(aws_partition(region), "aws-cn") ? "amazonaws.com.cn" : "amazonaws.com";
    snprintf(out, n, "https://%s.%s.%s", si->endpoint_prefix, region, suffix);
    if (source)
        *source = "default";
    return 0;
}
