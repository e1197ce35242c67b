"""Upscaler: tiled equals untiled, batching, shapes, channels and alpha, outscale, errors."""

import os

import numpy as np
import pytest
from conftest import photo, smooth_image
from tiny_models import make_tiny

from edgesr import fidelity
from edgesr.errors import EdgesrError, InferenceError, RuntimeStateError
from edgesr.kernels.blend import BLEND_KINDS, DEFAULT_BLEND, to_uint
from edgesr.kernels.native import accumulate, normalize
from edgesr.models import model_from_state_dict
from edgesr.models.zoo import bundled_model_path
from edgesr.runtimes.base import Runtime, RuntimeInfo
from edgesr.runtimes.torch_runtime import TorchRuntime
from edgesr.upscaler import Upscaler, resize


class NearestStub(Runtime):
    """Nearest-neighbour upscaling, an exact pointwise oracle; checks every batch it is given."""

    name = "nearest-stub"

    def __init__(self, scale=2, channels=3, fixed_hw=None, size_multiple=1, preferred_batch=1,
                 max_batch=None):
        super().__init__()
        self.kw = dict(scale=scale, in_channels=channels, out_channels=channels,
                       fixed_hw=fixed_hw, size_multiple=size_multiple,
                       preferred_batch=preferred_batch, max_batch=max_batch)
        self.shapes: list[tuple[int, ...]] = []

    def activate_impl(self) -> RuntimeInfo:
        return RuntimeInfo(**self.kw)

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        info = self.info
        self.shapes.append(batch.shape)
        if info.fixed_hw is not None:
            assert batch.shape[2:] == info.fixed_hw
        assert batch.shape[2] % info.size_multiple == 0 == batch.shape[3] % info.size_multiple
        assert info.max_batch is None or len(batch) <= info.max_batch
        return self.model(batch).repeat(info.scale, axis=2).repeat(info.scale, axis=3)

    def model(self, batch: np.ndarray) -> np.ndarray:
        return batch


