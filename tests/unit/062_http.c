/*
 * HTTP server: routes, status codes, limits and timeouts, over loopback
 * sockets. The loop runs in the test thread: the client writes with plain
 * blocking sockets and the test pumps ev_run() until the server closes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "metrics.h"

#define RESPONSE_MAX   (8 << 20)
#define BIG_BODY_BYTES (4 << 20)

struct fixture {
	struct ev_loop *loop;
	ev_timer tick;
	struct http_server *server;
	struct metrics *metrics;
	bool ready;
	int fds_before;
};

static int open_fd_count(void)
{
	DIR *dir = opendir("/proc/self/fd");
	assert_non_null(dir);
	int count = 0;
	while (readdir(dir))
		count++;
	closedir(dir);
	return count;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Keeps ev_run(EVRUN_ONCE) from blocking for long when the server has nothing to do. */
static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

static bool is_ready(void *opaque, char *reason, size_t reason_size)
{
	struct fixture *fx = opaque;
	if (!fx->ready)
		snprintf(reason, reason_size, "partitions not assigned");
	return fx->ready;
}

static void big_handler(const struct http_request *request, struct http_response *response,
			void *opaque)
{
	(void)request;
	(void)opaque;
	response->body = malloc(BIG_BODY_BYTES);
	if (!response->body) {
		response->status = 500;
		return;
	}
	for (size_t i = 0; i < BIG_BODY_BYTES; i++)
		response->body[i] = (char)('a' + i % 26);
	response->body_len = BIG_BODY_BYTES;
	response->content_type = "application/octet-stream";
}

static void echo_query_handler(const struct http_request *request, struct http_response *response,
			       void *opaque)
{
	(void)opaque;
	char text[256];
	snprintf(text, sizeof text, "%s %s ?%s", request->method, request->path, request->query);
	http_response_text(response, 200, text);
}

static struct http_server *start_server(struct fixture *fx, double idle_timeout_s)
{
	char errstr[256];
	struct http_config config = {.listen = "127.0.0.1:0", .idle_timeout_s = idle_timeout_s};
	struct http_server *server = http_server_new(fx->loop, &config, errstr, sizeof errstr);
	if (!server)
		fail_msg("%s", errstr);
	assert_true(http_server_port(server) > 0);
	assert_int_equal(http_server_route_metrics(server, fx->metrics, errstr, sizeof errstr), 0);
	assert_int_equal(http_server_route_healthz(server, errstr, sizeof errstr), 0);
	assert_int_equal(http_server_route_readyz(server, is_ready, fx, errstr, sizeof errstr), 0);
	assert_int_equal(
	    http_server_route(server, "/big", big_handler, NULL, errstr, sizeof errstr), 0);
	assert_int_equal(
	    http_server_route(server, "/echo", echo_query_handler, NULL, errstr, sizeof errstr), 0);
	assert_int_equal(
	    http_server_route(server, "relative", big_handler, NULL, errstr, sizeof errstr), -1);
	return server;
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);
	assert_non_null(fx);
	fx->fds_before = open_fd_count();
	fx->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(fx->loop);
	ev_timer_init(&fx->tick, tick_cb, 0.005, 0.005);
	ev_timer_start(fx->loop, &fx->tick);
	char errstr[256];
	const char *variants[] = {"als"};
	fx->metrics = metrics_new(variants, 1, errstr, sizeof errstr);
	assert_non_null(fx->metrics);
	fx->metrics->events_total[EVENT_CLICK] = 3;
	fx->server = start_server(fx, 10);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	http_server_free(fx->server);
	metrics_free(fx->metrics);
	ev_timer_stop(fx->loop, &fx->tick);
	/* no watcher of the server may remain active */
	assert_int_equal(ev_run(fx->loop, EVRUN_NOWAIT), 0);
	ev_loop_destroy(fx->loop);
	assert_int_equal(open_fd_count(), fx->fds_before);
	free(fx);
	return 0;
}

static int connect_client(struct http_server *server)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in addr = {.sin_family = AF_INET,
				   .sin_port = htons(http_server_port(server))};
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
	return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
		assert_true(n > 0);
		data += n;
		len -= (size_t)n;
	}
}

