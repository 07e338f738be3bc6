/*-------------------------------------------------------------------------
 *
 * mesh_sql.c
 *	  mesh_analyze() and mesh_ingest(): run the mesh helper, decode its
 *	  record, return or store the statistics.
 *
 * No mesh is ever parsed inside the backend.  Each call forks and execs the
 * installed helper program alexandrite-meshd (next to the postgres binary,
 * or alexandrite.meshd_path), writes the file's bytes to its stdin through a
 * pipe and reads one fixed-size record from its stdout and at most a line
 * of text from its stderr.  The wait is a poll() loop of at most 100 ms
 * steps with CHECK_FOR_INTERRUPTS(), so statement_timeout, query cancel and
 * backend termination act promptly; alexandrite.mesh_timeout bounds the
 * analysis as well.  Whatever way the call ends -- success, helper failure,
 * timeout, cancel, or an ERROR anywhere -- a PG_FINALLY block kills the
 * helper if it still runs, reaps it and closes every pipe, so neither a
 * zombie nor a descriptor is left behind.
 *
 * Every helper outcome maps to an ERROR with a SQLSTATE: invalid file
 * 22P04, bad argument or format mismatch 22023, too large or over a limit
 * 54000, timeout 57014, and a record that does not pass the strict checks
 * of decode_record() 22P04.
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
#include <sys/wait.h>

#include "access/htup_details.h"
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
	MS_NATTS
};

/* SQLSTATE 22P04 (bad_copy_file_format): the file is not a valid mesh */
#define ALX_ERRCODE_BAD_MESH ERRCODE_BAD_COPY_FILE_FORMAT

#define HELPER_STDERR_MAX 1024
#define POLL_STEP_MS 100

typedef struct HelperResult
{
	AlxMeshRecord rec;
	double		elapsed_ms;
} HelperResult;

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

/* SHA-256 of the bytes, as a bytea. */
static bytea *
mesh_sha256(const char *data, size_t len)
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
	else if ((r->watertight == 1) !=
			 (r->u[ALX_RU_BOUNDARY] == 0 && r->u[ALX_RU_NONMANIFOLD] == 0))
		why = "watertight flag contradicts the edge counts";
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
					 r->f[k] < 0)
				why = "negative measure";
		}
		if (why == NULL && !(r->f[ALX_RF_UNIT_SCALE] > 0))
			why = "unit scale out of range";
	}
	if (why)
		ereport(ERROR,
				(errcode(ALX_ERRCODE_BAD_MESH),
				 errmsg("mesh helper returned an invalid result"),
				 errdetail_internal("%s", why)));
}

/* Turn a helper's exit status into an ERROR (or return on success). */
static void
report_status(int status, const char *msg, const char *format)
{
	if (WIFSIGNALED(status))
	{
		int			sig = WTERMSIG(status);

		if (sig == SIGXCPU || sig == SIGKILL)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("mesh analysis exceeded its resource limits"),
					 errdetail("The mesh helper was terminated by signal %d: %s.", sig, pg_strsignal(sig))));
		ereport(ERROR,
				(errcode(ALX_ERRCODE_BAD_MESH),
				 errmsg("mesh parser crashed on this file"),
				 errdetail("The mesh helper was terminated by signal %d: %s.", sig, pg_strsignal(sig)),
				 errhint("The server is not affected; the file is probably malformed.")));
	}
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
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("mesh helper failed with exit code %d", WEXITSTATUS(status)),
					 errdetail_internal("%s", msg)));
	}
}

/*
 * Run the helper over data[0..len) and return its decoded record.
 */
