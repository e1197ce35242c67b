"""``edgesr models``: the models that ship with the install."""

import argparse


def register(sub) -> None:
    models = sub.add_parser("models", help="list the models that ship with the install")
    models.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgesr.models.zoo import BUNDLED_MODELS, DEFAULT_MODEL, bundled_model_path

    for name in BUNDLED_MODELS:
        mark = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{mark}: {bundled_model_path(name)}")
    return 0
