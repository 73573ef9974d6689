"""A classifier's answers (raw score and top reasons) remembered per feature row, so TreeSHAP
runs once per row a model sees rather than once per request; and the next-best-offer model's
uplift per offer, the same way.

TreeSHAP (LightGBM's ``pred_contrib``) costs several milliseconds per row on a 400-tree model,
more than the rest of a request together. The answer is a pure function of the model and the
row the model reads, so it is kept under a digest of exactly that: the model version and the
row of the float64 matrix the booster is given (categorical levels as their codes). New
features (a re-materialization, a request-time job title) make a new row, hence a new key; a
new model makes a new cache. An entry can only be missing, never stale. The reason texts are
written from the request's own values each time, so they always describe what was read.

The cache is filled in batches where rows are known ahead (``precompute``: at start-up and
after each materialization, many rows per LightGBM call on several threads) and on a miss
(``predict_explain``: the missing rows of the request). It is a bounded LRU: at most
``max_rows`` entries, the least recently used evicted first.

The uplift model's five boosters (base and one effect per offer) cost about 0.2 ms for one
row through LightGBM's Python API, a fifth of a next-best-offer request; ``CachedUplift``
keeps their answer under the same kind of key.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from training.reasons import Reason, describe, top_indices

if TYPE_CHECKING:
    from training.nbo_model import NboModel
    from training.scoring import ScoringModel

log = logging.getLogger("funnel.serving")
# (raw score, positions of the top features, their contributions), positions strongest first
Entry = tuple[float, tuple[int, ...], tuple[float, ...]]
V = TypeVar("V")


def row_keys(salt: bytes, x: np.ndarray) -> list[bytes]:
    """One digest per matrix row: ``salt`` (the model version and what is computed) and the
    row's float64 bytes."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    return [hashlib.blake2b(salt + row.tobytes(), digest_size=16).digest() for row in x]


class ReasonCache(Generic[V]):
    """A thread-safe LRU mapping of row keys to entries (``Entry`` for reasons), holding at
    most ``max_rows``."""

    def __init__(self, max_rows: int) -> None:
        if max_rows < 0:
            raise ValueError(f"max_rows must be >= 0, got {max_rows}")
        self.max_rows = max_rows
        self._entries: OrderedDict[bytes, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, keys: Sequence[bytes], count: bool = True) -> list[V | None]:
        """The entries of ``keys`` (None where missing), each found one marked as used;
        ``count`` adds them to the hit and miss counters."""
        found: list[V | None] = []
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                found.append(entry)
            if count:
                hit = sum(e is not None for e in found)
                self.hits += hit
                self.misses += len(found) - hit
        return found

    def put_many(self, items: Sequence[tuple[bytes, V]]) -> None:
        if self.max_rows == 0:
            return
        with self._lock:
            for key, entry in items:
                self._entries[key] = entry
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_rows:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class CachedExplainer:
    """``ScoringModel.predict_explain`` with its per-row results kept in a ``ReasonCache``:
    the same probabilities and reasons, the contributions computed only for rows not seen
    before. ``max_rows=0`` keeps nothing (every call computes, as the model alone would)."""

    def __init__(
        self, model: ScoringModel, top_k: int, max_rows: int, method: str = "treeshap"
    ) -> None:
        self.model = model
        self.top_k = top_k
        self.method = method
        self.cache: ReasonCache[Entry] = ReasonCache(max_rows)
        self._salt = f"{model.version}\0{method}\0{top_k}\0".encode()

    def keys(self, x: np.ndarray) -> list[bytes]:
        """One digest per matrix row: the model version, reason method and row bytes."""
        return row_keys(self._salt, x)

    def _compute(self, x: np.ndarray, num_threads: int) -> list[Entry]:
        raw, contrib = self.model.contributions(x, num_threads, self.method)
        entries: list[Entry] = []
        for r, row in zip(raw, contrib, strict=True):
            values = list(row)  # numpy floats, as predict_explain hands them to top_reasons
            top = top_indices(values, self.top_k)
            entries.append((float(r), tuple(top), tuple(float(values[i]) for i in top)))
        return entries

    def entries(self, x: np.ndarray, num_threads: int) -> list[Entry]:
        """Each row's entry: from the cache, else computed (the misses in one call) and kept."""
        keys = self.keys(x)
        found = self.cache.get_many(keys)
        missing = [i for i, e in enumerate(found) if e is None]
        if missing:
            computed = self._compute(x[missing], num_threads)
            self.cache.put_many([(keys[i], e) for i, e in zip(missing, computed, strict=True)])
            for i, entry in zip(missing, computed, strict=True):
                found[i] = entry
        return found  # type: ignore[return-value]

    def predict_explain(
        self, columns: Mapping[str, Sequence[Any]], num_threads: int = 0
    ) -> tuple[np.ndarray, list[list[Reason]]]:
        """Calibrated probabilities and top reasons, equal to
        ``model.predict_explain(columns, top_k, num_threads, method)``."""
        if self.cache.max_rows == 0:
            return self.model.predict_explain(columns, self.top_k, num_threads, self.method)
        entries = self.entries(self.model.matrix(columns), num_threads)
        probs = self.model.calibrate(np.asarray([e[0] for e in entries], dtype=np.float64))
        names = self.model.feature_names
        reasons = []
        for i, (_, top, contributions) in enumerate(entries):
            row = []
            for f, c in zip(top, contributions, strict=True):
                value = columns[names[f]][i]
                row.append(Reason(names[f], value, c, describe(names[f], value)))
            reasons.append(row)
        return probs, reasons

    def precompute(self, columns: Mapping[str, Sequence[Any]], num_threads: int = 0) -> int:
        """Compute and keep the entries of rows not yet cached, all in one LightGBM call;
        returns how many were computed."""
        if self.cache.max_rows == 0:
            return 0
        x = self.model.matrix(columns)
        keys = self.keys(x)
        missing = [i for i, e in enumerate(self.cache.get_many(keys, count=False)) if e is None]
        if missing:
            computed = self._compute(x[missing], num_threads)
            self.cache.put_many([(keys[i], e) for i, e in zip(missing, computed, strict=True)])
        return len(missing)


