/*-------------------------------------------------------------------------
 *
 * mesh_sql.c
 *	  mesh_analyze() and mesh_ingest(): run the mesh helper, decode its
 *	  record, return or store the statistics.
 *
 * No mesh is ever parsed inside the backend.  Each call forks and execs the
 * installed helper program alexandrite-meshd (next to the postgres binary,
 * or alexandrite.meshd_path), feeds it the file's bytes on a pipe as its
 * stdin -- vmsplice(), so the bytes are copied once, by the helper, into
 * its own huge-page buffer -- and reads one fixed-size record from its
 * stdout and at most a line of text from its stderr.  mesh_analyze()
 * hashes the bytes while the helper works, once they are all fed.  The
 * wait is a poll() loop of at most 100 ms steps with CHECK_FOR_INTERRUPTS(),
 * so statement_timeout, query cancel and backend termination act promptly;
 * alexandrite.mesh_timeout (or less for a small file) bounds the analysis
 * as well.  Whatever way the call ends -- success, helper failure, timeout,
 * cancel, or an ERROR anywhere -- a PG_FINALLY block kills the helper if it
 * still runs, reaps it and closes every descriptor, so neither a zombie nor
 * a descriptor is left behind.
 *
 * Every helper outcome maps to an ERROR with a documented SQLSTATE
 * (docs/mesh.md): invalid file 22P04, bad argument or format mismatch
 * 22023, too large or over a limit (memory, CPU budget) 54000, timeout
 * 57014, a helper that cannot set itself up or exits with an unknown code
 * 58000, a crash, a sandbox kill or a record that fails the strict checks
 * of check_record() XX000.
 *
 * IDENTIFICATION
 *	  src/mesh/mesh_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "postmaster/postmaster.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/pmsignal.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/wait_event.h"

#include "alexandrite.h"
#include "mesh/geometry.h"
#include "mesh/jobs.h"
#include "mesh/meshrecord.h"

static const char *const mesh_warning_names[ALX_WARN_COUNT] = {ALX_WARN_NAMES};

static const char *const mesh_formats[] = {
	"stl-binary", "stl-ascii", "obj", "ply", "glb", "gltf", "3mf", NULL
};

/* the columns of alexandrite.mesh_stats, in order */
enum
{
	MS_TRIANGLES, MS_VERTICES, MS_VOLUME, MS_AREA, MS_SIZE_X, MS_SIZE_Y,
	MS_SIZE_Z, MS_SHELLS, MS_WATERTIGHT, MS_BOUNDARY, MS_NONMANIFOLD,
	MS_DEGENERATE, MS_SHA256, MS_FORMAT, MS_UNIT_SCALE, MS_INCONSISTENT,
	MS_REORIENTED, MS_EULER, MS_GENUS, MS_UNCERTAINTY, MS_MIN_X, MS_MIN_Y,
	MS_MIN_Z, MS_WARNINGS, MS_ANALYZER_VERSION, MS_ANALYSIS_MS,
	MS_MIN_WALL, MS_WALL_X, MS_WALL_Y, MS_WALL_Z, MS_WALL_BELOW_03,
	MS_WALL_BELOW_05, MS_WALL_BELOW_08, MS_WALL_BELOW_10,
	MS_NATTS
};

/*
 * The schema of 1.1 (before ALTER EXTENSION UPDATE, which a package
 * upgrade leaves to the DBA) has the columns before the wall thickness:
 * mesh_stats and meshes end at MS_MIN_WALL.  Its rows are stored with
 * analyzer version 1 (no wall measured), so that the update's promise holds:
 * the next ingest of the same bytes measures them again.
 */
#define MS_NATTS_1_1				MS_MIN_WALL
#define ALX_ANALYZER_VERSION_NO_WALL 1

/* SQLSTATE 22P04 (bad_copy_file_format): the file is not a valid mesh */
#define ALX_ERRCODE_BAD_MESH ERRCODE_BAD_COPY_FILE_FORMAT

#define HELPER_STDERR_MAX 1024
/* the helper's input pipe: its size, as far as an unprivileged user may */
#define INPUT_PIPE_SIZE (1024 * 1024)
#define POLL_STEP_MS 100

/* what one run of the helper measured (AlxMeshAnalysis to jobs.h) */
struct AlxMeshAnalysis
{
	AlxMeshRecord rec;
	double		elapsed_ms;
};
typedef struct AlxMeshAnalysis HelperResult;

/* Path of the helper program: the GUC, or next to the postgres binary. */
static pg_noinline char *
helper_path(void)
{
	char	   *path;

	if (alx_meshd_path != NULL && alx_meshd_path[0] != '\0')
		path = pstrdup(alx_meshd_path);
	else
	{
		char		dir[MAXPGPATH];

		strlcpy(dir, my_exec_path, sizeof(dir));
		get_parent_directory(dir);
		path = psprintf("%s/alexandrite-meshd", dir);
	}
	if (access(path, X_OK) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("mesh helper program \"%s\" is not installed", path),
				 errhint("Run \"make install\" for alexandrite with this server's pg_config, or set alexandrite.meshd_path.")));
	return path;
}

/* Normalise and check a unit argument; returns a static string. */
static const char *
check_unit(text *unit)
{
	char	   *u = text_to_cstring(unit);

	if (strcmp(u, "mm") == 0)
		return "mm";
	if (strcmp(u, "cm") == 0)
		return "cm";
	if (strcmp(u, "m") == 0)
		return "m";
	if (strcmp(u, "in") == 0)
		return "in";
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unit \"%s\" is not supported", u),
			 errhint("Use \"mm\", \"cm\", \"m\" or \"in\".")));
	return NULL;				/* keep compiler quiet */
}

/* Check a format hint early, so that a typo costs no process. */
static char *
check_format(text *format)
{
	char	   *f = text_to_cstring(format);
	const char *p = f[0] == '.' ? f + 1 : f;
	static const char *const ok[] = {"stl", "obj", "ply", "gltf", "glb", "3mf", NULL};

	for (int i = 0; ok[i]; i++)
		if (pg_strcasecmp(p, ok[i]) == 0)
			return pstrdup(ok[i]);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("mesh format \"%s\" is not supported", f),
			 errhint("Use \"stl\", \"obj\", \"ply\", \"gltf\", \"glb\" or \"3mf\", or NULL to detect it.")));
	return NULL;
}

