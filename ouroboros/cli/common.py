"""Shared option definitions, output helpers and error handling for every command."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

Backbone = Annotated[str, typer.Argument(help="embedded name (smollm2-135m), local folder or Hub id")]
Set = Annotated[Optional[list[str]], typer.Option("--set", help="component option kind.field=value (repeatable)")]
Controller = Annotated[str, typer.Option(help="controller name (see `ouro list controllers`)")]
Modulation = Annotated[str, typer.Option(help="modulation name (see `ouro list modulations`)")]
Gate = Annotated[str, typer.Option(help="gate name (see `ouro list gates`)")]
Normalizer = Annotated[str, typer.Option(help="normalizer name (see `ouro list normalizers`)")]
Output = Annotated[Optional[Path], typer.Option("--output", "-o", help="output folder")]
Overwrite = Annotated[bool, typer.Option(help="replace an existing output folder")]
Device = Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")]


def quiet_libraries() -> None:
    """Hide the libraries' own progress bars and info logs: commands show rich progress instead."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.utils.logging.set_verbosity_error()
    except ImportError:
        pass


def fail(message: str) -> None:
    """Print one paragraph to stderr and exit with code 2."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def handle_errors(func):
    """Turn every user-caused error into a one-paragraph message and exit code 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from ouroboros.core.errors import OuroborosError

        quiet_libraries()
        try:
            return func(*args, **kwargs)
        except OuroborosError as err:
            fail(str(err))

    return wrapper


def parse_ints(text: str, option: str) -> list[int]:
    """Parse a comma list of integers ("1,4,8"), naming the bad item on failure."""
    from ouroboros.core.errors import ConfigError

    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{option} is empty; give one integer or a comma list such as 1,4,8")
    try:
        return [int(item) for item in items]
    except ValueError:
        bad = next(item for item in items if not item.lstrip("-").isdigit())
        raise ConfigError(f"{option}: {bad!r} is not an integer; give one integer or a comma list such as 1,4,8"
                          ) from None


def fresh_output(path: Optional[Path], default: str, overwrite: bool) -> Path:
    """The output folder: never an existing one unless --overwrite; the default gets a numbered suffix."""
    if path is None:
        path, n = Path(default), 1
        while path.exists():
            path, n = Path(f"{default}-{n}"), n + 1
        return path
    if path.exists() and not overwrite:
        fail(f"output folder {str(path)!r} already exists; choose another with -o or pass --overwrite")
    return path
