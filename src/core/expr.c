/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/expr.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <time.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

enum op {
    E_CONST, E_PATH, E_NEG, E_NOT,
    E_ADD, E_SUB, E_MUL, E_DIV, E_MOD,
    E_EQ, E_NE, E_LT, E_LE, E_GT, E_GE,
    E_AND, E_OR, E_IN, E_MATCH, E_CALL,
};

enum fn {
    F_EXISTS, F_LOWER, F_UPPER, F_LEN, F_SUBSTR, F_COALESCE, F_ABS, F_ROUND, F_MIN, F_MAX,
    F_NOW, F_ARRIVAL, F_PARSE_TIME, F_HOUR, F_DOW,
};

static const struct {
    const char *name;
    unsigned min, max; /* argument count; max 255 = variadic */
} fns[] = {
    [F_EXISTS] = { "exists", 1, 1 },       [F_LOWER] = { "lower", 1, 1 },
    [F_UPPER] = { "upper", 1, 1 },         [F_LEN] = { "len", 1, 1 },
    [F_SUBSTR] = { "substr", 2, 3 },       [F_COALESCE] = { "coalesce", 1, 255 },
    [F_ABS] = { "abs", 1, 1 },             [F_ROUND] = { "round", 1, 2 },
    [F_MIN] = { "min", 1, 255 },           [F_MAX] = { "max", 1, 255 },
    [F_NOW] = { "now", 0, 0 },             [F_ARRIVAL] = { "arrival_time", 0, 0 },
    [F_PARSE_TIME] = { "parse_time", 2, 2 }, [F_HOUR] = { "hour_of_day", 0, 1 },
    [F_DOW] = { "day_of_week", 0, 1 },
};

/* Nodes live in one array; children are indices. IN and CALL keep their
 * operands as a run of indices in `args`. */
struct enode {
    uint8_t op, fn;
    uint32_t a, b;        /* children; for IN/CALL: first index in args, count */
    struct rw_value k;    /* E_CONST */
    struct json_path *path;
    pcre2_code *re;
};

struct expr {
    struct enode *n;
    uint32_t nn, cap;
    uint32_t *args;
    uint32_t na, acap;
    uint32_t root;
    char **strs; /* decoded string constants */
    size_t nstrs;
    pcre2_match_context *mctx;
};

/* ---- parser ---- */

struct parser {
    const char *s;
    size_t pos;
    struct expr *e;
    int err;
    size_t err_off;
    char *msg;
    size_t msglen;
    unsigned depth;
};

#define MAX_DEPTH 64
#define EXPR_MAX_HEIGHT 256

_printf_(3, 4) static int fail(struct parser *p, size_t off, const char *fmt, ...)
{
    if (p->err)
        return p->err;
    p->err = -EINVAL;
    p->err_off = off;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->msg, p->msglen, fmt, ap);
    va_end(ap);
    return p->err;
}

static void skip_ws(struct parser *p)
{
    while (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r')
        p->pos++;
}

static bool is_ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_ident(char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }

static int new_node(struct parser *p, uint8_t op, uint32_t *idx)
{
    struct expr *e = p->e;
    if (e->nn == e->cap) {
        uint32_t nc = e->cap ? e->cap * 2 : 16;
        struct enode *nn = realloc(e->n, nc * sizeof(*nn));
        if (!nn)
            return p->err = -ENOMEM;
        e->n = nn;
        e->cap = nc;
    }
    e->n[e->nn] = (struct enode){ .op = op };
    *idx = e->nn++;
    return 0;
}

static int push_arg(struct parser *p, uint32_t v)
{
    struct expr *e = p->e;
    if (e->na == e->acap) {
        uint32_t nc = e->acap ? e->acap * 2 : 16;
        uint32_t *na = realloc(e->args, nc * sizeof(*na));
        if (!na)
            return p->err = -ENOMEM;
        e->args = na;
        e->acap = nc;
    }
    e->args[e->na++] = v;
    return 0;
}

static bool accept(struct parser *p, const char *tok)
{
    skip_ws(p);
    size_t n = strlen(tok);
    if (!strneq(p->s + p->pos, tok, n))
        return false;
    /* A keyword must not run into an identifier ("order" is not "or"). */
    if (is_ident_start(tok[0]) && is_ident(p->s[p->pos + n]))
        return false;
    p->pos += n;
    return true;
}

static int put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

static int hex4(const char *s, uint32_t *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return -EINVAL;
        *v = (*v << 4) | d;
    }
    return 0;
}

