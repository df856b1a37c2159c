#include "wire.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "batch.h"
#include "frame.h"
#include "tls.h"

int
wire_send(struct bufferevent *bev, uint8_t type, const void *payload,
    size_t len)
{
	if (frame_write(bufferevent_get_output(bev), type, payload, len) == -1)
		return -1;
	bev_kick_write(bev);
	return 0;
}

int
wire_send_auth_result(struct bufferevent *bev, uint8_t code)
{
	uint8_t payload[AUTH_RESULT_LEN];

	auth_result_encode(code, payload);
	return wire_send(bev, FRAME_AUTH_RESULT, payload, sizeof(payload));
}

int
wire_send_open_result(struct bufferevent *bev, uint8_t code,
    const char *text)
{
	struct open_result_msg m;
	uint8_t payload[1 + OPEN_RESULT_TEXT_MAX];
	size_t len;

	memset(&m, 0, sizeof(m));
	m.code = code;
	snprintf(m.text, sizeof(m.text), "%s", text);
	len = open_result_encode(&m, payload);
	return wire_send(bev, FRAME_OPEN_RESULT, payload, len);
}

int
wire_flushed(struct bufferevent *bev)
{
	return batch_unsent(bev) == 0;
}

int
wire_close_after_flush(struct bufferevent *bev, int seconds,
    bufferevent_data_cb writecb, bufferevent_event_cb eventcb, void *arg)
{
	struct timeval tv = { seconds, 0 };

	if (wire_flushed(bev))
		return 1;
	(void)bufferevent_disable(bev, EV_READ);
	/* No low mark: the write callback runs when the output is empty. */
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_setcb(bev, NULL, writecb, eventcb, arg);
	/* The bufferevent's timeout bounds its output; the batch's deadline
	 * bounds what already left the output for the batch. */
	if (bufferevent_set_timeouts(bev, NULL, &tv) == -1)
		return -1;
	batch_set_deadline(bev, seconds);
	if (bufferevent_enable(bev, EV_WRITE) == -1)
		return -1;
	bev_kick_write(bev);
	return 0;
}

void
wire_watermarks_splice(struct bufferevent *bev)
{
	bufferevent_setwatermark(bev, EV_WRITE, WIRE_LOW_WATER, 0);
	bufferevent_setwatermark(bev, EV_READ, 0, WIRE_READ_HIGH_WATER);
}

void
wire_watermarks_idle(struct bufferevent *bev)
{
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
}
