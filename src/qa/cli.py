"""The `qa` command: thin click commands over the library. JSON for machines (`--json`), plain text for people.

Standard output carries only results; progress, warnings and logs go to standard error.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

import click

from . import __version__
from .documents import CorpusError
from .index import IndexUnavailable
from .onnx_embedding import QUERY_ENCODERS
from .settings import BY_NAME

EXIT_UNAVAILABLE = 2


def setting_option(name: str, **overrides) -> Callable:
    """A click option made from the settings table: flag, environment variable, default and help."""
    s = BY_NAME[name]
    kwargs = dict(envvar=s.env, default=s.default, show_default=s.default not in (None, ""),
                  type=click.INT if s.type is int else (click.FLOAT if s.type is float else click.STRING),
                  help=f"{s.help} [env: {s.env}]")
    kwargs.update(overrides)
    return click.option(s.option, name, **kwargs)


def paths_options(f: Callable) -> Callable:
    return setting_option("corpus")(setting_option("index")(f))


def query_encoder_option(f: Callable) -> Callable:
    """`--query-encoder`; the choice goes into the environment, where every query encoder this process (or its
    server workers) opens reads it."""
    def remember(ctx: click.Context, param: click.Parameter, value: str) -> str:
        os.environ[BY_NAME["query_encoder"].env] = value
        return value

    return setting_option("query_encoder", type=click.Choice(QUERY_ENCODERS), callback=remember,
                          expose_value=False)(f)


def fail(message: str, status: int = EXIT_UNAVAILABLE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def progress_bar(items: Iterable, total: int, label: str) -> Iterable:
    from tqdm import tqdm

    return tqdm(items, total=total, desc=f"embedding {label}", unit="batch", file=sys.stderr, leave=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qa")
def main() -> None:
    """Ask questions of the documents in a folder; get back their own passages, ranked and cited."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("sentence_transformers", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_build(corpus: str, index: str) -> None:
    """Build the index, reporting to standard error; exit 2 with a one-line message when it cannot."""
    from .engine import check_fresh, load_index
    from .index import build
    from .onnx_embedding import build_encoder, has_export

    try:
        live = load_index(Path(index))
        check_fresh(live, Path(corpus))
    except IndexUnavailable:
        pass  # missing, damaged or stale: build
    else:
        if has_export(live.path):
            click.echo(f"index is up to date (build {live.build_id}): nothing to do", err=True)
            return
        click.echo("index has no ONNX export of the query encoder: rebuilding (its vectors are reused)", err=True)
    try:
        with build_encoder(Path(index)) as (embedder, extras):
            report = build(Path(corpus), Path(index), embedder, progress=progress_bar, extras=extras)
    except CorpusError as exc:
        fail(str(exc))
    except ImportError as exc:  # no export to reuse, and no model or torch to make one (a serving-only install)
        fail(f"cannot build: {exc}; build it once where the project is fully installed (`make install`)")
    for doc_id in report.skipped:
        click.echo(f"skipped {doc_id}: not UTF-8 text", err=True)
    click.echo(
        f"built {report.build_id}: {report.chunks} chunks in {report.seconds:.1f} s "
        f"(added {len(report.added)}, changed {len(report.changed)}, removed {len(report.removed)}, "
        f"unchanged {len(report.unchanged)})", err=True)


@main.command("build")
@paths_options
def build_command(corpus: str, index: str) -> None:
    """Build the index from the corpus (only changed documents are re-embedded)."""
    run_build(corpus, index)


def open_for_cli(corpus: str, index: str, threshold: float | None = None):
    from .engine import open_searcher

    try:
        return open_searcher(Path(index), Path(corpus), threshold)
    except IndexUnavailable as exc:
        fail(str(exc))


def print_plain(response: dict) -> None:
    if not response["answerable"]:
        click.echo("The document does not seem to answer this. Closest passages:\n")
    for r in response["results"]:
        click.echo(f"{r['rank']}. {r['document_title']} › {r['section']} › ¶ {r['paragraph']}  "
                   f"(score {r['score']:.3f})")
        marks = r["highlights"][0] if r["highlights"] else None
        text = r["text"]
        if marks:
            a, b = marks["start"] - r["start"], marks["end"] - r["start"]
            text = text[:a] + click.style(text[a:b], bold=True) + text[b:]
        click.echo(click.wrap_text(text, width=100, initial_indent="   ", subsequent_indent="   ",
                                   preserve_paragraphs=True))
        click.echo()


def error_object(exc: Exception) -> dict:
    code = getattr(exc, "code", "invalid_parameter")
    return {"error": {"code": code, "message": getattr(exc, "message", str(exc))}}


