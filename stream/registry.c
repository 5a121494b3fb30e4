/*
 * registry: Confluent Schema Registry client over libcurl (HTTP, TLS, basic
 * authentication) and jansson (the JSON of requests and replies).
 *
 * The caches are small arrays searched linearly: a deployment has a handful
 * of schema ids and one or two subjects per process.
 */
#include "errstr.h"
#include "clock.h"
#include "grow.h"
#include "registry.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct cached_schema {
	int32_t id;
	char *json;              /* NULL: a remembered 404 or refusal */
	char *refused;           /* why the id is not Avro; ids never change type */
	int64_t not_found_until; /* monotonic us, for a remembered 404 */
};

struct cached_subject {
	char *subject;
	char *json;
	int32_t id;
};

struct registry {
	char *url; /* without trailing slash */
	char *basic_auth;
	char *tls_ca_file, *tls_cert_file, *tls_key_file;
	bool tls_insecure;
	long connect_timeout_ms, timeout_ms;
	CURL *curl;
	struct cached_schema *schemas;
	size_t schema_count, schema_cap;
	struct cached_subject *subjects;
	size_t subject_count, subject_cap;
	/* back-off after a request that got no usable answer */
	int64_t retry_at_us;
	int64_t backoff_ms;
	char last_error[256];
	struct registry_stats stats;
};

/* The reply of one request: status and body (NUL-terminated). */
struct reply {
	long http_status;
	char *body;
	size_t len, cap;
	bool too_large;
};

static const char *const status_names[] = {
    [REGISTRY_OK] = "ok",
    [REGISTRY_NOT_FOUND] = "not_found",
    [REGISTRY_REJECTED] = "rejected",
    [REGISTRY_UNAVAILABLE] = "unavailable",
};

const char *registry_status_name(enum registry_status status)
{
	if ((unsigned)status >= sizeof status_names / sizeof status_names[0])
		return "unknown";
	return status_names[status];
}

int registry_topic_subject(const char *topic, char *buf, size_t buf_size)
{
	int n = snprintf(buf, buf_size, "%s-value", topic);
	if (n < 0 || (size_t)n >= buf_size) {
		if (buf_size > 0)
			buf[0] = '\0';
		return -1;
	}
	return 0;
}

static char *copy_or_null(const char *s)
{
	return s != NULL && s[0] != '\0' ? strdup(s) : NULL;
}

struct registry *registry_new(const struct registry_config *config, char *errstr,
			      size_t errstr_size)
{
	struct registry *registry;
	size_t url_len;

	if (config->url == NULL || config->url[0] == '\0') {
		set_errstr(errstr, errstr_size, "registry: no URL");
		return NULL;
	}
	if (strncmp(config->url, "http://", 7) != 0 && strncmp(config->url, "https://", 8) != 0) {
		set_errstr(errstr, errstr_size, "registry: URL must start with http:// or https://, got \"%s\"",
			   config->url);
		return NULL;
	}
	if (config->basic_auth != NULL && config->basic_auth[0] != '\0' &&
	    strchr(config->basic_auth, ':') == NULL) {
		set_errstr(errstr, errstr_size,
			   "registry: basic authentication must be \"user:password\"");
		return NULL;
	}
	if ((config->tls_cert_file == NULL) != (config->tls_key_file == NULL)) {
		set_errstr(errstr, errstr_size,
			   "registry: a client certificate needs its key and the reverse");
		return NULL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		set_errstr(errstr, errstr_size, "registry: cannot initialise libcurl");
		return NULL;
	}
	registry = calloc(1, sizeof *registry);
	if (registry == NULL)
		goto out_oom;
	registry->url = strdup(config->url);
	registry->basic_auth = copy_or_null(config->basic_auth);
	registry->tls_ca_file = copy_or_null(config->tls_ca_file);
	registry->tls_cert_file = copy_or_null(config->tls_cert_file);
	registry->tls_key_file = copy_or_null(config->tls_key_file);
	registry->curl = curl_easy_init();
	if (registry->url == NULL || registry->curl == NULL ||
	    (config->basic_auth != NULL && config->basic_auth[0] != '\0' &&
	     registry->basic_auth == NULL))
		goto out_free;
	url_len = strlen(registry->url);
	while (url_len > 0 && registry->url[url_len - 1] == '/')
		registry->url[--url_len] = '\0';
	registry->tls_insecure = config->tls_insecure;
	registry->connect_timeout_ms = config->connect_timeout_ms > 0
					   ? config->connect_timeout_ms
					   : REGISTRY_DEFAULT_CONNECT_TIMEOUT_MS;
	registry->timeout_ms =
	    config->timeout_ms > 0 ? config->timeout_ms : REGISTRY_DEFAULT_TIMEOUT_MS;
	return registry;

out_free:
	registry_free(registry);
	return NULL;
out_oom:
	curl_global_cleanup();
	set_errstr(errstr, errstr_size, "registry: out of memory");
	return NULL;
}

