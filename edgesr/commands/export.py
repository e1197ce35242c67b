"""``edgesr export``: a model to ONNX or ncnn, with the parity check against PyTorch printed.

The output's suffix chooses the format: a .param output is ncnn (.param and .bin beside it,
``edgesr.export.ncnn_export``). A checkpoint becomes one .onnx file (an SR3 denoiser one with
inputs ``x`` and ``noise_level``); a Stable Diffusion x4 upscaler folder becomes a folder
holding ``unet.onnx`` and ``vae_decoder.onnx``. ``--coreml fp16|fp32`` also writes a diffusion
model's CoreML packages beside its ONNX graphs (``edgesr.export.diffusion_coreml``).
"""

import argparse
from pathlib import Path


def register(sub) -> None:
    ex = sub.add_parser("export", help="export a model to ONNX or ncnn and check parity with "
                        "PyTorch")
    ex.add_argument("model", help="checkpoint, ncnn .param, bundled model name, or a Stable "
                    "Diffusion x4 upscaler folder (diffusers layout)")
    ex.add_argument("-o", "--output", required=True,
                    help="the .onnx file to write, or an ncnn .param (its .bin is written "
                    "beside it); a folder for a Stable Diffusion folder")
    ex.add_argument("--opset", type=int, default=17)
    ex.add_argument("--prompt", default="", help="Stable Diffusion folders: the prompt whose "
                    "CLIP embeddings are saved for sampling (default: empty)")
    ex.add_argument("--coreml", choices=("fp16", "fp32"), help="diffusion models: also write "
                    "CoreML packages (ML programs, flexible latent sizes, batch 1-2) beside the "
                    "ONNX graphs at this compute precision, for sd-upscaler-coreml / sr3-coreml")
    ex.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgesr.pipeline import resolve_model

    source, output = resolve_model(args.model), Path(args.output)
    if source.is_dir():
        return _export_sd_upscaler(source, output, args.opset, args.prompt, args.coreml)
    from edgesr.errors import ExportError
    from edgesr.models import load_model
    from edgesr.models.detect import purpose_of

    if output.suffix not in (".onnx", ".param"):
        raise ExportError(f"{output}: the output's suffix chooses the format: .onnx (ONNX) or "
                          ".param (ncnn, its .bin written beside it)")
    descriptor = load_model(source)
    if args.coreml and purpose_of(descriptor.architecture) != "denoiser":
        raise ExportError("--coreml is for diffusion models (SD x4 folders, SR3 checkpoints); "
                          "an upscaler's CoreML package comes from edgesr build -b coreml")
    if output.suffix == ".param":
        return _export_ncnn(descriptor, output)
    if purpose_of(descriptor.architecture) == "denoiser":
        from edgesr.export.diffusion_export import export_sr3

        report = export_sr3(descriptor, output, opset=args.opset)
        print(f"exported {descriptor.architecture} denoiser (x, noise_level -> noise; height and "
              f"width multiples of {descriptor.size_multiple}) -> {output}")
        print(_parity_line(report))
        if args.coreml:
            from edgesr.export.diffusion_coreml import write_sr3_package

            package = write_sr3_package(descriptor, output, precision=args.coreml)
            print(f"  {package.name}: CoreML ML program, {args.coreml} compute")
        return 0
    from edgesr.export.onnx_export import export_onnx

    report = export_onnx(descriptor, output, opset=args.opset)
    print(f"exported {descriptor.name} -> {report.path}")
    print(f"parity vs PyTorch: max abs diff {report.max_abs_diff:.3g}, PSNR {report.psnr:.1f} dB")
    return 0


def _export_ncnn(descriptor, output: Path) -> int:
    from edgesr.export.ncnn_export import export_ncnn

    report = export_ncnn(descriptor, output)
    print(f"exported {descriptor.name} -> {report.param_path} + {report.bin_path.name} (ncnn)")
    print(f"parity vs PyTorch (input {'x'.join(map(str, report.parity_shape))}): max abs diff "
          f"{report.max_abs_diff:.3g}, PSNR {report.psnr:.1f} dB")
    return 0


def _export_sd_upscaler(source: Path, output: Path, opset: int, prompt: str,
                        coreml: str | None) -> int:
    from edgesr.errors import ExportError
    from edgesr.export.sd_upscaler import EMBEDDINGS_FILE, export_sd_upscaler

    if output.suffix == ".onnx" or output.is_file():
        raise ExportError(f"{output}: a Stable Diffusion folder exports to a folder "
                          "(unet.onnx, vae_decoder.onnx); give -o a folder")
    reports = export_sd_upscaler(source, output, prompt=prompt, opset=opset)
    print(f"exported Stable Diffusion x4 upscaler {source} -> {output}")
    for report in reports:
        data = f" (+ {report.external_data.name})" if report.external_data else ""
        print(f"  {report.path.name}{data}: {_parity_line(report)}")
    if coreml:
        from edgesr.export.diffusion_coreml import write_sd_upscaler_packages

        for package in write_sd_upscaler_packages(source, output, precision=coreml):
            print(f"  {package.name}: CoreML ML program, {coreml} compute")
    if (output / EMBEDDINGS_FILE).is_file():
        print(f"  {EMBEDDINGS_FILE}: CLIP embeddings of the prompt {prompt!r} and of \"\"")
    else:
        print("not exported: the text encoder and tokenizer (no text_encoder/ + tokenizer/, or "
              "no transformers); edgesr upscale needs --prompt-embeds FILE.npy [2, sequence, "
              "dim] (negative, positive)")
    return 0


def _parity_line(report) -> str:
    dims = ", ".join(f"{k} {v}" for k, v in report.parity_dims.items())
    return (f"parity vs PyTorch ({dims}): max abs diff {report.max_abs_diff:.3g}, "
            f"PSNR {report.psnr:.1f} dB")
