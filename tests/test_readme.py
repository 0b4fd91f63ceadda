"""The README stays true: every config a user can choose is in its tables, every path it links exists."""

import re

import pytest

from tests.conftest import CONF, ROOT

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("group", ["backbone", "task", "data"])
def test_every_config_is_in_the_readme(group):
    missing = [
        path.stem
        for path in sorted((CONF / group).glob("*.yaml"))
        if f"`{path.stem}`" not in README and f"`{group}={path.stem}" not in README
    ]
    assert not missing, f"conf/{group} configs missing from README.md's tables: {missing}"


def test_linked_files_exist():
    links = re.findall(r"\]\(((?!https?://)[^)#]+)\)", README)
    assert links, "the README links its files"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, f"README.md links files that do not exist: {missing}"
