import foreign_util


def test_banner_names_the_dependency_and_its_version():
    assert foreign_util.banner("x").startswith("x on six ")


def test_the_package_under_test_is_its_built_wheel_not_its_sources():
    # wheelpipe's pytest plugin installs the first-party wheels for the packages' tests.
    assert "/.wheelhouse/test-sites/" in foreign_util.__file__, foreign_util.__file__
