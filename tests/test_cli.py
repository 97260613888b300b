"""The `lookalike` command as a user runs it: a real photo in, matches and playable videos out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lookalike.video import probe_video

PEOPLE = ["Tony_Blair", "Serena_Williams", "Colin_Powell", "Halle_Berry", "Jennifer_Lopez"]
LOOKALIKE = [sys.executable, "-m", "lookalike.cli"]


def lookalike(*args, env=None, check=False):
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([*LOOKALIKE, *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, fixtures_dir):
    """A data folder whose gallery holds five people, one of them tagged bad news."""
    root = tmp_path_factory.mktemp("data")
    src = root / "photos"
    for person in PEOPLE:
        (src / person).mkdir(parents=True)
        for f in sorted((fixtures_dir / "faces" / person).iterdir())[:2]:
            (src / person / f.name).symlink_to(f)
    meta = root / "meta.csv"
    meta.write_text("id,name,category\nHalle_Berry,Halle B.,bad\n")
    env = {"LOOKALIKE_DATA_DIR": str(root)}
    proc = lookalike("gallery", "import", src, "--metadata", meta, "--json", env=env, check=True)
    report = json.loads(proc.stdout)
    assert report["added"] == 10 and report["people"] == 5
    return root


def test_run_writes_matches_and_videos_that_play(data_dir, fixtures_dir, tmp_path):
    out = tmp_path / "out"
    photo = fixtures_dir / "faces" / "Tony_Blair" / "4.jpg"  # not in the gallery
    proc = lookalike("run", photo, "--out", out, env={"LOOKALIKE_DATA_DIR": str(data_dir)}, check=True)
    assert "Tony Blair" in proc.stdout and "Good news: Tony Blair" in proc.stdout
    assert "Bad news: Halle B." in proc.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["state"] == "succeeded"
    assert result["matches"][0]["id"] == "Tony_Blair"
    assert result["matches"][0]["similarity"] > 0.5
    assert [m["id"] for m in result["matches"]].count("Tony_Blair") == 1
    assert result["bad_news"]["id"] == "Halle_Berry" and result["bad_news"]["category"] == "bad"
    for stage in ("decode", "detect", "landmarks", "embed", "search", "render_good", "render_smile"):
        assert result["timings_ms"][stage] > 0
    frames = 50  # 25 fps x 2 s default
    for name in ("morph-good.mp4", "morph-bad.mp4", "smile.mp4"):
        info = probe_video(out / name)
        assert (info.codec, info.width, info.height, info.frames) == ("h264", 512, 512, frames)
        assert info.pix_fmt == "yuv420p"
    for name in result["artifacts"].values():
        assert (out / name).stat().st_size > 1000


def test_same_photo_gives_the_same_result_twice(data_dir, fixtures_dir, tmp_path):
    env = {"LOOKALIKE_DATA_DIR": str(data_dir)}
    photo = fixtures_dir / "bad-inputs" / "baseline.jpg"
    a = lookalike("run", photo, "--out", tmp_path / "a", "--json", env=env, check=True)
    b = lookalike("run", photo, "--out", tmp_path / "b", "--json", env=env, check=True)
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)
    assert ra["matches"] == rb["matches"] and ra["face"] == rb["face"]
    for name in ("morph-good.mp4", "smile.mp4", "poster.jpg", "aligned.jpg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize("path, code, status", [
    ("bad-inputs/zero_byte.jpg", "empty_file", 10),
    ("bad-inputs/not_an_image.jpg", "unsupported_image", 11),
    ("bad-inputs/truncated.jpg", "corrupt_image", 12),
    ("bad-inputs/decompression_bomb_30000.png", "image_too_large", 13),
    ("bad-inputs/no_face_coffee.jpg", "no_face", 14),
    ("noface/6.jpg", "no_face", 14),
])
def test_each_bad_input_has_its_code_and_exit_status(data_dir, fixtures_dir, tmp_path, path, code, status):
    out = tmp_path / "out"
    proc = lookalike("run", fixtures_dir / path, "--out", out, env={"LOOKALIKE_DATA_DIR": str(data_dir)})
    assert proc.returncode == status, proc.stderr
    assert f"[{code}]" in proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["state"] == "failed" and result["error"]["code"] == code
    assert not list(out.glob("*.mp4"))  # nothing rendered


def test_tiny_face_is_refused_with_advice(data_dir, fixtures_dir, tmp_path):
    proc = lookalike("run", fixtures_dir / "bad-inputs/tiny_face_in_canvas.jpg", "--out", tmp_path,
                     env={"LOOKALIKE_DATA_DIR": str(data_dir)})
    assert proc.returncode in (14, 15)
    assert "light" in proc.stderr or "closer" in proc.stderr


def test_missing_gallery_and_bad_setting_are_named(tmp_path, fixtures_dir):
    photo = fixtures_dir / "bad-inputs" / "baseline.jpg"
    proc = lookalike("run", photo, "--out", tmp_path / "o", env={"LOOKALIKE_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 3 and "lookalike gallery import" in proc.stderr
    proc = lookalike("run", photo, env={"LOOKALIKE_TOP_K": "lots", "LOOKALIKE_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 4 and "LOOKALIKE_TOP_K" in proc.stderr


def test_gallery_curation_commands(data_dir, tmp_path):
    env = {"LOOKALIKE_DATA_DIR": str(data_dir)}
    listed = json.loads(lookalike("gallery", "list", "--json", env=env, check=True).stdout)
    assert listed["stats"]["people"] == 5
    assert {p["id"]: p["category"] for p in listed["people"]}["Halle_Berry"] == "bad"
    bad = lookalike("gallery", "set-category", "Tony_Blair", "ugly", env=env)
    assert bad.returncode == 4 and "good, bad" in bad.stderr
    missing = lookalike("gallery", "remove", "Nobody", env=env)
    assert missing.returncode == 4 and "Nobody" in missing.stderr


def test_eval_command_reports_rates(fixtures_dir, tmp_path):
    src = tmp_path / "set"
    for person in ("Tony_Blair", "Colin_Powell", "Serena_Williams"):
        (src / person).mkdir(parents=True)
        for f in sorted((fixtures_dir / "faces" / person).iterdir()):
            (src / person / f.name).symlink_to(f)
    (src / "Colin_Powell" / "landscape.jpg").symlink_to(fixtures_dir / "noface" / "6.jpg")
    proc = lookalike("eval", src, "--json", "--workers", "1", check=True)
    report = json.loads(proc.stdout)
    assert report["people"] == 3 and report["probes"] == 9
    assert report["rank1"] == 1.0
    assert report["failed"] == [{"photo": "Colin_Powell/landscape.jpg", "code": "no_face",
                                 "message": "no face was found in the photo"}]
    text = lookalike("eval", src, "--workers", "1", check=True).stdout
    assert "Rank-1 identification: 100.0 %" in text


def test_out_folder_is_cleared_of_an_earlier_run_and_refused_when_unusable(data_dir, fixtures_dir, tmp_path):
    env = {"LOOKALIKE_DATA_DIR": str(data_dir)}
    out = tmp_path / "out"
    lookalike("run", fixtures_dir / "bad-inputs" / "baseline.jpg", "--out", out, env=env, check=True)
    (out / "notes.txt").write_text("mine")
    assert (out / "morph-good.mp4").stat().st_mode & 0o777 == 0o644
    proc = lookalike("run", fixtures_dir / "noface" / "6.jpg", "--out", out, env=env)
    assert proc.returncode == 14
    # the failed run's result.json is not left beside the earlier photo's media; other files stay
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "result.json"]

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = lookalike("run", fixtures_dir / "bad-inputs" / "baseline.jpg", "--out", blocker / "sub", env=env)
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    assert "cannot write to the output folder" in proc.stderr


def test_metadata_that_is_not_utf8_is_named(tmp_path, fixtures_dir):
    src = tmp_path / "photos" / "Tony_Blair"
    src.mkdir(parents=True)
    (src / "1.jpg").symlink_to(sorted((fixtures_dir / "faces" / "Tony_Blair").iterdir())[0])
    meta = tmp_path / "people.csv"
    meta.write_bytes("id,name,category\nTony_Blair,Tony Bl\u00e4r,good\n".encode("latin-1"))
    proc = lookalike("gallery", "import", tmp_path / "photos", "--metadata", meta,
                     env={"LOOKALIKE_DATA_DIR": str(tmp_path / "data")})
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    assert f"{meta}:2: the metadata file is not UTF-8" in proc.stderr


def test_eval_with_nothing_to_evaluate_fails(tmp_path, fixtures_dir):
    (tmp_path / "set" / "X").mkdir(parents=True)
    (tmp_path / "set" / "X" / "a.jpg").symlink_to(fixtures_dir / "bad-inputs" / "not_an_image.jpg")
    proc = lookalike("eval", tmp_path / "set", "--workers", "1")
    assert proc.returncode == 3 and "nothing to evaluate" in proc.stderr
    assert "failed X/a.jpg: unsupported_image" in proc.stderr


def test_a_misspelt_setting_is_named(tmp_path, fixtures_dir):
    proc = lookalike("gallery", "list", env={"LOOKALIKE_TOPK": "3", "LOOKALIKE_DATA_DIR": str(tmp_path)})
    assert "LOOKALIKE_TOPK is not a Lookalike setting and is ignored (did you mean LOOKALIKE_TOP_K?)" in proc.stderr
