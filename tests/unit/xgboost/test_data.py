"""Training data of a channel on real files: CSV, LIBSVM and Parquet, content types, markers, sharding."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from serving_common.training.environment import Channel, TrainingEnvironment
from serving_common.training.harness import TrainingError
from xgboost_container.data import LIBSVM, PARQUET, content_type_of, load_channel

from .jobs import write_files

ROOT = Path(__file__).resolve().parents[3]


def channel(tmp_path: Path, files: dict[str, str | bytes], content_type: str | None = None,
            distribution: str = "FullyReplicated", name: str = "train") -> Channel:
    folder = tmp_path / name
    write_files(folder, files)
    return Channel(name, folder, content_type=content_type, distribution=distribution)


def dense(features) -> np.ndarray:
    return features.toarray() if scipy.sparse.issparse(features) else np.asarray(features)


# --- CSV ---------------------------------------------------------------------------------------------


def test_csv_label_first_no_header(tmp_path):
    data = load_channel(channel(tmp_path, {"a.csv": "1,2.5,3\n0,-4,5e-1\n"}))
    np.testing.assert_array_equal(data.labels, [1, 0])
    np.testing.assert_array_equal(data.features, [[2.5, 3], [-4, 0.5]])
    assert (data.rows, data.columns) == (2, 2)


def test_csv_several_files_plain_and_gzip_in_sorted_order(tmp_path):
    files = {"b.csv.gz": gzip.compress(b"2,20\n3,30\n"), "a.csv": "1,10\n", "sub/c.csv": "4,40\n"}
    data = load_channel(channel(tmp_path, files))
    np.testing.assert_array_equal(data.labels, [1, 2, 3, 4])  # a.csv, b.csv.gz, sub/c.csv
    np.testing.assert_array_equal(data.features[:, 0], [10, 20, 30, 40])


def test_csv_blank_lines_are_skipped(tmp_path):
    data = load_channel(channel(tmp_path, {"a.csv": "\n1,2\n\n\n0,3\n\n"}))
    np.testing.assert_array_equal(data.labels, [1, 0])
    np.testing.assert_array_equal(data.features, [[2], [3]])


def test_csv_missing_cell_is_nan_through_the_slow_path(tmp_path):
    data = load_channel(channel(tmp_path, {"a.csv": "1,,3\n\n0,4,\n1, 5 ,6\n"}))
    np.testing.assert_array_equal(data.labels, [1, 0, 1])
    np.testing.assert_array_equal(data.features, [[np.nan, 3], [4, np.nan], [5, 6]])


def test_csv_quoted_numbers_are_read(tmp_path):
    data = load_channel(channel(tmp_path, {"a.csv": '"1","2.5"\n0,3\n'}))
    np.testing.assert_array_equal(data.features, [[2.5], [3]])


def test_csv_non_number_names_the_file_and_line(tmp_path):
    with pytest.raises(TrainingError, match=r"^bad\.csv, line 3: 'abc' is not a number"):
        load_channel(channel(tmp_path, {"bad.csv": "1,2\n\n0,abc\n"}))


def test_csv_header_line_is_explained(tmp_path):
    with pytest.raises(TrainingError, match=r"a\.csv, line 1: 'label' is not a number.*no header"):
        load_channel(channel(tmp_path, {"a.csv": "label,x\n1,2\n"}))


def test_csv_ragged_rows_name_the_line(tmp_path):
    with pytest.raises(TrainingError, match=r"^r\.csv, line 2: 2 columns, the first line has 3$"):
        load_channel(channel(tmp_path, {"r.csv": "1,2,3\n0,4\n"}))


def test_csv_files_of_different_widths_fail(tmp_path):
    with pytest.raises(TrainingError, match=r"different numbers of features: \[1, 2\]"):
        load_channel(channel(tmp_path, {"a.csv": "1,2\n", "b.csv": "1,2,3\n"}))


def test_csv_needs_a_feature_besides_the_label(tmp_path):
    with pytest.raises(TrainingError, match="at least one feature"):
        load_channel(channel(tmp_path, {"a.csv": "1\n0\n"}))


def test_csv_empty_file_among_others_is_ignored_quietly(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "input contained no data" would be a warning
        data = load_channel(channel(tmp_path, {"a.csv": "", "b.csv": "1,2\n", "c.csv": "\n\n"}))
    np.testing.assert_array_equal(data.labels, [1])


def test_csv_with_a_byte_order_mark(tmp_path):
    data = load_channel(channel(tmp_path, {"a.csv": "\ufeff1,2\n0,3\n".encode()}))
    np.testing.assert_array_equal(data.labels, [1, 0])


def test_csv_not_utf8(tmp_path):
    with pytest.raises(TrainingError, match=r"a\.csv: not UTF-8 text \(byte 2\)"):
        load_channel(channel(tmp_path, {"a.csv": b"1,\xff\n"}))


def test_csv_gz_that_is_not_gzip(tmp_path):
    with pytest.raises(TrainingError, match=r"a\.csv\.gz: not a readable gzip file"):
        load_channel(channel(tmp_path, {"a.csv.gz": "1,2\n"}))


@pytest.mark.parametrize("text", ["nan,1\n0,2\n", ",1\n0,2\n", "inf,1\n"])
def test_non_finite_label_fails(tmp_path, text):
    with pytest.raises(TrainingError, match="channel train: labels must be finite numbers"):
        load_channel(channel(tmp_path, {"a.csv": text}))


# --- LIBSVM ------------------------------------------------------------------------------------------


def test_libsvm_zero_based_indices(tmp_path):
    data = load_channel(channel(tmp_path, {"a.libsvm": "1 0:1.5 2:3\n0 1:-2\n"}))
    assert scipy.sparse.issparse(data.features)
    assert data.features.shape == (2, 3)
    np.testing.assert_array_equal(data.labels, [1, 0])
    np.testing.assert_array_equal(dense(data.features), [[1.5, 0, 3], [0, -2, 0]])
    assert data.features.nnz == 3  # absent entries stay absent (missing for XGBoost), not stored zeros


def test_libsvm_one_based_indices_keep_their_positions(tmp_path):
    data = load_channel(channel(tmp_path, {"a.svm": "1 1:1.5 3:2\n0 2:7\n"}))
    assert data.features.shape == (2, 4)  # column 0 is simply never present
    np.testing.assert_array_equal(dense(data.features), [[0, 1.5, 0, 2], [0, 0, 7, 0]])


def test_libsvm_comments_and_blank_lines(tmp_path):
    text = "# written by a tool\n\n1 0:1 1:2  # first row\n   \n0 1:3\n"
    data = load_channel(channel(tmp_path, {"a.libsvm": text}))
    np.testing.assert_array_equal(data.labels, [1, 0])
    np.testing.assert_array_equal(dense(data.features), [[1, 2], [0, 3]])


def test_libsvm_widths_differ_across_files(tmp_path):
    files = {"a.libsvm": "1 0:1 2:2\n", "b.libsvm.gz": gzip.compress(b"0 5:9\n"), "c.libsvm": "1 1:4\n"}
    data = load_channel(channel(tmp_path, files))
    assert data.features.shape == (3, 6)
    np.testing.assert_array_equal(dense(data.features), [[1, 0, 2, 0, 0, 0], [0, 0, 0, 0, 0, 9], [0, 4, 0, 0, 0, 0]])
    np.testing.assert_array_equal(data.labels, [1, 0, 1])


def test_libsvm_bad_line_names_the_file_and_line(tmp_path):
    with pytest.raises(TrainingError, match=r"^a\.libsvm, line 2: not LIBSVM"):
        load_channel(channel(tmp_path, {"a.libsvm": "1 0:1\n0 1=2\n"}))


def test_libsvm_negative_index(tmp_path):
    with pytest.raises(TrainingError, match="negative feature index"):
        load_channel(channel(tmp_path, {"a.libsvm": "1 -1:1\n"}))


def test_libsvm_and_csv_in_one_channel_fail(tmp_path):
    # A CSV zero is a value, an absent LIBSVM entry is missing: the channel must not blur the two.
    with pytest.raises(TrainingError, match="mixes LIBSVM files with CSV or Parquet"):
        load_channel(channel(tmp_path, {"a.csv": "1,0,2\n", "b.libsvm": "0 1:1\n"}))


# --- Parquet -----------------------------------------------------------------------------------------


def test_parquet_first_column_is_the_label(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    folder = tmp_path / "train"
    folder.mkdir()
    pq.write_table(pa.table({"y": [1.0, 0.0, 1.0], "a": pa.array([1, None, 3], pa.int64()),
                             "b": [True, False, True], "c": pa.array([0.5, 1.5, 2.5], pa.float32())}),
                   folder / "part-0.parquet", row_group_size=2)
    pq.write_table(pa.table({"label": [0.0], "x": [9], "y": [False], "z": [4.0]}), folder / "part-1.parquet")
    data = load_channel(Channel("train", folder))
    np.testing.assert_array_equal(data.labels, [1, 0, 1, 0])
    np.testing.assert_array_equal(data.features, [[1, 1, 0.5], [np.nan, 0, 1.5], [3, 1, 2.5], [9, 0, 4]])


def test_parquet_by_content_type_whatever_the_file_name(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    folder = tmp_path / "train"
    folder.mkdir()
    pq.write_table(pa.table({"y": [2.0], "x": [3.0]}), folder / "part-00000")
    for content_type in ("application/x-parquet", "application/parquet"):
        data = load_channel(Channel("train", folder, content_type=content_type))
        np.testing.assert_array_equal(data.features, [[3]])


def test_parquet_non_numeric_column_is_named(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    folder = tmp_path / "train"
    folder.mkdir()
    pq.write_table(pa.table({"y": [1.0], "city": ["Paris"]}), folder / "a.parquet")
    with pytest.raises(TrainingError, match=r"a\.parquet: column 'city' \(string\) is not numeric"):
        load_channel(Channel("train", folder))


def test_parquet_unreadable_file(tmp_path):
    pytest.importorskip("pyarrow.parquet")
    with pytest.raises(TrainingError, match=r"a\.parquet: not a readable Parquet file"):
        load_channel(channel(tmp_path, {"a.parquet": "1,2\n"}))


def test_parquet_without_pyarrow_says_how_to_get_it(tmp_path):
    """A real interpreter whose import path lacks pyarrow: the venv's packages, pyarrow left out (no mocks)."""
    site = Path(np.__file__).resolve().parents[1]
    shadow = tmp_path / "site-packages-without-pyarrow"
    shadow.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().startswith("pyarrow"):
            (shadow / entry.name).symlink_to(entry)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.parquet").write_bytes(b"PAR1")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from serving_common.training.environment import Channel\n"
        "from serving_common.training.harness import TrainingError\n"
        "from xgboost_container.data import load_channel\n"
        "try:\n"
        "    import pyarrow\n"
        "    sys.exit('pyarrow is importable')\n"
        "except ImportError:\n"
        "    pass\n"
        "try:\n"
        "    load_channel(Channel('train', Path(sys.argv[1])))\n"
        "except TrainingError as exc:\n"
        "    print(exc)\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "containers" / "xgboost"), str(shadow)])
    # -S: no site module, so the venv's own site-packages (which has pyarrow) is not on the path.
    result = subprocess.run([sys.executable, "-S", "-c", script, str(tmp_path / "train")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("a.parquet: Parquet needs pyarrow, which this image was built without "
                                     "(build it with --build-arg WITH_PARQUET=true)")


# --- content types and files -------------------------------------------------------------------------


@pytest.mark.parametrize(("declared", "expected"), [
    ("text/csv", "text/csv"),
    ("text/csv; charset=utf-8", "text/csv"),
    ("Text/CSV;label_size=1", "text/csv"),
    ("text/libsvm", LIBSVM),
    ("text/x-libsvm", LIBSVM),
    ("application/x-libsvm", LIBSVM),
    ("application/x-parquet", PARQUET),
    ("application/parquet", PARQUET),
])
def test_content_type_from_inputdataconfig_wins_over_the_suffix(tmp_path, declared, expected):
    ch = Channel("train", tmp_path, content_type=declared)
    for name in ("a.libsvm", "a.csv", "part-0", "a.parquet"):
        assert content_type_of(ch, tmp_path / name) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("a.csv", "text/csv"), ("a.csv.gz", "text/csv"), ("a.libsvm", LIBSVM), ("a.svm", LIBSVM),
    ("a.libsvm.gz", LIBSVM), ("a.parquet", PARQUET), ("data.2024.csv", "text/csv"),
    ("part-00000", "text/csv"), ("data.txt", "text/csv"), ("a.gz", "text/csv"),
])
def test_content_type_from_the_suffix_else_csv(tmp_path, name, expected):
    assert content_type_of(Channel("train", tmp_path), tmp_path / name) == expected


