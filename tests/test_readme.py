"""Every ``deepradiomics ...`` line of README.md exists and runs.

``test_every_command_and_option_exists`` reads each line of the README's ``bash`` blocks that starts with
``deepradiomics``, finds its (sub)command in the CLI and checks that every option it names is one of that
command's options, and that it gives the command's number of arguments (instant, every line).

``test_readme_block_runs`` runs the lines of each block, in order, in one working folder per block (later
lines of a block read what earlier ones wrote, as a reader would run them). The README's placeholders
become real files:

- ``FLAIR``, ``MASK``, ``T1``, ``T1CE``: the real LGG case shipped in the package (``deepradiomics example``);
- ``cases.csv``, ``train.csv``, ``test.csv``: manifests of the fewest and smallest real LGG cases of
  ``../shared/data/lgg/cases.csv`` with both classes of grade and of IDH at least 5 times, as 5-fold
  studies need (:func:`cohort`: 10 cases; ``test.csv`` two of them, ``train.csv`` the other eight);
- long lines get small settings (:data:`SMALL`): the training configs train 1 epoch on 2 patients
  (validation on 1), and ``fisher`` fits 4 Gaussian components over 2 scales instead of 64 over 10.

Everything else (options, shipped names, outputs) runs as written; a line fails the test when it exits
non-zero, and its output is in the message.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import REPO, require_data

README = REPO / "README.md"
PROGRAM = "deepradiomics"


@dataclass(frozen=True)
class Line:
    """One README command: its block's number and the words after ``deepradiomics``."""

    block: int
    words: tuple[str, ...]

    def __str__(self) -> str:
        return " ".join((PROGRAM, *self.words))


def readme_lines(text: str | None = None) -> list[Line]:
    """The ``deepradiomics`` lines of the README's bash blocks (continuations joined, comments dropped)."""
    text = README.read_text(encoding="utf-8") if text is None else text
    lines = []
    for number, block in enumerate(re.findall(r"```bash\n(.*?)```", text, flags=re.S)):
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command, comments=True)
            if words and words[0] == PROGRAM:
                lines.append(Line(number, tuple(words[1:])))
    return lines


def test_the_readme_has_commands_to_check():
    lines = readme_lines()
    assert len(lines) >= 20 and len({line.block for line in lines}) >= 8
    assert readme_lines("```bash\ndeepradiomics a \\\n  --b c  # note\nls\n```\n") == [Line(0, ("a", "--b", "c"))]


# -- every command and option exists ----------------------------------------------------------------------
def resolve(words: tuple[str, ...]):
    """``(click command, the words after its name)`` for the words of a README line."""
    import click

    from deepradiomics.cli import main

    command, rest = main, list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        assert sub is not None, f"'{rest[0]}' is not a command of '{command.name}'"
        command, rest = sub, rest[1:]
    return command, rest


def split_arguments(command, words: list[str]) -> tuple[list[str], list[str]]:
    """``(options named, positional arguments)`` of ``words`` for ``command`` (options' values skipped)."""
    import click

    options = {name: param for param in command.params if isinstance(param, click.Option) for name in (*param.opts, *param.secondary_opts)}
    named, positional, index = [], [], 0
    while index < len(words):
        word = words[index]
        if word.startswith("-") and len(word) > 1:
            name = word.split("=", 1)[0]
            named.append(name)
            option = options.get(name)
            takes_value = option is not None and not option.is_flag and not option.count
            index += 2 if takes_value and "=" not in word else 1
        else:
            positional.append(word)
            index += 1
    return named, positional


@pytest.mark.parametrize("line", readme_lines(), ids=str)
def test_every_command_and_option_exists(line):
    import click

    command, rest = resolve(line.words)
    if isinstance(command, click.Group):
        assert not rest or rest == ["--help"], f"{line}: '{command.name}' needs a subcommand"
        return
    named, positional = split_arguments(command, rest)
    known = {name for param in command.params for name in (*param.opts, *param.secondary_opts)} | {"-h", "--help"}
    unknown = [name for name in named if name not in known]
    assert not unknown, f"{line}: no option {unknown} in 'deepradiomics {command.name}' (options: {sorted(known)})"
    arguments = [param for param in command.params if isinstance(param, click.Argument)]
    least = sum(1 for param in arguments if param.required)
    most = float("inf") if any(param.nargs == -1 for param in arguments) else sum(param.nargs for param in arguments)
    assert least <= len(positional) <= most, f"{line}: {len(positional)} argument(s), '{command.name}' takes {least} to {most}"


