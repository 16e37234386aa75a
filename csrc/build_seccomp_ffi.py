"""The cffi builder for libseccomp's few functions isolate calls (out-of-line ABI mode).

Produces ``isolate._seccomp_ffi``, a pure-Python module: the declarations are
parsed here, at build time, and the library itself is only ``dlopen``ed at run
time (libseccomp2 is optional; without it seccomp options raise
``UnsupportedError``).
"""

from cffi import FFI

CDEF = """
typedef void *scmp_filter_ctx;
struct scmp_arg_cmp { unsigned int arg; int op; uint64_t datum_a; uint64_t datum_b; };
scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);
int seccomp_syscall_resolve_name(const char *name);
uint32_t seccomp_arch_resolve_name(const char *arch_name);
int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                           unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
int seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);
int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("isolate._seccomp_ffi", None)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
