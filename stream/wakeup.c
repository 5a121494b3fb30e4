#include "wakeup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Serves, then keeps the idle watcher on while the queue still holds work. */
static void serve(struct wakeup *w)
{
	w->serve(w->opaque);
	if (rd_kafka_queue_length(w->queue) > 0)
		ev_idle_start(w->loop, &w->backlog_watcher);
	else
		ev_idle_stop(w->loop, &w->backlog_watcher);
}

static void pipe_ready(struct ev_loop *loop, ev_io *watcher, int revents)
{
	struct wakeup *w = watcher->data;
	char buf[64];
	(void)loop;
	(void)revents;
	while (read(w->pipe_fds[0], buf, sizeof buf) > 0)
		;
	serve(w);
}

static void backlog_ready(struct ev_loop *loop, ev_idle *watcher, int revents)
{
	(void)loop;
	(void)revents;
	serve(watcher->data);
}

int wakeup_attach(struct wakeup *wakeup, struct ev_loop *loop, rd_kafka_queue_t *queue,
		  void (*serve_fn)(void *opaque), void *opaque, char *errstr, size_t errstr_size)
{
	struct wakeup *w = wakeup;
	if (pipe2(w->pipe_fds, O_NONBLOCK | O_CLOEXEC) != 0) {
		snprintf(errstr, errstr_size, "pipe: %s", strerror(errno));
		return -1;
	}
	w->loop = loop;
	w->queue = queue;
	w->serve = serve_fn;
	w->opaque = opaque;
	rd_kafka_queue_io_event_enable(queue, w->pipe_fds[1], "1", 1);
	ev_io_init(&w->pipe_watcher, pipe_ready, w->pipe_fds[0], EV_READ);
	w->pipe_watcher.data = w;
	ev_idle_init(&w->backlog_watcher, backlog_ready);
	w->backlog_watcher.data = w;
	return 0;
}

void wakeup_start(struct wakeup *wakeup)
{
	ev_io_start(wakeup->loop, &wakeup->pipe_watcher);
	ev_idle_start(wakeup->loop, &wakeup->backlog_watcher);
}

void wakeup_detach(struct wakeup *wakeup)
{
	ev_io_stop(wakeup->loop, &wakeup->pipe_watcher);
	ev_idle_stop(wakeup->loop, &wakeup->backlog_watcher);
	rd_kafka_queue_io_event_enable(wakeup->queue, -1, NULL, 0);
	close(wakeup->pipe_fds[0]);
	close(wakeup->pipe_fds[1]);
}
