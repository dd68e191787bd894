"""Past one machine: estimate-collection on a real local Ray, kernel pools, torchrun DDP."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.ExifTags import IFD, Base

from mobile_kernelnet.budget import budget_for, select_window
from mobile_kernelnet.cli import main
from mobile_kernelnet.collection import (CollectionRun, estimate_collection, exif_fields, list_sources,
                                         read_rows)
from mobile_kernelnet.estimation import estimate_kernel
from mobile_kernelnet.imio import read_image
from mobile_kernelnet.kernels import KernelPool
from mobile_kernelnet.pool_build import family_like, kernel_shape

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow  # Ray clusters, torchrun, trainings


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module's in-process calls (estimate_collection joins it)."""
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _camera_jpeg(path: Path, pixels: np.ndarray, iso: int, model: str = "Pixel 8") -> None:
    exif = Image.Exif()
    exif[Base.Make] = "Google"
    exif[Base.Model] = model
    sub = exif.get_ifd(IFD.Exif)
    sub[Base.ISOSpeedRatings] = iso
    sub[Base.FocalLength] = 6.9
    sub[Base.ExposureTime] = 0.01
    Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(path, exif=exif, quality=95)


@pytest.fixture(scope="module")
def photos(testset_root_sf2, tmp_path_factory):
    """The sf 2 test set's LR images, three of them again as camera JPEGs with EXIF (ISO 100,
    400, 3200), and one broken file."""
    root = tmp_path_factory.mktemp("photos")
    lrs = sorted((testset_root_sf2 / "sf2").glob("*.png"))
    for p in lrs:
        (root / p.name).write_bytes(p.read_bytes())
    for iso, p in zip((100, 400, 3200), lrs):
        _camera_jpeg(root / f"cam_{iso}.jpg", read_image(p), iso)
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    return root


def test_sources_from_a_folder_a_glob_a_list_and_a_uri(photos, tmp_path):
    folder = list_sources(photos)
    assert len(folder) == len(list(photos.iterdir())) and folder == sorted(folder)
    assert list_sources(str(photos / "cam_*.jpg")) == [str(photos / f"cam_{i}.jpg") for i in (100, 3200, 400)]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two photos\n{photos / 'cam_100.jpg'}\n\n{photos / 'broken.png'}\n")
    assert list_sources(listing) == [str(photos / "cam_100.jpg"), str(photos / "broken.png")]
    assert list_sources(f"file://{photos}") == [f"file://{p}" for p in folder]  # pyarrow.fs listing
    with pytest.raises(FileNotFoundError):
        list_sources(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        list_sources(tmp_path / "empty")


def test_exif_fields_are_read(photos):
    f = exif_fields(str(photos / "cam_400.jpg"))
    assert f["iso"] == 400 and f["device_model"] == "Pixel 8" and f["make"] == "Google"
    assert f["focal_length_mm"] == pytest.approx(6.9) and f["exposure_s"] == pytest.approx(0.01)
    assert set(exif_fields(str(photos / "broken.png")).values()) == {None}


def test_collection_gives_the_kernels_of_mkn_estimate_and_keeps_going_past_broken_files(photos, tmp_path, capsys):
    out = tmp_path / "kernels.parquet"
    # the CLI starts (and stops) its own local Ray
    assert main(["estimate-collection", str(photos), "--sf", "2", "--out", str(out), "--quiet"]) == 1  # one broken
    assert "1 failed" in capsys.readouterr().out
    rows = read_rows(out).to_pandas().set_index("path")
    assert len(rows) == len(list_sources(photos))
    assert "not a readable image" in rows.loc[str(photos / "broken.png"), "error"]
    good = rows[rows["error"].isna()]
    assert len(good) == len(rows) - 1
    assert main(["estimate", *good.index, "--sf", "2", "--out", str(tmp_path / "single")]) == 0
    for path, row in good.iterrows():
        k = np.load(tmp_path / "single" / f"{Path(path).stem}.npy")
        assert row["kernel_size"] == 15 and np.abs(np.asarray(row["kernel"]).reshape(15, 15) - k).max() < 1e-6
        window = select_window(read_image(path), budget_for(2))
        assert (row["window_how"], row["window_y"], row["window_x"], row["window_height"], row["window_width"]) == (
            window.how, window.y, window.x, window.height, window.width)
    assert good.loc[str(photos / "cam_3200.jpg"), "iso"] == 3200
    assert good.loc[str(photos / "cam_3200.jpg"), "device_model"] == "Pixel 8"
    # a re-run with the same settings does nothing more; other settings are refused
    assert main(["estimate-collection", str(photos), "--sf", "2", "--out", str(out), "--quiet"]) == 0
    assert f"{len(rows)} done before, 0 estimated now" in capsys.readouterr().out
    assert main(["estimate-collection", str(photos), "--sf", "4", "--out", str(out), "--quiet"]) == 2
    assert "other settings (sf 2 vs 4)" in capsys.readouterr().err


def test_collection_joins_a_running_cluster(photos, tmp_path, capsys):
    """`--address`: a Ray head started apart (`ray start --head`, token authentication as
    Ray 2.60 does by default, the token given to both), joined by the CLI."""
    import secrets
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    start = subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=1",
                            "--include-dashboard=false", "--disable-usage-stats"], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path, env=env)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        out = tmp_path / "k.parquet"  # a client process of its own, as a user runs it
        run = subprocess.run([str(BIN / "mkn"), "estimate-collection", str(photos / "cam_*.jpg"), "--sf", "2",
                              "--out", str(out), "--address", f"127.0.0.1:{port}", "--quiet"],
                             capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "on 1 workers" in run.stdout  # the cluster's one CPU, not this machine's
        assert read_rows(out).num_rows == 3
        # without --address: a new local Ray with this machine's cores, not the cluster running here
        assert main(["estimate-collection", str(photos / "cam_*.jpg"), "--sf", "2", "--out", str(tmp_path / "b"),
                     "--quiet"]) == 0
        assert f"on {os.cpu_count()} workers" in capsys.readouterr().out
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, timeout=120)


