/*
 * api_client: a load client for the lookup API (GET /v1/recommendations/{user}).
 *
 *   api_client --port P [--host 127.0.0.1] [--connections 32] [--threads 1]
 *             [--rate 10000] [--seconds 10] [--users 10000] [--prefix user-]
 *
 * Keeps `connections` kept-alive HTTP/1.1 connections on `threads` threads
 * (epoll each) and sends GET /v1/recommendations/<prefix><n>, n uniform in
 * [0, users). With --rate R (requests/s over all connections) every
 * connection sends on a fixed schedule and a request's latency counts from
 * the time it was due, not from when it was sent, so a stalled server is not
 * hidden by a client that waited for it (coordinated omission); --rate 0
 * sends the next request as soon as the answer is in (closed loop: the
 * server's ceiling at that concurrency).
 *
 * Prints one line of JSON: requests, errors (non-200 answers counted apart
 * as statuses), requests/s achieved, latency p50/p90/p99/p999/max in ms,
 * and the sending lateness p50/p99/p999 (when a request was sent minus when
 * it was due): on a machine the client shares with the server, that much of
 * the latency is the client's own scheduling, not the server's.
 * Status 404 (a user without a list yet) is an answer like any other.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RESPONSE_BYTES (256 * 1024)
#define MAX_SAMPLES (64u << 20)

struct options {
	const char *host, *prefix;
	int port;
	size_t connections, threads, users;
	double rate, seconds;
};

struct conn {
	int fd;
	double due;  /* when the request in flight was due (or sent, closed loop) */
	double next; /* when the next request is due (paced) */
	double sent; /* when it was sent */
	bool busy;
	size_t got;
	char buf[RESPONSE_BYTES];
};