/* "..." with JSON escapes, decoded to UTF-8 and owned by the expression. */
static int parse_string(struct parser *p, struct rw_str *out)
{
    size_t start = p->pos++;
    const char *s = p->s;
    size_t cap = strlen(s + start) + 1;
    char *o = malloc(cap), *w = o;
    if (!o)
        return p->err = -ENOMEM;
    for (;;) {
        char c = s[p->pos];
        if (c == 0) {
            free(o);
            return fail(p, start, "unterminated string");
        }
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c == '\\') {
            char x = s[p->pos + 1];
            const char *m = strchr("\"\\/bfnrt", x);
            if (x && m) {
                static const char rep[] = "\"\\/\b\f\n\r\t";
                *w++ = rep[m - "\"\\/bfnrt"];
                p->pos += 2;
                continue;
            }
            if (x == 'u') {
                uint32_t cp, lo;
                if (hex4(s + p->pos + 2, &cp) < 0) {
                    free(o);
                    return fail(p, p->pos, "bad \\u escape");
                }
                p->pos += 6;
                if (cp >= 0xD800 && cp <= 0xDBFF && s[p->pos] == '\\' && s[p->pos + 1] == 'u' &&
                    hex4(s + p->pos + 2, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p->pos += 6;
                } else if (cp >= 0xD800 && cp <= 0xDFFF) {
                    cp = 0xFFFD; /* lone surrogate: keep strings valid UTF-8 */
                }
                w += put_utf8(w, cp);
                continue;
            }
            free(o);
            return fail(p, p->pos, "unknown escape \\%c", x ? x : ' ');
        }
        /* 4 is a safe bound: the terminating NUL fails the continuation check. */
        size_t l = utf8_seq((const unsigned char *)s + p->pos, 4);
        if (!l) {
            free(o);
            return fail(p, p->pos, "invalid UTF-8 in string");
        }
        memcpy(w, s + p->pos, l);
        w += l;
        p->pos += l;
    }
    *w = 0;
    char **ns = realloc(p->e->strs, (p->e->nstrs + 1) * sizeof(char *));
    if (!ns) {
        free(o);
        return p->err = -ENOMEM;
    }
    p->e->strs = ns;
    ns[p->e->nstrs++] = o;
    out->p = o;
    out->len = (uint32_t)(w - o);
    return 0;
}

static int parse_expr(struct parser *p, uint32_t *out);

