"""The gammatune command line: thin commands; the only place that prints or exits.

torch, optuna and pandas are imported inside the commands, so ``--help`` and ``check`` start fast.
"""

from __future__ import annotations

import atexit
import gc
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console

from gammatune import __version__
from gammatune.errors import ConfigError, GammatuneError, redact
from gammatune.progress import Progress, log_handler, trial_line

if TYPE_CHECKING:
    from gammatune.config import Config
    from gammatune.data import Splits
    from gammatune.fingerprint import IfChanged
    from gammatune.storage import Stage

app = typer.Typer(
    name="gammatune",
    help="Find the right focal-loss gamma and alpha for an imbalanced classification problem.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
out = Console(width=None if sys.stdout.isatty() else 140)  # a file gets whole tables
err = Console(stderr=True)

ConfigPath = Annotated[
    Path, typer.Option("--config", "-c", help="The experiment file (YAML).", show_default=False)
]
Storage = Annotated[
    Optional[str],  # noqa: UP045 - typer reads the annotation at run time, also on Python 3.10
    typer.Option("--storage", help="Optuna storage URL; overrides the file's `storage`."),
]

Workers = Annotated[
    int,
    typer.Option(
        "--workers",
        min=1,
        help="Processes sharing the study (one per GPU when there are several).",
    ),
]

Threads = Annotated[Optional[int], typer.Option(  # noqa: UP045
    "--threads", min=1, show_default=False, help="CPU threads per training process; overrides "
    "train.threads [default: auto, the CPUs the machine's load leaves idle].")]  # fmt: skip
Executor = Annotated[str, typer.Option("--executor", help="local, or ray: on a Ray cluster.")]
RayAddress = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--address", help="The Ray head, host:port [default: RAY_ADDRESS, else auto]."),
]
ForceNew = Annotated[
    bool, typer.Option("--force-new", help="Keep a changed study as <study>.replaced-<UTC time>.")
]
TensorBoardDir = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--tensorboard", help="Write each trial's curves to TensorBoard in this folder."),
]
OutYaml = Annotated[Optional[Path], typer.Option(  # noqa: UP045
    "--out", help="Where to write it [default: X.suggested.yaml next to X].")]  # fmt: skip
TaskHint = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--task", help="detection | medical | text: narrows the range to the domain's."),
]
OutCsv = Annotated[Optional[Path], typer.Option(  # noqa: UP045
    "--out", help="CSV of every trial [default: runs/<name>/trials.csv].")]  # fmt: skip


def _version(value: bool) -> None:
    if value:  # eager: before Typer asks for a command
        out.print(f"gammatune {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="-v info, -vv debug.")
    ] = 0,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Show the traceback of an error, for bug reports.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_version
        ),
    ] = False,
) -> None:
    """Find the right focal-loss gamma and alpha for an imbalanced classification problem.

    The workflow: baseline (cross-entropy), search (coarse gamma x alpha grid), refine (fine
    search around the best grid point), confirm (finalists vs their cross-entropy twins over
    fresh seeds: the verdict), report (CSV, page and summary). `run` does all five.
    """
    ctx.obj = {"traceback": traceback}
    atexit.register(_freeze_imports)  # and the exit's collections skip what the run made
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    handlers = [log_handler(err)]
    logging.basicConfig(level=level, format="%(message)s", handlers=handlers, force=True)


