"""Shared fixtures: one zoo cache per test session, so each tiny model is built once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory):
    from simq.zoo import Zoo

    return Zoo(tmp_path_factory.mktemp("zoo-cache"))
