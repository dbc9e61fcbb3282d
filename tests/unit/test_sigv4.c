/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SigV4 against AWS's published test suite (the aws-sig-v4-test-suite as
 * maintained in awslabs/aws-c-auth, tests/aws-signing-test-suite/v4, plus
 * the two query-order cases only the original suite carries), the
 * documented signing-key example, and the key cache.
 */
#include <stdbool.h>

#include "rarewatch/sigv4.h"
#include "tap.h"

#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define T_20150830T123600Z ((time_t)1440938160)
#define STS_TOKEN                                                                            \
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRX" \
    "mxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsbur" \
    "EDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPk" \
    "UL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="

struct vector {
    const char *name, *method, *path, *query;
    struct sigv4_header headers[8];
    const char *body, *token;
    bool unnormalized;
    const char *creq, *sts, *sig;
};

/* request.txt of each case, split into our request fields; x-amz-content-sha256
 * is passed in where the suite's signer would have added it (sign_body). */
static const struct vector vectors[] = {
    {
        .name = "get-header-key-duplicate",
        .method = "GET",
        .path = "/",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}, {"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}},
        .body = "",
        .creq = "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\ndc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
        .sig = "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
    },
    {
        .name = "get-header-value-multiline",
        .method = "GET",
        .path = "/",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}, {"My-Header1", "value1\n  value2\n     value3"}},
        .body = "",
        .creq = "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1 value2 value3\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\ne99419459a677bc11de234014be3c4e72c1ea5b454ceb58b613061f5d7a162e8",
        .sig = "cfd34249e4b1c8d6b91ef74165d41a32e5fab3306300901bb65a51a73575eefd",
    },
    {
        .name = "get-header-value-order",
        .method = "GET",
        .path = "/",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}, {"My-Header1", "value4"}, {"My-Header1", "value1"}, {"My-Header1", "value3"}, {"My-Header1", "value2"}},
        .body = "",
        .creq = "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value4,value1,value3,value2\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
        .sig = "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
    },
    {
        .name = "get-header-value-trim",
        .method = "GET",
        .path = "/",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}, {"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}},
        .body = "",
        .creq = "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\na726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
        .sig = "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    },
    {
        .name = "get-relative-normalized",
        .method = "GET",
        .path = "/example/..",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        .sig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    {
        .name = "get-relative-relative-normalized",
        .method = "GET",
        .path = "/example1/example2/../..",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        .sig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    {
        .name = "get-relative-relative-unnormalized",
        .method = "GET",
        .path = "/example1/example2/../..",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .unnormalized = true,
        .creq = "GET\n/example1/example2/../..\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n76115030c0f3ff06c20fdff5ceb6d5e0b835a1743e00b94fea7c7f381269437b",
        .sig = "dc33e0856fd4baca4d7aa2146c38958283844764f38c74252a333df5e613003b",
    },
    {
        .name = "get-relative-unnormalized",
        .method = "GET",
        .path = "/example/..",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .unnormalized = true,
        .creq = "GET\n/example/..\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n0511f456aa502b456d135fcb9d749374a55228f9dbeedda1eacf659e05b0615b",
        .sig = "eca7ead57bb5aa5c8e28007acd4ff04e1ff9a0ff3b237ec1554a184887ff9282",
    },
    {
        .name = "get-slash-dot-slash-normalized",
        .method = "GET",
        .path = "/./",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        .sig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    {
        .name = "get-slash-dot-slash-unnormalized",
        .method = "GET",
        .path = "/./",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .unnormalized = true,
        .creq = "GET\n/./\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nd67825e2268bd77a97c7688b8d72c31a3c1855b309808505ba0a9747d2465aa7",
        .sig = "68714168e6557f8f2de0ef956fc24dc2593a4bd2961f8df51898d8a134695145",
    },
    {
        .name = "get-slash-normalized",
        .method = "GET",
        .path = "//",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        .sig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    {
        .name = "get-slash-pointless-dot-normalized",
        .method = "GET",
        .path = "/./example",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/example\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n214d50c111a8edc4819da6a636336472c916b5240f51e9a51b5c3305180cf702",
        .sig = "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5",
    },
    {
        .name = "get-slash-pointless-dot-unnormalized",
        .method = "GET",
        .path = "/./example",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .unnormalized = true,
        .creq = "GET\n/./example\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n73895e0e829507e28e39fd24669aedc2434a8e179e547e3c075b42921f952cdb",
        .sig = "beb03f223f7deae4146464f06e29eebbee9c8afbe15c290cf07aa8b119e14cff",
    },
    {
        .name = "get-slash-unnormalized",
        .method = "GET",
        .path = "//",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .unnormalized = true,
        .creq = "GET\n//\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n80cb39203d058af815de2b79250ff56e1b73eb9b4718c86556cdc6f150c5d209",
        .sig = "c88bcd3d312d75078c0cd961d6deae3f4c754924b01669efcfcb439fd5e5b76e",
    },
    {
        .name = "get-slashes-normalized",
        .method = "GET",
        .path = "//example//",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/example/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\ncb96b4ac96d501f7c5c15bc6d67b3035061cfced4af6585ad927f7e6c985c015",
        .sig = "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
    },
    {
        .name = "get-slashes-unnormalized",
        .method = "GET",
        .path = "//example//",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .unnormalized = true,
        .creq = "GET\n//example//\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n528ec3105ee1f34ab014bb0a1a45da0ed2742a4fea3555149e5b4d5d201eb240",
        .sig = "87cca117541a147f6df867677d98a7d80dff226d2bfca9e4ffa899665623c7e5",
    },
    {
        .name = "get-space-normalized",
        .method = "GET",
        .path = "/example space/",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/example%20space/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
        .sig = "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
    },
    {
        .name = "get-space-unnormalized",
        .method = "GET",
        .path = "/example space/",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .unnormalized = true,
        .creq = "GET\n/example%20space/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
        .sig = "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
    },
    {
        .name = "get-unreserved",
        .method = "GET",
        .path = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
        .sig = "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
    },
    {
        .name = "get-utf8",
        .method = "GET",
        .path = "/\xe1""\x88""\xb4""",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
        .sig = "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    },
    {
        .name = "get-vanilla",
        .method = "GET",
        .path = "/",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        .sig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    {
        .name = "get-vanilla-empty-query-key",
        .method = "GET",
        .path = "/",
        .query = "Param1=value1",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n1e24db194ed7d0eec2de28d7369675a243488e08526e8c1c73571282f7c517ab",
        .sig = "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
    },
    {
        .name = "get-vanilla-query",
        .method = "GET",
        .path = "/",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        .sig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    {
        .name = "get-vanilla-query-order-encoded",
        .method = "GET",
        .path = "/",
        .query = "Param-3=Value3&Param=Value2&%E1%88%B4=Value1",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/\n%E1%88%B4=Value1&Param=Value2&Param-3=Value3\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n868294f5c38bd141c4972a373a76654f1418a8e4fc18b2e7903ae45e8ae0ec71",
        .sig = "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac",
    },
    {
        .name = "get-vanilla-query-order-key-case",
        .method = "GET",
        .path = "/",
        .query = "Param2=value2&Param1=value1",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
        .sig = "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    },
    {
        .name = "get-vanilla-query-unreserved",
        .method = "GET",
        .path = "/",
        .query = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/\n-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nc30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
        .sig = "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    },
    {
        .name = "get-vanilla-utf8-query",
        .method = "GET",
        .path = "/",
        .query = "\xe1""\x88""\xb4""=bar",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\neb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
        .sig = "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    },
    {
        .name = "get-vanilla-with-session-token",
        .method = "GET",
        .path = "/",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
        .creq = "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267\n\nhost;x-amz-date;x-amz-security-token\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n067b36aa60031588cea4a4cde1f21215227a047690c72247f1d70b32fbbfad2b",
        .sig = "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
    },
    {
        .name = "post-header-key-case",
        .method = "POST",
        .path = "/",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
        .sig = "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    },
    {
        .name = "post-header-key-sort",
        .method = "POST",
        .path = "/",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}, {"My-Header1", "value1"}},
        .body = "",
        .creq = "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65",
        .sig = "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
    },
    {
        .name = "post-header-value-case",
        .method = "POST",
        .path = "/",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}, {"My-Header1", "VALUE1"}},
        .body = "",
        .creq = "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nd51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a64618606a93",
        .sig = "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
    },
    {
        .name = "post-sts-header-before",
        .method = "POST",
        .path = "/",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .token = STS_TOKEN,
        .creq = "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:" STS_TOKEN "\n\nhost;x-amz-date;x-amz-security-token\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nc237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6",
        .sig = "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
    },
    {
        .name = "post-vanilla",
        .method = "POST",
        .path = "/",
        .query = "",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
        .sig = "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    },
    {
        .name = "post-vanilla-empty-query-value",
        .method = "POST",
        .path = "/",
        .query = "Param1=value1",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "POST\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
        .sig = "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    },
    {
        .name = "post-vanilla-query",
        .method = "POST",
        .path = "/",
        .query = "Param1=value1",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "POST\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
        .sig = "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    },
    {
        .name = "post-x-www-form-urlencoded",
        .method = "POST",
        .path = "/",
        .query = "",
        .headers = {{"Content-Type", "application/x-www-form-urlencoded"}, {"Host", "example.amazonaws.com"}, {"Content-Length", "13"}, {"X-Amz-Content-Sha256", "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"}},
        .body = "Param1=value1",
        .creq = "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\nx-amz-date:20150830T123600Z\n\ncontent-length;content-type;host;x-amz-content-sha256;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nb1edd1d03544c25390e32085d55b57acc9a3961bb59415ff86c45c3d89d16cfb",
        .sig = "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
    },
    {
        .name = "post-x-www-form-urlencoded-parameters",
        .method = "POST",
        .path = "/",
        .query = "",
        .headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}, {"Host", "example.amazonaws.com"}, {"Content-Length", "13"}, {"X-Amz-Content-Sha256", "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"}},
        .body = "Param1=value1",
        .creq = "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded; charset=utf-8\nhost:example.amazonaws.com\nx-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\nx-amz-date:20150830T123600Z\n\ncontent-length;content-type;host;x-amz-content-sha256;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\na89f1a5b53e37702ee6363ce1da3ce8f54386f3c8f352ae652153c2982a0bc4d",
        .sig = "328d1b9eaadca9f5818ef05e8392801e091653bafec24fcab71e7344e7f51422",
    },
    {
        .name = "get-vanilla-query-order-key",
        .method = "GET",
        .path = "/",
        .query = "Param1=value2&Param1=Value1",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89",
        .sig = "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
    },
    {
        .name = "get-vanilla-query-order-value",
        .method = "GET",
        .path = "/",
        .query = "Param1=value2&Param1=value1",
        .headers = {{"Host", "example.amazonaws.com"}},
        .body = "",
        .creq = "GET\n/\nParam1=value1&Param1=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nc968629d70850097a2d8781c9bf7edcb988b04cac14cca9be4acc3595f884606",
        .sig = "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
    },
};

static size_t count_headers(const struct vector *v)
{
    size_t n = 0;
    while (n < ELEMENTSOF(v->headers) && v->headers[n].name)
        n++;
    return n;
}

static struct sigv4_request vector_request(const struct vector *v)
{
    return (struct sigv4_request){
        .method = v->method,
        .path = v->path,
        .query = v->query,
        .headers = v->headers,
        .n_headers = count_headers(v),
        .payload = v->body,
        .payload_len = strlen(v->body),
        .region = "us-east-1",
        .service = "service",
        .time = T_20150830T123600Z,
        .keep_path_unnormalized = v->unnormalized,
    };
}

TEST(aws_test_suite)
{
    struct sigv4_key_cache *kc = sigv4_key_cache_new();
    struct sigv4_result res = SIGV4_RESULT_INIT;
    CHECK(kc);
    CHECK(ELEMENTSOF(vectors) >= 30);
    for (size_t i = 0; kc && i < ELEMENTSOF(vectors); i++) {
        const struct vector *v = &vectors[i];
        struct sigv4_credentials creds = {AKID, SECRET, v->token};
        struct sigv4_request rq = vector_request(v);
        int r = sigv4_sign(kc, &creds, &rq, &res);
        if (r < 0) {
            TAP_FAIL_("%s: sigv4_sign() = %d", v->name, r);
            continue;
        }
        if (!streq(res.canonical_request.data, v->creq))
            TAP_FAIL_("%s: canonical request\n%s\n--- expected\n%s", v->name,
                      res.canonical_request.data, v->creq);
        if (!streq(res.string_to_sign.data, v->sts))
            TAP_FAIL_("%s: string to sign\n%s\n--- expected\n%s", v->name,
                      res.string_to_sign.data, v->sts);
        if (!streq(res.signature, v->sig))
            TAP_FAIL_("%s: signature %s, expected %s", v->name, res.signature, v->sig);
        CHECK_STR(res.amz_date, "20150830T123600Z");
        CHECK_CONTAINS(res.authorization.data, v->sig);
    }
    sigv4_result_free(&res);
    sigv4_key_cache_free(kc);
}

TEST(output_headers)
{
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    struct sigv4_result res = SIGV4_RESULT_INIT;
    struct sigv4_header h[] = {{"Host", "example.amazonaws.com"}};
    struct sigv4_request rq = {.method = "GET", .path = "/", .headers = h, .n_headers = 1,
                               .region = "us-east-1", .service = "service",
                               .time = T_20150830T123600Z};
    struct sigv4_credentials plain = {AKID, SECRET, NULL}, empty_token = {AKID, SECRET, ""},
                             temp = {AKID, SECRET, "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"};

    CHECK_INT(sigv4_sign(kc, &plain, &rq, &res), 0);
    CHECK_UINT(res.n_headers, 2);
    CHECK_STR(res.headers[0].name, "X-Amz-Date");
    CHECK_STR(res.headers[0].value, "20150830T123600Z");
    CHECK_STR(res.headers[1].name, "Authorization");
    CHECK_STR(res.headers[1].value,
              "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
              "SignedHeaders=host;x-amz-date, "
              "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");

    /* An empty token means permanent credentials, as in botocore. */
    CHECK_INT(sigv4_sign(kc, &empty_token, &rq, &res), 0);
    CHECK_UINT(res.n_headers, 2);
    CHECK_STR(res.signature, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");

    /* get-vanilla-with-session-token: the token is signed and returned. */
    CHECK_INT(sigv4_sign(kc, &temp, &rq, &res), 0);
    CHECK_UINT(res.n_headers, 3);
    CHECK_STR(res.headers[1].name, "X-Amz-Security-Token");
    CHECK_STR(res.headers[1].value, temp.session_token);
    CHECK_STR(res.headers[2].name, "Authorization");
    CHECK_CONTAINS(res.headers[2].value, "SignedHeaders=host;x-amz-date;x-amz-security-token, ");
    CHECK_STR(res.signature, "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8");
    sigv4_result_free(&res);
}

/* The documentation's key-derivation examples. The well-known
 * c4afb1cc... value belongs to date 20150830 (the IAM ListUsers walk-through),
 * not 20120215, whose kSigning is f4780e2d...; both are checked. */
TEST(signing_key_docs_examples)
{
    uint8_t key[SIGV4_KEY_LEN];
    char hex[2 * SIGV4_KEY_LEN + 1];
    CHECK_INT(sigv4_derive_signing_key(SECRET, "20150830", "us-east-1", "iam", key), 0);
    sigv4_hex(key, sizeof(key), hex);
    CHECK_STR(hex, "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
    CHECK_INT(sigv4_derive_signing_key(SECRET, "20120215", "us-east-1", "iam", key), 0);
    sigv4_hex(key, sizeof(key), hex);
    CHECK_STR(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    CHECK_INT(sigv4_derive_signing_key(SECRET, "2012021", "us-east-1", "iam", key), -EINVAL);
    CHECK_INT(sigv4_derive_signing_key(SECRET, "20120215", "us/east", "iam", key), -EINVAL);
}

/* Sign get-vanilla with the given cache; returns the signature by value. */
struct sig {
    int r;
    char hex[SIGV4_HEX_LEN + 1];
};

static struct sig sign_with(struct sigv4_key_cache *kc, const char *secret, time_t t,
                            const char *region, const char *service)
{
    struct sigv4_result res = SIGV4_RESULT_INIT;
    struct sigv4_header h[] = {{"Host", "example.amazonaws.com"}};
    struct sigv4_request rq = {.method = "GET", .path = "/", .headers = h, .n_headers = 1,
                               .region = region, .service = service, .time = t};
    struct sigv4_credentials creds = {AKID, secret, NULL};
    struct sig s = {0};
    s.r = sigv4_sign(kc, &creds, &rq, &res);
    memcpy(s.hex, res.signature, sizeof(s.hex));
    sigv4_result_free(&res);
    return s;
}

/* A fresh cache per call: always a cold derivation. */
static struct sig sign_cold(const char *secret, time_t t, const char *region, const char *service)
{
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    return sign_with(kc, secret, t, region, service);
}

#define SECRET2 "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
#define DAY ((time_t)86400)

TEST(key_cache_matches_cold_derivation)
{
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    struct sig cold = sign_cold(SECRET, T_20150830T123600Z, "us-east-1", "service");
    CHECK_INT(cold.r, 0);
    CHECK_STR(cold.hex, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");

    for (int i = 0; i < 3; i++) {
        struct sig warm = sign_with(kc, SECRET, T_20150830T123600Z + i, "us-east-1", "service");
        CHECK_INT(warm.r, 0);
        if (i == 0)
            CHECK_STR(warm.hex, cold.hex);
        else /* same day, other second: same key, other string to sign */
            CHECK_STR(warm.hex, sign_cold(SECRET, T_20150830T123600Z + i, "us-east-1", "service").hex);
    }
    struct sigv4_key_cache_stats st = sigv4_key_cache_get_stats(kc);
    CHECK_UINT(st.derivations, 1);
    CHECK_UINT(st.hits, 2);
}

TEST(key_cache_rederives_on_date_change)
{
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    /* 23:59:59 and the next second fall on different UTC days. */
    time_t midnight = T_20150830T123600Z - 12 * 3600 - 36 * 60 + DAY;
    struct sig before = sign_with(kc, SECRET, midnight - 1, "us-east-1", "service");
    struct sig after = sign_with(kc, SECRET, midnight, "us-east-1", "service");
    CHECK_INT(before.r, 0);
    CHECK_INT(after.r, 0);
    CHECK_STR(before.hex, sign_cold(SECRET, midnight - 1, "us-east-1", "service").hex);
    CHECK_STR(after.hex, sign_cold(SECRET, midnight, "us-east-1", "service").hex);
    CHECK(strcmp(before.hex, after.hex) != 0);
    CHECK_UINT(sigv4_key_cache_get_stats(kc).derivations, 2);
}

TEST(key_cache_rederives_on_secret_change)
{
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    /* Rotation in place: same buffer, new contents. */
    char secret[] = SECRET;
    struct sig a = sign_with(kc, secret, T_20150830T123600Z, "us-east-1", "service");
    memcpy(secret, SECRET2, sizeof(secret));
    struct sig b = sign_with(kc, secret, T_20150830T123600Z, "us-east-1", "service");
    CHECK_INT(a.r, 0);
    CHECK_INT(b.r, 0);
    CHECK_STR(a.hex, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    CHECK_STR(b.hex, sign_cold(SECRET2, T_20150830T123600Z, "us-east-1", "service").hex);
    CHECK(strcmp(a.hex, b.hex) != 0);
    CHECK_UINT(sigv4_key_cache_get_stats(kc).derivations, 2);
}

TEST(key_cache_scopes_and_eviction)
{
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    static const char *const scopes[][2] = {
        {"us-east-1", "kinesis"}, {"us-east-1", "firehose"}, {"us-east-1", "monitoring"},
        {"eu-west-1", "kinesis"}, {"eu-west-1", "firehose"},
    };
    /* Three services of one region stay cached side by side. */
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < 3; i++) {
            struct sig s = sign_with(kc, SECRET, T_20150830T123600Z, scopes[i][0], scopes[i][1]);
            CHECK_STR(s.hex, sign_cold(SECRET, T_20150830T123600Z, scopes[i][0], scopes[i][1]).hex);
        }
    CHECK_UINT(sigv4_key_cache_get_stats(kc).derivations, 3);
    CHECK_UINT(sigv4_key_cache_get_stats(kc).hits, 3);

    /* More scopes than slots: whatever gets evicted, answers stay right. */
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < ELEMENTSOF(scopes); i++) {
            struct sig s = sign_with(kc, SECRET, T_20150830T123600Z, scopes[i][0], scopes[i][1]);
            CHECK_STR(s.hex, sign_cold(SECRET, T_20150830T123600Z, scopes[i][0], scopes[i][1]).hex);
        }
    CHECK(sigv4_key_cache_get_stats(kc).derivations > 3);

    uint64_t before = sigv4_key_cache_get_stats(kc).derivations;
    sigv4_key_cache_clear(kc);
    struct sig s = sign_with(kc, SECRET, T_20150830T123600Z, "us-east-1", "service");
    CHECK_STR(s.hex, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    CHECK_UINT(sigv4_key_cache_get_stats(kc).derivations, before + 1);
}

/* ---- canonicalisation beyond the suite ---- */

static const char *creq_of(struct sigv4_key_cache *kc, struct sigv4_result *res, const char *path,
                           const char *query, const struct sigv4_header *h, size_t nh)
{
    struct sigv4_request rq = {.method = "GET", .path = path, .query = query, .headers = h,
                               .n_headers = nh, .region = "us-east-1", .service = "service",
                               .time = T_20150830T123600Z};
    struct sigv4_credentials creds = {AKID, SECRET, NULL};
    int r = sigv4_sign(kc, &creds, &rq, res);
    return r < 0 ? NULL : res->canonical_request.data;
}

#define HOST_ONLY (struct sigv4_header[]){{"Host", "h"}}, 1
#define CREQ(path, query) "GET\n" path "\n" query "\nhost:h\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

TEST(path_double_encoding_and_normalisation)
{
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    struct sigv4_result res = SIGV4_RESULT_INIT;
    /* A wire escape is encoded again: non-S3 services sign the double encoding. */
    CHECK_STR(creq_of(kc, &res, "/a%20b/c+d", NULL, HOST_ONLY), CREQ("/a%2520b/c%2Bd", ""));
    CHECK_STR(creq_of(kc, &res, "/a/./b/../../c/", NULL, HOST_ONLY), CREQ("/c/", ""));
    CHECK_STR(creq_of(kc, &res, "/../..", NULL, HOST_ONLY), CREQ("/", ""));
    CHECK_STR(creq_of(kc, &res, "/a/b/..", NULL, HOST_ONLY), CREQ("/a", ""));
    CHECK_STR(creq_of(kc, &res, "/%2E%2E/x", NULL, HOST_ONLY), CREQ("/%252E%252E/x", ""));
    CHECK_STR(creq_of(kc, &res, NULL, NULL, HOST_ONLY), CREQ("/", ""));
    CHECK_STR(creq_of(kc, &res, "", NULL, HOST_ONLY), CREQ("/", ""));
    CHECK_STR(creq_of(kc, &res, "/!$&'()*,;:@=", NULL, HOST_ONLY),
              CREQ("/%21%24%26%27%28%29%2A%2C%3B%3A%40%3D", ""));
    sigv4_result_free(&res);
}

TEST(query_decoding_and_sorting)
{
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    struct sigv4_result res = SIGV4_RESULT_INIT;
    /* Raw and pre-encoded input canonicalise alike; '+' stays a plus. */
    CHECK_STR(creq_of(kc, &res, "/", "b=x y&a=1+1", HOST_ONLY), CREQ("/", "a=1%2B1&b=x%20y"));
    CHECK_STR(creq_of(kc, &res, "/", "b=x%20y&a=1%2b1", HOST_ONLY), CREQ("/", "a=1%2B1&b=x%20y"));
    /* Missing values keep their '=', empty pieces vanish. */
    CHECK_STR(creq_of(kc, &res, "/", "k&&j=&", HOST_ONLY), CREQ("/", "j=&k="));
    /* Sorted on the encoded bytes, key before value: "%7F" < "-", "a" < "a-b". */
    CHECK_STR(creq_of(kc, &res, "/", "-=1&%7f=2&a-b=3&a=9&a=10", HOST_ONLY),
              CREQ("/", "%7F=2&-=1&a=10&a=9&a-b=3"));
    CHECK_STR(creq_of(kc, &res, "/", "a=b=c", HOST_ONLY), CREQ("/", "a=b%3Dc"));
    CHECK(creq_of(kc, &res, "/", "a=%zz", HOST_ONLY) == NULL);
    CHECK(creq_of(kc, &res, "/", "a=%4", HOST_ONLY) == NULL);
    CHECK(creq_of(kc, &res, "/", "a%", HOST_ONLY) == NULL);
    sigv4_result_free(&res);
}

TEST(header_canonicalisation)
{
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    struct sigv4_result res = SIGV4_RESULT_INIT;
    struct sigv4_header h[] = {
        {"X-B", "\t two\t\tspaced  words \r\n"},
        {"host", "h"},
        {"User-Agent", "rarewatch/0.1"},   /* rewritten by proxies: never signed */
        {"x-a", "1"},
        {"Expect", "100-continue"},
        {"X-A", "  "},                     /* empty after trimming, still joined */
        {"x-a", "3"},
        {"Content-Type", "application/x-amz-json-1.1"},
    };
    CHECK_STR(creq_of(kc, &res, "/", NULL, h, ELEMENTSOF(h)),
              "GET\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:h\nx-a:1,,3\n"
              "x-amz-date:20150830T123600Z\nx-b:two spaced words\n\n"
              "content-type;host;x-a;x-amz-date;x-b\n"
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_CONTAINS(res.authorization.data, "SignedHeaders=content-type;host;x-a;x-amz-date;x-b, ");
    sigv4_result_free(&res);
}

TEST(payload_hash_given_or_computed)
{
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    struct sigv4_result res = SIGV4_RESULT_INIT;
    struct sigv4_header h[] = {{"Host", "h"}};
    struct sigv4_credentials creds = {AKID, SECRET, NULL};
    struct sigv4_request rq = {.method = "POST", .path = "/", .headers = h, .n_headers = 1,
                               .payload = "Param1=value1", .payload_len = 13,
                               .region = "us-east-1", .service = "service",
                               .time = T_20150830T123600Z};
    char computed[SIGV4_HEX_LEN + 1];
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), 0);
    CHECK_CONTAINS(res.canonical_request.data,
                   "\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
    memcpy(computed, res.signature, sizeof(computed));

    rq.payload = NULL;
    rq.payload_len = 0;
    rq.payload_hash = "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e";
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), 0);
    CHECK_STR(res.signature, computed);

    rq.payload_hash = "UNSIGNED-PAYLOAD";
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), 0);
    CHECK_CONTAINS(res.canonical_request.data, "x-amz-date\nUNSIGNED-PAYLOAD");
    rq.payload_hash = "abc\ndef";
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), -EINVAL);
    rq.payload_hash = NULL;
    rq.payload_len = 5; /* length without a body */
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), -EINVAL);
    sigv4_result_free(&res);
}

TEST(amz_date_formatting)
{
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    struct sigv4_result res = SIGV4_RESULT_INIT;
    struct sigv4_header h[] = {{"Host", "h"}};
    struct sigv4_credentials creds = {AKID, SECRET, NULL};
    struct sigv4_request rq = {.method = "GET", .headers = h, .n_headers = 1,
                               .region = "r", .service = "s"};
    static const struct {
        time_t t;
        const char *want;
    } cases[] = {
        {0, "19700101T000000Z"},
        {-1, "19691231T235959Z"},
        {951782400, "20000229T000000Z"},          /* leap day of a century leap year */
        {951782400 + DAY, "20000301T000000Z"},
        {4107542399, "21000228T235959Z"},         /* 2100 is not a leap year */
        {4107542400, "21000301T000000Z"},
        {(time_t)253402300799, "99991231T235959Z"},
        {(time_t)-11670912000, "16000301T000000Z"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        rq.time = cases[i].t;
        CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), 0);
        CHECK_STR(res.amz_date, cases[i].want);
    }
    rq.time = (time_t)253402300800; /* year 10000 has no 4-digit form */
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), -EINVAL);
    sigv4_result_free(&res);
}

TEST(rejects_malformed_input)
{
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    struct sigv4_result res = SIGV4_RESULT_INIT;
    struct sigv4_credentials creds = {AKID, SECRET, NULL};
    struct sigv4_header ok[] = {{"Host", "h"}};
    struct sigv4_request base = {.method = "GET", .path = "/", .headers = ok, .n_headers = 1,
                                 .region = "us-east-1", .service = "service",
                                 .time = T_20150830T123600Z};
    struct sigv4_request rq;

    static const struct sigv4_header no_host[] = {{"X-A", "1"}};
    static const struct sigv4_header blank_host[] = {{"Host", "  "}};
    static const struct sigv4_header own_date[] = {{"Host", "h"}, {"X-Amz-Date", "x"}};
    static const struct sigv4_header own_auth[] = {{"Host", "h"}, {"authorization", "x"}};
    static const struct sigv4_header own_token[] = {{"Host", "h"}, {"X-AMZ-SECURITY-TOKEN", "x"}};
    static const struct sigv4_header bad_name[] = {{"Host", "h"}, {"X A", "x"}};
    static const struct sigv4_header colon_name[] = {{"Host", "h"}, {"X:A", "x"}};
    static const struct sigv4_header empty_name[] = {{"Host", "h"}, {"", "x"}};
    static const struct sigv4_header null_value[] = {{"Host", "h"}, {"X-A", NULL}};
    const struct {
        const struct sigv4_header *h;
        size_t n;
    } bad[] = {
        {no_host, 1}, {blank_host, 1}, {own_date, 2}, {own_auth, 2}, {own_token, 2},
        {bad_name, 2}, {colon_name, 2}, {empty_name, 2}, {null_value, 2},
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        rq = base;
        rq.headers = bad[i].h;
        rq.n_headers = bad[i].n;
        CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), -EINVAL);
    }

    struct sigv4_header many[SIGV4_MAX_HEADERS + 1];
    for (size_t i = 0; i < ELEMENTSOF(many); i++)
        many[i] = (struct sigv4_header){"Host", "h"};
    rq = base;
    rq.headers = many;
    rq.n_headers = SIGV4_MAX_HEADERS;
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), 0);
    rq.n_headers = SIGV4_MAX_HEADERS + 1;
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), -E2BIG);

    struct buf q = BUF_INIT;
    for (int i = 0; i < SIGV4_MAX_QUERY_PARAMS; i++)
        CHECK_INT(buf_printf(&q, "%sk%d=v", i ? "&" : "", i), 0);
    rq = base;
    rq.query = q.data;
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), 0);
    CHECK_INT(buf_puts(&q, "&one=more"), 0);
    rq.query = q.data;
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), -E2BIG);
    buf_free(&q);

    rq = base;
    rq.path = "relative";
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), -EINVAL);
    rq = base;
    rq.region = "us/east";
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), -EINVAL);
    rq = base;
    rq.service = "";
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), -EINVAL);
    rq = base;
    rq.service = "a-service-name-that-is-much-longer-than-any-aws-service-has-ever-been";
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), -EINVAL);
    rq = base;
    rq.method = "G T";
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), -EINVAL);

    struct sigv4_credentials bad_creds[] = {
        {"AKID/X", SECRET, NULL}, {"", SECRET, NULL}, {AKID, "", NULL}, {NULL, SECRET, NULL},
        {AKID, NULL, NULL},
    };
    for (size_t i = 0; i < ELEMENTSOF(bad_creds); i++)
        CHECK_INT(sigv4_sign(kc, &bad_creds[i], &base, &res), -EINVAL);

    /* A failed call leaves nothing that looks like a usable signature. */
    CHECK_UINT(res.n_headers, 0);
    CHECK_STR(res.signature, "");
    sigv4_result_free(&res);
}

TEST(steady_state_does_not_grow_buffers)
{
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = sigv4_key_cache_new();
    struct sigv4_result res = SIGV4_RESULT_INIT;
    const struct vector *v = &vectors[0];
    struct sigv4_credentials creds = {AKID, SECRET, NULL};
    struct sigv4_request rq = vector_request(v);
    CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), 0);
    char *a = res.authorization.data, *c = res.canonical_request.data, *s = res.string_to_sign.data;
    for (int i = 0; i < 100; i++)
        CHECK_INT(sigv4_sign(kc, &creds, &rq, &res), 0);
    CHECK(a == res.authorization.data);
    CHECK(c == res.canonical_request.data);
    CHECK(s == res.string_to_sign.data);
    sigv4_result_free(&res);
}

TAP_MAIN
