/*
 * codec_tool: a line-oriented bridge between streamrec's codec and test
 * programs in other languages (the fastavro interoperability test).
 *
 *   codec_tool [--framing raw|confluent|auto] [--schema ID=FILE]... [--out-schema-id N]
 *              [--rec-version 1|2] COMMAND
 *
 * Strings travel hex-encoded so any byte survives; floats as IEEE bits in hex.
 *   decode-events  in: hex message     out: OK evhex uhex ihex TYPE ts sess|- qty|- pricebits|-
 *                                            listhex|-
 *                                        or ERR reason detail
 *   encode-events  in: evhex uhex ihex TYPE ts sess|- qty|- pricebits|- listhex|-
 *                                      out: hex message
 *   encode-recs    in: uhex vhex step gen trig listhex|- n (ihex scorebits reasonhex|-
 * becausehex|-){n} out: hex message decode-recs    in: hex message     out: the encode-recs line,
 * or ERR reason detail
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

static int hex_decode(const char *hex, uint8_t *out, size_t cap, size_t *len)
{
	size_t n = strlen(hex);
	if (n % 2 != 0 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	*len = n / 2;
	return 0;
}

static void hex_print(const void *data, size_t len)
{
	const uint8_t *b = data;
	for (size_t i = 0; i < len; i++)
		printf("%02x", b[i]);
	if (len == 0)
		printf("-");
}

/* Decodes a hex token into a NUL-terminated string of at most cap-1 bytes. */
static int hex_string(const char *hex, char *out, size_t cap)
{
	size_t len;
	if (strcmp(hex, "-") == 0) {
		out[0] = '\0';
		return 0;
	}
	if (hex_decode(hex, (uint8_t *)out, cap - 1, &len) != 0)
		return -1;
	out[len] = '\0';
	return 0;
}