static void
run_helper(const char *data, size_t len, const char *format, const char *unit,
		   HelperResult *result)
{
	char	   *path = helper_path();
	char	   *argv[10];
	char	   *envp[] = {"LC_ALL=C", NULL};
	int			argc = 0;
	int			pin[2] = {-1, -1},
				pout[2] = {-1, -1},
				perr[2] = {-1, -1};
	volatile pid_t pid = -1;
	volatile int fd_in = -1,
				fd_out = -1,
				fd_err = -1;
	/* the child's ends, open in the parent until the fork is done */
	volatile int child_in = -1,
				child_out = -1,
				child_err = -1;
	unsigned char recbuf[ALX_RECORD_SIZE + 1];
	size_t		reclen = 0;
	char		errbuf[HELPER_STDERR_MAX + 1];
	size_t		errlen = 0;
	size_t		written = 0;
	int			status = 0;
	bool		reaped = false;
	bool		timed_out = false;
	bool		overflow = false;
	instr_time	start,
				now;
	long		cpu_s = alx_mesh_timeout_ms / 1000 + 2;

	argv[argc++] = "alexandrite-meshd";
	argv[argc++] = "--stdin";
	argv[argc++] = psprintf("--unit=%s", unit);
	argv[argc++] = psprintf("--max-bytes=%zu", len);
	argv[argc++] = psprintf("--max-memory-mb=%d", alx_mesh_memory_limit_mb);
	argv[argc++] = psprintf("--max-cpu-s=%ld", cpu_s);
	if (format)
		argv[argc++] = psprintf("--format=%s", format);
	argv[argc] = NULL;

	INSTR_TIME_SET_CURRENT(start);

	PG_TRY();
	{
		if (pipe2(pin, O_CLOEXEC) == 0)
		{
			fd_in = pin[1];
			child_in = pin[0];
		}
		if (pipe2(pout, O_CLOEXEC) == 0)
		{
			fd_out = pout[0];
			child_out = pout[1];
		}
		if (pipe2(perr, O_CLOEXEC) == 0)
		{
			fd_err = perr[0];
			child_err = perr[1];
		}
		if (fd_in < 0 || fd_out < 0 || fd_err < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create pipes for the mesh helper: %m")));

		fflush(NULL);
		pid = fork();
		if (pid < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("could not start the mesh helper: %m")));
		if (pid == 0)
		{
			/* child: only async-signal-safe calls until exec */
			sigset_t	none;

			sigemptyset(&none);
			sigprocmask(SIG_SETMASK, &none, NULL);
			if (dup2(pin[0], 0) < 0 || dup2(pout[1], 1) < 0 || dup2(perr[1], 2) < 0)
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
		close(child_in);
		child_in = -1;
		close(child_out);
		child_out = -1;
		close(child_err);
		child_err = -1;
		set_nonblock(fd_in);
		set_nonblock(fd_out);
		set_nonblock(fd_err);

		for (;;)
		{
			struct pollfd pfd[3];
			int			n = 0;
			int			idx_in = -1,
						idx_out = -1,
						idx_err = -1;
			long		left_ms;
			int			rc;

			CHECK_FOR_INTERRUPTS();
			if (!PostmasterIsAlive())
				ereport(FATAL,
						(errcode(ERRCODE_ADMIN_SHUTDOWN),
						 errmsg("terminating connection due to unexpected postmaster exit")));

			INSTR_TIME_SET_CURRENT(now);
			INSTR_TIME_SUBTRACT(now, start);
			left_ms = alx_mesh_timeout_ms - (long) INSTR_TIME_GET_MILLISEC(now);
			if (left_ms <= 0)
			{
				timed_out = true;
				break;
			}

			if (fd_out < 0 && fd_err < 0)
			{
				/* both outputs closed: wait for the exit */
				pid_t		w = waitpid(pid, &status, WNOHANG);

				if (w == pid)
				{
					reaped = true;
					pid = -1;
					break;
				}
				if (w < 0 && errno != EINTR)
					ereport(ERROR,
							(errcode(ERRCODE_INTERNAL_ERROR),
							 errmsg("could not wait for the mesh helper: %m")));
				pg_usleep(Min(left_ms, 5) * 1000L);
				continue;
			}

			if (fd_in >= 0)
			{
				pfd[n].fd = fd_in;
				pfd[n].events = POLLOUT;
				idx_in = n++;
			}
			if (fd_out >= 0)
			{
				pfd[n].fd = fd_out;
				pfd[n].events = POLLIN;
				idx_out = n++;
			}
			if (fd_err >= 0)
			{
				pfd[n].fd = fd_err;
				pfd[n].events = POLLIN;
				idx_err = n++;
			}
			rc = poll(pfd, n, (int) Min(left_ms, POLL_STEP_MS));
			if (rc < 0)
			{
				if (errno == EINTR)
					continue;
				ereport(ERROR,
						(errcode(ERRCODE_INTERNAL_ERROR),
						 errmsg("could not poll the mesh helper: %m")));
			}
			if (rc == 0)
				continue;

			if (idx_in >= 0 && pfd[idx_in].revents != 0)
			{
				ssize_t		w = write(fd_in, data + written,
									  Min(len - written, (size_t) 65536));

				if (w > 0)
					written += (size_t) w;
				if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == len)
				{
					/* done, or the helper stopped reading (EPIPE) */
					close(fd_in);
					fd_in = -1;
				}
			}
			if (idx_out >= 0 && pfd[idx_out].revents != 0)
			{
				ssize_t		r = read(fd_out, recbuf + reclen, sizeof(recbuf) - reclen);

				if (r > 0)
				{
					reclen += (size_t) r;
					if (reclen == sizeof(recbuf))
					{
						/* more than one record: garbage, stop it now */
						overflow = true;
						kill(pid, SIGKILL);
						close(fd_out);
						fd_out = -1;
					}
				}
				else if (r == 0 || (errno != EAGAIN && errno != EINTR))
				{
					close(fd_out);
					fd_out = -1;
				}
			}
			if (idx_err >= 0 && pfd[idx_err].revents != 0)
			{
				char		sink[4096];
				ssize_t		r;

				if (errlen < HELPER_STDERR_MAX)
					r = read(fd_err, errbuf + errlen, HELPER_STDERR_MAX - errlen);
				else
					r = read(fd_err, sink, sizeof(sink));	/* discard the rest */
				if (r > 0)
				{
					if (errlen < HELPER_STDERR_MAX)
						errlen += (size_t) r;
				}
				else if (r == 0 || (errno != EAGAIN && errno != EINTR))
				{
					close(fd_err);
					fd_err = -1;
				}
			}
		}
	}
	PG_FINALLY();
	{
		if (pid > 0)
		{
			/* still running (error, cancel, timeout): kill and reap */
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			pid = -1;
		}
		if (child_in >= 0)
			close(child_in);
		if (child_out >= 0)
			close(child_out);
		if (child_err >= 0)
			close(child_err);
		child_in = child_out = child_err = -1;
		if (fd_in >= 0)
			close(fd_in);
		if (fd_out >= 0)
			close(fd_out);
		if (fd_err >= 0)
			close(fd_err);
		fd_in = fd_out = fd_err = -1;
	}
	PG_END_TRY();

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	result->elapsed_ms = INSTR_TIME_GET_MILLISEC(now);

	if (timed_out)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("mesh analysis timed out after %d ms", alx_mesh_timeout_ms),
				 errhint("alexandrite.mesh_timeout sets the limit.")));

	/* one line of text; strip control characters */
	errbuf[errlen] = '\0';
	for (size_t i = 0; i < errlen; i++)
		if ((unsigned char) errbuf[i] < 0x20)
			errbuf[i] = (errbuf[i] == '\n' && i + 1 == errlen) ? '\0' : ' ';
	if (!reaped)
		elog(ERROR, "mesh helper was not reaped");
	if (overflow)
		ereport(ERROR,
				(errcode(ALX_ERRCODE_BAD_MESH),
				 errmsg("mesh helper returned an invalid result"),
				 errdetail_internal("more output than one record")));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("could not execute mesh helper program \"%s\"", path)));
	report_status(status, errbuf, format);

	{
		const char *why = AlxMeshRecordDecode(recbuf, reclen, &result->rec);

		if (why != NULL)
			ereport(ERROR,
					(errcode(ALX_ERRCODE_BAD_MESH),
					 errmsg("mesh helper returned an invalid result"),
					 errdetail_internal("%s (%zu bytes)", why, reclen)));
	}
	check_record(&result->rec, len);
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

