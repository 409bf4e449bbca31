"""The typed settings, loaded once at the edge from YAML and passed down explicitly.

Every dataclass field below is a setting; `config.example.yaml` documents each one. The dataclasses are
plain frozen dataclasses (hashable, `dataclasses.replace` works); pydantic validates a loaded mapping
into them (`TypeAdapter(Config)`): the annotations carry the types (strict: YAML already gives them) and
the limits, and the same model gives the JSON Schema for editors (`afmwatch/config.schema.json`,
`config_schema()`). An unknown key, a wrong type, a value out of range or a missing folder is a
ConfigError naming the key, the file and what was expected; pydantic's errors are translated into
those messages here, and the checks across fields (folders, denoise model, alerts, rules) follow.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError, ValidationInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from afmwatch.errors import AfmwatchError
from afmwatch.rules import RuleConfig, rule_errors

# Height channels in order of preference; matched case-insensitively, forward/trace before retrace.
DEFAULT_CHANNELS: tuple[str, ...] = (
    "Z-Axis",
    "Topography",
    "Height",
    "height_trace",
    "HeightTrace",
    "HeightRetrace",
    "ZSensor",
    "ZSensorTrace",
    "ZSensorRetrace",
    "Z-Axis Sensor",
)


class ConfigError(AfmwatchError):
    """The configuration is invalid; `errors` lists every problem, each naming its key."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(errors))


def _path(value: Any, info: ValidationInfo) -> Path:
    """A non-empty path; `~` expanded, a relative one taken relative to the config file's folder."""
    if not isinstance(value, (str, Path)) or not str(value):
        raise PydanticCustomError("path_type", "expected a path")
    path = Path(value).expanduser()
    base = (info.context or {}).get("base")
    return path if path.is_absolute() or base is None else base / path


# YAML already gives these types, so no coercion: `batch_size: "16"` or `previews: 1` is an error, not a
# guess (a strict float takes an integer: 2 is 2.0). Limits are part of the type and of the JSON Schema.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
AtLeast0 = Annotated[int, Strict(), Field(ge=0)]
AtLeast1 = Annotated[int, Strict(), Field(ge=1)]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]  # the only upper limit: a TCP port
NonNegative = Annotated[float, Strict(), Field(ge=0.0)]
Positive = Annotated[float, Strict(), Field(gt=0.0)]
ConfigPath = Annotated[Path, BeforeValidator(_path)]


@dataclass(frozen=True)
class ReadingConfig:
    """How files become Scans."""

    channels: tuple[Str, ...] = DEFAULT_CHANNELS
    data_area: Literal["auto", "crop-right-30", "whole"] = "auto"
    level_polynomial: Int = 0
    max_pixels: Int = 64_000_000
    max_image_bytes: AtLeast1 = 256 * 1024 * 1024  # PNG/JPEG/TIFF: decoded size allowed, checked from the header


@dataclass(frozen=True)
class WatchConfig:
    """Which files the observer sees."""

    observer: Literal["native", "polling"] = "native"
    polling_interval_seconds: Positive = 2.0
    recursive: Bool = True
    include: tuple[Str, ...] = ()
    exclude: tuple[Str, ...] = ("*.tmp", "*.part", "*.partial", "~*", ".*", "*.afmwatch.json", "*.afmwatch.png")


@dataclass(frozen=True)
class SettleConfig:
    """When a file counts as completely written."""

    settle_seconds: NonNegative = 2.0
    max_attempts: AtLeast1 = 5
    backoff_seconds: NonNegative = 1.0
    incomplete_seconds: NonNegative = 600.0  # a file whose structure says incomplete waits this long, then fails


@dataclass(frozen=True)
class SortRetryConfig:
    """Sorting that failed (output folder full or read-only, no permission, a name clash) is tried again."""

    backoff_seconds: Positive = 0.5  # the first wait, then twice as long each time, up to max_backoff_seconds
    max_backoff_seconds: Positive = 5.0
    max_attempts: AtLeast1 = 10  # a cause of the scan's own (no permission); a full or read-only folder: no cap


