/* The few libc functions the child program calls, as raw system calls.
 *
 * The child program (init.c, child.c, ops_*.c, net.c) is linked with
 * -nostdlib on x86_64 and aarch64: a static glibc costs every spawn about
 * 130 us more at start-up (TLS, IRELATIVE relocations, tunables, a readlink
 * of /proc/self/exe) and twenty times the pages.  The prototypes are glibc's
 * own (its headers are included for types and constants only), so the
 * compiler checks every definition here against them.  Single-threaded: errno
 * is a plain variable.  Elsewhere csrc/build_child.py links glibc statically
 * and this file is not compiled.
 */
#include "isolate.h"

#include <stdarg.h>

#include "raw.h"

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "nolibc.c: x86_64 and aarch64 only (build_child.py links glibc elsewhere)"
#endif

int main(int argc, char **argv);

static int iso_errno;
char **environ;

int *
__errno_location(void)
{
    return &iso_errno;
}

/* The kernel returns -errno in [-4095, -1]. */
static long
ret(long r)
{
    if (iso_raw_failed(r)) {
        iso_errno = (int)-r;
        return -1;
    }
    return r;
}

#define SYS0(n) ret(ISO_RAW0(n))
#define SYS1(n, a) ret(ISO_RAW1(n, a))
#define SYS2(n, a, b) ret(ISO_RAW2(n, a, b))
#define SYS3(n, a, b, c) ret(ISO_RAW3(n, a, b, c))
#define SYS4(n, a, b, c, d) ret(ISO_RAW4(n, a, b, c, d))
#define SYS5(n, a, b, c, d, e) ret(ISO_RAW5(n, a, b, c, d, e))

long
syscall(long n, ...)
{
    va_list ap;
    va_start(ap, n);
    long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long);
    long d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
    va_end(ap);
    return ret(iso_raw6(n, a, b, c, d, e, f));
}

void
_exit(int status)
{
    for (;;) {
        iso_raw6(__NR_exit_group, status, 0, 0, 0, 0, 0);
    }
}

int
close(int fd)
{
    return (int)SYS1(__NR_close, fd);
}

ssize_t
read(int fd, void *buf, size_t n)
{
    return SYS3(__NR_read, fd, buf, n);
}

ssize_t
write(int fd, const void *buf, size_t n)
{
    return SYS3(__NR_write, fd, buf, n);
}

int
openat(int dfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | __O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return (int)SYS4(__NR_openat, dfd, path, flags, mode);
}

int
open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | __O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return openat(AT_FDCWD, path, flags, mode);
}

int
fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long);
    va_end(ap);
    return (int)SYS3(__NR_fcntl, fd, cmd, arg);
}

int
ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return (int)SYS3(__NR_ioctl, fd, request, arg);
}

int
prctl(int option, ...)
{
    va_list ap;
    va_start(ap, option);
    unsigned long a = va_arg(ap, unsigned long), b = va_arg(ap, unsigned long);
    unsigned long c = va_arg(ap, unsigned long), d = va_arg(ap, unsigned long);
    va_end(ap);
    return (int)SYS5(__NR_prctl, option, a, b, c, d);
}

int
mount(const char *src, const char *dst, const char *type, unsigned long flags, const void *data)
{
    return (int)SYS5(__NR_mount, src, dst, type, flags, data);
}

int
umount2(const char *target, int flags)
{
    return (int)SYS2(__NR_umount2, target, flags);
}

int
chdir(const char *path)
{
    return (int)SYS1(__NR_chdir, path);
}

int
fchdir(int fd)
{
    return (int)SYS1(__NR_fchdir, fd);
}

int
chroot(const char *path)
{
    return (int)SYS1(__NR_chroot, path);
}

int
mkdirat(int dfd, const char *path, mode_t mode)
{
    return (int)SYS3(__NR_mkdirat, dfd, path, mode);
}

int
mkdir(const char *path, mode_t mode)
{
    return mkdirat(AT_FDCWD, path, mode);
}

int
mknodat(int dfd, const char *path, mode_t mode, dev_t dev)
{
    return (int)SYS4(__NR_mknodat, dfd, path, mode, dev);
}

int
mknod(const char *path, mode_t mode, dev_t dev)
{
    return mknodat(AT_FDCWD, path, mode, dev);
}

int
symlinkat(const char *target, int dfd, const char *link)
{
    return (int)SYS3(__NR_symlinkat, target, dfd, link);
}

int
symlink(const char *target, const char *link)
{
    return symlinkat(target, AT_FDCWD, link);
}

mode_t
umask(mode_t mask)
{
    return (mode_t)SYS1(__NR_umask, mask);
}

int
sethostname(const char *name, size_t len)
{
    return (int)SYS2(__NR_sethostname, name, len);
}

