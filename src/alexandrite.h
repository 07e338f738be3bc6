/*-------------------------------------------------------------------------
 *
 * alexandrite.h
 *	  Shared declarations of the alexandrite extension: GUC variables and
 *	  the init entry points of each capability.
 *
 * IDENTIFICATION
 *	  src/alexandrite.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALEXANDRITE_H
#define ALEXANDRITE_H

#define ALX_EXTENSION_NAME	"alexandrite"
#define ALX_SCHEMA_NAME		"alexandrite"

/* GUC variables, all defined in src/alexandrite.c */
extern char *alx_database;
extern char *alx_amqp_url;
extern char *alx_amqp_exchange;
extern int	alx_outbox_batch_size;
extern int	alx_outbox_max_attempts;
extern int	alx_outbox_rotate_interval_s;
extern int	alx_mesh_max_bytes;
extern int	alx_mesh_timeout_ms;
extern int	alx_mesh_memory_limit_mb;
extern int	alx_mesh_max_concurrent;
extern char *alx_meshd_path;
extern int	alx_fold_interval_ms;
extern char *alx_actor;
extern char *alx_traceparent;

/* true when the library was loaded through shared_preload_libraries */
extern bool alx_preloaded;

/* raise an error unless the library was preloaded (worker-only SQL) */
extern void AlxRequirePreload(const char *what);

#endif							/* ALEXANDRITE_H */
