-- rarewatch: an Athena table over the NDJSON lines Firehose delivers to S3
-- (packaging/aws/cloudformation.yaml: s3://BUCKET/events/YYYY/MM/DD/HH/).
--
-- Replace <BUCKET> (the stack's BucketName output; the OutputLocation output
-- is the whole LOCATION). The data columns (ts ... country) are an example
-- (the card transactions of tests/demo): list the fields of your records
-- instead. The other columns are what rarewatchd adds to every line
-- (docs/sinks.md); tests/integration/test_aws_artifacts.py checks them
-- against the lines the daemon really writes.
--
-- dt is not stored in the data: partition projection computes it from the
-- key prefix (no MSCK REPAIR, no crawler), one partition per UTC hour of
-- delivery. Filter on it to read only the hours you need:
--   WHERE dt >= '2026/11/28/00'
--
-- anomalies[].value is a number (threshold, zscore, quantile, rate, auto), a
-- string (rare_category: the value) or, for rcf, an object of the fields
-- watched; the JSON SerDe hands each of them to a string column as its JSON
-- text (use TRY_CAST(value AS double) for the numeric ones).
-- anomalies[].attribution is present for rcf only (NULL otherwise).

CREATE EXTERNAL TABLE IF NOT EXISTS rarewatch_events (
  ts string,
  card string,
  amount double,
  currency string,
  merchant string,
  country string,
  anomaly_score double,
  is_anomaly boolean,
  anomalies array<struct<
    detector:string,
    key:string,
    score:double,
    value:string,
    expected:double,
    reason:string,
    attribution:map<string,double>>>,
  `_kinesis` struct<
    stream:string,
    shard_id:string,
    sequence_number:string,
    sub_sequence_number:bigint,
    partition_key:string,
    arrival_time:string>
)
PARTITIONED BY (dt string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES ('ignore.malformed.json' = 'false')
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://<BUCKET>/events/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy/MM/dd/HH',
  'projection.dt.range' = '2026/01/01/00,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'HOURS',
  'storage.location.template' = 's3://<BUCKET>/events/${dt}/'
);

-- Example: the anomalies of the last day, one row per detector that fired,
-- duplicates removed (delivery is at least once across crashes: a line is
-- identified by its Kinesis provenance).
--
-- SELECT e.ts, e.card, e.amount, a.detector, a.score, a.reason
-- FROM (
--   SELECT *, row_number() OVER (
--            PARTITION BY "_kinesis".shard_id, "_kinesis".sequence_number,
--                         "_kinesis".sub_sequence_number) AS n
--   FROM rarewatch_events
--   WHERE dt >= date_format(current_timestamp - interval '1' day, '%Y/%m/%d/%H')
--     AND is_anomaly
-- ) e
-- CROSS JOIN UNNEST(e.anomalies) AS t(a)
-- WHERE e.n = 1
-- ORDER BY a.score DESC
-- LIMIT 100;
