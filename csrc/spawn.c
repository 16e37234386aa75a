/* iso_spawn(): the parent's side.  The plan in a memfd, pipes, clone3, id
 * maps, and the wait for the child's report.
 *
 * The clone shares the caller's address space and stops it (CLONE_VM |
 * CLONE_VFORK, as glibc's posix_spawn does), so a spawn costs the same from
 * a 50 MiB caller as from a 2 GiB one: no page tables are copied.  That
 * child does one thing: it execveat()s the child program, a small static
 * binary kept in a sealed memfd (iso_helper_load), which reads the plan and
 * runs its ops (init.c, child.c).  Nothing that changes credentials,
 * dumpability or cgroups ever runs in memory the caller shares, and the
 * OOM killer never picks a task in vfork (oom_badness: in_vfork), so a
 * memory limit can only kill the child program's own image.
 *
 * The calling thread is stopped only until that execveat; it then writes the
 * id maps and v1 cgroup files while the child program waits for its go-ahead.
 */
#include "isolate.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define ISO_STACK_SIZE (64 * 1024)
#define ISO_GUARD_SIZE 4096

/* long iso_clone3_vm(struct iso_clone_args *args, size_t size,
 *                    int (*fn)(void *), void *arg);
 * clone3() with CLONE_VM must switch the child onto its own stack before any
 * C code runs there, so the child half is written in assembly (glibc's
 * clone3.S does the same).  Returns the raw syscall result in the parent. */
#if defined(__x86_64__)
#define ISO_HAVE_CLONE3_VM 1
__asm__(
    ".text\n"
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
__asm__(
    ".text\n"
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

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
close_fd(int32_t *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static int
write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int
write_proc_file(pid_t pid, const char *name, const char *data)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    /* uid_map and gid_map must be written with a single write(2). */
    ssize_t n = write(fd, data, strlen(data));
    int saved = errno;
    close(fd);
    if (n < 0) {
        errno = saved;
        return -1;
    }
    return 0;
}

/* --- the child program ------------------------------------------------------
 *
 * One sealed memfd per process holds the child program (built by
 * csrc/build_child.py, installed as isolate/_isolate_child).  Sealed against
 * writes, shrinking and growing: a process in a sandbox that reaches it
 * through /proc/<pid>/exe (a "#!/proc/self/exe" script) can run it but never
 * change it, and it is no file of the host's.  The fd is close-on-exec; the
 * clone execs it with execveat(AT_EMPTY_PATH), which an ELF file allows.
 */
static volatile int helper_fd = -1;
static dev_t helper_dev;
static ino_t helper_ino;

static int
helper_valid(int fd)
{
    struct stat st;
    /* The caller may have closed our fd and reused its number. */
    return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == helper_dev && st.st_ino == helper_ino;
}

static int
copy_sealed(int src)
{
    unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
    int m = (int)syscall(__NR_memfd_create, "isolate-child", flags | MFD_EXEC);
    if (m < 0 && errno == EINVAL) {
        m = (int)syscall(__NR_memfd_create, "isolate-child", flags);   /* before Linux 6.3 */
    }
    if (m < 0) {
        return -1;
    }
    char buf[16384];
    ssize_t n;
    while ((n = read(src, buf, sizeof buf)) != 0) {
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            close_keep_errno(m);
            return -1;
        }
        if (write_all(m, buf, (size_t)n) < 0) {
            close_keep_errno(m);
            return -1;
        }
    }
    if (fchmod(m, 0555) < 0 ||
        fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
        close_keep_errno(m);
        return -1;
    }
    (void)fcntl(m, F_ADD_SEALS, F_SEAL_EXEC);   /* Linux 6.3; F_SEAL_SEAL allows none after */
    return m;
}

/* Load the child program at `path` into the sealed memfd, once per process
 * (again if the fd was closed behind our back).  0 or -errno. */
int
iso_helper_load(const char *path)
{
    int fd = helper_fd;
    if (helper_valid(fd)) {
        return 0;
    }
    int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0) {
        return -errno;
    }
    int m = copy_sealed(src);
    int err = errno;
    close(src);
    if (m < 0) {
        return -err;
    }
    struct stat st;
    if (fstat(m, &st) < 0) {
        err = errno;
        close(m);
        return -err;
    }
    /* Publish; a thread that lost the race keeps the winner's. */
    int old = fd;
    helper_dev = st.st_dev;
    helper_ino = st.st_ino;
    if (!__atomic_compare_exchange_n(&helper_fd, &old, m, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        close(m);
        return helper_valid(helper_fd) ? 0 : -EAGAIN;
    }
    return 0;
}

/* --- the plan for the child program (struct iso_wire, isolate.h) ------------ */

/* Whether the clone makes a new user namespace (then it carries its
 * capabilities across the child program's execve: carry_caps). */
static int
makes_user_ns(const struct iso_plan *p)
{
    return (p->clone_flags & CLONE_NEWUSER) && !(p->flags & ISO_PLAN_FORK);
}

#define ISO_WIRE_TIMES_OFF ((sizeof(struct iso_wire) + 7) & ~(size_t)7)

extern char **environ;

static size_t
align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static size_t
strings_len(char *const *v, uint32_t *count)
{
    size_t len = 0;
    uint32_t n = 0;
    for (; v != NULL && v[n] != NULL; n++) {
        len += strlen(v[n]) + 1;
    }
    *count = n;
    return len;
}

static char *
put_strings(char *at, char *const *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        size_t l = strlen(v[i]) + 1;
        memcpy(at, v[i], l);
        at += l;
    }
    return at;
}