class BlurStub(NearestStub):
    """A 3x3 box blur (edges replicated) before the nearest upscale: linear, mixes neighbours."""

    def model(self, batch: np.ndarray) -> np.ndarray:
        padded = np.pad(batch, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
        h, w = batch.shape[2:]
        return sum(padded[:, :, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9


def nearest(image: np.ndarray, scale: int) -> np.ndarray:
    return image.repeat(scale, axis=0).repeat(scale, axis=1)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return fidelity.psnr(a, b, cap=None)  # tiled vs whole differ by float32 rounding: > 100 dB


def tiny_runtime(name: str) -> TorchRuntime:
    return TorchRuntime(model_from_state_dict(make_tiny(name).state_dict()))


@pytest.mark.parametrize("blend", BLEND_KINDS)
@pytest.mark.parametrize("shape", [(37, 53, 3), (16, 70, 3), (40, 40, 1)])
def test_pointwise_model_tiled_equals_untiled(blend, shape, rng):
    image = np.round(smooth_image(rng, *shape) * 255) / 255  # 8-bit values: to_uint is stable
    with NearestStub(scale=2) as rt:
        whole = Upscaler(rt, tile=0).upscale(image)
        tiled = Upscaler(rt, tile=16, overlap=4, blend=blend).upscale(image)
    np.testing.assert_array_equal(whole, nearest(image, 2))  # one tile, weight 1: exact
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(to_uint(tiled), to_uint(whole))


def test_tiles_are_batched_and_capped_by_max_batch(rng):
    image = smooth_image(rng, 37, 53)
    with NearestStub(preferred_batch=3) as rt:
        up = Upscaler(rt, tile=16, overlap=4)
        n_tiles = len(up.plan(37, 53))
        assert n_tiles == 15 and up.batch == 3
        up.upscale(image)
        assert [s[0] for s in rt.shapes] == [3] * 5
        rt.shapes.clear()
        Upscaler(rt, tile=16, overlap=4, batch=5).upscale(np.dstack([image, image[..., :1]]))
        assert [s[0] for s in rt.shapes] == [5] * 6  # RGBA: colour and alpha of each tile
    with NearestStub(preferred_batch=8, max_batch=2) as rt:
        assert Upscaler(rt).batch == 2


@pytest.mark.parametrize("shape", [(37, 53), (20, 20), (32, 32), (70, 33)])
@pytest.mark.parametrize("tile", [0, 256])
def test_fixed_shape_runtime_gets_exactly_its_shape(shape, tile, rng):
    image = smooth_image(rng, *shape)
    with NearestStub(scale=3, fixed_hw=(32, 32)) as rt:
        out = Upscaler(rt, tile=tile, overlap=8).upscale(image)  # tile is ignored
        assert {s[2:] for s in rt.shapes} == {(32, 32)}
        np.testing.assert_allclose(out, nearest(image, 3), rtol=0, atol=1e-6)
        with pytest.raises(EdgesrError, match="overlap 32 must be smaller than the tile size 32"):
            Upscaler(rt, overlap=32)


def test_size_multiple_pads_and_crops_odd_sizes(rng):
    image = smooth_image(rng, 37, 53)
    with NearestStub(scale=2, size_multiple=4) as rt:
        up = Upscaler(rt, tile=30, overlap=6)  # rounded down to 28
        assert {(t.h, t.w) for t in up.plan(37, 53)} == {(28, 28)}
        np.testing.assert_allclose(up.upscale(image), nearest(image, 2), rtol=0, atol=1e-6)
        small = image[:5, :7]
        np.testing.assert_array_equal(up.upscale(small), nearest(small, 2))
        assert rt.shapes[-1][2:] == (8, 8)


@pytest.mark.parametrize("premultiply", [True, False])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_channel_layouts_round_trip_through_a_pointwise_model(channels, premultiply, rng):
    image = smooth_image(rng, 23, 31, channels)
    if channels in (2, 4):
        image[:5, :, -1] = 0  # some fully transparent rows
    with NearestStub(scale=2) as rt:
        out = Upscaler(rt, tile=16, overlap=4, premultiply_alpha=premultiply).upscale(image)
    want = nearest(image, 2)
    if channels in (2, 4) and premultiply:
        want[want[..., -1] == 0, :-1] = 0  # colour of invisible pixels is dropped
    assert out.shape == want.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=0, atol=2e-6)


def test_grey_hw_image_keeps_its_layout(rng):
    image = smooth_image(rng, 19, 21, 1)[..., 0]
    with NearestStub(scale=2) as rt:
        out = Upscaler(rt, tile=8, overlap=2).upscale(image)
        assert rt.shapes[0][1] == 3  # grey replicated to the model's three channels
    assert out.shape == (38, 42)
    np.testing.assert_allclose(out, nearest(image, 2), rtol=0, atol=1e-6)


def test_one_channel_model_takes_each_channel_alone(rng):
    image = smooth_image(rng, 20, 24, 4)
    with NearestStub(scale=2, channels=1) as rt:
        out = Upscaler(rt, tile=16, overlap=4, premultiply_alpha=False).upscale(image)
        assert {s[1] for s in rt.shapes} == {1}
    np.testing.assert_allclose(out, nearest(image, 2), rtol=0, atol=1e-6)


def test_opaque_alpha_skips_the_alpha_pass(rng):
    rgb = smooth_image(rng, 30, 30)
    rgba = np.dstack([rgb, np.ones((30, 30, 1), np.float32)])
    with tiny_runtime("compact_x2") as rt:
        up = Upscaler(rt, tile=16, overlap=4)
        out, ref = up.upscale(rgba), up.upscale(rgb)
    np.testing.assert_array_equal(out[..., :3], ref)
    assert (out[..., 3] == 1).all()


def test_premultiplied_alpha_keeps_hidden_colour_out_of_visible_edges():
    image = np.zeros((24, 24, 4), np.float32)
    image[:, :12] = (0.2, 0.4, 0.6, 1.0)  # opaque left half
    image[:, 12:] = (1.0, 0.0, 1.0, 0.0)  # transparent right half with garbage colour
    with BlurStub(scale=2) as rt:
        premul = Upscaler(rt, tile=16, overlap=4).upscale(image)
        straight = Upscaler(rt, tile=16, overlap=4, premultiply_alpha=False).upscale(image)
    visible = premul[..., 3] > 0.05
    assert visible[:, 23].all() and not visible[:, 30].any()  # the blurred edge is half visible
    np.testing.assert_allclose(premul[visible][:, :3], [[0.2, 0.4, 0.6]] * visible.sum(), atol=1e-5)
    np.testing.assert_array_equal(premul[..., 3], straight[..., 3])
    assert np.abs(straight[visible][:, :3] - (0.2, 0.4, 0.6)).max() > 0.25  # magenta bleeds


def test_local_model_tiled_matches_untiled_closely(rng):
    image = smooth_image(rng, 70, 90)
    with tiny_runtime("compact_x2") as rt:  # receptive field: 4 input pixels
        whole = Upscaler(rt, tile=0).upscale(image)
        tiled = Upscaler(rt, tile=32, overlap=16).upscale(image)
    assert psnr(tiled, whole) > 130  # measured 149 dB (hann4: 137, linear: 64.6)
    np.testing.assert_array_equal(to_uint(tiled), to_uint(whole))


# measured, default (hann8) / linear: rrdb_x4 163.4 / 85.6, rrdb_x2 119.9 / 69.9 (48x60, tile
# 32/12); rrdb_x1 77.9 / 74.7 dB (64x80, tile 48/16: x1 folds 4x4 pixels, so it sees 4x wider)
@pytest.mark.parametrize("name,shape,tile,overlap,floor", [
    ("rrdb_x4", (48, 60), 32, 12, 150), ("rrdb_x2", (48, 60), 32, 12, 110),
    ("rrdb_x1", (64, 80), 48, 16, 72)])
def test_tiny_rrdb_tiled_psnr(name, shape, tile, overlap, floor, rng):
    image = smooth_image(rng, *shape)
    with tiny_runtime(name) as rt:
        whole = Upscaler(rt, tile=0).upscale(image)
        tiled = Upscaler(rt, tile=tile, overlap=overlap).upscale(image)
        linear = Upscaler(rt, tile=tile, overlap=overlap, blend="linear").upscale(image)
    assert psnr(tiled, whole) > floor
    assert psnr(tiled, whole) > psnr(linear, whole) + 2


@pytest.mark.parametrize("name,floor", [("rrdb_x1", 60), ("rrdb_x2", 110)])
def test_size_multiple_models_on_odd_sizes(name, floor, rng):
    image = smooth_image(rng, 37, 53)
    with tiny_runtime(name) as rt:
        scale = rt.info.scale
        whole = Upscaler(rt, tile=0).upscale(image)
        tiled = Upscaler(rt, tile=30, overlap=8).upscale(image)  # x1: rounded down to 28
    assert whole.shape == tiled.shape == (37 * scale, 53 * scale, 3)
    # measured: x1 67.6 dB, x2 126.0 dB (tiling the image padded to the multiple, as the
    # untiled run pads it; tiling inside the image gave 55.4 and 54.0)
    assert psnr(tiled, whole) > floor


def test_image_smaller_than_the_tile_is_the_untiled_result(rng):
    image = smooth_image(rng, 37, 53)
    with tiny_runtime("rrdb_x2") as rt:
        np.testing.assert_array_equal(Upscaler(rt, tile=64).upscale(image),
                                      Upscaler(rt, tile=0).upscale(image))


def test_outscale_resizes_the_native_output(rng):
    image = smooth_image(rng, 37, 53)
    with NearestStub(scale=4) as rt:
        up = Upscaler(rt, tile=16, overlap=4)
        native = up.upscale(image)
        assert up.output_size(37, 53) == (148, 212)
        assert up.output_size(37, 53, 1.5) == (56, 80)  # floor(55.5 + 0.5), floor(79.5 + 0.5)
        np.testing.assert_array_equal(up.upscale(image, outscale=4), native)
        half = up.upscale(image, outscale=2)
        assert half.shape == (74, 106, 3)
        np.testing.assert_array_equal(half, np.clip(resize(native.transpose(2, 0, 1), (74, 106)),
                                                    0, 1).transpose(1, 2, 0))
        # nearest x4 then antialiased x0.5 = a 2x2 box average of the x4 output
        np.testing.assert_allclose(half, nearest(image, 2), atol=0.05)
        flat = up.upscale(np.full((10, 10, 4), 0.25, np.float32), outscale=1.5)
        np.testing.assert_allclose(flat, 0.25, atol=1e-6)
        for bad in (0, -1.0, float("nan"), "2"):
            with pytest.raises(EdgesrError, match="outscale"):
                up.upscale(image, outscale=bad)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_public_steps_compose_to_upscale(channels, rng):
    """plan -> split_planes -> infer_tiles -> accumulate with blend_weight -> normalize ->
    merge_planes, as a service or the C library's reference tests run them, is upscale()."""
    image = smooth_image(rng, 45, 61, channels)
    with tiny_runtime("compact_x2") as rt:
        up = Upscaler(rt, tile=24, overlap=8, batch=3, premultiply_alpha=False)
        chw = np.ascontiguousarray(image.transpose(2, 0, 1))
        planes = up.split_planes(chw, has_alpha=channels == 4)
        tiles = up.plan(45, 61)
        canvas = np.zeros((planes.shape[0] * 3, 90, 122), np.float32)
        weight_sum = np.zeros((90, 122), np.float32)
        seen = []
        for tile, out, weight in up.infer_tiles(planes, tiles):
            seen.append(tile)
            np.testing.assert_array_equal(weight, up.blend_weight(tile))
            accumulate(canvas, weight_sum, out, weight, tile.y * 2, tile.x * 2)
        out = normalize(canvas, weight_sum).reshape(planes.shape[0], 3, 90, 122)
        merged = np.clip(up.merge_planes(out, channels, channels == 4), 0, 1).transpose(1, 2, 0)
        np.testing.assert_array_equal(merged, up.upscale(image))
        np.testing.assert_array_equal(up.blend_tiles(planes), out)
    assert seen == tiles and len(tiles) > 4


def test_progress_bar_counts_tiles(rng, capsys):
    with NearestStub() as rt:
        Upscaler(rt, tile=16, overlap=4, progress=True).upscale(smooth_image(rng, 37, 53))
    err = capsys.readouterr().err
    assert "/15" in err and "tile" in err


def test_defaults():
    with NearestStub(preferred_batch=4) as rt:
        up = Upscaler(rt, blend=None)
        assert (up.tile, up.overlap, up.batch, up.blend) == (256, 32, 4, DEFAULT_BLEND)
        assert Upscaler(rt, tile=None).tile == 0


@pytest.mark.parametrize("image,message", [
    (np.zeros((8, 8, 3), np.uint8), "float image"),
    (np.zeros((8, 8, 5), np.float32), "1-4 channels"),
    (np.zeros((2, 8, 8, 3), np.float32), "1-4 channels"),
    (np.zeros((0, 8, 3), np.float32), "1-4 channels"),
    ([[0.5]], "NumPy image array"),
])
def test_bad_images(image, message):
    with NearestStub() as rt, pytest.raises(EdgesrError, match=message):
        Upscaler(rt).upscale(image)


@pytest.mark.parametrize("kwargs,message", [
    (dict(blend="gauss"), "unknown blend"),
    (dict(pad_mode="zeros"), "unknown pad mode"),
    (dict(tile=-1), "tile >= 0"),
    (dict(batch=0), "batch >= 1"),
    (dict(tile=16, overlap=16), "overlap 16 must be smaller"),
])
def test_bad_arguments(kwargs, message):
    with NearestStub() as rt, pytest.raises(EdgesrError, match=message):
        Upscaler(rt, **kwargs)


def test_runtime_problems():
    with pytest.raises(RuntimeStateError):
        Upscaler(NearestStub())
    with NearestStub(channels=4) as rt, pytest.raises(EdgesrError, match="not supported"):
        Upscaler(rt)

    class Wrong(NearestStub):
        def infer_impl(self, batch):
            return batch

    with Wrong() as rt, pytest.raises(InferenceError, match="expected"):
        Upscaler(rt).upscale(np.zeros((4, 4, 3), np.float32))


class CachedRuntime(Runtime):
    """Wraps a runtime and remembers its output per input tile, so blends can be compared."""

    def __init__(self, inner: Runtime):
        super().__init__()
        self.inner, self.name, self.cache = inner, inner.name, {}

    def activate_impl(self) -> RuntimeInfo:
        return self.inner.activate().info

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        keys = [(x.shape, x.tobytes()) for x in batch]
        missing = [i for i, k in enumerate(keys) if k not in self.cache]
        if missing:
            for i, out in zip(missing, self.inner.infer(batch[missing]), strict=True):
                self.cache[keys[i]] = out
        return np.stack([self.cache[k] for k in keys])


@pytest.mark.skipif(not os.environ.get("EDGESR_SLOW_TESTS"),
                    reason="Real-ESRGAN x4plus at 160x160 takes minutes on a CPU; "
                           "set EDGESR_SLOW_TESTS=1")
def test_real_x4plus_tile_128_on_160_pixels():
    from edgesr.models.ncnn import load_ncnn_model

    image = smooth_image(np.random.default_rng(0), 160, 160)
    with CachedRuntime(TorchRuntime(load_ncnn_model(bundled_model_path()))) as rt:
        whole = Upscaler(rt, tile=0).upscale(image)
        got = {kind: psnr(Upscaler(rt, tile=128, overlap=32, blend=kind).upscale(image), whole)
               for kind in BLEND_KINDS}
    print("PSNR(tiled, untiled) dB:", {k: round(v, 2) for k, v in got.items()})
    # On 160 px, tiles of 128 asked to overlap by 32 sit at 0 and 32: the real overlap is 96.
    # measured: hann8 48.09, hann4 47.64, hann2 45.69, cosine 44.46, hann 42.62, linear 41.90
    # (a hard crop at the overlap middle: 47.38).
    assert got[DEFAULT_BLEND] > 47.5
    assert got[DEFAULT_BLEND] > got["linear"] + 5


def tiled_vs_whole(model: str, image: np.ndarray, tile: int, overlaps) -> dict[int, float]:
    """PSNR(tiled, untiled) by overlap, checking that tiles overlap by exactly what was asked."""
    with TorchRuntime(bundled_model_path(model)) as rt:
        whole = Upscaler(rt, tile=0).upscale(image)
        got = {}
        for overlap in overlaps:
            upscaler = Upscaler(rt, tile=tile, overlap=overlap)
            xs = sorted({t.x for t in upscaler.plan(*image.shape[:2])})
            assert np.diff(xs).tolist() == [tile - overlap] * (len(xs) - 1)  # no wider overlap
            got[overlap] = psnr(upscaler.upscale(image), whole)
    print(f"{model}, tile {tile}: PSNR(tiled, untiled) dB by overlap:", got)
    return got


def test_real_anime_model_on_a_photo_meets_50_db_at_overlap_32():
    """The spine's bound in CI: official x4plus-anime weights, a real photo, true overlap 32."""
    got = tiled_vs_whole("realesrgan-x4plus-anime", photo(224), tile=128, overlaps=(32,))
    assert got[32] >= 50.0  # measured: 53.1 dB


def test_noise_needs_a_wider_overlap():
    """On a noisy synthetic image the tile borders matter more: RRDB's denoising uses context.

    With a true overlap of 32 the result stays far from the whole-image one; 96 restores it.
    One row of tiles (the image is one tile tall) keeps the test short.
    """
    image = smooth_image(np.random.default_rng(0), 128, 224)
    got = tiled_vs_whole("realesrgan-x4plus-anime", image, tile=128, overlaps=(32, 96))
    # measured: overlap 32 -> 38.5 dB; overlap 96 -> 58.4 dB (224x224: 32.6 and 57.1 dB)
    assert 30.0 < got[32] < 50.0 <= got[96]


@pytest.mark.skipif(not os.environ.get("EDGESR_SLOW_TESTS"),
                    reason="Real-ESRGAN x4plus at 480x480 takes minutes on a CPU; "
                           "set EDGESR_SLOW_TESTS=1")
def test_real_x4plus_on_a_photo_meets_50_db_at_tile_256_overlap_32():
    """The spine's own command (--tile 256 --overlap 32) on the default model and a real photo."""
    got = tiled_vs_whole("realesrgan-x4plus", photo(480), tile=256, overlaps=(32,))
    assert got[32] >= 50.0  # measured: 52.8 dB


#: Largest difference between ``resize`` (Pillow, float64 filter positions) and PyTorch's
#: antialiased bicubic (float32 positions, so it drifts as coordinates grow): 3.1e-5 measured
#: at 256² -> 1000², 1e-5 at up to 384 px.
RESIZE_ATOL = 5e-5


@pytest.mark.parametrize("shape, size", [((3, 16, 16), (64, 64)), ((3, 64, 48), (50, 37)),
                                         ((1, 17, 23), (170, 23)), ((4, 40, 40), (13, 7)),
                                         ((2, 9, 9), (9, 9)), ((3, 256, 256), (1000, 1000))])
def test_resize_matches_torch_antialiased_bicubic(rng, shape, size):
    import torch
    import torch.nn.functional as F

    chw = rng.random(shape, dtype=np.float32)
    ref = F.interpolate(torch.from_numpy(chw)[None], size=size, mode="bicubic", antialias=True,
                        align_corners=False)[0].numpy()
    out = resize(chw, size)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert np.abs(out - ref).max() <= RESIZE_ATOL


@pytest.mark.parametrize("stub, exact", [(NearestStub, True), (BlurStub, False)])
def test_tta_on_a_flip_and_rotation_equivariant_model_is_its_plain_output(rng, stub, exact):
    image = smooth_image(rng, 37, 50)  # edge tiles are not square: rotated, they swap h and w
    with stub(scale=2, preferred_batch=3) as rt:
        plain = Upscaler(rt, tile=16, overlap=4).upscale(image)
        tta = Upscaler(rt, tile=16, overlap=4, tta=True).upscale(image)
    if exact:  # pairwise sums of 8 equal values: exact
        np.testing.assert_array_equal(tta, plain)
    else:  # the blur sums neighbours in another order once rotated
        np.testing.assert_allclose(tta, plain, atol=1e-6)


def test_tta_on_a_random_model_averages_8_transformed_runs(rng):
    image = smooth_image(rng, 24, 20)
    with tiny_runtime("compact_x2") as rt:
        plain = Upscaler(rt, tile=0).upscale(image)
        tta = Upscaler(rt, tile=0, tta=True).upscale(image)
        chw = image.transpose(2, 0, 1)[None]
        runs = []
        for flip in (False, True):
            x = chw[..., ::-1] if flip else chw
            for k in range(4):
                out = np.rot90(rt.infer(np.ascontiguousarray(np.rot90(x, k, (2, 3)))), -k, (2, 3))
                runs.append(out[..., ::-1] if flip else out)
    want = np.clip(np.mean(runs, axis=0)[0].transpose(1, 2, 0), 0, 1)
    assert np.abs(tta - plain).max() > 1e-3  # a random network is not equivariant
    np.testing.assert_allclose(tta, want, atol=1e-6)


def test_tta_needs_square_tiles_on_a_fixed_shape_model():
    with NearestStub(fixed_hw=(16, 32)) as rt, pytest.raises(EdgesrError, match="not square"):
        Upscaler(rt, tta=True)
