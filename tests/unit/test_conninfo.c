/* Unit tests for db_mask_password: what ps would show of a conninfo. */
#include <stdlib.h>
#include <string.h>

#include "pgrepart/db.h"
#include "pgrepart/mem.h"
#include "tap.h"

static void
check(const char *in, const char *want)
{
	char	   *s = xstrdup(in);

	db_mask_password(s);
	is_str(s, want, in);
	free(s);
}

int
main(void)
{
	check("host=db password=s3cret dbname=app", "host=db password=xxxxxx dbname=app");
	check("password = s3cret", "password = xxxxxx");
	check("host=db password='it\\'s' user=u", "host=db password='xxxxx' user=u");
	check("password='a b\\'c' user=u", "password='xxxxxx' user=u");
	check("passwordx=keep password=go", "passwordx=keep password=xx");
	check("host=db dbname=app", "host=db dbname=app");
	check("postgresql://u:s3cret@db:5432/app", "postgresql://u:xxxxxx@db:5432/app");
	check("postgres://u@db/app?password=s3cret&sslmode=require",
		  "postgres://u@db/app?password=xxxxxx&sslmode=require");
	check("postgresql://db/app", "postgresql://db/app");
	check("postgresql://u:p@ss@db/app", "postgresql://u:xxxx@db/app");
	check("app", "app");
	check("", "");
	return tap_done();
}
