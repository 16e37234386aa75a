/* The spawn's clone: CLONE_VM | CLONE_VFORK, on a stack of its own, and the
 * one thing it does, execveat() of the child program (spawn.h).
 *
 * The clone shares the caller's address space and stops it, as glibc's
 * posix_spawn does, so a spawn costs the same from a 50 MiB caller as from a
 * 2 GiB one: no page tables are copied.  Nothing that changes credentials,
 * dumpability or cgroups runs here; the OOM killer never picks a task in
 * vfork (oom_badness: in_vfork).
 */
#include "spawn.h"

#include <pthread.h>

#include "raw.h"

#define ISO_STACK_SIZE (64 * 1024)
#define ISO_GUARD_SIZE 4096

/* long iso_clone3_vm(struct iso_clone_args *args, size_t size,
 *                    int (*fn)(void *), void *arg);
 * clone3() with CLONE_VM must switch the child onto its own stack before any
 * C code runs there, so the child half is written in assembly (glibc's
 * clone3.S does the same).  Returns the raw syscall result in the parent. */
#if defined(__x86_64__)
#define ISO_HAVE_CLONE3_VM 1
__asm__(".text\n"
        ".p2align 4\n"
        ".hidden iso_clone3_vm\n"
        ".type iso_clone3_vm,@function\n"
        "iso_clone3_vm:\n"
        "    mov %rdx, %r8\n"
        "    mov %rcx, %r9\n"
        "    mov $435, %eax\n"
        "    syscall\n"
        "    test %rax, %rax\n"
        "    jnz 1f\n"
        "    xor %ebp, %ebp\n"
        "    mov %r9, %rdi\n"
        "    call *%r8\n"
        "    mov %eax, %edi\n"
        "    mov $231, %eax\n"
        "    syscall\n"
        "    hlt\n"
        "1:  ret\n"
        ".size iso_clone3_vm, .-iso_clone3_vm\n");
#elif defined(__aarch64__)
#define ISO_HAVE_CLONE3_VM 1
__asm__(".text\n"
        ".p2align 4\n"
        ".hidden iso_clone3_vm\n"
        ".type iso_clone3_vm,%function\n"
        "iso_clone3_vm:\n"
        "    mov x10, x2\n"
        "    mov x11, x3\n"
        "    mov x8, #435\n"
        "    svc #0\n"
        "    cbnz x0, 1f\n"
        "    mov x29, xzr\n"
        "    mov x30, xzr\n"
        "    mov x0, x11\n"
        "    blr x10\n"
        "    mov x8, #94\n"
        "    svc #0\n"
        "1:  ret\n"
        ".size iso_clone3_vm, .-iso_clone3_vm\n");
#else
#define ISO_HAVE_CLONE3_VM 0
#endif

#if ISO_HAVE_CLONE3_VM
long iso_clone3_vm(struct iso_clone_args *args, size_t size, int (*fn)(void *), void *arg);
#endif

/* 1: clone3 works, 0: ENOSYS seen once, -1: not yet known.  Racy reads are
 * harmless: at worst two threads both try clone3 once. */
static volatile int clone3_state = -1;

/* One child stack cached per thread: a spawn then costs no mmap, mprotect
 * or munmap.  The clone is a vfork: by the time it returns, the child has
 * exec'd or exited and the stack is free again.  The destructor unmaps it at
 * thread exit. */
static pthread_key_t stack_key;
static pthread_once_t stack_once = PTHREAD_ONCE_INIT;

static void
unmap_cached_stack(void *st)
{
    munmap(st, ISO_STACK_SIZE);
}

static void
make_stack_key(void)
{
    (void)pthread_key_create(&stack_key, unmap_cached_stack);
}

