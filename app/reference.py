"""Reference pages generated from the code, so that they cannot drift from it: the configuration
keys (the strict pydantic models of ``core/``), the HTTP API (the OpenAPI document the service
serves at ``/docs.json``) and the command line (the click group of ``app/cli.py``).

    python -m app.reference          # write docs/reference/{configuration,api,cli}.md
    python -m app.reference --check  # exit 1 naming each page that is out of date
"""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import io
import re
import sys
import textwrap
import tokenize
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import click
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from app import cli
from core.audiences import AudiencesFile
from core.config import PROJECT_ROOT, Config, Strict
from core.offers import Offers
from serving.service import FunnelService

REFERENCE_DIR = Path("docs") / "reference"
REGENERATE = "python -m app.reference"
_GENERATED = "<!-- Generated from {source} by `{command}`: edit the code, not this file. -->"

# Set by the loaders (the file a model came from), not written in a file: not keys to document.
_LOADER_FIELDS = {(Offers, "source"), (AudiencesFile, "source")}


# -- Markdown helpers ---------------------------------------------------------------------------
def _code(text: str) -> str:
    """Inline code that survives a table cell: a pipe inside backticks splits a GitHub table
    cell and stays escaped on the docs site, so such text is written as HTML with entities."""
    if "|" not in text:
        return f"`{text}`"
    escaped = "".join(f"&#{ord(c)};" if c in "|\\`*_[]<>&{}#" else c for c in text)
    return f"<code>{escaped}</code>"


def _prose(text: str) -> str:
    """Text with ``<`` outside code spans written as an entity, so that ``<data_dir>`` reads
    as text rather than as an HTML tag."""
    spans = text.split("`")
    return "`".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(spans))


