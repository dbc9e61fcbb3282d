/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/buf.h"

#include "tap.h"

TEST(append_and_printf)
{
    _cleanup_buf_ struct buf b = BUF_INIT;
    CHECK_INT(buf_puts(&b, "hello"), 0);
    CHECK_INT(buf_printf(&b, " %d %s", 42, "world"), 0);
    CHECK_STR(b.data, "hello 42 world");
    CHECK_UINT(b.len, 14);
    buf_reset(&b);
    CHECK_UINT(b.len, 0);
    CHECK_STR(b.data, "");
    /* Large formatted output grows the buffer. */
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    CHECK_INT(buf_printf(&b, "%s|", big), 0);
    CHECK_UINT(b.len, sizeof(big));
    CHECK(b.data[b.len - 1] == '|');
}

TEST(json_strings_escape_and_repair_utf8)
{
    _cleanup_buf_ struct buf b = BUF_INIT;
    const char in[] = "a\"b\\c\n\x01" "é" "\xff" "z";
    CHECK_INT(buf_put_json_string(&b, in, sizeof(in) - 1), 0);
    CHECK_STR(b.data, "\"a\\\"b\\\\c\\n\\u0001é\xEF\xBF\xBDz\"");
    buf_reset(&b);
    /* Overlong encoding and surrogates are invalid UTF-8. */
    CHECK_INT(buf_put_json_string(&b, "\xC0\xAF\xED\xA0\x80", 5), 0);
    CHECK_STR(b.data, "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
}

/* The eight-bytes-at-a-time path: a byte that needs care at every position
 * of strings up to 40 bytes is escaped exactly as on its own. */
TEST(json_strings_fast_path_positions)
{
    const char special[] = { '"', '\\', '\n', 0x01, 0x1f, (char)0x80, (char)0xc3, (char)0xff, 0x7f, ' ', '~', '!', '#', '[', ']' };
    struct buf got = BUF_INIT, want = BUF_INIT, one = BUF_INIT;
    for (size_t len = 1; len <= 40; len++)
        for (size_t pos = 0; pos < len; pos++)
            for (size_t k = 0; k < sizeof(special); k++) {
                char s[41];
                memset(s, 'a' + (int)(len % 26), len);
                s[pos] = special[k];
                buf_reset(&got);
                CHECK_INT(buf_put_json_string(&got, s, len), 0);
                buf_reset(&one);
                CHECK_INT(buf_put_json_string(&one, &s[pos], 1), 0);
                buf_reset(&want);
                buf_putc(&want, '"');
                buf_append(&want, s, pos);
                buf_append(&want, one.data + 1, one.len - 2);
                buf_append(&want, s + pos + 1, len - pos - 1);
                buf_putc(&want, '"');
                if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0) {
                    TAP_FAIL_("len %zu, byte 0x%02x at %zu: %s, want %s", len, (unsigned char)special[k], pos,
                              got.data, want.data);
                    goto out;
                }
            }
out:
    buf_free(&got);
    buf_free(&want);
    buf_free(&one);
}

TEST(arena_reuses_memory)
{
    struct arena a = ARENA_INIT;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 1000; i++) {
            char *p = arena_alloc(&a, 100);
            CHECK(p != NULL);
            CHECK(((uintptr_t)p & 15) == 0);
            memset(p, i, 100);
        }
        char *s = arena_strndup(&a, "abcdef", 3);
        CHECK_STR(s, "abc");
        arena_reset(&a);
    }
    CHECK(a.block_size >= 1000 * 112);
    arena_free(&a);
}

TEST(steal_hands_over)
{
    struct buf b = BUF_INIT;
    char *p = buf_steal(&b);
    CHECK_STR(p, "");
    free(p);
    buf_puts(&b, "x");
    p = buf_steal(&b);
    CHECK_STR(p, "x");
    CHECK(b.data == NULL);
    free(p);
}

TAP_MAIN
