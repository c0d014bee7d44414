"""Shared command-line plumbing: one-line errors with exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from ddrsa.config import format_validation_error
from ddrsa.errors import DDRSAError

EXIT_USAGE = 2
M = TypeVar("M", bound=BaseModel)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are a single line on stderr (exit 2)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def fail(prog: str, message: str) -> None:
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(EXIT_USAGE)


def run_cli(prog: str, main, argv=None, passthrough: bool = False):
    """Call `main(argv)`; user errors become one line on stderr and exit code 2.

    With `passthrough` the return value of `main` is returned as is (not an exit code).
    """
    try:
        result = main(argv)
        return result if passthrough else (result or 0)
    except ValidationError as exc:
        fail(prog, format_validation_error(exc))
    except DDRSAError as exc:
        fail(prog, str(exc))
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted; run the same command again to resume\n")
        return 130
    except OSError as exc:  # unwritable output folder, disk full
        fail(prog, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    return 0


# ------------------------------------------------------------------ flags derived from a pydantic model
# `json_schema_extra` keys read here: "flag" (the option when it is not --field-name; a bool that
# defaults to True gets --no-<name>) and "metavar".


def _strip_optional(annotation):
    """`X | None` -> X; other annotations are returned as they are."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def field_kind(annotation) -> tuple[bool, type, list | None]:
    """(is_list, scalar type, Literal choices or None) of a field's annotation."""
    ann = _strip_optional(annotation)
    is_list = typing.get_origin(ann) is list
    if is_list:
        ann = typing.get_args(ann)[0]
    if typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    if typing.get_origin(ann) is typing.Literal:
        choices = list(typing.get_args(ann))
        return is_list, type(choices[0]), choices
    return is_list, ann, None


def field_flag(name: str, info: FieldInfo) -> str:
    """The command-line option of field `name`: --batch-size, --no-amp (a bool defaulting to True)."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "flag" in extra:
        return str(extra["flag"])
    if field_kind(info.annotation)[1] is bool and info.default is True:
        return "--no-" + name.replace("_", "-")
    return "--" + name.replace("_", "-")


def add_model_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, model: type[BaseModel]) -> None:
    """One option per field of `model` (dest = the field name, default = its default, help = its
    description, choices from a Literal); a bool is a switch that flips its default."""
    for name, info in model.model_fields.items():
        is_list, kind, choices = field_kind(info.annotation)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        kwargs: dict = {"dest": name, "help": (info.description or "").replace("%", "%%")}
        if kind is bool:
            kwargs["action"] = "store_false" if info.default is True else "store_true"
        else:
            kwargs.update(type=kind, default=info.get_default(call_default_factory=True))
            if choices:
                kwargs["choices"] = choices
            if is_list:
                kwargs["nargs"] = "+"
            if "metavar" in extra:
                kwargs["metavar"] = extra["metavar"]
        parser.add_argument(field_flag(name, info), **kwargs)


def model_from_args(args: argparse.Namespace, model: type[M]) -> M:
    """`model` built (and validated) from the options `add_model_arguments` added."""
    return model(**{name: getattr(args, name) for name in model.model_fields})
