/*
 * api: the lookup API's thread: a libev loop of its own, an HTTP server on
 * it, and a wake-up to stop it.
 */
#include "api.h"

#include <ctype.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "errstr.h"

struct api {
	struct ev_loop *loop;
	struct http_server *server;
	struct lists *lists;
	ev_async stop;
	pthread_t thread;
	uint16_t port;
};

/* Decodes %XX escapes of a path segment into out; @returns false on a bad escape or overflow. */
static bool percent_decode(const char *in, char *out, size_t out_size)
{
	size_t n = 0;
	for (; *in != '\0'; in++) {
		int c = (unsigned char)*in;
		if (c == '%') {
			if (!isxdigit((unsigned char)in[1]) || !isxdigit((unsigned char)in[2]))
				return false;
			char hex[3] = {in[1], in[2], '\0'};
			c = (int)strtol(hex, NULL, 16);
			in += 2;
		}
		if (n + 1 >= out_size || c == 0)
			return false;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return n > 0;
}

/*
 * GET /v1/recommendations/{user}: the user's last published list, as JSON
 * (lists_render_json), 404 when there is none, 400 for a malformed id.
 */
static void recommendations(const struct http_request *request, struct http_response *response,
			    void *opaque)
{
	struct api *api = opaque;
	char user[CODEC_ID_MAX_BYTES + 1];
	int status;
	const char *encoded = request->path + strlen(API_RECOMMENDATIONS_PATH);
	/* a raw '/' is a deeper path; an encoded one (%2F) is part of the id */
	if (strchr(encoded, '/') != NULL || !percent_decode(encoded, user, sizeof user)) {
		http_response_text(response, 400,
				   "{\"error\":\"a user id, percent-encoded, after "
				   API_RECOMMENDATIONS_PATH "\"}");
		response->content_type = "application/json";
		return;
	}
	char *body = lists_render_json(api->lists, user, &status);
	if (body == NULL) {
		http_response_text(response, 500, "out of memory\n");
		return;
	}
	response->status = status;
	response->content_type = "application/json";
	response->body = body;
	response->body_len = strlen(body);
}

static void on_stop(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static void *api_main(void *arg)
{
	struct api *api = arg;
	pthread_setname_np(pthread_self(), "api"); /* top -H, ps -L, /proc/PID/task */
	ev_run(api->loop, 0);
	return NULL;
}

struct api *api_start(const struct http_config *config, struct lists *lists, char *errstr,
		      size_t errstr_size)
{
	const char *key = config->key != NULL ? config->key : "api.listen";
	struct api *api = calloc(1, sizeof *api);
	if (api == NULL) {
		set_errstr(errstr, errstr_size, "%s: out of memory", key);
		return NULL;
	}
	api->lists = lists;
	api->loop = ev_loop_new(EVFLAG_AUTO);
	if (api->loop == NULL) {
		set_errstr(errstr, errstr_size, "%s: cannot make an event loop", key);
		goto out_free;
	}
	/* made here, before the thread runs: the server is the thread's from then on */
	struct http_config named = *config;
	named.key = key;
	api->server = http_server_new(api->loop, &named, errstr, errstr_size);
	if (api->server == NULL ||
	    http_server_route_healthz(api->server, errstr, errstr_size) != 0 ||
	    http_server_route(api->server, API_RECOMMENDATIONS_PATH, recommendations, api, errstr,
			      errstr_size) != 0)
		goto out_free_server;
	api->port = http_server_port(api->server);
	ev_async_init(&api->stop, on_stop);
	ev_async_start(api->loop, &api->stop);
	int rc = pthread_create(&api->thread, NULL, api_main, api);
	if (rc != 0) {
		set_errstr(errstr, errstr_size, "%s: starting its thread: %s", key, strerror(rc));
		ev_async_stop(api->loop, &api->stop);
		goto out_free_server;
	}
	return api;

out_free_server:
	http_server_free(api->server);
	ev_loop_destroy(api->loop);
out_free:
	free(api);
	return NULL;
}

int api_set_priority(struct api *api, unsigned priority, char *errstr, size_t errstr_size)
{
	struct sched_param param = {.sched_priority = (int)priority};
	int rc = pthread_setschedparam(api->thread, priority > 0 ? SCHED_FIFO : SCHED_OTHER, &param);
	if (rc != 0) {
		set_errstr(errstr, errstr_size,
			   "api.realtime_priority = %u: the API thread's scheduling was refused "
			   "(%s); real-time priorities need RLIMIT_RTPRIO of at least %u (systemd: "
			   "LimitRTPRIO=%u and RestrictRealtime=no) or CAP_SYS_NICE",
			   priority, strerror(rc), priority, priority);
		return -1;
	}
	return 0;
}

void api_stop(struct api *api)
{
	if (api == NULL)
		return;
	ev_async_send(api->loop, &api->stop);
	pthread_join(api->thread, NULL);
	/* the thread is gone: its loop and server are ours to free */
	ev_async_stop(api->loop, &api->stop);
	http_server_free(api->server);
	ev_loop_destroy(api->loop);
	free(api);
}

uint16_t api_port(const struct api *api)
{
	return api->port;
}