def _cell(text: str) -> str:
    """Text for a table cell: one line, pipes escaped, no HTML tags."""
    return _prose(" ".join(text.split()).replace("|", "\\|"))


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" + ("" if n == 1 else "s")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _from_rst(text: str) -> str:
    """Docstring markup (``code``, :meth:`name`) as Markdown, paragraphs kept."""
    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", text).replace("``", "`")
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(text))
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


# -- configuration ------------------------------------------------------------------------------
_REQUIRED = object()  # a field without a default


@dataclass(frozen=True)
class KeyRow:
    """One configuration key: its dotted path, type with constraints, default and meaning."""

    key: str
    type: str
    default: str
    meaning: str


def _strip(tp: Any) -> tuple[Any, list[Any], str | None]:
    """``Annotated[T, ...]`` -> ``(T, constraints, discriminator)``."""
    if get_origin(tp) is not Annotated:
        return tp, [], None
    base, *extras = get_args(tp)
    constraints: list[Any] = []
    discriminator = None
    for extra in extras:
        if isinstance(extra, FieldInfo):
            constraints += extra.metadata
            if isinstance(extra.discriminator, str):
                discriminator = extra.discriminator
        else:
            constraints.append(extra)
    return base, constraints, discriminator


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    return get_args(tp) if get_origin(tp) in (Union, UnionType) else None


def _models_in(tp: Any) -> tuple[list[type[BaseModel]], bool]:
    """The model classes ``tp`` is (one, or a union of them) and whether it may be null."""
    args = _union_args(tp) or (tp,)
    nullable = NoneType in args
    members = [_strip(a)[0] for a in args if a is not NoneType]
    if members and all(_is_model(m) for m in members):
        return members, nullable
    return [], nullable


def _constraint_text(constraint: Any, base: Any) -> str | None:
    bounds = ((at.Gt, "gt", ">"), (at.Ge, "ge", ">="), (at.Lt, "lt", "<"), (at.Le, "le", "<="))
    for kind, attr, sign in bounds:
        if isinstance(constraint, kind):
            return f"{sign} {getattr(constraint, attr)}"
    unit = "item" if get_origin(base) in (list, dict) else "character"
    if isinstance(constraint, at.MinLen):
        return f"at least {_count(constraint.min_length, unit)}"
    if isinstance(constraint, at.MaxLen):
        return f"at most {_count(constraint.max_length, unit)}"
    pattern = getattr(constraint, "pattern", None)
    return f"matching {_code(pattern)}" if isinstance(pattern, str) else None


_TYPE_NAMES = {
    int: "integer",
    float: "number",
    str: "text",
    bool: "boolean",
    Path: "path",
    date: "date",
}


def _type_text(tp: Any, extra: Sequence[Any] = ()) -> str:
    """A type with its constraints in words: ``integer, > 0``, ``list of one of `s`, `t```."""
    base, constraints, _ = _strip(tp)
    constraints = [*extra, *constraints]
    args = _union_args(base)
    if args is not None:
        members = _models_in(base)[0]
        parts = [_type_text(a) for a in args if a is not NoneType]
        text = "mapping (keys below)" if members else " or ".join(parts)
        if NoneType in args:
            text += "; or `null`" if "," in text else " or `null`"
    elif get_origin(base) is Literal:
        text = "one of " + ", ".join(_code(str(v)) for v in get_args(base))
    elif get_origin(base) is list:
        text = f"list of {_type_text(get_args(base)[0])}"
    elif get_origin(base) is dict:
        key, value = get_args(base)
        name_rule = _type_text(key).removeprefix("text").lstrip(", ")
        names = f"names ({name_rule})" if name_rule else "names"
        text = f"mapping of {names} to {_type_text(value)}"
    elif _is_model(base):
        text = "mapping (keys below)"
    else:
        text = _TYPE_NAMES.get(base, getattr(base, "__name__", str(base)))
    words = [w for c in constraints if (w := _constraint_text(c, base))]
    return ", ".join([text, *words])


def _plain(value: Any) -> Any:
    """A default as the YAML a user would write: models as mappings of the keys that differ
    from their defaults (a single-valued ``type``/``mode`` tag always kept)."""
    if isinstance(value, BaseModel):
        out = {}
        for name, field in type(value).model_fields.items():
            item = getattr(value, name)
            tag = get_origin(field.annotation) is Literal and len(get_args(field.annotation)) == 1
            if tag or field.is_required() or item != field.get_default(call_default_factory=True):
                out[name] = _plain(item)
        return out
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return _path_text(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _path_text(path: Path) -> str:
    if path.is_absolute() and path.is_relative_to(PROJECT_ROOT):
        rel = path.relative_to(PROJECT_ROOT).as_posix()
        return "<project root>" + ("" if rel == "." else f"/{rel}")
    return path.as_posix()


def _default_text(value: Any) -> str:
    if value is _REQUIRED:
        return "required"
    plain = _plain(value)
    if isinstance(plain, dict | list):
        flow = yaml.safe_dump(plain, default_flow_style=True, sort_keys=False, width=10**6)
        return _code(flow.strip())
    if plain is None:
        return "`null`"
    if isinstance(plain, bool):
        return f"`{str(plain).lower()}`"
    if plain == "":
        return '`""`'
    return _code(str(plain))


def _own_doc(model: type[BaseModel]) -> str:
    """The model's docstring, or its nearest ancestor's below the shared base classes."""
    for cls in model.__mro__:
        if cls in (Strict, BaseModel):
            break
        doc = cls.__dict__.get("__doc__")
        if doc:
            return _prose(_from_rst(doc))
    return ""


@functools.cache  # inspect.getsource parses the whole module on every call
def _comments_of(model: type[BaseModel]) -> dict[str, str]:
    """The source comments on each field a class declares: the comment lines right above the
    field and any comment at the end of its lines."""
    try:
        source = textwrap.dedent(inspect.getsource(model))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, on a line of its own)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        text = tok.string.lstrip("#").strip()
        if tok.type == tokenize.COMMENT and not text.startswith(("fmt:", "type:", "noqa")):
            row, col = tok.start
            comments[row] = (text, not lines[row - 1][:col].strip())
    found = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        row = node.lineno - 1
        while row in comments and comments[row][1]:
            above.insert(0, comments[row][0])
            row -= 1
        end = node.end_lineno or node.lineno
        trailing = [
            comments[r][0]
            for r in range(node.lineno, end + 1)
            if r in comments and not comments[r][1]
        ]
        if above or trailing:
            found[node.target.id] = " ".join(above + trailing)
    return found


def _field_comment(model: type[BaseModel], name: str) -> str:
    for cls in model.__mro__:
        if cls in (Strict, BaseModel):
            break
        if name in inspect.get_annotations(cls):
            return _comments_of(cls).get(name, "")
    return ""


def _joined(*parts: str) -> str:
    """Non-empty texts as one, each but the last closed by a full stop if it has none."""
    texts = [p.strip() for p in parts if p and p.strip()]
    closed = [t if t.endswith((".", ":", ")")) else f"{t}." for t in texts[:-1]]
    return " ".join([*closed, *texts[-1:]])


def _value_of(field: FieldInfo, name: str, instance: BaseModel | None) -> Any:
    if instance is not None:
        return getattr(instance, name)
    if field.is_required():
        return _REQUIRED
    return field.get_default(call_default_factory=True)


def key_rows(
    model: type[BaseModel],
    prefix: str = "",
    instance: BaseModel | None = None,
    variant: str = "",
    skip: frozenset[str] = frozenset(),
) -> list[KeyRow]:
    """Every key under ``model`` as a dotted path, nested models, lists and mappings walked.
    Defaults come from ``instance`` when given (a parent's default may differ from the
    model's own: the churn split is not the MQL split), else from the model's fields."""
    rows: list[KeyRow] = []
    for name, field in model.model_fields.items():
        if name in skip or (model, name) in _LOADER_FIELDS:
            continue
        meaning = field.description or _field_comment(model, name)
        rows += _rows_of(
            prefix + name,
            field.annotation,
            field.metadata,
            field.discriminator if isinstance(field.discriminator, str) else None,
            _value_of(field, name, instance),
            meaning,
            variant,
        )
    return rows


def _rows_of(
    key: str,
    annotation: Any,
    metadata: Sequence[Any],
    discriminator: str | None,
    value: Any,
    meaning: str,
    variant: str,
) -> list[KeyRow]:
    base, constraints, inner = _strip(annotation)
    discriminator = discriminator or inner
    where = f"(with {variant})" if variant else ""
    models, nullable = _models_in(base)
    if models and discriminator:
        return _variant_rows(key, models, discriminator, value, meaning, where)
    if models:
        model = models[0]
        own = []
        doc = _own_doc(model)
        if nullable or meaning or doc:
            kind = "mapping (keys below)" + (" or `null`" if nullable else "")
            shown = (
                "" if isinstance(value, BaseModel) or value is _REQUIRED else _default_text(value)
            )
            own = [KeyRow(key, kind, shown, _joined(where, meaning, doc))]
        inst = value if isinstance(value, model) else None
        return own + key_rows(model, f"{key}.", inst, variant)
    row = KeyRow(
        key,
        _type_text(annotation, [*metadata, *constraints]),
        _default_text(value),
        _joined(where, meaning),
    )
    origin = get_origin(base)
    if origin is list:
        item, _, item_disc = _strip(get_args(base)[0])
        if _models_in(item)[0]:
            return [row, *_rows_of(f"{key}[]", item, [], item_disc, _REQUIRED, "", variant)]
    if origin is dict:
        item, _, item_disc = _strip(get_args(base)[1])
        if _models_in(item)[0]:
            return [row, *_rows_of(f"{key}.<name>", item, [], item_disc, _REQUIRED, "", variant)]
    return [row]


def _variant_rows(
    key: str,
    models: list[type[BaseModel]],
    tag: str,
    value: Any,
    meaning: str,
    where: str,
) -> list[KeyRow]:
    """A discriminated union: one row for the tag, then each variant's own keys."""
    tags = [get_args(m.model_fields[tag].annotation)[0] for m in models]
    if isinstance(value, tuple(models)):
        default = _code(str(getattr(value, tag)))
    else:
        default = "`null`" if value is None else "required"
    rows = [
        KeyRow(
            f"{key}.{tag}",
            "one of " + ", ".join(_code(str(t)) for t in tags),
            default,
            _joined(where, meaning, "The keys below depend on it."),
        )
    ]
    for model, name in zip(models, tags, strict=True):
        inst = value if isinstance(value, model) else None
        rows += key_rows(model, f"{key}.", inst, f"`{tag}: {name}`", frozenset({tag}))
    return rows


def _key_table(rows: Sequence[KeyRow]) -> str:
    return _table(
        ["key", "type", "default", "meaning"],
        [[_code(r.key), " ".join(r.type.split()), r.default, _cell(r.meaning)] for r in rows],
    )


def _is_plain_model(tp: Any) -> bool:
    models, nullable = _models_in(_strip(tp)[0])
    return len(models) == 1 and not nullable and models[0] is _strip(tp)[0]


def _config_sections(model: type[BaseModel], instance: BaseModel, prefix: str, level: int) -> str:
    """A heading per nested section; a section whose keys are all sections goes one deeper."""
    top: list[KeyRow] = []
    blocks: list[str] = []
    for name, field in model.model_fields.items():
        value = getattr(instance, name)
        key = prefix + name
        if not _is_plain_model(field.annotation):
            meaning = field.description or _field_comment(model, name)
            top += _rows_of(key, field.annotation, field.metadata, None, value, meaning, "")
            continue
        sub: type[BaseModel] = field.annotation  # type: ignore[assignment]
        head = f"{'#' * level} `{key}`"
        doc = _own_doc(sub)
        intro = "\n\n".join(p for p in (head, doc, _prose(_field_comment(model, name))) if p)
        if all(_is_plain_model(f.annotation) for f in sub.model_fields.values()):
            blocks.append(intro + "\n\n" + _config_sections(sub, value, f"{key}.", level + 1))
        else:
            blocks.append(intro + "\n\n" + _key_table(key_rows(sub, f"{key}.", value)))
    if top:
        blocks.insert(0, _key_table(top))
    return "\n\n".join(blocks)


def config_reference() -> str:
    """Every configuration key (main config, offers file, audiences file) as Markdown."""
    header = _GENERATED.format(
        source="core/config.py, core/offers.py and core/audiences.py", command=REGENERATE
    )
    defaults = Config.model_construct(
        **{
            name: field.get_default(call_default_factory=True)
            for name, field in Config.model_fields.items()
        }
    )
    return f"""{header}

# Configuration

Every file below is YAML, read by strict pydantic models: an unknown or misspelled key, or a
value out of its range, fails with the key's dotted name (`optuna.n_trails: unknown key`).
Relative paths resolve against the project root (the folder above `configs/` for a config kept
there, else the folder `funnel` runs in). On the command line,
`funnel --set section.key=value` overrides a key of the main config (the value is read as YAML)
before it is validated, e.g. `funnel --set optuna.n_trials=5 train mql`.

In the tables, `<name>` stands for a name you choose (a mapping's key), `[]` for each item of a
list, and *(with `type: redis`)* marks a key that applies only to that variant. A default of
`null` is often resolved when the config is loaded; the meaning says to what.

## Main config (`configs/local.yaml`, `configs/production.yaml`)

The model is `core.config.Config`; `funnel --config PATH` chooses the file (default
`configs/local.yaml`). How the keys are used: [architecture](../guides/architecture.md),
[training](../guides/training.md), [serving](../guides/serving.md),
[activation jobs](../guides/activation.md), [production profile](../guides/production.md).

{_config_sections(Config, defaults, "", 3)}

## Offers file (`configs/offers.yaml`)

The model is `core.offers.Offers`, read from `training.nbo.offers_file`. `control` (no offer)
is always an arm and cannot be an offer id; offer ids must be unique. See
[the offer catalogue](../guides/training.md#the-offer-catalogue).

{_key_table(key_rows(Offers))}

## Audiences file (`configs/audiences.yaml`)

The model is `core.audiences.AudiencesFile`, read from `jobs.audiences_file`. Destinations,
churn tiers, offers and audiences it names must exist. See
[audiences and campaigns](../guides/activation.md#audiences-and-campaigns).

{_key_table(key_rows(AudiencesFile))}
"""


# -- HTTP API -----------------------------------------------------------------------------------
_METHODS = ("get", "put", "post", "delete", "patch")


def _from_html(text: str) -> str:
    text = re.sub(r"</?code>", "`", text)
    text = re.sub(r"</?b>", "**", text)
    return _prose(_from_rst(text))


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _schema_link(name: str) -> str:
    return f"[`{name}`](#{name.lower()})"


