"""edgesr batch --ray on Ray Data: a folder on a local Ray instance with two actors, the same
files as edgesr upscale writes, a corrupt file reported on its own while the run goes on."""

import pytest
from PIL import Image
from serve.helpers import png_bytes

from edgesr.cli import main

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data", reason="edgesr batch --ray needs Ray Data (pyarrow)")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_batch_equals_edgesr_upscale(tmp_path, tiny_checkpoint_x2, local_ray, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        (photos / f"p{i}.png").write_bytes(png_bytes(16 + 4 * i, 20, seed=i))
    (photos / "bad.png").write_bytes(b"not an image")
    model = ["-m", str(tiny_checkpoint_x2), "--backend", "torch", "--tile", "16",
             "--overlap", "4", "--threads", "1"]
    assert main(["upscale", str(photos), "-o", str(tmp_path / "local"), "-q", *model]) == 1
    capsys.readouterr()
    assert main(["batch", str(photos), str(tmp_path / "ray"), "--ray", "--actors", "2",
                 "--precision", "fp32", *model]) == 1
    captured = capsys.readouterr()
    assert "edgesr: failed:" in captured.err and "bad.png: not an image" in captured.err
    assert "1 of 6 images failed" in captured.err
    # What the actors ran, said once however many actors said it.
    assert captured.err.count("edgesr: torch on cpu at fp32; model tiny_x2.pth") == 1
    assert sorted(line.split(" -> ")[0] for line in captured.out.splitlines()) == sorted(
        str(photos / f"p{i}.png") for i in range(5))
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert names == [f"p{i}.png" for i in range(5)]
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == names  # no temp files left
    for name in names:
        local, remote = tmp_path / "local" / name, tmp_path / "ray" / name
        assert local.read_bytes() == remote.read_bytes(), name
        width, height = Image.open(photos / name).size
        assert Image.open(remote).size == (2 * width, 2 * height)


def test_results_come_back_per_file(tmp_path, tiny_checkpoint_x2, local_ray):
    from edgesr.serve.ray_batch import run_on_ray

    pairs = []
    for name, data in (("a.png", png_bytes(seed=1)), ("b.jpg", b"\xff\xd8 truncated"),
                       ("c.png", png_bytes(seed=2))):
        (tmp_path / name).write_bytes(data)
        pairs.append((tmp_path / name, tmp_path / "out" / f"{name}.png"))
    (tmp_path / "out").mkdir()
    seen, engines = [], []
    results = run_on_ray(pairs, model=str(tiny_checkpoint_x2), actors=2, backend="torch",
                         tile=16, overlap=4, on_result=seen.append, on_engine=engines.append)
    assert seen == results and len(engines) == 1
    by_name = {r.source.name: r for r in results}
    assert sorted(by_name) == ["a.png", "b.jpg", "c.png"]
    assert by_name["b.jpg"].target is None and by_name["b.jpg"].error.startswith(
        f"{tmp_path / 'b.jpg'}: ")
    for name in ("a.png", "c.png"):
        assert by_name[name].error is None
        assert Image.open(by_name[name].target).size == (56, 40)
    assert run_on_ray([], model=str(tiny_checkpoint_x2)) == []


def test_a_model_that_does_not_load_is_one_line(tmp_path, local_ray):
    from edgesr.errors import EdgesrError
    from edgesr.serve.ray_batch import run_on_ray

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    source = tmp_path / "a.png"
    source.write_bytes(png_bytes())
    with pytest.raises(EdgesrError, match="the model did not load on a Ray actor: .*bad.pth: "
                       "not a readable PyTorch checkpoint") as caught:
        run_on_ray([(source, tmp_path / "out.png")], model=str(bad), backend="torch", actors=1)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out.png").exists()
