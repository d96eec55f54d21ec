"""The one python command of a ``bash_files/*.sh`` script: reading it, its flags, and overriding them.

A script holds comments, ``VAR=value`` / ``export`` lines, backslash
continuations and exactly one ``python3 main_continual.py|main_linear.py ...``
command; ``$VAR`` / ``${VAR}`` on it are expanded from the environment (an
unset one is an error naming it), and so are bash's ``${VAR:-default}`` and
``${VAR:+words}`` (the ``_distill`` scripts' ``${PRETRAINED_PATH:+--pretrained_model
"$PRETRAINED_PATH" --task_idx 1}``: the CaSSLe workflow's start at task 1 from a
task-0 checkpoint). Flags are kept in order as
``{"flag": [values]}``.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from cassle.errors import LauncherError

ENTRYPOINTS = ("main_continual.py", "main_linear.py")
REPO_ROOT = Path(__file__).resolve().parent.parent
_FLAG_RE = re.compile(r"^--?[A-Za-z_]")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
Args = dict  # ordered mapping flag name (no dashes) -> list[str] of values


@dataclass
class ScriptCommand:
    """The python command found in a script."""

    entrypoint: str  # e.g. "main_continual.py" (as written in the script)
    args: Args = field(default_factory=dict)
    env: dict = field(default_factory=dict)  # VAR=value prefixes on the command line


# --------------------------------------------------------------------------- parsing


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash-newline continuations; return ``(first line number, line)`` pairs."""
    text = text.replace("\r\n", "\n")
    out, buf, start = [], [], None
    for no, line in enumerate(text.split("\n"), 1):
        if start is None:
            start = no
        # an odd number of trailing backslashes continues the line
        stripped = line.rstrip(" \t")
        trailing = len(stripped) - len(stripped.rstrip("\\"))
        if trailing % 2 == 1:
            buf.append(stripped[:-1])
            continue
        buf.append(line)
        out.append((start, " ".join(buf)))
        buf, start = [], None
    if buf:
        out.append((start, " ".join(buf)))
    return out


def _closing_brace(line: str, start: int) -> int:
    """Index of the ``}`` that closes the ``${`` whose body starts at ``start`` (nested ``${...}`` counted)."""
    depth, i, quote = 1, start, None
    while i < len(line):
        c = line[i]
        if quote == "'":
            quote = None if c == "'" else quote
        elif c == "\\":
            i += 1
        elif c in "'\"":
            quote = None if quote == c else (quote or c)
        elif line.startswith("${", i):
            depth += 1
            i += 1
        elif c == "}" and quote is None:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _expand(line: str, env: dict, missing: list, raw: bool = False) -> str:
    """Strip a ``#`` comment and expand ``$VAR``, ``${VAR}`` and bash's ``${VAR:-word}``, ``${VAR-word}``,
    ``${VAR:+word}`` and ``${VAR+word}``.

    Quote-aware like bash: nothing inside single quotes is touched; expanded values
    are re-quoted so that :func:`shlex.split` keeps each one a single word (unlike bash,
    an unquoted value with a space stays one word). The ``word`` of a default or an
    alternative is expanded only when it is used, and splits into words as in bash
    (``${PRETRAINED_PATH:+--pretrained_model "$PRETRAINED_PATH" --task_idx 1}`` is three
    flags' worth of words, or nothing). Names of unset variables whose value is needed
    are appended to ``missing``. ``raw`` inserts values as they are (a word inside double
    quotes).
    """

    def insert(value: str, quote: str | None) -> str:
        if raw:
            return value
        if quote == '"':
            return value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
        return shlex.quote(value) if value else ""

    out, i, n, quote = [], 0, len(line), None
    while i < n:
        c = line[i]
        if quote == "'":
            out.append(c)
            if c == "'":
                quote = None
            i += 1
            continue
        if c == "\\" and i + 1 < n:
            out.append(line[i : i + 2])
            i += 2
            continue
        if quote is None and c == "#" and (i == 0 or line[i - 1] in " \t;"):
            break  # comment to the end of the line
        if c in "'\"" and not (raw and c == "'"):
            if quote is None:
                quote = c
            elif quote == c:
                quote = None
            out.append(c)
            i += 1
            continue
        if c == "$" and i + 1 < n:
            if line[i + 1] == "{":
                end = _closing_brace(line, i + 2)
                if end == -1:
                    raise LauncherError(f"unterminated ${{...}} in: {line.strip()}")
                inner = line[i + 2 : end]
                m = _NAME_RE.match(inner)
                name = m.group(0) if m else ""
                op = next((o for o in (":-", ":+", "-", "+") if inner.startswith(o, len(name))), "")
                if not name or (not op and inner != name):
                    raise LauncherError(
                        f"unsupported expansion ${{{inner}}} in: {line.strip()} "
                        "(a script may use $VAR, ${VAR}, ${VAR:-word}, ${VAR-word}, ${VAR:+word}, ${VAR+word})"
                    )
                word = inner[len(name) + len(op) :]
                value = env.get(name)
                is_set = value is not None and (value != "" or ":" not in op)
                i = end + 1
                if op in (":-", "-") and not is_set or op in (":+", "+") and is_set:
                    if quote == '"':  # one word: the word's own values raw, then escaped as a value
                        out.append(insert(_expand(word, env, missing, raw=True), quote))
                    else:  # shell text: its own quotes and values survive shlex.split, its spaces split it
                        out.append(_expand(word, env, missing, raw=raw))
                    continue
                if op in (":+", "+"):
                    continue
                if value is None:
                    missing.append(name)
                    value = ""
            else:
                m = _NAME_RE.match(line, i + 1)
                if not m:
                    out.append(c)
                    i += 1
                    continue
                value = env.get(m.group(0))
                if value is None:
                    missing.append(m.group(0))
                    value = ""
                i = m.end()
            out.append(insert(value, quote))
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_args_list(tokens: list[str], what: str = "arguments") -> Args:
    """Read ``--flag v1 v2 --switch --key=value`` into ``{"flag": ["v1", "v2"], "switch": [], ...}``.

    A token is a flag when it starts with ``-`` followed by a letter or ``_`` (so
    ``-1`` and ``-0.5`` are values). A flag given twice keeps the last values.
    """
    args: Args = {}
    current = None
    for tok in tokens:
        if _FLAG_RE.match(tok):
            name, eq, value = tok.lstrip("-").partition("=")
            if not name:
                raise LauncherError(f"empty flag {tok!r} in {what}")
            args.pop(name, None)  # re-given: last one wins, at its new position
            args[name] = [value] if eq else []
            current = name
        elif current is None:
            raise LauncherError(f"value {tok!r} before any --flag in {what}")
        else:
            args[current].append(tok)
    return args


