"""Decodes Prometheus' query API answers into numpy arrays, and says exactly what is wrong with one that is not.

A range answer of 8 million points is ~190 MB of JSON. ``json.loads`` turns it into ~24 million Python objects
(10-14 s on these machines) before a single value reaches numpy. The fast path here never creates an object per
sample: it walks the answer's fixed outer shape, decodes each series' ``metric`` object with the json module (one
small object per series), and turns each ``values`` array into floats with one ``numpy.fromstring`` call on the
text between its brackets. Anything the fast path does not recognise exactly (another key order, whitespace,
native histograms) goes to the general path, which is ``json.loads`` and a full validation: both give the same
result, and both raise ``BadResponse`` naming the problem for an answer that is not the expected Prometheus JSON
(an auth proxy's HTML login page, a truncated body, ``"status": "error"``, a vector where a matrix belongs, a
sample value that is not a number).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

# older numpy's fromstring stops at text it cannot read and warns (newer ones raise); the count is checked anyway
warnings.filterwarnings("ignore", message="string or file could not be read to its end", category=DeprecationWarning)

MATRIX_PREFIX = '{"status":"success","data":{"resultType":"matrix","result":['
_DECODER = json.JSONDecoder()
_PAIR_PUNCTUATION = str.maketrans('[]",', "    ")
_SNIPPET = 80


class BadResponse(ValueError):
    """A 200 answer that is not a usable Prometheus API answer of the expected kind."""


@dataclass
class DecodedMatrix:
    """Per series: its labels (``__name__`` included when Prometheus sent it), sample times and values."""

    labels: list[dict[str, str]] = field(default_factory=list)
    times: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(len(v) for v in self.values)


def describe(text: str) -> str:
    """What an unparseable answer looks like, in a few words and its first characters."""
    head = text.lstrip()[:_SNIPPET].replace("\n", " ")
    if head[:1] == "<":
        return f"an HTML or XML page, not Prometheus JSON (a login page or a proxy in front?): {head!r}"
    if not head:
        return "an empty body"
    return f"not Prometheus JSON: {head!r}"


def decode_matrix(text: str) -> DecodedMatrix:
    """The series of a ``query_range`` answer; raises BadResponse for anything else."""
    if text.startswith(MATRIX_PREFIX):
        try:
            return _fast_matrix(text)
        except _NotFast:
            pass
    return _general_matrix(_parse_json(text))


def decode_vector(text: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) per series of an instant ``query`` answer; raises BadResponse for anything else."""
    data = _success_data(_parse_json(text))
    kind = data.get("resultType")
    if kind != "vector":
        raise BadResponse(f"expected a vector (instant query), got resultType {kind!r}")
    out = []
    for item in _result_list(data):
        labels, sample = _item_labels(item), item.get("value")
        if not isinstance(sample, list) or len(sample) != 2:
            raise BadResponse(f"series {labels} has no [time, value] sample")
        out.append((labels, _number(sample[1], labels)))
    return out


# ---------------------------------------------------------------- the general path
def _parse_json(text: str) -> dict:
    try:
        body = json.loads(text)
    except ValueError:
        raise BadResponse(describe(text)) from None
    if not isinstance(body, dict):
        raise BadResponse(describe(text))
    return body


def _success_data(body: dict) -> dict:
    status = body.get("status")
    if status != "success":
        error = f"{body.get('errorType', '')}: {body.get('error', '')}".strip(": ")
        raise BadResponse(f"answer has status {status!r}" + (f" ({error})" if error else ""))
    data = body.get("data")
    if not isinstance(data, dict):
        raise BadResponse("answer has no data object")
    return data


def _result_list(data: dict) -> list:
    result = data.get("result")
    if not isinstance(result, list):
        raise BadResponse("answer has no result list")
    return result


def _item_labels(item: object) -> dict[str, str]:
    if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
        raise BadResponse("a result item has no metric labels")
    labels = item["metric"]
    if not all(isinstance(v, str) for v in labels.values()):
        raise BadResponse(f"label values must be strings: {labels}")
    return labels


