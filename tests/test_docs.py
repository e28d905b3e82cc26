"""The docs stay true to the tree: README.md and docs/*.md link only to files and headings that exist, name only
config keys the schema has, and their config snippets validate; the README stays a five-minute read.

"A config key named in the docs" is an inline code span (outside fenced blocks) whose text, before any `: value`,
is a dotted path of two or more segments, each an identifier or a `<placeholder>`, not ending in a file extension,
and whose first segment is either
- a top-level key of the schema (`corpus.synthetic.keyword`, `students.<name>.seed`): resolved from the root; or
- the name of an object-valued key below the top (`train.head_lr_scale`, `arch.frontend`, `options.weighting`):
  resolved under every key of that name, and it must resolve under at least one.
A `<placeholder>` matches any key of the object it indexes (`properties`, `patternProperties` or
`additionalProperties`); a concrete name under `additionalProperties` must satisfy `propertyNames`; `$ref`, `oneOf`,
`anyOf` and `allOf` are followed. The schema leaves two objects open (a student's method `options`, a dataset's
adapter `options`); keys under them must be an option of some method (`OPTIONS`) or some adapter (its signature).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml

from pipeline.checks import check_config
from pipeline.config import SCHEMA

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 12_000
# Pages written on another branch and named before they are merged; a missing one is not an error. Remove an entry
# once its page is in the tree.
PENDING: set[str] = set()
# Files outside docs/ that point into the docs (`docs/<page>.md#anchor`, `README "Heading"`) are checked too.
MENTION_SUFFIXES = {".py", ".yaml", ".yml", ".smk", ".md", ".sh", ".toml", ".cfg", ""}
SKIP_DIRS = {".git", ".venv", ".snakemake", "node_modules", "__pycache__", ".ruff_cache", ".pytest_cache"}
FILE_EXTENSIONS = {"py", "md", "yaml", "yml", "json", "tsv", "csv", "npz", "pt", "zarr", "png", "html", "tex",
                   "safetensors", "smk", "txt", "sh", "toml", "wav", "flac", "log"}

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
SEGMENT = r"(?:[A-Za-z_]\w*|<[\w-]+>)"
KEY_PATH = re.compile(rf"^[A-Za-z_]\w*(?:\.{SEGMENT})+$")
MENTION = re.compile(r"(?<![\w/.-])((?:docs/[\w-]+|bench/README|README)\.md)(#[\w-]+)?")
SECTION_MENTION = re.compile(r"(?<![\w/.-])(README|(?:docs/[\w-]+|bench/README|README)\.md)(?:'s)?,? \"([^\"\n]+)\"")


# --- markdown ---------------------------------------------------------------------------------------------------

def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text lower-cased, punctuation but `-` and `_` dropped, spaces as
    hyphens (github-slugger)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = text.replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, repeated headings numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    out = set()
    for _, text in HEADING.findall(prose(path.read_text())):
        base = slug(text)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(text: str) -> list[str]:
    """Targets of the markdown links and images in prose (not inside code)."""
    return LINK.findall(CODE_SPAN.sub("", prose(text)))


def broken_target(source: Path, target: str) -> str | None:
    """Why `target` (a link or mention in `source`) points at nothing, or None if it resolves."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target):  # http:, https:, mailto:
        return None
    file_part, _, anchor = target.partition("#")
    dest = (source.parent / file_part).resolve() if file_part else source
    if not dest.exists():
        try:
            rel = dest.relative_to(ROOT).as_posix()
        except ValueError:
            rel = str(dest)
        return None if rel in PENDING else f"{target}: no such file {rel}"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"{target}: no heading with anchor #{anchor} in {dest.relative_to(ROOT)}"
    return None


def broken_links(path: Path) -> list[str]:
    return [f"{path.relative_to(ROOT)}: {err}" for t in links(path.read_text())
            if (err := broken_target(path, t))]


# --- config keys -------------------------------------------------------------------------------------------------

