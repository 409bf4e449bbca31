"""The typed settings, loaded once at the edge from YAML and passed down explicitly.

Every dataclass field below is a setting; `config.example.yaml` documents each one. Loading checks
every key against these types: an unknown key, a wrong type or a missing folder is a ConfigError
naming the key, the file and what was expected.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import yaml

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


@dataclass(frozen=True)
class ReadingConfig:
    """How files become Scans."""

    channels: tuple[str, ...] = DEFAULT_CHANNELS
    data_area: Literal["auto", "crop-right-30", "whole"] = "auto"
    level_polynomial: int = 0
    max_pixels: int = 64_000_000
    max_image_bytes: int = 256 * 1024 * 1024  # PNG/JPEG/TIFF: decoded size allowed, checked from the header


@dataclass(frozen=True)
class WatchConfig:
    """Which files the observer sees."""

    observer: Literal["native", "polling"] = "native"
    polling_interval_seconds: float = 2.0
    recursive: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ("*.tmp", "*.part", "*.partial", "~*", ".*", "*.afmwatch.json", "*.afmwatch.png")


@dataclass(frozen=True)
class SettleConfig:
    """When a file counts as completely written."""

    settle_seconds: float = 2.0
    max_attempts: int = 5
    backoff_seconds: float = 1.0
    incomplete_seconds: float = 600.0  # a file whose structure says incomplete waits this long, then fails


@dataclass(frozen=True)
class SortRetryConfig:
    """Sorting that failed (output folder full or read-only, no permission, a name clash) is tried again."""

    backoff_seconds: float = 0.5  # the first wait, then twice as long each time, up to max_backoff_seconds
    max_backoff_seconds: float = 5.0
    max_attempts: int = 10  # a cause of the scan's own (no permission); a full or read-only folder: no cap


@dataclass(frozen=True)
class WorkersConfig:
    """Queue sizes, reader pool and batching."""

    read_workers: int = 2
    reader_processes: bool = True  # read in worker processes (parallel on every core); false: in threads
    act_workers: int | None = None  # None: as many as read_workers
    queue_size: int = 64
    batch_size: int = 16
    max_batch_wait_ms: int = 50
    drain_timeout_seconds: float = 30.0
    torch_threads: int | None = None  # CPU inference; None: the cores the reader threads leave free (at least 1)


@dataclass(frozen=True)
class DenoiseConfig:
    """Optional denoising of each sorted scan."""

    enabled: bool = False
    model: Path | None = None
    formats: tuple[str, ...] = ("tiff",)
    location: Literal["beside", "tree"] = "beside"


@dataclass(frozen=True)
class EmailConfig:
    """Alert notifications by e-mail through an SMTP server (off while `smtp_host` is null)."""

    smtp_host: str | None = None
    smtp_port: int = 587
    security: Literal["starttls", "ssl", "none"] = "starttls"  # ssl: SMTPS (port 465); none: a local relay
    username: str | None = None
    password_file: Path | None = None  # a file holding the password (kept out of the config)
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class WebhookConfig:
    """Alert notifications as a JSON POST `{"text": ...}`, which Slack, Teams and Mattermost incoming
    webhooks accept (off while `url` is null)."""

    url: str | None = None
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class AlertsConfig:
    """When the daemon raises an alert (log event, Prometheus, the review page's banner) and whom it tells."""

    bad_in_a_row: int = 5  # this many scans in a row decided bad: the tip is probably broken (0: off)
    failures: bool = True  # a file that cannot be read or classified
    failure_window_minutes: float = 60.0  # the failure alert stays active this long after the last failure
    stall_minutes: float = 10.0  # files waiting and nothing finished for this long (0: off)
    email: EmailConfig = field(default_factory=EmailConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)


@dataclass(frozen=True)
class Config:
    """Everything the service and the commands need, validated."""

    watch_folder: Path | None = None
    output_root: Path | None = None
    state_folder: Path | None = None
    model_folder: Path | None = None
    model: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sort: Literal["move", "copy", "none"] = "move"
    previews: bool = True
    duplicates: Literal["skip", "process"] = "skip"
    journal_sidecar_days: float = 30.0  # the journal's copy of a finished scan's sidecar is kept this long
    multiframe_rule: Literal["any-bad", "majority", "first"] = "any-bad"
    metrics_port: int | None = None
    reading: ReadingConfig = field(default_factory=ReadingConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    settle: SettleConfig = field(default_factory=SettleConfig)
    sort_retry: SortRetryConfig = field(default_factory=SortRetryConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    rules: tuple[RuleConfig, ...] | None = None
    rules_may_soften: bool = False  # true: a rule that fires decides even when it is milder than the model


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


def _convert(value: Any, tp: Any, key: str, errors: list[str], base: Path) -> Any:
    """Check `value` against type `tp`; return the converted value or append an error."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:  # X | None: X's own errors name the field inside (rules[0].op, not rules)
            return _convert(value, others[0], key, errors, base)
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            converted = _convert(value, arg, key, trial, base)
            if not trial:
                return converted
        errors.append(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return None
    if origin is Literal:
        if value not in typing.get_args(tp):
            errors.append(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            errors.append(f"{key}: expected {_type_name(tp)}, got {value!r}")
            return ()
        item_type = typing.get_args(tp)[0]
        return tuple(_convert(v, item_type, f"{key}[{i}]", errors, base) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping, got {value!r}")
            return None
        return _build(cast(type, tp), value, f"{key}.", errors, base)  # a dataclass type, not an instance
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{key}: expected a number, got {value!r}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            errors.append(f"{key}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            errors.append(f"{key}: expected a path, got {value!r}")
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base / path)
    raise TypeError(f"unsupported config type {tp} for {key}")


def _build(cls: type, data: dict[str, Any], prefix: str, errors: list[str], base: Path) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for unknown in sorted(set(data) - names):
        errors.append(f"{prefix}{unknown}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(data[f.name], hints[f.name], f"{prefix}{f.name}", errors, base)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"{prefix}{f.name}: required key is missing")
    if any(e.startswith(prefix) for e in errors):
        return None
    return cls(**kwargs)


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


# (key, lowest allowed value, whether the lowest value itself is allowed)
_LIMITS = (
    ("settle.settle_seconds", 0.0, True),
    ("settle.max_attempts", 1, True),
    ("settle.backoff_seconds", 0.0, True),
    ("settle.incomplete_seconds", 0.0, True),
    ("reading.max_image_bytes", 1, True),
    ("watch.polling_interval_seconds", 0.0, False),
    ("sort_retry.backoff_seconds", 0.0, False),
    ("sort_retry.max_backoff_seconds", 0.0, False),
    ("sort_retry.max_attempts", 1, True),
    ("workers.read_workers", 1, True),
    ("workers.act_workers", 1, True),
    ("workers.torch_threads", 1, True),
    ("workers.queue_size", 1, True),
    ("workers.batch_size", 1, True),
    ("workers.max_batch_wait_ms", 0, True),
    ("workers.drain_timeout_seconds", 0.0, False),
    ("metrics_port", 1, True),
    ("journal_sidecar_days", 0.0, True),
    ("alerts.bad_in_a_row", 0, True),
    ("alerts.failure_window_minutes", 0.0, False),
    ("alerts.stall_minutes", 0.0, True),
    ("alerts.email.smtp_port", 1, True),
    ("alerts.email.timeout_seconds", 0.0, False),
    ("alerts.webhook.timeout_seconds", 0.0, False),
)


def _check_limits(config: Config, errors: list[str]) -> None:
    for key, lowest, inclusive in _LIMITS:
        value: Any = config
        for part in key.split("."):
            value = getattr(value, part)
        if value is not None and (value < lowest or (value == lowest and not inclusive)):
            errors.append(f"{key}: expected {'at least' if inclusive else 'more than'} {lowest}, got {value!r}")
    if config.metrics_port is not None and config.metrics_port > 65535:
        errors.append(f"metrics_port: expected a TCP port (1-65535), got {config.metrics_port}")


def _check_alerts(alerts: AlertsConfig, errors: list[str]) -> None:
    """A notification channel that is switched on has everything it needs to send."""
    email = alerts.email
    if email.smtp_port > 65535:
        errors.append(f"alerts.email.smtp_port: expected a TCP port (1-65535), got {email.smtp_port}")
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
    errors: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(source, [f"expected a mapping at the top level, got {type(data).__name__}"])
    config = _build(Config, data, "", errors, base or Path.cwd())
    if config is not None:
        _check_folders(config, errors)
        _check_limits(config, errors)
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
    if dataclasses.is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, tuple):
        return [config_to_dict(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    return config
