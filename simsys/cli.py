"""The ``simsys`` command: the only module that imports click.

Each command parses its options and calls one library function. Errors a user can cause
(:class:`simsys.errors.SimsysError`) and errors of the operating system (a folder that cannot be
written, a full disk) are printed as one line on stderr with exit code 1 and no traceback;
``--debug`` shows the traceback. SIGTERM is handled as SIGINT: the command cleans up (temporary
files, worker processes), prints one line and exits with 128 + the signal number (143, 130).
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
import time
from pathlib import Path

import click

from simsys.errors import SimsysError


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so that it unwinds as Ctrl-C does."""


def _on_signal(signum, frame):
    from simsys.io import note_interrupt

    exc = _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    note_interrupt(exc)  # raised again between steps, should this raise be swallowed
    raise exc


def _user_errors(fn):
    """Turn SimsysError and OSError into a one-line message and exit code 1, and an interruption
    (SIGINT, SIGTERM) into one line and exit code 130 / 143 (tracebacks only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = ctx.find_root().params.get("debug")
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, _on_signal)
        try:
            return fn(*args, **kwargs)
        except SimsysError as exc:
            if debug:
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except OSError as exc:
            if debug:
                raise
            from simsys.io import os_error_text

            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{os_error_text(exc)}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt as exc:
            if debug:
                raise
            signum = signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT
            detail = getattr(exc, "simsys_detail", None)
            click.echo(f"error: interrupted by {signum.name}" + (f"; {detail}" if detail else ""),
                       err=True)
            ctx.exit(128 + int(signum))
        finally:
            from simsys.io import note_interrupt

            note_interrupt(None)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    return wrapper


def _load_checked(file: str, allow_imports: bool):
    """Load a scenario and check its whole experiment block as ``run`` would (sweep paths, models,
    threshold policy), so that ``validate``, ``explain`` and ``graph`` fail before any work does.
    A scenario without an experiment block is one for sampling: a default experiment that could
    not run is a warning, not an error."""
    from simsys.runner import parse_experiment
    from simsys.scenario import load_scenario

    sc = load_scenario(file)
    if sc.spec.experiment is not None:
        parse_experiment(sc, allow_imports=allow_imports)
        return sc
    try:  # no experiment block: a scenario for sampling; say whether `run`'s defaults would work
        parse_experiment(sc, allow_imports=allow_imports)
    except SimsysError as exc:
        click.echo(f"warning: simsys run would fail with the default experiment: {exc}", err=True)
    return sc


_ALLOW_IMPORT_HELP = ("Allow models imported from outside sklearn., simsys. and fairlearn., or loaded from "
                      "a .py file (path/file.py:Class) (runs their code).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="simsys")
def main(debug: bool) -> None:
    """simsys: synthetic patient cohorts from causal graphs, with biases injected by known amounts."""


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--allow-import", "allow_imports", is_flag=True, help=_ALLOW_IMPORT_HELP)
@_user_errors
def validate(file: str, allow_imports: bool) -> None:
    """Check a scenario file (its experiment block too) and print its nodes, roles and biases."""
    from simsys.biases import bias_name

    sc = _load_checked(file, allow_imports)
    spec = sc.spec
    click.echo(f"scenario {spec.name}: {len(spec.nodes)} nodes, {len(spec.biases)} biases, seed {spec.seed}")
    click.echo("nodes (in causal order):")
    for n in sc.order:
        parents = ", ".join(sc.parents[n]) or "-"
        click.echo(f"  {n:<24} {spec.nodes[n].kind:<14} parents: {parents}")
    r = spec.roles
    click.echo(f"roles: group={r.group} target={r.target} features={', '.join(r.features)}")
    click.echo("biases:")
    for i, b in enumerate(spec.biases):
        fields = b.model_dump(exclude_none=True, exclude={"type", "name", "description"})
        click.echo(f"  [{i}] {bias_name(sc, i)}: {b.type} {json.dumps(fields)}")
    if not spec.biases:
        click.echo("  (none)")
    click.echo("populations: " + ", ".join(
        f"{k} (n={p.n}{', biased' if p.biased else ''})" for k, p in spec.populations.items()))
    for w in sc.warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo("ok")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-n", "--n", "n", type=click.IntRange(min=1), help="Patients to draw (default: the population's n).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Output file: .parquet or .csv")
@click.option("--population", default="train", show_default=True)
@click.option("--seed", type=click.IntRange(min=0), help="Root seed (default: the scenario's).")
@click.option("--biased/--clean", default=None,
              help="Force biases on or off (default: the cohort `simsys run` draws from the population: "
                   "the training data, or the test cohort with its recorded labels and selection).")
@click.option("--threads", type=click.IntRange(min=1), help="Sampling threads (default: all cores).")
@click.option("--chunk-size", type=click.IntRange(min=1000), default=1 << 20, show_default=True)
@_user_errors
def sample(file, n, output, population, seed, biased, threads, chunk_size) -> None:
    """Draw a cohort and write it to Parquet or CSV, chunk by chunk (bounded memory)."""
    from simsys.io import write_cohort
    from simsys.scenario import load_scenario

    sc = load_scenario(file)
    if population not in sc.spec.populations:
        raise SimsysError(f"{file}: populations: unknown population {population!r}; defined: {', '.join(sc.spec.populations)}")
    n = n or sc.spec.populations[population].n
    t0 = time.perf_counter()
    rows = write_cohort(sc, output, n=n, seed=seed, population=population, biased=biased,
                        view="experiment" if biased is None else None,
                        threads=threads, chunk_size=chunk_size)
    dt = time.perf_counter() - t0
    click.echo(f"wrote {rows} of {n} patients to {output} in {dt:.2f} s", err=True)


@main.command()
def schema() -> None:
    """Print the JSON Schema of the scenario format (for editors)."""
    from simsys.scenario import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@main.command()
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@click.option("--seed", type=click.IntRange(min=0), help="Root seed (default: the scenario's).")
@click.option("--output-dir", type=click.Path(file_okay=False), default="outputs", show_default=True,
              help="Runs write to OUTPUT_DIR/<scenario>/<run-id>/.")
@click.option("--run-id", help="Name of the run folder (default: date-time, a random part and the seed).")
@click.option("--resume", type=click.Path(file_okay=False, exists=True),
              help="Finish an interrupted run folder: its finished cells are kept, failed or damaged "
                   "ones redone; scenario, seed and replicates come from the folder (give "
                   "--allow-import again if its models need it).")
@click.option("--workers", type=click.IntRange(min=1), help="Local worker processes (default: all cores).")
@click.option("--replicates", type=click.IntRange(min=1), help="Override the experiment's replicates.")
@click.option("--precision", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
              help="Add replicates in batches until every headline interval is at most this half-width "
                   "(e.g. 0.02: 2 percentage points of a rate), up to experiment.precision.max_replicates "
                   "(default 30).")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="Where cells run: local processes, or Dask (needs the simsys[dask] extra).")
@click.option("--scheduler", help="Dask scheduler address (default: a local cluster).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Dask: seconds to wait for the scheduler to answer, and for a worker while the "
                   "cluster has none; then the run stops (and can be resumed).")
@click.option("--allow-import", "allow_imports", is_flag=True,
              help="Allow models imported from outside sklearn., simsys. and fairlearn., loaded from "
                   "a .py file (path/file.py:Class), or given parameters that name paths or objects "
                   "(runs their code). Not taken from a run folder: give it again with --resume.")
@click.option("--save-predictions", is_flag=True, help="Also write the test cohort's predictions.")
@click.option("--report/--no-report", "write_report", default=True, show_default=True,
              help="Write figures/ and report.html into the run folder at the end.")
@_user_errors
def run(file, seed, output_dir, run_id, resume, workers, replicates, precision, executor, scheduler,
        timeout, allow_imports, save_predictions, write_report) -> None:
    """Run a scenario's experiment: models, metrics against the truth, amplification."""
    from simsys.runner import format_summary, nothing_succeeded
    from simsys.runner import run as run_experiment

    ctx = click.get_current_context()
    if file is None and resume is None:
        raise click.UsageError("give a scenario FILE, or --resume RUN_DIR")
    if resume is not None:
        # the run folder decides these; silently ignoring them would mislead
        given = [name for name, value in (("FILE", file), ("--seed", seed), ("--replicates", replicates),
                                          ("--run-id", run_id), ("--precision", precision)) if value is not None]
        if ctx.get_parameter_source("output_dir") == click.core.ParameterSource.COMMANDLINE:
            given.append("--output-dir")
        if save_predictions:
            given.append("--save-predictions")
        if given:
            click.echo(f"error: --resume takes the scenario, seed, replicates and outputs from the run "
                       f"folder; remove {', '.join(given)}", err=True)
            ctx.exit(2)
    result = run_experiment(file, seed=seed, workers=workers, executor=executor, scheduler=scheduler,
                            output_dir=output_dir, run_id=run_id, resume=resume,
                            allow_imports=allow_imports, save_predictions=save_predictions,
                            progress=sys.stderr.isatty(), replicates=replicates, timeout=timeout,
                            precision=precision)
    if nothing_succeeded(result) and result.run_dir is not None:
        raise SimsysError(f"{result.run_dir}: every cell failed ({len(result.errors)} error(s)); "
                          f"see {result.run_dir / 'errors.csv'}")
    click.echo(format_summary(result))
    if write_report and result.run_dir is not None:
        _run_report(result.run_dir, allow_imports)


