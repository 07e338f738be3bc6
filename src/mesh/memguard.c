/*-------------------------------------------------------------------------
 *
 * memguard.c
 *	  Notice when an allocation fails in alexandrite-meshd.
 *
 * Under RLIMIT_AS an allocation inside assimp fails, and assimp does not
 * always say so: some importers catch std::bad_alloc and go on to report a
 * validation error, which would reach the user as "invalid mesh file"
 * (22P04) although the file is fine and the memory limit is what stopped
 * it.  The helper program therefore interposes the C allocation functions
 * (operator new calls malloc), forwards each to glibc's own implementation
 * and remembers whether one ever returned NULL; meshio.c then reports the
 * failure as "too large" (54000).  Linked only into the helper, never into
 * the fuzz target (whose sanitizer owns malloc) or the backend.
 *
 * IDENTIFICATION
 *	  src/mesh/memguard.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "meshio.h"

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

static volatile int alloc_failed;

/* Did any allocation of the process fail so far? */
bool
AlxMeshAllocFailed(void)
{
	return alloc_failed != 0;
}

#define HUGE_MIN	((size_t) 1 << 20)
#define HUGE_PAGE	((uintptr_t) 2 << 20)

/* Huge pages for the 2 MB-aligned interior of a large block. */
static inline void *
noted_sized(void *p, size_t size)
{
	if (p == NULL)
	{
		alloc_failed = 1;
		return p;
	}
	if (size >= HUGE_MIN)
	{
		uintptr_t	lo = ((uintptr_t) p + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
		uintptr_t	hi = ((uintptr_t) p + size) & ~(HUGE_PAGE - 1);

		if (hi > lo)
			(void) madvise((void *) lo, hi - lo, MADV_HUGEPAGE);
	}
	return p;
}

static inline void *
noted(void *p)
{
	if (p == NULL)
		alloc_failed = 1;
	return p;
}

/*
 * Blocks of a megabyte and more start on a huge-page boundary and are
 * rounded up to whole huge pages, so that all of them (not just a 2 MB-
 * aligned middle) can be backed by huge pages.
 */
static inline size_t
huge_round(size_t size)
{
	return (size + HUGE_PAGE - 1) & ~(size_t) (HUGE_PAGE - 1);
}

void *
malloc(size_t size)
{
	if (size >= HUGE_MIN && size < ((size_t) 1 << 48))
		return noted_sized(__libc_memalign(HUGE_PAGE, huge_round(size)), huge_round(size));
	return noted_sized(__libc_malloc(size), size);
}

void *
calloc(size_t n, size_t size)
{
	size_t		total;
	void	   *p;

	if (__builtin_mul_overflow(n, size, &total))
	{
		alloc_failed = 1;
		errno = ENOMEM;
		return NULL;
	}
	if (total < HUGE_MIN || total >= ((size_t) 1 << 48))
		return noted_sized(__libc_calloc(n, size), total);
	p = noted_sized(__libc_memalign(HUGE_PAGE, huge_round(total)), huge_round(total));
	if (p != NULL)
		memset(p, 0, total);
	return p;
}

void *
realloc(void *p, size_t size)
{
	void	   *q;

	if (p == NULL)
		return malloc(size);
	q = __libc_realloc(p, size);

	/* realloc(p, 0) may free and return NULL: not a failure */
	if (q == NULL && size != 0)
		alloc_failed = 1;
	return q ? noted_sized(q, size) : q;
}

void *
memalign(size_t align, size_t size)
{
	return noted_sized(__libc_memalign(align, size), size);
}

void *
aligned_alloc(size_t align, size_t size)
{
	return noted_sized(__libc_memalign(align, size), size);
}

void *
valloc(size_t size)
{
	return noted(__libc_valloc(size));
}

void *
pvalloc(size_t size)
{
	return noted(__libc_pvalloc(size));
}

int
posix_memalign(void **out, size_t align, size_t size)
{
	void	   *p;

	if (align < sizeof(void *) || (align & (align - 1)) != 0)
		return EINVAL;
	p = __libc_memalign(align, size);
	if (p == NULL)
	{
		alloc_failed = 1;
		return ENOMEM;
	}
	*out = noted_sized(p, size);
	return 0;
}
