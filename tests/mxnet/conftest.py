"""The MXNet tests run in ``.venv-mxnet`` (numpy 1.23); ``tests/conftest.py`` (leak fixture) applies too."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # MXNet 1.9.1 predates the deprecation of distutils and of numpy aliases: not our warnings.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:mxnet.*")
