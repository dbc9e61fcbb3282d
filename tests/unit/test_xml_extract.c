/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>

#include "rarewatch/buf.h"
#include "rarewatch/macro.h"
#include "rarewatch/xml_extract.h"
#include "tap.h"

static const char sts[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "  <AssumeRoleResult>\n"
    "    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn></AssumedRoleUser>\n"
    "    <Credentials>\n"
    "      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>\n"
    "      <SecretAccessKey>se/cr+et</SecretAccessKey>\n"
    "      <SessionToken>tok&amp;en&#x3D;&#61;</SessionToken>\n"
    "      <Expiration>2026-11-28T06:00:00Z</Expiration>\n"
    "    </Credentials>\n"
    "  </AssumeRoleResult>\n"
    "  <ResponseMetadata><RequestId>c6104cbe</RequestId></ResponseMetadata>\n"
    "</AssumeRoleResponse>\n";

static char *get(const char *xml, const char *path, int *r)
{
    char *out = NULL;
    *r = xml_extract(xml, strlen(xml), path, &out, NULL);
    return out;
}

TEST(sts_response_fields)
{
    int r;
    char *v = get(sts, "Credentials/AccessKeyId", &r);
    CHECK_INT(r, 0);
    CHECK_STR(v, "ASIAEXAMPLE");
    free(v);
    v = get(sts, "Credentials/SessionToken", &r);
    CHECK_INT(r, 0);
    CHECK_STR(v, "tok&en==");
    free(v);
    v = get(sts, "/AssumeRoleResponse/ResponseMetadata/RequestId", &r);
    CHECK_STR(v, "c6104cbe");
    free(v);
    v = get(sts, "Arn", &r);
    CHECK_STR(v, "arn:aws:sts::123456789012:assumed-role/r/s");
    free(v);
}

TEST(anchored_and_suffix_paths)
{
    int r;
    CHECK(get(sts, "/AssumeRoleResult/Credentials/AccessKeyId", &r) == NULL);
    CHECK_INT(r, -ENOENT);
    CHECK(get(sts, "Credentials/Nope", &r) == NULL);
    CHECK_INT(r, -ENOENT);
    /* Suffix must be contiguous: AssumeRoleResult is not the parent of AccessKeyId. */
    CHECK(get(sts, "AssumeRoleResult/AccessKeyId", &r) == NULL);
    CHECK_INT(r, -ENOENT);
}

TEST(query_error_both_shapes)
{
    static const char a[] = "<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code>"
                            "<Message>The security token included in the request is expired</Message>"
                            "</Error><RequestId>r-1</RequestId></ErrorResponse>";
    static const char b[] = "<Response><Errors><Error><Code>AuthFailure</Code><Message>m</Message>"
                            "</Error></Errors><RequestID>r-2</RequestID></Response>";
    char code[96];
    CHECK_INT(xml_extract_to(a, strlen(a), "Error/Code", code, sizeof(code)), 12);
    CHECK_STR(code, "ExpiredToken");
    CHECK_INT(xml_extract_to(b, strlen(b), "Error/Code", code, sizeof(code)), 11);
    CHECK_STR(code, "AuthFailure");
}

TEST(entities_and_numeric_references)
{
    static const char x[] = "<a>&lt;&gt;&amp;&quot;&apos;&#65;&#x42;&#xe9;&#x20AC;&#x1F600;</a>";
    int r;
    char *v = get(x, "a", &r);
    CHECK_INT(r, 0);
    CHECK_STR(v, "<>&\"'AB\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
    free(v);
}

TEST(cdata_comments_namespaces_attributes)
{
    static const char x[] = "<?xml version='1.0'?><!-- c --><p:r xmlns:p='u' a=\"1\" b='&amp;'>"
                            "<p:v>x<![CDATA[<&]]>y<!-- skip -->z<child>no</child></p:v></p:r>";
    int r;
    char *v = get(x, "r/v", &r);
    CHECK_INT(r, 0);
    CHECK_STR(v, "x<&yz");
    free(v);
    v = get("<a><b/></a>", "b", &r);
    CHECK_INT(r, 0);
    CHECK_STR(v, "");
    free(v);
}

TEST(first_match_wins)
{
    int r;
    char *v = get("<a><b>1</b><b>2</b></a>", "a/b", &r);
    CHECK_STR(v, "1");
    free(v);
}

TEST(rejects_malformed)
{
    static const char *const bad[] = {
        "",
        "text only",
        "<a>",
        "<a></b>",
        "<a><b></a></b>",
        "<a>&unknown;</a>",
        "<a>&#0;</a>",
        "<a>&#xD800;</a>",
        "<a>&#x110000;</a>",
        "<a>&#;</a>",
        "<a>&amp</a>",
        "<a>& b</a>",
        "<a x=1></a>",
        "<a x='1></a>",
        "<a x='1'y='2'></a>",
        "<a></a><b></b>",
        "<a></a>trailing",
        "<!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>",
        "<a><!-- unterminated </a>",
        "<a><![CDATA[x</a>",
        "<a>\x01</a>",
        "<1a></1a>",
        "<a></a",
        "</a>",
        "<a/ >",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        char *v = NULL;
        int r = xml_extract(bad[i], strlen(bad[i]), "a", &v, NULL);
        if (r != -EINVAL)
            printf("# input %zu: r=%d\n", i, r);
        CHECK_INT(r, -EINVAL);
        CHECK(v == NULL);
    }
    /* An embedded NUL is malformed, not the end of the document. */
    char *v = NULL;
    CHECK_INT(xml_extract("<a>x\0y</a>", 10, "a", &v, NULL), -EINVAL);
    /* Well-formed up to the match is not enough: the whole body is checked. */
    CHECK_INT(xml_extract("<a><b>1</b>", 11, "b", &v, NULL), -EINVAL);
}

TEST(depth_limit)
{
    struct buf b = BUF_INIT;
    for (int i = 0; i < XML_EXTRACT_MAX_DEPTH; i++)
        buf_puts(&b, "<a>");
    for (int i = 0; i < XML_EXTRACT_MAX_DEPTH; i++)
        buf_puts(&b, "</a>");
    char *v = NULL;
    CHECK_INT(xml_extract(b.data, b.len, "a", &v, NULL), 0);
    free(v);
    buf_reset(&b);
    for (int i = 0; i <= XML_EXTRACT_MAX_DEPTH; i++)
        buf_puts(&b, "<a>");
    for (int i = 0; i <= XML_EXTRACT_MAX_DEPTH; i++)
        buf_puts(&b, "</a>");
    CHECK_INT(xml_extract(b.data, b.len, "a", &v, NULL), -EINVAL);
    buf_free(&b);
}

TEST(bad_paths)
{
    char *v = NULL;
    CHECK_INT(xml_extract("<a/>", 4, "", &v, NULL), -EINVAL);
    CHECK_INT(xml_extract("<a/>", 4, "/", &v, NULL), -EINVAL);
    CHECK_INT(xml_extract("<a/>", 4, "a//b", &v, NULL), -EINVAL);
    CHECK_INT(xml_extract("<a/>", 4, "a/", &v, NULL), -EINVAL);
}

TEST(truncation_keeps_utf8_whole)
{
    char small[5];
    /* "ab" + euro sign (3 bytes): 4 bytes of room fit "ab" only. */
    CHECK_INT(xml_extract_to("<a>ab&#x20AC;c</a>", 18, "a", small, sizeof(small)), 2);
    CHECK_STR(small, "ab");
    char big[16];
    CHECK_INT(xml_extract_to("<a>ab&#x20AC;c</a>", 18, "a", big, sizeof(big)), 6);
    CHECK_STR(big, "ab\xE2\x82\xAC" "c");
    CHECK_INT(xml_extract_to("<a>x</a>", 8, "b", big, sizeof(big)), -ENOENT);
    CHECK_STR(big, "");
}

TAP_MAIN
