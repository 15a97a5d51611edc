"""Helpers shared by the subcommands and by plugin commands (a public module): error reporting, one logging
set-up, common options.

Logging: every command logs through the ``logging`` module to stderr (data goes to stdout or ``-o``).
``-q`` shows errors only, the default shows warnings, ``-v`` adds information (progress notes, notes
of studies), ``-vv`` debugging output, for deepradiomics and PyRadiomics alike.
"""

from __future__ import annotations

import functools
import logging
import sys

import click

#: -q / default / -v / -vv
LEVELS = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


#: exit status after Ctrl-C (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130


def report_errors(function):
    """Turn every failure of a command into one ``Error: ...`` line on stderr and exit status 1.

    A deepradiomics error carries its own message (file, key, value, fix); an OS error names the file;
    Ctrl-C exits with status 130 and keeps what a batch finished. Anything else is a bug: still one line
    (type, message, where it happened), with the traceback logged at debug level (``-vv``). Click's own
    usage errors keep click's status 2.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from ..errors import DeepRadiomicsError

        try:
            return function(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except DeepRadiomicsError as exc:
            raise click.ClickException(" ".join(str(exc).split())) from exc
        except KeyboardInterrupt:
            click.echo(
                "Interrupted: cases already finished are kept in --out-dir when one was given; run the same command again to resume",
                err=True,
            )
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
            raise click.ClickException(f"cannot write '{exc.filename}': {exc.strerror}: choose another path") from exc
        except OSError as exc:
            if getattr(exc, "errno", None) == 28:  # ENOSPC
                raise click.ClickException(f"no space left on the device while writing '{exc.filename}': free some space or write elsewhere") from exc
            where = f" '{exc.filename}'" if getattr(exc, "filename", None) else ""
            raise click.ClickException(f"input/output error{where}: {exc.strerror or exc}: check the file and the disk") from exc
        except MemoryError as exc:
            raise click.ClickException("out of memory: use fewer --jobs, smaller images, or a machine with more memory") from exc
        except Exception as exc:  # a bug: one line for the user, the traceback for -vv
            _refuse_missing_pyradiomics(exc)
            logging.getLogger("deepradiomics.cli").debug("unexpected error", exc_info=True)
            raise click.ClickException(
                f"unexpected internal error: {_describe(exc)}. This is a bug: please report it with the output of -vv"
            ) from exc

    return wrapper


def _refuse_missing_pyradiomics(exc: BaseException) -> None:
    """A PyRadiomics module that an import inside a function did not find: one line with the install command."""
    from ..errors import pyradiomics_missing

    if isinstance(exc, ModuleNotFoundError) and (missing := pyradiomics_missing(exc)) is not exc:
        raise click.ClickException(str(missing)) from exc


def _describe(exc: BaseException) -> str:
    """``Type: message (at file:line)`` of an exception, on one line."""
    import traceback
    from pathlib import Path

    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}{where}"


def setup_logging(verbose: int = 0, quiet: bool = False) -> int:
    """Configure logging for a command; returns the level. Idempotent (one handler on the root logger)."""
    level = LEVELS[-1] if quiet else LEVELS.get(min(verbose, 2), logging.DEBUG)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_deepradiomics", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._deepradiomics = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    handler.setStream(sys.stderr)  # the stderr of this invocation (click's test runner swaps it per call)
    root.setLevel(level)
    logging.getLogger("deepradiomics").setLevel(level)
    if "radiomics" in sys.modules or _pyradiomics_installed():
        import radiomics

        # PyRadiomics adds its own stderr handler at import and chats at INFO: route it through ours
        radiomics.setVerbosity(max(level, logging.WARNING) if not verbose else level)
        radiomics_logger = logging.getLogger("radiomics")
        radiomics_logger.propagate = True
        for h in list(radiomics_logger.handlers):
            radiomics_logger.removeHandler(h)
        radiomics_logger.setLevel(level)
    for noisy in ("pykwalify", "distributed", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return level


def _pyradiomics_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("radiomics") is not None


def verbosity_options(function):
    """``-v/--verbose`` (repeatable) and ``-q/--quiet``, with the same meaning in every command."""
    function = click.option("-q", "--quiet", is_flag=True, help="Errors only on stderr.")(function)
    return click.option("-v", "--verbose", count=True, help="More log output on stderr (-v information, -vv debugging).")(function)


def parse_modalities(values) -> dict[str, str]:
    """``-m NAME=PATH`` values -> ``{NAME: PATH}``; a repeated or reserved name is refused."""
    modalities: dict[str, str] = {}
    for text in values:
        if "=" not in text:
            raise click.BadParameter(f"{text!r} is not NAME=PATH, e.g. -m t1=t1.nii.gz", param_hint="-m/--modality")
        name, path = text.split("=", 1)
        if not name or name == "Image":
            raise click.BadParameter(f"{text!r}: give a modality name other than 'Image' (IMAGE is the main image)", param_hint="-m/--modality")
        if not path:
            raise click.BadParameter(f"{text!r}: the path after '=' is empty", param_hint="-m/--modality")
        if name in modalities:
            raise click.BadParameter(f"modality '{name}' is given twice ({modalities[name]} and {path}): give each name once", param_hint="-m/--modality")
        modalities[name] = path
    return modalities


def load_extractor(params: str, settings=()):
    """An Extractor from a params file and ``-s KEY=VALUE`` overrides."""
    from ..extractor import Extractor
    from ..params import parse_override

    overrides = dict(parse_override(s) for s in settings)
    return Extractor.from_yaml(params, overrides or None)


# ------------------------------------------------------------------------------------------ inputs and outputs
def params_file(params: str):
    """The file a PARAMS argument names: the path itself, or the shipped params file of that name (None if neither)."""
    from pathlib import Path

    from ..data import shipped_params_file

    path = Path(params)
    if path.is_file():
        return path
    return shipped_params_file(str(params))


def params_inputs(params: str, extractor=None) -> list[tuple[str, object]]:
    """``(what, path)`` of a params file and of the existing files and folders its class settings name
    (model bundles, weights files, fitted artifacts), resolved against the params file's folder."""
    from pathlib import Path

    inputs: list[tuple[str, object]] = [("the params file", params_file(params) or params)]
    if extractor is None:
        return inputs
    p = extractor.params
    base = p.base_dir if p.base_dir is not None else Path.cwd()
    for name in p.plugins:
        for key, value in p.class_settings(name).items():
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(item, str) and item.strip() and (base / item).exists():
                    inputs.append((f"featureClass.{name}.{key}", base / item))
    return inputs