static int parse_primary(struct parser *p, uint32_t *out)
{
    skip_ws(p);
    const char *s = p->s;
    size_t start = p->pos;
    char c = s[start];
    if (c == '(') {
        p->pos++;
        if (parse_expr(p, out) < 0)
            return p->err;
        if (!accept(p, ")"))
            return fail(p, p->pos, "expected ')'");
        return 0;
    }
    if (c == '"') {
        struct rw_str str;
        if (parse_string(p, &str) < 0 || new_node(p, E_CONST, out) < 0)
            return p->err;
        p->e->n[*out].k = RW_VALUE_STR(str.p, str.len);
        return 0;
    }
    if ((c >= '0' && c <= '9') || (c == '.' && s[start + 1] >= '0' && s[start + 1] <= '9')) {
        char *end;
        errno = 0;
        double d = strtod(s + start, &end);
        if (end == s + start || is_ident(*end) || !isfinite(d))
            return fail(p, start, "bad number");
        p->pos = (size_t)(end - s);
        if (new_node(p, E_CONST, out) < 0)
            return p->err;
        p->e->n[*out].k = RW_VALUE_NUM(d);
        return 0;
    }
    if (c == '[') {
        /* A bracketed key at the start of a path: ["a.b"].c */
    } else if (!is_ident_start(c)) {
        if (!c)
            return fail(p, start, "expected a value at the end");
        return fail(p, start, "expected a value, found '%c'", c);
    }
    size_t end = start;
    if (c != '[')
        while (is_ident(s[end]))
            end++;
    size_t idlen = end - start;
    if (c != '[') {
        if (idlen == 4 && strneq(s + start, "true", 4)) {
            p->pos = end;
            if (new_node(p, E_CONST, out) < 0) return p->err;
            p->e->n[*out].k = RW_VALUE_BOOL(true);
            return 0;
        }
        if (idlen == 5 && strneq(s + start, "false", 5)) {
            p->pos = end;
            if (new_node(p, E_CONST, out) < 0) return p->err;
            p->e->n[*out].k = RW_VALUE_BOOL(false);
            return 0;
        }
        if (idlen == 4 && strneq(s + start, "null", 4)) {
            p->pos = end;
            if (new_node(p, E_CONST, out) < 0) return p->err;
            p->e->n[*out].k = RW_VALUE_NULL;
            return 0;
        }
        if ((idlen == 3 && (strneq(s + start, "and", 3) || strneq(s + start, "not", 3))) ||
            (idlen == 2 && (strneq(s + start, "or", 2) || strneq(s + start, "in", 2))))
            return fail(p, start, "expected a value, found keyword '%.*s'", (int)idlen, s + start);
        size_t q = end;
        while (s[q] == ' ' || s[q] == '\t')
            q++;
        if (s[q] == '(') {
            size_t f;
            for (f = 0; f < ELEMENTSOF(fns); f++)
                if (strlen(fns[f].name) == idlen && strneq(fns[f].name, s + start, idlen))
                    break;
            if (f == ELEMENTSOF(fns))
                return fail(p, start, "unknown function '%.*s'", (int)idlen, s + start);
            p->pos = q + 1;
            uint32_t tmp[256];
            unsigned na = 0;
            skip_ws(p);
            if (s[p->pos] == ')') {
                p->pos++;
            } else {
                for (;;) {
                    if (na == ELEMENTSOF(tmp))
                        return fail(p, p->pos, "too many arguments");
                    if (parse_expr(p, &tmp[na]) < 0)
                        return p->err;
                    na++;
                    if (accept(p, ","))
                        continue;
                    if (accept(p, ")"))
                        break;
                    return fail(p, p->pos, "expected ',' or ')' in call of %s()", fns[f].name);
                }
            }
            if (na < fns[f].min || na > fns[f].max) {
                if (fns[f].min == fns[f].max)
                    return fail(p, start, "%s() takes %u argument%s, not %u", fns[f].name, fns[f].min,
                                fns[f].min == 1 ? "" : "s", na);
                return fail(p, start, "%s() takes %u to %u arguments, not %u", fns[f].name, fns[f].min,
                            fns[f].max, na);
            }
            if (f == F_EXISTS && na == 1 && p->e->n[tmp[0]].op != E_PATH)
                return fail(p, q + 1, "exists() takes a field path");
            if (f == F_PARSE_TIME && na == 2 &&
                (p->e->n[tmp[1]].op != E_CONST || p->e->n[tmp[1]].k.type != RW_STR))
                return fail(p, q + 1, "parse_time(): the format must be a string literal");
            uint32_t first = p->e->na;
            for (unsigned i = 0; i < na; i++)
                if (push_arg(p, tmp[i]) < 0)
                    return p->err;
            if (new_node(p, E_CALL, out) < 0)
                return p->err;
            p->e->n[*out].fn = (uint8_t)f;
            p->e->n[*out].a = first;
            p->e->n[*out].b = na;
            return 0;
        }
    }
    /* A field path: identifiers, .name, [N] and ["key"] steps, no spaces. */
    for (;;) {
        if (s[end] == '.' && is_ident_start(s[end + 1])) {
            end++;
            while (is_ident(s[end]))
                end++;
        } else if (s[end] == '[') {
            size_t q = end + 1;
            if (s[q] == '"') {
                q++;
                while (s[q] && s[q] != '"')
                    q += s[q] == '\\' && s[q + 1] ? 2 : 1;
                if (!s[q])
                    return fail(p, end, "unterminated key in field path");
                q++;
            } else {
                while (s[q] >= '0' && s[q] <= '9')
                    q++;
            }
            if (s[q] != ']')
                return fail(p, end, "bad field path step");
            end = q + 1;
        } else {
            break;
        }
    }
    char *spec = strndup(s + start, end - start);
    if (!spec)
        return p->err = -ENOMEM;
    struct json_path *jp = NULL;
    int r = json_path_compile(spec, &jp);
    free(spec);
    if (r < 0)
        return fail(p, start, "bad field path '%.*s'", (int)(end - start), s + start);
    if (new_node(p, E_PATH, out) < 0) {
        json_path_free(jp);
        return p->err;
    }
    p->e->n[*out].path = jp;
    p->pos = end;
    return 0;
}

static int parse_unary(struct parser *p, uint32_t *out)
{
    if (++p->depth > MAX_DEPTH)
        return fail(p, p->pos, "expression nested too deeply");
    int r;
    if (accept(p, "-")) {
        uint32_t a;
        if ((r = parse_unary(p, &a)) < 0 || (r = new_node(p, E_NEG, out)) < 0)
            return r;
        p->e->n[*out].a = a;
    } else {
        r = parse_primary(p, out);
    }
    p->depth--;
    return r;
}

static int binary(struct parser *p, uint8_t op, uint32_t a, uint32_t b, uint32_t *out)
{
    if (new_node(p, op, out) < 0)
        return p->err;
    p->e->n[*out].a = a;
    p->e->n[*out].b = b;
    return 0;
}

static int parse_mul(struct parser *p, uint32_t *out)
{
    if (parse_unary(p, out) < 0)
        return p->err;
    for (;;) {
        uint8_t op;
        if (accept(p, "*")) op = E_MUL;
        else if (accept(p, "/")) op = E_DIV;
        else if (accept(p, "%")) op = E_MOD;
        else return 0;
        uint32_t b;
        if (parse_unary(p, &b) < 0 || binary(p, op, *out, b, out) < 0)
            return p->err;
    }
}

static int parse_add(struct parser *p, uint32_t *out)
{
    if (parse_mul(p, out) < 0)
        return p->err;
    for (;;) {
        uint8_t op;
        if (accept(p, "+")) op = E_ADD;
        else if (accept(p, "-")) op = E_SUB;
        else return 0;
        uint32_t b;
        if (parse_mul(p, &b) < 0 || binary(p, op, *out, b, out) < 0)
            return p->err;
    }
}

