/*
 * stream/registry against a real schema registry (Apicurio Registry's
 * Confluent-compatible API, started by the harness with tools/schema-registry):
 * registering returns the subject's id, again without HTTP; a schema fetched
 * by id decodes Confluent-framed messages and is then served from the cache;
 * an id the registry does not have is invalid input; an unreachable registry
 * is "schema_unavailable" (retry later), distinct from invalid input, and
 * backs off; a schema that does not resolve against ours is refused once;
 * authentication failures say so.
 *
 * Needs STREAMREC_TEST_REGISTRY (the API's base URL) and
 * STREAMREC_TEST_REGISTRY_AUTH (a base URL in front of the same registry
 * that demands basic authentication streamrec:s3cret), STREAMREC_TEST_REGISTRY_TLS
 * (the same over https) and STREAMREC_TEST_REGISTRY_TLS_CA (the self-signed
 * certificate it serves).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "registry.h"

#define AUTH_GOOD "streamrec:s3cret"

static const char *env_or_fail(const char *name)
{
	const char *value = getenv(name);
	if (value == NULL || value[0] == '\0')
		fail_msg("%s is not set: run this test through the harness (tests/conftest.py)", name);
	return value;
}

static struct registry *new_registry(const char *url, const char *auth)
{
	char errstr[256];
	struct registry_config config = {.url = url, .basic_auth = auth};
	struct registry *registry = registry_new(&config, errstr, sizeof errstr);
	if (registry == NULL)
		fail_msg("registry_new: %s", errstr);
	return registry;
}

static void unique_subject(const char *what, char *buf, size_t size)
{
	static int counter;
	char topic[96];
	snprintf(topic, sizeof topic, "test-%s-%ld-%d-%d", what, (long)getpid(), (int)time(NULL),
		 counter++);
	assert_int_equal(registry_topic_subject(topic, buf, size), 0);
}

static struct codec *new_codec(void)
{
	char errstr[256];
	struct codec_config config = {.framing = CODEC_FRAMING_AUTO};
	struct codec *codec = codec_new(&config, errstr, sizeof errstr);
	if (codec == NULL)
		fail_msg("codec_new: %s", errstr);
	return codec;
}

static void sample_event(struct user_event *event)
{
	memset(event, 0, sizeof *event);
	strcpy(event->event_id, "e-1");
	strcpy(event->user_id, "u-1");
	strcpy(event->item_id, "i-1");
	event->type = EVENT_CLICK;
	event->ts_ms = 1700000000000LL;
}

/* A Confluent-framed UserEvent written with our schema under schema_id. */
static void encode_with_id(int32_t schema_id, struct codec_buf *out)
{
	char errstr[256];
	struct codec *codec = new_codec();
	struct user_event event;
	sample_event(&event);
	assert_int_equal(
	    codec_set_writer_schema_id(codec, "UserEvent", schema_id, errstr, sizeof errstr), 0);
	if (codec_encode_user_event(codec, &event, CODEC_FRAMING_CONFLUENT, out, errstr,
				    sizeof errstr) != 0)
		fail_msg("encode: %s", errstr);
	codec_free(codec);
}

static void subject_follows_topic_name_strategy(void **state)
{
	char subject[16];
	(void)state;
	assert_int_equal(registry_topic_subject("events", subject, sizeof subject), 0);
	assert_string_equal(subject, "events-value");
	assert_int_equal(registry_topic_subject("a-very-long-topic", subject, sizeof subject), -1);
	assert_string_equal(subject, "");
}

static void register_then_fetch_by_id_then_cache(void **state)
{
	struct registry *registry = new_registry(env_or_fail("STREAMREC_TEST_REGISTRY"), NULL);
	struct registry_stats stats;
	char subject[160], errstr[512];
	int32_t id = -1, again = -1;
	const char *json = NULL;
	(void)state;

	unique_subject("reg", subject, sizeof subject);
	assert_int_equal(registry_register(registry, subject, codec_schema_json("UserEvent"), &id,
					   errstr, sizeof errstr),
			 REGISTRY_OK);
	assert_true(id >= 0);
	assert_int_equal(registry_register(registry, subject, codec_schema_json("UserEvent"),
					   &again, errstr, sizeof errstr),
			 REGISTRY_OK);
	assert_int_equal(again, id);
	registry_get_stats(registry, &stats);
	assert_int_equal(stats.http_requests, 1); /* the second answer came from the cache */
	registry_free(registry);

	/* a fresh client asks the registry for the id, then only its cache */
	registry = new_registry(env_or_fail("STREAMREC_TEST_REGISTRY"), NULL);
	if (registry_schema_by_id(registry, id, &json, errstr, sizeof errstr) != REGISTRY_OK)
		fail_msg("schema_by_id: %s", errstr);
	assert_non_null(strstr(json, "UserEvent"));
	assert_int_equal(registry_schema_by_id(registry, id, &json, errstr, sizeof errstr),
			 REGISTRY_OK);
	registry_get_stats(registry, &stats);
	assert_int_equal(stats.http_requests, 1);
	assert_int_equal(stats.cache_hits, 1);
	registry_free(registry);
}