class CachedUplift:
    """``NboModel.uplift`` with each row's answer kept in a ``ReasonCache``: the same values
    (the cache holds the float64 results), the boosters run only for rows not seen before.
    ``max_rows=0`` keeps nothing."""

    def __init__(self, model: NboModel, max_rows: int) -> None:
        self.model = model
        self.cache: ReasonCache[tuple[float, ...]] = ReasonCache(max_rows)
        self._salt = f"{model.version}\0uplift\0".encode()

    def _compute(self, x: np.ndarray) -> list[tuple[float, ...]]:
        return [tuple(row) for row in self.model.uplift_of(x).tolist()]

    def uplift(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """(n, n_offers) predicted uplift of each offer over control, columns ``offers``."""
        x = self.model.matrix(columns)
        if self.cache.max_rows == 0:
            return self.model.uplift_of(x)
        keys = row_keys(self._salt, x)
        found = self.cache.get_many(keys)
        missing = [i for i, e in enumerate(found) if e is None]
        if missing:
            computed = self._compute(x[missing])
            self.cache.put_many([(keys[i], e) for i, e in zip(missing, computed, strict=True)])
            for i, entry in zip(missing, computed, strict=True):
                found[i] = entry
        return np.array(found, dtype=np.float64).reshape(len(found), len(self.model.offers))

    def precompute(self, columns: Mapping[str, Sequence[Any]]) -> int:
        """Compute and keep the rows not yet cached, in one call per booster; returns how many
        were computed."""
        if self.cache.max_rows == 0:
            return 0
        x = self.model.matrix(columns)
        keys = row_keys(self._salt, x)
        missing = [i for i, e in enumerate(self.cache.get_many(keys, count=False)) if e is None]
        if missing:
            computed = self._compute(x[missing])
            self.cache.put_many([(keys[i], e) for i, e in zip(missing, computed, strict=True)])
        return len(missing)


class BackgroundPrecompute:
    """Fills reasons caches in a daemon thread: once at start, then again each time
    ``stamp()`` (what the online store last materialized) changes, checked every ``poll_s``.

    ``fill`` does the work and returns the rows computed; ``done`` is set once the first fill
    has finished (or failed: a failure is logged and the next change tries again). Requests
    never wait for it: a row not yet precomputed is computed when asked for.
    """

    def __init__(
        self,
        fill: Callable[[], int],
        stamp: Callable[[], Hashable],
        poll_s: float = 30.0,
        after_fill: Callable[[], None] | None = None,
    ) -> None:
        self.fill, self.stamp, self.poll_s, self.after_fill = fill, stamp, poll_s, after_fill
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reasons-precompute", daemon=True)
        self.fills = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _stamp(self) -> Hashable:
        try:
            return self.stamp()
        except Exception:
            log.warning("reasons precompute: cannot read the materialization state", exc_info=True)
            return None

    def _fill(self) -> None:
        started = time.perf_counter()
        try:
            rows = self.fill()
        except Exception:
            log.warning("reasons precompute failed; rows are computed when asked", exc_info=True)
            return
        finally:
            self.done.set()
        self.fills += 1
        log.info("reasons precomputed: %d rows in %.1f s", rows, time.perf_counter() - started)
        if self.after_fill is not None:
            self.after_fill()

    def _run(self) -> None:
        seen = self._stamp()
        self._fill()
        while not self._stop.wait(self.poll_s):
            now = self._stamp()
            if now is not None and now != seen:
                seen = now
                self._fill()
