/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The XML element extractor against arbitrary bytes: no crash, over-read or
 * hang; xml_extract() and xml_extract_to() must agree; decoded text is never
 * longer than the input and never holds a NUL; and the STS credentials
 * reader built on it must accept only what the extractor accepts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/aws_creds.h"
#include "rarewatch/xml_extract.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const paths[] = {
    "Credentials/AccessKeyId", "Error/Code", "/ErrorResponse/Error/Message", "a", "a/b", "/a",
    "RequestId",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20)
        return 0;
    const char *xml = (const char *)data;
    int rs[ELEMENTSOF(paths)];

    for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
        char *v = NULL, small[7];
        size_t n = 0;
        int r = xml_extract(xml, size, paths[i], &v, &n);
        int r2 = xml_extract_to(xml, size, paths[i], small, sizeof(small));
        rs[i] = r;
        if (r < 0) {
            if (v || r2 != r || small[0])
                abort();
            /* Well-formedness does not depend on the path. */
            if (i > 0 && (r == -EINVAL) != (rs[0] == -EINVAL))
                abort();
            continue;
        }
        if (!v || n != strlen(v) || n > size || r2 < 0 || (size_t)r2 > n ||
            (size_t)r2 >= sizeof(small) || strncmp(v, small, (size_t)r2) != 0)
            abort();
        free(v);
    }
    struct aws_credentials *c = NULL;
    struct aws_error err = { 0 };
    int r = aws_creds_parse_sts_xml(xml, size, "sts-assume-role", &c, &err);
    if (r >= 0 && (!c || rs[0] < 0))
        abort();
    if (r < 0 && (c || err.kind != AWS_ERR_CREDENTIALS) && r != -ENOMEM)
        abort();
    aws_credentials_unref(c);
    return 0;
}
