"""README.md, docs/ and bench/README.md stay true: relative links resolve, shown `perfsentinel` and bench commands
parse, the configuration reference matches the config schema, the metric reference matches what the exporter
emits, and the alert tables match the rule files."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import re
import shlex
import subprocess
import sys
import typing
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from analyzer.commands.cli import parser
from analyzer.config import ConfigError, build_config
from analyzer.results import OK, SeriesResult, Snapshot, TargetOutcome
from exporter.selfmetrics import SelfMetrics
from exporter.server import Exposition

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
BENCH_README = REPO / "bench" / "README.md"
DOCS = sorted([README, BENCH_README, *(REPO / "docs").rglob("*.md")])
FENCE = re.compile(r"^(```|~~~)(\S*)[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(<?([^)>\s]+)>?(?:\s+\"[^\"]*\")?\)")
SHELL = {"", "sh", "bash", "shell", "console"}
MAX_README_LINES = 400


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in paths]


def without_fences(text: str) -> str:
    """The text with fenced blocks blanked out (line numbers kept)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def without_code(text: str) -> str:
    """The text with fenced blocks and inline code blanked out (links inside them are examples, not links)."""
    return INLINE_CODE.sub("", without_fences(text))


def slug(heading: str) -> str:
    """GitHub's id of a heading: inline code keeps its text, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading).replace("`", "")
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> set[str]:
    """Heading ids of a Markdown file, with GitHub's -1, -2 ... for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for line in without_fences(path.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        base = slug(heading.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def test_anchor_slugs_follow_github():
    assert slug("CI gate: `perfsentinel check` and reports") == "ci-gate-perfsentinel-check-and-reports"
    assert slug("NAB (`../shared/nab-dev`)") == "nab-sharednab-dev"
    assert slug("Baselines: models, the store and the lifecycle") == "baselines-models-the-store-and-the-lifecycle"


def shown(path: Path) -> Path:
    return path.relative_to(REPO) if REPO in path.parents else path


