/*-------------------------------------------------------------------------
 *
 * order.c
 *	  alexandrite.price_order: quote a new order, keep the quote, set the
 *	  price and move the order to 'priced', in one write of the order.
 *
 * The order is locked and checked by the order core; the quote comes from
 * price_quote() (quote.c) with the current price list; then one statement
 * writes the quote row, the price and status of the order (one UPDATE) and
 * the order_events row, and the events order.status_changed and
 * order.priced follow (src/core/orders.c).  order.priced is emitted here and only
 * here: it means "a price was set", never merely "the status is priced".
 *
 * IDENTIFICATION
 *	  src/pricing/order.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "core/core.h"

static AlxPlan quote_plan = {
	"SELECT q.total, q.currency, q.metal_weight_g, q.metal_cost, q.labour_cost, q.finishing_cost,"
	"       q.price_list_version, q.breakdown, m.sha256,"
	"       (q.breakdown OPERATOR(pg_catalog.->>) 'needs_review')::pg_catalog.bool,"
	"       (SELECT pg_catalog.string_agg(w, ', ')"
	"          FROM pg_catalog.jsonb_array_elements_text(q.breakdown OPERATOR(pg_catalog.->) 'warnings') AS w)"
	"  FROM alexandrite.price_quote($1, $2, $3) q, alexandrite.meshes m"
	" WHERE m.id OPERATOR(pg_catalog.=) $1",
	3, {INT8OID, TEXTOID, JSONBOID}
};

/* The value of a key of a JSON object as ->> gives it, or NULL. */
static char *
option_text(Jsonb *opts, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	if (!JB_ROOT_IS_OBJECT(opts) || JB_ROOT_IS_SCALAR(opts))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&opts->root, JB_FOBJECT, &k);
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvBool)
		return pstrdup(v->val.boolean ? "true" : "false");
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
}

/* Checks that a locked order can be priced with these options. */
static void
check_priceable(const AlxOrderRow *row, Jsonb *opts)
{
	if (row->status != ALX_ST_NEW)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot price order " INT64_FORMAT " in status \"%s\"",
						row->id, AlxStatusNames[row->status]),
				 errhint("Only orders in status \"new\" can be priced; see alexandrite.quotes for earlier quotes.")));
	if (!row->has_mesh || row->material == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot price order " INT64_FORMAT " without a %s",
						row->id, !row->has_mesh ? "mesh" : "material"),
				 errhint("Set the order's mesh_id and material first.")));
	if (JB_ROOT_IS_OBJECT(opts) && !JB_ROOT_IS_SCALAR(opts))
	{
		JsonbValue	k;

		k.type = jbvString;
		k.val.string.val = "price_list_version";
		k.val.string.len = strlen("price_list_version");
		if (findJsonbValueFromContainer(&opts->root, JB_FOBJECT, &k) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("price_order always uses the current price list"),
					 errhint("Remove \"price_list_version\"; it is for recomputing old quotes with price_quote().")));
	}
}

PG_FUNCTION_INFO_V1(alexandrite_price_order);

/* price_order(order_id, options): the quote the order was priced with. */
Datum
alexandrite_price_order(PG_FUNCTION_ARGS)
{
	const char *actor = AlxActor(NULL, AlxCallerName());
	Jsonb	   *opts;
	char	   *accept;
	int64		order_id;
	AlxSavedUser save;
	AlxOrderRow row;
	AlxOrderChange chg;
	AlxQuoteInsert q;
	TupleDesc	tupdesc;
	HeapTuple	qt;
	TupleDesc	qd;
	Datum		values[8];
	bool		nulls[8];
	bool		isnull;
	Datum		args[3];
	Datum		result;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order <NULL> does not exist")));
	order_id = PG_GETARG_INT64(0);
	if (PG_ARGISNULL(1))
		opts = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	else
		opts = PG_GETARG_JSONB_P(1);

	AlxCoreBegin(&save);
	AlxOrderLock(order_id, &row, false);
	check_priceable(&row, opts);

	args[0] = Int64GetDatum(row.mesh_id);
	args[1] = CStringGetTextDatum(row.material);
	args[2] = JsonbPGetDatum(opts);
	AlxPlanRun(&quote_plan, args, NULL, false, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("mesh " INT64_FORMAT " does not exist", row.mesh_id)));
	qt = SPI_tuptable->vals[0];
	qd = SPI_tuptable->tupdesc;

	accept = option_text(opts, "accept_review");
	if (DatumGetBool(SPI_getbinval(qt, qd, 10, &isnull)) && !isnull &&
		!(accept != NULL && DatumGetBool(DirectFunctionCall1(boolin, CStringGetDatum(accept)))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("order " INT64_FORMAT " needs review before it can be priced", order_id),
				 errdetail("Mesh " INT64_FORMAT ": %s.", row.mesh_id,
						   SPI_getvalue(qt, qd, 11) ? SPI_getvalue(qt, qd, 11) : ""),
				 errhint("Repair the mesh, or pass {\"accept_review\": true} to price it as it is.")));

	/* the quote row: alexandrite.quotes after order_id */
	memset(q.nulls, ' ', sizeof(q.nulls));
	q.values[0] = Int64GetDatum(row.mesh_id);
	q.values[1] = SPI_getbinval(qt, qd, 9, &isnull);	/* mesh_sha256 */
	q.values[2] = CStringGetTextDatum(row.material);
	q.values[3] = JsonbPGetDatum(opts);
	q.values[4] = SPI_getbinval(qt, qd, 7, &isnull);	/* price_list_version */
	q.values[5] = SPI_getbinval(qt, qd, 1, &isnull);	/* total */
	for (int i = 2; i <= 6; i++)	/* currency .. finishing_cost */
		q.values[4 + i] = SPI_getbinval(qt, qd, i, &isnull);
	q.values[11] = BoolGetDatum(DatumGetBool(SPI_getbinval(qt, qd, 10, &isnull)) && !isnull);
	q.values[12] = SPI_getbinval(qt, qd, 8, &isnull);	/* breakdown */
	q.values[13] = CStringGetTextDatum(actor);

	/* the result, copied out of SPI's memory */
	for (int i = 0; i < 8; i++)
		values[i] = SPI_getbinval(qt, qd, i + 1, &nulls[i]);
	result = PointerGetDatum(SPI_returntuple(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls),
							 BlessTupleDesc(tupdesc)));

	memset(&chg, 0, sizeof(chg));
	chg.to_status = ALX_ST_PRICED;
	chg.operator_id = NULL;
	chg.set_price = true;
	chg.price = DatumGetNumeric(SPI_getbinval(qt, qd, 1, &isnull));
	chg.actor = actor;
	chg.quote = &q;
	AlxOrderWriteStatus(&row, &chg);
	AlxCoreEnd(&save);
	PG_RETURN_DATUM(result);
}
