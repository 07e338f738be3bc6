/*-------------------------------------------------------------------------
 *
 * meshd.c
 *	  alexandrite-meshd: the mesh parsing helper and its command line.
 *
 * Two modes:
 *
 *	 alexandrite-meshd --stdin [--format=F] [--unit=U] [--max-bytes=N]
 *					   [--max-memory-mb=M] [--max-cpu-s=S] [--json]
 *		The backend's protocol.  Reads the file's bytes from stdin (at most
 *		N), writes one fixed-size binary record (meshrecord.h) to stdout, or
 *		a one-line message to stderr and a distinct exit code.
 *
 *	 alexandrite-meshd [--format=F] [--unit=U] [--max-memory-mb=M] FILE...
 *		Prints one JSON line of stats per file; each file is parsed in its
 *		own limited child process, so one hostile file cannot stop the run.
 *
 * Before any untrusted byte is parsed the process confines itself
 * (sandbox.c): no new privileges, death with its parent, no core files, no
 * file growth, few descriptors, working directory "/"; once the input is in
 * memory, an address-space limit, a CPU budget that grows with the input
 * size (meshrecord.h), RLIMIT_NPROC 0 and a seccomp allow-list whose
 * default action kills the process.  assimp itself only sees the confined
 * in-memory file system of meshio.c.
 *
 * Built with -DALX_MESHD_SANDBOX_TEST (the test program meshd-sandbox-test,
 * never installed) it takes --try-syscall=NAME and makes that forbidden
 * call after the lockdown (sandbox_probe.c), for test/t/021_mesh_sandbox.pl.
 *
 * IDENTIFICATION
 *	  src/mesh/meshd.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "geometry.h"
#include "meshio.h"
#include "meshout.h"
#include "meshrecord.h"
#include "sandbox.h"
#include "timing.h"
#include "wall.h"

#define MESHD_VERSION "1.2.0"

typedef struct Options
{
	bool		use_stdin;
	bool		json;
	bool		stl_via_assimp;
	bool		wall;			/* measure the wall thickness (default) */
	unsigned long long threads; /* 0 = one per CPU, at most 4 */
	const char *format;
	const char *unit;
	unsigned long long max_bytes;
	unsigned long long max_memory_mb;
	unsigned long long max_cpu_s;	/* cap of the CPU budget */
	unsigned long long size_hint;	/* expected input size, 0 if unknown */
#ifdef ALX_MESHD_SANDBOX_TEST
	const char *try_syscall;
#endif
} Options;

static void
die(int code, const char *msg)
{
	fprintf(stderr, "%s\n", msg);
	exit(code);
}

static bool
parse_ull(const char *s, unsigned long long *out)
{
	char	   *end;

	if (*s == '\0' || *s == '-')
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0';
}

/*
 * The input of a regular file (the CLI opens the file) is mapped, not
 * copied: no read, no page zeroing, the pages already hold the bytes
 * (MAP_POPULATE maps them in one go).  NULL if fd cannot be mapped (the
 * backend feeds a pipe: read_all()); exits if the file is over max bytes.
 */
static unsigned char *
map_input(int fd, unsigned long long max, size_t *lenp)
{
	struct stat sb;
	void	   *p;

	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size <= 0)
		return NULL;
	if (max > 0 && (unsigned long long) sb.st_size > max)
	{
		char		msg[128];

		snprintf(msg, sizeof(msg), "input is larger than %llu bytes", max);
		die(ALX_MESHD_EXIT_TOO_LARGE, msg);
	}
	p = mmap(NULL, (size_t) sb.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	if (p == MAP_FAILED)
		return NULL;
	*lenp = (size_t) sb.st_size;
	return p;
}

/*
 * Read all of fd, at most max bytes; exits on overflow or error.  With a
 * size hint (the backend passes the exact size as --max-bytes, the CLI
 * knows the file's) the buffer is allocated once, so a 50 MB upload is
 * neither copied nor grown.
 */
