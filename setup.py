"""The optional native fast path of the media relay (gateway/media/_fastpath.c).

It compiles against the libsrtp2 headers (Debian libsrtp2-dev) and at run time calls the libsrtp that
pylibsrtp bundles.

Metadata lives in pyproject.toml. When the extension cannot be built (no compiler, no libsrtp2-dev)
the install still succeeds and the relay runs on its pure-Python path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gateway.media._fastpath",
            sources=["gateway/media/_fastpath.c"],
            libraries=["dl"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