def key_values(text: str) -> list[tuple[str, str | None]]:
    """The config key paths named in prose, with the value after `: ` where a span gives one (see the module
    docstring)."""
    out = []
    for span in CODE_SPAN.findall(prose(text)):
        key, sep, value = span.partition(":")
        key = key.strip()
        if KEY_PATH.match(key) and key.rsplit(".", 1)[-1].lower() not in FILE_EXTENSIONS:
            out.append((key, value.strip() if sep else None))
    return out


def key_paths(text: str) -> list[str]:
    return [key for key, _ in key_values(text)]


def _deref(node: dict, schema: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target = schema
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _name_ok(names: dict | None, key: str) -> bool:
    if not names:
        return True
    if "enum" in names and key not in names["enum"]:
        return False
    if "pattern" in names and not re.search(names["pattern"], key):
        return False
    return not ("not" in names and "enum" in names["not"] and key in names["not"]["enum"])


def _children(node: dict, where: tuple[str, ...], seg: str, schema: dict,
              open_vocab: dict[tuple[str, ...], set[str]]) -> list[tuple[dict, tuple[str, ...]]]:
    """The schema nodes (with their paths, `*` for any name) that key `seg` of an object at `node` may be."""
    node = _deref(node, schema)
    out: list[tuple[dict, tuple[str, ...]]] = []
    for combo in ("oneOf", "anyOf", "allOf"):
        for branch in node.get(combo, []):
            out += _children(branch, where, seg, schema, open_vocab)
    placeholder = seg.startswith("<")
    props = node.get("properties", {})
    if placeholder:
        out += [(sub, (*where, name)) for name, sub in props.items()]
    elif seg in props:
        out.append((props[seg], (*where, seg)))
    for pattern, sub in node.get("patternProperties", {}).items():
        if placeholder or re.search(pattern, seg):
            out.append((sub, (*where, "*")))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and (placeholder or _name_ok(node.get("propertyNames"), seg)):
        out.append((extra, (*where, "*")))
    elif extra is None and node.get("type") == "object" and not props and "patternProperties" not in node:
        vocab = open_vocab.get(where)  # an open object: any key, or one of the registry's known ones
        if placeholder or vocab is None or seg in vocab:
            out.append(({}, (*where, "*")))
    return out


def resolve(node: dict, where: tuple[str, ...], segments: list[str], schema: dict,
            open_vocab: dict[tuple[str, ...], set[str]]) -> list[dict]:
    """The schema nodes the key path `segments` below `node` may name (none: no such key)."""
    frontier = [(node, where)]
    for seg in segments:
        frontier = [c for n, w in frontier for c in _children(n, w, seg, schema, open_vocab)]
    return [n for n, _ in frontier]


def value_fits(nodes: list[dict], value: str | None, schema: dict) -> bool:
    """A value written after the key (`arch.frontend: logmel`) is one that some node allows."""
    if value is None or not nodes:
        return bool(nodes)
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return False
    defs = {"$defs": schema.get("$defs", {})}
    return any(jsonschema.Draft202012Validator({**_deref(n, schema), **defs}).is_valid(parsed) for n in nodes)


def named_objects(schema: dict) -> dict[str, list[tuple[dict, tuple[str, ...]]]]:
    """Every key below the top level whose value can hold keys, by name: where a relative path may start."""
    found: dict[str, list[tuple[dict, tuple[str, ...]]]] = {}

    def holds_keys(node: dict) -> bool:
        node = _deref(node, schema)
        return (node.get("type") == "object" or "properties" in node or "additionalProperties" in node
                or any(holds_keys(b) for c in ("oneOf", "anyOf", "allOf") for b in node.get(c, [])))

    def walk(node: dict, where: tuple[str, ...], seen: set[int]) -> None:
        node = _deref(node, schema)
        if id(node) in seen:
            return
        seen = seen | {id(node)}
        for combo in ("oneOf", "anyOf", "allOf"):
            for branch in node.get(combo, []):
                walk(branch, where, seen)
        subs = [(name, sub) for name, sub in node.get("properties", {}).items()]
        subs += [("*", sub) for sub in node.get("patternProperties", {}).values()]
        if isinstance(node.get("additionalProperties"), dict):
            subs.append(("*", node["additionalProperties"]))
        for name, sub in subs:
            if len(where) >= 1 and name != "*" and holds_keys(sub):
                found.setdefault(name, []).append((sub, (*where, name)))
            walk(sub, (*where, name), seen)

    walk(schema, (), set())
    return found


def open_vocabulary() -> dict[tuple[str, ...], set[str]]:
    """Keys allowed under the objects the schema leaves open: method options and adapter options."""
    from pipeline.corpus.adapters import ADAPTERS, adapter_options
    from pipeline.distill.methods import METHODS

    return {("students", "*", "options"): {k for m in METHODS.values() for k in m.OPTIONS},
            ("corpus", "datasets", "*", "options"): {k for a in ADAPTERS for k in adapter_options(a)}}


def unknown_keys(text: str, schema: dict, open_vocab: dict[tuple[str, ...], set[str]]) -> list[str]:
    """The key paths named in `text` that the schema does not have."""
    top = schema["properties"]
    relative = named_objects(schema)
    bad = []
    for key, value in key_values(text):
        first, *rest = key.split(".")
        if first in top:
            nodes = resolve(top[first], (first,), rest, schema, open_vocab)
        elif first in relative:
            nodes = [m for n, w in relative[first] for m in resolve(n, w, rest, schema, open_vocab)]
        else:
            continue  # not a config key: a module path, a Python attribute, ...
        if not value_fits(nodes, value, schema):
            bad.append(key if value is None else f"{key}: {value}")
    return bad


def yaml_snippets(text: str) -> Iterator[str]:
    for match in re.finditer(r"^```ya?ml[^\n]*\n(.*?)^```", text, re.M | re.S):
        yield match.group(1)


def merged(base: dict, extra: dict) -> dict:
    """`extra` merged into `base` key by key (as snippets are meant to be added to config.yaml)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


@pytest.fixture(scope="module")
def schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


@pytest.fixture(scope="module")
def vocab() -> dict[tuple[str, ...], set[str]]:
    return open_vocabulary()


# --- tests -------------------------------------------------------------------------------------------------------

def test_readme_is_short() -> None:
    size = len((ROOT / "README.md").read_text())
    assert size <= README_LIMIT, f"README.md has {size:,} characters; at most {README_LIMIT:,} (move detail to docs/)"


def test_every_reference_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links((ROOT / "README.md").read_text())}
    missing = [p.name for p in DOCS[1:] if p.resolve() not in linked]
    assert not missing, f"docs pages not linked from README.md: {missing}"


def test_every_page_links_back_to_the_readme() -> None:
    for page in DOCS[1:]:
        first_lines = "\n".join(page.read_text().splitlines()[:4])
        assert "(../README.md)" in first_lines, f"{page.name}: no link back to the README near the top"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_links_resolve(path: Path) -> None:
    assert not broken_links(path)


def _mention_files() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        if (path.is_file() and path != Path(__file__).resolve() and path.suffix in MENTION_SUFFIXES
                and not set(rel.parts) & SKIP_DIRS and not rel.parts[0].startswith("results")):
            yield path


def broken_mentions(path: Path, text: str) -> list[str]:
    """Paths into the docs (`docs/x.md#anchor`, relative to the repository root) and quoted section names
    (`README "Heading"`, the start of a heading is enough) in any file, that point at nothing."""
    errors = []
    for file_part, anchor in MENTION.findall(text):
        if err := broken_target(ROOT / "x", file_part + anchor):
            errors.append(f"{path.relative_to(ROOT)}: {err}")
    for file_part, heading in SECTION_MENTION.findall(text):
        page = ROOT / (file_part if file_part.endswith(".md") else file_part + ".md")
        if page.exists() and not any(a.startswith(slug(heading)) for a in anchors(page)):
            errors.append(f"{path.relative_to(ROOT)}: {file_part} has no section \"{heading}\"")
    return errors


def test_mentions_of_docs_resolve_everywhere() -> None:
    errors = []
    for path in _mention_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        errors += broken_mentions(path, text)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_config_keys_exist_in_the_schema(path: Path, schema: dict, vocab: dict) -> None:
    assert not unknown_keys(path.read_text(), schema, vocab)


def test_the_docs_name_config_keys(schema: dict, vocab: dict) -> None:
    """The key check has something to check: the docs name keys, absolute and relative, with placeholders."""
    named = {k for p in DOCS for k in key_paths(p.read_text())}
    assert {"downstream.tasks.<task>", "views.indomain.snr_db", "train.head_lr_scale"} <= named


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_config_snippets_validate(path: Path, schema: dict) -> None:
    """A YAML block made of top-level config keys, added to config.yaml, gives a valid config."""
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    for snippet in yaml_snippets(path.read_text()):
        extra = yaml.safe_load(snippet)
        if isinstance(extra, dict) and set(extra) <= set(schema["properties"]):
            check_config(merged(base, extra))


# --- the checks themselves catch what they are for ---------------------------------------------------------------

def test_slug_follows_github() -> None:
    assert slug("What the default run produces (`results/`)") == "what-the-default-run-produces-results"
    assert slug("Faults, bad input and determinism") == "faults-bad-input-and-determinism"
    assert slug("Using a trained student: start here") == "using-a-trained-student-start-here"
    assert slug("Running on a cluster (Slurm)") == "running-on-a-cluster-slurm"
    assert slug("`students.<name>.seed` and [a link](x.md)") == "studentsnameseed-and-a-link"
    assert slug("The student recipe") == "the-student-recipe"


def test_a_made_up_key_is_reported(schema: dict, vocab: dict) -> None:
    good = ("`corpus.synthetic.keyword`, `downstream.tasks.<task>.upstreams`, `students.<name>.seed`, "
            "`train.head_lr_scale`, `views.indomain.snr_db`, `teachers.<name>.layers.relative`, "
            "`corpus.tasks.ks`, `corpus.datasets.<name>.options.test_session`, `options.weighting`, "
            "`arch.frontend: logmel`, `downstream.upstreams: all`, `teachers.<name>.layers: {relative: [0.5]}`, "
            "`pipeline.workflow.canonical`, `train.py`, `config.json`")
    assert unknown_keys(good, schema, vocab) == []
    made_up = ["corpus.synthetic.keywords", "students.<name>.train.head_lr", "train.head_lr",
               "downstream.tasks.<task>.epochs", "corpus.tasks.speaker_id", "views.indomain.snr",
               "students.<name>.options.weightin", "teachers.<name>.layers.relativ", "seed.value",
               "arch.frontend: mel", "cache.dtype: float8", "downstream.tasks.<task>.schedule: cosine"]
    text = " ".join(f"`{k}`" for k in made_up)
    assert unknown_keys(text, schema, vocab) == made_up


def test_a_broken_link_is_reported(tmp_path: Path) -> None:
    page = ROOT / "docs" / "example.md"  # never written: only its parent directory matters
    assert broken_target(page, "../README.md#two-commands") is None
    assert broken_target(page, "configuration.md#teachers") is None
    assert broken_target(page, "https://example.org/missing") is None
    assert broken_target(page, "made-up.md") is not None
    assert broken_target(page, "../README.md#no-such-heading") is not None
    assert links("[a](x.md) `[b](y.md)` ![c](z.png)\n```\n[d](w.md)\n```\n") == ["x.md", "z.png"]
    assert broken_mentions(ROOT / "config.yaml", "see docs/made-up.md and README \"No such section\"") == [
        "config.yaml: docs/made-up.md: no such file docs/made-up.md",
        "config.yaml: README has no section \"No such section\""]