def _run_report(run_dir, allow_imports: bool) -> None:
    """The report at the end of a run. The results are already on disk, so a report that cannot be
    drawn is a warning with the command that retries it, not a failed run (--debug raises)."""
    t0 = time.perf_counter()
    try:
        from simsys.report import write_report  # matplotlib is imported only here

        path = write_report(run_dir, allow_imports=allow_imports)
    except Exception as exc:
        if click.get_current_context().find_root().params.get("debug"):
            raise
        flag = " --allow-import" if allow_imports else ""
        click.echo(f"warning: the report could not be written ({type(exc).__name__}: {exc}); "
                   f"retry with: simsys report {run_dir}{flag}", err=True)
        return
    click.echo(f"report: {path} ({time.perf_counter() - t0:.1f} s)", err=True)


def _json_mapping(ctx, param, value):
    if value is None:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        raise click.BadParameter(f"expected a JSON mapping such as '{{\"constraint\": \"equal_opportunity\"}}', "
                                 f"got {value!r}") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"expected a JSON mapping, got {value!r}")
    return data


@main.command()
@click.argument("method", required=False)
@click.option("--params", callback=_json_mapping, help="The method's parameters, as a JSON mapping.")
@click.option("--name", help="Name of the method in the outputs (default: from METHOD).")
@click.option("--against", help="A second method (or another version) to compare with, paired.")
@click.option("--against-params", callback=_json_mapping, help="Parameters of --against, as a JSON mapping.")
@click.option("--battery", type=click.Path(dir_okay=False), help="A battery file (default: the built-in battery).")
@click.option("--scenarios", help="Only these scenarios of the battery, comma-separated (e.g. blum_stangl,melanoma).")
@click.option("--replicates", type=click.IntRange(min=1), help="Replicates of every scenario.")
@click.option("--seed", type=click.IntRange(min=0), help="Root seed of every scenario's run (default: each scenario's).")
@click.option("--output-dir", type=click.Path(file_okay=False), default="outputs", show_default=True,
              help="Writes OUTPUT_DIR/stress/<method>/<run-id>/.")
