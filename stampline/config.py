"""The deployment configuration: one YAML file, overridable by environment variables.

Any key can be overridden by ``STAMPLINE_`` + the key path in upper case joined by ``__``,
e.g. ``STAMPLINE_BROKER__BOOTSTRAP_SERVERS=kafka:9092``; environment values win over the
file. Relative paths in the file are relative to the file's own folder.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from stampline._common import (
    MASK,
    StamplineError,
    YamlFileError,
    file_line,
    format_duration,
    line_of,
    parse_duration_ns,
    read_yaml_file,
    shown_value,
)
from stampline._limits import json_text_problem
from stampline._redact import is_secret_key, redact, remember_environment, remember_in
from stampline.audit import check_database_name
from stampline.evidence import regime_tier
from stampline.rules import (
    Extraction,
    OriginUnit,
    RuleFileError,
    RuleSet,
)

ENV_PREFIX = "STAMPLINE_"
"""Prefix of every environment variable that overrides a configuration key."""
ENV_NESTED_DELIMITER = "__"
"""Separator between key path parts in an environment variable name."""
ENV_CONFIG_FILE = "STAMPLINE_CONFIG"
"""Path of the configuration file when a command is given no ``--config``."""
# Environment variables with the prefix that are not configuration keys.
# The name `stampline run` gives a child (gate-2, recorder, tap), shown in its log lines.
ENV_PART_NAME = "STAMPLINE_PART_NAME"
_NOT_KEYS = frozenset({ENV_CONFIG_FILE, ENV_PART_NAME, "STAMPLINE_TANSU_BIN"})

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_STAGE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

Topic = Annotated[str, Field(pattern=_TOPIC.pattern, description="a Kafka topic name")]
StageName = Annotated[str, Field(pattern=_STAGE.pattern)]


_S = 10**9
# The largest value each duration setting may take: what the runtime can hold (Int64
# nanoseconds, timers, TTLs) and what still makes sense. Smallest is 0 unless said.
_DURATION_BOUNDS: dict[str, tuple[int, int]] = {
    "raw_ns": (3600 * _S, 100 * 365 * 86_400 * _S),
    "rollups_ns": (3600 * _S, 100 * 365 * 86_400 * _S),
    "flush_interval_ns": (0, 3600 * _S),
    "clock_error_ns": (0, 60 * _S),
    "clock_error_refresh_ns": (0, 86_400 * _S),
    "allowed_lateness_ns": (0, 7 * 86_400 * _S),
    "reload_interval_ns": (0, 86_400 * _S),
    "replay_spacing_ns": (0, 600 * _S),
    "query_timeout_ns": (_S, 86_400 * _S),
}


def _duration(value: Any, field: str | None = None) -> int:
    ns = parse_duration_ns(value)
    if field in _DURATION_BOUNDS:
        low, high = _DURATION_BOUNDS[field]
        if ns < low:
            raise ValueError(f"must be at least {format_duration(low)}")
        if ns > high:
            raise ValueError(f"must be at most {format_duration(high)}")
    return ns


def _list_from_env(value: Any) -> Any:
    # In the environment a list may be JSON or, more naturally, comma-separated.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _client_settings(value: Any) -> Any:
    # librdkafka takes scalars only; one clear problem per bad key, not one per union branch.
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise ValueError("must be a mapping of librdkafka setting -> value")
    for key, item in value.items():
        if not isinstance(item, str | int | float | bool):
            raise ValueError(f"client setting {key!r} must be a string, number or boolean")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerConfig(_Section):
    """Where Kafka is. ``embedded: true`` starts a private broker (demo and tests only)."""

    embedded: bool = False
    bootstrap_servers: str | None = Field(default=None, min_length=1)
    client: Annotated[dict[str, Any], NoDecode, BeforeValidator(_client_settings)] = Field(
        default_factory=dict, description="extra librdkafka settings for every client"
    )

    @model_validator(mode="after")
    def _one_source(self) -> BrokerConfig:
        if not self.embedded and not self.bootstrap_servers:
            raise ValueError("set bootstrap_servers (host:port,...) or embedded: true")
        return self


class TopicsConfig(_Section):
    raw: Annotated[list[Topic], NoDecode, BeforeValidator(_list_from_env)] = Field(
        min_length=1, description="provider feed topics the gate reads"
    )
    clean: Topic
    dead_letter: Topic
    decisions: Topic = "decisions"
    trail: Topic = Field(
        default="stampline.trail", description="trail rows of gates and taps, for the recorder"
    )
    trail_heads: Topic = Field(
        default="stampline.trail.heads", description="chain heads the recorder publishes"
    )
    create_missing: bool = True
    partitions: int = Field(default=3, ge=1, le=1000)

    @model_validator(mode="after")
    def _no_loops(self) -> TopicsConfig:
        outputs = {"clean": self.clean, "dead_letter": self.dead_letter, "trail": self.trail}
        for name, topic in outputs.items():
            if topic in self.raw:
                raise ValueError(f"{name} topic {topic!r} is also a raw topic: the gate would loop")
        if self.clean == self.dead_letter:
            raise ValueError(f"clean and dead_letter are the same topic {self.clean!r}")
        return self


class RetentionConfig(_Section):
    """How long TTL keeps data, counted from when the store wrote it."""

    raw_ns: int = Field(default=30 * 86_400 * 10**9, alias="raw")
    rollups_ns: int = Field(default=400 * 86_400 * 10**9, alias="rollups")

    @field_validator("raw_ns", "rollups_ns", mode="before")
    @classmethod
    def _ttl(cls, v: Any, info: ValidationInfo) -> int:
        return _duration(v, info.field_name)


class StoreConfig(_Section):
    backend: Literal["chdb", "clickhouse"] = "chdb"
    path: Path = Path("stampline-data")  # chdb: the data folder
    # chdb: "private" creates the folder 0700 and files 0600 (the trail holds payload bytes);
    # "umask" leaves both to the process umask.
    permissions: Literal["private", "umask"] = "private"
    url: str | None = Field(default=None, description="clickhouse: http(s)://host:port")
    user: str = "default"
    password: SecretStr = SecretStr("")
    secure: bool = False  # TLS even when the URL says http
    verify_tls: bool = True
    retention: RetentionConfig = RetentionConfig()
    database: str = "stampline"
    flush_rows: int = Field(default=10_000, ge=1, le=10_000_000)
    flush_interval_ns: int = Field(default=500_000_000, alias="flush_interval")

    @field_validator("database")
    @classmethod
    def _db(cls, v: str) -> str:
        return check_database_name(v)

    @field_validator("flush_interval_ns", mode="before")
    @classmethod
    def _interval(cls, v: Any, info: ValidationInfo) -> int:
        return _duration(v, info.field_name)

    @model_validator(mode="after")
    def _server_needs_url(self) -> StoreConfig:
        if self.backend == "clickhouse" and not self.url:
            raise ValueError("backend clickhouse needs url (http(s)://host:port)")
        return self


class OriginConfig(_Section):
    field: str = Field(default="ts", min_length=1, description="dotted path of the origin time")
    unit: OriginUnit = "ms"


class GateConfig(_Section):
    group_id: str = Field(default="stampline-gate", min_length=1)
    stage: StageName = "gate"
    origin: OriginConfig = OriginConfig()
    provider_field: str = "provider"
    instrument_field: str = "instrument"
    sequence_field: str = "seq"
    max_message_bytes: int = Field(default=1_048_576, ge=64, le=64 * 1_048_576)
    # Larger keys or header sets are dead-lettered as record.size (see docs/gate.md).
    max_key_bytes: int = Field(default=65_536, ge=16, le=16 * 1_048_576)
    max_header_bytes: int = Field(default=65_536, ge=256, le=16 * 1_048_576)
    # Longer provider or instrument names are dead-lettered as record.identity.
    max_name_chars: int = Field(default=256, ge=1, le=65_536)
    duplicate_keys: Literal["reject", "allow"] = Field(
        default="reject",
        description="reject: a JSON object with a repeated key is record.duplicate_keys",
    )
    transaction_probe: bool = Field(
        default=True,
        description="with exactly_once, check at start that the broker honours transactions",
    )
    consume_batch: int = Field(default=1000, ge=1, le=100_000)
    clock_error_ns: int = Field(default=1_000_000, alias="clock_error")
    # "chrony": read the bound from `chronyc tracking`, falling back to clock_error.
    clock_error_source: Literal["configured", "chrony"] = "configured"
    # With chrony: how often the bound is read again while the gate runs (its gauge, which the
    # clock_error alert judges); 0 reads it once, at start.
    clock_error_refresh_ns: int = Field(default=30 * _S, alias="clock_error_refresh")
    delivery: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once",
        description="exactly_once: Kafka transactions (needs a broker that implements them)",
    )
    recovery_scan: bool = True
    queue_batches: int = Field(default=4, ge=1, le=1000)
    # A batch grows no further once its values and keys reach this many bytes: with large
    # records, what the gate holds in its queues stays bounded (docs/gate.md).
    batch_bytes: int = Field(default=16 * 1_048_576, ge=65_536, le=1024 * 1_048_576)
    allowed_lateness_ns: int = Field(default=5_000_000_000, alias="allowed_lateness")

    @field_validator(
        "clock_error_ns", "clock_error_refresh_ns", "allowed_lateness_ns", mode="before"
    )
    @classmethod
    def _clock(cls, v: Any, info: ValidationInfo) -> int:
        return _duration(v, info.field_name)


class TapConfig(_Section):
    """The passive tap: which topics it reads and how it names unstamped records."""

    group_id: str = Field(default="stampline-tap", min_length=1)
    stage: StageName = "tap"
    topics: Annotated[list[Topic], NoDecode, BeforeValidator(_list_from_env)] = Field(
        default_factory=list
    )
    key_fields: Annotated[list[str], NoDecode, BeforeValidator(_list_from_env)] = Field(
        default_factory=list,
        description="payload fields whose values identify an event a producer did not stamp",
    )
    consume_batch: int = Field(default=5000, ge=1, le=100_000)


class RecorderConfig(_Section):
    """The recorder: trail topic -> store (see docs/trail.md)."""

    group_id: str = Field(default="stampline-recorder", min_length=1)
    consume_batch: int = Field(default=200, ge=1, le=100_000)
    # memory bounds: a bigger trail message is refused (dead letter); inserts stay this small
    max_message_rows: int = Field(default=100_000, ge=1, le=10_000_000)
    max_batch_rows: int = Field(default=200_000, ge=1, le=10_000_000)
    retry_max_ns: int = Field(default=5_000_000_000, alias="retry_max")
    heads_interval_ns: int = Field(default=10_000_000_000, alias="heads_interval")
    # chDB only: the read-only live query endpoint (0: a port the OS picks; see docs/trail.md)
    query_address: str = "127.0.0.1"
    query_port: int = Field(default=0, ge=0, le=65535)
    # The Ed25519 key the chain heads are signed with (`stampline audit keygen`): a 0600 file
    # outside the store folder; None publishes unsigned heads (see docs/evidence.md).
    signing_key: Path | None = None
    # what every live query must carry (unset: a random one, written beside the live file);
    # required to bind an address other than loopback
    query_token: SecretStr | None = None
    query_timeout_ns: int = Field(default=60_000_000_000, alias="query_timeout")

    @field_validator("retry_max_ns", "heads_interval_ns", "query_timeout_ns", mode="before")
    @classmethod
    def _durations(cls, v: Any, info: ValidationInfo) -> int:
        ns = _duration(v, info.field_name)
        if ns <= 0:
            raise ValueError("must be a positive duration")
        return ns


class MetricsConfig(_Section):
    """The Prometheus endpoint every sidecar serves."""

    enabled: bool = False
    port: int = Field(default=9464, ge=0, le=65535)
    address: str = "0.0.0.0"
    per_instrument: bool = False
    max_label_values: int = Field(default=1000, ge=1, le=100_000)


class RulesConfig(_Section):
    files: Annotated[list[Path], NoDecode, BeforeValidator(_list_from_env)] = Field(
        min_length=1, description="rule files, applied in order"
    )
    reload_interval_ns: int = Field(
        default=1_000_000_000,
        alias="reload_interval",
        description="how often the gate looks for edited rule files; 0 checks every batch",
    )

    @field_validator("reload_interval_ns", mode="before")
    @classmethod
    def _reload(cls, v: Any, info: ValidationInfo) -> int:
        return _duration(v, info.field_name)


class AlertingConfig(_Section):
    """Alerting (docs/alerting.md): the definitions file and where alerts go."""

    definitions: Path | None = Field(default=None, description="alert definitions YAML")
    alertmanager_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    # Basic auth for Alertmanager; the URL's own user info works too (these win).
    alertmanager_username: str | None = None
    alertmanager_password: SecretStr | None = None
    topic: Topic | None = Field(default=None, description="alerts topic (each transition)")
    facts_topic: Topic | None = Field(
        default=None, description="several gates: their provider facts meet here"
    )
    resend_interval_ns: int = Field(default=30_000_000_000, alias="resend_interval")
    # After an outage, the transitions of one alert instance that waited are posted this far
    # apart, so Alertmanager notifies each (at least the receiving route's group_wait).
    replay_spacing_ns: int = Field(default=30_000_000_000, alias="replay_spacing")
    # "event": silence is judged on the feed's own origin times (replays, the demo), so a
    # busy machine's processing lag is not mistaken for silence; it cannot see every
    # provider going silent at once, so deployments keep the wall clock.
    watch_clock: Literal["wall", "event"] = "wall"

    @field_validator("replay_spacing_ns", mode="before")
    @classmethod
    def _spacing(cls, v: Any, info: ValidationInfo) -> int:
        return _duration(v, info.field_name)

    @field_validator("resend_interval_ns", mode="before")
    @classmethod
    def _resend(cls, v: Any) -> int:
        ns = _duration(v)
        if ns < 1_000_000_000:
            raise ValueError("resend_interval must be at least 1s")
        return ns


class EvidenceConfig(_Section):
    """The clock-accuracy tier the deployment declares: every evidence report judges its
    stamps against it (docs/evidence.md)."""

    regime: str = "rts25/2017/574"
    tier: str = "other"
    stages: dict[StageName, str] = Field(
        default_factory=dict, description="stage -> tier, for stages held to another tier"
    )

    @model_validator(mode="after")
    def _known_tiers(self) -> EvidenceConfig:
        for key, tier in [
            ("tier", self.tier),
            *((f"stages.{k}", v) for k, v in self.stages.items()),
        ]:
            try:
                regime_tier(self.regime, tier)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return self


class StageConfig(_Section):
    name: StageName
    input: Topic
    output: Topic | None = None


class Config(BaseSettings):
    """A stampline deployment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    version: Literal[1] = 1
    broker: BrokerConfig
    topics: TopicsConfig
    store: StoreConfig = StoreConfig()
    gate: GateConfig = GateConfig()
    rules: RulesConfig
    stages: list[StageConfig] = Field(default_factory=list)
    tap: TapConfig = TapConfig()
    recorder: RecorderConfig = RecorderConfig()
    metrics: MetricsConfig = MetricsConfig()
    alerting: AlertingConfig = AlertingConfig()
    evidence: EvidenceConfig = EvidenceConfig()

    @model_validator(mode="after")
    def _key_outside_the_store(self) -> Config:
        key, folder = self.recorder.signing_key, self.store.path
        chdb = self.store.backend == "chdb"
        if key is not None and chdb and key.resolve().is_relative_to(folder.resolve()):
            raise ValueError(
                f"recorder.signing_key {key} is inside store.path {folder}: "
                "whoever can write the store could sign heads; keep the key elsewhere"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init values; the environment overrides it.
        return (env_settings, init_settings)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration, pinned to its key."""

    key: str
    message: str
    value: Any = None
    line: int | None = None
    env: str | None = None  # the environment variable the bad value came from

    def render(self, file: Path | str) -> str:
        got = f" (got {shown_value(self.value)})" if self.value is not None else ""
        source = f" [from ${self.env}]" if self.env else ""
        key = self.key or "(top level)"
        return f"{file_line(file, self.line)}: {key}: {self.message}{got}{source}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "message": self.message,
            "value": _jsonable(self.value),
            "line": self.line,
            "env": self.env,
        }


class ConfigError(StamplineError):
    """The configuration cannot be used. ``problems`` lists every reason, each with its key."""

    def __init__(self, path: Path | str, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(p.render(path) for p in problems))


def load_config(path: Path | str) -> Config:
    """Read, validate and resolve a configuration file.

    Raises:
        ConfigError: the file is unreadable, not YAML, or has invalid keys or values.
    """
    path = Path(path)
    _check_environment(path)
    # Before anything can fail and quote a value: every secret the environment brings in is
    # known, so no message that echoes it (ours, pydantic's, librdkafka's) can show it.
    remember_environment(ENV_PREFIX)
    try:
        doc = read_yaml_file(path)
    except YamlFileError as exc:
        raise ConfigError(path, [Problem("", exc.problem, line=exc.line)]) from None
    raw, node = doc.data, doc.node
    remember_in(raw)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, [Problem("", "the file must hold a mapping of keys", raw)])
    try:
        config = Config(**raw)
    except ValidationError as exc:
        raise ConfigError(path, [_problem(e, node) for e in exc.errors()]) from None
    except (SettingsError, json.JSONDecodeError) as exc:
        raise ConfigError(path, _env_problems(exc)) from None
    return _resolve_paths(config, path.parent)


def check_config(path: Path | str) -> tuple[Config | None, list[Problem]]:
    """Everything wrong with a configuration, including the rule files it names."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        return None, exc.problems + _unreadable_files(Path(path), exc.problems)
    problems = []
    try:
        build_rules(config)
    except RuleFileError as exc:
        problems.append(Problem("rules.files", str(exc)))
    if config.alerting.definitions is not None:
        from stampline.alerting import DefinitionError, load_alerts

        try:
            load_alerts(config.alerting.definitions)
        except DefinitionError as exc:
            problems.append(Problem("alerting.definitions", str(exc)))
    return config, problems


def _unreadable_files(path: Path, known: list[Problem]) -> list[Problem]:
    """The rule and alert definition files the file names that cannot be read, for a file
    with other problems: a missing file is not hidden behind them (nothing more is checked
    of a configuration that does not load)."""
    try:
        doc = read_yaml_file(path)
    except YamlFileError:
        return []

    def section(value: Any, key: str) -> Any:
        return value.get(key) if isinstance(value, dict) else None

    files = section(section(doc.data, "rules"), "files")
    named: list[tuple[tuple[str | int, ...], Any]] = [
        *(
            (("rules", "files", i), f)
            for i, f in enumerate(files if isinstance(files, list) else [])
        ),
        (("alerting", "definitions"), section(section(doc.data, "alerting"), "definitions")),
    ]
    keys = {p.key for p in known}
    out = []
    for loc, name in named:
        key = ".".join(str(p) for p in loc)
        overridden = ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(p).upper() for p in loc[:2])
        if not isinstance(name, str) or key in keys or overridden in os.environ:
            continue
        file = path.parent / name  # an absolute name stays itself
        if not file.is_file():
            message = f"{file}: cannot read: no such file"
            out.append(Problem(key, message, line=line_of(doc.node, loc)))
    return out


