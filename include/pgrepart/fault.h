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

void		fault_point(const char *name);

#endif
