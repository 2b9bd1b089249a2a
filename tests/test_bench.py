"""`cnnlab bench`: a wrong destination is refused in one line before anything is measured."""

import pytest

from cnnlab.bench.results import check_destination
from conftest import assert_one_line_error, run_cli


@pytest.mark.parametrize(
    "command",
    [
        ["bench", "--quick"],
        ["bench", "--target", "99"],
        ["bench", "--inference", "/nonexistent"],
        ["bench", "--gpu", "--device", "cpu", "--quick"],
    ],
)
def test_bench_out_a_file_is_refused_before_measuring(tmp_path, capsys, command):
    """Before, `bench --out FILE` measured for 20 s and then failed with a traceback, the figures lost. The data
    and the run are never opened (no such data folder, no such run): the destination is checked first."""
    existing = tmp_path / "results.json"
    existing.write_text("a user's file")
    code, err = run_cli([*command, "--data-dir", tmp_path / "no-data", "--out", existing], capsys)
    assert_one_line_error(code, err, f"--out {existing} is not a folder")
    assert existing.read_text() == "a user's file"


def test_a_destination_under_a_file_is_refused_and_a_new_folder_is_fine(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(Exception, match=r"is not a folder \(.*file is a file\)"):
        check_destination(tmp_path / "file" / "results")
    assert check_destination(tmp_path / "new" / "results") == tmp_path / "new" / "results"
    assert not (tmp_path / "new").exists()  # checked, not created: an empty folder is not left behind