/* The digest of a finished SHA-256 computation, as a bytea; frees ctx. */
static bytea *
sha256_result(pg_cryptohash_ctx *ctx)
{
	bytea	   *out = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);

	if (pg_cryptohash_final(ctx, (uint8 *) VARDATA(out), PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	SET_VARSIZE(out, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	return out;
}

/* SHA-256 of the bytes, as a bytea (meshes.sha256, mesh_jobs.sha256). */
bytea *
AlxMeshSha256(const char *data, size_t len)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	bytea	   *out = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, (uint8 *) VARDATA(out), PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	SET_VARSIZE(out, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	return out;
}

static void
set_nonblock(int fd)
{
	int			fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not set up the mesh helper pipes: %m")));
}

/*
 * The wall-thickness fields: all zero when not measured; otherwise a
 * positive thinnest wall no longer than the model's diagonal, where it is
 * inside the bounding box, and areas that grow with the threshold and stay
 * within the surface area.
 */
static const char *
check_wall(const AlxMeshRecord *r)
{
	const double *f = r->f;
	double		sx = f[ALX_RF_SIZE_X],
				sy = f[ALX_RF_SIZE_Y],
				sz = f[ALX_RF_SIZE_Z];
	double		diag = sqrt(sx * sx + sy * sy + sz * sz);
	double		slack = 1e-6 * (diag + 1.0);

	if (!(r->flags & ALX_RECORD_WALL))
	{
		for (int k = ALX_RF_MIN_WALL; k <= ALX_RF_WALL_BELOW_10; k++)
			if (f[k] != 0)
				return "unmeasured wall thickness has values";
		return NULL;
	}
	if (r->u[ALX_RU_WALL_RAYS] == 0)
		return "wall thickness measured without rays";
	if (!(f[ALX_RF_MIN_WALL] > 0) || f[ALX_RF_MIN_WALL] > diag + slack)
		return "thinnest wall out of range";
	for (int k = 0; k < 3; k++)
	{
		double		lo = f[ALX_RF_MIN_X + k],
					hi = lo + f[ALX_RF_SIZE_X + k];

		if (f[ALX_RF_WALL_X + k] < lo - slack || f[ALX_RF_WALL_X + k] > hi + slack)
			return "thinnest wall outside the bounding box";
	}
	for (int k = ALX_RF_WALL_BELOW_03; k <= ALX_RF_WALL_BELOW_10; k++)
		if (f[k] > f[ALX_RF_AREA] * (1 + 1e-9) + slack ||
			(k > ALX_RF_WALL_BELOW_03 && f[k] < f[k - 1]))
			return "thin-wall areas out of range";
	return NULL;
}

/* the record is plausible only if every field is */
static void
check_record(const AlxMeshRecord *r, size_t len)
{
	const char *why = NULL;
	bool		fmt_ok = false;

	for (int i = 0; mesh_formats[i]; i++)
		if (strcmp(r->format, mesh_formats[i]) == 0)
			fmt_ok = true;
	if (r->analyzer_version != ALX_ANALYZER_VERSION)
		why = "analyzer version does not match the library";
	else if (!fmt_ok)
		why = "unknown format name";
	else if (r->u[ALX_RU_TRIANGLES] == 0)
		why = "no triangles";
	else if (r->u[ALX_RU_VERTICES] > 3 * r->u[ALX_RU_TRIANGLES] ||
			 r->u[ALX_RU_VERTICES] == 0)
		why = "vertex count out of range";
	else if (r->u[ALX_RU_SHELLS] > r->u[ALX_RU_TRIANGLES] ||
			 r->u[ALX_RU_SHELLS] > INT_MAX)
		why = "shell count out of range";
	else if (r->u[ALX_RU_EDGES] > 3 * r->u[ALX_RU_TRIANGLES] ||
			 r->u[ALX_RU_BOUNDARY] + r->u[ALX_RU_NONMANIFOLD] > r->u[ALX_RU_EDGES] ||
			 r->u[ALX_RU_INCONSISTENT] > r->u[ALX_RU_EDGES])
		why = "edge counts out of range";
	else if (r->u[ALX_RU_DEGENERATE] > r->u[ALX_RU_TRIANGLES] ||
			 r->u[ALX_RU_REORIENTED] > r->u[ALX_RU_TRIANGLES])
		why = "triangle counts out of range";
	else if (r->u[ALX_RU_SOURCE_BYTES] != (uint64) len)
		why = "helper read a different number of bytes";
	else if (((r->flags & ALX_RECORD_WATERTIGHT) != 0) !=
			 (r->u[ALX_RU_BOUNDARY] == 0 && r->u[ALX_RU_NONMANIFOLD] == 0))
		why = "watertight flag contradicts the edge counts";
	else if (r->u[ALX_RU_WALL_RAYS] > r->u[ALX_RU_TRIANGLES])
		why = "more wall-thickness rays than triangles";
	else if (r->i[ALX_RI_GENUS] < -1 ||
			 r->i[ALX_RI_GENUS] > (int64) r->u[ALX_RU_TRIANGLES])
		why = "genus out of range";
	else if ((r->warnings >> ALX_WARN_COUNT) != 0)
		why = "unknown warning bits";
	else
	{
		for (int k = 0; k < ALX_RECORD_NF64; k++)
		{
			if (!isfinite(r->f[k]))
				why = "non-finite number";
			else if (k != ALX_RF_MIN_X && k != ALX_RF_MIN_Y && k != ALX_RF_MIN_Z &&
					 k != ALX_RF_WALL_X && k != ALX_RF_WALL_Y && k != ALX_RF_WALL_Z &&
					 r->f[k] < 0)
				why = "negative measure";
		}
		if (why == NULL && !(r->f[ALX_RF_UNIT_SCALE] > 0))
			why = "unit scale out of range";
		if (why == NULL)
			why = check_wall(r);
	}
	if (why)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("mesh helper returned an invalid result"),
				 errdetail_internal("%s", why)));
}

/* SQLSTATE 58000 (system_error): the helper could not run as designed */
#define ALX_ERRCODE_HELPER_SETUP ERRCODE_SYSTEM_ERROR

/*
 * A helper killed by a signal.  Only two deaths are part of the design: the
 * CPU budget (SIGXCPU) and SIGKILL from outside (the hard CPU limit, the
 * kernel's OOM killer), both "over a limit".  SIGSYS is the seccomp filter
 * catching a forbidden system call and anything else is a crash; both are
 * internal errors of their own, never taken for a bad file.
 */
