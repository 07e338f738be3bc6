# src/pricing/module.mk: versioned price list, price_quote, price_order
OBJS    += src/pricing/pricelist.o src/pricing/quote.o src/pricing/order.o
REGRESS += pricing_quote pricing_versions pricing_order
ISOLATION += pricing_cache
ISOLATION += pricing_order_race
