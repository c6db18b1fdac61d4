/* cw_engine_test.h - test-only hooks of the rental engine. Included by unit
 * tests and by cw_engine.c; never by the daemon or other modules. */
#ifndef CW_ENGINE_TEST_H
#define CW_ENGINE_TEST_H

#include <stdint.h>

/* Moves the engine's wall and monotonic clocks of every engine in the
 * process forward by ms (timeouts, overdue) without sleeping. */
void cw_engine_test_advance_clock(int64_t ms);

#endif
