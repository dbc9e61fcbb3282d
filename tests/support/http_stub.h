/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * A loopback HTTP/1.1 server for unit tests and benchmarks that need an AWS
 * endpoint without an emulator: keep-alive, one thread per connection,
 * Expect: 100-continue answered as AWS does. Every request gets 200 with an
 * application/x-amz-json-1.1 body that the handler writes.
 */
#include <stddef.h>

#include "rarewatch/buf.h"

typedef void (*http_stub_handler)(const char *body, size_t len, struct buf *resp_body, void *ud);

/* Start listening on 127.0.0.1; returns the port, or a negative errno. */
int http_stub_start(http_stub_handler fn, void *ud);

/* Firehose PutRecordBatch: one success per {"Data":...} entry of the body.
 * Returns the number of entries. */
size_t http_stub_firehose_ok(const char *body, size_t len, struct buf *resp_body);
