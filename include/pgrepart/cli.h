/*
 * cli.h: the command line.  Only this layer (and main) decides exit codes.
 */
#ifndef PGREPART_CLI_H
#define PGREPART_CLI_H

/* Exit codes, documented in docs/commands.md. */
typedef enum cli_exit
{
	EXIT_OK = 0,				/* done */
	EXIT_FAIL = 1,				/* failed: the message says what and what to do */
	EXIT_USAGE = 2,				/* bad command line */
	EXIT_DIFFERENT = 3,			/* verify: the tables differ */
	EXIT_BLOCKED = 4,			/* plan, run: a preflight check blocks the migration */
	EXIT_STOPPED = 5,			/* run: stopped on request; run again to resume */
	EXIT_NOTHING = 6			/* status: no migration found */
} cli_exit;

int			cli_main(int argc, char **argv);

#endif
