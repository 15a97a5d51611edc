"""Command-line interface: a click group whose subcommands are imported only when invoked.

``deepradiomics --help`` therefore imports neither torch nor PyRadiomics. Each subcommand lives in its
own module ``deepradiomics.cli.<module>`` as a click command named ``command``; register it in
``COMMANDS`` below (name -> (module, one-line help)).
"""

from __future__ import annotations

import importlib

import click

#: subcommand name -> (module under deepradiomics.cli, short help shown by --help without importing it)
COMMANDS: dict[str, tuple[str, str]] = {
    "extract": ("extract", "Extract features of one case to a one-row table."),
    "batch": ("batch", "Extract features of every case in a manifest (resumable)."),
    "plugins": ("plugins", "List registered feature classes."),
    "train": ("train", "Train the VQ segmentation network and write a model bundle."),
    "study": ("study", "Compare feature families on a label with cross-validation."),
    "explain": ("explain", "Responsible regions of chosen codewords (feature ablation)."),
    "robustness": ("robustness", "Feature robustness to intensity scale and shift."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, short_help = COMMANDS[cmd_name]
        if ctx.resilient_parsing or getattr(ctx, "_listing_commands", False):
            # `deepradiomics --help` lists commands: show the short help without importing anything.
            return click.Command(cmd_name, short_help=short_help, help=short_help)
        module = importlib.import_module(f"deepradiomics.cli.{module_name}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
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
