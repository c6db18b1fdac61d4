/* sim_pace.c - the wire: frames requests on the pty, lets the board logic
 * answer, applies the wire faults and paces the replies at the baud rate.
 *
 * Wire model (BRIEF.md §3): 8N1 = 10 bits per character, so one character
 * takes 10/baud s (0.52 ms at 19200). A board may start its reply only after
 * the request's own wire time plus a 3.5-character silence, counted from the
 * arrival of the request's first byte (a pty delivers the request at once, so
 * we add the time a real wire would have needed). Reply bytes go out one per
 * character time on absolute CLOCK_MONOTONIC deadlines, so nothing drifts.
 *
 * Two threads: the reader frames requests and lets the board logic answer at
 * once (state changes happen when the request arrives); each reply is then
 * queued with its own start time, and the writer thread puts queued bytes on
 * the pty when they are due. Boards thus answer independently: a slow board's
 * late reply does not delay the others, and if it overlaps another reply the
 * two interleave on the wire, as two real transmitters would collide. */
#include "sim.h"

#include "cw_error.h"
#include "cw_kerong.h"
#include "cw_log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <termios.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000LL
/* Without pacing a Modbus frame still ends at a silence: keep it short. */
#define NOPACE_SILENCE_NS 1000000LL
/* A reader that does not drain the pty must not block the wire thread. */
#define WRITE_STALL_MS 200
/* Replies in flight at once; more means the master floods a slow board. */
#define SIM_MAX_PENDING 8

struct pending {
	uint8_t b[SIM_MAX_FRAME + 1];
	size_t len, pos;
	int64_t start; /* ns: reply may start; byte i is complete at start+(i+1)*char */
};

/* Bytes of one reply taken off the queue for one unlocked write. */
struct chunk {
	uint8_t b[SIM_MAX_FRAME + 1];
	size_t len;
	int idx; /* index in pend[] */
	bool failed;
};