static void
report_signal(int sig, long cpu_s)
{
	if (sig == SIGXCPU)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("mesh analysis exceeded its CPU budget of %ld s", cpu_s),
				 errdetail("The budget is 1 s plus 1 s per MB of input, at most alexandrite.mesh_timeout.")));
	if (sig == SIGKILL)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("mesh analysis exceeded its resource limits"),
				 errdetail("The mesh helper was terminated by signal %d: %s.", sig, pg_strsignal(sig))));
	if (sig == SIGSYS)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("mesh helper was stopped by its sandbox"),
				 errdetail("The mesh helper made a forbidden system call (signal %d: %s).", sig, pg_strsignal(sig)),
				 errhint("The server is not affected; report the file to the alexandrite maintainers.")));
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("mesh helper crashed"),
			 errdetail("The mesh helper was terminated by signal %d: %s.", sig, pg_strsignal(sig)),
			 errhint("The server is not affected; report the file to the alexandrite maintainers.")));
}

/* Turn a helper's exit status into an ERROR (or return on success). */
static void
report_status(int status, const char *msg, const char *format, long cpu_s)
{
	if (WIFSIGNALED(status))
		report_signal(WTERMSIG(status), cpu_s);
	switch (WEXITSTATUS(status))
	{
		case ALX_MESHD_EXIT_OK:
			return;
		case ALX_MESHD_EXIT_BAD_FILE:
			ereport(ERROR,
					(errcode(ALX_ERRCODE_BAD_MESH),
					 errmsg("invalid mesh file"),
					 errdetail_internal("%s", msg)));
			break;
		case ALX_MESHD_EXIT_TOO_LARGE:
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("mesh file is too large to analyze"),
					 errdetail_internal("%s", msg),
					 errhint("alexandrite.mesh_memory_limit and alexandrite.mesh_max_bytes set the limits.")));
			break;
		case ALX_MESHD_EXIT_FORMAT:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("mesh file does not match format \"%s\"", format ? format : ""),
					 errdetail_internal("%s", msg)));
			break;
		case ALX_MESHD_EXIT_USAGE:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid argument for mesh analysis"),
					 errdetail_internal("%s", msg)));
			break;
		case ALX_MESHD_EXIT_INTERNAL:
			ereport(ERROR,
					(errcode(ALX_ERRCODE_HELPER_SETUP),
					 errmsg("mesh helper could not set itself up"),
					 errdetail_internal("%s", msg)));
			break;
		default:
			ereport(ERROR,
					(errcode(ALX_ERRCODE_HELPER_SETUP),
					 errmsg("mesh helper failed with unexpected exit code %d", WEXITSTATUS(status)),
					 errdetail_internal("%s", msg),
					 errhint("Check that alexandrite.meshd_path names alexandrite-meshd of this version.")));
	}
}

/*
 * The helper's limits for an input of len bytes: the CPU budget (capped by
 * alexandrite.mesh_timeout, rounded up to whole seconds) and the wall-clock
 * deadline the backend keeps: alexandrite.mesh_timeout, or less for a small
 * input (four times its CPU budget plus 2 s, room for a loaded machine).
 */
static void
helper_limits(size_t len, long *cpu_s, long *wall_ms)
{
	uint64		cap = (uint64) alx_mesh_timeout_ms / 1000 + 1;
	uint64		budget = alx_cpu_budget_s((uint64) len, cap);
	uint64		wall = (4 * budget + 2) * 1000;

	*cpu_s = (long) budget;
	*wall_ms = (long) Min(wall, (uint64) alx_mesh_timeout_ms);
}

/* One run of the helper: its process, pipes and what it said. */
typedef struct Helper
{
	pid_t		pid;
	int			fd_in;			/* our ends */
	int			fd_out;
	int			fd_err;
	int			child_in;		/* the child's: stdin, stdout, stderr */
	int			child_out;
	int			child_err;
	size_t		fed;			/* input bytes in the pipe so far */
	bool		feed_copy;		/* write(), vmsplice() being unavailable */
	int			feed_errno;		/* why the feed failed (not the helper's doing) */
	unsigned char rec[ALX_RECORD_SIZE + 1];
	size_t		reclen;
	char		err[HELPER_STDERR_MAX + 1];
	size_t		errlen;
	int			status;
	bool		reaped;
	bool		timed_out;
	bool		overflow;
	/* SHA-256 of the input, computed while the helper works (or NULL) */
	pg_cryptohash_ctx *sha;
	size_t		sha_done;
} Helper;

/*
 * The helper's stdin: a pipe we feed from helper_wait().  Its write end is
 * non-blocking, so the wait loop stays interruptible and bounded by the
 * timeout however slowly the helper reads.
 */
