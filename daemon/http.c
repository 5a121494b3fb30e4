/*
 * http: requests read, answered and closed (or kept for the next request) on the loop.
 */
#include "http.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics.h"

/* Bytes read and discarded per call while draining a closing connection. */
#define DRAIN_CHUNK 4096
/* Longest wait for a client to close after its response, seconds. */
#define DRAIN_TIMEOUT_S 1.0
/* Pause before accepting again after running out of descriptors, seconds. */
#define ACCEPT_PAUSE_S 0.1
/* Connections accepted per wake-up, so one burst cannot starve the loop. */
#define ACCEPT_BURST 64
/* Pending connections the kernel queues for accept(). */
#define LISTEN_BACKLOG 128

enum conn_phase {
	CONN_READING,
	CONN_WRITING,
	/* response sent and our side shut down: discard input until the client closes, so that
	 * unread request bytes do not turn our close into a reset that loses the response */
	CONN_DRAINING,
};

struct conn {
	struct http_server *server;
	struct conn *prev, *next;
	int fd;
	ev_io io;
	ev_timer timer;
	enum conn_phase phase;
	bool keep_alive;   /* this request's answer leaves the connection open */
	size_t head_len;   /* bytes of the request being answered (the rest: pipelined) */
	char after_head;   /* the byte at head_len, while a NUL ends the head there */
	size_t request_len;
	char request[HTTP_MAX_REQUEST_BYTES + 1];
	char *response;
	size_t response_len;
	size_t response_sent;
};

struct route {
	char *path;
	http_handler_fn handler;
	void *opaque;
};

struct ready_route {
	http_ready_fn ready;
	void *opaque;
};

struct http_server {
	struct ev_loop *loop;
	int fd;
	uint16_t port;
	bool keep_alive;
	uint64_t requests;
	double idle_timeout_s;
	size_t max_connections;
	ev_io accept_io;
	ev_timer accept_pause;
	struct conn *conns, *conns_tail; /* newest first: the tail is the oldest */
	size_t conn_count;
	struct route *routes;
	size_t route_count;
	struct ready_route ready;
};

int http_response_text(struct http_response *response, int status, const char *text)
{
	size_t len = strlen(text);
	char *body = malloc(len + 1);
	if (!body) {
		response->status = 500;
		return -1;
	}
	memcpy(body, text, len + 1);
	free(response->body);
	response->status = status;
	response->body = body;
	response->body_len = len;
	return 0;
}

static const char *status_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

static void conn_close(struct conn *c)
{
	struct http_server *server = c->server;
	ev_io_stop(server->loop, &c->io);
	ev_timer_stop(server->loop, &c->timer);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		server->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		server->conns_tail = c->prev;
	server->conn_count--;
	free(c->response);
	free(c);
}

/*
 * Watches the connection for `events` with a fresh timeout. The descriptor's
 * watcher is left alone when it already waits for those events, and the
 * timer re-armed in place: a kept-alive connection going from one request to
 * the next then costs libev no epoll_ctl and no timer-heap removal.
 */
static void conn_watch(struct conn *c, int events, double timeout_s)
{
	struct ev_loop *loop = c->server->loop;
	if (!ev_is_active(&c->io) || (c->io.events & (EV_READ | EV_WRITE)) != events) {
		ev_io_stop(loop, &c->io);
		ev_io_set(&c->io, c->fd, events);
		ev_io_start(loop, &c->io);
	}
	c->timer.repeat = timeout_s;
	ev_timer_again(loop, &c->timer);
}

/* Shut our side and wait for the client's close; see CONN_DRAINING. */
static void conn_drain(struct conn *c)
{
	shutdown(c->fd, SHUT_WR);
	c->phase = CONN_DRAINING;
	double timeout = c->server->idle_timeout_s < DRAIN_TIMEOUT_S ? c->server->idle_timeout_s
								     : DRAIN_TIMEOUT_S;
	conn_watch(c, EV_READ, timeout);
}

static void conn_next(struct conn *c);

