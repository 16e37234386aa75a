/* System calls without libc: each returns what the kernel returns (-errno
 * in [-4095, -1] on failure) and never reads or writes errno.
 *
 * The spawn's clone (clone.c) runs on the calling thread's TLS while that
 * thread is stopped in vfork: glibc's syscall() and fcntl() would store their
 * errno in the caller's.  The child program's libc (nolibc.c) is built on
 * these too.  Where there is no assembly here, glibc's syscall() stands in,
 * with errno put back as it was.
 */
#ifndef ISOLATE_RAW_H
#define ISOLATE_RAW_H

#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>

static inline long
iso_raw6(long n, long a, long b, long c, long d, long e, long f)
{
#if defined(__x86_64__)
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory", "cc");
    return x0;
#else
    int saved = errno;
    long ret = syscall(n, a, b, c, d, e, f);
    if (ret == -1) {
        ret = -errno;
    }
    errno = saved;
    return ret;
#endif
}

#define ISO_RAW0(n) iso_raw6((n), 0, 0, 0, 0, 0, 0)
#define ISO_RAW1(n, a) iso_raw6((n), (long)(a), 0, 0, 0, 0, 0)
#define ISO_RAW2(n, a, b) iso_raw6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define ISO_RAW3(n, a, b, c) iso_raw6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define ISO_RAW4(n, a, b, c, d) iso_raw6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define ISO_RAW5(n, a, b, c, d, e) \
    iso_raw6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

/* Whether a raw result is a failure (-errno). */
static inline int
iso_raw_failed(long r)
{
    return (unsigned long)r > -4096UL;
}

#endif
