/*-------------------------------------------------------------------------
 *
 * pricing.h
 *	  Price lists cached per backend and the exact fixed-point arithmetic
 *	  that price_quote uses.
 *
 * Money never goes through floating point: every figure of a price list
 * is held as an integer count of millionths (ALX_RATE_SCALE decimals), and
 * the quote is computed in 128-bit integers with explicit rounding steps
 * (see docs/pricing.md).  The results are exactly what the same formula
 * gives with numeric and round() in SQL.
 *
 * IDENTIFICATION
 *	  src/pricing/pricing.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_PRICING_H
#define ALX_PRICING_H

#include "utils/numeric.h"

/* decimals of every rate held in a price list */
#define ALX_RATE_SCALE		6
/* decimals of mesh volume (mm3) and area (mm2) used for pricing */
#define ALX_GEOM_SCALE		3
/* decimals of metal weights in grams */
#define ALX_WEIGHT_SCALE	3

typedef enum AlxRoundingMode
{
	ALX_ROUND_HALF_UP,			/* commercial: half away from zero */
	ALX_ROUND_UP,				/* towards +infinity (prices are >= 0) */
	ALX_ROUND_DOWN				/* towards zero */
} AlxRoundingMode;

typedef struct AlxMaterial
{
	char	   *code;
	bool		active;
	int64		density;		/* g/cm3, ALX_RATE_SCALE */
	int64		price_per_gram; /* ALX_RATE_SCALE */
	int64		loss_pct;		/* percent, ALX_RATE_SCALE */
	Numeric		density_num;	/* the figures as stored, for the breakdown */
	Numeric		price_num;
	Numeric		loss_num;
	/* castability limits; NULL in the table: no limit */
	char	   *min_wall_text;	/* as stored, for messages; NULL: none */
	double		min_wall_mm;
	char	   *max_build_text[3];
	double		max_build_mm[3];	/* sorted ascending; NaN: no limit */
} AlxMaterial;

typedef struct AlxTier
{
	int64		from_triangles;
	int64		charge;			/* ALX_RATE_SCALE */
	Numeric		charge_num;
} AlxTier;

typedef struct AlxPriceList
{
	MemoryContext cxt;			/* holds this struct and everything below */
	int64		version;
	char		currency[4];
	int			exponent;		/* decimals of the currency */
	int64		labour_base;	/* all ALX_RATE_SCALE */
	int64		finishing_per_cm2;
	int64		stone_setting;
	int64		margin_pct;
	int64		minimum_price;
	int64		rounding_increment;
	AlxRoundingMode rounding_mode;
	const char *rounding_mode_name;
	Numeric		labour_base_num;
	Numeric		finishing_num;
	Numeric		stone_setting_num;
	Numeric		margin_num;
	Numeric		minimum_num;
	Numeric		increment_num;
	int			ntiers;
	AlxTier    *tiers;			/* by from_triangles, first from 0 */
	int			nmaterials;
	AlxMaterial *materials;		/* sorted by code (strcmp) */
} AlxPriceList;

/* pricelist.c */
extern const AlxPriceList *AlxPriceListGet(int64 version);
extern const AlxMaterial *AlxPriceListMaterial(const AlxPriceList *list, const char *code);
extern Oid	AlxPricingMeshesRelid(void);
extern uint64 AlxPricingGeneration(void);
extern void AlxPricingCheckAccess(void);

#endif							/* ALX_PRICING_H */
