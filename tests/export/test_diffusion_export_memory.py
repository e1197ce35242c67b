"""The SD x4 export's memory bound at small scale: a 246 MiB UNet (the tiny test model's layout,
256/512 channels) is exported, weights as external data, in a fresh process, and the growth of
its peak RSS over the loaded libraries is counted in copies of the weights. Measured here: 1.61
(the trace's folded weights and fixed costs, relatively larger than at real size, where
benchmarks/bench_diffusion_memory.py measured 1.41); the export that copied the weights into
protobufs (exporter, parse, optimizer) measured 4.39 on the same folder."""

import subprocess
import sys
import textwrap

import pytest
import torch
from tiny_models import TINY_SD_X4_UNET, write_tiny_sd_x4

diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed: "
                                "pip install 'edgesr[diffusion]'")
UNET = {**TINY_SD_X4_UNET, "block_out_channels": (256, 512), "cross_attention_dim": 512,
        "norm_num_groups": 32, "attention_head_dim": 8}
PHASE = textwrap.dedent('''
    import sys

    # libraries the export imports (diffusers lazily) are not the export's memory
    from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: F401

    from edgesr.export.sd_upscaler import export_sd_upscaler

    def status(key):
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) for l in status if l.startswith(key)) * 1024

    source, target = sys.argv[1:]
    before = status("VmRSS")
    export_sd_upscaler(source, target, external_data_bytes=0)
    print(status("VmHWM") - before)
''')


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_the_export_holds_the_weights_about_once(tmp_path):
    write_tiny_sd_x4(tmp_path / "src")
    torch.manual_seed(0)
    diffusers.UNet2DConditionModel(**UNET).save_pretrained(tmp_path / "src" / "unet")
    weights = (tmp_path / "src" / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    run = subprocess.run([sys.executable, "-c", PHASE, str(tmp_path / "src"),
                          str(tmp_path / "onnx")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "onnx" / "unet.onnx.data").stat().st_size > 0.99 * weights
    copies = int(run.stdout.split()[-1]) / weights
    assert copies < 2.2, f"the export's peak held {copies:.2f} copies of the weights"
