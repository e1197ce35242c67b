"""Diffusion upscalers' sampling loops, apart from any runtime: the Stable Diffusion x4
upscaler (``sd_upscaler``) and SR3 (``sr3``), latent tiling (``latent_tiling``) and per-tile
seeding (``seeding``). A sampler runs its networks through a session factory (``sessions``), so
the same loop can run its UNet and VAE on any backend that runs a multi-input graph; the
``sd-upscaler`` and ``sr3`` backends (``edgesr.runtimes``) give it ONNX Runtime's."""