@click.option("--run-id", help="Name of the stress folder (default: date-time).")
@click.option("--resume", type=click.Path(file_okay=False, exists=True), help="Finish an interrupted stress folder.")
@click.option("--workers", type=click.IntRange(min=1), help="Local worker processes (default: all cores).")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local", show_default=True)
@click.option("--scheduler", help="Dask scheduler address (default: a local cluster).")
@click.option("--allow-import", "allow_imports", is_flag=True, help=_ALLOW_IMPORT_HELP)
@_user_errors
def stress(method, params, name, against, against_params, battery, scenarios, replicates, seed, output_dir,
           run_id, resume, workers, executor, scheduler, allow_imports) -> None:
    """Run a fairness METHOD through a battery of scenarios, scored against the truth.

    METHOD is a model as in experiment.models: a built-in mitigation (reweighing,
    group_thresholds, ...), an import path, or path/file.py:Class (with --allow-import).
    """
    from simsys.stress import ranking
    from simsys.stress import stress as run_stress

    if method is None and resume is None:
        raise click.UsageError("give a METHOD, or --resume STRESS_DIR")
    result = run_stress(method, params=params, name=name, against=against, against_params=against_params,
                        battery=battery, scenarios=[x for x in scenarios.split(",") if x] if scenarios else None,
                        replicates=replicates, seed=seed, workers=workers, executor=executor,
                        scheduler=scheduler, output_dir=output_dir, run_id=run_id, resume=resume,
                        allow_imports=allow_imports, progress=sys.stderr.isatty(),
                        echo=lambda m: click.echo(m, err=True))
    from simsys.render import stress_markdown

    click.echo(stress_markdown(result, ranking(result)))
    if result.run_dir is not None:
        click.echo(f"stress results in {result.run_dir}: summary.md, leaderboard.csv, stress.html")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--effect", type=click.FloatRange(min=0, min_open=True, max=1), required=True,
              help="TPR gap to detect: the compared group's TPR is --tpr minus this.")
@click.option("--tpr", type=click.FloatRange(min=0, max=1), default=0.8, show_default=True,
              help="TPR of the audited model in the reference group.")
@click.option("--power", "target", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
              default=0.8, show_default=True, help="Power the audit should reach.")
@click.option("--alpha", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
              default=0.05, show_default=True, help="Level of the two-sided test.")
