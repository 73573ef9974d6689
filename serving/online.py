"""Online rows of one feature service, read with the online store's own parts: what
``FeatureStore.get_online_features`` does underneath, without its per-call registry lookups,
entity-key preparation and response building, which cost several times the reads themselves
for one lead (profiled: about 7 ms against 1.3 ms on 2 cores).

The feature service is resolved once. Its views are read in two steps: the lead-keyed views
(``lead_profile_fv`` gives the account id the account views need), then the account-keyed ones;
the on-demand views' own transformation (``OnDemandFeatureView.transform_dict``) then runs on the
values read, so online and offline features come from the same definitions.

How a step reads depends on the store:

- **SQLite**: ``online_read``'s query on each view's table, a local file read (one query over
  all of a step's tables measured no faster), with the entity keys serialized once per step,
  event times turned into epoch seconds once per row rather than a ``datetime`` per value, and
  only the served features' values decoded. In WAL mode (set at start-up by
  ``sqlite_wal``) a reader never waits for a writer, so the service may read on its event loop.
- **Redis**: Feast keeps every view of one entity in one hash, so a step is one ``HMGET`` per
  entity, all in one pipeline, whatever the number of views. The account step needs the
  account id the lead step reads; for leads read before, the lead step's pipeline also reads
  the accounts they had then, and those rows are used only when the lead rows just read name
  the same accounts (else the account step reads again): one round trip per request, never
  an account other than the one the profile names now. ``read_async`` does the same through
  redis-py's asyncio client, so a slow Redis holds only the requests that wait for it, never
  the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PROFILE_VIEW = "lead_profile_fv"
ACCOUNT_FIELD = "lead_account_id"
TS_SUFFIX = "__ts"  # feast.online_response.TIMESTAMP_POSTFIX

Rows = list[tuple[Any, Any]]  # online_read's answer: (event time, {feature: ValueProto}) per key
Columns = tuple[list[int], dict[str, list]]  # event times (epoch s) and values per feature
# the account step read ahead: the account ids it was read for, and its columns
Ahead = tuple[list[str | None], list[Columns]]
ACCOUNT_GUESSES = 200_000  # leads whose last-read account is kept (Redis read-ahead); then reset
_UNSEEN = object()


@dataclass(frozen=True)
class _View:
    view: Any  # feast.FeatureView
    key: str  # its one join key: lead_id or account_id
    features: list[str]


@dataclass(frozen=True)
class _HashFields:
    """Where one view's values sit in a Redis hash: the fields read for it in a step, from
    ``offset`` on, and the names Feast's decoder expects for them (features, then ``_ts:``)."""

    name: str  # the view's name as stored (with its version when versioning is on)
    names: list[str]
    offset: int


@dataclass(frozen=True)
class _OnDemand:
    """An on-demand view's transformation, run as ``OnDemandFeatureView.transform_dict`` runs
    it (its inputs under both their short and ``<view>__<feature>`` names, then the view's own
    ``feature_transformation``) without the type checks on every call that cost ten times the
    transformation itself (measured 23 us against 2 us for one lead)."""

    view: Any  # feast.OnDemandFeatureView
    names: list[str]  # the features served
    aliases: list[tuple[str, str]]  # (full name, short name) of every input feature

    @classmethod
    def of(cls, view: Any, names: list[str]) -> _OnDemand:
        aliases = [
            (f"{projection.name}__{f.name}", f.name)
            for projection in view.source_feature_view_projections.values()
            for f in projection.features
        ]
        return cls(view, names, aliases)

    def transform(self, data: dict[str, list]) -> dict[str, Any]:
        transformation = self.view.feature_transformation
        if transformation is None:  # an aggregation view: Feast's own path
            return self.view.transform_dict(data)
        inputs = dict(data)
        for full, short in self.aliases:
            if full in data:
                inputs[short] = data[full]
            elif short in data:
                inputs[full] = data[short]
        if self.view.singleton and self.view.mode == "python":
            return transformation.transform_singleton(inputs)
        return transformation.transform(inputs)