struct sim_wire {
	struct sim *s;
	int fd;
	int slave;          /* our own slave fd (keeps termios; flushed on reopen) */
	int ino;            /* inotify on the slave device: who opens it */
	int stop[2];
	pthread_t th;
	bool started;
	int64_t char_ns;    /* one character on the wire */
	int64_t silence_ns; /* end-of-frame silence */
	uint8_t buf[SIM_MAX_FRAME];
	size_t len;
	int64_t t0;         /* arrival of the current frame's first byte, ns */
	/* reply queue, guarded by qlock */
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	pthread_t writer;
	bool writer_started, stopping;
	int npend;
	struct pending pend[SIM_MAX_PENDING];
	struct chunk out[SIM_MAX_PENDING]; /* writer thread only, no lock */
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void sleep_until_ns(int64_t t)
{
	struct timespec ts = {.tv_sec = (time_t)(t / NS_PER_S), .tv_nsec = (long)(t % NS_PER_S)};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static bool stop_requested(struct sim_wire *w)
{
	struct pollfd p = {.fd = w->stop[0], .events = POLLIN};

	return poll(&p, 1, 0) > 0;
}

/* Writes all of p, waiting a little for a slow reader; drops the rest of a
 * reply nobody reads rather than blocking the simulator. */
static int write_all(struct sim_wire *w, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(w->fd, p, n);

		if (k > 0) {
			p += k;
			n -= (size_t)k;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN) {
			struct pollfd pf = {.fd = w->fd, .events = POLLOUT};

			if (poll(&pf, 1, WRITE_STALL_MS) > 0)
				continue;
		}
		cw_warn("sim.write_dropped", "bytes=%zu err=\"%s\"", n,
			k < 0 ? strerror(errno) : "short write");
		return CW_ERR_IO;
	}
	return CW_OK;
}

/* Fault "dup": a second board answers the same address one bit time later.
 * The receiver sees the two bit streams mixed; modelled as the OR of the frame
 * and itself delayed by one bit (UART sends LSB first, idle line = 1). The
 * result never keeps the first byte (Modbus slave id, Kerong STX) and never
 * contains 0x02, so the master always sees a bad frame. */
static void garble(uint8_t *r, size_t n)
{
	uint8_t prev = 0x80; /* idle line before the first byte */

	for (size_t i = 0; i < n; i++) {
		uint8_t cur = r[i];

		r[i] = (uint8_t)(cur | (uint8_t)(cur << 1) | (prev >> 7));
		prev = cur;
	}
}

/* Queues one reply. first_ns = arrival of the request's first byte. */
static void queue_reply(struct sim_wire *w, const uint8_t *rsp, size_t n, size_t req_len,
			int64_t first_ns, int slow_ms)
{
	int64_t start;
	struct pending *p;

	if (w->s->opt.pace)
		start = first_ns + (int64_t)req_len * w->char_ns + w->char_ns * 7 / 2;
	else
		start = now_ns();
	start += (int64_t)slow_ms * 1000000;
	pthread_mutex_lock(&w->qlock);
	if (w->npend == SIM_MAX_PENDING) {
		pthread_mutex_unlock(&w->qlock);
		cw_warn("sim.reply_dropped", "reason=queue_full pending=%d", SIM_MAX_PENDING);
		return;
	}
	p = &w->pend[w->npend++];
	memcpy(p->b, rsp, n);
	p->len = n;
	p->pos = 0;
	p->start = start;
	pthread_cond_signal(&w->qcond);
	pthread_mutex_unlock(&w->qlock);
}

/* When byte pos of p is due (ns). Without pacing a reply goes out whole. */
static int64_t due_ns(const struct sim_wire *w, const struct pending *p, size_t pos)
{
	if (!w->s->opt.pace)
		return p->start;
	return p->start + (int64_t)(pos + 1) * w->char_ns;
}

static void *writer_main(void *arg)
{
	struct sim_wire *w = arg;
	struct chunk *out = w->out;
	int nout;

	pthread_mutex_lock(&w->qlock);
	while (!w->stopping) {
		int64_t next = INT64_MAX, now;

		if (w->npend == 0) {
			pthread_cond_wait(&w->qcond, &w->qlock);
			continue;
		}
		for (int i = 0; i < w->npend; i++) {
			int64_t d = due_ns(w, &w->pend[i], w->pend[i].pos);

			if (d < next)
				next = d;
		}
		now = now_ns();
		if (next - now > 2000000) {
			/* Far away (slow fault): wait on the condition so a new,
			 * earlier reply or a stop request wakes us. */
			int64_t until = next - 1000000;
			struct timespec ts = {.tv_sec = (time_t)(until / NS_PER_S),
					      .tv_nsec = (long)(until % NS_PER_S)};

			pthread_cond_timedwait(&w->qcond, &w->qlock, &ts);
			continue;
		}
		/* New replies start >= 3.5 characters after their request, so
		 * nothing can become due before next while we sleep unlocked. */
		pthread_mutex_unlock(&w->qlock);
		if (next > now)
			sleep_until_ns(next);
		pthread_mutex_lock(&w->qlock);
		now = now_ns();
		/* Take the due bytes out under the lock, write them without it:
		 * write_all may wait up to WRITE_STALL_MS for a slow reader, and
		 * the reader thread must meanwhile be able to queue replies. */
		nout = 0;
		for (int i = 0; i < w->npend; i++) {
			struct pending *p = &w->pend[i];
			size_t from = p->pos;

			while (p->pos < p->len && due_ns(w, p, p->pos) <= now)
				p->pos++;
			if (p->pos > from) {
				memcpy(out[nout].b, p->b + from, p->pos - from);
				out[nout].len = p->pos - from;
				out[nout].idx = i;
				nout++;
			}
		}
		pthread_mutex_unlock(&w->qlock);
		for (int k = 0; k < nout; k++)
			out[k].failed = write_all(w, out[k].b, out[k].len) < 0;
		pthread_mutex_lock(&w->qlock);
		/* Only this thread removes or moves entries; queue_reply only
		 * appends. So the indexes taken above still name the same
		 * replies. */
		for (int k = 0; k < nout; k++) {
			struct pending *p = &w->pend[out[k].idx];

			if (out[k].failed)
				p->pos = p->len; /* nobody reads: drop the rest */
		}
		for (int i = 0; i < w->npend;) {
			if (w->pend[i].pos == w->pend[i].len)
				w->pend[i] = w->pend[--w->npend];
			else
				i++;
		}
	}
	pthread_mutex_unlock(&w->qlock);
	return NULL;
}

/* Answers one request frame addressed to addr (Modbus slave id or Kerong
 * board number). Board logic runs under the lock; the pacing does not. */
static void dispatch(struct sim_wire *w, const uint8_t *req, size_t req_len,
		     const struct cw_kr_frame *kf, int addr)
{
	struct sim *s = w->s;
	uint8_t rsp[SIM_MAX_FRAME + 1];
	struct sim_board *b;
	int n = 0, slow = 0;
	bool zero;

	pthread_mutex_lock(&s->lock);
	if (s->opt.protocol == SIM_MODBUS && addr == 0) {
		/* Broadcast: every board acts, none answers (Modbus spec 2.1). */
		s->requests++;
		for (int i = 0; i < s->nboards; i++)
			if (!s->board[i].silent)
				sim_modbus_handle(s, &s->board[i], req, req_len, rsp, sizeof(rsp));
		pthread_mutex_unlock(&s->lock);
		return;
	}
	b = sim_board_find(s, addr);
	if (!b) {
		pthread_mutex_unlock(&s->lock);
		cw_debug("sim.foreign_frame", "addr=%d len=%zu", addr, req_len);
		return;
	}
	s->requests++;
	if (b->silent) {
		pthread_mutex_unlock(&s->lock);
		cw_debug("sim.silent", "board=%d", addr);
		return;
	}
	if (s->opt.protocol == SIM_MODBUS)
		n = sim_modbus_handle(s, b, req, req_len, rsp + 1, sizeof(rsp) - 1);
	else
		n = sim_kerong_handle(s, b, kf, rsp + 1, sizeof(rsp) - 1);
	if (n <= 0) {
		if (n == 0 && s->opt.protocol == SIM_MODBUS)
			s->garbage++; /* libmodbus refused the frame (CRC, length) */
		pthread_mutex_unlock(&s->lock);
		return;
	}
	if (b->crc)
		rsp[n] ^= 0xff; /* last byte = Modbus CRC high / Kerong SUM */
	if (b->dup)
		garble(rsp + 1, (size_t)n);
	slow = b->slow_ms;
	zero = s->zero;
	s->replies++;
	pthread_mutex_unlock(&s->lock);

	cw_debug("sim.reply", "board=%d len=%d", addr, n);
	if (zero) {
		rsp[0] = 0x00; /* Pi UART artefact after the direction switch */
		queue_reply(w, rsp, (size_t)n + 1, req_len, w->t0, slow);
	} else {
		queue_reply(w, rsp + 1, (size_t)n, req_len, w->t0, slow);
	}
}

static void drop(struct sim_wire *w, size_t k)
{
	if (k >= w->len) {
		w->len = 0;
		return;
	}
	memmove(w->buf, w->buf + k, w->len - k);
	w->len -= k;
}

/* Kerong frames carry their own length: answer as soon as one is complete. */
static void kerong_frames(struct sim_wire *w)
{
	struct cw_kr_frame f;
	size_t used;
	int rc;

	while (w->len > 0) {
		rc = cw_kr_decode(w->buf, w->len, &f, &used);
		if (rc == CW_OK) {
			size_t flen = used;

			dispatch(w, w->buf, flen, &f, f.addr >> 4);
			drop(w, used);
			w->t0 = now_ns();
		} else if (rc == CW_ERR_PROTO) {
			pthread_mutex_lock(&w->s->lock);
			w->s->garbage++;
			pthread_mutex_unlock(&w->s->lock);
			cw_debug("sim.bad_frame", "dropped=%zu", used);
			drop(w, used);
		} else {
			drop(w, used); /* noise before STX */
			return;
		}
	}
}

/* End of frame by silence: Modbus frames are answered here; for Kerong a
 * partial frame followed by silence is dropped. */
static void frame_end(struct sim_wire *w)
{
	if (w->s->opt.protocol == SIM_MODBUS) {
		if (w->len >= 4) /* address, function, CRC: shortest possible ADU */
			dispatch(w, w->buf, w->len, NULL, w->buf[0]);
		else {
			pthread_mutex_lock(&w->s->lock);
			w->s->garbage++;
			pthread_mutex_unlock(&w->s->lock);
		}
	} else if (w->len > 0) {
		pthread_mutex_lock(&w->s->lock);
		w->s->garbage++;
		pthread_mutex_unlock(&w->s->lock);
		cw_debug("sim.partial_frame", "dropped=%zu", w->len);
	}
	w->len = 0;
}

/* A new opener of the link gets a clean line, as a real serial port gives
 * after its last close: bytes it left unread (a late reply, garbage) are
 * discarded. Within one open session stale bytes stay, as on real hardware.
 * Runs before the new opener's request is read, because its open() is queued
 * on the inotify fd before its write() reaches the master. */
static void on_open_event(struct sim_wire *w)
{
	char ev[sizeof(struct inotify_event) + 256]
		__attribute__((aligned(__alignof__(struct inotify_event))));
	bool opened = false;
	ssize_t n;

	while ((n = read(w->ino, ev, sizeof(ev))) > 0) {
		for (char *p = ev; p < ev + n;) {
			const struct inotify_event *e = (const struct inotify_event *)p;

			if (e->mask & IN_OPEN)
				opened = true;
			p += sizeof(*e) + e->len;
		}
	}
	if (opened) {
		tcflush(w->slave, TCIFLUSH);
		cw_debug("sim.link_open", "flushed=1");
	}
}

static void *wire_main(void *arg)
{
	struct sim_wire *w = arg;
	int64_t last = 0;

	for (;;) {
		struct pollfd pf[3] = {{.fd = w->fd, .events = POLLIN},
				       {.fd = w->stop[0], .events = POLLIN},
				       {.fd = w->ino, .events = POLLIN}};
		struct timespec to, *pto = NULL;
		int rc;

		if (w->len > 0) {
			int64_t left = last + w->silence_ns - now_ns();

			if (left <= 0) {
				frame_end(w);
				continue;
			}
			to.tv_sec = (time_t)(left / NS_PER_S);
			to.tv_nsec = (long)(left % NS_PER_S);
			pto = &to;
		}
		rc = ppoll(pf, w->ino >= 0 ? 3 : 2, pto, NULL);
		if (rc < 0 && errno != EINTR)
			break;
		if (pf[1].revents)
			break;
		if (rc <= 0)
			continue;
		if (w->ino >= 0 && (pf[2].revents & POLLIN))
			on_open_event(w);
		if (pf[0].revents & POLLIN) {
			ssize_t k;

			if (w->len == sizeof(w->buf)) {
				/* Longer than any frame of either protocol: noise. */
				cw_debug("sim.overflow", "dropped=%zu", w->len);
				w->len = 0;
			}
			k = read(w->fd, w->buf + w->len, sizeof(w->buf) - w->len);
			if (k > 0) {
				last = now_ns();
				if (w->len == 0)
					w->t0 = last;
				w->len += (size_t)k;
				if (w->s->opt.protocol == SIM_KERONG)
					kerong_frames(w);
			} else if (k < 0 && errno != EAGAIN && errno != EINTR) {
				/* EIO while no one holds the slave: wait, retry. */
				if (stop_requested(w))
					break;
				poll(NULL, 0, 10);
			}
		} else if (pf[0].revents & (POLLHUP | POLLERR)) {
			poll(NULL, 0, 10);
		}
	}
	return NULL;
}

int sim_wire_new(struct sim *s, int ptyfd, int slavefd, const char *pty, struct sim_wire **out)
{
	struct sim_wire *w;
	int rc = CW_OK;

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return CW_ERR_NOMEM;
	w->s = s;
	w->fd = ptyfd;
	w->slave = slavefd;
	w->stop[0] = w->stop[1] = -1;
	w->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->ino >= 0 && inotify_add_watch(w->ino, pty, IN_OPEN) < 0) {
		cw_warn("sim.inotify", "pty=%s err=\"%s\"", pty, strerror(errno));
		close(w->ino);
		w->ino = -1;
	}
	w->char_ns = 10LL * NS_PER_S / s->opt.baud; /* 8N1: 10 bits per character */
	w->silence_ns = s->opt.pace ? w->char_ns * 7 / 2 : NOPACE_SILENCE_NS;
	{
		pthread_condattr_t ca;

		pthread_mutex_init(&w->qlock, NULL);
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* timedwait deadlines */
		pthread_cond_init(&w->qcond, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (pipe2(w->stop, O_CLOEXEC) < 0) {
		rc = CW_ERR_IO;
		goto out;
	}
	if (pthread_create(&w->writer, NULL, writer_main, w) != 0) {
		rc = CW_ERR_IO;
		goto out;
	}
	w->writer_started = true;
	if (pthread_create(&w->th, NULL, wire_main, w) != 0) {
		rc = CW_ERR_IO;
		goto out;
	}
	w->started = true;
out:
	if (rc < 0) {
		sim_wire_free(w);
		return rc;
	}
	*out = w;
	return CW_OK;
}

void sim_wire_free(struct sim_wire *w)
{
	if (!w)
		return;
	if (w->started) {
		ssize_t k = write(w->stop[1], "x", 1);

		(void)k;
		pthread_join(w->th, NULL);
	}
	if (w->writer_started) {
		pthread_mutex_lock(&w->qlock);
		w->stopping = true;
		pthread_cond_signal(&w->qcond);
		pthread_mutex_unlock(&w->qlock);
		pthread_join(w->writer, NULL);
	}
	pthread_cond_destroy(&w->qcond);
	pthread_mutex_destroy(&w->qlock);
	if (w->ino >= 0)
		close(w->ino);
	if (w->stop[0] >= 0)
		close(w->stop[0]);
	if (w->stop[1] >= 0)
		close(w->stop[1]);
	free(w);
}
