"""Command-line interface: a click group whose subcommands are imported only when invoked.

``deepradiomics --help`` therefore imports neither torch nor PyRadiomics. Each subcommand lives in its
own module ``deepradiomics.cli.<module>`` as a click command named ``command``; register it in
``COMMANDS`` below (name -> (module, one-line help)).

Plugins add commands of their own (e.g. a class's explanation tool) through the entry-point group
``deepradiomics.commands`` (``name = package.module:command``); their modules must import only click at
module level, since ``--help`` reads their one-line help.
"""

from __future__ import annotations

import importlib

import click

#: subcommand name -> (module under deepradiomics.cli, short help shown by --help without importing it)
COMMANDS: dict[str, tuple[str, str]] = {
    "extract": ("extract", "Extract features of one case to a one-row table."),
    "batch": ("batch", "Extract features of every case in a manifest (resumable)."),
    "plugins": ("plugins", "List registered feature classes."),
    "fit": ("fit", "Fit the cohort-level classes of a params file and write a fitted params file."),
    "example": ("example", "Paths of a small real example case shipped in the package."),
    "params": ("params", "List, show or copy the params files shipped with the package."),
    "train": ("train", "Train a segmentation network (VQ or DLR) and write a model bundle."),
    "segment": ("segment", "Tumour segmentation of a case by a trained bundle, on its own grid."),
    "study": ("study", "Compare feature families on a label with cross-validation."),
    "robustness": ("robustness", "Feature robustness to intensity scale and shift (any class)."),
    "ibsi": ("ibsi", "IBSI 1 compliance of the classical features (digital phantom, CT configurations A-E)."),
    "cache": ("cache", "List or prune the entries of a result cache (--out-dir, --cache-dir) by params hash."),
}
COMMAND_ENTRY_POINTS = "deepradiomics.commands"


def plugin_commands() -> dict:
    """Entry points of commands contributed by plugins (name -> entry point); built-in names win."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=COMMAND_ENTRY_POINTS) if ep.name not in COMMANDS}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Built-in and plugin command names, sorted."""
        return sorted([*COMMANDS, *plugin_commands()])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, importing its module only when it runs (not for ``--help``)."""
        if cmd_name not in COMMANDS:
            entry = plugin_commands().get(cmd_name)
            if entry is None:
                return None
            try:
                return entry.load()
            except Exception as exc:  # a broken plugin must not break the other commands
                distribution = entry.dist.name if entry.dist is not None else "unknown distribution"
                message = f"command '{cmd_name}' from distribution '{distribution}' failed to load: {type(exc).__name__}: {exc}"
                return click.Command(cmd_name, short_help="(broken plugin command)", callback=lambda: _fail(message))
        module_name, short_help = COMMANDS[cmd_name]
        if ctx.resilient_parsing or getattr(ctx, "_listing_commands", False):
            # `deepradiomics --help` lists commands: show the short help without importing anything.
            return click.Command(cmd_name, short_help=short_help, help=short_help)
        module = importlib.import_module(f"deepradiomics.cli.{module_name}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The group's command list, with each command's short help read without importing it."""
        # While click renders the group's own --help it calls get_command for every name.
        ctx._listing_commands = True  # type: ignore[attr-defined]
        try:
            super().format_commands(ctx, formatter)
        finally:
            ctx._listing_commands = False  # type: ignore[attr-defined]


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deepradiomics")
def main() -> None:
    """deepradiomics: classical (PyRadiomics) and deep radiomics features in one table.

    \b
    Typical use:
      deepradiomics extract params/classical.yaml flair.nii.gz mask.nii.gz
      deepradiomics batch params/combined.yaml cases.csv -o features.csv --jobs 2 --out-dir cache/
    """


def _fail(message: str) -> None:
    raise click.ClickException(message)
