"""Render the built documentation as a newcomer sees it: headless Chromium screenshots.

Build the site first, then run this script from the repository root::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
    python docs/screenshots.py                 # PNGs in docs/_build/screenshots/

It needs a Chromium or Chrome binary (Debian: ``apt-get install chromium``); name another one
with ``--browser``. Each page is rendered at a desktop width (1400 px, the content column about
730 px wide, as a reader sees it) and at a phone width (``--mobile``), tall enough to show the
first screens. Look at every PNG: each figure's text must be readable at that width.
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "docs" / "_build" / "html"

#: page (relative to the built site) -> height of the shot in pixels
PAGES = {
    "index.html": 1800,
    "quickstart.html": 2600,
    "generated/db3learn.DB3Distiller.html": 2200,
    "auto_examples/plot_distill_sklearn.html": 2600,
    "benchmarks.html": 2400,
    "user_guide/tables.html": 2200,
}


def find_browser(name=None):
    for candidate in [name] if name else ["chromium", "chromium-browser", "google-chrome", "chrome"]:
        path = shutil.which(candidate) if candidate else None
        if path:
            return path
    sys.exit("No Chromium or Chrome found: install one (Debian: apt-get install chromium) or name it with --browser.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--browser", help="the Chromium or Chrome executable (default: found on PATH)")
    parser.add_argument("--out", default=str(HTML.parent / "screenshots"), help="folder for the PNG files")
    parser.add_argument("--width", type=int, default=1400, help="window width in pixels (default: 1400)")
    parser.add_argument("--mobile", action="store_true", help="also a 412 px wide shot of each page")
    parser.add_argument("pages", nargs="*", help=f"pages of the built site (default: {' '.join(PAGES)})")
    args = parser.parse_args(argv)
    browser = find_browser(args.browser)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    widths = [args.width] + ([412] if args.mobile else [])
    missing = []
    for page in args.pages or list(PAGES):
        source = HTML / page
        if not source.is_file():
            missing.append(page)
            continue
        for width in widths:
            name = page.replace("/", "_").removesuffix(".html") + ("" if width == args.width else f"_{width}") + ".png"
            target = out / name
            command = [
                browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--window-size={width},{PAGES.get(page, 2000)}", f"--screenshot={target}", source.as_uri(),
            ]  # fmt: skip
            subprocess.run(command, check=True, capture_output=True, timeout=120)
            print(f"{target}  ({width} px wide)")
    if missing:
        sys.exit(
            f"Not built: {', '.join(missing)}; build the site first (python -m sphinx -b html docs docs/_build/html)."
        )


if __name__ == "__main__":
    main()
