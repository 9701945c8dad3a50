"""Typed settings for every daemon: defaults < TOML file < environment < command line.

A daemon declares its settings as a tree of frozen dataclasses with defaults; `load` fills
it from a TOML file, environment variables named `PREFIX__SECTION__KEY` (case-insensitive,
e.g. `STB_COLLECTOR__MQTT__URL`) and command-line overrides given as dotted keys. Unknown
keys and wrongly typed values are errors; all of them are reported at once, together with
what each dataclass's `validate()` finds, before the daemon starts. A settings file that other
users can read (`mode & 0o077`) and that holds a secret (a URL with a password, an inline
private key, or a non-empty value under a name like password/token/secret/key that is not the
path of an existing file) is refused, naming the file, the settings and `chmod 600`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """Every problem found in a configuration, one per line, with every URL password hidden
    (messages quote the offending values, and they end up in logs and terminals)."""

    def __init__(self, problems: list[str]) -> None:
        problems = [redact_text(p) for p in problems]
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(problems))
        self.problems = problems


def load(cls: type[T], *, toml_path: str | Path | None = None, env: Mapping[str, str] | None = None,
         env_prefix: str = "", overrides: Mapping[str, Any] | None = None) -> T:
    problems: list[str] = []
    tree: dict[str, Any] = {}
    if toml_path:
        try:
            with open(toml_path, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode  # of the file read, not of whatever the path is now
                tree = tomllib.loads(f.read().decode())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError([f"config file {toml_path}: {exc}"]) from None
        problems.extend(_exposed_secrets(Path(toml_path), mode, tree))
    if env and env_prefix:
        for name, value in env.items():
            if name.upper().startswith(env_prefix.upper() + "__"):
                keys = name[len(env_prefix) + 2:].lower().split("__")
                _set_path(tree, keys, value, f"environment {name}")
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(tree, dotted.split("."), value, f"option {dotted}")
    result = _build(cls, tree, "", problems)
    if not problems:
        problems.extend(_validate_tree(result, ""))
    if problems:
        raise SettingsError(problems)
    return typing.cast(T, result)


# Setting names that say "this is a secret": words of the name (split at _ - .).
_SECRET_WORD = re.compile(r"pass(word|wd|phrase)?|pwd|secrets?|tokens?|keys?|apikey|credentials?")
# ... unless the last word says the value only points at one (key_file, tokens_file).
_REFERENCE_WORDS = frozenset({"file", "path", "dir", "url", "cert"})
# scheme://user:PASSWORD@ with a non-empty password (`default:@host` holds none).
_URL_WITH_PASSWORD = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*:/{0,2}[^/@\s'\":]*:[^\s'\"/@]+@")


def _exposed_secrets(path: Path, mode: int, tree: dict[str, Any]) -> list[str]:
    """The refusal of a settings file that others can read and that holds a secret (by name,
    never quoting the value)."""
    if not mode & 0o077:
        return []
    found = sorted(set(_secrets_in("", tree, "", path.parent)))
    if not found:
        return []
    return [f"config file {path} can be read by other users (mode {mode & 0o777:o}) and holds a password, "
            f"token or key ({', '.join(found)}): run chmod 600 {path}"]


def _secrets_in(name: str, value: Any, where: str, folder: Path) -> list[str]:
    """Dotted names of the settings under `value` that hold a secret."""
    if isinstance(value, dict):
        return [hit for key, child in value.items()
                for hit in _secrets_in(str(key), child, f"{where}.{key}" if where else str(key), folder)]
    if isinstance(value, list):
        return [hit for child in value for hit in _secrets_in(name, child, where, folder)]
    return [where] if isinstance(value, str) and value and _is_secret(name, value, folder) else []


def _is_secret(name: str, value: str, folder: Path) -> bool:
    if _URL_WITH_PASSWORD.search(value) or "PRIVATE KEY-----" in value:
        return True
    words = [w for w in re.split(r"[_.-]", name.lower()) if w]
    if not words or words[-1] in _REFERENCE_WORDS or not any(_SECRET_WORD.fullmatch(w) for w in words):
        return False
    # A name like tls_key may hold the path of a key file: a reference, not the secret itself.
    try:
        candidate = Path(value).expanduser()
        return not (candidate.is_file() or (folder / candidate).is_file())
    except (OSError, RuntimeError):  # too long for a file name, an unknown ~user: not a path
        return True


def _set_path(tree: dict[str, Any], keys: list[str], value: Any, origin: str) -> None:
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = (value, origin) if isinstance(value, str) and origin.startswith("environment") else value


def _build(cls: type, data: Any, where: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{where or 'settings'}: expected a table, got {data!r}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for unknown in sorted(set(data) - set(fields)):
        problems.append(f"{where}{unknown}: unknown setting (known: {', '.join(sorted(fields))})")
    values: dict[str, Any] = {}
    for name in fields:
        if name not in data:
            continue
        hint = hints[name]
        raw = data[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(typing.cast(type, hint), raw, f"{where}{name}.", problems)
        else:
            try:
                values[name] = _coerce(hint, raw)
            except ValueError as exc:
                problems.append(f"{where}{name}: {exc}")
    if problems:
        return None
    return cls(**values)


def _coerce(hint: Any, raw: Any) -> Any:
    """Accept the TOML type or, for environment strings, parse it."""
    from_env = isinstance(raw, tuple)
    value = raw[0] if from_env else raw
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (from_env and value == ""):
            return None
        errors = []
        for option in options:  # the first type that takes the value (env strings: the first)
            try:
                return _coerce(option, raw)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(" or ".join(errors))
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if from_env and dataclasses.is_dataclass(item):  # a list of tables: a TOML inline array in the variable
            try:
                value = tomllib.loads(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"expected a TOML array of tables like [{{a = 1}}], got {value!r} ({exc})") from None
            from_env = False
        items = [s.strip() for s in value.split(",") if s.strip()] if from_env else value
        if not isinstance(items, list | tuple):
            raise ValueError(f"expected a list, got {value!r}")
        return tuple(_coerce(item, (i,) if from_env else i) for i in items)
    if dataclasses.is_dataclass(hint):  # an item of a list of tables (e.g. [caps] rules = [{...}, ...])
        missing = [f.name for f in dataclasses.fields(hint) if isinstance(value, dict) and f.name not in value
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"missing {', '.join(missing)} in {value!r}")
        problems: list[str] = []
        built = _build(typing.cast(type, hint), value, "", problems)
        if problems:
            raise ValueError("; ".join(problems))
        return built
    if hint is bool:
        if isinstance(value, bool):
            return value
        if from_env and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ValueError(f"expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value
    raise ValueError(f"unsupported setting type {hint!r}")


def _validate_tree(obj: Any, where: str) -> list[str]:
    problems: list[str] = []
    for field in dataclasses.fields(obj):
        child = getattr(obj, field.name)
        if dataclasses.is_dataclass(child):
            problems.extend(_validate_tree(child, f"{where}{field.name}."))
    validate = getattr(obj, "validate", None)
    if validate is not None:
        problems.extend(f"{where}{p}" for p in validate())
    return problems


def redact_url(url: str) -> str:
    """A URL with its password replaced, for logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# scheme:[//]user:PASSWORD@ -- up to the last @ (a raw @ in a password), and with one slash
