/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/ckpt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "tap.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/rw-ckpt-test-XXXXXX");
    if (!mkdtemp(dir))
        abort();
}

static void cleanup(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        abort();
}

TEST(round_trip_and_atomic_replace)
{
    setup();
    struct ckpt_store *s = NULL;
    CHECK_INT(ckpt_file_store_new(dir, "arn:aws:kinesis:eu-west-1:123456789012:stream/orders", &s), 0);
    struct checkpoint cp;
    CHECK_INT(s->ops->load(s->impl, "shardId-000000000000", &cp), -ENOENT);
    struct checkpoint w = { .state = CKPT_SEQUENCE, .sequence = "49590338271490256608559692538361571095921575989136588898", .sub_sequence = 3 };
    char p0[] = "shardId-000000000007";
    char *parents[] = { p0, NULL };
    CHECK_INT(s->ops->save(s->impl, "shardId-000000000000", &w, parents), 0);
    CHECK_INT(s->ops->load(s->impl, "shardId-000000000000", &cp), 0);
    CHECK_INT(cp.state, CKPT_SEQUENCE);
    CHECK_STR(cp.sequence, w.sequence);
    CHECK_UINT(cp.sub_sequence, 3);
    struct checkpoint end = { .state = CKPT_SHARD_END };
    CHECK_INT(s->ops->save(s->impl, "shardId-000000000000", &end, NULL), 0);
    CHECK_INT(s->ops->load(s->impl, "shardId-000000000000", &cp), 0);
    CHECK_INT(cp.state, CKPT_SHARD_END);
    /* The stream's name (not the ARN) names the folder; no temp files stay. */
    char path[256];
    snprintf(path, sizeof(path), "%s/checkpoints/orders/shardId-000000000000.json", dir);
    struct stat st;
    CHECK_INT(stat(path, &st), 0);
    snprintf(path, sizeof(path), "%s/checkpoints/orders/.shardId-000000000000.json.tmp", dir);
    CHECK(stat(path, &st) < 0);
    CHECK(s->ops->owns(s->impl, "anything"));
    /* Hostile shard ids never escape the directory. */
    CHECK_INT(s->ops->save(s->impl, "../../etc/passwd", &w, NULL), -EINVAL);
    CHECK_INT(s->ops->load(s->impl, "..", &cp), -EINVAL);
    ckpt_store_free(s);
    cleanup();
}

TEST(parse_rejects_bad_files)
{
    struct checkpoint cp;
    const char *ok = "{\"state\":\"SEQUENCE\",\"sequence_number\":\"123\",\"sub_sequence_number\":0}";
    CHECK_INT(ckpt_parse(ok, strlen(ok), &cp), 0);
    const char *bad[] = {
        "", "{", "[]", "{\"state\":\"SEQUENCE\"}", "{\"state\":\"SEQUENCE\",\"sequence_number\":\"12a\"}",
        "{\"state\":\"WHAT\"}", "{\"state\":\"SEQUENCE\",\"sequence_number\":\"\"}",
        "{\"state\":\"SEQUENCE\",\"sequence_number\":5}",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        if (ckpt_parse(bad[i], strlen(bad[i]), &cp) != -EBADMSG)
            TAP_FAIL_("accepted: %s", bad[i]);
}

TAP_MAIN
