"""engine.ray on a real local Ray cluster: the Predictor in map_batches (paths, decoded
pixels, prepared arrays) against Session.run, and ``engine run DIR --ray`` against the
same command in one process, row by row.  Skipped cleanly when Ray Data is missing."""

import csv
import os

import numpy as np
import pytest

import engine
import engine.inputs
import engine.ray
from engine.cli import main

Image = pytest.importorskip("PIL.Image")


# -- without a cluster: the Predictor is a plain callable --------------------------------

def test_predictor_runs_paths_pixels_and_arrays_as_the_session_does(small_model, photo_dir):
    pred = engine.ray.Predictor(small_model, column="x", top=2, threads=1)
    model = engine.load(small_model)
    sess = engine.Session(model, threads=1)
    paths = sorted(str(p) for p in photo_dir.glob("img*.png"))[:4] + \
        [str(photo_dir / "broken.jpg")]
    got = pred({"x": np.asarray(paths), "id": np.arange(5)})
    assert list(got["id"]) == list(range(5))                       # other columns kept
    assert list(got["error"][:4]) == [""] * 4 and "broken.jpg" in got["error"][4]
    assert np.isnan(got["output"][4]).all()                         # nothing invented
    want = sess.run(np.stack([engine.inputs.read_one(p, model) for p in paths[:4]]))[0]
    np.testing.assert_array_equal(got["output"][:4], want)
    probs = engine.inputs.probabilities(want, False)
    assert [list(r) for r in got["labels"][:4]] == \
        [["abcde"[k] for k in np.argsort(-p, kind="stable")[:2]] for p in probs]
    np.testing.assert_allclose(np.array([list(r) for r in got["probs"][:4]], float),
                               np.sort(probs, axis=1)[:, ::-1][:, :2], rtol=1e-6)
    assert len(got["labels"][4]) == 0

    # decoded pixels (as ray.data.read_images gives them) prepare exactly as the files do
    pixels = np.empty(4, dtype=object)
    pixels[:] = [np.asarray(Image.open(p).convert("RGB")) for p in paths[:4]]
    by_pixels = pred({"x": pixels})
    np.testing.assert_array_equal(by_pixels["output"], want)

    # prepared arrays go straight in
    x = np.stack([engine.inputs.read_one(p, model) for p in paths[:4]])
    np.testing.assert_array_equal(pred({"x": x})["output"], want)
    # the model may travel as the file's bytes (a zoo model has no file) or as a Model
    for given in (open(small_model, "rb").read(), model):
        by = engine.ray.Predictor(given, column="x", threads=1)
        np.testing.assert_array_equal(by({"x": x})["output"], want)


def test_predictor_errors_name_the_problem(small_model):
    pred = engine.ray.Predictor(small_model, threads=1)
    with pytest.raises(engine.InputError, match="no column 'image'.*pass column="):
        pred({"path": np.asarray(["a.png"])})
    with pytest.raises(engine.InputError, match="expected shape"):
        pred({"image": np.zeros((2, 3, 8, 8), np.float32)})
    with pytest.raises(engine.InputError, match="top must be an int"):
        engine.ray.Predictor(small_model, top=-1)
    two_channels = np.empty(1, dtype=object)           # a column of arrays, as Ray gives it
    two_channels[0] = np.zeros((4, 4, 2), np.uint8)
    bad = pred({"image": two_channels})
    assert "uint8 of shape (H, W) or (H, W, 1/3/4" in bad["error"][0]


def test_image_from_pixels_matches_the_decoded_file(tmp_path):
    rng = np.random.default_rng(3)
    for shape, prep in [((1, 3, 24, 24), {"resize_shorter": 28, "mean": [0.5], "std": [0.2]}),
                        ((1, 1, 16, 20), {"channels": "grayscale", "pad": 2}),
                        ((1, 3, 12, 12), {"channels": "bgr"})]:
        px = rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)
        Image.fromarray(px).save(tmp_path / "p.png")
        np.testing.assert_array_equal(engine.inputs.image_from_pixels(px, shape, prep),
                                      engine.inputs.read_image(str(tmp_path / "p.png"),
                                                               shape, prep))


def test_ray_missing_is_a_clear_error(small_model, photo_dir, capsys, monkeypatch):
    import builtins
    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("no ray here")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["run", small_model, str(photo_dir), "--ray", "--quiet"]) == 2
    assert 'pip install "engine[ray]"' in capsys.readouterr().err