struct worker {
	const struct options *o;
	size_t first, count; /* its connections */
	uint64_t seed;
	double start, end;
	uint64_t requests, errors, status_200, status_404, status_other;
	float *samples; /* latency, ms */
	float *late;    /* the same requests' sending lateness (sent - due), ms */
	size_t sample_count, sample_capacity;
	int failed;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int connect_to(const struct options *o)
{
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
	if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int send_request(struct worker *w, struct conn *c)
{
	char request[512];
	uint64_t user = next_random(&w->seed) % w->o->users;
	int len = snprintf(request, sizeof request,
			   "GET /v1/recommendations/%s%llu HTTP/1.1\r\nHost: %s\r\n\r\n",
			   w->o->prefix, (unsigned long long)user, w->o->host);
	if (send(c->fd, request, (size_t)len, MSG_NOSIGNAL) != len)
		return -1;
	c->busy = true;
	c->got = 0;
	return 0;
}

/* Whether buf holds one whole response; sets its status. */
static bool response_complete(const struct conn *c, int *status)
{
	const char *end = memmem(c->buf, c->got, "\r\n\r\n", 4);
	if (end == NULL)
		return false;
	const char *length = memmem(c->buf, (size_t)(end - c->buf), "Content-Length:", 15);
	size_t body = length ? strtoul(length + 15, NULL, 10) : 0;
	if ((size_t)(end + 4 - c->buf) + body > c->got)
		return false;
	*status = atoi(c->buf + 9);
	return true;
}

static void record(struct worker *w, double latency_s, double late_s)
{
	if (w->sample_count == w->sample_capacity) {
		size_t capacity = w->sample_capacity ? w->sample_capacity * 2 : 1 << 16;
		if (capacity > MAX_SAMPLES)
			return;
		float *grown = realloc(w->samples, capacity * sizeof *grown);
		if (grown == NULL)
			return;
		w->samples = grown;
		grown = realloc(w->late, capacity * sizeof *grown);
		if (grown == NULL)
			return;
		w->late = grown;
		w->sample_capacity = capacity;
	}
	w->late[w->sample_count] = (float)(late_s * 1000.0);
	w->samples[w->sample_count++] = (float)(latency_s * 1000.0);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const struct options *o = w->o;
	double interval = o->rate > 0 ? (double)o->connections / o->rate : 0;
	struct conn *conns = calloc(w->count, sizeof *conns);
	int ep = epoll_create1(0);
	if (conns == NULL || ep < 0) {
		w->failed = 1;
		free(conns);
		return NULL;
	}
	double start = w->start;
	for (size_t i = 0; i < w->count; i++) {
		struct conn *c = &conns[i];
		c->fd = connect_to(o);
		if (c->fd < 0) {
			fprintf(stderr, "api_client: connect to %s:%d: %s\n", o->host, o->port,
				strerror(errno));
			w->failed = 1;
			goto out;
		}
		/* spread the connections' schedules over one interval */
		c->next = start + interval * (double)(w->first + i) / (double)o->connections;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
	}
	struct epoll_event events[256];
	for (;;) {
		double now = now_s();
		if (now >= w->end)
			break;
		double wake = w->end;
		for (size_t i = 0; i < w->count; i++) {
			struct conn *c = &conns[i];
			if (c->busy || c->fd < 0)
				continue;
			if (interval == 0 || c->next <= now) {
				c->due = interval == 0 ? now : c->next;
				c->next += interval;
				c->sent = now_s();
				if (send_request(w, c) != 0) {
					w->errors++;
					close(c->fd);
					c->fd = -1;
				}
			} else if (c->next < wake) {
				wake = c->next;
			}
		}
		/* a timeout in nanoseconds: epoll_wait's milliseconds would round the
		 * next due request (0.1 ms away at 10k/s) down to 0 and spin a core
		 * the server under test needs (this machine has two) */
		double sleep_s = wake > now ? wake - now : 0;
		struct timespec timeout = {.tv_sec = (time_t)sleep_s,
					   .tv_nsec = (long)((sleep_s - (double)(time_t)sleep_s) * 1e9)};
		int n = epoll_pwait2(ep, events, 256, &timeout, NULL);
		for (int e = 0; e < n; e++) {
			struct conn *c = events[e].data.ptr;
			ssize_t got = recv(c->fd, c->buf + c->got, sizeof c->buf - c->got - 1, 0);
			if (got <= 0) {
				if (got < 0 && errno == EINTR)
					continue;
				w->errors++;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
				c->fd = -1;
				continue;
			}
			c->got += (size_t)got;
			int status;
			if (!response_complete(c, &status))
				continue;
			double done = now_s();
			c->busy = false;
			w->requests++;
			if (status == 200)
				w->status_200++;
			else if (status == 404)
				w->status_404++;
			else
				w->status_other++;
			record(w, done - c->due, c->sent - c->due);
		}
	}
out:
	for (size_t i = 0; i < w->count; i++)
		if (conns[i].fd >= 0)
			close(conns[i].fd);
	close(ep);
	free(conns);
	return NULL;
}

static int compare_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

static double quantile(const float *sorted, size_t n, double q)
{
	if (n == 0)
		return 0;
	size_t at = (size_t)(q * (double)(n - 1) + 0.5);
	return sorted[at < n ? at : n - 1];
}

int main(int argc, char **argv)
{
	struct options o = {.host = "127.0.0.1",
			    .prefix = "user-",
			    .connections = 32,
			    .threads = 1,
			    .users = 10000,
			    .rate = 10000,
			    .seconds = 10};
	static const struct option longopts[] = {
	    {"host", required_argument, NULL, 'h'},    {"port", required_argument, NULL, 'p'},
	    {"connections", required_argument, NULL, 'c'}, {"threads", required_argument, NULL, 't'},
	    {"rate", required_argument, NULL, 'r'},    {"seconds", required_argument, NULL, 's'},
	    {"users", required_argument, NULL, 'u'},   {"prefix", required_argument, NULL, 'x'},
	    {NULL, 0, NULL, 0}};
	int opt;
	o.port = 0;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h': o.host = optarg; break;
		case 'p': o.port = atoi(optarg); break;
		case 'c': o.connections = strtoul(optarg, NULL, 10); break;
		case 't': o.threads = strtoul(optarg, NULL, 10); break;
		case 'r': o.rate = atof(optarg); break;
		case 's': o.seconds = atof(optarg); break;
		case 'u': o.users = strtoul(optarg, NULL, 10); break;
		case 'x': o.prefix = optarg; break;
		default: return 2;
		}
	}
	if (o.port <= 0 || o.port > 65535 || o.connections == 0 || o.threads == 0 ||
	    o.threads > o.connections || o.users == 0 || o.seconds <= 0 || o.rate < 0) {
		fprintf(stderr, "usage: api_client --port P [--host H] [--connections N] "
				"[--threads N] [--rate R] [--seconds S] [--users N] [--prefix P]\n");
		return 2;
	}
	struct worker *workers = calloc(o.threads, sizeof *workers);
	pthread_t *threads = calloc(o.threads, sizeof *threads);
	if (workers == NULL || threads == NULL)
		return 1;
	double start = now_s() + 0.05;
	for (size_t t = 0, first = 0; t < o.threads; t++) {
		size_t count = o.connections / o.threads + (t < o.connections % o.threads);
		workers[t] = (struct worker){.o = &o,
					     .first = first,
					     .count = count,
					     .seed = 0x5eed + t,
					     .start = start,
					     .end = start + o.seconds};
		first += count;
		pthread_create(&threads[t], NULL, worker_main, &workers[t]);
	}
	uint64_t requests = 0, errors = 0, ok = 0, missing = 0, other = 0;
	size_t samples = 0;
	int failed = 0;
	for (size_t t = 0; t < o.threads; t++) {
		pthread_join(threads[t], NULL);
		requests += workers[t].requests;
		errors += workers[t].errors;
		ok += workers[t].status_200;
		missing += workers[t].status_404;
		other += workers[t].status_other;
		samples += workers[t].sample_count;
		failed |= workers[t].failed;
	}
	float *all = malloc((samples ? samples : 1) * sizeof *all);
	float *late = malloc((samples ? samples : 1) * sizeof *late);
	if (all == NULL || late == NULL)
		return 1;
	for (size_t t = 0, at = 0; t < o.threads; t++) {
		memcpy(all + at, workers[t].samples, workers[t].sample_count * sizeof *all);
		memcpy(late + at, workers[t].late, workers[t].sample_count * sizeof *late);
		at += workers[t].sample_count;
		free(workers[t].samples);
		free(workers[t].late);
	}
	qsort(all, samples, sizeof *all, compare_float);
	qsort(late, samples, sizeof *late, compare_float);
	printf("{\"connections\": %zu, \"threads\": %zu, \"target_rate\": %.0f, \"seconds\": %.1f, "
	       "\"requests\": %llu, \"status_200\": %llu, \"status_404\": %llu, "
	       "\"status_other\": %llu, \"errors\": %llu, \"requests_per_s\": %.0f, "
	       "\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"p999_ms\": %.3f, "
	       "\"max_ms\": %.3f, \"late_p50_ms\": %.3f, \"late_p99_ms\": %.3f, "
	       "\"late_p999_ms\": %.3f}\n",
	       o.connections, o.threads, o.rate, o.seconds, (unsigned long long)requests,
	       (unsigned long long)ok, (unsigned long long)missing, (unsigned long long)other,
	       (unsigned long long)errors, (double)requests / o.seconds,
	       quantile(all, samples, 0.5), quantile(all, samples, 0.9),
	       quantile(all, samples, 0.99), quantile(all, samples, 0.999),
	       samples ? (double)all[samples - 1] : 0.0, quantile(late, samples, 0.5),
	       quantile(late, samples, 0.99), quantile(late, samples, 0.999));
	free(all);
	free(late);
	free(workers);
	free(threads);
	return failed ? 1 : 0;
}
