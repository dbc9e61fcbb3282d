/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Subcommands of the operator CLI; each returns the process exit code. */
int cmd_check_config(int argc, char **argv);
int cmd_put(int argc, char **argv);
int cmd_deadletter(int argc, char **argv);
int cmd_replay(int argc, char **argv);