@click.option("--sims", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Simulated audits per size.")
@click.option("--group", help="Group to compare with the reference group, e.g. skin_tone=dark "
              "(default: the smallest other group).")
@click.option("--population", help="Population the audit draws from (default: the experiment's test population).")
@click.option("--seed", type=click.IntRange(min=0), help="Root seed (default: the scenario's).")
@click.option("--max-n", type=click.IntRange(min=10), default=1_000_000, show_default=True,
              help="Largest number of patients of the compared group to try.")
@_user_errors
def power(file, effect, tpr, target, alpha, sims, group, population, seed, max_n) -> None:
    """How many patients of the smaller group an audit needs to detect a TPR gap, by simulation."""
    from simsys.power import design_from_scenario, format_power, sample_size
    from simsys.scenario import load_scenario

    sc = load_scenario(file)
    root = sc.spec.seed if seed is None else seed
    design = design_from_scenario(sc, effect=effect, tpr=tpr, group=group, population=population,
                                  seed=root)
    result = sample_size(design, power=target, alpha=alpha, sims=sims, seed=root, n_max=max_n)
    click.echo(format_power(result))


def _graph_output(ctx, param, value):
    if value is not None and Path(value).suffix.lower() not in (".svg", ".png", ".pdf", ".dot"):
        raise click.BadParameter(f"{value}: unknown format {Path(value).suffix or '(no suffix)'!r}; "
                                 "use a file ending in .svg, .png, .pdf or .dot")
    return value


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), callback=_graph_output,
              help="Output file; its suffix picks the format: .svg, .png, .pdf or .dot (Graphviz). "
                   "Default: <scenario>_graph.svg.")
@click.option("--allow-import", "allow_imports", is_flag=True, help=_ALLOW_IMPORT_HELP)
@_user_errors
def graph(file, output, allow_imports) -> None:
    """Draw a scenario's causal graph: roles, injected biases where they act, legend."""
    from simsys.drawing import write_graph
    from simsys.io import atomic_write, os_error_text

    sc = _load_checked(file, allow_imports)
    path = Path(output or f"{sc.name}_graph.svg")
    try:  # never half-written: drawn into a temporary file (same suffix: it picks the format)
        atomic_write(path, lambda t: write_graph(sc, t), suffix=path.suffix)
    except OSError as exc:
        raise SimsysError(f"{path}: cannot write the graph ({os_error_text(exc)}); "
                          "choose a writable -o path") from None
    click.echo(f"wrote {path}", err=True)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--allow-import", "allow_imports", is_flag=True,
              help="Allow recomputing a cell whose models need --allow-import (runs their code). "
                   "Without it such a figure is left empty, with a note.")
@_user_errors
def report(run_dir, allow_imports) -> None:
    """Rebuild the figures and report.html of a finished run folder from its files.

    Nothing is re-run, except once: if the run saved no predictions and no report was built
    before, the cell shown in the ROC figure is recomputed (with its seed, so identically). A
    run folder is untrusted input: that recomputation runs no code from outside sklearn.,
    simsys. and fairlearn. unless --allow-import is given.
    """
    from simsys.io import os_error_path, os_error_text

    try:
        from simsys.report import write_report

        path = write_report(run_dir, allow_imports=allow_imports)
    except SimsysError:
        raise
    except OSError as exc:
        raise SimsysError(f"{os_error_path(exc, run_dir)}: cannot write the report "
                          f"({os_error_text(exc)})") from None
    except Exception as exc:  # a damaged results file, or a report that cannot be drawn
        if click.get_current_context().find_root().params.get("debug"):
            raise
        raise SimsysError(f"{run_dir}: the report could not be written ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); the run folder may be "
                          "damaged") from None
    click.echo(f"report: {path}")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--full", is_flag=True, help="The full walk: every variable, formula, bias and population.")
@click.option("--allow-import", "allow_imports", is_flag=True, help=_ALLOW_IMPORT_HELP)
@_user_errors
def explain(file, full, allow_imports) -> None:
    """Explain a scenario in plain language: one screen by default (who the patients are, what the
    model sees, each bias with its numbers per group); --full walks through everything."""
    from simsys.explain import brief
    from simsys.explain import explain as explain_text

    sc = _load_checked(file, allow_imports)
    click.echo((explain_text if full else brief)(sc), nl=False)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--port", type=click.IntRange(min=0, max=65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: a free one).")
@click.option("--no-browser", is_flag=True, help="Print the address only; do not open a browser.")
@_user_errors
def explore(file, port, no_browser) -> None:
    """Start a live explorer of a scenario on 127.0.0.1: move a bias, watch the model respond."""
    from simsys.explorer.server import serve
    from simsys.scenario import load_scenario

    serve(load_scenario(file), port=port, open_browser=not no_browser, echo=click.echo)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