void registry_free(struct registry *registry)
{
	if (registry == NULL)
		return;
	for (size_t i = 0; i < registry->schema_count; i++) {
		free(registry->schemas[i].json);
		free(registry->schemas[i].refused);
	}
	free(registry->schemas);
	for (size_t i = 0; i < registry->subject_count; i++) {
		free(registry->subjects[i].subject);
		free(registry->subjects[i].json);
	}
	free(registry->subjects);
	if (registry->curl != NULL)
		curl_easy_cleanup(registry->curl);
	free(registry->url);
	if (registry->basic_auth != NULL) {
		memset(registry->basic_auth, 0, strlen(registry->basic_auth));
		free(registry->basic_auth);
	}
	free(registry->tls_ca_file);
	free(registry->tls_cert_file);
	free(registry->tls_key_file);
	free(registry);
	curl_global_cleanup();
}

void registry_get_stats(const struct registry *registry, struct registry_stats *stats)
{
	*stats = registry->stats;
}

/* ---- HTTP ------------------------------------------------------------------------ */

static size_t collect_body(char *data, size_t size, size_t count, void *opaque)
{
	struct reply *reply = opaque;
	size_t n = size * count;
	if (reply->len + n + 1 > REGISTRY_MAX_REPLY_BYTES) {
		reply->too_large = true;
		return 0; /* makes curl fail the transfer */
	}
	if (grow_array(&reply->body, &reply->cap, reply->len + n + 1, 1, 1024) != 0)
		return 0;
	memcpy(reply->body + reply->len, data, n);
	reply->len += n;
	reply->body[reply->len] = '\0';
	return n;
}

/* Starts or lengthens the back-off and remembers why, for calls within it. */
static void note_unavailable(struct registry *registry, const char *why)
{
	registry->backoff_ms = registry->backoff_ms == 0 ? REGISTRY_BACKOFF_MIN_MS
							 : registry->backoff_ms * 2;
	if (registry->backoff_ms > REGISTRY_BACKOFF_MAX_MS)
		registry->backoff_ms = REGISTRY_BACKOFF_MAX_MS;
	registry->retry_at_us = clock_monotonic_us() + registry->backoff_ms * 1000;
	set_errstr(registry->last_error, sizeof registry->last_error, "%s", why);
}

/* True (with errstr filled) while a back-off runs: no request is to be made. */
static bool in_backoff(struct registry *registry, char *errstr, size_t errstr_size)
{
	int64_t now = clock_monotonic_us();
	if (registry->retry_at_us == 0 || now >= registry->retry_at_us)
		return false;
	set_errstr(errstr, errstr_size, "%s (next try in %" PRId64 " ms)", registry->last_error,
		   (registry->retry_at_us - now + 999) / 1000);
	registry->stats.failures++;
	return true;
}

/* The "message" of a registry error reply, or the body itself, or "". */
static void reply_message(const struct reply *reply, char *buf, size_t buf_size)
{
	json_t *root;
	buf[0] = '\0';
	if (reply->body == NULL)
		return;
	root = json_loads(reply->body, 0, NULL);
	if (root != NULL && json_is_string(json_object_get(root, "message")))
		snprintf(buf, buf_size, "%s", json_string_value(json_object_get(root, "message")));
	else
		snprintf(buf, buf_size, "%.*s", (int)(buf_size - 1), reply->body);
	json_decref(root);
}

/*
 * One request: GET when body is NULL, else POST of body as JSON. Returns
 * REGISTRY_OK when an HTTP answer came (whatever its status, in
 * reply->http_status), else REGISTRY_UNAVAILABLE with errstr filled.
 */