static void codec_decodes_through_the_registry(void **state)
{
	struct registry *registry = new_registry(env_or_fail("STREAMREC_TEST_REGISTRY"), NULL);
	struct codec *codec = new_codec();
	struct codec_buf buf = {0};
	struct codec_error err = {0};
	struct registry_stats stats;
	struct user_event out;
	char subject[160], errstr[512];
	int32_t id;
	(void)state;

	unique_subject("codec", subject, sizeof subject);
	assert_int_equal(registry_register(registry, subject, codec_schema_json("UserEvent"), &id,
					   errstr, sizeof errstr),
			 REGISTRY_OK);
	registry_free(registry);
	encode_with_id(id, &buf);

	registry = new_registry(env_or_fail("STREAMREC_TEST_REGISTRY"), NULL);
	codec_set_schema_source(codec, registry_codec_source, registry);
	for (int round = 0; round < 3; round++) {
		if (codec_decode_user_event(codec, buf.data, buf.len, 1700000000000LL, &out,
					    &err) != 0)
			fail_msg("decode: %s: %s", codec_reason_name(err.reason), err.detail);
		assert_string_equal(out.user_id, "u-1");
		assert_int_equal(out.type, EVENT_CLICK);
	}
	registry_get_stats(registry, &stats);
	assert_int_equal(stats.http_requests, 1); /* once, then the codec's own plan */
	codec_buf_free(&buf);
	codec_free(codec);
	registry_free(registry);
}

static void unknown_id_is_invalid_input(void **state)
{
	struct registry *registry = new_registry(env_or_fail("STREAMREC_TEST_REGISTRY"), NULL);
	struct codec *codec = new_codec();
	struct codec_buf buf = {0};
	struct codec_error err = {0};
	struct registry_stats stats;
	struct user_event out;
	(void)state;

	encode_with_id(987654321, &buf);
	codec_set_schema_source(codec, registry_codec_source, registry);
	assert_int_equal(codec_decode_user_event(codec, buf.data, buf.len, 1700000000000LL, &out,
						 &err),
			 -1);
	assert_int_equal(err.reason, CODEC_ERR_UNKNOWN_SCHEMA);
	assert_false(codec_reason_is_retriable(err.reason));
	assert_non_null(strstr(err.detail, "not found"));
	/* the 404 is remembered: a stream of such messages costs one request */
	assert_int_equal(codec_decode_user_event(codec, buf.data, buf.len, 1700000000000LL, &out,
						 &err),
			 -1);
	assert_int_equal(err.reason, CODEC_ERR_UNKNOWN_SCHEMA);
	registry_get_stats(registry, &stats);
	assert_int_equal(stats.http_requests, 1);
	codec_buf_free(&buf);
	codec_free(codec);
	registry_free(registry);
}

static void unreachable_registry_means_retry_later(void **state)
{
	/* port 1 on loopback: nothing listens there, the connection is refused at once */
	struct registry *registry = new_registry("http://127.0.0.1:1/apis/ccompat/v7", NULL);
	struct codec *codec = new_codec();
	struct codec_buf buf = {0};
	struct codec_error err = {0};
	struct registry_stats stats;
	struct user_event out;
	const char *json = NULL;
	char errstr[512];
	(void)state;

	assert_int_equal(registry_schema_by_id(registry, 1, &json, errstr, sizeof errstr),
			 REGISTRY_UNAVAILABLE);
	assert_non_null(strstr(errstr, "unreachable"));
	assert_non_null(strstr(errstr, "127.0.0.1:1"));

	encode_with_id(1, &buf);
	codec_set_schema_source(codec, registry_codec_source, registry);
	assert_int_equal(codec_decode_user_event(codec, buf.data, buf.len, 1700000000000LL, &out,
						 &err),
			 -1);
	assert_int_equal(err.reason, CODEC_ERR_SCHEMA_UNAVAILABLE);
	assert_string_equal(codec_reason_name(err.reason), "schema_unavailable");
	assert_true(codec_reason_is_retriable(err.reason));
	/* within the back-off no request is made: the caller is not stalled per message */
	registry_get_stats(registry, &stats);
	assert_int_equal(stats.http_requests, 1);
	assert_non_null(strstr(err.detail, "next try in"));
	codec_buf_free(&buf);
	codec_free(codec);
	registry_free(registry);
}