/* Runs the loop until the server closes `fd`; returns the bytes received (NUL-terminated). */
static size_t pump_until_closed(struct fixture *fx, int fd, char *buf, size_t cap, double max_s)
{
	size_t len = 0;
	double deadline = now_s() + max_s;
	for (;;) {
		ev_run(fx->loop, EVRUN_ONCE);
		for (;;) {
			ssize_t n = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
			if (n > 0) {
				len += (size_t)n;
				assert_true(len < cap - 1);
				continue;
			}
			if (n == 0 || errno == ECONNRESET) {
				buf[len] = '\0';
				return len;
			}
			break;
		}
		if (now_s() > deadline)
			fail_msg("server did not close the connection within %.1f s", max_s);
	}
}

/* Runs the loop until the server has closed every connection. */
static void pump_until_idle(struct fixture *fx)
{
	double deadline = now_s() + 5;
	while (http_server_connection_count(fx->server) > 0) {
		ev_run(fx->loop, EVRUN_ONCE);
		assert_true(now_s() < deadline);
	}
}

/* Sends `request` on a fresh connection and returns the whole response (malloc'd). */
static char *exchange(struct fixture *fx, const char *request, size_t *len)
{
	int fd = connect_client(fx->server);
	send_all(fd, request, strlen(request));
	char *buf = malloc(RESPONSE_MAX);
	assert_non_null(buf);
	size_t n = pump_until_closed(fx, fd, buf, RESPONSE_MAX, 5);
	close(fd);
	if (len)
		*len = n;
	return buf;
}

/* The body after the head, checked against Content-Length. */
static const char *body_of(const char *response)
{
	const char *end = strstr(response, "\r\n\r\n");
	assert_non_null(end);
	const char *cl = strstr(response, "\r\nContent-Length: ");
	assert_non_null(cl);
	assert_true(cl < end);
	assert_int_equal(strtoul(cl + 18, NULL, 10), strlen(end + 4));
	return end + 4;
}

