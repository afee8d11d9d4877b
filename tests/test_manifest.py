"""Manifest validation and the converters, on small files in each official format."""
import json
import logging

import pytest

from pipeline.core import converters, manifest as mf


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_manifest_with_relative_paths_and_classes(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.mp4").write_bytes(b"x")
    m = mf.read_manifest(write(tmp_path / "m.csv", "video_id,path,labels,split,duration\n"
                                                   "a,v/a.mp4,run|jump,train,3.5\nb,v/b.mp4,swim,val,2\n"))
    assert [e.video_id for e in m.entries] == ["a", "b"]
    assert m.entries[0].path == tmp_path / "v" / "a.mp4" and m.entries[0].labels == ("run", "jump")
    assert m.entries[0].extra == {"duration": "3.5"}
    assert m.classes() == ["jump", "run", "swim"]
    assert len(m.warnings) == 1 and ":3:" in m.warnings[0]           # v/b.mp4 is missing: a warning
    write(tmp_path / "classes.txt", "swim\nrun\njump\n")
    assert m.classes() == ["swim", "run", "jump"]


def test_errors_carry_line_numbers(tmp_path):
    text = ("video_id,path,labels,split\n"
            "a,a.mp4,run,train\n"
            "a,b.mp4,run,train\n"          # duplicate id, line 3
            "c,c.mp4,run,training\n"       # unknown split, line 4
            "d,d.mp4,,val\n"               # empty labels, line 5
            "e,e.mp4,,test\n")             # an unlabelled test video is fine
    with pytest.raises(mf.ManifestError) as err:
        mf.read_manifest(write(tmp_path / "m.csv", text), check_paths=False)
    message = str(err.value)
    assert "m.csv:3: duplicate video_id 'a' (first on line 2)" in message
    assert "m.csv:4: unknown split 'training'" in message
    assert "m.csv:5: empty labels" in message
    assert ":6:" not in message


def test_missing_columns(tmp_path):
    with pytest.raises(mf.ManifestError, match="missing column.*split"):
        mf.read_manifest(write(tmp_path / "m.csv", "video_id,path,labels\na,a.mp4,x\n"))


def test_activitynet(tmp_path):
    (tmp_path / "v_abc.mp4").write_bytes(b"x")
    db = {"version": "VERSION 1.3", "database": {
        "abc": {"subset": "training", "duration": 12.5, "annotations": [{"label": "Long jump", "segment": [1, 5]},
                                                                         {"label": "Long jump", "segment": [6, 9]}]},
        "xyz": {"subset": "validation", "duration": 3.0, "annotations": [{"label": "Surfing", "segment": [0, 3]}]},
        "tst": {"subset": "testing", "duration": 4.0, "annotations": []}}}
    rows = converters.from_activitynet(write(tmp_path / "a.json", json.dumps(db)), tmp_path)
    by_id = {r["video_id"]: r for r in rows}
    assert by_id["abc"]["labels"] == ["Long jump"] and by_id["abc"]["split"] == "train"
    assert by_id["abc"]["path"] == tmp_path / "v_abc.mp4"
    assert by_id["xyz"]["split"] == "val" and by_id["tst"]["split"] == "test" and by_id["tst"]["labels"] == []
    m = mf.read_manifest(mf.write_manifest(rows, tmp_path / "out.csv"))
    assert len(m.entries) == 3 and m.classes() == ["Long jump", "Surfing"]


def test_kinetics_and_mini_kinetics(tmp_path):
    (tmp_path / "abseiling").mkdir()
    (tmp_path / "abseiling" / "aaaaaaaaaaa_000004_000014.mp4").write_bytes(b"x")
    csv_text = ("label,youtube_id,time_start,time_end,split,is_cc\n"
                "abseiling,aaaaaaaaaaa,4,14,train,0\n"
                "air drumming,bbbbbbbbbbb,10,20,validate,0\n")
    rows = converters.from_kinetics(write(tmp_path / "k.csv", csv_text), tmp_path)
    assert rows[0]["path"] == tmp_path / "abseiling" / "aaaaaaaaaaa_000004_000014.mp4"
    assert rows[0]["video_id"] == "aaaaaaaaaaa_000004_000014" and rows[1]["split"] == "val"
    mini = converters.from_kinetics(tmp_path / "k.csv", tmp_path, subset_ids=write(tmp_path / "ids.txt", "bbbbbbbbbbb\n"))
    assert [r["labels"] for r in mini] == [["air drumming"]]


def test_fcvid(tmp_path):
    split = write(tmp_path / "FCVID_VideoName_TrainTestSplit.txt", "cat/a.mp4 train\ndog/b.mp4 test\n")
    labels = write(tmp_path / "FCVID_Label.txt", "1 0 1\n0 1 0\n")
    categories = write(tmp_path / "FCVID_Category.txt", "0 cat\n1 dog\n2 pet\n")
    rows = converters.from_fcvid(split, labels, categories, tmp_path)
    assert rows[0] == {"video_id": "cat/a", "path": tmp_path / "cat/a.mp4", "labels": ["cat", "pet"], "split": "train"}
    assert rows[1]["labels"] == ["dog"] and rows[1]["split"] == "test"
    write(tmp_path / "bad.txt", "1 0\n0 1\n")
    with pytest.raises(mf.ManifestError):
        converters.from_fcvid(split, tmp_path / "bad.txt", categories, tmp_path)


def test_something_something(tmp_path):
    items = [{"id": "78687", "label": "holding potato next to vicks vaporub bottle",
              "template": "Holding [something] next to [something]", "placeholders": ["potato", "bottle"]}]
    labels = {"Holding something next to something": "0"}
    rows = converters.from_something_something(write(tmp_path / "train.json", json.dumps(items)),
                                       write(tmp_path / "labels.json", json.dumps(labels)), tmp_path, "train")
    assert rows[0]["labels"] == ["Holding something next to something"] and rows[0]["video_id"] == "78687"


def test_folder_per_class_with_and_without_split_folders(tmp_path):
    for rel in ("train/run/a.mp4", "train/swim/b.mp4", "val/run/c.mp4"):
        (tmp_path / "s" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "s" / rel).write_bytes(b"x")
    rows = converters.from_folder(tmp_path / "s")
    assert sorted((r["video_id"], r["split"], r["labels"][0]) for r in rows) == [
        ("train/run/a", "train", "run"), ("train/swim/b", "train", "swim"), ("val/run/c", "val", "run")]
    rows = converters.from_folder(tmp_path / "s" / "train", split="val")
    assert sorted(r["video_id"] for r in rows) == ["run/a", "swim/b"] and {r["split"] for r in rows} == {"val"}


def test_cli_manifest_folder_and_check(tmp_path):
    from click.testing import CliRunner
    from c2f.cli import main
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "a.mp4").write_bytes(b"x")
    result = CliRunner().invoke(main, ["manifest", "folder", str(tmp_path), "--out", str(tmp_path / "m.csv")])
    assert result.exit_code == 0, result.output
    assert "1 videos" in result.output
    write(tmp_path / "bad.csv", "video_id,path,labels,split\na,a.mp4,x,train\na,a.mp4,x,train\n")
    result = CliRunner().invoke(main, ["manifest", "check", str(tmp_path / "bad.csv")])
    assert result.exit_code == 2 and "bad.csv:3: duplicate" in result.output


def test_manifest_check_lists_its_warnings_once_and_leaves_the_logger_as_it_was(tmp_path, caplog):
    """`c2f manifest check` prints the unreadable paths itself (not logged as well), and only while it
    runs: `c2f demo` runs its steps in one process, and the steps after the check must still warn."""
    from click.testing import CliRunner
    from c2f.cli import main
    manifest = write(tmp_path / "m.csv", "video_id,path,labels,split\na,absent.mp4,x,train\n")
    logger = logging.getLogger("pipeline.core.manifest")
    level = logger.level
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(main, ["manifest", "check", str(manifest)])
        assert result.exit_code == 0 and "warning:" in result.output and "absent.mp4" in result.output
        assert not [r for r in caplog.records if r.name == "pipeline.core.manifest"]
        assert logger.level == level
        mf.read_manifest(manifest)                  # as the next step of the demo reads it
        assert [r for r in caplog.records if r.name == "pipeline.core.manifest" and "absent.mp4" in r.getMessage()]