@contextmanager
def _user_errors(ctx: typer.Context) -> Iterator[None]:
    """Turn a user's mistake into one line on stderr and a non-zero exit; Ctrl-C into 130."""
    try:
        yield
    except GammatuneError as exc:
        if ctx.obj and ctx.obj.get("traceback"):
            raise
        err.print(f"gammatune: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        if ctx.obj and ctx.obj.get("traceback"):
            raise
        err.print("gammatune: interrupted; run the same command again to resume.", markup=False)
        raise typer.Exit(130) from None


def _say(text: str) -> None:
    """A note for the person at the terminal, on stderr (the results stay on stdout)."""
    err.print(text, markup=False, highlight=False, soft_wrap=True)


def _load(config_path: Path, storage: str | None = None, threads: int | None = None) -> Config:
    from gammatune.config import load_config

    return load_config(config_path, storage=storage, **{"train.threads": threads})


@app.command()
def check(ctx: typer.Context, config: ConfigPath) -> None:
    """Validate an experiment file, load its data and print both (the data as YAML comments)."""
    with _user_errors(ctx):
        from gammatune.overview import describe_data
        from gammatune.tuning import check_trainer

        resolved = _load(config)
        check_trainer(resolved)
        overview = describe_data(resolved)
        out.print(overview.text, markup=False, highlight=False, soft_wrap=True)
        for warning in overview.warnings:
            _say(f"warning: {warning}")
        _say(f"{config}: valid; data loaded; storage {redact(resolved.storage_url)}")


def _stage_command(stages: list[Stage], summary: str) -> Callable[..., None]:
    """One command per stage, with the options every stage takes."""

    def command(
        ctx: typer.Context,
        config: ConfigPath,
        storage: Storage = None,
        workers: Workers = 1,
        threads: Threads = None,
        tensorboard: TensorBoardDir = None,
        executor: Executor = "local",
        address: RayAddress = None,
        force_new: ForceNew = False,
    ) -> None:
        _run_stages(ctx, config, storage, stages, workers, tensorboard, executor, address,
                    force_new, threads=threads)  # fmt: skip

    command.__doc__ = summary
    return command


app.command("baseline")(
    _stage_command(
        ["baseline"],
        "Train the references: cross-entropy (gamma 0), alpha-balanced CE, a linear model.",
    )
)
app.command("search")(_stage_command(["search"], "Train the coarse grid of gamma x alpha."))
app.command("refine")(
    _stage_command(["refine"], "Search gamma and alpha finely around the best grid point (TPE).")
)
app.command("confirm")(
    _stage_command(
        ["confirm"],
        "Retrain the finalists and their same-alpha cross-entropy twins over fresh seeds; the "
        "verdict is decided from these paired differences.",
    )
)


@app.command()
def suggest(
    ctx: typer.Context,
    config: ConfigPath,
    out_yaml: OutYaml = None,
    task: TaskHint = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing --out file.")
    ] = False,
) -> None:
    """Count the classes and write a starting experiment with the guide's gamma range."""
    with _user_errors(ctx):
        from gammatune.suggest import format_suggestion, suggest, write_suggestion

        found = suggest(config, task=task)  # type: ignore[arg-type]  # checked by the schema
        for line in format_suggestion(found):
            out.print(line, markup=False, highlight=False)
        for warning in found.warnings:
            _say(f"warning: {warning}")
        _say(f"wrote {write_suggestion(found, out_yaml, force=force)}; the verdict decides.")


@app.command()
def run(
    ctx: typer.Context,
    config: ConfigPath,
    storage: Storage = None,
    out_csv: OutCsv = None,
    workers: Workers = 1,
    threads: Threads = None,
    tensorboard: TensorBoardDir = None,
    executor: Executor = "local",
    address: RayAddress = None,
    force_new: ForceNew = False,
) -> None:
    """Run baseline, search, refine and confirm, then report and export the model."""
    stages: list[Stage] = ["baseline", "search", "refine", "confirm"]
    _run_stages(ctx, config, storage, stages, workers, tensorboard, executor, address, force_new,
                threads=threads)  # fmt: skip
    written = report(ctx, config, storage, out_csv, html=None, plots=None)
    with _user_errors(ctx):  # the model of the report's verdict: decided once, not twice
        from gammatune.export import export_model

        _say(export_model(_load(config, storage), studied=(written.trials, written.summary)).text)


@app.command()
def export(
    ctx: typer.Context,
    config: ConfigPath,
    storage: Storage = None,
    refit: Annotated[
        bool, typer.Option("--refit", help="Train on train+val, for the epochs confirm kept.")
    ] = False,
) -> None:
    """Save the recommended setting, trained (its kept confirm model), to runs/<name>/model/."""
    with _user_errors(ctx):
        from gammatune.export import export_model

        _say(export_model(_load(config, storage), fit_on="train+val" if refit else "train").text)


@app.command()
def predict(
    ctx: typer.Context,
    model: Annotated[Path, typer.Option("--model", help="An exported model folder.")],
    data: Annotated[Path, typer.Option("--data", help="The CSV to score.")],
    out_csv: Annotated[Path, typer.Option("--out", help="The scores: one row per input row.")],
) -> None:
    """Score a CSV with an exported model: the score(s) and the predicted label of each row."""
    with _user_errors(ctx):
        from gammatune.scoring import predict_csv

        _say(predict_csv(model, data, out_csv).text)


