"""Run the fakes by hand: ``python -m tests.fakes --openai 8001 --anthropic 8002 --gemini 8003``.

Each fake echoes the last user message ("You said: ...") until Ctrl-C, e.g. for
curl demos with ``OPENAI_BASE_URL=http://127.0.0.1:8001/v1``. Port 0 picks a free
port; with no option at all, all three run on free ports.
"""

from __future__ import annotations

import argparse

from .anthropic_api import FakeAnthropic
from .gemini_api import FakeGemini
from .openai_api import FakeOpenAI
from .server import FakeServer, run_until_interrupted

FAKES: dict[str, type[FakeServer]] = {"openai": FakeOpenAI, "anthropic": FakeAnthropic, "gemini": FakeGemini}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__.splitlines()[0])
    for name in FAKES:
        parser.add_argument(f"--{name}", type=int, metavar="PORT", help=f"serve the {name} fake on PORT (0: any)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--api-key", help="refuse requests that do not carry this key")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ports = {name: getattr(args, name) for name in FAKES if getattr(args, name) is not None}
    fakes = [
        FAKES[name](api_key=args.api_key, echo=True, host=args.host, port=port).start()
        for name, port in (ports or dict.fromkeys(FAKES, 0)).items()
    ]
    run_until_interrupted(fakes, [f"{name}: {fake.base_url}" for name, fake in zip(ports or FAKES, fakes)])


if __name__ == "__main__":
    main()
