"""Builds the entrowatch package, generating the wire stubs from the proto.

The stubs (entrowatch/v1/entrowatch_pb2.py and entrowatch_pb2_grpc.py) are
produced by protoc and grpc_python_plugin at build time and never committed, so
they always match proto/entrowatch/v1/entrowatch.proto and the installed
protobuf runtime. ENTROWATCH_PROTO_DIR overrides where the proto tree is found;
PROTOC and GRPC_PYTHON_PLUGIN override the tools.
"""

import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

_HERE = os.path.dirname(os.path.abspath(__file__))
_PROTO = os.path.join("entrowatch", "v1", "entrowatch.proto")


def _find_tool(env_name, name):
    tool = os.environ.get(env_name) or shutil.which(name)
    if not tool:
        raise RuntimeError(f"{name} not found: install it (Debian: protobuf-compiler, "
                           f"protobuf-compiler-grpc) or set {env_name}")
    return tool


def _proto_dir():
    candidates = [os.environ.get("ENTROWATCH_PROTO_DIR"),
                  os.path.join(_HERE, "..", "..", "proto"),
                  os.path.join(_HERE, "proto")]
    for candidate in candidates:
        if candidate and os.path.isfile(os.path.join(candidate, _PROTO)):
            return os.path.abspath(candidate)
    raise RuntimeError(f"{_PROTO} not found next to the package; set ENTROWATCH_PROTO_DIR")


class BuildPyWithStubs(build_py):
    """build_py that also writes the generated stubs into the build tree."""

    def run(self):
        super().run()
        out_dir = self.build_lib
        os.makedirs(os.path.join(out_dir, "entrowatch", "v1"), exist_ok=True)
        subprocess.run([
            _find_tool("PROTOC", "protoc"),
            f"--proto_path={_proto_dir()}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            f"--plugin=protoc-gen-grpc_python="
            f"{_find_tool('GRPC_PYTHON_PLUGIN', 'grpc_python_plugin')}",
            _PROTO,
        ], check=True)


setup(cmdclass={"build_py": BuildPyWithStubs})
