"""The `darkroom` command line: serve, generate, weights, eval.

Each subcommand lives in server/commands/<name>.py as `main(args) -> int`, imported only when
that subcommand runs so `darkroom --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="darkroom", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the HTTP server")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("--manifest", default=None, help="weights manifest YAML")
    serve.add_argument("--model", default=None, help="model id to load (default: the manifest's default)")

    gen = sub.add_parser("generate", help="generate one image from a prompt, no server")
    gen.add_argument("prompt")
    gen.add_argument("--model", default=None)
    gen.add_argument("--manifest", default=None)
    gen.add_argument("--sampler", default=None)
    gen.add_argument("--steps", type=int, default=None)
    gen.add_argument("--guidance", type=float, default=None)
    gen.add_argument("--negative-prompt", default="")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--width", type=int, default=None)
    gen.add_argument("--height", type=int, default=None)
    gen.add_argument("-o", "--output", required=True, help="output image file (.png/.jpg/.webp)")

    weights = sub.add_parser("weights", help="list, verify or pull model weights")
    weights.add_argument("--manifest", default=None)
    weights.add_argument("--root", default=None, help="weights root (default from settings)")
    wsub = weights.add_subparsers(dest="weights_command", required=True)
    wsub.add_parser("list", help="list the manifest's models and whether their files are present")
    verify = wsub.add_parser("verify", help="check files and sha256; non-zero exit on any bad file")
    verify.add_argument("model_id", nargs="?", default=None)
    verify.add_argument("--update", action="store_true", help="record sha256 of files whose hash is null")
    pull = wsub.add_parser("pull", help="download a model's files with resume and hash check")
    pull.add_argument("model_id")

    ev = sub.add_parser("eval", help="judge accuracy and FID of the bundled model")
    ev.add_argument("--model", default=None)
    ev.add_argument("--manifest", default=None)
    ev.add_argument("--captions", type=int, default=None, help="captions per split (default 512; 32 with --quick)")
    ev.add_argument("--quick", action="store_true", help="a small subset of the grid")
    ev.add_argument("--out", default="eval")
    ev.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ev.add_argument("--seconds", type=float, default=None, help="wall-clock budget; the grid's tail is cut")
    ev.add_argument("--students", nargs="*", default=[], help="distilled model ids to evaluate too")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"server.commands.{args.command}")
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
