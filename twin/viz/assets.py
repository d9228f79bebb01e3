"""The browser assets Solara's page loads, installed from the npm registry for machines without a CDN.

Solara serves its front end (the Vuetify app, RequireJS, Font Awesome, the draggable grid of Mesa's
SolaraViz) through a caching proxy of ``cdn.jsdelivr.net``. On a machine that cannot reach that CDN
(a headless server, CI) the page stays blank. The same files are npm packages, so this module packs
the versions the installed Solara asks for with ``npm pack`` and unpacks them into Solara's proxy
cache (``solara.server.settings.assets.proxy_cache_dir``), where the proxy finds them without going
out. Run it once per environment::

    python -m twin.viz.assets
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from twin.errors import TwinError

# Where the installed Solara names the CDN packages it loads (relative to the solara package).
_SOURCES = (
    "server/templates/solara.html.j2",
    "widgets/vue/gridlayout.vue",
    "widgets/vue/gridlayout_v3.vue",
    "server/settings.py",
)
# A CDN path of an npm package: ``@scope/name@version/…`` or ``name@version/…``.
_SPEC = re.compile(r"/((?:@[a-z0-9-]+/)?[a-z0-9.-]+@\d+\.\d+\.\d+(?:-[a-z0-9.]+)?)/")


class AssetsError(TwinError):
    """The front-end assets could not be installed (npm missing or failing)."""


def required_packages() -> list[str]:
    """The ``name@version`` npm specs the installed Solara loads from its CDN, sorted.

    The page loads one of Solara's two front-end apps: the Vuetify 3 one with ipyvuetify 3, else
    the Vuetify 2 one; the other is left out.
    """
    import solara
    from solara.util import IPYVUETIFY_V3

    root = Path(solara.__file__).parent
    specs: set[str] = set()
    for relative in _SOURCES:
        path = root / relative
        if path.exists():
            specs.update(_SPEC.findall(path.read_text(encoding="utf-8")))
    unused = "@widgetti/solara-vuetify-app@" if IPYVUETIFY_V3 else "@widgetti/solara-vuetify3-app@"
    return sorted(s for s in specs if not s.startswith(unused))


def proxy_cache_dir() -> Path:
    """Solara's CDN proxy cache (``SOLARA_ASSETS_PROXY_CACHE_DIR`` overrides it)."""
    from solara.server import settings

    return Path(settings.assets.proxy_cache_dir)


def missing_packages(cache_dir: Path | None = None, specs: list[str] | None = None) -> list[str]:
    """The required packages that are not yet unpacked in the proxy cache."""
    cache = cache_dir or proxy_cache_dir()
    wanted = required_packages() if specs is None else specs
    return [s for s in wanted if not (cache / s / "package.json").exists()]


def install(cache_dir: Path | None = None, specs: list[str] | None = None, *, npm: str = "npm") -> list[str]:
    """Pack each missing package with npm and unpack it into the proxy cache; returns those installed.

    Raises:
        AssetsError: npm is not installed or could not pack a package.
    """
    cache = cache_dir or proxy_cache_dir()
    todo = missing_packages(cache, specs)
    if not todo:
        return []
    with tempfile.TemporaryDirectory(prefix="twin-viz-assets-") as tmp:
        try:
            proc = subprocess.run(
                [npm, "pack", "--silent", *todo], cwd=tmp, capture_output=True, text=True, timeout=600
            )
        except FileNotFoundError as exc:
            raise AssetsError(f"{npm!r} not found: install Node's npm (apt-get install npm)") from exc
        if proc.returncode != 0:
            raise AssetsError(f"npm pack {' '.join(todo)} failed: {proc.stderr.strip()[-500:]}")
        tarballs = proc.stdout.split()
        if len(tarballs) != len(todo):
            raise AssetsError(f"npm pack gave {len(tarballs)} tarballs for {len(todo)} packages: {tarballs}")
        for spec, tarball in zip(todo, tarballs, strict=True):
            unpacked = Path(tmp) / "unpacked" / spec
            _unpack(Path(tmp) / tarball, unpacked)
            target = cache / spec
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(unpacked, target)
    return todo


def _unpack(tarball: Path, target: Path) -> None:
    """Extract an npm tarball's ``package/`` folder to ``target`` (regular files, safe paths only)."""
    target.mkdir(parents=True)
    with tarfile.open(tarball, "r:gz") as archive:
        members = []
        for member in archive.getmembers():
            if not member.isfile() or not member.name.startswith("package/"):
                continue
            member.name = member.name.removeprefix("package/")
            members.append(member)
        archive.extractall(target, members=members, filter="data")


def main() -> int:
    """Install the missing assets; print what was done. Exit 1 when npm fails."""
    try:
        installed = install()
    except AssetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    cache = proxy_cache_dir()
    if installed:
        print(f"installed {', '.join(installed)} into {cache}")
    else:
        print(f"Solara's assets are all in {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