def _schema_type(schema: dict[str, Any]) -> str:
    """A JSON schema in words, with its bounds; references link to their section."""
    if "$ref" in schema:
        return _schema_link(_ref_name(schema["$ref"]))
    if "anyOf" in schema:
        parts = [_schema_type(s) for s in schema["anyOf"]]
        text = " or ".join(p for p in parts if p != "`null`")
        if "`null`" in parts:
            text += "; or `null`" if "," in text else " or `null`"
        return text
    kind = schema.get("type")
    if kind == "null":
        return "`null`"
    if "enum" in schema:
        return "one of " + ", ".join(_code(str(v)) for v in schema["enum"])
    if kind == "array":
        text = f"list of {_schema_type(schema.get('items', {}))}"
    elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        text = f"mapping of text to {_schema_type(schema['additionalProperties'])}"
    else:
        text = {"string": "text", "object": "object"}.get(kind or "", kind or "any")
        if schema.get("format"):
            text += f" ({schema['format']})"
    bounds = [
        (f"at least {_count(schema['minLength'], 'character')}" if "minLength" in schema else ""),
        (f"at most {_count(schema['maxLength'], 'character')}" if "maxLength" in schema else ""),
        (f"at least {_count(schema['minItems'], 'item')}" if "minItems" in schema else ""),
        (f"at most {_count(schema['maxItems'], 'item')}" if "maxItems" in schema else ""),
        (f">= {schema['minimum']:g}" if "minimum" in schema else ""),
        (f"> {schema['exclusiveMinimum']:g}" if "exclusiveMinimum" in schema else ""),
        (f"<= {schema['maximum']:g}" if "maximum" in schema else ""),
        (f"< {schema['exclusiveMaximum']:g}" if "exclusiveMaximum" in schema else ""),
    ]
    return ", ".join([text, *(b for b in bounds if b)])


