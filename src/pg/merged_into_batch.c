/*
 * merged_into_batch.c
 *		Follow leadmgmt.lead.merged_into for many leads at once
 *		(merged_into_batch.h says what, how, and the cost).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/memutils.h"

#include "leadmgmt.h"
#include "pg/kept_plan.h"
#include "pg/merged_into.h"
#include "pg/merged_into_batch.h"

static int
id_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

int
lm_sort_unique_ids(int64 *ids, int n)
{
	int			m = 0;
	int			i;

	if (n == 0)
		return 0;
	qsort(ids, n, sizeof(int64), id_cmp);
	for (i = 1; i < n; i++)
		if (ids[i] != ids[m])
			ids[++m] = ids[i];
	return m + 1;
}

static int
move_cmp(const void *a, const void *b)
{
	return id_cmp(&((const LmLeadMove *) a)->from, &((const LmLeadMove *) b)->from);
}

int64
lm_lead_map_get(const LmLeadMap *map, int64 id)
{
	LmLeadMove	key;
	LmLeadMove *found;

	if (map->n == 0)
		return id;
	key.from = id;
	found = bsearch(&key, map->moves, map->n, sizeof(LmLeadMove), move_cmp);
	return found ? found->to : id;
}

void
lm_merged_into_walk(LmLeadMap *map, int64 *ids, int n, LmMergedIntoHop hop, void *arg)
{
	int			first = map->n;
	LmLeadMove *out;
	int			hops;
	int			j;

	n = lm_sort_unique_ids(ids, n);
	out = palloc_extended(sizeof(LmLeadMove) * Max(n, 1), MCXT_ALLOC_HUGE);
	for (hops = 0; n > 0; hops++)
	{
		int			k;
		int			i;

		if (hops >= LM_MERGED_INTO_MAX_HOPS)
			lm_merged_into_cycle_error(ids[0]);
		k = hop(ids, n, out, arg);
		for (i = 0; i < k; i++)
		{
			if (hops == 0)
			{
				if (map->n == map->cap)
				{
					map->cap = map->cap ? map->cap * 2 : 16;
					map->moves = map->moves == NULL ?
						palloc_extended(sizeof(LmLeadMove) * map->cap, MCXT_ALLOC_HUGE) :
						repalloc_huge(map->moves, sizeof(LmLeadMove) * map->cap);
				}
				map->moves[map->n++] = out[i];
			}
			else
			{
				/* one hop further for every lead that resolved to from */
				for (j = first; j < map->n; j++)
					if (map->moves[j].to == out[i].from)
						map->moves[j].to = out[i].to;
			}
			ids[i] = out[i].to;
		}
		n = lm_sort_unique_ids(ids, k);
	}
	pfree(out);
	if (map->n == first)
		return;
	qsort(map->moves, map->n, sizeof(LmLeadMove), move_cmp);
	/* a lead merged since an earlier walk: the leads that resolved to it follow */
	for (j = 0; j < map->n; j++)
	{
		int64		to = map->moves[j].to;

		for (hops = 0;; hops++)
		{
			int64		next = lm_lead_map_get(map, to);

			if (next == to)
				break;
			if (hops >= LM_MERGED_INTO_MAX_HOPS)
				lm_merged_into_cycle_error(map->moves[j].from);
			to = next;
		}
		map->moves[j].to = to;
	}
}

int
lm_merged_into_hop_spi(const int64 *ids, int n, LmLeadMove *out, void *arg)
{
	static SPIPlanPtr plan = NULL;
	Oid			type = INT8ARRAYOID;
	Datum	   *d = palloc_extended(sizeof(Datum) * Max(n, 1), MCXT_ALLOC_HUGE);
	Datum		param;
	uint64		i;
	int			k = 0;

	for (i = 0; i < (uint64) n; i++)
		d[i] = Int64GetDatum(ids[i]);
	param = PointerGetDatum(construct_array(d, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
											TYPALIGN_DOUBLE));
	/* not read-only: the caller's earlier writes of this command must show */
	if (SPI_execute_plan(lm_kept_plan(&plan,
									  "SELECT l.id, l.merged_into FROM leadmgmt.lead l "
									  "WHERE l.id OPERATOR(pg_catalog.=) ANY ($1) "
									  "AND l.merged_into IS NOT NULL",
									  1, &type),
						 &param, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read leadmgmt.lead.merged_into");
	for (i = 0; i < SPI_processed && k < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		out[k].from = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		out[k].to = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		k++;
	}
	SPI_freetuptable(SPI_tuptable);
	pfree(d);
	return k;
}
