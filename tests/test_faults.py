"""Fault injection: damaged store files, links, foreign folders, a full disk, a read-only store,
renamed data, locks, and failures inside a study. Each case asserts its exact outcome: the
result equals a clean run, or one clear line and nothing lost."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from filelock import FileLock
from PIL import Image

from medprobe.cli import main
from medprobe.datasets import image_folder, synthetic
from medprobe.encoders import create_encoder
from medprobe.errors import MedprobeError
from medprobe.features import extract
from medprobe.features.store import FeatureStore


def _data(n: int = 20, name: str = "faults"):
    return synthetic("dermoscopy", n, size=48, name=name)


def _extract(cache: Path, dataset=None, **options):
    return extract(
        create_encoder("handcrafted"),
        dataset or _data(),
        cache=cache,
        show_progress=False,
        **options,
    )


@pytest.fixture
def clean(tmp_path_factory):
    """The reference features of a clean run (a store of its own)."""
    return np.asarray(_extract(tmp_path_factory.mktemp("clean")).features)


def _entry(cache: Path):
    (entry,) = FeatureStore(cache).entries()
    return entry


def _damage_features_bytes(path: Path) -> None:
    with open(path / "features.npy", "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\xff\xff\xff\xff")


def _damage_features_header(path: Path) -> None:
    with open(path / "features.npy", "r+b") as handle:
        handle.write(b"garbage!" * 2)


def _truncate_index(path: Path) -> None:
    data = (path / "index.npz").read_bytes()
    (path / "index.npz").write_bytes(data[: len(data) // 2])


def _delete_features(path: Path) -> None:
    (path / "features.npy").unlink()


def _truncate_manifest(path: Path) -> None:
    text = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(text[: len(text) // 3])


@pytest.mark.parametrize(
    "damage",
    [
        _damage_features_bytes,
        _damage_features_header,
        _truncate_index,
        _delete_features,
        _truncate_manifest,
    ],
)
def test_a_damaged_entry_is_moved_aside_and_recomputed(tmp_path, clean, damage, capsys):
    _extract(tmp_path)
    entry = _entry(tmp_path)
    damage(entry.path)
    again = _extract(tmp_path)
    np.testing.assert_array_equal(np.asarray(again.features), clean)
    err = capsys.readouterr().err
    assert "is damaged" in err and "recomputing" in err and "Traceback" not in err
    aside = list(entry.path.parent.glob(f"{entry.key}.corrupt-*"))
    assert len(aside) == 1  # kept for inspection, not served
    assert FeatureStore(tmp_path).verify(_entry(tmp_path)) == []


def test_cache_ls_and_verify_survive_a_bad_entry(tmp_path, capsys):
    _extract(tmp_path)
    _extract(tmp_path, _data(12, "other"))
    first = FeatureStore(tmp_path).entries()[0]
    _truncate_manifest(first.path)
    assert main(["cache", "ls", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "damaged" in out
    assert main(["cache", "verify", "--cache", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.count(": ok") == 1 and "manifest.json cannot be read" in out


def test_a_wrong_shard_in_a_partial_entry_is_recomputed(tmp_path, clean):
    encoder = create_encoder("handcrafted")
    calls = {"n": 0}
    real = encoder.encode_images

    def dies_after_two(batch):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt  # the run is killed after two shards
        return real(batch)

    encoder.encode_images = dies_after_two
    with pytest.raises(KeyboardInterrupt):
        extract(
            encoder, _data(), cache=tmp_path, batch_size=4, shard_batches=1, show_progress=False
        )
    entry = _entry(tmp_path)
    shards = entry.shards()
    assert len(shards) == 2
    # a valid .npz, but not the one recorded: same shapes, other numbers
    with np.load(entry.path / shards[1].file) as part:
        arrays = {k: part[k] for k in part.files}
    arrays["features"] = arrays["features"] + 1
    np.savez(entry.path / shards[1].file, **arrays)
    encoder.encode_images = real
    again = extract(
        encoder, _data(), cache=tmp_path, batch_size=4, shard_batches=1, show_progress=False
    )
    np.testing.assert_array_equal(np.asarray(again.features), clean)
    assert FeatureStore(tmp_path).verify(_entry(tmp_path)) == []


def test_a_symlinked_entry_is_never_written_through(tmp_path, clean):
    _extract(tmp_path)
    entry = _entry(tmp_path)
    shutil.rmtree(entry.path)
    precious = tmp_path / "home"
    (precious / "sub").mkdir(parents=True)
    (precious / "thesis.txt").write_text("five years of work")
    (precious / "sub" / "data.csv").write_text("a,b\n")
    entry.path.symlink_to(precious, target_is_directory=True)
    again = _extract(tmp_path)
    np.testing.assert_array_equal(np.asarray(again.features), clean)
    assert (precious / "thesis.txt").read_text() == "five years of work"
    assert (precious / "sub" / "data.csv").is_file()
    assert sorted(p.name for p in precious.iterdir()) == ["sub", "thesis.txt"]
    assert not _entry(tmp_path).path.is_symlink()


def test_a_foreign_folder_is_not_a_store(tmp_path, capsys):
    home = tmp_path / "home"
    (home / "projects" / "frontend").mkdir(parents=True)
    (home / "projects" / "frontend" / "manifest.json").write_text("{}")
    (home / "notes.txt").write_text("mine")
    assert main(["cache", "rm", "front", "--cache", str(home)]) == 2
    err = capsys.readouterr().err
    assert "not a medprobe feature store" in err and "Traceback" not in err
    with pytest.raises(MedprobeError, match="not a medprobe feature store"):
        _extract(home)
    assert (home / "projects" / "frontend" / "manifest.json").is_file()
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt", "projects"]
    # rm on a real store never deletes a folder without the entry marker
    store = tmp_path / "store"
    _extract(store)
    entry = _entry(store)
    (entry.path / ".medprobe-entry").unlink()
    assert main(["cache", "rm", entry.key[:6], "--cache", str(store)]) == 2
    assert entry.path.is_dir()


@contextmanager
def _mounted(options: list[str], source: str, target: Path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small file system (tmpfs / read-only bind)")
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *options, source, str(target)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.decode().strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_full_disk_is_one_line_and_the_entry_resumes(tmp_path, clean):
    with _mounted(["-t", "tmpfs", "-o", "size=1m"], "tmpfs", tmp_path / "small") as small:
        big = _data(400, "big")  # 400 x 742 float32 = 1.2 MB: does not fit, 2 shards of 128 do
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "medprobe.cli",
                "extract",
                "--model",
                "handcrafted",
                "--data",
                str(_folder_of(big, tmp_path / "images")),
                "--cache",
                str(small),
                "--batch-size",
                "8",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 2, result.stderr
        assert "no space left" in result.stderr and "Traceback" not in result.stderr
        assert result.returncode != 135  # not killed by SIGBUS
        (entry,) = FeatureStore(small).entries()
        assert not entry.complete and entry.shards()  # finished shards kept: resumable


def _folder_of(dataset, root: Path) -> Path:
    from medprobe.datasets.synthetic import write_image_folder

    write_image_folder(dataset, root)
    return root


def test_a_read_only_store_serves_complete_entries(tmp_path, clean):
    source = tmp_path / "store"
    _extract(source)
    with _mounted(["--bind", "-o", "ro"], str(source), tmp_path / "ro") as read_only:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(read_only)], check=True)
        with pytest.raises(OSError):
            (read_only / "x").write_text("")
        served = _extract(read_only)
        np.testing.assert_array_equal(np.asarray(served.features), clean)


def test_files_follow_the_umask(tmp_path):
    folder = _folder_of(_data(24), tmp_path / "images")
    study = _study(tmp_path, [{"name": "d", "path": str(folder)}], models=["pixels"])
    code = (
        "import os, sys; os.umask(0o022); from medprobe.cli import main; "
        f"sys.exit(main(['run', {str(study)!r}, '--out', {str(tmp_path / 'out')!r}]))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=600)
    cache = tmp_path / "cache"
    for path in [
        tmp_path / "out" / "results.csv",
        tmp_path / "out" / "report.html",
        next(cache.rglob("manifest.json")),
        next(cache.rglob("features.npy")),
        next(cache.rglob("index.npz")),
    ]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_a_lock_wait_says_who_holds_it_and_gives_up(tmp_path, monkeypatch, capsys):
    _extract(tmp_path)  # make the store and its entry
    entry = _entry(tmp_path)
    monkeypatch.setenv("MEDPROBE_LOCK_TIMEOUT", "1")
    lock_path = str(entry.path) + ".lock"
    Path(lock_path + ".owner").write_text("process 4242 on labhost since 09:00:00")
    code = (
        f"from filelock import FileLock; import time; lock = FileLock({lock_path!r}); "
        "lock.acquire(); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(MedprobeError, match="still locked by process 4242 on labhost"):
            _extract(tmp_path)
        assert "waiting for feature-store entry" in capsys.readouterr().err
    finally:
        holder.kill()
    assert FileLock(lock_path).acquire(timeout=5)


def test_a_new_batch_size_keeps_finished_shards(tmp_path, clean):
    encoder = create_encoder("handcrafted")
    calls = {"n": 0}
    real = encoder.encode_images

    def counted(batch):
        calls["n"] += len(batch)
        if calls["n"] > 12:
            raise KeyboardInterrupt
        return real(batch)

    encoder.encode_images = counted
    with pytest.raises(KeyboardInterrupt):
        extract(
            encoder, _data(), cache=tmp_path, batch_size=4, shard_batches=1, show_progress=False
        )
    done = max(s.stop for s in _entry(tmp_path).shards())
    calls["n"] = -1000  # no more interruptions; count what is recomputed
    again = extract(
        encoder, _data(), cache=tmp_path, batch_size=7, shard_batches=2, show_progress=False
    )
    assert calls["n"] + 1000 == 20 - done  # only the records not yet done
    np.testing.assert_array_equal(np.asarray(again.features), clean)


def _study(tmp_path: Path, datasets: list[dict], **extra) -> Path:
    config = {
        "name": "faults",
        "models": ["pixels", "handcrafted"],
        "datasets": datasets,
        "analyses": ["knn", "linear_probe", "similarity"],
        "cache": str(tmp_path / "cache"),
        **extra,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_renamed_dataset_takes_its_new_name_and_similarity_still_runs(tmp_path, capsys):
    folder = _folder_of(_data(30), tmp_path / "images")
    entry = {"path": str(folder), "modality": "dermoscopy"}
    study = _study(tmp_path, [{"name": "old-name", **entry}])
    assert main(["run", str(study), "--out", str(tmp_path / "a")]) == 0
    study = _study(tmp_path, [{"name": "new-name", **{**entry, "modality": "ultrasound"}}])
    assert main(["run", str(study), "--out", str(tmp_path / "a")]) == 0
    results = pd.read_csv(tmp_path / "a" / "results.csv")
    assert set(results.dataset) == {"new-name"} and set(results.modality) == {"breast ultrasound"}
    assert (results.analysis == "similarity").any() and not (results.analysis == "error").any()
    # the same folder under two names in one study: both analysed, report written
    study = _study(tmp_path, [{"name": "one", **entry}, {"name": "two", **entry}])
    assert main(["run", str(study), "--out", str(tmp_path / "b")]) == 0
    assert set(pd.read_csv(tmp_path / "b" / "results.csv").dataset) == {"one", "two"}


def test_an_overlay_that_does_not_fit_one_image_skips_that_image(tmp_path):
    folder = _folder_of(_data(24), tmp_path / "images")
    Image.new("RGB", (1, 1), (9, 9, 9)).save(folder / "benign" / "tiny.png")
    study = _study(
        tmp_path,
        [{"name": "with-tiny", "path": str(folder)}],
        overlays=[{"source": "wrong_class"}],
    )
    assert main(["run", str(study), "--out", str(tmp_path / "out")]) == 0
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert not (results.analysis == "error").any()
    assert (results.analysis == "overlay").any()


def test_names_with_markup_and_long_names_do_not_break_a_study(tmp_path, capsys):
    folder = _folder_of(_data(24), tmp_path / "images")
    one_class = tmp_path / "one-class" / "only"
    one_class.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(one_class / "0.png")
    datasets = [
        {"name": "[/b]odd[bold]", "path": str(folder)},
        {"name": "x" * 300, "path": str(folder)},
        {"name": "[/red]fails", "path": str(one_class.parent)},  # fails when opened
    ]
    study = _study(tmp_path, datasets, models=["pixels"])
    assert main(["run", str(study), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "dataset [/red]fails failed" in err and "MarkupError" not in err
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert {"[/b]odd[bold]", "x" * 300} <= set(results.dataset)
    figures = [p.name for p in (tmp_path / "out" / "figures").iterdir()]
    assert figures and max(len(n) for n in figures) < 120


def test_a_study_where_every_pair_fails_exits_1(tmp_path):
    folder = tmp_path / "one-class"
    for i in range(4):
        (folder / "only").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (i, 0, 0)).save(folder / "only" / f"{i}.png")
    other = _folder_of(_data(24), tmp_path / "images")
    study = _study(tmp_path, [{"name": "bad", "path": str(folder)}])
    assert main(["run", str(study), "--out", str(tmp_path / "out")]) == 1
    study = _study(
        tmp_path, [{"name": "bad", "path": str(folder)}, {"name": "ok", "path": str(other)}]
    )
    assert main(["run", str(study), "--out", str(tmp_path / "out2")]) == 0
    assert main(["run", str(study), "--out", str(tmp_path / "out3"), "--strict"]) == 1


def test_duplicate_and_nested_config_errors_are_one_line(tmp_path, capsys):
    for datasets, models, expected in [
        ([{"name": "d", "synthetic": {}}], ["pixels", "pixels"], "used more than once: 'pixels'"),
        ([{"name": "d", "synthetic": {}}, {"name": "d", "synthetic": {}}], ["pixels"], "'d'"),
        ([{"name": "d", "synthetic": {"n": "many"}}], ["pixels"], "synthetic option n"),
    ]:
        study = _study(tmp_path, datasets, models=models)
        assert main(["run", str(study), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_control_characters_in_file_names_are_shown_escaped(tmp_path, capsys):
    folder = tmp_path / "d"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / cls / f"{i}.png")
    (folder / "a" / "evil\x1b[2J.png").write_bytes(b"not an image")
    assert main(["data", "inspect", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "\x1b[2J" not in out and "\\x1b[2J" in out


def test_image_folder_fingerprint_content_tells_identical_stats_apart(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root, colour in ((a, 10), (b, 200)):
        for cls in ("x", "y"):
            (root / cls).mkdir(parents=True)
            for i in range(3):
                path = root / cls / f"{i}.bmp"  # uncompressed: equal sizes
                Image.new("RGB", (8, 8), (colour, i, 0)).save(path)
                os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert image_folder(a).image_fingerprint() == image_folder(b).image_fingerprint()  # stat
    assert (
        image_folder(a, fingerprint_mode="content").image_fingerprint()
        != image_folder(b, fingerprint_mode="content").image_fingerprint()
    )