@dataclass(frozen=True)
class WorkersConfig:
    """Queue sizes, reader pool and batching."""

    read_workers: AtLeast1 = 2
    reader_processes: Bool = True  # read in worker processes (parallel on every core); false: in threads
    act_workers: AtLeast1 | None = None  # None: as many as read_workers
    queue_size: AtLeast1 = 64
    batch_size: AtLeast1 = 16
    max_batch_wait_ms: AtLeast0 = 50
    drain_timeout_seconds: Positive = 30.0
    torch_threads: AtLeast1 | None = None  # CPU inference; None: the cores the reader threads leave free (at least 1)


@dataclass(frozen=True)
class DenoiseConfig:
    """Optional denoising of each sorted scan."""

    enabled: Bool = False
    model: ConfigPath | None = None
    formats: tuple[Str, ...] = ("tiff",)
    location: Literal["beside", "tree"] = "beside"


@dataclass(frozen=True)
class EmailConfig:
    """Alert notifications by e-mail through an SMTP server (off while `smtp_host` is null)."""

    smtp_host: Str | None = None
    smtp_port: Port = 587
    security: Literal["starttls", "ssl", "none"] = "starttls"  # ssl: SMTPS (port 465); none: a local relay
    username: Str | None = None
    password_file: ConfigPath | None = None  # a file holding the password (kept out of the config)
    sender: Str | None = None
    recipients: tuple[Str, ...] = ()
    timeout_seconds: Positive = 10.0


@dataclass(frozen=True)
class WebhookConfig:
    """Alert notifications as a JSON POST `{"text": ...}`, which Slack, Teams and Mattermost incoming
    webhooks accept (off while `url` is null)."""

    url: Str | None = None
    timeout_seconds: Positive = 10.0


@dataclass(frozen=True)
class AlertsConfig:
    """When the daemon raises an alert (log event, Prometheus, the review page's banner) and whom it tells."""

    bad_in_a_row: AtLeast0 = 5  # this many scans in a row decided bad: the tip is probably broken (0: off)
    failures: Bool = True  # a file that cannot be read or classified
    failure_window_minutes: Positive = 60.0  # the failure alert stays active this long after the last failure
    stall_minutes: NonNegative = 10.0  # files waiting and nothing finished for this long (0: off)
    email: EmailConfig = field(default_factory=EmailConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)


