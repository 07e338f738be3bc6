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
 * Before any untrusted byte is parsed the process limits itself: address
 * space, CPU seconds, no file creation (RLIMIT_FSIZE 0), no core dumps, few
 * descriptors, no new privileges, death with its parent, working directory
 * "/", and a seccomp filter that denies opening files, sockets and exec.
 * assimp itself only sees the confined in-memory file system of meshio.c.
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
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "geometry.h"
#include "meshio.h"
#include "meshrecord.h"

#define MESHD_VERSION "1.1.0"

typedef struct Options
{
	bool		use_stdin;
	bool		json;
	const char *format;
	const char *unit;
	unsigned long long max_bytes;
	unsigned long long max_memory_mb;
	unsigned long long max_cpu_s;
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

/* Set every resource limit and process property the helper runs under. */
static void
limit_self(const Options *o)
{
	struct rlimit rl;

	(void) prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	(void) prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	(void) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

	rl.rlim_cur = rl.rlim_max = 0;
	(void) setrlimit(RLIMIT_CORE, &rl);
	{
		struct stat sb;

		/*
		 * No file may grow.  When stdout itself is a regular file (the CLI
		 * redirected by a user) the limit would stop our own output, so it
		 * is left out; the seccomp filter still denies opening files.
		 */
		if (fstat(1, &sb) != 0 || !S_ISREG(sb.st_mode))
			(void) setrlimit(RLIMIT_FSIZE, &rl);
	}
	if (o->max_memory_mb > 0)
	{
		rl.rlim_cur = rl.rlim_max = (rlim_t) o->max_memory_mb * 1024 * 1024;
		if (setrlimit(RLIMIT_AS, &rl) != 0)
			die(ALX_MESHD_EXIT_INTERNAL, "could not set the memory limit");
	}
	if (o->max_cpu_s > 0)
	{
		rl.rlim_cur = (rlim_t) o->max_cpu_s;
		rl.rlim_max = (rlim_t) o->max_cpu_s + 1;
		(void) setrlimit(RLIMIT_CPU, &rl);
	}
	rl.rlim_cur = rl.rlim_max = 16;
	(void) setrlimit(RLIMIT_NOFILE, &rl);
	if (chdir("/") != 0)
		die(ALX_MESHD_EXIT_INTERNAL, "could not change to the root directory");
}

/*
 * Deny, with EPERM, the system calls a parser never needs once its input is
 * in memory: opening or creating files, sockets, exec, ptrace.  A second
 * line behind the confined aiFileIO.
 */
static void
install_seccomp(void)
{
#if defined(__x86_64__) || defined(__aarch64__)
#define DENY(nr) \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
#if defined(__x86_64__)
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
#else
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_AARCH64, 1, 0),
#endif
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#ifdef __NR_open
		DENY(__NR_open),
#endif
#ifdef __NR_creat
		DENY(__NR_creat),
#endif
		DENY(__NR_openat),
#ifdef __NR_openat2
		DENY(__NR_openat2),
#endif
		DENY(__NR_socket),
		DENY(__NR_connect),
		DENY(__NR_execve),
		DENY(__NR_execveat),
		DENY(__NR_ptrace),
		DENY(__NR_unlinkat),
		DENY(__NR_mkdirat),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {
		.len = (unsigned short) (sizeof(filter) / sizeof(filter[0])),
		.filter = filter,
	};

	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0)
		die(ALX_MESHD_EXIT_INTERNAL, "could not install the seccomp filter");
#undef DENY
#endif
}

/* Read all of fd, at most max bytes; exits on overflow or error. */
static unsigned char *
read_all(int fd, unsigned long long max, size_t *lenp)
{
	size_t		cap = 1 << 16,
				len = 0;
	unsigned char *buf = malloc(cap);

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

static void
write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0)
	{
		ssize_t		w = write(fd, c, n);

		if (w < 0)
		{
			if (errno == EINTR)
				continue;
			exit(ALX_MESHD_EXIT_INTERNAL);
		}
		c += w;
		n -= (size_t) w;
	}
}

/* JSON string escaping into a bounded buffer. */
static void
json_str(char *out, size_t outsize, const char *s)
{
	size_t		o = 0;

	if (outsize < 3)
		return;
	out[o++] = '"';
	for (; *s && o + 8 < outsize; s++)
	{
		unsigned char ch = (unsigned char) *s;

		if (ch == '"' || ch == '\\')
		{
			out[o++] = '\\';
			out[o++] = (char) ch;
		}
		else if (ch < 0x20)
			o += (size_t) snprintf(out + o, outsize - o, "\\u%04x", ch);
		else
			out[o++] = (char) ch;
	}
	out[o++] = '"';
	out[o] = '\0';
}