static float bits_float(const char *hex)
{
	uint32_t bits = (uint32_t)strtoul(hex, NULL, 16);
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

static double bits_double(const char *hex)
{
	uint64_t bits = strtoull(hex, NULL, 16);
	double d;
	memcpy(&d, &bits, sizeof d);
	return d;
}

static void print_event(const struct user_event *e)
{
	uint64_t price_bits;
	printf("OK ");
	hex_print(e->event_id, strlen(e->event_id));
	printf(" ");
	hex_print(e->user_id, strlen(e->user_id));
	printf(" ");
	hex_print(e->item_id, strlen(e->item_id));
	printf(" %s %" PRId64 " ", event_type_name(e->type), e->ts_ms);
	if (e->has_session_id)
		hex_print(e->session_id, strlen(e->session_id));
	else
		printf("-");
	if (e->has_quantity)
		printf(" %d", e->quantity);
	else
		printf(" -");
	memcpy(&price_bits, &e->price, sizeof price_bits);
	if (e->has_price)
		printf(" %016" PRIx64 " ", price_bits);
	else
		printf(" - ");
	if (e->has_list_id)
		hex_print(e->list_id, strlen(e->list_id));
	else
		printf("-");
	/* the search: - or S:text:model:v0,v1,... (hex strings, - for none) */
	if (!e->has_search) {
		printf(" -\n");
		return;
	}
	printf(" S:");
	if (e->search_text != NULL)
		hex_print(e->search_text, e->search_text_len);
	else
		printf("-");
	printf(":");
	if (e->search_vector != NULL) {
		hex_print(e->search_model, strlen(e->search_model));
		printf(":");
		for (uint32_t k = 0; k < e->search_dim; k++)
			printf(k ? ",%.9g" : "%.9g", (double)e->search_vector[k]);
	} else
		printf("-:-");
	printf("\n");
}

/* Storage of a parsed search token. */
static char search_text[1 << 17];
static float search_vector[4096];

static int parse_search(char *token, struct user_event *e)
{
	char *text = token + 2, *model = strchr(text, ':'), *vector;
	if (strncmp(token, "S:", 2) != 0 || model == NULL)
		return -1;
	*model++ = '\0';
	vector = strchr(model, ':');
	if (vector == NULL)
		return -1;
	*vector++ = '\0';
	e->has_search = true;
	if (strcmp(text, "-") != 0) {
		if (hex_string(text, search_text, sizeof search_text))
			return -1;
		e->search_text = search_text;
		e->search_text_len = strlen(search_text);
	}
	if (strcmp(model, "-") != 0) {
		if (hex_string(model, e->search_model, sizeof e->search_model))
			return -1;
		e->search_dim = 0;
		for (char *f = strtok(vector, ","); f != NULL && e->search_dim < 4096;
		     f = strtok(NULL, ","))
			search_vector[e->search_dim++] = strtof(f, NULL);
		e->search_vector = search_vector;
	}
	return 0;
}

static int parse_event(char *line, struct user_event *e)
{
	char *tok[10];
	int n = 0;
	for (char *t = strtok(line, " \n"); t != NULL && n < 10; t = strtok(NULL, " \n"))
		tok[n++] = t;
	if (n != 9 && n != 10)
		return -1;
	memset(e, 0, sizeof *e);
	if (hex_string(tok[0], e->event_id, sizeof e->event_id) ||
	    hex_string(tok[1], e->user_id, sizeof e->user_id) ||
	    hex_string(tok[2], e->item_id, sizeof e->item_id) ||
	    !event_type_from_name(tok[3], &e->type))
		return -1;
	e->ts_ms = strtoll(tok[4], NULL, 10);
	if (strcmp(tok[5], "-") != 0) {
		e->has_session_id = true;
		if (hex_string(tok[5], e->session_id, sizeof e->session_id))
			return -1;
	}
	if (strcmp(tok[6], "-") != 0) {
		e->has_quantity = true;
		e->quantity = (int32_t)strtol(tok[6], NULL, 10);
	}
	if (strcmp(tok[7], "-") != 0) {
		e->has_price = true;
		e->price = bits_double(tok[7]);
	}
	if (strcmp(tok[8], "-") != 0) {
		e->has_list_id = true;
		if (hex_string(tok[8], e->list_id, sizeof e->list_id))
			return -1;
	}
	if (n == 10 && strcmp(tok[9], "-") != 0)
		return parse_search(tok[9], e);
	return 0;
}

#define MAX_ITEMS 1000

/* An optional hex string token: NULL for "-". @returns 0 or -1. */
static int hex_optional(const char *t, char *out, size_t cap, const char **value)
{
	*value = NULL;
	if (t == NULL)
		return -1;
	if (strcmp(t, "-") == 0)
		return 0;
	*value = out;
	return hex_string(t, out, cap);
}

static int parse_rec(char *line, struct recommendation *r, struct scored_item *items,
		     char (*ids)[3][CODEC_ID_MAX_BYTES * 4 + 1], char *user, char *variant,
		     char *list_id)
{
	char *save = NULL, *t;
	long count;
	if ((t = strtok_r(line, " \n", &save)) == NULL ||
	    hex_string(t, user, CODEC_ID_MAX_BYTES * 4 + 1))
		return -1;
	if ((t = strtok_r(NULL, " \n", &save)) == NULL ||
	    hex_string(t, variant, CODEC_ID_MAX_BYTES * 4 + 1))
		return -1;
	r->user_id = user;
	r->variant = variant;
	if ((t = strtok_r(NULL, " \n", &save)) == NULL)
		return -1;
	r->model_step = strtoll(t, NULL, 10);
	if ((t = strtok_r(NULL, " \n", &save)) == NULL)
		return -1;
	r->generated_at_ms = strtoll(t, NULL, 10);
	if ((t = strtok_r(NULL, " \n", &save)) == NULL)
		return -1;
	r->trigger_event_ts_ms = strtoll(t, NULL, 10);
	if (hex_optional(strtok_r(NULL, " \n", &save), list_id, CODEC_ID_MAX_BYTES * 4 + 1,
			 &r->list_id) != 0)
		return -1;
	if ((t = strtok_r(NULL, " \n", &save)) == NULL || (count = strtol(t, NULL, 10)) < 0 ||
	    count > MAX_ITEMS)
		return -1;
	for (long i = 0; i < count; i++) {
		if ((t = strtok_r(NULL, " \n", &save)) == NULL ||
		    hex_string(t, ids[i][0], CODEC_ID_MAX_BYTES * 4 + 1))
			return -1;
		items[i].item_id = ids[i][0];
		if ((t = strtok_r(NULL, " \n", &save)) == NULL)
			return -1;
		items[i].score = bits_float(t);
		if (hex_optional(strtok_r(NULL, " \n", &save), ids[i][1],
				 CODEC_ID_MAX_BYTES * 4 + 1, &items[i].reason) != 0 ||
		    hex_optional(strtok_r(NULL, " \n", &save), ids[i][2],
				 CODEC_ID_MAX_BYTES * 4 + 1, &items[i].because_item) != 0)
			return -1;
	}
	r->item_count = (size_t)count;
	r->items = items;
	return 0;
}

static void print_rec(const struct recommendation *r)
{
	hex_print(r->user_id, strlen(r->user_id));
	printf(" ");
	hex_print(r->variant, strlen(r->variant));
	printf(" %" PRId64 " %" PRId64 " %" PRId64 " ", r->model_step, r->generated_at_ms,
	       r->trigger_event_ts_ms);
	hex_print(r->list_id, strlen(r->list_id));
	printf(" %zu", r->item_count);
	for (size_t i = 0; i < r->item_count; i++) {
		const struct scored_item *si = &r->items[i];
		uint32_t bits;
		memcpy(&bits, &si->score, sizeof bits);
		printf(" ");
		hex_print(si->item_id, strlen(si->item_id));
		printf(" %08" PRIx32 " ", bits);
		hex_print(si->reason, si->reason ? strlen(si->reason) : 0);
		printf(" ");
		hex_print(si->because_item, si->because_item ? strlen(si->because_item) : 0);
	}
	printf("\n");
}

int main(int argc, char **argv)
{
	struct codec_config config = {.framing = CODEC_FRAMING_AUTO};
	struct codec *codec;
	char errstr[512];
	const char *command = NULL;
	static char line[1 << 20];
	static uint8_t msg[1 << 19];
	static struct scored_item items[MAX_ITEMS];
	static char ids[MAX_ITEMS][3][CODEC_ID_MAX_BYTES * 4 + 1];
	static char user[CODEC_ID_MAX_BYTES * 4 + 1], variant[CODEC_ID_MAX_BYTES * 4 + 1],
	    list_id[CODEC_ID_MAX_BYTES * 4 + 1];
	struct codec_buf out = {0};
	int32_t out_schema_id = 0;
	int status = 0;
	int i;

	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--framing") == 0 && i + 1 < argc) {
			const char *f = argv[++i];
			config.framing = strcmp(f, "raw") == 0         ? CODEC_FRAMING_RAW
					 : strcmp(f, "confluent") == 0 ? CODEC_FRAMING_CONFLUENT
								       : CODEC_FRAMING_AUTO;
		} else if (strcmp(argv[i], "--out-schema-id") == 0 && i + 1 < argc) {
			out_schema_id = (int32_t)atoi(argv[++i]);
		} else if (strcmp(argv[i], "--rec-version") == 0 && i + 1 < argc) {
			config.recommendation_version = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--schema") == 0 && i + 1 < argc) {
			i++; /* handled after the codec exists */
		} else {
			fprintf(stderr, "codec_tool: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (i >= argc) {
		fprintf(stderr, "codec_tool: missing command\n");
		return 2;
	}
	command = argv[i];
	config.recommendation_schema_id = config.user_event_schema_id = out_schema_id;
	codec = codec_new(&config, errstr, sizeof errstr);
	if (codec == NULL) {
		fprintf(stderr, "codec_tool: %s\n", errstr);
		return 1;
	}
	for (int k = 1; k < i; k++) {
		if (strcmp(argv[k], "--schema") == 0) {
			char *spec = argv[++k], *eq = strchr(spec, '='), *text;
			FILE *f;
			long size;
			if (eq == NULL || (f = fopen(eq + 1, "rb")) == NULL) {
				fprintf(stderr, "codec_tool: --schema wants ID=FILE, got %s\n",
					spec);
				codec_free(codec);
				return 2;
			}
			fseek(f, 0, SEEK_END);
			size = ftell(f);
			rewind(f);
			text = calloc(1, (size_t)size + 1);
			if (fread(text, 1, (size_t)size, f) != (size_t)size ||
			    codec_register_schema(codec, atoi(spec), text, errstr, sizeof errstr) !=
				0) {
				fprintf(stderr, "codec_tool: %s: %s\n", spec, errstr);
				status = 1;
			}
			free(text);
			fclose(f);
		}
	}
	enum codec_framing out_framing =
	    config.framing == CODEC_FRAMING_CONFLUENT ? CODEC_FRAMING_CONFLUENT : CODEC_FRAMING_RAW;

	while (status == 0 && fgets(line, sizeof line, stdin) != NULL) {
		struct codec_error err;
		size_t len = 0;
		line[strcspn(line, "\n")] = '\0';
		if (strcmp(command, "decode-items") == 0) {
			struct item_event it;
			if (strcmp(line, "-") != 0 &&
			    hex_decode(line, msg, sizeof msg, &len) != 0) {
				fprintf(stderr, "codec_tool: bad hex line\n");
				status = 2;
				break;
			}
			if (codec_decode_item_event(codec, msg, len, 0, &it, &err) != 0) {
				printf("ERR %s %s\n", codec_reason_name(err.reason), err.detail);
				continue;
			}
			/* OK item_id category title description model dim v0,v1,... (hex strings, - for none) */
			printf("OK ");
			hex_print(it.item_id, strlen(it.item_id));
			printf(" ");
			if (it.has_category)
				hex_print(it.category, strlen(it.category));
			else
				printf("-");
			printf(" ");
			if (it.title != NULL)
				hex_print(it.title, it.title_len);
			else
				printf("-");
			printf(" ");
			if (it.description != NULL)
				hex_print(it.description, it.description_len);
			else
				printf("-");
			if (it.has_content) {
				printf(" ");
				hex_print(it.content_model, strlen(it.content_model));
				printf(" %u ", it.content_dim);
				for (uint32_t k = 0; k < it.content_dim; k++)
					printf(k ? ",%.9g" : "%.9g", (double)it.content[k]);
			} else
				printf(" - 0 -");
			printf("\n");
		} else if (strcmp(command, "decode-events") == 0 || strcmp(command, "decode-recs") == 0) {
			if (strcmp(line, "-") != 0 &&
			    hex_decode(line, msg, sizeof msg, &len) != 0) {
				fprintf(stderr, "codec_tool: bad hex line\n");
				status = 2;
				break;
			}
			if (strcmp(command, "decode-events") == 0) {
				struct user_event e;
				if (codec_decode_user_event(codec, msg, len, 0, &e, &err) == 0)
					print_event(&e);
				else
					printf("ERR %s %s\n", codec_reason_name(err.reason),
					       err.detail);
			} else {
				struct recommendation r;
				if (codec_decode_recommendation(codec, msg, len, &r, &err) == 0)
					print_rec(&r);
				else
					printf("ERR %s %s\n", codec_reason_name(err.reason),
					       err.detail);
			}
		} else if (strcmp(command, "encode-events") == 0) {
			struct user_event e;
			if (parse_event(line, &e) != 0 ||
			    codec_encode_user_event(codec, &e, out_framing, &out, errstr,
						    sizeof errstr)) {
				fprintf(stderr, "codec_tool: cannot encode event line\n");
				status = 2;
				break;
			}
			hex_print(out.data, out.len);
			printf("\n");
		} else if (strcmp(command, "encode-recs") == 0) {
			struct recommendation r;
			if (parse_rec(line, &r, items, ids, user, variant, list_id) != 0 ||
			    codec_encode_recommendation(codec, &r, out_framing, &out, errstr,
							sizeof errstr) != 0) {
				fprintf(stderr, "codec_tool: cannot encode recommendation line\n");
				status = 2;
				break;
			}
			hex_print(out.data, out.len);
			printf("\n");
		} else {
			fprintf(stderr, "codec_tool: unknown command %s\n", command);
			status = 2;
		}
	}
	codec_buf_free(&out);
	codec_free(codec);
	return status;
}
