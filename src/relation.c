/*
 * relation.c: whether a stream's relation still matches the table it was
 * read for; see relation.h.
 */
#include <string.h>

#include "pgrepart/log.h"
#include "pgrepart/relation.h"

bool
relation_matches(const pgout_relation *rel, char *const *names, const Oid *types, int ncolumns)
{
	const char *problem = NULL;
	const char *column = NULL;
	int			n = rel->ncols < ncolumns ? rel->ncols : ncolumns;

	for (int i = 0; i < n && problem == NULL; i++)
	{
		if (strcmp(rel->columns[i].name, names[i]) != 0)
		{
			problem = "renamed, added or dropped";
			column = rel->columns[i].name;
		}
		else if (rel->columns[i].type_oid != types[i])
		{
			problem = "retyped";
			column = rel->columns[i].name;
		}
	}
	if (problem == NULL && rel->ncols != ncolumns)
	{
		problem = rel->ncols > ncolumns ? "added" : "dropped";
		column = rel->ncols > ncolumns ? rel->columns[n].name : names[n];
	}
	if (problem == NULL)
		return true;
	log_error("table \"%s.%s\" changed during the migration: column \"%s\" was %s",
			  rel->nspname, rel->relname, column, problem);
	log_detail("The shadow was built for the table's columns when the migration started.");
	log_hint("Abort the migration (pgrepart abort), then plan and run it again.");
	return false;
}

