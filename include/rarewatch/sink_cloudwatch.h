/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The CloudWatch metrics sink ([cloudwatch] namespace). Metrics are not
 * records: a batch is acknowledged as soon as its lines are aggregated in
 * memory (in the submitting shard worker, a few hash lookups per anomaly),
 * so the sink never holds the consumers back. One publisher thread sends
 * the aggregate every flush_interval with PutMetricData (gzip bodies, at
 * most 1,000 datums / 1 MB each); failed publishes are kept (bounded) and
 * retried with backoff on the next ticks, and counted. Losing the last
 * interval on a crash is accepted.
 *
 * Metrics (namespace from the config):
 *   AnomalyCount, MaxAnomalyScore   per Detector (and Detector+Key with
 *                                   key_field, capped at key_dimension_max
 *                                   distinct keys; others are "__other__")
 *   RecordsIn, RecordsOut, RecordsDeadLettered, MillisBehindLatest per ShardId
 *   RecordsDeadLettered, Retries, Errors                         per Sink
 *   DeliveryLatency, DetectionLatency (ms)          per Sink (from Firehose)
 * The detector of an anomaly comes from the line's "anomalies" array
 * (elements {"detector": NAME, "score": X}); a line flagged is_anomaly
 * without one counts under Detector "unknown" with its meta score.
 */
#include <stdint.h>

#include "rarewatch/aws.h"
#include "rarewatch/cloudwatch_metrics.h"
#include "rarewatch/sink.h"

struct consumer;

struct sink_cloudwatch_options {
    struct aws_settings *aws;
    const char *namespace_;
    uint64_t flush_interval_usec;
    bool high_resolution;
    bool uncompressed;         /* send plain bodies ([cloudwatch] compress = false, for emulators);
                                * zero-initialised options keep gzip */
    const char *key_field;     /* top-level field for the Key dimension; NULL: none */
    size_t key_dimension_max;
    unsigned max_queued_requests; /* failed bodies kept for retry; 0: 100 */
};

int sink_cloudwatch_new(const struct sink_cloudwatch_options *o, struct rw_sink **out);
/* Where the health metrics come from (both may be set later than new). */
void sink_cloudwatch_set_sources(struct rw_sink *s, struct consumer *c, struct rw_sink **sinks,
                                 size_t n_sinks);
/* Thread-safe: add one sample (other sinks report latencies). s may be NULL. */
void sink_cloudwatch_observe(struct rw_sink *s, const char *name, const char *unit,
                             const struct cw_dim *dims, unsigned n_dims, double value);

struct sink_cloudwatch_stats {
    uint64_t intervals, requests, datums, failed_requests, dropped_requests, bytes_gzip_in;
};
struct sink_cloudwatch_stats sink_cloudwatch_get_stats(struct rw_sink *s);
