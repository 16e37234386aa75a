from setuptools import setup

setup(cffi_modules=["csrc/build_ffi.py:ffibuilder", "csrc/build_seccomp_ffi.py:ffibuilder"])
