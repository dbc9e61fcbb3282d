/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/aws_error.h"

#include "tap.h"

static struct aws_error parse(int status, const char *ctype, const char *body)
{
    struct aws_error e;
    aws_error_from_response(&e, status, ctype, body, strlen(body), "hdr-req-id");
    return e;
}

TEST(json_protocol_errors)
{
    struct aws_error e = parse(400, "application/x-amz-json-1.1",
                               "{\"__type\":\"ProvisionedThroughputExceededException\",\"message\":\"Rate exceeded for shard\"}");
    CHECK_STR(e.code, "ProvisionedThroughputExceededException");
    CHECK_STR(e.message, "Rate exceeded for shard");
    CHECK_STR(e.request_id, "hdr-req-id");
    CHECK(e.throttling && e.retryable);
    e = parse(400, "application/x-amz-json-1.0",
              "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException\",\"Message\":\"The conditional request failed\"}");
    CHECK_STR(e.code, "ConditionalCheckFailedException");
    CHECK(!e.retryable);
    e = parse(400, "application/json", "{\"__type\":\"ResourceNotFoundException:http://internal.amazon.com/\",\"message\":\"x\"}");
    CHECK_STR(e.code, "ResourceNotFoundException");
    e = parse(403, "application/json", "{\"__type\":\"UnrecognizedClientException\",\"message\":\"The security token included in the request is invalid.\"}");
    CHECK(!e.retryable);
    e = parse(400, "application/json", "{\"__type\":\"InvalidSignatureException\",\"message\":\"Signature expired: 20150830T123600Z is now earlier than ...\"}");
    CHECK(e.clock_skew && e.retryable);
    e = parse(500, "application/json", "{\"__type\":\"InternalFailure\"}");
    CHECK(e.retryable && !e.throttling);
}

TEST(query_protocol_xml_errors)
{
    struct aws_error e = parse(400, "text/xml",
                               "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                               "<Message>Rate exceeded &amp; more</Message></Error>"
                               "<RequestId>abc-123</RequestId></ErrorResponse>");
    CHECK_STR(e.code, "Throttling");
    CHECK_STR(e.message, "Rate exceeded & more");
    CHECK_STR(e.request_id, "hdr-req-id"); /* the header wins */
    CHECK(e.throttling && e.retryable);
    e = parse(400, "text/xml", "<ErrorResponse><Error><Code>RequestTimeTooSkewed</Code></Error></ErrorResponse>");
    CHECK(e.clock_skew && e.retryable);
}

TEST(proxy_pages_and_garbage)
{
    struct aws_error e = parse(502, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>");
    CHECK_STR(e.code, "HTTP502");
    CHECK_CONTAINS(e.message, "unexpected text/html response: <html>");
    CHECK(e.retryable);
    e = parse(403, "text/html", "<html>Forbidden by proxy</html>");
    CHECK_STR(e.code, "HTTP403");
    CHECK(!e.retryable);
    e = parse(500, "", "");
    CHECK_CONTAINS(e.message, "with an empty body");
    CHECK(e.retryable);
    e = parse(400, "application/json", "{\"__type\":\"Thrott");
    CHECK_STR(e.code, "HTTP400");
    CHECK(!e.retryable);
    e = parse(429, "text/plain", "slow down");
    CHECK(e.retryable);
    /* Control characters from a hostile body never reach a log line. */
    e = parse(400, "application/json", "{\"__type\":\"X\",\"message\":\"a\\nb\\u001bc\"}");
    CHECK_STR(e.message, "a b c");
}

TEST(formatting)
{
    struct aws_error e = parse(400, "application/json", "{\"__type\":\"ThrottlingException\",\"message\":\"Rate exceeded\"}");
    char b[256];
    CHECK_STR(aws_error_str(&e, b, sizeof(b)), "ThrottlingException (HTTP 400, request hdr-req-id): Rate exceeded");
    aws_error_set(&e, AWS_ERR_TRANSPORT, "RequestTimeout", "Timeout was reached");
    aws_error_classify(&e);
    CHECK(e.timeout && e.retryable);
    CHECK_STR(aws_error_str(&e, b, sizeof(b)), "RequestTimeout: Timeout was reached");
    char small[8];
    aws_error_str(&e, small, sizeof(small));
    CHECK_UINT(strlen(small), 7);
}

TAP_MAIN