static void metrics_are_served(void **state)
{
	struct fixture *fx = *state;
	char *r = exchange(fx, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n", NULL);
	assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_non_null(
	    strstr(r, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
	assert_non_null(strstr(r, "\r\nConnection: close\r\n"));
	const char *body = body_of(r);
	assert_true(strncmp(body, "# HELP streamrec_events_total ", 30) == 0);
	assert_non_null(strstr(body, "\nstreamrec_events_total{type=\"click\"} 3\n"));
	free(r);
}

static void health_and_readiness(void **state)
{
	struct fixture *fx = *state;
	char *r = exchange(fx, "GET /healthz HTTP/1.1\r\n\r\n", NULL);
	assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_string_equal(body_of(r), "ok\n");
	free(r);

	r = exchange(fx, "GET /readyz HTTP/1.0\r\n\r\n", NULL);
	assert_true(strncmp(r, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0);
	assert_string_equal(body_of(r), "not ready: partitions not assigned\n");
	free(r);

	fx->ready = true;
	r = exchange(fx, "GET /readyz HTTP/1.1\r\n\r\n", NULL);
	assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_string_equal(body_of(r), "ready\n");
	free(r);
}

static void unknown_paths_methods_and_bad_lines(void **state)
{
	struct fixture *fx = *state;
	char *r = exchange(fx, "GET /nope HTTP/1.1\r\n\r\n", NULL);
	assert_true(strncmp(r, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
	free(r);

	r = exchange(fx, "POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", NULL);
	assert_true(strncmp(r, "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0);
	assert_non_null(strstr(r, "\r\nAllow: GET, HEAD\r\n"));
	free(r);

	r = exchange(fx, "garbage\r\n\r\n", NULL);
	assert_true(strncmp(r, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
	free(r);

	/* HEAD: the head of a GET, with its Content-Length, and no body */
	r = exchange(fx, "HEAD /healthz HTTP/1.1\r\n\r\n", NULL);
	assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_non_null(strstr(r, "\r\nContent-Length: 3\r\n"));
	assert_string_equal(strstr(r, "\r\n\r\n"), "\r\n\r\n");
	free(r);

	/* the query string is split off the path; bare LF line ends are accepted */
	r = exchange(fx, "GET /echo?a=1&b=2 HTTP/1.1\n\n", NULL);
	assert_string_equal(body_of(r), "GET /echo ?a=1&b=2");
	free(r);
}

static void oversized_request_gets_431(void **state)
{
	struct fixture *fx = *state;
	size_t size = 16384;
	char *request = malloc(size + 1);
	assert_non_null(request);
	strcpy(request, "GET /metrics HTTP/1.1\r\nX-Big: ");
	size_t used = strlen(request);
	memset(request + used, 'a', size - used - 4);
	memcpy(request + size - 4, "\r\n\r\n", 5);
	char *r = exchange(fx, request, NULL);
	assert_true(strncmp(r, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46) == 0);
	free(r);
	free(request);
	pump_until_idle(fx);
}

static void request_in_pieces(void **state)
{
	struct fixture *fx = *state;
	int fd = connect_client(fx->server);
	const char *pieces[] = {"GET /hea", "lthz HTTP/1.1\r", "\nHost: x\r\n", "\r", "\n"};
	for (size_t i = 0; i < 5; i++) {
		send_all(fd, pieces[i], strlen(pieces[i]));
		for (int spin = 0; spin < 3; spin++)
			ev_run(fx->loop, EVRUN_ONCE);
	}
	char buf[4096];
	pump_until_closed(fx, fd, buf, sizeof buf, 5);
	close(fd);
	assert_true(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_string_equal(body_of(buf), "ok\n");
}

static void stalled_client_is_closed_after_the_timeout(void **state)
{
	struct fixture *fx = *state;
	http_server_free(fx->server);
	fx->server = start_server(fx, 0.2);

	int fd = connect_client(fx->server);
	send_all(fd, "GET /healthz HTTP/1.1\r\nHost:", 28);
	double start = now_s();
	char buf[256];
	size_t n = pump_until_closed(fx, fd, buf, sizeof buf, 5);
	double elapsed = now_s() - start;
	close(fd);
	assert_int_equal(n, 0);
	assert_true(elapsed >= 0.15);
	assert_true(elapsed < 2);

	/* a client that connects and says nothing, too */
	fd = connect_client(fx->server);
	n = pump_until_closed(fx, fd, buf, sizeof buf, 5);
	close(fd);
	assert_int_equal(n, 0);
	pump_until_idle(fx);
}

static void large_body_to_a_slow_reader(void **state)
{
	struct fixture *fx = *state;
	int fd = connect_client(fx->server);
	send_all(fd, "GET /big HTTP/1.1\r\n\r\n", 21);
	/* the server fills the socket and must wait for the client to read */
	for (int spin = 0; spin < 20; spin++)
		ev_run(fx->loop, EVRUN_ONCE);
	assert_int_equal(http_server_connection_count(fx->server), 1);
	char *buf = malloc(RESPONSE_MAX);
	assert_non_null(buf);
	size_t n = pump_until_closed(fx, fd, buf, RESPONSE_MAX, 10);
	close(fd);
	const char *end = strstr(buf, "\r\n\r\n");
	assert_non_null(end);
	size_t head = (size_t)(end + 4 - buf);
	assert_int_equal(n - head, BIG_BODY_BYTES);
	assert_int_equal(end[4 + 12345], 'a' + 12345 % 26);
	free(buf);
}

static void client_gone_mid_response(void **state)
{
	struct fixture *fx = *state;
	/* with SIGPIPE at its default, a plain write() to the reset socket would kill the test */
	for (int round = 0; round < 3; round++) {
		int fd = connect_client(fx->server);
		send_all(fd, "GET /big HTTP/1.1\r\n\r\n", 21);
		for (int spin = 0; spin < 5; spin++)
			ev_run(fx->loop, EVRUN_ONCE);
		close(fd);
	}
	pump_until_idle(fx);
}

static void many_concurrent_connections(void **state)
{
	struct fixture *fx = *state;
	/* below the listen backlog: the clients connect before the loop accepts any */
	enum { CLIENTS = 100 };
	int fds[CLIENTS];
	for (int i = 0; i < CLIENTS; i++) {
		fds[i] = connect_client(fx->server);
		send_all(fds[i], "GET /metrics HTTP/1.1\r\n\r\n", 25);
	}
	/* answered in any order, all before any client is read */
	char *buf = malloc(1 << 20);
	assert_non_null(buf);
	for (int i = CLIENTS - 1; i >= 0; i--) {
		pump_until_closed(fx, fds[i], buf, 1 << 20, 5);
		close(fds[i]);
		assert_true(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
		assert_non_null(strstr(body_of(buf), "streamrec_ready 0\n"));
	}
	free(buf);
	pump_until_idle(fx);
}

/*
 * More idle clients than the connection limit (a scanner, a leaky scraper):
 * the oldest idle connection gives way to each new one, so /metrics and
 * /readyz still answer, and the server holds no more than its limit.
 */
static void idle_connections_give_way_to_new_requests(void **state)
{
	struct fixture *fx = *state;
	enum { IDLE = 300 };
	int fds[IDLE];
	for (int i = 0; i < IDLE; i++) {
		fds[i] = connect_client(fx->server);
		/* accept as we go: more than the listen backlog may not wait in the kernel */
		for (int spin = 0; spin < 3; spin++)
			ev_run(fx->loop, EVRUN_NOWAIT);
	}
	while (http_server_connection_count(fx->server) < HTTP_DEFAULT_MAX_CONNECTIONS)
		ev_run(fx->loop, EVRUN_ONCE);
	assert_int_equal(http_server_connection_count(fx->server), HTTP_DEFAULT_MAX_CONNECTIONS);

	char *r = exchange(fx, "GET /metrics HTTP/1.1\r\n\r\n", NULL);
	assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_non_null(strstr(body_of(r), "streamrec_ready 0\n"));
	free(r);
	r = exchange(fx, "GET /readyz HTTP/1.1\r\n\r\n", NULL);
	assert_true(strncmp(r, "HTTP/1.1 503 ", 13) == 0);
	free(r);

	/* the first clients were the oldest: the server closed them */
	char buf[16];
	assert_int_equal(recv(fds[0], buf, sizeof buf, 0), 0);
	assert_true(http_server_connection_count(fx->server) <= HTTP_DEFAULT_MAX_CONNECTIONS);
	for (int i = 0; i < IDLE; i++)
		close(fds[i]);
	pump_until_idle(fx);
}

/* Counts the complete responses in buf. */
static int count_responses(const char *buf)
{
	int n = 0;
	for (const char *p = buf; (p = strstr(p, "HTTP/1.1 ")) != NULL; p++)
		n++;
	return n;
}

/*
 * A request announcing a body (Content-Length other than 0, or
 * Transfer-Encoding) is refused and the connection closed: its body was left
 * in the buffer and answered as the next pipelined request, one request to
 * a proxy in front and two here.
 */
static void a_request_with_a_body_is_refused_and_closed(void **state)
{
	struct fixture *fx = *state;
	char errstr[256];
	struct http_config config = {
	    .listen = "127.0.0.1:0", .key = "api.listen", .keep_alive = true, .idle_timeout_s = 5};
	struct http_server *api = http_server_new(fx->loop, &config, errstr, sizeof errstr);
	assert_non_null(api);
	assert_int_equal(
	    http_server_route(api, "/echo", echo_query_handler, NULL, errstr, sizeof errstr), 0);
	static const char *const smuggling[] = {
	    "GET /echo?a HTTP/1.1\r\nContent-Length: 24\r\n\r\nGET /echo?b HTTP/1.1\r\n\r\n",
	    "GET /echo?a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "GET /echo?b HTTP/1.1\r\n\r\n"};
	char buf[4096];
	for (size_t i = 0; i < 2; i++) {
		int fd = connect_client(api);
		send_all(fd, smuggling[i], strlen(smuggling[i]));
		size_t len = pump_until_closed(fx, fd, buf, sizeof buf, 5);
		assert_true(len > 0);
		assert_non_null(strstr(buf, "HTTP/1.1 400 "));
		assert_null(strstr(buf, "GET /echo ?b"));
		assert_int_equal(count_responses(buf), 1);
		close(fd);
	}
	/* Content-Length: 0 is no body: served, and the connection kept */
	int fd = connect_client(api);
	const char *empty =
	    "GET /echo?c HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
	send_all(fd, empty, strlen(empty));
	pump_until_closed(fx, fd, buf, sizeof buf, 5);
	assert_non_null(strstr(buf, "GET /echo ?c"));
	close(fd);
	http_server_free(api);
}

/*
 * keep_alive: several requests on one connection, pipelined ones included;
 * "Connection: close" (or HTTP/1.0 without keep-alive) ends it after its
 * answer; an idle kept-alive connection is closed after the idle timeout.
 */
static void kept_alive_connections_carry_several_requests(void **state)
{
	struct fixture *fx = *state;
	char errstr[256];
	struct http_config config = {
	    .listen = "127.0.0.1:0", .key = "api.listen", .keep_alive = true, .idle_timeout_s = 0.3};
	struct http_server *api = http_server_new(fx->loop, &config, errstr, sizeof errstr);
	assert_non_null(api);
	assert_int_equal(
	    http_server_route(api, "/echo", echo_query_handler, NULL, errstr, sizeof errstr), 0);
	int fd = connect_client(api);
	char buf[4096];
	size_t len = 0;
	/* one, then two pipelined in one write, then the last asks to close */
	const char *sends[] = {"GET /echo?a HTTP/1.1\r\n\r\n",
			       "GET /echo?b HTTP/1.1\r\n\r\nGET /echo?c HTTP/1.1\r\nHost: x\r\n\r\n",
			       "GET /echo?d HTTP/1.1\r\nConnection: close\r\n\r\n"};
	const char *last_answer[] = {"GET /echo ?a", "GET /echo ?c", "GET /echo ?d"};
	buf[0] = '\0';
	for (size_t i = 0; i < 3; i++) {
		send_all(fd, sends[i], strlen(sends[i]));
		double deadline = now_s() + 5;
		while (strstr(buf, last_answer[i]) == NULL) {
			ev_run(fx->loop, EVRUN_ONCE);
			ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, MSG_DONTWAIT);
			if (n > 0)
				len += (size_t)n;
			buf[len] = '\0';
			assert_true(now_s() < deadline);
		}
		assert_int_equal(count_responses(buf), i == 0 ? 1 : (int)i + 2);
	}
	assert_non_null(strstr(buf, "GET /echo ?a"));
	assert_non_null(strstr(buf, "GET /echo ?b"));
	assert_non_null(strstr(buf, "GET /echo ?c"));
	assert_non_null(strstr(buf, "Connection: keep-alive\r\n"));
	assert_non_null(strstr(buf, "Connection: close\r\n"));
	/* the server closes after the answer to "Connection: close" */
	double deadline = now_s() + 5;
	while (http_server_connection_count(api) > 0) {
		ev_run(fx->loop, EVRUN_ONCE);
		char sink[4096];
		(void)recv(fd, sink, sizeof sink, MSG_DONTWAIT);
		assert_true(now_s() < deadline);
	}
	close(fd);
	assert_int_equal(http_server_request_count(api), 4);

	/* an idle kept-alive connection is closed after the idle timeout */
	fd = connect_client(api);
	send_all(fd, "GET /echo?e HTTP/1.1\r\n\r\n", 24);
	double started = now_s();
	len = pump_until_closed(fx, fd, buf, sizeof buf, 5);
	assert_non_null(strstr(buf, "GET /echo ?e"));
	assert_true(now_s() - started >= 0.25);
	close(fd);
	http_server_free(api);
}

static void listen_errors_name_the_address(void **state)
{
	struct fixture *fx = *state;
	char errstr[256], expected[256], address[64];
	snprintf(address, sizeof address, "127.0.0.1:%u", http_server_port(fx->server));
	struct http_config config = {.listen = address};
	assert_null(http_server_new(fx->loop, &config, errstr, sizeof errstr));
	snprintf(expected, sizeof expected, "http.listen %s: Address already in use", address);
	assert_string_equal(errstr, expected);

	const char *bad[] = {"nonsense", "127.0.0.1:", "127.0.0.1:99999", ":9464",
			     "::1:9464", "[::1]9464",  "127.0.0.1:12a"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		config.listen = bad[i];
		assert_null(http_server_new(fx->loop, &config, errstr, sizeof errstr));
		snprintf(expected, sizeof expected, "http.listen %s: ", bad[i]);
		assert_true(strncmp(errstr, expected, strlen(expected)) == 0);
	}

	/* IPv6 loopback in brackets, where the host has it */
	config.listen = "[::1]:0";
	struct http_server *v6 = http_server_new(fx->loop, &config, errstr, sizeof errstr);
	if (v6) {
		assert_true(http_server_port(v6) > 0);
		http_server_free(v6);
	} else {
		assert_true(strncmp(errstr, "http.listen [::1]:0: ", 21) == 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(metrics_are_served, setup, teardown),
	    cmocka_unit_test_setup_teardown(health_and_readiness, setup, teardown),
	    cmocka_unit_test_setup_teardown(unknown_paths_methods_and_bad_lines, setup, teardown),
	    cmocka_unit_test_setup_teardown(oversized_request_gets_431, setup, teardown),
	    cmocka_unit_test_setup_teardown(request_in_pieces, setup, teardown),
	    cmocka_unit_test_setup_teardown(stalled_client_is_closed_after_the_timeout, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(large_body_to_a_slow_reader, setup, teardown),
	    cmocka_unit_test_setup_teardown(client_gone_mid_response, setup, teardown),
	    cmocka_unit_test_setup_teardown(many_concurrent_connections, setup, teardown),
	    cmocka_unit_test_setup_teardown(idle_connections_give_way_to_new_requests, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(kept_alive_connections_carry_several_requests, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(a_request_with_a_body_is_refused_and_closed, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(listen_errors_name_the_address, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