@pytest.mark.parametrize("args, says", [
    (["--ray"], "name them first"),
    (["--eval", "--ray"], "name them first"),
    (["{photos}", "--backend", "reference", "--ray"], "--ray runs the cpu backend"),
])
def test_ray_option_errors(small_model, photo_dir, capsys, args, says):
    args = [a.replace("{photos}", str(photo_dir)) for a in args]
    assert main(["run", small_model] + args) == 2
    assert says in capsys.readouterr().err


# -- on a local cluster --------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_ray_folder_run_gives_the_local_rows(cluster, small_model, photo_dir, tmp_path,
                                              capsys):
    for i in range(5):          # JPEG files too, and a file that is not an image at all
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (50, 37, 3), np.uint8)) \
            .save(photo_dir / f"shot{i}.jpg", quality=90)
    (photo_dir / "readme.png").write_text("a text file with an image's name")
    outs = {}
    for how in ("local", "ray"):
        out, raw = tmp_path / f"{how}.csv", tmp_path / f"{how}.npy"
        args = ["run", small_model, str(photo_dir), "--batch", "3", "--top", "3", "--output",
                str(out), "--raw", str(raw), "--threads", "1", "--quiet"]
        code = main(args + (["--ray"] if how == "ray" else []))
        err = capsys.readouterr().err
        assert code == 3, err                       # broken.jpg, readme.png, z_two.npy
        assert "17 of 20 inputs" in err and "3 skipped" in err
        assert err.count("warning: skipped") == 3
        outs[how] = (list(csv.reader(open(out))), np.load(raw))
    assert "on Ray: 2 actors x 1 thread" in err
    local_rows, local_raw = outs["local"]
    ray_rows, ray_raw = outs["ray"]
    assert len(local_rows) == 18
    assert ray_rows == local_rows                    # row by row, the same text
    np.testing.assert_array_equal(ray_raw, local_raw)
    # and each row is what the model gives that file
    model = engine.load(small_model)
    x = np.stack([engine.inputs.read_one(r[0], model) for r in local_rows[1:]])
    np.testing.assert_allclose(engine.Session(model, threads=1).run(x)[0], local_raw,
                               rtol=1e-5, atol=1e-6)


def test_more_threads_per_actor_than_a_node_has_is_refused(cluster, small_model, photo_dir,
                                                             capsys):
    # (Ray would otherwise wait for ever for an actor it cannot place)
    assert main(["run", small_model, str(photo_dir), "--threads", "3", "--quiet",
                 "--ray"]) == 2
    assert "--threads 3 per Ray actor, but the largest node of the cluster has 2 CPUs" in \
        capsys.readouterr().err


def test_predictor_in_map_batches(cluster, small_model, photo_dir):
    model = engine.load(small_model)
    paths = sorted(str(p) for p in photo_dir.glob("img*.png"))
    ds = cluster.data.from_items([{"path": p, "n": i} for i, p in enumerate(paths)])
    ds = ds.map_batches(engine.ray.Predictor, batch_size=4, num_cpus=1,
                        compute=cluster.data.ActorPoolStrategy(size=2),
                        fn_constructor_kwargs={"model": small_model, "column": "path",
                                               "top": 1})
    rows = sorted(ds.take_all(), key=lambda r: r["n"])
    assert [r["path"] for r in rows] == paths
    want = engine.Session(model, threads=1).run(
        np.stack([engine.inputs.read_one(p, model) for p in paths]))[0]
    got = np.stack([r["output"] for r in rows])
    # Ray forms its own batches; a sample's rounding may differ between batch sizes
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    assert all(r["error"] == "" and len(r["labels"]) == 1 for r in rows)


def test_predictor_on_read_images_output(cluster, small_model, photo_dir):
    """ray.data.read_images gives decoded uint8 pixels; they are prepared as the files are."""
    model = engine.load(small_model)
    paths = sorted(str(p) for p in photo_dir.glob("img0*.png"))
    ds = cluster.data.read_images(paths, include_paths=True, mode="RGB")
    ds = ds.map_batches(engine.ray.Predictor, batch_size=len(paths), num_cpus=1,
                        compute=cluster.data.ActorPoolStrategy(size=1),
                        fn_constructor_kwargs={"model": small_model})
    rows = {os.path.basename(r["path"]): r for r in ds.take_all()}
    assert sorted(rows) == [os.path.basename(p) for p in paths]
    sess = engine.Session(model, threads=1)
    for p in paths:
        want = sess.run(engine.inputs.read_one(p, model)[None])[0][0]
        np.testing.assert_allclose(rows[os.path.basename(p)]["output"], want, rtol=1e-5,
                                   atol=1e-6 * np.abs(want).max())
