/* visibility.c: the backfill's visibility rule; see visibility.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pgrepart/catalog.h"
#include "pgrepart/mem.h"
#include "pgrepart/visibility.h"

#define VISIBILITY_UUIDOID 2950

static bool
visibility_parse_xid(const char **p, uint64_t *out)
{
	char	   *end;
	unsigned long long v;

	if (**p < '0' || **p > '9')
		return false;
	errno = 0;
	v = strtoull(*p, &end, 10);
	if (errno != 0)
		return false;
	*out = v;
	*p = end;
	return true;
}

bool
visibility_parse_snapshot(const char *text, visibility_snapshot *s)
{
	visibility_snapshot r = {0};
	const char *p = text;

	if (!visibility_parse_xid(&p, &r.xmin) || *p++ != ':' ||
		!visibility_parse_xid(&p, &r.xmax) || *p++ != ':' || r.xmin > r.xmax)
		return false;
	while (*p != '\0')
	{
		uint64_t	xid;

		if (!visibility_parse_xid(&p, &xid) || (*p != ',' && *p != '\0') ||
			xid < r.xmin || xid >= r.xmax || (r.nxip > 0 && xid <= r.xip[r.nxip - 1]))
		{
			free(r.xip);
			return false;
		}
		ARRAY_PUSH(r.xip, r.nxip, xid);
		if (*p == ',')
			p++;
	}
	*s = r;
	return true;
}

void
visibility_snapshot_free(visibility_snapshot *s)
{
	free(s->xip);
	s->xip = NULL;
	s->nxip = 0;
}

uint64_t
visibility_widen_xid(uint32_t xid, uint64_t near)
{
	const uint64_t epoch = UINT64_C(1) << 32;
	uint64_t	full = (near & ~(epoch - 1)) | xid;

	if (full > near && full - near > epoch / 2 && full >= epoch)
		full -= epoch;			/* from the epoch before near's */
	else if (full < near && near - full > epoch / 2)
		full += epoch;			/* from the next epoch */
	return full;
}

bool
visibility_visible(const visibility_snapshot *s, uint32_t xid)
{
	uint64_t	full = visibility_widen_xid(xid, s->xmax);
	int			lo = 0, hi = s->nxip - 1;

	if (full < s->xmin)
		return true;
	if (full >= s->xmax)
		return false;
	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (s->xip[mid] == full)
			return false;
		if (s->xip[mid] < full)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return true;
}

bool
visibility_orderable_type(Oid type)
{
	return type == VISIBILITY_UUIDOID || catalog_integer_like(type);
}

/* A big-endian signed integer of len bytes (2, 4 or 8). */
static int64_t
visibility_signed(const uint8_t *p, uint32_t len)
{
	uint64_t	v = 0;

	for (uint32_t i = 0; i < len; i++)
		v = (v << 8) | p[i];
	if (len < 8 && (p[0] & 0x80))
		v |= ~UINT64_C(0) << (len * 8);		/* sign-extend */
	return (int64_t) v;
}

int
visibility_compare(Oid type, const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
	if (type == VISIBILITY_UUIDOID)
	{
		/* uuid_cmp is memcmp over the 16 bytes. */
		int			c = memcmp(a, b, alen < blen ? alen : blen);

		return c != 0 ? c : (alen > blen) - (alen < blen);
	}
	/*
	 * Integers, dates (int4 days) and timestamps (int8 microseconds, with
	 * infinity as the extreme values) order as signed big-endian integers.
	 */
	{
		int64_t		x = visibility_signed(a, alen);
		int64_t		y = visibility_signed(b, blen);

		return (x > y) - (x < y);
	}
}

int
visibility_compare_key(int nkeys, const Oid *types, const uint8_t *const *a, const uint32_t *alens,
					   const uint8_t *const *b, const uint32_t *blens)
{
	for (int i = 0; i < nkeys; i++)
	{
		int			c = visibility_compare(types[i], a[i], alens[i], b[i], blens[i]);

		if (c != 0)
			return c;
	}
	return 0;
}