static int parse_cmp(struct parser *p, uint32_t *out)
{
    if (parse_add(p, out) < 0)
        return p->err;
    uint8_t op;
    if (accept(p, "==")) op = E_EQ;
    else if (accept(p, "!=")) op = E_NE;
    else if (accept(p, "<=")) op = E_LE;
    else if (accept(p, ">=")) op = E_GE;
    else if (accept(p, "<")) op = E_LT;
    else if (accept(p, ">")) op = E_GT;
    else if (accept(p, "=~")) op = E_MATCH;
    else if (accept(p, "in")) op = E_IN;
    else return 0;
    uint32_t b;
    if (op == E_IN) {
        if (!accept(p, "["))
            return fail(p, p->pos, "expected '[' after 'in'");
        uint32_t tmp[256];
        unsigned na = 0;
        if (!accept(p, "]")) {
            for (;;) {
                if (na == ELEMENTSOF(tmp))
                    return fail(p, p->pos, "list too long");
                if (parse_add(p, &tmp[na]) < 0)
                    return p->err;
                na++;
                if (accept(p, ","))
                    continue;
                if (accept(p, "]"))
                    break;
                return fail(p, p->pos, "expected ',' or ']' in list");
            }
        }
        uint32_t first = p->e->na;
        for (unsigned i = 0; i < na; i++)
            if (push_arg(p, tmp[i]) < 0)
                return p->err;
        uint32_t lhs = *out;
        if (new_node(p, E_IN, out) < 0)
            return p->err;
        p->e->n[*out].a = first;
        p->e->n[*out].b = na;
        /* a/b hold the list; the tested operand's index rides in k.num. */
        p->e->n[*out].k.num = lhs;
    } else if (op == E_MATCH) {
        skip_ws(p);
        size_t ro = p->pos;
        if (p->s[ro] != '"')
            return fail(p, ro, "=~ takes a string literal regex");
        struct rw_str re;
        if (parse_string(p, &re) < 0)
            return p->err;
        int ec;
        PCRE2_SIZE eo;
        /* No JIT: the unit runs with MemoryDenyWriteExecute=yes. */
        pcre2_code *code = pcre2_compile((PCRE2_SPTR)re.p, re.len, PCRE2_UTF, &ec, &eo, NULL);
        if (!code) {
            PCRE2_UCHAR m[128];
            pcre2_get_error_message(ec, m, sizeof(m));
            /* +1: the opening quote; the offset is into the decoded pattern,
             * exact when it holds no escapes. */
            return fail(p, ro + 1 + eo, "bad regex: %s", (const char *)m);
        }
        uint32_t lhs = *out;
        if (new_node(p, E_MATCH, out) < 0) {
            pcre2_code_free(code);
            return p->err;
        }
        p->e->n[*out].re = code;
        p->e->n[*out].a = lhs;
    } else {
        if (parse_add(p, &b) < 0 || binary(p, op, *out, b, out) < 0)
            return p->err;
    }
    skip_ws(p);
    const char *s = p->s + p->pos;
    if ((s[0] == '=' || s[0] == '!' || s[0] == '<' || s[0] == '>') ||
        (strneq(s, "in", 2) && !is_ident(s[2])))
        return fail(p, p->pos, "comparisons do not chain (a < b < c); use 'and'");
    return 0;
}

static int parse_not(struct parser *p, uint32_t *out)
{
    if (accept(p, "not")) {
        if (++p->depth > MAX_DEPTH)
            return fail(p, p->pos, "expression nested too deeply");
        uint32_t a;
        if (parse_not(p, &a) < 0 || new_node(p, E_NOT, out) < 0)
            return p->err;
        p->e->n[*out].a = a;
        p->depth--;
        return 0;
    }
    return parse_cmp(p, out);
}

static int parse_and(struct parser *p, uint32_t *out)
{
    if (parse_not(p, out) < 0)
        return p->err;
    while (accept(p, "and")) {
        uint32_t b;
        if (parse_not(p, &b) < 0 || binary(p, E_AND, *out, b, out) < 0)
            return p->err;
    }
    return 0;
}

static int parse_expr(struct parser *p, uint32_t *out)
{
    if (++p->depth > MAX_DEPTH)
        return fail(p, p->pos, "expression nested too deeply");
    if (parse_and(p, out) < 0)
        return p->err;
    while (accept(p, "or")) {
        uint32_t b;
        if (parse_and(p, &b) < 0 || binary(p, E_OR, *out, b, out) < 0)
            return p->err;
    }
    p->depth--;
    return 0;
}

struct expr *expr_free(struct expr *e)
{
    if (!e)
        return NULL;
    for (uint32_t i = 0; i < e->nn; i++) {
        json_path_free(e->n[i].path);
        if (e->n[i].re)
            pcre2_code_free(e->n[i].re);
    }
    for (size_t i = 0; i < e->nstrs; i++)
        free(e->strs[i]);
    free(e->strs);
    free(e->n);
    free(e->args);
    if (e->mctx)
        pcre2_match_context_free(e->mctx);
    free(e);
    return NULL;
}

