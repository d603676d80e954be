"""`stampline config`: check deployment files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stampline.cli._app import ConfigOpt, JsonOpt, app, config_path, emit_json, err, fail, out
from stampline.config import check_config

config_app = typer.Typer(help="Check deployment configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(
    file: Annotated[
        Path | None,
        typer.Argument(help="The deployment's YAML file (or give it as --config, as elsewhere)."),
    ] = None,
    config_opt: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a configuration file and the rule files it names; list every problem.

    Each problem names the file and line, the key path and the bad value. Exit status 1
    when there is any problem, 0 when the file is ready to deploy.
    """
    if file is not None and config_opt is not None and file != config_opt:
        fail(f"two files to check: {file} and --config {config_opt}; give one", 2)
    file = config_path(file or config_opt)
    config, problems = check_config(file)
    if as_json:
        emit_json(
            {"file": str(file), "ok": not problems, "problems": [p.to_dict() for p in problems]}
        )
    elif problems:
        for p in problems:
            err.print(p.render(file), highlight=False, markup=False)
        err.print(f"{len(problems)} problem(s) in {file}")
    else:
        assert config is not None
        out.print(
            f"{file}: ok — raw {', '.join(config.topics.raw)} → clean {config.topics.clean}, "
            f"dead letters {config.topics.dead_letter}, store {config.store.backend} at "
            f"{config.store.path}, {len(config.rules.files)} rule file(s)",
            highlight=False,
        )
    if problems:
        raise typer.Exit(1)