class ServiceReader:
    """Columns (lists, one value per entity row) of a feature service's features, with
    ``<view>__ts`` event times (epoch seconds, 0 when the key has no row).

    Rows are given by ``lead_id`` (the account comes from ``lead_profile_fv``) or, for a
    service with account-keyed views only, by ``account_id``. Not thread-safe: callers hold
    the store's lock (the SQLite store shares one connection).
    """

    def __init__(self, store: Any, service: Any) -> None:
        from feast.errors import FeatureViewNotFoundException
        from feast.infra.online_stores.helpers import get_online_store_from_config

        self.config = store.config
        self.online = get_online_store_from_config(store.config.online_store)
        views: list[_View] = []
        self.on_demand: list[_OnDemand] = []
        for projection in service.feature_view_projections:
            names = [f.name for f in projection.features]
            try:
                view = store.get_feature_view(projection.name)
            except FeatureViewNotFoundException:  # an on-demand view
                self.on_demand.append(
                    _OnDemand.of(store.get_on_demand_feature_view(projection.name), names)
                )
                continue
            keys = [c.name for c in view.entity_columns]
            if len(keys) != 1:
                raise ValueError(f"feature view {view.name}: one join key expected, got {keys}")
            views.append(_View(view, keys[0], names))
        if any(v.key == "lead_id" for v in views):
            profile = next((v for v in views if v.view.name == PROFILE_VIEW), None)
            if profile is None:  # the account of each lead is still needed: read, not served
                views.append(_View(store.get_feature_view(PROFILE_VIEW), "lead_id", []))
            elif ACCOUNT_FIELD not in profile.features:
                views[views.index(profile)] = _View(
                    profile.view, "lead_id", [*profile.features, ACCOUNT_FIELD]
                )
        # the steps: lead-keyed views (the profile first), then account-keyed ones
        self.steps: list[tuple[str, list[_View]]] = []
        for key in ("lead_id", "account_id"):
            keyed = sorted(
                (v for v in views if v.key == key), key=lambda v: v.view.name != PROFILE_VIEW
            )
            if keyed:
                self.steps.append((key, keyed))
        odd = [v.view.name for v in views if v.key not in ("lead_id", "account_id")]
        if odd:
            raise ValueError(f"feature views {odd}: keyed by neither lead_id nor account_id")
        self.redis = type(self.online).__name__ == "RedisOnlineStore"
        self.sqlite = type(self.online).__name__ == "SqliteOnlineStore"
        self._sqlite_tables: dict[str, str] = {}
        if self.sqlite:
            from feast.infra.online_stores.sqlite import _quote_id, _table_id

            versioned = self.config.registry.enable_online_feature_view_versioning
            self._sqlite_tables = {
                v.view.name: _quote_id(_table_id(self.config.project, v.view, versioned))
                for v in views
            }
        self._hash: dict[str, tuple[list[Any], list[_HashFields]]] = (
            {key: self._hash_layout(keyed) for key, keyed in self.steps} if self.redis else {}
        )
        # Redis: each lead's account when last read, to read the account step ahead
        self._accounts: dict[str, str | None] = {}
        self.read_ahead = self.redis and [k for k, _ in self.steps] == ["lead_id", "account_id"]
        self.ahead_used = 0  # account steps answered by the lead step's round trip

    # -- the steps -------------------------------------------------------------------------------
    def _columns(
        self,
        lead_ids: Sequence[str] | None,
        account_ids: Sequence[str | None] | None,
        request: dict[str, Sequence[Any]] | None,
    ) -> Generator[tuple[str, list[_View], list[str | None]], list[Columns], dict[str, list]]:
        """The read as a generator: it yields each step (key, views, ids) and is sent back the
        columns of each view, so one sequence of steps serves a blocking and an async read."""
        data: dict[str, list] = {}
        if lead_ids is not None:
            data["lead_id"] = list(lead_ids)
        accounts: list[str | None] | None = list(account_ids) if account_ids is not None else None
        for key, views in self.steps:
            ids = data["lead_id"] if key == "lead_id" else accounts
            if ids is None:
                raise ValueError(f"feature view {views[0].view.name} needs {key} in the rows")
            read = yield key, views, ids
            for view, (stamps, columns) in zip(views, read, strict=True):
                data.update(columns)
                data[view.view.name + TS_SUFFIX] = stamps
            if key == "lead_id" and accounts is None:
                accounts = data[ACCOUNT_FIELD]
                if self.read_ahead:
                    self._remember(data["lead_id"], accounts)
        data["account_id"] = accounts if accounts is not None else []
        for name, values in (request or {}).items():
            data[name] = list(values)
        for odfv in self.on_demand:
            out = odfv.transform(data)
            data.update({n: list(out[n]) for n in odfv.names})
        return data

    def read(
        self,
        lead_ids: Sequence[str] | None = None,
        account_ids: Sequence[str | None] | None = None,
        request: dict[str, Sequence[Any]] | None = None,
    ) -> dict[str, list]:
        """The service's columns for the given leads (or accounts), in their order; a lead
        without a profile row has None in ``account_id`` and every feature."""
        steps = self._columns(lead_ids, account_ids, request)
        ahead: Ahead | None = None
        try:
            step = next(steps)
            while True:
                read = self._ahead(step, ahead)
                if read is None:
                    read, ahead = self._fetch(*step)
                step = steps.send(read)
        except StopIteration as done:
            return done.value

    async def read_async(
        self,
        lead_ids: Sequence[str] | None = None,
        account_ids: Sequence[str | None] | None = None,
        request: dict[str, Sequence[Any]] | None = None,
    ) -> dict[str, list]:
        """``read`` without blocking the event loop on Redis (its asyncio client); on SQLite
        the same local reads as ``read``."""
        steps = self._columns(lead_ids, account_ids, request)
        ahead: Ahead | None = None
        try:
            step = next(steps)
            while True:
                read = self._ahead(step, ahead)
                if read is None and self.redis:
                    read, ahead = await self._fetch_async(*step)
                elif read is None:
                    read, ahead = self._fetch(*step)
                step = steps.send(read)
        except StopIteration as done:
            return done.value

    # -- reading the account step ahead (Redis) --------------------------------------------------
    def _remember(self, lead_ids: Sequence[str], accounts: Sequence[str | None]) -> None:
        if len(self._accounts) > ACCOUNT_GUESSES:
            self._accounts = {}  # bounded: start over rather than grow
        self._accounts.update(zip(lead_ids, accounts, strict=True))

    def _guess(self, key: str, ids: Sequence[str | None]) -> list[str | None] | None:
        """The accounts these leads had when last read, if every one was read before."""
        if not self.read_ahead or key != "lead_id":
            return None
        known = self._accounts
        guess = [known.get(i, _UNSEEN) if i is not None else None for i in ids]
        return None if any(g is _UNSEEN for g in guess) else guess  # type: ignore[return-value]

    def _ahead(
        self, step: tuple[str, list[_View], Sequence[str | None]], ahead: Ahead | None
    ) -> list[Columns] | None:
        """The account step's columns when they were read ahead for exactly these accounts."""
        if ahead is None or step[0] != "account_id" or list(step[2]) != ahead[0]:
            return None
        self.ahead_used += 1
        return ahead[1]

    def ping(self) -> None:
        """One read of one key of the first step: raises if the online store does not answer."""
        key, views = self.steps[0]
        self._fetch(key, views, ["__readyz__"])

    async def ping_async(self) -> None:
        key, views = self.steps[0]
        if self.redis:
            await self._fetch_async(key, views, ["__readyz__"])
        else:
            self._fetch(key, views, ["__readyz__"])

    # -- reading one step ------------------------------------------------------------------------
    def _fetch(
        self, key: str, views: list[_View], ids: Sequence[str | None]
    ) -> tuple[list[Columns], Ahead | None]:
        if self.redis:
            commands, split = self._redis_step(key, views, ids)
            return split(self.online._read_hash_fields(self.config, commands) if commands else [])
        wanted, entity_keys = _entity_keys(key, ids)
        if not entity_keys:
            return [_decode(v, ids, wanted, []) for v in views], None
        if self.sqlite:
            return self._sqlite_step(views, ids, wanted, entity_keys), None
        return [
            _decode(
                v,
                ids,
                wanted,
                self.online.online_read(self.config, v.view, entity_keys, v.features),
            )
            for v in views
        ], None

    def _sqlite_step(
        self, views: list[_View], ids: Sequence[str | None], wanted: list[int],
        entity_keys: list[Any],
    ) -> list[Columns]:  # fmt: skip
        """A step on SQLite: Feast's ``online_read`` query on each view's table, with the
        entity keys serialized once for all views, each row's event time converted once
        (``_utc_seconds``; Feast converts it once per value) and only the served features'
        values decoded."""
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.Value_pb2 import Value

        version = self.config.entity_key_serialization_version
        blobs = [
            serialize_entity_key(k, entity_key_serialization_version=version) for k in entity_keys
        ]
        positions: dict[bytes, list[int]] = {}  # leads of one account share its key
        for blob, i in zip(blobs, wanted, strict=True):
            positions.setdefault(blob, []).append(i)
        marks = ",".join("?" * len(blobs))
        conn = self.online._get_conn(self.config)
        n = len(ids)
        out = []
        for v in views:
            stamps = [0] * n
            columns: dict[str, list] = {f: [None] * n for f in v.features}
            rows = conn.execute(
                "SELECT entity_key, feature_name, value, event_ts + 0"
                f" FROM {self._sqlite_tables[v.view.name]} WHERE entity_key IN ({marks})",
                blobs,
            )
            for blob, feature, value, ts in rows:
                at = positions[blob]
                column = columns.get(feature)
                python = _python(Value.FromString(value)) if column is not None else None
                for i in at:
                    if ts is not None and ts > stamps[i]:
                        stamps[i] = ts
                    if column is not None:
                        column[i] = python
            for i in wanted:
                if stamps[i]:
                    stamps[i] = _utc_seconds(stamps[i])
            out.append((stamps, columns))
        return out

    async def _fetch_async(
        self, key: str, views: list[_View], ids: Sequence[str | None]
    ) -> tuple[list[Columns], Ahead | None]:
        commands, split = self._redis_step(key, views, ids)
        if not commands:
            return split([])
        client = await self.online._get_client_async(self.config.online_store)
        async with client.pipeline(transaction=False) as pipe:
            for redis_key, fields in commands:
                pipe.hmget(redis_key, fields)
            replies = await pipe.execute()
        return split(replies)

    def _redis_step(
        self, key: str, views: list[_View], ids: Sequence[str | None]
    ) -> tuple[list[tuple[bytes, list[Any]]], Callable[[list], tuple[list[Columns], Ahead | None]]]:
        """A step's ``HMGET`` commands, with those of the account step for the accounts these
        leads had when last read, and how to split the replies between the two."""
        wanted, entity_keys = _entity_keys(key, ids)
        commands = self._hash_commands(key, entity_keys) if entity_keys else []
        guess = self._guess(key, ids)
        extra: list[tuple[bytes, list[Any]]] = []
        if guess is not None:
            guess_wanted, guess_keys = _entity_keys("account_id", guess)
            extra = self._hash_commands("account_id", guess_keys) if guess_keys else []
        n = len(commands)

        def split(replies: list) -> tuple[list[Columns], Ahead | None]:
            read = self._split_hash(key, views, ids, wanted, replies[:n])
            if guess is None:
                return read, None
            account_views = self.steps[1][1]
            return read, (
                guess,
                self._split_hash("account_id", account_views, guess, guess_wanted, replies[n:]),
            )

        return [*commands, *extra], split

    def _hash_layout(self, views: list[_View]) -> tuple[list[Any], list[_HashFields]]:
        """The fields one step reads from each entity's hash (every view's features and event
        time, as Feast names them), and where each view's part starts."""
        from feast.infra.online_stores.redis import _versioned_fv_name

        fields: list[Any] = []
        layout = []
        for v in views:
            name = _versioned_fv_name(v.view, self.config)
            names, hset_keys = self.online._generate_hset_keys_for_features(
                v.view, list(v.features), fv_name_override=name
            )
            layout.append(_HashFields(name, names, len(fields)))
            fields.extend(hset_keys)
        return fields, layout

    def _hash_commands(self, key: str, entity_keys: list[Any]) -> list[tuple[bytes, list[Any]]]:
        fields = self._hash[key][0]
        redis_keys = self.online._generate_redis_keys_for_entities(self.config, entity_keys)
        return [(k, fields) for k in redis_keys]

    def _split_hash(
        self, key: str, views: list[_View], ids: Sequence[str | None], wanted: list[int],
        replies: list[list[Any]],
    ) -> list[Columns]:  # fmt: skip
        layout = self._hash[key][1]
        out = []
        for v, part in zip(views, layout, strict=True):
            end = part.offset + len(part.names)
            rows = [
                self.online._get_features_for_entity(
                    reply[part.offset : end], part.name, part.names
                )
                for reply in replies
            ]
            out.append(_decode(v, ids, wanted, rows))
        return out