static unsigned char *
read_all(int fd, unsigned long long max, unsigned long long hint, size_t *lenp)
{
	size_t		cap = 1 << 16,
				len = 0;
	unsigned char *buf;

	if (hint > 0 && hint < ((unsigned long long) 1 << 40))
		cap = (size_t) hint + 1;	/* +1: end of file is seen without growing */
	buf = malloc(cap);
	if (!buf)
		die(ALX_MESHD_EXIT_TOO_LARGE, "out of memory while reading the input");
	for (;;)
	{
		ssize_t		n;

		if (len == cap)
		{
			unsigned char *nb;

			cap *= 2;
			nb = realloc(buf, cap);
			if (!nb)
				die(ALX_MESHD_EXIT_TOO_LARGE, "out of memory while reading the input");
			buf = nb;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			die(ALX_MESHD_EXIT_INTERNAL, "could not read the input");
		}
		if (n == 0)
			break;
		len += (size_t) n;
		if (max > 0 && len > max)
		{
			char		msg[128];

			snprintf(msg, sizeof(msg), "input is larger than %llu bytes", max);
			die(ALX_MESHD_EXIT_TOO_LARGE, msg);
		}
	}
	*lenp = len;
	return buf;
}

/*
 * Read the input from fd, lock down, then decode: the one path every
 * untrusted byte takes.  Returns an exit code; *lenp is the input size.
 */
static int
confined_decode(const Options *o, int fd, double unit_scale, AlxMeshResult *res,
				size_t *lenp, char *err, size_t errlen)
{
	unsigned char *buf;
	size_t		len;
	bool		mapped;
	AlxSandboxLimits lim;
	AlxMeshOptions mo;
	int			rc;

	alx_timing_mark("start");
	/* assimp's failed checks and runaway recursion become refusals */
	AlxFaultGuardInstall();
	/* every thread the helper will have, before the lockdown */
	if (o->wall && !AlxWallPrepare(o->threads, err, errlen))
		return ALX_MESHD_EXIT_INTERNAL;
	alx_timing_mark("threads+embree");
	buf = map_input(fd, o->max_bytes, &len);
	mapped = buf != NULL;
	if (!mapped)
		buf = read_all(fd, o->max_bytes, o->size_hint, &len);
	alx_timing_mark("read input");
	*lenp = len;
	memset(&lim, 0, sizeof(lim));
	lim.memory_mb = o->max_memory_mb;
	lim.cpu_s = alx_cpu_budget_s(len, o->max_cpu_s);
	if (!AlxSandboxLockdown(&lim, err, errlen))
		return ALX_MESHD_EXIT_INTERNAL;
	/*
	 * The rays may use 10 % of the CPU budget (a 1M-triangle model needs
	 * about 1 %), never past 90 % of it; beyond, the wall is skipped.
	 */
	AlxWallSetDeadline(0.1 * (double) lim.cpu_s, 0.9 * (double) lim.cpu_s);
	alx_timing_mark("lockdown");
#ifdef ALX_MESHD_SANDBOX_TEST
	if (o->try_syscall)
		AlxSandboxProbe(o->try_syscall);
#endif
	memset(&mo, 0, sizeof(mo));
	mo.hint = o->format;
	mo.unit_scale = unit_scale;
	mo.stl_via_assimp = o->stl_via_assimp;
	mo.wall = o->wall;
	rc = AlxMeshDecode(buf, len, &mo, res, err, errlen);
	if (mapped)
		munmap(buf, len);
	else
		free(buf);
	return rc;
}

/* The backend's protocol: stdin in, one record (or --json line) out. */
static int
run_stdin(const Options *o, double unit_scale)
{
	AlxMeshResult res;
	char		err[512];
	size_t		len;
	int			rc;
	static char outbuf[1 << 16];

	/* a buffer of our own: stdio needs no fstat() under the filter */
	setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
	AlxSandboxPrepare();
	rc = confined_decode(o, 0, unit_scale, &res, &len, err, sizeof(err));
	if (rc != ALX_MESHD_EXIT_OK)
		die(rc, err);
	if (o->json)
		AlxMeshPrintJson(NULL, &res, NULL);
	else
		AlxMeshWriteRecord(&res, len);
	return ALX_MESHD_EXIT_OK;
}

