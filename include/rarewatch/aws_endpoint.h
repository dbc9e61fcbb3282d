/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The services rarewatch calls and where their endpoints are, following the
 * AWS SDKs' standard endpoint settings. Precedence, highest first:
 *   1. [aws] <service>_endpoint_url      (config file, e.g. kinesis_endpoint_url)
 *   2. [aws] endpoint_url
 *   3. AWS_ENDPOINT_URL_<SERVICE>        (KINESIS, FIREHOSE, CLOUDWATCH, DYNAMODB, STS)
 *   4. AWS_ENDPOINT_URL
 *   5. endpoint_url in the shared-config profile
 *   6. the default for the region's partition: https://<prefix>.<region>.amazonaws.com
 *      (aws, aws-us-gov), https://<prefix>.<region>.amazonaws.com.cn (aws-cn)
 * AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true skips 3-5 (as the SDKs do).
 */
#include <stdbool.h>
#include <stddef.h>

enum aws_service {
    AWS_SVC_KINESIS,
    AWS_SVC_FIREHOSE,
    AWS_SVC_CLOUDWATCH,
    AWS_SVC_DYNAMODB,
    AWS_SVC_STS,
    AWS_SVC__COUNT,
};

struct aws_service_info {
    const char *name;            /* "kinesis" */
    const char *env_suffix;      /* "KINESIS" for AWS_ENDPOINT_URL_KINESIS */
    const char *endpoint_prefix; /* "monitoring" for CloudWatch */
    const char *signing_name;    /* SigV4 service name */
    const char *json_target;     /* X-Amz-Target prefix for JSON protocols, NULL = Query */
    const char *json_version;    /* "1.1" or "1.0" */
    const char *query_version;   /* Query protocol API version */
};

const struct aws_service_info *aws_service_info(enum aws_service s);

struct aws_endpoint_config {
    const char *service_url[AWS_SVC__COUNT]; /* [aws] <svc>_endpoint_url */
    const char *url;                         /* [aws] endpoint_url */
    const char *profile_url;                 /* shared config profile endpoint_url */
};

/* Resolve into out (>= 512 bytes). 0, or -EINVAL for an unusable region or
 * URL. *source says which setting won ("AWS_ENDPOINT_URL_KINESIS", ...). */
int aws_endpoint_resolve(enum aws_service s, const char *region,
                         const struct aws_endpoint_config *cfg, char *out, size_t n,
                         const char **source);
/* "aws", "aws-cn" or "aws-us-gov". */
const char *aws_partition(const char *region);