def manifest_inputs(manifest, base_dir=None) -> list[tuple[str, object]]:
    """``(what, path)`` of a manifest and of every image, mask and modality of its cases (resolved against its folder)."""
    from ..batch import MODALITY_PREFIX, read_manifest
    from ..batch.manifest import is_blank, resolve_path

    frame, base = read_manifest(manifest, base_dir)
    inputs: list[tuple[str, object]] = [("the manifest", manifest)]
    columns = [c for c in frame.columns if c in ("Image", "Mask") or str(c).startswith(MODALITY_PREFIX)]
    for record in frame[["ID", *columns]].to_dict(orient="records"):
        for column in columns:
            if not is_blank(record[column]):
                inputs.append((f"the {column} of case '{record['ID']}'", resolve_path(record[column], base)))
    return inputs


def check_outputs(outputs, inputs) -> None:
    """Refuse an output that is (or writes into) one of the inputs, before any work: see
    :func:`deepradiomics.io.check_outputs_not_inputs` (``outputs``: :class:`deepradiomics.io.Output`)."""
    from ..io import check_outputs_not_inputs

    check_outputs_not_inputs(outputs, inputs)


def read_cohort(manifest, option: str = "MANIFEST"):
    """``(frame, base)`` of a manifest a cohort command runs on; ParamsError when it lists no case."""
    from ..batch import read_manifest
    from ..errors import ParamsError

    frame, base = read_manifest(manifest)
    if not len(frame):
        raise ParamsError(
            f"{option} '{manifest}' lists no case (a header without rows): add one row per case (ID, Image, Mask), "
            "or give the manifest of the cohort"
        )
    return frame, base


def cache_outputs(option: str, folder) -> list:
    """The :class:`deepradiomics.io.Output` of a cache folder (--out-dir, --cache-dir): its entries and legacy folders."""
    from ..batch.cache import CACHE_WRITES
    from ..io import Output

    return [Output(option, folder, CACHE_WRITES)]
