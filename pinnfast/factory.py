"""A declared problem's code, named by ``--problem``: ``module:function`` or ``path/to/file.py:function``,
imported, called, and recorded with the SHA-256 of its module's source (a run folder never names code to
import)."""
import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from .errors import PinnfastError


def call_factory(spec, data, folder, kind):
    """The ``kind`` instance that the function named by ``spec`` returns (imported from ``folder``, default the
    current one; called as ``function(data)`` when a data file is given), and the record of the factory: the spec
    as resolved, the folder, and the SHA-256 of its module's source, by which a resumed run tells that it is given
    the same code again."""
    text = str(spec)
    where, sep, attribute = text.rpartition(":")
    if not sep or not where or not attribute.isidentifier():
        raise PinnfastError(f"--problem {text}: expected MODULE:FUNCTION or FILE.py:FUNCTION, e.g. "
                            "examples/heat_inverse.py:make_problem")
    folder = Path(folder or Path.cwd()).resolve()
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = (folder / where).resolve()
        module = _module_from_file(path, text)
        factory, label = f"{path}:{attribute}", f"{path.name}:{attribute}"
    else:
        module = _module_by_name(where, folder, text)
        factory, label = text, text
    function = getattr(module, attribute, None)
    if function is None:
        defined = sorted(name for name, value in vars(module).items() if inspect.isfunction(value) and
                         value.__module__ == module.__name__ and not name.startswith("_"))
        raise PinnfastError(f"--problem {text}: {label.rpartition(':')[0]} has no function {attribute!r} (its "
                            f"functions: {', '.join(defined) or 'none'})")
    if not callable(function):
        raise PinnfastError(f"--problem {text}: {attribute} is a {type(function).__name__}, not a function")
    if data is not None:
        try:
            inspect.signature(function).bind(str(data))
        except TypeError:
            raise PinnfastError(f"--problem {text}: {attribute}() takes no data argument, so --data {data} cannot "
                                f"reach it; define {attribute}(data=None)") from None
        except ValueError:  # no signature to check: let the call say
            pass
    result = function(str(data)) if data is not None else function()
    if not isinstance(result, kind):
        raise PinnfastError(f"--problem {text}: {label}() returned {type(result).__name__}, not a "
                            f"pinnfast.{kind.__name__}")
    source = getattr(module, "__file__", None)
    return result, {"spec": factory, "folder": str(folder),
                    "sha256": hashlib.sha256(Path(source).read_bytes()).hexdigest() if source else None}


def _module_from_file(path, text):
    if not path.is_file():
        raise PinnfastError(f"--problem {text}: no file {path}")
    name = f"pinnfast_problem_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as import does: dataclasses and pickle look modules up there
    sys.path.insert(0, str(path.parent))  # its own neighbours import as they would when run as a script
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        sys.path.remove(str(path.parent))
    return module


def _module_by_name(name, folder, text):
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise PinnfastError(f"--problem {text}: no module {name!r} in {folder} or on the Python path; run from "
                                f"its folder or give its file, e.g. path/to/{name.replace('.', '/')}.py:"
                                f"{text.rpartition(':')[2]}") from None
        raise
    finally:
        sys.path.remove(str(folder))