def test_declared_content_type_reads_libsvm_named_csv(tmp_path):
    data = load_channel(channel(tmp_path, {"part-0.csv": "1 0:1 3:2\n"}, content_type="text/x-libsvm"))
    assert data.features.shape == (1, 4)


def test_inputdataconfig_content_type_with_parameters_reaches_the_reader(opt_ml):
    base = opt_ml(channels={"train": {"part-0.libsvm": "1,2,3\n0,4,5\n"}},
                  inputdataconfig={"train": {"ContentType": "text/csv; charset=utf-8"}})
    env = TrainingEnvironment.load(base)
    data = load_channel(env.channel("train"))  # read as CSV whatever the suffix says
    np.testing.assert_array_equal(data.features, [[2, 3], [4, 5]])


def test_unsupported_content_type_lists_the_supported_ones(tmp_path):
    with pytest.raises(TrainingError, match=r"channel train: content type 'application/x-recordio-protobuf' "
                                            r"is not supported \(use text/csv, text/libsvm, application/x-parquet\)"):
        load_channel(channel(tmp_path, {"a": "x"}, content_type="application/x-recordio-protobuf"))


def test_marker_and_hidden_files_are_skipped(tmp_path):
    files = {"_SUCCESS": "", "part-0.csv": "1,2\n", ".part-0.csv.crc": "crc", "part-1.csv.crc": "crc",
             ".hidden.csv": "x,y\n", "_temporary/0/part-9.csv": "x\n", ".ipynb_checkpoints/a.csv": "x\n",
             "sub/part-2.csv": "3,4\n"}
    ch = channel(tmp_path, files)
    assert [p.relative_to(ch.path).as_posix() for p in ch.data_files()] == ["part-0.csv", "sub/part-2.csv"]
    np.testing.assert_array_equal(load_channel(ch).labels, [1, 3])


