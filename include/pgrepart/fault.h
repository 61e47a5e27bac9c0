/*
 * fault.h: named points where the test suite can stop pgrepart for a moment.
 *
 * The fault-injection suite (tests/faults.pl) kills pgrepart, restarts the
 * server or terminates its sessions at every phase, including phases that
 * last milliseconds (the swap).  To hit those it sets
 * PGREPART_FAULT_PAUSE=point[,point...] (or "all"): at each such point
 * pgrepart logs "pausing at fault point NAME" and sleeps
 * PGREPART_FAULT_PAUSE_MS (default 2000) before going on.  Without the
 * variable a point costs one branch.  A signal ends the pause early.
 */
#ifndef PGREPART_FAULT_H
#define PGREPART_FAULT_H

#include <stdbool.h>

void		fault_point(const char *name);

/*
 * Whether the test suite turned a fast path off, so that the general path
 * it stands in for is tested too: PGREPART_TEST_OFF=name[,name...].
 * "apply-batches": every update and delete goes alone, as one whose values
 * arrive as text must.
 */
bool		fault_off(const char *name);

#endif
