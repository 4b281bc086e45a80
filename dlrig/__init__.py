"""dlrig: a verified deep-learning workstation from one inventory file and one command."""

__version__ = "0.1.0"


def _source_checkout() -> None:
    """In a clone of the repository (not installed), ``roles/`` and ``deploys/`` sit beside this
    folder instead of inside it: map ``dlrig.roles`` and ``dlrig.deploys`` onto them, as
    pyproject's package-dir does for the wheel, so the checkout is a complete dlrig (the tests and
    ``python -m dlrig`` inside a clone run the clone's code, whatever else is installed)."""
    import importlib.util
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    top = here.parent
    if (here / "roles").is_dir() or not (top / "pyproject.toml").is_file():
        return  # installed: roles and deploys are inside the package
    folders = {f"dlrig.{n}": top / n for n in ("roles", "deploys") if (top / n / "__init__.py").is_file()}

    class CheckoutFinder:
        @staticmethod
        def find_spec(fullname, path=None, target=None):
            folder = folders.get(fullname)
            if folder is None:
                return None
            return importlib.util.spec_from_file_location(
                fullname, folder / "__init__.py", submodule_search_locations=[str(folder)])

    sys.meta_path.insert(0, CheckoutFinder())


_source_checkout()