@app.command()
def report(
    ctx: typer.Context,
    config: ConfigPath,
    storage: Storage = None,
    out_csv: OutCsv = None,
    html: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--html", help="The report page [default: runs/<name>/report.html]."),
    ] = None,
    plots: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--plots", help="Also write each figure as a PNG file into this folder."),
    ] = None,
) -> Any:  # report.Written, for `run` (Typer reads annotations at run time: not imported here)
    """Export every trial to CSV, draw the report page, and compare the best with the baselines."""
    with _user_errors(ctx):
        from gammatune.report import render_summary, write_report
        from gammatune.storage import storage_errors

        _freeze_imports()
        resolved = _load(config, storage)
        with storage_errors(resolved.storage_url):
            paths = {"csv_path": out_csv, "html_path": html, "plots_dir": plots}
            written = write_report(resolved, **paths, experiment_file=config)
        render_summary(out, written.summary)
        _say(
            f"wrote {written.n_trials} trials to {written.csv}, the report to {written.html}"
            + (f", {len(written.plots)} figures to {plots}" if plots else "")
        )
    return written


def _run_stages(
    ctx: typer.Context,
    config_path: Path,
    storage: str | None,
    stages: Sequence[Stage],
    workers: int = 1,
    tensorboard: Path | None = None,
    executor: str = "local",
    address: str | None = None,
    force_new: bool = False,
    *,
    threads: int | None = None,
) -> None:
    if_changed: IfChanged = "replace" if force_new else "refuse"
    with _user_errors(ctx):
        if executor not in ("local", "ray") or executor == "ray" and workers > 1:
            raise ConfigError(f"--executor {executor}: must be local, or ray with --workers 1.")
        resolved = _load(config_path, storage, threads)
        from gammatune.tuning import check_trainer

        check_trainer(resolved)  # before a study is opened: a refused run leaves nothing
        from gammatune.report import render_summary, study_summary
        from gammatune.storage import storage_errors

        _quiet_optuna()
        if workers > 1:
            from gammatune.tuning import run_with_workers

            run_with_workers(
                resolved, config_path, stages, n_workers=workers, tensorboard=tensorboard,
                if_changed=if_changed, on_set_aside=_say,
            )  # fmt: skip
        else:
            from gammatune.tuning import run_workflow

            _freeze_imports()
            with Progress(err) as progress:

                def on_data(splits: Splits) -> None:
                    progress.show_data(splits, strata=bool(getattr(resolved.data, "classes", 0)))
                    _freeze_imports()  # the data reader's imports (scikit-learn, pandas) too

                run_workflow(
                    resolved, stages, on_data=on_data, on_stage=progress.start_stage,
                    on_trial=progress.trial_done, on_epoch=progress.epoch_done,
                    tensorboard=tensorboard, executor="ray" if executor == "ray" else "local",
                    address=address, if_changed=if_changed, on_set_aside=_say,
                )  # fmt: skip
        if len(stages) == 1:
            with storage_errors(resolved.storage_url):
                render_summary(out, study_summary(resolved)[1])


@app.command(hidden=True)
def worker(
    ctx: typer.Context,
    config: ConfigPath,
    storage: Storage = None,
    stages: Annotated[str, typer.Option(help="Comma-separated stages.")] = "baseline",
    index: Annotated[int, typer.Option(help="This worker's number, from 1.")] = 1,
    tensorboard: TensorBoardDir = None,
) -> None:
    """Run prepared stages as one of several worker processes (started by --workers)."""
    with _user_errors(ctx):
        from gammatune.tuning import run_workflow

        _freeze_imports()
        _quiet_optuna()
        prefix = f"worker {index}: "
        run_workflow(
            _load(config, storage), [s for s in stages.split(",") if s],  # type: ignore[misc]
            on_trial=lambda event: _say(prefix + trial_line(event)), role="worker",
            worker=index, tensorboard=tensorboard,
        )  # fmt: skip


def _freeze_imports() -> None:
    """Take what is alive now (mostly torch, optuna, scikit-learn) out of the collector's full
    collections: on `run` 7 of them took 0.8 s, the exit's 1-2 s (2 cores). Frozen objects
    are still freed when nothing refers to them."""
    gc.freeze()


def _quiet_optuna() -> None:
    """Our progress replaces Optuna's line per trial, unless -vv asked for debug output."""
    import optuna

    if logging.getLogger().level > logging.DEBUG:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