/* Validate the input and run the analysis in a slot. */
static void
analyze_bytes(bytea *data, const char *format, const char *unit, HelperResult *hr)
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
		run_helper(VARDATA_ANY(data), len, format, unit, hr);
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
	v[MS_WATERTIGHT] = BoolGetDatum(r->watertight == 1);
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

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	data = PG_GETARG_BYTEA_PP(0);
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
		format = check_format(PG_GETARG_TEXT_PP(1));
	if (PG_NARGS() > 2 && !PG_ARGISNULL(2))
		unit = check_unit(PG_GETARG_TEXT_PP(2));

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != MS_NATTS)
		elog(ERROR, "alexandrite.mesh_stats has %d columns, expected %d",
			 tupdesc->natts, MS_NATTS);
	tupdesc = BlessTupleDesc(tupdesc);

	analyze_bytes(data, format, unit, &hr);
	stats_values(&hr, mesh_sha256(VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data)),
				 values, isnull);
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

PG_FUNCTION_INFO_V1(alexandrite_mesh_ingest);

/*
 * mesh_ingest(data bytea, filename text, unit text DEFAULT 'mm') RETURNS bigint
 * The same bytes in the same unit give the same id and are parsed once per
 * analyzer version.
 */
Datum
alexandrite_mesh_ingest(PG_FUNCTION_ARGS)
{
	bytea	   *data;
	text	   *filename = NULL;
	const char *unit = "mm";
	bytea	   *sha;
	int64		id;
	HelperResult hr;
	Datum		sv[MS_NATTS];
	bool		sn[MS_NATTS];
	char	   *format = NULL;
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
	sha = mesh_sha256(VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data));

	SPI_connect();
	id = find_mesh(sha, unit, &current);
	if (id == 0 || !current)
	{
		Oid			types[] = {BYTEAOID, TEXTOID, TEXTOID, TEXTOID,
							   INT8OID, INT8OID, FLOAT8OID, FLOAT8OID,
							   FLOAT8OID, FLOAT8OID, FLOAT8OID, INT4OID, BOOLOID,
							   INT8OID, INT8OID, INT8OID, FLOAT8OID,
							   FLOAT8OID, INT8OID, INT8OID, INT8OID, INT4OID,
							   FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID,
							   TEXTARRAYOID, INT4OID, INT8OID, INT8OID};
		Datum		vals[lengthof(types)];
		char		nulls[lengthof(types)];
		int			rc;
		AlxSavedUser save;

		analyze_bytes(data, format, unit, &hr);
		stats_values(&hr, sha, sv, sn);
		memset(nulls, ' ', sizeof(nulls));
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
		vals[16] = Float8GetDatum(hr.elapsed_ms);
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

		/*
		 * meshes is an internal table, written only by the extension owner:
		 * the statements below run as the owner, every value a parameter
		 * (src/privilege.c).  The caller needs EXECUTE on mesh_ingest only.
		 */
		if (id != 0)
		{
			/*
			 * Stored by an older analyzer: measure again, keep the id (orders
			 * and quotes refer to it) and the first file name.
			 */
			AlxBecomeOwner(&save);
			rc = SPI_execute_with_args(
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
									   "AND sha256 OPERATOR(pg_catalog.=) $1 AND unit OPERATOR(pg_catalog.=) $2",
									   lengthof(types), types, vals, nulls, false, 0);
			AlxRestoreUser(&save);
			if (rc != SPI_OK_UPDATE)
				elog(ERROR, "could not update mesh: %s", SPI_result_code_string(rc));
			SPI_finish();
			PG_RETURN_INT64(id);
		}

		AlxBecomeOwner(&save);
		rc = SPI_execute_with_args(
								   "INSERT INTO alexandrite.meshes (sha256, unit, filename, format, "
								   "triangles, vertices, volume_mm3, area_mm2, size_x_mm, size_y_mm, "
								   "size_z_mm, shells, watertight, boundary_edges, nonmanifold_edges, "
								   "degenerate_triangles, analysis_ms, unit_scale_mm, "
								   "inconsistent_edges, faces_reoriented, euler_characteristic, genus, "
								   "volume_uncertainty_mm3, min_x_mm, min_y_mm, min_z_mm, warnings, "
								   "analyzer_version, size_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, "
								   "$8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, "
								   "$22, $23, $24, $25, $26, $27, $28, $29) "
								   "ON CONFLICT (sha256, unit) DO NOTHING RETURNING id",
								   lengthof(types), types, vals, nulls, false, 1);
		AlxRestoreUser(&save);
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
	}
	SPI_finish();
	PG_RETURN_INT64(id);
}