/* Sends what the socket takes; returns -1 when the connection was closed. */
static int conn_write(struct conn *c)
{
	while (c->response_sent < c->response_len) {
		ssize_t n = send(c->fd, c->response + c->response_sent,
				 c->response_len - c->response_sent, MSG_NOSIGNAL);
		if (n > 0) {
			c->response_sent += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		conn_close(c);
		return -1;
	}
	free(c->response);
	c->response = NULL;
	if (c->keep_alive)
		conn_next(c);
	else
		conn_drain(c);
	return 0;
}

/* Formats the response (body omitted for HEAD) and starts writing it. Takes the body. */
static void conn_respond(struct conn *c, int status, const char *content_type, char *body,
			 size_t body_len, bool head_only, bool allow_header)
{
	if (!content_type)
		content_type = "text/plain; charset=utf-8";
	char head[512];
	c->server->requests++;
	int head_len = snprintf(head, sizeof head,
				"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
				"Connection: %s\r\n%s\r\n",
				status, status_reason(status), content_type, body_len,
				c->keep_alive ? "keep-alive" : "close",
				allow_header ? "Allow: GET, HEAD\r\n" : "");
	if (head_len < 0 || (size_t)head_len >= sizeof head) {
		free(body);
		conn_close(c);
		return;
	}
	size_t send_body = head_only ? 0 : body_len;
	c->response = malloc((size_t)head_len + send_body);
	if (!c->response) {
		free(body);
		conn_close(c);
		return;
	}
	memcpy(c->response, head, (size_t)head_len);
	if (send_body)
		memcpy(c->response + head_len, body, send_body);
	free(body);
	c->response_len = (size_t)head_len + send_body;
	c->response_sent = 0;
	c->phase = CONN_WRITING;
	if (conn_write(c) < 0)
		return;
	if (c->phase == CONN_WRITING)
		conn_watch(c, EV_WRITE, c->server->idle_timeout_s);
}

static void conn_respond_text(struct conn *c, int status, const char *text, bool head_only,
			      bool allow_header)
{
	size_t len = strlen(text);
	char *body = malloc(len);
	if (!body && len) {
		conn_close(c);
		return;
	}
	memcpy(body, text, len);
	conn_respond(c, status, NULL, body, len, head_only, allow_header);
}

static const struct route *find_route(const struct http_server *server, const char *path)
{
	const struct route *prefix = NULL;
	size_t prefix_len = 0;
	for (size_t i = 0; i < server->route_count; i++) {
		const char *route = server->routes[i].path;
		size_t len = strlen(route);
		if (strcmp(route, path) == 0)
			return &server->routes[i];
		/* a route ending in '/' takes every longer path under it */
		if (len > prefix_len && route[len - 1] == '/' && strncmp(route, path, len) == 0 &&
		    path[len] != '\0') {
			prefix = &server->routes[i];
			prefix_len = len;
		}
	}
	return prefix;
}

/*
 * The value of the next header line named name (lower case, with its
 * colon) in the head from *p on, blanks skipped: [*value, *value_end); *p
 * moves past it. @returns false when no line further on has that name.
 */
static bool next_header(const char **p, const char *end, const char *name, const char **value,
			const char **value_end)
{
	size_t name_len = strlen(name);
	while (*p < end) {
		const char *line = *p;
		while (line < end && (*line == '\r' || *line == '\n'))
			line++;
		const char *eol = line;
		while (eol < end && *eol != '\r' && *eol != '\n')
			eol++;
		*p = eol;
		if ((size_t)(eol - line) < name_len || strncasecmp(line, name, name_len) != 0)
			continue;
		const char *v = line + name_len;
		while (v < eol && (*v == ' ' || *v == '\t'))
			v++;
		*value = v;
		*value_end = eol;
		return true;
	}
	return false;
}

/*
 * Whether the request head (request line ending at line_end) lets the
 * connection stay open: HTTP/1.1 unless "Connection: close", HTTP/1.0 only
 * with "Connection: keep-alive".
 */
static bool wants_keep_alive(const struct conn *c, size_t line_end, bool http10)
{
	bool keep = !http10;
	const char *p = c->request + line_end, *end = c->request + c->head_len, *v, *v_end;
	while (next_header(&p, end, "connection:", &v, &v_end)) {
		size_t n = (size_t)(v_end - v);
		if (n >= 5 && strncasecmp(v, "close", 5) == 0)
			keep = false;
		else if (n >= 10 && strncasecmp(v, "keep-alive", 10) == 0)
			keep = true;
	}
	return keep;
}

/*
 * Whether the request head says a body follows: a Transfer-Encoding, or a
 * Content-Length other than 0. Only GET and HEAD are served, and they are
 * answered without reading a body: the body's bytes would be read as the
 * next pipelined request, which a proxy in front sees as part of this one
 * (request smuggling). Such a request is refused and the connection closed.
 */
static bool announces_body(const struct conn *c, size_t line_end)
{
	const char *head = c->request + line_end, *end = c->request + c->head_len, *p, *v, *v_end;
	p = head;
	if (next_header(&p, end, "transfer-encoding:", &v, &v_end))
		return true;
	p = head;
	while (next_header(&p, end, "content-length:", &v, &v_end)) {
		while (v < v_end && (*v == '0' || *v == ' ' || *v == '\t'))
			v++;
		if (v != v_end) /* anything but zeros */
			return true;
	}
	return false;
}

/* Parses the complete request head in c->request and answers it. */
static void conn_handle(struct conn *c)
{
	char *line = c->request;
	size_t line_end = strcspn(line, "\r\n");
	bool body = announces_body(c, line_end);
	/* decided before the request line is cut up; errors below close anyway */
	c->keep_alive = false;
	if (c->server->keep_alive) {
		const char *v = memchr(line, ' ', line_end);
		v = v ? memchr(v + 1, ' ', line_end - (size_t)(v + 1 - line)) : NULL;
		bool http10 = v != NULL && strncmp(v + 1, "HTTP/1.0", 8) == 0;
		c->keep_alive = wants_keep_alive(c, line_end, http10);
	}
	line[line_end] = '\0';
	char *method = line;
	char *target = strchr(method, ' ');
	char *version = target ? strchr(target + 1, ' ') : NULL;
	if (!target || !version || strchr(version + 1, ' ')) {
		c->keep_alive = false;
		conn_respond_text(c, 400, "bad request line\n", false, false);
		return;
	}
	*target++ = '\0';
	*version++ = '\0';
	if (strncmp(version, "HTTP/1.", 7) != 0 || target[0] != '/' || method[0] == '\0') {
		c->keep_alive = false;
		conn_respond_text(c, 400, "bad request line\n", false, false);
		return;
	}
	bool head_only = strcmp(method, "HEAD") == 0;
	if (!head_only && strcmp(method, "GET") != 0) {
		c->keep_alive = false; /* a body we do not read may follow */
		conn_respond_text(c, 405, "only GET and HEAD\n", false, true);
		return;
	}
	if (body) {
		c->keep_alive = false;
		conn_respond_text(c, 400, "a GET or HEAD with a body is not served\n", false,
				  false);
		return;
	}
	char *query = strchr(target, '?');
	if (query)
		*query++ = '\0';
	const struct route *route = find_route(c->server, target);
	if (!route) {
		conn_respond_text(c, 404, "not found\n", head_only, false);
		return;
	}
	struct http_request request = {
	    .method = method, .path = target, .query = query ? query : ""};
	struct http_response response = {.status = 200, .content_type = NULL};
	route->handler(&request, &response, route->opaque);
	if (response.status < 100 || response.status > 599) {
		free(response.body);
		conn_respond_text(c, 500, "handler gave no valid status\n", head_only, false);
		return;
	}
	conn_respond(c, response.status, response.content_type, response.body, response.body_len,
		     head_only, false);
}

/* The length of the request head when complete (an empty line after the
 * request line), else 0. */
static size_t head_complete(const struct conn *c, size_t searched_from)
{
	size_t from = searched_from > 3 ? searched_from - 3 : 0;
	for (size_t i = from; i + 1 < c->request_len; i++) {
		if (c->request[i] != '\n')
			continue;
		if (c->request[i + 1] == '\n')
			return i + 2;
		if (c->request[i + 1] == '\r' && i + 2 < c->request_len &&
		    c->request[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* Answers the head now complete in the buffer (c->head_len set); the
 * descriptor's watcher stays as it is (the answer is made at once). */
static void conn_handle_head(struct conn *c)
{
	/* the head as a string of its own; the byte after it is put back for what follows */
	c->after_head = c->request[c->head_len];
	c->request[c->head_len] = '\0';
	conn_handle(c);
}

/*
 * After a kept-alive response: the pipelined bytes move to the front and the
 * connection waits for (or, when already buffered, answers) the next request.
 * A buffered request is answered from the loop (ev_feed_event), not from here,
 * so a pipelined burst cannot recurse.
 */
static void conn_next(struct conn *c)
{
	size_t rest = c->request_len - c->head_len;
	c->request[c->head_len] = c->after_head;
	memmove(c->request, c->request + c->head_len, rest);
	c->request_len = rest;
	c->request[rest] = '\0';
	c->head_len = 0;
	c->phase = CONN_READING;
	conn_watch(c, EV_READ, c->server->idle_timeout_s);
	if (rest > 0)
		ev_feed_event(c->server->loop, &c->io, EV_READ);
}

static void conn_read(struct conn *c)
{
	size_t buffered = head_complete(c, 0);
	if (c->request_len > 0 && buffered > 0) {
		c->head_len = buffered;
		conn_handle_head(c);
		return;
	}
	for (;;) {
		size_t room = HTTP_MAX_REQUEST_BYTES - c->request_len;
		if (room == 0) {
			c->keep_alive = false;
			conn_respond_text(c, 431, "request larger than 8192 bytes\n", false, false);
			return;
		}
		ssize_t n = recv(c->fd, c->request + c->request_len, room, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		size_t before = c->request_len;
		c->request_len += (size_t)n;
		c->request[c->request_len] = '\0';
		size_t head = head_complete(c, before);
		if (head > 0) {
			c->head_len = head;
			conn_handle_head(c);
			return;
		}
	}
}

static void conn_discard(struct conn *c)
{
	char sink[DRAIN_CHUNK];
	for (;;) {
		ssize_t n = recv(c->fd, sink, sizeof sink, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
	}
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	struct conn *c = w->data;
	switch (c->phase) {
	case CONN_READING: conn_read(c); break;
	case CONN_WRITING: conn_write(c); break;
	case CONN_DRAINING: conn_discard(c); break;
	}
}

static void conn_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	conn_close(w->data);
}

/*
 * Makes room for a new connection at the limit by closing the oldest one that
 * has not sent a whole request yet: otherwise idle clients (a scanner, a
 * leaky scraper) would blind /metrics and /readyz until they time out.
 * Returns false when every connection is being answered.
 */
static bool evict_oldest_idle(struct http_server *server)
{
	for (struct conn *c = server->conns_tail; c != NULL; c = c->prev) {
		if (c->phase == CONN_READING) {
			conn_close(c);
			return true;
		}
	}
	return false;
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	struct http_server *server = w->data;
	for (int burst = 0; burst < ACCEPT_BURST; burst++) {
		int fd = accept4(server->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* the socket stays readable: wait instead of spinning */
				ev_io_stop(loop, &server->accept_io);
				ev_timer_set(&server->accept_pause, ACCEPT_PAUSE_S, 0);
				ev_timer_start(loop, &server->accept_pause);
			}
			return;
		}
		if (server->conn_count >= server->max_connections && !evict_oldest_idle(server)) {
			close(fd);
			continue;
		}
		struct conn *c = malloc(sizeof *c);
		if (!c) {
			close(fd);
			continue;
		}
		c->server = server;
		c->fd = fd;
		c->phase = CONN_READING;
		c->keep_alive = false;
		c->head_len = 0;
		c->request_len = 0;
		c->request[0] = '\0';
		c->response = NULL;
		c->response_len = c->response_sent = 0;
		c->prev = NULL;
		c->next = server->conns;
		if (server->conns)
			server->conns->prev = c;
		else
			server->conns_tail = c;
		server->conns = c;
		server->conn_count++;
		ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
		c->io.data = c;
		ev_init(&c->timer, conn_timeout_cb);
		c->timer.repeat = server->idle_timeout_s;
		c->timer.data = c;
		ev_io_start(loop, &c->io);
		ev_timer_again(loop, &c->timer);
	}
}

static void accept_resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	struct http_server *server = w->data;
	ev_io_start(loop, &server->accept_io);
}

/* Splits "host:port" or "[v6]:port" into host and a decimal port string. */
static int split_listen(const char *key, const char *address, char *host, size_t host_size,
			char *port, size_t port_size, char *errstr, size_t errstr_size)
{
	const char *host_start = address, *host_end, *colon;
	if (address[0] == '[') {
		host_start = address + 1;
		host_end = strchr(host_start, ']');
		if (!host_end || host_end[1] != ':') {
			snprintf(errstr, errstr_size, "%s %s: expected \"[address]:port\"", key,
				 address);
			return -1;
		}
		colon = host_end + 1;
	} else {
		colon = strrchr(address, ':');
		if (!colon || memchr(address, ':', (size_t)(colon - address))) {
			snprintf(errstr, errstr_size,
				 "%s %s: expected \"host:port\" (IPv6 addresses in "
				 "brackets)",
				 key, address);
			return -1;
		}
		host_end = colon;
	}
	size_t host_len = (size_t)(host_end - host_start);
	const char *digits = colon + 1;
	size_t digit_count = strlen(digits);
	bool numeric =
	    digit_count > 0 && digit_count <= 5 && strspn(digits, "0123456789") == digit_count;
	if (host_len == 0 || host_len >= host_size || !numeric || atoi(digits) > 65535 ||
	    digit_count >= port_size) {
		snprintf(errstr, errstr_size,
			 "%s %s: expected a host and a port between 0 and 65535", key,
			 address);
		return -1;
	}
	memcpy(host, host_start, host_len);
	host[host_len] = '\0';
	memcpy(port, digits, digit_count + 1);
	return 0;
}

/* Binds and listens on the first resolution of `address` that works; returns the socket or -1. */
static int open_listener(const char *key, const char *address, uint16_t *bound_port,
			 char *errstr, size_t errstr_size)
{
	char host[256], port[8];
	if (split_listen(key, address, host, sizeof host, port, sizeof port, errstr, errstr_size) < 0)
		return -1;
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *addrs;
	int rc = getaddrinfo(host, port, &hints, &addrs);
	if (rc != 0) {
		snprintf(errstr, errstr_size, "%s %s: %s", key, address, gai_strerror(rc));
		return -1;
	}
	int fd = -1, saved_errno = EADDRNOTAVAIL;
	for (struct addrinfo *a = addrs; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    a->ai_protocol);
		if (fd < 0) {
			saved_errno = errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (a->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0)
			break;
		saved_errno = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(addrs);
	if (fd < 0) {
		snprintf(errstr, errstr_size, "%s %s: %s", key, address,
			 strerror(saved_errno));
		return -1;
	}
	struct sockaddr_storage bound;
	socklen_t bound_len = sizeof bound;
	if (getsockname(fd, (struct sockaddr *)&bound, &bound_len) < 0) {
		snprintf(errstr, errstr_size, "%s %s: getsockname: %s", key, address,
			 strerror(errno));
		close(fd);
		return -1;
	}
	*bound_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
							: ((struct sockaddr_in *)&bound)->sin_port);
	return fd;
}

struct http_server *http_server_new(struct ev_loop *loop, const struct http_config *config,
				    char *errstr, size_t errstr_size)
{
	const char *address = config && config->listen ? config->listen : HTTP_DEFAULT_LISTEN;
	const char *key = config && config->key ? config->key : "http.listen";
	struct http_server *server = calloc(1, sizeof *server);
	if (!server) {
		snprintf(errstr, errstr_size, "%s %s: out of memory", key, address);
		return NULL;
	}
	server->loop = loop;
	server->keep_alive = config && config->keep_alive;
	server->idle_timeout_s = config && config->idle_timeout_s > 0 ? config->idle_timeout_s
								      : HTTP_DEFAULT_IDLE_TIMEOUT_S;
	server->max_connections = config && config->max_connections ? config->max_connections
								    : HTTP_DEFAULT_MAX_CONNECTIONS;
	server->fd = open_listener(key, address, &server->port, errstr, errstr_size);
	if (server->fd < 0)
		goto out_free_server;
	ev_io_init(&server->accept_io, accept_cb, server->fd, EV_READ);
	server->accept_io.data = server;
	ev_timer_init(&server->accept_pause, accept_resume_cb, ACCEPT_PAUSE_S, 0);
	server->accept_pause.data = server;
	ev_io_start(loop, &server->accept_io);
	return server;

out_free_server:
	free(server);
	return NULL;
}

void http_server_free(struct http_server *server)
{
	if (!server)
		return;
	while (server->conns)
		conn_close(server->conns);
	ev_io_stop(server->loop, &server->accept_io);
	ev_timer_stop(server->loop, &server->accept_pause);
	close(server->fd);
	for (size_t i = 0; i < server->route_count; i++)
		free(server->routes[i].path);
	free(server->routes);
	free(server);
}

uint16_t http_server_port(const struct http_server *server)
{
	return server->port;
}

size_t http_server_connection_count(const struct http_server *server)
{
	return server->conn_count;
}

uint64_t http_server_request_count(const struct http_server *server)
{
	return server->requests;
}

int http_server_route(struct http_server *server, const char *path, http_handler_fn handler,
		      void *opaque, char *errstr, size_t errstr_size)
{
	if (path[0] != '/') {
		snprintf(errstr, errstr_size, "http route \"%s\": path must start with /", path);
		return -1;
	}
	for (size_t i = 0; i < server->route_count; i++) {
		if (strcmp(server->routes[i].path, path) == 0) {
			server->routes[i].handler = handler;
			server->routes[i].opaque = opaque;
			return 0;
		}
	}
	struct route *routes =
	    realloc(server->routes, (server->route_count + 1) * sizeof *server->routes);
	if (!routes)
		goto out_oom;
	server->routes = routes;
	char *copy = strdup(path);
	if (!copy)
		goto out_oom;
	routes[server->route_count++] =
	    (struct route){.path = copy, .handler = handler, .opaque = opaque};
	return 0;

out_oom:
	snprintf(errstr, errstr_size, "http route \"%s\": out of memory", path);
	return -1;
}

static void metrics_handler(const struct http_request *request, struct http_response *response,
			    void *opaque)
{
	(void)request;
	char errstr[128];
	if (metrics_render(opaque, &response->body, &response->body_len, errstr, sizeof errstr) <
	    0) {
		http_response_text(response, 500, errstr);
		return;
	}
	response->content_type = METRICS_CONTENT_TYPE;
}

int http_server_route_metrics(struct http_server *server, const struct metrics *metrics,
			      char *errstr, size_t errstr_size)
{
	/* the handler only reads through the pointer */
	return http_server_route(server, "/metrics", metrics_handler, (void *)(uintptr_t)metrics,
				 errstr, errstr_size);
}

static void healthz_handler(const struct http_request *request, struct http_response *response,
			    void *opaque)
{
	(void)request;
	(void)opaque;
	http_response_text(response, 200, "ok\n");
}

int http_server_route_healthz(struct http_server *server, char *errstr, size_t errstr_size)
{
	return http_server_route(server, "/healthz", healthz_handler, NULL, errstr, errstr_size);
}

static void readyz_handler(const struct http_request *request, struct http_response *response,
			   void *opaque)
{
	(void)request;
	const struct ready_route *ready = opaque;
	char reason[256] = "";
	if (ready->ready(ready->opaque, reason, sizeof reason)) {
		http_response_text(response, 200, "ready\n");
		return;
	}
	char text[300];
	snprintf(text, sizeof text, "not ready: %s\n", reason[0] ? reason : "unknown");
	http_response_text(response, 503, text);
}

int http_server_route_readyz(struct http_server *server, http_ready_fn ready, void *opaque,
			     char *errstr, size_t errstr_size)
{
	server->ready = (struct ready_route){.ready = ready, .opaque = opaque};
	return http_server_route(server, "/readyz", readyz_handler, &server->ready, errstr,
				 errstr_size);
}

int http_listen_check(const char *address, char *errstr, size_t errstr_size)
{
	char host[256], port[8];
	return split_listen("http.listen", address, host, sizeof host, port, sizeof port, errstr,
			    errstr_size);
}