static void
result_to_record(const AlxMeshResult *res, size_t source_bytes, unsigned char *out)
{
	AlxMeshRecord r;
	const AlxMeshStats *s = &res->stats;

	memset(&r, 0, sizeof(r));
	r.record_version = ALX_RECORD_VERSION;
	r.analyzer_version = ALX_ANALYZER_VERSION;
	r.warnings = s->warnings;
	r.u[ALX_RU_TRIANGLES] = s->triangles;
	r.u[ALX_RU_VERTICES] = s->vertices;
	r.u[ALX_RU_SHELLS] = s->shells;
	r.u[ALX_RU_BOUNDARY] = s->boundary_edges;
	r.u[ALX_RU_NONMANIFOLD] = s->nonmanifold_edges;
	r.u[ALX_RU_INCONSISTENT] = s->inconsistent_edges;
	r.u[ALX_RU_DEGENERATE] = s->degenerate_triangles;
	r.u[ALX_RU_REORIENTED] = s->faces_reoriented;
	r.u[ALX_RU_EDGES] = s->edges;
	r.u[ALX_RU_SOURCE_BYTES] = source_bytes;
	r.i[ALX_RI_EULER] = s->euler_characteristic;
	r.i[ALX_RI_GENUS] = s->genus;
	r.f[ALX_RF_VOLUME] = s->volume_mm3;
	r.f[ALX_RF_AREA] = s->area_mm2;
	r.f[ALX_RF_SIZE_X] = s->size[0];
	r.f[ALX_RF_SIZE_Y] = s->size[1];
	r.f[ALX_RF_SIZE_Z] = s->size[2];
	r.f[ALX_RF_MIN_X] = s->bbox_min[0];
	r.f[ALX_RF_MIN_Y] = s->bbox_min[1];
	r.f[ALX_RF_MIN_Z] = s->bbox_min[2];
	r.f[ALX_RF_UNCERTAINTY] = s->volume_uncertainty_mm3;
	r.f[ALX_RF_UNIT_SCALE] = res->unit_scale_mm;
	snprintf(r.format, sizeof(r.format), "%s", res->format);
	r.watertight = s->watertight ? 1 : 0;
	AlxMeshRecordEncode(&r, out);
}

/* One JSON line for a result (or an error) of the file name given. */
static void
print_json_line(const char *file, const AlxMeshResult *res, const char *error)
{
	char		name[1024];
	char		body[4096];

	json_str(name, sizeof(name), file ? file : "-");
	if (error)
	{
		char		e[1024];

		json_str(e, sizeof(e), error);
		printf("{\"file\":%s,\"error\":%s}\n", name, e);
	}
	else
	{
		AlxGeomStatsToJson(&res->stats, body, sizeof(body));
		/* splice the file, format and unit in front of the stats */
		printf("{\"file\":%s,\"format\":\"%s\",\"unit_scale_mm\":%.17g,\"analyzer_version\":%d,%s\n",
			   name, res->format, res->unit_scale_mm, ALX_ANALYZER_VERSION, body + 1);
	}
	fflush(stdout);
}

/* The backend's protocol: stdin in, one record (or --json line) out. */
static int
run_stdin(const Options *o, double unit_scale)
{
	unsigned char *buf;
	size_t		len;
	AlxMeshResult res;
	char		err[512];
	int			rc;

	limit_self(o);
	buf = read_all(0, o->max_bytes, &len);
	install_seccomp();
	rc = AlxMeshDecode(buf, len, o->format, unit_scale, &res, err, sizeof(err));
	if (rc != ALX_MESHD_EXIT_OK)
		die(rc, err);
	if (o->json)
		print_json_line(NULL, &res, NULL);
	else
	{
		unsigned char rec[ALX_RECORD_SIZE];

		result_to_record(&res, len, rec);
		write_all(1, rec, sizeof(rec));
	}
	free(buf);
	return ALX_MESHD_EXIT_OK;
}

/* CLI: each file in its own limited child; one JSON line each. */
static int
run_files(const Options *o, double unit_scale, int nfiles, char **files)
{
	int			failures = 0;

	for (int i = 0; i < nfiles; i++)
	{
		pid_t		pid;
		int			status;

		fflush(stdout);
		pid = fork();
		if (pid < 0)
		{
			print_json_line(files[i], NULL, "could not fork");
			failures++;
			continue;
		}
		if (pid == 0)
		{
			int			fd = open(files[i], O_RDONLY | O_CLOEXEC);
			unsigned char *buf;
			size_t		len;
			AlxMeshResult res;
			char		err[512];
			int			rc;

			if (fd < 0)
			{
				snprintf(err, sizeof(err), "could not open file: %s", strerror(errno));
				print_json_line(files[i], NULL, err);
				_exit(ALX_MESHD_EXIT_USAGE);
			}
			limit_self(o);
			buf = read_all(fd, o->max_bytes, &len);
			close(fd);
			install_seccomp();
			rc = AlxMeshDecode(buf, len, o->format, unit_scale, &res, err, sizeof(err));
			print_json_line(files[i], rc == ALX_MESHD_EXIT_OK ? &res : NULL,
							rc == ALX_MESHD_EXIT_OK ? NULL : err);
			_exit(rc);
		}
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (WIFSIGNALED(status))
		{
			char		msg[128];

			snprintf(msg, sizeof(msg), "parser died with signal %d (%s)",
					 WTERMSIG(status), strsignal(WTERMSIG(status)));
			print_json_line(files[i], NULL, msg);
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
			"  --max-cpu-s=S       CPU-time limit of the parser (default 60)\n"
			"  --stdin             read one file from stdin, write the binary record\n"
			"  --json              with --stdin: write a JSON line instead\n"
			"  --version           print the version and exit\n"
			"exit codes: 0 ok, 2 bad argument, 3 invalid mesh, 4 too large, 5 internal, 6 format mismatch\n");
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
			if (!parse_ull(a + 12, &o.max_cpu_s) || o.max_cpu_s > 86400)
				die(ALX_MESHD_EXIT_USAGE, "invalid --max-cpu-s");
		}
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
		return run_stdin(&o, unit_scale);
	}
	if (first_file >= argc)
	{
		usage(stderr);
		return ALX_MESHD_EXIT_USAGE;
	}
	return run_files(&o, unit_scale, argc - first_file, argv + first_file);
}