def answer_line(searcher, line: str, k: int, document: str | None) -> dict:
    """One line of standard input: a question, or a JSON object {"q", "k", "document"}."""
    from .search import QueryError

    try:
        if line.lstrip().startswith("{"):
            try:
                request = json.loads(line)
            except ValueError:
                raise QueryError("line is not valid JSON", "invalid_json")
            if not isinstance(request, dict):
                raise QueryError("a JSON line must be an object", "invalid_json")
            return searcher.search(request.get("q"), request.get("k", k), request.get("document", document))
        return searcher.search(line, k, document)
    except QueryError as exc:
        return error_object(exc)


@main.command("search")
@click.argument("question", required=False)
@click.option("--k", "k", default=5, show_default=True, type=click.IntRange(1, 50), help="Number of passages.")
@click.option("--document", default=None, help="Search only this document (its id).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON. Without QUESTION: one per stdin line.")
@setting_option("answerable_threshold")
@query_encoder_option
@paths_options
def search_command(question: str | None, k: int, document: str | None, as_json: bool,
                   answerable_threshold: float | None, corpus: str, index: str) -> None:
    """Print the passages that answer QUESTION, best first."""
    from .search import QueryError

    if question is None and not as_json:
        fail("give a QUESTION, or use --json to read questions from standard input", 1)
    searcher = open_for_cli(corpus, index, answerable_threshold)
    if question is None:
        for line in sys.stdin:
            click.echo(json.dumps(answer_line(searcher, line.rstrip("\n"), k, document), ensure_ascii=False))
        return
    try:
        response = searcher.search(question, k, document)
    except QueryError as exc:
        if as_json:
            click.echo(json.dumps(error_object(exc)))
        fail(exc.message, 1)
    if as_json:
        click.echo(json.dumps(response, ensure_ascii=False))
    else:
        print_plain(response)


@main.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@paths_options
def info_command(as_json: bool, corpus: str, index: str) -> None:
    """Show the live index's manifest, its documents and whether it is stale."""
    from .engine import load_index, staleness

    try:
        loaded = load_index(Path(index))
    except IndexUnavailable as exc:
        fail(str(exc))
    reasons = staleness(loaded, Path(corpus))
    documents = [{"id": d.id, "title": d.title, "sections": len(d.sections)} for d in loaded.documents.values()]
    info = {"build": loaded.build_id, "manifest": loaded.manifest, "documents": documents,
            "stale": bool(reasons), "stale_reasons": reasons}
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=1))
        return
    m = loaded.manifest
    click.echo(f"build      {loaded.build_id} ({m['built_at']})")
    click.echo(f"model      {m['model']['id']} ({m['model']['version']}), {m['dimension']} dimensions")
    click.echo(f"chunking   {m['chunking']}")
    click.echo(f"chunks     {m['chunks']} in {len(documents)} document(s), FAISS {m['faiss']}")
    encoders = "exact" + (", int8" if (m.get("onnx") or {}).get("int8") else "") if m.get("onnx") else "none"
    click.echo(f"encoders   ONNX export: {encoders}; queries use {BY_NAME['query_encoder'].from_env()} "
               f"(--query-encoder, {BY_NAME['query_encoder'].env})")
    for d in documents:
        click.echo(f"  {d['id']}: {d['title']} ({d['sections']} sections)")
    click.echo("status     " + (f"STALE: {'; '.join(reasons)} (run `qa build`)" if reasons else "fresh"))


@main.command("serve")
@setting_option("host")
@setting_option("port")
@setting_option("workers")
@setting_option("answerable_threshold")
@setting_option("onnx_threads")
@query_encoder_option
@setting_option("rate_limit")
@setting_option("cors_origins")
@paths_options
@click.option("--no-build", is_flag=True, help="Never build: serve the index as it is (read-only deployments).")
@click.option("--dev", is_flag=True, help="Flask's development server with the reloader.")
def serve_command(host: str, port: int, workers: int, answerable_threshold: float | None, onnx_threads: int,
                  rate_limit: str | None, cors_origins: str, corpus: str, index: str, no_build: bool,
                  dev: bool) -> None:
    """Serve the web page and JSON API (gunicorn, threaded workers), building a missing or stale index first."""
    from .engine import check_fresh
    from .index import load

    if not no_build:
        try:
            check_fresh(load(Path(index)), Path(corpus))
        except IndexUnavailable as exc:
            click.echo(f"{exc}: building now", err=True)
            run_build(corpus, index)
    os.environ[BY_NAME["onnx_threads"].env] = str(onnx_threads)  # read by each worker's query encoder
    config = {"CORPUS": corpus, "INDEX": index, "ANSWERABLE_THRESHOLD": answerable_threshold,
              "RATE_LIMIT": rate_limit, "CORS_ORIGINS": cors_origins}
    from .server import run

    run(config, host=host, port=port, workers=workers, dev=dev)