# or none, so that a mistyped URL in an error message is hidden too.
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*:/{0,2}[^/@\s'\":]*:)[^\s'\"/]*@")


def redact_text(text: str) -> str:
    """Any text with the password of every URL in it replaced (URLs that do not parse too)."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


def redacted(settings: T) -> T:
    """The settings tree with every URL's password replaced (for --check-config and logs)."""
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes[field.name] = redacted(value)
        elif isinstance(value, str) and "@" in value:
            changes[field.name] = redact_text(value)
    return dataclasses.replace(settings, **changes)  # type: ignore[type-var]


@dataclasses.dataclass(frozen=True)
class MetricsSettings:
    """Prometheus /metrics; each daemon sets its own default host and port."""

    host: str = "127.0.0.1"
    port: int = 0                        # 0 = no metrics endpoint

    def validate(self) -> list[str]:
        return [] if 0 <= self.port <= 65535 else ["port: must be 0..65535"]


@dataclasses.dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"
    format: str = "json"                 # json | text

    def validate(self) -> list[str]:
        problems = []
        if self.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            problems.append("level: one of DEBUG, INFO, WARNING, ERROR")
        if self.format not in ("json", "text"):
            problems.append("format: json or text")
        return problems


def tls_file_problems(url: str, ca_file: str, cert_file: str, key_file: str) -> list[str]:
    """The `[mqtt]` TLS files of a client (agent, collector, marketing): each exists, a key has its
    certificate, and TLS files come with an mqtts:// url."""
    problems = [f"{name}: {path} does not exist" for name, path in
                (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file))
                if path and not os.path.isfile(path)]
    if key_file and not cert_file:
        problems.append("key_file: needs cert_file")
    if (ca_file or cert_file or key_file) and not url.startswith("mqtts://"):
        problems.append("ca_file/cert_file/key_file: TLS settings need an mqtts:// url")
    return problems
