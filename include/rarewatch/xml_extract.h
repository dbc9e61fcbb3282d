/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * A tiny XML reader for the small documents AWS Query-protocol services
 * answer with (STS credentials, <ErrorResponse><Error><Code>...). It finds
 * the text of one element by path; it is not a general XML parser.
 *
 * The whole document is checked before anything is returned, so a
 * truncated or malformed body is rejected rather than half-read:
 * balanced, properly nested tags; one root element; attributes with quoted
 * values; comments, CDATA sections, processing instructions and the XML
 * declaration are understood; a DOCTYPE is rejected (it could declare
 * entities, and no AWS response carries one); NUL bytes are rejected; only
 * the five predefined entities (&lt; &gt; &amp; &quot; &apos;) and numeric
 * character references (&#65; &#x41;) to valid Unicode scalar values other
 * than U+0000 are accepted, decoded to UTF-8. Nesting is limited to
 * XML_EXTRACT_MAX_DEPTH.
 *
 * Paths: element names separated by '/', e.g. "Credentials/AccessKeyId".
 * Without a leading '/' the path matches wherever it ends the chain of open
 * elements (so "Error/Code" finds <ErrorResponse><Error><Code> and
 * <Response><Errors><Error><Code> alike); a leading '/' anchors it at the
 * root element. Names are compared case-sensitively on their local part
 * (a namespace prefix "p:" is ignored). The first matching element in
 * document order wins. Its text is the concatenation of its own character
 * data and CDATA sections (text inside child elements is not included),
 * with entities decoded and no whitespace trimmed.
 *
 * Pure: no I/O, no locks, no global state.
 */
#include <stddef.h>

#define XML_EXTRACT_MAX_DEPTH 64

/* The text of the element at path, newly allocated and NUL-terminated
 * (caller frees); *out_len (may be NULL) receives its length, which equals
 * strlen(*out) because decoded text never contains NUL.
 * 0, -ENOENT when well-formed but no element matches, -EINVAL malformed
 * document or path, -ENOMEM. */
int xml_extract(const char *xml, size_t len, const char *path, char **out, size_t *out_len);

/* As xml_extract() into a caller's buffer of n >= 1 bytes, truncated (at a
 * UTF-8 character boundary) when too long, always NUL-terminated. Returns the
 * length stored (>= 0) or -ENOENT / -EINVAL / -ENOMEM. Handy for fixed-size
 * fields such as struct aws_error's. */
int xml_extract_to(const char *xml, size_t len, const char *path, char *dst, size_t n);
