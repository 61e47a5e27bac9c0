/* main.c: pgrepart's entry point; everything happens in cli.c. */
#include "pgrepart/cli.h"

int
main(int argc, char **argv)
{
	return cli_main(argc, argv);
}