static void unresolvable_schema_is_refused_once(void **state)
{
	static const char other[] =
	    "{\"type\":\"record\",\"name\":\"Other\",\"namespace\":\"elsewhere\","
	    "\"fields\":[{\"name\":\"x\",\"type\":\"int\"}]}";
	struct registry *registry = new_registry(env_or_fail("STREAMREC_TEST_REGISTRY"), NULL);
	struct codec *codec = new_codec();
	struct codec_buf buf = {0};
	struct codec_error err = {0};
	struct registry_stats stats;
	struct user_event out;
	char subject[160], errstr[512];
	int32_t id;
	(void)state;

	unique_subject("other", subject, sizeof subject);
	assert_int_equal(registry_register(registry, subject, other, &id, errstr, sizeof errstr),
			 REGISTRY_OK);
	registry_free(registry);
	registry = new_registry(env_or_fail("STREAMREC_TEST_REGISTRY"), NULL);
	encode_with_id(id, &buf);
	codec_set_schema_source(codec, registry_codec_source, registry);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(codec_decode_user_event(codec, buf.data, buf.len,
							 1700000000000LL, &out, &err),
				 -1);
		assert_int_equal(err.reason, CODEC_ERR_SCHEMA_MISMATCH);
	}
	registry_get_stats(registry, &stats);
	assert_int_equal(stats.http_requests, 1);
	codec_buf_free(&buf);
	codec_free(codec);
	registry_free(registry);
}

static void authentication(void **state)
{
	const char *url = env_or_fail("STREAMREC_TEST_REGISTRY_AUTH");
	const char *wrong[] = {NULL, "streamrec:wrong"};
	char subject[160], errstr[512];
	int32_t id = -1;
	const char *json;
	(void)state;

	unique_subject("auth", subject, sizeof subject);
	for (size_t i = 0; i < 2; i++) {
		struct registry *registry = new_registry(url, wrong[i]);
		assert_int_equal(registry_register(registry, subject, codec_schema_json("ItemEvent"),
						   &id, errstr, sizeof errstr),
				 REGISTRY_UNAVAILABLE);
		assert_non_null(strstr(errstr, "authentication failed (HTTP 401"));
		registry_free(registry);
	}
	struct registry *registry = new_registry(url, AUTH_GOOD);
	if (registry_register(registry, subject, codec_schema_json("ItemEvent"), &id, errstr,
			      sizeof errstr) != REGISTRY_OK)
		fail_msg("register with credentials: %s", errstr);
	registry_free(registry);
	registry = new_registry(url, AUTH_GOOD);
	if (registry_schema_by_id(registry, id, &json, errstr, sizeof errstr) != REGISTRY_OK)
		fail_msg("fetch with credentials: %s", errstr);
	assert_non_null(strstr(json, "ItemEvent"));
	registry_free(registry);
}

static void tls(void **state)
{
	const char *url = env_or_fail("STREAMREC_TEST_REGISTRY_TLS");
	struct registry_config config = {.url = url};
	struct registry *registry;
	char subject[160], errstr[512];
	int32_t id = -1;
	(void)state;

	unique_subject("tls", subject, sizeof subject);
	/* an unknown certificate is refused, clearly */
	registry = registry_new(&config, errstr, sizeof errstr);
	assert_non_null(registry);
	assert_int_equal(registry_register(registry, subject, codec_schema_json("UserEvent"), &id,
					   errstr, sizeof errstr),
			 REGISTRY_UNAVAILABLE);
	assert_non_null(strstr(errstr, "certificate"));
	registry_free(registry);
	/* trusted through the CA file */
	config.tls_ca_file = env_or_fail("STREAMREC_TEST_REGISTRY_TLS_CA");
	registry = registry_new(&config, errstr, sizeof errstr);
	assert_non_null(registry);
	if (registry_register(registry, subject, codec_schema_json("UserEvent"), &id, errstr,
			      sizeof errstr) != REGISTRY_OK)
		fail_msg("register over https with the CA: %s", errstr);
	registry_free(registry);
	/* or not verified at all */
	config.tls_ca_file = NULL;
	config.tls_insecure = true;
	registry = registry_new(&config, errstr, sizeof errstr);
	assert_non_null(registry);
	if (registry_register(registry, subject, codec_schema_json("UserEvent"), &id, errstr,
			      sizeof errstr) != REGISTRY_OK)
		fail_msg("register over https, insecure: %s", errstr);
	registry_free(registry);
}

static void bad_configuration_is_named(void **state)
{
	char errstr[256];
	struct registry_config config = {.url = "ftp://x"};
	(void)state;
	assert_null(registry_new(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "http://"));
	config.url = "http://127.0.0.1:1";
	config.basic_auth = "nocolon";
	assert_null(registry_new(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "user:password"));
	config.basic_auth = NULL;
	config.tls_cert_file = "/nonexistent.pem";
	assert_null(registry_new(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "key"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(subject_follows_topic_name_strategy),
	    cmocka_unit_test(bad_configuration_is_named),
	    cmocka_unit_test(register_then_fetch_by_id_then_cache),
	    cmocka_unit_test(codec_decodes_through_the_registry),
	    cmocka_unit_test(unknown_id_is_invalid_input),
	    cmocka_unit_test(unreachable_registry_means_retry_later),
	    cmocka_unit_test(unresolvable_schema_is_refused_once),
	    cmocka_unit_test(authentication),
	    cmocka_unit_test(tls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