/* The plan in a new memfd (close-on-exec; the clone clears that for the
 * child program).  envp NULL: this process's environment, now.  Returns the
 * fd, or -1 with errno set. */
static int
write_plan(const struct iso_plan *p, int sync_rd, int netns_sock, uint64_t sigmask)
{
    char **envp = p->envp ? p->envp : environ;
    struct iso_wire w;
    memset(&w, 0, sizeof w);
    w.magic = ISO_WIRE_MAGIC;
    w.version = ISO_WIRE_VERSION;
    w.flags = p->flags;
    size_t off = ISO_WIRE_TIMES_OFF;
    if (p->flags & ISO_PLAN_TIMING) {
        w.times_off = (uint32_t)off;
        off += ((size_t)p->n_ops + 1) * sizeof(uint64_t);
    }
    w.n_ops = p->n_ops;
    w.ops_off = (uint32_t)off;
    off += (size_t)p->n_ops * sizeof(struct iso_op);
    w.n_join_fds = p->n_join_fds;
    w.join_fds_off = (uint32_t)off;
    off += (size_t)p->n_join_fds * 4;
    w.n_keep_fds = p->n_keep_fds;
    w.keep_fds_off = (uint32_t)off;
    off = align8(off + (size_t)p->n_keep_fds * 4);
    size_t argv_len = strings_len(p->argv, &w.argc);
    size_t envp_len = strings_len(envp, &w.envc);
    w.ptrs_off = (uint32_t)off;
    off += ((size_t)w.argc + w.envc + 2) * sizeof(char *);
    w.arena_off = (uint32_t)off;
    w.arena_len = p->arena_len;
    off += p->arena_len;
    w.argv_off = (uint32_t)off;
    off += argv_len;
    w.envp_off = (uint32_t)off;
    off += envp_len;
    if (off > UINT32_MAX / 2) {
        errno = E2BIG;
        return -1;
    }
    w.size = (uint32_t)off;
    w.report_fd = -1;   /* given on the command line */
    w.sync_fd = sync_rd;
    w.netns_sock = netns_sock;
    w.netns_fd = (p->flags & ISO_PLAN_FORK) ? p->netns_fd : -1;
    w.cgroup_fd = (p->flags & ISO_PLAN_FORK) ? p->cgroup_fd : -1;
    w.sigmask = sigmask;
    if (makes_user_ns(p)) {
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
        struct __user_cap_data_struct d[2];
        if (syscall(SYS_capget, &h, d) < 0) {
            return -1;
        }
        w.caps_carried = 1;
        w.inheritable = (uint64_t)d[1].inheritable << 32 | d[0].inheritable;
    }

    char *buf = calloc(1, off);
    if (buf == NULL) {
        return -1;
    }
    memcpy(buf, &w, sizeof w);
    if (p->n_ops) {
        memcpy(buf + w.ops_off, p->ops, (size_t)p->n_ops * sizeof(struct iso_op));
    }
    if (p->n_join_fds) {
        memcpy(buf + w.join_fds_off, p->join_fds, (size_t)p->n_join_fds * 4);
    }
    if (p->n_keep_fds) {
        memcpy(buf + w.keep_fds_off, p->keep_fds, (size_t)p->n_keep_fds * 4);
    }
    memcpy(buf + w.arena_off, p->arena, p->arena_len);
    put_strings(buf + w.argv_off, p->argv, w.argc);
    put_strings(buf + w.envp_off, envp, w.envc);

    int fd = (int)syscall(__NR_memfd_create, "isolate-plan", MFD_CLOEXEC);
    if (fd < 0 || write_all(fd, buf, off) < 0) {
        int saved = errno;
        free(buf);
        if (fd >= 0) {
            close(fd);
        }
        errno = saved;
        return -1;
    }
    free(buf);
    return fd;
}

