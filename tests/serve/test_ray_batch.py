"""edgesr batch --ray: a folder on a local Ray instance with two actors, the same files as
edgesr upscale writes."""

import pytest
from PIL import Image
from serve.helpers import png_bytes

from edgesr.cli import main

ray = pytest.importorskip("ray")


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
                 *model]) == 1
    err = capsys.readouterr().err
    assert "bad.png" in err and "1 of 6 images failed" in err
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert names == [f"p{i}.png" for i in range(5)]
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == names
    for name in names:
        local, remote = tmp_path / "local" / name, tmp_path / "ray" / name
        assert local.read_bytes() == remote.read_bytes(), name
        width, height = Image.open(photos / name).size
        assert Image.open(remote).size == (2 * width, 2 * height)


def test_a_model_that_does_not_load_is_one_line(tmp_path, local_ray):
    from edgesr.errors import EdgesrError
    from edgesr.serve.ray_batch import run_on_ray

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    source = tmp_path / "a.png"
    source.write_bytes(png_bytes())
    with pytest.raises(EdgesrError, match="a Ray actor failed") as caught:
        run_on_ray([(source, tmp_path / "out.png")], model=str(bad), backend="torch", actors=1)
    assert "\n" not in str(caught.value)