def test_collection_runs_an_exported_file_in_its_runtime(photos, exported, tmp_path, local_ray):
    from export.manifest import read_manifest, sha256
    art = exported / read_manifest(exported).artifacts["onnx-matmul"].file
    run = CollectionRun(2, "kernelnet", model_file=str(art), model_file_sha256=sha256(art), format="onnx-matmul")
    summary = estimate_collection(str(photos / "cam_*.jpg"), tmp_path / "k.parquet", run)
    assert (summary.listed, summary.estimated, summary.failed) == (3, 3, 0)
    for _, row in read_rows(tmp_path / "k.parquet").to_pandas().iterrows():
        ref = estimate_kernel(row["path"], sf=2, artifact=art).kernel
        assert row["source"] == f"{art.name} (onnx-matmul)"
        assert np.abs(np.asarray(row["kernel"]).reshape(15, 15) - ref).max() < 1e-6


N_MANY = 150


def test_an_interrupted_collection_resumes_without_redoing_finished_rows(testset_root_sf2, tmp_path, local_ray):
    src = tmp_path / "many"
    src.mkdir()
    lr = read_image(sorted((testset_root_sf2 / "sf2").glob("*.png"))[0])
    for i in range(N_MANY):  # different photos: shifted copies
        Image.fromarray(np.round(np.roll(lr, 5 * i, axis=1) * 255).astype(np.uint8)).save(src / f"p{i:02d}.png")
    out = tmp_path / "k.parquet"
    code = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "  # as on a terminal, even
            # when the tests run in a background job (which ignores SIGINT, and children inherit that)
            "from mobile_kernelnet.collection import CollectionRun, estimate_collection; "
            f"estimate_collection({str(src)!r}, {str(out)!r}, CollectionRun(2, 'kernelnet'), workers=1, rows_per_part=2)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + 240
    while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.2)
    assert child.poll() is None, "the run ended before it could be interrupted"
    os.killpg(child.pid, signal.SIGINT)  # Ctrl-C: the driver stops Ray and exits
    child.wait(timeout=120)
    before = read_rows(out).to_pandas()
    assert 1 <= len(before) < N_MANY and before["path"].is_unique
    summary = estimate_collection(src, out, CollectionRun(2, "kernelnet"))
    assert summary.skipped == len(before) and summary.estimated == N_MANY - len(before)
    after = read_rows(out).to_pandas()
    assert len(after) == N_MANY and after["path"].is_unique and after["error"].isna().all()
    kept = after.set_index("path").loc[before["path"], "kernel"]  # the finished rows were not redone
    assert all(np.array_equal(a, b) for a, b in zip(kept, before["kernel"]))


def test_family_like_labels_match_the_generating_family(rng):
    pool = KernelPool.generate(2, 300, rng)
    labels = np.array([family_like(kernel_shape(k)) for k in pool.kernels])
    for family, least in (("gaussian", 0.9), ("motion", 0.75), ("disk", 0.95)):
        assert (labels[pool.families == family] == f"{family}-like").mean() >= least, family