@main.command("eval")
@click.argument("questions", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the figures (and `misses`) as JSON.")
@click.option("--paragraph-evidence", is_flag=True, help="Evidence is whole paragraphs: half the shorter span hits.")
@click.option("--mode", type=click.Choice(["restricted", "unrestricted", "per-document"]), default="restricted",
              show_default=True, help="Items naming a `document`: search only it, search all, or build a fresh "
                                      "index per document.")
@setting_option("answerable_threshold")
@click.option("--calibration", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A calibration.json saved by `qa tune` (default: the index folder's, else the shipped one).")
@query_encoder_option
@paths_options
def eval_command(questions: str, as_json: bool, paragraph_evidence: bool, mode: str,
                 answerable_threshold: float | None, calibration: str | None, corpus: str, index: str) -> None:
    """Score the search on a labelled JSONL question set (10 results per question)."""
    from .confidence import load_calibration
    from .evaluation import run_evaluation

    try:
        chosen = load_calibration(Path(calibration).parent, Path(calibration).name) if calibration else None
        figures, misses = run_evaluation(Path(questions), Path(corpus), Path(index), mode=mode,
                                         shorter=paragraph_evidence, threshold=answerable_threshold,
                                         progress=progress_bar, calibration=chosen)
    except (IndexUnavailable, CorpusError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps({**figures, "misses": [list(m) for m in misses]}, ensure_ascii=False, indent=1))
        return
    for key, value in figures.items():
        if isinstance(value, dict):
            click.echo(f"{key}: " + ", ".join(f"{t} {v:.2f}" for t, v in value.items()))
        elif isinstance(value, float):
            click.echo(f"{key}: {value:.3f}")
        else:
            click.echo(f"{key}: {value}")
    click.echo(f"misses at rank 1 ({len(misses)}):")
    for item_id, first, question in misses:
        click.echo(f"  {item_id}  first hit {first or '-'}  {question}")


@main.command("tune")
@click.argument("questions", type=click.Path(exists=True, dir_okay=False))
@click.option("--paragraph-evidence", is_flag=True, help="Evidence is whole paragraphs: half the shorter span hits.")
@click.option("--calibration-only", is_flag=True, help="Keep the ranking weights; refit only the confidence.")
@click.option("--dry-run", is_flag=True, help="Show the figures; do not save.")
@query_encoder_option
@paths_options
def tune_command(questions: str, paragraph_evidence: bool, calibration_only: bool, dry_run: bool, corpus: str,
                 index: str) -> None:
    """Refit the ranking weights and the confidence on your own labelled questions (JSONL, as `qa eval` reads;
    some without evidence) and save them beside the index (calibration.json), where searches read them."""
    from .confidence import CALIBRATION_FILE
    from .engine import open_searcher
    from .evaluation import load_jsonl
    from .search import QueryError
    from .tuning import saved_form, tune

    try:
        searcher = open_searcher(Path(index), Path(corpus))
        result = tune(searcher, load_jsonl(Path(questions)), shorter=paragraph_evidence,
                      weights=not calibration_only)
    except (IndexUnavailable, CorpusError, QueryError, ValueError, KeyError) as exc:
        fail(str(getattr(exc, "message", exc)))
    click.echo(f"{result['questions']} questions, {result['unanswerable']} unanswerable")
    columns = [c for c in ("hit@1", "mrr@10", "brier", "answerable_recall", "unanswerable_rejected")
               if c in result["after"]]
    click.echo(f"{'':<8}" + "".join(f"{c:>23}" for c in columns))
    for label in ("before", "after"):
        click.echo(f"{label:<8}" + "".join(f"{result[label][c]:>23}" for c in columns))
    click.echo("(after: cross-validated, so not flattered by the fit)")
    saved = saved_form(result)
    click.echo(json.dumps(saved))
    if not dry_run:
        target = Path(index) / CALIBRATION_FILE
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(saved, indent=1), encoding="utf-8")
        temporary.replace(target)  # atomic: a server never reads half a file
        click.echo(f"saved {target}; a running server reads it at its next index reload (restart to apply now)")


@main.command("settings")
def settings_command() -> None:
    """Print the settings table (Markdown), as in the README."""
    from .settings import markdown_table

    click.echo(markdown_table())


if __name__ == "__main__":
    main()
