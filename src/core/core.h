/*-------------------------------------------------------------------------
 *
 * core.h
 *	  The order core: the one write routine for orders, the state machine
 *	  cache, and the prepared-statement helpers every writer of the
 *	  extension uses.
 *
 * Every change of an order goes through AlxOrderLock (lock the row and
 * read it) and one of the AlxOrderWrite* routines (check, one UPDATE or
 * INSERT of the order and one history row in one statement, then the
 * outbox event(s), src/outbox/write.c).  The SQL entry points (create_order, set_status,
 * assign_order, release_order, set_order_model, price_order, assign_next,
 * rebalance, escalate_overdue) are thin C functions around them that run
 * their compiled statements as the extension owner (privilege.c).
 *
 * IDENTIFICATION
 *	  src/core/core.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_CORE_H
#define ALX_CORE_H

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "alexandrite.h"

/* alexandrite.order_status, in enum order */
typedef enum AlxStatus
{
	ALX_ST_NEW = 0,
	ALX_ST_PRICED,
	ALX_ST_ASSIGNED,
	ALX_ST_IN_PRODUCTION,
	ALX_ST_QUALITY_CHECK,
	ALX_ST_SHIPPED,
	ALX_ST_CANCELLED
} AlxStatus;

#define ALX_NSTATUS 7
#define ALX_STATUS_OPEN(s) ((s) < ALX_ST_SHIPPED)

extern const char *const AlxStatusNames[ALX_NSTATUS];

/* the locked row of an order, as AlxOrderLock read it */
typedef struct AlxOrderRow
{
	int64		id;
	char	   *external_ref;
	char	   *channel;
	char	   *customer_id;
	bool		has_mesh;
	int64		mesh_id;
	char	   *material;		/* NULL: none */
	AlxStatus	status;
	char	   *operator_id;	/* NULL: nobody holds it */
	Numeric		price;			/* NULL: not priced */
	TimestampTz created_at;
	TimestampTz sla_due_at;
	int64		event_seq;		/* aggregate_seq of its last outbox event */
} AlxOrderRow;

/*
 * The column list every statement that locks an order selects, in the
 * order AlxOrderFromTuple decodes it ("o" is the orders alias).
 */
#define ALX_ORDER_COLS \
	"o.id, o.external_ref, o.channel, o.customer_id, o.mesh_id, o.material," \
	" o.status::pg_catalog.text, o.operator_id, o.price, o.created_at, o.sla_due_at, o.event_seq"
#define ALX_ORDER_NCOLS 12
extern const Oid AlxOrderColTypes[ALX_ORDER_NCOLS];	/* status: text (status::text) */

/* a status change of a locked order (AlxOrderWriteStatus) */
typedef struct AlxOrderChange
{
	AlxStatus	to_status;
	const char *operator_id;	/* the holder after the change, or NULL */
	bool		set_price;		/* price_order: the new price, and order.priced */
	Numeric		price;
	const char *actor;			/* recorded in order_events and the events */
	/* price_order: the quote row written with the price */
	struct AlxQuoteInsert *quote;
} AlxOrderChange;

/* price_order's quote row (alexandrite.quotes columns after order_id) */
typedef struct AlxQuoteInsert
{
	Datum		values[14];
	char		nulls[14];
} AlxQuoteInsert;

/* an event payload under construction (orders.c): distinct keys */
#define ALX_JSON_MAXPAIRS 16
typedef struct AlxJson
{
	int			npairs;
	JsonbPair	pairs[ALX_JSON_MAXPAIRS];
} AlxJson;

/* plans.c: statements prepared once per backend, run as the owner */
typedef struct AlxPlan
{
	const char *sql;
	int			nargs;
	Oid			argtypes[32];
	SPIPlanPtr	plan;			/* prepared and kept on first use */
} AlxPlan;

extern SPIPlanPtr AlxPlanGet(AlxPlan *plan);
extern int	AlxPlanRun(AlxPlan *plan, Datum *values, const char *nulls, bool read_only,
					   long count);
extern int	AlxPlanRunSnapshot(AlxPlan *plan, Datum *values, const char *nulls, Snapshot snapshot,
							   bool read_only, long count);
extern void AlxCoreBegin(AlxSavedUser *save);
extern void AlxCoreEnd(const AlxSavedUser *save);
extern char *AlxCallerName(void);
extern const char *AlxActor(const char *given, const char *fallback);
extern char *AlxSpiText(int row, int col);
extern int64 AlxSpiInt8(int row, int col, bool *isnull);

/* transitions.c: the state machine, cached per backend */
extern bool AlxTransitionAllowed(AlxStatus from, AlxStatus to);
extern char *AlxTransitionTargets(AlxStatus from);
extern AlxStatus AlxStatusFromName(const char *name);
extern void AlxStatusLabelMissing(const char *label) pg_attribute_noreturn();
extern ArrayType *AlxTransitionOrigins(AlxStatus to, int *n);

/* orders.c: the write routine */
extern bool AlxOrderLock(int64 order_id, AlxOrderRow *row, bool missing_ok);
extern void AlxOrderFromTuple(HeapTuple tup, TupleDesc desc, int first_col, AlxOrderRow *row);
extern void AlxOrderCheckTransition(const AlxOrderRow *row, AlxStatus to);
extern void AlxOrderWriteStatus(AlxOrderRow *row, const AlxOrderChange *chg);
extern void AlxOrderSetStatus(int64 order_id, AlxStatus to, const char *actor);
extern bool AlxOrderWriteBreach(AlxOrderRow *row, TimestampTz breached_at);
extern void AlxOrderWriteModel(AlxOrderRow *row, bool has_mesh, int64 mesh_id,
							   const char *material);
extern int64 AlxOrderNextEventSeq(int64 order_id);
extern void AlxJsonBegin(AlxJson *j);
extern void AlxJsonText(AlxJson *j, const char *key, const char *val);
extern void AlxJsonInt8(AlxJson *j, const char *key, int64 val, bool isnull);
extern void AlxJsonNumeric(AlxJson *j, const char *key, Numeric val);
extern void AlxJsonTimestamp(AlxJson *j, const char *key, TimestampTz ts);
extern Jsonb *AlxJsonEnd(AlxJson *j);

/*
 * maintain.c: load moves the write routine makes itself, in its statement;
 * the maintenance trigger skips the row they belong to.  Begin/End bracket
 * that statement (End also on error), and nest.
 */
typedef struct AlxCoreLoadMark
{
	bool		active;
	LocalTransactionId lxid;
	SubTransactionId subxid;
	int64		order_id;
	const char *old_holder;
	const char *new_holder;
} AlxCoreLoadMark;

extern void AlxCoreLoadBegin(AlxCoreLoadMark *save, int64 order_id,
							 const char *old_holder, const char *new_holder);
extern void AlxCoreLoadEnd(const AlxCoreLoadMark *save);

/* api.c: the steps the SQL entry points share */
extern void AlxOrderCheckAssign(const AlxOrderRow *row);
extern void AlxOrderGive(AlxOrderRow *row, const char *operator_id, const char *actor);
extern AlxStatus AlxOrderRelease(AlxOrderRow *row, const char *actor);

/* create.c */
extern void AlxCheckOrderModel(bool has_mesh, int64 mesh_id, const char *material);

#endif							/* ALX_CORE_H */