def format_args(args: Args) -> list[str]:
    """Inverse of :func:`parse_args_list`."""
    out = []
    for name, values in args.items():
        out.append(f"--{name}")
        out.extend(values)
    return out


def parse_script(path: str | os.PathLike, env: dict | None = None) -> ScriptCommand:
    """Find the ``python ... main_continual.py|main_linear.py ...`` command in a bash script.

    ``env`` defaults to ``os.environ``; simple ``VAR=value`` / ``export VAR=value``
    lines before the command update it. Raises :class:`LauncherError` when the
    script is missing, has no (or several) python commands, or uses an unset
    variable on the command line.
    """
    path = Path(path)
    if not path.is_file():
        raise LauncherError(f"script {str(path)!r} does not exist")
    env = dict(os.environ if env is None else env)
    found: list[tuple[int, list[str], list[str]]] = []
    for lineno, line in _logical_lines(path.read_text()):
        missing: list[str] = []
        expanded = _expand(line, env, missing)
        try:
            tokens = shlex.split(expanded)
        except ValueError as e:
            raise LauncherError(f"{path}:{lineno}: cannot tokenize ({e})") from None
        if not tokens:
            continue
        body = tokens[1:] if tokens[0] == "export" else tokens
        if body and all(_ASSIGN_RE.match(t) for t in body):  # VAR=value lines
            for t in body:
                k, _, v = t.partition("=")
                env[k] = v
            continue
        hits = [i for i, t in enumerate(tokens) if os.path.basename(t) in ENTRYPOINTS]
        if not hits:
            continue
        if missing:
            names = ", ".join(f"${m}" for m in dict.fromkeys(missing))
            raise LauncherError(
                f"{path}:{lineno} uses {names} but it is not set in the environment: "
                f"run e.g. `{missing[0]}=/path/to/it python job_launcher.py ...`"
            )
        found.append((lineno, tokens[: hits[0] + 1], tokens[hits[0] + 1 :]))
    if not found:
        raise LauncherError(f"{path} has no `python3 {' | '.join(ENTRYPOINTS)} ...` command")
    if len(found) > 1:
        lines = ", ".join(str(f[0]) for f in found)
        raise LauncherError(f"{path} has {len(found)} python commands (lines {lines}); keep one per script")
    lineno, prefix, rest = found[0]
    cmd_env = {}
    for t in prefix[:-1]:
        if _ASSIGN_RE.match(t):
            k, _, v = t.partition("=")
            cmd_env[k] = v
    return ScriptCommand(
        entrypoint=prefix[-1],
        args=parse_args_list(rest, what=f"{path}:{lineno}"),
        env=cmd_env,
    )


def apply_overrides(args: Args, overrides: Args) -> Args:
    """Return a copy of ``args`` where each override replaces its flag's values (in place) or is appended."""
    merged = {k: list(v) for k, v in args.items()}
    for k, v in overrides.items():
        merged[k] = list(v)
    return merged
