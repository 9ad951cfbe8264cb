"""Configuration from environment variables (and a `.env` file, read with python-dotenv).

Every setting the server knows is declared once in `SETTINGS`; `.env.example` and the README's
configuration table are written from the same list (`python -m app.core.config`), so they cannot drift.
Provider settings are read per provider by `app.llm.registry`, which knows the naming scheme
(`{NAME}_API_KEY`, `{NAME}_MODEL_DEFAULT`, ...).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from dotenv import load_dotenv


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        value = value.strip().lower()
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return value
    return parse


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    parse: Callable[[str], Any] = str
    secret: bool = False
    group: str = "server"


SETTINGS: tuple[Setting, ...] = (
    Setting("HOST", "127.0.0.1", "Address the web server binds."),
    Setting("PORT", "5001", "Port the web server listens on.", int),
    Setting("DATABASE_URL", "sqlite:///data/aiserver.db",
            "peewee database URL: sqlite:///path (relative to the project) or postgresql://user@host/db."),
    Setting("DATABASE_POOL_SIZE", "20", "Most database connections one process holds; a request beyond it waits "
            "for a free one. Keep (instances x (WEB_WORKERS + 1) x this) below PostgreSQL's max_connections.", int),
    Setting("DATABASE_POOL_TIMEOUT_S", "10", "Seconds a request waits for a free database connection before a "
            "503 (database_unavailable).", float),
    Setting("DB_LOCK_WAIT_S", "10", "Seconds a SQLite statement waits for another writer's lock before failing; the "
            "wait sleeps cooperatively, so other requests keep being served.", float),
    Setting("REDIS_URL", "", "Redis URL for the background queue; empty uses a SQLite queue under data/."),
    Setting("LOG_DIR", "logs", "Directory for app.log, error.log and debug.log (rotated; all three created at start)."),
    Setting("LOG_LEVEL", "INFO", "Console log level."),
    Setting("LOG_FORMAT", "text", "text or json (one JSON object per line)."),
    Setting("TRUSTED_PROXIES", "0", "Reverse proxies in front whose X-Forwarded-For/-Proto/-Host are believed, "
            "counted from the server: 0 (clients connect directly, as under `make run`: a client's own forwarded "
            "headers are ignored); 1 behind the shipped Caddy configurations, which set it.", int),
    Setting("MAX_BODY_BYTES", "1048576", "Largest request body accepted; larger is a 413.", int),
    Setting("REQUEST_READ_TIMEOUT_S", "30", "Seconds a request's body may take to arrive once its headers have "
            "(Gunicorn reads the headers within its keepalive, 5 s); later is a 408, however slowly it trickles.",
            float),
    Setting("REQUEST_READ_MAX_PER_CLIENT", "20", "Most requests one client address may have still sending their "
            "body, per web worker; one more is a 429 at once, so a slow client cannot hold every connection.",
            int),
    Setting("TRUSTED_HOSTS", "", "Comma-separated host names the server answers to (`.example.com` takes its "
            "subdomains too); another Host header is a 400, so DNS rebinding cannot reach the API. Empty: any.",
            _list),
    Setting("SSE_HEARTBEAT_S", "15", "Seconds of upstream silence before a `: heartbeat` comment is sent.", float),
    Setting("HEALTH_CACHE_S", "30", "Seconds a provider reachability check is cached.", float),
    Setting("DEFAULT_PROVIDER", "", "Provider for /chat and /v1/ask when none is named; empty: the first configured.",
            group="routing"),
    Setting("PROVIDER_FALLBACKS", "",
            "Comma-separated providers tried, in order, when the chosen one fails as a whole.",
            _list, group="routing"),
    Setting("MODEL_ALIASES", "",
            "Comma-separated alias=provider/model pairs for the /v1 API, e.g. "
            "fast=openai/gpt-4o-mini; an alias may name an ordered chain across vendors: "
            "smart=anthropic/claude-sonnet-5-5|openai/gpt-5.4.",
            _list, group="routing"),
    Setting("DROP_UNSUPPORTED_PARAMS", "false", "true: a /v1 parameter the chosen vendor cannot honour is dropped and "
            "named in X-Dropped-Params; false: it is a 400 naming it.", _bool, group="routing"),
    Setting("OPENAI_COMPATIBLE", "", "Names of extra OpenAI-compatible endpoints; each NAME reads NAME_API_BASE, "
            "NAME_API_KEY, NAME_MODEL_DEFAULT, NAME_MODEL_FALLBACKS, NAME_EMBEDDING_MODELS and NAME_RESPONSES_API "
            "(true: the endpoint offers /v1/responses, which then takes Responses requests as they came).", _list,
            group="routing"),
    Setting("RETRY_ATTEMPTS", "2", "Retries of one model on 429, 5xx, timeouts and connection errors.", int,
            group="routing"),
    Setting("RETRY_BACKOFF_S", "0.5", "First backoff; doubles each retry (with jitter).", float, group="routing"),
    Setting("RETRY_MAX_WAIT_S", "8", "Longest wait before a retry; a longer Retry-After falls back at once.", float,
            group="routing"),
    Setting("RETRY_BUDGET_S", "30", "Deadline, in seconds, for a request's answer to start, retries and fallbacks "
            "included: no upstream call starts after it and a call still waiting for its first byte is given up "
            "(a non-streamed answer's first byte is the whole answer).", float, group="routing"),
    Setting("RETRY_MAX_CALLS", "6", "Most upstream calls one request makes, retries and fallbacks together.", int,
            group="routing"),
    Setting("MODELS_FILE", "models.yaml", "The models file (relative to the project): endpoints, the models clients "
            "name and the upstreams serving each (weights, rpm/tpm), fallbacks, aliases and prices, secrets as "
            "env:VARIABLE; read at start and on a reload (HUP). Missing: routing comes from these variables alone.",
            group="routing"),
    Setting("UPSTREAM_FAILURES_TO_COOL", "3", "Consecutive failures that say an upstream is unwell (connection "
            "errors, timeouts, 5xx, 529) before it cools down: skipped while another route exists.", int,
            group="routing"),
    Setting("UPSTREAM_COOLDOWN_S", "10", "First cooldown of an unwell upstream, in seconds; then one request probes "
            "it, and each failed probe doubles the cooldown.", float, group="routing"),
    Setting("UPSTREAM_COOLDOWN_MAX_S", "300", "Longest cooldown of an upstream.", float, group="routing"),
    Setting("UPSTREAM_STRATEGY", "weighted", "How requests spread over the healthy upstreams of one model: weighted "
            "(random by weight), least-busy (fewest calls under way in this process, per weight) or "
            "lowest-latency.", _choice("weighted", "least-busy", "lowest-latency"), group="routing"),
    Setting("UPSTREAM_HEALTH_FILE", "data/upstream_health", "Memory-mapped file in which the workers of this "
            "instance share upstream health (with REDIS_URL, Redis is shared by every instance instead).",
            group="routing"),
    Setting("WHOLE_ANSWERS_AS_STREAMS", "auto", "When a non-streamed answer is asked of its upstream as a stream "
            "and assembled, so FIRST_BYTE_TIMEOUT_S finds a hung vendor for it too: auto (when another endpoint "
            "is among the request's routes, or while the upstream is suspect: it failed lately, or a whole answer "
            "from it is overdue), always (every answer: costs CPU per token) or never.",
            _choice("auto", "always", "never"), group="routing"),
    Setting("CONNECT_TIMEOUT_S", "5", "Connect timeout to a provider.", float, group="routing"),
    Setting("FIRST_BYTE_TIMEOUT_S", "10", "Seconds a streamed call may take to start its response before the next "
            "try or route; after that READ_TIMEOUT_S applies.", float, group="routing"),
    Setting("READ_TIMEOUT_S", "120", "Read timeout to a provider (longest silence between bytes).", float,
            group="routing"),
    Setting("RESPONSE_CACHE_TTL_S", "0", "Seconds an answer stays in the response cache (an exact repeat of a "
            "request is answered from it, `X-Cache: HIT`); 0 turns the cache off. Redis with REDIS_URL, else the "
            "database. Keys may be made with it off.", float, group="routing"),
    Setting("RESPONSE_CACHE_MAX_BYTES", "1048576", "Largest answer the response cache keeps (its stored size); "
            "a larger one is answered but not kept.", int, group="routing"),
    Setting("OPENAI_API_KEY", "", "OpenAI API key.", secret=True, group="providers"),
    Setting("OPENAI_BASE_URL", "", "OpenAI base URL (default https://api.openai.com/v1).", group="providers"),
    Setting("OPENAI_MODEL_DEFAULT", "gpt-5.4-mini", "OpenAI default model.", group="providers"),
    Setting("OPENAI_MODEL_FALLBACKS", "gpt-5.4", "OpenAI fallback models, in order.", group="providers"),
    Setting("OPENAI_EMBEDDING_MODELS", "text-embedding-3-small,text-embedding-3-large",
            "OpenAI embedding models served by /v1/embeddings (the first is the default).", group="providers"),
    Setting("OPENAI_RESPONSES_API", "true", "true: /v1/responses requests for OpenAI models go to OpenAI's own "
            "Responses API as they came (built-in tools, encrypted reasoning, include...); false: translated to "
            "chat completions (an OPENAI_BASE_URL without /responses).", _bool, group="providers"),
    Setting("ANTHROPIC_API_KEY", "", "Anthropic API key.", secret=True, group="providers"),
    Setting("ANTHROPIC_BASE_URL", "", "Anthropic base URL (default https://api.anthropic.com).", group="providers"),
    Setting("ANTHROPIC_MODEL_DEFAULT", "claude-sonnet-5-5", "Anthropic default model.", group="providers"),
    Setting("ANTHROPIC_MODEL_FALLBACKS", "claude-haiku-5-5", "Anthropic fallback models, in order.",
            group="providers"),
    Setting("ANTHROPIC_MAX_TOKENS", "4096", "max_tokens sent to Anthropic when the caller sets none.", int,
            group="providers"),
    Setting("GEMINI_API_KEY", "", "Google Gemini API key.", secret=True, group="providers"),
    Setting("GEMINI_BASE_URL", "", "Gemini base URL (default https://generativelanguage.googleapis.com).",
            group="providers"),
    Setting("GEMINI_MODEL_DEFAULT", "gemini-3.5-flash", "Gemini default model.", group="providers"),
    Setting("GEMINI_MODEL_FALLBACKS", "gemini-3.1-flash-lite", "Gemini fallback models, in order.",
            group="providers"),
    Setting("GEMINI_EMBEDDING_MODELS", "gemini-embedding-001", "Gemini embedding models served by /v1/embeddings.",
            group="providers"),
    Setting("IMAGE_FETCH_MAX_BYTES", "10485760", "Largest image fetched from an https: URL for a vendor that "
            "needs the bytes (Gemini).", int, group="providers"),
    Setting("IMAGE_FETCH_TIMEOUT_S", "10", "Seconds one image fetch may take in all (connection, headers and "
            "body), however slowly its bytes arrive.", float, group="providers"),
    Setting("IMAGE_FETCH_TOTAL_BYTES", "20971520", "Most bytes fetched from image URLs for one request, all "
            "images together (Gemini's own limit for inline data in a request is 20 MB); more is a 413.", int,
            group="providers"),
    Setting("IMAGE_MAX_PARTS", "50", "Most image parts in one request (every message, data: URIs and URLs "
            "alike), refused with a 400 before any image is fetched or sent.", int, group="providers"),
    Setting("IMAGE_FETCH_ALLOW_HOSTS", "", "Hosts allowed as image URLs even though private or loopback "
            "(comma-separated).", _list, group="providers"),
    Setting("OLLAMA_HOST", "", "Ollama server (e.g. http://127.0.0.1:11434); empty leaves Ollama off.",
            group="providers"),
    Setting("OLLAMA_MODEL_DEFAULT", "llama3.2", "Ollama default model.", group="providers"),
    Setting("OLLAMA_MODEL_FALLBACKS", "", "Ollama fallback models, in order.", group="providers"),
    Setting("OLLAMA_EMBEDDING_MODELS", "", "Ollama embedding models served by /v1/embeddings (e.g. nomic-embed-text).",
            group="providers"),
    Setting("OLLAMA_RESPONSES_API", "false", "true: /v1/responses requests for Ollama models go to Ollama's own "
            "/v1/responses as they came (Ollama 0.13.3 and later).", _bool, group="providers"),
    Setting("LITELLM_API_BASE", "", "Base URL of a LiteLLM proxy (or any OpenAI-compatible server) named `litellm`.",
            group="providers"),
    Setting("LITELLM_API_KEY", "", "Key for LITELLM_API_BASE.", secret=True, group="providers"),
    Setting("LITELLM_MODEL", "", "Default model for the `litellm` provider.", group="providers"),
    Setting("LITELLM_RESPONSES_API", "false", "true: /v1/responses requests for `litellm` models go to the proxy's "
            "own /v1/responses as they came.", _bool, group="providers"),
    Setting("SYSTEM_PROMPT_FILE", "system_prompt.txt", "System prompt for persisted chats; created with a default "
            "when missing, re-read when it changes.", group="conversations"),
    Setting("CHAT_CONTEXT_MESSAGES", "40", "Most stored messages sent to the provider per turn (system prompt "
            "always kept).", int, group="conversations"),
    Setting("CHAT_CONTEXT_TOKENS", "0", "Approximate token budget for history sent per turn; 0 means no token "
            "budget.", int, group="conversations"),
    Setting("CHAT_LEASE_S", "20", "Seconds a chat stays busy (409) after the process answering it died on another "
            "machine (on this one it is free at once); renewed every third of it while an answer is produced.",
            float, group="conversations"),
    Setting("CHAT_SAVE_EVERY_S", "1", "A streamed answer's text is stored while it streams, at least this often "
            "(seconds), so a killed process loses at most this much of it; 0: only when it ends.", float,
            group="conversations"),
    Setting("CHAT_SAVE_EVERY_CHARS", "1000", "A streamed answer is also stored once this many more characters "
            "came since its last step.", int, group="conversations"),
    Setting("CHAT_TURN_DEADLINE_S", "600", "Longest a streamed answer of a stored chat may run; a resumable one "
            "goes on this long after its client left, then is stored partial.", float, group="conversations"),
    Setting("CHAT_RESUME_POLL_S", "0.5", "How often a resumed answer's stream reads the stored text (seconds).",
            float, group="conversations"),
    Setting("CHAT_FILES_MAX", "5", "Most files attached to one chat message.", int, group="conversations"),
    Setting("CHAT_FILE_MAX_BYTES", "2097152", "Largest file attached to a chat message (bytes; the request must "
            "also fit MAX_BODY_BYTES).", int, group="conversations"),
    Setting("CHAT_FILE_MAX_CHARS", "200000", "Most characters of text taken from one attached file (a PDF's "
            "extracted text included).", int, group="conversations"),
    Setting("GITHUB_TOKEN", "", "GitHub token for gists and deployments (GITHUB_PAT is accepted as an alias).",
            secret=True, group="github"),
    Setting("GITHUB_API_URL", "https://api.github.com", "GitHub REST API root (GitHub Enterprise: "
            "https://HOST/api/v3).", group="github"),
    Setting("GITHUB_OWNER", "", "User or organisation that owns deployed repos; empty: the token's user.",
            group="github"),
    Setting("GITHUB_MAX_RATE_WAIT_S", "20", "Longest wait for GitHub's rate limit inside a request; a longer "
            "wait answers 429 with Retry-After.", float, group="github"),
    Setting("VERIFICATION_SECRET", "", "Secret that /task and /revise requests must carry.", secret=True,
            group="deploy"),
    Setting("DEPLOY_PROVIDER", "", "Provider that writes deployed apps; empty: DEFAULT_PROVIDER.", group="deploy"),
    Setting("NOTIFY_DEADLINE_S", "600", "Seconds to keep retrying the evaluation_url notification.", float,
            group="deploy"),
    Setting("NOTIFY_ALLOW_HOSTS", "", "Hosts allowed as evaluation_url/attachment targets even though private or "
            "loopback (comma-separated).", _list, group="deploy"),
    Setting("PAGES_WAIT_S", "300", "Longest wait for a GitHub Pages URL to answer 200.", float, group="deploy"),
    Setting("PAGES_POLL_S", "5", "Seconds between checks of a Pages build and URL.", float, group="deploy"),
    Setting("NOTIFY_BACKOFF_S", "1", "First wait before re-sending a notification; doubles each time (1, 2, 4...).",
            float, group="deploy"),
    Setting("DEPLOY_ATTEMPTS", "3", "Attempts per pipeline stage (an invalid LLM file set counts as one) before the "
            "round fails.", int, group="deploy"),
    Setting("DEPLOY_RETRY_S", "2", "First wait before a stage is retried; doubles each time.", float, group="deploy"),
    Setting("DEPLOY_LEASE_S", "60", "Seconds a worker's claim on a round lasts without a heartbeat; a round whose "
            "worker died is resumed after this.", float, group="deploy"),
    Setting("DEPLOY_MAX_FILES", "50", "Most files an LLM file set may hold.", int, group="deploy"),
    Setting("DEPLOY_MAX_FILE_BYTES", "500000", "Largest file an LLM file set may hold.", int, group="deploy"),
    Setting("DEPLOY_MAX_TOKENS", "0", "max_tokens asked of the LLM for a file set; 0: the provider's default "
            "(Anthropic: ANTHROPIC_MAX_TOKENS).", int, group="deploy"),
    Setting("AUTH_REQUIRED", "false", "Require a client API key on every endpoint even before any key exists "
            "(once a key exists one is always required).", _flag, group="access"),
    Setting("KEY_HASH_SECRET", "", "Server secret that client API keys are hashed with (HMAC-SHA256); empty: one "
            "is made once and kept in KEY_HASH_SECRET_FILE. Instances sharing a database must share it.",
            secret=True, group="access"),
    Setting("KEY_HASH_SECRET_FILE", "data/key_hash_secret", "Where the generated key-hash secret is kept (mode "
            "0600) when KEY_HASH_SECRET is empty.", group="access"),
    Setting("RATE_LIMIT_FAIL_OPEN", "true", "When the rate-limit storage (Redis) is down: true serves requests "
            "unlimited (logged), false refuses them with 503.", _flag, group="access"),
    Setting("REDIS_POOL_TIMEOUT_S", "5", "Seconds a rate-limit check waits for a free Redis connection (the pool "
            "holds WEB_WORKER_CONNECTIONS per process) before the storage counts as failed.", float,
            group="access"),
    Setting("RESERVE_MAX_TOKENS", "4096", "Completion tokens reserved against a key's tpm, daily tokens and "
            "monthly budget for a call that sets no max_tokens (settled to what it used when it ends).", int,
            group="access"),
    Setting("TASK_RATE_LIMIT", "10/hour", "Most /task and /revise requests per email (flask-limiter syntax); "
            "only requests whose secret matched count.", group="access"),
    Setting("TASK_SECRET_FAILURE_LIMIT", "10/hour", "Most /task and /revise requests with a wrong secret per "
            "client address; past it, that address is answered 429 (flask-limiter syntax).", group="access"),
    Setting("PRICES_FILE", "", "JSON price table (USD per million tokens per model); empty: the shipped "
            "app/keys/prices.json.", group="access"),
    Setting("PRICE_OVERRIDES", "", "Comma-separated "
            "model=prompt/completion[/cached[/cache_write[/cache_write_1h]]] USD per million tokens, over the "
            "table, e.g. gpt-4o=2.5/10/1.25.", _list, group="access"),
    Setting("USAGE_RETENTION_DAYS", "90", "Days of per-call usage rows kept; older rows are pruned nightly.", int,
            group="access"),
    Setting("CALL_LOG", "true", "One call-log row per request to an LLM front door (GET /admin/calls, "
            "GET /v1/key/calls), written in batches off the request path; false: none.", _bool, group="access"),
    Setting("CALL_LOG_RETENTION_DAYS", "30", "Days of call-log rows kept; older rows are pruned nightly.", int,
            group="access"),
    Setting("LOG_PAYLOADS", "off", "Keep the call log's request and answer bodies (secrets redacted, capped, "
            "compressed): off, errors (calls answered with an error) or all.", _choice("off", "errors", "all"),
            group="access"),
    Setting("LOG_PAYLOADS_MAX_BYTES", "65536", "Most bytes of a request or answer body kept by LOG_PAYLOADS "
            "(the rest is cut).", int, group="access"),
    Setting("LOG_PAYLOADS_RETENTION_DAYS", "7", "Days call payloads are kept; older ones are pruned nightly "
            "(their calls stay until CALL_LOG_RETENTION_DAYS).", int, group="access"),
    Setting("WEB_WORKERS", "2", "Gunicorn gevent worker processes.", int, group="serving"),
    Setting("WEB_WORKER_CONNECTIONS", "1000", "Concurrent connections per gevent worker.", int, group="serving"),
    Setting("WEB_GRACEFUL_TIMEOUT_S", "30", "Seconds in-flight streams get to finish on reload or stop.", int,
            group="serving"),
    Setting("QUEUE_WORKERS", "4", "Threads of the background job consumer.", int, group="serving"),
    Setting("USAGE_FLUSH_S", "1", "Seconds between batched writes of the usage rows (one per LLM call; 0: "
            "only when flushed by hand, for tests).", float, group="serving"),
    Setting("QUEUE_NAME", "aiserver", "Name of the job queue (its Redis keys, its SQLite table rows); instances "
            "that share work share it.", group="serving"),
    Setting("QUEUE_OUTAGE_LOG_S", "60", "While Redis is unreachable, seconds between the worker's log lines about "
            "it (the first and the recovery are always logged).", float, group="serving"),
    Setting("QUEUE_SQLITE_PATH", "", "SQLite file of the job queue when REDIS_URL is empty; empty: data/queue.db.",
            group="serving"),
    Setting("BACKUP_DIR", "data/backups", "Directory (relative to the project) of the SQLite database backups.",
            group="serving"),
    Setting("BACKUP_KEEP", "7", "Nightly SQLite backups kept (the worker makes one at 03:17 UTC); 0 turns them off.",
            int, group="serving"),
)

SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}


def load_settings(environ: dict[str, str] | None = None, dotenv_path: str | None = None) -> dict[str, Any]:
    """Read every declared setting from the environment (after `.env`), parsed, defaults applied.

    Undeclared variables with a provider-shaped name are kept raw under their own name, so
    named OpenAI-compatible endpoints (`VLLM_API_BASE`...) reach the registry.
    """
    if environ is None:
        default_path = os.environ.get("DOTENV_PATH") or os.path.join(project_root(), ".env")
        load_dotenv(dotenv_path or default_path, override=False)
        environ = dict(os.environ)
    settings: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.name)
        if raw is None or (raw == "" and setting.parse not in (str, _list)):
            raw = setting.default  # an empty number keeps its default; an empty text or list is empty
        settings[setting.name] = setting.parse(raw)
    if not settings["GITHUB_TOKEN"] and environ.get("GITHUB_PAT"):
        settings["GITHUB_TOKEN"] = environ["GITHUB_PAT"]
    for name, value in environ.items():
        if name not in settings and name.endswith(("_API_BASE", "_API_KEY", "_MODEL_DEFAULT", "_MODEL_FALLBACKS",
                                                              "_EMBEDDING_MODELS", "_RESPONSES_API")):
            settings[name] = value
    return settings


def project_root() -> str:
    """The checkout's top folder (the one holding `app/`), which relative paths in settings start from."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def secret_values(config: dict[str, Any]) -> list[str]:
    """Every configured secret value, for the log redaction filter."""
    names = {s.name for s in SETTINGS if s.secret}
    names |= {k for k in config if k.endswith(("_API_KEY", "_TOKEN", "_SECRET", "_PAT"))}
    return [str(config[n]) for n in names if config.get(n) and len(str(config[n])) >= 4]


def env_example() -> str:
    """The text of `.env.example`, from `SETTINGS`."""
    lines = ["# aiserver configuration. Copy to .env and edit; every variable is optional.", ""]
    group = None
    for setting in SETTINGS:
        if setting.group != group:
            group = setting.group
            lines += [f"# --- {group} ---"]
        lines += [f"# {setting.help}", f"{setting.name}={'' if setting.secret else setting.default}"]
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for s in SETTINGS:
        rows.append(f"| `{s.name}` | {f'`{s.default}`' if s.default and not s.secret else ''} | {s.help} |")
    return "\n".join(rows) + "\n"


def update_readme(path: str) -> None:
    """Rewrite the configuration table between the README's `config:start` and `config:end` markers."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    head, _, rest = text.partition("<!-- config:start")
    marker_line, _, rest = rest.partition("\n")
    _, _, tail = rest.partition("<!-- config:end -->")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"{head}<!-- config:start{marker_line}\n{markdown_table()}<!-- config:end -->{tail}")


if __name__ == "__main__":
    import sys

    if "--readme" in sys.argv:
        update_readme(os.path.join(project_root(), "README.md"))
    else:
        sys.stdout.write(markdown_table() if "--markdown" in sys.argv else env_example())