def _entity_keys(key: str, ids: Sequence[str | None]) -> tuple[list[int], list[Any]]:
    """The positions of the ids given (None: no such entity) and their entity keys."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    wanted = [i for i, v in enumerate(ids) if v is not None]
    keys = [EntityKey(join_keys=[key], entity_values=[Value(string_val=ids[i])]) for i in wanted]
    return wanted, keys


# Feast's value kinds that its decoder returns as they are (feast.type_map
# feast_value_type_to_python_type): read directly, every other kind through it
_PLAIN = frozenset(
    ("int32_val", "int64_val", "double_val", "float_val", "string_val", "bool_val", "bytes_val")
)


def _python(proto: Any) -> Any:
    """A Feast ``Value`` as Python, as ``feast_value_type_to_python_type`` gives it."""
    kind = proto.WhichOneof("val")
    if kind is None:
        return None
    if kind in _PLAIN:
        return getattr(proto, kind)
    from feast.type_map import feast_value_type_to_python_type

    return feast_value_type_to_python_type(proto)


def _utc_seconds(stored: int) -> int:
    """Epoch seconds of a SQLite online row's event time. Feast stores the naive UTC time as
    ``int(naive.timestamp())`` (read as local time) and reads it back with
    ``datetime.fromtimestamp(stored).replace(tzinfo=utc)``: the same here, on any time zone."""
    return int(datetime.fromtimestamp(stored).replace(tzinfo=UTC).timestamp())


def _decode(view: _View, ids: Sequence[str | None], wanted: list[int], rows: Rows) -> Columns:
    """One view's columns from the store's answer for the ``wanted`` positions."""
    n = len(ids)
    stamps = [0] * n
    columns: dict[str, list] = {f: [None] * n for f in view.features}
    for i, (ts, values) in zip(wanted, rows, strict=True):
        if values is None:
            continue
        stamps[i] = int(ts.timestamp()) if ts is not None else 0
        for f in view.features:
            proto = values.get(f)
            if proto is not None:
                columns[f][i] = _python(proto)
    return stamps, columns


def sqlite_wal(reader: ServiceReader) -> bool:
    """Put a SQLite online store in WAL mode (it stays so: the mode is kept in the file), where
    a reader never waits for a writer; whether it is. False for any other store, and when the
    switch is refused (another connection holds the file)."""
    if type(reader.online).__name__ != "SqliteOnlineStore":
        return False
    import sqlite3

    try:
        conn = reader.online._get_conn(reader.config)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    except sqlite3.Error:
        return False
    return str(mode).lower() == "wal"


def materialization_stamp(store: Any) -> tuple:
    """What the registry says was materialized into the online store, per feature view
    (every materialization adds an interval): changes with each ``materialize``."""
    views = store.registry.list_feature_views(store.project, allow_cache=False)
    return tuple(sorted((v.name, tuple(v.materialization_intervals)) for v in views))