/* CLI child: one file, confined like the backend's helper. */
static void
run_one_file(const Options *o, double unit_scale, const char *file)
{
	int			fd = open(file, O_RDONLY | O_CLOEXEC);
	AlxMeshResult res;
	char		err[512];
	size_t		len;
	int			rc;
	struct stat sb;
	Options		fo = *o;

	if (fd < 0)
	{
		snprintf(err, sizeof(err), "could not open file: %s", strerror(errno));
		AlxMeshPrintJson(file, NULL, err);
		_exit(ALX_MESHD_EXIT_USAGE);
	}
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode))
		fo.size_hint = (unsigned long long) sb.st_size;
	AlxSandboxPrepare();
	AlxFaultGuardCliFile(file);
	rc = confined_decode(&fo, fd, unit_scale, &res, &len, err, sizeof(err));
	AlxMeshPrintJson(file, rc == ALX_MESHD_EXIT_OK ? &res : NULL,
					 rc == ALX_MESHD_EXIT_OK ? NULL : err);
	_exit(rc);
}

/* CLI: each file in its own limited child; one JSON line each. */
static int
run_files(const Options *o, double unit_scale, int nfiles, char **files)
{
	static char outbuf[1 << 16];
	int			failures = 0;

	/* a buffer of our own: stdio needs no fstat() under the filter */
	setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
	for (int i = 0; i < nfiles; i++)
	{
		pid_t		pid;
		int			status;

		fflush(stdout);
		pid = fork();
		if (pid < 0)
		{
			AlxMeshPrintJson(files[i], NULL, "could not fork");
			failures++;
			continue;
		}
		if (pid == 0)
			run_one_file(o, unit_scale, files[i]);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (WIFSIGNALED(status))
		{
			char		msg[128];
			int			sig = WTERMSIG(status);

			if (sig == SIGXCPU)
				snprintf(msg, sizeof(msg), "analysis exceeded its CPU budget (signal %d)", sig);
			else if (sig == SIGSYS)
				snprintf(msg, sizeof(msg), "parser was killed by its sandbox (signal %d, a forbidden system call)", sig);
			else
				snprintf(msg, sizeof(msg), "parser died with signal %d (%s)", sig, strsignal(sig));
			AlxMeshPrintJson(files[i], NULL, msg);
			failures++;
		}
		else if (WEXITSTATUS(status) != 0)
			failures++;
	}
	return failures ? 1 : 0;
}

static void
usage(FILE *f)
{
	fprintf(f,
			"usage: alexandrite-meshd [OPTION]... FILE...\n"
			"       alexandrite-meshd --stdin [OPTION]...\n"
			"Analyse STL, OBJ, PLY, glTF/GLB and 3MF meshes; one JSON line per file.\n"
			"  --format=F          stl, obj, ply, gltf, glb or 3mf (default: sniff)\n"
			"  --unit=U            unit of STL/OBJ/PLY: mm (default), cm, m, in\n"
			"  --max-bytes=N       largest input accepted (default 268435456)\n"
			"  --max-memory-mb=M   address-space limit of the parser (default 2048)\n"
			"  --max-cpu-s=S       cap of the CPU budget, 1 s + 1 s per MB of input (default 60)\n"
			"  --stdin             read one file from stdin, write the binary record\n"
			"  --json              with --stdin: write a JSON line instead\n"
			"  --stl-via-assimp    read binary STL with assimp instead of natively\n"
			"                      (same results, slower; for comparison)\n"
			"  --no-wall           do not measure the wall thickness\n"
			"  --threads=N         threads for the wall thickness, 0 = one per CPU (max 4)\n"
			"  --timing            phase timings on stderr\n"
			"  --version           print the version and exit\n"
			"exit codes: 0 ok, 2 bad argument, 3 invalid mesh, 4 too large, 5 could not set up, 6 format mismatch\n");
}

