"""Everything a deployment talks to, faked on loopback: an LLM (the OpenAI fake answering every request
with a valid file set built from the brief), GitHub (repos, git data, Pages and the Pages site) and
an evaluator.

Run it by hand: ``python -m tests.fakes.deploy_stack --env-file /tmp/deploy-demo.env`` serves on
ports 8601-8603, writes the server settings to that file (start the server with
``DOTENV_PATH=/tmp/deploy-demo.env``) and prints every notification the evaluator gets; see
docs/deploy-pipeline.md. Ctrl-C stops it. ``--evaluator-failures 2`` makes the evaluator answer
503 twice per URL before accepting.
"""

from __future__ import annotations

import argparse
import html
import json
import re

from .evaluator import FakeEvaluator
from .github_repos_api import FakeGitHubRepos
from .openai_api import FakeOpenAI
from .server import RecordedRequest, Reply, run_until_interrupted, text_of


def file_set(title: str, body: str, *, extra: dict[str, str] | None = None) -> dict:
    """A valid answer to a deployment prompt: an index.html showing `body`, plus `extra` files."""
    page = (f"<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<link rel=\"stylesheet\" href=\"style.css\"></head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
            f"<p id=\"brief\">{html.escape(body)}</p>\n<script src=\"app.js\"></script>\n</body>\n</html>\n")
    files = {"index.html": page, "style.css": "body { font-family: system-ui, sans-serif; margin: 2rem; }\n",
             "app.js": "document.title += ' (ready)';\n", **(extra or {})}
    return {"files": [{"path": p, "content": c} for p, c in files.items()], "title": title,
            "summary": f"{title}: a small static web app.", "usage": "Open the page; it shows the brief.",
            "code_explanation": "`index.html` holds the markup, `style.css` the styles and `app.js` the behaviour."}


def answer_brief(request: RecordedRequest) -> Reply:
    """The OpenAI fake's default reply for a deployment prompt: a file set built from the brief."""
    messages = request.json.get("messages") or []
    prompt = "\n".join(text_of(m.get("content")) for m in messages if m.get("role") == "user")
    task = re.search(r"^Task: (.*)$", prompt, re.M)
    number = re.search(r"^Round: (\d+)$", prompt, re.M)
    brief = re.search(r"^Brief:\n(.*?)(?:\n\n|\Z)", prompt, re.S | re.M)
    title = f"{task.group(1) if task else 'App'} (round {number.group(1) if number else 1})"
    return Reply(text=json.dumps(file_set(title, brief.group(1) if brief else prompt[:200])))


def settings(llm: FakeOpenAI, github: FakeGitHubRepos) -> str:
    """The server settings that point a deployment at these fakes, as `.env` lines."""
    return (f"OPENAI_API_KEY=sk-fake-demo\nOPENAI_BASE_URL={llm.base_url}\nDEFAULT_PROVIDER=openai\n"
            f"GITHUB_TOKEN={github.api_key}\nGITHUB_API_URL={github.url}\nVERIFICATION_SECRET=demo-secret\n"
            f"NOTIFY_ALLOW_HOSTS=127.0.0.1\nPAGES_POLL_S=0.5\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.deploy_stack", description=__doc__.splitlines()[0])
    parser.add_argument("--llm-port", type=int, default=8601, help="OpenAI fake port (default %(default)s; 0: any)")
    parser.add_argument("--github-port", type=int, default=8602, help="GitHub fake port (default %(default)s)")
    parser.add_argument("--evaluator-port", type=int, default=8603, help="evaluator port (default %(default)s)")
    parser.add_argument("--evaluator-failures", type=int, default=0, help="503s per URL before the evaluator accepts")
    parser.add_argument("--env-file", help="also write the server settings to this file (for DOTENV_PATH)")
    args = parser.parse_args(argv)
    llm = FakeOpenAI(port=args.llm_port).start()
    llm.default_reply = answer_brief
    github = FakeGitHubRepos(port=args.github_port).start()
    evaluator = FakeEvaluator(failures_default=args.evaluator_failures, port=args.evaluator_port).start()
    if args.env_file:
        with open(args.env_file, "w") as env_file:
            env_file.write(settings(llm, github))
    run_until_interrupted(
        [llm, github, evaluator],
        [f"# Server settings{f' (written to {args.env_file})' if args.env_file else ''}:\n"
         f"{settings(llm, github)}# evaluation_url: {evaluator.url}/notify"],
        watch=lambda: evaluator.print_notifications(lambda n: f"evaluator got ({n.status}): {json.dumps(n.body)}"))


if __name__ == "__main__":
    main()
