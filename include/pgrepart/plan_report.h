/*
 * plan_report.h: a plan shown to the operator.
 */
#ifndef PGREPART_PLAN_REPORT_H
#define PGREPART_PLAN_REPORT_H

#include <stdio.h>

#include "pgrepart/plan.h"

/*
 * Log why the plan blocks the migration: one error line with the first
 * blocking finding (saying when there are more) and its hint.  Nothing if
 * none block.
 */
void		plan_log_blocked(const plan *p);

/*
 * Log every blocking finding, each with its check's name and hint, after a
 * line that counts them: what run says before it creates anything.
 */
void		plan_log_blocks(const plan *p);

/* Reports: the DDL alone (runnable with psql), a text report, or JSON. */
void		plan_print_sql(const plan *p, FILE *out);
void		plan_print_text(const plan *p, FILE *out);
void		plan_print_json(const plan *p, FILE *out);

#endif