static void
helper_input(Helper *h)
{
	int			pin[2];

	if (pipe2(pin, O_CLOEXEC) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create pipes for the mesh helper: %m")));
	h->child_in = pin[0];
	h->fd_in = pin[1];
	/* fewer round trips; a smaller pipe (pipe-max-size) only costs more */
	(void) fcntl(h->fd_in, F_SETPIPE_SZ, INPUT_PIPE_SIZE);
	set_nonblock(h->fd_in);
}

/*
 * Put as much of the input into the pipe as it takes now; closes our end
 * (end of file for the helper) when all is fed.  vmsplice() maps the
 * pages of data into the pipe instead of copying them: the helper's read()
 * is the one copy.  The bytes must not change until the helper has read
 * them, which holds: data is the call's argument, and the helper is
 * killed, the pipe closed, before the call returns.  A helper that stops
 * reading (it failed, or was killed) ends the feed; its exit says why.
 */
static void
helper_feed(Helper *h, const char *data, size_t len)
{
	while (h->fd_in >= 0 && h->fed < len)
	{
		size_t		want = Min(len - h->fed, (size_t) INPUT_PIPE_SIZE);
		ssize_t		n;

		if (!h->feed_copy)
		{
			struct iovec iov = {(void *) (data + h->fed), want};

			n = vmsplice(h->fd_in, &iov, 1, SPLICE_F_NONBLOCK);
			/* refused here (a policy, an odd kernel): copy instead */
			if (n < 0 && errno != EAGAIN && errno != EINTR && errno != EPIPE)
			{
				h->feed_copy = true;
				continue;
			}
		}
		else
			n = write(h->fd_in, data + h->fed, want);
		if (n > 0)
		{
			h->fed += (size_t) n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		/* EPIPE: the helper is gone or has stopped reading; its exit says why */
		if (n < 0 && errno != EPIPE)
			h->feed_errno = errno;	/* ours: not a short file's fault */
		break;
	}
	if (h->fd_in >= 0)
	{
		close(h->fd_in);
		h->fd_in = -1;
	}
}

/* Pipes, fork, exec; the parent keeps the read ends, non-blocking. */
static void
helper_spawn(Helper *h, const char *path, char **argv, char **envp)
{
	int			pout[2],
				perr[2];

	if (pipe2(pout, O_CLOEXEC) == 0)
	{
		h->fd_out = pout[0];
		h->child_out = pout[1];
	}
	if (pipe2(perr, O_CLOEXEC) == 0)
	{
		h->fd_err = perr[0];
		h->child_err = perr[1];
	}
	if (h->fd_out < 0 || h->fd_err < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create pipes for the mesh helper: %m")));

	fflush(NULL);
	h->pid = fork();
	if (h->pid < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start the mesh helper: %m")));
	if (h->pid == 0)
	{
		/* child: only async-signal-safe calls until exec */
		sigset_t	none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (dup2(h->child_in, 0) < 0 || dup2(h->child_out, 1) < 0 || dup2(h->child_err, 2) < 0)
			_exit(126);
#ifdef SYS_close_range
		if (syscall(SYS_close_range, 3, ~0U, 0) != 0)
#endif
		{
			for (int fd = 3; fd < 65536; fd++)
				(void) close(fd);
		}
		execve(path, argv, envp);
		_exit(127);
	}

	/* parent */
	close(h->child_in);
	h->child_in = -1;
	close(h->child_out);
	h->child_out = -1;
	close(h->child_err);
	h->child_err = -1;
	set_nonblock(h->fd_out);
	set_nonblock(h->fd_err);
}

/* Read what is there from the helper's stdout (at most one record). */
static void
helper_read_out(Helper *h)
{
	ssize_t		r = read(h->fd_out, h->rec + h->reclen, sizeof(h->rec) - h->reclen);

	if (r > 0)
	{
		h->reclen += (size_t) r;
		if (h->reclen == sizeof(h->rec))
		{
			/* more than one record: garbage, stop it now */
			h->overflow = true;
			kill(h->pid, SIGKILL);
			close(h->fd_out);
			h->fd_out = -1;
		}
	}
	else if (r == 0 || (errno != EAGAIN && errno != EINTR))
	{
		close(h->fd_out);
		h->fd_out = -1;
	}
}

/* Read what is there from the helper's stderr (keep the first line's worth). */
static void
helper_read_err(Helper *h)
{
	char		sink[4096];
	ssize_t		r;

	if (h->errlen < HELPER_STDERR_MAX)
		r = read(h->fd_err, h->err + h->errlen, HELPER_STDERR_MAX - h->errlen);
	else
		r = read(h->fd_err, sink, sizeof(sink));	/* discard the rest */
	if (r > 0)
	{
		if (h->errlen < HELPER_STDERR_MAX)
			h->errlen += (size_t) r;
	}
	else if (r == 0 || (errno != EAGAIN && errno != EINTR))
	{
		close(h->fd_err);
		h->fd_err = -1;
	}
}

/* Hash the next piece of the input while the helper works; true if more is left. */
static bool
helper_hash_some(Helper *h, const char *data, size_t len)
{
	size_t		n;

	if (h->sha == NULL || h->sha_done == len)
		return false;
	n = Min(len - h->sha_done, (size_t) 4 * 1024 * 1024);
	if (pg_cryptohash_update(h->sha, (const uint8 *) data + h->sha_done, n) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(h->sha));
	h->sha_done += n;
	return h->sha_done < len;
}

/*
 * Wait for the helper's output and exit within wall_ms of start, in poll()
 * steps of at most POLL_STEP_MS with CHECK_FOR_INTERRUPTS(); hash the input
 * meanwhile.  Sets timed_out, or reaped and status.
 */
static void
helper_wait(Helper *h, instr_time start, long wall_ms, const char *data, size_t len)
{
	for (;;)
	{
		struct pollfd pfd[3];
		int			n = 0;
		long		left_ms;
		instr_time	now;
		bool		more_hashing;

		CHECK_FOR_INTERRUPTS();
		if (!PostmasterIsAlive())
			ereport(FATAL,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("terminating connection due to unexpected postmaster exit")));
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		left_ms = wall_ms - (long) INSTR_TIME_GET_MILLISEC(now);
		if (left_ms <= 0)
		{
			h->timed_out = true;
			return;
		}
		/* the helper waits for its input: feed it first, hash once it is fed */
		helper_feed(h, data, len);
		more_hashing = h->fd_in < 0 && helper_hash_some(h, data, len);

		if (h->fd_out < 0 && h->fd_err < 0)
		{
			/* both outputs closed: wait for the exit */
			pid_t		w = waitpid(h->pid, &h->status, WNOHANG);

			if (w == h->pid)
			{
				h->reaped = true;
				h->pid = -1;
				return;
			}
			if (w < 0 && errno != EINTR)
				ereport(ERROR,
						(errcode(ERRCODE_INTERNAL_ERROR),
						 errmsg("could not wait for the mesh helper: %m")));
			if (!more_hashing)
				pg_usleep(Min(left_ms, 5) * 1000L);
			continue;
		}
		if (h->fd_in >= 0)
		{
			pfd[n].fd = h->fd_in;
			pfd[n++].events = POLLOUT;
		}
		if (h->fd_out >= 0)
		{
			pfd[n].fd = h->fd_out;
			pfd[n++].events = POLLIN;
		}
		if (h->fd_err >= 0)
		{
			pfd[n].fd = h->fd_err;
			pfd[n++].events = POLLIN;
		}
		if (poll(pfd, n, more_hashing ? 0 : (int) Min(left_ms, POLL_STEP_MS)) < 0)
		{
			if (errno == EINTR)
				continue;
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not poll the mesh helper: %m")));
		}
		for (int i = 0; i < n; i++)
		{
			if (pfd[i].revents == 0 || pfd[i].fd == h->fd_in)
				continue;		/* the input is fed at the top of the loop */
			if (pfd[i].fd == h->fd_out)
				helper_read_out(h);
			else if (pfd[i].fd == h->fd_err)
				helper_read_err(h);
		}
	}
}

/* Whatever happened: kill and reap a helper still running, close everything. */
static void
helper_cleanup(Helper *h)
{
	if (h->pid > 0)
	{
		/* still running (error, cancel, timeout): kill and reap */
		kill(h->pid, SIGKILL);
		while (waitpid(h->pid, NULL, 0) < 0 && errno == EINTR)
			;
		h->pid = -1;
	}
	if (h->child_in >= 0)
		close(h->child_in);
	if (h->fd_in >= 0)
		close(h->fd_in);
	if (h->child_out >= 0)
		close(h->child_out);
	if (h->child_err >= 0)
		close(h->child_err);
	if (h->fd_out >= 0)
		close(h->fd_out);
	if (h->fd_err >= 0)
		close(h->fd_err);
	h->child_in = h->child_out = h->child_err = h->fd_in = h->fd_out = h->fd_err = -1;
}

/* After a clean wait: every way the run can have failed is an ERROR. */
static void
helper_outcome(Helper *h, const char *path, const char *format, long cpu_s,
			   long wall_ms, size_t len, HelperResult *result)
{
	if (h->timed_out)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("mesh analysis timed out after %ld ms", wall_ms),
				 errhint("alexandrite.mesh_timeout sets the limit; a small file gets less (four times its CPU budget plus 2 s).")));

	/* one line of text; strip control characters */
	h->err[h->errlen] = '\0';
	for (size_t i = 0; i < h->errlen; i++)
		if ((unsigned char) h->err[i] < 0x20)
			h->err[i] = (h->err[i] == '\n' && i + 1 == h->errlen) ? '\0' : ' ';
	if (!h->reaped)
		elog(ERROR, "mesh helper was not reaped");
	if (h->feed_errno != 0)
	{
		errno = h->feed_errno;
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not feed the mesh helper its input: %m")));
	}
	if (h->overflow)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("mesh helper returned an invalid result"),
				 errdetail_internal("more output than one record")));
	if (WIFEXITED(h->status) && WEXITSTATUS(h->status) == 127)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("could not execute mesh helper program \"%s\"", path)));
	report_status(h->status, h->err, format, cpu_s);

	{
		const char *why = AlxMeshRecordDecode(h->rec, h->reclen, &result->rec);

		if (why != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("mesh helper returned an invalid result"),
					 errdetail_internal("%s (%zu bytes)", why, h->reclen)));
	}
	check_record(&result->rec, len);
}

