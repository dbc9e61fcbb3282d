/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/xml_extract.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "rarewatch/buf.h"
#include "rarewatch/macro.h"

struct span {
    const char *p;
    size_t n;
};

struct xml_parser {
    const char *p, *end;
    struct span stack[XML_EXTRACT_MAX_DEPTH];
    size_t depth;
    const struct span *path;
    size_t path_n;
    bool anchored;
    size_t capture_depth; /* 0: not capturing; else the depth of the matched element */
    bool found;
    struct buf *text;
};

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static bool is_name_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || c >= 0x80;
}

static bool is_name_char(unsigned char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* XML 1.0 allows no C0 controls but TAB, LF and CR anywhere in a document. */
static bool is_bad_control(unsigned char c) { return c < 0x20 && c != '\t' && c != '\n' && c != '\r'; }

static bool has_prefix(const struct xml_parser *x, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(x->end - x->p) >= n && memcmp(x->p, lit, n) == 0;
}

static void skip_ws(struct xml_parser *x)
{
    while (x->p < x->end && is_ws(*x->p))
        x->p++;
}

static int parse_name(struct xml_parser *x, struct span *out)
{
    if (x->p >= x->end || !is_name_start((unsigned char)*x->p))
        return -EINVAL;
    out->p = x->p;
    while (x->p < x->end && is_name_char((unsigned char)*x->p))
        x->p++;
    out->n = (size_t)(x->p - out->p);
    return 0;
}

static struct span local_name(struct span s)
{
    const char *c = memrchr(s.p, ':', s.n);
    if (c) {
        size_t skip = (size_t)(c - s.p) + 1;
        s.p += skip;
        s.n -= skip;
    }
    return s;
}

static bool span_eq(struct span a, struct span b) { return a.n == b.n && memcmp(a.p, b.p, a.n) == 0; }

static size_t utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* At '&': decode one reference into out (<= 4 bytes), advance past ';'. */
static int parse_reference(struct xml_parser *x, char out[4], size_t *n)
{
    static const struct {
        const char *name;
        char c;
    } named[] = { { "lt", '<' }, { "gt", '>' }, { "amp", '&' }, { "quot", '"' }, { "apos", '\'' } };
    const char *s = x->p + 1;
    /* The longest reference is "&#x10FFFF;" or "&#1114111;" plus leading zeros;
     * bounding the scan keeps "&" followed by a megabyte of text linear. */
    size_t max = MIN((size_t)(x->end - s), (size_t)16);
    const char *semi = memchr(s, ';', max);
    if (!semi || semi == s)
        return -EINVAL;
    size_t len = (size_t)(semi - s);

    if (*s == '#') {
        uint32_t cp = 0;
        bool hex = len > 1 && s[1] == 'x';
        const char *d = s + (hex ? 2 : 1);
        if (d == semi)
            return -EINVAL;
        for (; d < semi; d++) {
            unsigned v;
            if (*d >= '0' && *d <= '9')
                v = (unsigned)(*d - '0');
            else if (hex && *d >= 'a' && *d <= 'f')
                v = (unsigned)(*d - 'a' + 10);
            else if (hex && *d >= 'A' && *d <= 'F')
                v = (unsigned)(*d - 'A' + 10);
            else
                return -EINVAL;
            cp = cp * (hex ? 16 : 10) + v;
            if (cp > 0x10FFFF)
                return -EINVAL;
        }
        /* The characters XML 1.0 permits: no NUL or other C0 control, no
         * surrogate, no U+FFFE/U+FFFF. */
        if ((cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || (cp >= 0xD800 && cp <= 0xDFFF) ||
            cp == 0xFFFE || cp == 0xFFFF)
            return -EINVAL;
        *n = utf8_encode(cp, out);
    } else {
        size_t i;
        for (i = 0; i < ELEMENTSOF(named); i++)
            if (strlen(named[i].name) == len && memcmp(named[i].name, s, len) == 0)
                break;
        if (i == ELEMENTSOF(named))
            return -EINVAL;
        out[0] = named[i].c;
        *n = 1;
    }
    x->p = semi + 1;
    return 0;
}

static bool capturing(const struct xml_parser *x) { return x->capture_depth && x->depth == x->capture_depth; }

static int emit(struct xml_parser *x, const char *p, size_t n)
{
    if (!capturing(x) || n == 0)
        return 0;
    return buf_append(x->text, p, n) < 0 ? -ENOMEM : 0;
}

/* Character data up to the next '<' (or the end). */
static int parse_text(struct xml_parser *x)
{
    int r;
    while (x->p < x->end && *x->p != '<') {
        const char *run = x->p;
        while (x->p < x->end && *x->p != '<' && *x->p != '&') {
            if (is_bad_control((unsigned char)*x->p))
                return -EINVAL;
            x->p++;
        }
        if (x->depth == 0) {
            /* Outside the root only whitespace may appear. */
            for (const char *q = run; q < x->p; q++)
                if (!is_ws(*q))
                    return -EINVAL;
        } else if ((r = emit(x, run, (size_t)(x->p - run))) < 0)
            return r;
        if (x->p < x->end && *x->p == '&') {
            char u[4];
            size_t n;
            if (x->depth == 0 || parse_reference(x, u, &n) < 0)
                return -EINVAL;
            if ((r = emit(x, u, n)) < 0)
                return r;
        }
    }
    return 0;
}

/* Skip to just past the terminator; reject control bytes on the way. */
static int skip_until(struct xml_parser *x, const char *term)
{
    size_t tn = strlen(term);
    while ((size_t)(x->end - x->p) >= tn) {
        if (memcmp(x->p, term, tn) == 0) {
            x->p += tn;
            return 0;
        }
        if (is_bad_control((unsigned char)*x->p))
            return -EINVAL;
        x->p++;
    }
    return -EINVAL;
}

static bool path_matches(const struct xml_parser *x)
{
    if (x->path_n > x->depth || (x->anchored && x->path_n != x->depth))
        return false;
    size_t off = x->depth - x->path_n;
    for (size_t i = 0; i < x->path_n; i++)
        if (!span_eq(local_name(x->stack[off + i]), x->path[i]))
            return false;
    return true;
}

static int parse_attributes(struct xml_parser *x)
{
    for (;;) {
        const char *before = x->p;
        skip_ws(x);
        if (x->p >= x->end)
            return -EINVAL;
        if (*x->p == '>' || *x->p == '/')
            return 0;
        /* Attributes are separated from the name and each other by whitespace. */
        if (x->p == before)
            return -EINVAL;
        struct span name;
        if (parse_name(x, &name) < 0)
            return -EINVAL;
        skip_ws(x);
        if (x->p >= x->end || *x->p != '=')
            return -EINVAL;
        x->p++;
        skip_ws(x);
        if (x->p >= x->end || (*x->p != '"' && *x->p != '\''))
            return -EINVAL;
        char q = *x->p++;
        while (x->p < x->end && *x->p != q) {
            if (*x->p == '<' || is_bad_control((unsigned char)*x->p))
                return -EINVAL;
            if (*x->p == '&') {
                char u[4];
                size_t n;
                if (parse_reference(x, u, &n) < 0)
                    return -EINVAL;
            } else
                x->p++;
        }
        if (x->p >= x->end)
            return -EINVAL;
        x->p++;
    }
}

static int parse_start_tag(struct xml_parser *x, bool *root_done)
{
    struct span name;

    x->p++; /* '<' */
    if (parse_name(x, &name) < 0 || parse_attributes(x) < 0)
        return -EINVAL;
    if (x->depth == 0 && *root_done)
        return -EINVAL; /* a second root element */
    if (x->depth >= XML_EXTRACT_MAX_DEPTH)
        return -EINVAL;
    x->stack[x->depth++] = name;
    if (!x->found && !x->capture_depth && path_matches(x))
        x->capture_depth = x->depth;

    bool empty = *x->p == '/';
    if (empty) {
        x->p++;
        if (x->p >= x->end || *x->p != '>')
            return -EINVAL;
    }
    x->p++; /* '>' */
    if (empty) {
        if (x->capture_depth == x->depth) {
            x->capture_depth = 0;
            x->found = true;
        }
        x->depth--;
        if (x->depth == 0)
            *root_done = true;
    }
    return 0;
}

static int parse_end_tag(struct xml_parser *x, bool *root_done)
{
    struct span name;

    x->p += 2; /* "</" */
    if (parse_name(x, &name) < 0)
        return -EINVAL;
    skip_ws(x);
    if (x->p >= x->end || *x->p != '>')
        return -EINVAL;
    x->p++;
    if (x->depth == 0 || !span_eq(x->stack[x->depth - 1], name))
        return -EINVAL;
    if (x->capture_depth == x->depth) {
        x->capture_depth = 0;
        x->found = true;
    }
    x->depth--;
    if (x->depth == 0)
        *root_done = true;
    return 0;
}

static int parse_document(struct xml_parser *x)
{
    bool root_done = false;
    int r;

    /* A UTF-8 byte order mark is allowed before the declaration. */
    if (has_prefix(x, "\xEF\xBB\xBF"))
        x->p += 3;
    while (x->p < x->end) {
        if (*x->p != '<') {
            if ((r = parse_text(x)) < 0)
                return r;
            continue;
        }
        if (has_prefix(x, "<!--")) {
            x->p += 4;
            if (skip_until(x, "-->") < 0)
                return -EINVAL;
        } else if (has_prefix(x, "<![CDATA[")) {
            if (x->depth == 0)
                return -EINVAL;
            x->p += 9;
            const char *start = x->p;
            if (skip_until(x, "]]>") < 0)
                return -EINVAL;
            if ((r = emit(x, start, (size_t)(x->p - 3 - start))) < 0)
                return r;
        } else if (has_prefix(x, "<?")) {
            x->p += 2;
            if (skip_until(x, "?>") < 0)
                return -EINVAL;
        } else if (has_prefix(x, "<!")) {
            /* DOCTYPE and anything else: no AWS response has one, and a
             * DOCTYPE could declare entities we do not expand. */
            return -EINVAL;
        } else if (has_prefix(x, "</")) {
            if ((r = parse_end_tag(x, &root_done)) < 0)
                return r;
        } else if ((r = parse_start_tag(x, &root_done)) < 0)
            return r;
    }
    if (x->depth != 0 || !root_done)
        return -EINVAL;
    return 0;
}

static int parse_path(const char *path, struct span *comp, size_t *n, bool *anchored)
{
    *n = 0;
    *anchored = path[0] == '/';
    const char *s = path + (*anchored ? 1 : 0);
    if (!*s)
        return -EINVAL;
    for (;;) {
        const char *slash = strchrnul(s, '/');
        if (slash == s || *n >= XML_EXTRACT_MAX_DEPTH)
            return -EINVAL;
        comp[(*n)++] = (struct span){ s, (size_t)(slash - s) };
        if (!*slash)
            return 0;
        s = slash + 1;
    }
}

static int extract(const char *xml, size_t len, const char *path, struct buf *text)
{
    struct span comp[XML_EXTRACT_MAX_DEPTH];
    struct xml_parser x = { .p = xml, .end = xml + len, .path = comp, .text = text };
    int r;

    if (!xml || !path || (r = parse_path(path, comp, &x.path_n, &x.anchored)) < 0)
        return -EINVAL;
    if ((r = parse_document(&x)) < 0)
        return r;
    return x.found ? 0 : -ENOENT;
}

int xml_extract(const char *xml, size_t len, const char *path, char **out, size_t *out_len)
{
    _cleanup_buf_ struct buf text = BUF_INIT;
    int r;

    if (!out)
        return -EINVAL;
    if ((r = extract(xml, len, path, &text)) < 0)
        return r;
    size_t n = text.len;
    /* buf_steal() turns an empty element into an allocated "". */
    char *s = buf_steal(&text);
    if (!s)
        return -ENOMEM;
    if (out_len)
        *out_len = n;
    *out = s;
    return 0;
}

int xml_extract_to(const char *xml, size_t len, const char *path, char *dst, size_t n)
{
    _cleanup_buf_ struct buf text = BUF_INIT;
    int r;

    if (!dst || n == 0)
        return -EINVAL;
    dst[0] = 0;
    if ((r = extract(xml, len, path, &text)) < 0)
        return r;
    size_t k = MIN(text.len, n - 1);
    /* Do not cut a UTF-8 sequence in half: back up over continuation bytes. */
    if (k < text.len)
        while (k > 0 && ((unsigned char)text.data[k] & 0xC0) == 0x80)
            k--;
    if (k)
        memcpy(dst, text.data, k);
    dst[k] = 0;
    return (int)MIN(k, (size_t)INT32_MAX);
}
