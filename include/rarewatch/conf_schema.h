/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* The production configuration schema (conf_keys.def) and loading it with
 * the semantic checks of every stage. */
#include "rarewatch/conf.h"

enum rw_key {
#define KEY(section, name, ...) RWK_##section##_##name,
#include "rarewatch/conf_keys.def"
    RWK__COUNT
};

extern const struct conf_schema rw_schema;

/* Parse and validate: schema (conf_load) and then every stage's own checks
 * (expressions compile, referenced files exist, ...). 0 or -EINVAL with
 * every problem in diag. */
int rw_config_load(const char *path, struct conf_diag *diag, struct rw_config **out);
int rw_config_validate(struct rw_config *cfg, struct conf_diag *diag);
