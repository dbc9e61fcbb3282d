/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error responses from AWS endpoints, proxies and hostile servers: the
 * typed-error parser must never crash or over-read, must always produce a
 * NUL-terminated code and a message without control characters (they end
 * up in log lines), and must classify consistently. The first byte picks
 * the HTTP status and content type, the rest is the body. The same bytes
 * also go through the checkpoint-file parser (outside input on disk).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/aws_error.h"
#include "rarewatch/ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 20)
        return 0;
    static const int statuses[] = { 400, 403, 404, 429, 500, 502, 503, 504 };
    static const char *const types[] = { "application/x-amz-json-1.1", "text/xml", "text/html", "" };
    int status = statuses[data[0] & 7];
    const char *ctype = types[(data[0] >> 3) & 3];
    /* A copy without a terminator: the parser must respect the length. */
    char *body = malloc(size - 1 ? size - 1 : 1);
    if (!body)
        return 0;
    memcpy(body, data + 1, size - 1);
    struct aws_error e;
    aws_error_from_response(&e, status, ctype, body, size - 1, "req");
    if (strnlen(e.code, sizeof(e.code)) == sizeof(e.code) ||
        strnlen(e.message, sizeof(e.message)) == sizeof(e.message))
        abort();
    for (const char *p = e.message; *p; p++)
        if ((unsigned char)*p < 0x20)
            abort();
    if (e.kind != AWS_ERR_SERVICE || e.http_status != status)
        abort();
    /* Classification is a function of code, message and status only. */
    struct aws_error again = e;
    aws_error_classify(&again);
    if (again.retryable != e.retryable || again.throttling != e.throttling)
        abort();
    char buf[64];
    aws_error_str(&e, buf, sizeof(buf));
    struct checkpoint cp;
    if (ckpt_parse(body, size - 1, &cp) == 0 && cp.state == CKPT_SEQUENCE &&
        strspn(cp.sequence, "0123456789") != strlen(cp.sequence))
        abort();
    free(body);
    return 0;
}