/*
 * Run the helper over data[0..len) and return its decoded record.  With
 * sha, the input's SHA-256 is computed (finished) meanwhile.
 */
static void
run_helper(const char *data, size_t len, const char *format, const char *unit,
		   pg_cryptohash_ctx *sha, HelperResult *result)
{
	char	   *path = helper_path();
	char	   *argv[10];
	char	   *envp[] = {"LC_ALL=C", NULL};
	int			argc = 0;
	Helper		h;
	instr_time	start,
				now;
	long		cpu_s,
				wall_ms;
	struct sigaction old_pipe,
				ign;

	helper_limits(len, &cpu_s, &wall_ms);
	argv[argc++] = "alexandrite-meshd";
	argv[argc++] = "--stdin";
	argv[argc++] = psprintf("--unit=%s", unit);
	argv[argc++] = psprintf("--max-bytes=%zu", len);
	argv[argc++] = psprintf("--max-memory-mb=%d", alx_mesh_memory_limit_mb);
	argv[argc++] = psprintf("--max-cpu-s=%ld", cpu_s);
	if (format)
		argv[argc++] = psprintf("--format=%s", format);
	argv[argc] = NULL;

	memset(&h, 0, sizeof(h));
	h.pid = -1;
	h.fd_in = h.fd_out = h.fd_err = h.child_in = h.child_out = h.child_err = -1;
	h.sha = sha;
	/* a helper gone before it read all its input is EPIPE, not a signal */
	sigaction(SIGPIPE, NULL, &old_pipe);
	if (old_pipe.sa_handler != SIG_IGN)
	{
		memset(&ign, 0, sizeof(ign));
		ign.sa_handler = SIG_IGN;
		sigaction(SIGPIPE, &ign, NULL);
	}
	INSTR_TIME_SET_CURRENT(start);
	PG_TRY();
	{
		helper_input(&h);
		helper_spawn(&h, path, argv, envp);
		helper_wait(&h, start, wall_ms, data, len);
	}
	PG_FINALLY();
	{
		helper_cleanup(&h);
		if (old_pipe.sa_handler != SIG_IGN)
			sigaction(SIGPIPE, &old_pipe, NULL);
	}
	PG_END_TRY();
	/* a quick helper may leave some hashing to do: only worth it on success */
	if (!h.timed_out && h.reaped && h.feed_errno == 0 &&
		WIFEXITED(h.status) && WEXITSTATUS(h.status) == 0)
	{
		while (helper_hash_some(&h, data, len))
			CHECK_FOR_INTERRUPTS();
	}
	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	result->elapsed_ms = INSTR_TIME_GET_MILLISEC(now);
	helper_outcome(&h, path, format, cpu_s, wall_ms, len, result);
	if (h.sha != NULL && h.sha_done != len)
		elog(ERROR, "the mesh input was not hashed whole");
}

/* advisory-lock key of the analysis slots: database 0 (cluster-wide), 'ALXM' */
#define MESH_SLOT_KEY1 0x414C584Du

static void
slot_tag(LOCKTAG *tag, int slot)
{
	SET_LOCKTAG_ADVISORY(*tag, InvalidOid, MESH_SLOT_KEY1, (uint32) slot, 3);
}

/*
 * Take one of alexandrite.mesh_max_concurrent cluster-wide slots (session
 * advisory locks in database 0, which pg_advisory_lock() cannot name), so
 * that N parallel uploads cannot take N x mesh_memory_limit of memory.
 * Waits, interruptibly, within alexandrite.mesh_timeout.  Returns the slot,
 * or -1 when there is no limit.
 */