/* ISO_PLAN_TIMING: copy the child program's stamps into plan->op_times. */
static void
read_times(const struct iso_plan *p, struct iso_child *c)
{
    if (p->op_times != NULL && c->plan_fd >= 0) {
        size_t len = ((size_t)p->n_ops + 1) * sizeof(uint64_t);
        if (pread(c->plan_fd, p->op_times, len, (off_t)ISO_WIRE_TIMES_OFF) != (ssize_t)len) {
            memset(p->op_times, 0, len);
        }
    }
}

/* --- the clone ----------------------------------------------------------------- */

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

static void *
get_stack(void)
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

/* What the clone needs to exec the child program; on the parent's stack
 * (the parent is stopped until the execveat). */
struct iso_start {
    const struct iso_plan *plan;
    int helper_fd, plan_fd, report_fd, sync_rd, netns_sock;
    int carry_caps;
};

/* A clone made with CLONE_NEWUSER holds every capability in its namespace,
 * but its id maps are not written yet, so the execve of the child program
 * would drop them all (an unmapped uid is not root there).  The parent
 * cannot write the maps first: it waits for the execve (a vfork).  So the
 * clone raises every capability it holds as an ambient one, which execve
 * keeps for a program without file capabilities; the child program drops
 * them (and restores the inheritable set) before anything else.  Permitted
 * does not grow, so the shared memory's dumpability is not touched. */