static enum registry_status http_call(struct registry *registry, const char *path,
				      const char *body, struct reply *reply, char *errstr,
				      size_t errstr_size)
{
	CURL *curl = registry->curl;
	struct curl_slist *headers = NULL, *more;
	char curl_error[CURL_ERROR_SIZE] = "";
	char *url = NULL;
	enum registry_status status = REGISTRY_UNAVAILABLE;
	CURLcode rc;

	if (asprintf(&url, "%s%s", registry->url, path) < 0) {
		url = NULL;
		set_errstr(errstr, errstr_size, "registry: out of memory");
		goto out;
	}
	more = curl_slist_append(headers, "Accept: application/vnd.schemaregistry.v1+json, "
					  "application/vnd.schemaregistry+json, application/json");
	if (more == NULL)
		goto out_oom;
	headers = more;
	if (body != NULL) {
		more = curl_slist_append(headers,
					 "Content-Type: application/vnd.schemaregistry.v1+json");
		if (more == NULL)
			goto out_oom;
		headers = more;
	}
	curl_easy_reset(curl);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, registry->connect_timeout_ms);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, registry->timeout_ms);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "streamrec");
	if (body != NULL) {
		curl_easy_setopt(curl, CURLOPT_POST, 1L);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	if (registry->basic_auth != NULL) {
		curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(curl, CURLOPT_USERPWD, registry->basic_auth);
	}
	if (registry->tls_ca_file != NULL)
		curl_easy_setopt(curl, CURLOPT_CAINFO, registry->tls_ca_file);
	if (registry->tls_cert_file != NULL) {
		curl_easy_setopt(curl, CURLOPT_SSLCERT, registry->tls_cert_file);
		curl_easy_setopt(curl, CURLOPT_SSLKEY, registry->tls_key_file);
	}
	if (registry->tls_insecure) {
		curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
	}

	registry->stats.http_requests++;
	rc = curl_easy_perform(curl);
	if (rc != CURLE_OK) {
		char why[256];
		if (reply->too_large)
			set_errstr(why, sizeof why,
				 "registry %s: reply larger than %u bytes", url,
				 REGISTRY_MAX_REPLY_BYTES);
		else
			set_errstr(why, sizeof why, "registry %s unreachable: %s", url,
				 curl_error[0] != '\0' ? curl_error : curl_easy_strerror(rc));
		note_unavailable(registry, why);
		set_errstr(errstr, errstr_size, "%s", why);
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->http_status);
	status = REGISTRY_OK;
	goto out;

out_oom:
	set_errstr(errstr, errstr_size, "registry: out of memory");
out:
	/* the error buffer lives on this stack frame: detach it */
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(headers);
	free(url);
	return status;
}

/*
 * Classifies a non-2xx answer: 404 -> NOT_FOUND, 409/422 -> REJECTED, the
 * rest (401/403, 5xx, anything unexpected) -> UNAVAILABLE with a back-off.
 */
static enum registry_status http_failure(struct registry *registry, const char *what,
					 const struct reply *reply, char *errstr,
					 size_t errstr_size)
{
	char message[200], why[256];
	long code = reply->http_status;
	reply_message(reply, message, sizeof message);
	if (code == 404) {
		set_errstr(errstr, errstr_size, "registry: %s: not found (HTTP 404: %s)", what,
			   message);
		return REGISTRY_NOT_FOUND;
	}
	if (code == 409 || code == 422) {
		set_errstr(errstr, errstr_size, "registry: %s: refused (HTTP %ld: %s)", what, code,
			   message);
		return REGISTRY_REJECTED;
	}
	if (code == 401 || code == 403)
		set_errstr(why, sizeof why,
			 "registry: %s: authentication failed (HTTP %ld%s%s): check the registry's "
			 "basic authentication user:password",
			 what, code, message[0] != '\0' ? ": " : "", message);
	else
		set_errstr(why, sizeof why, "registry: %s: HTTP %ld%s%s", what, code,
			 message[0] != '\0' ? ": " : "", message);
	note_unavailable(registry, why);
	registry->stats.failures++;
	set_errstr(errstr, errstr_size, "%s", why);
	return REGISTRY_UNAVAILABLE;
}

/* A 2xx reply parsed as a JSON object, or NULL with the call backing off. */
static json_t *reply_object(struct registry *registry, const char *what,
			    const struct reply *reply, char *errstr, size_t errstr_size)
{
	json_error_t error;
	json_t *root = json_loads(reply->body != NULL ? reply->body : "", 0, &error);
	char why[256];
	if (root != NULL && json_is_object(root))
		return root;
	json_decref(root);
	set_errstr(why, sizeof why, "registry: %s: reply is not a JSON object: %s", what, error.text);
	note_unavailable(registry, why);
	registry->stats.failures++;
	set_errstr(errstr, errstr_size, "%s", why);
	return NULL;
}