int
main(int argc, char **argv)
{
	Options		o;
	double		unit_scale;
	int			first_file = argc;

	memset(&o, 0, sizeof(o));
	o.unit = "mm";
	o.max_bytes = 268435456ULL;
	o.max_memory_mb = 2048;
	o.max_cpu_s = 60;
	o.wall = true;

	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];

		if (strcmp(a, "--") == 0)
		{
			first_file = i + 1;
			break;
		}
		if (strncmp(a, "--", 2) != 0)
		{
			first_file = i;
			break;
		}
		if (strcmp(a, "--stdin") == 0)
			o.use_stdin = true;
		else if (strcmp(a, "--json") == 0)
			o.json = true;
		else if (strcmp(a, "--stl-via-assimp") == 0)
			o.stl_via_assimp = true;
		else if (strcmp(a, "--no-wall") == 0)
			o.wall = false;
		else if (strcmp(a, "--timing") == 0)
			alx_timing = true;
		else if (strncmp(a, "--threads=", 10) == 0)
		{
			if (!parse_ull(a + 10, &o.threads) || o.threads > ALX_WALL_MAX_THREADS)
				die(ALX_MESHD_EXIT_USAGE, "invalid --threads (0 to 4)");
		}
		else if (strcmp(a, "--help") == 0)
		{
			usage(stdout);
			return 0;
		}
		else if (strcmp(a, "--version") == 0)
		{
			printf("alexandrite-meshd %s (analyzer %d)\n", MESHD_VERSION, ALX_ANALYZER_VERSION);
			return 0;
		}
		else if (strncmp(a, "--format=", 9) == 0)
			o.format = a[9] ? a + 9 : NULL;
		else if (strncmp(a, "--unit=", 7) == 0)
			o.unit = a + 7;
		else if (strncmp(a, "--max-bytes=", 12) == 0)
		{
			if (!parse_ull(a + 12, &o.max_bytes))
				die(ALX_MESHD_EXIT_USAGE, "invalid --max-bytes");
		}
		else if (strncmp(a, "--max-memory-mb=", 16) == 0)
		{
			if (!parse_ull(a + 16, &o.max_memory_mb) || o.max_memory_mb > (1ULL << 30))
				die(ALX_MESHD_EXIT_USAGE, "invalid --max-memory-mb");
		}
		else if (strncmp(a, "--max-cpu-s=", 12) == 0)
		{
			/* any cap a GUC in milliseconds can give, and more */
			if (!parse_ull(a + 12, &o.max_cpu_s) || o.max_cpu_s > 100000000ULL)
				die(ALX_MESHD_EXIT_USAGE, "invalid --max-cpu-s");
		}
#ifdef ALX_MESHD_SANDBOX_TEST
		else if (strncmp(a, "--try-syscall=", 14) == 0)
			o.try_syscall = a + 14;
#endif
		else
		{
			fprintf(stderr, "unknown option \"%s\"\n", a);
			usage(stderr);
			return ALX_MESHD_EXIT_USAGE;
		}
	}
	unit_scale = AlxMeshUnitScale(o.unit);
	if (unit_scale == 0)
		die(ALX_MESHD_EXIT_USAGE, "unit must be one of mm, cm, m, in");
	if (o.format && AlxMeshCanonicalHint(o.format) == NULL)
		die(ALX_MESHD_EXIT_USAGE, "format must be one of stl, obj, ply, gltf, glb, 3mf");

	if (o.use_stdin)
	{
		if (first_file < argc)
			die(ALX_MESHD_EXIT_USAGE, "--stdin takes no file arguments");
		o.size_hint = o.max_bytes;	/* the backend passes the exact size */
		return run_stdin(&o, unit_scale);
	}
	if (first_file >= argc)
	{
		usage(stderr);
		return ALX_MESHD_EXIT_USAGE;
	}
	return run_files(&o, unit_scale, argc - first_file, argv + first_file);
}
