/*
 * lists and the lookup API's thread: lists kept and replaced per user, the
 * JSON answer, and the API answering on its own thread over loopback while
 * this thread (the writer, as the event loop) keeps replacing lists: every
 * answer is one whole list (ranks and scores of one put), never a mix.
 * Built under ThreadSanitizer too (tests/test_threads.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api.h"
#include "lists.h"
#include "model.h"

#define USERS 50
#define ITEMS 100
#define K     10

static const char *item_id(uint32_t item, void *opaque)
{
	static char names[ITEMS][16];
	(void)opaque;
	snprintf(names[item], sizeof names[item], "item-%u", item);
	return names[item];
}

/* User u's list of generation g: K items from (u + g) on, scores g + 1 - rank/100. */
static void make_list(unsigned u, unsigned g, struct topk_result *list)
{
	for (unsigned r = 0; r < K; r++)
		list[r] = (struct topk_result){.item = (u + g + r) % ITEMS,
					       .score = (float)g + 1.0f - (float)r / 100.0f};
}

static void put(struct lists *l, unsigned u, unsigned g, int expected)
{
	char user[32];
	struct topk_result list[K];
	snprintf(user, sizeof user, "user %u é", u);
	make_list(u, g, list);
	assert_int_equal(lists_put(l, u, user, g % 2, 0xabc0 + g, 1000 + g, 900 + g, list, NULL, K, item_id,
				   NULL),
			 expected);
}

static void kept_and_rendered(void **state)
{
	(void)state;
	const char *variants[] = {"model", "control"};
	struct lists *l = lists_new(variants, 2);
	assert_non_null(l);
	assert_null(lists_get(l, 3));
	put(l, 3, 0, 1);
	put(l, 3, 1, 0); /* replaced: not a new user */
	const struct lists_entry *e = lists_get(l, 3);
	assert_non_null(e);
	assert_int_equal(e->count, K);
	assert_int_equal(e->variant, 1);
	assert_int_equal(e->trigger_ts_ms, 901);
	assert_string_equal(lists_user_id(l, 3), "user 3 é");
	int status;
	char *body = lists_render_json(l, "user 3 é", &status);
	assert_int_equal(status, 200);
	json_t *doc = json_loads(body, 0, NULL);
	assert_non_null(doc);
	assert_string_equal(json_string_value(json_object_get(doc, "variant")), "control");
	assert_string_equal(json_string_value(json_object_get(doc, "list_id")), "000000000000abc1");
	/* a list put without explanations has none */
	assert_null(json_object_get(json_array_get(json_object_get(doc, "items"), 0), "reason"));
	assert_int_equal(json_integer_value(json_object_get(doc, "generated_at")), 1001);
	json_t *items = json_object_get(doc, "items");
	assert_int_equal(json_array_size(items), K);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(items, 0), "item_id")), "item-4");
	json_decref(doc);
	free(body);
	/* ids are escaped: quotes, backslashes, control characters */
	struct topk_result one = {.item = 1, .score = 2.0f};
	struct lists_why why = {.because_item = 4, .reason = MODEL_REASON_COVIS};
	assert_int_equal(lists_put(l, 9, "we\"ird\\\n", 0, 0, 1, 1, &one, &why, 1, item_id, NULL), 1);
	body = lists_render_json(l, "we\"ird\\\n", &status);
	doc = json_loads(body, 0, NULL);
	assert_non_null(doc);
	assert_string_equal(json_string_value(json_object_get(doc, "user_id")), "we\"ird\\\n");
	items = json_object_get(doc, "items");
	assert_true(json_is_real(json_object_get(json_array_get(items, 0), "score")));
	/* its explanation: the reason, the item behind it by id; no list id when 0 */
	assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "reason")),
			    "covis");
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(items, 0), "because_item")), "item-4");
	assert_null(json_object_get(doc, "list_id"));
	json_decref(doc);
	free(body);
	body = lists_render_json(l, "nobody", &status);
	assert_int_equal(status, 404);
	assert_non_null(strstr(body, "\"user\":\"nobody\""));
	free(body);
	/* a bad variant index is refused, the list kept */
	struct topk_result list[K];
	make_list(3, 5, list);
	assert_int_equal(lists_put(l, 3, "user 3 é", 7, 1, 0, 0, list, NULL, K, item_id, NULL), -1);
	assert_int_equal(lists_get(l, 3)->trigger_ts_ms, 901);
	lists_free(l);
}

static bool odd_gone(uint32_t item, void *opaque)
{
	(void)opaque;
	return item % 2 == 1;
}

static void count_changed(uint32_t stable, void *opaque)
{
	unsigned *changed = opaque;
	assert_true(stable == 3 || stable == 9);
	(*changed)++;
}

static const char *renamed_id(uint32_t item, void *opaque)
{
	(void)item;
	(void)opaque;
	return "took-a-freed-index";
}

/* Removed items leave the kept lists and their ids are forgotten: an item
 * taking a freed index is shown by its own id, not the removed one's. */
