/* sim_board.c - board state and lock physics of the simulator.
 *
 * Physics (docs/PROTOCOL.md, "Simulator"): a release opens the hook unless
 * the lock is stuck; a cart can be taken only while its hook is open;
 * docking a cart closes the hook (locks close mechanically, BRIEF.md §3). */
#include "sim.h"

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"

#include <stdlib.h>
#include <string.h>

int sim_new(const struct sim_opts *opt, struct sim **out)
{
	struct sim *s;

	*out = NULL;
	if (opt->nboards < 1 || opt->nboards > SIM_MAX_BOARDS)
		return CW_ERR_INVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CW_ERR_NOMEM;
	s->opt = *opt;
	pthread_mutex_init(&s->lock, NULL);
	s->nboards = opt->nboards;
	for (int i = 0; i < s->nboards; i++) {
		struct sim_board *b = &s->board[i];

		b->addr = opt->board_addr[i];
		b->locks = opt->board_locks[i] ? opt->board_locks[i] : opt->default_locks;
		b->unlock_time = 50; /* 500 ms: our assumption, see PROTOCOL.md */
		b->sp[0] = b->sp[1] = -1;
		/* Initial state: every slot holds a cart, hook closed. */
		for (int l = 0; l < b->locks; l++) {
			b->slot[l].present = true;
			b->slot[l].hook_closed = true;
		}
	}
	*out = s;
	return CW_OK;
}

void sim_free(struct sim *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

struct sim_board *sim_board_find(struct sim *s, int addr)
{
	for (int i = 0; i < s->nboards; i++)
		if (s->board[i].addr == addr)
			return &s->board[i];
	return NULL;
}

void sim_release(struct sim *s, struct sim_board *b, int lock)
{
	struct sim_slot *sl;
	int64_t now = cw_mono_ms();

	if (lock < 0 || lock >= b->locks)
		return;
	sl = &b->slot[lock];
	sl->releases++;
	s->releases++;
	if (sl->stuck) {
		cw_info("sim.release", "board=%d lock=%d stuck=1 hook=closed", b->addr, lock);
		return;
	}
	sl->hook_closed = false;
	sl->relatch_at = 0;
	sl->take_at = 0;
	if (sl->present) {
		if (s->opt.relatch_ms > 0)
			sl->relatch_at = now + s->opt.relatch_ms;
		if (s->opt.auto_take_ms > 0)
			sl->take_at = now + s->opt.auto_take_ms;
	}
	cw_info("sim.release", "board=%d lock=%d present=%d hook=open releases=%llu", b->addr,
		lock, sl->present ? 1 : 0, (unsigned long long)sl->releases);
}

int sim_take(struct sim *s, struct sim_board *b, int lock)
{
	struct sim_slot *sl = &b->slot[lock];

	(void)s;
	if (!sl->present)
		return CW_ERR_NOCART;
	if (sl->hook_closed)
		return CW_ERR_STATE;
	sl->present = false;
	sl->relatch_at = 0;
	sl->take_at = 0;
	cw_info("sim.take", "board=%d lock=%d", b->addr, lock);
	return CW_OK;
}

int sim_dock(struct sim *s, struct sim_board *b, int lock)
{
	struct sim_slot *sl = &b->slot[lock];

	(void)s;
	if (sl->present)
		return CW_ERR_CONFLICT;
	sl->present = true;
	sl->hook_closed = true; /* the lock closes mechanically on the cart */
	sl->relatch_at = 0;
	sl->take_at = 0;
	cw_info("sim.dock", "board=%d lock=%d", b->addr, lock);
	return CW_OK;
}

void sim_empty(struct sim *s, struct sim_board *b, int lock)
{
	struct sim_slot *sl = &b->slot[lock];

	(void)s;
	sl->present = false;
	sl->hook_closed = false;
	sl->relatch_at = 0;
	sl->take_at = 0;
	cw_info("sim.empty", "board=%d lock=%d", b->addr, lock);
}

void sim_board_bits(const struct sim_board *b, uint32_t *hook, uint32_t *present)
{
	uint32_t h = 0, p = 0;

	for (int l = 0; l < b->locks; l++) {
		if (b->slot[l].hook_closed)
			h |= 1u << l;
		if (b->slot[l].present)
			p |= 1u << l;
	}
	*hook = h;
	*present = p;
}

static int64_t earliest(int64_t next, int64_t t)
{
	if (t > 0 && (next == 0 || t < next))
		return t;
	return next;
}

int64_t sim_tick(struct sim *s, int64_t now)
{
	int64_t next = 0;

	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->nboards; i++) {
		struct sim_board *b = &s->board[i];

		for (int l = 0; l < b->locks; l++) {
			struct sim_slot *sl = &b->slot[l];
			bool take_due = sl->take_at > 0 && sl->take_at <= now;
			bool relatch_due = sl->relatch_at > 0 && sl->relatch_at <= now;

			/* Both due: the earlier one wins, the other becomes moot. */
			if (take_due && (!relatch_due || sl->take_at <= sl->relatch_at)) {
				sl->take_at = 0;
				sl->relatch_at = 0;
				if (sl->present && !sl->hook_closed) {
					sl->present = false;
					cw_info("sim.auto_take", "board=%d lock=%d", b->addr, l);
				}
			} else if (relatch_due) {
				sl->relatch_at = 0;
				sl->take_at = 0;
				if (sl->present && !sl->hook_closed) {
					sl->hook_closed = true;
					cw_info("sim.relatch", "board=%d lock=%d", b->addr, l);
				}
			}
			next = earliest(next, sl->take_at);
			next = earliest(next, sl->relatch_at);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return next;
}