static int
acquire_slot(void)
{
	int			nslots = alx_mesh_max_concurrent;
	instr_time	start,
				now;

	if (nslots <= 0)
		return -1;
	INSTR_TIME_SET_CURRENT(start);
	for (;;)
	{
		int			first = MyProcPid % nslots;

		for (int i = 0; i < nslots; i++)
		{
			int			slot = (first + i) % nslots;
			LOCKTAG		tag;

			slot_tag(&tag, slot);
			if (LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL)
				return slot;
		}
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		if (INSTR_TIME_GET_MILLISEC(now) >= alx_mesh_timeout_ms)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("no mesh analysis slot became free within %d ms", alx_mesh_timeout_ms),
					 errhint("alexandrite.mesh_max_concurrent analyses may run at once.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 20, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

static void
release_slot(int slot)
{
	LOCKTAG		tag;

	if (slot < 0)
		return;
	slot_tag(&tag, slot);
	LockRelease(&tag, ExclusiveLock, true);
}

/* Validate the input and run the analysis in a slot (hashing it meanwhile, with sha). */
static void
analyze_bytes(bytea *data, const char *format, const char *unit,
			  pg_cryptohash_ctx *sha, HelperResult *hr)
{
	size_t		len = VARSIZE_ANY_EXHDR(data);
	volatile int slot;

	if (len == 0)
		ereport(ERROR,
				(errcode(ALX_ERRCODE_BAD_MESH),
				 errmsg("mesh file is empty")));
	if (len > (size_t) alx_mesh_max_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("mesh file of %zu bytes exceeds the limit of %d bytes", len, alx_mesh_max_bytes),
				 errhint("alexandrite.mesh_max_bytes sets the limit.")));
	slot = acquire_slot();
	PG_TRY();
	{
		run_helper(VARDATA_ANY(data), len, format, unit, sha, hr);
	}
	PG_FINALLY();
	{
		release_slot(slot);
	}
	PG_END_TRY();
}

static Datum
warnings_array(uint32 bits)
{
	Datum		elems[ALX_WARN_COUNT];
	int			n = 0;

	for (int i = 0; i < ALX_WARN_COUNT; i++)
		if (bits & (1u << i))
			elems[n++] = CStringGetTextDatum(mesh_warning_names[i]);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* Fill the mesh_stats column values from a helper result. */
static void
stats_values(const HelperResult *hr, bytea *sha, Datum *v, bool *isnull)
{
	const AlxMeshRecord *r = &hr->rec;

	memset(isnull, 0, sizeof(bool) * MS_NATTS);
	v[MS_TRIANGLES] = Int64GetDatum((int64) r->u[ALX_RU_TRIANGLES]);
	v[MS_VERTICES] = Int64GetDatum((int64) r->u[ALX_RU_VERTICES]);
	v[MS_VOLUME] = Float8GetDatum(r->f[ALX_RF_VOLUME]);
	v[MS_AREA] = Float8GetDatum(r->f[ALX_RF_AREA]);
	v[MS_SIZE_X] = Float8GetDatum(r->f[ALX_RF_SIZE_X]);
	v[MS_SIZE_Y] = Float8GetDatum(r->f[ALX_RF_SIZE_Y]);
	v[MS_SIZE_Z] = Float8GetDatum(r->f[ALX_RF_SIZE_Z]);
	v[MS_SHELLS] = Int32GetDatum((int32) r->u[ALX_RU_SHELLS]);
	v[MS_WATERTIGHT] = BoolGetDatum((r->flags & ALX_RECORD_WATERTIGHT) != 0);
	v[MS_BOUNDARY] = Int64GetDatum((int64) r->u[ALX_RU_BOUNDARY]);
	v[MS_NONMANIFOLD] = Int64GetDatum((int64) r->u[ALX_RU_NONMANIFOLD]);
	v[MS_DEGENERATE] = Int64GetDatum((int64) r->u[ALX_RU_DEGENERATE]);
	v[MS_SHA256] = PointerGetDatum(sha);
	v[MS_FORMAT] = CStringGetTextDatum(r->format);
	v[MS_UNIT_SCALE] = Float8GetDatum(r->f[ALX_RF_UNIT_SCALE]);
	v[MS_INCONSISTENT] = Int64GetDatum((int64) r->u[ALX_RU_INCONSISTENT]);
	v[MS_REORIENTED] = Int64GetDatum((int64) r->u[ALX_RU_REORIENTED]);
	v[MS_EULER] = Int64GetDatum(r->i[ALX_RI_EULER]);
	if (r->i[ALX_RI_GENUS] < 0 || r->i[ALX_RI_GENUS] > INT_MAX)
		isnull[MS_GENUS] = true;
	else
		v[MS_GENUS] = Int32GetDatum((int32) r->i[ALX_RI_GENUS]);
	v[MS_UNCERTAINTY] = Float8GetDatum(r->f[ALX_RF_UNCERTAINTY]);
	v[MS_MIN_X] = Float8GetDatum(r->f[ALX_RF_MIN_X]);
	v[MS_MIN_Y] = Float8GetDatum(r->f[ALX_RF_MIN_Y]);
	v[MS_MIN_Z] = Float8GetDatum(r->f[ALX_RF_MIN_Z]);
	v[MS_WARNINGS] = warnings_array(r->warnings);
	v[MS_ANALYZER_VERSION] = Int32GetDatum((int32) r->analyzer_version);
	v[MS_ANALYSIS_MS] = Float8GetDatum(hr->elapsed_ms);
	/* the wall thickness columns, in the record's order; NULL unmeasured */
	for (int k = 0; k <= MS_WALL_BELOW_10 - MS_MIN_WALL; k++)
	{
		v[MS_MIN_WALL + k] = Float8GetDatum(r->f[ALX_RF_MIN_WALL + k]);
		isnull[MS_MIN_WALL + k] = (r->flags & ALX_RECORD_WALL) == 0;
	}
}

PG_FUNCTION_INFO_V1(alexandrite_mesh_analyze);

/*
 * mesh_analyze(data bytea, format text DEFAULT NULL, unit text DEFAULT 'mm')
 * Parse in the helper and return the stats; stores nothing.
 */
Datum
alexandrite_mesh_analyze(PG_FUNCTION_ARGS)
{
	bytea	   *data;
	char	   *format = NULL;
	const char *unit = "mm";
	TupleDesc	tupdesc;
	HelperResult hr;
	Datum		values[MS_NATTS];
	bool		isnull[MS_NATTS];
	pg_cryptohash_ctx *sha;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	data = PG_GETARG_BYTEA_PP(0);
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
		format = check_format(PG_GETARG_TEXT_PP(1));
	if (PG_NARGS() > 2 && !PG_ARGISNULL(2))
		unit = check_unit(PG_GETARG_TEXT_PP(2));

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != MS_NATTS && tupdesc->natts != MS_NATTS_1_1)
		elog(ERROR, "alexandrite.mesh_stats has %d columns, expected %d",
			 tupdesc->natts, MS_NATTS);
	tupdesc = BlessTupleDesc(tupdesc);

	/* the hash is computed while the helper works */
	sha = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(sha) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(sha));
	analyze_bytes(data, format, unit, sha, &hr);
	stats_values(&hr, sha256_result(sha), values, isnull);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, isnull)));
}

/*
 * id of the stored mesh with this hash and unit, or 0; *current tells
 * whether its row was written by this analyzer version.
 */
