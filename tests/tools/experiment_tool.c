/*
 * experiment_tool: feeds simulated events to daemon/experiment and prints
 * its JSON, for tests/test_experiment_stats.py to check the figures against
 * independent implementations.
 *
 *   experiment_tool [--control NAME] [--alpha A] [--tau2 T] [--min-users N]
 *                   NAME=SHARE NAME=SHARE...
 *
 * The first variant is the control unless --control names another. Lines on
 * standard input:
 *   expose VARIANT USER    user USER (a stable index) served a list of VARIANT
 *   hit VARIANT USER       a hit of USER on a list of VARIANT
 *   pre USER VALUE         USER's pre-period activity
 *   reset MS               a new exposure period starting at MS
 *   roundtrip              export, then import into a new experiment
 *   render                 print experiment_render_json() on one line
 * At the end of input the JSON is printed once more. Exit 1 on any error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiment.h"

static int arm_index(const struct experiment_config *config, const char *name, size_t *arm)
{
	for (size_t k = 0; k < config->arm_count; k++) {
		if (strcmp(config->arms[k].name, name) == 0) {
			*arm = k;
			return 0;
		}
	}
	return -1;
}

static int render(const struct experiment *experiment)
{
	char errstr[256];
	char *json = experiment_render_json(experiment, errstr, sizeof errstr);
	if (json == NULL) {
		fprintf(stderr, "experiment_tool: %s\n", errstr);
		return -1;
	}
	puts(json);
	free(json);
	return 0;
}

static struct experiment *roundtrip(struct experiment *experiment,
				    const struct experiment_config *config, char *errstr,
				    size_t errstr_size)
{
	uint8_t *data;
	size_t size;
	if (experiment_export(experiment, &data, &size, errstr, errstr_size) != 0)
		return NULL;
	struct experiment *copy = experiment_new(config, errstr, errstr_size);
	if (copy != NULL && experiment_import(copy, data, size, errstr, errstr_size) != 0) {
		experiment_free(copy);
		copy = NULL;
	}
	free(data);
	return copy;
}

int main(int argc, char **argv)
{
	struct experiment_config config = experiment_config_default();
	struct experiment_arm_config arms[EXPERIMENT_MAX_ARMS];
	char names[EXPERIMENT_MAX_ARMS][64];
	const char *control = NULL;
	char errstr[256];
	config.name = "tool";
	config.arms = arms;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--control") == 0 && i + 1 < argc) {
			control = argv[++i];
		} else if (strcmp(argv[i], "--alpha") == 0 && i + 1 < argc) {
			config.alpha = strtod(argv[++i], NULL);
		} else if (strcmp(argv[i], "--tau2") == 0 && i + 1 < argc) {
			config.msprt_tau2 = strtod(argv[++i], NULL);
		} else if (strcmp(argv[i], "--min-users") == 0 && i + 1 < argc) {
			config.msprt_min_users = (uint32_t)strtoul(argv[++i], NULL, 10);
		} else {
			const char *eq = strchr(argv[i], '=');
			size_t len = eq ? (size_t)(eq - argv[i]) : 0;
			if (eq == NULL || len == 0 || len >= sizeof names[0] ||
			    config.arm_count == EXPERIMENT_MAX_ARMS) {
				fprintf(stderr, "usage: experiment_tool [options] NAME=SHARE...\n");
				return 1;
			}
			memcpy(names[config.arm_count], argv[i], len);
			names[config.arm_count][len] = '\0';
			arms[config.arm_count].name = names[config.arm_count];
			arms[config.arm_count].share = strtod(eq + 1, NULL);
			config.arm_count++;
		}
	}
	if (control != NULL && arm_index(&config, control, &config.control_arm) != 0) {
		fprintf(stderr, "experiment_tool: no variant %s\n", control);
		return 1;
	}
	struct experiment *experiment = experiment_new(&config, errstr, sizeof errstr);
	if (experiment == NULL) {
		fprintf(stderr, "experiment_tool: %s\n", errstr);
		return 1;
	}

	char line[256];
	unsigned long line_no = 0;
	int status = 0;
	while (status == 0 && fgets(line, sizeof line, stdin) != NULL) {
		char command[16], variant[64];
		uint32_t user;
		double value;
		int64_t ms;
		size_t arm;
		line_no++;
		if (sscanf(line, "%15s", command) != 1)
			continue;
		if (strcmp(command, "expose") == 0 || strcmp(command, "hit") == 0) {
			if (sscanf(line, "%*s %63s %" SCNu32, variant, &user) != 2 ||
			    arm_index(&config, variant, &arm) != 0) {
				snprintf(errstr, sizeof errstr, "bad line");
				status = -1;
			} else if (command[0] == 'e') {
				status =
				    experiment_expose(experiment, user, arm, errstr, sizeof errstr);
			} else {
				status =
				    experiment_hit(experiment, user, arm, errstr, sizeof errstr);
			}
		} else if (strcmp(command, "pre") == 0) {
			if (sscanf(line, "%*s %" SCNu32 " %lf", &user, &value) != 2) {
				snprintf(errstr, sizeof errstr, "bad line");
				status = -1;
			} else {
				status = experiment_set_pre(experiment, user, value, errstr,
							    sizeof errstr);
			}
		} else if (strcmp(command, "reset") == 0) {
			if (sscanf(line, "%*s %" SCNd64, &ms) != 1)
				ms = 0;
			experiment_reset_period(experiment, ms);
		} else if (strcmp(command, "roundtrip") == 0) {
			struct experiment *copy =
			    roundtrip(experiment, &config, errstr, sizeof errstr);
			if (copy == NULL) {
				status = -1;
			} else {
				experiment_free(experiment);
				experiment = copy;
			}
		} else if (strcmp(command, "render") == 0) {
			status = render(experiment);
			snprintf(errstr, sizeof errstr, "render failed");
		} else {
			snprintf(errstr, sizeof errstr, "unknown command %s", command);
			status = -1;
		}
	}
	if (status != 0)
		fprintf(stderr, "experiment_tool: line %lu: %s\n", line_no, errstr);
	else
		status = render(experiment);
	experiment_free(experiment);
	return status == 0 ? 0 : 1;
}