/*
 * One request whose answer is a JSON object: a transport failure counts and
 * backs off (http_call), any answer resets the back-off, a non-2xx answer is
 * classified (http_failure), a 2xx one parsed (*root, the caller decrefs).
 */
static enum registry_status request_object(struct registry *registry, const char *what,
					   const char *path, const char *body,
					   struct reply *reply, json_t **root, char *errstr,
					   size_t errstr_size)
{
	enum registry_status status = http_call(registry, path, body, reply, errstr, errstr_size);
	if (status != REGISTRY_OK) {
		registry->stats.failures++;
		return status;
	}
	registry->backoff_ms = 0;
	registry->retry_at_us = 0;
	if (reply->http_status < 200 || reply->http_status > 299)
		return http_failure(registry, what, reply, errstr, errstr_size);
	*root = reply_object(registry, what, reply, errstr, errstr_size);
	return *root != NULL ? REGISTRY_OK : REGISTRY_UNAVAILABLE;
}

/* ---- schemas by id ------------------------------------------------------------------ */

static struct cached_schema *find_schema(struct registry *registry, int32_t id)
{
	for (size_t i = 0; i < registry->schema_count; i++)
		if (registry->schemas[i].id == id)
			return &registry->schemas[i];
	return NULL;
}

static struct cached_schema *add_schema(struct registry *registry, int32_t id)
{
	struct cached_schema *entry = find_schema(registry, id);
	if (entry != NULL)
		return entry;
	if (grow_array(&registry->schemas, &registry->schema_cap, registry->schema_count + 1,
		       sizeof *registry->schemas, 8) != 0)
		return NULL;
	entry = &registry->schemas[registry->schema_count++];
	entry->id = id;
	return entry;
}

enum registry_status registry_schema_by_id(struct registry *registry, int32_t id,
					   const char **schema_json, char *errstr,
					   size_t errstr_size)
{
	struct cached_schema *entry = find_schema(registry, id);
	struct reply reply = {0};
	enum registry_status status;
	json_t *root = NULL, *schema, *type;
	char path[64], what[64];

	snprintf(what, sizeof what, "schema id %" PRId32, id);
	if (entry != NULL && entry->json != NULL) {
		registry->stats.cache_hits++;
		*schema_json = entry->json;
		return REGISTRY_OK;
	}
	if (entry != NULL && entry->refused != NULL) {
		registry->stats.cache_hits++;
		set_errstr(errstr, errstr_size, "%s", entry->refused);
		return REGISTRY_REJECTED;
	}
	if (entry != NULL && clock_monotonic_us() < entry->not_found_until) {
		registry->stats.cache_hits++;
		set_errstr(errstr, errstr_size, "registry: %s: not found (remembered)", what);
		return REGISTRY_NOT_FOUND;
	}
	if (id < 0) {
		set_errstr(errstr, errstr_size, "registry: %s: ids are not negative", what);
		return REGISTRY_NOT_FOUND;
	}
	if (in_backoff(registry, errstr, errstr_size))
		return REGISTRY_UNAVAILABLE;

	snprintf(path, sizeof path, "/schemas/ids/%" PRId32, id);
	status = request_object(registry, what, path, NULL, &reply, &root, errstr, errstr_size);
	if (status == REGISTRY_NOT_FOUND) {
		entry = add_schema(registry, id);
		if (entry != NULL)
			entry->not_found_until =
			    clock_monotonic_us() + REGISTRY_NOT_FOUND_TTL_MS * 1000LL;
	}
	if (status != REGISTRY_OK)
		goto out;
	type = json_object_get(root, "schemaType");
	if (type != NULL && !(json_is_string(type) && strcmp(json_string_value(type), "AVRO") == 0)) {
		char why[256];
		set_errstr(why, sizeof why, "registry: %s is a %s schema, not Avro", what,
			   json_is_string(type) ? json_string_value(type) : "non-Avro");
		set_errstr(errstr, errstr_size, "%s", why);
		/* a registry never changes an id's schema: ask once, not per message */
		entry = add_schema(registry, id);
		if (entry != NULL && entry->refused == NULL)
			entry->refused = strdup(why);
		status = REGISTRY_REJECTED;
		goto out;
	}
	schema = json_object_get(root, "schema");
	if (!json_is_string(schema)) {
		char why[256];
		set_errstr(why, sizeof why, "registry: %s: reply has no \"schema\" string", what);
		note_unavailable(registry, why);
		registry->stats.failures++;
		set_errstr(errstr, errstr_size, "%s", why);
		status = REGISTRY_UNAVAILABLE;
		goto out;
	}
	entry = add_schema(registry, id);
	if (entry == NULL || (entry->json = strdup(json_string_value(schema))) == NULL) {
		set_errstr(errstr, errstr_size, "registry: out of memory");
		status = REGISTRY_UNAVAILABLE;
		goto out;
	}
	*schema_json = entry->json;
	status = REGISTRY_OK;
out:
	json_decref(root);
	free(reply.body);
	return status;
}

