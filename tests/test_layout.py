from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_file_basenames_are_unique():
    # the test folders are not packages: two files with one basename break pytest's collection
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert not [name for name, count in names.items() if count > 1]
