/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The pipeline of rarewatchd as the daemon lifecycle sees it: consumers,
 * analytics and sinks assembled from a configuration snapshot. daemon.c
 * drives it through app_daemon_ops.
 */
#include "rarewatch/daemon.h"

struct app;

struct app *app_new(void);
struct app *app_free(struct app *a);
extern const struct daemon_ops app_daemon_ops;
