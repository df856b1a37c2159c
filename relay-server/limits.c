/*
 * limits: how many channels the relay holds, derived from the process's
 * open-file limit at start (as HAProxy derives maxconn), since every
 * channel, authenticated or not, is one descriptor:
 *
 *   reserve          = 32 + 4 per worker (listening sockets, eventfd and
 *                      epoll per worker, standard streams, files read),
 *                      and 17 more with --metrics (its listener and at
 *                      most METRICS_HTTP_CONNS connections)
 *   --max-handshakes = nofile / 64, within 256 .. 4096
 *                      (not yet authenticated; past it a new one evicts
 *                      the oldest, so a flood shortens grace times and
 *                      never locks anyone out: stranger.c)
 *   per source       = --max-handshakes / 2, at least 128 (what a few
 *                      clients' refills behind one NAT dial at once)
 *   --max-channels   = nofile - reserve - --max-handshakes
 *                      (authenticated channels: room strangers never take)
 *
 * With the hard limit of 20,000 here that is 312 handshakes (156 from one
 * address) and 19,648 channels: a tunnel holds 9,500 user connections
 * (19,000 channels) with both pools' idle channels (at most 156 each, at
 * the clients' derived --pool-max) beside them.  A value
 * given on the command line is kept as it is; the relay warns when what
 * is given does not fit the limit.
 */
#include "relay.h"

#include "daemon.h"
#include "metrics_http.h"

#include <stdio.h>

#define HANDSHAKES_SHARE 64	/* a 64th of the descriptors */
#define HANDSHAKES_MIN 256
#define HANDSHAKES_MAX 4096
/* From one address: half the budget, and never less than what a few
 * clients behind one NAT dial at once (each pool: up to 32 handshakes in
 * flight, POOL_DIALS_MAX), so that a burst of refills never hits it. */
#define SOURCE_MIN 128

static unsigned long long
reserve_of(const struct relay_config *cfg, const struct relay_options *o)
{
	return 32 + 4ULL * cfg->workers +
	    (o->metrics != NULL ? METRICS_HTTP_CONNS + 1 : 0);
}

void
limits_derive(struct relay_config *cfg, const struct relay_options *o)
{
	unsigned long long files = daemon_nofile(), reserve = reserve_of(cfg, o), h, s,
	    ch;

	h = o->max_handshakes;
	if (h == 0) {
		h = files / HANDSHAKES_SHARE;
		h = h < HANDSHAKES_MIN ? HANDSHAKES_MIN : h > HANDSHAKES_MAX ?
		    HANDSHAKES_MAX : h;
	}
	s = o->max_handshakes_source;
	if (s == 0)
		s = h / 2 < SOURCE_MIN ? SOURCE_MIN : h / 2;
	if (s > h)
		s = h;
	ch = o->max_channels;
	if (ch == 0)
		ch = files > reserve + h + 64 ? files - reserve - h : 64;
	cfg->max_handshakes = (unsigned)h;
	cfg->max_handshakes_source = (unsigned)s;
	cfg->max_channels = (unsigned)ch;
}

void
limits_log(const struct relay_config *cfg, const struct relay_options *o)
{
	unsigned long long files = daemon_nofile(), reserve = reserve_of(cfg, o);
	unsigned long long ch = cfg->max_channels, h = cfg->max_handshakes;

	log_info("limits: --max-channels %llu%s, --max-handshakes %llu%s (%u "
	    "from one address), from the open-file limit %llu (%llu kept for "
	    "the relay itself)", ch, o->max_channels ? " (given)" : "", h,
	    o->max_handshakes ? " (given)" : "", cfg->max_handshakes_source,
	    files, reserve);
	if (ch + h + reserve > files)
		log_warnx("--max-channels %llu and --max-handshakes %llu do not "
		    "fit the open-file limit %llu: at most about %llu "
		    "channels can be open (raise the limit, LimitNOFILE= "
		    "under systemd)", ch, h, files, files > reserve + h ?
		    files - reserve - h : 0);
}
