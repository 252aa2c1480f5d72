"""The one user-file importer (serving_common.importing.import_file) behind script mode and feature code."""

from __future__ import annotations

import pickle
import sys

import pytest

from serving_common.importing import NotLoadable, import_file

NAME = "smkit_test_imported_module"


@pytest.fixture(autouse=True)
def forget():
    yield
    sys.modules.pop(NAME, None)


def test_the_module_is_registered_so_pickle_finds_its_classes(tmp_path):
    (tmp_path / "user.py").write_text("class Point:\n    def __init__(self, x):\n        self.x = x\n")
    module = import_file(tmp_path / "user.py", NAME)
    assert sys.modules[NAME] is module and module.__name__ == NAME
    assert pickle.loads(pickle.dumps(module.Point(3))).x == 3


def test_a_failing_file_leaves_sys_modules_as_it_was(tmp_path):
    (tmp_path / "good.py").write_text("VALUE = 1\n")
    (tmp_path / "bad.py").write_text("VALUE = 2\nraise ValueError('broken on purpose')\n")
    good = import_file(tmp_path / "good.py", NAME)
    with pytest.raises(ValueError, match="broken on purpose"):
        import_file(tmp_path / "bad.py", NAME)
    assert sys.modules[NAME] is good
    del sys.modules[NAME]
    with pytest.raises(ValueError):
        import_file(tmp_path / "bad.py", NAME)
    assert NAME not in sys.modules


def test_a_file_python_cannot_load(tmp_path):
    (tmp_path / "notes.txt").write_text("x = 1\n")
    with pytest.raises(NotLoadable, match="cannot import"):
        import_file(tmp_path / "notes.txt", NAME)
    assert NAME not in sys.modules
