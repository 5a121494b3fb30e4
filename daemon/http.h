/*
 * http: a tiny HTTP/1.1 server on the daemon's libev loop, for /metrics,
 * /healthz, /readyz and the lookup API.
 *
 * One non-blocking listening socket, one ev_io and one ev_timer per
 * connection, no threads. The server reads a request head (at most
 * HTTP_MAX_REQUEST_BYTES, else 431), answers GET and HEAD (405 otherwise,
 * 404 for unknown paths, 400 for a malformed request line) and writes the
 * response with MSG_NOSIGNAL. Without keep_alive each connection carries one
 * request and is closed after it; with keep_alive (the lookup API: a client
 * opening a connection per request would spend more on the handshake than on
 * the answer, and run out of ports at 10k requests/s) a connection carries
 * requests one after the other, pipelined ones included, until the client
 * asks to close (HTTP/1.0 without "Connection: keep-alive", or "Connection:
 * close"), sends something malformed, or stays idle. A client that has not
 * sent a whole request, or not read the whole response, within the idle
 * timeout is dropped. Request bodies are not read.
 */
#ifndef STREAMREC_HTTP_H
#define STREAMREC_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

struct metrics;

/** Default listen address. */
#define HTTP_DEFAULT_LISTEN "127.0.0.1:9464"
/** Largest request head accepted, in bytes; larger ones get 431. */
#define HTTP_MAX_REQUEST_BYTES 8192
/** Default idle timeout, seconds. */
#define HTTP_DEFAULT_IDLE_TIMEOUT_S 10.0
/**
 * Default bound on open connections. At the bound a new connection closes the
 * oldest one still waiting for its request (idle clients cannot blind /metrics);
 * when every connection is being answered, the new one is closed at once.
 */
#define HTTP_DEFAULT_MAX_CONNECTIONS 256

struct http_config {
	/** "host:port" or "[v6addr]:port"; port 0 picks a free port. NULL means the default. */
	const char *listen;
	/** The configuration key named in errors ("api.listen"); NULL: "http.listen". */
	const char *key;
	/** Keep connections open between requests (see above); false: one request each. */
	bool keep_alive;
	/** Seconds a connection may take to send its request, and again to read the response; 0
	 * means the default. */
	double idle_timeout_s;
	/** 0 means the default. */
	size_t max_connections;
};

/** What a route handler sees of a request. */
struct http_request {
	/** "GET" or "HEAD". */
	const char *method;
	/** The target's path, without the query string. */
	const char *path;
	/** The query string without '?', or "" */
	const char *query;
};

/**
 * What a route handler fills in. The server starts with status 200, content
 * type "text/plain; charset=utf-8" and no body. content_type is borrowed and
 * must stay valid until the handler returns; body, when set, must be
 * malloc'd and the server takes ownership of it (use http_response_text()).
 */
struct http_response {
	int status;
	const char *content_type;
	char *body;
	size_t body_len;
};

typedef void (*http_handler_fn)(const struct http_request *request, struct http_response *response,
				void *opaque);

/**
 * @brief Set the status and a copy of `text` as the body. On allocation
 * failure the server answers 500.
 * @returns 0, or -1 when out of memory.
 */
int http_response_text(struct http_response *response, int status, const char *text);

struct http_server;

/**
 * @brief Check the form of a listen address, "host:port" or "[v6]:port",
 * without resolving or binding it (the configuration's check).
 * @returns 0, or -1 with errstr naming the address and the expected form
 * ("http.listen nonsense: expected ...").
 */
int http_listen_check(const char *address, char *errstr, size_t errstr_size);

/**
 * @brief Bind, listen and start accepting on `loop`.
 * @returns the server, or NULL with errstr filled, naming the address:
 * "http.listen 127.0.0.1:9464: Address already in use".
 */
struct http_server *http_server_new(struct ev_loop *loop, const struct http_config *config,
				    char *errstr, size_t errstr_size);

/** @brief Stop every watcher, close every connection and the listening socket. */
void http_server_free(struct http_server *server);

/** @returns the bound port (useful after asking for port 0). */
uint16_t http_server_port(const struct http_server *server);

/** @returns the number of open client connections. */
size_t http_server_connection_count(const struct http_server *server);

/** @returns the requests answered so far (every status counts). */
uint64_t http_server_request_count(const struct http_server *server);

/**
 * @brief Route an exact path ("/metrics") to a handler, or, for a path ending
 * in '/' ("/v1/recommendations/"), every longer path under it (the longest
 * such route wins; an exact route beats it); a later route for the same path
 * replaces the earlier. `opaque` is borrowed.
 * @returns 0, or -1 with errstr filled.
 */
int http_server_route(struct http_server *server, const char *path, http_handler_fn handler,
		      void *opaque, char *errstr, size_t errstr_size);

/** @brief Route /metrics to metrics_render() of `metrics` (borrowed). */
int http_server_route_metrics(struct http_server *server, const struct metrics *metrics,
			      char *errstr, size_t errstr_size);

/** @brief Route /healthz to a constant 200 "ok". */
int http_server_route_healthz(struct http_server *server, char *errstr, size_t errstr_size);

/**
 * Says whether the daemon is ready; when not, writes why into `reason`
 * ("partitions not assigned").
 */
typedef bool (*http_ready_fn)(void *opaque, char *reason, size_t reason_size);

/**
 * @brief Route /readyz: 200 "ready" when `ready(opaque, ...)` is true, else
 * 503 with the reason it gave.
 */
int http_server_route_readyz(struct http_server *server, http_ready_fn ready, void *opaque,
			     char *errstr, size_t errstr_size);

#endif