int expr_compile(const char *src, struct expr **out, size_t *err_off, char *err, size_t errlen)
{
    char dummy[1];
    struct expr *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    struct parser p = { .s = src, .e = e, .msg = err ? err : dummy, .msglen = err ? errlen : sizeof(dummy) };
    if (parse_expr(&p, &e->root) == 0) {
        skip_ws(&p);
        if (src[p.pos] == '=')
            fail(&p, p.pos, "unexpected '=' (comparison is ==)");
        else if (src[p.pos])
            fail(&p, p.pos, "unexpected '%c'", src[p.pos]);
    }
    if (!p.err) {
        /* Evaluation recurses once per tree level, and a long chain such as
         * 1+1+1+... is deep without any parentheses: bound the height so a
         * worker's stack is never at risk. Children precede their parents
         * in the node array, so one forward pass computes every height. */
        uint16_t *h = calloc(e->nn, sizeof(*h));
        if (!h) {
            expr_free(e);
            return -ENOMEM;
        }
        for (uint32_t i = 0; i < e->nn && !p.err; i++) {
            const struct enode *n = &e->n[i];
            uint16_t m = 0;
            switch ((enum op)n->op) {
            case E_CONST: case E_PATH: break;
            case E_NEG: case E_NOT: case E_MATCH: m = h[n->a]; break;
            case E_IN:
                m = h[(uint32_t)n->k.num];
                for (uint32_t k = 0; k < n->b; k++)
                    m = MAX(m, h[e->args[n->a + k]]);
                break;
            case E_CALL:
                for (uint32_t k = 0; k < n->b; k++)
                    m = MAX(m, h[e->args[n->a + k]]);
                break;
            default: m = MAX(h[n->a], h[n->b]); break;
            }
            h[i] = (uint16_t)(m + 1);
            if (h[i] > EXPR_MAX_HEIGHT)
                fail(&p, 0, "expression too long: more than %d nested operations", EXPR_MAX_HEIGHT);
        }
        free(h);
    }
    if (!p.err) {
        /* Bounds the backtracking of a pathological regex on a hostile record. */
        e->mctx = pcre2_match_context_create(NULL);
        if (!e->mctx)
            p.err = -ENOMEM;
        else
            pcre2_set_match_limit(e->mctx, 100000);
    }
    if (p.err) {
        if (err_off)
            *err_off = p.err_off;
        expr_free(e);
        return p.err;
    }
    *out = e;
    return 0;
}

int expr_compile_conf(const struct conf_value *v, const char *what, struct conf_diag *diag,
                      struct expr **out)
{
    char msg[256];
    size_t off = 0;
    const char *src = v->raw ? v->raw : "";
    int r = expr_compile(src, out, &off, msg, sizeof(msg));
    if (r == -EINVAL)
        conf_diag_add(diag, NULL, 0, "%s:%u:%zu: %s: %s", v->file ? v->file : "(config)", v->line,
                      (size_t)(v->column ? v->column : 1) + off, what, msg);
    return r;
}

/* ---- evaluation ---- */

bool rw_value_truthy(const struct rw_value *v)
{
    switch (v->type) {
    case RW_BOOL: return v->b;
    case RW_NUM: return v->num != 0 && !isnan(v->num);
    case RW_STR: return v->s.len > 0;
    case RW_OBJECT:
    case RW_ARRAY: return true;
    default: return false;
    }
}

static bool is_nullish(const struct rw_value *v) { return v->type == RW_MISSING || v->type == RW_NULL; }

static int cmp_str(const struct rw_str *a, const struct rw_str *b)
{
    int c = memcmp(a->p, b->p, MIN(a->len, b->len));
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

static bool equal(const struct rw_value *a, const struct rw_value *b)
{
    if (is_nullish(a) || is_nullish(b))
        return is_nullish(a) && is_nullish(b);
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case RW_BOOL: return a->b == b->b;
    case RW_NUM: return a->num == b->num;
    default: return a->s.len == b->s.len && memcmp(a->s.p, b->s.p, a->s.len) == 0;
    }
}

static int ev_node(const struct expr *e, uint32_t i, struct expr_env *env, struct rw_value *out);

static inline int ev_path(const struct enode *n, struct expr_env *env, struct rw_value *out)
{
    int r;
    if (env->overlay && (r = env->overlay(env->overlay_ud, n->path, out)) != 0)
        return r < 0 ? r : 0;
    if (!env->doc) {
        *out = RW_VALUE_MISSING;
        return 0;
    }
    return json_lookup(env->doc, n->path, out);
}

/* Constants and field reads (the leaves: the operands of most comparisons
 * and arithmetic, many function arguments) are answered in place: the
 * evaluator's call and frame cost more than either. */
static inline int ev(const struct expr *e, uint32_t i, struct expr_env *env, struct rw_value *out)
{
    const struct enode *n = &e->n[i];
    if (n->op == E_CONST) {
        *out = n->k;
        return 0;
    }
    if (n->op == E_PATH)
        return ev_path(n, env, out);
    return ev_node(e, i, env, out);
}

