#include "publish.h"

#include <string.h>

#include "clock.h"
#include "ingest.h"
#include "log.h"

int publish_recommendation(const struct recommendation *rec, void *opaque, char *errstr,
			   size_t errstr_size)
{
	struct daemon *d = opaque;
	struct codec_buf buf = {0};
	enum codec_framing framing = d->config.output_framing == CONFIG_FRAMING_CONFLUENT
					 ? CODEC_FRAMING_CONFLUENT
					 : CODEC_FRAMING_RAW;
	int rc = -1;
	if (codec_encode_recommendation(d->codec, rec, framing, &buf, errstr, errstr_size) == 0) {
		rc = producer_send(d->producer, d->config.output_topic, rec->user_id,
				   strlen(rec->user_id), buf.data, buf.len, NULL, 0, errstr,
				   errstr_size);
		if (rc == PRODUCER_QUEUE_FULL)
			rc = REFRESH_PUBLISH_LATER;
	}
	codec_buf_free(&buf);
	return rc;
}

/* Learning is behind its input once the consumer's queue has not emptied for
 * this long (µs): a fetch's messages are served within a few ms otherwise. */
#define BEHIND_US 100000

/* One refresh batch per idle turn, within the time credit (see publish.h). */
static void on_refresh_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct daemon *d = w->data;
	char errstr[512];
	(void)revents;
	double share = d->config.refresh_max_busy_share, now = ev_time();
	double bound = 0.2; /* seconds of credit kept either way */
	d->refresh_credit_s += share * (now - d->refresh_credit_at);
	d->refresh_credit_at = now;
	if (d->refresh_credit_s > bound)
		d->refresh_credit_s = bound;
	if (d->refresh_credit_s < -bound)
		d->refresh_credit_s = -bound;
	if ((d->refresh_credit_s <= 0 && d->consumer != NULL && consumer_backlog(d->consumer)) ||
	    d->catalogue_loading) {
		/* learning first, or the catalogue; the timer comes back */
		ev_idle_stop(loop, w);
		return;
	}
	refresher_set_behind(d->refresher, d->consumer != NULL &&
						consumer_backlog_us(d->consumer) >= BEHIND_US);
	long refreshed =
	    d->failed ? 0 : refresher_run(d->refresher, clock_wall_ms(), errstr, sizeof errstr);
	if (refreshed < 0)
		daemon_fail(d, errstr);
	double end = ev_time();
	d->refresh_credit_s -= end - now;
	d->refresh_credit_at = end;
	if (refreshed <= 0)
		ev_idle_stop(loop, w);
}

/* When nobody queued was due (min_interval), the idle watcher stopped: try again. */
static void on_refresh_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = w->data;
	(void)revents;
	if (d->catalogue_loading && ev_now(loop) >= d->catalogue_wait_until)
		ingest_catalogue_loaded(d, false);
	if (refresher_pending(d->refresher) > 0 || refresher_busy(d->refresher))
		ev_idle_start(loop, &d->refresh_idle);
}

/* The workers ranked a round: publish it on the next idle turn. */
static void on_refresh_done(struct ev_loop *loop, ev_async *w, int revents)
{
	struct daemon *d = w->data;
	(void)revents;
	ev_idle_start(loop, &d->refresh_idle);
}

void publish_notify(void *opaque)
{
	struct daemon *d = opaque;
	ev_async_send(d->loop, &d->refresh_done);
}

void publish_start(struct daemon *d)
{
	ev_async_init(&d->refresh_done, on_refresh_done);
	d->refresh_done.data = d;
	ev_async_start(d->loop, &d->refresh_done);
	double refresh_s = (double)d->config.refresh_interval_ms / 1000.0;
	ev_idle_init(&d->refresh_idle, on_refresh_idle);
	d->refresh_idle.data = d;
	ev_timer_init(&d->refresh_timer, on_refresh_timer, refresh_s, refresh_s);
	d->refresh_timer.data = d;
	ev_timer_start(d->loop, &d->refresh_timer);
}

void publish_wake(struct daemon *d)
{
	ev_idle_start(d->loop, &d->refresh_idle);
}

void publish_stop(struct daemon *d)
{
	ev_timer_stop(d->loop, &d->refresh_timer);
	ev_idle_stop(d->loop, &d->refresh_idle);
	ev_async_stop(d->loop, &d->refresh_done);
}

void publish_drain(struct daemon *d)
{
	char errstr[512];
	long refreshed;
	do {
		refresher_wait(d->refresher); /* a round out with the workers first */
		refreshed = refresher_run(d->refresher, clock_wall_ms(), errstr, sizeof errstr);
	} while (refreshed > 0 || (refreshed == 0 && refresher_busy(d->refresher)));
	if (refreshed < 0)
		daemon_fail(d, errstr);
}