def _schema_table(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        about = _from_rst(prop.get("description", ""))
        if prop.get("examples"):
            about = _joined(about, "Example: " + ", ".join(_code(str(e)) for e in prop["examples"]))
        rows.append(
            [_code(name), _schema_type(prop), "yes" if name in required else "no", _cell(about)]
        )
    return _table(["field", "type", "required", "meaning"], rows)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield _ref_name(value)
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _used_schemas(document: dict[str, Any]) -> list[str]:
    """The schemas the routes reach, directly or through other schemas, in document order."""
    schemas = document.get("components", {}).get("schemas", {})
    seen: set[str] = set()
    todo = list(_refs(document.get("paths", {})))
    while todo:
        name = todo.pop()
        if name not in seen and name in schemas:
            seen.add(name)
            todo += list(_refs(schemas[name]))
    return [name for name in schemas if name in seen]


def _auth_text(document: dict[str, Any], security: list[dict[str, Any]]) -> str:
    schemes = document.get("components", {}).get("securitySchemes", {})
    ways = []
    for requirement in security:
        for name in requirement:
            scheme = schemes.get(name, {})
            if scheme.get("type") == "apiKey":
                ways.append(f"`{scheme['name']}: <key>` ({scheme.get('in', 'header')})")
            elif scheme.get("type") == "http" and scheme.get("scheme") == "bearer":
                ways.append("`Authorization: Bearer <key>` (header)")
            else:
                ways.append(f"`{name}`")
    return "the API key, as " + " or ".join(ways)


def _operation(document: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> str:
    parts = [f"### `{method.upper()} {path}`"]
    about = _joined(op.get("summary", ""), _from_html(op.get("description", "")))
    if about and not about.endswith((".", ")")):
        about += "."
    if about:
        parts.append(about)
    if op.get("security"):
        parts.append(f"Needs {_auth_text(document, op['security'])}.")
    body = op.get("requestBody")
    if body:
        for media, content in body.get("content", {}).items():
            schema = content.get("schema", {})
            need = "required" if body.get("required") else "optional"
            parts.append(f"Request body ({media}, {need}): {_schema_type(schema)}")
            if "$ref" in schema:
                target = document["components"]["schemas"][_ref_name(schema["$ref"])]
                parts.append(_schema_table(target))
    rows = []
    for status, response in sorted(op.get("responses", {}).items()):
        bodies = [_schema_type(c.get("schema", {})) for c in response.get("content", {}).values()]
        headers = [
            f"header `{h}`: {_cell(spec.get('description', ''))}"
            for h, spec in response.get("headers", {}).items()
        ]
        rows.append(
            [
                f"`{status}`",
                _cell(_from_html(response.get("description", ""))),
                "; ".join(bodies + headers) or "-",
            ]
        )
    parts.append(_table(["status", "when", "body"], rows))
    return "\n\n".join(parts)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document the service serves at ``/docs.json``, without starting it."""
    return FunnelService.openapi_spec.asdict()


def api_reference(document: dict[str, Any] | None = None) -> str:
    """Routes, methods, request and response schemas and status codes as Markdown."""
    document = openapi_document() if document is None else document
    header = _GENERATED.format(
        source="the OpenAPI document of serving.service.FunnelService", command=REGENERATE
    )
    groups: dict[str, list[str]] = {}
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                op = item[method]
                group = "Scoring routes" if op.get("security") else "Infrastructure routes"
                groups.setdefault(group, []).append(_operation(document, path, method, op))
    sections = [f"## {name}\n\n" + "\n\n".join(ops) for name, ops in groups.items()]
    schemas = document.get("components", {}).get("schemas", {})
    described = []
    for name in _used_schemas(document):
        schema = schemas[name]
        parts = [f"### {name}"]
        if schema.get("description"):
            parts.append(_from_rst(schema["description"]))
        if schema.get("additionalProperties") is False:
            parts.append("Unknown fields are refused (422).")
        parts.append(_schema_table(schema))
        described.append("\n\n".join(parts))
    if described:
        sections.append("## Schemas\n\n" + "\n\n".join(described))
    body = "\n\n".join(sections)
    return f"""{header}

# HTTP API

The scoring service (`funnel serve`, or `bentoml serve serving.service:FunnelService`) serves
its OpenAPI document at `GET /docs.json`; this page is that document in words. How to call it,
with examples, and what each answer means: [the serving guide](../guides/serving.md).

{body}
"""


# -- command line -------------------------------------------------------------------------------
def _commands(
    command: click.Command, name: str, parent: click.Context | None
) -> Iterator[tuple[click.Context, click.Command]]:
    """Every command under ``command``, depth first, each with its context. A group that makes
    commands on the fly (``funnel train <imported table>``) shows one under the name NAME."""
    ctx = click.Context(command, info_name=name, parent=parent)
    yield ctx, command
    if not isinstance(command, click.Group):
        return
    names = command.list_commands(ctx)
    dynamic = type(command).get_command is not click.Group.get_command
    for sub_name in [*names, "NAME"] if dynamic else names:
        sub = command.get_command(ctx, sub_name)
        if sub is not None:
            yield from _commands(sub, sub_name, ctx)


def _command_section(ctx: click.Context, command: click.Command) -> str:
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    parts = [f"## `{ctx.command_path}`", f"```\n{usage}\n```"]
    if command.help:
        parts.append(_prose(_from_rst(command.help.split("\f")[0])))
    arguments = [p for p in command.get_params(ctx) if isinstance(p, click.Argument)]
    if arguments:
        names = ", ".join(f"`{p.make_metavar(ctx)}`" for p in arguments)
        parts.append(f"Arguments: {names}.")
    options = []
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option) or "--help" in param.opts:
            continue
        record = param.get_help_record(ctx)
        if record:
            flags, text = record
            options.append(f"- `{flags}`" + (f": {_prose(' '.join(text.split()))}" if text else ""))
    if options:
        parts.append("Options:\n\n" + "\n".join(options))
    if isinstance(command, click.Group):
        subs = [f"`{s}`" for s in command.list_commands(ctx)]
        parts.append("Commands: " + ", ".join(subs) + ".")
    return "\n\n".join(parts)


def cli_reference() -> str:
    """Every `funnel` command with its usage, help and options as Markdown."""
    header = _GENERATED.format(source="the click commands of app/cli.py", command=REGENERATE)
    sections = [_command_section(ctx, cmd) for ctx, cmd in _commands(cli.main, "funnel", None)]
    body = "\n\n".join(sections)
    return f"""{header}

# Command line

`funnel` is installed with the project (`uv run funnel ...`, or `funnel` with `.venv`
activated). Every command accepts `--help`. The options of `funnel` itself (`--config`,
`--set`) go before the subcommand: `funnel --set optuna.n_trials=5 train mql`. Bad input is
refused with one line naming what is wrong and exit code 1 (2 for a malformed option); the
jobs also exit with 3 (another run holds the lease) and 4 (some messages wait for the next
run). What the commands do together: [getting started](../getting-started.md).

{body}
"""


# -- the pages ----------------------------------------------------------------------------------
def pages() -> dict[Path, str]:
    """The generated pages, by path relative to the project root."""
    return {
        REFERENCE_DIR / "configuration.md": config_reference(),
        REFERENCE_DIR / "api.md": api_reference(),
        REFERENCE_DIR / "cli.md": cli_reference(),
    }


def stale_pages(root: Path = PROJECT_ROOT, generated: dict[Path, str] | None = None) -> list[Path]:
    """The generated pages whose file under ``root`` is missing or differs from the code."""
    generated = pages() if generated is None else generated
    return [
        rel
        for rel, text in generated.items()
        if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != text
    ]


def write_pages(root: Path = PROJECT_ROOT) -> list[Path]:
    """Write every generated page under ``root``; returns the ones that changed."""
    generated = pages()
    changed = stale_pages(root, generated)
    for rel in changed:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(generated[rel], encoding="utf-8")
    return changed


def main(argv: Sequence[str] | None = None, root: Path = PROJECT_ROOT) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.reference", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a generated page is out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages(root)
        for rel in stale:
            print(f"{rel.as_posix()} is out of date: run `{REGENERATE}`", file=sys.stderr)
        return 1 if stale else 0
    for rel in write_pages(root):
        print(f"wrote {rel.as_posix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