static int type_error(struct expr_env *env, const char *why)
{
    env->err = why;
    return -EINVAL;
}

static char *scratch(struct expr_env *env, size_t n)
{
    return env->scratch ? arena_alloc(env->scratch, n ? n : 1) : NULL;
}

static size_t utf8_count(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* Byte offset of code point k (clamped to n). */
static size_t utf8_offset(const char *s, size_t n, size_t k)
{
    size_t i = 0;
    while (i < n && k) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        k--;
    }
    return i;
}

/* Elements of a raw JSON array / members of an object: top-level commas. */
static double raw_count(const struct rw_str *s)
{
    unsigned depth = 0;
    bool in_str = false, any = false;
    double n = 0;
    for (uint32_t i = 0; i < s->len; i++) {
        char c = s->p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
            any = any || depth == 1;
        } else if (c == '[' || c == '{') {
            if (depth == 1)
                any = true;
            depth++;
        } else if (c == ']' || c == '}') {
            depth--;
        } else if (c == ',' && depth == 1) {
            n++;
        } else if (depth == 1 && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            any = true;
        }
    }
    return any ? n + 1 : 0;
}

static int time_arg(const struct expr *e, const struct enode *n, struct expr_env *env, double *t)
{
    if (n->b == 0) {
        *t = env->event_time;
        return 0;
    }
    struct rw_value v;
    int r = ev(e, e->args[n->a], env, &v);
    if (r < 0)
        return r;
    if (v.type != RW_NUM) {
        *t = NAN;
        return 0;
    }
    *t = v.num;
    return 0;
}

/* Out of line: inlined, its locals made ev_node's frame ~440 bytes, which
 * every comparison and arithmetic node of every record then set up. */