def build_rules(config: Config) -> RuleSet:
    """The compiled rules a configuration names.

    Raises:
        RuleFileError: a rule file or a contract it names is invalid.
    """
    return RuleSet.load(config.rules.files, build_extraction(config))


def build_extraction(config: Config) -> Extraction:
    """Where the configured records keep the fields the gate reads."""
    g = config.gate
    return Extraction(
        origin_field=g.origin.field,
        origin_unit=g.origin.unit,
        provider_field=g.provider_field,
        instrument_field=g.instrument_field,
        seq_field=g.sequence_field,
        max_message_bytes=g.max_message_bytes,
        max_name_chars=g.max_name_chars,
        duplicate_keys=g.duplicate_keys,
    )


def _resolve_paths(config: Config, base: Path) -> Config:
    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    store = config.store.model_copy(update={"path": resolve(config.store.path)})
    rules = config.rules.model_copy(update={"files": [resolve(f) for f in config.rules.files]})
    defs = config.alerting.definitions
    alerting = config.alerting.model_copy(update={"definitions": defs and resolve(defs)})
    return config.model_copy(update={"store": store, "rules": rules, "alerting": alerting})


def _check_environment(path: Path) -> None:
    """Refuse environment values too long or too deep to decode, naming each variable."""
    problems = [
        Problem(_env_key(name), why, env=name)
        for name, value in sorted(os.environ.items())
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in _NOT_KEYS
        for why in [json_text_problem(value)]
        if why
    ]
    if problems:
        raise ConfigError(path, problems)