void *
iso_clone_stack(void)
{
    pthread_once(&stack_once, make_stack_key);
    void *st = pthread_getspecific(stack_key);
    if (st != NULL) {
        return st;
    }
    st = mmap(NULL, ISO_STACK_SIZE, PROT_READ | PROT_WRITE,
              MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (st == MAP_FAILED) {
        return NULL;
    }
    /* A guard page: an overflowing child must fault, not write into the parent. */
    if (mprotect(st, ISO_GUARD_SIZE, PROT_NONE) < 0 || pthread_setspecific(stack_key, st) != 0) {
        int saved = errno;
        munmap(st, ISO_STACK_SIZE);
        errno = saved;
        return NULL;
    }
    return st;
}

/* A clone made with CLONE_NEWUSER holds every capability in its namespace,
 * but its id maps are not written yet, so the execve of the child program
 * would drop them all (an unmapped uid is not root there).  The parent
 * cannot write the maps first: it waits for the execve (a vfork).  So the
 * clone raises every capability it holds as an ambient one, which execve
 * keeps for a program without file capabilities; the child program drops
 * them (and restores the inheritable set) before anything else.  Permitted
 * does not grow, so the shared memory's dumpability is not touched. */
static long
carry_caps(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    long r = ISO_RAW2(SYS_capget, &h, d);
    if (r < 0) {
        return r;
    }
    d[0].inheritable = d[0].permitted;
    d[1].inheritable = d[1].permitted;
    r = ISO_RAW2(SYS_capset, &h, d);
    if (r < 0) {
        return r;
    }
    for (unsigned long cap = 0; cap < 64; cap++) {
        r = ISO_RAW5(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
        if (r == -EINVAL) {
            break; /* past cap_last_cap */
        }
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

static void
put_uint(char *buf, unsigned v)
{
    char tmp[12];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < (int)sizeof tmp);
    while (n > 0) {
        *buf++ = tmp[--n];
    }
    *buf = 0;
}

/* The clone: runs on its own stack in the caller's memory, with every
 * signal blocked, while the calling thread waits (CLONE_VFORK).  Only raw
 * system calls (raw.h: the caller's errno is this thread's too) on its own fd
 * table, then execveat of the child program. */
static int
child_start(void *arg)
{
    const struct iso_start *s = arg;
    const struct iso_plan *p = s->plan;
    long r;
    if (p->flags & ISO_PLAN_CLOSE_FDS) {
        /* The child program looks paths up: it must hold no fd of the
         * caller's it does not need (a directory fd leads out of any root). */
        if (ISO_RAW3(__NR_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
            struct {
                uint64_t cur, max;
            } rl; /* prlimit64(2)'s struct rlimit64 */
            unsigned last =
                ISO_RAW4(__NR_prlimit64, 0, RLIMIT_NOFILE, 0, &rl) == 0 && rl.cur < 65536
                    ? (unsigned)rl.cur
                    : 65536;
            for (unsigned fd = 3; fd < last; fd++) {
                (void)ISO_RAW3(__NR_fcntl, fd, F_SETFD, FD_CLOEXEC);
            }
        }
    }
    /* What it needs survives the execveat; it marks them close-on-exec again. */
    for (uint32_t i = 0; i < p->n_keep_fds; i++) {
        (void)ISO_RAW3(__NR_fcntl, p->keep_fds[i], F_SETFD, 0);
    }
    int own[] = {s->plan_fd, s->report_fd, s->sync_rd, s->netns_sock};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        if (own[i] >= 0 && (r = ISO_RAW3(__NR_fcntl, own[i], F_SETFD, 0)) < 0) {
            goto fail;
        }
    }
    if (s->carry_caps && (r = carry_caps()) < 0) {
        goto fail;
    }
    char plan_arg[16], report_arg[16];
    put_uint(plan_arg, (unsigned)s->plan_fd);
    put_uint(report_arg, (unsigned)s->report_fd);
    char *argv[] = {"isolate-child", plan_arg, report_arg, NULL};
    char *envp[] = {NULL};
    r = ISO_RAW5(__NR_execveat, s->helper_fd, "", argv, envp, AT_EMPTY_PATH);
fail:;
    struct iso_report rep = {.step = -1, .err = (int32_t)-r, .entry = -1};
    do {
        r = ISO_RAW3(__NR_write, s->report_fd, &rep, sizeof rep);
    } while (r == -EINTR);
    return 127; /* the trampoline (or clone(3)) exits with it */
}

pid_t
iso_clone(const struct iso_plan *plan, struct iso_child *c, struct iso_start *s, void *stack)
{
    /* ISO_PLAN_FORK: the new namespaces and the cgroup are the fork's. */
    int fork = !!(plan->flags & ISO_PLAN_FORK);
    uint64_t flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | (fork ? 0 : plan->clone_flags);
    int cgroup_fd = fork ? -1 : plan->cgroup_fd;
    int pidfd = -1;
    char *stack_top = (char *)stack + ISO_STACK_SIZE - 256; /* 16-byte aligned */

    if (clone3_state != 0 && !(plan->flags & ISO_PLAN_LEGACY_CLONE)) {
        struct iso_clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = flags;
        ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
        ca.exit_signal = SIGCHLD;
        if (cgroup_fd >= 0) {
            ca.flags |= CLONE_INTO_CGROUP;
            ca.cgroup = (uint64_t)cgroup_fd;
        }
        long r;
#if ISO_HAVE_CLONE3_VM
        ca.stack = (uint64_t)(uintptr_t)stack + ISO_GUARD_SIZE;
        ca.stack_size = (uint64_t)(stack_top - ((char *)stack + ISO_GUARD_SIZE));
        r = iso_clone3_vm(&ca, sizeof ca, child_start, s);
        if (r < 0) {
            errno = (int)-r;
            r = -1;
        }
#else
        /* No trampoline for this architecture: a vfork that copies the
         * address space (slower with a large caller, as fork is). */
        ca.flags &= ~(uint64_t)CLONE_VM;
        r = syscall(__NR_clone3, &ca, sizeof ca);
        if (r == 0) {
            _exit(child_start(s));
        }
#endif
        if (r > 0) {
            clone3_state = 1;
            c->clone3_used = 1;
            c->pidfd = pidfd;
            return (pid_t)r;
        }
        if (errno != ENOSYS || cgroup_fd >= 0) {
            return -1;
        }
        clone3_state = 0;
    }

    /* clone(2): the time namespace bit overlaps CSIGNAL there, so time
     * namespaces need clone3. */
    if (flags & CLONE_NEWTIME) {
        errno = ENOSYS;
        return -1;
    }
    pid_t pid = clone(child_start, stack_top, (int)flags | SIGCHLD, s, &pidfd);
    if (pid > 0) {
        c->clone3_used = 0;
        c->pidfd = pidfd;
    }
    return pid;
}