# -- every line runs ----------------------------------------------------------------------------------------
#: small settings for lines that would take long (what each replaces is in the module docstring)
SMALL = {
    "train_cpu": {"data": {"max_cases": 2, "val_fraction": 0.5}, "train": {"epochs": 1, "num_threads": 1}},
    "train_dlr": {"data": {"max_cases": 2, "val_fraction": 0.5}, "train": {"epochs": 1, "num_threads": 1, "patches": {"size": 33, "tumour_fraction": 0.4, "per_epoch": 256}}},
    "fisher": {"featureClass": {"fisher": {"scales": 2, "components": 4, "gmm_patients": 6, "max_descriptors": 200}}},
}
QUOTA = {"grade": ("G2", "G3"), "idh_mutant": ("0.0", "1.0")}


def cohort(manifest: Path, per_class: int = 5) -> list[str]:
    """IDs of the fewest, then smallest (by slice count), LGG cases holding each class of QUOTA ``per_class`` times.

    Each cell (grade, IDH) contributes its smallest cases; every split of counts over the cells is tried."""
    import itertools

    import pandas as pd

    table = pd.read_csv(manifest, dtype=str).assign(slices=lambda t: t["n_slices"].astype(int)).sort_values(["slices", "ID"], kind="stable")
    (first, values_1), (second, values_2) = QUOTA.items()
    cells = {(a, b): table[(table[first] == a) & (table[second] == b)] for a in values_1 for b in values_2}
    best = None
    for counts in itertools.product(range(per_class + 1), repeat=len(cells)):
        chosen = dict(zip(cells, counts))
        if any(n > len(cells[cell]) for cell, n in chosen.items()):
            continue
        totals = [sum(n for (a, b), n in chosen.items() if value in (a, b)) for value in (*values_1, *values_2)]
        if min(totals) < per_class:
            continue
        ids = [i for cell, n in chosen.items() for i in cells[cell]["ID"].head(n)]
        cost = (len(ids), int(table.set_index("ID").loc[ids, "slices"].sum()))
        if best is None or cost < best[0]:
            best = (cost, ids)
    assert best is not None, f"{manifest} lacks {per_class} cases of each class of {QUOTA}"
    return best[1]


def write_manifest(source: Path, ids: list[str], path: Path) -> Path:
    """``source``'s rows of ``ids``, image paths made absolute, written to ``path``."""
    import pandas as pd

    table = pd.read_csv(source, dtype=str).set_index("ID").loc[ids]
    for column in [c for c in table.columns if c == "Image" or c == "Mask" or c.startswith("Image_")]:
        table[column] = [str((source.parent / value).resolve()) for value in table[column]]
    table.to_csv(path)
    return path


def merged(base: dict, small: dict) -> dict:
    out = dict(base)
    for key, value in small.items():
        out[key] = merged(base.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def small_file(name: str, folder: Path, manifest: Path) -> Path:
    """The shipped params/config ``name`` with :data:`SMALL`'s settings, written into ``folder``."""
    import yaml

    from deepradiomics.params import resolve_params_path
    from deepradiomics.yamlio import read_yaml

    data = read_yaml(resolve_params_path(name)[0])
    if "data" in data:  # a training config: its manifest, relative to the shipped file, is the cohort here
        data["data"]["manifest"] = str(manifest)
    path = folder / f"{name}-small.yaml"
    path.write_text(yaml.safe_dump(merged(data, SMALL[name]), sort_keys=False))
    return path


@pytest.fixture(scope="module")
def placeholders(tmp_path_factory):
    from deepradiomics.data import example_case

    lgg = require_data("lgg", "cases.csv")
    folder = tmp_path_factory.mktemp("readme-inputs")
    ids = cohort(lgg)
    files = example_case("lgg")
    names = {
        "FLAIR": files["Image"],
        "MASK": files["Mask"],
        "T1": files["t1"],
        "T1CE": files["t1ce"],
        "cases.csv": write_manifest(lgg, ids, folder / "cases.csv"),
        "train.csv": write_manifest(lgg, ids[2:], folder / "train.csv"),
        "test.csv": write_manifest(lgg, ids[:2], folder / "test.csv"),
    }
    names.update({name: small_file(name, folder, names["cases.csv"]) for name in SMALL})
    return {name: str(path) for name, path in names.items()}


def substitute(word: str, names: dict[str, str]) -> str:
    """``word`` with a placeholder replaced, also inside ``NAME=PATH`` (``-m t1=T1``)."""
    if word in names:
        return names[word]
    key, _, value = word.partition("=")
    return f"{key}={names[value]}" if value in names else word


BLOCKS = sorted({line.block for line in readme_lines()})


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"block{b}")
def test_readme_block_runs(block, placeholders, tmp_path, monkeypatch):
    from deepradiomics.cli import main

    monkeypatch.chdir(tmp_path)
    for line in [line for line in readme_lines() if line.block == block]:
        words = [substitute(word, placeholders) for word in line.words]
        result = CliRunner().invoke(main, words, catch_exceptions=False)
        assert result.exit_code == 0, f"README line `{line}` exited {result.exit_code}:\n{result.output[-3000:]}"
