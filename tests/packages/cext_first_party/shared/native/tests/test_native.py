import sys
import zlib

import wheelpipe_fixture_native
from wheelpipe_fixture_native import _speedups


def test_the_compiled_checksum_is_adler32():
    for data in (b"", b"a", b"wheelpipe" * 1000):
        assert wheelpipe_fixture_native.adler32(data) == zlib.adler32(data)


def test_the_python_wrapper_calls_the_compiled_checksum():
    assert wheelpipe_fixture_native.checksum_text("Wikipedia") == "11e60398"


def test_the_extension_was_compiled_for_this_interpreter():
    assert wheelpipe_fixture_native.compiled_for().startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")


def test_the_compiled_module_is_imported_from_the_built_wheel_not_from_src():
    # wheelpipe's pytest plugin installs the first-party wheels for the packages' tests.
    assert "/.wheelhouse/test-sites/" in _speedups.__file__ and _speedups.__file__.endswith(".so"), _speedups.__file__
    assert "/.wheelhouse/test-sites/" in wheelpipe_fixture_native.__file__, wheelpipe_fixture_native.__file__