@dataclass(frozen=True)
class Config:
    """afmwatch configuration: everything the service and the commands need (config.example.yaml
    documents every setting)."""

    # for pydantic, and for every section inside (RuleConfig too): an unknown key is an error
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    watch_folder: ConfigPath | None = None
    output_root: ConfigPath | None = None
    state_folder: ConfigPath | None = None
    model_folder: ConfigPath | None = None
    model: ConfigPath | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sort: Literal["move", "copy", "none"] = "move"
    previews: Bool = True
    duplicates: Literal["skip", "process"] = "skip"
    journal_sidecar_days: NonNegative = 30.0  # the journal's copy of a finished scan's sidecar is kept this long
    multiframe_rule: Literal["any-bad", "majority", "first"] = "any-bad"
    metrics_port: Port | None = None
    reading: ReadingConfig = field(default_factory=ReadingConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    settle: SettleConfig = field(default_factory=SettleConfig)
    sort_retry: SortRetryConfig = field(default_factory=SortRetryConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    rules: tuple[RuleConfig, ...] | None = None
    rules_may_soften: Bool = False  # true: a rule that fires decides even when it is milder than the model
    # a model of two parts (network and metrics model) sorts a scan bad only when each part leans bad;
    # when one says good the scan goes to review. false: the combined P(bad) alone decides
    bad_needs_both_parts: Bool = True


@functools.cache
def _adapter() -> TypeAdapter[Config]:
    """The pydantic validator and serializer of Config (built on first use, not at import)."""
    return TypeAdapter(Config)


SCHEMA_ID = "https://afmwatch.invalid/config.schema.json"


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, generated from the dataclasses (committed as
    `afmwatch/config.schema.json` for editors; `afmwatch check-config --schema` prints it)."""
    schema = _adapter().json_schema()
    schema.pop("title", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "afmwatch configuration",
        **schema,
    }


def config_schema_text() -> str:
    """`config_schema()` as the committed file holds it."""
    return json.dumps(config_schema(), indent=2) + "\n"


# --- pydantic's errors in afmwatch's words ------------------------------------------------------------

_LIMIT_ERRORS = ("greater_than_equal", "greater_than", "less_than_equal")
_UNKNOWN_KEY_ERRORS = ("unexpected_keyword_argument", "extra_forbidden")


def _key(loc: tuple[int | str, ...]) -> str:
    """('rules', 0, 'op') -> 'rules[0].op'."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else part)
    return key


def _without_none(tp: Any) -> Any:
    """`X | None` -> X: a section or a path that may be null is named by what it is when set."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        others = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(others) == 1:
            return others[0]
    return tp


def _declared(loc: tuple[int | str, ...]) -> Any:
    """The type declared at `loc` (Annotated's strictness and limits stripped)."""
    tp: Any = Config
    for part in loc:
        tp = _without_none(tp)
        tp = typing.get_args(tp)[0] if isinstance(part, int) else typing.get_type_hints(tp)[part]
    return _without_none(tp)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {Path: "a path", bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _message(error: ErrorDetails) -> str:
    """One pydantic error as `key: what was expected, got what`."""
    loc, kind, value = error["loc"], error["type"], error["input"]
    key = _key(loc)
    try:
        if kind in _UNKNOWN_KEY_ERRORS:
            section = _declared(loc[:-1])
            return f"{key}: unknown key (known: {', '.join(sorted(f.name for f in dataclasses.fields(section)))})"
        if kind == "missing":
            return f"{key}: required key is missing"
        declared = _declared(loc)
    except (KeyError, IndexError, TypeError):  # a location this translation does not know: pydantic's words
        return f"{key}: {error['msg']}"
    limits = error.get("ctx") or {}
    if declared is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # as validated: 0 -> 0.0
    if kind == "greater_than_equal":
        return f"{key}: expected at least {limits['ge']}, got {value!r}"
    if kind == "greater_than":
        return f"{key}: expected more than {limits['gt']}, got {value!r}"
    if kind == "less_than_equal":
        return f"{key}: expected a TCP port (1-{limits['le']}), got {value!r}"
    return f"{key}: expected {_type_name(declared)}, got {value!r}"


def _order(error: ErrorDetails) -> tuple[tuple[int, str], ...]:
    """Errors in the order of the declarations, a section's unknown keys (sorted) before its fields."""
    rank: list[tuple[int, str]] = []
    tp: Any = Config
    for part in error["loc"]:
        tp = _without_none(tp)
        if isinstance(part, int):
            rank.append((part, ""))
            tp = typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else None
            continue
        names = [f.name for f in dataclasses.fields(tp)] if dataclasses.is_dataclass(tp) else []
        if part not in names:
            rank.append((-1, part))
            break
        rank.append((names.index(part), ""))
        tp = typing.get_type_hints(tp)[part]
    return tuple(rank)


def _drop(data: Any, loc: tuple[int | str, ...]) -> None:
    for part in loc[:-1]:
        data = data[part]
    del data[loc[-1]]


def _validate(data: dict[str, Any], base: Path) -> tuple[Config | None, list[str]]:
    """The Config and the errors pydantic finds. Values only out of range still give a Config (with those
    keys at their defaults), so that the checks across fields report their problems in the same run."""
    context = {"base": base}
    try:
        return _adapter().validate_python(data, context=context), []
    except ValidationError as exc:
        found = sorted(exc.errors(), key=_order)
    errors = [_message(e) for e in found]
    if any(e["type"] not in _LIMIT_ERRORS for e in found):
        return None, errors
    trimmed = copy.deepcopy(data)
    for error in found:
        _drop(trimmed, error["loc"])
    try:
        return _adapter().validate_python(trimmed, context=context), errors
    except ValidationError:
        return None, errors


# --- checks across fields ---------------------------------------------------------------------------


def _check_folders(config: Config, errors: list[str]) -> None:
    if config.watch_folder is not None and not config.watch_folder.is_dir():
        errors.append(f"watch_folder: folder {config.watch_folder} does not exist")
    if config.model_folder is not None and not config.model_folder.is_dir():
        errors.append(f"model_folder: folder {config.model_folder} does not exist")
    if config.model is not None and not config.model.exists():
        errors.append(f"model: file {config.model} does not exist")
    if config.denoise.enabled and config.denoise.model is None:
        errors.append("denoise.model: required when denoise.enabled is true")
    elif config.denoise.enabled and config.denoise.model is not None and not config.denoise.model.is_file():
        errors.append(f"denoise.model: file {config.denoise.model} does not exist")


def _check_alerts(alerts: AlertsConfig, errors: list[str]) -> None:
    """A notification channel that is switched on has everything it needs to send."""
    email = alerts.email
    if email.smtp_host is not None:
        if not email.smtp_host.strip():
            errors.append("alerts.email.smtp_host: expected a host name, got an empty string")
        if not email.sender or "@" not in email.sender:
            errors.append(f"alerts.email.sender: required with smtp_host: an e-mail address, got {email.sender!r}")
        if not email.recipients:
            errors.append("alerts.email.recipients: required with smtp_host: a list of e-mail addresses")
        for i, address in enumerate(email.recipients):
            if "@" not in address:
                errors.append(f"alerts.email.recipients[{i}]: expected an e-mail address, got {address!r}")
    elif email.recipients or email.sender:
        errors.append("alerts.email.smtp_host: required when sender or recipients are set")
    if email.username is not None and email.password_file is None:
        errors.append("alerts.email.password_file: required with username (a file holding the password)")
    if email.password_file is not None and not email.password_file.is_file():
        errors.append(f"alerts.email.password_file: file {email.password_file} does not exist")
    url = alerts.webhook.url
    if url is not None and not (url.startswith(("http://", "https://")) and len(url.split("://", 1)[1]) > 0):
        errors.append(f"alerts.webhook.url: expected an http:// or https:// URL, got {url!r}")


def _check_rules(config: Config, errors: list[str]) -> None:
    if config.rules is not None:
        errors.extend(rule_errors(config.rules))


def config_from_dict(data: dict[str, Any], source: str = "<config>", base: Path | None = None) -> Config:
    """Validate a mapping into a Config; relative paths are taken relative to `base`."""
    if not isinstance(data, dict):
        raise ConfigError(source, [f"expected a mapping at the top level, got {type(data).__name__}"])
    config, out_of_range = _validate(data, base or Path.cwd())
    if config is None:
        raise ConfigError(source, out_of_range)
    errors: list[str] = []
    _check_folders(config, errors)
    errors += out_of_range
    _check_alerts(config.alerts, errors)
    _check_rules(config, errors)
    if errors:
        raise ConfigError(source, errors)
    return config


def load_config(path: str | Path) -> Config:
    """Load and validate a YAML config file (relative paths are relative to the file's folder)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    return config_from_dict(data, str(path), path.resolve().parent)


def config_to_dict(config: Any) -> Any:
    """The effective configuration as plain YAML/JSON-able data (for `check-config`)."""
    adapter = _adapter() if isinstance(config, Config) else TypeAdapter(type(config))
    return adapter.dump_python(config, mode="json")
