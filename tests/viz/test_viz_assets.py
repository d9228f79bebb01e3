import stat
import sys
from pathlib import Path

import pytest

from twin.viz import assets


def fake_npm(folder: Path, *, fail: bool = False) -> Path:
    """An ``npm`` whose ``pack`` writes a tarball per spec, as npm does (``package/…`` inside)."""
    script = folder / "npm"
    script.write_text(
        f"""#!{sys.executable}
import io, json, sys, tarfile
specs = [a for a in sys.argv[2:] if not a.startswith("-")]
if {fail!r}:
    sys.stderr.write("npm ERR! 404 Not Found")
    sys.exit(1)
for spec in specs:
    name = spec.replace("@", "").replace("/", "-") + ".tgz"
    with tarfile.open(name, "w:gz") as tar:
        files = (("package/package.json", json.dumps({{"name": spec}})), ("package/dist/a.js", "x"))
        for path, text in files:
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    print(name)
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_required_packages_are_read_from_solara() -> None:
    """The packages are the versions the installed Solara names: its app, RequireJS, Font Awesome, grid."""
    # Execute
    specs = assets.required_packages()
    # Assert
    names = {s.rsplit("@", 1)[0] for s in specs}
    assert {"requirejs", "font-awesome", "@widgetti/vue-grid-layout"} <= names
    assert len([n for n in names if n.startswith("@widgetti/solara-vuetify")]) == 1


def test_install_unpacks_missing_packages_once(tmp_path: Path) -> None:
    """Missing packages are packed by npm and unpacked into the cache; present ones are left alone."""
    # Prepare
    cache = tmp_path / "cdn"
    specs = ["@widgetti/demo-app@1.2.3", "requirejs@2.3.6"]
    npm = fake_npm(tmp_path)
    # Execute
    first = assets.install(cache, specs, npm=str(npm))
    second = assets.install(cache, specs, npm=str(npm))
    # Assert
    assert first == specs and second == []
    assert (cache / "@widgetti/demo-app@1.2.3/dist/a.js").read_text() == "x"
    assert assets.missing_packages(cache, specs) == []


def test_npm_missing_or_failing_is_an_assets_error(tmp_path: Path) -> None:
    """Without npm, or when it fails, the error says so (and what npm said)."""
    # Prepare
    specs = ["requirejs@2.3.6"]
    # Execute / Assert
    with pytest.raises(assets.AssetsError, match="apt-get install npm"):
        assets.install(tmp_path / "cdn", specs, npm=str(tmp_path / "no-npm"))
    with pytest.raises(assets.AssetsError, match="404"):
        assets.install(tmp_path / "cdn", specs, npm=str(fake_npm(tmp_path, fail=True)))