static int64
find_mesh(bytea *sha, const char *unit, bool *current)
{
	Oid			types[2] = {BYTEAOID, TEXTOID};
	Datum		vals[2] = {PointerGetDatum(sha), CStringGetTextDatum(unit)};
	int64		id = 0;
	int			rc;

	*current = false;
	rc = SPI_execute_with_args("SELECT id, analyzer_version FROM alexandrite.meshes "
							   "WHERE sha256 OPERATOR(pg_catalog.=) $1 "
							   "AND unit OPERATOR(pg_catalog.=) $2",
							   2, types, vals, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not look up mesh: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
	{
		bool		isnull;

		Datum		v;

		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
		v = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		*current = !isnull && DatumGetInt32(v) == ALX_ANALYZER_VERSION;
	}
	return id;
}

/*
 * The statements mesh_ingest runs as the extension owner: constants of the
 * library, every caller value a parameter ($1 sha256, $2 unit, $3 file
 * name, $4.. the measurements, $30 the id of a row to measure again).
 */
static const char *const mesh_update_sql =
"UPDATE alexandrite.meshes SET (format, triangles, vertices, "
"volume_mm3, area_mm2, size_x_mm, size_y_mm, size_z_mm, shells, "
"watertight, boundary_edges, nonmanifold_edges, degenerate_triangles, "
"analysis_ms, unit_scale_mm, inconsistent_edges, faces_reoriented, "
"euler_characteristic, genus, volume_uncertainty_mm3, min_x_mm, "
"min_y_mm, min_z_mm, warnings, analyzer_version, size_bytes, "
"min_wall_mm, min_wall_x_mm, min_wall_y_mm, min_wall_z_mm, "
"wall_below_0_3_mm2, wall_below_0_5_mm2, wall_below_0_8_mm2, "
"wall_below_1_0_mm2, "
"analyzed_at) = ROW($4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
"$15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, "
"$28, $29, $31, $32, $33, $34, $35, $36, $37, $38, pg_catalog.now()) "
"WHERE id OPERATOR(pg_catalog.=) $30 "
"AND sha256 OPERATOR(pg_catalog.=) $1 AND unit OPERATOR(pg_catalog.=) $2";

static const char *const mesh_insert_sql =
"INSERT INTO alexandrite.meshes (sha256, unit, filename, format, "
"triangles, vertices, volume_mm3, area_mm2, size_x_mm, size_y_mm, "
"size_z_mm, shells, watertight, boundary_edges, nonmanifold_edges, "
"degenerate_triangles, analysis_ms, unit_scale_mm, "
"inconsistent_edges, faces_reoriented, euler_characteristic, genus, "
"volume_uncertainty_mm3, min_x_mm, min_y_mm, min_z_mm, warnings, "
"analyzer_version, size_bytes, min_wall_mm, min_wall_x_mm, "
"min_wall_y_mm, min_wall_z_mm, wall_below_0_3_mm2, wall_below_0_5_mm2, "
"wall_below_0_8_mm2, wall_below_1_0_mm2) VALUES ($1, $2, $3, $4, $5, "
"$6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, "
"$20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $31, $32, $33, "
"$34, $35, $36, $37, $38) "
"ON CONFLICT (sha256, unit) DO NOTHING RETURNING id";

/* the same without the wall thickness, for the schema of 1.1 */
static const char *const mesh_update_sql_1_1 =
"UPDATE alexandrite.meshes SET (format, triangles, vertices, "
"volume_mm3, area_mm2, size_x_mm, size_y_mm, size_z_mm, shells, "
"watertight, boundary_edges, nonmanifold_edges, degenerate_triangles, "
"analysis_ms, unit_scale_mm, inconsistent_edges, faces_reoriented, "
"euler_characteristic, genus, volume_uncertainty_mm3, min_x_mm, "
"min_y_mm, min_z_mm, warnings, analyzer_version, size_bytes, "
"analyzed_at) = ROW($4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
"$15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, "
"$28, $29, pg_catalog.now()) "
"WHERE id OPERATOR(pg_catalog.=) $30 "
"AND sha256 OPERATOR(pg_catalog.=) $1 AND unit OPERATOR(pg_catalog.=) $2";

static const char *const mesh_insert_sql_1_1 =
"INSERT INTO alexandrite.meshes (sha256, unit, filename, format, "
"triangles, vertices, volume_mm3, area_mm2, size_x_mm, size_y_mm, "
"size_z_mm, shells, watertight, boundary_edges, nonmanifold_edges, "
"degenerate_triangles, analysis_ms, unit_scale_mm, "
"inconsistent_edges, faces_reoriented, euler_characteristic, genus, "
"volume_uncertainty_mm3, min_x_mm, min_y_mm, min_z_mm, warnings, "
"analyzer_version, size_bytes) VALUES ($1, $2, $3, $4, $5, "
"$6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, "
"$20, $21, $22, $23, $24, $25, $26, $27, $28, $29) "
"ON CONFLICT (sha256, unit) DO NOTHING RETURNING id";

static const Oid mesh_store_types[] = {
	BYTEAOID, TEXTOID, TEXTOID, TEXTOID,
	INT8OID, INT8OID, FLOAT8OID, FLOAT8OID,
	FLOAT8OID, FLOAT8OID, FLOAT8OID, INT4OID, BOOLOID,
	INT8OID, INT8OID, INT8OID, FLOAT8OID,
	FLOAT8OID, INT8OID, INT8OID, INT8OID, INT4OID,
	FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID,
	TEXTARRAYOID, INT4OID, INT8OID, INT8OID,
	FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID,
	FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID
};

#define MESH_STORE_NARGS lengthof(mesh_store_types)

/* The parameters of mesh_update_sql and mesh_insert_sql. */
static void
store_params(bytea *sha, const char *unit, text *filename, bytea *data,
			 const HelperResult *hr, int64 id, Datum *vals, char *nulls)
{
	Datum		sv[MS_NATTS];
	bool		sn[MS_NATTS];

	stats_values(hr, sha, sv, sn);
	memset(nulls, ' ', MESH_STORE_NARGS);
	vals[0] = PointerGetDatum(sha);
	vals[1] = CStringGetTextDatum(unit);
	if (filename)
		vals[2] = PointerGetDatum(filename);
	else
		nulls[2] = 'n';
	vals[3] = sv[MS_FORMAT];
	vals[4] = sv[MS_TRIANGLES];
	vals[5] = sv[MS_VERTICES];
	vals[6] = sv[MS_VOLUME];
	vals[7] = sv[MS_AREA];
	vals[8] = sv[MS_SIZE_X];
	vals[9] = sv[MS_SIZE_Y];
	vals[10] = sv[MS_SIZE_Z];
	vals[11] = sv[MS_SHELLS];
	vals[12] = sv[MS_WATERTIGHT];
	vals[13] = sv[MS_BOUNDARY];
	vals[14] = sv[MS_NONMANIFOLD];
	vals[15] = sv[MS_DEGENERATE];
	vals[16] = Float8GetDatum(hr->elapsed_ms);
	vals[17] = sv[MS_UNIT_SCALE];
	vals[18] = sv[MS_INCONSISTENT];
	vals[19] = sv[MS_REORIENTED];
	vals[20] = sv[MS_EULER];
	vals[21] = sv[MS_GENUS];
	if (sn[MS_GENUS])
		nulls[21] = 'n';
	vals[22] = sv[MS_UNCERTAINTY];
	vals[23] = sv[MS_MIN_X];
	vals[24] = sv[MS_MIN_Y];
	vals[25] = sv[MS_MIN_Z];
	vals[26] = sv[MS_WARNINGS];
	vals[27] = sv[MS_ANALYZER_VERSION];
	vals[28] = Int64GetDatum((int64) VARSIZE_ANY_EXHDR(data));
	vals[29] = Int64GetDatum(id);
	for (int k = 0; k <= MS_WALL_BELOW_10 - MS_MIN_WALL; k++)
	{
		vals[30 + k] = sv[MS_MIN_WALL + k];
		if (sn[MS_MIN_WALL + k])
			nulls[30 + k] = 'n';
	}
}

/* Whether alexandrite.meshes has the wall thickness (1.2), or is 1.1's. */
static bool
schema_has_wall(void)
{
	Oid			nsp = get_namespace_oid(ALX_SCHEMA_NAME, false);
	Oid			relid = get_relname_relid("meshes", nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "table alexandrite.meshes does not exist");
	return get_attnum(relid, "min_wall_mm") != InvalidAttrNumber;
}

/*
 * Store the analysis: measure the row of an older analyzer again (keeping
 * its id, which orders and quotes refer to, and its first file name), or
 * insert a new row.  Runs as the extension owner, SPI connected.  Returns
 * the mesh id.
 */
static int64
store_mesh(bytea *sha, const char *unit, text *filename, bytea *data,
		   const HelperResult *hr, int64 id)
{
	Datum		vals[MESH_STORE_NARGS];
	char		nulls[MESH_STORE_NARGS];
	bool		current;
	bool		wall = schema_has_wall();
	int			rc;

	store_params(sha, unit, filename, data, hr, id, vals, nulls);
	if (!wall)
		vals[27] = Int32GetDatum(ALX_ANALYZER_VERSION_NO_WALL);
	if (id != 0)
	{
		rc = SPI_execute_with_args(wall ? mesh_update_sql : mesh_update_sql_1_1, MESH_STORE_NARGS,
								   (Oid *) mesh_store_types, vals, nulls, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "could not update mesh: %s", SPI_result_code_string(rc));
		return id;
	}
	rc = SPI_execute_with_args(wall ? mesh_insert_sql : mesh_insert_sql_1_1, MESH_STORE_NARGS,
							   (Oid *) mesh_store_types, vals, nulls, false, 1);
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not store mesh: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
	{
		bool		isnull;

		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	}
	else
		id = find_mesh(sha, unit, &current);	/* a concurrent ingest won */
	if (id == 0)
		elog(ERROR, "mesh vanished after a concurrent ingest");
	return id;
}

/*
 * mesh_ingest's three steps, which mesh_ingest runs in its caller's
 * transaction and a mesh worker in three transactions of its own (jobs.h):
 * the analysis reads no table and needs neither a snapshot nor the
 * workers' gate, so a worker holds neither while the helper runs.
 */

/* The stored row for these bytes and unit, or 0 (as the extension owner). */
int64
AlxMeshFind(bytea *sha, const char *unit, bool *current)
{
	AlxSavedUser save;
	int64		id;

	AlxBecomeOwner(&save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	id = find_mesh(sha, unit, current);
	SPI_finish();
	AlxRestoreUser(&save);
	return id;
}

/* The helper's measurements of data, in CurrentMemoryContext. */
AlxMeshAnalysis *
AlxMeshAnalyse(bytea *data, const char *unit)
{
	HelperResult *hr = palloc0(sizeof(HelperResult));

	analyze_bytes(data, NULL, unit, NULL, hr);
	return hr;
}

/*
 * Stores an analysis: measures row known_id again (an older analyzer's), or
 * inserts a row (or finds the one a concurrent ingest inserted).  As the
 * extension owner; returns the mesh id.
 */
int64
AlxMeshStore(bytea *sha, const char *unit, text *filename, bytea *data,
			 const AlxMeshAnalysis *an, int64 known_id)
{
	AlxSavedUser save;
	int64		id;

	AlxBecomeOwner(&save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	id = store_mesh(sha, unit, filename, data, an, known_id);
	SPI_finish();
	AlxRestoreUser(&save);
	return id;
}

PG_FUNCTION_INFO_V1(alexandrite_mesh_ingest);

/*
 * mesh_ingest(data bytea, filename text, unit text DEFAULT 'mm') RETURNS bigint
 * The same bytes in the same unit give the same id and are parsed once per
 * analyzer version.
 *
 * It runs as its caller (EXECUTE is all the MES gets) and does its reads
 * and writes of alexandrite.meshes as the extension owner (privilege.c),
 * only around the library's own statements: the analysis in between (the
 * helper process) runs with the caller's identity.  An ERROR needs no
 * cleanup: abort restores the user id and closes SPI.  On a 1.1 schema
 * (library upgraded, extension not yet) it stores 1.1's columns.
 */
Datum
alexandrite_mesh_ingest(PG_FUNCTION_ARGS)
{
	bytea	   *data;
	text	   *filename = NULL;
	const char *unit = "mm";
	bytea	   *sha;
	int64		id;
	bool		current;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("mesh data must not be null")));
	data = PG_GETARG_BYTEA_PP(0);
	if (!PG_ARGISNULL(1))
		filename = PG_GETARG_TEXT_PP(1);
	if (!PG_ARGISNULL(2))
		unit = check_unit(PG_GETARG_TEXT_PP(2));
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unit must not be null")));

	/*
	 * The file name is stored, not trusted: customers' files are often
	 * misnamed, so the format is always detected from the bytes (the helper
	 * still pins assimp to the detected format's importer).
	 */
	sha = AlxMeshSha256(VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data));
	id = AlxMeshFind(sha, unit, &current);
	if (id != 0 && current)
		PG_RETURN_INT64(id);
	PG_RETURN_INT64(AlxMeshStore(sha, unit, filename, data, AlxMeshAnalyse(data, unit), id));
}