static int
carry_caps(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) < 0) {
        return -1;
    }
    d[0].inheritable = d[0].permitted;
    d[1].inheritable = d[1].permitted;
    if (syscall(SYS_capset, &h, d) < 0) {
        return -1;
    }
    for (unsigned long cap = 0; cap < 64; cap++) {
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) {
            if (errno == EINVAL) {
                break;          /* past cap_last_cap */
            }
            return -1;
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
 * signal blocked, while the calling thread waits (CLONE_VFORK).  Only
 * system calls on its own fd table, then execveat of the child program. */
static int
child_start(void *arg)
{
    const struct iso_start *s = arg;
    const struct iso_plan *p = s->plan;
    if (p->flags & ISO_PLAN_CLOSE_FDS) {
        /* The child program looks paths up: it must hold no fd of the
         * caller's it does not need (a directory fd leads out of any root). */
        if (syscall(__NR_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
            struct rlimit rl;
            unsigned last = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ?
                            (unsigned)rl.rlim_cur : 65536;
            for (unsigned fd = 3; fd < last; fd++) {
                fcntl((int)fd, F_SETFD, FD_CLOEXEC);
            }
        }
    }
    /* What it needs survives the execveat; it marks them close-on-exec again. */
    for (uint32_t i = 0; i < p->n_keep_fds; i++) {
        fcntl(p->keep_fds[i], F_SETFD, 0);
    }
    int own[] = {s->plan_fd, s->report_fd, s->sync_rd, s->netns_sock};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        if (own[i] >= 0 && fcntl(own[i], F_SETFD, 0) < 0) {
            goto fail;
        }
    }
    if (s->carry_caps && carry_caps() < 0) {
        goto fail;
    }
    char plan_arg[16], report_arg[16];
    put_uint(plan_arg, (unsigned)s->plan_fd);
    put_uint(report_arg, (unsigned)s->report_fd);
    char *argv[] = {"isolate-child", plan_arg, report_arg, NULL};
    char *envp[] = {NULL};
    syscall(__NR_execveat, s->helper_fd, "", argv, envp, AT_EMPTY_PATH);
fail:;
    struct iso_report r = {-1, 0, errno, 0};
    ssize_t n;
    do {
        n = write(s->report_fd, &r, sizeof r);
    } while (n < 0 && errno == EINTR);
    _exit(127);
}

static pid_t
do_clone(const struct iso_plan *plan, struct iso_child *c, struct iso_start *s, void *stack)
{
    /* ISO_PLAN_FORK: the new namespaces and the cgroup are the fork's. */
    int fork = !!(plan->flags & ISO_PLAN_FORK);
    uint64_t flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | (fork ? 0 : plan->clone_flags);
    int cgroup_fd = fork ? -1 : plan->cgroup_fd;
    int pidfd = -1;
    char *stack_top = (char *)stack + ISO_STACK_SIZE - 256;   /* 16-byte aligned */

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

/* --- waiting for the child ---------------------------------------------------- */

static void
reap(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

/* Kill and reap a child that will not reach execve. */
static void
kill_and_reap(struct iso_child *c)
{
    if (c->pid > 0) {
        if (c->pidfd < 0 || syscall(__NR_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0) < 0) {
            kill(c->pid, SIGKILL);
        }
        reap(c->pid);
        c->pid = -1;
    }
    close_fd(&c->pidfd);
    close_fd(&c->sync_fd);
    close_fd(&c->report_fd);
    close_fd(&c->netns_sock);
    close_fd(&c->plan_fd);
}

/* Read one report (or EOF: 0 bytes).  Signals stay blocked, so read(2) is
 * never interrupted half-way. */
static ssize_t
read_report(struct iso_child *c)
{
    char *buf = (char *)&c->report;
    size_t got = 0;
    for (;;) {
        ssize_t n = read(c->report_fd, buf + got, sizeof c->report - got);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (n == 0 || (got += (size_t)n) == sizeof c->report) {
            return (ssize_t)got;
        }
    }
}

/* A report the child program wrote before its first op (step -1): it could
 * not start.  The parent-side error of stage ISO_STAGE_CHILD. */
static int
child_start_failed(struct iso_child *c)
{
    int err = c->report.err > 0 ? c->report.err : EPROTO;
    reap(c->pid);
    c->pid = -1;
    c->report_len = 0;
    kill_and_reap(c);
    c->stage = ISO_STAGE_CHILD;
    return -err;
}

/* Waits for the child's report: EOF means execve succeeded.  Reaps a child
 * that reported a failure. */
static int
wait_report(const struct iso_plan *plan, struct iso_child *c)
{
    c->stage = ISO_STAGE_REPORT;
    ssize_t got = read_report(c);
    if (got < 0) {
        int saved = errno;
        kill_and_reap(c);
        return -saved;
    }
    c->report_len = (int32_t)got;
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_done = now_ns();
    }
    close_fd(&c->report_fd);
    if (got == (ssize_t)sizeof c->report && c->report.step == -1) {
        return child_start_failed(c);
    }
    read_times(plan, c);
    close_fd(&c->plan_fd);
    if (got == (ssize_t)sizeof c->report && c->report.err == 0) {
        /* Ready at an exec gate: the child lives on, waiting for its go-ahead. */
        c->stage = ISO_STAGE_NONE;
        return 0;
    }
    if (got != 0) {
        /* The child exits right after its report. */
        reap(c->pid);
        c->pid = -1;
        close_fd(&c->pidfd);
    }
    c->stage = ISO_STAGE_NONE;
    return 0;
}

/* ISO_PLAN_FORK: the child program forked the spawned process into the pid
 * namespace (ISO_OP_FORK) and reported its pid (err 0), or failed at an
 * op before.  The spawned process is then that one: our child too
 * (CLONE_PARENT), opened as a pidfd.  1: forked; 0: a failure report is in
 * c->report; <0: -errno. */
static int
wait_forked(struct iso_child *c)
{
    c->stage = ISO_STAGE_FORK;
    ssize_t got = read_report(c);
    if (got < 0 || got == 0) {
        int err = got < 0 ? errno : ECHILD;
        kill_and_reap(c);
        return -err;
    }
    c->report_len = (int32_t)got;
    if (got == (ssize_t)sizeof c->report && c->report.step == -1) {
        return child_start_failed(c);
    }
    if (got != (ssize_t)sizeof c->report || c->report.err != 0 ||
        c->report.kind != ISO_OP_FORK || c->report.reserved <= 0) {
        reap(c->pid);             /* it failed: it exits after its report */
        c->pid = -1;
        close_fd(&c->pidfd);
        close_fd(&c->report_fd);
        close_fd(&c->plan_fd);
        c->stage = ISO_STAGE_NONE;
        return 0;
    }
    pid_t child = (pid_t)c->report.reserved;
    c->report_len = 0;
    memset(&c->report, 0, sizeof c->report);
    reap(c->pid);                 /* the child program leaves once it has forked */
    c->helper_pid = c->pid;
    close_fd(&c->pidfd);
    c->pid = child;
    /* Our child: nobody else can reap it, so its pid cannot be reused meanwhile. */
    c->pidfd = (int32_t)syscall(__NR_pidfd_open, child, 0);
    if (c->pidfd < 0) {
        int err = errno;
        kill(child, SIGKILL);
        kill_and_reap(c);
        return -err;
    }
    c->stage = ISO_STAGE_NONE;
    return 1;
}

/* Whether the report pipe already holds something (or EOF): the clone could
 * not start the child program, or the child program is done already. */
static int
report_ready(const struct iso_child *c)
{
    struct pollfd pfd = {.fd = c->report_fd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 1;
}

/* ISO_PLAN_NETNS_LATE.  A network namespace costs the kernel most of a
 * millisecond to set up (every pernet subsystem's init), more than a clone
 * with every other namespace.  Made at clone, the child waits for it before
 * its first op; made here, by a thread of its own while the child builds its
 * root on another CPU, it costs the spawn only what the child's ops before
 * ISO_OP_NETNS_JOIN do not cover.  A thread, not this one: unshare() changes
 * the caller's namespace, and setns() back may be refused (a process in a
 * user namespace that does not own its network namespace).  The thread ends
 * here, and the namespace lives on in the fd sent to the child. */
struct late_netns {
    int sock;       /* the thread's own dup of our end of the socket */
    int lo;
    int started;
    pthread_t thread;
};

static void *
late_netns_main(void *arg)
{
    struct late_netns *l = arg;
    int32_t err = 0;
    int fd = -1;
    if (unshare(CLONE_NEWNET) < 0 || (l->lo && iso_loopback_up() < 0) ||
        (fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) < 0) {
        err = errno;
    }
    /* A child that failed before its join has closed its end: nothing to tell. */
    (void)iso_send_fd(l->sock, &err, sizeof err, fd);
    if (fd >= 0) {
        close(fd);
    }
    close(l->sock);
    return NULL;
}

/* Starts the thread; a failure to start it goes to the child, which reports
 * it at its join.  The caller joins the thread before `l` goes away. */
static void
late_netns_start(const struct iso_plan *plan, struct late_netns *l, int sock)
{
    l->lo = !!(plan->flags & ISO_PLAN_NETNS_LO);
    l->started = 0;
    int32_t err = 0;
    l->sock = fcntl(sock, F_DUPFD_CLOEXEC, 0);
    if (l->sock < 0) {
        err = errno;
        (void)iso_send_fd(sock, &err, sizeof err, -1);
        return;
    }
    err = pthread_create(&l->thread, NULL, late_netns_main, l);
    if (err != 0) {
        (void)iso_send_fd(sock, &err, sizeof err, -1);
        close(l->sock);
        return;
    }
    l->started = 1;
}

static void
late_netns_join(struct late_netns *l)
{
    if (l->started) {
        pthread_join(l->thread, NULL);
        l->started = 0;
    }
}

static int
release(const struct iso_plan *plan, struct iso_child *c)
{
    if (c->sync_fd >= 0) {
        c->stage = ISO_STAGE_RELEASE;
        /* A socket, not a pipe: a child that is gone gives EPIPE, never a
         * SIGPIPE pending on this thread once its mask is restored. */
        ssize_t n;
        do {
            n = send(c->sync_fd, "g", 1, MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n != 1) {
            int saved = errno;
            kill_and_reap(c);
            return -saved;
        }
        close_fd(&c->sync_fd);
    }
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_released = now_ns();
    }
    /* iso_spawn starts the network namespace thread before the clone, unless
     * the child is held: then it starts here, after the release. */
    struct late_netns here = {.started = 0};
    if (c->netns_sock >= 0 && (plan->flags & ISO_PLAN_HOLD)) {
        late_netns_start(plan, &here, c->netns_sock);
    }
    int r = wait_report(plan, c);
    late_netns_join(&here);
    close_fd(&c->netns_sock);
    return r;
}

/* The id maps of the child (the spawned process itself with ISO_PLAN_FORK). */
static int
write_maps(const struct iso_plan *plan, struct iso_child *c)
{
    if (plan->flags & ISO_PLAN_SETGROUPS_DENY) {
        c->stage = ISO_STAGE_SETGROUPS;
        if (write_proc_file(c->pid, "setgroups", "deny") < 0) {
            return -1;
        }
    }
    if (plan->uid_map != NULL) {
        c->stage = ISO_STAGE_UID_MAP;
        if (write_proc_file(c->pid, "uid_map", plan->uid_map) < 0) {
            return -1;
        }
    }
    if (plan->gid_map != NULL) {
        c->stage = ISO_STAGE_GID_MAP;
        if (write_proc_file(c->pid, "gid_map", plan->gid_map) < 0) {
            return -1;
        }
    }
    return 0;
}

int
iso_spawn(const struct iso_plan *plan, struct iso_child *c)
{
    int rp[2] = {-1, -1}, sp[2] = {-1, -1}, np[2] = {-1, -1};
    struct late_netns late = {.started = 0};
    int sync = (plan->flags & (ISO_PLAN_SYNC | ISO_PLAN_HOLD)) || plan->uid_map != NULL ||
               plan->gid_map != NULL;
    int err = 0;

    memset(c, 0, sizeof *c);
    c->pid = c->helper_pid = -1;
    c->pidfd = c->report_fd = c->sync_fd = c->netns_sock = c->plan_fd = -1;
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_start = now_ns();
    }
    int hfd = helper_fd;
    if (!helper_valid(hfd)) {
        c->stage = ISO_STAGE_CHILD;
        return -ENOEXEC;          /* iso_helper_load() first */
    }

    c->stage = ISO_STAGE_PIPE;
    if (pipe2(rp, O_CLOEXEC) < 0 ||
        (sync && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) ||
        ((plan->flags & ISO_PLAN_NETNS_LATE) &&
         socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, np) < 0)) {
        err = errno;
        goto fail_pipes;
    }
    c->report_fd = rp[0];
    c->sync_fd = sp[1];
    c->netns_sock = np[0];

    c->stage = ISO_STAGE_STACK;
    void *stack = get_stack();
    if (stack == NULL) {
        err = errno;
        goto fail_pipes;
    }

    /* Block every signal until the child program restores this mask: the
     * clone must not run the caller's (Python's) handlers, which would write
     * to the caller's memory and wakeup fd. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    uint64_t mask = 0;
    for (int sig = 1; sig <= 64; sig++) {
        if (sigismember(&old, sig) == 1) {
            mask |= 1ULL << (sig - 1);
        }
    }

    c->stage = ISO_STAGE_PLAN;
    c->plan_fd = write_plan(plan, sp[0], np[1], mask);
    if (c->plan_fd < 0) {
        err = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        goto fail_pipes;
    }

    /* A network namespace is inherited at clone like any other; entering it
     * here rather than in the child lets it be combined with a new user
     * namespace, which would own the child but not this namespace.  (With
     * ISO_PLAN_FORK the child program enters it before its fork.) */
    int back_net = -1;
    if (plan->netns_fd >= 0 && !(plan->flags & ISO_PLAN_FORK)) {
        back_net = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (back_net < 0 || setns(plan->netns_fd, CLONE_NEWNET) < 0) {
            c->stage = ISO_STAGE_NETNS;
            err = errno;
            close_fd(&back_net);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            goto fail_pipes;
        }
    }
    /* Unless the child is held (release() starts it then), the namespace is
     * made from here on, while the kernel clones. */
    if (np[0] >= 0 && !(plan->flags & ISO_PLAN_HOLD)) {
        late_netns_start(plan, &late, np[0]);
    }
    struct iso_start start = {
        .plan = plan, .helper_fd = hfd, .plan_fd = c->plan_fd, .report_fd = rp[1],
        .sync_rd = sp[0], .netns_sock = np[1], .carry_caps = makes_user_ns(plan),
    };
    c->stage = ISO_STAGE_CLONE;
    pid_t pid = do_clone(plan, c, &start, stack);
    err = errno;
    if (back_net >= 0) {
        /* Returning to our own namespace is always allowed. */
        (void)setns(back_net, CLONE_NEWNET);
        close_fd(&back_net);
    }
    if (pid < 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        goto fail_pipes;
    }
    /* The clone has exec'd the child program, or failed and exited. */
    c->pid = pid;
    close(rp[1]);
    close_fd(&sp[0]);
    close_fd(&np[1]);
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_cloned = now_ns();
    }

    if (plan->flags & ISO_PLAN_FORK) {
        int r = wait_forked(c);
        if (r <= 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            late_netns_join(&late);
            return r;
        }
    } else if (report_ready(c)) {
        /* Failed before any op waits for us (or already done): no maps, no go-ahead. */
        close_fd(&c->sync_fd);
        int r = wait_report(plan, c);
        late_netns_join(&late);
        close_fd(&c->netns_sock);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return r;
    }
    if (write_maps(plan, c) < 0) {
        err = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        kill_and_reap(c);
        late_netns_join(&late);
        return -err;
    }
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_mapped = now_ns();
    }
    if (plan->flags & ISO_PLAN_HOLD) {
        c->stage = ISO_STAGE_NONE;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return 0;
    }
    int r = release(plan, c);
    late_netns_join(&late);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;

fail_pipes:
    if (rp[1] >= 0) {
        close(rp[1]);
    }
    close_fd(&sp[0]);
    close_fd(&np[1]);
    kill_and_reap(c);
    late_netns_join(&late);
    return -err;
}

int
iso_release(const struct iso_plan *plan, struct iso_child *c)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = release(plan, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

void
iso_abandon(struct iso_child *c)
{
    kill_and_reap(c);
}

int
iso_setns(int fd, int nstype)
{
    return setns(fd, nstype) < 0 ? -errno : 0;
}

int
iso_unshare(int flags)
{
    return unshare(flags) < 0 ? -errno : 0;
}
