/* The child program in a sealed memfd (the parent's side; see spawn.h).
 *
 * One sealed memfd per process holds the child program (built by
 * csrc/build_child.py, installed as isolate/_isolate_child).  Sealed against
 * writes, shrinking and growing: a process in a sandbox that reaches it
 * through /proc/<pid>/exe (a "#!/proc/self/exe" script) can run it but never
 * change it, and it is no file of the host's.  The fd is close-on-exec; the
 * clone execs it with execveat(AT_EMPTY_PATH), which an ELF file allows.
 */
#include "spawn.h"

#include <pthread.h>

/* One loader at a time: helper_dev and helper_ino are written under the lock,
 * before helper_fd names the memfd they describe. */
static pthread_mutex_t helper_lock = PTHREAD_MUTEX_INITIALIZER;
static int helper_fd = -1;
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
        m = (int)syscall(__NR_memfd_create, "isolate-child", flags); /* before Linux 6.3 */
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
        if (iso_write_all(m, buf, (size_t)n) < 0) {
            close_keep_errno(m);
            return -1;
        }
    }
    if (fchmod(m, 0555) < 0 ||
        fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
        close_keep_errno(m);
        return -1;
    }
    (void)fcntl(m, F_ADD_SEALS, F_SEAL_EXEC); /* Linux 6.3; F_SEAL_SEAL allows none after */
    return m;
}

/* Load the child program at `path` into the sealed memfd, once per process
 * (again if the fd was closed behind our back).  0 or -errno. */
int
iso_helper_load(const char *path)
{
    if (iso_helper_get() >= 0) {
        return 0;
    }
    pthread_mutex_lock(&helper_lock);
    int err = 0;
    if (iso_helper_get() < 0) {
        /* Another thread may have loaded it while this one waited. */
        int src = open(path, O_RDONLY | O_CLOEXEC);
        int m = src < 0 ? -1 : copy_sealed(src);
        struct stat st;
        if (m < 0 || fstat(m, &st) < 0) {
            err = errno;
            close_keep_errno(m);
        }
        close_keep_errno(src);
        if (err == 0) {
            helper_dev = st.st_dev;
            helper_ino = st.st_ino;
            __atomic_store_n(&helper_fd, m, __ATOMIC_SEQ_CST);
        }
    }
    pthread_mutex_unlock(&helper_lock);
    return -err;
}

int
iso_helper_get(void)
{
    int fd = __atomic_load_n(&helper_fd, __ATOMIC_SEQ_CST);
    return helper_valid(fd) ? fd : -1;
}
