"""Reading a platform's JSON by its published shape, with errors that name the path.

A field the contract makes optional may be absent; a field that is present
must have the contract's type. ``BadPayload("entry[0].changes must be a list,
not an object")`` is what the platform (or a developer replaying a fixture)
gets back, as a 400, instead of a silently ignored message or a 500.
"""
from typing import Any, Dict, Iterator, Optional, Tuple, Type, Union

from connectors.delivery import BadPayload

_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
          bool: "true or false"}

Kind = Union[Type, Tuple[Type, ...]]


def _describe(kind: Kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_NAMES.get(k, k.__name__) for k in kinds)


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    for kind in (bool, dict, list, str, int, float):
        if isinstance(value, kind):
            return _NAMES[kind]
    return type(value).__name__


def _is(value: Any, kind: Kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true is not a number
    return isinstance(value, kinds)


def expect(value: Any, kind: Kind, path: str) -> Any:
    """``value`` when it is of ``kind``; else BadPayload naming ``path``."""
    if not _is(value, kind):
        raise BadPayload(f"{path} must be {_describe(kind)}, not {_type_of(value)}")
    return value


def member(container: Dict[str, Any], key: str, kind: Kind, path: str, required: bool = False) -> Any:
    """``container[key]`` checked against ``kind``; None when absent (BadPayload if ``required``)."""
    where = f"{path}.{key}" if path else key
    value = container.get(key)
    if value is None:
        if required:
            raise BadPayload(f"{where} is missing")
        return None
    return expect(value, kind, where)


def objects(container: Dict[str, Any], key: str, path: str, required: bool = False) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """(path, object) of each item of the list ``container[key]``; each item must be an object."""
    where = f"{path}.{key}" if path else key
    items: Optional[list] = member(container, key, list, path, required)
    for index, item in enumerate(items or ()):
        yield f"{where}[{index}]", expect(item, dict, f"{where}[{index}]")
