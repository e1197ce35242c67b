"""One module per ``edgesr`` subcommand; each exposes ``register(subparsers)``.

To add a command, write its module here and add its name to ``COMMANDS``. ``jsonout`` holds
the output conventions they share (``--json``, stdout kept for results).
"""

COMMANDS = ("upscale", "export", "info", "models", "bench", "calibrate", "quantize",
            "backends", "build", "compare", "serve", "watch", "batch")
