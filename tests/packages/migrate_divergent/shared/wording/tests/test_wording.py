from importlib import metadata

import six
from wording import label


def test_the_label_names_the_service_and_the_six_it_runs_with():
    assert label("order") == f"order on six {six.__version__}"


def test_six_is_the_installed_distribution():
    assert metadata.version("six") == six.__version__