static void removed_items_leave_the_lists(void **state)
{
	(void)state;
	const char *variants[] = {"model"};
	struct lists *l = lists_new(variants, 1);
	assert_non_null(l);
	put(l, 3, 0, 1); /* items 3..12 */
	put(l, 4, 2, 1); /* variant 0 too: items 6..15 */
	struct topk_result two[2] = {{.item = 20, .score = 2.0f}, {.item = 22, .score = 1.0f}};
	struct lists_why why[2] = {{.because_item = 7, .reason = MODEL_REASON_COVIS},
				   {.because_item = 8, .reason = MODEL_REASON_COVIS}};
	assert_int_equal(lists_put(l, 9, "nine", 0, 1, 1, 1, two, why, 2, item_id, NULL), 1);
	unsigned changed = 0;
	/* user 4's list loses its odd items too: count it apart */
	struct topk_result even[K];
	for (unsigned r = 0; r < K; r++)
		even[r] = (struct topk_result){.item = 2 * r, .score = 1.0f};
	assert_int_equal(lists_put(l, 4, "user 4 é", 0, 1, 1, 1, even, NULL, K, item_id, NULL), 0);
	assert_int_equal(lists_forget_items(l, ITEMS, odd_gone, count_changed, &changed), 2);
	assert_int_equal(changed, 2); /* 3 lost items, 9 a because_item; 4 nothing */
	const struct lists_entry *e = lists_get(l, 3);
	assert_int_equal(e->count, K / 2);
	for (size_t r = 0; r < e->count; r++)
		assert_int_equal(e->items[r].item, 4 + 2 * r); /* in order */
	assert_int_equal(lists_get(l, 4)->count, K);
	e = lists_get(l, 9);
	assert_int_equal(e->count, 2);
	assert_int_equal(lists_entry_why(e)[0].because_item, UINT32_MAX);
	assert_int_equal(lists_entry_why(e)[1].because_item, 8);
	/* index 5 handed to another item: its id is its own */
	struct topk_result taken = {.item = 5, .score = 1.0f};
	assert_int_equal(lists_put(l, 11, "eleven", 0, 2, 2, 2, &taken, NULL, 1, renamed_id, NULL),
			 1);
	int status;
	char *body = lists_render_json(l, "eleven", &status);
	assert_int_equal(status, 200);
	assert_non_null(strstr(body, "\"item_id\":\"took-a-freed-index\""));
	free(body);
	lists_free(l);
}

static atomic_int clients_done;

struct client {
	uint16_t port;
	int answers, whole, missing;
	int failed;
};

/* Sends `request` on fd and reads one whole response into buf. @returns its length, or -1. */
static int exchange(int fd, const char *request, char *buf, size_t cap)
{
	if (send(fd, request, strlen(request), MSG_NOSIGNAL) != (ssize_t)strlen(request))
		return -1;
	size_t len = 0;
	for (;;) {
		ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
		if (n <= 0)
			return -1;
		len += (size_t)n;
		buf[len] = '\0';
		char *end = strstr(buf, "\r\n\r\n");
		char *length = strstr(buf, "Content-Length: ");
		if (end != NULL && length != NULL &&
		    (size_t)(end + 4 - buf) + strtoul(length + 16, NULL, 10) <= len)
			return (int)len;
	}
}

/* A client on its own thread: one kept-alive connection, many lookups. */
static void *client_main(void *arg)
{
	struct client *c = arg;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(c->port)};
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
		c->failed = 1;
		return NULL;
	}
	char request[128], buf[16384];
	for (int i = 0; i < 400; i++) {
		unsigned u = (unsigned)i % USERS;
		snprintf(request, sizeof request,
			 "GET /v1/recommendations/user%%20%u%%20%%C3%%A9 HTTP/1.1\r\n\r\n", u);
		if (exchange(fd, request, buf, sizeof buf) < 0) {
			c->failed = 1;
			break;
		}
		c->answers++;
		if (strncmp(buf, "HTTP/1.1 404", 12) == 0) {
			c->missing++;
			continue;
		}
		json_t *doc = json_loads(strstr(buf, "\r\n\r\n") + 4, 0, NULL);
		json_t *items = json_object_get(doc, "items");
		long long generated = json_integer_value(json_object_get(doc, "generated_at"));
		unsigned g = (unsigned)(generated - 1000);
		/* one whole list: its items and scores all of generation g */
		struct topk_result list[K];
		make_list(u, g, list);
		bool whole = json_array_size(items) == K;
		for (size_t r = 0; whole && r < K; r++) {
			json_t *it = json_array_get(items, r);
			char name[16];
			snprintf(name, sizeof name, "item-%u", list[r].item);
			whole = strcmp(json_string_value(json_object_get(it, "item_id")), name) == 0 &&
				(float)json_real_value(json_object_get(it, "score")) == list[r].score;
		}
		c->whole += whole;
		json_decref(doc);
	}
	close(fd);
	atomic_fetch_add(&clients_done, 1);
	return NULL;
}

static void api_answers_beside_the_writer(void **state)
{
	(void)state;
	const char *variants[] = {"model", "control"};
	struct lists *l = lists_new(variants, 2);
	assert_non_null(l);
	char errstr[256];
	struct http_config config = {
	    .listen = "127.0.0.1:0", .key = "api.listen", .keep_alive = true, .max_connections = 8};
	struct api *api = api_start(&config, l, errstr, sizeof errstr);
	if (api == NULL)
		fail_msg("%s", errstr);
	struct client clients[2] = {{.port = api_port(api)}, {.port = api_port(api)}};
	pthread_t threads[2];
	for (int t = 0; t < 2; t++)
		assert_int_equal(pthread_create(&threads[t], NULL, client_main, &clients[t]), 0);
	/* the writer: every user's list replaced again and again while they ask */
	unsigned generations = 0;
	for (unsigned g = 0; atomic_load(&clients_done) < 2; g++, generations++)
		for (unsigned u = 0; u < USERS; u++)
			put(l, u, g, g == 0 ? 1 : 0);
	assert_true(generations > 1);
	for (int t = 0; t < 2; t++) {
		pthread_join(threads[t], NULL);
		assert_false(clients[t].failed);
		assert_int_equal(clients[t].answers, 400);
		assert_int_equal(clients[t].whole + clients[t].missing, 400);
	}
	api_stop(api);
	lists_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(kept_and_rendered),
	    cmocka_unit_test(removed_items_leave_the_lists),
	    cmocka_unit_test(api_answers_beside_the_writer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