static __attribute__((noinline)) int call(const struct expr *e, const struct enode *n, struct expr_env *env, struct rw_value *out)
{
    /* args is NULL in an expression whose only call takes no arguments. */
    const uint32_t *args = n->b ? e->args + n->a : NULL;
    struct rw_value a = RW_VALUE_NULL, b;
    int r;
    *out = RW_VALUE_NULL;
    switch ((enum fn)n->fn) {
    case F_EXISTS:
        if ((r = ev(e, args[0], env, &a)) < 0)
            return r;
        *out = RW_VALUE_BOOL(a.type != RW_MISSING);
        return 0;
    case F_LOWER:
    case F_UPPER: {
        if ((r = ev(e, args[0], env, &a)) < 0)
            return r;
        if (is_nullish(&a))
            return 0;
        if (a.type != RW_STR)
            return type_error(env, n->fn == F_LOWER ? "lower() of a non-string" : "upper() of a non-string");
        char *o = scratch(env, a.s.len);
        if (!o)
            return -ENOMEM;
        /* ASCII only: locale-free and byte-length preserving, so UTF-8 stays valid. */
        for (uint32_t k = 0; k < a.s.len; k++) {
            char c = a.s.p[k];
            if (n->fn == F_LOWER && c >= 'A' && c <= 'Z')
                c = (char)(c + 32);
            else if (n->fn == F_UPPER && c >= 'a' && c <= 'z')
                c = (char)(c - 32);
            o[k] = c;
        }
        *out = RW_VALUE_STR(o, a.s.len);
        return 0;
    }
    case F_LEN:
        if ((r = ev(e, args[0], env, &a)) < 0)
            return r;
        if (a.type == RW_STR)
            *out = RW_VALUE_NUM((double)utf8_count(a.s.p, a.s.len));
        else if (a.type == RW_ARRAY || a.type == RW_OBJECT)
            *out = RW_VALUE_NUM(raw_count(&a.s));
        else if (!is_nullish(&a))
            return type_error(env, "len() of a number or bool");
        return 0;
    case F_SUBSTR: {
        struct rw_value st, ln = RW_VALUE_NULL;
        if ((r = ev(e, args[0], env, &a)) < 0 || (r = ev(e, args[1], env, &st)) < 0 ||
            (n->b > 2 && (r = ev(e, args[2], env, &ln)) < 0))
            return r;
        if (is_nullish(&a))
            return 0;
        if (a.type != RW_STR || st.type != RW_NUM || (n->b > 2 && ln.type != RW_NUM))
            return type_error(env, "substr() takes a string and numbers");
        double cps = (double)utf8_count(a.s.p, a.s.len);
        double from = trunc(st.num);
        if (from < 0)
            from = MAX(0, cps + from);
        from = MIN(from, cps);
        double cnt = n->b > 2 ? MAX(0, trunc(ln.num)) : cps - from;
        cnt = MIN(cnt, cps - from);
        size_t b0 = utf8_offset(a.s.p, a.s.len, (size_t)from);
        size_t b1 = b0 + utf8_offset(a.s.p + b0, a.s.len - b0, (size_t)cnt);
        *out = RW_VALUE_STR(a.s.p + b0, b1 - b0);
        return 0;
    }
    case F_COALESCE:
        for (uint32_t k = 0; k < n->b; k++) {
            if ((r = ev(e, args[k], env, &a)) < 0)
                return r;
            if (!is_nullish(&a)) {
                *out = a;
                return 0;
            }
        }
        return 0;
    case F_ABS:
        if ((r = ev(e, args[0], env, &a)) < 0)
            return r;
        if (a.type == RW_NUM)
            *out = RW_VALUE_NUM(fabs(a.num));
        else if (!is_nullish(&a))
            return type_error(env, "abs() of a non-number");
        return 0;
    case F_ROUND: {
        double digits = 0;
        if ((r = ev(e, args[0], env, &a)) < 0)
            return r;
        if (n->b > 1) {
            if ((r = ev(e, args[1], env, &b)) < 0)
                return r;
            if (b.type != RW_NUM)
                return type_error(env, "round(): digits must be a number");
            digits = CLAMP(trunc(b.num), -15, 15);
        }
        if (a.type == RW_NUM) {
            /* 10^0..10^15 are exact doubles, so the table gives what pow()
             * gives, without its cost on the record path. */
            static const double p10[] = { 1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                          1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15 };
            double f = digits >= 0 ? p10[(int)digits] : pow(10, digits);
            *out = RW_VALUE_NUM(round(a.num * f) / f);
        } else if (!is_nullish(&a)) {
            return type_error(env, "round() of a non-number");
        }
        return 0;
    }
    case F_MIN:
    case F_MAX: {
        bool any = false;
        double best = 0;
        for (uint32_t k = 0; k < n->b; k++) {
            if ((r = ev(e, args[k], env, &a)) < 0)
                return r;
            if (is_nullish(&a))
                continue;
            if (a.type != RW_NUM)
                return type_error(env, "min()/max() of a non-number");
            if (!any || (n->fn == F_MIN ? a.num < best : a.num > best))
                best = a.num;
            any = true;
        }
        if (any)
            *out = RW_VALUE_NUM(best);
        return 0;
    }
    case F_NOW: {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        *out = RW_VALUE_NUM((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
        return 0;
    }
    case F_ARRIVAL:
        *out = isfinite(env->arrival_time) ? RW_VALUE_NUM(env->arrival_time) : RW_VALUE_NULL;
        return 0;
    case F_PARSE_TIME: {
        if ((r = ev(e, args[0], env, &a)) < 0 || (r = ev(e, args[1], env, &b)) < 0)
            return r;
        if (a.type != RW_STR || b.type != RW_STR)
            return 0;
        char text[256];
        if (a.s.len >= sizeof(text))
            return 0;
        memcpy(text, a.s.p, a.s.len);
        text[a.s.len] = 0;
        struct tm tm = { 0 };
        const char *end = strptime(text, b.s.p, &tm);
        if (!end || *end)
            return 0; /* unparseable: null, as for a missing field */
        long off = tm.tm_gmtoff;
        time_t t = timegm(&tm);
        *out = RW_VALUE_NUM((double)t - (double)off);
        return 0;
    }
    case F_HOUR:
    case F_DOW: {
        double t;
        if ((r = time_arg(e, n, env, &t)) < 0)
            return r;
        if (!isfinite(t) || fabs(t) > 1e15)
            return 0;
        time_t tt = (time_t)floor(t);
        struct tm tm;
        if (!gmtime_r(&tt, &tm))
            return 0;
        *out = RW_VALUE_NUM(n->fn == F_HOUR ? tm.tm_hour : tm.tm_wday);
        return 0;
    }
    }
    return 0;
}

static int arith(uint8_t op, const struct rw_value *a, const struct rw_value *b, struct expr_env *env,
                 struct rw_value *out)
{
    if (is_nullish(a) || is_nullish(b)) {
        *out = RW_VALUE_NULL;
        return 0;
    }
    if (op == E_ADD && a->type == RW_STR && b->type == RW_STR) {
        size_t len = (size_t)a->s.len + b->s.len;
        if (len > UINT32_MAX)
            return type_error(env, "string too long");
        char *o = scratch(env, len);
        if (!o)
            return env->scratch ? -ENOMEM : type_error(env, "no scratch arena for a string result");
        memcpy(o, a->s.p, a->s.len);
        memcpy(o + a->s.len, b->s.p, b->s.len);
        *out = RW_VALUE_STR(o, len);
        return 0;
    }
    if (a->type != RW_NUM || b->type != RW_NUM)
        return type_error(env, op == E_ADD ? "+ needs two numbers or two strings" : "arithmetic on a non-number");
    double x = a->num, y = b->num;
    switch (op) {
    case E_ADD: *out = RW_VALUE_NUM(x + y); break;
    case E_SUB: *out = RW_VALUE_NUM(x - y); break;
    case E_MUL: *out = RW_VALUE_NUM(x * y); break;
    case E_DIV: *out = y == 0 ? RW_VALUE_NULL : RW_VALUE_NUM(x / y); break;
    default: *out = y == 0 ? RW_VALUE_NULL : RW_VALUE_NUM(fmod(x, y)); break;
    }
    return 0;
}

static bool compare(uint8_t op, const struct rw_value *a, const struct rw_value *b)
{
    if (op == E_EQ)
        return equal(a, b);
    if (op == E_NE) {
        if (a->type == RW_MISSING || b->type == RW_MISSING)
            return false;
        return !equal(a, b);
    }
    int c;
    if (a->type == RW_NUM && b->type == RW_NUM) {
        if (isnan(a->num) || isnan(b->num))
            return false;
        c = (a->num > b->num) - (a->num < b->num);
    } else if (a->type == RW_STR && b->type == RW_STR) {
        c = cmp_str(&a->s, &b->s);
    } else {
        return false;
    }
    switch (op) {
    case E_LT: return c < 0;
    case E_LE: return c <= 0;
    case E_GT: return c > 0;
    default: return c >= 0;
    }
}

static int ev_node(const struct expr *e, uint32_t i, struct expr_env *env, struct rw_value *out)
{
    const struct enode *n = &e->n[i];
    struct rw_value a, b;
    int r;
    switch ((enum op)n->op) {
    case E_CONST:
        *out = n->k;
        return 0;
    case E_PATH:
        return ev_path(n, env, out);
    case E_NEG:
        if ((r = ev(e, n->a, env, &a)) < 0)
            return r;
        if (is_nullish(&a))
            *out = RW_VALUE_NULL;
        else if (a.type != RW_NUM)
            return type_error(env, "unary minus of a non-number");
        else
            *out = RW_VALUE_NUM(-a.num);
        return 0;
    case E_NOT:
        if ((r = ev(e, n->a, env, &a)) < 0)
            return r;
        *out = RW_VALUE_BOOL(!rw_value_truthy(&a));
        return 0;
    case E_ADD: case E_SUB: case E_MUL: case E_DIV: case E_MOD:
        if ((r = ev(e, n->a, env, &a)) < 0 || (r = ev(e, n->b, env, &b)) < 0)
            return r;
        return arith(n->op, &a, &b, env, out);
    case E_EQ: case E_NE: case E_LT: case E_LE: case E_GT: case E_GE:
        if ((r = ev(e, n->a, env, &a)) < 0 || (r = ev(e, n->b, env, &b)) < 0)
            return r;
        *out = RW_VALUE_BOOL(compare(n->op, &a, &b));
        return 0;
    case E_AND:
    case E_OR:
        if ((r = ev(e, n->a, env, &a)) < 0)
            return r;
        if (rw_value_truthy(&a) == (n->op == E_OR)) {
            *out = RW_VALUE_BOOL(n->op == E_OR);
            return 0;
        }
        if ((r = ev(e, n->b, env, &b)) < 0)
            return r;
        *out = RW_VALUE_BOOL(rw_value_truthy(&b));
        return 0;
    case E_IN:
        if ((r = ev(e, (uint32_t)n->k.num, env, &a)) < 0)
            return r;
        *out = RW_VALUE_BOOL(false);
        if (a.type == RW_MISSING)
            return 0;
        for (uint32_t k = 0; k < n->b; k++) {
            if ((r = ev(e, e->args[n->a + k], env, &b)) < 0)
                return r;
            if (equal(&a, &b)) {
                *out = RW_VALUE_BOOL(true);
                return 0;
            }
        }
        return 0;
    case E_MATCH: {
        if ((r = ev(e, n->a, env, &a)) < 0)
            return r;
        *out = RW_VALUE_BOOL(false);
        if (a.type != RW_STR)
            return 0;
        pcre2_match_data *md = env->match_data;
        bool own = !md;
        if (own && !(md = pcre2_match_data_create(1, NULL)))
            return -ENOMEM;
        int m = pcre2_match(n->re, (PCRE2_SPTR)a.s.p, a.s.len, 0, 0, md, e->mctx);
        if (own)
            pcre2_match_data_free(md);
        /* 0: matched but the ovector is too small, which we do not need. */
        *out = RW_VALUE_BOOL(m >= 0);
        return 0;
    }
    case E_CALL:
        return call(e, n, env, out);
    }
    return -EINVAL;
}

int expr_eval(const struct expr *e, struct expr_env *env, struct rw_value *out)
{
    env->err = NULL;
    return ev(e, e->root, env, out);
}

bool expr_test(const struct expr *e, struct expr_env *env)
{
    struct rw_value v;
    return expr_eval(e, env, &v) == 0 && rw_value_truthy(&v);
}

void *expr_match_data_new(void)
{
    /* One pair: a predicate only needs to know whether it matched. */
    return pcre2_match_data_create(1, NULL);
}

void expr_match_data_free(void *md)
{
    if (md)
        pcre2_match_data_free(md);
}
