"""Process tests start real daemons or libp2p hosts: every one is marked `slow`.

`pytest -m "not slow"` runs the rest in about a minute; plain `pytest` (what CI runs) runs everything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)