# --- sharding ----------------------------------------------------------------------------------------


FIVE_FILES = {f"part-{i}.csv": f"{i},{i * 10}\n" for i in range(5)}


@pytest.mark.parametrize(("rank", "labels"), [(0, [0, 2, 4]), (1, [1, 3])])
def test_fully_replicated_is_shared_by_file_round_robin(tmp_path, rank, labels):
    data = load_channel(channel(tmp_path, FIVE_FILES), rank=rank, hosts=2)
    np.testing.assert_array_equal(data.labels, labels)


def test_fully_replicated_host_without_files_gets_no_rows(tmp_path):
    data = load_channel(channel(tmp_path, {"a.csv": "1,2\n", "b.csv": "0,3\n"}), rank=2, hosts=3)
    assert data.rows == 0


@pytest.mark.parametrize("rank", [0, 1])
def test_sharded_by_s3_key_is_read_whole(tmp_path, rank):
    data = load_channel(channel(tmp_path, FIVE_FILES, distribution="ShardedByS3Key"), rank=rank, hosts=2)
    np.testing.assert_array_equal(data.labels, [0, 1, 2, 3, 4])


def test_one_host_reads_everything(tmp_path):
    np.testing.assert_array_equal(load_channel(channel(tmp_path, FIVE_FILES)).labels, [0, 1, 2, 3, 4])