def test_kernel_shape_of_known_kernels():
    from mobile_kernelnet.kernels import gaussian_kernel
    k = gaussian_kernel(15, 2.0 ** 2, 1.0 ** 2, 0.3)
    s = kernel_shape(k)
    assert s.width == pytest.approx(np.sqrt((4 + 1) / 2), rel=0.02)
    assert s.anisotropy == pytest.approx(2.0, rel=0.02) and s.kurtosis == pytest.approx(2.0, abs=0.05)


def test_pool_build_filters_reports_and_refuses(photos, tmp_path, local_ray, capsys):
    out = tmp_path / "k.parquet"
    estimate_collection(photos, out, CollectionRun(2, "kernelnet"))
    assert main(["pool", "build", str(out), "--filter", "iso < 800", "--out", str(tmp_path / "pool.npz")]) == 0
    assert "2 sf2 kernels" in capsys.readouterr().out
    pool = KernelPool.load(tmp_path / "pool.npz")
    rows = read_rows(out).to_pandas().set_index("path")
    want = np.stack([np.asarray(rows.loc[str(photos / f"cam_{i}.jpg"), "kernel"]).reshape(15, 15) for i in (100, 400)])
    assert pool.sf == 2 and np.allclose(np.sort(pool.kernels.ravel()), np.sort(want.ravel()))
    report = json.loads((tmp_path / "pool.json").read_text())
    assert (report["rows"], report["failed"], report["kernels"]) == (len(rows), 1, 2)
    assert report["filtered_out"] == len(rows) - 3 and sum(report["family_like"].values()) == pytest.approx(1)
    assert Image.open(tmp_path / "pool.png").size[0] > 100
    for args, message in (([ "--filter", "isso < 1"], "isso"), (["--filter", "iso > 99999"], "no estimated kernel"),
                          ([], "a pool is a .npz")):
        dest = tmp_path / ("p.npy" if not args else "q.npz")
        assert main(["pool", "build", str(out), *args, "--out", str(dest)]) == 2
        assert message in capsys.readouterr().err and not dest.exists()


def test_a_short_finetune_on_a_pool_lowers_validation_l1_on_its_kernels(tmp_path, capsys):
    KernelPool.generate(2, 60, np.random.default_rng(5), weights={"motion": 1.0}).save(tmp_path / "pool.npz")
    args = ["train", "s2k", "--sf", "2", "--level-input", "--out", str(tmp_path / "run"), "--finetune",
            "--pool", str(tmp_path / "pool.npz"),
            "--steps", "80", "--batch", "4", "--patch-lr", "64", "--val-size", "12", "--bank-size", "4",
            "--threads", "1", "--lr", "0.0001"]
    assert main(args) == 0
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["pool_sha256"] and log[0]["pool_families"] == {"motion": 48}  # 12 of 60 held out
    shipped = log[1]["validation"]
    assert set(shipped) >= {"val_l1", "val_l1_motion"} and "val_l1_disk" not in shipped
    assert log[-1]["best_val_l1"] < shipped["val_l1"] - 0.005


def _train(launcher: list[str], out: Path, steps: int, resume: bool = False) -> subprocess.CompletedProcess:
    cmd = [*launcher, "train", "kernelnet", "--sf", "2", "--out", str(out), "--pretrain-steps", "2",
           "--steps", str(steps), "--batch", "2", "--patch-lr", "48", "--val-size", "4", "--bank-size", "2",
           "--threads", "1"] + (["--resume"] if resume else [])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_torchrun_two_ranks_stay_in_sync_and_one_process_resumes(tmp_path):
    run = tmp_path / "run"
    two = _train([str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "mobile_kernelnet.cli"], run, 2)
    assert two.returncode == 0, two.stderr[-3000:]
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert log[0]["world_size"] == 2
    digests = log[-1]["weights_sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]  # rank 1 trained on other pairs, yet the same weights
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "checkpoint.pt", "log.jsonl"]  # rank 0 writes
    # the two-process checkpoint resumed by one process, two steps further
    one = _train([str(BIN / "mkn")], run, 4, resume=True)
    assert one.returncode == 0, one.stderr[-3000:]
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    resume = [r for r in log if r["stage"] == "resume"]
    assert resume == [{"stage": "resume", "from_stage": "e2e", "step": 2, "world_size": 1, "checkpoint_world_size": 2}]
    import torch
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert (ckpt["stage"], ckpt["step"], ckpt["world_size"]) == ("e2e", 4, 1)
    assert log[-1]["weights_sha256_per_rank"] != digests
