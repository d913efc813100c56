import json

import pytest
from PIL import Image

from icmkit.bench.datasets import DatasetError, imagenet_wnids, open_dataset

from conftest import synthetic_photo


def _save(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synthetic_photo(20, 30, seed)).save(path)


def test_image_folder_is_recursive_and_sorted(tmp_path):
    for name in ("b.png", "a.png", "sub/c.jpg"):
        _save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    data = open_dataset(tmp_path, "fidelity")
    assert [s.key for s in data.samples] == ["a.png", "b.png", "sub/c.jpg"]
    assert len(data.limit(2).samples) == 2


def test_labels_csv(tmp_path):
    _save(tmp_path / "x.png")
    _save(tmp_path / "y.png")
    (tmp_path / "labels.csv").write_text("file,class_index,wnid\nx.png,5,n01496331\ny.png,9,n01518878\n")
    data = open_dataset(tmp_path, "classify")
    assert [(s.key, s.label) for s in data.samples] == [("x.png", 5), ("y.png", 9)]


def test_wnid_folders_use_torchvision_order(tmp_path):
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids[0] == "n01440764"
    _save(tmp_path / wnids[7] / "a.JPEG")
    _save(tmp_path / wnids[0] / "b.JPEG")
    data = open_dataset(tmp_path, "classify")
    assert sorted(s.label for s in data.samples) == [0, 7]


@pytest.mark.parametrize(
    "table, message",
    [
        ("file,label\nx.png,1\n", "file,class_index"),
        ("file,class_index\nmissing.png,1\n", "not found"),
        ("file,class_index\nx.png,cat\n", "not an integer"),
        ("file,class_index\nx.png,1000\n", "outside"),
    ],
)
def test_bad_labels_are_refused(tmp_path, table, message):
    _save(tmp_path / "x.png")
    (tmp_path / "labels.csv").write_text(table)
    with pytest.raises(DatasetError, match=message):
        open_dataset(tmp_path, "classify")


def test_missing_labels_and_empty_folders(tmp_path):
    with pytest.raises(DatasetError, match="no images"):
        open_dataset(tmp_path, "fidelity")
    _save(tmp_path / "x.png")
    with pytest.raises(DatasetError, match="needs labels"):
        open_dataset(tmp_path, "classify")
    with pytest.raises(DatasetError, match="no such folder"):
        open_dataset(tmp_path / "nope", "fidelity")


def test_coco_layout(tmp_path):
    _save(tmp_path / "images" / "000000000001.jpg")
    (tmp_path / "annotations").mkdir()
    document = {
        "images": [
            {"id": 1, "file_name": "000000000001.jpg", "width": 30, "height": 20},
            {"id": 2, "file_name": "absent.jpg", "width": 30, "height": 20},
        ],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(document))
    data = open_dataset(tmp_path, "detect")
    assert [(s.key, s.image_id) for s in data.samples] == [("000000000001.jpg", 1)]
    assert data.meta["missing"] == 1
    (tmp_path / "annotations" / "instances_val.json").write_text("{}")
    with pytest.raises(DatasetError, match="not a COCO"):
        open_dataset(tmp_path, "detect")


def test_a_registered_task_is_one_spec_that_the_bench_finds(tmp_path):
    """A new task is one TaskSpec: open_dataset reads its data, and its evaluator is built from it."""
    from icmkit.bench.datasets import image_folder
    from icmkit.bench.tasks import TASKS, TaskSpec, register_task, task_spec
    from icmkit.tasks.evaluators import FidelityEvaluator

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    spec = TaskSpec("count", "a folder", lambda root, _: image_folder(root), lambda _m, _d: FidelityEvaluator())
    register_task(spec)
    try:
        data = open_dataset(tmp_path, "count")
        assert [s.key for s in data.samples] == ["a.png"]
        assert isinstance(task_spec("count").load_evaluator(None, "default", data), FidelityEvaluator)
        with pytest.raises(ValueError, match="registered already"):
            register_task(spec)
    finally:
        del TASKS["count"]
    with pytest.raises(DatasetError, match="unknown task 'count'; choose one of classify, detect, segment, fidelity"):
        open_dataset(tmp_path, "count")