def _number(text: object, labels: dict[str, str]) -> float:
    try:
        return float(text)  # type: ignore[arg-type]  # "NaN", "+Inf", "-Inf" included
    except (TypeError, ValueError):
        raise BadResponse(f"sample value {text!r} of series {labels} is not a number") from None


def _general_matrix(body: dict) -> DecodedMatrix:
    data = _success_data(body)
    kind = data.get("resultType")
    if kind != "matrix":
        raise BadResponse(f"expected a matrix (range query), got resultType {kind!r}")
    decoded = DecodedMatrix(warnings=[str(w) for w in body.get("warnings") or []])
    for item in _result_list(data):
        labels = _item_labels(item)
        pairs = item.get("values", [])
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise BadResponse(f"series {labels} has malformed values")
        try:
            times = np.array([p[0] for p in pairs], dtype=np.float64)
            values = np.array([p[1] for p in pairs], dtype=np.float64)
        except (TypeError, ValueError):
            bad = next((p for p in pairs if not _is_number(p[0]) or not _is_number(p[1])), pairs[0])
            raise BadResponse(f"sample {bad!r} of series {labels} is not a number") from None
        decoded.labels.append(labels)
        decoded.times.append(times)
        decoded.values.append(values)
    return decoded


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


# ---------------------------------------------------------------- the fast path
class _NotFast(Exception):
    """The answer is not in the exact shape the fast path reads; the general path decides."""


_VALUES_KEY = ',"values":['
_TAIL = re.compile(r"\]\}(\}|,)")


def _fast_matrix(text: str) -> DecodedMatrix:
    decoded = DecodedMatrix()
    pos = len(MATRIX_PREFIX)
    if text.startswith("]", pos):
        return _fast_tail(text, pos, decoded)
    while True:
        if not text.startswith('{"metric":', pos):
            raise _NotFast
        try:
            labels, pos = _DECODER.raw_decode(text, pos + len('{"metric":'))
        except ValueError:
            raise _NotFast from None
        if not isinstance(labels, dict) or not text.startswith(_VALUES_KEY, pos):
            raise _NotFast
        times, values, pos = _fast_values(text, pos + len(_VALUES_KEY) - 1, labels)
        decoded.labels.append(labels)
        decoded.times.append(times)
        decoded.values.append(values)
        if not text.startswith("}", pos):
            raise _NotFast  # e.g. native histograms after the values
        pos += 1
        if text.startswith(",", pos):
            pos += 1
            continue
        return _fast_tail(text, pos, decoded)


def _fast_values(text: str, start: int, labels: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """The ``[[t,"v"],...]`` array at ``start``: times, values, and the position after it. Sample values are
    number strings, so the first ``]]`` closes the array."""
    if text.startswith("[]", start):
        empty = np.empty(0, dtype=np.float64)
        return empty, empty, start + 2
    end = text.find("]]", start)
    if end < 0:
        raise _NotFast
    segment = text[start : end + 2]
    pairs = segment.count("[") - 1
    try:
        numbers = np.fromstring(segment.translate(_PAIR_PUNCTUATION), dtype=np.float64, sep=" ")
    except ValueError:  # text that is not a number (numpy 2.x raises; older ones warned and stopped)
        raise _NotFast from None
    if numbers.size != 2 * pairs or segment.count('"') != 2 * pairs:
        raise _NotFast  # a value that is not a number, or a shape the general path must judge
    numbers = numbers.reshape(pairs, 2)
    return numbers[:, 0].copy(), numbers[:, 1].copy(), end + 2


def _fast_tail(text: str, pos: int, decoded: DecodedMatrix) -> DecodedMatrix:
    """After the result list: ``]}}``, or ``]},`` and more members of the top object (warnings, infos)."""
    match = _TAIL.match(text, pos)
    if match is None:
        raise _NotFast
    if match.group(1) == "}":
        if text[match.end() :].strip():
            raise _NotFast
        return decoded
    try:
        rest = json.loads("{" + text[match.end() :])
    except ValueError:
        raise _NotFast from None
    decoded.warnings = [str(w) for w in rest.get("warnings") or []]
    return decoded
