/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/aws_endpoint.h"

#include <errno.h>
#include <stdlib.h>

#include "tap.h"

static void clear_env(void)
{
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_ENDPOINT_URL_KINESIS");
    unsetenv("AWS_ENDPOINT_URL_CLOUDWATCH");
    unsetenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
}

TEST(defaults_per_partition)
{
    clear_env();
    char u[512];
    const char *src;
    CHECK_INT(aws_endpoint_resolve(AWS_SVC_KINESIS, "eu-west-1", NULL, u, sizeof(u), &src), 0);
    CHECK_STR(u, "https://kinesis.eu-west-1.amazonaws.com");
    CHECK_STR(src, "default");
    CHECK_INT(aws_endpoint_resolve(AWS_SVC_CLOUDWATCH, "us-east-1", NULL, u, sizeof(u), NULL), 0);
    CHECK_STR(u, "https://monitoring.us-east-1.amazonaws.com");
    CHECK_INT(aws_endpoint_resolve(AWS_SVC_FIREHOSE, "cn-north-1", NULL, u, sizeof(u), NULL), 0);
    CHECK_STR(u, "https://firehose.cn-north-1.amazonaws.com.cn");
    CHECK_INT(aws_endpoint_resolve(AWS_SVC_DYNAMODB, "us-gov-west-1", NULL, u, sizeof(u), NULL), 0);
    CHECK_STR(u, "https://dynamodb.us-gov-west-1.amazonaws.com");
    CHECK_STR(aws_partition("us-gov-east-1"), "aws-us-gov");
    CHECK_STR(aws_partition("cn-northwest-1"), "aws-cn");
    CHECK_STR(aws_partition("ap-south-2"), "aws");
    CHECK_INT(aws_endpoint_resolve(AWS_SVC_STS, "evil.com/x", NULL, u, sizeof(u), NULL), -EINVAL);
    CHECK_INT(aws_endpoint_resolve(AWS_SVC_STS, NULL, NULL, u, sizeof(u), NULL), -EINVAL);
    CHECK_STR(aws_service_info(AWS_SVC_CLOUDWATCH)->signing_name, "monitoring");
}

TEST(precedence)
{
    clear_env();
    char u[512];
    const char *src;
    struct aws_endpoint_config c = { .profile_url = "http://profile:1" };
    CHECK_INT(aws_endpoint_resolve(AWS_SVC_KINESIS, "eu-west-1", &c, u, sizeof(u), &src), 0);
    CHECK_STR(u, "http://profile:1");
    setenv("AWS_ENDPOINT_URL", "http://global-env:2/", 1);
    CHECK_INT(aws_endpoint_resolve(AWS_SVC_KINESIS, "eu-west-1", &c, u, sizeof(u), &src), 0);
    CHECK_STR(u, "http://global-env:2");
    CHECK_STR(src, "AWS_ENDPOINT_URL");
    setenv("AWS_ENDPOINT_URL_KINESIS", "http://kinesis-env:3", 1);
    CHECK_INT(aws_endpoint_resolve(AWS_SVC_KINESIS, "eu-west-1", &c, u, sizeof(u), &src), 0);
    CHECK_STR(u, "http://kinesis-env:3");
    CHECK_STR(src, "AWS_ENDPOINT_URL_KINESIS");
    /* The service-specific variable does not leak to other services. */
    CHECK_INT(aws_endpoint_resolve(AWS_SVC_FIREHOSE, "eu-west-1", &c, u, sizeof(u), &src), 0);
    CHECK_STR(u, "http://global-env:2");
    c.url = "http://config-all:4";
    CHECK_INT(aws_endpoint_resolve(AWS_SVC_KINESIS, "eu-west-1", &c, u, sizeof(u), &src), 0);
    CHECK_STR(u, "http://config-all:4");
    c.service_url[AWS_SVC_KINESIS] = "https://config-kinesis:5";
    CHECK_INT(aws_endpoint_resolve(AWS_SVC_KINESIS, "eu-west-1", &c, u, sizeof(u), &src), 0);
    CHECK_STR(u, "https://config-kinesis:5");
    CHECK_STR(src, "config");
    /* AWS_IGNORE_CONFIGURED_ENDPOINT_URLS drops the environment and profile. */
    struct aws_endpoint_config p = { .profile_url = "http://profile:1" };
    setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true", 1);
    CHECK_INT(aws_endpoint_resolve(AWS_SVC_KINESIS, "eu-west-1", &p, u, sizeof(u), &src), 0);
    CHECK_STR(u, "https://kinesis.eu-west-1.amazonaws.com");
    clear_env();
    setenv("AWS_ENDPOINT_URL", "ftp://nope", 1);
    CHECK_INT(aws_endpoint_resolve(AWS_SVC_KINESIS, "eu-west-1", NULL, u, sizeof(u), &src), -EINVAL);
    clear_env();
}

TAP_MAIN
