/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/conf_schema.h"

static const struct conf_section_def sections[] = {
#define SECTION(n, named_, tk, d) { .name = #n, .named = named_, .type_key = tk, .doc = d },
#include "rarewatch/conf_keys.def"
};

static const struct conf_key keys[] = {
#define KEY(sec, n, t, d, mn, mx, ev, ty, fl, doc_) \
    { .section = #sec, .name = #n, .type = t, .def = d, .min = mn, .max = mx, \
      .enum_values = ev, .types = ty, .flags = fl, .doc = doc_ },
#include "rarewatch/conf_keys.def"
};

const struct conf_schema rw_schema = {
    .sections = sections,
    .n_sections = ELEMENTSOF(sections),
    .keys = keys,
    .n_keys = ELEMENTSOF(keys),
};

int rw_config_validate(struct rw_config *cfg, struct conf_diag *diag)
{
    /* Stage checks are added here as the stages land (transform expressions,
     * detector fields, sink settings). */
    (void)cfg;
    (void)diag;
    return 0;
}

int rw_config_load(const char *path, struct conf_diag *diag, struct rw_config **out)
{
    struct rw_config *cfg = NULL;
    int r = conf_load(&rw_schema, path, diag, &cfg);
    if (r < 0)
        return r;
    r = rw_config_validate(cfg, diag);
    if (r < 0) {
        conf_unref(cfg);
        return r;
    }
    *out = cfg;
    return 0;
}