int
setdomainname(const char *name, size_t len)
{
    return (int)SYS2(__NR_setdomainname, name, len);
}

int
setns(int fd, int nstype)
{
    return (int)SYS2(__NR_setns, fd, nstype);
}

int
unshare(int flags)
{
    return (int)SYS1(__NR_unshare, flags);
}

pid_t
setsid(void)
{
    return (pid_t)SYS0(__NR_setsid);
}

int
setpgid(pid_t pid, pid_t pgid)
{
    return (int)SYS2(__NR_setpgid, pid, pgid);
}

int
socket(int domain, int type, int proto)
{
    return (int)SYS3(__NR_socket, domain, type, proto);
}

ssize_t
sendmsg(int fd, const struct msghdr *msg, int flags)
{
    return SYS3(__NR_sendmsg, fd, msg, flags);
}

ssize_t
recvmsg(int fd, struct msghdr *msg, int flags)
{
    return SYS3(__NR_recvmsg, fd, msg, flags);
}

int
poll(struct pollfd *fds, nfds_t n, int timeout)
{
    struct timespec ts = {.tv_sec = timeout / 1000, .tv_nsec = (long)(timeout % 1000) * 1000000};
    return (int)SYS5(__NR_ppoll, fds, n, timeout < 0 ? NULL : &ts, NULL, 0);
}

int
getrlimit(__rlimit_resource_t resource, struct rlimit *rl)
{
    return (int)SYS4(__NR_prlimit64, 0, resource, NULL, rl);
}

int
setrlimit(__rlimit_resource_t resource, const struct rlimit *rl)
{
    return (int)SYS4(__NR_prlimit64, 0, resource, rl, NULL);
}

int
fstat(int fd, struct stat *st)
{
    return (int)SYS2(__NR_fstat, fd, st);
}

int
execve(const char *path, char *const argv[], char *const envp[])
{
    return (int)SYS3(__NR_execve, path, argv, envp);
}

int
dup3(int fd, int fd2, int flags)
{
    return (int)SYS3(__NR_dup3, fd, fd2, flags);
}

int
dup2(int fd, int fd2)
{
    if (fd == fd2) {
        return fcntl(fd, F_GETFD) < 0 ? -1 : fd;
    }
    return dup3(fd, fd2, 0);
}

int
clock_gettime(clockid_t clock, struct timespec *ts)
{
    return (int)SYS2(__NR_clock_gettime, clock, ts);
}

int
access(const char *path, int mode)
{
    return (int)SYS3(__NR_faccessat, AT_FDCWD, path, mode);
}

void *
mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    long r = iso_raw6(__NR_mmap, (long)addr, (long)len, prot, flags, fd, off);
    if (iso_raw_failed(r)) {
        iso_errno = (int)-r;
        return MAP_FAILED;
    }
    return (void *)r;
}

int
munmap(void *addr, size_t len)
{
    return (int)SYS2(__NR_munmap, addr, len);
}

/* The compiler may emit calls to these for struct copies and zeroing. */
void *
memset(void *s, int c, size_t n)
{
    unsigned char *p = s;
    while (n--) {
        *p++ = (unsigned char)c;
    }
    return s;
}

void *
memcpy(void *restrict dst, const void *restrict src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) {
        *d++ = *s++;
    }
    return dst;
}

void *
memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d < s) {
        while (n--) {
            *d++ = *s++;
        }
    }
    else {
        while (n--) {
            d[n] = s[n];
        }
    }
    return dst;
}

int
memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++) {
        if (*x != *y) {
            return *x - *y;
        }
    }
    return 0;
}

size_t
strlen(const char *s)
{
    const char *p = s;
    while (*p) {
        p++;
    }
    return (size_t)(p - s);
}

int
strcmp(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}

/* The entry point: the kernel leaves argc, argv, NULL, envp, NULL on the stack. */
__attribute__((used, noreturn)) void
iso_start_c(long *sp)
{
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    environ = argv + argc + 1;
    _exit(main(argc, argv));
}

#if defined(__x86_64__)
__asm__(".text\n"
        ".global _start\n"
        ".type _start,@function\n"
        "_start:\n"
        "    xor %ebp, %ebp\n"
        "    mov %rsp, %rdi\n"
        "    and $-16, %rsp\n"
        "    call iso_start_c\n"
        "    hlt\n");
#else
__asm__(".text\n"
        ".global _start\n"
        ".type _start,%function\n"
        "_start:\n"
        "    mov x29, #0\n"
        "    mov x30, #0\n"
        "    mov x0, sp\n"
        "    and x1, x0, #-16\n"
        "    mov sp, x1\n"
        "    bl iso_start_c\n");
#endif