def link_problems(doc: Path) -> list[str]:
    broken = []
    for target in LINK.findall(without_code(doc.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc
        if not resolved.exists():
            broken.append(f"{target}: no file {shown(resolved)}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {shown(resolved)}")
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_relative_links_resolve(doc):
    broken = link_problems(doc)
    assert not broken, f"broken links in {doc.relative_to(REPO)}:\n" + "\n".join(broken)


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n[ok](#title) [bad](#nothing) [gone](missing.md)\n", encoding="utf-8")
    problems = link_problems(tmp_path / "a.md")
    assert [p.split(":")[0] for p in problems] == ["#nothing", "missing.md"]


# ---------------------------------------------------------------- perfsentinel commands
def subcommands(command: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in command._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def resolve(words: list[str]) -> tuple[list[str], list[argparse.ArgumentParser]]:
    """(subcommand path, the parsers it may name) of ``perfsentinel WORDS...``. A word ``a|b|c`` (the usage table's
    alternatives) names each of them."""
    commands, path = [parser()], []
    for word in words:
        if word.startswith("-"):
            break
        found = [sub for command in commands for alt in word.split("|") if (sub := subcommands(command).get(alt))]
        if not found:
            break
        path.append(word)
        commands = found
    return path, commands


def options(command: argparse.ArgumentParser) -> set[str]:
    return {flag for action in command._actions for flag in action.option_strings}


def shell_lines(text: str) -> list[str]:
    """The command lines of the shell code blocks: continuation lines joined, ``$ `` prompts and leading
    ``VAR=value`` assignments dropped."""
    lines = []
    for block in FENCE.finditer(text):
        if block.group(2) in SHELL:
            for line in block.group(3).replace("\\\n", " ").splitlines():
                line = re.sub(r"^\$\s+", "", line.strip())
                lines.append(re.sub(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+", "", line))
    return lines


def shown_commands(doc: Path) -> list[tuple[str, str]]:
    """(kind, text) of every perfsentinel command shown: "block" for a line of a shell code block, "inline" for an
    inline code span (the command line's usage table)."""
    text = doc.read_text(encoding="utf-8")
    found = [("block", line) for line in shell_lines(text) if re.match(r"perfsentinel\s", line)]
    for span in INLINE_CODE.finditer(without_fences(text)):
        if re.match(r"perfsentinel\s+-*[a-z]", span.group(2)):
            found.append(("inline", span.group(2)))
    return found


def block_problem(text: str) -> str | None:
    """A shell line must parse with the real parser, positional arguments included, and show no usage syntax
    (``[--json]`` would parse as a positional argument)."""
    if re.search(r"\[--?[a-z]", text):
        return "usage brackets in a shell block: show a command that runs, or use the usage table"
    try:
        words = shlex.split(text, comments=True)
    except ValueError as exc:
        return f"cannot split: {exc}"
    path, _ = resolve(words[1:])
    if not path:
        return "no subcommand"
    try:
        parser().parse_args(words[1:])
    except SystemExit as exc:
        return None if exc.code == 0 else "does not parse (perfsentinel " + " ".join(path) + " --help)"
    return None


def inline_problem(text: str) -> str | None:
    """A usage line (``[--opt X]``, ``a|b``, ``...``) is not parsed whole: its subcommand must exist and every flag
    it shows must be an option of that subcommand (of each, for ``a|b``)."""
    words = text.replace("\\|", "|").split()
    path, commands = resolve(words[1:])
    if not path:
        return f"unknown subcommand {words[1]!r}"
    shown = set(re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*(?:\.[\w-]+)*", text))  # --web.config.file too
    unknown = {flag for flag in shown for command in commands if flag not in options(command)}
    return f"unknown options of perfsentinel {' '.join(path)}: {sorted(unknown)}" if unknown else None


def command_problem(kind: str, text: str) -> str | None:
    return block_problem(text) if kind == "block" else inline_problem(text)


DOCS_WITH_COMMANDS = [doc for doc in DOCS if shown_commands(doc)]


def test_commands_are_shown():
    assert README in DOCS_WITH_COMMANDS  # the scan finds them at all
    assert {kind for kind, _ in shown_commands(README)} == {"block", "inline"}


@pytest.mark.parametrize("doc", DOCS_WITH_COMMANDS, ids=ids(DOCS_WITH_COMMANDS))
def test_shown_perfsentinel_commands_parse(doc, capsys):
    problems = [f"{text}\n    -> {problem}" for kind, text in shown_commands(doc)
                if (problem := command_problem(kind, text))]  # fmt: skip
    capsys.readouterr()  # argparse's own messages
    assert not problems, f"commands in {doc.relative_to(REPO)} that perfsentinel rejects:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "kind, text",
    [
        ("block", "perfsentinel once --config c.yml --no-such-flag"),
        ("block", "perfsentinel baseline show --config c.yml t [--json]"),
        ("block", "perfsentinel nosuchcommand --config c.yml"),
        ("inline", "perfsentinel baseline list\\|show --config F --version 3"),
        ("inline", "perfsentinel run --config F [--output json]"),
    ],
)
def test_a_wrong_command_is_rejected(kind, text, capsys):
    assert command_problem(kind, text)
    capsys.readouterr()


# ---------------------------------------------------------------- bench and script commands
SCRIPT_COMMAND = re.compile(r"(?:^|\s)python3?\s+((?:bench|scripts)/[\w/.-]+\.py)([^`\n|;&]*)")


def shown_script_commands(doc: Path) -> list[tuple[str, str]]:
    """(script, its arguments as shown) of every ``python bench/X.py ...`` or ``python scripts/X.py ...`` in code."""
    text = doc.read_text(encoding="utf-8")
    code = shell_lines(text) + [m.group(2) for m in INLINE_CODE.finditer(without_fences(text))]
    return [(m.group(1), m.group(2).split("#")[0]) for line in code for m in SCRIPT_COMMAND.finditer(line)]


@cache
def script_options(script: str) -> frozenset[str]:
    """The options a script's ``--help`` lists (none for a script without argparse: it would run instead)."""
    if "argparse" not in (REPO / script).read_text(encoding="utf-8"):
        return frozenset()
    help_text = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True,
                               timeout=300, check=True).stdout  # fmt: skip
    return frozenset(re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*", help_text))


def script_problem(script: str, arguments: str) -> str | None:
    if not (REPO / script).is_file():
        return f"no file {script}"
    unknown = set(re.findall(r"(?<![\w-])--[a-zA-Z][\w-]*", arguments)) - script_options(script)
    return f"{script} has no options {sorted(unknown)}" if unknown else None


DOCS_WITH_SCRIPTS = [doc for doc in DOCS if shown_script_commands(doc)]


def test_script_commands_are_shown():
    assert {README, BENCH_README} <= set(DOCS_WITH_SCRIPTS)


@pytest.mark.parametrize("doc", DOCS_WITH_SCRIPTS, ids=ids(DOCS_WITH_SCRIPTS))
def test_shown_script_commands_exist_with_their_flags(doc):
    problems = sorted({f"python {script}{arguments.rstrip()}\n    -> {problem}"
                       for script, arguments in shown_script_commands(doc)
                       if (problem := script_problem(script, arguments))})  # fmt: skip
    assert not problems, f"commands in {doc.relative_to(REPO)} that do not run:\n" + "\n".join(problems)


def test_a_wrong_script_command_is_rejected():
    assert script_problem("bench/sparse.py", " --seeds 8 --no-such-flag")
    assert script_problem("bench/no_such_script.py", "")
    assert script_problem("bench/sparse.py", " --models stl --seeds 8") is None


# ---------------------------------------------------------------- bench/README.md
def bench_scripts() -> list[str]:
    return sorted(str(p.relative_to(REPO / "bench")) for p in (REPO / "bench").rglob("*.py"))


def test_bench_readme_lists_every_bench_script_and_each_has_a_docstring():
    listed = BENCH_README.read_text(encoding="utf-8")
    unlisted = [s for s in bench_scripts() if f"({s})" not in listed and f"`{s}`" not in listed]
    undocumented = [s for s in bench_scripts() if not ast.get_docstring(ast.parse((REPO / "bench" / s).read_text()))]
    assert not unlisted, f"bench/README.md does not list {unlisted}"
    assert not undocumented, f"bench scripts without a module docstring: {undocumented}"


# ---------------------------------------------------------------- config examples
def loaded_example(block: str) -> Any:
    """A config example of the docs, completed with what a fragment leaves out, through the real loader."""
    raw = yaml.safe_load(block)
    raw.setdefault("prometheus", {"url": "http://127.0.0.1:9090"})
    raw.setdefault("targets", [{"name": "t", "query": "up"}])
    return build_config(raw, env={})


@pytest.mark.parametrize("doc", [README, REPO / "docs" / "configuration.md"], ids=["README.md", "configuration.md"])
def test_config_examples_load(doc):
    checked = 0
    for block in FENCE.finditer(doc.read_text(encoding="utf-8")):
        if block.group(2) == "yaml" and re.match(r"(prometheus|targets|defaults|schedule):", block.group(3)):
            loaded_example(block.group(3))
            checked += 1
    assert checked


def test_a_wrong_config_example_is_rejected():
    with pytest.raises(ConfigError):
        loaded_example("targets:\n  - name: t\n    query: up\n    direction: down\n")


# ---------------------------------------------------------------- configuration reference
@cache
def config_docs_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_config_docs", REPO / "scripts" / "gen_config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documented_keys(text: str) -> dict[str, str]:
    """key path -> default, from the rows of the generated tables."""
    return dict(re.findall(r"^\| `([^`]+)` \| [^|]* \| ([^|]*) \|", text, re.M))


def configuration_doc() -> dict[str, str]:
    generator = config_docs_generator()
    return documented_keys(generator.generated_part(generator.DOC.read_text(encoding="utf-8")))


def test_configuration_doc_lists_every_key_of_the_schema_with_its_default():
    schema = {path: default for _, path, _, default, _ in config_docs_generator().rows()}
    doc = configuration_doc()
    missing, extra = sorted(set(schema) - set(doc)), sorted(set(doc) - set(schema))
    wrong = sorted(f"{k}: doc {doc[k]}, schema {schema[k]}" for k in set(schema) & set(doc) if doc[k] != schema[k])
    assert not (missing or extra or wrong), (
        f"docs/configuration.md is out of date with analyzer/config.py: run python scripts/gen_config_docs.py\n"
        f"missing keys: {missing}\nkeys no longer in the schema: {extra}\nwrong defaults: {wrong}"
    )


def test_configuration_doc_is_what_the_generator_writes():
    generator = config_docs_generator()
    current = generator.generated_part(generator.DOC.read_text(encoding="utf-8"))
    assert current == generator.render(), "docs/configuration.md is out of date: run python scripts/gen_config_docs.py"


def test_every_config_key_has_a_description():
    generator = config_docs_generator()
    missing = [path for _, path, _, _, description in generator.rows() if description == generator.UNDOCUMENTED]
    assert not missing, f"add these keys to DESCRIPTIONS in scripts/gen_config_docs.py, then run it: {missing}"


def full_raw() -> dict:
    """A config with every section present, so that every documented key has a place to go."""
    return {"prometheus": {"url": "http://127.0.0.1:9090", "basic_auth": {"username": "u"}},
            "targets": [{"name": "t", "query": "up", "check": {"budget": {"max": 1}}}]}  # fmt: skip


def put(raw: dict, path: str, value: Any) -> dict:
    """``raw`` with the key at ``path`` (``targets[].severity.minor``) set to value, or deleted for ``...``."""
    *parents, key = path.split(".")
    node: Any = raw
    for part in parents:
        node = node[part.removesuffix("[]")][0] if part.endswith("[]") else node.setdefault(part, {})
    if key.endswith("[]"):
        key = key.removesuffix("[]")
    if value is ...:
        node.pop(key, None)
    else:
        node[key] = value
    return raw


def test_documented_defaults_are_what_the_loader_uses():
    """Independent of the generator: writing a key with its documented default changes nothing, and leaving out a
    documented required key is an error."""
    plain = build_config(full_raw(), env={})
    wrong, unchecked = [], []
    for path, default in configuration_doc().items():
        if default == "required":
            try:
                build_config(put(full_raw(), path, ...), env={})
                wrong.append(f"{path}: documented as required, loads without it")
            except ConfigError:
                pass
        elif default.startswith("`"):
            value = yaml.safe_load(default.strip("`"))
            if build_config(put(full_raw(), path, value), env={}) != plain:
                wrong.append(f"{path}: documented default {default} is not the default")
        else:
            unchecked.append(path)
    assert not wrong, "\n".join(wrong)
    assert len(unchecked) < len(configuration_doc()) / 2  # most defaults are concrete values


# ---------------------------------------------------------------- metric reference
def sample_value(name: str, annotation: str) -> object:
    """A value for every field of SeriesResult, so that every family has a sample."""
    fixed = {"status": OK, "verdict": "critical", "severity": 3, "regression_event": "deploy 1.2.3",
             "trend": "degrading", "baseline_reason": "initial", "model": "stl", "seasonality": "weekly"}  # fmt: skip
    if name in fixed:
        return fixed[name]
    if annotation.startswith("int"):
        return 2
    if annotation.startswith("float"):
        return 0.25
    if annotation.startswith("str"):
        return "x"
    if annotation.startswith("dict"):
        return {"service": "checkout"}
    return None


def complete_result() -> SeriesResult:
    hints = {f.name: str(f.type) for f in dataclasses.fields(SeriesResult)}
    values = {name: sample_value(name, hint) for name, hint in hints.items()}
    values.update(target="api_latency_p95", labels={"service": "checkout"})
    return SeriesResult(**values)


@cache
def emitted_metrics() -> dict[str, str]:
    """Metric name (as queried: counters with _total) -> type, of what /metrics serves after one analysis."""
    from prometheus_client.parser import text_string_to_metric_families

    snapshot = Snapshot(1.7e9, [complete_result()], [TargetOutcome("api_latency_p95", True, "", 1, returned=1)])
    for name, hint in typing.get_type_hints(Snapshot).items():  # fields added later get a value too
        if name not in {"completed_at", "results", "targets"} and hint in (float, int):
            setattr(snapshot, name, 1.0)
    exposition = Exposition(SelfMetrics())
    exposition.publish(snapshot)
    families = {f.name: f.type for f in text_string_to_metric_families(exposition.body().decode())}
    out = {}
    for name, kind in families.items():
        if name.endswith("_created") and families.get(name.removesuffix("_created")) in ("counter", "histogram"):
            continue  # prometheus_client's creation time beside every counter and histogram
        out[name + "_total" if kind == "counter" else name] = kind
    return out


def test_the_sample_analysis_emits_the_per_series_families():
    assert {"perfsentinel_anomaly_score", "perfsentinel_regression_severity", "perfsentinel_runs_total"} <= set(
        emitted_metrics()
    )


def test_metrics_doc_lists_exactly_what_the_exporter_emits():
    text = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    documented = dict(re.findall(r"^\| `(perfsentinel_\w+)` \| (\w+) \|", text, re.M))
    emitted = emitted_metrics()
    missing, extra = sorted(set(emitted) - set(documented)), sorted(set(documented) - set(emitted))
    wrong = sorted(f"{n}: doc {documented[n]}, emitted {emitted[n]}" for n in set(emitted) & set(documented)
                   if documented[n] != emitted[n])  # fmt: skip
    assert not (missing or extra or wrong), (
        "docs/metrics.md differs from what the exporter emits (add or remove rows of its tables):\n"
        f"not documented: {missing}\ndocumented, not emitted: {extra}\nwrong type: {wrong}"
    )


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_every_metric_named_in_the_docs_exists(doc):
    emitted = emitted_metrics()
    named = set(re.findall(r"\bperfsentinel_[a-z_]+[a-z]", doc.read_text(encoding="utf-8")))
    suffixes = ("_bucket", "_sum", "_count")
    unknown = sorted(n for n in named if n not in emitted and n.removesuffix("_total") not in emitted
                     and not any(n.endswith(s) and n.removesuffix(s) in emitted for s in suffixes))  # fmt: skip
    assert not unknown, f"{doc.relative_to(REPO)} names metrics the exporter does not emit: {unknown}"


# ---------------------------------------------------------------- alert tables
def shipped_alerts() -> dict[str, str]:
    """Alert name -> severity label, over every rule file."""
    alerts = {}
    for path in sorted((REPO / "rules").glob("perfsentinel-*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts[rule["alert"]] = rule["labels"]["severity"]
    return alerts


@pytest.mark.parametrize("doc", [README, REPO / "docs" / "alerting.md"], ids=["README.md", "alerting.md"])
def test_alert_tables_list_every_shipped_alert_with_its_severity(doc):
    rows = re.findall(r"^\| `(PerfSentinel\w+)` \| `?(\w+)", doc.read_text(encoding="utf-8"), re.M)
    documented = dict(rows)
    shipped = shipped_alerts()
    assert len(rows) == len(documented), f"{doc.name}: an alert is listed twice"
    assert documented == shipped, (
        f"{doc.name}'s alert table differs from rules/*.yml:\n"
        f"missing: {sorted(set(shipped) - set(documented))}\nnot shipped: {sorted(set(documented) - set(shipped))}\n"
        f"wrong severity: {sorted(k for k in set(shipped) & set(documented) if shipped[k] != documented[k])}"
    )


def test_readme_stays_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail into docs/"
