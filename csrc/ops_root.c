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
open_in_root(const char *root, const char *path, uint64_t oflags)
{
    if (root == NULL) {
        return open(path, (int)oflags | O_CLOEXEC);
    }
    int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0) {
        return -1;
    }
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = oflags | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    int fd = (int)syscall(__NR_openat2, rfd, path, &how, sizeof how);
    close_keep_errno(rfd);
    return fd;
}

static int
attach_at(int mfd, const char *root, const char *path)
{
    int tfd = open_in_root(root, path, O_PATH);
    if (tfd < 0) {
        return -1;
    }
    int rc = (int)syscall(__NR_move_mount, mfd, "", tfd, "",
                          MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
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

/* One entry named name (a single component) in dfd: type 0 a directory,
 * 1 an empty file, 2 a symlink to link.  An existing entry of any type is
 * left alone: a later open resolves it, inside the root. */
static int
make_entry(int dfd, const char *name, unsigned type, mode_t mode, const char *link)
{
    int rc;
    if (type == 1) {
        rc = mknodat(dfd, name, S_IFREG | mode, 0);
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
 * through one directory fd: a fresh root's mount points cost a syscall each. */
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
            rc = make_entry(dfd, name, type, mode, link);
            e = link + strlen(link) + 1;
        }
    }
    close_keep_errno(dfd);
    return rc;
}

/* Bind source (arg1 inside root arg0) onto target (arg3 inside root arg2):
 * open_tree() clones the source, mount_setattr() applies val0/val1 (and
 * read-only) recursively, move_mount() attaches it to the target fd.
 * ISO_F_EXIST_OK: a missing source or target is skipped (optional paths). */
int
run_op_root_bind(const struct iso_plan *p, const struct iso_op *op)
{
    unsigned rec = (op->flags & ISO_F_RECURSIVE) ? AT_RECURSIVE : 0;
    int sfd = open_in_root(plan_str(p, op->arg0), plan_str(p, op->arg1), O_PATH);
    if (sfd < 0) {
        if (errno == ENOENT && (op->flags & ISO_F_EXIST_OK)) {
            return 0;
        }
        return -1;
    }
    int mfd = (int)syscall(__NR_open_tree, sfd, "",
                           AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
    close_keep_errno(sfd);
    if (mfd < 0) {
        return -1;
    }
    struct iso_mount_attr attr = {.attr_set = op->val0, .attr_clr = op->val1};
    if (op->flags & ISO_F_READONLY) {
        attr.attr_set |= MOUNT_ATTR_RDONLY;
    }
    if (attr.attr_set || attr.attr_clr) {
        if (syscall(__NR_mount_setattr, mfd, "", AT_EMPTY_PATH | rec, &attr, sizeof attr) < 0) {
            close_keep_errno(mfd);
            return -1;
        }
    }
    int rc = attach_at(mfd, plan_str(p, op->arg2), plan_str(p, op->arg3));
    if (rc < 0 && errno == ENOENT && (op->flags & ISO_F_EXIST_OK)) {
        rc = 0;
    }
    close_keep_errno(mfd);
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

int
run_op_root_mount(const struct iso_plan *p, const struct iso_op *op)
{
    int mfd = fs_new(p, plan_str(p, op->arg0), plan_str(p, op->arg1), op->val0, op->val1,
                     op->val2);
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

/* Hide arg1 (inside root arg0), as the OCI default masked paths are hidden:
 * a directory gets an empty read-only tmpfs, anything else the null device
 * arg2 bound over it.  A missing path is nothing to hide. */
int
run_op_root_mask(const struct iso_plan *p, const struct iso_op *op)
{
    int tfd = open_in_root(plan_str(p, op->arg0), plan_str(p, op->arg1), O_PATH);
    if (tfd < 0) {
        return errno == ENOENT ? 0 : -1;
    }
    struct stat st;
    if (fstat(tfd, &st) < 0) {
        close_keep_errno(tfd);
        return -1;
    }
    int mfd;
    if (S_ISDIR(st.st_mode)) {
        mfd = fs_new(p, "tmpfs", "tmpfs", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                     MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, 0, 0);
    } else {
        mfd = (int)syscall(__NR_open_tree, AT_FDCWD, plan_str(p, op->arg2),
                           OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    }
    if (mfd < 0) {
        close_keep_errno(tfd);
        return -1;
    }
    int rc = (int)syscall(__NR_move_mount, mfd, "", tfd, "",
                          MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    close_keep_errno(mfd);
    close_keep_errno(tfd);
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