/* ---- registering ------------------------------------------------------------------- */

enum registry_status registry_register(struct registry *registry, const char *subject,
				       const char *schema_json, int32_t *id, char *errstr,
				       size_t errstr_size)
{
	struct reply reply = {0};
	enum registry_status status = REGISTRY_UNAVAILABLE;
	json_t *request = NULL, *root = NULL, *id_value;
	char *body = NULL, *escaped = NULL, *path = NULL, what[160];
	struct cached_subject *entry;

	for (size_t i = 0; i < registry->subject_count; i++) {
		entry = &registry->subjects[i];
		if (strcmp(entry->subject, subject) == 0 && strcmp(entry->json, schema_json) == 0) {
			registry->stats.cache_hits++;
			*id = entry->id;
			return REGISTRY_OK;
		}
	}
	snprintf(what, sizeof what, "registering a schema under subject \"%s\"", subject);
	if (in_backoff(registry, errstr, errstr_size))
		return REGISTRY_UNAVAILABLE;

	request = json_pack("{s:s}", "schema", schema_json);
	body = request != NULL ? json_dumps(request, JSON_COMPACT) : NULL;
	escaped = curl_easy_escape(registry->curl, subject, 0);
	if (body == NULL || escaped == NULL ||
	    asprintf(&path, "/subjects/%s/versions", escaped) < 0) {
		path = NULL;
		set_errstr(errstr, errstr_size, "registry: out of memory");
		goto out;
	}
	status = request_object(registry, what, path, body, &reply, &root, errstr, errstr_size);
	if (status != REGISTRY_OK)
		goto out;
	id_value = json_object_get(root, "id");
	if (!json_is_integer(id_value) || json_integer_value(id_value) < 0 ||
	    json_integer_value(id_value) > INT32_MAX) {
		set_errstr(errstr, errstr_size, "registry: %s: reply has no valid \"id\"", what);
		registry->stats.failures++;
		status = REGISTRY_UNAVAILABLE;
		goto out;
	}
	*id = (int32_t)json_integer_value(id_value);
	status = REGISTRY_OK;
	if (grow_array(&registry->subjects, &registry->subject_cap, registry->subject_count + 1,
		       sizeof *registry->subjects, 4) == 0) {
		entry = &registry->subjects[registry->subject_count];
		entry->subject = strdup(subject);
		entry->json = strdup(schema_json);
		entry->id = *id;
		if (entry->subject != NULL && entry->json != NULL) {
			registry->subject_count++;
		} else {
			free(entry->subject);
			free(entry->json);
		}
	}
	/* what we registered is also what that id decodes with */
	{
		struct cached_schema *known = add_schema(registry, *id);
		if (known != NULL && known->json == NULL)
			known->json = strdup(schema_json);
	}
out:
	json_decref(root);
	json_decref(request);
	free(body);
	curl_free(escaped);
	free(path);
	free(reply.body);
	return status;
}

/* ---- the codec's schema source ------------------------------------------------------ */

enum codec_schema_lookup registry_codec_source(void *opaque, int32_t schema_id,
					       const char **schema_json, char *detail,
					       size_t detail_size)
{
	switch (registry_schema_by_id(opaque, schema_id, schema_json, detail, detail_size)) {
	case REGISTRY_OK: return CODEC_SCHEMA_FOUND;
	case REGISTRY_NOT_FOUND: return CODEC_SCHEMA_UNKNOWN;
	case REGISTRY_REJECTED: return CODEC_SCHEMA_REFUSED;
	case REGISTRY_UNAVAILABLE: break;
	}
	return CODEC_SCHEMA_UNAVAILABLE;
}
