/* Root filesystem ops: building a new root whose mount targets are resolved
 * inside it.  Called only from child.c; async-signal-safe (no malloc, no
 * stdio), return -1 with errno set.
 *
 * Every target is opened with openat2(root, path, RESOLVE_IN_ROOT |
 * RESOLVE_NO_MAGICLINKS) as an O_PATH fd and mounted onto through that fd
 * (move_mount MOVE_MOUNT_T_EMPTY_PATH), so a symlink planted in an image at
 * a mount target resolves inside the image, never out of it: the class of
 * runc's CVE-2021-30465, where the check was done on a path string.
 */
#include "isolate.h"

#include <linux/openat2.h>


/* Open path inside root (both as given by the plan).  root NULL: path is
 * taken as is, relative to the current root and cwd (used for sources the
 * caller names on the host, whose own symlinks are the caller's). */
static int
open_root(const char *root)
{
    return open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/* path inside the root open as rfd; rfd -1: path as is (see open_in_root). */
static int
open_beneath(int rfd, const char *path, uint64_t oflags)
{
    if (rfd < 0) {
        return open(path, (int)oflags | O_CLOEXEC);
    }
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = oflags | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(__NR_openat2, rfd, path, &how, sizeof how);
}

static int
open_in_root(const char *root, const char *path, uint64_t oflags)
{
    if (root == NULL) {
        return open_beneath(-1, path, oflags);
    }
    int rfd = open_root(root);
    if (rfd < 0) {
        return -1;
    }
    int fd = open_beneath(rfd, path, oflags);
    close_keep_errno(rfd);
    return fd;
}

/* Attach the detached mount mfd on the place the O_PATH fd tfd names. */
static int
move_onto(int mfd, int tfd)
{
    return (int)syscall(__NR_move_mount, mfd, "", tfd, "",
                        MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}

static int
attach_at(int mfd, const char *root, const char *path)
{
    int tfd = open_in_root(root, path, O_PATH);
    if (tfd < 0) {
        return -1;
    }
    int rc = move_onto(mfd, tfd);
    close_keep_errno(tfd);
    return rc;
}

/* mount tmpfs on base, then pivot_root into it with the old root kept at
 * /oldroot, so that sources stay reachable as /oldroot/<host path> while the
 * new root is built at /newroot (bubblewrap's layout).  With
 * ISO_F_CHROOT_FALLBACK there is no pivot (the initramfs rootfs cannot be
 * pivoted away from): a recursive clone of the old root, taken before the
 * tmpfs covers base, is attached at base/oldroot instead. */
int
run_op_root_stage(const struct iso_plan *p, const struct iso_op *op)
{
    const char *base = plan_str(p, op->arg0);
    int tree = -1;
    if (op->flags & ISO_F_CHROOT_FALLBACK) {
        tree = (int)syscall(__NR_open_tree, AT_FDCWD, "/",
                            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (tree < 0) {
            return -1;
        }
    }
    if (mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0 ||
        chdir(base) < 0 || mkdir("newroot", 0755) < 0 || mkdir("oldroot", 0755) < 0) {
        close_keep_errno(tree);
        return -1;
    }
    if (tree >= 0) {
        int rc = (int)syscall(__NR_move_mount, tree, "", AT_FDCWD, "oldroot",
                              MOVE_MOUNT_F_EMPTY_PATH);
        close_keep_errno(tree);
        return rc;
    }
    if (syscall(SYS_pivot_root, ".", "oldroot") < 0) {
        return -1;
    }
    return chdir("/");
}

/* Create name in dfd with the len bytes at data; it must not exist yet
 * (O_EXCL, which also never follows a symlink). */
static int
write_entry(int dfd, const char *name, mode_t mode, const char *data, size_t len)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        return -1;
    }
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            close_keep_errno(fd);
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return close(fd);
}

/* One entry named name (a single component) in dfd: type 0 a directory,
 * 1 an empty file, 2 a symlink to link, 4 a character device (link: its
 * dev_t, eight bytes little-endian).  An existing entry of any type is left
 * alone: a later open resolves it, inside the root. */
static int
make_entry(int dfd, const char *name, unsigned type, mode_t mode, const char *link)
{
    int rc;
    if (type == 1) {
        rc = mknodat(dfd, name, S_IFREG | mode, 0);
    } else if (type == 4) {
        uint64_t dev = 0;
        for (int i = 7; i >= 0; i--) {
            dev = dev << 8 | (unsigned char)link[i];
        }
        rc = mknodat(dfd, name, S_IFCHR | mode, (dev_t)dev);
    } else if (type == 2) {
        rc = symlinkat(link, dfd, name);
    } else {
        rc = mkdirat(dfd, name, mode);
    }
    if (rc < 0 && errno == EEXIST) {
        rc = 0;
    }
    return rc;
}

/* Create entries in the directory arg1, resolved inside root arg0.  val2 0:
 * one entry, named arg2, val1 its type, val0 its mode, arg3 a symlink's
 * target.  val2 N > 0: N entries packed at arena offset arg2 by _plan_root.py
 * (type byte, mode as two bytes little-endian, name NUL, link NUL), made
 * through one directory fd: a fresh root's mount points cost a syscall each.
 * Type 3 is a new file with contents: instead of the link, their length as
 * four bytes little-endian, then the bytes; type 4 a character device, its
 * dev_t as eight bytes. */
int
run_op_root_mkdir(const struct iso_plan *p, const struct iso_op *op)
{
    int dfd = open_in_root(plan_str(p, op->arg0), plan_str(p, op->arg1), O_PATH | O_DIRECTORY);
    if (dfd < 0) {
        return -1;
    }
    int rc = 0;
    if (op->val2 == 0) {
        rc = make_entry(dfd, plan_str(p, op->arg2), (unsigned)op->val1, (mode_t)op->val0,
                        plan_str(p, op->arg3));
    } else {
        const char *e = p->arena + op->arg2;
        for (uint64_t i = 0; i < op->val2 && rc == 0; i++) {
            unsigned type = (unsigned char)e[0];
            mode_t mode = (mode_t)((unsigned char)e[1] | ((unsigned)(unsigned char)e[2] << 8));
            const char *name = e + 3;
            const char *link = name + strlen(name) + 1;
            if (type == 4) {
                rc = make_entry(dfd, name, type, mode, link);
                e = link + 8;
                continue;
            }
            if (type == 3) {
                const unsigned char *l = (const unsigned char *)link;
                size_t len = (size_t)l[0] | (size_t)l[1] << 8 | (size_t)l[2] << 16 |
                             (size_t)l[3] << 24;
                rc = write_entry(dfd, name, mode, link + 4, len);
                e = link + 4 + len;
                continue;
            }
            rc = make_entry(dfd, name, type, mode, link);
            e = link + strlen(link) + 1;
        }
    }
    close_keep_errno(dfd);
    return rc;
}

/* One bind of source (inside the root open as sfd_root) onto target (inside
 * tfd_root); a root fd of -1 takes the path as is.  same: source and target
 * name one place (a path made read-only where it is), so the source fd is
 * the target too. */
static int
bind_one(const struct iso_op *op, int sfd_root, const char *source, int tfd_root,
         const char *target, int same)
{
    unsigned rec = (op->flags & ISO_F_RECURSIVE) ? AT_RECURSIVE : 0;
    int sfd = open_beneath(sfd_root, source, O_PATH);
    if (sfd < 0) {
        return -1;
    }
    int mfd = (int)syscall(__NR_open_tree, sfd, "",
                           AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
    if (mfd < 0) {
        close_keep_errno(sfd);
        return -1;
    }
    if (!same) {
        close(sfd);
        sfd = -1;
    }
    int rc = 0;
    struct iso_mount_attr attr = {.attr_set = op->val0, .attr_clr = op->val1};
    if (op->flags & ISO_F_READONLY) {
        attr.attr_set |= MOUNT_ATTR_RDONLY;
    }
    if (attr.attr_set || attr.attr_clr) {
        rc = (int)syscall(__NR_mount_setattr, mfd, "", AT_EMPTY_PATH | rec, &attr, sizeof attr);
    }
    int tfd = sfd;
    if (rc == 0 && tfd < 0) {
        tfd = open_beneath(tfd_root, target, O_PATH);
        rc = tfd < 0 ? -1 : 0;
    }
    if (rc == 0) {
        rc = move_onto(mfd, tfd);
    }
    close_keep_errno(tfd);
    close_keep_errno(mfd);
    return rc;
}

/* Bind source (arg1 inside root arg0) onto target (arg3 inside root arg2):
 * open_tree() clones the source, mount_setattr() applies val0/val1 (and
 * read-only) recursively, move_mount() attaches it to the target fd.
 * ISO_F_EXIST_OK: a missing source or target is skipped (optional paths).
 * val2 N > 0: N binds with these flags, their (source NUL, target NUL)
 * pairs packed at arg1, both roots opened once. */
int
run_op_root_bind(const struct iso_plan *p, const struct iso_op *op)
{
    const char *sroot = plan_str(p, op->arg0), *troot = plan_str(p, op->arg2);
    int sfd_root = -1, tfd_root = -1, rc = 0;
    if ((sroot != NULL && (sfd_root = open_root(sroot)) < 0) ||
        (troot != NULL && (tfd_root = open_root(troot)) < 0)) {
        close_keep_errno(sfd_root);
        return errno == ENOENT && (op->flags & ISO_F_EXIST_OK) ? 0 : -1;
    }
    int same_root = sroot != NULL && troot != NULL && strcmp(sroot, troot) == 0;
    uint64_t n = op->val2 ? op->val2 : 1;
    const char *e = op->val2 ? p->arena + op->arg1 : NULL;
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        const char *source = e ? e : plan_str(p, op->arg1);
        const char *target = e ? source + strlen(source) + 1 : plan_str(p, op->arg3);
        if (e) {
            e = target + strlen(target) + 1;
        }
        rc = bind_one(op, sfd_root, source, tfd_root, target,
                      same_root && strcmp(source, target) == 0);
        if (rc < 0 && errno == ENOENT && (op->flags & ISO_F_EXIST_OK)) {
            rc = 0;
        }
    }
    close_keep_errno(tfd_root);
    close_keep_errno(sfd_root);
    return rc;
}

/* A new filesystem through fsopen/fsconfig/fsmount (Linux 5.2), attached to
 * a target resolved inside the root.  arg0 fstype, arg1 source or 0, arg2
 * root, arg3 target; val0 MOUNT_ATTR_* for fsmount; val1 arena offset of the
 * options, val2 their count.  Each option is a type byte ('s' string, 'f'
 * flag), the key and NUL, the value and NUL: packed by _plan.py so that
 * nothing here has to split or copy a string. */
static int
fs_new(const struct iso_plan *p, const char *fstype, const char *source, uint64_t attrs,
       uint64_t opts_off, uint64_t n_opts)
{
    int fs = (int)syscall(__NR_fsopen, fstype, FSOPEN_CLOEXEC);
    if (fs < 0) {
        return -1;
    }
    const char *o = opts_off ? p->arena + opts_off : NULL;
    for (uint64_t i = 0; i < n_opts && o != NULL; i++) {
        char type = o[0];
        const char *key = o + 1;
        const char *val = key + strlen(key) + 1;
        int rc;
        if (type == 'f') {
            rc = (int)syscall(__NR_fsconfig, fs, FSCONFIG_SET_FLAG, key, NULL, 0);
        } else {
            rc = (int)syscall(__NR_fsconfig, fs, FSCONFIG_SET_STRING, key, val, 0);
        }
        if (rc < 0) {
            close_keep_errno(fs);
            return -1;
        }
        o = val + strlen(val) + 1;
    }
    if (source != NULL &&
        syscall(__NR_fsconfig, fs, FSCONFIG_SET_STRING, "source", source, 0) < 0) {
        close_keep_errno(fs);
        return -1;
    }
    if (syscall(__NR_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        close_keep_errno(fs);
        return -1;
    }
    int mfd = (int)syscall(__NR_fsmount, fs, FSMOUNT_CLOEXEC, (unsigned)attrs);
    close_keep_errno(fs);
    return mfd;
}

/* fd >= 0: a detached tree the parent keeps (a RootFS's shared read-only
 * root) is attached, as a clone: the tree itself must stay the parent's. */
int
run_op_root_mount(const struct iso_plan *p, const struct iso_op *op)
{
    int mfd;
    if (op->fd >= 0) {
        mfd = (int)syscall(__NR_open_tree, op->fd, "",
                           AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    } else {
        mfd = fs_new(p, plan_str(p, op->arg0), plan_str(p, op->arg1), op->val0, op->val1,
                     op->val2);
    }
    if (mfd < 0) {
        return -1;
    }
    int rc = attach_at(mfd, plan_str(p, op->arg2), plan_str(p, op->arg3));
    if (rc < 0 && errno == ENOENT && (op->flags & ISO_F_EXIST_OK)) {
        rc = 0;
    }
    close_keep_errno(mfd);
    return rc;
}

/* Hide path (inside the root open as rfd), as the OCI default masked paths
 * are hidden: a directory gets an empty read-only tmpfs, anything else a
 * clone of the null device open as nfd.  A missing path is nothing to hide.
 * *empty is the first such tmpfs, once attached (else -1): later
 * directories get a clone of it, one superblock for all (read-only, so
 * nothing is shared but emptiness). */
static int
mask_one(const struct iso_plan *p, int rfd, const char *path, int nfd, int *empty)
{
    int tfd = open_beneath(rfd, path, O_PATH);
    if (tfd < 0) {
        return errno == ENOENT ? 0 : -1;
    }
    struct stat st;
    if (fstat(tfd, &st) < 0) {
        close_keep_errno(tfd);
        return -1;
    }
    int mfd, dir = S_ISDIR(st.st_mode);
    if (dir && *empty >= 0) {
        mfd = (int)syscall(__NR_open_tree, *empty, "",
                           AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    } else if (dir) {
        mfd = fs_new(p, "tmpfs", "tmpfs", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                     MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, 0, 0);
    } else {
        mfd = (int)syscall(__NR_open_tree, nfd, "",
                           AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    }
    if (mfd < 0) {
        close_keep_errno(tfd);
        return -1;
    }
    int rc = move_onto(mfd, tfd);
    close_keep_errno(tfd);
    if (rc == 0 && dir && *empty < 0) {
        *empty = mfd;       /* now attached: open_tree() can clone it */
    } else {
        close_keep_errno(mfd);
    }
    return rc;
}

/* Hide arg1 inside root arg0 (see mask_one).  arg2: the null device, a path
 * resolved inside root arg3, or inside root arg0 when arg3 is 0; never as
 * is, and once open it must be the character device 1:3 (else ENODEV): an
 * image whose /dev is a symlink must not turn "the new root's dev/null" into
 * a host file, bound read-write over /proc/keys (the class of runc's
 * CVE-2025-31133).  Checked on the fd that is cloned: no window for a swap.
 * val2 N > 0: N paths packed at arg1, each NUL-terminated, the roots opened
 * once.  fd >= 0: the empty read-only tmpfs to clone for directories, kept
 * by the parent (a RootFS's shared one), instead of a new one. */
int
run_op_root_mask(const struct iso_plan *p, const struct iso_op *op)
{
    const char *root = plan_str(p, op->arg0), *null_root = plan_str(p, op->arg3);
    int rfd = -1, nrfd = -1, nfd = -1;
    if (root != NULL && (rfd = open_root(root)) < 0) {
        return errno == ENOENT ? 0 : -1;
    }
    if (null_root != NULL && (nrfd = open_root(null_root)) < 0) {
        close_keep_errno(rfd);
        return -1;
    }
    nfd = open_beneath(null_root != NULL ? nrfd : rfd, plan_str(p, op->arg2), O_PATH);
    close_keep_errno(nrfd);
    struct stat st;
    if (nfd < 0 || fstat(nfd, &st) < 0) {
        close_keep_errno(nfd);
        close_keep_errno(rfd);
        return -1;
    }
    if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3)) {
        errno = ENODEV;
        close_keep_errno(nfd);
        close_keep_errno(rfd);
        return -1;
    }
    int rc = 0, empty = op->fd;
    const char *path = plan_str(p, op->arg1);
    uint64_t n = op->val2 ? op->val2 : 1;
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        rc = mask_one(p, rfd, path, nfd, &empty);
        path += strlen(path) + 1;
    }
    if (empty != op->fd) {
        close_keep_errno(empty);
    }
    close_keep_errno(nfd);
    close_keep_errno(rfd);
    return rc;
}

/* chdir to arg1 resolved inside root arg0 ("/" once the root is switched):
 * a cwd such as /proc/self/fd/N naming a leaked host directory is refused
 * (RESOLVE_NO_MAGICLINKS), the class of runc's CVE-2024-21626. */
int
run_op_root_chdir(const struct iso_plan *p, const struct iso_op *op)
{
    int fd = open_in_root(plan_str(p, op->arg0), plan_str(p, op->arg1), O_PATH | O_DIRECTORY);
    if (fd < 0) {
        return -1;
    }
    int rc = fchdir(fd);
    close_keep_errno(fd);
    return rc;
}

int
run_op_set_dumpable(const struct iso_op *op)
{
    return prctl(PR_SET_DUMPABLE, (unsigned long)op->val0, 0, 0, 0);
}