def _env_key(name: str) -> str:
    return name.upper().removeprefix(ENV_PREFIX).lower().replace(ENV_NESTED_DELIMITER, ".")


def _env_problems(exc: Exception) -> list[Problem]:
    """Environment values the settings source could not decode (not JSON where JSON is due)."""
    names = sorted(
        k for k in os.environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in _NOT_KEYS
    )
    return [
        Problem(
            name.upper().removeprefix(ENV_PREFIX).lower().replace(ENV_NESTED_DELIMITER, "."),
            f"environment value cannot be decoded ({exc}); give mappings as JSON",
            _shown(
                name.upper().removeprefix(ENV_PREFIX).lower().replace("__", "."), os.environ[name]
            ),
            env=name,
        )
        for name in names
        if not _decodes(os.environ[name])
    ] or [Problem("", f"environment overrides cannot be decoded: {exc}")]


def _shown(key: str, value: Any) -> Any:
    """``value`` as a problem may show it under ``key``: never a secret."""
    return MASK if is_secret_key(key) and value is not None else redact(key, value)


def _decodes(text: str) -> bool:
    if not text.lstrip().startswith(("{", "[")):
        return True  # a scalar: pydantic validates it and names the key itself
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


# What a required list that is empty should hold.
_EMPTY = {
    "rules.files": "no rule files: name at least one",
    "topics.raw": "no topics: name at least one",
}


def _problem(error: Any, node: yaml.Node | None) -> Problem:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    # pydantic names union branches and validator kinds in the path; people think in keys.
    loc = tuple(
        p for p in loc if not (isinstance(p, str) and p.startswith(("function-", "tagged-")))
    )
    key = ".".join(str(p) for p in loc)
    env = ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(p).upper() for p in loc) if loc else None
    from_env = env if env and env in os.environ else None
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif error["type"] == "too_short":  # pydantic's "List should have at least 1 item ..."
        least = (error.get("ctx") or {}).get("min_length", 1)
        message = _EMPTY.get(key, f"empty: list at least {least}")
    message = message.removeprefix("Value error, ")
    value = None if error["type"] == "missing" else error.get("input")
    if isinstance(value, dict) and error["type"] not in {"dict_type", "model_type"}:
        value = None  # the whole section is not the bad value; the message names the problem
    # A value from the environment has no line in the file worth pointing at.
    line = None if from_env else line_of(node, loc)
    return Problem(key, message, _shown(key, value), line=line, env=from_env)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)
